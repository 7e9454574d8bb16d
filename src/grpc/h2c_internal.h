/*
 * h2c_internal.h: what the four files of the HTTP/2 gRPC client share,
 * behind h2client.h (the contract). The split follows nghttpx's client:
 *
 *	h2c_link.c	the link: the target and its resolution (evdns),
 *			connection attempts with their deadline, backoff with
 *			jitter, the GOAWAY handover, the queue of calls
 *			waiting for a connection and fail-fast while down
 *	h2c_conn.c	one connection: the nghttp2 client session on a
 *			bufferevent (cleartext or TLS), reading, and writing
 *			through h2io (h2io.h, as the server), keepalive PINGs
 *	h2c_call.c	a call's life: its memory, its body (an h2_body), the
 *			request HEADERS, deadlines, reply messages and their
 *			delivery, the gRPC status from trailers, HTTP status
 *			or RST_STREAM, the response metadata kept
 *	h2client.c	the public functions of h2client.h
 *
 * Lifetimes. A connection (struct h2conn) is either the client's current
 * one (c->cur: being set up, or up) or an old one finishing its streams
 * after a GOAWAY. A call (struct h2call) is done with when nobody refers to
 * it any more, which is tracked by four marks: queued (on c->pending),
 * attached (nghttp2 has its stream and may call back with it until the
 * stream closes), user (done is still owed) and in_cb (on_msg is running).
 * Its memory, own body bytes included, is then held through call->ref
 * (h2io.h) for as long as evbuffer references to its body are still queued
 * on a socket; the caller's release runs when the last hold goes. So a call
 * whose deadline passed keeps its memory until nghttp2 lets go of the
 * stream, and a body outlives the call until the socket took it.
 *
 * User callbacks are never run from inside nghttp2 or from inside an API
 * function: finishing a call only records the outcome and activates the
 * call's event; the link's state changes activate the client's state event.
 * This is what lets a callback call h2client_free() or start new calls.
 */
#ifndef ALPCRUND_H2C_INTERNAL_H
#define ALPCRUND_H2C_INTERNAL_H

#include <sys/socket.h>
#include <sys/time.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "clock.h"
#include "grpc_frame.h"
#include "h2client.h"
#include "h2io.h"
#include "queue_compat.h"

/* Addresses tried per attempt, of those DNS returns. */
#define H2C_MAX_ADDRS		8
#define H2C_REASON_MAX		160

enum h2c_state { H2C_CONNECTING, H2C_UP, H2C_BACKOFF };
enum h2c_phase { H2C_PH_NONE, H2C_PH_RESOLVE, H2C_PH_CONNECT,
	H2C_PH_HANDSHAKE };

/* Request body bytes of the call's own (its copy of the request, or the
 * small parts packed around fields sent by reference), freed with it. */
struct h2c_own {
	struct h2c_own	*next;
	uint8_t		 b[];
};

/* A server-streaming reply message waiting for on_msg. */
struct h2msg {
	STAILQ_ENTRY(h2msg)	 entry;
	uint8_t			*data;
	size_t			 len;
};

/* Response metadata kept (h2client.h, Calls), within the call. */
struct h2meta {
	size_t	 n;
	struct {
		char	 name[GRPC_META_NAME_MAX + 1];
		char	 value[GRPC_META_VALUE_MAX + 1];
	} f[H2_META_MAX];
};

TAILQ_HEAD(h2c_call_list, h2call);

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
	struct h2_ref		 ref;		/* its memory (Lifetimes) */
	uint64_t		 deadline;
	h2_done_fn		*done;
	h2_msg_fn		*on_msg;
	void			*arg;
	struct event		*ev;		/* deadline, and delivery */
	char			*path;

	/* Request body: ranges held through ref (kept once framed, for a
	 * retry), of own bytes and of the caller's. */
	struct h2_body		 body;
	struct h2c_own		*own;
	size_t			 total;		/* body bytes, prefix included */
	void			(*release)(void *);
	void			*release_arg;
	uint8_t			 prefix[GRPC_PREFIX_LEN];

	/* Cut-through (h2call_reply_into()): the reply message lands in
	 * ext, the caller's, ext_len bytes; ext_have of them are in,
	 * ext_told were reported to arrived. */
	h2_reply_alloc_fn	*ralloc;
	h2_reply_arrived_fn	*arrived;
	void			*into_arg;
	uint8_t			*ext;
	size_t			 ext_len, ext_have, ext_told;

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
	struct h2meta		 meta;

	/* Request metadata of its own (struct h2body's meta): name, NUL,
	 * value, NUL, nrmeta times, in one allocation; NULL for none. */
	char			*rmeta;
	size_t			 nrmeta;
};

