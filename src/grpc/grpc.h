/*
 * grpc.h: the gRPC call layer (spec §3) between HTTP/2 streams (h2srv.h)
 * and the handlers (svc/): the method table it serves, and the call API a
 * handler answers through, at once or later.
 *
 * A handler receives a decoded request and must finish the call exactly once
 * with call_reply() or call_error(), now or from a later callback (a backend
 * write committing, an upstream answer). The stream may be reset meanwhile:
 * finishing a call whose stream is gone is safe and only frees it. Streaming
 * handlers (health Watch, the change feed) send with call_send() and set an
 * on_cancel hook that tells them when the stream went away; the change feed
 * also paces itself by call_queued() and call_set_writable(), and cuts a
 * watcher off with call_reset().
 *
 * Response metadata: headers of the project's own (alpcrun-*, checked as
 * grpc_frame.h says) in the response HEADERS of every gRPC response,
 * server-wide (grpc_server_set_meta(): the central cache's identity) and
 * per call (call_set_meta(): an entry's generation). In a Trailers-Only
 * error they are in its one HEADERS frame, with grpc-status; never in
 * trailers. The HTTP-level refusals (405, 415) are not gRPC responses and
 * carry none.
 *
 * Request metadata: the request's headers of the project's own (alpcrun-*,
 * names as grpc_frame.h says, values up to GRPC_REQ_META_VALUE_MAX bytes of
 * its rules) are kept for the handler (call_meta()): at most
 * GRPC_REQ_META_MAX names, the first field of a name only; others, longer
 * or malformed values and further names are ignored, never an error. Each
 * is one small allocation of its own, made only when such a header came.
 */
#ifndef ALPCRUND_GRPC_H
#define ALPCRUND_GRPC_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "grpc_status.h"
#include "lease.h"
#include "metrics.h"


struct call;
struct h2s_ops;

/* The handler owns req and frees it as the method's decoder says. */
typedef void method_handler(struct call *, ProtobufCMessage *req);
/* Decodes a request in place: takes the message buffer (malloc'ed; NULL
 * when len is 0) whatever the outcome; NULL when it does not decode. */
typedef ProtobufCMessage *method_decoder(uint8_t *buf, size_t len);

#define METHOD_NO_AUTH		0x01	/* health: no api_key needed */
#define METHOD_STREAMING	0x02	/* server streaming reply */

struct method {
	const char			 *path;	/* "/alpcrun.v1.Cache/GetSharedData" */
	enum metric_method		  metric;
	const ProtobufCMessageDescriptor *request;
	method_handler			 *handler;
	/* NULL: protobuf-c unpacks a copy, which the handler frees with
	 * protobuf_c_message_free_unpacked(). */
	method_decoder			 *decode;
	int				  flags;
};

/* The stream callbacks of the call layer, for the server transport
 * (server_init()). */
extern const struct h2s_ops grpc_server_ops;
/* Serve these methods; messages up to max_message bytes (at start and on
 * SIGHUP). */
void	 grpc_server_configure(const struct method *, size_t n,
	    uint64_t max_message);

#define GRPC_META_SERVER_MAX	4	/* server-wide headers */
#define GRPC_META_CALL_MAX	2	/* per-call headers */
/*
 * A server-wide response header, sent with every gRPC response whose
 * HEADERS are submitted from now on (one already submitted keeps what it
 * had); both strings are copied. A name set again gets the new value;
 * value NULL removes the name. A name or value that breaks the rules
 * (grpc_frame.h), or a new name when GRPC_META_SERVER_MAX are set, is
 * refused with a warning logged and nothing changed: a bug of the caller.
 */
void	 grpc_server_set_meta(const char *name, const char *value);

/*
 * Finish with a reply message. When lease is not NULL, the reply's bytes
 * field points into lease->data: those bytes are sent by reference, never
 * copied, and the lease is released once the socket has taken the last of
 * them (or the stream is gone). The call owns the lease from here on.
 */
void	 call_reply(struct call *, const ProtobufCMessage *reply,
	    struct lease *lease);
