/*
 * check_call.c: the gRPC call layer (src/grpc/call.c) against a fake
 * transport. The h2s_* functions the call layer answers through are
 * defined here (so the real transport is not linked) and record what they
 * were asked; the tests drive grpc_server_ops as the transport would:
 * header fields, body bytes in pieces, END_STREAM, the data source's
 * trailers, drain and close. The response metadata (server-wide and per
 * call) is checked in the HEADERS the fake transport records.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "auth.h"
#include "config.h"
#include "grpc.h"
#include "grpc_frame.h"
#include "h2io.h"
#include "h2srv.h"
#include "metrics.h"
#include "testutil.h"

/* --- the fake transport -------------------------------------------------- */

#define MAXNV	12

struct h2s_stream {
	/* The last HEADERS submitted: response, then trailers. */
	int		 nresponses;
	char		 resp[MAXNV][2][256];
	size_t		 nresp;
	int		 with_body;
	int		 ntrailers;
	char		 trl[MAXNV][2][2048];
	size_t		 ntrl;
	struct h2_body	 body;
	int		 body_ended;
	int		 resumed;
	int		 flushed;
	int		 reset;
	uint32_t	 reset_code;
	uint64_t	 expect;
	int		 released;
	int		 discarded;
	int		 remote_ended;
	void		*u;		/* the call layer's state */
};

static void
copy_nv(char dst[][2][256], size_t *n, const nghttp2_nv *nv, size_t nvlen,
    size_t cap)
{
	size_t i;

	*n = nvlen;
	for (i = 0; i < nvlen && i < MAXNV; i++) {
		snprintf(dst[i][0], cap, "%.*s", (int)nv[i].namelen,
		    (const char *)nv[i].name);
		snprintf(dst[i][1], cap, "%.*s", (int)nv[i].valuelen,
		    (const char *)nv[i].value);
	}
}

int
h2s_respond(struct h2s_stream *hs, const nghttp2_nv *nv, size_t n,
    int with_body)
{
	hs->nresponses++;
	copy_nv(hs->resp, &hs->nresp, nv, n, 256);
	hs->with_body = with_body;
	return 0;
}

int
h2s_trailers(struct h2s_stream *hs, const nghttp2_nv *nv, size_t n)
{
	size_t i;

	hs->ntrailers++;
	hs->ntrl = n;
	for (i = 0; i < n && i < MAXNV; i++) {
		snprintf(hs->trl[i][0], 2048, "%.*s", (int)nv[i].namelen,
		    (const char *)nv[i].name);
		snprintf(hs->trl[i][1], 2048, "%.*s", (int)nv[i].valuelen,
		    (const char *)nv[i].value);
	}
	return 0;
}

struct h2_body *
h2s_body(struct h2s_stream *hs)
{
	return &hs->body;
}

void
h2s_body_end(struct h2s_stream *hs)
{
	hs->body_ended = 1;
}

void
h2s_resume(struct h2s_stream *hs)
{
	hs->resumed++;
	hs->flushed++;
}

void
h2s_reset(struct h2s_stream *hs, uint32_t code)
{
	/* The transport keeps the queue until the stream closes. */
	hs->reset++;
	hs->reset_code = code;
}

void
h2s_expect(struct h2s_stream *hs, uint64_t bytes)
{
	hs->expect = bytes;
}

void
h2s_release(struct h2s_stream *hs)
{
	hs->released++;
	hs->expect = 0;
}

void
h2s_discard(struct h2s_stream *hs)
{
	hs->discarded++;
	hs->expect = 0;
}

void
h2s_flush(struct h2s_stream *hs)
{
	hs->flushed++;
}

const char *
h2s_peer(const struct h2s_stream *hs)
{
	(void)hs;
	return "127.0.0.1:4242";
}

static const struct h2s_ops *ops = &grpc_server_ops;

static struct h2s_stream *
st_open(void)
{
	struct h2s_stream *hs = calloc(1, sizeof(*hs));

	ck_assert_ptr_nonnull(hs);
	hs->u = calloc(1, ops->stream_size);
	ck_assert_ptr_nonnull(hs->u);
	h2_body_init(&hs->body);
	ops->open(hs->u, hs);
	return hs;
}

static void
st_header(struct h2s_stream *hs, const char *name, const char *value)
{
	ops->header(hs->u, (const uint8_t *)name, strlen(name),
	    (const uint8_t *)value, strlen(value));
}

/* A request's headers for path, with the usual gRPC fields. */
static struct h2s_stream *
st_request(const char *path)
{
	struct h2s_stream *hs = st_open();

	st_header(hs, ":method", "POST");
	st_header(hs, ":scheme", "http");
	st_header(hs, ":path", path);
	st_header(hs, "content-type", "application/grpc");
	st_header(hs, "te", "trailers");
	return hs;
}

static void
st_end(struct h2s_stream *hs)
{
	hs->remote_ended = 1;
	ops->end(hs->u);
}

/* The transport's close: the stream is gone. */
static void
st_close(struct h2s_stream *hs)
{
	ops->close(hs->u);
	h2_body_clear(&hs->body);
	free(hs->u);
	free(hs);
}

/* What the data source does once the body is framed: the trailers. */
static void
st_frame_all(struct h2s_stream *hs, uint8_t *out, size_t *outlen)
{
	struct h2_seg *s;
	size_t n = 0;

	while ((s = STAILQ_FIRST(&hs->body.segs)) != NULL) {
		if (out != NULL)
			memcpy(out + n, s->p + s->off, s->len - s->off);
		n += s->len - s->off;
		hs->body.len -= s->len - s->off;
		STAILQ_REMOVE_HEAD(&hs->body.segs, entry);
		if (s->ref != NULL)
			h2_ref_drop(s->ref);
		else if (s->p != (const uint8_t *)(s + 1))
			free((void *)s->p);
		free(s);
	}
	if (outlen != NULL)
		*outlen = n;
	if (ops->written != NULL)
		ops->written(hs->u, hs->body.len);
	if (hs->body_ended)
		ops->trailers(hs->u);
}

