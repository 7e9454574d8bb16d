/*
 * watch.h: the change feed on the central cache (spec §5, "Change feed"):
 * alpcrun.v1.Cache/WatchSharedData. A new stream gets one SNAPSHOT notice
 * per live session (or only the session it names), then SNAPSHOT_END, then
 * one notice per set, update, delete and expiry that the backend's change
 * hook reports, seq increasing by one per notice.
 *
 * watch.c owns the watchers: the snapshot produced a slice at a time as the
 * stream drains, live notices held during the snapshot, the watch_buffer
 * bound per watcher (RST_STREAM ENHANCE_YOUR_CALM beyond it) and the
 * gauges that show them.
 */
#ifndef ALPCRUND_WATCH_H
#define ALPCRUND_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "grpc.h"

struct config;
struct event_base;

/* Central only. 0, or -1 when out of memory. */
int	 watch_init(struct event_base *, struct backend *,
	    const struct config *);
/* SIGHUP: watch_buffer, for every watcher from now on. */
void	 watch_reconfigure(const struct config *);
/* End every watcher (UNAVAILABLE) and free everything. Before
 * server_free(). */
void	 watch_free(void);

/* The backend's change hook, on central (main.c forwards it). EVICT does
 * not happen on a central (it refuses writes past max_memory) and is not
 * a notice. */
void	 watch_backend_event(enum be_event, const uint8_t *key, size_t keylen,
	    uint32_t level, uint64_t gen, size_t len);

/* For /metrics: watchers open, and the notice bytes they have queued
 * (packed for their streams, or held while their snapshot runs). */
void	 watch_stats(uint64_t *watchers, uint64_t *queued_bytes);
/* The same, one figure each, as metrics gauges (metrics_gauge()). */
uint64_t watch_gauge_watchers(void *);
uint64_t watch_gauge_queued(void *);
/* The drain started: new watchers are refused with UNAVAILABLE. */
void	 watch_drain(void *unused);

method_handler watch_shared_data;

/* --- pure parts, for tests ----------------------------------------------- */

/*
 * The notice kind (SharedDataNotice.Kind) a change hook event becomes, or
 * 0 (KIND_UNSPECIFIED) for an event that is no notice (EVICT).
 */
int	 watch_kind_of(enum be_event);
/*
 * May a watcher that has `queued` bytes outstanding take a notice of `size`
 * bytes within a buffer of `limit`? 1 yes, 0: cut it off. A notice is
 * always accepted by an empty queue, however small the limit.
 */
int	 watch_fits(size_t queued, size_t size, uint64_t limit);

#endif
