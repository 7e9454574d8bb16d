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
 * The hash table grows (doubling, all at once) but never shrinks: after a
 * peak it keeps 8 bytes per slot of its largest size, which is small next to
 * the records it once held, and shrinking would put rehash stalls into the
 * sweeper's slices.
 */
#define _POSIX_C_SOURCE 200809L

#include <sys/random.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "config.h"

extern const struct backend_ops backend_memory;

#define KEY_MAX		256
#define TABLE_MIN	64		/* slots, a power of two */
#define HEAP_MIN	64
/* Expired records freed inline by a PUT that would otherwise be refused as
 * full, so that unswept garbage does not make the store look full. Bounded
 * so that one write never does the sweeper's whole job. */
#define FULL_SWEEP	1024

/* A payload. The record holds one reference, each lease one more. */
struct blob {
	size_t		 refcnt;
	size_t		 len;
	uint8_t		*data;		/* an adopted buffer, or bytes[] */
	uint8_t		 bytes[];
};

struct rec {
	uint64_t	 hash;		/* cached: probing and growing never
					   rehash the key */
	uint64_t	 expires;	/* monotonic ns */
	size_t		 heapidx;
	uint32_t	 level;
	uint16_t	 keylen;
	uint8_t		 kind;		/* BE_ENTRY or BE_TOMBSTONE */
	union {
		struct blob	*blob;			/* BE_ENTRY */
		uint8_t		 digest[BE_DIGEST_LEN];	/* BE_TOMBSTONE */
	} u;
	uint8_t		 key[];
};

struct mem {
	struct backend	  be;		/* first: backend.h's shared part */
	uint8_t		  seed[16];	/* SipHash key */
	struct rec	**slots;
	size_t		  cap;		/* power of two */
	size_t		  count;
	struct rec	**heap;
	size_t		  heapn;
	size_t		  heapcap;
	uint64_t	  max_memory;	/* 0: no limit */
	uint64_t	  used_bytes;
	uint64_t	  payload_bytes;
	uint64_t	  entries;
	uint64_t	  tombstones;
	char		  errmsg[96];	/* done()'s message, valid during it */
};

/* --- SipHash-2-4 (Aumasson and Bernstein) --------------------------------- */

#define ROTL(x, b)	(uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do {							\
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);	\
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;				\
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;				\
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);	\
} while (0)