struct h2conn {
	TAILQ_ENTRY(h2conn)	 entry;		/* c->old */
	struct h2client		*c;
	struct bufferevent	*bev;
	struct h2_out		 out;		/* on bev (h2io.h) */
	nghttp2_session		*h2;
	struct h2c_call_list	 streams;
	size_t			 nstreams;
	size_t			 ti;		/* its target: c->tgt[ti] */
	size_t			 completed;	/* calls that got a response */
	struct event		*ping_ev;
	struct event		*rev;		/* a socket we read ourselves
						   (h2read.h): cleartext, or
						   TLS after the handshake;
						   NULL: bev reads */
	int			 recv_err;	/* nghttp2's, when it refused */
	int			 tls_bulk;	/* h2_read_tls_pace()'s state */
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
	unsigned		 flooded:1;	/* too many frames queued
						   (h2c_conn.c, OBQ_PER_STREAM) */
	/* The last error nghttp2 reported (h2c_conn_error_cb()). */
	char			 h2err[H2C_REASON_MAX - 16];
};
TAILQ_HEAD(h2c_conn_list, h2conn);

/* One target of the list (h2client_opts targets), tried in order. */
struct h2c_target {
	char			*target;	/* as given */
	char			*authority;
	char			*host, *port;	/* NULL when numeric */
	char			*sni;		/* its host, for TLS; or NULL */
	struct sockaddr_storage	 addr;		/* numeric or unix */
	socklen_t		 addrlen;
	struct h2client_target_stats st;
};

struct h2client {
	struct event_base	*base;
	struct evdns_base	*dns;
	int			 own_dns;
	h2_state_fn		*on_state;
	h2_mem_fn		*on_reply_mem;
	void			*arg;

	/* The targets, and the one of the attempt or connection (ti):
	 * target, authority, host, port and server_name point into it (or
	 * server_name to sni_name). left: targets still to try in this
	 * round; last_up: the target last up (-1: none yet). */
	struct h2c_target	 tgt[H2CLIENT_MAX_TARGETS];
	size_t			 ntgt, ti, left;
	long			 last_up;
	char			*sni_name;	/* opts server_name, copied */
	/* Return to the first target (probe while on another). */
	uint64_t		 return_ms;
	struct event		*return_timer;
	struct event		*probe_ev;	/* connect in progress */
	evutil_socket_t		 probe_fd;
	struct evdns_getaddrinfo_request *probe_dns;

	/* Options, copied. */
	char			*target;
	char			*name;
	char			*authority;
	char			*api_key;
	uint64_t		 connect_ms;
	uint64_t		 keepalive_ms;
	uint64_t		 max_msg;
	uint32_t		 window;	/* receive, stream and connection */
	SSL_CTX			*ssl_ctx;	/* our reference; NULL: cleartext */
	char			*server_name;	/* SNI and verified name */
	/* Request metadata of the client's (h2client_set_meta()). */
	struct {
		char	*name;
		char	*value;
	}			 rmeta[GRPC_REQ_META_MAX];
	size_t			 nrmeta;

	/* The target: a numeric or unix address, or a name for evdns. */
	char			*host, *port;	/* NULL when numeric */
	struct sockaddr_storage	 addrs[H2C_MAX_ADDRS];
	socklen_t		 addrlens[H2C_MAX_ADDRS];
	size_t			 naddrs, next;

	enum h2c_state		 state;
	enum h2c_phase		 phase;
	int			 up;
	int			 reported;	/* -1: nothing reported yet */
	char			 reported_reason[H2C_REASON_MAX];
	char			 reason[H2C_REASON_MAX];
	uint64_t		 backoff_ms;
	uint64_t		 rng;

	/* The attempt in progress. */
	struct evdns_getaddrinfo_request *dnsreq;
	evutil_socket_t		 fd;
	struct event		*connect_ev;
	int			 last_err;

