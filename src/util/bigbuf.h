/*
 * bigbuf.h: allocations of payload size (a request's body, a node's
 * fetched reply) on transparent huge pages, and recycled.
 *
 * Why huge pages: every large upload needs a fresh payload-sized buffer,
 * and the first touch of each 4 KiB page faults: ~16k faults per 64 MiB
 * buffer, about a third of an upload's server time on a virtual machine.
 * With MADV_HUGEPAGE on the buffer's 2 MiB-aligned interior the kernel
 * backs it with 2 MiB pages where it can (the system's THP mode
 * "madvise", Debian's default): 512 times fewer faults.
 *
 * Why recycled: a new level replaces the last one, which frees a buffer of
 * the same size just before the next upload needs one. glibc hands such a
 * buffer back to the kernel (munmap) and maps the next anew, which the
 * kernel zeroes page by page on first touch: half of a steady 64 MiB
 * upload's CPU (perf: clear_page_erms). So bigbuf_free() keeps the last
 * BIGBUF_KEEP buffers of BIGBUF_MIN or more, and bigbuf_alloc() hands one
 * out again for a size it fits without wasting more than a quarter of it.
 * bigbuf_trim() gives back those unused for BIGBUF_KEEP_MS; main.c calls
 * it every second.
 *
 * The memory is malloc's: free() of a bigbuf is correct, only not
 * recycled, and bigbuf_free() takes any malloc'ed pointer. Thread-safe.
 */
#ifndef ALPCRUND_BIGBUF_H
#define ALPCRUND_BIGBUF_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* From this size on an allocation asks for huge pages and is recycled. */
#define BIGBUF_MIN	(4u << 20)
#define BIGBUF_KEEP	2
#define BIGBUF_KEEP_MS	10000

/* malloc(n), or a kept buffer it fits; huge pages asked for when n >=
 * BIGBUF_MIN. */
void	*bigbuf_alloc(size_t n);
/* free(p), or kept for reuse when large. */
void	 bigbuf_free(void *p);
/* Give back kept buffers unused since BIGBUF_KEEP_MS before now
 * (clock_now_ns()); all of them when now is UINT64_MAX. */
void	 bigbuf_trim(uint64_t now);
/* Bytes kept for reuse now. */
uint64_t bigbuf_kept_bytes(void);

/* For protobuf_c_message_unpack(): its bytes fields come from
 * bigbuf_alloc(); everything is freed with bigbuf_free(). */
extern ProtobufCAllocator bigbuf_protobuf_allocator;

#endif
