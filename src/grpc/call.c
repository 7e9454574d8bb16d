/*
 * call.c: the gRPC call layer on HTTP/2 streams (spec §3). It registers
 * its stream callbacks into the transport (grpc_server_ops, h2srv.h) and
 * keeps its own per-stream state: request checks (content-type, method,
 * auth, compression), deframing and decoding, dispatch to the method's
 * handler, and the reply: HEADERS, length-prefixed messages queued on the
 * stream's body, trailers with grpc-status and a percent-encoded
 * grpc-message, or Trailers-Only for an error with no body. Every gRPC
 * response's HEADERS carry the response metadata (grpc.h): the server-wide
 * headers kept here and the call's own, kept in its stream's state (the
 * call itself is freed before its response is submitted).
 *
 * Where payload bytes are copied on the way through:
 *  - request: the socket's read buffer -> the deframer's body buffer (one
 *    message, contiguous). A method with a decoder (SharedData: sdwire.h)
 *    decodes around it: the body goes to the handler with the request, and
 *    is what the memory backend adopts (no further copy). Other methods'
 *    requests are unpacked by protobuf-c, which copies bytes fields into
 *    their own allocation, and the body is freed at once.
 *  - reply: none for the payload. The packer copies the small fields into
 *    an owned buffer and queues the payload as a range of a lease; the
 *    transport sends that range by reference and drops the lease once the
 *    socket has taken it (h2io.h, spec §6).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "bigbuf.h"
#include "clock.h"
#include "grpc.h"
#include "grpc_frame.h"
#include "h2io.h"
#include "h2srv.h"
#include "log.h"
#include "metrics.h"

#define MESSAGE_MAX	1024	/* grpc-message, raw */

/* One response metadata header, copied. */
struct meta {
	char	 name[GRPC_META_NAME_MAX + 1];
	char	 value[GRPC_META_VALUE_MAX + 1];
};

/* What the request's headers carried that the call layer needs. */
struct reqinfo {
	unsigned	 post:1;		/* :method POST */
	unsigned	 grpc_ct:1;		/* content-type application/grpc[+proto] */
	unsigned	 have_ct:1;
	unsigned	 have_key:1;		/* api_key present */
	int		 key_status;		/* auth_check() of it, the last
						   one if several */
	unsigned	 encoding_ok:1;		/* grpc-encoding absent or identity */
	unsigned	 bad_timeout:1;
	uint64_t	 timeout_ns;		/* grpc-timeout, 0 = none */
	char		 path[128];
	size_t		 pathlen;
	char		 encoding[32];
};

/* The call layer's state of one stream (h2s_ops.stream_size bytes). */
struct gstream {
	struct h2s_stream	*hs;
	struct reqinfo		 req;
	const struct method	*method;
	int			 metric;	/* enum metric_method */
	uint64_t		 start_ns;

	/* Request body. */
	struct grpc_deframer	 df;
	struct grpc_message	 msg;		/* the first complete message */
	unsigned		 have_msg:1;
	unsigned		 extra_msg:1;	/* a unary call got two */
	unsigned		 dispatched:1;	/* the request went to a handler */

	/* Reply. */
	struct call		*call;		/* dispatched, not yet finished */
	unsigned		 responded:1;	/* response HEADERS submitted */
	unsigned		 finished:1;	/* status decided, trailers due */
	int			 status;
	char			*message;	/* grpc-message, raw */
	struct meta		 meta[GRPC_META_CALL_MAX]; /* call_set_meta() */
	size_t			 nmeta;

	/* Request metadata kept (grpc.h): "name\0value", malloc'ed each;
	 * the call takes them when dispatched. */
	char			*rmeta[GRPC_REQ_META_MAX];
	size_t			 nrmeta;
};

struct lease_ref {
	struct h2_ref	 ref;
	struct lease	 lease;
};

