/*
 * accept_guard.c: pause a listener out of file descriptors and retry on a
 * timer (see accept_guard.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "accept_guard.h"
#include "clock.h"
#include "log.h"

#define RETRY_MS	250
/* An error this long after the previous one starts a new burst. */
#define BURST_GAP_NS	(10 * NS_PER_SEC)

struct accept_guard {
	LIST_ENTRY(accept_guard) entry;
	struct evconnlistener	*lev;
	struct event		*retry;
	char			*name;
	int			(*may_resume)(void *);
	void			*arg;
	int			 paused;
	uint64_t		 last_error;	/* monotonic ns, 0 = never */
};

/* libevent hands the error callback the listener's own argument (evhttp's,
 * for the metrics server), so guards are found by listener. */
static LIST_HEAD(, accept_guard) guards = LIST_HEAD_INITIALIZER(guards);

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct accept_guard *g = arg;

	g->paused = 0;
	if (g->may_resume == NULL || g->may_resume(g->arg))
		evconnlistener_enable(g->lev);
}

static void
error_cb(struct evconnlistener *lev, void *unused)
{
	struct accept_guard *g;
	struct timeval tv = { 0, RETRY_MS * 1000 };
	int e = EVUTIL_SOCKET_ERROR();
	uint64_t now = clock_now_ns();

	LIST_FOREACH(g, &guards, entry)
		if (g->lev == lev)
			break;
	if (g == NULL)
		return;
	if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
		log_warn("accept failed", "listen=%s error=\"%s\"", g->name,
		    evutil_socket_error_to_string(e));
		return;
	}
	if (g->last_error == 0 || now - g->last_error > BURST_GAP_NS)
		log_error("out of file descriptors, accepting paused",
		    "listen=%s error=\"%s\" retry_ms=%d", g->name,
		    evutil_socket_error_to_string(e), RETRY_MS);
	g->last_error = now;
	g->paused = 1;
	evconnlistener_disable(lev);
	evtimer_add(g->retry, &tv);
}

struct accept_guard *
accept_guard_new(struct event_base *base, struct evconnlistener *lev,
    const char *name, int (*may_resume)(void *), void *arg)
{
	struct accept_guard *g;

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	g->lev = lev;
	g->may_resume = may_resume;
	g->arg = arg;
	if ((g->name = strdup(name)) == NULL ||
	    (g->retry = evtimer_new(base, retry_cb, g)) == NULL) {
		free(g->name);
		free(g);
		return NULL;
	}
	LIST_INSERT_HEAD(&guards, g, entry);
	evconnlistener_set_error_cb(lev, error_cb);
	return g;
}

int
accept_guard_paused(const struct accept_guard *g)
{
	return g != NULL && g->paused;
}

void
accept_guard_free(struct accept_guard *g)
{
	if (g == NULL)
		return;
	LIST_REMOVE(g, entry);
	event_free(g->retry);
	free(g->name);
	free(g);
}
