/*
 * accept_guard.h: a listener that runs out of file descriptors (EMFILE,
 * ENFILE, ENOBUFS, ENOMEM) would spin: the pending connection keeps the
 * socket readable. The guard pauses it, retries on a timer, and logs once
 * per burst. Used by the gRPC listeners and the metrics server.
 */
#ifndef ALPCRUND_ACCEPT_GUARD_H
#define ALPCRUND_ACCEPT_GUARD_H

struct evconnlistener;
struct event_base;
struct accept_guard;

/*
 * Install the guard on lev. may_resume (may be NULL) is asked before the
 * listener is enabled again, so that another pause (max_connections)
 * stays in force; name appears in the log.
 */
struct accept_guard *accept_guard_new(struct event_base *,
		    struct evconnlistener *, const char *name,
		    int (*may_resume)(void *), void *arg);
/* Is the listener paused for lack of descriptors? */
int		 accept_guard_paused(const struct accept_guard *);
void		 accept_guard_free(struct accept_guard *);

#endif
