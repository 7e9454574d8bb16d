/*
 * h2client.c: the HTTP/2 gRPC client on the libevent loop (spec §5
 * "Upstream link"; the contract is in h2client.h). This file owns the target
 * (parsing, evdns resolution), connection attempts with their deadline and
 * capped exponential backoff, the nghttp2 client sessions on bufferevents,
 * keepalive PINGs, the GOAWAY handover, and the calls: request bodies framed
 * into DATA, replies deframed, the gRPC status worked out from trailers,
 * HTTP status or RST_STREAM, local deadlines and cancellation.
 *
 * The same techniques as the server side (conn.c, grpc.c): nghttp2 writes
 * into the bufferevent's output and is told WOULDBLOCK above OUT_HIGH; DATA
 * frames are NO_COPY, their payload added to the output as evbuffer
 * references; nothing flushes while nghttp2 is inside a callback.
 *
 * Where bytes are copied:
 *  - request: h2client_unary() packs the message once into a buffer of the
 *    call's (the one copy); with a release callback (h2client_unary_body)
 *    large fields are not copied at all. Either way DATA frames carry the
 *    bytes as evbuffer references, so the socket reads them in place.
 *  - reply: the socket's evbuffer -> the deframer's buffer, allocated once
 *    from the prefix's length (the one copy), which the caller may keep.
 *
 * Lifetimes. A connection (struct h2conn) is either the client's current
 * one (c->cur: being set up, or up) or an old one finishing its streams
 * after a GOAWAY. A call (struct h2call) is freed when nobody refers to it
 * any more, which is tracked by five marks: queued (on c->pending), attached
 * (nghttp2 has its stream and may call back with it until the stream
 * closes), user (done is still owed), in_cb (on_msg is running) and bufrefs
 * (evbuffer references to its body still queued on a socket). So a call
 * whose deadline passed keeps its memory until nghttp2 lets go of the
 * stream, and a body outlives the call until the socket took it.
 *
 * User callbacks are never run from inside nghttp2 or from inside an API
 * function: finishing a call only records the outcome and activates the
 * call's event; the link's state changes activate the client's state event.
 * This is what lets a callback call h2client_free() or start new calls.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "clock.h"
#include "grpc.h"
#include "grpc_frame.h"
#include "h2client.h"
#include "queue_compat.h"
#include "log.h"
#include "tls.h"

/* Output above this is not added to (see conn.c); the write callback
 * resumes below OUT_LOW. Bodies are queued by reference, so this bounds
 * frame headers and small copies, not a request's size. */
#define OUT_HIGH		(4u << 20)
#define OUT_LOW			(1u << 20)
/* libevent reads and writes 16 KiB per callback by default (spec §11). */
#define MAX_SINGLE_IO		(1u << 20)
/* Our receive windows. nghttp2 sends WINDOW_UPDATE by itself as data is
 * consumed: a client has no reason to hold the server back. */
#define STREAM_WINDOW		(4u << 20)
#define CONN_WINDOW		(16u << 20)
/* A piece of a body at least this long is queued by reference. */
#define REF_MIN			4096
#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		5000
#define JITTER_PCT		20
#define DEFAULT_CONNECT_MS	3000
#define DEFAULT_MAX_MESSAGE	(260ull << 20)
#define DEFAULT_NAME		"central cache"
/* Addresses tried per attempt, of those DNS returns. */
#define MAX_ADDRS		8
/* grpc-message kept from a reply (raw, before decoding). */
#define MESSAGE_MAX		4096
#define REASON_MAX		160
/* A GOAWAY on a connection up this long (or that completed a call) hands
 * over to a new connection without the link going down. */
#define HANDOVER_MIN_UP_NS	NS_PER_SEC
#define INLINE_SEGS		4


enum cstate { ST_CONNECTING, ST_UP, ST_BACKOFF };
enum phase { PH_NONE, PH_RESOLVE, PH_CONNECT, PH_HANDSHAKE };

/* A piece of a request body: the caller's bytes, or a range of own. */
struct seg {
	const uint8_t	*ext;		/* NULL: own + off */
	size_t		 off;
	size_t		 len;
};

/* A server-streaming reply message waiting for on_msg. */
struct h2msg {
	STAILQ_ENTRY(h2msg)	 entry;
	uint8_t			*data;
	size_t			 len;
};

TAILQ_HEAD(call_list, h2call);

struct h2call {
	TAILQ_ENTRY(h2call)	 all;		/* c->calls */
	TAILQ_ENTRY(h2call)	 q;		/* c->pending or conn->streams */
	struct h2client		*c;		/* NULL once h2client_free() ran */
	struct h2conn		*conn;		/* attached to this connection */
	int32_t			 id;
	unsigned		 queued:1;
	unsigned		 attached:1;
	unsigned		 user:1;	/* done still owed */
	unsigned		 in_cb:1;	/* on_msg running */
	unsigned		 finished:1;	/* outcome decided */
	unsigned		 streaming:1;
	unsigned		 got_headers:1;	/* response HEADERS */
	unsigned		 ended:1;	/* END_STREAM from the server */
	unsigned		 ct_ok:1;	/* content-type application/grpc */
	unsigned		 have_status:1;
	unsigned		 have_msg:1;
	unsigned		 extra_msg:1;
	unsigned		 rst:1;		/* RST_STREAM submitted */
	unsigned		 have_ct:1;	/* a content-type came */
	unsigned		 bufrefs;	/* body references on a socket */
	uint64_t		 deadline;
	h2_done_fn		*done;
	h2_msg_fn		*on_msg;
	void			*arg;
	struct event		*ev;		/* deadline, and delivery */
	char			*path;

	/* Request body. */
	uint8_t			*own;
	struct seg		*segs;
	size_t			 nsegs, capsegs;
	struct seg		 seg_inline[INLINE_SEGS];
	size_t			 total;		/* body bytes, prefix included */
	size_t			 wr;		/* bytes framed into DATA */
	size_t			 segi, segoff;	/* where wr is in segs */
	void			(*release)(void *);
	void			*release_arg;
	uint8_t			 prefix[GRPC_PREFIX_LEN];

	/* Progress hook (h2call_progress()), and reply DATA bytes so far. */
	h2_progress_fn		*progress;
	void			*progress_arg;
	size_t			 rx;

	/* Reply. */
	int			 http_status;
	int			 status;
	char			*message;
	char			 ctype[48];	/* the content-type, for messages */
	struct grpc_deframer	 df;
	uint8_t			*rdata;
	size_t			 rlen;
	size_t			 held;		/* reported to on_reply_mem */
	STAILQ_HEAD(, h2msg)	 msgs;
};

struct h2conn {
	TAILQ_ENTRY(h2conn)	 entry;		/* c->old */
	struct h2client		*c;
	struct bufferevent	*bev;
	nghttp2_session		*h2;
	struct call_list	 streams;
	size_t			 nstreams;
	size_t			 completed;	/* calls that got a response */
	struct event		*ping_ev;
	uint64_t		 up_at;
	int32_t			 goaway_last;
	uint32_t		 goaway_code;
	unsigned		 up:1;
	unsigned		 got_settings:1;
	unsigned		 goaway:1;	/* no new streams here */
	unsigned		 in_h2:1;	/* inside nghttp2: no flush now */
	unsigned		 ping_out:1;	/* a PING not yet answered */
	unsigned		 rx:1;		/* bytes came since the PING */
	unsigned		 tls:1;		/* bev is a bufferevent_openssl */
	unsigned		 tls_up:1;	/* its handshake is done */
	size_t			 tls_room;	/* see tls_out_add() */
	char			 h2err[REASON_MAX - 16];	/* error_cb's last */
};
TAILQ_HEAD(conn_list, h2conn);

struct h2client {
	struct event_base	*base;
	struct evdns_base	*dns;
	int			 own_dns;
	h2_state_fn		*on_state;
	h2_mem_fn		*on_reply_mem;
	void			*arg;

	/* Options, copied. */
	char			*target;
	char			*name;
	char			*authority;
	char			*api_key;
	uint64_t		 connect_ms;
	uint64_t		 keepalive_ms;
	uint64_t		 max_msg;
	SSL_CTX			*ssl_ctx;	/* our reference; NULL: cleartext */
	char			*server_name;	/* SNI and verified name */

	/* The target: a numeric or unix address, or a name for evdns. */
	char			*host, *port;	/* NULL when numeric */
	struct sockaddr_storage	 addrs[MAX_ADDRS];
	socklen_t		 addrlens[MAX_ADDRS];
	size_t			 naddrs, next;

	enum cstate		 state;
	enum phase		 phase;
	int			 up;
	int			 reported;	/* -1: nothing reported yet */
	char			 reported_reason[REASON_MAX];
	char			 reason[REASON_MAX];
	uint64_t		 backoff_ms;
	uint64_t		 rng;

