/*
 * h2c_call.c: a call of the client (h2client.h, "Calls" and "Memory"): its
 * memory and the marks that keep it alive (h2c_internal.h), its request
 * body queued as ranges of an h2io body (h2io.h), the request HEADERS
 * (grpc-timeout from the deadline), the local deadline, reply messages
 * deframed and delivered from the call's own event, the gRPC status
 * worked out from trailers, HTTP status or RST_STREAM, and the response
 * metadata (alpcrun-* headers) kept in the call and handed to done.
 *
 * Where bytes are copied:
 *  - request: h2client_unary() packs the message once into a buffer of the
 *    call's (the one copy); with a release callback (h2client_unary_body)
 *    large fields are not copied at all. Either way every range holds
 *    call->ref, and cleartext DATA frames carry ranges of H2_REF_MIN bytes
 *    or more as evbuffer references (h2_out_data()), so the socket reads
 *    them in place; TLS copies them into its records.
 *  - reply: the socket's evbuffer -> the deframer's buffer, allocated once
 *    from the prefix's length (the one copy), which the caller may keep.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>

#include "bigbuf.h"
#include "clock.h"
#include "grpc_status.h"
#include "grpc_frame.h"
#include "h2c_internal.h"
#include "h2client.h"

/* grpc-message kept from a reply (raw, before decoding). */
#define MESSAGE_MAX		4096

static void	 h2c_call_ev_cb(evutil_socket_t, short, void *);
static void	 h2c_call_not_grpc(struct h2call *);

/* --- calls: memory -------------------------------------------------------- */

