/*
 * check_s3client.c: unit tests of the S3 client (src/s3/s3client.h)
 * against a scripted HTTP server (libevent's evhttp) on the same loop:
 * what the client sends (signature, x-amz-content-sha256, the URL), what
 * it makes of replies (status, ETag, x-amz-meta-*, S3 error XML), retries
 * with jitter and their bound, the deadline, cancel, and a loop that goes
 * on turning while a reply trickles in.
 *
 * Signatures are checked against the two published AWS examples of
 * "Signature Calculations for the Authorization Header: Transferring
 * Payload in a Single Chunk" (Amazon S3 API Reference): GET Object and PUT
 * Object, examplebucket, 20130524T000000Z. The client reaches the test's
 * listener under the examples' host name (CURLOPT_CONNECT_TO), so the
 * signed Host is theirs. The expected values were also recomputed apart
 * from curl with Python's hmac and hashlib (the canonical request by hand,
 * then the key derivation of SigV4): the same hex.
 *
 * Nothing sleeps: every wait pumps the loop (a 10 ms tick keeps
 * EVLOOP_ONCE from blocking) until a condition holds or a deadline passes.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/sha.h>

#include "clock.h"
#include "digest.h"
#include "s3client.h"
#include "testutil.h"

#define MS		NS_PER_MS
#define KAT_HOST	"examplebucket.s3.amazonaws.com"
#define KAT_AK		"AKIAIOSFODNN7EXAMPLE"
#define KAT_SK		"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define KAT_SCOPE	KAT_AK "/20130524/us-east-1/s3/aws4_request"

/* What the server saw of one request. */
struct seen {
	char		 method[16];
	char		 uri[1024];
	char		 auth[512];
	char		 sha[80];
	char		 token[128];
	char		 if_none_match[64];
	size_t		 body_len;
	char		 body_sha[65];
	unsigned	 peer_port;	/* the client's end of the connection */
};

enum mode {
	M_OK,		/* 200, ETag, x-amz-meta-*, a small body */
	M_STATUS,	/* statuses[] in turn, then 200 */
	M_HANG,		/* never answers */
	M_SLOW,		/* 200 in 10 chunks, 50 ms apart */
};

static struct event_base *base;
static struct event *tick;
static struct evhttp *http;
static int port;
static enum mode mode;
static int statuses[16];
static const char *codes[16];
static int nstatus;
static struct seen seen[64];
static int nseen;
static struct evhttp_request *slow_req;
static struct event *slow_ev;
static int slow_sent;

/* --- the server ------------------------------------------------------------- */

static void
hexs(const uint8_t *d, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static const char *
method_of(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_POST: return "POST";
	default: return "?";
	}
}

static void
copy_header(struct evkeyvalq *h, const char *name, char *out, size_t cap)
{
	const char *v = evhttp_find_header(h, name);

	snprintf(out, cap, "%s", v != NULL ? v : "");
}

static void
slow_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evbuffer *b = evbuffer_new();
	struct timeval tv = { 0, 50000 };
	char chunk[1000];

	memset(chunk, 'a' + slow_sent, sizeof(chunk));
	evbuffer_add(b, chunk, sizeof(chunk));
	evhttp_send_reply_chunk(slow_req, b);
	evbuffer_free(b);
	if (++slow_sent == 10) {
		evhttp_send_reply_end(slow_req);
		slow_req = NULL;
		return;
	}
	evtimer_add(slow_ev, &tv);
}

