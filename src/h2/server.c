/*
 * server.c: the process-wide server: listeners on host:port, [v6]:port and
 * unix:/path, accepting within max_connections, pausing (not spinning) when
 * the process runs out of file descriptors, the live limits, the reservation
 * of request bytes against max_inflight_bytes, and the drain on SIGTERM.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "accept_guard.h"
#include "addr.h"
#include "config.h"
#include "h2conn.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

/* Between the two GOAWAYs of the drain: long enough for a client to see
 * the first before the second fixes the last stream. */
#define GOAWAY_STEP_MS		1000

struct listener {
	struct server		*srv;
	char			*spec;
	char			*unix_path;	/* removed at exit */
	struct evconnlistener	*lev;
	struct accept_guard	*guard;		/* out of descriptors */
};

static void	 wake_starved(evutil_socket_t, short, void *);
static struct event *starved_ev;

static void
limits_from(struct limits *l, const struct config *conf)
{
	l->max_message_size = conf->max_message_size;
	l->max_inflight_bytes = conf->max_inflight_bytes;
	l->max_concurrent_streams = conf->max_concurrent_streams;
	l->handshake_ms = conf->handshake_timeout;
	l->idle_ms = conf->idle_timeout;
	l->send_ms = conf->send_timeout;
	l->shutdown_grace_ms = conf->shutdown_grace;
}

static void
tv_ms(struct timeval *tv, uint64_t ms)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

int
server_init(struct server *srv, struct event_base *base,
    const struct config *conf, const struct h2s_ops *ops, char *err,
    size_t errlen)
{
	memset(srv, 0, sizeof(*srv));
	srv->base = base;
	srv->ops = ops;
	srv->conf = conf;
	srv->max_connections = conf->max_connections;
	limits_from(&srv->lim, conf);
	TAILQ_INIT(&srv->conns);
	TAILQ_INIT(&srv->starved);
	if ((starved_ev = event_new(base, -1, 0, wake_starved, srv)) == NULL) {
		snprintf(err, errlen, "cannot create events");
		return -1;
	}
	return 0;
}

int
server_on_drain(struct server *srv, void (*fn)(void *), void *arg)
{
	struct drain_hook *h, **tail;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return -1;
	h->fn = fn;
	h->arg = arg;
	/* In the order registered. */
	for (tail = &srv->drain_hooks; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = h;
	return 0;
}

/* --- accepting --------------------------------------------------------- */

static void
listeners_enable(struct server *srv, int on)
{
	size_t i;

	for (i = 0; i < srv->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];

		if (l->lev == NULL || accept_guard_paused(l->guard))
			continue;
		if (on)
			evconnlistener_enable(l->lev);
		else
			evconnlistener_disable(l->lev);
	}
}

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;
	struct server *srv = l->srv;

	if (srv->draining || srv->nconns >= srv->max_connections) {
		evutil_closesocket(fd);
		return;
	}
	if (h2s_conn_new(srv, fd, sa, salen) == NULL) {
		log_warn("cannot set up connection", "listen=%s", l->spec);
		return;
	}
	if (srv->nconns >= srv->max_connections && !srv->accept_paused) {
		srv->accept_paused = 1;
		listeners_enable(srv, 0);
		log_warn("max_connections reached, accepting paused",
		    "connections=%zu", srv->nconns);
	}
}

/* The descriptor guard may resume a listener unless max_connections or
 * the drain holds it. */
static int
may_resume(void *arg)
{
	struct server *srv = arg;

	return !srv->accept_paused && !srv->draining;
}

