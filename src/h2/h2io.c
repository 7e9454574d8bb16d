/*
 * h2io.c: the wire side of an HTTP/2 connection of ours, server or client
 * (h2io.h): nghttp2's allocator, body queues, cleartext output staging, TLS
 * record packing, DATA frames whose payload goes to the socket by
 * reference, and input fed to nghttp2 in slices with its queue of answers
 * bounded (h2_feed()).
 *
 * Where payload bytes are copied: cleartext, never for a referenced range
 * of H2_REF_MIN bytes or more (an evbuffer reference whose cleanup drops
 * the hold); TLS, by the encryption (whole records straight from the
 * body's segments, the ends of a range through a one-record stage).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/ssl.h>

#include "h2io.h"
#include "tls.h"
#include "tlsout.h"

/* --- body queues ------------------------------------------------------------ */

void
h2_body_init(struct h2_body *b)
{
	STAILQ_INIT(&b->segs);
	b->len = 0;
	STAILQ_INIT(&b->sent);
	b->keep = 0;
}

static int
seg_push(struct h2_body *b, const uint8_t *p, size_t len, struct h2_ref *ref)
{
	struct h2_seg *s;

	if ((s = malloc(sizeof(*s))) == NULL)
		return -1;
	s->p = p;
	s->len = len;
	s->off = 0;
	s->ref = ref;
	STAILQ_INSERT_TAIL(&b->segs, s, entry);
	b->len += len;
	return 0;
}

int
h2_body_add_ref(struct h2_body *b, const uint8_t *p, size_t len,
    struct h2_ref *ref)
{
	if (len == 0)
		return 0;
	if (seg_push(b, p, len, ref) != 0)
		return -1;
	h2_ref_hold(ref);
	return 0;
}

int
h2_body_add_owned(struct h2_body *b, uint8_t *p, size_t len)
{
	if (len == 0) {
		free(p);
		return 0;
	}
	return seg_push(b, p, len, NULL);
}

/*
 * A segment that owns len bytes of its own, in the same allocation (one
 * malloc per small reply rather than a segment and a buffer).
 */
uint8_t *
h2_body_add_inline(struct h2_body *b, size_t len)
{
	struct h2_seg *s;

	if (len > SIZE_MAX - sizeof(*s) ||
	    (s = malloc(sizeof(*s) + len)) == NULL)
		return NULL;
	s->p = (const uint8_t *)(s + 1);
	s->len = len;
	s->off = 0;
	s->ref = NULL;
	STAILQ_INSERT_TAIL(&b->segs, s, entry);
	b->len += len;
	return (uint8_t *)(s + 1);
}

static void
seg_free(struct h2_seg *s)
{
	if (s->ref != NULL)
		h2_ref_drop(s->ref);
	else if (s->p != (const uint8_t *)(s + 1))
		free((void *)s->p);
	free(s);
}

/* n bytes of the first segment were framed: forget them (or keep them,
 * for h2_body_rewind()). */
static void
seg_consumed(struct h2_body *b, struct h2_seg *s, size_t n)
{
	s->off += n;
	b->len -= n;
	if (s->off == s->len) {
		STAILQ_REMOVE_HEAD(&b->segs, entry);
		if (b->keep)
			STAILQ_INSERT_TAIL(&b->sent, s, entry);
		else
			seg_free(s);
	}
}

void
h2_body_rewind(struct h2_body *b)
{
	struct h2_seg *s;

	/* sent, then what was not framed yet, make the queue again. */
	STAILQ_CONCAT(&b->sent, &b->segs);
	STAILQ_CONCAT(&b->segs, &b->sent);
	b->len = 0;
	STAILQ_FOREACH(s, &b->segs, entry) {
		s->off = 0;
		b->len += s->len;
	}
}

void
h2_body_clear(struct h2_body *b)
{
	struct h2_seg *s;

	STAILQ_CONCAT(&b->segs, &b->sent);
	while ((s = STAILQ_FIRST(&b->segs)) != NULL) {
		STAILQ_REMOVE_HEAD(&b->segs, entry);
		seg_free(s);
	}
	b->len = 0;
}