static void
handle(struct evhttp_request *req, void *arg)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	struct evbuffer *reply;
	struct seen *s = &seen[nseen < 64 ? nseen : 63];
	uint8_t d[SHA256_DIGEST_LENGTH];
	size_t len = evbuffer_get_length(body);
	int i = nseen++;

	memset(s, 0, sizeof(*s));
	snprintf(s->method, sizeof(s->method), "%s", method_of(req));
	snprintf(s->uri, sizeof(s->uri), "%s", evhttp_request_get_uri(req));
	copy_header(in, "Authorization", s->auth, sizeof(s->auth));
	copy_header(in, "x-amz-content-sha256", s->sha, sizeof(s->sha));
	copy_header(in, "x-amz-security-token", s->token, sizeof(s->token));
	copy_header(in, "If-None-Match", s->if_none_match,
	    sizeof(s->if_none_match));
	s->body_len = len;
	{
		char *addr;
		ev_uint16_t pp;

		evhttp_connection_get_peer(evhttp_request_get_connection(req),
		    &addr, &pp);
		s->peer_port = pp;
	}
	SHA256(evbuffer_pullup(body, -1), len, d);
	hexs(d, sizeof(d), s->body_sha);

	if (mode == M_HANG)
		return;
	if (mode == M_SLOW) {
		struct timeval tv = { 0, 50000 };

		slow_req = req;
		slow_sent = 0;
		evhttp_send_reply_start(req, 200, "OK");
		evtimer_add(slow_ev, &tv);
		return;
	}
	reply = evbuffer_new();
	if (mode == M_STATUS && i < nstatus) {
		evbuffer_add_printf(reply, "<?xml version=\"1.0\" encoding="
		    "\"UTF-8\"?>\n<Error><Code>%s</Code><Message>scripted "
		    "%d</Message><RequestId>1</RequestId></Error>", codes[i],
		    statuses[i]);
		evhttp_add_header(out, "Content-Type", "application/xml");
		evhttp_send_reply(req, statuses[i], "Scripted", reply);
	} else {
		evhttp_add_header(out, "ETag", "\"etag-1\"");
		evhttp_add_header(out, "x-amz-meta-sha256", "abc123");
		evhttp_add_header(out, "x-amz-meta-level", "7");
		evhttp_add_header(out, "Last-Modified",
		    "Fri, 24 May 2013 00:00:00 GMT");
		evbuffer_add_printf(reply, "hello");
		evhttp_send_reply(req, 200, "OK", reply);
	}
	evbuffer_free(reply);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	int *n = arg;

	if (n != NULL)
		(*n)++;
}

static int ticks;

static void
setup(void)
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	struct timeval tv = { 0, 10000 };

	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	tick = event_new(base, -1, EV_PERSIST, tick_cb, &ticks);
	event_add(tick, &tv);
	http = evhttp_new(base);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE | EVHTTP_REQ_POST);
	evhttp_set_gencb(http, handle, NULL);
	bs = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	ck_assert_ptr_nonnull(bs);
	getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin,
	    &sl);
	port = ntohs(sin.sin_port);
	slow_ev = evtimer_new(base, slow_cb, NULL);
	mode = M_OK;
	nstatus = 0;
	nseen = 0;
	ticks = 0;
	s3_client_set_random(NULL);
}

static void
teardown(void)
{
	event_free(slow_ev);
	evhttp_free(http);
	event_free(tick);
	event_base_free(base);
}

/* --- the client side ---------------------------------------------------------- */

struct outcome {
	int		 done;
	int		 status;
	enum s3_err	 err;
	unsigned	 attempts;
	int		 earlier_unknown;
	char		 etag[128];
	char		 code[64];
	char		 message[256];
	char		 errmsg[256];
	char		 meta_sha[64];
	char		 meta_level[16];
	char		 last_modified[64];
	char		 body[64];
	uint64_t	 ns;
};

static void
done_cb(void *arg, const struct s3_response *r)
{
	struct outcome *o = arg;
	const char *v;

	o->done++;
	o->status = r->status;
	o->err = r->err;
	o->attempts = r->attempts;
	o->earlier_unknown = r->earlier_unknown;
	o->ns = r->duration_ns;
	snprintf(o->etag, sizeof(o->etag), "%s", r->etag);
	snprintf(o->code, sizeof(o->code), "%s", r->code);
	snprintf(o->message, sizeof(o->message), "%s", r->message);
	snprintf(o->errmsg, sizeof(o->errmsg), "%s", r->errmsg);
	v = s3_response_header(r, "x-amz-meta-sha256");
	snprintf(o->meta_sha, sizeof(o->meta_sha), "%s", v ? v : "");
	v = s3_response_header(r, "X-Amz-Meta-Level");
	snprintf(o->meta_level, sizeof(o->meta_level), "%s", v ? v : "");
	v = s3_response_header(r, "last-modified");
	snprintf(o->last_modified, sizeof(o->last_modified), "%s",
	    v ? v : "");
	snprintf(o->body, sizeof(o->body), "%.*s", (int)(r->body_len < 63 ?
	    r->body_len : 63), r->body != NULL ? (char *)r->body : "");
}

static void
pump_until(const int *flag, uint64_t ms)
{
	uint64_t end = clock_now_ns() + ms * MS;

	while (!*flag && clock_now_ns() < end)
		event_base_loop(base, EVLOOP_ONCE);
}

static void
pump_for(uint64_t ms)
{
	uint64_t end = clock_now_ns() + ms * MS;

	while (clock_now_ns() < end)
		event_base_loop(base, EVLOOP_ONCE);
}

