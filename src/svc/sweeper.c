/*
 * sweeper.c: the TTL sweeper (spec §4.5). It owns two libevent timers: a
 * persistent tick every sweep_interval, and a zero-timeout continuation
 * that runs the next slice of SWEEP_SLICE records when one slice did not
 * free everything that has expired.
 *
 * The continuation is a timer with a {0, 0} timeout, not event_active():
 * libevent runs events activated during a callback in the same pass of its
 * active queue, without polling, so slices chained that way would starve
 * sockets. A zero timer fires only after the next poll, so the I/O that
 * became ready meanwhile is served between two slices.
 *
 * The backend reports each expiry through its change hook; the sweeper
 * counts nothing itself.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>

#include <event2/event.h>

#include "backend.h"
#include "clock.h"
#include "sweeper.h"

struct sweeper {
	struct backend	*be;
	struct event	*tick;		/* persistent, every interval */
	struct event	*slice;		/* one-shot {0, 0}: the next slice */
};

static void
interval_tv(uint64_t interval_ms, struct timeval *tv)
{
	/* 0 would make the persistent timer spin the loop. */
	if (interval_ms == 0)
		interval_ms = 1;
	tv->tv_sec = (time_t)(interval_ms / 1000);
	tv->tv_usec = (suseconds_t)(interval_ms % 1000) * 1000;
}

static void
sweep_slice(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval zero = { 0, 0 };
	struct sweeper *s = arg;
	int more = 0;

	(void)fd;
	(void)what;
	s->be->ops->sweep(s->be, clock_now_ns(), SWEEP_SLICE, &more);
	if (more)
		evtimer_add(s->slice, &zero);
}

static void
sweep_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sweeper *s = arg;

	/* A chain of slices is still running: it will get there. */
	if (evtimer_pending(s->slice, NULL))
		return;
	sweep_slice(fd, what, arg);
}

struct sweeper *
sweeper_start(struct event_base *base, struct backend *be,
    uint64_t interval_ms)
{
	struct sweeper *s;
	struct timeval tv;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->be = be;
	s->tick = event_new(base, -1, EV_PERSIST, sweep_tick, s);
	s->slice = evtimer_new(base, sweep_slice, s);
	interval_tv(interval_ms, &tv);
	if (s->tick == NULL || s->slice == NULL ||
	    evtimer_add(s->tick, &tv) == -1) {
		sweeper_stop(s);
		return NULL;
	}
	return s;
}

/* SIGHUP: the new period starts now. */
void
sweeper_set_interval(struct sweeper *s, uint64_t interval_ms)
{
	struct timeval tv;

	interval_tv(interval_ms, &tv);
	evtimer_del(s->tick);
	evtimer_add(s->tick, &tv);
}

void
sweeper_stop(struct sweeper *s)
{
	if (s == NULL)
		return;
	if (s->tick != NULL)
		event_free(s->tick);
	if (s->slice != NULL)
		event_free(s->slice);
	free(s);
}
