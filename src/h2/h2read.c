/*
 * h2read.c: reading a cleartext socket in large bites (h2read.h).
 */
#include <sys/socket.h>
#include <errno.h>

#include "h2read.h"

/* One buffer for every connection: the loop runs one feed at a time. */
static uint8_t rbuf[H2_READ_CHUNK];

enum h2_read_result
h2_read(evutil_socket_t fd, int (*feed)(void *, const uint8_t *, size_t),
    void *arg, size_t *nread)
{
	size_t total = 0;
	ssize_t n;
	enum h2_read_result r;

	for (;;) {
		if (total >= H2_READ_BUDGET) {
			r = H2R_BUDGET;
			break;
		}
		n = recv(fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
		if (n > 0) {
			total += (size_t)n;
			if (feed(arg, rbuf, (size_t)n) != 0) {
				r = H2R_STOP;
				break;
			}
			/* A short read: the socket is empty now, most likely;
			 * the next readiness says otherwise. One recv less
			 * per turn than asking until EAGAIN. */
			if ((size_t)n < sizeof(rbuf)) {
				r = H2R_DRAINED;
				break;
			}
			continue;
		}
		if (n == 0) {
			/* Bytes first, the EOF alone at the next readiness
			 * (it stays readable): the caller finishes with what
			 * came before it sees the end. */
			r = total > 0 ? H2R_DRAINED : H2R_EOF;
			break;
		}
		if (errno == EINTR)
			continue;
		r = errno == EAGAIN || errno == EWOULDBLOCK ? H2R_DRAINED :
		    H2R_ERROR;
		break;
	}
	if (nread != NULL)
		*nread = total;
	return r;
}
