/*
 * tlsout.c: records written many per syscall (tlsout.h).
 *
 * Copies of a payload byte: none into a staging buffer for whole records
 * of a large range (SSL_write reads it where it lies), the encryption into
 * OpenSSL's record buffer, one memcpy from there into a chunk (our BIO),
 * and the kernel's. Chunks are recycled: fresh 256 KiB allocations are
 * mmap'ed and faulted in page by page every time.
 */
#include <sys/types.h>
#include <sys/uio.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tlsout.h"

/* The most plaintext one record carries. */
#define RECORD		16384
#define CHUNK_ALLOC	(256u << 10)
#define CHUNK_KEEP	12		/* free chunks kept for reuse: the
					   output of one busy connection */
#define WRITE_IOV	64

struct chunk {
	struct chunk	*next;
	size_t		 off, len;	/* written, filled */
	uint8_t		 data[];
};
#define CHUNK_DATA	(CHUNK_ALLOC - sizeof(struct chunk))

struct tls_out {
	struct ssl_st		*ssl;
	evutil_socket_t		 fd;
	struct event		*wev;
	struct timeval		 send_tv;
	int			 has_tv;
	size_t			 low;
	struct tls_out_cb	 cb;
	void			*arg;
	struct chunk		*head, *tail;
	size_t			 qlen;		/* encrypted, not written */
	int			 closed;	/* tls_out_close() ran */
	int			 failed;	/* SSL_write failed */
};

/* Loop thread only, as every connection. */
static struct chunk *pool;
static unsigned npool;

/* Plaintext of the frames of one connection at a time, encrypted as one
 * record when full, at its flush, or when another connection stages. */
static uint8_t stage[RECORD];
static size_t stage_used;
static struct tls_out *stage_owner;

static BIO_METHOD *meth;

/* --- chunks ------------------------------------------------------------ */

static struct chunk *
chunk_get(void)
{
	struct chunk *k;

	if ((k = pool) != NULL) {
		pool = k->next;
		npool--;
	} else if ((k = malloc(CHUNK_ALLOC)) == NULL)
		return NULL;
	k->next = NULL;
	k->off = k->len = 0;
	return k;
}

static void
chunk_put(struct chunk *k)
{
	if (npool >= CHUNK_KEEP) {
		free(k);
		return;
	}
	k->next = pool;
	pool = k;
	npool++;
}

static int
queue_add(struct tls_out *o, const uint8_t *p, size_t n)
{
	struct chunk *k;
	size_t m;

	while (n > 0) {
		if ((k = o->tail) == NULL || k->len == CHUNK_DATA) {
			if ((k = chunk_get()) == NULL)
				return -1;
			if (o->tail != NULL)
				o->tail->next = k;
			else
				o->head = k;
			o->tail = k;
		}
		m = CHUNK_DATA - k->len;
		if (m > n)
			m = n;
		memcpy(k->data + k->len, p, m);
		k->len += m;
		o->qlen += m;
		p += m;
		n -= m;
	}
	return 0;
}

static void
queue_clear(struct tls_out *o)
{
	struct chunk *k;

	while ((k = o->head) != NULL) {
		o->head = k->next;
		chunk_put(k);
	}
	o->tail = NULL;
	o->qlen = 0;
}

/* --- the BIO --------------------------------------------------------------- */

static int
bio_write(BIO *b, const char *p, int n)
{
	struct tls_out *o = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (o == NULL || o->closed || n < 0 ||
	    queue_add(o, (const uint8_t *)p, (size_t)n) != 0)
		return -1;
	return n;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_out *o = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_C_GET_FD:
		if (o == NULL)
			return -1;
		if (ptr != NULL)
			*(int *)ptr = o->fd;
		return o->fd;
	case BIO_CTRL_WPENDING:
	case BIO_CTRL_PENDING:
		return 0;
	default:
		return 0;
	}
}

static int
bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

/* The SSL is freed: the output goes with its BIO. */
static int
bio_destroy(BIO *b)
{
	struct tls_out *o = BIO_get_data(b);

	if (o != NULL) {
		tls_out_close(o);
		free(o);
		BIO_set_data(b, NULL);
	}
	return 1;
}

static int
bio_setup(void)
{
	if (meth != NULL)
		return 0;
	if ((meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
	    "alpcrund records")) == NULL)
		return -1;
	BIO_meth_set_write(meth, bio_write);
	BIO_meth_set_ctrl(meth, bio_ctrl);
	BIO_meth_set_create(meth, bio_create);
	BIO_meth_set_destroy(meth, bio_destroy);
	return 0;
}

/* --- writing ------------------------------------------------------------- */

