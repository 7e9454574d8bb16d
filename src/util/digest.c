/*
 * digest.c: SHA-256 of large payloads on one worker thread (digest.h).
 *
 * Jobs go to the worker through a mutex-protected queue; finished jobs come
 * back through a second list and an eventfd watched by a libevent event, as
 * the lmdb writer does: libevent itself is only touched by the loop thread.
 * The worker hashes a job in pieces of PIECE bytes and looks for a cancel
 * between them, so that digest_cancel() of the job under way waits for one
 * piece at most.
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
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "digest.h"

struct job {
	STAILQ_ENTRY(job)	 entry;
	const uint8_t		*data;
	size_t			 len;
	digest_done_fn		*done;
	void			*arg;
	int			 cancelled;	/* under mu */
	uint8_t			 digest[DIGEST_LEN];
};

#define PIECE		(1u << 20)
STAILQ_HEAD(job_list, job);

static struct {
	int			 running;
	int			 ready;		/* mu and the lists set up */
	pthread_t		 thr;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	pthread_cond_t		 idle;		/* current went back to NULL */
	struct job_list		 todo;		/* under mu */
	struct job_list		 finished;	/* under mu */
	struct job		*current;	/* under mu: being hashed */
	int			 stop;		/* under mu */
	int			 efd;
	struct event		*wake;
} d = { .efd = -1 };

/* The worker: j's digest, piece by piece, unless it is cancelled first
 * (its bytes are valid throughout: digest_cancel() waits while d.current
 * is j). */
static void
hash(EVP_MD_CTX *ctx, struct job *j)
{
	size_t off = 0, n;
	unsigned int dl;
	int stop;

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		SHA256(j->data, j->len, j->digest);
		return;
	}
	do {
		pthread_mutex_lock(&d.mu);
		stop = j->cancelled;
		pthread_mutex_unlock(&d.mu);
		if (stop)
			return;
		n = j->len - off < PIECE ? j->len - off : PIECE;
		if (EVP_DigestUpdate(ctx, j->data + off, n) != 1) {
			SHA256(j->data, j->len, j->digest);
			return;
		}
		off += n;
	} while (off < j->len);
	if (EVP_DigestFinal_ex(ctx, j->digest, &dl) != 1)
		SHA256(j->data, j->len, j->digest);
}

static void *
worker(void *unused)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();	/* NULL: SHA256() in one go */
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
		d.current = j;
		pthread_mutex_unlock(&d.mu);
		hash(ctx, j);
		pthread_mutex_lock(&d.mu);
		d.current = NULL;
		if (j->cancelled) {
			free(j);
			pthread_cond_broadcast(&d.idle);
			continue;
		}
		STAILQ_INSERT_TAIL(&d.finished, j, entry);
		do
			n = write(d.efd, &one, sizeof(one));
		while (n == -1 && errno == EINTR);
	}
	pthread_mutex_unlock(&d.mu);
	EVP_MD_CTX_free(ctx);
	return NULL;
}

/* On the loop: hand every finished job to its owner, one at a time, so
 * that a done may cancel another job still waiting here. */
static void
deliver(void)
{
	struct job *j;

	for (;;) {
		pthread_mutex_lock(&d.mu);
		if ((j = STAILQ_FIRST(&d.finished)) != NULL)
			STAILQ_REMOVE_HEAD(&d.finished, entry);
		pthread_mutex_unlock(&d.mu);
		if (j == NULL)
			return;
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
	pthread_cond_init(&d.idle, NULL);
	d.current = NULL;
	if ((rc = pthread_create(&d.thr, NULL, worker, NULL)) != 0) {
		snprintf(err, errlen, "digest worker: pthread_create: %s",
		    strerror(rc));
		pthread_mutex_destroy(&d.mu);
		pthread_cond_destroy(&d.cv);
		pthread_cond_destroy(&d.idle);
		goto fail;
	}
	d.running = 1;
	d.ready = 1;
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
	d.ready = 0;
	pthread_mutex_destroy(&d.mu);
	pthread_cond_destroy(&d.cv);
	pthread_cond_destroy(&d.idle);
}

void
digest_cancel(digest_done_fn *done, void *arg)
{
	struct job *j;

	if (!d.ready)
		return;
	pthread_mutex_lock(&d.mu);
	STAILQ_FOREACH(j, &d.todo, entry)
		if (j->done == done && j->arg == arg) {
			STAILQ_REMOVE(&d.todo, j, job, entry);
			free(j);
			goto out;
		}
	STAILQ_FOREACH(j, &d.finished, entry)
		if (j->done == done && j->arg == arg) {
			STAILQ_REMOVE(&d.finished, j, job, entry);
			free(j);
			goto out;
		}
	if ((j = d.current) != NULL && j->done == done && j->arg == arg) {
		/* The worker frees it at its next piece. */
		j->cancelled = 1;
		while (d.current == j)
			pthread_cond_wait(&d.idle, &d.mu);
	}
out:
	pthread_mutex_unlock(&d.mu);
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
