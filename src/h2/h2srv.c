/*
 * h2srv.c: the HTTP/2 server transport: one accepted connection (an
 * nghttp2 server session on a bufferevent), its request streams, flow
 * control against max_inflight_bytes, and the handshake, idle and send
 * timeouts. What the streams carry is the upper layer's, reached through
 * the h2s_ops it registered (h2srv.h); this file only moves frames.
 * Cleartext sockets are read by h2_read(); over TLS the bufferevent_openssl
 * runs the handshake, then the connection reads the records itself
 * (h2_read_tls()) and writes them through tlsout.h.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/un.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "h2conn.h"
#include "h2read.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "tls.h"
#include "tlsout.h"

/*
 * Output above this is not added to: nghttp2 is told WOULDBLOCK and the write
 * callback resumes below OUT_LOW. Reply payloads are queued by reference, so
 * this bounds copies and frame headers, not a reply's size.
 */
#define OUT_HIGH		(4u << 20)
#define OUT_LOW			(1u << 20)
/* libevent reads and writes 16 KiB per callback by default (spec §11). */
#define MAX_SINGLE_IO		(1u << 20)
/*
 * Our receive windows. A stream opens with HELD_WINDOW, so one whose
 * body waits for room under max_inflight_bytes can buffer no more than
 * that; a stream whose body is admitted gets a window of the whole body
 * (its memory is reserved already): the sender never waits for a
 * WINDOW_UPDATE, and we send one or two per upload rather than one per
 * half window, each a write and two epoll_ctl for the event loop.
 */
#define HELD_WINDOW		(64u << 10)
#define STREAM_WINDOW_MIN	(1u << 20)
#define STREAM_WINDOW_MAX	((uint32_t)INT32_MAX)	/* HTTP/2's largest */
#define CONN_WINDOW		(16u << 20)
/* Largest DATA frame we accept (peers send no larger). */
#define RECV_FRAME_SIZE		(1u << 18)
/* A closing connection waits this long for the peer's EOF. */
#define LINGER_MS		2000
/* Request header block bound; beyond it the stream is reset. */
#define MAX_HEADER_BYTES	16384
/*
 * Frames nghttp2 may hold queued for one connection (HEADERS, RST_STREAM,
 * WINDOW_UPDATE, SETTINGS and PING, GOAWAY; a stream's DATA is not queued
 * but drawn from its data source) beyond which the peer is flooding us.
 * Some of these answer the peer's frames: while it has not ACKed our
 * SETTINGS, nghttp2 refuses every stream over max_concurrent_streams with
 * an RST_STREAM, and nghttp2 caps only its PING and SETTINGS ACKs
 * (nghttp2_option_set_max_outbound_ack). A peer that opens streams without
 * reading the answers filled that queue for as long as we kept reading it
 * (200 MB in 15 s): output over OUT_HIGH stops what nghttp2 writes, not
 * what it queues. A legitimate connection queues a few frames per open
 * stream (reply HEADERS, trailers, an RST, a WINDOW_UPDATE) and a few
 * refused streams: the bound leaves ample room for those. Input is fed to
 * nghttp2 a slice at a time and the queue looked at after each (h2_feed(),
 * H2_OBQ_PER_STREAM, h2io.h).
 */
/* Bodies up to this size are not held back by max_inflight_bytes, so
 * reads keep flowing while large uploads wait for room: 16 KiB and the
 * 5 bytes of framing a gRPC message carries. */
#define SMALL_BODY		(16384 + 5)

static void	 conn_timer_cb(evutil_socket_t, short, void *);
static void	 tls_takeover(struct h2s_conn *);
static void	 out_writable(void *);
static int	 send_progress(struct h2s_conn *);

#define U(st)	((void *)(st)->u)

/*
 * The stream the last callback was about: a request's header fields, its
 * DATA and END_STREAM arrive one callback each, and nghttp2's lookup by id
 * is a hash probe every time (bench/README.md). Cleared when that stream
 * is freed; one loop thread, so one static.
 */
static struct h2s_stream *hot_st;

static struct h2s_stream *
stream_get(struct h2s_conn *c, int32_t id)
{
	struct h2s_stream *st;

	if (hot_st != NULL && hot_st->conn == c && hot_st->id == id)
		return hot_st;
	if ((st = nghttp2_session_get_stream_user_data(c->h2, id)) != NULL)
		hot_st = st;
	return st;
}

/*
 * Freed streams kept for the next ones (up to STREAM_CACHE): a stream with
 * its upper layer's state is most of a kilobyte, and a burst of requests
 * allocated and freed them through malloc's slower bins. The cache holds
 * streams of one size (one h2s_ops per process).
 */
#define STREAM_CACHE	256
/* Under AddressSanitizer every stream is a malloc() of its own, so that a
 * use after free stays visible. */
#if defined(__SANITIZE_ADDRESS__)
#define STREAM_CACHE_OFF	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STREAM_CACHE_OFF	1
#endif
#endif
#ifndef STREAM_CACHE_OFF
#define STREAM_CACHE_OFF	0
#endif
static struct h2s_stream *stream_cache[STREAM_CACHE];
static size_t nstream_cache;
static size_t stream_cache_size;

