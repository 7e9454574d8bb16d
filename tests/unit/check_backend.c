/*
 * check_backend.c: the backend conformance suite (spec §6). Every case runs
 * against every backend in backend_all[] (one TCase per backend, named after
 * it), so a new backend gets the whole suite by being listed there. Writes
 * are driven as the contract allows them to complete: done() may come later
 * from the event loop, so the suite pumps the loop until it does.
 *
 * Behaviour that is specific to one backend (memory's max_memory budget and
 * zero-copy adoption) lives in its own TCase at the end, with the registry
 * and the sweeper timer in a real event_base.
 */
#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/event.h>

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "sweeper.h"

#define SEC		NS_PER_SEC
#define MIB		(1024 * 1024)
#define LOOP_DEADLINE	(10 * SEC)

/* --- Hook recorder -------------------------------------------------------- */

struct hev {
	enum be_event	 ev;
	uint8_t		 key[256];
	size_t		 keylen;
	uint32_t	 level;
	size_t		 len;
};

static struct hev	*hevs;
static size_t		 nhev, hevcap;
/*
 * Sweeper test: a zero timer armed from the hook at the first expiry that
 * re-arms itself until `spin_until` expiries, so that it runs once per loop
 * iteration meanwhile: the count of iterations, independent of timing.
 */
static struct event	*spin;
static size_t		 spin_until, spin_first = (size_t)-1, spins;
static size_t		 nexpire;

static void
hook(void *arg, enum be_event ev, const uint8_t *key, size_t keylen,
    uint32_t level, size_t len)
{
	static const struct timeval zero = { 0, 0 };
	struct hev *h;

	(void)arg;
	if (nhev == hevcap) {
		hevcap = hevcap ? hevcap * 2 : 64;
		hevs = realloc(hevs, hevcap * sizeof(*hevs));
		ck_assert_ptr_nonnull(hevs);
	}
	h = &hevs[nhev++];
	ck_assert_uint_le(keylen, sizeof(h->key));
	h->ev = ev;
	memcpy(h->key, key, keylen);
	h->keylen = keylen;
	h->level = level;
	h->len = len;
	if (ev == BE_EV_EXPIRE)
		nexpire++;
	if (spin != NULL && ev == BE_EV_EXPIRE && spins == 0 &&
	    !evtimer_pending(spin, NULL))
		evtimer_add(spin, &zero);
}

static size_t
hook_count(enum be_event ev)
{
	size_t i, n = 0;

	for (i = 0; i < nhev; i++)
		if (hevs[i].ev == ev)
			n++;
	return n;
}

static size_t
hook_count_key(enum be_event ev, const void *key, size_t keylen)
{
	size_t i, n = 0;

	for (i = 0; i < nhev; i++)
		if (hevs[i].ev == ev && hevs[i].keylen == keylen &&
		    memcmp(hevs[i].key, key, keylen) == 0)
			n++;
	return n;
}

static void
check_hev(size_t i, enum be_event ev, const char *key, uint32_t level,
    size_t len)
{
	ck_assert_uint_gt(nhev, i);
	ck_assert_int_eq(hevs[i].ev, ev);
	ck_assert_uint_eq(hevs[i].keylen, strlen(key));
	ck_assert_mem_eq(hevs[i].key, key, strlen(key));
	ck_assert_uint_eq(hevs[i].level, level);
	ck_assert_uint_eq(hevs[i].len, len);
}

/* --- Fixture -------------------------------------------------------------- */

static struct {
	const struct backend_ops *ops;
	struct event_base	*base;
	struct backend		*be;
	struct config		 cfg;
	char			 dir[256];
	uint64_t		 t0;	/* monotonic ns at open */
} F;

/* Until config.c lands: a zeroed config with only what backends read. The
 * lmdb fields are set for the sake of a future lmdb backend. */