	/* The attempt in progress. */
	struct evdns_getaddrinfo_request *dnsreq;
	evutil_socket_t		 fd;
	struct event		*connect_ev;
	int			 last_err;

	struct h2conn		*cur;
	struct conn_list	 old;
	struct call_list	 pending;
	struct call_list	 calls;

	struct event		*attempt_timer;
	struct event		*backoff_timer;
	struct event		*state_ev;
};

static void	 conn_flush(struct h2conn *);
static void	 conn_fail(struct h2conn *, const char *reason);
static void	 attempt_start(struct h2client *);
static void	 attempt_failed(struct h2client *, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));
static void	 call_finish(struct h2call *, int status, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
static void	 call_enqueue(struct h2call *);
static void	 call_ev_cb(evutil_socket_t, short, void *);
static void	 cur_goaway(struct h2conn *);
static void	 call_not_grpc(struct h2call *);

static void
tv_ms(struct timeval *tv, uint64_t ms)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

static void
tv_ns(struct timeval *tv, uint64_t ns)
{
	/* Rounded up: a timer that fires early would only be re-armed. */
	ns += 999;
	tv->tv_sec = (time_t)(ns / NS_PER_SEC);
	tv->tv_usec = (suseconds_t)(ns % NS_PER_SEC / 1000);
}

/* strerror() with a lowercase first letter: reasons read as phrases. */
static void
errstr(int err, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(err));
	buf[0] = (char)tolower((unsigned char)buf[0]);
}

static void
fmt_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms % 1000 == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
}

static void
state_changed(struct h2client *c)
{
	event_active(c->state_ev, EV_TIMEOUT, 1);
}

/* --- calls: memory -------------------------------------------------------- */

static void
msgs_clear(struct h2call *call)
{
	struct h2msg *m;

	while ((m = STAILQ_FIRST(&call->msgs)) != NULL) {
		STAILQ_REMOVE_HEAD(&call->msgs, entry);
		free(m->data);
		free(m);
	}
}

/*
 * Tell the owner how many reply bytes this call holds now: the body buffer
 * of a message being received (allocated whole when its prefix arrived)
 * plus a unary reply waiting for done. Node mode counts them against
 * max_inflight_bytes from the prefix on, not from the end of the reply.
 */
static void
call_held(struct h2call *call)
{
	size_t held = (call->df.buf != NULL ? call->df.len : 0) +
	    (call->rdata != NULL ? call->rlen : 0);

	if (held == call->held)
		return;
	if (call->c != NULL && call->c->on_reply_mem != NULL)
		call->c->on_reply_mem(call->c->arg,
		    (int64_t)held - (int64_t)call->held);
	call->held = held;
}

static void
call_maybe_destroy(struct h2call *call)
{
	if (call->queued || call->attached || call->user || call->in_cb ||
	    call->bufrefs > 0)
		return;
	if (call->c != NULL) {
		TAILQ_REMOVE(&call->c->calls, call, all);
		/* An orphan's event belongs to a base that may be gone; its
		 * event was deleted when it was orphaned. */
		event_del(call->ev);
	}
	msgs_clear(call);
	grpc_deframer_reset(&call->df);
	free(call->rdata);
	call->rdata = NULL;
	call_held(call);
	free(call->message);
	free(call->own);
	if (call->segs != call->seg_inline)
		free(call->segs);
	if (call->release != NULL)
		call->release(call->release_arg);
	free(call);
}

/* evbuffer reference cleanup: the socket took these body bytes. */
static void
body_ref_done(const void *data, size_t len, void *arg)
{
	struct h2call *call = arg;

	call->bufrefs--;
	call_maybe_destroy(call);
}

static struct h2call *
call_new(struct h2client *c, const char *path, uint64_t deadline,
    h2_msg_fn *on_msg, h2_done_fn *done, void *arg)
{
	size_t evsz = event_get_struct_event_size();
	size_t off = (sizeof(struct h2call) + 15) & ~(size_t)15;
	size_t plen = strlen(path);
	struct h2call *call;

	/* One allocation: the call, its event, its path. */
	if ((call = calloc(1, off + evsz + plen + 1)) == NULL)
		return NULL;
	call->ev = (struct event *)(void *)((char *)call + off);
	call->path = (char *)call + off + evsz;
	memcpy(call->path, path, plen + 1);
	call->c = c;
	call->deadline = deadline;
	call->done = done;
	call->on_msg = on_msg;
	call->streaming = on_msg != NULL;
	call->arg = arg;
	call->user = 1;
	call->segs = call->seg_inline;
	call->capsegs = INLINE_SEGS;
	call->df.max = c->max_msg;
	STAILQ_INIT(&call->msgs);
	event_assign(call->ev, c->base, -1, 0, call_ev_cb, call);
	TAILQ_INSERT_TAIL(&c->calls, call, all);
	return call;
}

/* --- calls: request bodies ------------------------------------------------ */

static int
seg_push(struct h2call *call, const uint8_t *ext, size_t off, size_t len)
{
	struct seg *s;

	if (len == 0)
		return 0;
	/* Contiguous own bytes extend the last piece. */
	if (ext == NULL && call->nsegs > 0) {
		s = &call->segs[call->nsegs - 1];
		if (s->ext == NULL && s->off + s->len == off) {
			s->len += len;
			call->total += len;
			return 0;
		}
	}
	if (call->nsegs == call->capsegs) {
		size_t cap = call->capsegs * 2;
		struct seg *n;

		if (call->segs == call->seg_inline) {
			if ((n = malloc(cap * sizeof(*n))) == NULL)
				return -1;
			memcpy(n, call->segs, call->nsegs * sizeof(*n));
		} else if ((n = realloc(call->segs, cap * sizeof(*n))) == NULL)
			return -1;
		call->segs = n;
		call->capsegs = cap;
	}
	s = &call->segs[call->nsegs++];
	s->ext = ext;
	s->off = off;
	s->len = len;
	call->total += len;
	return 0;
}

/*
 * A ProtobufCBuffer that packs by reference: appends of REF_MIN bytes or
 * more come straight from the message's bytes and string fields (protobuf-c
 * appends those from the field's own memory; tags, lengths and varints
 * come from small scratch buffers, which are copied).
 */
struct packer {
	ProtobufCBuffer	 base;
	struct h2call	*call;
	size_t		 ownlen, owncap;
	int		 failed;
};

static void
packer_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	struct packer *pk = (struct packer *)b;
	struct h2call *call = pk->call;

	/* An empty bytes field may come with data NULL (memcpy's UB). */
	if (pk->failed || len == 0)
		return;
	if (len >= REF_MIN) {
		if (seg_push(call, data, 0, len) != 0)
			pk->failed = 1;
		return;
	}
	if (pk->ownlen + len > pk->owncap) {
		size_t cap = pk->owncap ? pk->owncap * 2 : 256;
		uint8_t *n;

		while (cap < pk->ownlen + len)
			cap *= 2;
		if ((n = realloc(call->own, cap)) == NULL) {
			pk->failed = 1;
			return;
		}
		call->own = n;
		pk->owncap = cap;
	}
	memcpy(call->own + pk->ownlen, data, len);	/* COPY: small parts */
	if (seg_push(call, NULL, pk->ownlen, len) != 0)
		pk->failed = 1;
	pk->ownlen += len;
}

/* Lay out the body: 0, or -1 after finishing the call with the reason. */
static int
call_set_body(struct h2call *call, const struct h2body *b)
{
	uint64_t max = call->c->max_msg;
	size_t size;

	call->release = b->release;
	call->release_arg = b->release_arg;
	size = b->msg != NULL ? protobuf_c_message_get_packed_size(b->msg) :
	    b->rawlen;
	if (size > max || size > UINT32_MAX) {
		call_finish(call, GRPC_RESOURCE_EXHAUSTED, "request of %zu "
		    "bytes exceeds max_message_size %llu", size,
		    (unsigned long long)max);
		return -1;
	}
	grpc_frame_prefix(call->prefix, (uint32_t)size);
	if (b->release == NULL) {
		/* COPY: the one copy of the request, prefix in front. */
		if ((call->own = malloc(GRPC_PREFIX_LEN + size)) == NULL)
			goto nomem;
		memcpy(call->own, call->prefix, GRPC_PREFIX_LEN);
		if (b->msg != NULL)
			protobuf_c_message_pack(b->msg,
			    call->own + GRPC_PREFIX_LEN);
		else if (size > 0)
			memcpy(call->own + GRPC_PREFIX_LEN, b->raw, size);
		if (seg_push(call, NULL, 0, GRPC_PREFIX_LEN + size) != 0)
			goto nomem;	/* cannot happen: inline segments */
		return 0;
	}
	if (b->msg == NULL) {
		if (seg_push(call, call->prefix, 0, GRPC_PREFIX_LEN) != 0 ||
		    seg_push(call, b->raw, 0, size) != 0)
			goto nomem;
		return 0;
	} else {
		struct packer pk = { .base = { .append = packer_append },
		    .call = call };

		packer_append(&pk.base, GRPC_PREFIX_LEN, call->prefix);
		protobuf_c_message_pack_to_buffer(b->msg, &pk.base);
		if (pk.failed)
			goto nomem;
		return 0;
	}
nomem:
	call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	return -1;
}