static struct h2s_stream *
stream_alloc(size_t size)
{
	struct h2s_stream *st;

	if (size != stream_cache_size) {
		while (nstream_cache > 0)
			free(stream_cache[--nstream_cache]);
		stream_cache_size = size;
	}
	if (nstream_cache == 0)
		return calloc(1, size);
	st = stream_cache[--nstream_cache];
	memset(st, 0, size);
	return st;
}

static void
stream_release(struct h2s_stream *st)
{
	if (!STREAM_CACHE_OFF && nstream_cache < STREAM_CACHE &&
	    sizeof(*st) + st->conn->ops->stream_size == stream_cache_size)
		stream_cache[nstream_cache++] = st;
	else
		free(st);
}

static void	 stream_unreserve(struct h2s_stream *);

static void
stream_free(struct h2s_stream *st)
{
	struct h2s_conn *c = st->conn;

	c->ops->close(U(st));
	h2_body_clear(&st->body);
	if (st->starved) {
		TAILQ_REMOVE(&c->srv->starved, st, starved_entry);
		st->starved = 0;
	}
	stream_unreserve(st);
	TAILQ_REMOVE(&c->streams, st, entry);
	c->nstreams--;
	if (st->headers_done)
		c->nactive--;
	if (hot_st == st)
		hot_st = NULL;
	stream_release(st);
	if (c->nactive == 0)
		h2s_conn_rearm_timer(c);
}

/* --- flow control -------------------------------------------------------- */

static void
stream_unreserve(struct h2s_stream *st)
{
	if (st->reserved == 0)
		return;
	uint64_t r = st->reserved;
	st->reserved = 0;
	server_inflight(st->conn->srv, -(int64_t)r);
}

/*
 * A request body counts against max_inflight_bytes from the moment the
 * upper layer announces it (h2s_expect(): gRPC knows it from a message's
 * prefix). A stream whose body does not fit keeps receiving only what its
 * window already allows: we hold back the stream's window (never the
 * connection's, so that a reserved upload on the same connection always
 * completes and frees room: no deadlock). One body is always admitted when
 * nothing else is reserved, even if it alone is larger than the limit.
 */
int
h2s_stream_admit(struct h2s_stream *st)
{
	struct h2s_conn *c = st->conn;
	struct server *srv = c->srv;

	if (st->reserved == 0 && st->expect > SMALL_BODY) {
		uint64_t need = st->expect;

		if (srv->inflight != 0 &&
		    srv->inflight + need > srv->lim.max_inflight_bytes)
			return 0;
		st->reserved = need;
		server_inflight(srv, (int64_t)need);
		/* Admitted: let the upload run at full window. */
		nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE,
		    st->id, (int32_t)(need < STREAM_WINDOW_MIN ?
		    STREAM_WINDOW_MIN : need > STREAM_WINDOW_MAX ?
		    STREAM_WINDOW_MAX : need));
	}
	if (st->unconsumed > 0) {
		/* The WINDOW_UPDATE goes out with the caller's next flush. */
		nghttp2_session_consume_stream(c->h2, st->id, st->unconsumed);
		st->unconsumed = 0;
	}
	return 1;
}

void
h2s_expect(struct h2s_stream *st, uint64_t bytes)
{
	st->expect = bytes;
}

const char *
h2s_peer(const struct h2s_stream *st)
{
	return st->conn->peer;
}

void
h2s_release(struct h2s_stream *st)
{
	st->expect = 0;
	stream_unreserve(st);
}

void
h2s_discard(struct h2s_stream *st)
{
	struct h2s_conn *c = st->conn;

	st->discard = 1;
	st->expect = 0;
	if (st->starved) {
		TAILQ_REMOVE(&c->srv->starved, st, starved_entry);
		st->starved = 0;
	}
	stream_unreserve(st);
	if (st->unconsumed > 0) {
		nghttp2_session_consume_stream(c->h2, st->id, st->unconsumed);
		st->unconsumed = 0;
	}
}

/* --- nghttp2 callbacks -------------------------------------------------- */

static ssize_t
send_cb(nghttp2_session *h2, const uint8_t *data, size_t len, int flags,
    void *arg)
{
	struct h2s_conn *c = arg;

	if (h2_out_full(&c->out, OUT_HIGH))
		return NGHTTP2_ERR_WOULDBLOCK;
	/* Over TLS, frames of a burst share records (h2io.h). */
	if (h2_out_add(&c->out, data, len, len) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)len;
}

