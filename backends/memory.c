/*
 * memory.c: the `memory` backend (spec §6): every record in RAM.
 *
 * It owns three structures:
 *  - a hash table (open addressing, linear probing, SipHash-2-4 with a
 *    random key so that clients cannot choose colliding session ids) from
 *    key to record;
 *  - a binary min-heap of all records by expiry, each record knowing its
 *    heap index, so that sweep() touches only expired records and a new
 *    expiry is an O(log n) sift;
 *  - reference-counted payload blobs, so that a lease keeps the bytes alive
 *    after the record moved on (update, delete, sweep, even close()).
 *
 * Everything runs on the loop thread: write() decides, applies, reports and
 * calls done() before it returns, so nothing here takes a lock and the blob
 * reference counts are plain integers.
 *
 * Hook arguments: SET and UPDATE carry the new entry's level and length;
 * DELETE and EXPIRE carry those of the entry that went away. An entry that
 * expired and is overwritten before the sweeper reached it is reported as
 * EXPIRE and then SET, so every entry that ever existed ends in exactly one
 * UPDATE, DELETE or EXPIRE (counters built on the hook stay balanced).
 *
 * Growth is incremental, as in Redis's dict: when the table passes 3/4 full
 * a table twice the size is allocated and becomes the one new records go
 * to, while the old one is emptied into it a bounded chunk at a time, by
 * every lookup() and write() (MIGRATE_STEP old slots) and by every sweep()
 * (SWEEP_MIGRATE), so that an idle daemon whose sweeper still ticks finishes
 * too. No operation ever rehashes more than MIGRATE_MAX (or
 * SWEEP_MIGRATE_MAX) old slots: a million-entry table grows without a stall,
 * where rehashing it inside one write took tens of milliseconds. Meanwhile
 * a key is in exactly one of the two tables; lookups and writes probe the
 * old one, then the new one, and insert only into the new one.
 *
 * Why linear probing was kept rather than separate chaining: the slots hold
 * pointers, so neither scheme compares keys without touching the record,
 * and chaining would add a next pointer to every record and a pointer chase
 * per probe for no gain in migration, which here is just as simple. The old
 * table is emptied in slot order from mig_base, a slot that was empty when
 * growth began, so that no probe chain crosses the start of the migration.
 * A slot is migrated by moving its record to the new table and leaving the
 * slot empty, without backward-shifting the rest of its cluster; instead, a
 * record still in the old table whose home slot was already migrated is
 * looked for from the migration cursor on (old_start()): the emptied slots
 * all precede the cursor and every record after it is still reachable from
 * there. Deletion from the old table (the sweeper freeing a record that was
 * not migrated yet) keeps the backward-shift scheme, in migration order, so
 * there are no deleted markers in either table. A chunk that has done its
 * MIGRATE_STEP slots carries on to the end of the cluster it is in (up to
 * MIGRATE_MAX) so that the cursor usually rests on an empty slot, where a
 * probe whose home slot was migrated stops at once.
 *
 * Growth starts when one more record would make the table over 3/4 full,
 * counting the records of both tables; after a doubling the next one is due
 * only after as many net inserts again as the old table held, while every
 * insert migrates at least MIGRATE_STEP old slots: a migration always ends
 * long before the next growth (tab_grow() would finish it first if not).
 *
 * The hash table never shrinks: after a peak it keeps 8 bytes per slot of
 * its largest size, which is small next to the records it once held, and
 * shrinking would put rehash work into the sweeper's slices.
 *
 * Eviction is a policy chosen at open: in node mode (spec §5: copies kept
 * within max_memory, least recently used first) every live entry is also
 * on a doubly linked list in order of use; a lookup that takes a lease and
 * a PUT make an entry the most recent, and a PUT that would pass
 * max_memory first frees expired records, then evicts entries from the
 * least recent end (reported BE_EV_EVICT) until it fits. An entry larger
 * than the whole budget is still refused, and evicts nothing. A lower
 * max_memory on reconfigure() evicts at once. On a central cache nothing is
 * ever evicted: a PUT past max_memory is refused (store full). The list is
 * kept there too, in order of writes, because it is what scans walk.
 *
 * Scans (the change feed's snapshot, backend.h) walk that list from the
 * least recent end. Every push onto the list stamps the record with a
 * counter, so the list is in stamp order; a scan visits the records
 * stamped up to the stamp at its start and ends at the first newer one
 * (a record written or, with LRU, used since then was pushed past that
 * point: "written meanwhile", which the contract lets it skip), so it ends
 * however busy the table is. Unlinking the record a cursor rests on moves
 * the cursor on to its successor; nothing else can disturb a cursor, as
 * records are only ever unlinked, or pushed at the most recent end.
 */
#define _POSIX_C_SOURCE 200809L
#ifndef _GNU_SOURCE			/* configure defines it; for */
#define _GNU_SOURCE	1		/* MAP_ANONYMOUS, madvise(), mremap() */
#endif

#include <sys/mman.h>
#include <sys/random.h>

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "backend_test.h"	/* the test-only entry points, at the end */
#include "bigbuf.h"
#include "clock.h"
#include "config.h"
#include "siphash.h"

extern const struct backend_ops backend_memory;

#define KEY_MAX		256
#define TABLE_MIN	64		/* slots, a power of two */
#define HEAP_MIN	64
/*
 * Old-table slots migrated per lookup() or write(), and at most (finishing
 * the cluster the chunk ends in); then per sweep(). A slot costs 50-100 ns
 * (one record read, one store into the new table): 10-50 us per operation.
 * With no traffic at all, the sweeper's default 1 s tick finishes a 4M-slot
 * table in about half an hour; any traffic speeds that up.
 */
#define MIGRATE_STEP		128
#define MIGRATE_MAX		512
#define SWEEP_MIGRATE		2048
#define SWEEP_MIGRATE_MAX	8192
/*
 * Arrays (tables, the heap) of MAP_BYTES or more are mmap()ed by big_*():
 * the heap grows by mremap(), not by a realloc() that malloc may do by
 * copying (10 ms at 2M entries when malloc's mmap threshold has risen, as
 * it does in the daemon after large payloads are freed), and the pages of
 * the old table that the migration has emptied are given back as it goes,
 * at least RELEASE_BYTES at a time: unmapping a whole 32 MiB table at the
 * end of a migration took 3 ms. Once the old table holds no record (all
 * migrated or swept), the migration leaps over its empty rest EMPTY_LEAP
 * slots at a time rather than unmapping it in one go.
 */
