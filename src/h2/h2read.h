/*
 * h2read.h: the read path of a connection of ours, either side: the
 * socket is read in large bites into one buffer, and the bytes go to the
 * connection (nghttp2) straight from there. Cleartext with recv(2); TLS,
 * once the handshake is done, with SSL_read() and OpenSSL's read-ahead
 * (one read(2) for many records).
 *
 * Why not the bufferevent: libevent 2.1's evbuffer_read() reads at most
 * 4 KiB per call whatever bufferevent_set_max_single_read() says (settable
 * only from 2.2, spec §11), so a 64 MiB upload cost 16,384 reads, as many
 * FIONREAD ioctls and as many loop turns. bufferevent_openssl reads each
 * 16 KiB record with two read(2) calls (header, then body) and one loop
 * turn, and with read-ahead on it stalls: it waits for the socket to turn
 * readable while whole records sit in the SSL's buffer. The bufferevent
 * stays for the cleartext output (payloads by reference, send timeouts)
 * and for the TLS handshake.
 */
#ifndef ALPCRUND_H2READ_H
#define ALPCRUND_H2READ_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

struct ssl_st;

/* Bytes one recv(2) asks for, and the most one readiness callback takes
 * before it lets other connections have their turn. */
#define H2_READ_CHUNK	(256u << 10)
#define H2_READ_BUDGET	(4u << 20)

enum h2_read_result {
	H2R_DRAINED,	/* the socket has nothing more now */
	H2R_BUDGET,	/* H2_READ_BUDGET taken: more next turn */
	H2R_EOF,	/* the peer closed its side (nothing read before it
			   in this call) */
	H2R_ERROR,	/* recv failed: errno says why */
	H2R_STOP,	/* feed() refused the bytes */
};

/*
 * Read fd until it would block, the budget is spent, or EOF; each read's
 * bytes go to feed(arg, p, n), which returns 0 to go on or -1 to stop.
 * The bytes are valid only during feed(). *nread (when not NULL) is what
 * was read. Loop thread only: the buffer is shared by every connection.
 */
enum h2_read_result h2_read(evutil_socket_t fd,
	    int (*feed)(void *arg, const uint8_t *p, size_t n), void *arg,
	    size_t *nread);

/*
 * The same over TLS once the handshake is done: SSL_read() until OpenSSL
 * has no whole record buffered and the socket is empty, or the budget is
 * spent; records are gathered into the buffer and fed many at a time.
 * H2R_BUDGET here means bytes may wait inside the SSL object, where no
 * socket readiness will announce them: the caller must come back by
 * itself. H2R_EOF covers close_notify and a close without it. After
 * H2R_ERROR, OpenSSL's error queue (or errno) says why.
 */
enum h2_read_result h2_read_tls(struct ssl_st *,
	    int (*feed)(void *arg, const uint8_t *p, size_t n), void *arg,
	    size_t *nread);
/* Once, when the reads become ours: read-ahead on. */
void	 h2_read_tls_start(struct ssl_st *);
/* After each h2_read_tls() that read nread bytes: a large read buffer
 * while the connection receives in bulk, the default one when it does
 * not (*bulk, the connection's state, starts at 0). */
void	 h2_read_tls_pace(struct ssl_st *, size_t nread, int *bulk);

#endif
