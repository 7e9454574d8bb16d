/*
 * h2c_conn.c: one connection of the client (h2client.h): the nghttp2
 * client session on a bufferevent, cleartext or TLS (ALPN h2), reading and
 * writing, keepalive PINGs, and nghttp2's callbacks, which hand what
 * concerns a call to h2c_call.c and what concerns the link (SETTINGS,
 * GOAWAY, a lost connection) to h2c_link.c.
 *
 * On the wire it is the server's connection (h2srv.c), through h2io.h:
 * nghttp2 allocates from h2_mem(); frames are staged in the bufferevent's
 * output and committed once per flush (or packed into TLS records), and
 * nghttp2 is told WOULDBLOCK above OUT_HIGH; DATA frames are NO_COPY,
 * framed by h2_out_data() from the call's body, large ranges as evbuffer
 * references (so the socket reads a request body in place). Nothing
 * flushes while nghttp2 is inside a callback. Cleartext sockets are read
 * by h2_read(); TLS, once the handshake is done, is read by h2_read_tls()
 * and written by tlsout.h (the bufferevent_openssl only shakes hands).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "h2c_internal.h"
#include "h2client.h"
#include "h2io.h"
#include "h2read.h"
#include "log.h"
#include "tls.h"
#include "tlsout.h"

/* Output above this is not added to (as h2srv.c); the write callback
 * resumes below OUT_LOW. Bodies are queued by reference, so this bounds
 * frame headers and small copies, not a request's size. */
#define OUT_HIGH		(4u << 20)
#define OUT_LOW			(1u << 20)
/* libevent reads and writes 16 KiB per callback by default (spec §11). */
#define MAX_SINGLE_IO		(1u << 20)
/*
 * Frames nghttp2 may hold queued for the server (as h2srv.c does for its
 * clients). A server can make nghttp2 queue an answer to each of its frames
 * that nghttp2 does not cap itself (SETTINGS and PING ACKs are capped by
 * max_outbound_ack): a PUSH_PROMISE on a stream of ours, before it ACKed the
 * SETTINGS that turned push off, is answered with RST_STREAM(CANCEL), one
 * per frame of some 13 bytes. A server that sends those and never reads
 * would grow our queue without end. So the server's bytes are fed a slice
 * at a time (h2_feed(), h2io.h), and past H2_OBQ_PER_STREAM frames per
 * stream of ours (HEADERS waiting for a slot, a cancel, WINDOW_UPDATEs) plus
 * H2_OBQ_SLACK (the ACKs nghttp2 allows, our PINGs and SETTINGS) the
 * connection ends as an HTTP/2 error (GOAWAY ENHANCE_YOUR_CALM when our
 * output has room for it).
 */
#define H2C_FLOOD_REASON	"HTTP/2 error: frame flood (too many frames " \
				"queued in answer to the server's)"

static void	 h2c_conn_fail(struct h2conn *, const char *reason);

/* --- nghttp2 callbacks ---------------------------------------------------- */

static ssize_t
h2c_conn_send_cb(nghttp2_session *h2, const uint8_t *data, size_t len,
    int flags, void *arg)
{
	struct h2conn *conn = arg;

	if (h2_out_full(&conn->out, OUT_HIGH))
		return NGHTTP2_ERR_WOULDBLOCK;
	/* Over TLS, frames of a burst share records (h2io.h). */
	if (h2_out_add(&conn->out, data, len, len) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)len;
}

static int
h2c_conn_send_data_cb(nghttp2_session *h2, nghttp2_frame *frame,
    const uint8_t *framehd, size_t length, nghttp2_data_source *src,
    void *arg)
{
	struct h2conn *conn = arg;
	struct h2call *call = src->ptr;

	if (h2_out_full(&conn->out, OUT_HIGH))
		return NGHTTP2_ERR_WOULDBLOCK;
	/* Large ranges by reference in cleartext: they hold call->ref, so
	 * the bytes stay until the socket took them. */
	if (h2_out_data(&conn->out, framehd, &call->body, length) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	conn->c->tgt[conn->ti].st.sent_bytes += length;
	h2c_call_report_progress(call);
	return 0;
}

static int
h2c_conn_header_cb(nghttp2_session *h2, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value,
    size_t valuelen, uint8_t flags, void *arg)
{
	struct h2call *call;

	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (call == NULL || call->finished)
		return 0;
	h2c_call_header(call, frame->headers.cat == NGHTTP2_HCAT_RESPONSE,
	    name, namelen, value, valuelen);
	return 0;
}

static int
h2c_conn_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame,
    void *arg)
{
	struct h2conn *conn = arg;
	struct h2call *call;

	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		call = nghttp2_session_get_stream_user_data(h2,
		    frame->hd.stream_id);
		if (call != NULL)
			h2c_call_frame(call, frame);
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
		/* Acted upon once nghttp2 returns (h2c_conn_after_io); nghttp2
		 * now closes the streams above last_stream_id, REFUSED. */
		conn->goaway = 1;
		conn->goaway_last = frame->goaway.last_stream_id;
		conn->goaway_code = frame->goaway.error_code;
		break;
	}
	return 0;
}

