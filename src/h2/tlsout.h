/*
 * tlsout.h: the output of an established TLS connection of ours, either
 * side, on its own socket: frames are staged into full 16 KiB records,
 * large payload ranges are encrypted straight from where they lie, the
 * records go into recycled chunks through a BIO of ours, and the chunks
 * leave with one writev(2) for many records.
 *
 * Why not bufferevent_openssl after the handshake: it makes one SSL_write
 * per evbuffer chain and its socket BIO one write(2) per 16 KiB record, a
 * loop turn each. A filter bufferevent over a socket bufferevent batches
 * the records but costs two bufferevents' callbacks per small reply (it
 * served a third of the 1 KiB Gets per second: bench/tls.py). Here a
 * small reply is one SSL_write and one writev at the end of the flush,
 * in the same loop turn. The bufferevent still runs the handshake; the
 * connection takes the SSL over once it is done (the read side is
 * h2_read_tls(), h2read.h).
 */
#ifndef ALPCRUND_TLSOUT_H
#define ALPCRUND_TLSOUT_H

#include <stddef.h>
#include <sys/time.h>

#include <event2/event.h>

struct ssl_st;
struct tls_out;

/* What the output tells its connection; each is the last thing the
 * output does, so the connection may free itself inside it. */
struct tls_out_cb {
	/* A write left no more than `low` bytes queued. */
	void	(*writable)(void *arg);
	/* No write progress for send_tv (the caller calls tls_out_resume()
	 * to wait again, or frees the connection). */
	void	(*timeout)(void *arg);
	/* writev(2) failed with errno err. */
	void	(*error)(void *arg, int err);
};

/*
 * Take over the writes of ssl (handshake done) on socket fd: the SSL's
 * write BIO becomes ours. send_tv NULL: no send timeout. The output lives
 * as long as the SSL (the BIO owns it; tls_out_close() stops it). The BIO
 * answers BIO_get_fd() with fd, so whoever closes the socket through the
 * SSL's write BIO still finds it. NULL when out of memory (nothing
 * changed).
 */
struct tls_out	*tls_out_start(struct event_base *, evutil_socket_t fd,
		    struct ssl_st *ssl, const struct timeval *send_tv,
		    size_t low, const struct tls_out_cb *, void *arg);
/* Queue n plaintext bytes: staged into full records, whole records of a
 * large range encrypted in place. 0, or -1 (out of memory, TLS error). */
int		 tls_out_put(struct tls_out *, const void *p, size_t n);
/* Encrypt what is staged (a short record ends the burst) and write what
 * the socket takes now; the rest when it turns writable. 0, or -1 with
 * errno (the connection is broken). */
int		 tls_out_flush(struct tls_out *);
/* Bytes not yet written: staged plaintext and queued records. */
size_t		 tls_out_len(struct tls_out *);
/* Call writable() from the loop soon, as if a write had just ended. */
void		 tls_out_kick(struct tls_out *);
/* After a timeout with progress after all: wait send_tv again. */
void		 tls_out_resume(struct tls_out *);
/* Stop: queued bytes are dropped and no callback runs again. */
void		 tls_out_close(struct tls_out *);

#endif
