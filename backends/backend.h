/*
 * backend.h: the storage backend interface (spec §6).
 *
 * A backend is a named struct of function pointers (struct backend_ops), one
 * file per backend under backends/, found by name in backend.c. The cache
 * logic (src/svc/rules.c, cache.c) never knows which one it talks to.
 *
 * The contract every backend keeps, and the conformance suite checks:
 *
 * Keys and records.
 *	One record per key (a session_id, 1-256 bytes, not NUL-terminated): none,
 *	an entry (level, generation, origin, payload, expiry) or a tombstone
 *	(level, digest of the deleted payload, expiry). Times are nanoseconds on the monotonic clock
 *	(clock_now_ns()); a backend that stores wall-clock times converts at its
 *	own boundary. A record whose expiry is at or before `now` is presented
 *	as BE_NONE by every call, whether or not the sweeper freed it yet.
 *
 * Identity (spec §4).
 *	A generation is a 64-bit value the writer gives each BE_PUT (central:
 *	drawn for every new content; node: the copy's, as central reported it);
 *	the backend stores it with the entry and hands it back unchanged by
 *	lookup(), decide(), the hook and scans. BE_TOUCH keeps it. The origin
 *	(be_change.inc, be_record.inc) is the incarnation of the store the
 *	content came from (central: its own; node: central's, so that a copy
 *	from a store that forgot is never served): stored and handed back
 *	like the generation.
 *	be->incarnation names the store: open() sets it, never 0, and it
 *	changes exactly when the store starts without the records it had
 *	(memory: every open; a persistent backend: created with its files and
 *	kept in them, so that a restart keeps it and a new or replaced store
 *	does not).
 *
 * Leases.
 *	lookup() of an entry may return a lease on its payload: the bytes stay
 *	valid and unchanged until lease_release(), whatever happens to the
 *	entry meanwhile (update, delete, sweep, eviction, backend close is the
 *	one exception: every lease must be released before close()). The reply
 *	path releases the lease from the cleanup callback of the evbuffer
 *	reference that carries the bytes to the socket, not when the stream
 *	closes. release() may be called from the loop thread only.
 *
 *	A write may ask for a lease on what it stores (be_write.want_lease), so
 *	that storing and then serving a payload is one trip to the backend,
 *	not a write and a lookup: when its change is a BE_PUT applied (done()
 *	with BE_OK), the backend fills be_write.lease before done() with a
 *	lease on the payload exactly as this write stored it, whatever writes,
 *	deletes, sweeps or expiry come after it. done() then owns the lease
 *	(releases it or hands it on). In every other case (want_lease 0, a
 *	change other than BE_PUT, a failed write) write() leaves lease zeroed,
 *	and so does a backend that could not take the lease (out of memory),
 *	the write having succeeded all the same: lease.data is NULL exactly
 *	when no lease was taken (an empty payload's lease has data non-NULL).
 *	Except for an adopted buffer (be_change.adopt taken): a backend that
 *	adopts when want_lease is set always leases it back (it declines to
 *	adopt when it could not), since the writer may still be sending from
 *	that buffer (a node's cut-through replies).
 *
 * Lookups may answer later.
 *	lookup() answers at once. A backend whose records live elsewhere (s3:
 *	in a bucket) also has lookup_start(), which may answer later, and its
 *	lookup() answers only from what it holds in memory (-1 for a key it
 *	would have to ask the store about); callers that must see the store
 *	go through backend_lookup(), which is lookup() for a backend without
 *	lookup_start() (memory, lmdb: nothing allocated, nothing deferred).
 *	backend_lookup() returns 0 when answered now (rec and lease filled as
 *	by lookup(); fn is not called), 1 when fn will run exactly once on the
 *	loop thread later with the answer (the rec it is given is valid during
 *	the call; a lease it is given is fn's to release), -1 on a storage
 *	error now. fn's rv is 0 or -1 (a storage error). Lookups still in
 *	flight at close() are answered -1 before close() returns.
 *
 * Entries whose bytes are not at hand.
 *	decide() and lookup_start()'s fn may be shown an entry with data NULL
 *	(never by memory or lmdb): its payload is not in memory, and digest
 *	then holds the payload's SHA-256 and len its length, for the rules to
 *	compare with (a retry's bytes, a Delete's tombstone). A lookup with a
 *	lease always has the bytes, unless it takes them in flight (below).
 *
 * Payloads in flight.
 *	A caller that can send a payload on while it arrives (a Get's reply)
 *	looks up with backend_lookup_flow(), giving a flow fn besides fn (the
 *	same arg). A backend that fetches payloads from elsewhere (s3) may
 *	then answer an entry before its bytes are in: fn gets rv 0, the entry
 *	with data NULL (len, digest as above) and the lease with data NULL;
 *	the bytes follow through flow, on the loop thread, never from inside
 *	a call into the backend: each call hands over the next bytes in order
 *	(a lease, flow's to release; the first call those that came so far,
 *	for a lookup joining a fetch under way) with end 0, and the last call
 *	has end 1, the whole payload in (len bytes) and checked against the
 *	digest, or end -1 with errmsg: the bytes are not the entry's (a size
 *	or SHA-256 mismatch, the store failed half way), and none handed over
 *	may be taken for the payload (a reply is cut short with an error
 *	status, never OK). Exactly one call has end non-zero, and nothing
 *	comes after it; every flow still running at close() ends -1 before
 *	close() returns. flow must not call into the backend. There is no
 *	leaving early: a caller whose client went away drops the bytes until
 *	the end. Every other answer is as backend_lookup()'s; memory and lmdb
 *	never answer in flight (they have no lookup_start()).
 *
 * Writes are read-modify-write and may complete later.
 *	write() takes a struct be_write. The backend finds the key's current
 *	record and calls decide(), atomically with applying its answer (no
 *	other write to any key is applied between the two). A backend that
 *	applies by compare-and-swap (s3: a conditional request on the
 *	session's head) may find that another writer moved the record between
 *	the two: it reads the newest record and calls decide() again, and only
 *	the last call's answer is applied, so decide() must depend on nothing
 *	but its arguments and the request (a later call overwrites what an
 *	earlier one filled, the change and any verdict alike). Memory and
 *	lmdb call it exactly once. decide() may run in another thread (lmdb's
 *	writer): it reads only its argument and the record, and fills the
 *	change. Then done() is called exactly once, on the loop thread, when
 *	the change is durable as the backend promises (or failed, leaving
 *	nothing half-written). A backend may call done() before write()
 *	returns (memory does). write() itself returns 0, or -1 when the request
 *	could not even be queued (then done() is not called). Writes still in
 *	flight at close() are done() with BE_ERR_IO before close() returns.
 *
 * Change hook.
 *	Every applied set, update, delete, expiry and eviction is reported once
 *	to the hook, on the loop thread, after it is applied. A retry that only
 *	restarts the TTL (BE_TOUCH) is not a change and is not reported.
 *	level, gen and len are the new entry's for SET and UPDATE, the
 *	departing entry's for DELETE, EXPIRE and EVICT. An entry that expired and is
 *	overwritten before the sweeper freed it is reported EXPIRE, then SET.
 *
 * Sweeping.
 *	sweep() frees at most `budget` expired records and says whether more
 *	expired ones remain, without scanning records that have not expired:
 *	backends keep an index ordered by expiry.
 *
 * Scanning (the change feed's snapshot, src/watch.c).
 *	scan_open() starts a cursor over the live entries (never tombstones);
 *	scan_next() calls fn for at most `budget` of them, live as of `now`,
 *	and returns 1 when more may follow, 0 at the end, -1 on a storage
 *	error, or 2 when it visited none because it waits on its store for
 *	more (s3: a page of names, the heads read from it): call again a
 *	little later, the loop having run meanwhile; it steps over at most a bounded number of other records per
 *	call, so that a million records never stall the loop. Writes may run
 *	between two calls: an entry live from scan_open() to the end of the
 *	scan is visited at least once, with its state at the moment of the
 *	visit; one written, deleted or expired meanwhile may be visited or
 *	not, and may be visited twice. fn must not call into the backend.
 *	scan_close() frees the cursor at any point; every cursor must be
 *	closed before close(). Loop thread only.
 */
