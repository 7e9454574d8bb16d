/*
 * s3client.h: an asynchronous S3 client on the daemon's libevent loop.
 *
 * libcurl's multi interface does the HTTP: its sockets and its timer are
 * libevent events of the caller's base (curl_multi_socket_action), so a
 * request never blocks the loop. One CURLM per client, so connections are
 * reused across requests; a few idle easy handles are kept for the next.
 *
 * Requests are path-style, `endpoint/bucket/prefix+key` (no bucket: the
 * endpoint names it, virtual-hosted style), signed by curl's SigV4
 * (CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3") with the x-amz-content-sha256
 * header that curl 7.88 does not add: the SHA-256 of a body in memory,
 * UNSIGNED-PAYLOAD for a streamed one. curl 7.88 signs every header given
 * here; it sorts them as whole "name:value" lines, so two header names one
 * the other's prefix (x-amz-meta-a, x-amz-meta-a-b) would sign wrong:
 * avoid them.
 *
 * Retries: bounded, with full jitter (a random wait in 0..min(cap,
 * base * 2^n)), on 5xx, 503 SlowDown, 409 ConditionalRequestConflict and
 * connection errors, within the request's deadline, when its policy is
 * S3_RETRY_IDEMPOTENT. A retried conditional write can answer 412 for its
 * own earlier write whose reply was lost: the response says how many
 * attempts there were and whether an earlier one may have been applied,
 * and the caller resolves that by reading back.
 *
 * Every callback runs on the loop thread. done runs exactly once per
 * request unless the request is cancelled first (then never). A done may
 * start requests and cancel others, not its own, and must not free the
 * client (the client's loop glue goes on with it after done returns).
 * body_read and on_data run inside curl: they end their request by
 * returning -1, never by s3_cancel() or s3_client_free().
 */
#ifndef ALPCRUND_S3CLIENT_H
#define ALPCRUND_S3CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct s3_client;
struct s3_call;

struct s3_client_config {
	const char	*endpoint;	/* http://host[:port] or https://… */
	const char	*bucket;	/* NULL or "": the endpoint names it */
	const char	*prefix;	/* before every key; NULL: none */
	const char	*region;	/* NULL: us-east-1 */
	const char	*access_key;
	const char	*secret_key;
	const char	*session_token;	/* NULL: none (x-amz-security-token) */
	const char	*ca_file;	/* NULL: the system's trust store */
	uint64_t	 timeout_ms;	/* a request's deadline; 0: 30 s */
	unsigned	 retries;	/* attempts after the first */
	uint64_t	 retry_base_ms;	/* 0: 50 ms */
	uint64_t	 retry_cap_ms;	/* 0: 5 s */
	size_t		 idle_handles;	/* easy handles kept; 0: 16 */
	/* Tests: a CURLOPT_CONNECT_TO entry, "host:port:addr:port", to
	 * reach a listener under another host name than the endpoint's. */
	const char	*connect_to;
};

/* The operation: the method, and the metrics' label. */
enum s3_op {
	S3_GET = 0,
	S3_PUT,
	S3_HEAD,
	S3_DELETE,
	S3_POST,
	S3_LIST,	/* GET of the bucket: ListObjectsV2 by its query */
	S3_OP_COUNT
};

enum s3_retry {
	S3_RETRY_IDEMPOTENT = 0,	/* retried, within retries and deadline */
	S3_RETRY_NEVER,			/* one attempt */
};

/* Why no HTTP response came (s3_response.err). */
enum s3_err {
	S3_E_NONE = 0,		/* a response, of any status */
	S3_E_RESOLVE,		/* the host name did not resolve */
	S3_E_CONNECT,		/* could not connect */
	S3_E_TLS,		/* handshake or certificate */
	S3_E_TIMEOUT,		/* the deadline (or stall bound) passed */
	S3_E_IO,		/* the connection failed mid-request */
	S3_E_ABORTED,		/* on_data refused the bytes */
	S3_E_TOO_LARGE,		/* a collected body passed max_body */
	S3_E_INTERNAL,		/* out of memory, a curl setup error */
};

struct s3_header {
	const char	*name;
	const char	*value;
};

/* A query parameter; encoded and sorted by the client (SigV4's canonical
 * query string is what curl 7.88 signs as sent). */
struct s3_param {
	const char	*name;
	const char	*value;		/* NULL: "" */
};

/* A streamed request body: up to len bytes at off into buf; the count,
 * 0 at the end, -1 to abort. Called with off 0 again on a retry, ours or
 * curl's own (a kept connection found closed under the request). */
typedef ssize_t s3_read_fn(void *arg, uint64_t off, void *buf, size_t len);
/* A streamed response body (2xx only): bytes as they arrive; 0 goes on,
 * -1 aborts the request (S3_E_ABORTED). */
typedef int s3_data_fn(void *arg, const void *buf, size_t len);