static int
send_data_cb(nghttp2_session *h2, nghttp2_frame *frame, const uint8_t *framehd,
    size_t length, nghttp2_data_source *source, void *arg)
{
	struct h2s_conn *c = arg;
	struct h2s_stream *st = source->ptr;

	if (h2_out_full(&c->out, OUT_HIGH))
		return NGHTTP2_ERR_WOULDBLOCK;
	switch (h2_out_data(&c->out, framehd, &st->body, length)) {
	case 0:
		break;
	case -2:	/* the stream only: its queue is shorter than the frame */
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	default:
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	if (c->ops->written != NULL)
		c->ops->written(U(st), st->body.len);
	return 0;
}

static int
begin_headers_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
	struct h2s_conn *c = arg;
	struct h2s_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if ((st = stream_alloc(sizeof(*st) + c->ops->stream_size)) == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	st->conn = c;
	st->id = frame->hd.stream_id;
	h2_body_init(&st->body);
	TAILQ_INSERT_TAIL(&c->streams, st, entry);
	c->nstreams++;
	/* Not active before its header block is whole: a block trickled
	 * byte by byte stays under the idle timer. */
	nghttp2_session_set_stream_user_data(h2, st->id, st);
	c->ops->open(U(st), st);
	return 0;
}

static int
header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
    void *arg)
{
	struct h2s_conn *c = arg;
	struct h2s_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;		/* request trailers: nothing we use */
	if ((st = stream_get(c, frame->hd.stream_id)) == NULL)
		return 0;
	/* SETTINGS_MAX_HEADER_LIST_SIZE is advisory: enforce it (RFC 9113
	 * counts 32 bytes of overhead per field). */
	st->header_bytes += namelen + valuelen + 32;
	if (st->header_bytes > MAX_HEADER_BYTES) {
		log_debug("request headers too large", "peer=%s bytes=%zu",
		    c->peer, st->header_bytes);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	c->ops->header(U(st), name, namelen, value, valuelen);
	return 0;
}

static int
frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
	struct h2s_conn *c = arg;
	struct h2s_stream *st;

	if (!c->got_frame) {
		c->got_frame = 1;
		h2s_conn_rearm_timer(c);
	}
	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		if ((st = stream_get(c, frame->hd.stream_id)) == NULL)
			return 0;
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
			st->headers_done = 1;
			if (c->nactive++ == 0 && c->timer != NULL &&
			    !c->lingering)
				evtimer_del(c->timer);
			c->ops->headers_done(U(st));
		}
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
			st->remote_ended = 1;
			c->ops->end(U(st));
		}
		break;
	case NGHTTP2_DATA:
		if ((st = stream_get(c, frame->hd.stream_id)) == NULL)
			return 0;
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
			st->remote_ended = 1;
			c->ops->end(U(st));
		}
		break;
	}
	return 0;
}

static int
data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t id,
    const uint8_t *data, size_t len, void *arg)
{
	struct h2s_conn *c = arg;
	struct h2s_stream *st = stream_get(c, id);

	if (st == NULL || st->discard) {
		nghttp2_session_consume(h2, id, len);
		return 0;
	}
	c->ops->data(U(st), data, len);
	if (st->discard) {
		/* Answered from inside data(): nothing more is counted. */
		nghttp2_session_consume(h2, id, len);
		return 0;
	}
	/* The connection window always flows (see h2s_stream_admit). */
	nghttp2_session_consume_connection(h2, len);
	st->unconsumed += len;
	if (st->starved)
		return 0;
	if (!h2s_stream_admit(st)) {
		st->starved = 1;
		TAILQ_INSERT_TAIL(&c->srv->starved, st, starved_entry);
	}
	return 0;
}

static int
frame_send_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
	struct h2s_conn *c = arg;
	struct h2s_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	st = stream_get(c, frame->hd.stream_id);
	/* A complete response while the client is still sending: tell it to
	 * stop (RFC 9113 §8.1; gRPC's RST_STREAM NO_ERROR after
	 * Trailers-Only). */
	if (st != NULL && !st->remote_ended)
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, st->id,
		    NGHTTP2_NO_ERROR);
	return 0;
}

static int
stream_close_cb(nghttp2_session *h2, int32_t id, uint32_t error_code,
    void *arg)
{
	struct h2s_conn *c = arg;
	struct h2s_stream *st = stream_get(c, id);

	if (st != NULL) {
		nghttp2_session_set_stream_user_data(h2, id, NULL);
		stream_free(st);
	}
	return 0;
}

/* The reply's data source: frame what is queued (by reference: nghttp2
 * calls send_data_cb), then the trailers. */