/* --- calls: outcome and delivery ------------------------------------------ */

static void
call_finish(struct h2call *call, int status, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (call->finished)
		return;
	call->finished = 1;
	call->status = status;
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		free(call->message);
		call->message = strdup(buf);
	}
	if (status != GRPC_OK) {
		free(call->rdata);
		call->rdata = NULL;
		call->rlen = 0;
	}
	grpc_deframer_reset(&call->df);
	call_held(call);
	if (call->user && call->c != NULL) {
		event_del(call->ev);
		event_active(call->ev, EV_TIMEOUT, 1);
	}
}

static void
call_fail_unreachable(struct h2call *call, const char *reason)
{
	call_finish(call, GRPC_UNAVAILABLE, "%s unreachable: %s",
	    call->c->name, reason);
}

static void
call_arm_deadline(struct h2call *call)
{
	struct timeval tv;
	uint64_t now;

	if (call->deadline == 0 || call->finished)
		return;
	now = clock_now_ns();
	tv_ns(&tv, call->deadline > now ? call->deadline - now : 0);
	evtimer_add(call->ev, &tv);
}

static void
call_deliver_done(struct h2call *call)
{
	h2_done_fn *done = call->done;
	void *arg = call->arg;
	char *msg = call->message;
	struct h2reply r = { call->status, msg != NULL ? msg : "",
	    call->rdata, call->rlen };

	/* Everything the callback sees is moved out first: the callback may
	 * free the client, and the call with it. */
	call->message = NULL;
	call->rdata = NULL;
	call->rlen = 0;
	call_held(call);	/* the bytes are the callback's now */
	event_del(call->ev);
	call->user = 0;
	call_maybe_destroy(call);
	done(arg, &r);
	free(r.data);
	free(msg);
}

/* Give up on the call's stream, once (the caller flushes). */
static void
call_rst(struct h2call *call)
{
	if (!call->attached || call->rst)
		return;
	call->rst = 1;
	nghttp2_submit_rst_stream(call->conn->h2, NGHTTP2_FLAG_NONE, call->id,
	    NGHTTP2_CANCEL);
}

/* The local deadline passed. */
static void
call_expire(struct h2call *call)
{
	struct h2conn *conn = call->conn;

	call_finish(call, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
	if (call->queued) {
		TAILQ_REMOVE(&call->c->pending, call, q);
		call->queued = 0;
	}
	if (call->attached && !call->rst) {
		call_rst(call);
		conn_flush(conn);
	}
}

/* The call's event: the deadline, or an outcome or messages to deliver. */
static void
call_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2call *call = arg;
	struct h2msg *m;

	if (!call->finished && STAILQ_EMPTY(&call->msgs)) {
		if (call->deadline == 0 || clock_now_ns() < call->deadline) {
			call_arm_deadline(call);
			return;
		}
		call_expire(call);
	}
	if (!STAILQ_EMPTY(&call->msgs)) {
		call->in_cb = 1;
		while (call->user && (m = STAILQ_FIRST(&call->msgs)) != NULL) {
			STAILQ_REMOVE_HEAD(&call->msgs, entry);
			call->on_msg(call->arg, m->data, m->len);
			free(m->data);
			free(m);
		}
		call->in_cb = 0;
		if (!call->user) {	/* cancelled, or the client freed */
			call_maybe_destroy(call);
			return;
		}
	}
	if (call->finished)
		call_deliver_done(call);
	else
		call_arm_deadline(call);
}

/* --- calls: the stream ---------------------------------------------------- */

static int
http_to_grpc(int code)
{
	/* gRPC's doc/http-grpc-status-mapping.md */
	switch (code) {
	case 400:
		return GRPC_INTERNAL;
	case 401:
		return GRPC_UNAUTHENTICATED;
	case 403:
		return GRPC_PERMISSION_DENIED;
	case 404:
		return GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return GRPC_UNAVAILABLE;
	default:
		return GRPC_UNKNOWN;
	}
}

static int
rst_to_grpc(uint32_t code)
{
	switch (code) {
	case NGHTTP2_REFUSED_STREAM:
		return GRPC_UNAVAILABLE;
	case NGHTTP2_CANCEL:
		return GRPC_CANCELLED;
	case NGHTTP2_ENHANCE_YOUR_CALM:
		return GRPC_RESOURCE_EXHAUSTED;
	case NGHTTP2_INADEQUATE_SECURITY:
		return GRPC_PERMISSION_DENIED;
	default:
		return GRPC_INTERNAL;
	}
}

/* The stream closed and the call is still waiting: decide its status. */
static void
call_outcome(struct h2call *call, uint32_t err)
{
	if (!call->ended) {
		if (err != NGHTTP2_NO_ERROR)
			call_finish(call, rst_to_grpc(err), "stream reset: %s",
			    nghttp2_http2_strerror(err));
		else
			call_finish(call, GRPC_INTERNAL,
			    "stream closed before the reply ended");
		return;
	}
	if (call->http_status != 200) {
		call_finish(call, http_to_grpc(call->http_status),
		    "HTTP status %d", call->http_status);
		return;
	}
	if (!call->have_status) {
		if (!call->ct_ok)
			call_not_grpc(call);
		else
			call_finish(call, GRPC_INTERNAL, "reply ended without "
			    "grpc-status");
		return;
	}
	if (call->status != GRPC_OK) {
		call_finish(call, call->status, NULL);
		return;
	}
	if (grpc_deframer_partial(&call->df))
		call_finish(call, GRPC_INTERNAL, "reply ended inside a message");
	else if (!call->streaming && !call->have_msg)
		call_finish(call, GRPC_INTERNAL, "reply carried no message");
	else if (call->extra_msg)
		call_finish(call, GRPC_INTERNAL, "unary reply carried more "
		    "than one message");
	else
		call_finish(call, GRPC_OK, NULL);
}

/* Forget what a refused attempt received, so that it can be sent again. */
static void
call_reset_for_retry(struct h2call *call)
{
	grpc_deframer_reset(&call->df);
	free(call->rdata);
	call->rdata = NULL;
	call->rlen = 0;
	call_held(call);
	free(call->message);
	call->message = NULL;
	msgs_clear(call);
	call->id = 0;
	call->wr = call->segi = call->segoff = 0;
	call->rx = 0;
	call->http_status = 0;
	call->status = 0;
	call->got_headers = call->ended = call->ct_ok = 0;
	call->have_status = call->have_msg = call->extra_msg = 0;
}

static void
call_detach(struct h2call *call)
{
	struct h2conn *conn = call->conn;

	if (!call->attached)
		return;
	TAILQ_REMOVE(&conn->streams, call, q);
	conn->nstreams--;
	call->attached = 0;
	call->conn = NULL;
}

static void
fmt_timeout(uint64_t ns, char *buf, size_t len)
{
	static const struct { char unit; uint64_t ns; } u[] = {
		{ 'n', 1 }, { 'u', 1000 }, { 'm', NS_PER_MS },
		{ 'S', NS_PER_SEC }, { 'M', 60 * NS_PER_SEC },
		{ 'H', 3600 * NS_PER_SEC },
	};
	size_t i;
	uint64_t v;

	/* At most 8 digits: the finest unit that fits, rounded up. */
	for (i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
		v = (ns + u[i].ns - 1) / u[i].ns;
		if (v < 100000000) {
			snprintf(buf, len, "%llu%c", (unsigned long long)v,
			    u[i].unit);
			return;
		}
	}
	snprintf(buf, len, "99999999H");
}

static nghttp2_nv
nv(const char *name, const char *value, uint8_t flags)
{
	nghttp2_nv n = { (uint8_t *)(uintptr_t)name,
	    (uint8_t *)(uintptr_t)value, strlen(name), strlen(value), flags };

	return n;
}

static ssize_t	 body_read_cb(nghttp2_session *, int32_t, uint8_t *, size_t,
		    uint32_t *, nghttp2_data_source *, void *);

/*
 * Submit a call on a connection (the caller flushes). 0, or -1 when the
 * connection cannot take new streams (the call is back on the queue).
 */