static const char *
field(char f[][2][256], size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(f[i][0], name) == 0)
			return f[i][1];
	return NULL;
}

static const char *
resp(struct h2s_stream *hs, const char *name)
{
	return field(hs->resp, hs->nresp, name);
}

static const char *
trl(struct h2s_stream *hs, const char *name)
{
	size_t i;

	for (i = 0; i < hs->ntrl; i++)
		if (strcmp(hs->trl[i][0], name) == 0)
			return hs->trl[i][1];
	return NULL;
}

/* A gRPC-framed SharedData request; *len its size. */
static uint8_t *
framed_request(const char *sid, size_t payload, size_t *len)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	uint8_t *p, *buf = malloc(payload + 1);
	size_t n;

	ck_assert_ptr_nonnull(buf);
	memset(buf, 'p', payload);
	m.has_session_id = m.has_payload = 1;
	m.session_id.data = (uint8_t *)sid;
	m.session_id.len = strlen(sid);
	m.payload.data = buf;
	m.payload.len = payload;
	n = protobuf_c_message_get_packed_size(&m.base);
	p = malloc(GRPC_PREFIX_LEN + n);
	ck_assert_ptr_nonnull(p);
	grpc_frame_prefix(p, (uint32_t)n);
	protobuf_c_message_pack(&m.base, p + GRPC_PREFIX_LEN);
	free(buf);
	*len = GRPC_PREFIX_LEN + n;
	return p;
}

/* --- the methods under test --------------------------------------------- */

static struct call *held;		/* the last call a handler kept */
static size_t got_payload;
static int cancelled, writable_fired;
static uint8_t lease_bytes[64 << 10];
static int lease_released;

static void
release_lease(void *ctx)
{
	lease_released++;
}

/* Replies at once with the request's session and payload echoed. */
static void
h_echo(struct call *call, ProtobufCMessage *req)
{
	Alpcrun__V1__SharedData *r = (Alpcrun__V1__SharedData *)req;

	got_payload = r->payload.len;
	call_reply(call, req, NULL);
	protobuf_c_message_free_unpacked(req, NULL);
}

/* Keeps the call for the test to finish. */
static void
h_hold(struct call *call, ProtobufCMessage *req)
{
	got_payload = ((Alpcrun__V1__SharedData *)req)->payload.len;
	held = call;
	protobuf_c_message_free_unpacked(req, NULL);
}

/* A SharedData request to path (with grpc-timeout when not NULL), whole:
 * the test method's handler has it (held). */
static struct h2s_stream *
st_dispatch(const char *path, const char *timeout)
{
	size_t len;
	uint8_t *req = framed_request("s", 10, &len);
	struct h2s_stream *hs = st_request(path);

	if (timeout != NULL)
		st_header(hs, "grpc-timeout", timeout);
	held = NULL;
	ops->headers_done(hs->u);
	ops->data(hs->u, req, len);
	st_end(hs);
	free(req);
	ck_assert_ptr_nonnull(held);
	return hs;
}

static void
on_cancel(struct call *call, void *arg)
{
	cancelled++;
	call_error(call, GRPC_CANCELLED, NULL);
}

static void
on_writable(struct call *call, void *arg)
{
	writable_fired++;
}

/* An in-place decoder: notes what it was handed (the body itself, not a
 * copy) and decodes it with protobuf-c; "refuse" refuses. */
static const uint8_t *decode_buf;
static size_t decode_len;
static int decode_refuse;

static ProtobufCMessage *
t_decode(uint8_t *buf, size_t len)
{
	ProtobufCMessage *m = NULL;

	decode_buf = buf;
	decode_len = len;
	if (!decode_refuse)
		m = protobuf_c_message_unpack(
		    &alpcrun__v1__shared_data__descriptor, NULL, len, buf);
	free(buf);
	return m;
}

static const struct method test_methods[] = {
	{ "/t.T/Echo", MM_GET, &alpcrun__v1__shared_data__descriptor, h_echo,
	    NULL, 0 },
	{ "/t.T/Hold", MM_SET, &alpcrun__v1__shared_data__descriptor, h_hold,
	    NULL, 0 },
	{ "/t.T/Stream", MM_WATCH, &alpcrun__v1__shared_data__descriptor,
	    h_hold, NULL, METHOD_STREAMING },
	{ "/t.T/Open", MM_HEALTH_CHECK, &alpcrun__v1__shared_data__descriptor,
	    h_echo, NULL, METHOD_NO_AUTH },
	{ "/t.T/InPlace", MM_UPDATE, &alpcrun__v1__shared_data__descriptor,
	    h_echo, t_decode, 0 },
};

static void
setup(void)
{
	grpc_server_configure(test_methods,
	    sizeof(test_methods) / sizeof(test_methods[0]), 1 << 20);
	held = NULL;
	got_payload = 0;
	cancelled = writable_fired = lease_released = 0;
	decode_buf = NULL;
	decode_len = 0;
	decode_refuse = 0;
}

static void
teardown(void)
{
	auth_clear();
	/* The server-wide metadata outlives a test (CK_FORK=no). */
	grpc_server_set_meta("alpcrun-incarnation", NULL);
	grpc_server_set_meta("alpcrun-a", NULL);
	grpc_server_set_meta("alpcrun-b", NULL);
	grpc_server_set_meta("alpcrun-c", NULL);
	grpc_server_set_meta("alpcrun-d", NULL);
}

/* --- refusals before the body ---------------------------------------------- */