/* A client of the test's listener: path-style, bucket "bkt". */
static struct s3_client *
client(const char *prefix, unsigned retries, const char *token)
{
	struct s3_client_config cfg;
	struct s3_client *cl;
	char ep[64], err[256];

	memset(&cfg, 0, sizeof(cfg));
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/", port);
	cfg.endpoint = ep;
	cfg.bucket = "bkt";
	cfg.prefix = prefix;
	cfg.access_key = "AK";
	cfg.secret_key = "SK";
	cfg.session_token = token;
	cfg.retries = retries;
	cfg.retry_base_ms = 10;
	cfg.retry_cap_ms = 40;
	cl = s3_client_new(base, &cfg, err, sizeof(err));
	ck_assert_msg(cl != NULL, "%s", err);
	return cl;
}

/* A client that reaches the listener as the AWS examples' host. */
static struct s3_client *
kat_client(void)
{
	struct s3_client_config cfg;
	struct s3_client *cl;
	char ct[128], err[256];

	memset(&cfg, 0, sizeof(cfg));
	snprintf(ct, sizeof(ct), KAT_HOST ":80:127.0.0.1:%d", port);
	cfg.endpoint = "http://" KAT_HOST;
	cfg.access_key = KAT_AK;
	cfg.secret_key = KAT_SK;
	cfg.connect_to = ct;
	cl = s3_client_new(base, &cfg, err, sizeof(err));
	ck_assert_msg(cl != NULL, "%s", err);
	return cl;
}

static struct s3_call *
start(struct s3_client *cl, struct s3_request *rq, struct outcome *o)
{
	struct s3_call *c;
	char err[256];

	memset(o, 0, sizeof(*o));
	rq->done = done_cb;
	rq->arg = o;
	c = s3_start(cl, rq, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	return c;
}

/* --- signing -------------------------------------------------------------------- */

START_TEST(test_sigv4_get_example)
{
	struct s3_client *cl = kat_client();
	struct s3_header h[] = {
		{ "Range", "bytes=0-9" },
		{ "x-amz-date", "20130524T000000Z" },
	};
	struct s3_request rq = { .op = S3_GET, .key = "test.txt",
	    .headers = h, .nheaders = 2 };
	struct outcome o;

	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.done, 1);
	ck_assert_int_eq(o.status, 200);
	ck_assert_int_eq(nseen, 1);
	ck_assert_str_eq(seen[0].uri, "/test.txt");
	ck_assert_str_eq(seen[0].sha, "e3b0c44298fc1c149afbf4c8996fb92427ae"
	    "41e4649b934ca495991b7852b855");
	ck_assert_str_eq(seen[0].auth, "AWS4-HMAC-SHA256 Credential="
	    KAT_SCOPE ", SignedHeaders=host;range;x-amz-content-sha256;"
	    "x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170"
	    "aba48dd91039c6036bdb41");
	s3_client_free(cl);
}
END_TEST

START_TEST(test_sigv4_put_example)
{
	static const char body[] = "Welcome to Amazon S3.";
	struct s3_client *cl = kat_client();
	struct s3_header h[] = {
		{ "Date", "Fri, 24 May 2013 00:00:00 GMT" },
		{ "x-amz-date", "20130524T000000Z" },
		{ "x-amz-storage-class", "REDUCED_REDUNDANCY" },
	};
	struct s3_request rq = { .op = S3_PUT, .key = "test$file.text",
	    .headers = h, .nheaders = 3, .body = body,
	    .body_len = sizeof(body) - 1 };
	struct outcome o;

	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 200);
	ck_assert_str_eq(seen[0].method, "PUT");
	ck_assert_str_eq(seen[0].uri, "/test%24file.text");
	ck_assert_str_eq(seen[0].sha, "44ce7dd67c959e0d3524ffac1771dfbba87d2b"
	    "6b4b4e99e42034a8b803f8b072");
	ck_assert_str_eq(seen[0].sha, seen[0].body_sha);
	ck_assert_str_eq(seen[0].auth, "AWS4-HMAC-SHA256 Credential="
	    KAT_SCOPE ", SignedHeaders=date;host;x-amz-content-sha256;"
	    "x-amz-date;x-amz-storage-class, Signature=98ad721746da40c64f1a55"
	    "b78f14c238d841ea1380cd77a1b5971af0ece108bd");
	s3_client_free(cl);
}
END_TEST

/* A body past the inline bound is hashed by the digest worker; a streamed
 * one is sent UNSIGNED-PAYLOAD. */
static ssize_t
read_pattern(void *arg, uint64_t off, void *buf, size_t len)
{
	const uint8_t *src = arg;

	memcpy(buf, src + off, len);
	return (ssize_t)len;
}