static int
call_submit(struct h2conn *conn, struct h2call *call)
{
	struct h2client *c = conn->c;
	nghttp2_data_provider prd;
	nghttp2_nv hdrs[10];
	char tmo[16];
	size_t n = 0;
	int32_t id;

	if (call->deadline != 0) {
		uint64_t now = clock_now_ns();

		if (now >= call->deadline) {
			call_finish(call, GRPC_DEADLINE_EXCEEDED,
			    "deadline exceeded");
			return 0;
		}
		fmt_timeout(call->deadline - now, tmo, sizeof(tmo));
	}
	hdrs[n++] = nv(":method", "POST", NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = nv(":scheme", "http", NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = nv(":path", call->path, NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = nv(":authority", c->authority, NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = nv("content-type", "application/grpc",
	    NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = nv("te", "trailers", NGHTTP2_NV_FLAG_NONE);
#ifdef PACKAGE_VERSION
	hdrs[n++] = nv("user-agent", "alpcrund/" PACKAGE_VERSION,
	    NGHTTP2_NV_FLAG_NONE);
#endif
	if (call->deadline != 0)
		hdrs[n++] = nv("grpc-timeout", tmo, NGHTTP2_NV_FLAG_NONE);
	/* The key stays out of the HPACK tables (CRIME-style probing once
	 * TLS is on). */
	if (c->api_key != NULL)
		hdrs[n++] = nv("api_key", c->api_key, NGHTTP2_NV_FLAG_NO_INDEX);
	prd.source.ptr = call;
	prd.read_callback = body_read_cb;
	id = nghttp2_submit_request(conn->h2, NULL, hdrs, n, &prd, call);
	if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
		/* 2^30 streams on one connection: time for a new one. */
		conn->goaway = 1;
		return -1;
	}
	if (id < 0) {
		call_finish(call, GRPC_INTERNAL, "cannot submit the request: "
		    "%s", nghttp2_strerror(id));
		return 0;
	}
	call->id = id;
	call->attached = 1;
	call->conn = conn;
	TAILQ_INSERT_TAIL(&conn->streams, call, q);
	conn->nstreams++;
	return 0;
}

/* Send what waits on c->pending over the current connection, if it is up
 * and takes new streams. The caller flushes c->cur. */
static void
pending_submit(struct h2client *c)
{
	struct h2conn *conn = c->cur;
	struct h2call *call;

	if (c->state != ST_UP || conn == NULL || conn->goaway)
		return;
	while ((call = TAILQ_FIRST(&c->pending)) != NULL) {
		TAILQ_REMOVE(&c->pending, call, q);
		call->queued = 0;
		if (call_submit(conn, call) != 0) {
			TAILQ_INSERT_HEAD(&c->pending, call, q);
			call->queued = 1;
			cur_goaway(conn);
			return;
		}
	}
}

static void
pending_fail(struct h2client *c, const char *reason)
{
	struct h2call *call;

	while ((call = TAILQ_FIRST(&c->pending)) != NULL) {
		TAILQ_REMOVE(&c->pending, call, q);
		call->queued = 0;
		call_fail_unreachable(call, reason);
	}
}

/*
 * A call waits for, or goes to, the current connection; or fails fast.
 * Called from an old connection's stream-close callback too (a GOAWAY
 * refused the call): flushing the current connection from there is safe,
 * it is another nghttp2 session, and failing it touches only itself.
 */
static void
call_enqueue(struct h2call *call)
{
	struct h2client *c = call->c;

	if (c->state == ST_BACKOFF) {
		call_fail_unreachable(call, c->reason);
		return;
	}
	TAILQ_INSERT_TAIL(&c->pending, call, q);
	call->queued = 1;
	if (c->state == ST_UP && c->cur != NULL && !c->cur->in_h2) {
		pending_submit(c);
		if (c->cur != NULL)
			conn_flush(c->cur);
	}
}

/* --- the connection: nghttp2 callbacks ------------------------------------ */

/* Tell the progress hook, if any (h2call_progress()). The reply's total is
 * known once its prefix is: from the deframer, then from the whole message. */
static void
call_report_progress(struct h2call *call)
{
	uint64_t rtotal = 0;

	if (call->progress == NULL || !call->user)
		return;
	if (call->have_msg)
		rtotal = (uint64_t)call->rlen + GRPC_PREFIX_LEN;
	else if (call->df.hdrlen == GRPC_PREFIX_LEN)
		rtotal = (uint64_t)call->df.len + GRPC_PREFIX_LEN;
	call->progress(call->progress_arg, call->wr, call->total, call->rx,
	    rtotal);
}

static ssize_t
send_cb(nghttp2_session *h2, const uint8_t *data, size_t len, int flags,
    void *arg)
{
	struct h2conn *conn = arg;
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	if (evbuffer_get_length(out) >= OUT_HIGH)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (conn->tls) {
		/* Frames of a burst share records (see tls_out_add()). */
		if (tls_out_add(out, &conn->tls_room, data, len, len) != 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	} else if (evbuffer_add(out, data, len) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)len;
}

static ssize_t
body_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct h2call *call = src->ptr;
	size_t left = call->total - call->wr;
	size_t n = len < left ? len : left;

	/* The bytes go out by send_data_cb, which advances wr. */
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (n == left)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* The next body bytes to frame, at most max of them: *n bytes at the
 * return value, within one segment. */
static const uint8_t *
seg_peek(const struct h2call *call, size_t max, size_t *n)
{
	const struct seg *s = &call->segs[call->segi];

	*n = s->len - call->segoff;
	if (*n > max)
		*n = max;
	return (s->ext != NULL ? s->ext : call->own + s->off) + call->segoff;
}

/* n bytes of seg_peek() were framed. */
static void
seg_advance(struct h2call *call, size_t n)
{
	call->segoff += n;
	call->wr += n;
	if (call->segoff == call->segs[call->segi].len) {
		call->segi++;
		call->segoff = 0;
	}
}

/*
 * TLS: the frame header and its data copied together into a large chain
 * (encryption copies anyway), so a large body leaves in full TLS records,
 * not a 9-byte record per frame header (spec §11).
 */
static int
send_data_tls(struct h2conn *conn, struct h2call *call,
    const uint8_t *framehd, size_t length)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	size_t frame = 9 + length;

	if (tls_out_add(out, &conn->tls_room, framehd, 9, frame) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	while (length > 0 && call->segi < call->nsegs) {
		size_t n;
		const uint8_t *p = seg_peek(call, length, &n);

		/* The copy into the records. */
		if (tls_out_add(out, &conn->tls_room, p, n, frame) != 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		seg_advance(call, n);
		length -= n;
	}
	call_report_progress(call);
	return 0;
}

static int
send_data_cb(nghttp2_session *h2, nghttp2_frame *frame, const uint8_t *framehd,
    size_t length, nghttp2_data_source *src, void *arg)
{
	struct h2conn *conn = arg;
	struct h2call *call = src->ptr;
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	if (evbuffer_get_length(out) >= OUT_HIGH)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (conn->tls)
		return send_data_tls(conn, call, framehd, length);
	if (evbuffer_add(out, framehd, 9) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	while (length > 0 && call->segi < call->nsegs) {
		size_t n;
		const uint8_t *p = seg_peek(call, length, &n);

		if (n >= REF_MIN) {
			/* By reference: the call (and so the bytes) lives
			 * until the socket has taken them. */
			call->bufrefs++;
			if (evbuffer_add_reference(out, p, n, body_ref_done,
			    call) != 0) {
				call->bufrefs--;
				return NGHTTP2_ERR_CALLBACK_FAILURE;
			}
		} else if (evbuffer_add(out, p, n) != 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		seg_advance(call, n);
		length -= n;
	}
	call_report_progress(call);
	return 0;
}

static int
name_is(const uint8_t *name, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	return len == n && memcmp(name, lit, n) == 0;
}

static int
parse_small(const uint8_t *v, size_t len, int *out)
{
	int x = 0;
	size_t i;

	if (len == 0 || len > 4)
		return -1;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	*out = x;
	return 0;
}

/* A printable copy of a header value, cut to fit: it goes into messages. */
static void
ct_copy(char *out, size_t outlen, const uint8_t *v, size_t len)
{
	size_t i;

	if (len > outlen - 1)
		len = outlen - 1;
	for (i = 0; i < len; i++)
		out[i] = v[i] >= 0x20 && v[i] < 0x7f && v[i] != '"' ?
		    (char)v[i] : '?';
	out[len] = '\0';
}

/*
 * The response is not gRPC (its content-type says so): its body is never
 * parsed (gRPC: a non-200 :status maps as http_to_grpc(), else UNKNOWN).
 */
static void
call_not_grpc(struct h2call *call)
{
	char ct[sizeof(call->ctype) + 32];

	if (call->have_ct)
		snprintf(ct, sizeof(ct), "content-type \"%s\"", call->ctype);
	else
		snprintf(ct, sizeof(ct), "no content-type");
	if (call->http_status != 200)
		call_finish(call, http_to_grpc(call->http_status),
		    "HTTP status %d, reply is not gRPC (%s)",
		    call->http_status, ct);
	else
		call_finish(call, GRPC_UNKNOWN, "reply is not gRPC (%s)", ct);
}

static int
header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
    void *arg)
{
	struct h2call *call;
	int x;

	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (call == NULL || call->finished)
		return 0;
	if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
		if (name_is(name, namelen, ":status")) {
			if (parse_small(value, valuelen, &x) == 0)
				call->http_status = x;
			return 0;
		}
		if (name_is(name, namelen, "content-type")) {
			call->ct_ok = name_is(value, valuelen,
			    "application/grpc") || (valuelen > 16 &&
			    memcmp(value, "application/grpc", 16) == 0 &&
			    (value[16] == '+' || value[16] == ';'));
			call->have_ct = 1;
			ct_copy(call->ctype, sizeof(call->ctype), value,
			    valuelen);
			return 0;
		}
	}
	/* In trailers, or in a Trailers-Only response. */
	if (name_is(name, namelen, "grpc-status")) {
		if (parse_small(value, valuelen, &x) == 0) {
			/* A code we do not know reads as UNKNOWN (gRPC). */
			call->status = x <= GRPC_UNAUTHENTICATED ? x :
			    GRPC_UNKNOWN;
			call->have_status = 1;
		}
	} else if (name_is(name, namelen, "grpc-message")) {
		if (valuelen > MESSAGE_MAX)
			valuelen = MESSAGE_MAX;
		free(call->message);
		if ((call->message = malloc(valuelen + 1)) != NULL) {
			memcpy(call->message, value, valuelen);
			call->message[valuelen] = '\0';
			grpc_percent_decode(call->message);
		}
	}
	return 0;
}

static int
frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
	struct h2conn *conn = arg;
	struct h2call *call;

	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		call = nghttp2_session_get_stream_user_data(h2,
		    frame->hd.stream_id);
		if (call == NULL)
			break;
		if (frame->hd.type == NGHTTP2_HEADERS &&
		    frame->headers.cat == NGHTTP2_HCAT_RESPONSE)
			call->got_headers = 1;
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
			call->ended = 1;
		/* A body follows that is not gRPC (an HTML error page from a
		 * proxy): decided now, the rest never read as messages. */
		if (frame->hd.type == NGHTTP2_HEADERS &&
		    frame->headers.cat == NGHTTP2_HCAT_RESPONSE &&
		    !call->ended && !call->finished && !call->ct_ok &&
		    call->http_status >= 200) {
			call_not_grpc(call);
			call_rst(call);
		}
		break;
	case NGHTTP2_SETTINGS:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
			conn->got_settings = 1;
		break;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			conn->ping_out = 0;
		break;
	case NGHTTP2_GOAWAY:
		/* Acted upon once nghttp2 returns (conn_after_io); nghttp2
		 * now closes the streams above last_stream_id, REFUSED. */
		conn->goaway = 1;
		conn->goaway_last = frame->goaway.last_stream_id;
		conn->goaway_code = frame->goaway.error_code;
		break;
	}
	return 0;
}

static void
call_got_message(struct h2call *call, struct grpc_message *m)
{
	struct h2msg *hm;

	if (m->compressed) {
		free(m->data);
		call_finish(call, GRPC_INTERNAL, "compressed reply message "
		    "(no grpc-encoding was accepted)");
		return;
	}
	if (!call->streaming) {
		if (!call->have_msg) {
			call->rdata = m->data;	/* the reply's one copy */
			call->rlen = m->len;
			call->have_msg = 1;
		} else {
			free(m->data);
			call->extra_msg = 1;
		}
		return;
	}
	if (!call->user || (hm = malloc(sizeof(*hm))) == NULL) {
		free(m->data);
		if (call->user)
			call_finish(call, GRPC_RESOURCE_EXHAUSTED,
			    "out of memory");
		return;
	}
	hm->data = m->data;
	hm->len = m->len;
	STAILQ_INSERT_TAIL(&call->msgs, hm, entry);
	event_active(call->ev, EV_TIMEOUT, 1);
}

static int
data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t id,
    const uint8_t *data, size_t len, void *arg)
{
	struct h2call *call = nghttp2_session_get_stream_user_data(h2, id);
	struct grpc_message m;
	size_t n;

	if (call != NULL)
		call->rx += len;
	/* nghttp2 gives the window back by itself once we return. */
	while (call != NULL && !call->finished && len > 0) {
		switch (grpc_deframe(&call->df, data, len, &n, &m)) {
		case GF_NEED_MORE:
			break;
		case GF_MESSAGE:
			call_got_message(call, &m);
			break;
		case GF_TOO_LARGE:
			call_finish(call, GRPC_RESOURCE_EXHAUSTED, "reply of "
			    "%u bytes exceeds max_message_size %llu",
			    call->df.announced,
			    (unsigned long long)call->df.max);
			break;
		case GF_NOMEM:
			call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of "
			    "memory for a reply of %u bytes", call->df.len);
			break;
		}
		data += n;
		len -= n;
		if (call != NULL)
			call_held(call);
	}
	/* Decided here (too large, compressed): stop the server sending. */
	if (call != NULL && call->finished && !call->ended)
		call_rst(call);
	if (call != NULL && !call->finished)
		call_report_progress(call);
	return 0;
}

static int
stream_close_cb(nghttp2_session *h2, int32_t id, uint32_t err, void *arg)
{
	struct h2conn *conn = arg;
	struct h2call *call = nghttp2_session_get_stream_user_data(h2, id);

	if (call == NULL || !call->attached || call->conn != conn)
		return 0;
	call_detach(call);
	if (call->got_headers)
		conn->completed++;
	if (!call->finished && call->user) {
		/* Refused by a GOAWAY, so never processed: a new connection
		 * gets it (gRPC's transparent retry). */
		if (err == NGHTTP2_REFUSED_STREAM && conn->goaway &&
		    id > conn->goaway_last && !call->got_headers) {
			log_debug("upstream call refused by GOAWAY, retrying",
			    "target=%s path=%s stream=%d", conn->c->target,
			    call->path, (int)id);
			call_reset_for_retry(call);
			call_enqueue(call);
			return 0;
		}
		call_outcome(call, err);
	}
	call_maybe_destroy(call);
	return 0;
}

static int
error_cb(nghttp2_session *h2, int code, const char *msg, size_t len, void *arg)
{
	struct h2conn *conn = arg;

	log_debug("upstream http2 error", "target=%s error=\"%.*s\"",
	    conn->c->target, (int)len, msg);
	snprintf(conn->h2err, sizeof(conn->h2err), "%.*s", (int)len, msg);
	return 0;
}

static nghttp2_session_callbacks *callbacks;

static int
h2_setup(void)
{
	nghttp2_session_callbacks *cb;

	if (callbacks != NULL)
		return 0;
	if (nghttp2_session_callbacks_new(&cb) != 0)
		return -1;
	nghttp2_session_callbacks_set_send_callback(cb, send_cb);
	nghttp2_session_callbacks_set_send_data_callback(cb, send_data_cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, header_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb,
	    frame_recv_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb,
	    data_chunk_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
	    stream_close_cb);
	nghttp2_session_callbacks_set_error_callback2(cb, error_cb);
	callbacks = cb;
	return 0;
}

/* --- the connection: life ------------------------------------------------- */

/*
 * Free a connection. Its calls still waiting fail with UNAVAILABLE and
 * the reason (reason NULL: h2client_free(), they are dropped).
 * nghttp2_session_del() calls no stream-close callback: detach them here.
 */
static void
conn_destroy(struct h2conn *conn, const char *reason)
{
	struct h2client *c = conn->c;
	struct h2call *call;

	while ((call = TAILQ_FIRST(&conn->streams)) != NULL) {
		call_detach(call);
		if (reason != NULL && call->user && !call->finished)
			call_fail_unreachable(call, reason);
		call_maybe_destroy(call);
	}
	if (c->cur == conn)
		c->cur = NULL;
	else
		TAILQ_REMOVE(&c->old, conn, entry);
	if (conn->ping_ev != NULL)
		event_free(conn->ping_ev);
	nghttp2_session_del(conn->h2);
	/* Frees queued output; reference cleanups drop the body refs (now,
	 * or when libevent finalizes the bufferevent). */
	bufferevent_free(conn->bev);
	free(conn);
}

static void
enter_backoff(struct h2client *c, const char *reason, int reset)
{
	struct timeval tv;
	uint64_t ms, span;

	c->state = ST_BACKOFF;
	c->phase = PH_NONE;
	c->up = 0;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
	pending_fail(c, c->reason);
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
	tv_ms(&tv, ms);
	evtimer_add(c->backoff_timer, &tv);
	log_debug("upstream down", "target=%s reason=\"%s\" retry_ms=%llu",
	    c->target, c->reason, (unsigned long long)ms);
	state_changed(c);
}

/* Drop whatever the attempt in progress holds. */
static void
attempt_cleanup(struct h2client *c)
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
		conn_destroy(c->cur, "connection attempt failed");
}

static void
attempt_failed(struct h2client *c, const char *fmt, ...)
{
	char reason[REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	attempt_cleanup(c);
	enter_backoff(c, reason, 0);
}

/*
 * Did the connection prove itself: up for a second, or a call answered?
 * Only then does the backoff start over at 100 ms. A server that accepts,
 * sends SETTINGS and closes or says GOAWAY at once is otherwise retried
 * every 100 ms for ever (issue #9: a hostile or broken central).
 */
static int
conn_proved(const struct h2conn *conn)
{
	return conn->up && (conn->completed > 0 ||
	    clock_now_ns() - conn->up_at >= HANDOVER_MIN_UP_NS);
}

/* The current connection was up and is gone. */
static void
link_lost(struct h2client *c, const char *reason)
{
	int proved = c->cur != NULL && conn_proved(c->cur);

	if (c->cur != NULL)
		conn_destroy(c->cur, reason);
	enter_backoff(c, reason, proved);
}

static void
conn_fail(struct h2conn *conn, const char *reason)
{
	struct h2client *c = conn->c;

	if (conn != c->cur)
		conn_destroy(conn, reason);
	else if (conn->up)
		link_lost(c, reason);
	else
		attempt_failed(c, "%s", reason);
}

static void
conn_flush(struct h2conn *conn)
{
	int rv;

	if (conn->in_h2)
		return;		/* the reader flushes once nghttp2 returns */
	conn->in_h2 = 1;
	rv = nghttp2_session_send(conn->h2);
	conn->in_h2 = 0;
	if (rv != 0) {
		char reason[REASON_MAX];

		snprintf(reason, sizeof(reason), "HTTP/2 send failed: %s",
		    nghttp2_strerror(rv));
		conn_fail(conn, reason);
		return;
	}
	/* Done: GOAWAY seen and no stream left, or nghttp2 ended the session
	 * over a protocol error (a server that is not HTTP/2): say which. */
	if (!nghttp2_session_want_read(conn->h2) &&
	    !nghttp2_session_want_write(conn->h2)) {
		char reason[REASON_MAX];

		if (conn->h2err[0] == '\0')
			snprintf(reason, sizeof(reason), "connection closed");
		else
			snprintf(reason, sizeof(reason), "HTTP/2 error: %s",
			    conn->h2err);
		conn_fail(conn, reason);
	}
}

static void
ping_arm(struct h2conn *conn)
{
	struct timeval tv;

	tv_ms(&tv, conn->c->keepalive_ms);
	evtimer_add(conn->ping_ev, &tv);
}

static void
ping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2conn *conn = arg;

	if (conn->ping_out && !conn->rx) {
		char reason[REASON_MAX], per[32];

		fmt_ms(conn->c->keepalive_ms, per, sizeof(per));
		snprintf(reason, sizeof(reason), "no PING answer within %s",
		    per);
		conn_fail(conn, reason);
		return;
	}
	conn->rx = 0;
	if (!conn->ping_out) {
		nghttp2_submit_ping(conn->h2, NGHTTP2_FLAG_NONE, NULL);
		conn->ping_out = 1;
	}
	ping_arm(conn);
	conn_flush(conn);
}

/* The server's SETTINGS arrived: the attempt succeeded. */
static void
conn_up(struct h2conn *conn)
{
	struct h2client *c = conn->c;

	evtimer_del(c->attempt_timer);
	conn->up = 1;
	conn->up_at = clock_now_ns();
	c->state = ST_UP;
	c->phase = PH_NONE;
	/* backoff_ms stays: it starts over once the connection proved
	 * itself (conn_proved()), not merely because SETTINGS came. */
	c->up = 1;
	c->reason[0] = '\0';
	if (c->keepalive_ms > 0)
		ping_arm(conn);
	log_debug("upstream up", "target=%s", c->target);
	state_changed(c);
}

/* The current connection got a GOAWAY: it only finishes its streams now. */
static void
cur_goaway(struct h2conn *conn)
{
	struct h2client *c = conn->c;
	char reason[REASON_MAX];

	c->cur = NULL;
	TAILQ_INSERT_TAIL(&c->old, conn, entry);
	if (conn->goaway_code == NGHTTP2_NO_ERROR && conn_proved(conn)) {
		c->backoff_ms = 0;
		log_debug("upstream GOAWAY, reconnecting", "target=%s",
		    c->target);
		attempt_start(c);
		return;
	}
	if (conn->goaway_code == NGHTTP2_NO_ERROR)
		snprintf(reason, sizeof(reason), "GOAWAY");
	else
		snprintf(reason, sizeof(reason), "GOAWAY (%s)",
		    nghttp2_http2_strerror(conn->goaway_code));
	if (!conn->up)
		attempt_failed(c, "%s", reason);
	else
		enter_backoff(c, reason, 0);
}

/* After nghttp2 read: act on what it reported, then write. */
static void
conn_after_io(struct h2conn *conn)
{
	struct h2client *c = conn->c;

	if (conn == c->cur && !conn->up && conn->got_settings)
		conn_up(conn);
	if (conn == c->cur && conn->goaway)
		cur_goaway(conn);
	/* Calls refused by an old connection's GOAWAY go to the new one
	 * (call_enqueue() sends them at once unless the new one was busy). */
	if (c->cur != NULL && c->cur != conn && c->state == ST_UP &&
	    !TAILQ_EMPTY(&c->pending)) {
		pending_submit(c);
		if (c->cur != NULL && c->cur != conn)
			conn_flush(c->cur);	/* may fail c->cur, never conn */
	}
	if (conn == c->cur)
		pending_submit(c);
	conn_flush(conn);
}

static void
readcb(struct bufferevent *bev, void *arg)
{
	struct h2conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	ssize_t rv = 0;

	conn->rx = 1;
	conn->in_h2 = 1;
	while ((n = evbuffer_get_contiguous_space(in)) > 0) {
		rv = nghttp2_session_mem_recv(conn->h2, evbuffer_pullup(in, n),
		    n);
		if (rv < 0)
			break;
		evbuffer_drain(in, (size_t)rv);
	}
	conn->in_h2 = 0;
	if (rv < 0) {
		char reason[REASON_MAX];

		snprintf(reason, sizeof(reason), "HTTP/2 error: %s",
		    nghttp2_strerror((int)rv));
		/* Tell the server why, if nghttp2 queued a GOAWAY. */
		nghttp2_session_send(conn->h2);
		conn_fail(conn, reason);
		return;
	}
	conn_after_io(conn);
}

static void
writecb(struct bufferevent *bev, void *arg)
{
	conn_flush(arg);
}

static void
eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct h2conn *conn = arg;
	char reason[REASON_MAX], why[REASON_MAX - 8];

	if (what & BEV_EVENT_CONNECTED) {
		/* The TLS handshake is done: our preface and SETTINGS,
		 * queued already, go out now. */
		if (!tls_alpn_is_h2(bufferevent_openssl_get_ssl(bev))) {
			conn_fail(conn, "TLS: the server did not agree to "
			    "ALPN h2");
			return;
		}
		conn->tls_up = 1;
		return;
	}
	if (conn->tls && (what & BEV_EVENT_ERROR)) {
		enum tls_fail kind;

		/* A handshake failure, or an alert later (TLS 1.3 servers
		 * refuse a client certificate after the client's Finished);
		 * a plain socket error after the handshake is said as in
		 * cleartext, below. */
		tls_failure(bev, &kind, why, sizeof(why));
		if (kind != TLS_FAIL_IO || !conn->tls_up) {
			snprintf(reason, sizeof(reason), "TLS: %s", why);
			conn_fail(conn, reason);
			return;
		}
	}
	if (what & BEV_EVENT_EOF)
		snprintf(reason, sizeof(reason), "connection closed by the "
		    "server");
	else if (what & BEV_EVENT_ERROR) {
		int err = EVUTIL_SOCKET_ERROR();

		if (err != 0)
			errstr(err, reason, sizeof(reason));
		else
			snprintf(reason, sizeof(reason), "connection error");
	}
	else
		return;
	conn_fail(conn, reason);
}

