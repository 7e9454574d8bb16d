/*
 * h2client.h: the project's HTTP/2 gRPC client on the libevent loop (spec
 * §5 "Upstream link"): one persistent connection to one target, used by node
 * mode (the node -> central link) and by alpcrunctl.
 *
 * The contract:
 *
 * The link.
 *	h2client_new() starts connecting at once. Every attempt resolves the
 *	target afresh without blocking the loop (evdns; numeric addresses and
 *	unix:/path skip DNS), tries each address in turn, and speaks cleartext
 *	HTTP/2 with prior knowledge, or with ssl_ctx set, TLS (tls.h): ALPN h2
 *	(a server that agrees to no h2 fails the attempt), SNI and the
 *	server's certificate checked against server_name. The TLS handshake is
 *	part of the attempt and of its deadline. An attempt succeeds when the
 *	server's
 *	SETTINGS arrive, and fails when every address failed or when
 *	connect_timeout_ms passed since it began (DNS, TCP connect and HTTP/2
 *	handshake together). After a failure the client waits, 100 ms doubling
 *	to 5 s with ±20% jitter, and tries again, for as long as it lives. The
 *	delay starts over at 100 ms once a connection proved itself: up for a
 *	second, or a call answered on it (a server that closes or says GOAWAY
 *	right after its SETTINGS is not retried every 100 ms).
 *	While connected, a PING goes out every keepalive_ms; when a whole period
 *	after a PING passes with no frame at all from the server, the link is
 *	dead ("no PING answer within 10s"). Any bytes count as an answer, so a
 *	PING ACK stuck behind a large reply does not kill a healthy link.
 *	A GOAWAY is honoured: streams the server will still process finish on
 *	the old connection; calls it refused (above its last-stream-id) and calls
 *	not yet sent move to a new connection, opened at once. A graceful GOAWAY
 *	(NO_ERROR: the server drains or closes an idle connection) on a
 *	connection that was up for a second or carried a call keeps the link up
 *	during that handover; otherwise the link goes down with reason "GOAWAY"
 *	and backs off (a server that refuses every connection at once is not
 *	hammered).
 *
 * Failover.
 *	opts may list up to H2CLIENT_MAX_TARGETS targets, tried in order: an
 *	attempt that fails on one, or a connection to one that is lost or
 *	ended by a GOAWAY other than a graceful one, moves to the next at
 *	once (the link stays connecting, its calls wait); the backoff above
 *	comes only after every target of the round failed, and the next round
 *	starts with the first. A lost connection that had proved itself
 *	starts a round of its own from the next target. Unary calls on a
 *	lost connection that had no reply yet are sent again on the next
 *	connection within their deadlines (only with several targets;
 *	streaming calls fail as before). While up on another target, the
 *	first is probed with a TCP connect, after 500 ms doubling to 30 s
 *	(starting over once a connection to the first proved itself); when
 *	it answers, the connection in use drains (our GOAWAY) and new calls
 *	go to a connection to the first, or on along the list should it
 *	fail. Reasons name the last target tried ("<target>: <reason>").
 *	Logged at info or warn: "upstream failover", "upstream back to the
 *	first"; counted in h2client_target().
 *
 * States, and what a new call meets.
 *	connecting	(first attempt, a retry, a GOAWAY handover) the call
 *			waits until the attempt ends: sent when it succeeds,
 *			failed with UNAVAILABLE when it fails; its own deadline
 *			still applies.
 *	up		the call is sent at once. Calls beyond the server's
 *			SETTINGS_MAX_CONCURRENT_STREAMS wait inside nghttp2.
 *	down		(backoff after a failure) the call fails at once with
 *			UNAVAILABLE "<name> unreachable: <reason>", never waiting
 *			for its deadline.
 *	Losing a connection fails every call on it with UNAVAILABLE and the same
 *	message.
 *
 * Callbacks.
 *	Every callback (done, on_msg, on_state) runs from an event of its own on
 *	the loop: never from inside an h2client function, never from inside
 *	nghttp2. A callback may therefore call anything here, h2client_free()
 *	included. The exceptions are a body's release callback (below), which
 *	may run from inside libevent's buffer code and must only release memory,
 *	and a progress hook (h2call_progress()), which runs from inside nghttp2
 *	and must only record or print.
 *
 * Calls.
 *	A call is started by h2client_unary(), h2client_unary_body() or
 *	h2client_stream(); they return a handle, or NULL only when memory for the
 *	handle itself ran out (then done is never called). Every other failure,
 *	even one known at once (link down, deadline passed, request too large),
 *	is reported through done, later, from the loop. done is called exactly
 *	once, unless h2call_cancel() comes first. The handle is valid until done
 *	returns or h2call_cancel() is called, not after.
 *	deadline_ns is absolute on the monotonic clock (clock_now_ns()), 0 for
 *	none. It is sent as grpc-timeout (the time left when the request goes
 *	out) and enforced locally: DEADLINE_EXCEEDED "deadline exceeded", and
 *	RST_STREAM(CANCEL) if the request was sent.
 *	The reply: the status is the server's grpc-status and percent-decoded
 *	grpc-message, or one made locally: a non-200 :status maps as gRPC's
 *	http-grpc-status-mapping says (404 -> UNIMPLEMENTED, 401 ->
 *	UNAUTHENTICATED, 403 -> PERMISSION_DENIED, 429/502/503/504 ->
 *	UNAVAILABLE, 400 -> INTERNAL, else UNKNOWN); RST_STREAM REFUSED_STREAM ->
 *	UNAVAILABLE, CANCEL -> CANCELLED, ENHANCE_YOUR_CALM -> RESOURCE_EXHAUSTED,
 *	others -> INTERNAL; a reply message larger than max_message_size (or
 *	the call's own limit, h2call_max_message()) -> RESOURCE_EXHAUSTED
 *	"reply of N bytes exceeds max_message_size M" (nothing allocated for
 *	it, stream reset); compressed messages are not accepted (INTERNAL), as
 *	none are advertised. A response whose content-type is not
 *	application/grpc[+x|;x] (an HTML error page from a proxy) is decided
 *	at its HEADERS, its body never parsed, the stream reset (CANCEL):
 *	UNKNOWN "reply is not gRPC (content-type \"text/html\")" ("(no
 *	content-type)" when none came), or with a :status other than 200 its
 *	mapping above and "HTTP status 502, reply is not gRPC (...)". (A
 *	Trailers-Only response is judged by its grpc-status.)
 *	Response metadata: the values of the project's own headers
 *	(alpcrun-*, grpc_frame.h: the central cache's identity, an entry's
 *	generation) are kept, from the response HEADERS, a Trailers-Only
 *	response and trailers alike (a name seen again: the later value), at
 *	most H2_META_MAX names; others, longer or malformed values and
 *	further names are ignored, never an error. A unary call's done reads
 *	them with h2reply_meta(); a streaming call's on_msg with h2call_meta()
 *	(the response HEADERS came before any message), and its done with
 *	h2reply_meta() (trailers included).
 *	Request metadata: headers of the project's own (alpcrun-*, names and
 *	values as grpc_frame.h says, values up to GRPC_REQ_META_VALUE_MAX
 *	bytes) go with every request: the client's (h2client_set_meta(), for
 *	every call sent from then on) and a call's own (struct h2body's meta,
 *	copied when the call starts, sent instead of a client's of the same
 *	name), at most GRPC_REQ_META_MAX names of each. A call's own that
 *	breaks the rules fails the call (INTERNAL "bad request metadata
 *	<name>", through done): a bug of the caller.
 *
 * Memory.
 *	Per call: one allocation for the handle (with its timer, path and
 *	a fixed table of response metadata, some 400 bytes), the request
 *	body (one buffer, and a small node per range of it queued for DATA),
 *	the reply message (one buffer of exactly the length its prefix
 *	announced: the only copy of the reply, which the caller may keep, see
 *	struct h2reply). Streaming calls add one small node per message
 *	delivered. Counters (fetches, errors) are the caller's business.
 *	on_reply_mem, when set, is told (+n/-n) of the reply bytes the client
 *	holds: a message's buffer from the moment its prefix arrived (it is
 *	allocated whole then), and a unary reply until done takes it; the
 *	sum returns to 0 when done is called. Node mode counts them against
 *	max_inflight_bytes. Unlike the other callbacks it runs synchronously,
 *	from inside h2client and nghttp2: it must only count. It is not called
 *	after h2client_free().
 *
 * Reasons (h2client_reason(), on_state, and after "<name> unreachable: "):
 *	"connection refused" and other connect(2) errors as strerror() words,
 *	"connect timeout", "no HTTP/2 handshake within 3s", "cannot resolve
 *	<host>: <resolver error>", "cannot resolve <host> within 3s", "no PING
 *	answer within 10s", "connection closed by the server", "HTTP/2 error:
 *	<nghttp2 error>", "HTTP/2 error: frame flood (too many frames queued in
 *	answer to the server's)", "GOAWAY" or "GOAWAY (<error code>)"; over TLS also
 *	"TLS: <why>" (tls_failure(): "TLS: certificate verify failed: hostname
 *	mismatch", "TLS: tlsv13 alert certificate required", "TLS: the server
 *	did not agree to ALPN h2", ...).
 *
 * Windows.
 *	recv_window is announced as SETTINGS_INITIAL_WINDOW_SIZE and given to
 *	the connection with a WINDOW_UPDATE before the first request: the
 *	server may have that much of one reply, and of all replies together,
 *	on the way ahead of our reading, so one fetch moves at most a window
 *	per round trip. It promises no memory: nghttp2 gives the window back
 *	(WINDOW_UPDATE once half of it was read) as each DATA frame is copied
 *	into its reply's buffer, allocated whole when the prefix arrived. So
 *	it only needs to be the link's bandwidth x delay or more; the kernel's
 *	socket buffers must be as large (net.ipv4.tcp_rmem here, tcp_wmem on
 *	the server), and are left to the kernel's autotuning: setting
 *	SO_RCVBUF would turn that off. h2client_configure() applies a new
 *	window to the connection up at once (SETTINGS, and a WINDOW_UPDATE
 *	when it grows).
 *
 * h2client_free() ends everything at once: connections closed, calls
 *	dropped WITHOUT their done callback (the owner is going away), every
 *	handle invalid from then on, release callbacks still called (possibly
 *	later, when libevent frees the buffers that referenced the bytes).
 */
