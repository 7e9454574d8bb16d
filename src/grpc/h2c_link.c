/*
 * h2c_link.c: the client's link to its one target (h2client.h, "The
 * link"): the target parsed, resolved afresh for every attempt without
 * blocking the loop (evdns), each address tried in turn within the
 * attempt's deadline, capped exponential backoff with jitter after a
 * failure, the handover to a new connection on a GOAWAY, the link's state
 * as reported to on_state, and the calls waiting for a connection: sent
 * once one is up, failed fast while the link is down.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "addr.h"
#include "clock.h"
#include "h2c_internal.h"
#include "h2client.h"
#include "log.h"

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		5000
#define JITTER_PCT		20
/* A GOAWAY on a connection up this long (or that completed a call) hands
 * over to a new connection without the link going down. */
#define HANDOVER_MIN_UP_NS	NS_PER_SEC
/* Targets as a client always took them (alpcrunctl -s): a host the
 * resolver judges, a unix socket path relative to the working directory. */
#define TARGET_FORMS		(ADDR_ANY_HOST | ADDR_UNIX_RELATIVE)

/* strerror() with a lowercase first letter: reasons read as phrases. */
void
h2c_errstr(int err, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(err));
	buf[0] = (char)tolower((unsigned char)buf[0]);
}

void
h2c_fmt_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms % 1000 == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
}

static void
h2c_link_state_changed(struct h2client *c)
{
	event_active(c->state_ev, EV_TIMEOUT, 1);
}

/* --- calls waiting for a connection --------------------------------------- */

/* Send what waits on c->pending over the current connection, if it is up
 * and takes new streams. The caller flushes c->cur. */
void
h2c_link_pending_submit(struct h2client *c)
{
	struct h2conn *conn = c->cur;
	struct h2call *call;

	if (c->state != H2C_UP || conn == NULL || conn->goaway)
		return;
	while ((call = TAILQ_FIRST(&c->pending)) != NULL) {
		TAILQ_REMOVE(&c->pending, call, q);
		call->queued = 0;
		if (h2c_call_submit(conn, call) != 0) {
			TAILQ_INSERT_HEAD(&c->pending, call, q);
			call->queued = 1;
			h2c_link_goaway(conn);
			return;
		}
	}
}

static void
h2c_link_pending_fail(struct h2client *c, const char *reason)
{
	struct h2call *call;

	while ((call = TAILQ_FIRST(&c->pending)) != NULL) {
		TAILQ_REMOVE(&c->pending, call, q);
		call->queued = 0;
		h2c_call_fail_unreachable(call, reason);
	}
}

/*
 * A call waits for, or goes to, the current connection; or fails fast.
 * Called from an old connection's stream-close callback too (a GOAWAY
 * refused the call): flushing the current connection from there is safe,
 * it is another nghttp2 session, and failing it touches only itself.
 */
void
h2c_link_enqueue(struct h2call *call)
{
	struct h2client *c = call->c;

	if (c->state == H2C_BACKOFF) {
		h2c_call_fail_unreachable(call, c->reason);
		return;
	}
	TAILQ_INSERT_TAIL(&c->pending, call, q);
	call->queued = 1;
	if (c->state == H2C_UP && c->cur != NULL && !c->cur->in_h2) {
		h2c_link_pending_submit(c);
		if (c->cur != NULL)
			h2c_conn_flush(c->cur);
	}
}

/* --- state: up, down and backoff ------------------------------------------ */

static void
h2c_link_backoff(struct h2client *c, const char *reason, int reset)
{
	struct timeval tv;
	uint64_t ms, span;

	c->state = H2C_BACKOFF;
	c->phase = H2C_PH_NONE;
	c->up = 0;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
	h2c_link_pending_fail(c, c->reason);
	if (reset || c->backoff_ms == 0)
		c->backoff_ms = BACKOFF_MIN_MS;
	else if ((c->backoff_ms *= 2) > BACKOFF_MAX_MS)
		c->backoff_ms = BACKOFF_MAX_MS;
	/* ±JITTER_PCT, so that many nodes do not retry in step. */
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	span = c->backoff_ms * JITTER_PCT / 100;
	ms = c->backoff_ms - span + c->rng % (2 * span + 1);
	h2c_tv_ms(&tv, ms);
	evtimer_add(c->backoff_timer, &tv);
	log_debug("upstream down", "target=%s reason=\"%s\" retry_ms=%llu",
	    c->target, c->reason, (unsigned long long)ms);
	h2c_link_state_changed(c);
}