START_TEST(test_content_sha256)
{
	struct s3_client *cl = client(NULL, 0, "tok/en+1");
	size_t n = 300000;
	uint8_t *big = malloc(n), d[SHA256_DIGEST_LENGTH];
	char want[65], err[128];
	struct s3_request rq = { .op = S3_PUT, .key = "big", .body = big,
	    .body_len = n };
	struct outcome o;

	ck_assert_int_eq(digest_init(base, err, sizeof(err)), 0);
	tu_fill(big, n, 7);
	SHA256(big, n, d);
	hexs(d, sizeof(d), want);
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 200);
	ck_assert_uint_eq(seen[0].body_len, n);
	ck_assert_str_eq(seen[0].sha, want);
	ck_assert_str_eq(seen[0].body_sha, want);
	ck_assert_str_eq(seen[0].token, "tok/en+1");
	ck_assert_ptr_nonnull(strstr(seen[0].auth, ";x-amz-security-token,"));

	memset(&rq, 0, sizeof(rq));
	rq.op = S3_PUT;
	rq.key = "streamed";
	rq.body_read = read_pattern;
	rq.body_arg = big;
	rq.body_size = n;
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 200);
	ck_assert_str_eq(seen[1].sha, "UNSIGNED-PAYLOAD");
	ck_assert_str_eq(seen[1].body_sha, want);
	s3_client_free(cl);
	digest_free();
	free(big);
}
END_TEST

/* Path-style URL: bucket, prefix and key encoded the SigV4 way (slashes of
 * the key kept), the query sorted and encoded. */
START_TEST(test_url_encoding)
{
	struct s3_client *cl = client("pre fix/", 0, NULL);
	struct s3_param q[] = {
		{ "prefix", "a/b c" }, { "list-type", "2" },
		{ "continuation-token", "x+y=" },
	};
	struct s3_request rq = { .op = S3_GET, .key = "a b/\xc3\xbc+%~.txt" };
	struct outcome o;

	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_str_eq(seen[0].uri,
	    "/bkt/pre%20fix/a%20b/%C3%BC%2B%25~.txt");
	memset(&rq, 0, sizeof(rq));
	rq.op = S3_LIST;
	rq.query = q;
	rq.nquery = 3;
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_str_eq(seen[1].method, "GET");
	ck_assert_str_eq(seen[1].uri, "/bkt?continuation-token=x%2By%3D&"
	    "list-type=2&prefix=a%2Fb%20c");
	/* S3 keys are not paths: "." and ".." segments are names like any
	 * other, never folded away (another key, signed as that one). */
	memset(&rq, 0, sizeof(rq));
	rq.op = S3_GET;
	rq.key = "s/../head/./x/..";
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_str_eq(seen[2].uri, "/bkt/pre%20fix/s/../head/./x/..");
	s3_client_free(cl);
}
END_TEST

/* --- replies -------------------------------------------------------------------- */

START_TEST(test_reply_headers_and_errors)
{
	struct s3_client *cl = client(NULL, 0, NULL);
	const char *const want[] = { "Last-Modified", NULL };
	struct s3_header h[] = { { "If-None-Match", "*" } };
	struct s3_request rq = { .op = S3_GET, .key = "k",
	    .want_headers = want };
	struct outcome o;

	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 200);
	ck_assert_str_eq(o.etag, "\"etag-1\"");
	ck_assert_str_eq(o.meta_sha, "abc123");
	ck_assert_str_eq(o.meta_level, "7");
	ck_assert_str_eq(o.last_modified, "Fri, 24 May 2013 00:00:00 GMT");
	ck_assert_str_eq(o.body, "hello");

	mode = M_STATUS;
	nseen = 0;
	statuses[0] = 412;
	codes[0] = "PreconditionFailed";
	nstatus = 1;
	memset(&rq, 0, sizeof(rq));
	rq.op = S3_PUT;
	rq.key = "k";
	rq.headers = h;
	rq.nheaders = 1;
	rq.body = "x";
	rq.body_len = 1;
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 412);
	ck_assert_int_eq(o.err, S3_E_NONE);
	ck_assert_str_eq(o.code, "PreconditionFailed");
	ck_assert_str_eq(o.message, "scripted 412");
	ck_assert_uint_eq(o.attempts, 1);	/* a 412 is an answer */
	ck_assert_str_eq(seen[0].if_none_match, "*");
	s3_client_free(cl);
}
END_TEST

/* --- retries -------------------------------------------------------------------- */

static uint64_t bounds[16];
static int nbounds;

static uint64_t
record_random(uint64_t bound)
{
	if (nbounds < 16)
		bounds[nbounds++] = bound;
	return bound - 1;		/* the longest wait the bound allows */
}