#define MAP_BYTES		(256 * 1024)
#define RELEASE_BYTES		(64 * 1024)
#define EMPTY_LEAP		(64 * 1024)
/*
 * Migrating a slot reads its record's hash, a cache miss; a rehash of the
 * whole table in one loop overlaps those misses, a chunk of 128 slots much
 * less, and took twice as long per record until the migration fetched the
 * record MIGRATE_AHEAD slots ahead.
 */
#define MIGRATE_AHEAD		8
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p)		__builtin_prefetch(p)
#else
#define PREFETCH(p)		((void)(p))
#endif
/* Expired records freed inline by a PUT that would otherwise be refused as
 * full, so that unswept garbage does not make the store look full. Bounded
 * so that one write never does the sweeper's whole job. */
#define FULL_SWEEP	1024

/*
 * A payload. The record holds one reference, each lease one more.
 *
 * Layout, for memory per entry (bench/README.md, scenario 5): a payload of
 * up to BLOB_INLINE bytes is copied into bytes[] (one allocation of 8 bytes
 * more than the payload); a larger one is adopted from the writer when
 * offered (no copy), and bytes[] then holds a struct blob_ref: where the
 * payload is and the malloc'ed buffer it lies in (a request's whole
 * message: a few dozen bytes more than the payload). Which of the two
 * follows from len alone. len fits 32 bits: max_message_size is at
 * most 2 GiB.
 */
#define BLOB_INLINE	4096

/*
 * Records, tombstone digests and small blobs come from size classes of 8
 * bytes carved out of POOL_BLOCK blocks, with a free list per class,
 * rather than from malloc(3): no 8-byte header and 16-byte rounding per
 * object, and no interleaving with the requests' short-lived allocations,
 * whose split remainders malloc left between the records as 32- and
 * 48-byte holes it did not reuse (18 bytes per entry at a million 64-byte
 * entries). The lists are process-wide (a lease may outlive the backend),
 * used from the loop thread only like everything here, and never shrink: a
 * size class keeps its peak, as malloc's heap mostly does too. Under
 * AddressSanitizer every object is a malloc() of its own, so that misuse
 * stays visible.
 */
#define POOL_MAX	512
#define POOL_BLOCK	(64 * 1024)
#if defined(__SANITIZE_ADDRESS__)
#define POOL_OFF	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_OFF	1
#endif
#endif
#ifndef POOL_OFF
#define POOL_OFF	0
#endif

struct blob {
	uint32_t	 refcnt;
	uint32_t	 len;
	uint8_t		 bytes[];	/* the payload, or a struct blob_ref */
};

struct blob_ref {
	const uint8_t	*data;
	void		*base;		/* free()'d with the blob */
};

/*
 * A record: 75 bytes before the key (fields ordered so that none pads),
 * allocated to the key's length (offsetof, not sizeof). A tombstone's
 * digest is an allocation of its own: deletes are rare, and inline it
 * would cost every entry 24 bytes.
 */
struct rec {
	uint64_t	 hash;		/* cached: probing and growing never
					   rehash the key */
	uint64_t	 expires;	/* monotonic ns */
	uint32_t	 heapidx;	/* fewer than 2^32 records: 80 bytes
					   each would be 320 GiB */
	uint32_t	 level;
	union {
		struct blob	*blob;		/* BE_ENTRY */
		uint8_t		*digest;	/* BE_TOMBSTONE: BE_DIGEST_LEN
						   bytes, malloc'ed */
	} u;
	/* Live entries, most recently used (LRU) or written first. */
	struct rec	*lru_prev, *lru_next;
	uint64_t	 stamp;		/* when pushed onto that list */
	uint64_t	 gen;		/* BE_ENTRY: its generation */
	uint64_t	 inc;		/* BE_ENTRY: its origin */
	uint16_t	 keylen;
	uint8_t		 kind;		/* BE_ENTRY or BE_TOMBSTONE */
	uint8_t		 key[];
};

struct mem {
	struct backend	  be;		/* first: backend.h's shared part */
	uint8_t		  seed[16];	/* SipHash key */
	struct rec	**slots;	/* the table new records go to */
	size_t		  cap;		/* power of two */
	size_t		  count;
	/* While growing: the previous table, being emptied into slots. */
	struct rec	**old;		/* NULL when not growing */
	size_t		  oldcap;	/* cap / 2 */
	size_t		  oldcount;
	size_t		  mig_base;	/* an old slot empty when growth began */
	size_t		  mig_done;	/* old slots migrated, from mig_base on */
	size_t		  mig_rel;	/* old slots from mig_base to here: pages
					   given back (old_release()) */
	size_t		  pagesz;
	uint64_t	  migrated;	/* old slots migrated since open (tests) */
	size_t		  steps[4];	/* MIGRATE_STEP, MIGRATE_MAX,
					   SWEEP_MIGRATE, SWEEP_MIGRATE_MAX;
					   only tests change them */
	struct rec	**heap;
	size_t		  heapn;
	size_t		  heapcap;
	uint64_t	  max_memory;	/* 0: no limit */
	uint64_t	  used_bytes;
	uint64_t	  payload_bytes;
	uint64_t	  entries;
	uint64_t	  tombstones;
	int		  lru;		/* evict least recently used (node) */
	struct rec	 *lru_head;	/* most recently used */
	struct rec	 *lru_tail;	/* least recently used */
	uint64_t	  stamp;	/* last list push */
	struct be_scan	 *scans;	/* open cursors */
	char		  errmsg[96];	/* done()'s message, valid during it */
};

/* --- Blobs ---------------------------------------------------------------- */

/* The payload of a PUT: adopt the writer's malloc buffer when offered (no
 * copy), else copy data/len (the one copy the memory backend makes). */
struct pool_free {
	struct pool_free *next;
};
static struct pool_free *pool_lists[POOL_MAX / 8 + 1];
static uint8_t *pool_cur;
static size_t pool_left;

