/*
 * s3client.c: S3 requests over libcurl's multi interface on a libevent
 * loop (s3client.h): the loop glue (curl's sockets and timer as events),
 * building and signing a request, collecting its reply, retries with full
 * jitter, and the alpcrund_s3_* metrics.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/sha.h>

#include "clock.h"
#include "digest.h"
#include "metrics.h"
#include "s3client.h"

#define DEFAULT_TIMEOUT_MS	30000
#define DEFAULT_BASE_MS		50
#define DEFAULT_CAP_MS		5000
#define DEFAULT_IDLE		16
#define DEFAULT_MAX_BODY	(16u << 20)
/* Bodies hashed on the loop; larger ones go to the digest worker. */
#define HASH_INLINE_MAX		(64u << 10)
/* SHA-256 of no bytes: the x-amz-content-sha256 of a bodiless request. */
#define EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

enum call_state {
	CS_HASHING,	/* waiting on the digest worker */
	CS_RUNNING,	/* in the multi handle */
	CS_WAITING,	/* between attempts */
};

struct s3_call {
	TAILQ_ENTRY(s3_call)	 entry;
	struct s3_client	*cl;
	enum call_state		 state;
	struct s3_request	 req;		/* strings below are copies */
	char			*url;
	char			**want;		/* want_headers, copied */
	struct curl_slist	*hdrs;
	CURL			*easy;
	struct event		*retry_ev;
	char			 sha_hex[65];
	char			 curl_err[CURL_ERROR_SIZE];
	uint64_t		 start_ns;
	uint64_t		 deadline_ns;
	uint64_t		 read_off;	/* streamed or memory body */
	int			 delivered;	/* bytes went to on_data */
	int			 refused;	/* on_data said -1 */
	int			 too_large;
	int			 conditional;	/* If-Match or If-None-Match */
	size_t			 body_cap;
	size_t			 hcap;
	struct s3_response	 res;
};
TAILQ_HEAD(call_list, s3_call);

struct sock {
	struct event		*ev;
	struct s3_client	*cl;
	curl_socket_t		 fd;
};

struct s3_client {
	struct event_base	*base;
	CURLM			*multi;
	struct event		*timer;
	struct call_list	 calls;
	CURL			**idle;
	size_t			 nidle, maxidle;
	char			*endpoint, *bucket, *prefix, *region;
	char			*userpwd, *token_hdr, *ca_file, *connect_to;
	char			*sigv4, *url;
	struct curl_slist	*connect_list;
	uint64_t		 timeout_ms, base_ms, cap_ms;
	unsigned		 retries;
	int			 bare_if_match;	/* s3_client_set_bare_if_match() */
	s3_observe_fn		*observe;
	void			*observe_arg;
};

/* --- metrics ---------------------------------------------------------------- */

enum { R_2XX, R_3XX, R_4XX, R_5XX, R_ERROR, R_COUNT };

static const char *const op_names[S3_OP_COUNT] = {
	"GET", "PUT", "HEAD", "DELETE", "POST", "LIST",
};
static const char *const result_names[R_COUNT] = {
	"2xx", "3xx", "4xx", "5xx", "error",
};

static struct {
	uint64_t		 results[S3_OP_COUNT][R_COUNT];
	uint64_t		 retries[S3_OP_COUNT];
	uint64_t		 errors[S3_OP_COUNT];
	uint64_t		 in[S3_OP_COUNT], out[S3_OP_COUNT];
	struct metrics_hist	 latency[S3_OP_COUNT];
} mt;

static const char *
results_sample(void *arg, size_t i, const char **second, uint64_t *v)
{
	size_t op, r, seen = 0;

	/* The combinations seen so far, as requests_total shows codes. */
	for (op = 0; op < S3_OP_COUNT; op++)
		for (r = 0; r < R_COUNT; r++) {
			if (mt.results[op][r] == 0 || seen++ != i)
				continue;
			*second = result_names[r];
			*v = mt.results[op][r];
			return op_names[op];
		}
	return NULL;
}

static const char *
op_sample(void *arg, size_t i, uint64_t *v)
{
	const uint64_t *a = arg;

	if (i >= S3_OP_COUNT)
		return NULL;
	*v = a[i];
	return op_names[i];
}

