/*
 * grpc.c: the gRPC call layer on an HTTP/2 stream (spec §3): request checks
 * (content-type, method, auth, compression), decoding and dispatch to the
 * method's handler, and the reply: HEADERS, length-prefixed messages framed
 * into DATA, trailers with grpc-status and a percent-encoded grpc-message, or
 * Trailers-Only for an error with no body.
 *
 * Where payload bytes are copied on the way through:
 *  - request: the socket's evbuffer -> the deframer's body buffer (one
 *    message must be contiguous for protobuf-c) -> protobuf-c unpacking,
 *    which copies bytes fields into their own allocation. The body is freed
 *    at once; the unpacked payload is what the backend adopts (no further
 *    copy into the memory backend).
 *  - reply: none for the payload. The packer copies the small fields into
 *    an owned buffer and records the payload as a range of a lease; DATA
 *    frames carry that range as evbuffer references whose cleanup drops the
 *    lease once the socket has taken them (spec §6).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "auth.h"
#include "clock.h"
#include "conn.h"
#include "grpc.h"
#include "grpc_frame.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

/* A range at least this large is sent by reference, smaller ones copied:
 * a reference costs an evbuffer chain of its own. */
#define REF_MIN		4096
#define MESSAGE_MAX	1024	/* grpc-message, raw */

struct lease_ref {
	unsigned	 refs;
	struct be_lease	 lease;
};

struct call {
	struct stream		*st;	/* NULL once the stream is gone */
	const struct method	*method;
	uint64_t		 start_ns;
	uint64_t		 deadline;
	void			(*cancel)(struct call *, void *);
	void			*cancel_arg;
	void			(*writable)(struct call *, void *);
	void			*writable_arg;
	size_t			 low_water;
	void			*data;
};

static const char *const status_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *
grpc_status_name(int code)
{
	if (code < 0 || code > GRPC_UNAUTHENTICATED)
		return "UNKNOWN";
	return status_names[code];
}

/* --- leases and reply segments ------------------------------------------ */

static void
lease_ref_drop(struct lease_ref *r)
{
	if (r != NULL && --r->refs == 0) {
		be_lease_release(&r->lease);
		free(r);
	}
}

/* evbuffer reference cleanup: the socket took these bytes. */
static void
evref_done(const void *data, size_t len, void *arg)
{
	lease_ref_drop(arg);
}

static int
seg_push(struct stream *st, const uint8_t *p, size_t len,
    struct lease_ref *ref)
{
	struct outseg *s;

	if (len == 0)
		return 0;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -1;
	s->p = p;
	s->len = len;
	s->ref = ref;
	if (ref != NULL)
		ref->refs++;
	STAILQ_INSERT_TAIL(&st->out, s, entry);
	st->outlen += len;
	return 0;
}

/*
 * A segment that owns len bytes of its own, in the same allocation (one
 * malloc per reply rather than a segment and a buffer); returns where to
 * write them, NULL when out of memory.
 */
static uint8_t *
seg_push_inline(struct stream *st, size_t len)
{
	struct outseg *s;

	if (len > SIZE_MAX - sizeof(*s) ||
	    (s = malloc(sizeof(*s) + len)) == NULL)
		return NULL;
	s->p = (const uint8_t *)(s + 1);
	s->len = len;
	s->off = 0;
	s->ref = NULL;
	STAILQ_INSERT_TAIL(&st->out, s, entry);
	st->outlen += len;
	return (uint8_t *)(s + 1);
}

static void
seg_free(struct outseg *s)
{
	if (s->ref != NULL)
		lease_ref_drop(s->ref);
	else if (s->p != (const uint8_t *)(s + 1))
		free((void *)s->p);
	free(s);
}

/* n bytes of the first segment were framed: forget them. */
static void
seg_consumed(struct stream *st, struct outseg *s, size_t n)
{
	s->off += n;
	st->outlen -= n;
	if (s->off == s->len) {
		STAILQ_REMOVE_HEAD(&st->out, entry);
		seg_free(s);
	}
}

