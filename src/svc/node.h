/*
 * node.h: node mode (spec §5): a read-through cache in front of a central
 * cache. Get follows the decision table of §5, misses are fetched from
 * central once per key however many workers wait (coalescing), writes are
 * forwarded to central (write-through), and the memory backend keeps the
 * copies within max_memory by evicting the least recently used.
 *
 * node.c owns node mode: the upstream link (h2client), the table of fetches
 * in flight, the four alpcrun.v1.Cache handlers of a node, and the pure
 * functions below that the unit tests drive directly.
 */
#ifndef ALPCRUND_NODE_H
#define ALPCRUND_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "grpc.h"
#include "sdwire.h"

struct backend;
struct config;
struct event_base;
struct h2client;

/*
 * Start node mode: the link to `upstream` (connecting at once, reporting
 * its state to /readyz and alpcrund_upstream_up), the fetch table. 0, or
 * -1 with err filled (bad upstream key file, out of memory).
 */
int	 node_init(struct event_base *, struct backend *,
	    const struct config *, char *err, size_t errlen);
/* SIGHUP: upstream_timeout, upstream_connect_timeout, upstream_keepalive,
 * the upstream key, TTL limits. `upstream` itself needs a restart. */
void	 node_reconfigure(const struct config *);
/* Finish every waiter (UNAVAILABLE), drop the link. Before server_free(). */
void	 node_free(void);

/* How fetches count against max_inflight_bytes: add(arg, delta) as reply
 * bytes arrive and go, full(arg) while no new fetch may start. main.c
 * registers the server's accounting; unset, nothing is counted. */
struct node_inflight {
	void	(*add)(void *arg, int64_t delta);
	int	(*full)(void *arg);
	void	*arg;
};
void	 node_set_inflight(const struct node_inflight *);
/* The drain started: readiness stays down whatever the link does. */
void	 node_drain(void *unused);

/* The handlers of alpcrun.v1.Cache on a node. */
method_handler node_get, node_set, node_update, node_delete;

/* --- for the change feed (prefetch.c, and watch.c on a node) --------------- */

/* The link to central (NULL before node_init()). */
struct h2client	*node_link(void);
/* Does the node hold a live copy of the session, from central's current
 * store? 1 with its level and generation, or 0. A check, not a use: the
 * LRU order does not change. */
int	 node_held(const uint8_t *key, size_t keylen, uint32_t *level,
	    uint64_t *gen);
/* Central named its store `inc` (a response header, a feed notice):
 * another one than before means no copy taken earlier is served again. */
void	 node_learn(uint64_t inc, const char *how);
/* Is a copy of origin `inc` from central's current store? */
int	 node_copy_current(uint64_t inc);
/* Central's store as last learned (0: not yet): what the node's own change
 * feed announces to the nodes behind it. */
uint64_t node_incarnation(void);
/* Drop the copy of a session if its level is at most upto, at once; fetches
 * of such levels (or of none) then in flight store nothing. */
void	 node_drop(const uint8_t *key, size_t keylen, uint32_t upto);
/*
 * Fetch (session, level) through the coalescing path (joining a fetch in
 * flight, or starting one that stores its result like a Get's) with no
 * caller waiting; fn(arg, grpc status) once it ended, possibly before this
 * returns. 0, or -1 (out of memory, or another prefetch waits on that
 * fetch): then fn is never called.
 */
typedef void node_fetched_fn(void *arg, int status);
int	 node_prefetch(const uint8_t *key, size_t keylen, uint32_t level,
	    node_fetched_fn *fn, void *arg);
/* No fn of node_prefetch() is called from now on (prefetch_free()). */
void	 node_prefetch_forget(void);

/* --- for the status page (status.c) ----------------------------------------- */

/* Each fetch in flight or queued: received and total are bytes of its
 * answer (total 0 until the answer's prefix came), started 0 while queued
 * (clock_now_ns() otherwise). */
typedef void node_fetch_fn(void *arg, const uint8_t *key, size_t keylen,
    int has_level, uint32_t level, uint64_t received, uint64_t total,
    size_t waiters, uint64_t started);
void	 node_fetches(node_fetch_fn *, void *);
/* node_id (NULL before node_init()). */
const char *node_id(void);

/* --- pure parts, for tests ------------------------------------------------- */

/* The Get decision table of spec §5. */
enum node_get_action {
	NODE_SERVE,		/* answer from the local copy */
	NODE_FETCH,		/* fetch (S, L) or (S, none) from central */
	NODE_MISMATCH,		/* FAILED_PRECONDITION locally: H > L */
};

/* held: the node holds a live copy at level h; has_level/l: the request. */
enum node_get_action node_decide_get(int held, uint32_t h, int has_level,
	    uint32_t l);

/*
 * The TTL of a copy (spec §5), from central's reply (sdwire_parse()): the
 * remaining TTL central reported, clamped
 * to the node's max_ttl; when central reported none (or a bad one), the
 * node's default_ttl, clamped likewise. In ns, at least 1.
 */
uint64_t node_copy_ttl(const struct sd_view *, uint64_t default_ttl_ms,
	    uint64_t max_ttl_ms);

#endif