START_TEST(test_retry_bound_and_jitter)
{
	struct s3_client *cl = client(NULL, 3, NULL);
	struct s3_request rq = { .op = S3_GET, .key = "k" };
	struct outcome o;
	int i;

	mode = M_STATUS;
	for (i = 0; i < 16; i++) {
		statuses[i] = 503;
		codes[i] = "SlowDown";
	}
	nstatus = 16;
	nbounds = 0;
	s3_client_set_random(record_random);
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.done, 1);
	ck_assert_int_eq(o.status, 503);
	ck_assert_str_eq(o.code, "SlowDown");
	ck_assert_uint_eq(o.attempts, 4);	/* 1 + retries */
	ck_assert_int_eq(nseen, 4);
	ck_assert_int_eq(o.earlier_unknown, 0);	/* 503: not applied */
	/* Full jitter: waits drawn from 0..base*2^n, capped (10, 20, 40). */
	ck_assert_int_eq(nbounds, 3);
	ck_assert_uint_eq(bounds[0], 11);
	ck_assert_uint_eq(bounds[1], 21);
	ck_assert_uint_eq(bounds[2], 41);
	/* The waits were taken (10 + 20 + 40 ms drawn): not skipped. A
	 * timer may fire a little before its time as libevent counts it
	 * from the loop's cached clock, so no exact lower bound. */
	ck_assert_uint_ge(o.ns, 50 * MS);

	/* Past the cap the bound stays. */
	memset(&rq, 0, sizeof(rq));
	s3_client_free(cl);
	cl = client(NULL, 5, NULL);
	nseen = nbounds = 0;
	rq.op = S3_GET;
	rq.key = "k";
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_uint_eq(o.attempts, 6);
	ck_assert_uint_eq(bounds[3], 41);
	ck_assert_uint_eq(bounds[4], 41);
	s3_client_free(cl);
}
END_TEST

START_TEST(test_retry_then_answer)
{
	struct s3_client *cl = client(NULL, 3, NULL);
	struct s3_header h[] = { { "If-Match", "\"e\"" } };
	struct s3_request rq = { .op = S3_PUT, .key = "k", .headers = h,
	    .nheaders = 1, .body = "v", .body_len = 1 };
	struct outcome o;

	mode = M_STATUS;
	statuses[0] = 409;
	codes[0] = "ConditionalRequestConflict";
	statuses[1] = 500;
	codes[1] = "InternalError";
	nstatus = 2;
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 200);
	ck_assert_uint_eq(o.attempts, 3);
	/* The 500 may have been applied: a conditional write must know. */
	ck_assert_int_eq(o.earlier_unknown, 1);

	/* Never: one attempt, whatever came. */
	nseen = 0;
	rq.retry = S3_RETRY_NEVER;
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 409);
	ck_assert_uint_eq(o.attempts, 1);
	ck_assert_int_eq(nseen, 1);

	/* Other 4xx are answers, not retried. */
	nseen = 0;
	codes[0] = "AccessDenied";
	statuses[0] = 403;
	rq.retry = S3_RETRY_IDEMPOTENT;
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 403);
	ck_assert_uint_eq(o.attempts, 1);
	s3_client_free(cl);
}
END_TEST

/* Nothing listens: connect errors are retried up to the bound. */
START_TEST(test_connect_refused)
{
	struct s3_client_config cfg;
	struct s3_client *cl;
	struct s3_request rq = { .op = S3_HEAD, .key = "k" };
	struct outcome o;
	char ep[64], err[128];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);

	/* A port bound but not listening refuses connections. */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", ntohs(sin.sin_port));
	memset(&cfg, 0, sizeof(cfg));
	cfg.endpoint = ep;
	cfg.bucket = "b";
	cfg.access_key = "a";
	cfg.secret_key = "s";
	cfg.retries = 2;
	cfg.retry_base_ms = 5;
	cl = s3_client_new(base, &cfg, err, sizeof(err));
	ck_assert_ptr_nonnull(cl);
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.done, 1);
	ck_assert_int_eq(o.err, S3_E_CONNECT);
	ck_assert_int_eq(o.status, 0);
	ck_assert_uint_eq(o.attempts, 3);
	ck_assert_int_eq(o.earlier_unknown, 0);	/* never sent */
	s3_client_free(cl);
	close(fd);
}
END_TEST

/* --- deadline, cancel, the loop ------------------------------------------------- */