/* Drop whatever the attempt in progress holds. */
static void
h2c_link_attempt_cleanup(struct h2client *c)
{
	evtimer_del(c->attempt_timer);
	if (c->dnsreq != NULL) {
		struct evdns_getaddrinfo_request *req = c->dnsreq;

		c->dnsreq = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	if (c->connect_ev != NULL) {
		event_free(c->connect_ev);
		c->connect_ev = NULL;
		evutil_closesocket(c->fd);
		c->fd = -1;
	}
	if (c->cur != NULL && !c->cur->up)
		h2c_conn_destroy(c->cur, "connection attempt failed");
}

void
h2c_link_attempt_failed(struct h2client *c, const char *fmt, ...)
{
	char reason[H2C_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	h2c_link_attempt_cleanup(c);
	h2c_link_backoff(c, reason, 0);
}

/*
 * Did the connection prove itself: up for a second, or a call answered?
 * Only then does the backoff start over at 100 ms. A server that accepts,
 * sends SETTINGS and closes or says GOAWAY at once is otherwise retried
 * every 100 ms for ever (issue #9: a hostile or broken central).
 */
static int
h2c_link_proved(const struct h2conn *conn)
{
	return conn->up && (conn->completed > 0 ||
	    clock_now_ns() - conn->up_at >= HANDOVER_MIN_UP_NS);
}

/* The current connection was up and is gone. */
void
h2c_link_lost(struct h2client *c, const char *reason)
{
	int proved = c->cur != NULL && h2c_link_proved(c->cur);

	if (c->cur != NULL)
		h2c_conn_destroy(c->cur, reason);
	h2c_link_backoff(c, reason, proved);
}


/* The server's SETTINGS arrived: the attempt succeeded. */
void
h2c_link_up(struct h2conn *conn)
{
	struct h2client *c = conn->c;

	evtimer_del(c->attempt_timer);
	conn->up = 1;
	conn->up_at = clock_now_ns();
	c->state = H2C_UP;
	c->phase = H2C_PH_NONE;
	/* backoff_ms stays: it starts over once the connection proved
	 * itself (h2c_link_proved()), not merely because SETTINGS came. */
	c->up = 1;
	c->reason[0] = '\0';
	if (c->keepalive_ms > 0)
		h2c_conn_ping_arm(conn);
	log_debug("upstream up", "target=%s", c->target);
	h2c_link_state_changed(c);
}

/* The current connection got a GOAWAY: it only finishes its streams now. */
void
h2c_link_goaway(struct h2conn *conn)
{
	struct h2client *c = conn->c;
	char reason[H2C_REASON_MAX];

	c->cur = NULL;
	TAILQ_INSERT_TAIL(&c->old, conn, entry);
	if (conn->goaway_code == NGHTTP2_NO_ERROR && h2c_link_proved(conn)) {
		c->backoff_ms = 0;
		log_debug("upstream GOAWAY, reconnecting", "target=%s",
		    c->target);
		h2c_link_attempt_start(c);
		return;
	}
	if (conn->goaway_code == NGHTTP2_NO_ERROR)
		snprintf(reason, sizeof(reason), "GOAWAY");
	else
		snprintf(reason, sizeof(reason), "GOAWAY (%s)",
		    nghttp2_http2_strerror(conn->goaway_code));
	if (!conn->up)
		h2c_link_attempt_failed(c, "%s", reason);
	else
		h2c_link_backoff(c, reason, 0);
}

/* --- attempts ------------------------------------------------------------- */

static void h2c_link_connect_next(struct h2client *);

static void
h2c_link_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2client *c = arg;
	struct h2conn *conn;
	int err = 0;
	socklen_t len = sizeof(err);

	event_free(c->connect_ev);
	c->connect_ev = NULL;
	c->fd = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		evutil_closesocket(fd);
		c->last_err = err;
		h2c_link_connect_next(c);
		return;
	}
	if ((conn = h2c_conn_new(c, fd, NULL)) == NULL) {
		h2c_link_attempt_failed(c, "out of memory");
		return;
	}
	c->cur = conn;
	c->phase = H2C_PH_HANDSHAKE;
	h2c_conn_flush(conn);	/* the preface and our SETTINGS */
}