#ifndef ALPCRUND_BACKEND_H
#define ALPCRUND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "lease.h"

struct config;
struct event_base;

#define BE_DIGEST_LEN	32	/* SHA-256 */

enum be_kind { BE_NONE = 0, BE_ENTRY, BE_TOMBSTONE };

/* A key's current record, as shown to lookup() callers and to decide(). */
struct be_record {
	enum be_kind	 kind;
	uint32_t	 level;
	uint64_t	 gen;			/* BE_ENTRY: its generation */
	uint64_t	 inc;			/* BE_ENTRY: its origin */
	uint64_t	 expires;		/* monotonic ns */
	const uint8_t	*data;			/* BE_ENTRY: the payload; valid only
						   during the call unless leased;
						   NULL: not at hand ("Entries
						   whose bytes are not at hand") */
	size_t		 len;
	uint8_t		 digest[BE_DIGEST_LEN];	/* BE_TOMBSTONE: SHA-256 of the
						   deleted payload; BE_ENTRY with
						   data NULL: of its payload */
};

/* A hold on a payload's bytes (see "Leases" above): struct lease,
 * lease.h. */

/* What decide() asks the backend to do with the key. */
enum be_action {
	BE_KEEP = 0,	/* nothing: the request is refused or a no-op */
	BE_PUT,		/* store an entry (level, payload, expires) */
	BE_TOUCH,	/* keep the entry, set its expiry to `expires` */
	BE_PUT_TOMBSTONE, /* replace the entry by a tombstone (level, digest,
			   expires); not BE_TOMBSTONE, which is the record
			   kind (enum be_kind) */
};