#ifndef ALPCRUND_H2CLIENT_H
#define ALPCRUND_H2CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

struct event_base;
struct evdns_base;
struct ssl_ctx_st;		/* OpenSSL's SSL_CTX */
struct h2client;
struct h2call;
struct h2meta;

/* Reply bytes held by the client changed by delta (see Memory). */
typedef void h2_mem_fn(void *arg, int64_t delta);

/* Targets of one client, tried in order (The link, Failover). */
#define H2CLIENT_MAX_TARGETS	8

struct h2client_opts {
	const char	*target;	/* host:port, [v6]:port or unix:/path */
	/* Or a list: targets[0..ntargets-1], tried in order (Failover);
	 * ntargets 0: target alone. */
	const char *const *targets;
	size_t		 ntargets;
	/* Who is unreachable, in fail-fast messages: "<name> unreachable:
	 * <reason>". NULL: "central cache". */
	const char	*name;
	uint64_t	 connect_timeout_ms;	/* per attempt; 0: 3000 */
	uint64_t	 keepalive_ms;		/* PING period; 0: no PINGs */
	const char	*api_key;	/* sent as metadata api_key; NULL: none */
	/* Largest message sent or received; 0: 260 MiB (the daemon's
	 * default max_message_size). */
	uint64_t	 max_message_size;
	/* TLS (upstream_tls): a client context from tls_client_ctx_new() or
	 * tls_upstream_ctx_new(), of which the client takes its own reference
	 * (the caller may SSL_CTX_free() its own at once); NULL: cleartext.
	 * server_name: sent as SNI and verified in the server's certificate
	 * (a DNS name, or an address checked against IP SANs); NULL: the
	 * host of target (a unix: target then needs one). */
	struct ssl_ctx_st *ssl_ctx;
	const char	*server_name;
	/* NULL, or told of reply bytes held (see Memory); gets on_state's
	 * arg. */
	h2_mem_fn	*on_reply_mem;
	/* Our receive window, of each stream and of the whole connection
	 * alike (see Windows); 0: H2CLIENT_WINDOW_MAX. */
	uint32_t	 recv_window;
};