static void *
pool_alloc(size_t n)
{
	size_t c = n > 0 ? (n + 7) / 8 : 1;
	struct pool_free *f;
	void *p;

	if (n > POOL_MAX || POOL_OFF)
		return malloc(n);
	if ((f = pool_lists[c]) != NULL) {
		pool_lists[c] = f->next;
		return f;
	}
	if (pool_left < c * 8) {
		/* The old block's tail (under POOL_MAX bytes) stays unused. */
		if ((pool_cur = malloc(POOL_BLOCK)) == NULL) {
			pool_left = 0;
			return NULL;
		}
		pool_left = POOL_BLOCK;
	}
	p = pool_cur;
	pool_cur += c * 8;
	pool_left -= c * 8;
	return p;
}

/* n: the size given to pool_alloc(). */
static void
pool_free(void *p, size_t n)
{
	struct pool_free *f = p;
	size_t c = n > 0 ? (n + 7) / 8 : 1;

	if (p == NULL)
		return;
	if (n > POOL_MAX || POOL_OFF) {
		free(p);
		return;
	}
	f->next = pool_lists[c];
	pool_lists[c] = f;
}

static size_t
blob_size(size_t len)
{
	return sizeof(struct blob) + (len <= BLOB_INLINE ? len :
	    sizeof(struct blob_ref));
}

static struct blob *
blob_new(struct be_change *c)
{
	struct blob_ref ref;
	struct blob *b;

	if (c->len > UINT32_MAX)
		return NULL;
	if ((b = pool_alloc(blob_size(c->len))) == NULL)
		return NULL;
	if (c->len <= BLOB_INLINE) {
		if (c->len > 0)
			memcpy(b->bytes, c->data, c->len);
	} else {
		if ((ref.base = c->adopt) != NULL) {
			ref.data = c->data;
			c->adopt = NULL;
		} else if ((ref.base = malloc(c->len)) == NULL) {
			pool_free(b, blob_size(c->len));
			return NULL;
		} else {
			memcpy(ref.base, c->data, c->len);
			ref.data = ref.base;
		}
		memcpy(b->bytes, &ref, sizeof(ref));
	}
	b->refcnt = 1;
	b->len = (uint32_t)c->len;
	return b;
}

static const uint8_t *
blob_data(const struct blob *b)
{
	struct blob_ref ref;

	if (b->len <= BLOB_INLINE)
		return b->bytes;
	memcpy(&ref, b->bytes, sizeof(ref));
	return ref.data;
}

static void
blob_unref(struct blob *b)
{
	struct blob_ref ref;

	if (--b->refcnt > 0)
		return;
	if (b->len > BLOB_INLINE) {
		memcpy(&ref, b->bytes, sizeof(ref));
		bigbuf_free(ref.base);		/* recycled when large */
	}
	pool_free(b, blob_size(b->len));
}

/* lease.release: loop thread only (backend.h), hence no atomics. */
static void
mem_lease_release(void *ctx)
{
	blob_unref(ctx);
}

/* --- Records and accounting ----------------------------------------------- */

static uint64_t
rec_cost(const struct rec *r)
{
	uint64_t c = (uint64_t)r->keylen + BE_ENTRY_OVERHEAD;

	if (r->kind == BE_ENTRY)
		c += r->u.blob->len;
	return c;
}

static void
rec_free(struct rec *r)
{
	pool_free(r, offsetof(struct rec, key) + r->keylen);
}

static struct rec *
rec_new(const uint8_t *key, size_t keylen, uint64_t hash)
{
	struct rec *r;

	if ((r = pool_alloc(offsetof(struct rec, key) + keylen)) == NULL)
		return NULL;
	memset(r, 0, offsetof(struct rec, key));
	r->hash = hash;
	r->keylen = (uint16_t)keylen;
	memcpy(r->key, key, keylen);
	return r;
}

/* --- LRU order (node mode), write order (central) -------------------------- */

/* A scan's cursor (backend.h "Scanning"). */
struct be_scan {
	struct be_scan	*next, *prev;
	struct rec	*at;		/* next to visit, NULL: the end */
	uint64_t	 until;		/* visit records stamped up to this */
};

/* Only entries are on the list: callers check. */
static void
lru_unlink(struct mem *m, struct rec *r)
{
	struct be_scan *sc;

	for (sc = m->scans; sc != NULL; sc = sc->next)
		if (sc->at == r)
			sc->at = r->lru_prev;	/* its successor in scan order */
	if (r->lru_prev != NULL)
		r->lru_prev->lru_next = r->lru_next;
	else
		m->lru_head = r->lru_next;
	if (r->lru_next != NULL)
		r->lru_next->lru_prev = r->lru_prev;
	else
		m->lru_tail = r->lru_prev;
	r->lru_prev = r->lru_next = NULL;
}

/* r becomes the most recently used. */
static void
lru_push(struct mem *m, struct rec *r)
{
	r->stamp = ++m->stamp;
	r->lru_prev = NULL;
	r->lru_next = m->lru_head;
	if (m->lru_head != NULL)
		m->lru_head->lru_prev = r;
	else
		m->lru_tail = r;
	m->lru_head = r;
}

static void
lru_touch(struct mem *m, struct rec *r)
{
	if (m->lru_head != r) {
		lru_unlink(m, r);
		lru_push(m, r);
	}
}

/* --- Large arrays --------------------------------------------------------- */

/* bytes of zeroes: from malloc below MAP_BYTES, else a mapping. */
static void *
big_alloc(size_t bytes)
{
	void *p;

	if (bytes < MAP_BYTES)
		return calloc(1, bytes);
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p != MAP_FAILED ? p : NULL;
}

static void
big_free(void *p, size_t bytes)
{
	if (p == NULL)
		return;
	if (bytes < MAP_BYTES)
		free(p);
	else
		munmap(p, bytes);
}

/* Grow p from obytes to nbytes; NULL (p intact) when out of memory. */
static void *
big_grow(void *p, size_t obytes, size_t nbytes)
{
	void *q;

	if (nbytes < MAP_BYTES)
		return realloc(p, nbytes);
#ifdef MREMAP_MAYMOVE
	if (obytes >= MAP_BYTES) {
		/* Moves page table entries, never the bytes. */
		q = mremap(p, obytes, nbytes, MREMAP_MAYMOVE);
		return q != MAP_FAILED ? q : NULL;
	}
#endif
	/* Crossing MAP_BYTES: one copy of less than MAP_BYTES. */
	if ((q = big_alloc(nbytes)) == NULL)
		return NULL;
	memcpy(q, p, obytes);
	big_free(p, obytes);
	return q;
}