/* Connect to the next address of the attempt, or fail it. */
static void
h2c_link_connect_next(struct h2client *c)
{
	char reason[H2C_REASON_MAX];

	while (c->next < c->naddrs) {
		const struct sockaddr *sa = (const void *)&c->addrs[c->next];
		socklen_t len = c->addrlens[c->next];
		evutil_socket_t fd;
		int one = 1;

		c->next++;
		fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			c->last_err = errno;
			continue;
		}
		if (sa->sa_family != AF_UNIX)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
			    sizeof(one));
		if (connect(fd, sa, len) == 0 || errno == EINPROGRESS) {
			c->connect_ev = event_new(c->base, fd, EV_WRITE,
			    h2c_link_connect_cb, c);
			if (c->connect_ev == NULL ||
			    event_add(c->connect_ev, NULL) != 0) {
				if (c->connect_ev != NULL)
					event_free(c->connect_ev);
				c->connect_ev = NULL;
				evutil_closesocket(fd);
				h2c_link_attempt_failed(c, "out of memory");
				return;
			}
			c->fd = fd;
			c->phase = H2C_PH_CONNECT;
			return;
		}
		c->last_err = errno;
		evutil_closesocket(fd);
	}
	h2c_errstr(c->last_err != 0 ? c->last_err : ECONNREFUSED, reason,
	    sizeof(reason));
	h2c_link_attempt_failed(c, "%s", reason);
}

static void
h2c_link_dns_cb(int err, struct evutil_addrinfo *res, void *arg)
{
	struct h2client *c = arg;
	struct evutil_addrinfo *ai;

	if (err == EVUTIL_EAI_CANCEL) {
		/* The attempt or the client is gone: touch nothing. */
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	c->dnsreq = NULL;
	if (err != 0) {
		h2c_link_attempt_failed(c, "cannot resolve %s: %s", c->host,
		    evutil_gai_strerror(err));
		return;
	}
	c->naddrs = c->next = 0;
	for (ai = res; ai != NULL && c->naddrs < H2C_MAX_ADDRS;
	    ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(c->addrs[0]))
			continue;
		memcpy(&c->addrs[c->naddrs], ai->ai_addr, ai->ai_addrlen);
		c->addrlens[c->naddrs++] = (socklen_t)ai->ai_addrlen;
	}
	evutil_freeaddrinfo(res);
	c->last_err = 0;
	h2c_link_connect_next(c);
}

static void
h2c_link_attempt_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2client *c = arg;
	char per[32];

	h2c_fmt_ms(c->connect_ms, per, sizeof(per));
	switch (c->phase) {
	case H2C_PH_RESOLVE:
		h2c_link_attempt_failed(c, "cannot resolve %s within %s",
		    c->host, per);
		break;
	case H2C_PH_HANDSHAKE:
		h2c_link_attempt_failed(c, "no HTTP/2 handshake within %s",
		    per);
		break;
	default:
		h2c_link_attempt_failed(c, "connect timeout");
		break;
	}
}

void
h2c_link_attempt_start(struct h2client *c)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	struct timeval tv;

	c->state = H2C_CONNECTING;
	c->last_err = 0;
	h2c_tv_ms(&tv, c->connect_ms);
	evtimer_add(c->attempt_timer, &tv);
	if (c->host == NULL) {		/* numeric or unix: no DNS */
		c->next = 0;
		h2c_link_connect_next(c);
		return;
	}
	if (c->dns == NULL) {
		c->dns = evdns_base_new(c->base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (c->dns == NULL) {
			h2c_link_attempt_failed(c, "cannot set up DNS "
			    "resolution");
			return;
		}
		c->own_dns = 1;
	}
	c->phase = H2C_PH_RESOLVE;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* The callback may run before this returns (hosts file, cache). */
	req = evdns_getaddrinfo(c->dns, c->host, c->port, &hints,
	    h2c_link_dns_cb, c);
	if (req != NULL)
		c->dnsreq = req;
}

static void
h2c_link_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	h2c_link_attempt_start(arg);
}

static void
h2c_link_state_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2client *c = arg;

	/* Down for a new reason is news too (/readyz shows the reason). */
	if (c->up == c->reported && (c->up ||
	    strcmp(c->reason, c->reported_reason) == 0))
		return;
	c->reported = c->up;
	snprintf(c->reported_reason, sizeof(c->reported_reason), "%s",
	    c->up ? "" : c->reason);
	if (c->on_state != NULL)
		c->on_state(c->arg, c->up, c->up ? "" : c->reason);
}