void
h2c_call_msgs_clear(struct h2call *call)
{
	struct h2msg *m;

	while ((m = STAILQ_FIRST(&call->msgs)) != NULL) {
		STAILQ_REMOVE_HEAD(&call->msgs, entry);
		bigbuf_free(m->data);
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
h2c_call_held(struct h2call *call)
{
	size_t held = (call->df.buf != NULL && call->df.buf != call->ext ?
	    call->df.len : 0) + (call->rdata != NULL ? call->rlen : 0);

	if (held == call->held)
		return;
	if (call->c != NULL && call->c->on_reply_mem != NULL)
		call->c->on_reply_mem(call->c->arg,
		    (int64_t)held - (int64_t)call->held);
	call->held = held;
}

/* The last hold on the call went: the socket took its last body byte. */
static void
h2c_call_free(struct h2_ref *r)
{
	struct h2call *call = (struct h2call *)(void *)((char *)r -
	    offsetof(struct h2call, ref));
	struct h2c_own *o;

	while ((o = call->own) != NULL) {
		call->own = o->next;
		free(o);
	}
	if (call->release != NULL)
		call->release(call->release_arg);
	free(call->rmeta);
	free(call);
}

/* Once no mark is left (h2c_internal.h), which happens once: everything
 * but the memory the socket may still read goes now. */
void
h2c_call_maybe_destroy(struct h2call *call)
{
	if (call->queued || call->attached || call->user || call->in_cb)
		return;
	if (call->c != NULL) {
		TAILQ_REMOVE(&call->c->calls, call, all);
		/* An orphan's event belongs to a base that may be gone; its
		 * event was deleted when it was orphaned. */
		event_del(call->ev);
	}
	h2c_call_msgs_clear(call);
	grpc_deframer_reset(&call->df);
	free(call->rdata);
	call->rdata = NULL;
	h2c_call_held(call);
	free(call->message);
	call->message = NULL;
	h2_body_clear(&call->body);
	h2_ref_drop(&call->ref);
}

struct h2call *
h2c_call_new(struct h2client *c, const char *path, uint64_t deadline,
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
	call->ref.refs = 1;		/* dropped once no mark is left */
	call->ref.release = h2c_call_free;
	h2_body_init(&call->body);
	call->body.keep = 1;		/* a GOAWAY retry sends it again */
	call->df.max = c->max_msg;
	STAILQ_INIT(&call->msgs);
	event_assign(call->ev, c->base, -1, 0, h2c_call_ev_cb, call);
	TAILQ_INSERT_TAIL(&c->calls, call, all);
	return call;
}

/* --- calls: request bodies ------------------------------------------------ */

/* len bytes of the call's own, freed with it; NULL when out of memory. */
static uint8_t *
h2c_call_own(struct h2call *call, size_t len)
{
	struct h2c_own *o;

	if (len > SIZE_MAX - sizeof(*o) || (o = malloc(sizeof(*o) + len)) ==
	    NULL)
		return NULL;
	o->next = call->own;
	call->own = o;
	return o->b;
}

/* Queue body bytes that stay valid while the call's memory does. */
static int
h2c_call_body_add(struct h2call *call, const uint8_t *p, size_t len)
{
	return h2_body_add_ref(&call->body, p, len, &call->ref);
}

/*
 * A ProtobufCBuffer that packs by reference: appends of H2_REF_MIN bytes or
 * more come straight from the message's bytes and string fields (protobuf-c
 * appends those from the field's own memory; tags, lengths and varints
 * come from small scratch buffers, which are copied into own chunks, never
 * moved: the body points into them).
 */
struct h2c_packer {
	ProtobufCBuffer	 base;
	struct h2call	*call;
	uint8_t		*buf;		/* the newest own chunk */
	size_t		 len, cap;	/* bytes in it, its size */
	size_t		 queued;	/* of len, already in the body */
	int		 failed;
};

/* The own bytes not yet in the body go in as one range. */
static void
h2c_call_packer_queue(struct h2c_packer *pk)
{
	if (pk->len > pk->queued && h2c_call_body_add(pk->call,
	    pk->buf + pk->queued, pk->len - pk->queued) != 0)
		pk->failed = 1;
	pk->queued = pk->len;
}

static void
h2c_call_packer_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	struct h2c_packer *pk = (struct h2c_packer *)b;

	/* An empty bytes field may come with data NULL (memcpy's UB). */
	if (pk->failed || len == 0)
		return;
	if (len >= H2_REF_MIN) {
		h2c_call_packer_queue(pk);
		if (!pk->failed && h2c_call_body_add(pk->call, data, len) != 0)
			pk->failed = 1;
		return;
	}
	if (pk->len + len > pk->cap) {
		size_t cap = pk->cap ? pk->cap * 2 : 256;

		h2c_call_packer_queue(pk);
		while (cap < len)
			cap *= 2;
		if ((pk->buf = h2c_call_own(pk->call, cap)) == NULL) {
			pk->failed = 1;
			return;
		}
		pk->len = pk->queued = 0;
		pk->cap = cap;
	}
	memcpy(pk->buf + pk->len, data, len);	/* COPY: small parts */
	pk->len += len;
}

/* Lay out the body: 0, or -1 after finishing the call with the reason. */
/*
 * Copy the call's own request metadata (h2client.h, Calls) into one
 * allocation. 0, or -1 when the call failed (a header breaking the rules,
 * too many, out of memory): then the body's release is the call's.
 */
int
h2c_call_set_meta(struct h2call *call, const struct h2body *b)
{
	size_t i, total = 0, nl, vl;
	const char *bad = NULL;
	char *p;

	if (b->nmeta == 0)
		return 0;
	if (b->nmeta > GRPC_REQ_META_MAX || b->meta == NULL)
		bad = "(too many)";
	for (i = 0; bad == NULL && i < b->nmeta; i++) {
		const struct h2reqmeta *m = &b->meta[i];

		if (m->name == NULL || m->value == NULL ||
		    !grpc_meta_name_ok(m->name, strlen(m->name)) ||
		    !grpc_req_meta_value_ok(m->value, strlen(m->value)))
			bad = m->name != NULL ? m->name : "(null)";
		else
			total += strlen(m->name) + strlen(m->value) + 2;
	}
	if (bad == NULL && (call->rmeta = malloc(total)) == NULL)
		bad = "(out of memory)";
	if (bad != NULL) {
		call->release = b->release;
		call->release_arg = b->release_arg;
		h2c_call_finish(call, GRPC_INTERNAL, "bad request metadata %s",
		    bad);
		return -1;
	}
	for (p = call->rmeta, i = 0; i < b->nmeta; i++) {
		nl = strlen(b->meta[i].name) + 1;
		vl = strlen(b->meta[i].value) + 1;
		memcpy(p, b->meta[i].name, nl);
		memcpy(p + nl, b->meta[i].value, vl);
		p += nl + vl;
	}
	call->nrmeta = b->nmeta;
	return 0;
}

/* The call's own request header name, or NULL. */
static const char *
h2c_call_rmeta_find(const struct h2call *call, const char *name)
{
	const char *p = call->rmeta;
	size_t i;

	for (i = 0; i < call->nrmeta; i++) {
		if (strcmp(p, name) == 0)
			return p + strlen(p) + 1;
		p += strlen(p) + 1;
		p += strlen(p) + 1;
	}
	return NULL;
}

int
h2c_call_set_body(struct h2call *call, const struct h2body *b)
{
	uint64_t max = call->c->max_msg;
	size_t size;
	uint8_t *p;

	call->release = b->release;
	call->release_arg = b->release_arg;
	size = b->msg != NULL ? protobuf_c_message_get_packed_size(b->msg) :
	    b->rawlen;
	if (size > max || size > UINT32_MAX) {
		h2c_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "request of %zu "
		    "bytes exceeds max_message_size %llu", size,
		    (unsigned long long)max);
		return -1;
	}
	grpc_frame_prefix(call->prefix, (uint32_t)size);
	if (b->release == NULL) {
		/* COPY: the one copy of the request, prefix in front. */
		if ((p = h2c_call_own(call, GRPC_PREFIX_LEN + size)) == NULL)
			goto nomem;
		memcpy(p, call->prefix, GRPC_PREFIX_LEN);
		if (b->msg != NULL)
			protobuf_c_message_pack(b->msg, p + GRPC_PREFIX_LEN);
		else if (size > 0)
			memcpy(p + GRPC_PREFIX_LEN, b->raw, size);
		if (h2c_call_body_add(call, p, GRPC_PREFIX_LEN + size) != 0)
			goto nomem;
	} else if (b->msg == NULL) {
		if (h2c_call_body_add(call, call->prefix,
		    GRPC_PREFIX_LEN) != 0 ||
		    h2c_call_body_add(call, b->raw, size) != 0)
			goto nomem;
	} else {
		struct h2c_packer pk = {
			.base = { .append = h2c_call_packer_append },
			.call = call };

		h2c_call_packer_append(&pk.base, GRPC_PREFIX_LEN, call->prefix);
		protobuf_c_message_pack_to_buffer(b->msg, &pk.base);
		h2c_call_packer_queue(&pk);
		if (pk.failed)
			goto nomem;
	}
	call->total = call->body.len;
	return 0;
nomem:
	h2c_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	return -1;
}