static int
h2c_conn_data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t id,
    const uint8_t *data, size_t len, void *arg)
{
	struct h2conn *conn = arg;
	struct h2call *call = nghttp2_session_get_stream_user_data(h2, id);

	/* Counted for the target even when the call is gone. */
	conn->c->tgt[conn->ti].st.received_bytes += len;
	/* nghttp2 gives the window back by itself once we return. */
	if (call != NULL)
		h2c_call_data(call, data, len);
	return 0;
}

static int
h2c_conn_stream_close_cb(nghttp2_session *h2, int32_t id, uint32_t err,
    void *arg)
{
	struct h2conn *conn = arg;
	struct h2call *call = nghttp2_session_get_stream_user_data(h2, id);

	if (call == NULL || !call->attached || call->conn != conn)
		return 0;
	h2c_call_detach(call);
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
			h2c_call_reset_for_retry(call);
			h2c_link_enqueue(call);
			return 0;
		}
		h2c_call_outcome(call, err);
	}
	h2c_call_maybe_destroy(call);
	return 0;
}

static int
h2c_conn_error_cb(nghttp2_session *h2, int code, const char *msg,
    size_t len, void *arg)
{
	struct h2conn *conn = arg;

	log_debug("upstream http2 error", "target=%s error=\"%.*s\"",
	    conn->c->target, (int)len, msg);
	snprintf(conn->h2err, sizeof(conn->h2err), "%.*s", (int)len, msg);
	return 0;
}

static nghttp2_session_callbacks *h2c_conn_callbacks;

static int
h2c_conn_setup(void)
{
	nghttp2_session_callbacks *cb;

	if (h2c_conn_callbacks != NULL)
		return 0;
	if (nghttp2_session_callbacks_new(&cb) != 0)
		return -1;
	nghttp2_session_callbacks_set_send_callback(cb, h2c_conn_send_cb);
	nghttp2_session_callbacks_set_send_data_callback(cb,
	    h2c_conn_send_data_cb);
	nghttp2_session_callbacks_set_on_header_callback(cb,
	    h2c_conn_header_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb,
	    h2c_conn_frame_recv_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb,
	    h2c_conn_data_chunk_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
	    h2c_conn_stream_close_cb);
	nghttp2_session_callbacks_set_error_callback2(cb, h2c_conn_error_cb);
	h2c_conn_callbacks = cb;
	return 0;
}

/* --- life ----------------------------------------------------------------- */

/*
 * Our receive window, the same for each stream and for the connection
 * (h2client.h, Windows): one fetch may use all of it. nghttp2 sends
 * WINDOW_UPDATE by itself as data is consumed (a client has no reason to
 * hold the server back); it applies SETTINGS_INITIAL_WINDOW_SIZE to the
 * open streams once the server acknowledges it.
 */
int
h2c_conn_set_window(struct h2conn *conn, uint32_t window)
{
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window },
	};

	if (nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, 1) != 0 ||
	    nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE,
	    0, (int32_t)window) != 0)
		return -1;
	return 0;
}

/*
 * Free a connection. Its calls still waiting fail with UNAVAILABLE and
 * the reason (reason NULL: h2client_free(), they are dropped).
 * nghttp2_session_del() calls no stream-close callback: detach them here.
 */