int
s3_client_metrics(void)
{
	static int done;

	if (done++)
		return 0;
	return metrics_family2("alpcrund_s3_requests_total", "counter",
	    "S3 requests finished, by operation and result (the status "
	    "class of the last attempt's reply, or error: none came).",
	    "op", "result", results_sample, NULL) != 0 ||
	    metrics_family("alpcrund_s3_retries_total", "counter",
	    "S3 attempts made again after a 5xx, a 409 conflict or a "
	    "connection error, by operation.", "op", op_sample,
	    mt.retries) != 0 ||
	    metrics_family("alpcrund_s3_errors_total", "counter",
	    "S3 attempts that got no reply (resolve, connect, TLS, timeout, "
	    "connection lost), by operation.", "op", op_sample,
	    mt.errors) != 0 ||
	    metrics_family("alpcrund_s3_received_bytes_total", "counter",
	    "S3 reply body bytes received, by operation.", "op", op_sample,
	    mt.in) != 0 ||
	    metrics_family("alpcrund_s3_sent_bytes_total", "counter",
	    "S3 request body bytes sent, by operation.", "op", op_sample,
	    mt.out) != 0 ||
	    metrics_histogram("alpcrund_s3_request_duration_seconds",
	    "Time from an S3 request's start to its end, retries included, "
	    "by operation.", "op", op_names, mt.latency, S3_OP_COUNT) != 0 ?
	    -1 : 0;
}

const char *
s3_op_name(enum s3_op op)
{
	return (unsigned)op < S3_OP_COUNT ? op_names[op] : "?";
}

const char *
s3_err_name(enum s3_err e)
{
	static const char *const names[] = {
		"none", "cannot resolve", "cannot connect", "TLS",
		"timed out", "connection lost", "aborted", "reply too large",
		"internal error",
	};

	return (unsigned)e < sizeof(names) / sizeof(names[0]) ? names[e] :
	    "?";
}

/* --- small helpers ---------------------------------------------------------- */

static uint64_t
default_random(uint64_t bound)
{
	return bound <= 1 ? 0 : arc4random_uniform(bound > UINT32_MAX ?
	    UINT32_MAX : (uint32_t)bound);
}

static uint64_t (*random_fn)(uint64_t) = default_random;

void
s3_client_set_random(uint64_t (*fn)(uint64_t))
{
	random_fn = fn != NULL ? fn : default_random;
}

static char *__attribute__((format(printf, 1, 2)))
xprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static void
hex(const uint8_t *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = '\0';
}

/* SigV4's URI encoding: everything but A-Z a-z 0-9 - _ . ~ as %XX, and
 * '/' too unless keep_slash (an object key's slashes stay). */
static void
uri_encode(FILE *f, const char *s, int keep_slash)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || c == '-' || c == '_' || c == '.' ||
		    c == '~' || (keep_slash && c == '/'))
			fputc(c, f);
		else
			fprintf(f, "%%%02X", c);
	}
}

static int
param_cmp(const void *a, const void *b)
{
	const struct s3_param *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	return strcmp(x->value != NULL ? x->value : "",
	    y->value != NULL ? y->value : "");
}

/*
 * The request's URL: endpoint, bucket, encoded prefix+key, and the query
 * sorted by name, each name=value encoded: curl 7.88 signs the path and
 * query as sent, so they must already be in SigV4's canonical form.
 * (Names sort on their raw bytes; unreserved names encode to themselves,
 * which is all S3's API uses.)
 */