static void
segs_clear(struct stream *st)
{
	struct outseg *s;

	while ((s = STAILQ_FIRST(&st->out)) != NULL) {
		STAILQ_REMOVE_HEAD(&st->out, entry);
		seg_free(s);
	}
	st->outlen = 0;
}

/*
 * A ProtobufCBuffer that appends a packed message to a stream's reply:
 * small fields into an owned buffer, the leased payload by reference.
 */
struct packer {
	ProtobufCBuffer	 base;
	struct stream	*st;
	struct lease_ref *ref;
	uint8_t		*buf;
	size_t		 len, cap;
	int		 failed;
};

static void
packer_flush(struct packer *pk)
{
	if (pk->len > 0 && seg_push(pk->st, pk->buf, pk->len, NULL) != 0) {
		free(pk->buf);
		pk->failed = 1;
	}
	pk->buf = NULL;
	pk->len = pk->cap = 0;
}

static void
packer_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	struct packer *pk = (struct packer *)b;
	const struct be_lease *l = pk->ref != NULL ? &pk->ref->lease : NULL;

	if (pk->failed)
		return;
	if (l != NULL && len >= REF_MIN && data >= l->data &&
	    data + len <= l->data + l->len) {
		packer_flush(pk);
		if (seg_push(pk->st, data, len, pk->ref) != 0)
			pk->failed = 1;
		return;
	}
	if (pk->len + len > pk->cap) {
		size_t cap = pk->cap ? pk->cap : 256;
		uint8_t *nb;

		while (cap < pk->len + len)
			cap *= 2;
		if ((nb = realloc(pk->buf, cap)) == NULL) {
			pk->failed = 1;
			return;
		}
		pk->buf = nb;
		pk->cap = cap;
	}
	memcpy(pk->buf + pk->len, data, len);	/* COPY: small fields */
	pk->len += len;
}

/* Append one length-prefixed message to the stream's reply. */
static int
pack_message(struct stream *st, const ProtobufCMessage *msg,
    struct lease_ref *ref, char *err, size_t errlen)
{
	struct packer pk = { .base = { .append = packer_append }, .st = st,
	    .ref = ref };
	size_t size = protobuf_c_message_get_packed_size(msg);
	uint8_t prefix[GRPC_PREFIX_LEN], *p;

	if (size > st->conn->srv->lim.max_message_size || size > UINT32_MAX) {
		snprintf(err, errlen, "reply of %zu bytes exceeds "
		    "max_message_size", size);
		return -1;
	}
	if (ref == NULL) {
		/* Nothing by reference: one owned buffer of the exact size,
		 * packed in one call (pack_to_buffer appends field by field). */
		if ((p = seg_push_inline(st, GRPC_PREFIX_LEN + size)) == NULL) {
			snprintf(err, errlen, "out of memory packing the reply");
			return -1;
		}
		grpc_frame_prefix(p, (uint32_t)size);
		protobuf_c_message_pack(msg, p + GRPC_PREFIX_LEN);
		return 0;
	}
	/* The fields around the payload, in one buffer sized up front. */
	pk.cap = GRPC_PREFIX_LEN + (size > ref->lease.len ?
	    size - ref->lease.len : 0) + 16;
	if ((pk.buf = malloc(pk.cap)) == NULL) {
		snprintf(err, errlen, "out of memory packing the reply");
		return -1;
	}
	grpc_frame_prefix(prefix, (uint32_t)size);
	packer_append(&pk.base, sizeof(prefix), prefix);
	protobuf_c_message_pack_to_buffer(msg, &pk.base);
	packer_flush(&pk);
	if (pk.failed) {
		segs_clear(st);
		snprintf(err, errlen, "out of memory packing the reply");
		return -1;
	}
	return 0;
}

/* --- responses ------------------------------------------------------------ */

