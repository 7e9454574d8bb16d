/*
 * h2read.h: the read path of a cleartext connection of ours, either side:
 * the socket is read in large bites with recv(2) into one buffer, and the
 * bytes go to the connection (nghttp2) straight from there.
 *
 * Why not the bufferevent: libevent 2.1's evbuffer_read() reads at most
 * 4 KiB per call whatever bufferevent_set_max_single_read() says (settable
 * only from 2.2, spec §11), so a 64 MiB upload cost 16,384 reads, as many
 * FIONREAD ioctls and as many loop turns. The bufferevent stays for the
 * output (payloads by reference, send timeouts) and for TLS.
 */
#ifndef ALPCRUND_H2READ_H
#define ALPCRUND_H2READ_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

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

#endif