/* --- the target ----------------------------------------------------------- */

/*
 * TLS options (after h2c_link_parse_target()): our own reference to the
 * context, and the name sent as SNI and verified in the server's
 * certificate (default: the target's host). Nothing changes on failure.
 * 0, or -1.
 */
int
h2c_link_tls_options(struct h2client *c, const struct h2client_opts *o,
    char *err, size_t errlen)
{
	struct addr a;
	char *name = NULL;

	if (o->ssl_ctx == NULL)
		return 0;
	if (o->server_name != NULL)
		name = strdup(o->server_name);
	else if (addr_parse(c->target, TARGET_FORMS, &a, NULL, 0) == 0 &&
	    a.kind == ADDR_INET)
		name = strdup(a.host);
	else {
		snprintf(err, errlen, "%s: TLS over a unix socket needs a "
		    "server name", c->target);
		return -1;
	}
	if (name == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	SSL_CTX_up_ref(o->ssl_ctx);
	SSL_CTX_free(c->ssl_ctx);
	c->ssl_ctx = o->ssl_ctx;
	free(c->server_name);
	c->server_name = name;
	return 0;
}

/*
 * The target: a unix path or a numeric address is the one address of every
 * attempt, a name is resolved afresh by each. 0, or -1 (err filled unless
 * out of memory).
 */
int
h2c_link_parse_target(struct h2client *c, const char *t, char *err,
    size_t errlen)
{
	struct addr a;
	char why[128];

	if (addr_parse(t, TARGET_FORMS, &a, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: %s", t, why);
		return -1;
	}
	c->authority = strdup(a.kind == ADDR_UNIX ? "localhost" : t);
	if (c->authority == NULL)
		return -1;
	if (addr_sockaddr(&a, &c->addrs[0], &c->addrlens[0]) == 0) {
		c->naddrs = 1;
		return 0;
	}
	c->host = strdup(a.host);
	c->port = strdup(a.port);
	return c->host != NULL && c->port != NULL ? 0 : -1;
}

/* --- the link's own resources --------------------------------------------- */

/* The link's timers and state event. 0, or -1 when out of memory. */
int
h2c_link_init(struct h2client *c)
{
	c->attempt_timer = evtimer_new(c->base, h2c_link_attempt_timeout_cb,
	    c);
	c->backoff_timer = evtimer_new(c->base, h2c_link_backoff_cb, c);
	c->state_ev = event_new(c->base, -1, 0, h2c_link_state_cb, c);
	return c->attempt_timer != NULL && c->backoff_timer != NULL &&
	    c->state_ev != NULL ? 0 : -1;
}

/*
 * The test seam (h2client_new_bev()): the first attempt as
 * h2c_link_connect_cb() makes it, on the caller's bufferevent instead of a
 * socket.
 */
void
h2c_link_attempt_bev(struct h2client *c, struct bufferevent *bev)
{
	struct h2conn *conn;
	struct timeval tv;

	c->state = H2C_CONNECTING;
	h2c_tv_ms(&tv, c->connect_ms);
	evtimer_add(c->attempt_timer, &tv);
	if ((conn = h2c_conn_new(c, -1, bev)) == NULL) {
		h2c_link_attempt_failed(c, "out of memory");
		return;
	}
	c->cur = conn;
	c->phase = H2C_PH_HANDSHAKE;
	h2c_conn_flush(conn);	/* the preface and our SETTINGS */
}

/* h2client_free(): the attempt in progress dropped, nothing called back. */
void
h2c_link_stop(struct h2client *c)
{
	if (c->dnsreq != NULL) {
		struct evdns_getaddrinfo_request *req = c->dnsreq;

		c->dnsreq = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	if (c->connect_ev != NULL) {
		event_free(c->connect_ev);
		evutil_closesocket(c->fd);
	}
}

/* h2client_free(), once no connection is left: the link's events. */
void
h2c_link_free(struct h2client *c)
{
	if (c->attempt_timer != NULL)
		event_free(c->attempt_timer);
	if (c->backoff_timer != NULL)
		event_free(c->backoff_timer);
	if (c->state_ev != NULL)
		event_free(c->state_ev);
	if (c->own_dns)
		evdns_base_free(c->dns, 0);
}