START_TEST(test_deadline)
{
	struct s3_client *cl = client(NULL, 3, NULL);
	struct s3_request rq = { .op = S3_GET, .key = "k", .timeout_ms = 300 };
	struct outcome o;
	uint64_t t0 = clock_now_ns();

	mode = M_HANG;
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.done, 1);
	ck_assert_int_eq(o.err, S3_E_TIMEOUT);
	/* The deadline covers the retries: none is left after it. */
	ck_assert_uint_eq(o.attempts, 1);
	ck_assert_uint_ge(clock_now_ns() - t0, 290 * MS);
	ck_assert_uint_lt(clock_now_ns() - t0, 1500 * MS);
	s3_client_free(cl);
}
END_TEST

START_TEST(test_cancel)
{
	struct s3_client *cl = client(NULL, 0, NULL);
	struct s3_request rq = { .op = S3_GET, .key = "k" };
	struct s3_call *c;
	struct outcome o, o2;

	mode = M_HANG;
	c = start(cl, &rq, &o);
	pump_for(100);
	ck_assert_int_eq(nseen, 1);
	s3_cancel(c);
	pump_for(100);
	ck_assert_int_eq(o.done, 0);
	/* The client goes on: the next request is answered. */
	mode = M_OK;
	start(cl, &rq, &o2);
	pump_until(&o2.done, 5000);
	ck_assert_int_eq(o2.status, 200);
	ck_assert_int_eq(o.done, 0);
	/* One left in flight when the client goes: never answered. */
	mode = M_HANG;
	start(cl, &rq, &o);
	pump_for(50);
	s3_client_free(cl);
	pump_for(50);
	ck_assert_int_eq(o.done, 0);
}
END_TEST

/* A body being hashed belongs to its caller again once the call is
 * cancelled, or its client freed: freed at once, it is not read after. */
START_TEST(test_cancel_while_hashing)
{
	struct s3_client *cl = client(NULL, 0, NULL);
	size_t n = 64u << 20;
	struct s3_request rq = { .op = S3_PUT, .key = "big" };
	struct s3_call *c;
	struct outcome o, o2;
	char err[128];
	uint8_t *big;

	ck_assert_int_eq(digest_init(base, err, sizeof(err)), 0);
	big = malloc(n);
	ck_assert_ptr_nonnull(big);
	memset(big, 'x', n);
	rq.body = big;
	rq.body_len = n;
	c = start(cl, &rq, &o);
	s3_cancel(c);
	free(big);		/* 64 MiB: unmapped at once */
	big = malloc(n);
	ck_assert_ptr_nonnull(big);
	memset(big, 'y', n);
	rq.body = big;
	start(cl, &rq, &o2);
	s3_client_free(cl);
	free(big);
	pump_for(300);
	digest_free();
	ck_assert_int_eq(o.done, 0);
	ck_assert_int_eq(o2.done, 0);
	ck_assert_int_eq(nseen, 0);
}
END_TEST

/* Racers each on a connection of their own, all in flight at once: none
 * takes the connection an earlier request left warm, none waits behind
 * another. */
START_TEST(test_fresh_connections)
{
	struct s3_client *cl = client(NULL, 0, NULL);
	struct s3_request rq = { .op = S3_GET, .key = "k" };
	struct outcome o, race[8];
	int i, j;

	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 200);
	mode = M_HANG;
	for (i = 0; i < 8; i++) {
		memset(&rq, 0, sizeof(rq));
		rq.op = S3_PUT;
		rq.key = "race";
		rq.body = "v";
		rq.body_len = 1;
		rq.fresh_connection = 1;
		start(cl, &rq, &race[i]);
	}
	for (i = 0; i < 500 && nseen < 9; i++)
		pump_for(10);
	ck_assert_int_eq(nseen, 9);
	for (i = 1; i < 9; i++) {
		ck_assert_uint_ne(seen[i].peer_port, seen[0].peer_port);
		for (j = 1; j < i; j++)
			ck_assert_uint_ne(seen[i].peer_port, seen[j].peer_port);
	}
	s3_client_free(cl);
	pump_for(50);
	for (i = 0; i < 8; i++)
		ck_assert_int_eq(race[i].done, 0);
}
END_TEST

struct stream {
	size_t	 bytes;
	int	 calls;
	int	 calls_by_half;		/* on_data calls before 250 ms */
	uint64_t t0;
	int	 stop_after;		/* refuse at that many calls; 0 never */
};

static int
on_data(void *arg, const void *buf, size_t len)
{
	struct stream *st = arg;

	st->bytes += len;
	st->calls++;
	if (clock_now_ns() - st->t0 < 250 * MS)
		st->calls_by_half++;
	return st->stop_after != 0 && st->calls >= st->stop_after ? -1 : 0;
}

/* A reply that takes half a second: the loop's 10 ms tick keeps firing
 * throughout, and the bytes reach on_data as they arrive, not at the
 * end. */