/* The largest receive window the client announces: a fetch at 100 Gbit/s
 * over 10 ms of round trip (125 MB on the way) is not held back. */
#define H2CLIENT_WINDOW_MAX	(256u << 20)

/*
 * The receive window for a budget of bytes on their way to us: the budget,
 * at least HTTP/2's initial 65,535 and at most H2CLIENT_WINDOW_MAX (budget
 * 0: H2CLIENT_WINDOW_MAX). Node mode passes max_inflight_bytes.
 */
uint32_t	 h2client_window(uint64_t budget);

/*
 * A finished call. The status is an enum grpc_status; message is never NULL
 * ("" when the server sent none). data/len: the reply message of a unary
 * call that ended OK (NULL/0 for an empty message and for every error),
 * malloc'ed. To keep it, take it: copy the pointer and set r->data to NULL;
 * then free() it yourself. Otherwise it is freed when done returns. meta:
 * the response metadata kept (Calls; none for a call that failed before a
 * response came), read with h2reply_meta(), valid during done only.
 */
struct h2reply {
	int		 status;
	const char	*message;
	uint8_t		*data;
	size_t		 len;
	const struct h2meta *meta;
};

/* Response metadata names kept per call (Calls). */
#define H2_META_MAX	4

/* The value of the response header name (e.g. "alpcrun-incarnation"), or
 * NULL when none was kept; meta NULL is fine. */