void
h2_body_append(struct h2_body *dst, struct h2_body *src)
{
	STAILQ_CONCAT(&dst->segs, &src->segs);
	dst->len += src->len;
	src->len = 0;
}

/* --- output -------------------------------------------------------------------- */

/*
 * Cleartext staging. nghttp2 hands over a reply as three frames (HEADERS,
 * DATA, trailers), and each append to the bufferevent's output ran its
 * callbacks (a tenth of the instructions of a 1 KiB Get went to evbuffer
 * appends and callbacks; bench/README.md): frames are copied into space
 * reserved at the end of the output instead (no callback), committed once
 * when the flush ends, or before a payload reference, another connection's
 * bytes, or when the space is full. Nothing else touches an output between
 * its reserve and commit (libevent's rule): one loop thread, and every
 * other change to it commits first.
 */
#define STAGE_MIN	4096
static struct h2_out *stage_out;
static struct evbuffer_iovec stage_v;
static size_t stage_used;

int
h2_out_commit(void)
{
	struct h2_out *o = stage_out;

	if (o == NULL)
		return 0;
	stage_out = NULL;
	stage_v.iov_len = stage_used;
	stage_used = 0;
	return evbuffer_commit_space(bufferevent_get_output(o->bev), &stage_v,
	    1);
}

static int
stage_add(struct h2_out *o, const void *p, size_t n)
{
	if (stage_out != o || stage_used + n > stage_v.iov_len) {
		if (h2_out_commit() != 0)
			return -1;
		if (evbuffer_reserve_space(bufferevent_get_output(o->bev),
		    n > STAGE_MIN ? n : STAGE_MIN, &stage_v, 1) != 1)
			return -1;
		stage_out = o;
	}
	memcpy((uint8_t *)stage_v.iov_base + stage_used, p, n);
	stage_used += n;
	return 0;
}

int
h2_out_add(struct h2_out *o, const void *p, size_t n, size_t frame)
{
	if (o->t != NULL)
		return tls_out_put(o->t, p, n);
	if (o->tls)
		return tls_out_add(bufferevent_get_output(o->bev), &o->tls_room,
		    p, n, frame);
	return stage_add(o, p, n);
}

size_t
h2_out_len(struct h2_out *o)
{
	if (o->t != NULL)
		return tls_out_len(o->t);
	return evbuffer_get_length(bufferevent_get_output(o->bev)) +
	    (stage_out == o ? stage_used : 0);
}

void
h2_out_forget(struct h2_out *o)
{
	if (stage_out == o) {		/* staged, never to be sent */
		stage_out = NULL;
		stage_used = 0;
	}
	if (o->t != NULL) {
		/* Its memory goes with the SSL's BIO. */
		tls_out_close(o->t);
		o->t = NULL;
	}
}

/* Over TLS the output holds records, not references to the payload: a
 * lower mark bounds what a stalled reader costs (the socket's buffer
 * keeps the pipe full meanwhile). */
#define TLS_HIGH	(2u << 20)

int
h2_out_full(struct h2_out *o, size_t high)
{
	if (o->t != NULL && high > TLS_HIGH)
		high = TLS_HIGH;
	if (h2_out_len(o) < high)
		return 0;
	o->blocked = 1;
	return 1;
}

int
h2_out_flush(struct h2_out *o)
{
	if (h2_out_commit() != 0)
		return -1;
	if (o->t == NULL)
		return 0;
	if (tls_out_flush(o->t) != 0)
		return -1;
	/* The socket took it all at once, so no writable() comes from
	 * writing: nghttp2, blocked above the high mark, waits for one. */
	if (o->blocked && tls_out_len(o->t) <= o->low) {
		o->blocked = 0;
		tls_out_kick(o->t);
	}
	return 0;
}