static char *
build_url(const struct s3_client *cl, const struct s3_request *req)
{
	struct s3_param *q = NULL;
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f;

	if ((f = open_memstream(&buf, &len)) == NULL)
		return NULL;
	fputs(cl->endpoint, f);
	if (cl->bucket != NULL) {
		fputc('/', f);
		uri_encode(f, cl->bucket, 0);
	}
	if (req->key != NULL) {
		fputc('/', f);
		if (cl->prefix != NULL)
			uri_encode(f, cl->prefix, 1);
		uri_encode(f, req->key, 1);
	} else if (cl->bucket == NULL)
		fputc('/', f);
	if (req->nquery > 0) {
		if ((q = malloc(req->nquery * sizeof(*q))) == NULL) {
			fclose(f);
			free(buf);
			return NULL;
		}
		memcpy(q, req->query, req->nquery * sizeof(*q));
		qsort(q, req->nquery, sizeof(*q), param_cmp);
		for (i = 0; i < req->nquery; i++) {
			fputc(i == 0 ? '?' : '&', f);
			uri_encode(f, q[i].name, 0);
			fputc('=', f);
			uri_encode(f, q[i].value != NULL ? q[i].value : "", 0);
		}
		free(q);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* --- the loop glue ----------------------------------------------------------- */

static void	check_done(struct s3_client *);

static void
sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sock *sk = arg;
	struct s3_client *cl = sk->cl;
	int flags = 0, running;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	/* sk may be freed inside (CURL_POLL_REMOVE): not used after. */
	curl_multi_socket_action(cl->multi, fd, flags, &running);
	check_done(cl);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct s3_client *cl = arg;
	int running;

	curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(cl);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl waits on. */
static int
socket_fn(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct s3_client *cl = userp;
	struct sock *sk = socketp;
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (sk != NULL) {
			event_free(sk->ev);
			free(sk);
		}
		curl_multi_assign(cl->multi, fd, NULL);
		return 0;
	}
	if (sk == NULL) {
		if ((sk = calloc(1, sizeof(*sk))) == NULL)
			return -1;
		sk->cl = cl;
		sk->fd = fd;
		curl_multi_assign(cl->multi, fd, sk);
	} else {
		event_free(sk->ev);
	}
	kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if ((sk->ev = event_new(cl->base, fd, kind, sock_cb, sk)) == NULL ||
	    event_add(sk->ev, NULL) != 0)
		return -1;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl's one timer; never calls back into curl
 * here (a 0 ms timer runs from the loop). */
static int
timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct s3_client *cl = userp;
	struct timeval tv;

	if (timeout_ms < 0)
		return evtimer_del(cl->timer);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(cl->timer, &tv);
}

/* --- one attempt -------------------------------------------------------------- */

static int
status_class(int status)
{
	if (status >= 200 && status < 300)
		return R_2XX;
	if (status >= 300 && status < 400)
		return R_3XX;
	if (status >= 400 && status < 500)
		return R_4XX;
	return status >= 500 ? R_5XX : R_ERROR;
}

static void
free_headers(struct s3_response *res)
{
	size_t i;

	for (i = 0; i < res->nheaders; i++) {
		free((char *)res->headers[i].name);
		free((char *)res->headers[i].value);
	}
	free(res->headers);
	res->headers = NULL;
	res->nheaders = 0;
}

/* Forget what an earlier attempt got. */
static void
reset_response(struct s3_call *c)
{
	free_headers(&c->res);
	free(c->res.body);
	c->res.body = NULL;
	c->res.body_len = 0;
	c->body_cap = 0;
	c->hcap = 0;
	c->res.status = 0;
	c->res.err = S3_E_NONE;
	c->res.errmsg[0] = c->res.etag[0] = c->res.code[0] =
	    c->res.message[0] = '\0';
	c->res.bytes_in = c->res.bytes_out = 0;
	c->read_off = 0;
	c->refused = c->too_large = 0;
	c->curl_err[0] = '\0';
}

static int
wanted(const struct s3_call *c, const char *name, size_t len)
{
	size_t i;

	if (len > 11 && strncasecmp(name, "x-amz-meta-", 11) == 0)
		return 1;
	for (i = 0; c->want != NULL && c->want[i] != NULL; i++)
		if (strlen(c->want[i]) == len &&
		    strncasecmp(c->want[i], name, len) == 0)
			return 1;
	return 0;
}

static int
keep_header(struct s3_call *c, const char *name, size_t nlen,
    const char *val, size_t vlen)
{
	struct s3_header *h;

	if (c->res.nheaders == c->hcap) {
		size_t n = c->hcap != 0 ? 2 * c->hcap : 8;

		if ((h = realloc(c->res.headers, n * sizeof(*h))) == NULL)
			return -1;
		c->res.headers = h;
		c->hcap = n;
	}
	h = &c->res.headers[c->res.nheaders];
	if ((h->name = strndup(name, nlen)) == NULL)
		return -1;
	if ((h->value = strndup(val, vlen)) == NULL) {
		free((char *)h->name);
		return -1;
	}
	c->res.nheaders++;
	return 0;
}

static size_t
header_fn(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_call *c = arg;
	size_t len = size * n, nlen, vlen;
	const char *colon, *v;

	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (len > 5 && strncmp(buf, "HTTP/", 5) == 0) {
		/* A status line: a 100 Continue's headers are not the
		 * reply's. */
		const char *sp = memchr(buf, ' ', len);

		free_headers(&c->res);
		c->hcap = 0;
		c->res.etag[0] = '\0';
		c->res.status = sp != NULL ? atoi(sp + 1) : 0;
		return size * n;
	}
	if ((colon = memchr(buf, ':', len)) == NULL)
		return size * n;
	nlen = (size_t)(colon - buf);
	v = colon + 1;
	while (v < buf + len && (*v == ' ' || *v == '\t'))
		v++;
	vlen = (size_t)(buf + len - v);
	if (nlen == 4 && strncasecmp(buf, "etag", 4) == 0) {
		if (vlen >= sizeof(c->res.etag))
			vlen = sizeof(c->res.etag) - 1;
		memcpy(c->res.etag, v, vlen);
		c->res.etag[vlen] = '\0';
	} else if (wanted(c, buf, nlen) && keep_header(c, buf, nlen, v,
	    vlen) != 0)
		return 0;	/* out of memory: curl fails the transfer */
	return size * n;
}

static size_t
write_fn(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_call *c = arg;
	size_t len = size * n, cap;
	uint8_t *p;

	c->res.bytes_in += len;
	if (c->req.on_data != NULL && c->res.status >= 200 &&
	    c->res.status < 300) {
		c->delivered = 1;
		if (c->req.on_data(c->req.data_arg, buf, len) != 0) {
			c->refused = 1;
			return 0;
		}
		return len;
	}
	cap = c->req.max_body != 0 ? c->req.max_body : DEFAULT_MAX_BODY;
	if (c->res.body_len + len > cap) {
		c->too_large = 1;
		return 0;
	}
	if (c->res.body_len + len + 1 > c->body_cap) {
		size_t want = c->body_cap != 0 ? c->body_cap : 4096;

		while (want < c->res.body_len + len + 1)
			want *= 2;
		if ((p = realloc(c->res.body, want)) == NULL)
			return 0;
		c->res.body = p;
		c->body_cap = want;
	}
	memcpy(c->res.body + c->res.body_len, buf, len);
	c->res.body_len += len;
	c->res.body[c->res.body_len] = '\0';	/* for the XML scan */
	return len;
}

static size_t
read_fn(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_call *c = arg;
	size_t len = size * n;
	ssize_t got;

	if (c->req.body_read != NULL) {
		if (c->read_off >= c->req.body_size)
			return 0;
		if (len > c->req.body_size - c->read_off)
			len = (size_t)(c->req.body_size - c->read_off);
		got = c->req.body_read(c->req.body_arg, c->read_off, buf, len);
		if (got < 0) {
			c->refused = 1;
			return CURL_READFUNC_ABORT;
		}
	} else {
		if (c->read_off >= c->req.body_len)
			return 0;
		got = (ssize_t)(c->req.body_len - c->read_off);
		if ((size_t)got > len)
			got = (ssize_t)len;
		memcpy(buf, (const uint8_t *)c->req.body + c->read_off,
		    (size_t)got);
	}
	c->read_off += (uint64_t)got;
	c->res.bytes_out += (uint64_t)got;
	return (size_t)got;
}

/* CURLOPT_SEEKFUNCTION: curl sends a request again by itself (a kept
 * connection found closed under it, a refused HTTP/2 stream, a 417 to
 * Expect) and wants the body from its start again; without this it fails
 * the attempt ("necessary data rewind wasn't possible"). */
static int
seek_fn(void *arg, curl_off_t off, int origin)
{
	struct s3_call *c = arg;
	uint64_t size = c->req.body_read != NULL ? c->req.body_size :
	    c->req.body_len;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > size)
		return CURL_SEEKFUNC_CANTSEEK;
	c->read_off = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

/* The text of <tag>…</tag> in an S3 error body, into out. */
static void
xml_field(const struct s3_response *res, const char *tag, char *out,
    size_t cap)
{
	char open[32], close[32];
	const char *a, *b;
	size_t n;

	out[0] = '\0';
	if (res->body == NULL)
		return;
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	if ((a = strstr((const char *)res->body, open)) == NULL)
		return;
	a += strlen(open);
	if ((b = strstr(a, close)) == NULL)
		return;
	n = (size_t)(b - a);
	if (n >= cap)
		n = cap - 1;
	memcpy(out, a, n);
	out[n] = '\0';
}

static enum s3_err
map_curl(const struct s3_call *c, CURLcode rc)
{
	if (c->refused)
		return S3_E_ABORTED;
	if (c->too_large)
		return S3_E_TOO_LARGE;
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
		return S3_E_RESOLVE;
	case CURLE_COULDNT_CONNECT:
		return S3_E_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return S3_E_TIMEOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
		return S3_E_TLS;
	case CURLE_OUT_OF_MEMORY:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return S3_E_INTERNAL;
	default:
		return S3_E_IO;
	}
}