struct call {
	struct gstream		*st;	/* NULL once the stream is gone */
	const struct method	*method;
	uint64_t		 start_ns;
	uint64_t		 deadline;
	void			(*cancel)(struct call *, void *);
	void			*cancel_arg;
	void			(*writable)(struct call *, void *);
	void			*writable_arg;
	size_t			 low_water;
	void			*data;
	char			*rmeta[GRPC_REQ_META_MAX];	/* call_meta() */
	size_t			 nrmeta;
	/* A message sent piece by piece (call_message_begin()). */
	unsigned		 in_message:1;
	size_t			 message_left;	/* bytes still to come */
};

/* What the composition root registered (grpc_server_configure()). */
static const struct method *methods;
static size_t nmethods;
static uint64_t max_message_size = 4u << 20;
/* grpc_server_set_meta(). */
static struct meta server_meta[GRPC_META_SERVER_MAX];
static size_t nserver_meta;

void
grpc_server_configure(const struct method *table, size_t n,
    uint64_t max_message)
{
	methods = table;
	nmethods = n;
	max_message_size = max_message;
}

static const struct method *
method_find(const char *path, size_t len)
{
	size_t i;

	for (i = 0; i < nmethods; i++)
		if (strlen(methods[i].path) == len &&
		    memcmp(methods[i].path, path, len) == 0)
			return &methods[i];
	return NULL;
}

/* --- response metadata ---------------------------------------------------- */

static int
meta_check(const char *name, const char *value)
{
	if (name == NULL || !grpc_meta_name_ok(name, strlen(name))) {
		log_warn("response metadata refused: bad name", "name=\"%s\"",
		    name != NULL ? name : "(null)");
		return -1;
	}
	if (value != NULL && !grpc_meta_value_ok(value, strlen(value))) {
		log_warn("response metadata refused: bad value", "name=%s "
		    "len=%zu", name, strlen(value));
		return -1;
	}
	return 0;
}

/* Set name to value in a table of n (of max) entries; value NULL removes
 * it. 0, or -1 when the table is full. */
static int
meta_put(struct meta *t, size_t *n, size_t max, const char *name,
    const char *value)
{
	size_t i;

	for (i = 0; i < *n && strcmp(t[i].name, name) != 0; i++)
		;
	if (value == NULL) {
		if (i < *n) {
			t[i] = t[*n - 1];
			(*n)--;
		}
		return 0;
	}
	if (i == *n) {
		if (*n == max)
			return -1;
		snprintf(t[i].name, sizeof(t[i].name), "%s", name);
		(*n)++;
	}
	snprintf(t[i].value, sizeof(t[i].value), "%s", value);
	return 0;
}

void
grpc_server_set_meta(const char *name, const char *value)
{
	if (meta_check(name, value) != 0)
		return;
	if (meta_put(server_meta, &nserver_meta, GRPC_META_SERVER_MAX, name,
	    value) != 0)
		log_warn("response metadata refused: too many server-wide "
		    "headers", "name=%s max=%d", name, GRPC_META_SERVER_MAX);
}

static nghttp2_nv
meta_nv(const struct meta *m, uint8_t flags)
{
	nghttp2_nv nv = { (uint8_t *)m->name, (uint8_t *)m->value,
	    strlen(m->name), strlen(m->value), flags };

	return nv;
}

/*
 * Append the response metadata to nv (room for GRPC_META_SERVER_MAX +
 * GRPC_META_CALL_MAX more) and return the new count. No NO_COPY flags:
 * nghttp2 copies the fields at submission, since a server-wide value may
 * change while the HEADERS wait in its queue. The call's own values (a
 * generation per reply) are never indexed: they would only churn the HPACK
 * table, where the server-wide ones stay and cost a byte or two each.
 */
static size_t
nv_meta(const struct gstream *st, nghttp2_nv *nv, size_t n)
{
	size_t i, j;

	for (i = 0; i < nserver_meta; i++) {
		for (j = 0; j < st->nmeta; j++)
			if (strcmp(st->meta[j].name, server_meta[i].name) == 0)
				break;
		if (j == st->nmeta)
			nv[n++] = meta_nv(&server_meta[i],
			    NGHTTP2_NV_FLAG_NONE);
	}
	for (j = 0; j < st->nmeta; j++)
		nv[n++] = meta_nv(&st->meta[j], NGHTTP2_NV_FLAG_NO_INDEX);
	return n;
}