struct s3_response {
	int		 status;	/* HTTP status; 0 when err is set */
	enum s3_err	 err;
	char		 errmsg[256];	/* curl's words when err is set */
	char		 etag[128];	/* ETag as sent (quoted) or "" */
	char		 code[64];	/* S3 error XML's Code, or "" */
	char		 message[256];	/* and its Message */
	struct s3_header *headers;	/* x-amz-meta-* and want_headers */
	size_t		 nheaders;
	uint8_t		*body;		/* collected body (errors' too) */
	size_t		 body_len;
	uint64_t	 bytes_in;	/* body bytes, this last attempt */
	uint64_t	 bytes_out;
	unsigned	 attempts;	/* 1 + retries made */
	/* An earlier attempt ended without a reply that proves it was not
	 * applied (connection lost, timeout, a 5xx other than 503): a 412
	 * now may answer this request's own earlier write. */
	int		 earlier_unknown;
	uint64_t	 duration_ns;	/* from start to done */
};

typedef void s3_done_fn(void *arg, const struct s3_response *);

struct s3_request {
	enum s3_op		 op;
	const char		*key;	/* under the prefix; LIST: NULL */
	const struct s3_param	*query;
	size_t			 nquery;
	const struct s3_header	*headers; /* If-Match, Range, x-amz-meta-… */
	size_t			 nheaders;
	/* Body: from memory (not copied: valid until done or cancel) … */
	const void		*body;
	size_t			 body_len;
	/* … or streamed, of a known size (S3 wants a Content-Length). */
	s3_read_fn		*body_read;
	void			*body_arg;
	uint64_t		 body_size;
	/* Response body: streamed to on_data, else collected. */
	s3_data_fn		*on_data;
	void			*data_arg;
	size_t			 max_body;	/* collected; 0: 16 MiB */
	/* Response headers to keep besides ETag and x-amz-meta-* (NULL
	 * terminated, matched without case). */
	const char *const	*want_headers;
	uint64_t		 timeout_ms;	/* 0: the client's */
	/* Fail when under 1 byte/s moves for this long (large transfers
	 * under a long deadline); 0: no bound. */
	uint64_t		 stall_ms;
	enum s3_retry		 retry;
	/* A connection of its own, opened for this request (and each of its
	 * retries), never one kept from another: requests that must race
	 * side by side, none ahead on a warm connection, none multiplexed
	 * or queued behind another on one (HTTP/2). */
	int			 fresh_connection;
	s3_done_fn		*done;
	void			*arg;
};

/* A client on base; NULL with err filled. The strings are copied. */
struct s3_client *s3_client_new(struct event_base *,
	    const struct s3_client_config *, char *err, size_t errlen);
/* Cancels every request still in flight (their done never runs). */
void	 s3_client_free(struct s3_client *);

/* Start a request: the call, or NULL with err filled (bad arguments, out
 * of memory); done then never runs. The request's strings and arrays are
 * copied; a memory body is not. */
struct s3_call *s3_start(struct s3_client *, const struct s3_request *,
	    char *err, size_t errlen);
/* Stop a request in flight; its done never runs, and its memory body is
 * not read once this returns (a body the digest worker is hashing: after
 * the piece under way, digest.h). Not from its own done. */
void	 s3_cancel(struct s3_call *);

/* A response header kept (name without case), or NULL. */
const char *s3_response_header(const struct s3_response *, const char *name);

/* "endpoint/bucket" for messages ("http://127.0.0.1:9000/alp"). */
const char *s3_client_url(const struct s3_client *);
/* The prefix before every key, "" for none. */
const char *s3_client_prefix(const struct s3_client *);
/*
 * Send If-Match ETags without their quotes from now on (1) or as given
 * (0, the default). Ceph RGW 16 compares If-Match with its ETags unquoted
 * and refuses the quoted form HTTP defines; the probe finds out
 * (s3probe.h) and sets this.
 */
void	 s3_client_set_bare_if_match(struct s3_client *, int);
int	 s3_client_bare_if_match(const struct s3_client *);
/*
 * Told of each request's outcome, after its retries and before its done
 * (the store's state, s3health.h); key as requested (NULL for a LIST),
 * conditional when it carried If-Match or If-None-Match. The observer may
 * not start, cancel or free anything of the client. NULL: none.
 */
typedef void s3_observe_fn(void *arg, enum s3_op, const char *key,
	    int conditional, const struct s3_response *);
void	 s3_client_set_observer(struct s3_client *, s3_observe_fn *,
	    void *arg);
const char *s3_op_name(enum s3_op);
const char *s3_err_name(enum s3_err);

/* The Prometheus families alpcrund_s3_*; once per process. 0, or -1. */
int	 s3_client_metrics(void);

/* Tests: the jitter's random source (returns 0..bound-1); NULL: the
 * default. */
void	 s3_client_set_random(uint64_t (*fn)(uint64_t bound));

#endif
