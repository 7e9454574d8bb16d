/*
 * h2srv.h: the HTTP/2 server transport as the layer above sees it: request
 * streams that deliver header fields and body bytes up through a table of
 * callbacks (struct h2s_ops, registered once per server), and the calls
 * that answer on a stream (response HEADERS, a body queue framed into DATA
 * as the windows allow, trailers, RST_STREAM). It knows HTTP/2 and nothing
 * of what the streams carry; the connection's own life (timeouts, flow
 * control against max_inflight_bytes, closing) is in h2conn.h.
 */
#ifndef ALPCRUND_H2SRV_H
#define ALPCRUND_H2SRV_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

struct h2_body;
struct h2s_stream;

/*
 * The upper layer's side of a request stream. Each stream carries
 * stream_size bytes of the upper layer's state, zeroed, passed as `u`.
 * The callbacks run on the loop from inside nghttp2 (except drain): they
 * may answer (h2s_respond, h2s_reset ...) but never free the stream.
 */
struct h2s_ops {
	size_t	 stream_size;
	/* A request's HEADERS began. */
	void	 (*open)(void *u, struct h2s_stream *);
	/* One request header field (trailers are not passed up). */
	void	 (*header)(void *u, const uint8_t *name, size_t namelen,
		    const uint8_t *value, size_t valuelen);
	/* The request header block is complete. */
	void	 (*headers_done)(void *u);
	/* Request body bytes (not after h2s_discard()). */
	void	 (*data)(void *u, const uint8_t *, size_t);
	/* END_STREAM received: the request is whole. */
	void	 (*end)(void *u);
	/* The body queue is framed and h2s_body_end() was called: submit
	 * the trailers now (h2s_trailers()). */
	void	 (*trailers)(void *u);
	/* DATA was framed from the body queue; `queued` bytes are left. */
	void	 (*written)(void *u, size_t queued);
	/* The server drains (SIGTERM): end long-lived replies. */
	void	 (*drain)(void *u);
	/* The stream is gone (closed, reset, or its connection freed); the
	 * stream's state is freed after this returns. */
	void	 (*close)(void *u);
};

/* Submit response HEADERS. with_body: DATA comes from the body queue,
 * then trailers; else the HEADERS end the stream (a peer still sending is
 * then told to stop with RST_STREAM NO_ERROR). 0, or -1. */
int	 h2s_respond(struct h2s_stream *, const nghttp2_nv *, size_t n,
	    int with_body);
/* Trailers, from the trailers() callback. 0, or -1. */
int	 h2s_trailers(struct h2s_stream *, const nghttp2_nv *, size_t n);
/* The reply's body queue (h2io.h); after adding to it, h2s_resume(). */
struct h2_body *h2s_body(struct h2s_stream *);
/* Nothing more will be added: once the queue is framed, trailers(). */
void	 h2s_body_end(struct h2s_stream *);
/* The queue grew or ended: wake the data source and flush. */
void	 h2s_resume(struct h2s_stream *);
/* Reset the stream with an HTTP/2 error code, dropping its queue; close()
 * follows once the RST is out. */
void	 h2s_reset(struct h2s_stream *, uint32_t h2_error);
/* A request body of `bytes` is on its way: count it against
 * max_inflight_bytes from now (small ones are not held back). */
void	 h2s_expect(struct h2s_stream *, uint64_t bytes);
/* The request body was consumed: release what h2s_expect() counted. */
void	 h2s_release(struct h2s_stream *);
/* Answered early: drop the request's DATA still coming, release its
 * reservation and give its window back. */
void	 h2s_discard(struct h2s_stream *);
/* Write what is queued now (unless inside the connection's receive). */
void	 h2s_flush(struct h2s_stream *);
/* The connection's peer, "address:port", as accepted (for the status
 * page and logs). */
const char *h2s_peer(const struct h2s_stream *);

#endif