START_TEST(not_post_is_405)
{
	struct h2s_stream *hs = st_open();

	st_header(hs, ":method", "GET");
	st_header(hs, ":path", "/t.T/Echo");
	st_header(hs, "content-type", "application/grpc");
	ops->headers_done(hs->u);
	ck_assert_int_eq(hs->nresponses, 1);
	ck_assert_str_eq(resp(hs, ":status"), "405");
	ck_assert_int_eq(hs->with_body, 0);
	ck_assert_int_eq(hs->discarded, 1);
	/* Whatever still comes is the transport's to drop; the end is
	 * ignored. */
	st_end(hs);
	ck_assert_int_eq(hs->nresponses, 1);
	st_close(hs);
}
END_TEST

START_TEST(wrong_content_type_is_415)
{
	struct h2s_stream *hs = st_open();

	st_header(hs, ":method", "POST");
	st_header(hs, ":path", "/t.T/Echo");
	st_header(hs, "content-type", "application/json");
	ops->headers_done(hs->u);
	ck_assert_str_eq(resp(hs, ":status"), "415");
	ck_assert_int_eq(hs->discarded, 1);
	st_close(hs);
}
END_TEST

START_TEST(grpc_content_type_variants)
{
	const char *ok[] = { "application/grpc", "application/grpc+proto",
	    "application/grpc;charset=x" };
	size_t i;

	for (i = 0; i < 3; i++) {
		struct h2s_stream *hs = st_open();

		st_header(hs, ":method", "POST");
		st_header(hs, ":path", "/t.T/Echo");
		st_header(hs, "content-type", ok[i]);
		ops->headers_done(hs->u);
		ck_assert_msg(hs->nresponses == 0, "%s refused", ok[i]);
		st_close(hs);
	}
}
END_TEST

START_TEST(unknown_method_is_unimplemented)
{
	struct h2s_stream *hs = st_request("/t.T/Nope");

	ops->headers_done(hs->u);
	ck_assert_str_eq(resp(hs, ":status"), "200");
	ck_assert_str_eq(resp(hs, "grpc-status"), "12");
	ck_assert_str_eq(resp(hs, "grpc-message"), "unknown method /t.T/Nope");
	ck_assert_int_eq(hs->with_body, 0);
	ck_assert_int_eq(hs->discarded, 1);
	ck_assert_uint_ge(metrics_requests(MM_UNKNOWN, GRPC_UNIMPLEMENTED), 1);
	st_close(hs);
}
END_TEST

START_TEST(malformed_timeout_is_invalid_argument)
{
	struct h2s_stream *hs = st_request("/t.T/Echo");

	st_header(hs, "grpc-timeout", "10parsecs");
	ops->headers_done(hs->u);
	ck_assert_str_eq(resp(hs, "grpc-status"), "3");
	ck_assert_str_eq(resp(hs, "grpc-message"), "malformed grpc-timeout");
	st_close(hs);
}
END_TEST

START_TEST(api_key_checked_unless_method_says_not)
{
	char dir[] = "/tmp/check_call.XXXXXX", path[64];
	struct config conf;
	char err[256];
	FILE *f;
	struct h2s_stream *hs;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("sesame\n", f);
	fclose(f);
	memset(&conf, 0, sizeof(conf));
	conf.api_key_file = path;
	ck_assert_msg(auth_load(&conf, err, sizeof(err)) == 0, "%s", err);

	hs = st_request("/t.T/Echo");
	ops->headers_done(hs->u);
	ck_assert_str_eq(resp(hs, "grpc-status"), "16");
	ck_assert_str_eq(resp(hs, "grpc-message"), "missing api_key metadata");
	st_close(hs);

	hs = st_request("/t.T/Echo");
	st_header(hs, "api_key", "open");
	ops->headers_done(hs->u);
	ck_assert_str_eq(resp(hs, "grpc-status"), "7");
	ck_assert_str_eq(resp(hs, "grpc-message"), "invalid api_key");
	st_close(hs);

	hs = st_request("/t.T/Echo");
	st_header(hs, "api_key", "sesame");
	ops->headers_done(hs->u);
	ck_assert_int_eq(hs->nresponses, 0);
	st_close(hs);

	hs = st_request("/t.T/Open");		/* METHOD_NO_AUTH */
	ops->headers_done(hs->u);
	ck_assert_int_eq(hs->nresponses, 0);
	st_close(hs);

	unlink(path);
	rmdir(dir);
}
END_TEST

/* --- the request body -------------------------------------------------------- */

/* A message fed in pieces of every size from 1 byte up decodes the same,
 * and its size is announced to the transport while it is partial. */
START_TEST(body_in_pieces)
{
	size_t len, piece, off;
	uint8_t *req = framed_request("s", 40000, &len);

	for (piece = 1; piece <= len; piece = piece < 16 ? piece + 1 :
	    piece * 3) {
		struct h2s_stream *hs = st_request("/t.T/Echo");
		uint64_t announced = 0;

		ops->headers_done(hs->u);
		for (off = 0; off < len; off += piece) {
			size_t n = len - off < piece ? len - off : piece;

			ops->data(hs->u, req + off, n);
			if (hs->expect > announced)
				announced = hs->expect;
		}
		ck_assert_msg(announced == len, "piece %zu: announced %llu of "
		    "%zu", piece, (unsigned long long)announced, len);
		ck_assert_uint_eq(hs->expect, 0);	/* whole: nothing left */
		st_end(hs);
		ck_assert_uint_eq(got_payload, 40000);
		ck_assert_int_eq(hs->released, 1);
		ck_assert_int_eq(hs->with_body, 1);
		ck_assert_int_eq(hs->body_ended, 1);
		ck_assert_uint_eq(hs->body.len, len);	/* echoed */
		st_frame_all(hs, NULL, NULL);
		ck_assert_str_eq(trl(hs, "grpc-status"), "0");
		ck_assert_ptr_null(trl(hs, "grpc-message"));
		st_close(hs);
	}
	free(req);
}
END_TEST