static void	finish(struct s3_call *);

static int
add_attempt(struct s3_call *c)
{
	struct s3_client *cl = c->cl;
	uint64_t now = clock_now_ns(), left_ms;

	left_ms = c->deadline_ns > now ? (c->deadline_ns - now) / 1000000 : 0;
	if (left_ms == 0)
		left_ms = 1;
	reset_response(c);
	c->res.attempts++;
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)left_ms);
	if (curl_multi_add_handle(cl->multi, c->easy) != CURLM_OK)
		return -1;
	c->state = CS_RUNNING;
	return 0;
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct s3_call *c = arg;

	if (add_attempt(c) != 0) {
		c->res.err = S3_E_INTERNAL;
		snprintf(c->res.errmsg, sizeof(c->res.errmsg),
		    "cannot start a retry");
		finish(c);
	}
}

/* Whether this attempt's outcome calls for another, and may have been
 * applied (earlier_unknown). */
static int
retryable(const struct s3_call *c, int *unknown)
{
	const struct s3_response *r = &c->res;

	*unknown = 0;
	if (r->err != S3_E_NONE) {
		if (r->err == S3_E_IO || r->err == S3_E_TIMEOUT)
			*unknown = 1;
		return r->err == S3_E_CONNECT || r->err == S3_E_IO ||
		    r->err == S3_E_RESOLVE;
	}
	if (r->status >= 500) {
		*unknown = r->status != 503;
		return 1;
	}
	return r->status == 409 &&
	    strcmp(r->code, "ConditionalRequestConflict") == 0;
}