static ssize_t
data_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *source, void *arg)
{
	struct h2s_conn *c = arg;
	struct h2s_stream *st = source->ptr;
	size_t n = st->body.len;

	if (st->reset) {
		st->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (n > 0) {
		if (n > len)
			n = len;
		*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
		if (n == st->body.len && st->body_ended) {
			*flags |= NGHTTP2_DATA_FLAG_EOF |
			    NGHTTP2_DATA_FLAG_NO_END_STREAM;
			c->ops->trailers(U(st));
		}
		return (ssize_t)n;
	}
	if (st->body_ended) {
		*flags |= NGHTTP2_DATA_FLAG_EOF |
		    NGHTTP2_DATA_FLAG_NO_END_STREAM;
		c->ops->trailers(U(st));
		return 0;
	}
	st->deferred = 1;
	return NGHTTP2_ERR_DEFERRED;
}

/*
 * Cleartext DATA frames as large as the peer accepts (its
 * SETTINGS_MAX_FRAME_SIZE) and the windows allow, up to MAX_DATA_FRAME,
 * rather than nghttp2's 16 KiB: a 64 MiB reply is then hundreds of frames,
 * not thousands, each an evbuffer chain and a callback less. Payload bytes
 * go by reference (NGHTTP2_DATA_FLAG_NO_COPY), so a frame's size costs no
 * copy.
 */
#define MAX_DATA_FRAME		(1u << 20)
#define TLS_DATA_FRAME		(256u << 10)

static ssize_t
read_length_cb(nghttp2_session *h2, uint8_t type, int32_t id,
    int32_t conn_window, int32_t stream_window, uint32_t max_frame,
    void *arg)
{
	struct h2s_conn *c = arg;
	/* Over TLS during the handshake the output's chains are sized for
	 * 16 KiB frames (tls_out_add()): nghttp2's default there. After it,
	 * whole records are encrypted straight from the body (tlsout.h),
	 * TLS_DATA_FRAME at a time: a frame is encrypted at once, whatever
	 * the output holds already. */
	ssize_t n = !c->tls ? MAX_DATA_FRAME : c->out.t != NULL ?
	    TLS_DATA_FRAME : 16384;

	if ((ssize_t)max_frame < n)
		n = (ssize_t)max_frame;
	if (conn_window < n)
		n = conn_window;
	if (stream_window < n)
		n = stream_window;
	return n > 0 ? n : 1;
}

static int
error_cb(nghttp2_session *h2, int code, const char *msg, size_t len, void *arg)
{
	struct h2s_conn *c = arg;

	log_debug("http2 error", "peer=%s error=\"%.*s\"", c->peer, (int)len,
	    msg);
	return 0;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *h2options;

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
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb,
	    begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, header_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb,
	    frame_recv_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb,
	    data_chunk_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb,
	    frame_send_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
	    stream_close_cb);
	nghttp2_session_callbacks_set_error_callback2(cb, error_cb);
	nghttp2_session_callbacks_set_data_source_read_length_callback(cb,
	    read_length_cb);
	if (nghttp2_option_new(&h2options) != 0) {
		nghttp2_session_callbacks_del(cb);
		return -1;
	}
	/* Window updates are ours to send: max_inflight_bytes (spec §4.6). */
	nghttp2_option_set_no_auto_window_update(h2options, 1);
	nghttp2_option_set_max_send_header_block_length(h2options, 65536);
	/* No closed streams kept for the RFC 7540 priority tree, which no
	 * gRPC client uses: less work per stream (bench/README.md). */
	nghttp2_option_set_no_closed_streams(h2options, 1);
	callbacks = cb;
	return 0;
}

/* --- answering on a stream ----------------------------------------------- */

int
h2s_respond(struct h2s_stream *st, const nghttp2_nv *nv, size_t nvlen,
    int with_body)
{
	nghttp2_data_provider prd;

	prd.source.ptr = st;
	prd.read_callback = data_read_cb;
	return nghttp2_submit_response(st->conn->h2, st->id, nv, nvlen,
	    with_body ? &prd : NULL) == 0 ? 0 : -1;
}

int
h2s_trailers(struct h2s_stream *st, const nghttp2_nv *nv, size_t nvlen)
{
	return nghttp2_submit_trailer(st->conn->h2, st->id, nv, nvlen) == 0 ?
	    0 : -1;
}

struct h2_body *
h2s_body(struct h2s_stream *st)
{
	return &st->body;
}

void
h2s_body_end(struct h2s_stream *st)
{
	st->body_ended = 1;
}

void
h2s_resume(struct h2s_stream *st)
{
	if (st->deferred) {
		st->deferred = 0;
		nghttp2_session_resume_data(st->conn->h2, st->id);
	}
	h2s_conn_flush(st->conn);
}

void
h2s_reset(struct h2s_stream *st, uint32_t h2_error)
{
	/* Nothing more is framed: the data source defers until the RST
	 * closes the stream (no trailers follow). The queue stays until
	 * then: a DATA frame nghttp2 was told to wait for (WOULDBLOCK) is
	 * written from it whole before the RST can go. */
	st->reset = 1;
	nghttp2_submit_rst_stream(st->conn->h2, NGHTTP2_FLAG_NONE, st->id,
	    h2_error);
	h2s_conn_flush(st->conn);
}

void
h2s_flush(struct h2s_stream *st)
{
	h2s_conn_flush(st->conn);
}

/* --- the connection ----------------------------------------------------- */

static void
linger_readcb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	evbuffer_drain(in, evbuffer_get_length(in));
}

static void
linger_eventcb(struct bufferevent *bev, short what, void *arg)
{
	h2s_conn_free(arg);
}

static void
linger_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	h2s_conn_free(arg);
}

/* Lingering on a socket we read ourselves: what arrives is dropped. */
static void
linger_sockcb(evutil_socket_t fd, short what, void *arg)
{
	char junk[16384];
	ssize_t n;

	while ((n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR))
		h2s_conn_free(arg);
}

/*
 * Everything is written: close without losing it. close(2) on a socket
 * with unread input sends RST, and a RST destroys reply bytes the peer has
 * not read yet (its WINDOW_UPDATEs are exactly such input). So send FIN,
 * discard what still arrives, and close on the peer's EOF or after
 * LINGER_MS.
 */