static int
encrypt(struct tls_out *o, const uint8_t *p, size_t n)
{
	int k;

	if (o->failed)
		return -1;
	while (n > 0) {
		k = n > INT_MAX / 2 ? INT_MAX / 2 : (int)n;
		ERR_clear_error();
		if (SSL_write(o->ssl, p, k) != k) {
			/* Our BIO never blocks: this is an SSL in error
			 * (after a fatal alert) or out of memory. */
			ERR_clear_error();
			o->failed = 1;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static void
wait_writable(struct tls_out *o, int progress)
{
	if (o->qlen == 0) {
		event_del(o->wev);
		return;
	}
	/* A pending event's timer restarts only on progress. */
	if (progress || !event_pending(o->wev, EV_WRITE, NULL))
		event_add(o->wev, o->has_tv ? &o->send_tv : NULL);
}

/* Write what the socket takes. 0 (*progress set when bytes left), or -1
 * with errno. */
static int
write_queue(struct tls_out *o, int *progress)
{
	struct iovec iov[WRITE_IOV];
	struct chunk *k;
	ssize_t n;
	size_t m;
	int i;

	*progress = 0;
	while (o->qlen > 0) {
		for (i = 0, k = o->head; k != NULL && i < WRITE_IOV;
		    k = k->next, i++) {
			iov[i].iov_base = k->data + k->off;
			iov[i].iov_len = k->len - k->off;
		}
		n = writev(o->fd, iov, i);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		*progress = 1;
		o->qlen -= (size_t)n;
		while (n > 0) {
			k = o->head;
			m = k->len - k->off;
			if ((size_t)n < m) {
				k->off += (size_t)n;
				break;
			}
			n -= (ssize_t)m;
			/* A full chunk goes back; the last one stays for
			 * the next records. */
			if (k->next == NULL && k->len < CHUNK_DATA) {
				k->off = k->len = 0;
				break;
			}
			o->head = k->next;
			if (o->head == NULL)
				o->tail = NULL;
			chunk_put(k);
		}
	}
	/* Empty: the last chunk goes back too (an idle connection holds
	 * none). */
	queue_clear(o);
	return 0;
}

/* Encrypt what o has staged. */
static int
stage_commit(struct tls_out *o)
{
	size_t n = stage_used;

	stage_owner = NULL;
	stage_used = 0;
	return n > 0 ? encrypt(o, stage, n) : 0;
}

static int
stage_take(struct tls_out *o)
{
	struct tls_out *prev = stage_owner;

	if (prev == o)
		return 0;
	if (prev != NULL) {
		/* Its records leave when its socket turns writable. */
		if (stage_commit(prev) != 0)
			return 0;	/* prev fails at its own flush */
		wait_writable(prev, 0);
	}
	stage_owner = o;
	return 0;
}

int
tls_out_put(struct tls_out *o, const void *p, size_t n)
{
	const uint8_t *q = p;
	size_t m;

	if (o->closed || o->failed)
		return -1;
	if (stage_owner == o && stage_used > 0) {
		/* Fill the record begun. */
		m = RECORD - stage_used;
		if (m > n)
			m = n;
		memcpy(stage + stage_used, q, m);
		stage_used += m;
		q += m;
		n -= m;
		if (stage_used == RECORD && stage_commit(o) != 0)
			return -1;
	}
	if (n >= RECORD) {
		/* Whole records from where the bytes lie. */
		m = n - n % RECORD;
		if (encrypt(o, q, m) != 0)
			return -1;
		q += m;
		n -= m;
	}
	if (n > 0) {
		stage_take(o);
		memcpy(stage + stage_used, q, n);
		stage_used += n;
	}
	return 0;
}

int
tls_out_flush(struct tls_out *o)
{
	int progress;

	if (o->closed || o->failed) {
		errno = EPIPE;
		return -1;
	}
	if (stage_owner == o && stage_commit(o) != 0) {
		errno = EPROTO;
		return -1;
	}
	if (o->qlen == 0)
		return 0;
	if (write_queue(o, &progress) != 0)
		return -1;
	wait_writable(o, progress);
	return 0;
}

size_t
tls_out_len(struct tls_out *o)
{
	return o->qlen + (stage_owner == o ? stage_used : 0);
}

static void
wev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tls_out *o = arg;
	int progress;

	if (what & EV_TIMEOUT) {
		o->cb.timeout(o->arg);
		return;
	}
	if (write_queue(o, &progress) != 0) {
		event_del(o->wev);
		o->cb.error(o->arg, errno);
		return;
	}
	wait_writable(o, progress);
	if (o->qlen <= o->low)
		o->cb.writable(o->arg);
}

void
tls_out_kick(struct tls_out *o)
{
	if (!o->closed)
		event_active(o->wev, EV_WRITE, 1);
}

void
tls_out_resume(struct tls_out *o)
{
	if (!o->closed)
		wait_writable(o, 1);
}

struct tls_out *
tls_out_start(struct event_base *base, evutil_socket_t fd, SSL *ssl,
    const struct timeval *send_tv, size_t low, const struct tls_out_cb *cb,
    void *arg)
{
	struct tls_out *o;
	BIO *b;

	if (bio_setup() != 0 || (o = calloc(1, sizeof(*o))) == NULL)
		return NULL;
	o->ssl = ssl;
	o->fd = fd;
	o->low = low;
	o->cb = *cb;
	o->arg = arg;
	if (send_tv != NULL && (send_tv->tv_sec != 0 ||
	    send_tv->tv_usec != 0)) {
		o->send_tv = *send_tv;
		o->has_tv = 1;
	}
	if ((o->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, wev_cb,
	    o)) == NULL || (b = BIO_new(meth)) == NULL) {
		if (o->wev != NULL)
			event_free(o->wev);
		free(o);
		return NULL;
	}
	BIO_set_data(b, o);
	/* The SSL owns b from now on (the socket BIO stays its read BIO). */
	SSL_set0_wbio(ssl, b);
	return o;
}

void
tls_out_close(struct tls_out *o)
{
	if (o->closed)
		return;
	o->closed = 1;
	if (stage_owner == o) {
		stage_owner = NULL;
		stage_used = 0;
	}
	if (o->wev != NULL) {
		event_free(o->wev);
		o->wev = NULL;
	}
	queue_clear(o);
}