/* --- Hash table ----------------------------------------------------------- */

/* A table of cap empty slots (all bits zero is NULL, as calloc() assumes). */
static struct rec **
tab_alloc(size_t cap)
{
	if (cap > SIZE_MAX / sizeof(struct rec *))
		return NULL;
	return big_alloc(cap * sizeof(struct rec *));
}

static void
tab_free(struct rec **t, size_t cap)
{
	big_free(t, cap * sizeof(*t));
}

static int
rec_is(const struct rec *r, const uint8_t *key, size_t keylen, uint64_t hash)
{
	return r->hash == hash && r->keylen == keylen &&
	    memcmp(r->key, key, keylen) == 0;
}

/* An old slot's position in migration order: the slots before mig_done are
 * the migrated (empty) ones. */
static size_t
old_pos(const struct mem *m, size_t i)
{
	return (i - m->mig_base) & (m->oldcap - 1);
}

/*
 * Where a probe for hash starts in the old table: its home slot, or the
 * migration cursor when the home slot was migrated already. Every record
 * left in the old table is reachable from there without crossing an empty
 * slot, and no probe wraps past mig_base (empty since growth began).
 */
static size_t
old_start(const struct mem *m, uint64_t hash)
{
	size_t mask = m->oldcap - 1, home = (size_t)hash & mask;

	if (old_pos(m, home) < m->mig_done)
		return (m->mig_base + m->mig_done) & mask;
	return home;
}

/* The record for key, in either table, or NULL; *slotp: when NULL, the
 * empty slot of the current table where it would go (valid until a table
 * changes: any insert, removal, migration or growth). */
static struct rec *
tab_find(struct mem *m, const uint8_t *key, size_t keylen, uint64_t hash,
    size_t *slotp)
{
	size_t mask, i;
	struct rec *r;

	if (m->old != NULL) {
		mask = m->oldcap - 1;
		for (i = old_start(m, hash); (r = m->old[i]) != NULL;
		    i = (i + 1) & mask)
			if (rec_is(r, key, keylen, hash))
				return r;
	}
	mask = m->cap - 1;
	for (i = (size_t)hash & mask; (r = m->slots[i]) != NULL;
	    i = (i + 1) & mask)
		if (rec_is(r, key, keylen, hash))
			break;
	if (slotp != NULL)
		*slotp = i;
	return r;
}

static void
mig_end(struct mem *m)
{
	tab_free(m->old, m->oldcap);
	m->old = NULL;
	m->oldcap = m->oldcount = 0;
	m->mig_base = m->mig_done = m->mig_rel = 0;
}

/*
 * Give back the whole pages of a mapped old table that lie between mig_rel
 * and the cursor. Only the stretch from mig_base to the end of the table is
 * given back (mig_base, the first empty slot, is near 0); the rest goes
 * with the table. The slots are all NULL already, so whether the kernel
 * zero-fills or keeps the pages, reading them still gives NULL.
 */
static void
old_release(struct mem *m)
{
	uintptr_t mask = (uintptr_t)m->pagesz - 1, from, to;
	size_t end = m->mig_base + m->mig_done;

	if (m->oldcap * sizeof(*m->old) < MAP_BYTES)
		return;
	if (end > m->oldcap)
		end = m->oldcap;
	from = ((uintptr_t)(m->old + m->mig_rel) + mask) & ~mask;
	to = (uintptr_t)(m->old + end) & ~mask;
	if (to <= from || to - from < RELEASE_BYTES)
		return;
	(void)madvise((void *)from, to - from, MADV_DONTNEED);
	m->mig_rel = (size_t)((struct rec **)to - m->old);
}

/*
 * Migrate old slots to the current table, in order from the cursor: at
 * least `want` (or all that remain), then on to the end of the cluster, but
 * no more than `max`. Returns how many slots were visited.
 */
static size_t
tab_migrate(struct mem *m, size_t want, size_t max)
{
	size_t n = 0, i, j, mask, nmask = m->cap - 1, left;
	struct rec *r;

	if (m->old == NULL)
		return 0;
	mask = m->oldcap - 1;
	while (n < max && m->mig_done < m->oldcap) {
		if (m->oldcount == 0) {
			left = m->oldcap - m->mig_done;
			m->mig_done += left < EMPTY_LEAP ? left : EMPTY_LEAP;
			break;
		}
		i = (m->mig_base + m->mig_done) & mask;
		if ((r = m->old[i]) == NULL && n >= want)
			break;
		/* A prefetch does not fault, even on NULL; and the slot read
		 * is in the table (migrated slots read as NULL). */
		PREFETCH(m->old[(i + MIGRATE_AHEAD) & mask]);
		if (r != NULL) {
			m->old[i] = NULL;
			m->oldcount--;
			for (j = (size_t)r->hash & nmask; m->slots[j] != NULL;
			    j = (j + 1) & nmask)
				;
			m->slots[j] = r;
			m->count++;
		}
		n++;
		m->mig_done++;
	}
	m->migrated += n;
	if (m->mig_done == m->oldcap)
		mig_end(m);
	else
		old_release(m);
	return n;
}

/* Start growing: the current table becomes the old one. */
static int
tab_grow(struct mem *m)
{
	size_t ncap = m->cap * 2, base;
	struct rec **ns;

	if (ncap < m->cap || (ns = tab_alloc(ncap)) == NULL)
		return -1;
	/* Cannot happen (see the top of the file); one growth at a time. */
	while (m->old != NULL)
		tab_migrate(m, SIZE_MAX, SIZE_MAX);
	/* The table is at most 3/4 full: there is an empty slot. */
	for (base = 0; m->slots[base] != NULL; base++)
		;
	m->old = m->slots;
	m->oldcap = m->cap;
	m->oldcount = m->count;
	m->mig_base = m->mig_rel = base;
	m->mig_done = 0;
	m->slots = ns;
	m->cap = ncap;
	m->count = 0;
	return 0;
}

