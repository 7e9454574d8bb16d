/*
 * prefetch.h: the node's side of the change feed (spec §5, `prefetch on`):
 * one WatchSharedData stream to central over the node's link; a newer level
 * of a session the node holds is fetched before any worker asks (through
 * node.c's coalescing path, at most prefetch_concurrency at once, each after
 * a random 0-50 ms delay); DELETE and EXPIRE drop the copy at once; after a
 * lost stream it resubscribes with backoff and reconciles its copies
 * against the new snapshot without downloading unchanged payloads.
 */
#ifndef ALPCRUND_PREFETCH_H
#define ALPCRUND_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

struct backend;
struct config;
struct event_base;

/* After node_init(). 0, or -1 when out of memory. */
int	 prefetch_init(struct event_base *, struct backend *,
	    const struct config *);
/* SIGHUP: prefetch_concurrency. */
void	 prefetch_reconfigure(const struct config *);
/* Before node_free(). */
void	 prefetch_free(void);

/* --- pure parts, for tests ----------------------------------------------- */

enum prefetch_action {
	PF_NONE = 0,	/* nothing to do */
	PF_FETCH,	/* fetch the notice's level (stored, replacing the copy) */
	PF_DROP,	/* drop the copy now */
};

/*
 * What a notice (kind: SharedDataNotice.Kind) about level l, generation
 * gen (0: none given) means for a node that holds level h, generation hg
 * of its session (held 0: nothing). SNAPSHOT, SET and UPDATE: a newer
 * level is fetched, the same level kept if it is the same content (the
 * notice gives no generation, or the copy's), dropped if not (central's
 * store lost it and it was set again with other bytes), an older one than
 * held (central lost the session and it was set again) dropped; DELETE and
 * EXPIRE drop a copy at or below the notice's level. A session not held
 * is ignored. (A held session that the snapshot did not list is dropped
 * at SNAPSHOT_END: prefetch.c's reconciliation.)
 */
enum prefetch_action prefetch_decide(int kind, int held, uint32_t h,
	    uint64_t hg, int has_level, uint32_t l, uint64_t gen);

#endif