void
h2c_conn_destroy(struct h2conn *conn, const char *reason)
{
	struct h2client *c = conn->c;
	struct h2call *call;
	uint64_t now = clock_now_ns();

	while ((call = TAILQ_FIRST(&conn->streams)) != NULL) {
		h2c_call_detach(call);
		/* With other targets to fail over to, a unary call that had
		 * no reply yet waits for the next connection, within its
		 * deadline (h2client.h, Failover); sent twice at worst. */
		if (reason != NULL && call->user && !call->finished &&
		    c->ntgt > 1 && !call->streaming && !call->got_headers &&
		    !call->rst && (call->deadline == 0 ||
		    now < call->deadline)) {
			h2c_call_reset_for_retry(call);
			TAILQ_INSERT_TAIL(&c->pending, call, q);
			call->queued = 1;
			continue;
		}
		if (reason != NULL && call->user && !call->finished)
			h2c_call_fail_unreachable(call, reason);
		h2c_call_maybe_destroy(call);
	}
	if (c->cur == conn)
		c->cur = NULL;
	else
		TAILQ_REMOVE(&c->old, conn, entry);
	if (conn->ping_ev != NULL)
		event_free(conn->ping_ev);
	if (conn->rev != NULL)
		event_free(conn->rev);
	nghttp2_session_del(conn->h2);
	h2_out_forget(&conn->out);
	/* Frees queued output; reference cleanups drop the body refs (now,
	 * or when libevent finalizes the bufferevent). */
	bufferevent_free(conn->bev);
	free(conn);
	/* Calls of an old connection moved to pending (above) go to the
	 * connection up at once. */
	if (reason != NULL && c->state == H2C_UP && c->cur != NULL &&
	    !c->cur->in_h2 && !TAILQ_EMPTY(&c->pending)) {
		h2c_link_pending_submit(c);
		if (c->cur != NULL)
			h2c_conn_flush(c->cur);
	}
}

static void
h2c_conn_fail(struct h2conn *conn, const char *reason)
{
	struct h2client *c = conn->c;

	if (conn != c->cur)
		h2c_conn_destroy(conn, reason);
	else if (conn->up)
		h2c_link_lost(c, reason);
	else
		h2c_link_attempt_failed(c, "%s", reason);
}

void
h2c_conn_flush(struct h2conn *conn)
{
	int rv;

	if (conn->in_h2)
		return;		/* the reader flushes once nghttp2 returns */
	conn->in_h2 = 1;
	rv = nghttp2_session_send(conn->h2);
	conn->in_h2 = 0;
	/* What was staged goes to the output before the loop writes it
	 * (over TLS, written now). */
	if (rv == 0 && h2_out_flush(&conn->out) != 0) {
		char reason[H2C_REASON_MAX];

		if (conn->out.t != NULL) {
			h2c_errstr(errno, reason, sizeof(reason));
			h2c_conn_fail(conn, reason);
			return;
		}
		rv = NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	if (rv != 0) {
		char reason[H2C_REASON_MAX];

		snprintf(reason, sizeof(reason), "HTTP/2 send failed: %s",
		    nghttp2_strerror(rv));
		h2c_conn_fail(conn, reason);
		return;
	}
	/* Done: GOAWAY seen and no stream left, or nghttp2 ended the session
	 * over a protocol error (a server that is not HTTP/2): say which. */
	if (!nghttp2_session_want_read(conn->h2) &&
	    !nghttp2_session_want_write(conn->h2)) {
		char reason[H2C_REASON_MAX];

		if (conn->h2err[0] == '\0')
			snprintf(reason, sizeof(reason), "connection closed");
		else
			snprintf(reason, sizeof(reason), "HTTP/2 error: %s",
			    conn->h2err);
		h2c_conn_fail(conn, reason);
	}
}

void
h2c_conn_ping_arm(struct h2conn *conn)
{
	struct timeval tv;

	h2c_tv_ms(&tv, conn->c->keepalive_ms);
	evtimer_add(conn->ping_ev, &tv);
}

static void
h2c_conn_ping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2conn *conn = arg;

	if (conn->ping_out && !conn->rx) {
		char reason[H2C_REASON_MAX], per[32];

		h2c_fmt_ms(conn->c->keepalive_ms, per, sizeof(per));
		snprintf(reason, sizeof(reason), "no PING answer within %s",
		    per);
		h2c_conn_fail(conn, reason);
		return;
	}
	conn->rx = 0;
	if (!conn->ping_out) {
		nghttp2_submit_ping(conn->h2, NGHTTP2_FLAG_NONE, NULL);
		conn->ping_out = 1;
	}
	h2c_conn_ping_arm(conn);
	h2c_conn_flush(conn);
}