static void
conn_finish(struct h2s_conn *c)
{
	struct timeval tv = { LINGER_MS / 1000, (LINGER_MS % 1000) * 1000 };
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	if (c->lingering)
		return;
	c->lingering = 1;
	/* TLS: close_notify first, so the peer knows no bytes were cut.
	 * Nothing is queued (we get here with the output empty): ours
	 * takes it at once; what the socket did not take is dropped. */
	if (c->tls && c->tls_up) {
		SSL_shutdown(bufferevent_openssl_get_ssl(c->bev));
		if (c->out.t != NULL) {
			h2_out_flush(&c->out);
			h2_out_forget(&c->out);
		}
	}
	shutdown(fd, SHUT_WR);
	evtimer_del(c->timer);
	evtimer_assign(c->timer, c->srv->base, linger_timer_cb, c);
	evtimer_add(c->timer, &tv);
	if (c->rev != NULL) {
		/* Our reader gives way to one that drops the bytes. */
		event_free(c->rev);
		if ((c->rev = event_new(c->srv->base, fd, EV_READ | EV_PERSIST,
		    linger_sockcb, c)) == NULL ||
		    event_add(c->rev, NULL) != 0) {
			h2s_conn_free(c);
			return;
		}
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		linger_sockcb(fd, EV_READ, c);
		return;
	}
	bufferevent_setcb(c->bev, linger_readcb, NULL, linger_eventcb, c);
	bufferevent_disable(c->bev, EV_WRITE);
	bufferevent_enable(c->bev, EV_READ);
	linger_readcb(c->bev, c);
}

void
h2s_conn_flush(struct h2s_conn *c)
{
	if (c->in_recv || c->lingering)
		return;		/* readcb sends once nghttp2 returns */
	if (nghttp2_session_send(c->h2) != 0 || h2_out_flush(&c->out) != 0) {
		if (c->out.t != NULL)
			log_debug("connection error", "peer=%s error=\"%s\"",
			    c->peer, strerror(errno));
		h2s_conn_free(c);
		return;
	}
	if (!nghttp2_session_want_read(c->h2) &&
	    !nghttp2_session_want_write(c->h2)) {
		if (h2_out_len(&c->out) == 0)
			conn_finish(c);
		else
			c->closing = 1;
	}
}

/* Feed n bytes to nghttp2 (h2_feed()): a queue of frames past obq_max
 * sets c->flooded and fails with NGHTTP2_ERR_FLOODED. */
static ssize_t
conn_recv(struct h2s_conn *c, const uint8_t *p, size_t n)
{
	int flooded = 0;
	ssize_t rv;

	rv = h2_feed(c->h2, p, n, c->obq_max, &flooded);
	if (flooded)
		c->flooded = 1;
	return rv;
}

/* Send what nghttp2 has queued (a GOAWAY among it), then close once it
 * is written. */
static void
send_and_close(struct h2s_conn *c)
{
	nghttp2_session_send(c->h2);
	if (h2_out_flush(&c->out) != 0) {
		h2s_conn_free(c);
		return;
	}
	c->closing = 1;
	if (h2_out_len(&c->out) == 0)
		conn_finish(c);
}

/*
 * conn_recv() found the queue past its bound: GOAWAY ENHANCE_YOUR_CALM,
 * which drops the queued frames as nghttp2 reaches them. Unless our output
 * is full: then the peer is not reading what we wrote, the GOAWAY would
 * wait behind it until send_timeout, and the connection is closed now.
 */
static void
flood_close(struct h2s_conn *c)
{
	log_info("HTTP/2 frame flood", "peer=%s queued=%zu", c->peer,
	    nghttp2_session_get_outbound_queue_size(c->h2));
	if (h2_out_full(&c->out, OUT_HIGH)) {
		h2s_conn_free(c);
		return;
	}
	nghttp2_session_terminate_session(c->h2, NGHTTP2_ENHANCE_YOUR_CALM);
	c->goaway_sent = 1;
	send_and_close(c);
}

/* nghttp2 refused what it was fed: tell the peer why when it has a GOAWAY
 * queued, then close. */
static void
recv_failed(struct h2s_conn *c, int rv)
{
	if (c->flooded) {
		flood_close(c);
		return;
	}
	log_debug("http2 receive failed", "peer=%s error=\"%s\"", c->peer,
	    nghttp2_strerror(rv));
	send_and_close(c);
}

/* A TLS ClientHello (a handshake record, 0x16) where the HTTP/2 preface
 * belongs: say so once, plainly. 1 when that is what came. */
static int
sniff_tls(struct h2s_conn *c, uint8_t first)
{
	c->sniffed = 1;
	if (first != 0x16)
		return 0;
	log_info("TLS client on a cleartext port", "peer=%s", c->peer);
	return 1;
}

/* The bufferevent's input: TLS, and bufferevents without a socket (the
 * fuzz harness's pair). */
static void
readcb(struct bufferevent *bev, void *arg)
{
	struct h2s_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	ssize_t rv;

	if (!c->tls && !c->sniffed && evbuffer_get_length(in) > 0) {
		unsigned char b;

		if (evbuffer_copyout(in, &b, 1) == 1 && sniff_tls(c, b)) {
			h2s_conn_free(c);
			return;
		}
	}
	c->in_recv = 1;
	while ((n = evbuffer_get_contiguous_space(in)) > 0) {
		rv = conn_recv(c, evbuffer_pullup(in, n), n);
		if (rv < 0) {
			c->in_recv = 0;
			recv_failed(c, (int)rv);
			return;
		}
		evbuffer_drain(in, (size_t)rv);
	}
	c->in_recv = 0;
	h2s_conn_flush(c);
}