int
h2_out_tls_start(struct h2_out *o, SSL *ssl, int fd,
    const struct timeval *send_tv, size_t low, const struct tls_out_cb *cb,
    void *arg)
{
	struct evbuffer *out = bufferevent_get_output(o->bev);
	struct evbuffer_iovec v[8];
	int i, n;

	if (o->t != NULL)
		return 0;
	if (h2_out_commit() != 0)
		return -1;
	bufferevent_disable(o->bev, EV_READ | EV_WRITE);
	if ((o->t = tls_out_start(bufferevent_get_base(o->bev), fd, ssl,
	    send_tv, low, cb, arg)) == NULL)
		return -1;
	o->low = low;
	/* What was queued during the handshake (SETTINGS, a client's
	 * preface) goes first, in order. */
	while (evbuffer_get_length(out) > 0) {
		n = evbuffer_peek(out, -1, NULL, v, 8);
		if (n > 8)
			n = 8;
		for (i = 0; i < n; i++) {
			if (tls_out_put(o->t, v[i].iov_base, v[i].iov_len) != 0)
				return -1;
			evbuffer_drain(out, v[i].iov_len);
		}
	}
	return 0;
}

/* evbuffer reference cleanup: the socket took these bytes. */
static void
evref_done(const void *data, size_t len, void *arg)
{
	h2_ref_drop(arg);
}

/*
 * TLS: the frame header and its data together, so frames leave in full
 * TLS records instead of a 9-byte record for each header and one per
 * referenced range (spec §11). During the handshake copied into large
 * chains of the bufferevent's output; after it, h2_out_add() stages the
 * bytes and encrypts whole records of a large range where they lie
 * (tlsout.h).
 */
static int
data_tls(struct h2_out *o, const uint8_t *framehd, struct h2_body *b,
    size_t length)
{
	struct h2_seg *s;
	size_t n, frame = 9 + length;

	if (h2_out_add(o, framehd, 9, frame) != 0)
		return -1;
	while (length > 0 && (s = STAILQ_FIRST(&b->segs)) != NULL) {
		n = s->len - s->off;
		if (n > length)
			n = length;
		/* The copy into the records. */
		if (h2_out_add(o, s->p + s->off, n, frame) != 0)
			return -1;
		seg_consumed(b, s, n);
		length -= n;
	}
	return 0;
}

int
h2_out_data(struct h2_out *o, const uint8_t *framehd, struct h2_body *b,
    size_t length)
{
	struct h2_seg *s;
	size_t n;

	if (b->len < length)
		return -2;
	if (o->tls)
		return data_tls(o, framehd, b, length);
	s = STAILQ_FIRST(&b->segs);
	if (s != NULL && s->ref == NULL && s->len - s->off >= length) {
		/* All owned bytes: the frame header and them staged
		 * together (one append per flush). */
		if (stage_add(o, framehd, 9) != 0 ||
		    stage_add(o, s->p + s->off, length) != 0)
			return -1;
		seg_consumed(b, s, length);
		return 0;
	}
	if (stage_add(o, framehd, 9) != 0)
		return -1;
	while (length > 0 && (s = STAILQ_FIRST(&b->segs)) != NULL) {
		n = s->len - s->off;
		if (n > length)
			n = length;
		if (s->ref != NULL && n >= H2_REF_MIN) {
			/* What is staged goes first. */
			if (h2_out_commit() != 0)
				return -1;
			h2_ref_hold(s->ref);
			if (evbuffer_add_reference(bufferevent_get_output(o->bev),
			    s->p + s->off, n, evref_done, s->ref) != 0) {
				s->ref->refs--;
				return -1;
			}
		} else if (stage_add(o, s->p + s->off, n) != 0)
			return -1;
		seg_consumed(b, s, n);
		length -= n;
	}
	return 0;
}

/* --- nghttp2's allocator ------------------------------------------------------- */

/*
 * nghttp2's own allocations (its stream objects, outbound frames, header
 * arrays: about eight per request) come from free lists of 16-byte size
 * classes up to H2MEM_MAX bytes, at most H2MEM_KEEP free blocks per class,
 * instead of going through malloc's slower bins on every request (a fifth
 * of the instructions per 1 KiB Get were malloc's; bench/README.md). Each
 * block starts with a 16-byte header (its class, and its size for larger
 * blocks, which malloc serves). Loop thread only, as every session is.
 * Under AddressSanitizer everything goes straight to malloc.
 */