START_TEST(test_loop_not_blocked)
{
	struct s3_client *cl = client(NULL, 0, NULL);
	struct stream st = { 0 };
	struct s3_request rq = { .op = S3_GET, .key = "big",
	    .on_data = on_data, .data_arg = &st };
	struct outcome o;

	mode = M_SLOW;
	st.t0 = clock_now_ns();
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.status, 200);
	ck_assert_uint_eq(st.bytes, 10000);
	ck_assert_int_ge(st.calls_by_half, 2);
	ck_assert_uint_ge(o.ns, 450 * MS);
	/* 10 ms ticks over half a second: a loop blocked by the request
	 * would see one or none; a busy machine may merge some. */
	ck_assert_int_ge(ticks, 5);

	/* on_data refuses: the request ends there, not retried. */
	memset(&st, 0, sizeof(st));
	st.t0 = clock_now_ns();
	st.stop_after = 2;
	start(cl, &rq, &o);
	pump_until(&o.done, 5000);
	ck_assert_int_eq(o.err, S3_E_ABORTED);
	ck_assert_uint_eq(o.attempts, 1);
	ck_assert_int_eq(st.calls, 2);
	s3_client_free(cl);
	pump_for(600);		/* the server's chunks to a closed peer */
}
END_TEST

/*
 * A store that drops a kept-alive connection under a request: the first
 * connection answers its first request, then reads the second in full and
 * closes without a word; every later connection answers. curl sends the
 * request again on a fresh connection by itself, which needs the body from
 * its start again.
 */
struct dropper {
	struct evconnlistener	*ls;
	int			 port;
	int			 conns;		/* accepted */
	int			 first;		/* the one that drops */
	int			 answered;
	int			 dropped;
	size_t			 last_len;	/* the last answered body */
	char			 last_sha[65];
	struct dconn		*open[8];	/* by index, until closed */
};

struct dconn {
	struct dropper		*d;
	struct bufferevent	*bev;
	int			 index;		/* in the order accepted */
	int			 requests;
};

static void
dconn_close(struct dconn *dc)
{
	if (dc->index < 8)
		dc->d->open[dc->index] = NULL;
	bufferevent_free(dc->bev);
	free(dc);
}

static void
dropper_read(struct bufferevent *bev, void *arg)
{
	struct dconn *dc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr eoh;
	uint8_t d[SHA256_DIGEST_LENGTH];
	char *head, *cl;
	size_t hlen, blen;

	for (;;) {
		eoh = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (eoh.pos < 0)
			return;
		hlen = (size_t)eoh.pos + 4;
		head = malloc(hlen + 1);
		evbuffer_copyout(in, head, hlen);
		head[hlen] = '\0';
		cl = strcasestr(head, "\r\nContent-Length:");
		blen = cl != NULL ? strtoul(cl + 17, NULL, 10) : 0;
		free(head);
		if (evbuffer_get_length(in) < hlen + blen)
			return;
		evbuffer_drain(in, hlen);
		SHA256(evbuffer_pullup(in, (ev_ssize_t)blen), blen, d);
		evbuffer_drain(in, blen);
		if (dc->index == dc->d->first && ++dc->requests == 2) {
			dc->d->dropped++;
			dconn_close(dc);
			return;
		}
		dc->d->answered++;
		dc->d->last_len = blen;
		hexs(d, sizeof(d), dc->d->last_sha);
		evbuffer_add_printf(bufferevent_get_output(bev),
		    "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n"
		    "\r\n");
	}
}

static void
dropper_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		dconn_close(arg);
}

static void
dropper_accept(struct evconnlistener *ls, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct dropper *d = arg;
	struct bufferevent *bev;
	struct dconn *dc = calloc(1, sizeof(*dc));

	dc->d = d;
	dc->index = d->conns++;
	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	dc->bev = bev;
	if (dc->index < 8)
		d->open[dc->index] = dc;
	bufferevent_setcb(bev, dropper_read, NULL, dropper_event, dc);
	bufferevent_enable(bev, EV_READ);
}

static void
dropper_start(struct dropper *d)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);

	memset(d, 0, sizeof(*d));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d->ls = evconnlistener_new_bind(base, dropper_accept, d,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	    (struct sockaddr *)&sin, sizeof(sin));
	ck_assert_ptr_nonnull(d->ls);
	getsockname(evconnlistener_get_fd(d->ls), (struct sockaddr *)&sin,
	    &sl);
	d->port = ntohs(sin.sin_port);
}

/* Sent again by curl on a fresh connection, a body starts over: from
 * memory and streamed alike, whole, in one attempt of the client's. */