static void
fix_open(int i, uint64_t max_memory)
{
	char err[256] = "";

	memset(&F, 0, sizeof(F));
	nhev = 0;
	F.ops = backend_all[i];
	snprintf(F.dir, sizeof(F.dir), "%s/check_backend.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(F.dir));
	F.cfg.backend = (char *)F.ops->name;
	F.cfg.lmdb_path = F.dir;
	F.cfg.lmdb_map_size = 1024ULL * MIB;
	F.cfg.lmdb_max_readers = 126;
	F.cfg.lmdb_full_ratio = 90;
	F.cfg.max_memory = max_memory;
	F.cfg.sweep_interval = 100;	/* ms */
	F.base = event_base_new();
	ck_assert_ptr_nonnull(F.base);
	F.be = F.ops->open(&F.cfg, F.base, err, sizeof(err));
	ck_assert_msg(F.be != NULL, "%s: open: %s", F.ops->name, err);
	ck_assert_ptr_eq(F.be->ops, F.ops);
	backend_set_hook(F.be, hook, NULL);
	F.t0 = clock_now_ns();
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
fix_close(void)
{
	F.ops->close(F.be);
	event_base_free(F.base);
	nftw(F.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	memset(&F, 0, sizeof(F));
}

/* --- Writes --------------------------------------------------------------- */

/* One write: what decide() answers, and what the suite saw. */
struct wr {
	enum be_action	 action;
	uint32_t	 level;
	uint64_t	 expires;
	const void	*data;
	size_t		 len;
	int		 adopt;		/* offer a malloc copy to keep */
	uint8_t		 digest[BE_DIGEST_LEN];

	uint8_t		*adoptbuf;
	int		 adopted;	/* the backend kept adoptbuf */
	int		 ndecide, ndone, err;
	char		 msg[160];
	struct be_record cur;		/* as decide() saw it (data: NULL) */
	uint64_t	 now;
};

static void
w_decide(void *arg, const struct be_record *cur, uint64_t now,
    struct be_change *c)
{
	struct wr *r = arg;

	r->ndecide++;
	r->cur = *cur;
	r->cur.data = NULL;		/* valid only during the call */
	r->now = now;
	c->action = r->action;
	c->level = r->level;
	c->expires = r->expires;
	c->data = r->adoptbuf != NULL ? r->adoptbuf : r->data;
	c->len = r->len;
	c->adopt = r->adoptbuf;
	memcpy(c->digest, r->digest, BE_DIGEST_LEN);
}

static void
w_done(void *arg, int err, const char *msg)
{
	struct wr *r = arg;

	r->ndone++;
	r->err = err;
	if (msg != NULL)
		snprintf(r->msg, sizeof(r->msg), "%s", msg);
}

/* Write and wait for done(); decide() and done() exactly once each. */
static int
do_write(struct wr *r, const void *key, size_t keylen)
{
	struct be_write w;
	uint64_t deadline;
	int i;

	memset(&w, 0, sizeof(w));
	w.key = key;
	w.keylen = keylen;
	w.decide = w_decide;
	w.done = w_done;
	w.arg = r;
	if (r->adopt) {
		r->adoptbuf = malloc(r->len ? r->len : 1);
		ck_assert_ptr_nonnull(r->adoptbuf);
		if (r->len > 0)
			memcpy(r->adoptbuf, r->data, r->len);
	}
	ck_assert_int_eq(F.be->ops->write(F.be, &w), 0);
	deadline = clock_now_ns() + LOOP_DEADLINE;
	while (r->ndone == 0 && clock_now_ns() < deadline)
		event_base_loop(F.base, EVLOOP_ONCE);
	/* Nothing more may come from the loop for this write. */
	for (i = 0; i < 3; i++)
		event_base_loop(F.base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(r->ndecide, 1);
	ck_assert_int_eq(r->ndone, 1);
	/* The writer frees whatever adopt still points to after done(). */
	r->adopted = r->adoptbuf != NULL && w.chg.adopt == NULL;
	free(w.chg.adopt);
	r->adoptbuf = NULL;
	return r->err;
}

static int
put(const void *key, size_t keylen, uint32_t level, const void *data,
    size_t len, uint64_t expires)
{
	struct wr r = { .action = BE_PUT, .level = level, .expires = expires,
	    .data = data, .len = len };

	return do_write(&r, key, keylen);
}

static void
digest_of(uint8_t d[BE_DIGEST_LEN], int seed)
{
	int i;

	for (i = 0; i < BE_DIGEST_LEN; i++)
		d[i] = (uint8_t)(seed * 31 + i * 7);
}

static int
tomb(const void *key, size_t keylen, uint32_t level, int dseed,
    uint64_t expires)
{
	struct wr r = { .action = BE_PUT_TOMBSTONE, .level = level,
	    .expires = expires };

	digest_of(r.digest, dseed);
	return do_write(&r, key, keylen);
}

/* A write that answers BE_KEEP; returns what decide() saw. */
static struct be_record
peek(const void *key, size_t keylen)
{
	struct wr r = { .action = BE_KEEP };

	ck_assert_int_eq(do_write(&r, key, keylen), BE_OK);
	return r.cur;
}

static int
lk(const void *key, size_t keylen, uint64_t now, struct be_record *rec,
    struct be_lease *lease)
{
	return F.ops->lookup(F.be, key, keylen, now, rec, lease);
}

static struct be_record
get(const void *key, size_t keylen, uint64_t now)
{
	struct be_record rec;

	ck_assert_int_eq(lk(key, keylen, now, &rec, NULL), 0);
	return rec;
}

static struct be_stats
stats(void)
{
	struct be_stats st;

	memset(&st, 0xff, sizeof(st));
	F.be->ops->stats(F.be, &st);
	return st;
}

static void
fill(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

#define S(s)	(s), strlen(s)
#define LIVE	(F.t0 + 3600 * SEC)
#define FAR	(F.t0 + 7200 * SEC)

/* --- Conformance cases ---------------------------------------------------- */

START_TEST(test_roundtrip)
{
	struct be_record rec;
	struct be_lease lease;
	struct be_stats st;
	uint8_t *big;
	size_t biglen = 8 * MIB;
	struct wr w = { .action = BE_PUT, .level = 7, .expires = 0,
	    .data = "hello world", .len = 11 };

	fix_open(_i, 0);
	w.expires = LIVE;
	ck_assert_int_eq(do_write(&w, S("k1")), BE_OK);
	ck_assert_int_eq(w.cur.kind, BE_NONE);
	ck_assert_uint_ge(w.now, F.t0);
	ck_assert_uint_eq(nhev, 1);
	check_hev(0, BE_EV_SET, "k1", 7, 11);

	rec = get(S("k1"), clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 7);
	ck_assert_uint_eq(rec.expires, LIVE);
	ck_assert_uint_eq(rec.len, 11);
	ck_assert_mem_eq(rec.data, "hello world", 11);

	ck_assert_int_eq(lk(S("k1"), clock_now_ns(), &rec, &lease), 0);
	ck_assert(lease.release != NULL);
	ck_assert_uint_eq(lease.len, 11);
	ck_assert_mem_eq(lease.data, "hello world", 11);
	be_lease_release(&lease);
	ck_assert(lease.release == NULL);

	/* Absent: BE_NONE, and no lease to release. */
	ck_assert_int_eq(lk(S("k2"), clock_now_ns(), &rec, &lease), 0);
	ck_assert_int_eq(rec.kind, BE_NONE);
	ck_assert(lease.release == NULL);
	be_lease_release(&lease);

	/* decide() sees the stored record. */
	rec = peek(S("k1"));
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 7);
	ck_assert_uint_eq(rec.len, 11);
	ck_assert_uint_eq(rec.expires, LIVE);

	/* 8 MiB, once copied and once adopted. */
	big = malloc(biglen);
	ck_assert_ptr_nonnull(big);
	fill(big, biglen, 42);
	ck_assert_int_eq(put(S("big-copy"), 1, big, biglen, LIVE), BE_OK);
	w = (struct wr){ .action = BE_PUT, .level = 2, .expires = LIVE,
	    .data = big, .len = biglen, .adopt = 1 };
	ck_assert_int_eq(do_write(&w, S("big-adopt")), BE_OK);
	ck_assert_int_eq(lk(S("big-copy"), clock_now_ns(), &rec, &lease), 0);
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(lease.len, biglen);
	ck_assert(memcmp(lease.data, big, biglen) == 0);
	be_lease_release(&lease);
	rec = get(S("big-adopt"), clock_now_ns());
	ck_assert_uint_eq(rec.level, 2);
	ck_assert_uint_eq(rec.len, biglen);
	ck_assert(memcmp(rec.data, big, biglen) == 0);
	free(big);

	st = stats();
	ck_assert_uint_eq(st.entries, 3);
	ck_assert_uint_eq(st.tombstones, 0);
	ck_assert_uint_eq(st.payload_bytes, 11 + 2 * biglen);
	ck_assert_uint_ge(st.used_bytes, st.payload_bytes);
	fix_close();
}
END_TEST

START_TEST(test_replace)
{
	struct be_record rec;
	struct be_stats st;
	struct wr w = { .action = BE_PUT, .level = 2, .data = "bbbbbb",
	    .len = 6 };

	fix_open(_i, 0);
	ck_assert_int_eq(put(S("k"), 1, "aaa", 3, LIVE), BE_OK);
	w.expires = LIVE + SEC;
	ck_assert_int_eq(do_write(&w, S("k")), BE_OK);
	ck_assert_int_eq(w.cur.kind, BE_ENTRY);
	ck_assert_uint_eq(w.cur.level, 1);
	ck_assert_uint_eq(w.cur.len, 3);
	ck_assert_uint_eq(nhev, 2);
	check_hev(0, BE_EV_SET, "k", 1, 3);
	check_hev(1, BE_EV_UPDATE, "k", 2, 6);

	rec = get(S("k"), clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 2);
	ck_assert_uint_eq(rec.expires, LIVE + SEC);
	ck_assert_uint_eq(rec.len, 6);
	ck_assert_mem_eq(rec.data, "bbbbbb", 6);
	st = stats();
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.payload_bytes, 6);
	fix_close();
}
END_TEST

START_TEST(test_tombstone)
{
	struct be_record rec;
	struct be_lease lease;
	struct be_stats st;
	uint8_t d[BE_DIGEST_LEN];

	fix_open(_i, 0);
	digest_of(d, 5);
	ck_assert_int_eq(put(S("k"), 3, "payload", 7, LIVE), BE_OK);
	ck_assert_int_eq(tomb(S("k"), 3, 5, LIVE + 5 * SEC), BE_OK);
	ck_assert_uint_eq(nhev, 2);
	check_hev(1, BE_EV_DELETE, "k", 3, 7);

	ck_assert_int_eq(lk(S("k"), clock_now_ns(), &rec, &lease), 0);
	ck_assert_int_eq(rec.kind, BE_TOMBSTONE);
	ck_assert_uint_eq(rec.level, 3);
	ck_assert_uint_eq(rec.expires, LIVE + 5 * SEC);
	ck_assert_mem_eq(rec.digest, d, BE_DIGEST_LEN);
	ck_assert_uint_eq(rec.len, 0);
	ck_assert(lease.release == NULL);	/* no payload, no lease */

	rec = peek(S("k"));
	ck_assert_int_eq(rec.kind, BE_TOMBSTONE);
	ck_assert_uint_eq(rec.level, 3);
	ck_assert_mem_eq(rec.digest, d, BE_DIGEST_LEN);

	st = stats();
	ck_assert_uint_eq(st.entries, 0);
	ck_assert_uint_eq(st.tombstones, 1);
	ck_assert_uint_eq(st.payload_bytes, 0);

	/* A set above the tombstone: an entry again, reported as SET. */
	ck_assert_int_eq(put(S("k"), 4, "new", 3, LIVE), BE_OK);
	ck_assert_uint_eq(nhev, 3);
	check_hev(2, BE_EV_SET, "k", 4, 3);
	rec = get(S("k"), clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 4);
	st = stats();
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.tombstones, 0);
	fix_close();
}
END_TEST

START_TEST(test_touch)
{
	struct be_record rec;
	struct be_stats before, after;
	struct wr w = { .action = BE_TOUCH };

	fix_open(_i, 0);
	ck_assert_int_eq(put(S("k"), 5, "x", 1, F.t0 + 100 * SEC), BE_OK);
	before = stats();
	w.expires = F.t0 + 200 * SEC;
	ck_assert_int_eq(do_write(&w, S("k")), BE_OK);
	ck_assert_int_eq(w.cur.kind, BE_ENTRY);
	ck_assert_uint_eq(w.cur.expires, F.t0 + 100 * SEC);
	ck_assert_uint_eq(nhev, 1);		/* not a change */

	rec = get(S("k"), F.t0 + 150 * SEC);
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 5);
	ck_assert_uint_eq(rec.expires, F.t0 + 200 * SEC);
	ck_assert_uint_eq(rec.len, 1);
	ck_assert_mem_eq(rec.data, "x", 1);
	after = stats();
	ck_assert_mem_eq(&before, &after, sizeof(before));

	/* Shorter works too. */
	w = (struct wr){ .action = BE_TOUCH, .expires = F.t0 + 50 * SEC };
	ck_assert_int_eq(do_write(&w, S("k")), BE_OK);
	ck_assert_int_eq(get(S("k"), F.t0 + 49 * SEC).kind, BE_ENTRY);
	ck_assert_int_eq(get(S("k"), F.t0 + 60 * SEC).kind, BE_NONE);
	ck_assert_uint_eq(nhev, 1);
	fix_close();
}
END_TEST

START_TEST(test_keep)
{
	struct be_record rec;
	struct be_stats st0, st1;
	struct wr w = { .action = BE_KEEP, .level = 9, .data = "zz", .len = 2,
	    .expires = 1 };

	fix_open(_i, 0);
	ck_assert_int_eq(do_write(&w, S("absent")), BE_OK);
	ck_assert_int_eq(w.cur.kind, BE_NONE);
	ck_assert_int_eq(get(S("absent"), clock_now_ns()).kind, BE_NONE);
	ck_assert_uint_eq(nhev, 0);

	ck_assert_int_eq(put(S("k"), 1, "v", 1, LIVE), BE_OK);
	st0 = stats();
	w = (struct wr){ .action = BE_KEEP, .level = 9, .data = "zz",
	    .len = 2, .expires = 1 };
	ck_assert_int_eq(do_write(&w, S("k")), BE_OK);
	rec = get(S("k"), clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 1);
	ck_assert_uint_eq(rec.expires, LIVE);
	ck_assert_mem_eq(rec.data, "v", 1);
	st1 = stats();
	ck_assert_mem_eq(&st0, &st1, sizeof(st0));
	ck_assert_uint_eq(nhev, 1);
	fix_close();
}
END_TEST

START_TEST(test_expired_reads_none)
{
	struct be_record rec;
	struct be_lease lease;
	int more;

	fix_open(_i, 0);
	ck_assert_int_eq(put(S("k"), 1, "v", 1, F.t0 + 10 * SEC), BE_OK);
	ck_assert_int_eq(get(S("k"), F.t0 + 10 * SEC - 1).kind, BE_ENTRY);
	/* At its expiry time a record is gone. */
	ck_assert_int_eq(lk(S("k"), F.t0 + 10 * SEC, &rec, &lease), 0);
	ck_assert_int_eq(rec.kind, BE_NONE);
	ck_assert(lease.release == NULL);
	ck_assert_uint_eq(stats().entries, 1);	/* not swept yet */

	/* Already expired when written: decide() sees none. */
	ck_assert_int_eq(put(S("old"), 1, "o", 1, 1), BE_OK);
	ck_assert_int_eq(get(S("old"), clock_now_ns()).kind, BE_NONE);
	ck_assert_int_eq(peek(S("old")).kind, BE_NONE);
	ck_assert_int_eq(tomb(S("oldt"), 1, 1, 1), BE_OK);
	ck_assert_int_eq(get(S("oldt"), clock_now_ns()).kind, BE_NONE);
	ck_assert_int_eq(peek(S("oldt")).kind, BE_NONE);

	/* Overwritten before the sweeper: EXPIRE for the old, SET for the
	 * new, and the sweeper does not report the old one again. */
	nhev = 0;
	ck_assert_int_eq(put(S("old"), 9, "new", 3, LIVE), BE_OK);
	ck_assert_uint_eq(nhev, 2);
	check_hev(0, BE_EV_EXPIRE, "old", 1, 1);
	check_hev(1, BE_EV_SET, "old", 9, 3);
	rec = get(S("old"), clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 9);

	/* A delete of an expired entry: EXPIRE, not DELETE. */
	ck_assert_int_eq(put(S("gone"), 2, "g", 1, 1), BE_OK);
	nhev = 0;
	ck_assert_int_eq(tomb(S("gone"), 2, 0, LIVE), BE_OK);
	ck_assert_uint_eq(nhev, 1);
	check_hev(0, BE_EV_EXPIRE, "gone", 2, 1);

	nhev = 0;
	while (F.be->ops->sweep(F.be, FAR, 100, &more) > 0)
		;
	ck_assert_int_eq(more, 0);
	ck_assert_uint_eq(hook_count_key(BE_EV_EXPIRE, S("k")), 1);
	ck_assert_uint_eq(hook_count_key(BE_EV_EXPIRE, S("old")), 1);
	ck_assert_uint_eq(hook_count_key(BE_EV_EXPIRE, S("gone")), 0);
	ck_assert_uint_eq(nhev, 2);
	ck_assert_uint_eq(stats().entries, 0);
	ck_assert_uint_eq(stats().tombstones, 0);
	fix_close();
}
END_TEST

START_TEST(test_sweep_budget)
{
	char key[16];
	int i, more;

	fix_open(_i, 0);
	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ck_assert_int_eq(put(S(key), 1, "v", 1,
		    F.t0 + 10 * SEC + (uint64_t)i), BE_OK);
	}
	more = -1;
	ck_assert_uint_eq(F.be->ops->sweep(F.be, F.t0 + 5 * SEC, 100, &more),
	    0);
	ck_assert_int_eq(more, 0);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, FAR, 0, &more), 0);
	ck_assert_int_eq(more, 1);

	/* Only what has expired, even with budget to spare. */
	ck_assert_uint_eq(F.be->ops->sweep(F.be, F.t0 + 10 * SEC + 1, 100,
	    &more), 2);
	ck_assert_int_eq(more, 0);
	ck_assert_uint_eq(stats().entries, 8);

	ck_assert_uint_eq(F.be->ops->sweep(F.be, FAR, 3, &more), 3);
	ck_assert_int_eq(more, 1);
	ck_assert_uint_eq(stats().entries, 5);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, FAR, 3, &more), 3);
	ck_assert_int_eq(more, 1);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, FAR, 3, &more), 2);
	ck_assert_int_eq(more, 0);
	ck_assert_uint_eq(stats().entries, 0);
	ck_assert_uint_eq(hook_count(BE_EV_EXPIRE), 10);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, FAR, 3, &more), 0);
	ck_assert_int_eq(more, 0);
	fix_close();
}
END_TEST