/* Literals: nghttp2 need not copy them. */
#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, \
	sizeof(v) - 1, NGHTTP2_NV_FLAG_NO_COPY_NAME | \
	NGHTTP2_NV_FLAG_NO_COPY_VALUE }
/* A value in a buffer filled later: its length is set then. */
#define NVBUF(n, b) { (uint8_t *)(n), (uint8_t *)(b), sizeof(n) - 1, 0, \
	NGHTTP2_NV_FLAG_NO_COPY_NAME }

/* grpc-status values, so that replies need no snprintf: nghttp2 may keep
 * pointers to them (NGHTTP2_NV_FLAG_NO_COPY_VALUE). */
static const char *const status_codes[] = {
	"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
	"13", "14", "15", "16",
};

/* Fill nv's value with status: a static string when there is one, else
 * buf. */
static void
nv_status(nghttp2_nv *nv, int status, char *buf, size_t cap)
{
	if (status >= 0 && status <= GRPC_UNAUTHENTICATED) {
		nv->value = (uint8_t *)status_codes[status];
		nv->flags |= NGHTTP2_NV_FLAG_NO_COPY_VALUE;
	} else {
		snprintf(buf, cap, "%d", status);
		nv->value = (uint8_t *)buf;
	}
	nv->valuelen = strlen((const char *)nv->value);
}

static void
count(struct stream *st, int status)
{
	metrics_request(st->metric, status, clock_now_ns() - st->start_ns);
}

static void
respond_http(struct stream *st, const char *status)
{
	nghttp2_nv nv[] = { NVBUF(":status", status) };

	nv[0].valuelen = strlen(status);
	st->responded = st->finished = st->trailers_sent = 1;
	if (!st->remote_ended)
		st->rst_after_headers = 1;
	conn_stream_discard(st);
	conn_submit_response(st, nv, 1, 0);
	conn_flush(st->conn);
}

/* An error with no reply body: one HEADERS frame with END_STREAM. */
static void
respond_trailers_only(struct stream *st, int status, const char *msg)
{
	char code[8], enc[3 * MESSAGE_MAX + 1];
	nghttp2_nv nv[] = {
		NV(":status", "200"),
		NV("content-type", "application/grpc"),
		NVBUF("grpc-status", code),
		NVBUF("grpc-message", enc),
	};
	size_t n = 3;

	nv_status(&nv[2], status, code, sizeof(code));
	if (msg != NULL && *msg != '\0') {
		nv[3].valuelen = grpc_percent_encode(msg, enc, sizeof(enc));
		n = 4;
	}
	st->responded = st->finished = st->trailers_sent = 1;
	st->status = status;
	if (!st->remote_ended)
		st->rst_after_headers = 1;
	conn_stream_discard(st);
	count(st, status);
	conn_submit_response(st, nv, n, 0);
	conn_flush(st->conn);
}