/* A method with a decoder is handed the deframer's body (the message,
 * whole, in one buffer) and its handler the decoded request; a refusal is
 * INVALID_ARGUMENT. */
START_TEST(decoder_gets_the_body)
{
	size_t len;
	uint8_t *req = framed_request("s", 30000, &len);
	struct h2s_stream *hs = st_request("/t.T/InPlace");

	ops->headers_done(hs->u);
	ops->data(hs->u, req, 7);
	ops->data(hs->u, req + 7, len - 7);
	st_end(hs);
	ck_assert_ptr_nonnull(decode_buf);
	ck_assert_uint_eq(decode_len, len - 5);	/* the prefix is not in it */
	ck_assert_uint_eq(got_payload, 30000);
	st_frame_all(hs, NULL, NULL);
	ck_assert_str_eq(trl(hs, "grpc-status"), "0");
	st_close(hs);

	decode_refuse = 1;
	hs = st_request("/t.T/InPlace");
	ops->headers_done(hs->u);
	ops->data(hs->u, req, len);
	st_end(hs);
	ck_assert_uint_eq(decode_len, len - 5);
	ck_assert_str_eq(resp(hs, "grpc-status"), "3");
	ck_assert_str_eq(resp(hs, "grpc-message"),
	    "request does not decode as alpcrun.v1.SharedData");
	st_close(hs);
	free(req);
}
END_TEST

START_TEST(reply_bytes_are_the_message)
{
	size_t len, outlen;
	uint8_t *req = framed_request("sess", 100, &len);
	uint8_t out[512];
	struct h2s_stream *hs = st_request("/t.T/Echo");

	ops->headers_done(hs->u);
	ops->data(hs->u, req, len);
	st_end(hs);
	st_frame_all(hs, out, &outlen);
	/* An echo: the reply is the request, byte for byte. */
	ck_assert_uint_eq(outlen, len);
	ck_assert(memcmp(out, req, len) == 0);
	ck_assert_str_eq(resp(hs, "content-type"), "application/grpc");
	st_close(hs);
	free(req);
}
END_TEST

START_TEST(refusals_of_the_body)
{
	static const struct {
		const char	*what;
		const uint8_t	*bytes;
		size_t		 len;
		int		 twice;		/* send the bytes two times */
		const char	*status, *message;
	} rows[] = {
		{ "no message", NULL, 0, 0, "3", "request carried no message" },
		{ "cut inside", (const uint8_t *)"\0\0\0\0\x09" "ab", 7, 0,
		    "3", "request ended inside a message" },
		{ "two messages", (const uint8_t *)"\0\0\0\0\0", 5, 1, "3",
		    "unary request carried more than one message" },
		{ "compressed", (const uint8_t *)"\1\0\0\0\0", 5, 0, "12",
		    "compressed messages are not supported (grpc-encoding "
		    "absent)" },
		{ "not protobuf", (const uint8_t *)"\0\0\0\0\2\xff\xff", 7, 0,
		    "3", "request does not decode as alpcrun.v1.SharedData" },
	};
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct h2s_stream *hs = st_request("/t.T/Echo");

		ops->headers_done(hs->u);
		if (rows[i].len > 0)
			ops->data(hs->u, rows[i].bytes, rows[i].len);
		if (rows[i].twice)
			ops->data(hs->u, rows[i].bytes, rows[i].len);
		st_end(hs);
		ck_assert_msg(hs->nresponses == 1, "%s: no answer",
		    rows[i].what);
		ck_assert_msg(strcmp(resp(hs, "grpc-status"),
		    rows[i].status) == 0, "%s: status %s", rows[i].what,
		    resp(hs, "grpc-status"));
		ck_assert_msg(strcmp(resp(hs, "grpc-message"),
		    rows[i].message) == 0, "%s: message \"%s\"", rows[i].what,
		    resp(hs, "grpc-message"));
		ck_assert_int_eq(hs->with_body, 0);
		ck_assert_ptr_null(held);
		st_close(hs);
	}
}
END_TEST

START_TEST(too_large_refused_from_the_prefix)
{
	/* 2 MiB announced, 1 MiB allowed: refused before any body byte. */
	const uint8_t prefix[5] = { 0, 0, 0x20, 0, 0 };
	struct h2s_stream *hs = st_request("/t.T/Echo");

	ops->headers_done(hs->u);
	ops->data(hs->u, prefix, sizeof(prefix));
	ck_assert_int_eq(hs->nresponses, 1);
	ck_assert_str_eq(resp(hs, "grpc-status"), "8");
	ck_assert_str_eq(resp(hs, "grpc-message"), "message of 2097152 bytes "
	    "exceeds max_message_size 1048576");
	ck_assert_int_ge(hs->discarded, 1);
	ck_assert_uint_eq(hs->expect, 0);
	st_end(hs);
	ck_assert_int_eq(hs->nresponses, 1);
	st_close(hs);
}
END_TEST

/* --- later answers, cancellation, streaming ------------------------------------ */

START_TEST(handler_answers_later_or_never)
{
	struct h2s_stream *hs = st_dispatch("/t.T/Hold", "2S");

	ck_assert(call_alive(held));
	ck_assert_uint_ne(call_deadline(held), 0);
	ck_assert_int_eq(hs->nresponses, 0);
	call_error(held, GRPC_NOT_FOUND, "no %s", "such thing");
	ck_assert_str_eq(resp(hs, "grpc-status"), "5");
	ck_assert_str_eq(resp(hs, "grpc-message"), "no such thing");
	st_close(hs);

	/* The stream goes away first: the cancel hook runs once, and the
	 * handler's late answer only frees the call. */
	hs = st_dispatch("/t.T/Hold", NULL);
	call_set_cancel(held, on_cancel, NULL);
	st_close(hs);
	ck_assert_int_eq(cancelled, 1);
}
END_TEST

