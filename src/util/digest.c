/*
 * digest.c: SHA-256 of large payloads on one worker thread (digest.h).
 *
 * Jobs go to the worker through a mutex-protected queue; finished jobs come
 * back through a second list and an eventfd watched by a libevent event, as
 * the lmdb writer does: libevent itself is only touched by the loop thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/sha.h>

#include "digest.h"

struct job {
	STAILQ_ENTRY(job)	 entry;
	const uint8_t		*data;
	size_t			 len;
	digest_done_fn		*done;
	void			*arg;
	uint8_t			 digest[DIGEST_LEN];
};
STAILQ_HEAD(job_list, job);

static struct {
	int			 running;
	pthread_t		 thr;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	struct job_list		 todo;		/* under mu */
	struct job_list		 finished;	/* under mu */
	int			 stop;		/* under mu */
	int			 efd;
	struct event		*wake;
} d = { .efd = -1 };

static void *
worker(void *unused)
{
	struct job *j;
	uint64_t one = 1;
	ssize_t n;

	(void)unused;
	pthread_mutex_lock(&d.mu);
	for (;;) {
		while (STAILQ_EMPTY(&d.todo) && !d.stop)
			pthread_cond_wait(&d.cv, &d.mu);
		if ((j = STAILQ_FIRST(&d.todo)) == NULL)
			break;			/* stopping, queue empty */
		STAILQ_REMOVE_HEAD(&d.todo, entry);
		pthread_mutex_unlock(&d.mu);
		SHA256(j->data, j->len, j->digest);
		pthread_mutex_lock(&d.mu);
		STAILQ_INSERT_TAIL(&d.finished, j, entry);
		do
			n = write(d.efd, &one, sizeof(one));
		while (n == -1 && errno == EINTR);
	}
	pthread_mutex_unlock(&d.mu);
	return NULL;
}

/* On the loop: hand every finished job to its owner. */
static void
deliver(void)
{
	struct job_list l;
	struct job *j;

	pthread_mutex_lock(&d.mu);
	STAILQ_INIT(&l);
	STAILQ_CONCAT(&l, &d.finished);
	pthread_mutex_unlock(&d.mu);
	while ((j = STAILQ_FIRST(&l)) != NULL) {
		STAILQ_REMOVE_HEAD(&l, entry);
		j->done(j->arg, j->digest);
		free(j);
	}
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;

	(void)what;
	(void)arg;
	while (read(fd, &v, sizeof(v)) == -1 && errno == EINTR)
		;
	deliver();
}

int
digest_init(struct event_base *base, char *err, size_t errlen)
{
	int rc;

	STAILQ_INIT(&d.todo);
	STAILQ_INIT(&d.finished);
	d.stop = 0;
	if ((d.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		snprintf(err, errlen, "digest worker: eventfd: %s",
		    strerror(errno));
		return -1;
	}
	if ((d.wake = event_new(base, d.efd, EV_READ | EV_PERSIST, on_wake,
	    NULL)) == NULL || event_add(d.wake, NULL) != 0) {
		snprintf(err, errlen, "digest worker: out of memory");
		goto fail;
	}
	pthread_mutex_init(&d.mu, NULL);
	pthread_cond_init(&d.cv, NULL);
	if ((rc = pthread_create(&d.thr, NULL, worker, NULL)) != 0) {
		snprintf(err, errlen, "digest worker: pthread_create: %s",
		    strerror(rc));
		pthread_mutex_destroy(&d.mu);
		pthread_cond_destroy(&d.cv);
		goto fail;
	}
	d.running = 1;
	return 0;
fail:
	if (d.wake != NULL)
		event_free(d.wake);
	d.wake = NULL;
	close(d.efd);
	d.efd = -1;
	return -1;
}

void
digest_free(void)
{
	if (!d.running)
		return;
	pthread_mutex_lock(&d.mu);
	d.stop = 1;
	pthread_cond_signal(&d.cv);
	pthread_mutex_unlock(&d.mu);
	pthread_join(d.thr, NULL);	/* the queue is empty then */
	d.running = 0;
	deliver();
	event_free(d.wake);
	d.wake = NULL;
	close(d.efd);
	d.efd = -1;
	pthread_mutex_destroy(&d.mu);
	pthread_cond_destroy(&d.cv);
}

int
digest_start(const uint8_t *data, size_t len, digest_done_fn *done,
    void *arg)
{
	struct job *j;

	if (!d.running || (j = calloc(1, sizeof(*j))) == NULL)
		return -1;
	j->data = data;
	j->len = len;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&d.mu);
	STAILQ_INSERT_TAIL(&d.todo, j, entry);
	pthread_cond_signal(&d.cv);
	pthread_mutex_unlock(&d.mu);
	return 0;
}