/* A connection on socket fd, or, from h2client_new_bev(), on bev (already
 * connected; fd unused). Either is the connection's, even on failure. */
static struct h2conn *
conn_new(struct h2client *c, evutil_socket_t fd, struct bufferevent *bev)
{
	struct h2conn *conn;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
	};

	if (h2_setup() != 0 || (conn = calloc(1, sizeof(*conn))) == NULL) {
		if (bev != NULL)
			bufferevent_free(bev);
		else
			evutil_closesocket(fd);
		return NULL;
	}
	conn->c = c;
	TAILQ_INIT(&conn->streams);
	if (bev != NULL)
		conn->bev = bev;	/* the test seam: no socket, no TLS */
	else if (c->ssl_ctx != NULL) {
		/* ALPN h2 and SNI; the handshake ends before the server's
		 * SETTINGS can arrive, so nothing else changes. Each SSL
		 * holds a reference to the context it was made from. */
		char err[REASON_MAX];
		SSL *ssl = tls_client_ssl_new(c->ssl_ctx, c->server_name, err,
		    sizeof(err));

		if (ssl == NULL) {
			evutil_closesocket(fd);
			free(conn);
			return NULL;
		}
		conn->bev = bufferevent_openssl_socket_new(c->base, fd, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		if (conn->bev == NULL) {
			/* Out of memory (libevent may have freed ssl and
			 * closed fd on its way out). */
			free(conn);
			return NULL;
		}
		bufferevent_openssl_set_allow_dirty_shutdown(conn->bev, 1);
		/* Larger SSL_reads than its default 4 KiB. */
		bufferevent_setwatermark(conn->bev, EV_READ, 0, MAX_SINGLE_IO);
		conn->tls = 1;
	} else
		conn->bev = bufferevent_socket_new(c->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	if (conn->bev == NULL) {
		evutil_closesocket(fd);
		free(conn);
		return NULL;
	}
	if (nghttp2_session_client_new(&conn->h2, callbacks, conn) != 0)
		goto fail;
	if (nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv,
	    sizeof(iv) / sizeof(iv[0])) != 0 ||
	    nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE,
	    0, CONN_WINDOW) != 0)
		goto fail;
	if ((conn->ping_ev = evtimer_new(c->base, ping_cb, conn)) == NULL)
		goto fail;
	bufferevent_set_max_single_read(conn->bev, MAX_SINGLE_IO);
	bufferevent_set_max_single_write(conn->bev, MAX_SINGLE_IO);
	bufferevent_setwatermark(conn->bev, EV_WRITE, OUT_LOW, 0);
	bufferevent_setcb(conn->bev, readcb, writecb, eventcb, conn);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	return conn;