START_TEST(late_answer_after_close_is_safe)
{
	struct h2s_stream *hs = st_dispatch("/t.T/Hold", NULL);
	struct lease l = { lease_bytes, sizeof(lease_bytes), release_lease,
	    NULL };

	st_close(hs);
	ck_assert(!call_alive(held));
	call_reply(held, NULL, &l);		/* the lease goes back */
	ck_assert_int_eq(lease_released, 1);
}
END_TEST

START_TEST(leased_payload_goes_by_reference)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	struct lease l = { lease_bytes, sizeof(lease_bytes), release_lease,
	    NULL };
	struct h2_seg *s;
	struct h2s_stream *hs = st_dispatch("/t.T/Hold", NULL);
	int byref = 0;

	m.has_payload = 1;
	m.payload.data = (uint8_t *)lease_bytes;
	m.payload.len = sizeof(lease_bytes);
	call_reply(held, &m.base, &l);
	STAILQ_FOREACH(s, &hs->body.segs, entry)
		if (s->ref != NULL && s->p == lease_bytes &&
		    s->len == sizeof(lease_bytes))
			byref = 1;
	ck_assert_msg(byref, "the payload was copied");
	ck_assert_int_eq(lease_released, 0);	/* queued: still held */
	st_frame_all(hs, NULL, NULL);
	ck_assert_int_eq(lease_released, 1);
	ck_assert_str_eq(trl(hs, "grpc-status"), "0");
	st_close(hs);
}
END_TEST

/* Cut-through: a message sent piece by piece, the large piece by
 * reference, framed before it is whole. */
START_TEST(message_in_pieces)
{
	static uint8_t out[sizeof(lease_bytes) + 64];
	struct lease l = { lease_bytes, sizeof(lease_bytes), release_lease,
	    NULL };
	struct h2s_stream *hs = st_dispatch("/t.T/Hold", NULL);
	struct h2_seg *s;
	size_t n, total = 3 + sizeof(lease_bytes);
	int byref = 0;

	memset(lease_bytes, 0x5a, sizeof(lease_bytes));
	ck_assert_int_eq(call_message_begin(held, total), 0);
	ck_assert_int_eq(hs->nresponses, 1);		/* HEADERS at once */
	ck_assert_int_eq(call_message_begin(held, total), -1);	/* once */
	ck_assert_int_eq(call_message_add(held, (const uint8_t *)"abc", 3,
	    NULL), 0);
	/* What is known so far goes out before the rest exists. */
	st_frame_all(hs, out, &n);
	ck_assert_uint_eq(n, GRPC_PREFIX_LEN + 3);
	ck_assert_uint_eq(out[0], 0);
	ck_assert_uint_eq(((uint32_t)out[1] << 24 | (uint32_t)out[2] << 16 |
	    (uint32_t)out[3] << 8 | out[4]), total);
	ck_assert_int_eq(memcmp(out + GRPC_PREFIX_LEN, "abc", 3), 0);
	ck_assert_int_eq(call_message_add(held, lease_bytes,
	    sizeof(lease_bytes), &l), 0);
	STAILQ_FOREACH(s, &hs->body.segs, entry)
		if (s->ref != NULL && s->p == lease_bytes)
			byref = 1;
	ck_assert_msg(byref, "the piece was copied");
	ck_assert_int_eq(lease_released, 0);
	/* Past the announced length: refused, the message unchanged. */
	ck_assert_int_eq(call_message_add(held, (const uint8_t *)"x", 1,
	    NULL), -1);
	call_message_end(held);
	st_frame_all(hs, out, &n);
	ck_assert_uint_eq(n, sizeof(lease_bytes));
	ck_assert_int_eq(lease_released, 1);
	ck_assert_str_eq(trl(hs, "grpc-status"), "0");
	st_close(hs);
}
END_TEST

/* The source failed half way: trailers carry its status after what was
 * sent; ending a message short is never OK. */
START_TEST(message_cut_short)
{
	struct h2s_stream *hs = st_dispatch("/t.T/Hold", NULL);
	size_t n;

	ck_assert_int_eq(call_message_begin(held, 100), 0);
	ck_assert_int_eq(call_message_add(held, (const uint8_t *)"abc", 3,
	    NULL), 0);
	call_error(held, GRPC_UNAVAILABLE, "central cache unreachable");
	st_frame_all(hs, NULL, &n);
	ck_assert_uint_eq(n, GRPC_PREFIX_LEN + 3);
	ck_assert_str_eq(trl(hs, "grpc-status"), "14");
	ck_assert_str_eq(trl(hs, "grpc-message"),
	    "central cache unreachable");
	st_close(hs);

	hs = st_dispatch("/t.T/Hold", NULL);
	ck_assert_int_eq(call_message_begin(held, 100), 0);
	ck_assert_int_eq(call_message_add(held, (const uint8_t *)"abc", 3,
	    NULL), 0);
	call_message_end(held);			/* a bug: INTERNAL */
	st_frame_all(hs, NULL, NULL);
	ck_assert_str_eq(trl(hs, "grpc-status"), "13");
	st_close(hs);

	/* Larger than max_message_size: -2, nothing sent. */
	hs = st_dispatch("/t.T/Hold", NULL);
	ck_assert_int_eq(call_message_begin(held, (size_t)1 << 40), -2);
	ck_assert_int_eq(hs->nresponses, 0);
	call_error(held, GRPC_RESOURCE_EXHAUSTED, NULL);
	st_close(hs);

	/* The stream went first: -1, the lease given back. */
	hs = st_dispatch("/t.T/Hold", NULL);
	ck_assert_int_eq(call_message_begin(held, 100), 0);
	st_close(hs);
	{
		struct lease l = { lease_bytes, sizeof(lease_bytes),
		    release_lease, NULL };

		ck_assert_int_eq(call_message_add(held, lease_bytes, 50, &l),
		    -1);
		ck_assert_int_eq(lease_released, 1);
	}
	call_message_end(held);			/* only frees */
}
END_TEST