#define NORDER	50

START_TEST(test_sweep_order)
{
	uint64_t exp[NORDER], last = 0;
	char key[16];
	size_t i, n;
	int more, k;
	struct wr w = { .action = BE_TOUCH };

	fix_open(_i, 0);
	/* Inserted in an order unrelated to expiry. */
	for (i = 0; i < NORDER; i++) {
		k = (int)((i * 17) % NORDER);
		exp[k] = F.t0 + 100 * SEC + (uint64_t)((k * 7) % NORDER) * SEC;
		snprintf(key, sizeof(key), "key-%02d", k);
		ck_assert_int_eq(put(S(key), 1, "v", 1, exp[k]), BE_OK);
	}
	/* A touch reorders: the soonest becomes the latest. */
	exp[0] = F.t0 + 1000 * SEC;
	w.expires = exp[0];
	ck_assert_int_eq(do_write(&w, S("key-00")), BE_OK);

	nhev = 0;
	for (n = 0; n < NORDER; n++) {
		ck_assert_uint_eq(F.be->ops->sweep(F.be, FAR, 1, &more), 1);
		ck_assert_int_eq(more, n + 1 < NORDER);
	}
	ck_assert_uint_eq(nhev, NORDER);
	for (i = 0; i < NORDER; i++) {
		ck_assert_int_eq(hevs[i].ev, BE_EV_EXPIRE);
		ck_assert_uint_eq(hevs[i].keylen, 6);
		k = (hevs[i].key[4] - '0') * 10 + (hevs[i].key[5] - '0');
		ck_assert_uint_ge(exp[k], last);
		last = exp[k];
	}
	check_hev(NORDER - 1, BE_EV_EXPIRE, "key-00", 1, 1);
	fix_close();
}
END_TEST