fail:
	if (conn->h2 != NULL)
		nghttp2_session_del(conn->h2);
	bufferevent_free(conn->bev);
	free(conn);
	return NULL;
}

/* --- attempts ------------------------------------------------------------- */

static void connect_next(struct h2client *);

static void
connect_cb(evutil_socket_t fd, short what, void *arg)
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
		connect_next(c);
		return;
	}
	if ((conn = conn_new(c, fd, NULL)) == NULL) {
		attempt_failed(c, "out of memory");
		return;
	}
	c->cur = conn;
	c->phase = PH_HANDSHAKE;
	conn_flush(conn);	/* the preface and our SETTINGS */
}

/* Connect to the next address of the attempt, or fail it. */
static void
connect_next(struct h2client *c)
{
	char reason[REASON_MAX];

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
			    connect_cb, c);
			if (c->connect_ev == NULL ||
			    event_add(c->connect_ev, NULL) != 0) {
				if (c->connect_ev != NULL)
					event_free(c->connect_ev);
				c->connect_ev = NULL;
				evutil_closesocket(fd);
				attempt_failed(c, "out of memory");
				return;
			}
			c->fd = fd;
			c->phase = PH_CONNECT;
			return;
		}
		c->last_err = errno;
		evutil_closesocket(fd);
	}
	errstr(c->last_err != 0 ? c->last_err : ECONNREFUSED, reason,
	    sizeof(reason));
	attempt_failed(c, "%s", reason);
}