/* --- calls: outcome and delivery ------------------------------------------ */

void
h2c_call_finish(struct h2call *call, int status, const char *fmt, ...)
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
	h2c_call_held(call);
	if (call->user && call->c != NULL) {
		event_del(call->ev);
		event_active(call->ev, EV_TIMEOUT, 1);
	}
}

void
h2c_call_fail_unreachable(struct h2call *call, const char *reason)
{
	h2c_call_finish(call, GRPC_UNAVAILABLE, "%s unreachable: %s",
	    call->c->name, reason);
}

void
h2c_call_arm_deadline(struct h2call *call)
{
	struct timeval tv;
	uint64_t now;

	if (call->deadline == 0 || call->finished)
		return;
	now = clock_now_ns();
	h2c_tv_ns(&tv, call->deadline > now ? call->deadline - now : 0);
	evtimer_add(call->ev, &tv);
}

static void
h2c_call_deliver_done(struct h2call *call)
{
	h2_done_fn *done = call->done;
	void *arg = call->arg;
	char *msg = call->message;
	struct h2meta meta = call->meta;
	struct h2reply r = { call->status, msg != NULL ? msg : "",
	    call->rdata, call->rlen, &meta };
	int ext = call->ext != NULL;

	if (ext) {			/* the caller's buffer (h2call_reply_into()) */
		r.data = call->status == GRPC_OK && call->have_msg ?
		    call->ext : NULL;
		r.len = r.data != NULL ? call->ext_len : 0;
	}

	/* Everything the callback sees is moved out first: the callback may
	 * free the client, and the call with it. */
	call->message = NULL;
	call->rdata = NULL;
	call->rlen = 0;
	h2c_call_held(call);	/* the bytes are the callback's now */
	event_del(call->ev);
	call->user = 0;
	h2c_call_maybe_destroy(call);
	done(arg, &r);
	if (!ext)
		free(r.data);
	free(msg);
}