START_TEST(streaming_send_pace_and_drain)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	struct h2s_stream *hs = st_dispatch("/t.T/Stream", NULL);

	ck_assert_ptr_nonnull(held);
	ck_assert_int_eq(call_send(held, &m.base), 0);
	ck_assert_int_eq(call_send(held, &m.base), 0);
	ck_assert_int_eq(hs->nresponses, 1);		/* HEADERS once */
	ck_assert_int_eq(hs->with_body, 1);
	ck_assert_uint_eq(call_queued(held), 2 * GRPC_PREFIX_LEN);
	call_set_writable(held, on_writable, NULL, 0);
	st_frame_all(hs, NULL, NULL);
	ck_assert_int_eq(writable_fired, 1);
	ck_assert_uint_eq(call_queued(held), 0);
	ck_assert_int_eq(hs->ntrailers, 0);		/* still open */
	call_set_cancel(held, on_cancel, NULL);
	ops->drain(hs->u);
	ck_assert_int_eq(cancelled, 1);
	ck_assert_int_eq(hs->body_ended, 1);
	st_frame_all(hs, NULL, NULL);
	ck_assert_str_eq(trl(hs, "grpc-status"), "14");
	ck_assert_str_eq(trl(hs, "grpc-message"), "server shutting down");
	st_close(hs);
}
END_TEST

START_TEST(drain_leaves_unary_calls_alone)
{
	struct h2s_stream *hs = st_dispatch("/t.T/Hold", NULL);

	ops->drain(hs->u);
	ck_assert(call_alive(held));
	ck_assert_int_eq(hs->nresponses, 0);
	call_error(held, GRPC_OK, NULL);
	st_close(hs);
}
END_TEST

START_TEST(reset_sends_rst_and_no_trailers)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	struct h2s_stream *hs = st_dispatch("/t.T/Stream", NULL);

	ck_assert_int_eq(call_send(held, &m.base), 0);
	call_reset(held, NGHTTP2_ENHANCE_YOUR_CALM, GRPC_RESOURCE_EXHAUSTED);
	ck_assert_int_eq(hs->reset, 1);
	ck_assert_uint_eq(hs->reset_code, NGHTTP2_ENHANCE_YOUR_CALM);
	ck_assert_int_eq(hs->body_ended, 0);		/* no trailers */
	st_close(hs);
}
END_TEST

/* --- response metadata ---------------------------------------------------- */

#define INC	"00000000deadbeef"
#define GEN	"0123456789abcdef"

/* How many response fields are called name (once, never twice). */
static int
resp_count(struct h2s_stream *hs, const char *name)
{
	size_t i;
	int n = 0;

	for (i = 0; i < hs->nresp; i++)
		n += strcmp(hs->resp[i][0], name) == 0;
	return n;
}

START_TEST(meta_server_wide_on_unary_reply)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	struct h2s_stream *hs;

	grpc_server_set_meta("alpcrun-incarnation", INC);
	hs = st_dispatch("/t.T/Hold", NULL);
	call_reply(held, &m.base, NULL);
	ck_assert_int_eq(hs->nresponses, 1);
	ck_assert_int_eq(hs->with_body, 1);
	ck_assert_str_eq(resp(hs, ":status"), "200");
	ck_assert_str_eq(resp(hs, "alpcrun-incarnation"), INC);
	ck_assert_int_eq(resp_count(hs, "alpcrun-incarnation"), 1);
	st_frame_all(hs, NULL, NULL);
	ck_assert_str_eq(trl(hs, "grpc-status"), "0");
	/* In the HEADERS only. */
	ck_assert_ptr_null(trl(hs, "alpcrun-incarnation"));
	st_close(hs);
}
END_TEST

START_TEST(meta_server_wide_on_trailers_only)
{
	struct h2s_stream *hs;

	grpc_server_set_meta("alpcrun-incarnation", INC);
	/* Refused by the call layer before any handler. */
	hs = st_request("/t.T/Nope");
	ops->headers_done(hs->u);
	ck_assert_int_eq(hs->with_body, 0);
	ck_assert_str_eq(resp(hs, "grpc-status"), "12");
	ck_assert_str_eq(resp(hs, "alpcrun-incarnation"), INC);
	st_close(hs);

	/* A handler's error, with a per-call header too. */
	hs = st_dispatch("/t.T/Hold", NULL);
	call_set_meta(held, "alpcrun-generation", GEN);
	call_error(held, GRPC_NOT_FOUND, "no such thing");
	ck_assert_int_eq(hs->nresponses, 1);
	ck_assert_int_eq(hs->with_body, 0);
	ck_assert_str_eq(resp(hs, "grpc-status"), "5");
	ck_assert_str_eq(resp(hs, "grpc-message"), "no such thing");
	ck_assert_str_eq(resp(hs, "alpcrun-incarnation"), INC);
	ck_assert_str_eq(resp(hs, "alpcrun-generation"), GEN);
	st_close(hs);

	/* Ended by drain before its first message. */
	hs = st_dispatch("/t.T/Stream", NULL);
	call_set_cancel(held, on_cancel, NULL);
	ops->drain(hs->u);
	ck_assert_int_eq(cancelled, 1);
	ck_assert_str_eq(resp(hs, "grpc-status"), "14");
	ck_assert_str_eq(resp(hs, "alpcrun-incarnation"), INC);
	st_close(hs);

	/* Not gRPC responses: none. */
	hs = st_open();
	st_header(hs, ":method", "GET");
	ops->headers_done(hs->u);
	ck_assert_str_eq(resp(hs, ":status"), "405");
	ck_assert_ptr_null(resp(hs, "alpcrun-incarnation"));
	st_close(hs);
}
END_TEST