static int
sock_feed(void *arg, const uint8_t *p, size_t n)
{
	struct h2s_conn *c = arg;
	ssize_t rv;

	if (!c->sniffed && sniff_tls(c, p[0]))
		return -1;
	if ((rv = conn_recv(c, p, n)) < 0) {
		c->recv_err = (int)rv;
		return -1;
	}
	return 0;
}

/*
 * TLS after the handshake: records read by h2_read_tls() (read-ahead, one
 * read(2) for many records), first what bufferevent_openssl had already
 * taken. Bytes may wait inside the SSL object where the socket will not
 * announce them: a spent budget, or a close seen after data, comes back
 * by itself.
 */
static void
tls_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct h2s_conn *c = arg;
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	struct evbuffer *in = bufferevent_get_input(c->bev);
	char why[192];
	enum h2_read_result r;
	size_t n, got;
	ssize_t rv;

	c->in_recv = 1;
	while ((n = evbuffer_get_contiguous_space(in)) > 0) {
		rv = conn_recv(c, evbuffer_pullup(in, n), n);
		if (rv < 0) {
			c->in_recv = 0;
			event_del(c->rev);
			recv_failed(c, (int)rv);
			return;
		}
		evbuffer_drain(in, (size_t)rv);
	}
	r = h2_read_tls(ssl, sock_feed, c, &got);
	c->in_recv = 0;
	h2_read_tls_pace(ssl, got, &c->tls_bulk);
	switch (r) {
	case H2R_DRAINED:
		break;
	case H2R_BUDGET:
		event_active(c->rev, EV_READ, 1);
		break;
	case H2R_STOP:
		event_del(c->rev);
		recv_failed(c, c->recv_err);
		return;
	case H2R_EOF:
		h2s_conn_free(c);
		return;
	case H2R_ERROR:
		log_debug("connection error", "peer=%s error=\"%s\"", c->peer,
		    tls_failure_ssl(ssl, NULL, why, sizeof(why)));
		h2s_conn_free(c);
		return;
	}
	h2s_conn_flush(c);
}

/* No send progress for send_timeout on our TLS output (as eventcb). */
static void
out_timeout(void *arg)
{
	struct h2s_conn *c = arg;

	if (send_progress(c)) {
		tls_out_resume(c->out.t);
		return;
	}
	log_info("send timeout", "peer=%s", c->peer);
	h2s_conn_free(c);
}

static void
out_error(void *arg, int err)
{
	struct h2s_conn *c = arg;

	log_debug("connection error", "peer=%s error=\"%s\"", c->peer,
	    strerror(err));
	h2s_conn_free(c);
}

static const struct tls_out_cb out_cb = {
	out_writable, out_timeout, out_error
};

/*
 * The handshake is done: the records are ours to read and write from now
 * on (h2read.h, tlsout.h); the bufferevent_openssl is left disabled, the
 * owner of the socket and the SSL until the connection is freed.
 */
static void
tls_takeover(struct h2s_conn *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	struct timeval tv;

	if (fd < 0 || ssl == NULL)
		return;
	tv.tv_sec = (time_t)(c->srv->lim.send_ms / 1000);
	tv.tv_usec = (suseconds_t)(c->srv->lim.send_ms % 1000) * 1000;
	if (h2_out_tls_start(&c->out, ssl, fd, &tv, OUT_LOW, &out_cb,
	    c) != 0 || (c->rev = event_new(c->srv->base, fd,
	    EV_READ | EV_PERSIST, tls_readcb, c)) == NULL ||
	    event_add(c->rev, NULL) != 0) {
		log_warn("out of memory", "peer=%s", c->peer);
		h2s_conn_free(c);
		return;
	}
	c->sniffed = 1;			/* the preface is nghttp2's to check */
	h2_read_tls_start(ssl);
	/* Records the SSL may hold already; our SETTINGS go out with the
	 * flush after that read. */
	event_active(c->rev, EV_READ, 1);
}

/* A cleartext socket is readable: large reads straight into nghttp2. */
static void
sock_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct h2s_conn *c = arg;
	enum h2_read_result r;

	c->in_recv = 1;
	r = h2_read(fd, sock_feed, c, NULL);
	c->in_recv = 0;
	switch (r) {
	case H2R_DRAINED:
	case H2R_BUDGET:
		break;
	case H2R_STOP:
		if (c->recv_err == 0) {		/* TLS on a cleartext port */
			h2s_conn_free(c);
			return;
		}
		event_del(c->rev);
		recv_failed(c, c->recv_err);
		return;
	case H2R_EOF:
		/* As with the bufferevent: what came before the EOF was
		 * handled at the previous readiness; the peer is gone. */
		h2s_conn_free(c);
		return;
	case H2R_ERROR:
		log_debug("connection error", "peer=%s error=\"%s\"", c->peer,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		h2s_conn_free(c);
		return;
	}
	h2s_conn_flush(c);
}