/* --- leases --------------------------------------------------------------- */

static void
lease_ref_release(struct h2_ref *r)
{
	struct lease_ref *lr = (struct lease_ref *)r;

	lease_release(&lr->lease);
	free(lr);
}

/*
 * A ProtobufCBuffer that appends a packed message to a stream's reply:
 * small fields into an owned buffer, the leased payload by reference.
 */
struct packer {
	ProtobufCBuffer	 base;
	struct h2_body	*body;
	struct lease_ref *ref;
	uint8_t		*buf;
	size_t		 len, cap;
	int		 failed;
};

static void
packer_flush(struct packer *pk)
{
	if (pk->len > 0 && h2_body_add_owned(pk->body, pk->buf, pk->len) != 0) {
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
	const struct lease *l = pk->ref != NULL ? &pk->ref->lease : NULL;

	if (pk->failed)
		return;
	if (l != NULL && len >= H2_REF_MIN && data >= l->data &&
	    data + len <= l->data + l->len) {
		packer_flush(pk);
		if (h2_body_add_ref(pk->body, data, len, &pk->ref->ref) != 0)
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
pack_message(struct gstream *st, const ProtobufCMessage *msg,
    struct lease_ref *ref, char *err, size_t errlen)
{
	struct h2_body *body = h2s_body(st->hs), part;
	struct packer pk = { .base = { .append = packer_append },
	    .body = &part, .ref = ref };
	size_t size = protobuf_c_message_get_packed_size(msg);
	uint8_t prefix[GRPC_PREFIX_LEN], *p;

	if (size > max_message_size || size > UINT32_MAX) {
		snprintf(err, errlen, "reply of %zu bytes exceeds "
		    "max_message_size", size);
		return -1;
	}
	if (ref == NULL) {
		/* Nothing by reference: one owned buffer of the exact size,
		 * packed in one call (pack_to_buffer appends field by field). */
		if ((p = h2_body_add_inline(body, GRPC_PREFIX_LEN + size)) ==
		    NULL) {
			snprintf(err, errlen, "out of memory packing the reply");
			return -1;
		}
		grpc_frame_prefix(p, (uint32_t)size);
		protobuf_c_message_pack(msg, p + GRPC_PREFIX_LEN);
		return 0;
	}
	/* The fields around the payload, in one buffer sized up front,
	 * queued apart and appended whole: a failure leaves the stream's
	 * queue as it was (a DATA frame may be half way through it). */
	h2_body_init(&part);
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
		h2_body_clear(&part);
		snprintf(err, errlen, "out of memory packing the reply");
		return -1;
	}
	h2_body_append(body, &part);
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
count(struct gstream *st, int status)
{
	metrics_request(st->metric, status, clock_now_ns() - st->start_ns);
}

/* Answered before the request was read: drop its body. */
static void
request_discard(struct gstream *st)
{
	grpc_deframer_reset(&st->df);
	bigbuf_free(st->msg.data);
	st->msg.data = NULL;
	h2s_discard(st->hs);
}

static void
respond_http(struct gstream *st, const char *status)
{
	nghttp2_nv nv[] = { NVBUF(":status", status) };

	nv[0].valuelen = strlen(status);
	st->responded = st->finished = 1;
	request_discard(st);
	h2s_respond(st->hs, nv, 1, 0);
	h2s_flush(st->hs);
}

/* An error with no reply body: one HEADERS frame with END_STREAM. */
static void
respond_trailers_only(struct gstream *st, int status, const char *msg)
{
	char code[8], enc[3 * MESSAGE_MAX + 1];
	nghttp2_nv nv[4 + GRPC_META_SERVER_MAX + GRPC_META_CALL_MAX] = {
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
	n = nv_meta(st, nv, n);
	st->responded = st->finished = 1;
	st->status = status;
	request_discard(st);
	count(st, status);
	h2s_respond(st->hs, nv, n, 0);
	h2s_flush(st->hs);
}

static void
stream_fail(struct gstream *st, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
stream_fail(struct gstream *st, int status, const char *fmt, ...)
{
	char msg[MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	respond_trailers_only(st, status, msg);
}

static int
respond_headers(struct gstream *st)
{
	nghttp2_nv nv[3 + GRPC_META_SERVER_MAX + GRPC_META_CALL_MAX] = {
		NV(":status", "200"),
		NV("content-type", "application/grpc"),
		NV("grpc-accept-encoding", "identity"),
	};

	st->responded = 1;
	return h2s_respond(st->hs, nv, nv_meta(st, nv, 3), 1);
}

/* The status is decided: trailers follow the queued reply. */
static void
reply_end(struct gstream *st, int status)
{
	st->finished = 1;
	st->status = status;
	count(st, status);
	h2s_body_end(st->hs);
	if (!st->responded)
		respond_headers(st);
	h2s_resume(st->hs);
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

static void
call_free(struct call *call)
{
	size_t i;

	for (i = 0; i < call->nrmeta; i++)
		free(call->rmeta[i]);
	free(call);
}

const char *
call_peer(const struct call *call)
{
	return call->st != NULL ? h2s_peer(call->st->hs) : "";
}

const char *
call_meta(const struct call *call, const char *name)
{
	size_t i;

	for (i = 0; i < call->nrmeta; i++)
		if (strcmp(call->rmeta[i], name) == 0)
			return call->rmeta[i] + strlen(name) + 1;
	return NULL;
}

void
call_reply(struct call *call, const ProtobufCMessage *reply,
    struct lease *lease)
{
	struct gstream *st = call->st;
	struct lease_ref *ref = NULL;
	char err[128];
	int rv;

	if (st == NULL) {
		if (lease != NULL)
			lease_release(lease);
		call_free(call);
		return;
	}
	if (lease != NULL && lease->len < H2_REF_MIN) {
		/* A small payload is copied into the reply anyway: pack it
		 * now and let the lease go (no reference to keep). */
		rv = pack_message(st, reply, NULL, err, sizeof(err));
		lease_release(lease);
	} else {
		if (lease != NULL) {
			if ((ref = malloc(sizeof(*ref))) == NULL) {
				lease_release(lease);
				call_error(call, GRPC_RESOURCE_EXHAUSTED,
				    "out of memory");
				return;
			}
			ref->ref.refs = 1;		/* ours while packing */
			ref->ref.release = lease_ref_release;
			ref->lease = *lease;
			lease->release = NULL;
		}
		rv = pack_message(st, reply, ref, err, sizeof(err));
		if (ref != NULL)		/* the segments hold it now */
			h2_ref_drop(&ref->ref);
	}
	if (rv != 0) {
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "%s", err);
		return;
	}
	call_detach(call);
	call_free(call);
	reply_end(st, GRPC_OK);
}

int
call_message_begin(struct call *call, size_t len)
{
	struct gstream *st = call->st;
	uint8_t *p;

	if (st == NULL || call->in_message || st->responded)
		return -1;
	if (len > max_message_size || len > UINT32_MAX)
		return -2;
	if ((p = h2_body_add_inline(h2s_body(st->hs), GRPC_PREFIX_LEN)) ==
	    NULL)
		return -1;
	grpc_frame_prefix(p, (uint32_t)len);
	call->in_message = 1;
	call->message_left = len;
	respond_headers(st);		/* sent with the first flush */
	return 0;
}

int
call_message_add(struct call *call, const uint8_t *data, size_t len,
    struct lease *lease)
{
	struct gstream *st = call->st;
	struct lease_ref *ref;
	uint8_t *p;
	int rv = -1;

	if (st == NULL || !call->in_message || len > call->message_left)
		goto out;
	if (len == 0) {
		rv = 0;
		goto out;
	}
	if (lease == NULL || len < H2_REF_MIN) {
		if ((p = h2_body_add_inline(h2s_body(st->hs), len)) == NULL)
			goto out;
		memcpy(p, data, len);	/* COPY: small pieces only */
	} else {
		if ((ref = malloc(sizeof(*ref))) == NULL)
			goto out;
		ref->ref.refs = 1;		/* ours while queueing */
		ref->ref.release = lease_ref_release;
		ref->lease = *lease;
		lease->release = NULL;
		rv = h2_body_add_ref(h2s_body(st->hs), data, len, &ref->ref);
		h2_ref_drop(&ref->ref);
		if (rv != 0)
			return -1;
	}
	call->message_left -= len;
	rv = 0;
out:
	if (lease != NULL)
		lease_release(lease);
	return rv;
}

void
call_message_flush(struct call *call)
{
	if (call->st != NULL)
		h2s_resume(call->st->hs);
}

void
call_message_end(struct call *call)
{
	struct gstream *st = call->st;

	if (st != NULL && (!call->in_message || call->message_left > 0)) {
		/* A bug of the handler: never an OK status on a message cut
		 * short. */
		log_error("reply message cut short", "missing=%zu",
		    call->message_left);
		call_error(call, GRPC_INTERNAL, "reply message cut short");
		return;
	}
	call_detach(call);
	call_free(call);
	if (st != NULL)
		reply_end(st, GRPC_OK);
}

void
call_error(struct call *call, int status, const char *fmt, ...)
{
	struct gstream *st = call->st;
	char msg[MESSAGE_MAX] = "";
	va_list ap;

	/* Never OK after a message cut short (call_message_begin()). */
	if (status == GRPC_OK && call->in_message && call->message_left > 0)
		status = GRPC_INTERNAL;
	/* Formatted first: an argument may be the call's own (call_meta()). */
	if (fmt != NULL && st != NULL) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	call_detach(call);
	call_free(call);
	if (st == NULL)
		return;
	if (!st->responded) {
		respond_trailers_only(st, status, msg);
		return;
	}

	free(st->message);
	st->message = strdup(msg);
	reply_end(st, status);
}

int
call_send(struct call *call, const ProtobufCMessage *msg)
{
	struct gstream *st = call->st;
	char err[128];

	if (st == NULL || pack_message(st, msg, NULL, err, sizeof(err)) != 0)
		return -1;
	if (!st->responded)
		respond_headers(st);
	h2s_resume(st->hs);
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
	return call->st != NULL ? h2s_body(call->st->hs)->len : 0;
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
	struct gstream *st = call->st;

	call_detach(call);
	call_free(call);
	if (st == NULL)
		return;
	st->status = status;
	count(st, status);
	h2s_reset(st->hs, h2_error);
}

void
call_set_meta(struct call *call, const char *name, const char *value)
{
	struct gstream *st = call->st;

	if (value == NULL) {
		log_warn("response metadata refused: no value", "name=%s",
		    name != NULL ? name : "(null)");
		return;
	}
	if (meta_check(name, value) != 0 || st == NULL || st->responded)
		return;
	if (meta_put(st->meta, &st->nmeta, GRPC_META_CALL_MAX, name,
	    value) != 0)
		log_warn("response metadata refused: too many per call",
		    "name=%s max=%d", name, GRPC_META_CALL_MAX);
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

/* --- the stream's life (h2s_ops) -------------------------------------------- */

static void
gs_open(void *u, struct h2s_stream *hs)
{
	struct gstream *st = u;

	st->hs = hs;
	st->metric = MM_UNKNOWN;
	st->start_ns = clock_now_ns();
	st->req.encoding_ok = 1;
	st->df.max = max_message_size;
}

static int
name_is(const uint8_t *name, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	return len == n && memcmp(name, lit, n) == 0;
}

static void
copy_value(char *dst, size_t cap, size_t *dstlen, const uint8_t *v, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, v, len);
	dst[len] = '\0';
	if (dstlen != NULL)
		*dstlen = len;
}

/* A request header of the project's own (grpc.h: request metadata). */
static void
keep_request_meta(struct gstream *st, const uint8_t *name, size_t namelen,
    const uint8_t *value, size_t valuelen)
{
	size_t i;
	char *m;

	if (st->nrmeta == GRPC_REQ_META_MAX ||
	    !grpc_meta_name_ok((const char *)name, namelen) ||
	    !grpc_req_meta_value_ok((const char *)value, valuelen))
		return;
	for (i = 0; i < st->nrmeta; i++)
		if (strlen(st->rmeta[i]) == namelen &&
		    memcmp(st->rmeta[i], name, namelen) == 0)
			return;			/* the first one only */
	if ((m = malloc(namelen + valuelen + 2)) == NULL)
		return;
	memcpy(m, name, namelen);
	m[namelen] = '\0';
	memcpy(m + namelen + 1, value, valuelen);
	m[namelen + 1 + valuelen] = '\0';
	st->rmeta[st->nrmeta++] = m;
}

static void
request_meta_clear(struct gstream *st)
{
	while (st->nrmeta > 0)
		free(st->rmeta[--st->nrmeta]);
}

static void
gs_header(void *u, const uint8_t *name, size_t namelen, const uint8_t *value,
    size_t valuelen)
{
	struct gstream *st = u;
	struct reqinfo *r = &st->req;

	if (name_is(name, namelen, ":method"))
		r->post = name_is(value, valuelen, "POST");
	else if (name_is(name, namelen, ":path")) {
		if (valuelen >= sizeof(r->path))
			valuelen = 0;	/* no method has so long a name */
		copy_value(r->path, sizeof(r->path), &r->pathlen, value,
		    valuelen);
	} else if (name_is(name, namelen, "content-type")) {
		r->have_ct = 1;
		r->grpc_ct = name_is(value, valuelen, "application/grpc") ||
		    (valuelen > 17 &&
		    memcmp(value, "application/grpc", 16) == 0 &&
		    (value[16] == '+' || value[16] == ';'));
	} else if (name_is(name, namelen, "grpc-encoding")) {
		copy_value(r->encoding, sizeof(r->encoding), NULL, value,
		    valuelen);
		r->encoding_ok = name_is(value, valuelen, "identity");
	} else if (name_is(name, namelen, "grpc-timeout")) {
		if (grpc_timeout_parse((const char *)value, valuelen,
		    &r->timeout_ns) != 0)
			r->bad_timeout = 1;
	} else if (namelen > sizeof(GRPC_META_PREFIX) - 1 &&
	    memcmp(name, GRPC_META_PREFIX, sizeof(GRPC_META_PREFIX) - 1) ==
	    0) {
		keep_request_meta(st, name, namelen, value, valuelen);
	} else if (name_is(name, namelen, "api_key")) {
		/* Checked here, whole (keys of up to 4 KiB): nothing of it
		 * is kept. */
		r->have_key = 1;
		r->key_status = auth_check(1, (const char *)value, valuelen);
	}
}

static void
gs_headers_done(void *u)
{
	struct gstream *st = u;
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
	if (!(m->flags & METHOD_NO_AUTH) && (s = r->have_key ? r->key_status :
	    auth_check(0, NULL, 0)) != 0) {
		stream_fail(st, s, s == GRPC_UNAUTHENTICATED ?
		    "missing api_key metadata" : "invalid api_key");
		return;
	}
}

static void
too_large(struct gstream *st, uint64_t announced)
{
	if (st->responded)
		return;
	stream_fail(st, GRPC_RESOURCE_EXHAUSTED, "message of %llu bytes "
	    "exceeds max_message_size %llu", (unsigned long long)announced,
	    (unsigned long long)max_message_size);
}

static void
gs_data(void *u, const uint8_t *data, size_t len)
{
	struct gstream *st = u;
	struct grpc_message m;
	size_t n;

	if (st->dispatched)
		return;
	while (len > 0) {
		switch (grpc_deframe(&st->df, data, len, &n, &m)) {
		case GF_NEED_MORE:
			break;
		case GF_MESSAGE:
			/* A unary request carries one message; a second one
			 * is refused when the request ends. */
			if (!st->have_msg) {
				st->msg = m;
				st->have_msg = 1;
			} else {
				bigbuf_free(m.data);
				st->extra_msg = 1;
			}
			break;
		case GF_TOO_LARGE:
			too_large(st, st->df.announced);
			h2s_discard(st->hs);
			return;
		case GF_NOMEM:
			too_large(st, st->df.len);
			h2s_discard(st->hs);
			return;
		}
		data += n;
		len -= n;
	}
	/* A message whose prefix is known counts against
	 * max_inflight_bytes until its request is decoded. */
	h2s_expect(st->hs, st->df.hdrlen == GRPC_PREFIX_LEN ?
	    (uint64_t)st->df.len + GRPC_PREFIX_LEN : 0);
}

static void
gs_end(void *u)
{
	static const uint8_t empty[1];
	struct gstream *st = u;
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
	if (m->decode != NULL) {
		/* No copy: the request is decoded around the body, which
		 * goes with it to the handler. */
		req = m->decode(st->msg.data, st->msg.len);
	} else {
		/* COPY: protobuf-c copies bytes fields out of the body. */
		req = protobuf_c_message_unpack(m->request,
		    &bigbuf_protobuf_allocator, st->msg.len,
		    st->msg.data != NULL ? st->msg.data : empty);
		bigbuf_free(st->msg.data);
	}
	st->msg.data = NULL;
	h2s_release(st->hs);
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
	memcpy(call->rmeta, st->rmeta, sizeof(call->rmeta));
	call->nrmeta = st->nrmeta;
	st->nrmeta = 0;
	if (st->req.timeout_ns != 0)
		call->deadline = st->start_ns + st->req.timeout_ns;
	st->call = call;
	st->dispatched = 1;
	m->handler(call, req);
}

static void
gs_trailers(void *u)
{
	struct gstream *st = u;
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
	h2s_trailers(st->hs, nv, n);
}

/* A streaming handler waiting for room (inside nghttp2: it only notes
 * it). */
static void
gs_written(void *u, size_t queued)
{
	struct gstream *st = u;
	struct call *call = st->call;

	if (call != NULL && call->writable != NULL &&
	    queued <= call->low_water) {
		void (*fn)(struct call *, void *) = call->writable;

		call->writable = NULL;
		fn(call, call->writable_arg);
	}
}

static void
gs_drain(void *u)
{
	struct gstream *st = u;
	struct call *call = st->call;

	if (call == NULL || !(call->method->flags & METHOD_STREAMING))
		return;
	call_detach(call);
	if (!st->responded)
		respond_trailers_only(st, GRPC_UNAVAILABLE,
		    "server shutting down");
	else {
		free(st->message);
		st->message = strdup("server shutting down");
		reply_end(st, GRPC_UNAVAILABLE);
	}
	if (call->cancel != NULL)
		call->cancel(call, call->cancel_arg);
}

static void
gs_close(void *u)
{
	struct gstream *st = u;
	struct call *call = st->call;

	grpc_deframer_reset(&st->df);
	bigbuf_free(st->msg.data);
	free(st->message);
	st->message = NULL;
	request_meta_clear(st);
	if (call == NULL)
		return;
	call_detach(call);
	count(st, GRPC_CANCELLED);
	if (call->cancel != NULL)
		call->cancel(call, call->cancel_arg);
}

const struct h2s_ops grpc_server_ops = {
	.stream_size = sizeof(struct gstream),
	.open = gs_open,
	.header = gs_header,
	.headers_done = gs_headers_done,
	.data = gs_data,
	.end = gs_end,
	.trailers = gs_trailers,
	.written = gs_written,
	.drain = gs_drain,
	.close = gs_close,
};
