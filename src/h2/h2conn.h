/*
 * h2conn.h: one accepted HTTP/2 connection (an nghttp2 server session on a
 * bufferevent) and its streams, inside the h2 layer: h2srv.c runs them,
 * server.c accepts, limits and drains them. Layers above see only
 * h2srv.h.
 */
#ifndef ALPCRUND_H2CONN_H
#define ALPCRUND_H2CONN_H

#include "queue_compat.h"
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "h2io.h"
#include "h2srv.h"

struct server;

struct h2s_stream {
	TAILQ_ENTRY(h2s_stream)	 entry;
	struct h2s_conn		*conn;
	int32_t			 id;
	size_t			 header_bytes;	/* as HPACK counts them */

	/* Request body and max_inflight_bytes. */
	unsigned		 remote_ended:1;/* END_STREAM received */
	unsigned		 discard:1;	/* answered early: drop DATA */
	unsigned		 starved:1;	/* on the server's starved list */
	unsigned		 headers_done:1;/* request header block complete */
	uint64_t		 expect;	/* announced body, h2s_expect() */
	uint64_t		 reserved;	/* share of max_inflight_bytes held */
	uint64_t		 unconsumed;	/* received, stream window not yet
						   given back */
	TAILQ_ENTRY(h2s_stream)	 starved_entry;

	/* Reply. */
	unsigned		 deferred:1;	/* data source waits for data */
	unsigned		 body_ended:1;	/* h2s_body_end() */
	unsigned		 reset:1;	/* h2s_reset(): frame no more */
	struct h2_body		 body;

	/* The upper layer's state, h2s_ops.stream_size bytes. */
	_Alignas(16) unsigned char u[];
};
TAILQ_HEAD(h2s_stream_list, h2s_stream);

struct h2s_conn {
	TAILQ_ENTRY(h2s_conn)	 entry;
	struct server		*srv;
	const struct h2s_ops	*ops;
	struct bufferevent	*bev;
	struct h2_out		 out;
	nghttp2_session		*h2;
	struct h2s_stream_list	 streams;
	size_t			 nstreams;
	size_t			 nactive;	/* streams past their header block:
						   the idle timer waits for 0 */
	struct event		*timer;		/* handshake, then idle */
	struct event		*rev;		/* a socket we read ourselves
						   (h2read.h): cleartext, or
						   TLS after the handshake;
						   NULL: the bufferevent
						   reads */
	int			 recv_err;	/* nghttp2's, when it refused */
	int			 tls_bulk;	/* h2_read_tls_pace()'s state */
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
	unsigned		 flooded:1;	/* more than obq_max queued */
	size_t			 obq_max;	/* frames nghttp2 may hold queued
						   (OBQ_PER_STREAM) */
	int			 outq_seen;	/* kernel send queue at the last
						   send timeout (send_progress) */
	char			 peer[64];
};

struct h2s_conn	*h2s_conn_new(struct server *, evutil_socket_t fd,
		    const struct sockaddr *, int socklen);
/* The same on any bufferevent, which the connection takes over (freed on
 * failure too); h2s_conn_new() uses it, and the fuzz harness feeds one
 * side of a bufferevent_pair (tests/fuzz/fuzz_conn.c). */
struct h2s_conn	*h2s_conn_new_bev(struct server *, struct bufferevent *,
		    const char *peer);
void		 h2s_conn_free(struct h2s_conn *);
/* Write whatever nghttp2 has queued (and close if the session is done). */
void		 h2s_conn_flush(struct h2s_conn *);
/* Drain step one: GOAWAY announcing shutdown, long-lived replies ended
 * (h2s_ops.drain), streams still accepted. */
void		 h2s_conn_drain(struct h2s_conn *);
/* Drain step two: GOAWAY with the last stream processed. */
void		 h2s_conn_goaway(struct h2s_conn *);
/* Try to reserve a starved stream's body; on success give its held
 * window back (the caller flushes the connection). 1 when admitted. */
int		 h2s_stream_admit(struct h2s_stream *);
/* Re-arm the idle timer (live change of idle_timeout). */
void		 h2s_conn_rearm_timer(struct h2s_conn *);

#endif