/* After nghttp2 read: act on what it reported, then write. */
static void
h2c_conn_after_io(struct h2conn *conn)
{
	struct h2client *c = conn->c;

	if (conn == c->cur && !conn->up && conn->got_settings)
		h2c_link_up(conn);
	if (conn == c->cur && conn->goaway)
		h2c_link_goaway(conn);
	/* Calls refused by an old connection's GOAWAY go to the new one
	 * (h2c_link_enqueue() sends them at once unless the new one was
	 * busy). */
	if (c->cur != NULL && c->cur != conn && c->state == H2C_UP &&
	    !TAILQ_EMPTY(&c->pending)) {
		h2c_link_pending_submit(c);
		if (c->cur != NULL && c->cur != conn)
			/* May fail c->cur, never conn. */
			h2c_conn_flush(c->cur);
	}
	if (conn == c->cur)
		h2c_link_pending_submit(c);
	h2c_conn_flush(conn);
}

/* Feed n bytes to nghttp2 (h2_feed()): a queue of frames past the bound
 * sets conn->flooded and fails with NGHTTP2_ERR_FLOODED. */
static ssize_t
h2c_conn_recv(struct h2conn *conn, const uint8_t *p, size_t n)
{
	int flooded = 0;
	ssize_t rv;

	rv = h2_feed(conn->h2, p, n, H2_OBQ_PER_STREAM * conn->nstreams +
	    H2_OBQ_SLACK, &flooded);
	if (flooded)
		conn->flooded = 1;
	return rv;
}

/* nghttp2 refused what it was fed: tell the server why, if nghttp2 queued
 * a GOAWAY, and give up the connection. A flood (h2c_conn_recv()) is said
 * with GOAWAY ENHANCE_YOUR_CALM unless our output is full (the server does
 * not read: it would never get there). */
static void
h2c_conn_recv_failed(struct h2conn *conn, int rv)
{
	char reason[H2C_REASON_MAX];

	if (conn->flooded) {
		log_warn("upstream HTTP/2 frame flood", "target=%s queued=%zu",
		    conn->c->target,
		    nghttp2_session_get_outbound_queue_size(conn->h2));
		snprintf(reason, sizeof(reason), "%s", H2C_FLOOD_REASON);
		if (h2_out_full(&conn->out, OUT_HIGH)) {
			h2c_conn_fail(conn, reason);
			return;
		}
		nghttp2_session_terminate_session(conn->h2,
		    NGHTTP2_ENHANCE_YOUR_CALM);
	} else
		snprintf(reason, sizeof(reason), "HTTP/2 error: %s",
		    nghttp2_strerror(rv));
	nghttp2_session_send(conn->h2);
	h2_out_flush(&conn->out);
	h2c_conn_fail(conn, reason);
}

/* The bufferevent's input: TLS, and the test seam's bufferevents. */
static void
h2c_conn_readcb(struct bufferevent *bev, void *arg)
{
	struct h2conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	ssize_t rv = 0;

	conn->rx = 1;
	conn->in_h2 = 1;
	while ((n = evbuffer_get_contiguous_space(in)) > 0) {
		rv = h2c_conn_recv(conn, evbuffer_pullup(in, n), n);
		if (rv < 0)
			break;
		evbuffer_drain(in, (size_t)rv);
	}
	conn->in_h2 = 0;
	if (rv < 0) {
		h2c_conn_recv_failed(conn, (int)rv);
		return;
	}
	h2c_conn_after_io(conn);
}

static int
h2c_conn_sock_feed(void *arg, const uint8_t *p, size_t n)
{
	struct h2conn *conn = arg;
	ssize_t rv;

	if ((rv = h2c_conn_recv(conn, p, n)) < 0) {
		conn->recv_err = (int)rv;
		return -1;
	}
	return 0;
}

/* A cleartext socket is readable: large reads straight into nghttp2
 * (h2read.h: libevent 2.1 reads 4 KiB at a time). */
