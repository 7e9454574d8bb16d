/*
 * clock.h: the daemon's one time source. In-memory expiry and deadlines run
 * on the monotonic clock (spec §4), in nanoseconds.
 */
#ifndef ALPCRUND_CLOCK_H
#define ALPCRUND_CLOCK_H

#include <stdint.h>
#include <time.h>

#define NS_PER_MS	1000000ULL
#define NS_PER_SEC	1000000000ULL

static inline uint64_t
clock_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

#endif
