/*
 * h2read.c: reading a connection's socket in large bites, cleartext or
 * TLS (h2read.h).
 */
#include <sys/socket.h>
#include <errno.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

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

/*
 * OpenSSL's read buffer while a connection receives in bulk: up to 31
 * full records per read(2) with read-ahead (a 64 MiB upload took 18,000
 * reads per GiB with a 120 KiB buffer, 6,500 with this one). Only then,
 * and kept while it lasts: a server releases an idle connection's buffers
 * (SSL_MODE_RELEASE_BUFFERS), and a buffer this large taken and given
 * back for every small read makes malloc map and trim it each time.
 */
#define TLS_READ_BUFFER	(504u << 10)
#define BULK_ON		(64u << 10)	/* one call read this much: on */
#define BULK_OFF	(4u << 10)	/* one call read less: off */

void
h2_read_tls_start(SSL *ssl)
{
	/* Read-ahead even with the default buffer: a record's header and
	 * body come in one read(2), not two. */
	SSL_set_read_ahead(ssl, 1);
}

void
h2_read_tls_pace(SSL *ssl, size_t nread, int *bulk)
{
	if (*bulk == 0 && nread >= BULK_ON) {
		*bulk = (SSL_get_mode(ssl) & SSL_MODE_RELEASE_BUFFERS) ? 2 : 1;
		SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
		SSL_set_default_read_buffer_len(ssl, TLS_READ_BUFFER);
		/* The small buffer goes (when empty): the next read makes
		 * the large one. */
		SSL_free_buffers(ssl);
	} else if (*bulk != 0 && nread < BULK_OFF) {
		SSL_set_default_read_buffer_len(ssl, 0);
		if (*bulk == 2)
			SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
		SSL_free_buffers(ssl);
		*bulk = 0;
	}
}

/* Was this SSL_read's failure the peer's close (close_notify, or a close
 * without it: HTTP/2 knows when it is done)? */
static int
tls_eof(int err, int saved_errno)
{
	unsigned long e = ERR_peek_error();

	return err == SSL_ERROR_ZERO_RETURN ||
	    (err == SSL_ERROR_SYSCALL && e == 0 && saved_errno == 0) ||
	    (err == SSL_ERROR_SSL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
}

enum h2_read_result
h2_read_tls(SSL *ssl, int (*feed)(void *, const uint8_t *, size_t),
    void *arg, size_t *nread)
{
	size_t total = 0, have = 0;
	int n, err, saved;
	enum h2_read_result r;

	for (;;) {
		if (total >= H2_READ_BUDGET) {
			r = H2R_BUDGET;
			break;
		}
		ERR_clear_error();
		errno = 0;
		n = SSL_read(ssl, rbuf + have, (int)(sizeof(rbuf) - have));
		if (n > 0) {
			/* Records gather until the buffer is full: one call
			 * into nghttp2 for many. */
			have += (size_t)n;
			total += (size_t)n;
			if (have == sizeof(rbuf)) {
				have = 0;
				if (feed(arg, rbuf, sizeof(rbuf)) != 0) {
					r = H2R_STOP;
					goto out;
				}
			}
			continue;
		}
		saved = errno;
		err = SSL_get_error(ssl, n);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			/* No whole record buffered, the socket is empty. */
			r = H2R_DRAINED;
		else if (tls_eof(err, saved)) {
			/* As for cleartext, the bytes first and the end at
			 * the next call; the caller makes that call by itself
			 * (H2R_BUDGET): the socket need not turn readable
			 * again after a close_notify. */
			ERR_clear_error();
			r = total > 0 ? H2R_BUDGET : H2R_EOF;
		} else {
			/* The error stays on the queue for tls.c to name. */
			r = H2R_ERROR;
			if (err == SSL_ERROR_SYSCALL && saved == 0)
				saved = ECONNRESET;
		}
		errno = saved;
		break;
	}
	if (have > 0) {
		saved = errno;
		if (feed(arg, rbuf, have) != 0)
			r = H2R_STOP;
		errno = saved;
	}
out:
	if (nread != NULL)
		*nread = total;
	return r;
}
