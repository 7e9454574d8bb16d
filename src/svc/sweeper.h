/*
 * sweeper.h: the TTL sweeper (spec §4.5), a libevent timer that asks the
 * backend to free expired records in bounded slices so that a million
 * expiring entries never stall the loop.
 */
#ifndef ALPCRUND_SWEEPER_H
#define ALPCRUND_SWEEPER_H

#include <stdint.h>

struct event_base;
struct backend;

/* Records freed per slice; between slices the loop serves other events. */
#define SWEEP_SLICE	4096

struct sweeper;

struct sweeper	*sweeper_start(struct event_base *, struct backend *,
		    uint64_t interval_ms);
void		 sweeper_set_interval(struct sweeper *, uint64_t interval_ms);
void		 sweeper_stop(struct sweeper *);

#endif