/*
 * A unary reply whose one message goes out piece by piece, as its bytes
 * become known (a node forwarding a payload while it arrives from
 * upstream: cut-through). call_message_begin(): the response HEADERS (with
 * the metadata set so far) and the message's prefix announcing len bytes;
 * then call_message_add() for the next bytes in order, copied (lease NULL,
 * or fewer than H2_REF_MIN bytes: the lease is then released at once) or
 * sent by reference and held through the lease until the socket took them;
 * call_message_end() once all len bytes are added finishes the call OK
 * (fewer: INTERNAL, logged, a bug of the handler). Nothing goes out before
 * call_message_flush() or the end, so that a small reply is one write;
 * the flush may close the connection and run cancel hooks (of this call
 * and others) before it returns. call_error() at any point finishes it
 * with that status in trailers after what was sent (OK becomes INTERNAL
 * there): the peer sees a message cut short with the status, never a
 * short message that decodes. Each returns 0, or -1 when the stream is gone, out of
 * memory, or (add) the message would grow past len, the lease released;
 * begin returns -2 when len exceeds max_message_size. The handler must
 * still finish the call.
 */
int	 call_message_begin(struct call *, size_t len);
int	 call_message_add(struct call *, const uint8_t *, size_t len,
	    struct lease *);
void	 call_message_flush(struct call *);
void	 call_message_end(struct call *);
/* Finish with an error status; fmt builds grpc-message (may be NULL). */
void	 call_error(struct call *, int status, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/* Streaming: send one message; the call stays open. 0, or -1 when the
 * stream is gone. */
int	 call_send(struct call *, const ProtobufCMessage *msg);
/* Streaming: called once when the stream goes away before the handler
 * finished; the handler must then finish the call (call_error is fine). */
void	 call_set_cancel(struct call *, void (*fn)(struct call *, void *),
	    void *arg);
/* Still attached to a live stream? */
int	 call_alive(const struct call *);
/* Streaming: reply bytes packed but not yet framed into DATA (what a
 * reader that does not read lets pile up); 0 once the stream is gone. */
size_t	 call_queued(const struct call *);
/*
 * Streaming: call fn once the queued bytes fell to low_water or below after
 * DATA was framed (fn NULL: never). fn runs from inside the HTTP/2 send
 * path: it must not send or finish the call, only note it (schedule an
 * event). It is re-armed by each call to this function.
 */
void	 call_set_writable(struct call *, void (*fn)(struct call *, void *),
	    void *arg, size_t low_water);
/*
 * Finish by resetting the stream with the HTTP/2 error code h2_error
 * (e.g. NGHTTP2_ENHANCE_YOUR_CALM), dropping whatever is still queued; the
 * request is counted with grpc status `status` (what the client will see).
 */
void	 call_reset(struct call *, uint32_t h2_error, int status);
/*
 * One more response header for this call only, sent after the server-wide
 * ones (and instead of a server-wide one of the same name); both strings
 * are copied. It must come before the response HEADERS go out: before
 * call_reply() or call_error(), or a streaming call's first call_send().
 * Later, or on a call whose stream is gone, it is ignored. A name set
 * again gets the new value. A name or value that breaks the rules (value
 * NULL included), or a new name beyond GRPC_META_CALL_MAX, is refused
 * with a warning logged, as in grpc_server_set_meta().
 */
void	 call_set_meta(struct call *, const char *name, const char *value);
/* The value of the request header name (e.g. "alpcrun-via") as the call
 * came with it, or NULL when none was kept; valid until the call is
 * finished. */
const char *call_meta(const struct call *, const char *name);
/* The client's address, "address:port" (as the log names it), or "" once
 * the stream is gone. */
const char *call_peer(const struct call *);
/* Absolute deadline on the monotonic clock from grpc-timeout; 0 = none. */
uint64_t call_deadline(const struct call *);
/* The handler's own per-call state. */
void	*call_data(const struct call *);
void	 call_set_data(struct call *, void *);

#endif