/* Backward-shift deletion: no deleted markers, so probe chains never rot. */
static void
tab_remove(struct mem *m, struct rec *r)
{
	size_t mask = m->cap - 1, i = (size_t)r->hash & mask, j, home;

	while (m->slots[i] != r)
		i = (i + 1) & mask;
	for (j = i;;) {
		j = (j + 1) & mask;
		if (m->slots[j] == NULL)
			break;
		home = (size_t)m->slots[j]->hash & mask;
		/* slots[j] stays when its home lies cyclically in (i, j]. */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		m->slots[i] = m->slots[j];
		i = j;
	}
	m->slots[i] = NULL;
	m->count--;
}

/*
 * The same in the old table, if r is there (1) or not (0). Positions are
 * compared in migration order, which no cluster wraps: the hole i is at or
 * after the cursor, so a record whose home slot was migrated already (and
 * which old_start() looks for from the cursor) moves into it like any other
 * record whose home comes before the hole.
 */
static int
old_remove(struct mem *m, struct rec *r)
{
	size_t mask = m->oldcap - 1, i = old_start(m, r->hash), j, home;
	struct rec *q;

	for (; (q = m->old[i]) != r; i = (i + 1) & mask)
		if (q == NULL)
			return 0;
	for (j = i;;) {
		j = (j + 1) & mask;
		if ((q = m->old[j]) == NULL)
			break;
		home = old_pos(m, (size_t)q->hash & mask);
		/* old[j] stays when its home lies in (i, j]; it cannot lie
		 * after j. */
		if (home > old_pos(m, i))
			continue;
		m->old[i] = q;
		i = j;
	}
	m->old[i] = NULL;
	m->oldcount--;
	return 1;
}

static void
tab_unlink(struct mem *m, struct rec *r)
{
	if (m->old == NULL || !old_remove(m, r))
		tab_remove(m, r);
}

/* --- Expiry heap ---------------------------------------------------------- */

static void
heap_set(struct mem *m, size_t i, struct rec *r)
{
	m->heap[i] = r;
	r->heapidx = i;
}

static void
heap_up(struct mem *m, size_t i)
{
	struct rec *r = m->heap[i];
	size_t p;

	while (i > 0) {
		p = (i - 1) / 2;
		if (m->heap[p]->expires <= r->expires)
			break;
		heap_set(m, i, m->heap[p]);
		i = p;
	}
	heap_set(m, i, r);
}

static void
heap_down(struct mem *m, size_t i)
{
	struct rec *r = m->heap[i];
	size_t c;

	for (;;) {
		c = 2 * i + 1;
		if (c >= m->heapn)
			break;
		if (c + 1 < m->heapn &&
		    m->heap[c + 1]->expires < m->heap[c]->expires)
			c++;
		if (r->expires <= m->heap[c]->expires)
			break;
		heap_set(m, i, m->heap[c]);
		i = c;
	}
	heap_set(m, i, r);
}

/* After r->expires changed. */
static void
heap_fix(struct mem *m, struct rec *r)
{
	heap_up(m, r->heapidx);
	heap_down(m, r->heapidx);
}

/* Capacity must have been reserved (heap_reserve). */
static void
heap_push(struct mem *m, struct rec *r)
{
	heap_set(m, m->heapn++, r);
	heap_up(m, r->heapidx);
}

static void
heap_remove(struct mem *m, struct rec *r)
{
	size_t i = r->heapidx;
	struct rec *last = m->heap[--m->heapn];

	if (i < m->heapn) {
		heap_set(m, i, last);
		heap_fix(m, last);
	}
}

static int
heap_reserve(struct mem *m, size_t n)
{
	struct rec **nh;
	size_t ncap;

	if (n <= m->heapcap)
		return 0;
	ncap = m->heapcap * 2;
	if (ncap > SIZE_MAX / sizeof(*nh) || (nh = big_grow(m->heap,
	    m->heapcap * sizeof(*nh), ncap * sizeof(*nh))) == NULL)
		return -1;
	m->heap = nh;
	m->heapcap = ncap;
	return 0;
}

/*
 * Make room for one more record so that inserting it cannot fail half-way;
 * *slotp: the empty slot for key (growing moves records, so it is found
 * after).
 */
static int
reserve_new(struct mem *m, const uint8_t *key, size_t keylen, uint64_t hash,
    size_t *slotp)
{
	if (heap_reserve(m, m->heapn + 1) == -1)
		return -1;
	if ((m->count + m->oldcount + 1) * 4 > m->cap * 3 &&
	    tab_grow(m) == -1)
		return -1;
	tab_find(m, key, keylen, hash, slotp);
	return 0;
}

/* --- Removal ---------------------------------------------------------- */

static size_t
mem_sweep_budget(struct mem *m, uint64_t now, size_t budget, int *more)
{
	struct rec *r;
	size_t n = 0;

	while (n < budget && m->heapn > 0 && m->heap[0]->expires <= now) {
		r = m->heap[0];
		/* Unlink first: the hook may write, even to this key. */
		tab_unlink(m, r);
		heap_remove(m, r);
		m->used_bytes -= rec_cost(r);
		if (r->kind == BE_ENTRY) {
			lru_unlink(m, r);
			m->entries--;
			m->payload_bytes -= r->u.blob->len;
			backend_report(&m->be, BE_EV_EXPIRE, r->key, r->keylen,
			    r->level, r->gen, r->u.blob->len);
			blob_unref(r->u.blob);
		} else {
			m->tombstones--;	/* silently (backend.h) */
			pool_free(r->u.digest, BE_DIGEST_LEN);
		}
		rec_free(r);
		n++;
	}
	if (more != NULL)
		*more = m->heapn > 0 && m->heap[0]->expires <= now;
	return n;
}

/* --- backend_ops ---------------------------------------------------------- */