const char	*h2reply_meta(const struct h2reply *, const char *name);

typedef void h2_done_fn(void *arg, struct h2reply *);
/* Server streaming: one reply message, valid during the callback only. */
typedef void h2_msg_fn(void *arg, const uint8_t *msg, size_t len);
/* The link's state changed: up 1, or 0 with the reason it is down.
 * Called whenever h2client_up() differs from what was last reported, or it
 * is still down but h2client_reason() differs from the reason last
 * reported (a later attempt failed otherwise: "connect timeout" after
 * "connection refused"; never again for attempts failing alike), with the
 * state of that moment (a down that was over before the callback's event
 * ran is not reported); the first call reports the first attempt's
 * outcome. */
typedef void h2_state_fn(void *arg, int up, const char *reason);

/*
 * A request body, for h2client_unary_body(): either msg (packed here) or
 * raw (one message already serialized, without the 5-byte prefix).
 *
 * release NULL: the bytes are copied once, before the function returns; the
 * caller may free them at once.
 * release set: nothing is copied that need not be: raw is sent as it is,
 * and of msg, every bytes or string field of 4 KiB or more is sent from the
 * message's own memory (the rest of the packing is copied). All of that
 * memory must stay valid and unchanged until release(release_arg), which is
 * called exactly once, even when the call fails at once or is cancelled,
 * and even when h2client_unary_body() returns NULL. It may come before or
 * after done (the socket may still hold references to the bytes), and may
 * run from inside libevent's buffer code: it must only release memory.
 */