/* The attempt in c->easy ended with rc. */
static void
attempt_done(struct s3_call *c, CURLcode rc)
{
	struct s3_client *cl = c->cl;
	uint64_t now, delay_ms, bound;
	struct timeval tv;
	int unknown;

	curl_multi_remove_handle(cl->multi, c->easy);
	mt.in[c->req.op] += c->res.bytes_in;
	mt.out[c->req.op] += c->res.bytes_out;
	if (rc != CURLE_OK) {
		c->res.err = map_curl(c, rc);
		c->res.status = 0;
		snprintf(c->res.errmsg, sizeof(c->res.errmsg), "%s",
		    c->curl_err[0] != '\0' ? c->curl_err :
		    curl_easy_strerror(rc));
		if (c->res.err != S3_E_ABORTED && c->res.err != S3_E_TOO_LARGE)
			mt.errors[c->req.op]++;
	} else {
		long code = 0;

		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
		c->res.status = (int)code;
		if (code >= 300) {
			xml_field(&c->res, "Code", c->res.code,
			    sizeof(c->res.code));
			xml_field(&c->res, "Message", c->res.message,
			    sizeof(c->res.message));
		}
	}
	if (c->req.retry != S3_RETRY_IDEMPOTENT ||
	    c->res.attempts > cl->retries || c->delivered ||
	    !retryable(c, &unknown)) {
		finish(c);
		return;
	}
	/* Full jitter: a random wait up to the doubled base, capped. */
	bound = cl->base_ms << (c->res.attempts - 1 < 20 ?
	    c->res.attempts - 1 : 20);
	if (bound > cl->cap_ms)
		bound = cl->cap_ms;
	delay_ms = random_fn(bound + 1);
	now = clock_now_ns();
	if (now + delay_ms * 1000000 >= c->deadline_ns) {
		finish(c);
		return;
	}
	if (unknown)
		c->res.earlier_unknown = 1;
	mt.retries[c->req.op]++;
	tv.tv_sec = (time_t)(delay_ms / 1000);
	tv.tv_usec = (suseconds_t)((delay_ms % 1000) * 1000);
	c->state = CS_WAITING;
	if (evtimer_add(c->retry_ev, &tv) != 0)
		finish(c);
}

static void
check_done(struct s3_client *cl)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(cl->multi, &left)) != NULL) {
		struct s3_call *c = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
		    (char **)&c);
		if (c != NULL)
			attempt_done(c, msg->data.result);
	}
}

/* --- a request's life ---------------------------------------------------------- */

static void
put_handle(struct s3_client *cl, CURL *easy)
{
	if (easy == NULL)
		return;
	if (cl->nidle < cl->maxidle) {
		curl_easy_reset(easy);
		cl->idle[cl->nidle++] = easy;
	} else
		curl_easy_cleanup(easy);
}

static void	hashed(void *, const uint8_t [DIGEST_LEN]);

static void
call_free(struct s3_call *c)
{
	size_t i;

	if (c->state == CS_HASHING)
		/* The worker reads the body no more after this. */
		digest_cancel(hashed, c);
	TAILQ_REMOVE(&c->cl->calls, c, entry);
	if (c->state == CS_RUNNING)
		curl_multi_remove_handle(c->cl->multi, c->easy);
	put_handle(c->cl, c->easy);
	if (c->retry_ev != NULL)
		event_free(c->retry_ev);
	curl_slist_free_all(c->hdrs);
	free(c->url);
	free((char *)c->req.key);
	for (i = 0; c->want != NULL && c->want[i] != NULL; i++)
		free(c->want[i]);
	free(c->want);
	free_headers(&c->res);
	free(c->res.body);
	free(c);
}

static void
finish(struct s3_call *c)
{
	uint64_t dur = clock_now_ns() - c->start_ns;

	c->res.duration_ns = dur;
	mt.results[c->req.op][c->res.err != S3_E_NONE ? R_ERROR :
	    status_class(c->res.status)]++;
	metrics_observe(&mt.latency[c->req.op], dur);
	if (c->cl->observe != NULL)
		c->cl->observe(c->cl->observe_arg, c->req.op, c->req.key,
		    c->conditional, &c->res);
	c->req.done(c->req.arg, &c->res);
	call_free(c);
}