static uint64_t
le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t
siphash(const uint8_t key[16], const uint8_t *in, size_t len)
{
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
	uint64_t v3 = 0x7465646279746573ULL ^ k1;
	uint64_t b = (uint64_t)len << 56, m;
	size_t i, tail = len & 7;

	for (i = 0; i + 8 <= len; i += 8) {
		m = le64(in + i);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (; tail > 0; tail--)
		b |= (uint64_t)in[i + tail - 1] << (8 * (tail - 1));
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* --- Blobs ---------------------------------------------------------------- */

/* The payload of a PUT: adopt the writer's malloc buffer when offered (no
 * copy), else copy data/len (the one copy the memory backend makes). */
static struct blob *
blob_new(struct be_change *c)
{
	struct blob *b;

	if (c->adopt != NULL) {
		if ((b = malloc(sizeof(*b))) == NULL)
			return NULL;
		b->data = c->adopt;
		c->adopt = NULL;
	} else {
		if (c->len > SIZE_MAX - sizeof(*b) ||
		    (b = malloc(sizeof(*b) + c->len)) == NULL)
			return NULL;
		b->data = b->bytes;
		if (c->len > 0)
			memcpy(b->bytes, c->data, c->len);
	}
	b->refcnt = 1;
	b->len = c->len;
	return b;
}

static void
blob_unref(struct blob *b)
{
	if (--b->refcnt > 0)
		return;
	if (b->data != b->bytes)
		free(b->data);
	free(b);
}

/* be_lease.release: loop thread only (backend.h), hence no atomics. */
static void
lease_release(void *ctx)
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

static struct rec *
rec_new(const uint8_t *key, size_t keylen, uint64_t hash)
{
	struct rec *r;

	if ((r = calloc(1, sizeof(*r) + keylen)) == NULL)
		return NULL;
	r->hash = hash;
	r->keylen = (uint16_t)keylen;
	memcpy(r->key, key, keylen);
	return r;
}

/* --- Hash table ----------------------------------------------------------- */

/* The record for key, or NULL; *slotp: where it is, or the empty slot where
 * it would go (valid until the table changes). */
static struct rec *
tab_find(struct mem *m, const uint8_t *key, size_t keylen, uint64_t hash,
    size_t *slotp)
{
	size_t mask = m->cap - 1, i = (size_t)hash & mask;
	struct rec *r;

	for (; (r = m->slots[i]) != NULL; i = (i + 1) & mask)
		if (r->hash == hash && r->keylen == keylen &&
		    memcmp(r->key, key, keylen) == 0)
			break;
	if (slotp != NULL)
		*slotp = i;
	return r;
}

static int
tab_grow(struct mem *m)
{
	size_t ncap = m->cap * 2, mask = ncap - 1, i, j;
	struct rec **ns, *r;

	if (ncap > SIZE_MAX / sizeof(*ns) ||
	    (ns = calloc(ncap, sizeof(*ns))) == NULL)
		return -1;
	for (i = 0; i < m->cap; i++) {
		if ((r = m->slots[i]) == NULL)
			continue;
		for (j = (size_t)r->hash & mask; ns[j] != NULL;
		    j = (j + 1) & mask)
			;
		ns[j] = r;
	}
	free(m->slots);
	m->slots = ns;
	m->cap = ncap;
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
	if (ncap > SIZE_MAX / sizeof(*nh) ||
	    (nh = realloc(m->heap, ncap * sizeof(*nh))) == NULL)
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
	if ((m->count + 1) * 4 > m->cap * 3 && tab_grow(m) == -1)
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
		tab_remove(m, r);
		heap_remove(m, r);
		m->used_bytes -= rec_cost(r);
		if (r->kind == BE_ENTRY) {
			m->entries--;
			m->payload_bytes -= r->u.blob->len;
			backend_report(&m->be, BE_EV_EXPIRE, r->key, r->keylen,
			    r->level, r->u.blob->len);
			blob_unref(r->u.blob);
		} else
			m->tombstones--;	/* silently (backend.h) */
		free(r);
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
	ssize_t n;
	size_t got = 0;

	(void)base;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		goto oom;
	m->be.ops = &backend_memory;
	m->cap = TABLE_MIN;
	m->heapcap = HEAP_MIN;
	m->slots = calloc(m->cap, sizeof(*m->slots));
	m->heap = calloc(m->heapcap, sizeof(*m->heap));
	if (m->slots == NULL || m->heap == NULL)
		goto oom;
	m->max_memory = cfg != NULL ? cfg->max_memory : 0;
	/* The hash key must be secret: with a guessable one, chosen session
	 * ids could all land in one probe chain. */
	while (got < sizeof(m->seed)) {
		n = getrandom(m->seed + got, sizeof(m->seed) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (err != NULL && errlen > 0)
				snprintf(err, errlen, "memory backend: "
				    "getrandom: %s", strerror(errno));
			goto fail;
		}
		got += (size_t)n;
	}
	return &m->be;
oom:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "memory backend: out of memory");
fail:
	if (m != NULL) {
		free(m->slots);
		free(m->heap);
		free(m);
	}
	return NULL;
}

/*
 * Frees every record. A blob still leased when close() runs is not freed
 * here but by its last be_lease_release() (the contract forbids that
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
	for (i = 0; i < m->cap; i++) {
		if ((r = m->slots[i]) == NULL)
			continue;
		if (r->kind == BE_ENTRY)
			blob_unref(r->u.blob);
		free(r);
	}
	free(m->slots);
	free(m->heap);
	free(m);
}

static int
mem_lookup(struct backend *be, const uint8_t *key, size_t keylen,
    uint64_t now, struct be_record *rec, struct be_lease *lease)
{
	struct mem *m = (struct mem *)be;
	struct rec *r = NULL;

	memset(rec, 0, sizeof(*rec));
	if (lease != NULL)
		memset(lease, 0, sizeof(*lease));
	if (keylen >= 1 && keylen <= KEY_MAX)
		r = tab_find(m, key, keylen, siphash(m->seed, key, keylen),
		    NULL);
	/* Lazy expiry: invisible at once, freed by the sweeper. */
	if (r == NULL || r->expires <= now)
		return 0;
	rec->kind = r->kind;
	rec->level = r->level;
	rec->expires = r->expires;
	if (r->kind == BE_TOMBSTONE) {
		memcpy(rec->digest, r->u.digest, BE_DIGEST_LEN);
		return 0;
	}
	rec->data = r->u.blob->data;
	rec->len = r->u.blob->len;
	if (lease != NULL) {
		r->u.blob->refcnt++;
		lease->data = rec->data;
		lease->len = rec->len;
		lease->release = lease_release;
		lease->ctx = r->u.blob;
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

static int
apply_put(struct mem *m, struct be_write *w, struct rec *r, size_t slot,
    uint64_t hash, uint64_t now)
{
	struct be_change *c = &w->chg;
	uint64_t need, old;
	struct rec *nr = NULL;
	struct blob *b;
	uint32_t old_level = 0;
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
		free(nr);
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
	} else {
		if (r->kind == BE_ENTRY) {
			old_level = r->level;
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
		}
		r->expires = c->expires;
		heap_fix(m, r);
	}
	r->kind = BE_ENTRY;
	r->level = c->level;
	r->u.blob = b;
	m->used_bytes = m->used_bytes - old + need;
	m->payload_bytes += c->len;
	/* Reports last: the hook may call back into the backend. */
	if (expired_entry)
		backend_report(&m->be, BE_EV_EXPIRE, w->key, w->keylen,
		    old_level, old_len);
	backend_report(&m->be, ev, w->key, w->keylen, c->level, c->len);
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
	size_t old_len = 0;
	int ev = -1;

	if (r == NULL) {
		if ((r = rec_new(w->key, w->keylen, hash)) == NULL) {
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
			old_level = r->level;
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
	memcpy(r->u.digest, c->digest, BE_DIGEST_LEN);
	if (ev != -1)
		backend_report(&m->be, (enum be_event)ev, w->key, w->keylen,
		    old_level, old_len);
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

	if (w->keylen < 1 || w->keylen > KEY_MAX)
		return -1;
	hash = siphash(m->seed, w->key, w->keylen);
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
		cur.expires = r->expires;
		if (r->kind == BE_ENTRY) {
			cur.data = r->u.blob->data;
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

static size_t
mem_sweep(struct backend *be, uint64_t now, size_t budget, int *more)
{
	return mem_sweep_budget((struct mem *)be, now, budget, more);
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

/* A lower max_memory evicts nothing: writes are refused until deletes and
 * expiry bring used_bytes under it. */
static void
mem_reconfigure(struct backend *be, const struct config *cfg)
{
	((struct mem *)be)->max_memory = cfg->max_memory;
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
};
