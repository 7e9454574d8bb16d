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
/* While on another target, the first is probed (a TCP connect) after this
 * long, doubling up to RETURN_MAX_MS with each probe; the delay starts over
 * once a connection to the first proved itself, so a first target that
 * comes and goes is not returned to every second. */
#define RETURN_MIN_MS		500
#define RETURN_MAX_MS		30000

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

static void h2c_link_probe_stop(struct h2client *);

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
		c->tgt[c->ti].st.calls++;
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
	c->tgt[c->ti].st.up = 0;
	evtimer_del(c->return_timer);
	h2c_link_probe_stop(c);
	/* With several targets, the last one tried says why. */
	if (c->ntgt > 1)
		snprintf(c->reason, sizeof(c->reason), "%s: %s", c->target,
		    reason);
	else
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

/* The target of the next attempt: i. */
static void
h2c_link_select(struct h2client *c, size_t i)
{
	struct h2c_target *t = &c->tgt[i];

	c->ti = i;
	c->target = t->target;
	c->authority = t->authority;
	c->host = t->host;
	c->port = t->port;
	c->server_name = c->sni_name != NULL ? c->sni_name : t->sni;
	if (t->host == NULL) {
		memcpy(&c->addrs[0], &t->addr, sizeof(t->addr));
		c->addrlens[0] = t->addrlen;
		c->naddrs = 1;
	}
}

/*
 * Failover: the attempt at the current target failed, or its connection
 * was lost (proved: it had proved itself, so a new round begins, from the
 * next target). The next target of the round is tried at once; 0 when the
 * round is over (or there is one target): the caller backs off.
 */
static int
h2c_link_next_target(struct h2client *c, const char *reason, int proved)
{
	size_t from = c->ti;

	if (c->ntgt < 2)
		return 0;
	if (proved) {
		c->left = c->ntgt;
		if (from == 0)		/* the first was fine: return soon */
			c->return_ms = 0;
	}
	if (c->left > 0)
		c->left--;
	if (c->left == 0)
		return 0;
	c->tgt[from].st.up = 0;
	h2c_link_probe_stop(c);
	h2c_link_select(c, (from + 1) % c->ntgt);
	log_debug("upstream trying the next", "target=%s failed=%s "
	    "reason=\"%s\"", c->target, c->tgt[from].target, reason);
	h2c_link_attempt_start(c);
	return 1;
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
	if (h2c_link_next_target(c, reason, 0))
		return;
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
	if (h2c_link_next_target(c, reason, proved))
		return;
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
	if (c->last_up >= 0 && (size_t)c->last_up != c->ti) {
		const char *from = c->tgt[c->last_up].target;

		c->tgt[c->last_up].st.up = 0;
		if (c->ti == 0) {
			c->tgt[0].st.returns++;
			log_info("upstream back to the first", "upstream=%s "
			    "from=%s", c->target, from);
		} else {
			c->tgt[c->ti].st.failovers++;
			log_warn("upstream failover", "upstream=%s from=%s",
			    c->target, from);
		}
	}
	c->last_up = (long)c->ti;
	c->tgt[c->ti].st.up = 1;
	c->left = c->ntgt;
	if (c->ti != 0) {
		struct timeval tv;

		if (c->return_ms < RETURN_MIN_MS)
			c->return_ms = RETURN_MIN_MS;
		h2c_tv_ms(&tv, c->return_ms);
		evtimer_add(c->return_timer, &tv);
	} else {
		evtimer_del(c->return_timer);
		h2c_link_probe_stop(c);
	}
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
	else if (!h2c_link_next_target(c, reason, h2c_link_proved(conn)))
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
	struct h2client *c = arg;

	/* A new round, from the first target. */
	c->left = c->ntgt;
	h2c_link_select(c, 0);
	h2c_link_attempt_start(c);
}

/* --- return to the first target -------------------------------------------- */

static void
h2c_link_probe_stop(struct h2client *c)
{
	if (c->probe_dns != NULL) {
		struct evdns_getaddrinfo_request *req = c->probe_dns;

		c->probe_dns = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	if (c->probe_ev != NULL) {
		event_free(c->probe_ev);
		c->probe_ev = NULL;
		evutil_closesocket(c->probe_fd);
		c->probe_fd = -1;
	}
}

static void h2c_link_return_arm(struct h2client *);

/*
 * The first target answered a probe: new calls go to it from now on, and
 * the connection in use drains (our GOAWAY, its streams finish) as after
 * a server's GOAWAY. Should the first fail after all, the round goes on to
 * the others at once.
 */
static void
h2c_link_return(struct h2client *c)
{
	struct h2conn *conn = c->cur;

	log_debug("upstream probe answered, returning", "upstream=%s "
	    "from=%s", c->tgt[0].target, c->target);
	c->cur = NULL;
	conn->goaway = 1;
	TAILQ_INSERT_TAIL(&c->old, conn, entry);
	nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE, 0,
	    NGHTTP2_NO_ERROR, NULL, 0);
	h2c_link_select(c, 0);
	c->left = c->ntgt;
	h2c_link_attempt_start(c);
	/* Last: with no stream left the old connection goes at once. */
	h2c_conn_flush(conn);
}

static void
h2c_link_probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2client *c = arg;
	int err = ETIMEDOUT;
	socklen_t len = sizeof(err);

	if ((what & EV_WRITE) &&
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	h2c_link_probe_stop(c);
	if (err == 0 && c->state == H2C_UP && c->ti != 0 && c->cur != NULL &&
	    c->cur->up && !c->cur->goaway)
		h2c_link_return(c);
	else
		h2c_link_return_arm(c);
}