static struct backend *
mem_open(const struct config *cfg, struct event_base *base, char *err,
    size_t errlen)
{
	struct mem *m;
	long pagesz;

	(void)base;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		goto oom;
	m->be.ops = &backend_memory;
	m->cap = TABLE_MIN;
	m->heapcap = HEAP_MIN;
	m->steps[0] = MIGRATE_STEP;
	m->steps[1] = MIGRATE_MAX;
	m->steps[2] = SWEEP_MIGRATE;
	m->steps[3] = SWEEP_MIGRATE_MAX;
	pagesz = sysconf(_SC_PAGESIZE);
	m->pagesz = pagesz > 0 ? (size_t)pagesz : 4096;
	m->slots = tab_alloc(m->cap);
	m->heap = big_alloc(m->heapcap * sizeof(*m->heap));
	if (m->slots == NULL || m->heap == NULL)
		goto oom;
	m->max_memory = cfg != NULL ? cfg->max_memory : 0;
	m->lru = cfg != NULL && cfg->mode == MODE_NODE;
	/* Every start is a store without the records of the last one. */
	m->be.incarnation = backend_random_id();
	/* The hash key must be secret: with a guessable one, chosen session
	 * ids could all land in one probe chain. */
	if (siphash_key(m->seed) != 0) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "memory backend: getrandom: %s",
			    strerror(errno));
		goto fail;
	}
	return &m->be;
oom:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "memory backend: out of memory");
fail:
	if (m != NULL) {
		tab_free(m->slots, m->cap);
		big_free(m->heap, m->heapcap * sizeof(*m->heap));
		free(m);
	}
	return NULL;
}

/*
 * Frees every record. A blob still leased when close() runs is not freed
 * here but by its last lease_release() (the contract forbids that
 * situation anyway; this backend merely survives it).
 */
static void
mem_close(struct backend *be)
{
	struct mem *m = (struct mem *)be;
	struct rec *r;
	size_t i;

	if (m == NULL)
		return;
	/* Every record is in exactly one of the tables. */
	for (i = 0; i < m->cap + m->oldcap; i++) {
		r = i < m->cap ? m->slots[i] : m->old[i - m->cap];
		if (r == NULL)
			continue;
		if (r->kind == BE_ENTRY)
			blob_unref(r->u.blob);
		else
			pool_free(r->u.digest, BE_DIGEST_LEN);
		rec_free(r);
	}
	tab_free(m->slots, m->cap);
	tab_free(m->old, m->oldcap);
	big_free(m->heap, m->heapcap * sizeof(*m->heap));
	free(m);
}

static int
mem_lookup(struct backend *be, const uint8_t *key, size_t keylen,
    uint64_t now, struct be_record *rec, struct lease *lease)
{
	struct mem *m = (struct mem *)be;
	struct rec *r = NULL;

	memset(rec, 0, sizeof(*rec));
	if (lease != NULL)
		memset(lease, 0, sizeof(*lease));
	if (m->old != NULL)
		tab_migrate(m, m->steps[0], m->steps[1]);
	if (keylen >= 1 && keylen <= KEY_MAX)
		r = tab_find(m, key, keylen, siphash24(m->seed, key, keylen),
		    NULL);
	/* Lazy expiry: invisible at once, freed by the sweeper. */
	if (r == NULL || r->expires <= now)
		return 0;
	rec->kind = r->kind;
	rec->level = r->level;
	rec->gen = r->gen;
	rec->inc = r->inc;
	rec->expires = r->expires;
	if (r->kind == BE_TOMBSTONE) {
		memcpy(rec->digest, r->u.digest, BE_DIGEST_LEN);
		return 0;
	}
	rec->data = blob_data(r->u.blob);
	rec->len = r->u.blob->len;
	if (lease != NULL) {
		r->u.blob->refcnt++;
		lease->data = rec->data;
		lease->len = rec->len;
		lease->release = mem_lease_release;
		lease->ctx = r->u.blob;
		if (m->lru)		/* a read that serves the entry */
			lru_touch(m, r);
	}
	return 0;
}

/* Would replacing a record costing `old` by one costing `need` pass
 * max_memory? */
static int
over_budget(const struct mem *m, uint64_t old, uint64_t need)
{
	return m->max_memory != 0 && m->used_bytes - old + need > m->max_memory;
}

/*
 * LRU policy: evict live entries from the least recently used end, never
 * `keep`, until replacing a record costing `old` by one costing `need`
 * fits (keep NULL, old and need 0: until used_bytes is within max_memory).
 * Each is unlinked before it is reported: the hook may call back.
 */
static void
lru_evict(struct mem *m, const struct rec *keep, uint64_t old, uint64_t need)
{
	struct rec *v;
	uint32_t level;
	uint64_t gen;
	size_t len;

	while (over_budget(m, old, need)) {
		if ((v = m->lru_tail) == keep && v != NULL)
			v = v->lru_prev;
		if (v == NULL)
			break;
		level = v->level;
		gen = v->gen;
		len = v->u.blob->len;
		lru_unlink(m, v);
		tab_unlink(m, v);
		heap_remove(m, v);
		m->used_bytes -= rec_cost(v);
		m->payload_bytes -= len;
		m->entries--;
		backend_report(&m->be, BE_EV_EVICT, v->key, v->keylen, level,
		    gen, len);
		blob_unref(v->u.blob);
		rec_free(v);
	}
}

