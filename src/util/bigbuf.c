/*
 * bigbuf.c: payload-sized allocations on transparent huge pages, recycled
 * (bigbuf.h).
 */
#include <sys/mman.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "bigbuf.h"
#include "clock.h"

#define HUGE_PAGE	((uintptr_t)2 << 20)

static struct kept {
	void		*p;		/* NULL: a free slot */
	size_t		 cap;		/* malloc_usable_size() */
	uint64_t	 since;		/* clock_now_ns() when kept */
} kept[BIGBUF_KEEP];
static uint64_t kept_bytes;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* A kept buffer of at least n bytes, n at least 3/4 of it; NULL if none. */
static void *
take(size_t n)
{
	struct kept *best = NULL;
	void *p = NULL;
	size_t i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < BIGBUF_KEEP; i++) {
		struct kept *k = &kept[i];

		if (k->p != NULL && k->cap >= n && k->cap - n <= k->cap / 4 &&
		    (best == NULL || k->cap < best->cap))
			best = k;
	}
	if (best != NULL) {
		p = best->p;
		best->p = NULL;
		kept_bytes -= best->cap;
	}
	pthread_mutex_unlock(&lock);
	return p;
}

void *
bigbuf_alloc(size_t n)
{
	void *p;
	uintptr_t lo, hi;

	if (n >= BIGBUF_MIN && (p = take(n)) != NULL)
		return p;		/* advised already */
	if ((p = malloc(n)) == NULL || n < BIGBUF_MIN)
		return p;
	/* Only whole huge pages inside the buffer: the advice must not
	 * reach malloc's header or a neighbour. A refusal (THP off) only
	 * costs the faults it would have saved. */
	lo = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	hi = ((uintptr_t)p + n) & ~(HUGE_PAGE - 1);
	if (hi > lo)
		(void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
	return p;
}

void
bigbuf_free(void *p)
{
	struct kept *slot = NULL;
	void *out = NULL;
	size_t cap, i;

	if (p == NULL || (cap = malloc_usable_size(p)) < BIGBUF_MIN) {
		free(p);
		return;
	}
	pthread_mutex_lock(&lock);
	/* A free slot, else the one kept longest makes room. */
	for (i = 0; i < BIGBUF_KEEP; i++) {
		struct kept *k = &kept[i];

		if (k->p == NULL) {
			slot = k;
			break;
		}
		if (slot == NULL || k->since < slot->since)
			slot = k;
	}
	if (slot->p != NULL) {
		out = slot->p;
		kept_bytes -= slot->cap;
	}
	slot->p = p;
	slot->cap = cap;
	slot->since = clock_now_ns();
	kept_bytes += cap;
	pthread_mutex_unlock(&lock);
	free(out);
}

void
bigbuf_trim(uint64_t now)
{
	void *out[BIGBUF_KEEP];
	size_t i, n = 0;

	pthread_mutex_lock(&lock);
	for (i = 0; i < BIGBUF_KEEP; i++) {
		struct kept *k = &kept[i];

		if (k->p != NULL && (now == UINT64_MAX || (now >= k->since &&
		    now - k->since >= (uint64_t)BIGBUF_KEEP_MS * NS_PER_MS))) {
			out[n++] = k->p;
			kept_bytes -= k->cap;
			k->p = NULL;
		}
	}
	pthread_mutex_unlock(&lock);
	while (n > 0)
		free(out[--n]);
}

uint64_t
bigbuf_kept_bytes(void)
{
	uint64_t n;

	pthread_mutex_lock(&lock);
	n = kept_bytes;
	pthread_mutex_unlock(&lock);
	return n;
}

static void *
pb_alloc(void *arg, size_t n)
{
	return bigbuf_alloc(n);
}

static void
pb_free(void *arg, void *p)
{
	bigbuf_free(p);
}

ProtobufCAllocator bigbuf_protobuf_allocator = { pb_alloc, pb_free, NULL };