struct h2body {
	const ProtobufCMessage	*msg;
	const uint8_t		*raw;
	size_t			 rawlen;
	void			(*release)(void *arg);
	void			*release_arg;
	/* Request metadata of this call's own (Calls), nmeta of them (at
	 * most GRPC_REQ_META_MAX); copied when the call starts. */
	const struct h2reqmeta	*meta;
	size_t			 nmeta;
};

/* One request metadata header (Calls). */
struct h2reqmeta {
	const char	*name;		/* "alpcrun-via" */
	const char	*value;
};

/*
 * Create the client and start connecting. dns may be NULL: a base of its
 * own is then made (reading /etc/resolv.conf and /etc/hosts) the first time
 * a name must be resolved. opts is copied. on_state may be NULL. NULL with
 * err filled on a bad target or TLS options.
 */
struct h2client	*h2client_new(struct event_base *, struct evdns_base *dns,
		    const struct h2client_opts *, h2_state_fn *on_state,
		    void *arg, char *err, size_t errlen);
void		 h2client_free(struct h2client *);
/*
 * Apply new options to a live client (SIGHUP): connect_timeout_ms from the
 * next attempt, keepalive_ms at once (the PING timer is re-armed; 0 stops
 * PINGs), recv_window at once (Windows), api_key and max_message_size from
 * the next call, ssl_ctx and server_name from the next connection
 * (established ones keep their session; ignored when either the client or
 * opts has no ssl_ctx: turning TLS on or off needs a new client, as do
 * target and name). 0, or -1 when out of memory (then nothing changed).
 */
int		 h2client_configure(struct h2client *,
		    const struct h2client_opts *);
/*
 * A request header of the client's own (Calls: request metadata), sent with
 * every call whose HEADERS go out from now on; both strings are copied. A
 * name set again gets the new value; value NULL removes the name. 0, or -1
 * with nothing changed when name or value breaks the rules, when
 * GRPC_REQ_META_MAX names are set already, or out of memory.
 */
int		 h2client_set_meta(struct h2client *, const char *name,
		    const char *value);
/*
 * Per target, for metrics: up (the connection in use is to it), the
 * link's switches to it after another failed (failovers) or back to the
 * first (returns), the calls sent to it, and the DATA bytes of calls
 * exchanged with it on its connections (old ones draining included):
 * request bodies framed to it (sent_bytes: a call sent again after a
 * failover counts at each target) and reply DATA received from it
 * (received_bytes, gRPC prefixes included, padding not). Frame headers,
 * HEADERS and control frames count in neither.
 */
struct h2client_target_stats {
	int		 up;
	uint64_t	 failovers;
	uint64_t	 returns;
	uint64_t	 calls;
	uint64_t	 sent_bytes;
	uint64_t	 received_bytes;
};
/* The number of targets; and target i's address and stats (NULL past the
 * end). */
size_t		 h2client_ntargets(const struct h2client *);
const char	*h2client_target(const struct h2client *, size_t i,
		    struct h2client_target_stats *);
/* Is the link up (or handing over after a graceful GOAWAY)? */
int		 h2client_up(const struct h2client *);
/* Why the link is down ("" while it is up). */
const char	*h2client_reason(const struct h2client *);

/* A unary call; req is packed (copied once) before this returns. */
struct h2call	*h2client_unary(struct h2client *, const char *path,
		    const ProtobufCMessage *req, uint64_t deadline_ns,
		    h2_done_fn *done, void *arg);
/* A unary call whose body may be sent by reference (struct h2body). */
struct h2call	*h2client_unary_body(struct h2client *, const char *path,
		    const struct h2body *, uint64_t deadline_ns,
		    h2_done_fn *done, void *arg);
/*
 * A server-streaming call (health Watch, the change feed): on_msg for every
 * reply message in order, then done once with the final status (its data
 * is always NULL). All messages received before the end are delivered
 * before done; none after h2call_cancel().
 */
struct h2call	*h2client_stream(struct h2client *, const char *path,
		    const ProtobufCMessage *req, uint64_t deadline_ns,
		    h2_msg_fn *on_msg, h2_done_fn *done, void *arg);