static int
apply_put(struct mem *m, struct be_write *w, struct rec *r, size_t slot,
    uint64_t hash, uint64_t now)
{
	struct be_change *c = &w->chg;
	uint64_t need, old;
	struct rec *nr = NULL;
	struct blob *b;
	uint32_t old_level = 0;
	uint64_t old_gen = 0;
	size_t old_len = 0;
	int expired_entry = 0, ev = BE_EV_SET;

	if (c->len > UINT64_MAX / 2) {
		snprintf(m->errmsg, sizeof(m->errmsg),
		    "store full: payload too large");
		return BE_ERR_FULL;
	}
	need = (uint64_t)w->keylen + BE_ENTRY_OVERHEAD + c->len;
	old = r != NULL ? rec_cost(r) : 0;
	if (over_budget(m, old, need) && m->heapn > 0 &&
	    m->heap[0]->expires <= now) {
		/* decide() saw expired records as absent: freeing them now
		 * changes nothing it relied on. r itself may go. */
		mem_sweep_budget(m, now, FULL_SWEEP, NULL);
		r = tab_find(m, w->key, w->keylen, hash, &slot);
		/* The hook may have written meanwhile: reserve again. */
		if (r == NULL &&
		    reserve_new(m, w->key, w->keylen, hash, &slot) == -1)
			goto oom;
		old = r != NULL ? rec_cost(r) : 0;
	}
	/* LRU policy: make room, unless nothing could (larger than the
	 * whole budget): then nothing is evicted. */
	if (m->lru && over_budget(m, old, need) && need <= m->max_memory) {
		lru_evict(m, r, old, need);
		r = tab_find(m, w->key, w->keylen, hash, &slot);
		if (r == NULL &&
		    reserve_new(m, w->key, w->keylen, hash, &slot) == -1)
			goto oom;
		old = r != NULL ? rec_cost(r) : 0;
	}
	if (over_budget(m, old, need)) {
		snprintf(m->errmsg, sizeof(m->errmsg),
		    "store full: max_memory %" PRIu64 " bytes reached",
		    m->max_memory);
		return BE_ERR_FULL;
	}
	/* The record first: once blob_new() adopted the buffer nothing may
	 * fail, so that adopt is NULL exactly when the write succeeded. */
	if (r == NULL && (nr = rec_new(w->key, w->keylen, hash)) == NULL)
		goto oom;
	if ((b = blob_new(c)) == NULL) {
		if (nr != NULL)
			rec_free(nr);
		goto oom;
	}
	if (r == NULL) {
		/* Table and heap room were reserved before decide(). */
		r = nr;
		m->slots[slot] = r;
		m->count++;
		r->expires = c->expires;
		heap_push(m, r);
		m->entries++;
		lru_push(m, r);
	} else {
		if (r->kind == BE_ENTRY)
			lru_touch(m, r);
		else
			lru_push(m, r);	/* was a tombstone */
		if (r->kind == BE_ENTRY) {
			old_level = r->level;
			old_gen = r->gen;
			old_len = r->u.blob->len;
			if (r->expires > now)
				ev = BE_EV_UPDATE;
			else
				expired_entry = 1;
			m->payload_bytes -= old_len;
			blob_unref(r->u.blob);
		} else {
			m->tombstones--;
			m->entries++;
			pool_free(r->u.digest, BE_DIGEST_LEN);
		}
		r->expires = c->expires;
		heap_fix(m, r);
	}
	r->kind = BE_ENTRY;
	r->level = c->level;
	r->gen = c->gen;
	r->inc = c->inc;
	r->u.blob = b;
	m->used_bytes = m->used_bytes - old + need;
	m->payload_bytes += c->len;
	/* Before the reports: the hook may replace this very blob. */
	if (w->want_lease) {
		b->refcnt++;
		w->lease.data = blob_data(b);
		w->lease.len = b->len;
		w->lease.release = mem_lease_release;
		w->lease.ctx = b;
	}
	/* Reports last: the hook may call back into the backend. */
	if (expired_entry)
		backend_report(&m->be, BE_EV_EXPIRE, w->key, w->keylen,
		    old_level, old_gen, old_len);
	backend_report(&m->be, ev, w->key, w->keylen, c->level, c->gen,
	    c->len);
	return BE_OK;
oom:
	snprintf(m->errmsg, sizeof(m->errmsg), "store full: out of memory");
	return BE_ERR_FULL;
}

/* Deletes are never refused for max_memory: they are how room is made. */
static int
apply_tombstone(struct mem *m, struct be_write *w, struct rec *r,
    size_t slot, uint64_t hash, uint64_t now)
{
	struct be_change *c = &w->chg;
	uint64_t need = (uint64_t)w->keylen + BE_ENTRY_OVERHEAD;
	uint32_t old_level = 0;
	uint64_t old_gen = 0;
	size_t old_len = 0;
	int ev = -1;
	uint8_t *digest;

	/* Everything that can fail first. */
	if (r != NULL && r->kind == BE_TOMBSTONE)
		digest = r->u.digest;
	else if ((digest = pool_alloc(BE_DIGEST_LEN)) == NULL) {
		snprintf(m->errmsg, sizeof(m->errmsg),
		    "store full: out of memory");
		return BE_ERR_FULL;
	}
	if (r == NULL) {
		if ((r = rec_new(w->key, w->keylen, hash)) == NULL) {
			pool_free(digest, BE_DIGEST_LEN);
			snprintf(m->errmsg, sizeof(m->errmsg),
			    "store full: out of memory");
			return BE_ERR_FULL;
		}
		m->slots[slot] = r;
		m->count++;
		r->expires = c->expires;
		heap_push(m, r);
		m->used_bytes += need;
		m->tombstones++;
	} else {
		m->used_bytes = m->used_bytes - rec_cost(r) + need;
		if (r->kind == BE_ENTRY) {
			lru_unlink(m, r);
			old_level = r->level;
			old_gen = r->gen;
			old_len = r->u.blob->len;
			ev = r->expires > now ? BE_EV_DELETE : BE_EV_EXPIRE;
			m->payload_bytes -= old_len;
			blob_unref(r->u.blob);
			m->entries--;
			m->tombstones++;
		}
		r->expires = c->expires;
		heap_fix(m, r);
	}
	r->kind = BE_TOMBSTONE;
	r->level = c->level;
	r->gen = 0;
	r->inc = 0;
	r->u.digest = digest;
	memcpy(r->u.digest, c->digest, BE_DIGEST_LEN);
	if (ev != -1)
		backend_report(&m->be, (enum be_event)ev, w->key, w->keylen,
		    old_level, old_gen, old_len);
	return BE_OK;
}