/* Give up on the call's stream, once (the caller flushes). */
void
h2c_call_rst(struct h2call *call)
{
	if (!call->attached || call->rst)
		return;
	call->rst = 1;
	nghttp2_submit_rst_stream(call->conn->h2, NGHTTP2_FLAG_NONE, call->id,
	    NGHTTP2_CANCEL);
}

/* The local deadline passed. */
static void
h2c_call_expire(struct h2call *call)
{
	struct h2conn *conn = call->conn;

	h2c_call_finish(call, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
	if (call->queued) {
		TAILQ_REMOVE(&call->c->pending, call, q);
		call->queued = 0;
	}
	if (call->attached && !call->rst) {
		h2c_call_rst(call);
		h2c_conn_flush(conn);
	}
}

/* The call's event: the deadline, or an outcome or messages to deliver. */
static void
h2c_call_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2call *call = arg;
	struct h2msg *m;

	if (call->arrived != NULL && !call->finished && call->user &&
	    call->ext_have > call->ext_told) {
		call->ext_told = call->ext_have;
		call->in_cb = 1;
		call->arrived(call->into_arg, call->ext_told, call->ext_len);
		call->in_cb = 0;
		if (!call->user) {	/* cancelled, or the client freed */
			h2c_call_maybe_destroy(call);
			return;
		}
	}
	if (!call->finished && STAILQ_EMPTY(&call->msgs)) {
		if (call->deadline == 0 || clock_now_ns() < call->deadline) {
			h2c_call_arm_deadline(call);
			return;
		}
		h2c_call_expire(call);
	}
	if (!STAILQ_EMPTY(&call->msgs)) {
		call->in_cb = 1;
		while (call->user && (m = STAILQ_FIRST(&call->msgs)) != NULL) {
			STAILQ_REMOVE_HEAD(&call->msgs, entry);
			call->on_msg(call->arg, m->data, m->len);
			bigbuf_free(m->data);
			free(m);
		}
		call->in_cb = 0;
		if (!call->user) {	/* cancelled, or the client freed */
			h2c_call_maybe_destroy(call);
			return;
		}
	}
	if (call->finished)
		h2c_call_deliver_done(call);
	else
		h2c_call_arm_deadline(call);
}

/* --- calls: the stream ---------------------------------------------------- */

static int
h2c_call_http_to_grpc(int code)
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
h2c_call_rst_to_grpc(uint32_t code)
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
void
h2c_call_outcome(struct h2call *call, uint32_t err)
{
	if (!call->ended) {
		if (err != NGHTTP2_NO_ERROR)
			h2c_call_finish(call, h2c_call_rst_to_grpc(err),
			    "stream reset: %s", nghttp2_http2_strerror(err));
		else
			h2c_call_finish(call, GRPC_INTERNAL,
			    "stream closed before the reply ended");
		return;
	}
	if (call->http_status != 200) {
		h2c_call_finish(call, h2c_call_http_to_grpc(call->http_status),
		    "HTTP status %d", call->http_status);
		return;
	}
	if (!call->have_status) {
		if (!call->ct_ok)
			h2c_call_not_grpc(call);
		else
			h2c_call_finish(call, GRPC_INTERNAL, "reply ended "
			    "without grpc-status");
		return;
	}
	if (call->status != GRPC_OK) {
		h2c_call_finish(call, call->status, NULL);
		return;
	}
	if (grpc_deframer_partial(&call->df))
		h2c_call_finish(call, GRPC_INTERNAL, "reply ended inside a "
		    "message");
	else if (!call->streaming && !call->have_msg)
		h2c_call_finish(call, GRPC_INTERNAL, "reply carried no "
		    "message");
	else if (call->extra_msg)
		h2c_call_finish(call, GRPC_INTERNAL, "unary reply carried more "
		    "than one message");
	else
		h2c_call_finish(call, GRPC_OK, NULL);
}

/* Forget what a refused attempt received, so that it can be sent again. */
void
h2c_call_reset_for_retry(struct h2call *call)
{
	grpc_deframer_reset(&call->df);
	free(call->rdata);
	call->rdata = NULL;
	call->rlen = 0;
	h2c_call_held(call);
	free(call->message);
	call->message = NULL;
	h2c_call_msgs_clear(call);
	call->id = 0;
	h2_body_rewind(&call->body);
	call->rx = 0;
	call->http_status = 0;
	call->status = 0;
	call->got_headers = call->ended = call->ct_ok = 0;
	call->have_status = call->have_msg = call->extra_msg = 0;
	call->meta.n = 0;
}