START_TEST(test_body_resent_on_fresh_connection)
{
	struct s3_client_config cfg;
	struct s3_client *cl;
	struct dropper d;
	struct s3_request rq = { .op = S3_PUT, .key = "k", .body = "first",
	    .body_len = 5 };
	struct outcome o;
	size_t n = 3000;
	uint8_t *pat = malloc(n), dg[SHA256_DIGEST_LENGTH];
	char ep[64], err[256], want[65];
	int i;

	dropper_start(&d);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", d.port);
	memset(&cfg, 0, sizeof(cfg));
	cfg.endpoint = ep;
	cfg.bucket = "bkt";
	cfg.access_key = "AK";
	cfg.secret_key = "SK";
	cfg.retries = 0;		/* curl's own resend, not ours */
	tu_fill(pat, n, 3);
	SHA256(pat, n, dg);
	hexs(dg, sizeof(dg), want);
	for (i = 0; i < 2; i++) {
		cl = s3_client_new(base, &cfg, err, sizeof(err));
		ck_assert_msg(cl != NULL, "%s", err);
		d.first = d.conns;
		rq = (struct s3_request){ .op = S3_PUT, .key = "k",
		    .body = "first", .body_len = 5 };
		start(cl, &rq, &o);
		pump_until(&o.done, 5000);
		ck_assert_int_eq(o.status, 200);
		memset(&rq, 0, sizeof(rq));
		rq.op = S3_PUT;
		rq.key = "k2";
		if (i == 0) {
			rq.body = pat;
			rq.body_len = n;
		} else {
			rq.body_read = read_pattern;
			rq.body_arg = pat;
			rq.body_size = n;
		}
		start(cl, &rq, &o);
		pump_until(&o.done, 5000);
		ck_assert_int_eq(d.dropped, i + 1);
		ck_assert_msg(o.err == S3_E_NONE, "%s: %s", s3_err_name(o.err),
		    o.errmsg);
		ck_assert_int_eq(o.status, 200);
		ck_assert_uint_eq(o.attempts, 1);
		ck_assert_int_eq(d.conns - d.first, 2);
		ck_assert_uint_eq(d.last_len, n);
		ck_assert_str_eq(d.last_sha, want);
		s3_client_free(cl);
	}
	for (i = 0; i < 8; i++)
		if (d.open[i] != NULL)
			dconn_close(d.open[i]);
	evconnlistener_free(d.ls);
	free(pat);
}
END_TEST

START_TEST(test_bad_arguments)
{
	struct s3_client_config cfg;
	struct s3_client *cl;
	struct s3_request rq = { .op = S3_GET, .done = done_cb };
	char err[128];

	memset(&cfg, 0, sizeof(cfg));
	cfg.endpoint = "ftp://x";
	cfg.access_key = "a";
	cfg.secret_key = "s";
	ck_assert_ptr_null(s3_client_new(base, &cfg, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "not an http:// or https://"));
	cfg.endpoint = "http://";
	ck_assert_ptr_null(s3_client_new(base, &cfg, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "no host"));
	cfg.endpoint = "http://h";
	cfg.secret_key = NULL;
	ck_assert_ptr_null(s3_client_new(base, &cfg, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "no credentials"));
	cl = client(NULL, 0, NULL);
	ck_assert_ptr_null(s3_start(cl, &rq, err, sizeof(err)));	/* no key */
	rq.key = "k";
	rq.body = "x";
	rq.body_len = 1;
	ck_assert_ptr_null(s3_start(cl, &rq, err, sizeof(err)));	/* GET body */
	s3_client_free(cl);
}
END_TEST

static Suite *
s3client_suite(void)
{
	Suite *s = suite_create("s3client");
	TCase *tc;

	tc = tcase_create("sign");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_sigv4_get_example);
	tcase_add_test(tc, test_sigv4_put_example);
	tcase_add_test(tc, test_content_sha256);
	tcase_add_test(tc, test_url_encoding);
	suite_add_tcase(s, tc);

	tc = tcase_create("reply");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_reply_headers_and_errors);
	tcase_add_test(tc, test_retry_bound_and_jitter);
	tcase_add_test(tc, test_retry_then_answer);
	tcase_add_test(tc, test_connect_refused);
	tcase_add_test(tc, test_deadline);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_cancel_while_hashing);
	tcase_add_test(tc, test_fresh_connections);
	tcase_add_test(tc, test_loop_not_blocked);
	tcase_add_test(tc, test_body_resent_on_fresh_connection);
	tcase_add_test(tc, test_bad_arguments);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(s3client_suite());
}