static int
mem_write(struct backend *be, struct be_write *w)
{
	struct mem *m = (struct mem *)be;
	struct be_record cur;
	struct rec *r;
	uint64_t hash, now;
	size_t slot;
	int err = BE_OK;

	memset(&w->lease, 0, sizeof(w->lease));
	if (w->keylen < 1 || w->keylen > KEY_MAX)
		return -1;
	/* Before tab_find(): migrating moves records. */
	if (m->old != NULL)
		tab_migrate(m, m->steps[0], m->steps[1]);
	hash = siphash24(m->seed, w->key, w->keylen);
	r = tab_find(m, w->key, w->keylen, hash, &slot);
	/* Room for a new record is reserved before decide(): out of memory
	 * is then "not queued" (-1), and applying cannot fail half-way. */
	if (r == NULL && reserve_new(m, w->key, w->keylen, hash, &slot) == -1)
		return -1;

	now = clock_now_ns();
	memset(&cur, 0, sizeof(cur));
	if (r != NULL && r->expires > now) {
		cur.kind = r->kind;
		cur.level = r->level;
		cur.gen = r->gen;
		cur.inc = r->inc;
		cur.expires = r->expires;
		if (r->kind == BE_ENTRY) {
			cur.data = blob_data(r->u.blob);
			cur.len = r->u.blob->len;
		} else
			memcpy(cur.digest, r->u.digest, BE_DIGEST_LEN);
	}
	w->decide(w->arg, &cur, now, &w->chg);

	switch (w->chg.action) {
	case BE_KEEP:
		break;
	case BE_PUT:
		err = apply_put(m, w, r, slot, hash, now);
		break;
	case BE_TOUCH:
		/* Not a change: no report. */
		if (cur.kind != BE_ENTRY) {
			snprintf(m->errmsg, sizeof(m->errmsg),
			    "touch: no live entry");
			err = BE_ERR_IO;
			break;
		}
		r->expires = w->chg.expires;
		heap_fix(m, r);
		break;
	case BE_PUT_TOMBSTONE:
		err = apply_tombstone(m, w, r, slot, hash, now);
		break;
	default:
		snprintf(m->errmsg, sizeof(m->errmsg),
		    "unknown action %d", (int)w->chg.action);
		err = BE_ERR_IO;
		break;
	}
	w->done(w->arg, err, err == BE_OK ? NULL : m->errmsg);
	return 0;
}

/* Also a chunk of growth, so that an idle daemon finishes it. */
static size_t
mem_sweep(struct backend *be, uint64_t now, size_t budget, int *more)
{
	struct mem *m = (struct mem *)be;

	if (m->old != NULL)
		tab_migrate(m, m->steps[2], m->steps[3]);
	return mem_sweep_budget(m, now, budget, more);
}

static void
mem_stats(struct backend *be, struct be_stats *st)
{
	struct mem *m = (struct mem *)be;

	st->entries = m->entries;
	st->tombstones = m->tombstones;
	st->payload_bytes = m->payload_bytes;
	st->used_bytes = m->used_bytes;
}

/* A lower max_memory evicts nothing on a central cache: writes are refused
 * until deletes and expiry bring used_bytes under it. With the LRU policy
 * it evicts at once (expired records first). */
static void
mem_reconfigure(struct backend *be, const struct config *cfg)
{
	struct mem *m = (struct mem *)be;
	uint64_t now;

	m->max_memory = cfg->max_memory;
	if (!m->lru || !over_budget(m, 0, 0))
		return;
	now = clock_now_ns();
	if (m->heapn > 0 && m->heap[0]->expires <= now)
		mem_sweep_budget(m, now, FULL_SWEEP, NULL);
	lru_evict(m, NULL, 0, 0);
}

/*
 * Test-only, for tests/unit/check_backend.c, which declares them; they are
 * not part of backend.h and the daemon never calls them.
 *
 * backend_memory_test_resize(): old-table slots still to migrate (0: not
 * growing); *migrated: old slots migrated since open.
 */
size_t
backend_memory_test_resize(struct backend *be, uint64_t *migrated)
{
	struct mem *m = (struct mem *)be;

	if (migrated != NULL)
		*migrated = m->migrated;
	return m->old != NULL ? m->oldcap - m->mig_done : 0;
}

/*
 * backend_memory_test_steps(): get (when `get` is not NULL), then set (when
 * `set` is not NULL) how many old slots lookup()/write() and sweep()
 * migrate: { MIGRATE_STEP, MIGRATE_MAX, SWEEP_MIGRATE, SWEEP_MIGRATE_MAX }.
 * All zero freezes a migration (growth then finishes the previous one in
 * one go), so that a test can look at every record half-way through.
 */
void
backend_memory_test_steps(struct backend *be, size_t get[4],
    const size_t set[4])
{
	struct mem *m = (struct mem *)be;

	if (get != NULL)
		memcpy(get, m->steps, sizeof(m->steps));
	if (set != NULL)
		memcpy(m->steps, set, sizeof(m->steps));
}

/* --- Scans ------------------------------------------------------------------- */

/* Records stepped over (expired, not yet swept) per call besides the
 * `budget` visited. */
#define SCAN_EXTRA	4096

static struct be_scan *
mem_scan_open(struct backend *be)
{
	struct mem *m = (struct mem *)be;
	struct be_scan *sc;

	if ((sc = calloc(1, sizeof(*sc))) == NULL)
		return NULL;
	sc->at = m->lru_tail;
	sc->until = m->stamp;
	sc->next = m->scans;
	if (m->scans != NULL)
		m->scans->prev = sc;
	m->scans = sc;
	return sc;
}

static int
mem_scan_next(struct backend *be, struct be_scan *sc, uint64_t now,
    size_t budget, be_scan_fn *fn, void *arg)
{
	struct rec *r;
	size_t n = 0, steps = 0;

	(void)be;
	while ((r = sc->at) != NULL && r->stamp <= sc->until && n < budget &&
	    steps < budget + SCAN_EXTRA) {
		sc->at = r->lru_prev;
		steps++;
		if (r->expires <= now)
			continue;	/* the sweeper's */
		fn(arg, r->key, r->keylen, r->level, r->gen, r->inc, r->expires,
		    r->u.blob->len);
		n++;
	}
	return sc->at != NULL && sc->at->stamp <= sc->until;
}

static void
mem_scan_close(struct backend *be, struct be_scan *sc)
{
	struct mem *m = (struct mem *)be;

	if (sc == NULL)
		return;
	if (sc->prev != NULL)
		sc->prev->next = sc->next;
	else
		m->scans = sc->next;
	if (sc->next != NULL)
		sc->next->prev = sc->prev;
	free(sc);
}

const struct backend_ops backend_memory = {
	.name = "memory",
	.open = mem_open,
	.close = mem_close,
	.lookup = mem_lookup,
	.write = mem_write,
	.sweep = mem_sweep,
	.stats = mem_stats,
	.reconfigure = mem_reconfigure,
	.scan_open = mem_scan_open,
	.scan_next = mem_scan_next,
	.scan_close = mem_scan_close,
};