void
h2c_call_detach(struct h2call *call)
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
h2c_call_fmt_timeout(uint64_t ns, char *buf, size_t len)
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
h2c_call_nv(const char *name, const char *value, uint8_t flags)
{
	nghttp2_nv n = { (uint8_t *)(uintptr_t)name,
	    (uint8_t *)(uintptr_t)value, strlen(name), strlen(value), flags };

	return n;
}

static ssize_t	 h2c_call_body_read_cb(nghttp2_session *, int32_t, uint8_t *,
		    size_t, uint32_t *, nghttp2_data_source *, void *);

/*
 * Submit a call on a connection (the caller flushes). 0, or -1 when the
 * connection cannot take new streams (the call is back on the queue).
 */
int
h2c_call_submit(struct h2conn *conn, struct h2call *call)
{
	struct h2client *c = conn->c;
	nghttp2_data_provider prd;
	nghttp2_nv hdrs[10 + 2 * GRPC_REQ_META_MAX];
	char tmo[16];
	const char *p;
	size_t n = 0, i;
	int32_t id;

	if (call->deadline != 0) {
		uint64_t now = clock_now_ns();

		if (now >= call->deadline) {
			h2c_call_finish(call, GRPC_DEADLINE_EXCEEDED,
			    "deadline exceeded");
			return 0;
		}
		h2c_call_fmt_timeout(call->deadline - now, tmo, sizeof(tmo));
	}
	hdrs[n++] = h2c_call_nv(":method", "POST", NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = h2c_call_nv(":scheme", "http", NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = h2c_call_nv(":path", call->path, NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = h2c_call_nv(":authority", c->authority,
	    NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = h2c_call_nv("content-type", "application/grpc",
	    NGHTTP2_NV_FLAG_NONE);
	hdrs[n++] = h2c_call_nv("te", "trailers", NGHTTP2_NV_FLAG_NONE);
#ifdef PACKAGE_VERSION
	hdrs[n++] = h2c_call_nv("user-agent", "alpcrund/" PACKAGE_VERSION,
	    NGHTTP2_NV_FLAG_NONE);
#endif
	if (call->deadline != 0)
		hdrs[n++] = h2c_call_nv("grpc-timeout", tmo,
		    NGHTTP2_NV_FLAG_NONE);
	/* The key stays out of the HPACK tables (CRIME-style probing once
	 * TLS is on). */
	if (c->api_key != NULL)
		hdrs[n++] = h2c_call_nv("api_key", c->api_key,
		    NGHTTP2_NV_FLAG_NO_INDEX);
	/* Request metadata: the client's, unless the call has its own of
	 * that name (values that vary per call stay out of HPACK). */
	for (i = 0; i < c->nrmeta; i++)
		if (h2c_call_rmeta_find(call, c->rmeta[i].name) == NULL)
			hdrs[n++] = h2c_call_nv(c->rmeta[i].name,
			    c->rmeta[i].value, NGHTTP2_NV_FLAG_NONE);
	for (p = call->rmeta, i = 0; i < call->nrmeta; i++) {
		const char *v = p + strlen(p) + 1;

		hdrs[n++] = h2c_call_nv(p, v, NGHTTP2_NV_FLAG_NO_INDEX);
		p = v + strlen(v) + 1;
	}
	prd.source.ptr = call;
	prd.read_callback = h2c_call_body_read_cb;
	id = nghttp2_submit_request(conn->h2, NULL, hdrs, n, &prd, call);
	if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
		/* 2^30 streams on one connection: time for a new one. */
		conn->goaway = 1;
		return -1;
	}
	if (id < 0) {
		h2c_call_finish(call, GRPC_INTERNAL, "cannot submit the "
		    "request: %s", nghttp2_strerror(id));
		return 0;
	}
	call->id = id;
	call->attached = 1;
	call->conn = conn;
	TAILQ_INSERT_TAIL(&conn->streams, call, q);
	conn->nstreams++;
	return 0;
}

/* --- calls: the request body on the wire ---------------------------------- */

/* Tell the progress hook, if any (h2call_progress()). The reply's total is
 * known once its prefix is: from the deframer, then from the whole message. */
void
h2c_call_report_progress(struct h2call *call)
{
	uint64_t rtotal = 0;

	if (call->progress == NULL || !call->user)
		return;
	if (call->have_msg)
		rtotal = (uint64_t)call->rlen + GRPC_PREFIX_LEN;
	else if (call->df.hdrlen == GRPC_PREFIX_LEN)
		rtotal = (uint64_t)call->df.len + GRPC_PREFIX_LEN;
	call->progress(call->progress_arg, call->total - call->body.len,
	    call->total, call->rx, rtotal);
}


static ssize_t
h2c_call_body_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct h2call *call = src->ptr;
	size_t left = call->body.len;
	size_t n = len < left ? len : left;

	/* The bytes go out by h2c_conn_send_data_cb (h2_out_data()). */
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (n == left)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* --- calls: the reply ----------------------------------------------------- */

static int
h2c_call_name_is(const uint8_t *name, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	return len == n && memcmp(name, lit, n) == 0;
}

static int
h2c_call_parse_small(const uint8_t *v, size_t len, int *out)
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
h2c_call_ct_copy(char *out, size_t outlen, const uint8_t *v, size_t len)
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
 * parsed (gRPC: a non-200 :status maps as h2c_call_http_to_grpc(), else
 * UNKNOWN).
 */
static void
h2c_call_not_grpc(struct h2call *call)
{
	char ct[sizeof(call->ctype) + 32];

	if (call->have_ct)
		snprintf(ct, sizeof(ct), "content-type \"%s\"", call->ctype);
	else
		snprintf(ct, sizeof(ct), "no content-type");
	if (call->http_status != 200)
		h2c_call_finish(call, h2c_call_http_to_grpc(call->http_status),
		    "HTTP status %d, reply is not gRPC (%s)",
		    call->http_status, ct);
	else
		h2c_call_finish(call, GRPC_UNKNOWN, "reply is not gRPC (%s)",
		    ct);
}

/*
 * Keep a response metadata header (h2client.h, Calls): bounded, so that a
 * hostile server costs nothing more; what does not fit is dropped.
 */
static void
h2c_call_meta_keep(struct h2meta *m, const uint8_t *name, size_t namelen,
    const uint8_t *value, size_t valuelen)
{
	size_t i;

	if (!grpc_meta_name_ok((const char *)name, namelen) ||
	    !grpc_meta_value_ok((const char *)value, valuelen))
		return;
	for (i = 0; i < m->n; i++)
		if (h2c_call_name_is(name, namelen, m->f[i].name))
			break;
	if (i == m->n) {
		if (m->n == H2_META_MAX)
			return;
		memcpy(m->f[i].name, name, namelen);
		m->f[i].name[namelen] = '\0';
		m->n++;
	}
	memcpy(m->f[i].value, value, valuelen);
	m->f[i].value[valuelen] = '\0';
}

const char *
h2c_call_meta_find(const struct h2meta *m, const char *name)
{
	size_t i;

	for (i = 0; m != NULL && i < m->n; i++)
		if (strcmp(m->f[i].name, name) == 0)
			return m->f[i].value;
	return NULL;
}

/* A header of the response (response 1), of its trailers or of a
 * Trailers-Only response (0). */
void
h2c_call_header(struct h2call *call, int response, const uint8_t *name,
    size_t namelen, const uint8_t *value, size_t valuelen)
{
	int x;

	if (namelen > sizeof(GRPC_META_PREFIX) - 1 && memcmp(name,
	    GRPC_META_PREFIX, sizeof(GRPC_META_PREFIX) - 1) == 0) {
		h2c_call_meta_keep(&call->meta, name, namelen, value,
		    valuelen);
		return;
	}
	if (response) {
		if (h2c_call_name_is(name, namelen, ":status")) {
			if (h2c_call_parse_small(value, valuelen, &x) == 0)
				call->http_status = x;
			return;
		}
		if (h2c_call_name_is(name, namelen, "content-type")) {
			call->ct_ok = h2c_call_name_is(value, valuelen,
			    "application/grpc") || (valuelen > 16 &&
			    memcmp(value, "application/grpc", 16) == 0 &&
			    (value[16] == '+' || value[16] == ';'));
			call->have_ct = 1;
			h2c_call_ct_copy(call->ctype, sizeof(call->ctype),
			    value, valuelen);
			return;
		}
	}
	/* In trailers, or in a Trailers-Only response. */
	if (h2c_call_name_is(name, namelen, "grpc-status")) {
		if (h2c_call_parse_small(value, valuelen, &x) == 0) {
			/* A code we do not know reads as UNKNOWN (gRPC). */
			call->status = x <= GRPC_UNAUTHENTICATED ? x :
			    GRPC_UNKNOWN;
			call->have_status = 1;
		}
	} else if (h2c_call_name_is(name, namelen, "grpc-message")) {
		if (valuelen > MESSAGE_MAX)
			valuelen = MESSAGE_MAX;
		free(call->message);
		if ((call->message = malloc(valuelen + 1)) != NULL) {
			memcpy(call->message, value, valuelen);
			call->message[valuelen] = '\0';
			grpc_percent_decode(call->message);
		}
	}
}

/* A HEADERS or DATA frame of the call's stream arrived whole. */
void
h2c_call_frame(struct h2call *call, const nghttp2_frame *frame)
{
	int response = frame->hd.type == NGHTTP2_HEADERS &&
	    frame->headers.cat == NGHTTP2_HCAT_RESPONSE;

	if (response)
		call->got_headers = 1;
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		call->ended = 1;
	/* A body follows that is not gRPC (an HTML error page from a
	 * proxy): decided now, the rest never read as messages. */
	if (response && !call->ended && !call->finished && !call->ct_ok &&
	    call->http_status >= 200) {
		h2c_call_not_grpc(call);
		h2c_call_rst(call);
	}
}

static void
h2c_call_got_message(struct h2call *call, struct grpc_message *m)
{
	struct h2msg *hm;

	if (m->compressed) {
		if (m->data != call->ext)	/* the caller's stays theirs */
			bigbuf_free(m->data);
		h2c_call_finish(call, GRPC_INTERNAL, "compressed reply message "
		    "(no grpc-encoding was accepted)");
		return;
	}
	if (!call->streaming) {
		if (m->data != NULL && m->data == call->ext) {
			if (call->have_msg)	/* an empty one came first */
				call->extra_msg = 1;
			call->have_msg = 1;	/* done points at it */
			call->ext_have = m->len;
			return;
		}
		if (!call->have_msg) {
			call->rdata = m->data;	/* the reply's one copy */
			call->rlen = m->len;
			call->have_msg = 1;
		} else {
			bigbuf_free(m->data);
			call->extra_msg = 1;
		}
		return;
	}
	if (!call->user || (hm = malloc(sizeof(*hm))) == NULL) {
		bigbuf_free(m->data);
		if (call->user)
			h2c_call_finish(call, GRPC_RESOURCE_EXHAUSTED,
			    "out of memory");
		return;
	}
	hm->data = m->data;
	hm->len = m->len;
	STAILQ_INSERT_TAIL(&call->msgs, hm, entry);
	event_active(call->ev, EV_TIMEOUT, 1);
}

/* Reply DATA bytes of the call's stream. */
void
h2c_call_data(struct h2call *call, const uint8_t *data, size_t len)
{
	struct grpc_message m;
	size_t n;

	call->rx += len;
	while (!call->finished && len > 0) {
		switch (grpc_deframe(&call->df, data, len, &n, &m)) {
		case GF_NEED_MORE:
			break;
		case GF_MESSAGE:
			h2c_call_got_message(call, &m);
			break;
		case GF_TOO_LARGE:
			h2c_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "reply "
			    "of %u bytes exceeds max_message_size %llu",
			    call->df.announced,
			    (unsigned long long)call->df.max);
			break;
		case GF_NOMEM:
			h2c_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of "
			    "memory for a reply of %u bytes", call->df.len);
			break;
		}
		data += n;
		len -= n;
		h2c_call_held(call);
	}
	/* Decided here (too large, compressed): stop the server sending. */
	if (call->finished && !call->ended)
		h2c_call_rst(call);
	/* Cut-through: tell the caller from the loop, once per batch. */
	if (call->ext != NULL && call->df.buf == call->ext)
		call->ext_have = call->df.have;
	if (call->arrived != NULL && !call->finished && call->user &&
	    call->ext_have > call->ext_told)
		event_active(call->ev, EV_TIMEOUT, 1);
	if (!call->finished)
		h2c_call_report_progress(call);
}