struct be_change {
	enum be_action	 action;
	uint32_t	 level;
	uint64_t	 gen;			/* BE_PUT */
	uint64_t	 inc;			/* BE_PUT: the origin */
	uint64_t	 expires;		/* monotonic ns */
	/*
	 * BE_PUT: the payload. When `adopt` is non-NULL it is a malloc(3)
	 * buffer that holds data/len somewhere inside it (a request's whole
	 * message, say), which the backend may keep instead of copying the
	 * payload, until it frees the buffer with free(adopt) (or
	 * bigbuf_free(), which recycles large ones: bigbuf.h); a backend
	 * that keeps it sets adopt to NULL, and the writer frees whatever
	 * adopt still points to after done().
	 */
	const uint8_t	*data;
	size_t		 len;
	uint8_t		*adopt;
	uint8_t		 digest[BE_DIGEST_LEN];	/* BE_PUT_TOMBSTONE */
};

/* Errors, as done() reports them. */
#define BE_OK		0
#define BE_ERR_FULL	1	/* store full: max_memory or map size */
#define BE_ERR_IO	2	/* storage failed; errmsg says how */
#define BE_ERR_UNAVAIL	3	/* a remote store failed or refused for now
				   (s3: an error status, no answer, a
				   contended head); errmsg names it; a retry
				   may succeed */

struct be_write {
	const uint8_t	*key;
	size_t		 keylen;
	/* The current record (expired: BE_NONE) -> the change to apply. */
	void		(*decide)(void *arg, const struct be_record *cur,
			    uint64_t now, struct be_change *chg);
	/* On the loop: the change was applied (err BE_OK) or not. */
	void		(*done)(void *arg, int err, const char *errmsg);
	void		*arg;
	struct be_change chg;	/* filled by decide(), read back by the writer */
	/* Set want_lease for a lease on a BE_PUT's stored payload in lease,
	 * owned by done() ("Leases" above). */
	int		 want_lease;
	struct lease	 lease;
};

enum be_event {
	BE_EV_SET,	/* an entry where there was none (or a tombstone) */
	BE_EV_UPDATE,	/* an entry replaced another */
	BE_EV_DELETE,	/* an entry became a tombstone */
	BE_EV_EXPIRE,	/* an entry's TTL ran out (tombstones expire silently) */
	BE_EV_EVICT,	/* an entry made room for another (node LRU) */
};

/* backend_lookup()'s later answer ("Lookups may answer later"): rv 0 with
 * rec, or -1 on a storage error (rec NULL); lease is the caller's, filled
 * for an entry when it asked for one (else NULL). */
typedef void be_lookup_fn(void *arg, int rv, const struct be_record *rec,
    struct lease *lease);
/* A payload's next bytes in flight ("Payloads in flight"): bytes (NULL
 * or len 0: none this time) is flow's; end 0 more to come, 1 whole and
 * checked, -1 failed (errmsg says why). */
typedef void be_flow_fn(void *arg, struct lease *bytes, int end,
    const char *errmsg);

typedef void be_hook_fn(void *arg, enum be_event ev, const uint8_t *key,
    size_t keylen, uint32_t level, uint64_t gen, size_t len);

/* scan_next(): one live entry (key valid during the call only). */
typedef void be_scan_fn(void *arg, const uint8_t *key, size_t keylen,
    uint32_t level, uint64_t gen, uint64_t inc, uint64_t expires, size_t len);
struct be_scan;		/* a cursor, the backend's own */