static struct curl_slist *
add_header(struct curl_slist *l, const char *name, const char *value)
{
	struct curl_slist *n;
	char *line;

	if ((line = xprintf("%s: %s", name, value)) == NULL)
		return NULL;
	n = curl_slist_append(l, line);
	free(line);
	return n;
}

/* The caller's headers and the session token's, copied into a curl
 * list; 0 or -1. */
static int
copy_headers(struct s3_call *c, const struct s3_request *r)
{
	struct curl_slist *n;
	size_t i;

	for (i = 0; i < r->nheaders; i++) {
		const char *v = r->headers[i].value;
		char bare[256];
		size_t vl = strlen(v);

		if (c->cl->bare_if_match &&
		    strcasecmp(r->headers[i].name, "If-Match") == 0 &&
		    vl >= 2 && vl < sizeof(bare) + 2 && v[0] == '"' &&
		    v[vl - 1] == '"') {
			memcpy(bare, v + 1, vl - 2);
			bare[vl - 2] = '\0';
			v = bare;
		}
		if ((n = add_header(c->hdrs, r->headers[i].name, v)) == NULL)
			return -1;
		c->hdrs = n;
	}
	if (c->cl->token_hdr != NULL) {
		if ((n = curl_slist_append(c->hdrs, c->cl->token_hdr)) == NULL)
			return -1;
		c->hdrs = n;
	}
	return 0;
}

/* The handle and its options, x-amz-content-sha256 added to the headers
 * (sha_hex known by now); 0 or -1. */
static int
setup(struct s3_call *c, char *err, size_t errlen)
{
	struct s3_client *cl = c->cl;
	const struct s3_request *r = &c->req;
	struct curl_slist *l;
	CURL *e;

	if (cl->nidle > 0)
		e = cl->idle[--cl->nidle];
	else if ((e = curl_easy_init()) == NULL)
		goto nomem;
	c->easy = e;
	if ((l = add_header(c->hdrs, "x-amz-content-sha256", c->sha_hex)) ==
	    NULL)
		goto nomem;
	c->hdrs = l;
	curl_easy_setopt(e, CURLOPT_URL, c->url);
	/* A key is no path: "a/../b" names an object of its own, sent and
	 * signed as such (SigV4 for S3 does not normalise either). */
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)c);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, l);
	curl_easy_setopt(e, CURLOPT_AWS_SIGV4, cl->sigv4);
	curl_easy_setopt(e, CURLOPT_USERPWD, cl->userpwd);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_fn);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_fn);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (cl->ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, cl->ca_file);
	if (cl->connect_list != NULL)
		curl_easy_setopt(e, CURLOPT_CONNECT_TO, cl->connect_list);
	if (r->fresh_connection)
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	if (r->stall_ms != 0) {
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
		    (long)((r->stall_ms + 999) / 1000));
	}
	switch (r->op) {
	case S3_GET:
	case S3_LIST:
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
		break;
	case S3_HEAD:
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
		break;
	case S3_DELETE:
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
		break;
	case S3_PUT:
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		break;
	case S3_POST:
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		break;
	default:
		snprintf(err, errlen, "unknown operation %d", (int)r->op);
		return -1;
	}
	if (r->op == S3_PUT || r->op == S3_POST) {
		curl_off_t size = (curl_off_t)(r->body_read != NULL ?
		    r->body_size : r->body_len);

		curl_easy_setopt(e, CURLOPT_READFUNCTION, read_fn);
		curl_easy_setopt(e, CURLOPT_READDATA, c);
		curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_fn);
		curl_easy_setopt(e, CURLOPT_SEEKDATA, c);
		if (r->op == S3_PUT)
			curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, size);
		else
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, size);
	}
	if ((c->retry_ev = evtimer_new(cl->base, retry_cb, c)) == NULL)
		goto nomem;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* The digest worker hashed a large body. */
static void
hashed(void *arg, const uint8_t digest[DIGEST_LEN])
{
	struct s3_call *c = arg;
	char err[128] = "";

	c->state = CS_WAITING;		/* the worker is done with it */
	hex(digest, DIGEST_LEN, c->sha_hex);
	if (setup(c, err, sizeof(err)) != 0 || add_attempt(c) != 0) {
		c->res.err = S3_E_INTERNAL;
		snprintf(c->res.errmsg, sizeof(c->res.errmsg), "%s",
		    err[0] != '\0' ? err : "cannot start");
		finish(c);
	}
}