static void
dns_cb(int err, struct evutil_addrinfo *res, void *arg)
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
		attempt_failed(c, "cannot resolve %s: %s", c->host,
		    evutil_gai_strerror(err));
		return;
	}
	c->naddrs = c->next = 0;
	for (ai = res; ai != NULL && c->naddrs < MAX_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(c->addrs[0]))
			continue;
		memcpy(&c->addrs[c->naddrs], ai->ai_addr, ai->ai_addrlen);
		c->addrlens[c->naddrs++] = (socklen_t)ai->ai_addrlen;
	}
	evutil_freeaddrinfo(res);
	c->last_err = 0;
	connect_next(c);
}

static void
attempt_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2client *c = arg;
	char per[32];

	fmt_ms(c->connect_ms, per, sizeof(per));
	switch (c->phase) {
	case PH_RESOLVE:
		attempt_failed(c, "cannot resolve %s within %s", c->host, per);
		break;
	case PH_HANDSHAKE:
		attempt_failed(c, "no HTTP/2 handshake within %s", per);
		break;
	default:
		attempt_failed(c, "connect timeout");
		break;
	}
}

static void
attempt_start(struct h2client *c)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	struct timeval tv;

	c->state = ST_CONNECTING;
	c->last_err = 0;
	tv_ms(&tv, c->connect_ms);
	evtimer_add(c->attempt_timer, &tv);
	if (c->host == NULL) {		/* numeric or unix: no DNS */
		c->next = 0;
		connect_next(c);
		return;
	}
	if (c->dns == NULL) {
		c->dns = evdns_base_new(c->base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (c->dns == NULL) {
			attempt_failed(c, "cannot set up DNS resolution");
			return;
		}
		c->own_dns = 1;
	}
	c->phase = PH_RESOLVE;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* The callback may run before this returns (hosts file, cache). */
	req = evdns_getaddrinfo(c->dns, c->host, c->port, &hints, dns_cb, c);
	if (req != NULL)
		c->dnsreq = req;
}

static void
backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	attempt_start(arg);
}

static void
state_cb(evutil_socket_t fd, short what, void *arg)
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

/* --- the API -------------------------------------------------------------- */

/*
 * TLS options (after parse_target()): our own reference to the context,
 * and the name sent as SNI and verified in the server's certificate
 * (default: the target's host). Nothing changes on failure. 0, or -1.
 */
static int
tls_options(struct h2client *c, const struct h2client_opts *o, char *err,
    size_t errlen)
{
	const char *t = c->target, *end;
	char *name = NULL;

	if (o->ssl_ctx == NULL)
		return 0;
	if (o->server_name != NULL)
		name = strdup(o->server_name);
	else if (strncmp(t, "unix:", 5) == 0) {
		snprintf(err, errlen, "%s: TLS over a unix socket needs a "
		    "server name", t);
		return -1;
	} else if (t[0] == '[' && (end = strchr(t, ']')) != NULL)
		name = strndup(t + 1, (size_t)(end - t - 1));
	else if ((end = strrchr(t, ':')) != NULL)
		name = strndup(t, (size_t)(end - t));
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

/* Parse host:port, [v6]:port or unix:/path. */
static int
parse_target(struct h2client *c, const char *t, char *err, size_t errlen)
{
	char host[256];
	const char *port, *end;
	size_t hl;
	long pn;
	char *ep;

	if (strncmp(t, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (void *)&c->addrs[0];

		if (t[5] == '\0' || strlen(t + 5) >= sizeof(sun->sun_path)) {
			snprintf(err, errlen, "%s: bad unix socket path", t);
			return -1;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, t + 5);
		c->addrlens[0] = sizeof(*sun);
		c->naddrs = 1;
		c->authority = strdup("localhost");
		return c->authority != NULL ? 0 : -1;
	}
	if (t[0] == '[') {
		if ((end = strchr(t, ']')) == NULL || end[1] != ':')
			goto bad;
		hl = (size_t)(end - t - 1);
		port = end + 2;
		if (hl >= sizeof(host))
			goto bad;
		memcpy(host, t + 1, hl);
	} else {
		if ((end = strrchr(t, ':')) == NULL)
			goto bad;
		hl = (size_t)(end - t);
		port = end + 1;
		if (hl >= sizeof(host) || memchr(t, ':', hl) != NULL)
			goto bad;
		memcpy(host, t, hl);
	}
	host[hl] = '\0';
	errno = 0;
	pn = strtol(port, &ep, 10);
	if (hl == 0 || *port == '\0' || *ep != '\0' || pn < 1 || pn > 65535 ||
	    errno != 0)
		goto bad;
	c->authority = strdup(t);
	if (c->authority == NULL)
		return -1;
	{
		struct sockaddr_in *in = (void *)&c->addrs[0];
		struct sockaddr_in6 *in6 = (void *)&c->addrs[0];

		if (evutil_inet_pton(AF_INET, host, &in->sin_addr) == 1) {
			in->sin_family = AF_INET;
			in->sin_port = htons((uint16_t)pn);
			c->addrlens[0] = sizeof(*in);
			c->naddrs = 1;
			return 0;
		}
		if (evutil_inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16_t)pn);
			c->addrlens[0] = sizeof(*in6);
			c->naddrs = 1;
			return 0;
		}
	}
	if (t[0] == '[')
		goto bad;
	c->host = strdup(host);
	c->port = strdup(port);
	return c->host != NULL && c->port != NULL ? 0 : -1;
bad:
	snprintf(err, errlen, "%s: expected host:port, [v6]:port or "
	    "unix:/path", t);
	return -1;
}

