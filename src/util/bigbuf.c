/*
 * bigbuf.c: payload-sized allocations on transparent huge pages
 * (bigbuf.h).
 */
#include <sys/mman.h>
#include <stdint.h>
#include <stdlib.h>

#include "bigbuf.h"

#define HUGE_PAGE	((uintptr_t)2 << 20)

void *
bigbuf_alloc(size_t n)
{
	void *p = malloc(n);
	uintptr_t lo, hi;

	if (p == NULL || n < BIGBUF_MIN)
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

static void *
pb_alloc(void *arg, size_t n)
{
	return bigbuf_alloc(n);
}

static void
pb_free(void *arg, void *p)
{
	free(p);
}

ProtobufCAllocator bigbuf_protobuf_allocator = { pb_alloc, pb_free, NULL };