#define H2MEM_MAX	1024
#define H2MEM_KEEP	256
#define H2MEM_HDR	16
#if defined(__SANITIZE_ADDRESS__)
#define H2MEM_OFF	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define H2MEM_OFF	1
#endif
#endif
#ifndef H2MEM_OFF
#define H2MEM_OFF	0
#endif

struct h2blk {
	size_t		 cls;		/* 0: malloc'ed to size */
	size_t		 size;
	/* H2MEM_HDR bytes so far; free blocks reuse the user part: */
	struct h2blk	*next;
};
static struct h2blk *h2mem_free[H2MEM_MAX / 16 + 1];
static size_t h2mem_nfree[H2MEM_MAX / 16 + 1];

static void *
h2mem_malloc(size_t size, void *arg)
{
	size_t cls = (size + 15) / 16;
	struct h2blk *b;

	if (H2MEM_OFF || size > H2MEM_MAX || size == 0) {
		if (size > SIZE_MAX - H2MEM_HDR ||
		    (b = malloc(H2MEM_HDR + size)) == NULL)
			return NULL;
		b->cls = 0;
		b->size = size;
		return (uint8_t *)b + H2MEM_HDR;
	}
	if ((b = h2mem_free[cls]) != NULL) {
		h2mem_free[cls] = b->next;
		h2mem_nfree[cls]--;
	} else if ((b = malloc(H2MEM_HDR + cls * 16)) == NULL)
		return NULL;
	b->cls = cls;
	b->size = size;
	return (uint8_t *)b + H2MEM_HDR;
}

static void
h2mem_release(void *p, void *arg)
{
	struct h2blk *b;

	if (p == NULL)
		return;
	b = (struct h2blk *)((uint8_t *)p - H2MEM_HDR);
	if (b->cls == 0 || h2mem_nfree[b->cls] >= H2MEM_KEEP) {
		free(b);
		return;
	}
	b->next = h2mem_free[b->cls];
	h2mem_free[b->cls] = b;
	h2mem_nfree[b->cls]++;
}

static void *
h2mem_calloc(size_t n, size_t size, void *arg)
{
	void *p;

	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	if ((p = h2mem_malloc(n * size, arg)) != NULL)
		memset(p, 0, n * size);
	return p;
}

static void *
h2mem_realloc(void *p, size_t size, void *arg)
{
	struct h2blk *b;
	void *q;

	if (p == NULL)
		return h2mem_malloc(size, arg);
	b = (struct h2blk *)((uint8_t *)p - H2MEM_HDR);
	if (b->cls != 0 && size > 0 && size <= b->cls * 16) {
		b->size = size;
		return p;
	}
	if ((q = h2mem_malloc(size, arg)) == NULL)
		return NULL;
	memcpy(q, p, b->size < size ? b->size : size);
	h2mem_release(p, arg);
	return q;
}

static nghttp2_mem h2mem = {
	NULL, h2mem_malloc, h2mem_release, h2mem_calloc, h2mem_realloc
};

nghttp2_mem *
h2_mem(void)
{
	return &h2mem;
}

ssize_t
h2_feed(nghttp2_session *h2, const uint8_t *p, size_t n, size_t max_queued,
    int *flooded)
{
	size_t done = 0, m;
	ssize_t rv;

	while (done < n) {
		m = n - done < H2_RECV_SLICE ? n - done : H2_RECV_SLICE;
		if ((rv = nghttp2_session_mem_recv(h2, p + done, m)) < 0)
			return rv;
		done += (size_t)rv;
		if (nghttp2_session_get_outbound_queue_size(h2) > max_queued) {
			*flooded = 1;
			return NGHTTP2_ERR_FLOODED;
		}
		if ((size_t)rv < m)
			break;
	}
	return (ssize_t)done;
}