START_TEST(meta_on_streaming_headers)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	struct h2s_stream *hs;

	grpc_server_set_meta("alpcrun-incarnation", INC);
	hs = st_dispatch("/t.T/Stream", NULL);
	call_set_meta(held, "alpcrun-generation", GEN);
	ck_assert_int_eq(call_send(held, &m.base), 0);
	ck_assert_int_eq(hs->nresponses, 1);
	ck_assert_str_eq(resp(hs, "alpcrun-incarnation"), INC);
	ck_assert_str_eq(resp(hs, "alpcrun-generation"), GEN);
	/* The HEADERS are gone: a later header has nothing to go with. */
	call_set_meta(held, "alpcrun-late", "x");
	ck_assert_int_eq(call_send(held, &m.base), 0);
	ck_assert_int_eq(hs->nresponses, 1);
	call_error(held, GRPC_OK, NULL);
	st_frame_all(hs, NULL, NULL);
	ck_assert_str_eq(trl(hs, "grpc-status"), "0");
	ck_assert_ptr_null(trl(hs, "alpcrun-late"));
	ck_assert_ptr_null(trl(hs, "alpcrun-incarnation"));
	st_close(hs);
}
END_TEST

START_TEST(meta_per_call)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	struct h2s_stream *hs;

	grpc_server_set_meta("alpcrun-incarnation", INC);
	hs = st_dispatch("/t.T/Hold", NULL);
	call_set_meta(held, "alpcrun-generation", "1");
	call_set_meta(held, "alpcrun-generation", GEN);	/* replaces */
	/* Wins over the server-wide one: the name goes out once. */
	call_set_meta(held, "alpcrun-incarnation", "0000000000000001");
	/* A third name, and a refused one: ignored. */
	call_set_meta(held, "alpcrun-third", "3");
	call_set_meta(held, "alpcrun-generation", NULL);
	call_reply(held, &m.base, NULL);
	ck_assert_str_eq(resp(hs, "alpcrun-generation"), GEN);
	ck_assert_str_eq(resp(hs, "alpcrun-incarnation"), "0000000000000001");
	ck_assert_int_eq(resp_count(hs, "alpcrun-incarnation"), 1);
	ck_assert_ptr_null(resp(hs, "alpcrun-third"));
	st_close(hs);

	/* Per call means per call: the next one has only the server's. */
	hs = st_dispatch("/t.T/Hold", NULL);
	call_reply(held, &m.base, NULL);
	ck_assert_str_eq(resp(hs, "alpcrun-incarnation"), INC);
	ck_assert_ptr_null(resp(hs, "alpcrun-generation"));
	st_close(hs);

	/* The stream went away first: nothing to set it on, and safe. */
	hs = st_dispatch("/t.T/Hold", NULL);
	st_close(hs);
	call_set_meta(held, "alpcrun-generation", GEN);
	call_error(held, GRPC_CANCELLED, NULL);
}
END_TEST

START_TEST(meta_server_wide_set_replace_remove)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	struct h2s_stream *hs;
	char copy[32];

	/* The strings are copied. */
	snprintf(copy, sizeof(copy), "%s", INC);
	grpc_server_set_meta("alpcrun-incarnation", copy);
	memset(copy, 'z', sizeof(copy) - 1);
	hs = st_dispatch("/t.T/Hold", NULL);
	call_reply(held, &m.base, NULL);
	ck_assert_str_eq(resp(hs, "alpcrun-incarnation"), INC);
	st_close(hs);

	/* A new identity replaces the old one. */
	grpc_server_set_meta("alpcrun-incarnation", "00000000cafef00d");
	hs = st_dispatch("/t.T/Hold", NULL);
	call_reply(held, &m.base, NULL);
	ck_assert_str_eq(resp(hs, "alpcrun-incarnation"), "00000000cafef00d");
	ck_assert_int_eq(resp_count(hs, "alpcrun-incarnation"), 1);
	st_close(hs);

	/* Removed: gone from the next response; removing again is fine. */
	grpc_server_set_meta("alpcrun-incarnation", NULL);
	grpc_server_set_meta("alpcrun-incarnation", NULL);
	hs = st_dispatch("/t.T/Hold", NULL);
	call_reply(held, &m.base, NULL);
	ck_assert_ptr_null(resp(hs, "alpcrun-incarnation"));
	ck_assert_uint_eq(hs->nresp, 3);
	st_close(hs);
}
END_TEST

/* Request metadata: alpcrun-* headers kept for the handler (call_meta()),
 * bounded; the error message may quote one (formatted before the call is
 * freed). */