static void
h2c_link_probe_connect(struct h2client *c, const struct sockaddr *sa,
    socklen_t salen)
{
	struct timeval tv;
	evutil_socket_t fd;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0 || (connect(fd, sa, salen) != 0 && errno != EINPROGRESS)) {
		if (fd >= 0)
			evutil_closesocket(fd);
		h2c_link_return_arm(c);
		return;
	}
	if ((c->probe_ev = event_new(c->base, fd, EV_WRITE, h2c_link_probe_cb,
	    c)) == NULL) {
		evutil_closesocket(fd);
		h2c_link_return_arm(c);
		return;
	}
	c->probe_fd = fd;
	h2c_tv_ms(&tv, c->connect_ms);
	event_add(c->probe_ev, &tv);
}

static void
h2c_link_probe_dns_cb(int err, struct evutil_addrinfo *res, void *arg)
{
	struct h2client *c = arg;

	if (err == EVUTIL_EAI_CANCEL) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	c->probe_dns = NULL;
	if (err != 0 || res == NULL || res->ai_addrlen >
	    sizeof(struct sockaddr_storage)) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		h2c_link_return_arm(c);
		return;
	}
	h2c_link_probe_connect(c, res->ai_addr, (socklen_t)res->ai_addrlen);
	evutil_freeaddrinfo(res);
}

/* Time to see whether the first target is back: a TCP connect to it. */
static void
h2c_link_return_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2client *c = arg;
	const struct h2c_target *t = &c->tgt[0];
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;

	if (c->state != H2C_UP || c->ti == 0 || c->probe_ev != NULL ||
	    c->probe_dns != NULL)
		return;
	if (c->return_ms < RETURN_MIN_MS)
		c->return_ms = RETURN_MIN_MS;
	else if ((c->return_ms *= 2) > RETURN_MAX_MS)
		c->return_ms = RETURN_MAX_MS;
	if (t->host == NULL) {
		h2c_link_probe_connect(c, (const void *)&t->addr, t->addrlen);
		return;
	}
	if (c->dns == NULL) {
		h2c_link_return_arm(c);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	req = evdns_getaddrinfo(c->dns, t->host, t->port, &hints,
	    h2c_link_probe_dns_cb, c);
	if (req != NULL)
		c->probe_dns = req;
}

/* The next probe, after return_ms (doubled by each probe). */
static void
h2c_link_return_arm(struct h2client *c)
{
	struct timeval tv;

	if (c->state != H2C_UP || c->ti == 0)
		return;
	h2c_tv_ms(&tv, c->return_ms);
	evtimer_add(c->return_timer, &tv);
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
	char *name = NULL;
	size_t i;

	if (o->ssl_ctx == NULL)
		return 0;
	if (o->server_name == NULL) {
		for (i = 0; i < c->ntgt; i++) {
			if (c->tgt[i].sni == NULL) {
				snprintf(err, errlen, "%s: TLS over a unix "
				    "socket needs a server name",
				    c->tgt[i].target);
				return -1;
			}
		}
	} else if ((name = strdup(o->server_name)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	SSL_CTX_up_ref(o->ssl_ctx);
	SSL_CTX_free(c->ssl_ctx);
	c->ssl_ctx = o->ssl_ctx;
	free(c->sni_name);
	c->sni_name = name;
	c->server_name = name != NULL ? name : c->tgt[c->ti].sni;
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
	struct h2c_target *tg;
	struct addr a;
	char why[128];

	if (c->ntgt == H2CLIENT_MAX_TARGETS) {
		snprintf(err, errlen, "more than %d targets",
		    H2CLIENT_MAX_TARGETS);
		return -1;
	}
	if (addr_parse(t, TARGET_FORMS, &a, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: %s", t, why);
		return -1;
	}
	tg = &c->tgt[c->ntgt++];
	tg->target = strdup(t);
	tg->authority = strdup(a.kind == ADDR_UNIX ? "localhost" : t);
	if (tg->target == NULL || tg->authority == NULL)
		return -1;
	if (a.kind == ADDR_INET && (tg->sni = strdup(a.host)) == NULL)
		return -1;
	if (addr_sockaddr(&a, &tg->addr, &tg->addrlen) != 0) {
		tg->host = strdup(a.host);
		tg->port = strdup(a.port);
		if (tg->host == NULL || tg->port == NULL)
			return -1;
	}
	if (c->ntgt == 1) {
		h2c_link_select(c, 0);
		c->left = 1;
	} else
		c->left = c->ntgt;
	return 0;
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
	c->return_timer = evtimer_new(c->base, h2c_link_return_cb, c);
	c->probe_fd = -1;
	c->last_up = -1;
	return c->attempt_timer != NULL && c->backoff_timer != NULL &&
	    c->state_ev != NULL && c->return_timer != NULL ? 0 : -1;
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
	h2c_link_probe_stop(c);
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
	if (c->return_timer != NULL)
		event_free(c->return_timer);
	for (size_t i = 0; i < c->ntgt; i++) {
		free(c->tgt[i].target);
		free(c->tgt[i].authority);
		free(c->tgt[i].host);
		free(c->tgt[i].port);
		free(c->tgt[i].sni);
	}
	free(c->sni_name);
	if (c->own_dns)
		evdns_base_free(c->dns, 0);
}