START_TEST(test_tombstone_expiry_silent)
{
	int more;

	fix_open(_i, 0);
	ck_assert_int_eq(put(S("k"), 1, "v", 1, LIVE), BE_OK);
	ck_assert_int_eq(tomb(S("k"), 1, 1, F.t0 + 10 * SEC), BE_OK);
	ck_assert_uint_eq(stats().tombstones, 1);
	nhev = 0;
	ck_assert_int_eq(get(S("k"), F.t0 + 10 * SEC).kind, BE_NONE);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, F.t0 + 20 * SEC, 10, &more),
	    1);
	ck_assert_int_eq(more, 0);
	ck_assert_uint_eq(nhev, 0);
	ck_assert_uint_eq(stats().tombstones, 0);
	ck_assert_uint_eq(stats().used_bytes, 0);
	fix_close();
}
END_TEST

START_TEST(test_lease)
{
	struct be_lease l1, l2, l3;
	struct be_record rec;
	uint8_t a[4096], b[5000], c[300];
	const uint8_t *p1;
	int more;

	fix_open(_i, 0);
	fill(a, sizeof(a), 1);
	fill(b, sizeof(b), 2);
	fill(c, sizeof(c), 3);

	/* Update under a lease. */
	ck_assert_int_eq(put(S("k"), 1, a, sizeof(a), LIVE), BE_OK);
	ck_assert_int_eq(lk(S("k"), clock_now_ns(), &rec, &l1), 0);
	p1 = l1.data;
	ck_assert_int_eq(put(S("k"), 2, b, sizeof(b), LIVE), BE_OK);
	ck_assert_ptr_eq(l1.data, p1);
	ck_assert_uint_eq(l1.len, sizeof(a));
	ck_assert(memcmp(l1.data, a, sizeof(a)) == 0);

	/* Delete under a lease. */
	ck_assert_int_eq(lk(S("k"), clock_now_ns(), &rec, &l2), 0);
	ck_assert_int_eq(tomb(S("k"), 2, 0, LIVE), BE_OK);
	ck_assert_uint_eq(l2.len, sizeof(b));
	ck_assert(memcmp(l2.data, b, sizeof(b)) == 0);

	/* Sweep under a lease. */
	ck_assert_int_eq(put(S("s"), 1, c, sizeof(c), F.t0 + 10 * SEC), BE_OK);
	ck_assert_int_eq(lk(S("s"), clock_now_ns(), &rec, &l3), 0);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, F.t0 + 20 * SEC, 10, &more),
	    1);
	ck_assert_int_eq(get(S("s"), clock_now_ns()).kind, BE_NONE);
	ck_assert_uint_eq(l3.len, sizeof(c));
	ck_assert(memcmp(l3.data, c, sizeof(c)) == 0);

	/* And the first lease still, after all that churn. */
	ck_assert(memcmp(l1.data, a, sizeof(a)) == 0);
	be_lease_release(&l1);
	be_lease_release(&l2);
	be_lease_release(&l3);
	be_lease_release(&l3);		/* idempotent */
	fix_close();
}
END_TEST