/* Parse a listen address into a socket address. */
static int
resolve(const char *spec, struct sockaddr_storage *ss, socklen_t *len,
    char **unix_path, char *err, size_t errlen)
{
	struct addr a;
	char why[128];
	struct addrinfo hints, *res;
	int rv;

	*unix_path = NULL;
	if (addr_parse(spec, 0, &a, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: %s", spec, why);
		return -1;
	}
	if (a.kind == ADDR_UNIX) {
		addr_sockaddr(&a, ss, len);
		*unix_path = strdup(a.path);
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	/* Blocking resolution is fine here: this runs before the loop. */
	if ((rv = getaddrinfo(a.host, a.port, &hints, &res)) != 0) {
		snprintf(err, errlen, "%s: %s", spec, gai_strerror(rv));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* A stale socket file from a crashed run is removed; a live one means
 * another daemon serves there. */
static int
unix_prepare(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	struct sockaddr_un sun;
	int fd, live;

	if (lstat(path, &sb) != 0)
		return 0;
	if (!S_ISSOCK(sb.st_mode)) {
		snprintf(err, errlen, "unix:%s: exists and is not a socket",
		    path);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		return 0;
	live = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	if (live) {
		snprintf(err, errlen, "unix:%s: another process is listening",
		    path);
		return -1;
	}
	unlink(path);
	return 0;
}

int
server_listen(struct server *srv, char *err, size_t errlen)
{
	const struct config *conf = srv->conf;
	size_t i;

	srv->listeners = calloc(conf->nlisten, sizeof(*srv->listeners));
	if (srv->listeners == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < conf->nlisten; i++) {
		struct listener *l = &srv->listeners[i];
		struct sockaddr_storage ss;
		socklen_t len;

		l->srv = srv;
		l->spec = strdup(conf->listen[i]);
		srv->nlisteners++;
		if (resolve(l->spec, &ss, &len, &l->unix_path, err,
		    errlen) != 0)
			return -1;
		if (l->unix_path != NULL &&
		    unix_prepare(l->unix_path, err, errlen) != 0) {
			free(l->unix_path);
			l->unix_path = NULL;
			return -1;
		}
		l->lev = evconnlistener_new_bind(srv->base, accept_cb, l,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
		    LEV_OPT_CLOSE_ON_EXEC, 1024, (struct sockaddr *)&ss,
		    (int)len);
		if (l->lev == NULL) {
			snprintf(err, errlen, "listen %s: %s", l->spec,
			    strerror(errno));
			free(l->unix_path);
			l->unix_path = NULL;
			return -1;
		}
		l->guard = accept_guard_new(srv->base, l->lev, l->spec,
		    may_resume, srv);
		if (l->guard == NULL) {
			snprintf(err, errlen, "listen %s: out of memory",
			    l->spec);
			return -1;
		}
		log_info("listening", "addr=%s", l->spec);
	}
	return 0;
}

static void
listeners_close(struct server *srv)
{
	size_t i;

	for (i = 0; i < srv->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];

		if (l->lev != NULL)
			evconnlistener_free(l->lev);
		l->lev = NULL;
		accept_guard_free(l->guard);
		l->guard = NULL;
		if (l->unix_path != NULL)
			unlink(l->unix_path);
		free(l->unix_path);
		l->unix_path = NULL;
	}
}

void
server_conn_closed(struct server *srv, struct h2s_conn *c)
{
	if (srv->accept_paused && srv->nconns < srv->max_connections &&
	    !srv->draining) {
		srv->accept_paused = 0;
		listeners_enable(srv, 1);
		log_info("accepting again", "connections=%zu", srv->nconns);
	}
	if (srv->draining && srv->nconns == 0 && srv->on_drained != NULL)
		srv->on_drained(srv);
}

/* --- max_inflight_bytes ---------------------------------------------------- */

void
server_inflight(struct server *srv, int64_t delta)
{
	srv->inflight = (uint64_t)((int64_t)srv->inflight + delta);
	metrics_inflight(delta);
	/* Waking starved streams may flush (and free) connections: do it
	 * from the loop, never inside the caller's stream teardown. */
	if (delta < 0 && !TAILQ_EMPTY(&srv->starved))
		event_active(starved_ev, 0, 0);
}

int
server_inflight_full(const struct server *srv)
{
	return srv->inflight >= srv->lim.max_inflight_bytes;
}

static void
wake_starved(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct h2s_stream *st, *next;
	struct h2s_conn *c, *cn;

	TAILQ_FOREACH_SAFE(st, &srv->starved, starved_entry, next) {
		if (!h2s_stream_admit(st))
			break;		/* first come, first served */
		TAILQ_REMOVE(&srv->starved, st, starved_entry);
		st->starved = 0;
		st->conn->want_flush = 1;
	}
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, cn)
		if (c->want_flush) {
			c->want_flush = 0;
			h2s_conn_flush(c);
		}
}

/* --- live changes ------------------------------------------------------------ */

void
server_reconfigure(struct server *srv, const struct config *conf)
{
	struct h2s_conn *c;

	srv->conf = conf;
	limits_from(&srv->lim, conf);
	/* New timeouts apply to timers armed from now on; re-arm the idle
	 * ones so a shorter idle_timeout takes effect at once. */
	TAILQ_FOREACH(c, &srv->conns, entry)
		h2s_conn_rearm_timer(c);
	if (!TAILQ_EMPTY(&srv->starved))
		event_active(starved_ev, 0, 0);
}

/* --- drain ------------------------------------------------------------------------ */

static void
drain_step_two(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct h2s_conn *c, *next;

	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next)
		h2s_conn_goaway(c);
	if (srv->nconns == 0 && srv->on_drained != NULL)
		srv->on_drained(srv);
}

static void
grace_expired(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct h2s_conn *c;

	log_warn("shutdown grace expired, closing connections",
	    "connections=%zu", srv->nconns);
	while ((c = TAILQ_FIRST(&srv->conns)) != NULL)
		h2s_conn_free(c);
	if (srv->on_drained != NULL)
		srv->on_drained(srv);
}

void
server_drain(struct server *srv)
{
	struct h2s_conn *c, *next;
	struct drain_hook *h;
	struct timeval tv;

	if (srv->draining)
		return;
	srv->draining = 1;
	for (h = srv->drain_hooks; h != NULL; h = h->next)
		h->fn(h->arg);
	listeners_close(srv);
	log_info("draining", "connections=%zu grace_ms=%llu", srv->nconns,
	    (unsigned long long)srv->lim.shutdown_grace_ms);
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next)
		h2s_conn_drain(c);
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next)
		h2s_conn_flush(c);
	srv->drain_timer = evtimer_new(srv->base, drain_step_two, srv);
	tv_ms(&tv, GOAWAY_STEP_MS);
	evtimer_add(srv->drain_timer, &tv);
	srv->grace_timer = evtimer_new(srv->base, grace_expired, srv);
	tv_ms(&tv, srv->lim.shutdown_grace_ms);
	evtimer_add(srv->grace_timer, &tv);
}

void
server_free(struct server *srv)
{
	struct h2s_conn *c;
	struct drain_hook *h;
	size_t i;

	srv->on_drained = NULL;
	while ((c = TAILQ_FIRST(&srv->conns)) != NULL)
		h2s_conn_free(c);
	listeners_close(srv);
	for (i = 0; i < srv->nlisteners; i++)
		free(srv->listeners[i].spec);
	free(srv->listeners);
	if (srv->drain_timer != NULL)
		event_free(srv->drain_timer);
	if (srv->grace_timer != NULL)
		event_free(srv->grace_timer);
	if (starved_ev != NULL)
		event_free(starved_ev);
	starved_ev = NULL;
	while ((h = srv->drain_hooks) != NULL) {
		srv->drain_hooks = h->next;
		free(h);
	}
}
