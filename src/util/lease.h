/*
 * lease.h: a hold on bytes that someone else owns (a backend's payload):
 * they stay valid and unchanged until lease_release(). What the backends
 * hand out (backend.h, "Leases") and what a reply sends by reference.
 */
#ifndef ALPCRUND_LEASE_H
#define ALPCRUND_LEASE_H

#include <stddef.h>
#include <stdint.h>

struct lease {
	const uint8_t	*data;
	size_t		 len;
	void		(*release)(void *ctx);
	void		*ctx;
};

/* Give the bytes back; a released (or never taken) lease is a no-op. */
static inline void
lease_release(struct lease *l)
{
	if (l->release != NULL)
		l->release(l->ctx);
	l->release = NULL;
	l->ctx = NULL;
}

#endif