/* h2client_new(); start 0: no connection attempt yet (h2client_new_bev()). */
static struct h2client *
client_new(struct event_base *base, struct evdns_base *dns,
    const struct h2client_opts *o, h2_state_fn *on_state, void *arg,
    char *err, size_t errlen, int start)
{
	struct h2client *c;

	if (o->target == NULL) {
		snprintf(err, errlen, "no target");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto nomem;
	c->base = base;
	c->dns = dns;
	c->on_state = on_state;
	c->on_reply_mem = o->on_reply_mem;
	c->arg = arg;
	c->fd = -1;
	c->reported = -1;
	c->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms :
	    DEFAULT_CONNECT_MS;
	c->keepalive_ms = o->keepalive_ms;
	c->max_msg = o->max_message_size ? o->max_message_size :
	    DEFAULT_MAX_MESSAGE;
	c->rng = clock_now_ns() ^ (uint64_t)(uintptr_t)c ^
	    ((uint64_t)getpid() << 32);
	if (c->rng == 0)
		c->rng = 1;
	snprintf(c->reason, sizeof(c->reason), "not connected yet");
	TAILQ_INIT(&c->old);
	TAILQ_INIT(&c->pending);
	TAILQ_INIT(&c->calls);
	c->target = strdup(o->target);
	c->name = strdup(o->name != NULL ? o->name : DEFAULT_NAME);
	if (c->target == NULL || c->name == NULL ||
	    (o->api_key != NULL && (c->api_key = strdup(o->api_key)) == NULL))
		goto nomem;
	if (parse_target(c, o->target, err, errlen) != 0 ||
	    tls_options(c, o, err, errlen) != 0) {
		h2client_free(c);
		return NULL;
	}
	c->attempt_timer = evtimer_new(base, attempt_timeout_cb, c);
	c->backoff_timer = evtimer_new(base, backoff_cb, c);
	c->state_ev = event_new(base, -1, 0, state_cb, c);
	if (c->attempt_timer == NULL || c->backoff_timer == NULL ||
	    c->state_ev == NULL)
		goto nomem;
	if (start)
		attempt_start(c);
	return c;
nomem:
	snprintf(err, errlen, "out of memory");
	h2client_free(c);
	return NULL;
}

struct h2client *
h2client_new(struct event_base *base, struct evdns_base *dns,
    const struct h2client_opts *o, h2_state_fn *on_state, void *arg,
    char *err, size_t errlen)
{
	return client_new(base, dns, o, on_state, arg, err, errlen, 1);
}

/*
 * The test seam (h2client.h): the first attempt as connect_cb() makes it,
 * on the caller's bufferevent instead of a socket.
 */
struct h2client *
h2client_new_bev(struct event_base *base, const struct h2client_opts *o,
    struct bufferevent *bev, h2_state_fn *on_state, void *arg, char *err,
    size_t errlen)
{
	struct h2client_opts plain = *o;
	struct h2client *c;
	struct h2conn *conn;
	struct timeval tv;

	plain.ssl_ctx = NULL;
	if ((c = client_new(base, NULL, &plain, on_state, arg, err, errlen,
	    0)) == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	c->state = ST_CONNECTING;
	tv_ms(&tv, c->connect_ms);
	evtimer_add(c->attempt_timer, &tv);
	if ((conn = conn_new(c, -1, bev)) == NULL) {
		attempt_failed(c, "out of memory");
		return c;
	}
	c->cur = conn;
	c->phase = PH_HANDSHAKE;
	conn_flush(conn);	/* the preface and our SETTINGS */
	return c;
}

void
h2client_free(struct h2client *c)
{
	struct h2conn *conn;
	struct h2call *call;

	if (c == NULL)
		return;
	if (c->dnsreq != NULL) {
		struct evdns_getaddrinfo_request *req = c->dnsreq;

		c->dnsreq = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	if (c->connect_ev != NULL) {
		event_free(c->connect_ev);
		evutil_closesocket(c->fd);
	}
	if (c->cur != NULL)
		conn_destroy(c->cur, NULL);
	while ((conn = TAILQ_FIRST(&c->old)) != NULL)
		conn_destroy(conn, NULL);
	/* Calls are dropped without done; the ones whose body the socket
	 * still references go when libevent frees those buffers, and one
	 * whose on_msg is running goes when it returns. */
	while ((call = TAILQ_FIRST(&c->calls)) != NULL) {
		TAILQ_REMOVE(&c->calls, call, all);
		event_del(call->ev);
		call->c = NULL;
		call->queued = 0;
		call->user = 0;
		msgs_clear(call);
		call_maybe_destroy(call);
	}
	if (c->attempt_timer != NULL)
		event_free(c->attempt_timer);
	if (c->backoff_timer != NULL)
		event_free(c->backoff_timer);
	if (c->state_ev != NULL)
		event_free(c->state_ev);
	if (c->own_dns)
		evdns_base_free(c->dns, 0);
	SSL_CTX_free(c->ssl_ctx);
	free(c->server_name);
	free(c->target);
	free(c->name);
	free(c->authority);
	free(c->api_key);
	free(c->host);
	free(c->port);
	free(c);
}

int
h2client_configure(struct h2client *c, const struct h2client_opts *o)
{
	char *key = NULL, err[128];

	if (o->api_key != NULL && (key = strdup(o->api_key)) == NULL)
		return -1;
	/* New certificates and name for the next connection; a client made
	 * without TLS stays without. */
	if (c->ssl_ctx != NULL && o->ssl_ctx != NULL &&
	    tls_options(c, o, err, sizeof(err)) != 0) {
		free(key);
		return -1;
	}
	if (c->api_key != NULL)
		explicit_bzero(c->api_key, strlen(c->api_key));
	free(c->api_key);
	c->api_key = key;
	c->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms :
	    DEFAULT_CONNECT_MS;
	c->max_msg = o->max_message_size ? o->max_message_size :
	    DEFAULT_MAX_MESSAGE;
	if (o->keepalive_ms != c->keepalive_ms) {
		c->keepalive_ms = o->keepalive_ms;
		if (c->cur != NULL && c->cur->up) {
			if (c->keepalive_ms > 0)
				ping_arm(c->cur);
			else
				evtimer_del(c->cur->ping_ev);
		}
	}
	return 0;
}

int
h2client_up(const struct h2client *c)
{
	return c->up;
}

const char *
h2client_reason(const struct h2client *c)
{
	return c->up ? "" : c->reason;
}

static struct h2call *
call_start(struct h2client *c, const char *path, const struct h2body *body,
    uint64_t deadline, h2_msg_fn *on_msg, h2_done_fn *done, void *arg)
{
	struct h2call *call;

	if ((call = call_new(c, path, deadline, on_msg, done, arg)) == NULL) {
		if (body->release != NULL)
			body->release(body->release_arg);
		return NULL;
	}
	if (path[0] != '/') {
		call->release = body->release;
		call->release_arg = body->release_arg;
		call_finish(call, GRPC_INTERNAL, "bad method path %s", path);
		return call;
	}
	if (call_set_body(call, body) != 0)
		return call;
	if (deadline != 0 && clock_now_ns() >= deadline) {
		call_finish(call, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
		return call;
	}
	call_arm_deadline(call);
	call_enqueue(call);
	return call;
}

struct h2call *
h2client_unary(struct h2client *c, const char *path,
    const ProtobufCMessage *req, uint64_t deadline, h2_done_fn *done,
    void *arg)
{
	struct h2body b = { .msg = req };

	return call_start(c, path, &b, deadline, NULL, done, arg);
}

struct h2call *
h2client_unary_body(struct h2client *c, const char *path,
    const struct h2body *body, uint64_t deadline, h2_done_fn *done,
    void *arg)
{
	return call_start(c, path, body, deadline, NULL, done, arg);
}

struct h2call *
h2client_stream(struct h2client *c, const char *path,
    const ProtobufCMessage *req, uint64_t deadline, h2_msg_fn *on_msg,
    h2_done_fn *done, void *arg)
{
	struct h2body b = { .msg = req };

	return call_start(c, path, &b, deadline, on_msg, done, arg);
}

void
h2call_progress(struct h2call *call, h2_progress_fn *fn, void *arg)
{
	if (call == NULL)
		return;
	call->progress = fn;
	call->progress_arg = arg;
}

void
h2call_max_message(struct h2call *call, uint64_t bytes)
{
	if (call != NULL && call->c != NULL)
		call->df.max = bytes > 0 ? bytes : call->c->max_msg;
}

void
h2call_cancel(struct h2call *call)
{
	struct h2conn *conn;

	if (call == NULL || !call->user)
		return;
	call->user = 0;
	event_del(call->ev);
	msgs_clear(call);
	if (call->queued) {
		TAILQ_REMOVE(&call->c->pending, call, q);
		call->queued = 0;
	}
	conn = call->attached && !call->rst ? call->conn : NULL;
	call->finished = 1;
	call_rst(call);
	/* Still attached: freed when nghttp2 closes the stream. */
	call_maybe_destroy(call);
	if (conn != NULL)
		conn_flush(conn);
}