struct s3_call *
s3_start(struct s3_client *cl, const struct s3_request *req, char *err,
    size_t errlen)
{
	struct s3_call *c;
	size_t i, nwant = 0;
	uint64_t tmo;

	err[0] = '\0';
	if ((unsigned)req->op >= S3_OP_COUNT || req->done == NULL ||
	    (req->key == NULL && req->op != S3_LIST) ||
	    (req->body_read != NULL && req->body != NULL) ||
	    ((req->body != NULL || req->body_read != NULL) &&
	    req->op != S3_PUT && req->op != S3_POST)) {
		snprintf(err, errlen, "bad request arguments");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto nomem;
	c->cl = cl;
	c->req = *req;
	c->req.key = NULL;
	c->req.query = NULL;
	c->req.headers = NULL;
	c->req.want_headers = NULL;
	TAILQ_INSERT_TAIL(&cl->calls, c, entry);
	c->start_ns = clock_now_ns();
	tmo = req->timeout_ms != 0 ? req->timeout_ms : cl->timeout_ms;
	c->deadline_ns = c->start_ns + tmo * 1000000;
	if (req->key != NULL && (c->req.key = strdup(req->key)) == NULL)
		goto nomem_free;
	if ((c->url = build_url(cl, req)) == NULL)
		goto nomem_free;
	for (i = 0; req->want_headers != NULL && req->want_headers[i]; i++)
		nwant++;
	if (nwant > 0) {
		if ((c->want = calloc(nwant + 1, sizeof(char *))) == NULL)
			goto nomem_free;
		for (i = 0; i < nwant; i++)
			if ((c->want[i] = strdup(req->want_headers[i])) ==
			    NULL)
				goto nomem_free;
	}
	/* Into a curl list now: the caller's array need not outlive this
	 * call. */
	if (copy_headers(c, req) != 0)
		goto nomem_free;
	for (i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, "If-Match") == 0 ||
		    strcasecmp(req->headers[i].name, "If-None-Match") == 0)
			c->conditional = 1;
	c->req.nheaders = 0;
	if (req->body_read != NULL)
		snprintf(c->sha_hex, sizeof(c->sha_hex), "UNSIGNED-PAYLOAD");
	else if (req->body == NULL || req->body_len == 0)
		snprintf(c->sha_hex, sizeof(c->sha_hex), "%s", EMPTY_SHA256);
	else if (req->body_len > HASH_INLINE_MAX) {
		/* Off the loop; the rest when it is back (hashed()). */
		c->state = CS_HASHING;
		if (digest_start(req->body, req->body_len, hashed, c) == 0)
			return c;
	}
	if (c->sha_hex[0] == '\0') {
		uint8_t d[SHA256_DIGEST_LENGTH];

		SHA256(req->body, req->body_len, d);
		hex(d, sizeof(d), c->sha_hex);
	}
	c->state = CS_WAITING;
	if (setup(c, err, errlen) != 0)
		goto fail;
	if (add_attempt(c) != 0) {
		snprintf(err, errlen, "cannot add the request to curl");
		goto fail;
	}
	return c;
nomem_free:
	snprintf(err, errlen, "out of memory");
fail:
	c->state = CS_WAITING;
	call_free(c);
	return NULL;
nomem:
	snprintf(err, errlen, "out of memory");
	return NULL;
}

void
s3_cancel(struct s3_call *c)
{
	if (c == NULL)
		return;
	call_free(c);
}

const char *
s3_response_header(const struct s3_response *res, const char *name)
{
	size_t i;

	for (i = 0; i < res->nheaders; i++)
		if (strcasecmp(res->headers[i].name, name) == 0)
			return res->headers[i].value;
	return NULL;
}

const char *
s3_client_url(const struct s3_client *cl)
{
	return cl->url;
}

const char *
s3_client_prefix(const struct s3_client *cl)
{
	return cl->prefix != NULL ? cl->prefix : "";
}

void
s3_client_set_bare_if_match(struct s3_client *cl, int on)
{
	cl->bare_if_match = on;
}

int
s3_client_bare_if_match(const struct s3_client *cl)
{
	return cl->bare_if_match;
}

void
s3_client_set_observer(struct s3_client *cl, s3_observe_fn *fn, void *arg)
{
	cl->observe = fn;
	cl->observe_arg = arg;
}