static void
stream_fail(struct stream *st, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
stream_fail(struct stream *st, int status, const char *fmt, ...)
{
	char msg[MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	respond_trailers_only(st, status, msg);
}

static int
respond_headers(struct stream *st)
{
	nghttp2_nv nv[] = {
		NV(":status", "200"),
		NV("content-type", "application/grpc"),
		NV("grpc-accept-encoding", "identity"),
	};

	st->responded = 1;
	return conn_submit_response(st, nv, 3, 1);
}

static void
submit_trailers(struct stream *st)
{
	char code[8], enc[3 * MESSAGE_MAX + 1];
	nghttp2_nv nv[] = {
		NVBUF("grpc-status", code),
		NVBUF("grpc-message", enc),
	};
	size_t n = 1;

	nv_status(&nv[0], st->status, code, sizeof(code));
	if (st->message != NULL && *st->message != '\0') {
		nv[1].valuelen = grpc_percent_encode(st->message, enc,
		    sizeof(enc));
		n = 2;
	}
	st->trailers_sent = 1;
	nghttp2_submit_trailer(st->conn->h2, st->id, nv, n);
}

ssize_t
grpc_stream_read(struct stream *st, size_t len, uint32_t *flags)
{
	size_t n;

	if (st->outlen > 0) {
		n = len < st->outlen ? len : st->outlen;
		*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
		if (n == st->outlen && st->finished) {
			*flags |= NGHTTP2_DATA_FLAG_EOF |
			    NGHTTP2_DATA_FLAG_NO_END_STREAM;
			submit_trailers(st);
		}
		return (ssize_t)n;
	}
	if (st->finished) {
		*flags |= NGHTTP2_DATA_FLAG_EOF |
		    NGHTTP2_DATA_FLAG_NO_END_STREAM;
		submit_trailers(st);
		return 0;
	}
	st->deferred = 1;
	return NGHTTP2_ERR_DEFERRED;
}

/*
 * TLS: the frame header and its data copied together into a large chain
 * (encryption copies the bytes anyway, so this costs little), so frames
 * leave in full TLS records instead of a 9-byte record for each header and
 * one per referenced range (spec §11).
 */
static int
send_data_tls(struct stream *st, const uint8_t *framehd, size_t length)
{
	struct outseg *s;
	size_t n, frame = 9 + length;

	if (conn_tls_add(st->conn, framehd, 9, frame) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	while (length > 0 && (s = STAILQ_FIRST(&st->out)) != NULL) {
		n = s->len - s->off;
		if (n > length)
			n = length;
		/* The copy into the records. */
		if (conn_tls_add(st->conn, s->p + s->off, n, frame) != 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		seg_consumed(st, s, n);
		length -= n;
	}
	return 0;
}

int
grpc_stream_send_data(struct stream *st, const uint8_t *framehd,
    size_t length)
{
	struct evbuffer *out = bufferevent_get_output(st->conn->bev);
	struct outseg *s;
	size_t n;

	if (st->conn->tls)
		return send_data_tls(st, framehd, length);
	s = STAILQ_FIRST(&st->out);
	if (s != NULL && s->ref == NULL && s->len - s->off >= length) {
		/* All owned bytes: the frame header and them staged
		 * together (conn_out_add(): one append per flush). */
		if (conn_out_add(st->conn, framehd, 9) != 0 ||
		    conn_out_add(st->conn, s->p + s->off, length) != 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		seg_consumed(st, s, length);
		length = 0;
	} else if (conn_out_add(st->conn, framehd, 9) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	while (length > 0 && (s = STAILQ_FIRST(&st->out)) != NULL) {
		n = s->len - s->off;
		if (n > length)
			n = length;
		if (s->ref != NULL && n >= REF_MIN) {
			/* What is staged goes first. */
			if (conn_out_commit() != 0)
				return NGHTTP2_ERR_CALLBACK_FAILURE;
			s->ref->refs++;
			if (evbuffer_add_reference(out, s->p + s->off, n,
			    evref_done, s->ref) != 0) {
				s->ref->refs--;
				return NGHTTP2_ERR_CALLBACK_FAILURE;
			}
		} else if (conn_out_add(st->conn, s->p + s->off, n) != 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		seg_consumed(st, s, n);
		length -= n;
	}
	/* A streaming handler waiting for room (inside nghttp2: it only
	 * notes it). */
	if (st->call != NULL && st->call->writable != NULL &&
	    st->outlen <= st->call->low_water) {
		void (*fn)(struct call *, void *) = st->call->writable;

		st->call->writable = NULL;
		fn(st->call, st->call->writable_arg);
	}
	return 0;
}

/* --- the call API ---------------------------------------------------------- */

static void
call_detach(struct call *call)
{
	if (call->st != NULL) {
		call->st->call = NULL;
		call->st = NULL;
	}
}

void
call_reply(struct call *call, const ProtobufCMessage *reply,
    struct be_lease *lease)
{
	struct stream *st = call->st;
	struct lease_ref *ref = NULL;
	char err[128];
	int rv;

	if (st == NULL) {
		if (lease != NULL)
			be_lease_release(lease);
		free(call);
		return;
	}
	if (lease != NULL && lease->len < REF_MIN) {
		/* A small payload is copied into the reply anyway: pack it
		 * now and let the lease go (no reference to keep). */
		rv = pack_message(st, reply, NULL, err, sizeof(err));
		be_lease_release(lease);
	} else {
		if (lease != NULL) {
			if ((ref = malloc(sizeof(*ref))) == NULL) {
				be_lease_release(lease);
				call_error(call, GRPC_RESOURCE_EXHAUSTED,
				    "out of memory");
				return;
			}
			ref->refs = 1;		/* ours while packing */
			ref->lease = *lease;
			lease->release = NULL;
		}
		rv = pack_message(st, reply, ref, err, sizeof(err));
		lease_ref_drop(ref);	/* the segments hold it now */
	}
	if (rv != 0) {
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "%s", err);
		return;
	}
	call_detach(call);
	free(call);
	st->finished = 1;
	st->status = GRPC_OK;
	count(st, GRPC_OK);
	if (!st->responded)
		respond_headers(st);
	else
		conn_resume(st);
	conn_flush(st->conn);
}

void
call_error(struct call *call, int status, const char *fmt, ...)
{
	struct stream *st = call->st;
	char msg[MESSAGE_MAX] = "";
	va_list ap;

	call_detach(call);
	free(call);
	if (st == NULL)
		return;
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	if (!st->responded) {
		respond_trailers_only(st, status, msg);
		return;
	}
	st->finished = 1;
	st->status = status;
	free(st->message);
	st->message = strdup(msg);
	count(st, status);
	conn_resume(st);
	conn_flush(st->conn);
}

int
call_send(struct call *call, const ProtobufCMessage *msg)
{
	struct stream *st = call->st;
	char err[128];

	if (st == NULL || pack_message(st, msg, NULL, err, sizeof(err)) != 0)
		return -1;
	if (!st->responded)
		respond_headers(st);
	else
		conn_resume(st);
	conn_flush(st->conn);
	return 0;
}

void
call_set_cancel(struct call *call, void (*fn)(struct call *, void *),
    void *arg)
{
	call->cancel = fn;
	call->cancel_arg = arg;
}

int
call_alive(const struct call *call)
{
	return call->st != NULL;
}

size_t
call_queued(const struct call *call)
{
	return call->st != NULL ? call->st->outlen : 0;
}

void
call_set_writable(struct call *call, void (*fn)(struct call *, void *),
    void *arg, size_t low_water)
{
	call->writable = fn;
	call->writable_arg = arg;
	call->low_water = low_water;
}

void
call_reset(struct call *call, uint32_t h2_error, int status)
{
	struct stream *st = call->st;

	call_detach(call);
	free(call);
	if (st == NULL)
		return;
	/* Nothing more is framed: the data source defers until the RST
	 * closes the stream (finished stays 0, so no trailers follow). */
	segs_clear(st);
	st->status = status;
	st->trailers_sent = 1;
	count(st, status);
	nghttp2_submit_rst_stream(st->conn->h2, NGHTTP2_FLAG_NONE, st->id,
	    h2_error);
	conn_flush(st->conn);
}

uint64_t
call_deadline(const struct call *call)
{
	return call->deadline;
}

void *
call_data(const struct call *call)
{
	return call->data;
}

void
call_set_data(struct call *call, void *data)
{
	call->data = data;
}

/* --- the stream's life ------------------------------------------------------ */

void
grpc_stream_headers_done(struct stream *st)
{
	struct reqinfo *r = &st->req;
	const struct method *m;
	int s;

	if (!r->post) {
		respond_http(st, "405");
		return;
	}
	if (!r->have_ct || !r->grpc_ct) {
		respond_http(st, "415");
		return;
	}
	if ((m = method_find(r->path, r->pathlen)) == NULL) {
		stream_fail(st, GRPC_UNIMPLEMENTED, "unknown method %s",
		    r->pathlen ? r->path : "(none)");
		return;
	}
	st->method = m;
	st->metric = m->metric;
	if (r->bad_timeout) {
		stream_fail(st, GRPC_INVALID_ARGUMENT, "malformed grpc-timeout");
		return;
	}
	if (!(m->flags & METHOD_NO_AUTH) &&
	    (s = auth_check(r->have_key, r->api_key, r->api_key_len)) != 0) {
		stream_fail(st, s, s == GRPC_UNAUTHENTICATED ?
		    "missing api_key metadata" : "invalid api_key");
		return;
	}
}

void
grpc_stream_too_large(struct stream *st, uint64_t announced)
{
	if (st->responded)
		return;
	stream_fail(st, GRPC_RESOURCE_EXHAUSTED, "message of %llu bytes "
	    "exceeds max_message_size %llu", (unsigned long long)announced,
	    (unsigned long long)st->conn->srv->lim.max_message_size);
}

void
grpc_stream_request_done(struct stream *st)
{
	static const uint8_t empty[1];
	const struct method *m = st->method;
	ProtobufCMessage *req;
	struct call *call;

	if (st->responded || st->dispatched || m == NULL)
		return;
	if (grpc_deframer_partial(&st->df)) {
		stream_fail(st, GRPC_INVALID_ARGUMENT,
		    "request ended inside a message");
		return;
	}
	if (!st->have_msg) {
		stream_fail(st, GRPC_INVALID_ARGUMENT,
		    "request carried no message");
		return;
	}
	if (st->extra_msg) {
		stream_fail(st, GRPC_INVALID_ARGUMENT,
		    "unary request carried more than one message");
		return;
	}
	if (st->msg.compressed) {
		stream_fail(st, GRPC_UNIMPLEMENTED, "compressed messages are "
		    "not supported (grpc-encoding %s)",
		    st->req.encoding[0] ? st->req.encoding : "absent");
		return;
	}
	/* COPY: protobuf-c copies the payload out of the body. */
	req = protobuf_c_message_unpack(m->request, NULL, st->msg.len,
	    st->msg.data != NULL ? st->msg.data : empty);
	free(st->msg.data);
	st->msg.data = NULL;
	conn_stream_unreserve(st);
	if (req == NULL) {
		stream_fail(st, GRPC_INVALID_ARGUMENT,
		    "request does not decode as %s", m->request->name);
		return;
	}
	if ((call = calloc(1, sizeof(*call))) == NULL) {
		protobuf_c_message_free_unpacked(req, NULL);
		stream_fail(st, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	call->st = st;
	call->method = m;
	call->start_ns = st->start_ns;
	if (st->req.timeout_ns != 0)
		call->deadline = st->start_ns + st->req.timeout_ns;
	st->call = call;
	st->dispatched = 1;
	m->handler(call, req);
}

void
grpc_stream_closed(struct stream *st)
{
	struct call *call = st->call;

	segs_clear(st);
	free(st->message);
	st->message = NULL;
	if (call == NULL)
		return;
	call_detach(call);
	count(st, GRPC_CANCELLED);
	if (call->cancel != NULL)
		call->cancel(call, call->cancel_arg);
}

void
grpc_stream_drain(struct stream *st)
{
	struct call *call = st->call;

	if (call == NULL || !(call->method->flags & METHOD_STREAMING))
		return;
	call_detach(call);
	if (!st->responded)
		respond_trailers_only(st, GRPC_UNAVAILABLE,
		    "server shutting down");
	else {
		st->finished = 1;
		st->status = GRPC_UNAVAILABLE;
		free(st->message);
		st->message = strdup("server shutting down");
		count(st, GRPC_UNAVAILABLE);
		conn_resume(st);
		conn_flush(st->conn);
	}
	if (call->cancel != NULL)
		call->cancel(call, call->cancel_arg);
}
