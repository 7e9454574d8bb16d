/*
 * watch.h: the change feed (spec §5, "Change feed" and "Tiers"):
 * alpcrun.v1.Cache/WatchSharedData, on a central over its store and on a
 * node with `prefetch on` over its copies. A new stream gets one SNAPSHOT
 * notice per live session (or only the session it names), then
 * SNAPSHOT_END, then one notice per set, update, delete and expiry that the
 * backend's change hook reports, seq increasing by one per notice. Every
 * notice names the incarnation of central's store (struct watch_origin).
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

/*
 * Whose store the feed describes. A central passes NULL: notices announce
 * be->incarnation and every entry is listed. A node passes its own: the
 * incarnation it learned of central's store (0: none yet), and current()
 * says whether a copy of origin `inc` may be listed (only those from
 * central's current store are).
 */
struct watch_origin {
	uint64_t	(*incarnation)(void *arg);
	int		(*current)(void *arg, uint64_t inc);
	void		*arg;
};

/* 0, or -1 when out of memory. The origin is copied. */
int	 watch_init(struct event_base *, struct backend *,
	    const struct config *, const struct watch_origin *);
/* End every watch stream with UNAVAILABLE `why` (its clients resubscribe
 * and reconcile against a fresh snapshot): a node learned that central's
 * store changed. Nothing when the feed is not served. */
void	 watch_end_all(const char *why);
/* SIGHUP: watch_buffer, for every watcher from now on. */
void	 watch_reconfigure(const struct config *);
/* End every watcher (UNAVAILABLE) and free everything. Before
 * server_free(). */
void	 watch_free(void);

/* The backend's change hook (main.c forwards it). EVICT does not happen
 * on a central (it refuses writes past max_memory); on a node it is no
 * notice: the level's content did not change, so a child may keep its
 * copy. */
void	 watch_backend_event(enum be_event, const uint8_t *key, size_t keylen,
	    uint32_t level, uint64_t gen, size_t len);

/* For /metrics: watchers open, and the notice bytes they have queued
 * (packed for their streams, or held while their snapshot runs). */
/*
 * Each live watcher, for the status page: its connection's peer address
 * ("address:port"), the path its call came through
 * (alpcrun-via: the node ids, the watching node's last; "" for a client
 * that is no node; cut at WATCH_VIA_MAX bytes), its session filter
 * (filterlen 0: all), the notices sent, the bytes queued for it, whether
 * its snapshot is still going, and since when (clock_now_ns()).
 */
#define WATCH_VIA_MAX	128
typedef void watch_each_fn(void *arg, const char *peer, const char *via,
    const uint8_t *filter, size_t filterlen, uint64_t notices,
    uint64_t queued, int in_snapshot, uint64_t since);
void	 watch_each(watch_each_fn *, void *);
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
