/*
 * bigbuf.h: allocations of payload size (a request's body, its decoded
 * payload, a node's fetched copy) on transparent huge pages.
 *
 * Why: every large upload mallocs fresh payload-sized buffers, which glibc
 * maps anew each time, and the first touch of each 4 KiB page faults:
 * ~16k faults per 64 MiB buffer, about a third of an upload's server time
 * on a virtual machine. With MADV_HUGEPAGE on the buffer's 2 MiB-aligned
 * interior the kernel backs it with 2 MiB pages where it can (the
 * system's THP mode "madvise", Debian's default): 512 times fewer faults.
 * The memory is malloc's: free() releases it, so a backend that adopts
 * such a buffer needs to know nothing.
 */
#ifndef ALPCRUND_BIGBUF_H
#define ALPCRUND_BIGBUF_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* From this size on an allocation asks for huge pages. */
#define BIGBUF_MIN	(4u << 20)

/* malloc(n), with huge pages asked for when n >= BIGBUF_MIN. */
void	*bigbuf_alloc(size_t n);

/* For protobuf_c_message_unpack(): its bytes fields (the payload) come
 * from bigbuf_alloc(); everything is freed with free(). */
extern ProtobufCAllocator bigbuf_protobuf_allocator;

#endif