START_TEST(test_stats)
{
	struct be_stats st;
	int more;

	fix_open(_i, 0);
	st = stats();
	ck_assert_uint_eq(st.entries, 0);
	ck_assert_uint_eq(st.tombstones, 0);
	ck_assert_uint_eq(st.payload_bytes, 0);
	ck_assert_uint_eq(st.used_bytes, 0);
	ck_assert_int_eq(put(S("a"), 1, "1", 1, LIVE), BE_OK);
	ck_assert_int_eq(put(S("b"), 1, "0123456789", 10, LIVE), BE_OK);
	ck_assert_int_eq(put(S("c"), 1, "", 0, F.t0 + 10 * SEC), BE_OK);
	ck_assert_int_eq(put(S("d"), 1, "dddd", 4, LIVE), BE_OK);
	ck_assert_int_eq(tomb(S("d"), 1, 0, F.t0 + 10 * SEC), BE_OK);
	st = stats();
	ck_assert_uint_eq(st.entries, 3);
	ck_assert_uint_eq(st.tombstones, 1);
	ck_assert_uint_eq(st.payload_bytes, 11);
	ck_assert_uint_gt(st.used_bytes, st.payload_bytes);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, F.t0 + 10 * SEC, 10, &more),
	    2);
	st = stats();
	ck_assert_uint_eq(st.entries, 2);
	ck_assert_uint_eq(st.tombstones, 0);
	ck_assert_uint_eq(st.payload_bytes, 11);
	F.be->ops->sweep(F.be, FAR, 10, &more);
	st = stats();
	ck_assert_uint_eq(st.entries, 0);
	ck_assert_uint_eq(st.payload_bytes, 0);
	ck_assert_uint_eq(st.used_bytes, 0);
	fix_close();
}
END_TEST

/* Every action, and a write refused before it is queued: decide() and
 * done() once each (do_write checks), or neither. */