/* The output went below OUT_LOW. */
static void
out_writable(void *arg)
{
	struct h2s_conn *c = arg;

	if (c->closing) {
		if (h2_out_len(&c->out) == 0)
			conn_finish(c);
		return;
	}
	h2s_conn_flush(c);
}

static void
writecb(struct bufferevent *bev, void *arg)
{
	out_writable(arg);
}

/* A TLS handshake that failed: one line saying why. A client that closed
 * before sending anything (a port probe) is not worth more than debug. */
static void
tls_refused(struct h2s_conn *c, short what)
{
	char reason[192], subject[256], junk[4096];
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	enum tls_fail kind;

	/* Our alert is written. Closing with unread input would send RST,
	 * which can destroy the alert before the client reads it (a TLS 1.3
	 * client sends its first request right after its Finished): read
	 * what came, then FIN; h2s_conn_free() closes. */
	while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
	shutdown(fd, SHUT_WR);
	tls_failure(c->bev, &kind, reason, sizeof(reason));
	switch (kind) {
	case TLS_FAIL_PLAINTEXT:
		log_info("cleartext client on a TLS port", "peer=%s "
		    "reason=\"%s\"", c->peer, reason);
		break;
	case TLS_FAIL_PEER_CERT:
		log_warn("client certificate refused", "peer=%s subject=\"%s\" "
		    "reason=\"%s\"", c->peer,
		    tls_peer_subject(bufferevent_openssl_get_ssl(c->bev),
		    subject, sizeof(subject)), reason);
		break;
	case TLS_FAIL_ALPN:
		log_info("TLS client refused", "peer=%s reason=\"%s\"",
		    c->peer, reason);
		break;
	case TLS_FAIL_IO:
		log_debug("closed during the TLS handshake", "peer=%s "
		    "reason=\"%s\"", c->peer, reason);
		break;
	default:
		log_info("TLS handshake failed", "peer=%s reason=\"%s\"",
		    c->peer, reason);
	}
}

/*
 * send_timeout is time without send progress. libevent sees progress only
 * when the socket turns writable, which Linux reports once about a third
 * of the send buffer drained, and on loopback that buffer grows to
 * megabytes: a reader that is slow but steady would be cut while it reads.
 * So a send timeout also asks the kernel: a send queue that shrank since
 * the last timeout is progress, and the timer runs again. A reader that
 * stopped is therefore cut within two periods of send_timeout.
 */
static int
send_progress(struct h2s_conn *c)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	int q, moved;

	if (fd < 0 || ioctl(fd, SIOCOUTQ, &q) == -1)
		return 0;
	moved = q < c->outq_seen;
	c->outq_seen = q;
	return moved;
}

static void
eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct h2s_conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		c->tls_up = 1;		/* ALPN h2 was agreed (tls.c) */
		tls_takeover(c);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING) &&
	    send_progress(c)) {
		/* libevent disabled writing on the timeout: resume. */
		bufferevent_enable(c->bev, EV_WRITE);
		return;
	}
	if (c->tls && !c->tls_up && !(what & BEV_EVENT_TIMEOUT))
		tls_refused(c, what);
	else if (what & BEV_EVENT_TIMEOUT)
		log_info("send timeout", "peer=%s", c->peer);
	else if (what & BEV_EVENT_ERROR)
		log_debug("connection error", "peer=%s error=\"%s\"", c->peer,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	h2s_conn_free(c);
}

void
h2s_conn_rearm_timer(struct h2s_conn *c)
{
	uint64_t ms;
	struct timeval tv;

	if (c->timer == NULL || c->lingering)
		return;
	evtimer_del(c->timer);
	if (!c->got_frame)
		ms = c->srv->lim.handshake_ms;
	else if (c->nactive == 0)
		ms = c->srv->lim.idle_ms;
	else
		return;
	if (ms == 0)
		return;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2s_conn *c = arg;

	if (!c->got_frame) {
		log_info("handshake timeout", "peer=%s", c->peer);
		h2s_conn_free(c);
		return;
	}
	log_debug("idle timeout", "peer=%s", c->peer);
	nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
	c->goaway_sent = 1;
	h2s_conn_flush(c);
}

static void
peer_name(const struct sockaddr *sa, int len, char *buf, size_t cap)
{
	char host[INET6_ADDRSTRLEN];

	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, cap, "%s:%u", host, ntohs(in->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
		break;
	}
	default:
		snprintf(buf, cap, "unix");
	}
}

