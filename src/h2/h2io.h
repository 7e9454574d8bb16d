/*
 * h2io.h: what an HTTP/2 connection of ours does on the wire whatever its
 * side: nghttp2's allocator, a body queue of owned and referenced bytes,
 * input fed to nghttp2 with a bound on the frames it queues in answer,
 * and the output of a connection (cleartext staging, TLS record packing,
 * DATA frames whose payload goes by reference). Both sides are built on
 * it: the server transport (h2srv.c) and the gRPC client's connections
 * (src/grpc/h2c_conn.c, request bodies in h2c_call.c); nothing here knows
 * gRPC, the server or the client.
 */
#ifndef ALPCRUND_H2IO_H
#define ALPCRUND_H2IO_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "queue_compat.h"

struct bufferevent;
struct ssl_st;

/* A range at least this large is sent by reference, smaller ones copied:
 * a reference costs an evbuffer chain of its own. */
#define H2_REF_MIN	4096

/*
 * The owner of bytes sent by reference: they stay valid until the last
 * hold is dropped, then release() runs. Whoever queues such bytes holds it
 * once per segment and once per evbuffer reference made of them.
 */
struct h2_ref {
	unsigned	 refs;
	void		(*release)(struct h2_ref *);
};

static inline void
h2_ref_hold(struct h2_ref *r)
{
	r->refs++;
}

static inline void
h2_ref_drop(struct h2_ref *r)
{
	if (r != NULL && --r->refs == 0)
		r->release(r);
}

/* One piece of a body waiting to be framed into DATA: bytes owned by the
 * segment (inline or malloc'ed), or a range held through ref. */
struct h2_seg {
	STAILQ_ENTRY(h2_seg)	 entry;
	const uint8_t		*p;
	size_t			 len;
	size_t			 off;		/* bytes already framed */
	struct h2_ref		*ref;		/* NULL: p is owned */
};

struct h2_body {
	STAILQ_HEAD(, h2_seg)	 segs;
	size_t			 len;		/* bytes not yet framed */
	/* keep set: framed segments wait here until h2_body_clear(), for
	 * h2_body_rewind() (a request a GOAWAY refused goes out again). */
	STAILQ_HEAD(, h2_seg)	 sent;
	unsigned		 keep:1;
};

/* An empty body, keep clear: segments are freed as they are framed. */
void	 h2_body_init(struct h2_body *);
/* A body with keep set: every byte queued again, from the first. */
void	 h2_body_rewind(struct h2_body *);
/* Queue len bytes held through ref (held once more here). 0, or -1. */
int	 h2_body_add_ref(struct h2_body *, const uint8_t *, size_t,
	    struct h2_ref *);
/* Queue len malloc'ed bytes, which the body frees. 0, or -1 (then the
 * caller still owns p). */
int	 h2_body_add_owned(struct h2_body *, uint8_t *p, size_t len);
/* Queue len bytes in the segment's own allocation (one malloc); returns
 * where to write them, NULL when out of memory. */
uint8_t	*h2_body_add_inline(struct h2_body *, size_t len);
void	 h2_body_clear(struct h2_body *);
/* Move every unframed segment of src to the end of dst (src is left
 * empty). */
void	 h2_body_append(struct h2_body *dst, struct h2_body *src);

/*
 * The output of one connection. Cleartext frames are staged: copied into
 * space reserved at the end of the bufferevent's output (no callbacks run)
 * and committed once per flush, before a payload reference or when another
 * connection's output is written. TLS frames, during the handshake, are
 * copied into large chains of the bufferevent_openssl's output
 * (tls_out_add()); once the handshake is done the connection's own TLS
 * output takes over (tlsout.h: full records, many per writev).
 */
struct tls_out;
struct h2_out {
	struct bufferevent	*bev;
	unsigned		 tls:1;
	size_t			 tls_room;
	struct tls_out		*t;		/* TLS after the handshake */
	size_t			 low;		/* its writable() threshold */
	unsigned		 blocked:1;	/* nghttp2 was told WOULDBLOCK */
};

/* Append n bytes of a frame of `frame` bytes. 0, or -1. */
int	 h2_out_add(struct h2_out *, const void *, size_t n, size_t frame);
/* Commit what is staged (before touching any output directly). 0, or -1. */
int	 h2_out_commit(void);
/* The end of a connection's flush: commit, and over TLS after the
 * handshake encrypt what is staged and write. 0, or -1 (the connection
 * is broken). */
int	 h2_out_flush(struct h2_out *);
/*
 * The handshake of o's bufferevent_openssl is done: its SSL's output
 * becomes ours (tlsout.h) on socket fd, what the bufferevent's output
 * holds goes first, and the bufferevent is disabled for good (it still
 * owns the socket and the SSL, freed with it). 0, or -1 when out of
 * memory.
 */
struct tls_out_cb;
struct timeval;
int	 h2_out_tls_start(struct h2_out *, struct ssl_st *, int fd,
	    const struct timeval *send_tv, size_t low,
	    const struct tls_out_cb *, void *arg);
/* Bytes queued on the output, staged ones included. */
size_t	 h2_out_len(struct h2_out *);
/* Is the output at or above high? Then nghttp2 is told WOULDBLOCK, and
 * the output calls back once it went below its low mark. */
int	 h2_out_full(struct h2_out *, size_t high);
/* The connection goes away: forget what it staged. */
void	 h2_out_forget(struct h2_out *);
/*
 * One DATA frame: its 9-byte header and the next length bytes of body.
 * -2 (nothing written) when the body holds fewer than length bytes:
 * nghttp2 retries a frame it was told to wait for (WOULDBLOCK) with the
 * same length, so a queue emptied meanwhile must fail that stream, not
 * send a frame shorter than its header says.
 * Cleartext sends ranges of H2_REF_MIN bytes or more of referenced
 * segments by reference (no copy); TLS encrypts whole records straight
 * from the segments. 0, -1, or -2 as above.
 */
int	 h2_out_data(struct h2_out *, const uint8_t *framehd,
	    struct h2_body *, size_t length);

/* nghttp2's allocations from free lists of small size classes (loop
 * thread only); plain malloc under AddressSanitizer. */
nghttp2_mem	*h2_mem(void);

/*
 * The frames nghttp2 may hold queued in answer to the peer's, at most:
 * H2_OBQ_PER_STREAM per stream plus H2_OBQ_SLACK. nghttp2 caps only its
 * PING and SETTINGS ACKs; what a peer can make it queue otherwise (an
 * RST_STREAM per refused stream or refused PUSH_PROMISE) grows without end
 * while the peer sends and does not read, since output over its bound
 * stops what nghttp2 writes, not what it queues. A connection in use
 * queues a few frames per stream: the bound leaves ample room for those.
 */
#define H2_OBQ_PER_STREAM	8
#define H2_OBQ_SLACK		4096
/*
 * Feed n bytes to nghttp2 H2_RECV_SLICE at a time, looking at its queue
 * after each: the bytes taken, or nghttp2's error; a queue past max_queued
 * frames sets *flooded and fails with NGHTTP2_ERR_FLOODED.
 */
#define H2_RECV_SLICE		(64u << 10)
ssize_t	 h2_feed(nghttp2_session *, const uint8_t *, size_t n,
	    size_t max_queued, int *flooded);

#endif