START_TEST(test_decide_done_once)
{
	static const enum be_action acts[] = { BE_KEEP, BE_PUT, BE_TOUCH,
	    BE_PUT_TOMBSTONE, BE_PUT, BE_KEEP };
	struct be_write bw;
	struct wr w;
	uint8_t longkey[257];
	size_t i;

	fix_open(_i, 0);
	for (i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
		w = (struct wr){ .action = acts[i], .level = (uint32_t)i + 1,
		    .expires = LIVE, .data = "p", .len = 1 };
		ck_assert_int_eq(do_write(&w, S("k")), BE_OK);
	}
	/* Out-of-contract keys: either refused at once (no callbacks) or
	 * handled with one decide() and one done(). */
	memset(longkey, 'x', sizeof(longkey));
	for (i = 0; i < 2; i++) {
		w = (struct wr){ .action = BE_KEEP };
		memset(&bw, 0, sizeof(bw));
		bw.key = longkey;
		bw.keylen = i == 0 ? 0 : sizeof(longkey);
		bw.decide = w_decide;
		bw.done = w_done;
		bw.arg = &w;
		if (F.be->ops->write(F.be, &bw) == -1) {
			event_base_loop(F.base, EVLOOP_NONBLOCK);
			ck_assert_int_eq(w.ndecide, 0);
			ck_assert_int_eq(w.ndone, 0);
		} else {
			while (w.ndone == 0)
				event_base_loop(F.base, EVLOOP_ONCE);
			ck_assert_int_eq(w.ndecide, 1);
			ck_assert_int_eq(w.ndone, 1);
		}
	}
	fix_close();
}
END_TEST

START_TEST(test_binary_keys)
{
	uint8_t k256a[256], k256b[256];
	struct {
		const uint8_t	*key;
		size_t		 len;
	} keys[] = {
		{ (const uint8_t *)"a", 1 },
		{ (const uint8_t *)"a\0", 2 },
		{ (const uint8_t *)"a\0b", 3 },
		{ (const uint8_t *)"a\0c", 3 },
		{ (const uint8_t *)"\0", 1 },
		{ (const uint8_t *)"\0\0", 2 },
		{ k256a, 256 },
		{ k256b, 256 },
		{ k256a, 255 },
	};
	size_t n = sizeof(keys) / sizeof(keys[0]), i;
	struct be_record rec;
	uint8_t v;

	fix_open(_i, 0);
	memset(k256a, 'k', sizeof(k256a));
	memcpy(k256b, k256a, sizeof(k256b));
	k256b[255] = 'K';
	for (i = 0; i < n; i++) {
		v = (uint8_t)i;
		ck_assert_int_eq(put(keys[i].key, keys[i].len, (uint32_t)i + 1,
		    &v, 1, LIVE), BE_OK);
		ck_assert_int_eq(hevs[nhev - 1].ev, BE_EV_SET);
	}
	ck_assert_uint_eq(stats().entries, n);
	ck_assert_int_eq(tomb(keys[2].key, keys[2].len, 3, 0, LIVE), BE_OK);
	for (i = 0; i < n; i++) {
		rec = get(keys[i].key, keys[i].len, clock_now_ns());
		ck_assert_uint_eq(rec.level, i + 1);
		if (i == 2) {
			ck_assert_int_eq(rec.kind, BE_TOMBSTONE);
			continue;
		}
		ck_assert_int_eq(rec.kind, BE_ENTRY);
		ck_assert_uint_eq(rec.len, 1);
		ck_assert_uint_eq(rec.data[0], i);
	}
	ck_assert_int_eq(get(S("b"), clock_now_ns()).kind, BE_NONE);
	fix_close();
}
END_TEST

#define NMANY	10000

static size_t
many_key(char *buf, size_t len, int i)
{
	/* Similar keys of varying length; every fifth has a NUL inside. */
	int n = snprintf(buf, len, "session-%d-%s", i, i % 7 ? "x" : "");

	if (i % 5 == 0) {
		buf[n + 1] = 'z';	/* after snprintf's NUL */
		n += 2;
	}
	return (size_t)n;
}

START_TEST(test_many_keys)
{
	char key[64];
	struct be_record rec;
	struct be_stats st;
	size_t kl, swept = 0, n;
	uint32_t v;
	int i, more = 1;

	fix_open(_i, 0);
	/* Even keys expire soon, odd ones late: sweeping the even half
	 * removes records from the middle of every probe chain. */
	for (i = 0; i < NMANY; i++) {
		kl = many_key(key, sizeof(key), i);
		v = (uint32_t)i;
		ck_assert_int_eq(put(key, kl, (uint32_t)i, &v, sizeof(v),
		    i % 2 ? LIVE : F.t0 + 10 * SEC), BE_OK);
	}
	ck_assert_uint_eq(hook_count(BE_EV_SET), NMANY);
	st = stats();
	ck_assert_uint_eq(st.entries, NMANY);
	ck_assert_uint_eq(st.payload_bytes, NMANY * sizeof(v));
	for (i = 0; i < NMANY; i++) {
		kl = many_key(key, sizeof(key), i);
		rec = get(key, kl, clock_now_ns());
		ck_assert_int_eq(rec.kind, BE_ENTRY);
		ck_assert_uint_eq(rec.level, i);
		memcpy(&v, rec.data, sizeof(v));
		ck_assert_uint_eq(v, i);
	}
	for (i = 0; i < NMANY; i += 3) {
		kl = many_key(key, sizeof(key), i);
		ck_assert_int_eq(tomb(key, kl, (uint32_t)i, 0,
		    i % 2 ? LIVE : F.t0 + 10 * SEC), BE_OK);
	}
	while (more) {
		n = F.be->ops->sweep(F.be, F.t0 + 20 * SEC, SWEEP_SLICE, &more);
		ck_assert_uint_le(n, SWEEP_SLICE);
		swept += n;
	}
	ck_assert_uint_eq(swept, NMANY / 2);
	for (i = 0; i < NMANY; i++) {
		kl = many_key(key, sizeof(key), i);
		rec = get(key, kl, clock_now_ns());
		if (i % 2 == 0)
			ck_assert_int_eq(rec.kind, BE_NONE);
		else if (i % 3 == 0)
			ck_assert_int_eq(rec.kind, BE_TOMBSTONE);
		else {
			ck_assert_int_eq(rec.kind, BE_ENTRY);
			ck_assert_uint_eq(rec.level, i);
		}
	}
	st = stats();
	ck_assert_uint_eq(st.entries + st.tombstones, NMANY / 2);
	/* Every removed key is free again. */
	for (i = 0; i < NMANY; i += 2) {
		kl = many_key(key, sizeof(key), i);
		ck_assert_int_eq(put(key, kl, 1, "", 0, LIVE), BE_OK);
		ck_assert_int_eq(hevs[nhev - 1].ev, BE_EV_SET);
	}
	st = stats();
	ck_assert_uint_eq(st.entries + st.tombstones, NMANY);
	fix_close();
}
END_TEST