/*
 * Progress of a call, for a progress bar (alpcrunctl): sent is the request
 * bytes (5-byte prefix included) framed into DATA so far, at most 4 MiB
 * ahead of the socket, out of send_total; received is the reply DATA bytes so
 * far, and recv_total the reply message's length with its prefix once the
 * prefix has arrived (0 before). Called after each DATA frame sent or chunk
 * received, from inside nghttp2: the hook must not call h2client functions.
 * A retried call (GOAWAY) starts again from 0. Set it right after starting
 * the call; fn NULL removes it; a NULL call is fine.
 */
typedef void h2_progress_fn(void *arg, uint64_t sent, uint64_t send_total,
		    uint64_t received, uint64_t recv_total);
void		 h2call_progress(struct h2call *, h2_progress_fn *fn,
		    void *arg);
/*
 * Cut-through (node mode): a unary call's reply message received into a
 * buffer of the caller's, and watched while it fills. Once the message's
 * prefix arrived, alloc(arg, len) gives len bytes (NULL: the call fails
 * with RESOURCE_EXHAUSTED "out of memory for a reply of N bytes"); it runs
 * from inside nghttp2, so it must only allocate and count. The client
 * fills the buffer in order and never frees it: the caller does, after
 * done ran or the call was cancelled (the client may write into it until
 * then), whatever the outcome. arrived(arg, have, len) tells that the
 * first `have` bytes are in: from the call's event on the loop like done
 * (it may call anything), once per batch of DATA read, not per frame, and
 * never once the outcome is decided: done tells the rest. An OK done has
 * all len bytes in, r->data pointing at the caller's buffer (not freed
 * when done returns; taking it is moot); any other status has r->data
 * NULL. A second reply message (a broken server) is not put there. The
 * buffer is not reported to on_reply_mem: the caller counts it. The
 * response metadata are readable from arrived (h2call_meta()). A call
 * that got any response is never sent again (Failover), so the bytes
 * reported are never taken back. Set it right after starting a unary
 * call; a NULL call is fine.
 */
typedef uint8_t *h2_reply_alloc_fn(void *arg, size_t len);
typedef void h2_reply_arrived_fn(void *arg, size_t have, size_t len);
void		 h2call_reply_into(struct h2call *, h2_reply_alloc_fn *alloc,
		    h2_reply_arrived_fn *arrived, void *arg);
/*
 * A limit of the call's own on each reply message (0: the client's
 * max_message_size), for a stream whose messages are known to be small
 * (the change feed's notices): a hostile server's announced message is
 * then refused before anything is allocated or counted (on_reply_mem).
 * Set it right after starting the call; a NULL call is fine.
 */
void		 h2call_max_message(struct h2call *, uint64_t bytes);
/*
 * The response metadata kept so far (Calls), for a streaming call's on_msg:
 * the value of name, or NULL. Valid until the next callback of the call.
 */
const char	*h2call_meta(const struct h2call *, const char *name);
/* Give up on a call: RST_STREAM(CANCEL) if it was sent, and neither done
 * nor on_msg is called from now on. NULL is fine. */
void		 h2call_cancel(struct h2call *);

/*
 * Test seam, for tests/fuzz/fuzz_h2client.c (as conn_new_bev() is for
 * fuzz_conn.c): h2client_new() whose first connection attempt runs on bev,
 * a bufferevent already connected to a server (one end of a
 * bufferevent_pair), instead of a socket to opts->target; cleartext
 * (opts->ssl_ctx is ignored), no DNS. The client owns bev from the call on,
 * even when NULL is returned. Everything else is as h2client_new(): once
 * that connection is lost, later attempts go to opts->target (which must
 * still parse). Not for the daemon's own use.
 */
struct bufferevent;
struct h2client	*h2client_new_bev(struct event_base *,
		    const struct h2client_opts *, struct bufferevent *bev,
		    h2_state_fn *on_state, void *arg, char *err, size_t errlen);

#endif
