/*
 * conn.h: one accepted HTTP/2 connection (an nghttp2 server session on a
 * bufferevent) and its streams. Shared by conn.c (HTTP/2), grpc.c (the call
 * layer on a stream) and server.c (accepting, limits, drain).
 */
#ifndef ALPCRUND_CONN_H
#define ALPCRUND_CONN_H

#include "queue_compat.h"
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "grpc_frame.h"

struct server;
struct call;
struct method;
struct lease_ref;

/* One piece of a reply waiting to be framed into DATA: bytes owned by the
 * segment, or a range of a leased payload sent by reference. */
struct outseg {
	STAILQ_ENTRY(outseg)	 entry;
	const uint8_t		*p;
	size_t			 len;
	size_t			 off;		/* bytes already framed */
	struct lease_ref	*ref;		/* NULL: p is owned (malloc) */
};
STAILQ_HEAD(outseg_list, outseg);

/* What the request carried that the call layer needs. */
struct reqinfo {
	unsigned	 post:1;		/* :method POST */
	unsigned	 grpc_ct:1;		/* content-type application/grpc[+proto] */
	unsigned	 have_ct:1;
	unsigned	 have_key:1;		/* api_key present */
	unsigned	 encoding_ok:1;		/* grpc-encoding absent or identity */
	unsigned	 bad_timeout:1;
	uint64_t	 timeout_ns;		/* grpc-timeout, 0 = none */
	size_t		 header_bytes;		/* as HPACK counts them */
	char		 path[128];
	size_t		 pathlen;
	char		 api_key[256];
	size_t		 api_key_len;
	char		 encoding[32];
};

struct stream {
	TAILQ_ENTRY(stream)	 entry;
	struct conn		*conn;
	int32_t			 id;
	struct reqinfo		 req;
	const struct method	*method;
	int			 metric;	/* enum metric_method */
	uint64_t		 start_ns;

	/* Request body. */
	struct grpc_deframer	 df;
	struct grpc_message	 msg;		/* the first complete message */
	unsigned		 have_msg:1;
	unsigned		 extra_msg:1;	/* a unary call got two */
	unsigned		 remote_ended:1;/* END_STREAM received */
	unsigned		 discard:1;	/* answered early: drop DATA */
	uint64_t		 reserved;	/* share of max_inflight_bytes held */
	uint64_t		 unconsumed;	/* received, stream window not yet
						   given back */
	unsigned		 starved:1;	/* on the server's starved list */
	unsigned		 dispatched:1;	/* the request went to a handler */
	unsigned		 headers_done:1;/* request header block complete */
	TAILQ_ENTRY(stream)	 starved_entry;

	/* Reply. */
	struct call		*call;		/* dispatched, not yet finished */
	unsigned		 responded:1;	/* response HEADERS submitted */
	unsigned		 finished:1;	/* status decided, trailers due */
	unsigned		 trailers_sent:1;
	unsigned		 rst_after_headers:1; /* Trailers-Only while the client
						   still sends: RST(NO_ERROR) */
	unsigned		 deferred:1;	/* data provider waits for data */
	int			 status;
	char			*message;	/* grpc-message, raw */
	struct outseg_list	 out;
	size_t			 outlen;	/* bytes left in out */
};
TAILQ_HEAD(stream_list, stream);

struct conn {
	TAILQ_ENTRY(conn)	 entry;
	struct server		*srv;
	struct bufferevent	*bev;
	nghttp2_session		*h2;
	struct stream_list	 streams;
	size_t			 nstreams;
	size_t			 nactive;	/* streams past their header block:
						   the idle timer waits for 0 */
	struct event		*timer;		/* handshake, then idle */
	unsigned		 got_frame:1;	/* past the handshake */
	unsigned		 closing:1;	/* free once output drains */
	unsigned		 goaway_sent:1;
	unsigned		 lingering:1;	/* FIN sent, waiting for the peer's */
	unsigned		 in_recv:1;	/* inside nghttp2 (or a walk over
						   the streams): no flush now */
	unsigned		 want_flush:1;	/* flush after a server-wide walk */
	unsigned		 tls:1;		/* bev is a bufferevent_openssl */
	unsigned		 tls_up:1;	/* its handshake is done */
	unsigned		 sniffed:1;	/* cleartext: first byte looked at */
	int			 outq_seen;	/* kernel send queue at the last
						   send timeout (send_progress) */
	size_t			 tls_room;	/* free bytes of the output's last
						   chain, as conn_tls_add() left
						   it */
	char			 peer[64];
};

struct conn	*conn_new(struct server *, evutil_socket_t fd,
		    const struct sockaddr *, int socklen);
/* The same on any bufferevent, which the connection takes over (freed on
 * failure too); conn_new() uses it, and the fuzz harness feeds one side of
 * a bufferevent_pair (tests/fuzz/fuzz_conn.c). */
struct conn	*conn_new_bev(struct server *, struct bufferevent *,
		    const char *peer);
void		 conn_free(struct conn *);
/* Write whatever nghttp2 has queued (and close if the session is done). */
void		 conn_flush(struct conn *);
/* Cleartext output, staged (conn.c): append n bytes; the staged bytes go
 * to the bufferevent's output at the end of the flush, or at once with
 * conn_out_commit() (before adding anything to the output directly).
 * conn_out_len() is what is queued, staged bytes included. 0, or -1. */
int		 conn_out_add(struct conn *, const void *, size_t n);
int		 conn_out_commit(void);
size_t		 conn_out_len(struct conn *);
/* Drain step one: GOAWAY announcing shutdown, streams still accepted. */
void		 conn_shutdown_notice(struct conn *);
/* Drain step two: GOAWAY with the last stream processed. */
void		 conn_goaway(struct conn *);
/* Try to reserve a starved stream's message; on success give its held
 * window back (the caller flushes the connection). Returns 1 when
 * admitted. */
int		 conn_stream_admit(struct stream *);
/* Release the stream's reservation (its body was freed). */
void		 conn_stream_unreserve(struct stream *);
/* Submit response HEADERS; with_data attaches the stream's reply as the
 * data source, else HEADERS end the stream. 0, or -1. */
int		 conn_submit_response(struct stream *, const nghttp2_nv *,
		    size_t nvlen, int with_data);
/* More reply data or the final status is ready: wake the data source. */
void		 conn_resume(struct stream *);
/* The stream was answered early: free its body, release its reservation
 * and window, and drop whatever DATA still comes. */
void		 conn_stream_discard(struct stream *);
/* Re-arm the idle timer (live change of idle_timeout). */
void		 conn_rearm_timer(struct conn *);
/*
 * TLS: append n bytes of a frame of frame bytes to the output, copied into
 * large chains so frames go out in full 16 KiB TLS records
 * (bufferevent_openssl makes one SSL_write, so at least one record, of
 * every evbuffer chain; see tls_out_add()). 0, or -1.
 */
int		 conn_tls_add(struct conn *, const void *p, size_t n,
		    size_t frame);

/* grpc.c: the call layer's side of a stream. */
void		 grpc_stream_headers_done(struct stream *);
void		 grpc_stream_request_done(struct stream *);
void		 grpc_stream_too_large(struct stream *, uint64_t announced);
void		 grpc_stream_closed(struct stream *);
/* Data provider for nghttp2: frame up to len bytes of the reply. */
ssize_t		 grpc_stream_read(struct stream *, size_t len,
		    uint32_t *data_flags);
int		 grpc_stream_send_data(struct stream *, const uint8_t *framehd,
		    size_t length);
/* Drain: finish streaming calls with UNAVAILABLE. */
void		 grpc_stream_drain(struct stream *);

#endif