/* --- The sweeper timer ---------------------------------------------------- */

static void
spin_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval zero = { 0, 0 };

	(void)fd;
	(void)what;
	(void)arg;
	if (spins++ == 0)
		spin_first = nexpire;
	if (nexpire < spin_until)
		evtimer_add(spin, &zero);
}

static void
loop_until_entries(uint64_t want)
{
	uint64_t deadline = clock_now_ns() + LOOP_DEADLINE;

	while (stats().entries > want && clock_now_ns() < deadline)
		event_base_loop(F.base, EVLOOP_ONCE);
	ck_assert_uint_eq(stats().entries, want);
}

START_TEST(test_sweeper_timer)
{
	struct sweeper *sw;
	char key[32];
	size_t n = 3 * SWEEP_SLICE + 1, i;
	uint64_t soon;

	fix_open(_i, 0);
	soon = clock_now_ns() + 50 * NS_PER_MS;
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "short-%zu", i);
		ck_assert_int_eq(put(S(key), 1, "v", 1, soon), BE_OK);
	}
	for (i = 0; i < 5; i++) {
		snprintf(key, sizeof(key), "long-%zu", i);
		ck_assert_int_eq(put(S(key), 1, "v", 1, LIVE), BE_OK);
	}
	nhev = 0;
	spin = evtimer_new(F.base, spin_cb, NULL);
	ck_assert_ptr_nonnull(spin);
	nexpire = 0;
	spin_until = n;
	sw = sweeper_start(F.base, F.be, F.cfg.sweep_interval);
	ck_assert_ptr_nonnull(sw);
	loop_until_entries(5);
	ck_assert_uint_eq(hook_count(BE_EV_EXPIRE), n);
	/* A timer armed during the first slice ran before the last one:
	 * slices yield to the loop. */
	ck_assert_uint_gt(spin_first, 0);
	ck_assert_uint_lt(spin_first, n);
	/* and the next slices came on the next iterations, not the next
	 * ticks (which would be thousands of iterations away). */
	ck_assert_uint_le(spins, 2 * (n / SWEEP_SLICE + 2));

	/* A new period (SIGHUP) keeps sweeping. */
	sweeper_set_interval(sw, 5);
	soon = clock_now_ns() + 20 * NS_PER_MS;
	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "again-%zu", i);
		ck_assert_int_eq(put(S(key), 1, "v", 1, soon), BE_OK);
	}
	loop_until_entries(5);
	ck_assert_uint_eq(hook_count(BE_EV_EXPIRE), n + 10);
	sweeper_stop(sw);
	event_free(spin);
	spin = NULL;
	fix_close();
}
END_TEST

/* --- memory only ---------------------------------------------------------- */

#define COST(keylen, len)	((uint64_t)(keylen) + BE_ENTRY_OVERHEAD + (len))