	struct h2conn		*cur;
	struct h2c_conn_list	 old;
	struct h2c_call_list	 pending;
	struct h2c_call_list	 calls;

	struct event		*attempt_timer;
	struct event		*backoff_timer;
	struct event		*state_ev;
};

/* --- shared helpers ------------------------------------------------------- */

static inline void
h2c_tv_ms(struct timeval *tv, uint64_t ms)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

static inline void
h2c_tv_ns(struct timeval *tv, uint64_t ns)
{
	/* Rounded up: a timer that fires early would only be re-armed. */
	ns += 999;
	tv->tv_sec = (time_t)(ns / NS_PER_SEC);
	tv->tv_usec = (suseconds_t)(ns % NS_PER_SEC / 1000);
}

/* Reasons: strerror() with a lowercase first letter (they read as
 * phrases), and a period as "3s" or "1500ms". */
void		 h2c_errstr(int err, char *buf, size_t len);
void		 h2c_fmt_ms(uint64_t ms, char *buf, size_t len);

/* --- h2c_link.c: the link ------------------------------------------------- */

int		 h2c_link_parse_target(struct h2client *, const char *target,
		    char *err, size_t errlen);
int		 h2c_link_tls_options(struct h2client *,
		    const struct h2client_opts *, char *err, size_t errlen);
int		 h2c_link_init(struct h2client *);
void		 h2c_link_stop(struct h2client *);
void		 h2c_link_free(struct h2client *);
void		 h2c_link_attempt_start(struct h2client *);
void		 h2c_link_attempt_bev(struct h2client *, struct bufferevent *);
void		 h2c_link_attempt_failed(struct h2client *, const char *fmt,
		    ...) __attribute__((format(printf, 2, 3)));
void		 h2c_link_up(struct h2conn *);
void		 h2c_link_lost(struct h2client *, const char *reason);
void		 h2c_link_goaway(struct h2conn *);
void		 h2c_link_enqueue(struct h2call *);
void		 h2c_link_pending_submit(struct h2client *);

/* --- h2c_conn.c: a connection --------------------------------------------- */

struct h2conn	*h2c_conn_new(struct h2client *, evutil_socket_t,
		    struct bufferevent *);
void		 h2c_conn_destroy(struct h2conn *, const char *reason);
void		 h2c_conn_flush(struct h2conn *);
void		 h2c_conn_ping_arm(struct h2conn *);
int		 h2c_conn_set_window(struct h2conn *, uint32_t);

/* --- h2c_call.c: a call --------------------------------------------------- */

struct h2call	*h2c_call_new(struct h2client *, const char *path,
		    uint64_t deadline, h2_msg_fn *, h2_done_fn *, void *arg);
int		 h2c_call_set_meta(struct h2call *, const struct h2body *);
int		 h2c_call_set_body(struct h2call *, const struct h2body *);
void		 h2c_call_arm_deadline(struct h2call *);
int		 h2c_call_submit(struct h2conn *, struct h2call *);
void		 h2c_call_finish(struct h2call *, int status, const char *fmt,
		    ...) __attribute__((format(printf, 3, 4)));
void		 h2c_call_fail_unreachable(struct h2call *, const char *reason);
void		 h2c_call_rst(struct h2call *);
void		 h2c_call_detach(struct h2call *);
void		 h2c_call_outcome(struct h2call *, uint32_t err);
void		 h2c_call_reset_for_retry(struct h2call *);
void		 h2c_call_msgs_clear(struct h2call *);
void		 h2c_call_maybe_destroy(struct h2call *);
/* After a DATA frame of the request body went out (h2c_conn.c). */
void		 h2c_call_report_progress(struct h2call *);
/* The reply, from nghttp2's callbacks (h2c_conn.c). */
void		 h2c_call_header(struct h2call *, int response,
		    const uint8_t *name, size_t namelen, const uint8_t *value,
		    size_t valuelen);
void		 h2c_call_frame(struct h2call *, const nghttp2_frame *);
void		 h2c_call_data(struct h2call *, const uint8_t *data,
		    size_t len);
/* A kept response metadata value, or NULL (m NULL is fine). */
const char	*h2c_call_meta_find(const struct h2meta *, const char *name);

#endif