START_TEST(request_meta_kept_for_the_handler)
{
	char longv[GRPC_REQ_META_VALUE_MAX + 2], maxv[GRPC_REQ_META_VALUE_MAX + 1];
	struct h2s_stream *hs;
	size_t len;
	uint8_t *req = framed_request("s", 10, &len);

	memset(longv, 'v', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	memset(maxv, 'm', sizeof(maxv) - 1);
	maxv[sizeof(maxv) - 1] = '\0';
	hs = st_request("/t.T/Hold");
	st_header(hs, "alpcrun-via", "a,b");
	st_header(hs, "alpcrun-via", "c");		/* the first one only */
	st_header(hs, "alpcrun-long", longv);		/* too long: ignored */
	st_header(hs, "alpcrun-max", maxv);
	st_header(hs, "alpcrun-bad", "x\ny");		/* malformed: ignored */
	st_header(hs, "x-other", "1");			/* not ours */
	st_header(hs, "alpcrun-c", "3");
	st_header(hs, "alpcrun-d", "4");
	st_header(hs, "alpcrun-e", "5");		/* beyond the max */
	held = NULL;
	ops->headers_done(hs->u);
	ops->data(hs->u, req, len);
	st_end(hs);
	free(req);
	ck_assert_ptr_nonnull(held);
	ck_assert_str_eq(call_meta(held, "alpcrun-via"), "a,b");
	ck_assert_str_eq(call_meta(held, "alpcrun-max"), maxv);
	ck_assert_ptr_null(call_meta(held, "alpcrun-long"));
	ck_assert_ptr_null(call_meta(held, "alpcrun-bad"));
	ck_assert_ptr_null(call_meta(held, "x-other"));
	ck_assert_str_eq(call_meta(held, "alpcrun-d"), "4");
	ck_assert_ptr_null(call_meta(held, "alpcrun-e"));
	call_error(held, GRPC_FAILED_PRECONDITION, "path %s",
	    call_meta(held, "alpcrun-via"));
	ck_assert_str_eq(resp(hs, "grpc-message"), "path a,b");
	st_close(hs);

	/* None came: NULL; a stream closed before dispatch frees them. */
	hs = st_dispatch("/t.T/Hold", NULL);
	ck_assert_ptr_null(call_meta(held, "alpcrun-via"));
	call_error(held, GRPC_OK, NULL);
	st_close(hs);
	hs = st_request("/t.T/Hold");
	st_header(hs, "alpcrun-via", "a");
	ops->headers_done(hs->u);
	st_close(hs);
}
END_TEST

START_TEST(meta_refusals)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	char longv[GRPC_META_VALUE_MAX + 2];
	struct h2s_stream *hs;

	memset(longv, 'v', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	/* Not ours, not lowercase, not a token; values not printable,
	 * padded or too long. */
	grpc_server_set_meta("x-incarnation", "1");
	grpc_server_set_meta("Alpcrun-Upper", "1");
	grpc_server_set_meta("alpcrun-", "1");
	grpc_server_set_meta("alpcrun-a b", "1");
	grpc_server_set_meta("alpcrun-a", "line\nbreak");
	grpc_server_set_meta("alpcrun-a", " padded");
	grpc_server_set_meta("alpcrun-a", longv);
	grpc_server_set_meta(NULL, "1");
	/* Four names at most: a fifth is refused, a known one still set. */
	grpc_server_set_meta("alpcrun-a", "a");
	grpc_server_set_meta("alpcrun-b", "b");
	grpc_server_set_meta("alpcrun-c", "c");
	grpc_server_set_meta("alpcrun-d", "d");
	grpc_server_set_meta("alpcrun-incarnation", INC);
	grpc_server_set_meta("alpcrun-d", "dd");
	longv[GRPC_META_VALUE_MAX] = '\0';			/* just fits */
	grpc_server_set_meta("alpcrun-c", longv);
	hs = st_dispatch("/t.T/Hold", NULL);
	call_set_meta(held, "X-Gen", "1");
	call_set_meta(held, "alpcrun-gen", "\x7f");
	call_reply(held, &m.base, NULL);
	ck_assert_uint_eq(hs->nresp, 3 + 4);
	ck_assert_str_eq(resp(hs, "alpcrun-a"), "a");
	ck_assert_str_eq(resp(hs, "alpcrun-b"), "b");
	ck_assert_str_eq(resp(hs, "alpcrun-c"), longv);
	ck_assert_str_eq(resp(hs, "alpcrun-d"), "dd");
	ck_assert_ptr_null(resp(hs, "alpcrun-incarnation"));
	st_close(hs);
}
END_TEST

static Suite *
call_suite(void)
{
	Suite	*s = suite_create("call");
	TCase	*tc;

	tc = tcase_create("refusals");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, not_post_is_405);
	tcase_add_test(tc, wrong_content_type_is_415);
	tcase_add_test(tc, grpc_content_type_variants);
	tcase_add_test(tc, unknown_method_is_unimplemented);
	tcase_add_test(tc, malformed_timeout_is_invalid_argument);
	tcase_add_test(tc, api_key_checked_unless_method_says_not);
	suite_add_tcase(s, tc);

	tc = tcase_create("body");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, body_in_pieces);
	tcase_add_test(tc, decoder_gets_the_body);
	tcase_add_test(tc, reply_bytes_are_the_message);
	tcase_add_test(tc, refusals_of_the_body);
	tcase_add_test(tc, too_large_refused_from_the_prefix);
	suite_add_tcase(s, tc);

	tc = tcase_create("calls");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, handler_answers_later_or_never);
	tcase_add_test(tc, late_answer_after_close_is_safe);
	tcase_add_test(tc, leased_payload_goes_by_reference);
	tcase_add_test(tc, message_in_pieces);
	tcase_add_test(tc, message_cut_short);
	tcase_add_test(tc, streaming_send_pace_and_drain);
	tcase_add_test(tc, drain_leaves_unary_calls_alone);
	tcase_add_test(tc, reset_sends_rst_and_no_trailers);
	suite_add_tcase(s, tc);

	tc = tcase_create("meta");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, meta_server_wide_on_unary_reply);
	tcase_add_test(tc, meta_server_wide_on_trailers_only);
	tcase_add_test(tc, meta_on_streaming_headers);
	tcase_add_test(tc, meta_per_call);
	tcase_add_test(tc, meta_server_wide_set_replace_remove);
	tcase_add_test(tc, meta_refusals);
	tcase_add_test(tc, request_meta_kept_for_the_handler);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(call_suite());
}