START_TEST(test_mem_max_memory)
{
	uint8_t p[300];
	struct be_record rec;
	struct be_stats st0, st1;
	struct config cfg;
	uint64_t max = COST(2, 100) + COST(2, 50);
	struct wr w;
	char want[96];

	fix_open(_i, max);
	fill(p, sizeof(p), 9);
	ck_assert_int_eq(put(S("k1"), 1, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k2"), 1, p, 50, LIVE), BE_OK);
	st0 = stats();
	ck_assert_uint_eq(st0.used_bytes, max);		/* full to the byte */

	/* One byte more: refused, adoption declined, nothing changed. */
	nhev = 0;
	w = (struct wr){ .action = BE_PUT, .level = 2, .expires = LIVE,
	    .data = p + 1, .len = 51, .adopt = 1 };
	ck_assert_int_eq(do_write(&w, S("k2")), BE_ERR_FULL);
	snprintf(want, sizeof(want), "store full: max_memory %llu bytes "
	    "reached", (unsigned long long)max);
	ck_assert_str_eq(w.msg, want);
	ck_assert_int_eq(w.adopted, 0);
	ck_assert_uint_eq(nhev, 0);
	rec = get(S("k2"), clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 1);
	ck_assert_uint_eq(rec.len, 50);
	ck_assert_mem_eq(rec.data, p, 50);
	st1 = stats();
	ck_assert_mem_eq(&st0, &st1, sizeof(st0));
	ck_assert_int_eq(put(S("k3"), 1, "", 0, LIVE), BE_ERR_FULL);
	ck_assert_int_eq(get(S("k3"), clock_now_ns()).kind, BE_NONE);

	/* A replacement of the same size fits: the old payload is counted
	 * out. */
	ck_assert_int_eq(put(S("k2"), 2, p + 2, 50, LIVE), BE_OK);
	ck_assert_uint_eq(nhev, 1);
	check_hev(0, BE_EV_UPDATE, "k2", 2, 50);

	/* Deletes are never refused, and make room. */
	ck_assert_int_eq(tomb(S("k1"), 1, 0, LIVE), BE_OK);
	ck_assert_uint_eq(stats().used_bytes, COST(2, 0) + COST(2, 50));
	ck_assert_int_eq(put(S("k2"), 3, p, 150, LIVE), BE_OK);
	ck_assert_uint_eq(stats().used_bytes, max);

	/* reconfigure(): no limit, then a lower one (evicts nothing). */
	memset(&cfg, 0, sizeof(cfg));
	F.ops->reconfigure(F.be, &cfg);
	ck_assert_int_eq(put(S("k3"), 1, p, 300, LIVE), BE_OK);
	cfg.max_memory = 100;
	F.ops->reconfigure(F.be, &cfg);
	ck_assert_int_eq(get(S("k3"), clock_now_ns()).kind, BE_ENTRY);
	ck_assert_int_eq(put(S("k4"), 1, "", 0, LIVE), BE_ERR_FULL);
	ck_assert_int_eq(tomb(S("k3"), 1, 0, LIVE), BE_OK);
	fix_close();
}
END_TEST

/* Expired records not yet swept do not make the store look full. */
START_TEST(test_mem_full_frees_expired)
{
	uint8_t p[100];

	fix_open(_i, COST(2, 100));
	fill(p, sizeof(p), 1);
	ck_assert_int_eq(put(S("k1"), 1, p, 100, 1), BE_OK);
	ck_assert_uint_eq(stats().used_bytes, COST(2, 100));
	ck_assert_int_eq(put(S("k2"), 1, p, 100, LIVE), BE_OK);
	ck_assert_uint_eq(nhev, 3);
	check_hev(0, BE_EV_SET, "k1", 1, 100);
	check_hev(1, BE_EV_EXPIRE, "k1", 1, 100);
	check_hev(2, BE_EV_SET, "k2", 1, 100);
	ck_assert_uint_eq(stats().entries, 1);
	ck_assert_uint_eq(stats().used_bytes, COST(2, 100));
	fix_close();
}
END_TEST

START_TEST(test_mem_accounting)
{
	struct be_stats st;
	struct wr w;
	struct be_record rec;
	int more;

	fix_open(_i, 0);
	ck_assert_int_eq(put(S("a"), 1, "xyz", 3, LIVE), BE_OK);
	ck_assert_int_eq(put(S("bb"), 1, "", 0, LIVE), BE_OK);
	ck_assert_int_eq(tomb(S("ccc"), 1, 0, LIVE), BE_OK);
	st = stats();
	ck_assert_uint_eq(st.used_bytes, COST(1, 3) + COST(2, 0) + COST(3, 0));

	/* Adoption: the buffer itself becomes the payload (no copy). */
	w = (struct wr){ .action = BE_PUT, .level = 1, .expires = LIVE,
	    .data = "adopted", .len = 7, .adopt = 1 };
	ck_assert_int_eq(do_write(&w, S("d")), BE_OK);
	ck_assert_int_eq(w.adopted, 1);
	rec = get(S("d"), clock_now_ns());
	ck_assert_mem_eq(rec.data, "adopted", 7);

	/* Touching what is not a live entry is refused, once. */
	w = (struct wr){ .action = BE_TOUCH, .expires = LIVE };
	ck_assert_int_ne(do_write(&w, S("nope")), BE_OK);
	w = (struct wr){ .action = BE_TOUCH, .expires = LIVE };
	ck_assert_int_ne(do_write(&w, S("ccc")), BE_OK);
	F.ops->sweep(F.be, FAR, 100, &more);
	st = stats();
	ck_assert_uint_eq(st.used_bytes, 0);
	fix_close();
}
END_TEST

/* Leases are the caller's to release before close(); memory survives it
 * anyway (the blob outlives the table). */
START_TEST(test_mem_lease_outlives_close)
{
	struct be_lease l;
	struct be_record rec;

	fix_open(_i, 0);
	ck_assert_int_eq(put(S("k"), 1, "bytes", 5, LIVE), BE_OK);
	ck_assert_int_eq(lk(S("k"), clock_now_ns(), &rec, &l), 0);
	F.ops->close(F.be);
	F.be = NULL;
	ck_assert_mem_eq(l.data, "bytes", 5);
	be_lease_release(&l);
	event_base_free(F.base);
	nftw(F.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

START_TEST(test_registry)
{
	size_t i;

	for (i = 0; backend_all[i] != NULL; i++) {
		ck_assert_ptr_nonnull(backend_all[i]->name);
		ck_assert_ptr_eq(backend_find(backend_all[i]->name),
		    backend_all[i]);
	}
	ck_assert_uint_ge(i, 1);
	ck_assert_ptr_nonnull(backend_find("memory"));
	ck_assert_ptr_null(backend_find("nosuch"));
	ck_assert_ptr_null(backend_find(""));
	ck_assert_ptr_null(backend_find(NULL));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("backend");
	SRunner *sr;
	TCase *tc;
	int i, mem = -1, failed;

	for (i = 0; backend_all[i] != NULL; i++) {
		tc = tcase_create(backend_all[i]->name);
		/* 8 MiB values and 10 000 keys: a few seconds under valgrind
		 * for memory; a disk backend syncs each write. */
		tcase_set_timeout(tc, 60);
		tcase_add_loop_test(tc, test_roundtrip, i, i + 1);
		tcase_add_loop_test(tc, test_replace, i, i + 1);
		tcase_add_loop_test(tc, test_tombstone, i, i + 1);
		tcase_add_loop_test(tc, test_touch, i, i + 1);
		tcase_add_loop_test(tc, test_keep, i, i + 1);
		tcase_add_loop_test(tc, test_expired_reads_none, i, i + 1);
		tcase_add_loop_test(tc, test_sweep_budget, i, i + 1);
		tcase_add_loop_test(tc, test_sweep_order, i, i + 1);
		tcase_add_loop_test(tc, test_tombstone_expiry_silent, i,
		    i + 1);
		tcase_add_loop_test(tc, test_lease, i, i + 1);
		tcase_add_loop_test(tc, test_stats, i, i + 1);
		tcase_add_loop_test(tc, test_decide_done_once, i, i + 1);
		tcase_add_loop_test(tc, test_binary_keys, i, i + 1);
		tcase_add_loop_test(tc, test_many_keys, i, i + 1);
		tcase_add_loop_test(tc, test_sweeper_timer, i, i + 1);
		suite_add_tcase(s, tc);
		if (strcmp(backend_all[i]->name, "memory") == 0)
			mem = i;
	}

	tc = tcase_create("memory-specific");
	tcase_set_timeout(tc, 10);
	if (mem >= 0) {
		tcase_add_loop_test(tc, test_mem_max_memory, mem, mem + 1);
		tcase_add_loop_test(tc, test_mem_full_frees_expired, mem,
		    mem + 1);
		tcase_add_loop_test(tc, test_mem_accounting, mem, mem + 1);
		tcase_add_loop_test(tc, test_mem_lease_outlives_close, mem,
		    mem + 1);
	}
	tcase_add_test(tc, test_registry);
	suite_add_tcase(s, tc);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