struct be_stats {
	uint64_t	 entries;	/* live or not yet swept entries */
	uint64_t	 tombstones;
	uint64_t	 payload_bytes;
	uint64_t	 used_bytes;	/* what counts against max_memory */
};

struct backend;

struct backend_ops {
	const char	*name;
	/* Create the backend from the configuration; NULL with err filled. */
	struct backend	*(*open)(const struct config *, struct event_base *,
			    char *err, size_t errlen);
	/* Free everything. All leases must have been released. */
	void		 (*close)(struct backend *);
	/*
	 * Find key's record as of `now`. Returns 0 and fills *rec (BE_NONE
	 * when absent or expired); for an entry, when lease is not NULL, also
	 * takes a lease on its payload. -1 on a storage error.
	 */
	int		 (*lookup)(struct backend *, const uint8_t *key,
			    size_t keylen, uint64_t now, struct be_record *rec,
			    struct lease *lease);
	/* Optional: see "Lookups may answer later" (flow: "Payloads in
	 * flight", NULL when the caller takes none); called through
	 * backend_lookup() and backend_lookup_flow(). */
	int		 (*lookup_start)(struct backend *, const uint8_t *key,
			    size_t keylen, uint64_t now, struct be_record *rec,
			    struct lease *lease, be_lookup_fn *fn,
			    be_flow_fn *flow, void *arg);
	int		 (*write)(struct backend *, struct be_write *);
	/* Free up to budget expired records; *more: some remain. Returns
	 * how many were freed. */
	size_t		 (*sweep)(struct backend *, uint64_t now, size_t budget,
			    int *more);
	void		 (*stats)(struct backend *, struct be_stats *);
	/* Apply the live-reloadable limits of a new configuration. */
	void		 (*reconfigure)(struct backend *, const struct config *);
	/* See "Scanning" above. scan_open() returns NULL when out of
	 * memory. */
	struct be_scan	*(*scan_open)(struct backend *);
	int		 (*scan_next)(struct backend *, struct be_scan *,
			    uint64_t now, size_t budget, be_scan_fn *fn,
			    void *arg);
	void		 (*scan_close)(struct backend *, struct be_scan *);
};

/* The fields every backend shares; each backend's own state embeds this
 * first. */
struct backend {
	const struct backend_ops *ops;
	be_hook_fn	*hook;
	void		*hook_arg;
	uint64_t	 incarnation;	/* "Identity" above */
};

/* backend.c: the table of backends by name. */
const struct backend_ops *backend_find(const char *name);
/* Names of all backends, NULL-terminated (the conformance suite runs each). */
extern const struct backend_ops *const backend_all[];

static inline void
backend_set_hook(struct backend *be, be_hook_fn *fn, void *arg)
{
	be->hook = fn;
	be->hook_arg = arg;
}

static inline void
backend_report(struct backend *be, enum be_event ev, const uint8_t *key,
    size_t keylen, uint32_t level, uint64_t gen, size_t len)
{
	if (be->hook != NULL)
		be->hook(be->hook_arg, ev, key, keylen, level, gen, len);
}

/* Find key's record, now or later ("Lookups may answer later"): 0
 * answered now, 1 fn will run, -1 a storage error. lease may be NULL. */
static inline int
backend_lookup(struct backend *be, const uint8_t *key, size_t keylen,
    uint64_t now, struct be_record *rec, struct lease *lease,
    be_lookup_fn *fn, void *arg)
{
	if (be->ops->lookup_start == NULL)
		return be->ops->lookup(be, key, keylen, now, rec, lease);
	return be->ops->lookup_start(be, key, keylen, now, rec, lease, fn,
	    NULL, arg);
}

/* backend_lookup() that may answer an entry whose payload is in flight
 * ("Payloads in flight"): lease must not be NULL. */
static inline int
backend_lookup_flow(struct backend *be, const uint8_t *key, size_t keylen,
    uint64_t now, struct be_record *rec, struct lease *lease,
    be_lookup_fn *fn, be_flow_fn *flow, void *arg)
{
	if (be->ops->lookup_start == NULL)
		return be->ops->lookup(be, key, keylen, now, rec, lease);
	return be->ops->lookup_start(be, key, keylen, now, rec, lease, fn,
	    flow, arg);
}

/* A new incarnation or generation: random, never 0 (0 means "none" on
 * the wire and in records of older stores). */
uint64_t backend_random_id(void);

/* Per-entry bookkeeping counted against max_memory besides the payload and
 * key, so that a million tiny entries cannot escape the budget. */
#define BE_ENTRY_OVERHEAD	128

#endif