static void
h2c_conn_sock_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct h2conn *conn = arg;
	char reason[H2C_REASON_MAX];
	enum h2_read_result r;
	size_t got;

	conn->in_h2 = 1;
	r = h2_read(fd, h2c_conn_sock_feed, conn, &got);
	conn->in_h2 = 0;
	if (got > 0)
		conn->rx = 1;		/* traffic, for the keepalive */
	switch (r) {
	case H2R_DRAINED:
	case H2R_BUDGET:
		h2c_conn_after_io(conn);
		return;
	case H2R_STOP:
		event_del(conn->rev);
		h2c_conn_recv_failed(conn, conn->recv_err);
		return;
	case H2R_EOF:
		snprintf(reason, sizeof(reason), "connection closed by the "
		    "server");
		break;
	case H2R_ERROR:
		h2c_errstr(errno, reason, sizeof(reason));
		break;
	}
	h2c_conn_fail(conn, reason);
}

static void
h2c_conn_writecb(struct bufferevent *bev, void *arg)
{
	h2c_conn_flush(arg);
}

/* TLS after the handshake: what the server's records carried, or why
 * reading them failed (as h2c_conn_eventcb() says it). */
static void
h2c_conn_tls_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct h2conn *conn = arg;
	SSL *ssl = bufferevent_openssl_get_ssl(conn->bev);
	struct evbuffer *in = bufferevent_get_input(conn->bev);
	char reason[H2C_REASON_MAX], why[H2C_REASON_MAX - 8];
	enum h2_read_result r;
	enum tls_fail kind;
	size_t n, got;
	ssize_t rv;
	int err;

	conn->in_h2 = 1;
	while ((n = evbuffer_get_contiguous_space(in)) > 0) {
		rv = h2c_conn_recv(conn, evbuffer_pullup(in, n), n);
		if (rv < 0) {
			conn->in_h2 = 0;
			event_del(conn->rev);
			h2c_conn_recv_failed(conn, (int)rv);
			return;
		}
		evbuffer_drain(in, (size_t)rv);
	}
	r = h2_read_tls(ssl, h2c_conn_sock_feed, conn, &got);
	conn->in_h2 = 0;
	if (got > 0)
		conn->rx = 1;
	h2_read_tls_pace(ssl, got, &conn->tls_bulk);
	switch (r) {
	case H2R_BUDGET:
		event_active(conn->rev, EV_READ, 1);
		/* FALLTHROUGH */
	case H2R_DRAINED:
		h2c_conn_after_io(conn);
		return;
	case H2R_STOP:
		event_del(conn->rev);
		h2c_conn_recv_failed(conn, conn->recv_err);
		return;
	case H2R_EOF:
		snprintf(reason, sizeof(reason), "connection closed by the "
		    "server");
		break;
	case H2R_ERROR:
	default:
		/* An alert (a TLS 1.3 server refuses a client certificate
		 * after the client's Finished), or a socket error. */
		err = errno;
		tls_failure_ssl(ssl, &kind, why, sizeof(why));
		if (kind != TLS_FAIL_IO)
			snprintf(reason, sizeof(reason), "TLS: %s", why);
		else if (err != 0)
			h2c_errstr(err, reason, sizeof(reason));
		else
			snprintf(reason, sizeof(reason), "connection error");
		break;
	}
	h2c_conn_fail(conn, reason);
}

static void
h2c_conn_out_writable(void *arg)
{
	h2c_conn_flush(arg);
}

static void
h2c_conn_out_timeout(void *arg)
{
	/* No send timeout is set on the client. */
}

static void
h2c_conn_out_error(void *arg, int err)
{
	char reason[H2C_REASON_MAX];

	h2c_errstr(err, reason, sizeof(reason));
	h2c_conn_fail(arg, reason);
}

static const struct tls_out_cb h2c_conn_out_cb = {
	h2c_conn_out_writable, h2c_conn_out_timeout, h2c_conn_out_error
};

/* The handshake is done: the records are ours from now on (h2read.h,
 * tlsout.h); the bufferevent_openssl stays, disabled, as the owner of the
 * socket and the SSL. 0, or -1 (out of memory). */
static int
h2c_conn_tls_takeover(struct h2conn *conn)
{
	SSL *ssl = bufferevent_openssl_get_ssl(conn->bev);
	evutil_socket_t fd = bufferevent_getfd(conn->bev);

	if (fd < 0 || ssl == NULL)
		return 0;
	if (h2_out_tls_start(&conn->out, ssl, fd, NULL, OUT_LOW,
	    &h2c_conn_out_cb, conn) != 0 ||
	    (conn->rev = event_new(conn->c->base, fd, EV_READ | EV_PERSIST,
	    h2c_conn_tls_readcb, conn)) == NULL ||
	    event_add(conn->rev, NULL) != 0)
		return -1;
	h2_read_tls_start(ssl);
	/* Records the SSL may hold already, then our preface and SETTINGS
	 * (queued during the handshake) with the flush after that read. */
	event_active(conn->rev, EV_READ, 1);
	return 0;
}