struct h2s_conn *
h2s_conn_new(struct server *srv, evutil_socket_t fd, const struct sockaddr *sa,
    int salen)
{
	struct bufferevent *bev;
	char peer[64];
	int one = 1;

	peer_name(sa, salen, peer, sizeof(peer));
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (tls_server_ctx() != NULL) {
		/* The handshake runs under handshake_timeout like the
		 * preface; the SSL holds a reference to the context current
		 * now, so a reload does not touch this connection. */
		SSL *ssl;

		if ((ssl = tls_server_ssl_new()) == NULL) {
			evutil_closesocket(fd);
			return NULL;
		}
		/* (An SSL on the socket itself. A filter over a socket
		 * bufferevent writes many records per writev() and took a
		 * quarter less CPU per byte of a 64 MiB reply, but served a
		 * third of the 1 KiB Gets per second: bench/tls.py.) */
		bev = bufferevent_openssl_socket_new(srv->base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (bev == NULL) {
			/* Out of memory; libevent may have freed ssl and
			 * closed fd on its way out: leak rather than free
			 * twice. */
			return NULL;
		}
		tls_watch_first_byte(ssl);
		/* A peer closing without close_notify is an EOF, not an
		 * error: HTTP/2 knows when it is done. */
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
		/* bufferevent_openssl reads 4 KiB per SSL_read unless a read
		 * high-water mark says more (readcb always empties input). */
		bufferevent_setwatermark(bev, EV_READ, 0, MAX_SINGLE_IO);
		return h2s_conn_new_bev(srv, bev, peer);
	}
	bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		return NULL;
	}
	return h2s_conn_new_bev(srv, bev, peer);
}

struct h2s_conn *
h2s_conn_new_bev(struct server *srv, struct bufferevent *bev, const char *peer)
{
	struct h2s_conn *c;
	struct timeval tv;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		    (uint32_t)srv->lim.max_concurrent_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, HELD_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_FRAME_SIZE, RECV_FRAME_SIZE },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES },
	};

	if (h2_setup() != 0 || (c = calloc(1, sizeof(*c))) == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	c->srv = srv;
	c->ops = srv->ops;
	c->bev = bev;
	c->tls = bufferevent_openssl_get_ssl(bev) != NULL;
	c->out.bev = bev;
	c->out.tls = c->tls;
	c->outq_seen = INT_MAX;
	/* From the limit announced to this connection: a reload changes
	 * it for the next ones. */
	c->obq_max = H2_OBQ_PER_STREAM *
	    (size_t)srv->lim.max_concurrent_streams + H2_OBQ_SLACK;
	TAILQ_INIT(&c->streams);
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	if (nghttp2_session_server_new3(&c->h2, callbacks, c, h2options,
	    h2_mem()) != 0)
		goto fail;
	nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv,
	    sizeof(iv) / sizeof(iv[0]));
	nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
	    CONN_WINDOW);
	bufferevent_set_max_single_read(c->bev, MAX_SINGLE_IO);
	bufferevent_set_max_single_write(c->bev, MAX_SINGLE_IO);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
	bufferevent_setcb(c->bev, readcb, writecb, eventcb, c);
	/* send_timeout: libevent's write timeout runs only while output is
	 * pending and restarts on every progress. */
	tv.tv_sec = (time_t)(srv->lim.send_ms / 1000);
	tv.tv_usec = (suseconds_t)(srv->lim.send_ms % 1000) * 1000;
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	if (!c->tls && bufferevent_getfd(bev) >= 0) {
		/* Cleartext on a socket: we read it (h2read.h), the
		 * bufferevent writes. */
		c->rev = event_new(srv->base, bufferevent_getfd(bev),
		    EV_READ | EV_PERSIST, sock_readcb, c);
		if (c->rev == NULL || event_add(c->rev, NULL) != 0)
			goto fail;
		bufferevent_enable(c->bev, EV_WRITE);
	} else
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if ((c->timer = evtimer_new(srv->base, conn_timer_cb, c)) == NULL)
		goto fail;
	h2s_conn_rearm_timer(c);
	TAILQ_INSERT_TAIL(&srv->conns, c, entry);
	srv->nconns++;
	metrics_connections(1);
	h2s_conn_flush(c);		/* our SETTINGS */
	return c;
fail:
	if (c->rev != NULL)
		event_free(c->rev);
	if (c->h2 != NULL)
		nghttp2_session_del(c->h2);
	bufferevent_free(c->bev);
	free(c);
	return NULL;
}

void
h2s_conn_free(struct h2s_conn *c)
{
	struct h2s_stream *st;

	/* nghttp2_session_del() calls no stream-close callback: close ours
	 * first, so pending calls are detached and leases released. */
	while ((st = TAILQ_FIRST(&c->streams)) != NULL)
		stream_free(st);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->rev != NULL)
		event_free(c->rev);
	nghttp2_session_del(c->h2);
	h2_out_forget(&c->out);
	/* Frees queued output; reference cleanups release their leases. */
	bufferevent_free(c->bev);
	TAILQ_REMOVE(&c->srv->conns, c, entry);
	c->srv->nconns--;
	metrics_connections(-1);
	server_conn_closed(c->srv, c);
	free(c);
}

void
h2s_conn_drain(struct h2s_conn *c)
{
	struct h2s_stream *st, *sn;

	/* Walking the streams: no flush (that may free them); the caller
	 * flushes. */
	c->in_recv = 1;
	TAILQ_FOREACH_SAFE(st, &c->streams, entry, sn)
		c->ops->drain(U(st));
	nghttp2_submit_shutdown_notice(c->h2);
	c->in_recv = 0;
}

void
h2s_conn_goaway(struct h2s_conn *c)
{
	if (c->goaway_sent)
		return;
	c->goaway_sent = 1;
	nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
	    nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
	    NULL, 0);
	h2s_conn_flush(c);
}