/* The endpoint without a trailing slash, checked: http(s)://host… */
static char *
endpoint_of(const char *ep, char *err, size_t errlen)
{
	const char *host;
	char *s;
	size_t n;

	if (ep == NULL || (strncmp(ep, "http://", 7) != 0 &&
	    strncmp(ep, "https://", 8) != 0)) {
		snprintf(err, errlen, "endpoint %s: not an http:// or "
		    "https:// URL", ep != NULL ? ep : "(none)");
		return NULL;
	}
	host = strstr(ep, "://") + 3;
	if (*host == '\0' || *host == '/' || *host == ':') {
		snprintf(err, errlen, "endpoint %s: no host", ep);
		return NULL;
	}
	if ((s = strdup(ep)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	n = strlen(s);
	while (n > 0 && s[n - 1] == '/')
		s[--n] = '\0';
	return s;
}

struct s3_client *
s3_client_new(struct event_base *base, const struct s3_client_config *cfg,
    char *err, size_t errlen)
{
	static int curl_ready;
	struct s3_client *cl;

	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			snprintf(err, errlen, "cannot initialise libcurl");
			return NULL;
		}
		curl_ready = 1;
	}
	if (cfg->access_key == NULL || cfg->secret_key == NULL ||
	    strchr(cfg->access_key, ':') != NULL) {
		snprintf(err, errlen, "no credentials (or an access key "
		    "with a colon)");
		return NULL;
	}
	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	TAILQ_INIT(&cl->calls);
	cl->base = base;
	if ((cl->endpoint = endpoint_of(cfg->endpoint, err, errlen)) == NULL)
		goto fail;
	cl->timeout_ms = cfg->timeout_ms != 0 ? cfg->timeout_ms :
	    DEFAULT_TIMEOUT_MS;
	cl->base_ms = cfg->retry_base_ms != 0 ? cfg->retry_base_ms :
	    DEFAULT_BASE_MS;
	cl->cap_ms = cfg->retry_cap_ms != 0 ? cfg->retry_cap_ms :
	    DEFAULT_CAP_MS;
	cl->retries = cfg->retries;
	cl->maxidle = cfg->idle_handles != 0 ? cfg->idle_handles :
	    DEFAULT_IDLE;
	if (cfg->bucket != NULL && cfg->bucket[0] != '\0' &&
	    (cl->bucket = strdup(cfg->bucket)) == NULL)
		goto nomem;
	if (cfg->prefix != NULL && cfg->prefix[0] != '\0' &&
	    (cl->prefix = strdup(cfg->prefix)) == NULL)
		goto nomem;
	if ((cl->region = strdup(cfg->region != NULL ? cfg->region :
	    "us-east-1")) == NULL ||
	    (cl->sigv4 = xprintf("aws:amz:%s:s3", cl->region)) == NULL ||
	    (cl->userpwd = xprintf("%s:%s", cfg->access_key,
	    cfg->secret_key)) == NULL ||
	    (cl->url = xprintf("%s%s%s", cl->endpoint, cl->bucket != NULL ?
	    "/" : "", cl->bucket != NULL ? cl->bucket : "")) == NULL)
		goto nomem;
	if (cfg->session_token != NULL && (cl->token_hdr = xprintf(
	    "x-amz-security-token: %s", cfg->session_token)) == NULL)
		goto nomem;
	if ((cfg->ca_file != NULL &&
	    (cl->ca_file = strdup(cfg->ca_file)) == NULL) ||
	    (cfg->connect_to != NULL &&
	    (cl->connect_list = curl_slist_append(NULL,
	    cfg->connect_to)) == NULL))
		goto nomem;
	if ((cl->idle = calloc(cl->maxidle, sizeof(CURL *))) == NULL ||
	    (cl->multi = curl_multi_init()) == NULL ||
	    (cl->timer = evtimer_new(base, timer_cb, cl)) == NULL)
		goto nomem;
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
	/* Connections kept for reuse: as many as requests run at once,
	 * about. */
	curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS,
	    (long)(cl->maxidle * 2));
	return cl;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	s3_client_free(cl);
	return NULL;
}

void
s3_client_free(struct s3_client *cl)
{
	struct s3_call *c;
	size_t i;

	if (cl == NULL)
		return;
	while ((c = TAILQ_FIRST(&cl->calls)) != NULL)
		call_free(c);
	for (i = 0; i < cl->nidle; i++)
		curl_easy_cleanup(cl->idle[i]);
	if (cl->multi != NULL)
		curl_multi_cleanup(cl->multi);
	if (cl->timer != NULL)
		event_free(cl->timer);
	curl_slist_free_all(cl->connect_list);
	free(cl->idle);
	free(cl->endpoint);
	free(cl->bucket);
	free(cl->prefix);
	free(cl->region);
	free(cl->sigv4);
	if (cl->userpwd != NULL)
		explicit_bzero(cl->userpwd, strlen(cl->userpwd));
	free(cl->userpwd);
	free(cl->token_hdr);
	free(cl->ca_file);
	free(cl->url);
	free(cl);
}