static void
h2c_conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct h2conn *conn = arg;
	char reason[H2C_REASON_MAX], why[H2C_REASON_MAX - 8];

	if (what & BEV_EVENT_CONNECTED) {
		/* The TLS handshake is done: our preface and SETTINGS,
		 * queued already, go out now. */
		if (!tls_alpn_is_h2(bufferevent_openssl_get_ssl(bev))) {
			h2c_conn_fail(conn, "TLS: the server did not agree to "
			    "ALPN h2");
			return;
		}
		conn->tls_up = 1;
		if (h2c_conn_tls_takeover(conn) != 0)
			h2c_conn_fail(conn, "out of memory");
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
			h2c_conn_fail(conn, reason);
			return;
		}
	}
	if (what & BEV_EVENT_EOF)
		snprintf(reason, sizeof(reason), "connection closed by the "
		    "server");
	else if (what & BEV_EVENT_ERROR) {
		int err = EVUTIL_SOCKET_ERROR();

		if (err != 0)
			h2c_errstr(err, reason, sizeof(reason));
		else
			snprintf(reason, sizeof(reason), "connection error");
	}
	else
		return;
	h2c_conn_fail(conn, reason);
}

/* A connection on socket fd, or, from h2client_new_bev(), on bev (already
 * connected; fd unused). Either is the connection's, even on failure. */
struct h2conn *
h2c_conn_new(struct h2client *c, evutil_socket_t fd, struct bufferevent *bev)
{
	struct h2conn *conn;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->window },
	};

	if (h2c_conn_setup() != 0 ||
	    (conn = calloc(1, sizeof(*conn))) == NULL) {
		if (bev != NULL)
			bufferevent_free(bev);
		else
			evutil_closesocket(fd);
		return NULL;
	}
	conn->c = c;
	conn->ti = c->ti;
	TAILQ_INIT(&conn->streams);
	if (bev != NULL)
		conn->bev = bev;	/* the test seam: no socket, no TLS */
	else if (c->ssl_ctx != NULL) {
		/* ALPN h2 and SNI; the handshake ends before the server's
		 * SETTINGS can arrive, so nothing else changes. Each SSL
		 * holds a reference to the context it was made from. */
		char err[H2C_REASON_MAX];
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
	conn->out.bev = conn->bev;
	conn->out.tls = conn->tls;
	/* nghttp2's allocations from h2io's free lists, as the server's. */
	if (nghttp2_session_client_new3(&conn->h2, h2c_conn_callbacks, conn,
	    NULL, h2_mem()) != 0)
		goto fail;
	if (nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv,
	    sizeof(iv) / sizeof(iv[0])) != 0 ||
	    nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE,
	    0, (int32_t)c->window) != 0)
		goto fail;
	if ((conn->ping_ev = evtimer_new(c->base, h2c_conn_ping_cb,
	    conn)) == NULL)
		goto fail;
	bufferevent_set_max_single_read(conn->bev, MAX_SINGLE_IO);
	bufferevent_set_max_single_write(conn->bev, MAX_SINGLE_IO);
	bufferevent_setwatermark(conn->bev, EV_WRITE, OUT_LOW, 0);
	bufferevent_setcb(conn->bev, h2c_conn_readcb, h2c_conn_writecb,
	    h2c_conn_eventcb, conn);
	if (bev == NULL && !conn->tls) {
		/* Cleartext on a socket: we read it, the bufferevent
		 * writes. */
		if ((conn->rev = event_new(c->base, fd, EV_READ | EV_PERSIST,
		    h2c_conn_sock_readcb, conn)) == NULL ||
		    event_add(conn->rev, NULL) != 0)
			goto fail;
		bufferevent_enable(conn->bev, EV_WRITE);
	} else
		bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	return conn;
fail:
	if (conn->rev != NULL)
		event_free(conn->rev);
	if (conn->h2 != NULL)
		nghttp2_session_del(conn->h2);
	bufferevent_free(conn->bev);
	free(conn);
	return NULL;
}
