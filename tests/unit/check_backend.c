/*
 * check_backend.c: the backend conformance suite (spec §6). Every case runs
 * against every backend in backend_all[] (one TCase per backend, named after
 * it), so a new backend gets the whole suite by being listed there. Writes
 * are driven as the contract allows them to complete: done() may come later
 * from the event loop, so the suite pumps the loop until it does.
 *
 * Lookups go through backend_lookup() and the suite pumps the loop for a
 * backend that answers later. Backend s3 runs against fakes3.py (started
 * once by main(), a fresh prefix of its bucket per test): it may decide()
 * again after a lost race, and does not sweep its bucket yet (its sweep()
 * frees copies in memory and reports nothing), so the cases about a local
 * store's sweeping (the "local" list in main()) run for memory and lmdb
 * only, and so do the ends of two cases that check EXPIRE from sweep().
 *
 * Behaviour that is specific to one backend (memory's max_memory budget and
 * zero-copy adoption) lives in its own TCase at the end, with the registry
 * and the sweeper timer in a real event_base; memory's incremental hash
 * table growth has a TCase of its own, which reaches into the backend
 * through two test-only functions.
 */
#define _XOPEN_SOURCE 700

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#include "backend.h"
#include "backend_test.h"
#include "clock.h"
#include "config.h"
#include "sweeper.h"
#include "testutil.h"

#define SEC		NS_PER_SEC
#define MIB		(1024 * 1024)
#define LOOP_DEADLINE	(10 * SEC)

/* --- Hook recorder -------------------------------------------------------- */

struct hev {
	enum be_event	 ev;
	uint8_t		 key[256];
	size_t		 keylen;
	uint32_t	 level;
	uint64_t	 gen;
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
    uint32_t level, uint64_t gen, size_t len)
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
	h->gen = gen;
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
	char			 prefix[64];	/* s3: this test's */
	int			 local;	/* a store of its own: sweeps it */
	uint64_t		 t0;	/* monotonic ns at open */
} F;

static const char *s3url;	/* fakes3.py's, when backend s3 is listed */

/* The copies a later lookup's answer left (lk()), freed at fix_close(). */
static uint8_t	*lk_copies[4096];
static size_t	 nlk_copies;

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
	F.local = strcmp(F.ops->name, "s3") != 0;
	if (!F.local) {
		static unsigned n;

		ck_assert_msg(s3url != NULL, "fakes3.py did not start");
		snprintf(F.prefix, sizeof(F.prefix), "t%d-%u-%llu/",
		    (int)getpid(), n++, (unsigned long long)clock_now_ns());
		F.cfg.s3_endpoint = (char *)s3url;
		F.cfg.s3_bucket = (char *)TU_BUCKET;
		F.cfg.s3_prefix = F.prefix;
		F.cfg.s3_retries = 2;
		F.cfg.s3_timeout = 10000;
		F.cfg.max_message_size = 64 * MIB;
	}
	F.base = event_base_new();
	ck_assert_ptr_nonnull(F.base);
	F.be = F.ops->open(&F.cfg, F.base, err, sizeof(err));
	ck_assert_msg(F.be != NULL, "%s: open: %s", F.ops->name, err);
	ck_assert_ptr_eq(F.be->ops, F.ops);
	backend_set_hook(F.be, hook, NULL);
	F.t0 = clock_now_ns();
}

static void
fix_close(void)
{
	while (nlk_copies > 0)
		free(lk_copies[--nlk_copies]);
	F.ops->close(F.be);
	event_base_free(F.base);
	tu_rmtree(F.dir);
	memset(&F, 0, sizeof(F));
}

/* --- Writes --------------------------------------------------------------- */

/* One write: what decide() answers, and what the suite saw. */
struct wr {
	enum be_action	 action;
	uint32_t	 level;
	uint64_t	 gen;
	uint64_t	 inc;
	uint64_t	 expires;
	const void	*data;
	size_t		 len;
	int		 adopt;		/* offer a malloc copy to keep */
	uint8_t		 digest[BE_DIGEST_LEN];
	int		 want_lease;	/* ask for a lease on what is stored */

	uint8_t		*adoptbuf;	/* malloc'ed: ADOPT_HEAD bytes, the
					   payload, ADOPT_TAIL bytes */
	int		 adopted;	/* the backend kept adoptbuf */
	int		 ndecide, ndone, err;
	char		 msg[160];
	struct be_record cur;		/* as decide() saw it (data: NULL) */
	uint64_t	 now;
	struct be_write	*bw;		/* do_write()'s, during the write */
	struct lease	 lease;		/* taken from bw in done() */
};

#define ADOPT_HEAD	37
#define ADOPT_TAIL	11

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
	c->gen = r->gen;
	c->inc = r->inc;
	c->expires = r->expires;
	c->data = r->adoptbuf != NULL ? r->adoptbuf + ADOPT_HEAD : r->data;
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
	/* done() owns the lease: what it sees is what the write gave. */
	if (r->bw != NULL) {
		r->lease = r->bw->lease;
		memset(&r->bw->lease, 0, sizeof(r->bw->lease));
	}
}

/* Start a write through w, whose lease is garbage until the backend
 * clears it. */
static void
start_write(struct wr *r, struct be_write *w, const void *key, size_t keylen)
{
	memset(w, 0, sizeof(*w));
	w->key = key;
	w->keylen = keylen;
	w->decide = w_decide;
	w->done = w_done;
	w->arg = r;
	w->want_lease = r->want_lease;
	memset(&w->lease, 0xa5, sizeof(w->lease));
	r->bw = w;
	memset(&r->lease, 0, sizeof(r->lease));
	if (r->adopt) {
		/* The payload inside a larger buffer, as a request's message
		 * holds it: a backend keeps the buffer, reads the payload. */
		r->adoptbuf = malloc(ADOPT_HEAD + r->len + ADOPT_TAIL);
		ck_assert_ptr_nonnull(r->adoptbuf);
		memset(r->adoptbuf, 0xee, ADOPT_HEAD + r->len + ADOPT_TAIL);
		if (r->len > 0)
			memcpy(r->adoptbuf + ADOPT_HEAD, r->data, r->len);
	}
	ck_assert_int_eq(F.be->ops->write(F.be, w), 0);
}

/*
 * After done(): decide() and done() ran exactly once each, and done() was
 * handed a lease exactly when it asked for one on a BE_PUT that succeeded,
 * holding the bytes written. The lease is left in r->lease (the caller
 * releases it).
 */
static int
finish_write(struct wr *r, struct be_write *w)
{
	/* s3 decides again after a lost race (backend.h). */
	if (F.local)
		ck_assert_int_eq(r->ndecide, 1);
	else
		ck_assert_int_ge(r->ndecide, 1);
	ck_assert_int_eq(r->ndone, 1);
	/* The writer frees whatever adopt still points to after done(). */
	r->adopted = r->adoptbuf != NULL && w->chg.adopt == NULL;
	free(w->chg.adopt);
	r->adoptbuf = NULL;
	r->bw = NULL;
	if (r->want_lease && r->action == BE_PUT && r->err == BE_OK) {
		ck_assert_ptr_nonnull(r->lease.data);
		ck_assert_uint_eq(r->lease.len, r->len);
		if (r->len > 0)
			ck_assert_mem_eq(r->lease.data, r->data, r->len);
	} else {
		ck_assert_ptr_null(r->lease.data);
		ck_assert_ptr_null(r->lease.release);
		ck_assert_uint_eq(r->lease.len, 0);
	}
	return r->err;
}

static void
pump_until_done(struct wr *r)
{
	uint64_t deadline = clock_now_ns() + LOOP_DEADLINE;
	int i;

	while (r->ndone == 0 && clock_now_ns() < deadline)
		event_base_loop(F.base, EVLOOP_ONCE);
	/* Nothing more may come from the loop for this write. */
	for (i = 0; i < 3; i++)
		event_base_loop(F.base, EVLOOP_NONBLOCK);
}

/* Write and wait for done() (finish_write() checks); a lease asked for is
 * released. */
static int
do_write(struct wr *r, const void *key, size_t keylen)
{
	struct be_write w;
	int err;

	start_write(r, &w, key, keylen);
	pump_until_done(r);
	err = finish_write(r, &w);
	lease_release(&r->lease);
	return err;
}

/* A BE_PUT that asks for a lease on what it stores; the caller releases
 * *lease. */
static int
put_leased(const void *key, size_t keylen, uint32_t level, const void *data,
    size_t len, uint64_t expires, int adopt, struct lease *lease)
{
	struct wr r = { .action = BE_PUT, .level = level, .expires = expires,
	    .data = data, .len = len, .adopt = adopt, .want_lease = 1 };
	struct be_write w;
	int err;

	start_write(&r, &w, key, keylen);
	pump_until_done(&r);
	err = finish_write(&r, &w);
	*lease = r.lease;
	return err;
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

/* A lookup answered later: what came, and its payload copied. */
struct lka {
	int			 done, rv;
	struct be_record	 rec;
	struct lease		 lease;
	uint8_t			*copy;
};

static void
lk_answered(void *arg, int rv, const struct be_record *rec,
    struct lease *lease)
{
	struct lka *a = arg;

	a->done = 1;
	a->rv = rv;
	if (rv != 0)
		return;
	a->rec = *rec;
	if (lease != NULL)
		a->lease = *lease;
	/* rec's bytes are valid during the call only: kept for get(). */
	if (rec->kind == BE_ENTRY && rec->data != NULL) {
		a->copy = malloc(rec->len + 1);
		ck_assert_ptr_nonnull(a->copy);
		memcpy(a->copy, rec->data, rec->len);
		a->rec.data = a->copy;
	}
}

/* backend_lookup(), the loop pumped until it answers. */
static int
lk(const void *key, size_t keylen, uint64_t now, struct be_record *rec,
    struct lease *lease)
{
	struct lka a = { 0 };
	uint64_t deadline = clock_now_ns() + LOOP_DEADLINE;
	int rv;

	rv = backend_lookup(F.be, key, keylen, now, rec, lease, lk_answered,
	    &a);
	if (rv != 1)
		return rv;
	while (!a.done && clock_now_ns() < deadline)
		event_base_loop(F.base, EVLOOP_ONCE);
	ck_assert_msg(a.done, "%s: lookup never answered", F.ops->name);
	*rec = a.rec;
	if (lease != NULL)
		*lease = a.lease;
	if (a.copy != NULL) {
		if (nlk_copies == sizeof(lk_copies) / sizeof(lk_copies[0]))
			free(a.copy);	/* not read again by the suite */
		else
			lk_copies[nlk_copies++] = a.copy;
	}
	return a.rv;
}

/* One scan_next() that visits something or ends: a backend that waits on
 * its store (2) has the loop pumped and is asked again. 1 or 0. */
static int
scan_run(struct be_scan *sc, size_t budget, be_scan_fn *fn, void *arg)
{
	uint64_t deadline = clock_now_ns() + LOOP_DEADLINE;
	int rv;

	while ((rv = F.ops->scan_next(F.be, sc, clock_now_ns(), budget, fn,
	    arg)) == 2 && clock_now_ns() < deadline)
		event_base_loop(F.base, EVLOOP_ONCE);
	ck_assert_int_ge(rv, 0);
	ck_assert_int_le(rv, 1);
	return rv;
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

#define S(s)	(s), strlen(s)
#define LIVE	(F.t0 + 3600 * SEC)
#define FAR	(F.t0 + 7200 * SEC)

/* --- Conformance cases ---------------------------------------------------- */

START_TEST(test_roundtrip)
{
	struct be_record rec;
	struct lease lease;
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
	lease_release(&lease);
	ck_assert(lease.release == NULL);

	/* Absent: BE_NONE, and no lease to release. */
	ck_assert_int_eq(lk(S("k2"), clock_now_ns(), &rec, &lease), 0);
	ck_assert_int_eq(rec.kind, BE_NONE);
	ck_assert(lease.release == NULL);
	lease_release(&lease);

	/* decide() sees the stored record. */
	rec = peek(S("k1"));
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 7);
	ck_assert_uint_eq(rec.len, 11);
	ck_assert_uint_eq(rec.expires, LIVE);

	/* 8 MiB, once copied and once adopted. */
	big = malloc(biglen);
	ck_assert_ptr_nonnull(big);
	tu_fill(big, biglen, 42);
	ck_assert_int_eq(put(S("big-copy"), 1, big, biglen, LIVE), BE_OK);
	w = (struct wr){ .action = BE_PUT, .level = 2, .expires = LIVE,
	    .data = big, .len = biglen, .adopt = 1 };
	ck_assert_int_eq(do_write(&w, S("big-adopt")), BE_OK);
	ck_assert_int_eq(lk(S("big-copy"), clock_now_ns(), &rec, &lease), 0);
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(lease.len, biglen);
	ck_assert(memcmp(lease.data, big, biglen) == 0);
	lease_release(&lease);
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
	struct lease lease;
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

/*
 * Identity (backend.h): the generation a BE_PUT gives is what lookup(),
 * decide(), the hook and scans hand back; a touch keeps it; a tombstone has
 * none; EXPIRE and DELETE carry the departing entry's. The store has an
 * incarnation, never 0.
 */
static uint64_t scan_gen, scan_inc;

static void
gen_scan_fn(void *arg, const uint8_t *key, size_t keylen, uint32_t level,
    uint64_t gen, uint64_t inc, uint64_t expires, size_t len)
{
	(void)arg, (void)key, (void)keylen, (void)level, (void)expires;
	(void)len;
	scan_gen = gen;
	scan_inc = inc;
}

START_TEST(test_generation)
{
	struct be_record rec;
	struct be_scan *sc;
	struct wr w;
	int more;

	fix_open(_i, 0);
	ck_assert_uint_ne(F.be->incarnation, 0);
	w = (struct wr){ .action = BE_PUT, .level = 1, .gen = 0x1111,
	    .inc = 0x2222, .data = "a", .len = 1, .expires = LIVE };
	ck_assert_int_eq(do_write(&w, S("g")), BE_OK);
	check_hev(0, BE_EV_SET, "g", 1, 1);
	ck_assert_uint_eq(hevs[0].gen, 0x1111);
	rec = get(S("g"), clock_now_ns());
	ck_assert_uint_eq(rec.gen, 0x1111);
	ck_assert_uint_eq(rec.inc, 0x2222);

	/* A touch keeps them, and decide() sees them. */
	w = (struct wr){ .action = BE_TOUCH, .expires = LIVE + SEC };
	ck_assert_int_eq(do_write(&w, S("g")), BE_OK);
	ck_assert_uint_eq(w.cur.gen, 0x1111);
	ck_assert_uint_eq(w.cur.inc, 0x2222);
	ck_assert_uint_eq(get(S("g"), clock_now_ns()).gen, 0x1111);
	ck_assert_uint_eq(get(S("g"), clock_now_ns()).inc, 0x2222);

	/* Replaced: the new one's, in the hook, lookups and scans. */
	w = (struct wr){ .action = BE_PUT, .level = 2,
	    .gen = 0xffffffffffffffffULL, .inc = F.be->incarnation,
	    .data = "bb", .len = 2, .expires = LIVE };
	ck_assert_int_eq(do_write(&w, S("g")), BE_OK);
	check_hev(1, BE_EV_UPDATE, "g", 2, 2);
	ck_assert_uint_eq(hevs[1].gen, 0xffffffffffffffffULL);
	ck_assert_uint_eq(get(S("g"), clock_now_ns()).gen,
	    0xffffffffffffffffULL);
	ck_assert_ptr_nonnull(sc = F.ops->scan_open(F.be));
	ck_assert_int_eq(scan_run(sc, 10, gen_scan_fn, NULL), 0);
	F.ops->scan_close(F.be, sc);
	ck_assert_uint_eq(scan_gen, 0xffffffffffffffffULL);
	ck_assert_uint_eq(scan_inc, F.be->incarnation);
	ck_assert_uint_eq(get(S("g"), clock_now_ns()).inc, F.be->incarnation);

	/* Deleted: DELETE carries it; the tombstone has none. */
	ck_assert_int_eq(tomb(S("g"), 2, 3, LIVE), BE_OK);
	check_hev(2, BE_EV_DELETE, "g", 2, 2);
	ck_assert_uint_eq(hevs[2].gen, 0xffffffffffffffffULL);
	rec = get(S("g"), clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_TOMBSTONE);
	ck_assert_uint_eq(rec.gen, 0);

	/* Expired and swept: EXPIRE carries it (a store of its own). */
	if (!F.local) {
		fix_close();
		return;
	}
	w = (struct wr){ .action = BE_PUT, .level = 7, .gen = 0x77,
	    .data = "c", .len = 1, .expires = F.t0 + SEC };
	ck_assert_int_eq(do_write(&w, S("e")), BE_OK);
	nhev = 0;
	while (F.be->ops->sweep(F.be, F.t0 + 2 * SEC, 100, &more) > 0)
		;
	ck_assert_uint_eq(nhev, 1);
	check_hev(0, BE_EV_EXPIRE, "e", 7, 1);
	ck_assert_uint_eq(hevs[0].gen, 0x77);
	fix_close();
}
END_TEST

/* backend_random_id(): never 0, and not the same twice in a row. */
START_TEST(test_random_id)
{
	uint64_t a, b;
	int i;

	for (i = 0; i < 1000; i++) {
		a = backend_random_id();
		b = backend_random_id();
		ck_assert_uint_ne(a, 0);
		ck_assert_uint_ne(a, b);
	}
}
END_TEST

/* Every open of the memory backend is a store without the records of the
 * last one: a new incarnation each time. */
START_TEST(test_mem_incarnation)
{
	uint64_t first;
	char err[256] = "";

	fix_open(_i, 0);
	first = F.be->incarnation;
	F.ops->close(F.be);
	F.be = F.ops->open(&F.cfg, F.base, err, sizeof(err));
	ck_assert_msg(F.be != NULL, "open: %s", err);
	ck_assert_uint_ne(F.be->incarnation, 0);
	ck_assert_uint_ne(F.be->incarnation, first);
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
	struct lease lease;
	int more;

	fix_open(_i, 0);
	ck_assert_int_eq(put(S("k"), 1, "v", 1, F.t0 + 10 * SEC), BE_OK);
	ck_assert_int_eq(get(S("k"), F.t0 + 10 * SEC - 1).kind, BE_ENTRY);
	/* At its expiry time a record is gone. */
	ck_assert_int_eq(lk(S("k"), F.t0 + 10 * SEC, &rec, &lease), 0);
	ck_assert_int_eq(rec.kind, BE_NONE);
	ck_assert(lease.release == NULL);
	if (F.local)
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

	if (!F.local) {		/* the rest: sweeping a store of its own */
		fix_close();
		return;
	}
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
	struct lease l1, l2, l3;
	struct be_record rec;
	uint8_t a[4096], b[5000], c[300];
	const uint8_t *p1;
	int more;

	fix_open(_i, 0);
	tu_fill(a, sizeof(a), 1);
	tu_fill(b, sizeof(b), 2);
	tu_fill(c, sizeof(c), 3);

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
	if (F.local)		/* s3's bucket keeps it until its time */
		ck_assert_int_eq(get(S("s"), clock_now_ns()).kind, BE_NONE);
	ck_assert_uint_eq(l3.len, sizeof(c));
	ck_assert(memcmp(l3.data, c, sizeof(c)) == 0);

	/* And the first lease still, after all that churn. */
	ck_assert(memcmp(l1.data, a, sizeof(a)) == 0);
	lease_release(&l1);
	lease_release(&l2);
	lease_release(&l3);
	lease_release(&l3);		/* idempotent */
	fix_close();
}
END_TEST

/*
 * A write that asks for a lease on what it stores (backend.h, "Leases"):
 * given to done() for a BE_PUT that succeeded, with the bytes written,
 * which it keeps whatever follows; for every other change, nothing. Two
 * writes to one key in flight at once each get their own bytes, and so
 * does one whose entry expired before done().
 */
START_TEST(test_write_lease)
{
	static const enum be_action others[] = { BE_KEEP, BE_TOUCH,
	    BE_PUT_TOMBSTONE };
	struct lease l1, l2, l3, l4, l5;
	struct be_record rec;
	struct be_write bw1, bw2;
	struct wr w, w1, w2;
	uint8_t a[4096], b[5000], c[300], *big;
	size_t biglen = 2 * MIB, i;
	int more;

	fix_open(_i, 0);
	tu_fill(a, sizeof(a), 1);
	tu_fill(b, sizeof(b), 2);
	tu_fill(c, sizeof(c), 3);

	/* Stored and leased in one write; the lease is what a lookup sees. */
	ck_assert_int_eq(put_leased(S("k"), 1, a, sizeof(a), LIVE, 0, &l1),
	    BE_OK);
	rec = get(S("k"), clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 1);
	ck_assert_mem_eq(rec.data, l1.data, sizeof(a));
	/* It keeps its bytes through an update, a delete and a sweep. */
	ck_assert_int_eq(put_leased(S("k"), 2, b, sizeof(b), F.t0 + 10 * SEC,
	    1, &l2), BE_OK);
	ck_assert_int_eq(tomb(S("k"), 2, 0, F.t0 + 10 * SEC), BE_OK);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, F.t0 + 20 * SEC, 10, &more),
	    1);
	if (F.local)		/* s3's bucket keeps it until its time */
		ck_assert_int_eq(get(S("k"), clock_now_ns()).kind, BE_NONE);
	ck_assert_uint_eq(l1.len, sizeof(a));
	ck_assert_mem_eq(l1.data, a, sizeof(a));
	ck_assert_uint_eq(l2.len, sizeof(b));
	ck_assert_mem_eq(l2.data, b, sizeof(b));
	lease_release(&l1);
	lease_release(&l2);

	/* An empty payload: a lease all the same (data not NULL). */
	ck_assert_int_eq(put_leased(S("e"), 1, "", 0, LIVE, 0, &l3), BE_OK);
	ck_assert_ptr_nonnull(l3.data);
	ck_assert_uint_eq(l3.len, 0);
	lease_release(&l3);

	/* A large one, adopted or copied as the backend likes. */
	ck_assert_ptr_nonnull(big = malloc(biglen));
	tu_fill(big, biglen, 4);
	ck_assert_int_eq(put_leased(S("big"), 1, big, biglen, LIVE, 1, &l4),
	    BE_OK);
	ck_assert_int_eq(tomb(S("big"), 1, 0, LIVE), BE_OK);
	ck_assert_uint_eq(l4.len, biglen);
	ck_assert_mem_eq(l4.data, big, biglen);
	lease_release(&l4);
	free(big);

	/* Stored already expired (decide() chose the expiry): no lookup
	 * shows it, the lease still holds the bytes written. */
	ck_assert_int_eq(put_leased(S("x"), 1, c, sizeof(c), 1, 0, &l5),
	    BE_OK);
	ck_assert_int_eq(get(S("x"), clock_now_ns()).kind, BE_NONE);
	ck_assert_mem_eq(l5.data, c, sizeof(c));
	lease_release(&l5);

	/* Two writes to one key in flight together: each its own bytes. */
	w1 = (struct wr){ .action = BE_PUT, .level = 1, .expires = LIVE,
	    .data = a, .len = sizeof(a), .want_lease = 1 };
	w2 = (struct wr){ .action = BE_PUT, .level = 2, .expires = LIVE,
	    .data = b, .len = sizeof(b), .want_lease = 1 };
	start_write(&w1, &bw1, S("two"));
	start_write(&w2, &bw2, S("two"));
	pump_until_done(&w1);
	pump_until_done(&w2);
	ck_assert_int_eq(finish_write(&w1, &bw1), BE_OK);
	ck_assert_int_eq(finish_write(&w2, &bw2), BE_OK);
	ck_assert_int_eq(get(S("two"), clock_now_ns()).level, 2);
	lease_release(&w1.lease);
	lease_release(&w2.lease);

	/* No lease for any other change, nor for a write that did not ask
	 * (finish_write() checks, the lease having been garbage before). */
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		w = (struct wr){ .action = others[i], .level = 3,
		    .expires = LIVE, .want_lease = 1 };
		ck_assert_int_eq(do_write(&w, S("two")), BE_OK);
	}
	ck_assert_int_eq(put(S("plain"), 1, c, sizeof(c), LIVE), BE_OK);
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
	/* Even keys expire sooner, odd ones late: sweeping the even half
	 * removes records from the middle of every probe chain. Sooner is
	 * still far (the sweep passes the time): 10 000 synced writes under
	 * valgrind outlast 10 s, and the lookups run at the real time. */
	for (i = 0; i < NMANY; i++) {
		kl = many_key(key, sizeof(key), i);
		v = (uint32_t)i;
		ck_assert_int_eq(put(key, kl, (uint32_t)i, &v, sizeof(v),
		    i % 2 ? LIVE : F.t0 + 1000 * SEC), BE_OK);
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
		    i % 2 ? LIVE : F.t0 + 1000 * SEC), BE_OK);
	}
	while (more) {
		n = F.be->ops->sweep(F.be, F.t0 + 2000 * SEC, SWEEP_SLICE,
		    &more);
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
	tu_fill(p, sizeof(p), 9);
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

/* A leased write of an adopted buffer leases the payload where it lies in
 * that very buffer (zero copy); a write refused for max_memory leases nothing. */
START_TEST(test_mem_write_lease)
{
	static uint8_t p[64 * 1024];
	struct be_write bw;
	struct lease l;
	struct wr w;
	const uint8_t *kept;

	fix_open(_i, COST(1, sizeof(p)));
	tu_fill(p, sizeof(p), 5);
	w = (struct wr){ .action = BE_PUT, .level = 1, .expires = LIVE,
	    .data = p, .len = sizeof(p), .adopt = 1, .want_lease = 1 };
	start_write(&w, &bw, S("k"));	/* done() inside write() */
	kept = w.adoptbuf + ADOPT_HEAD;
	ck_assert_int_eq(finish_write(&w, &bw), BE_OK);
	ck_assert_int_eq(w.adopted, 1);
	ck_assert_ptr_eq(w.lease.data, kept);
	l = w.lease;
	/* Full: refused, no lease (finish_write() checks); the first
	 * lease is untouched. */
	w = (struct wr){ .action = BE_PUT, .level = 1, .expires = LIVE,
	    .data = p, .len = sizeof(p), .want_lease = 1 };
	ck_assert_int_eq(do_write(&w, S("j")), BE_ERR_FULL);
	ck_assert_int_eq(tomb(S("k"), 1, 0, LIVE), BE_OK);
	ck_assert_mem_eq(l.data, p, sizeof(p));
	lease_release(&l);
	fix_close();
}
END_TEST

/* Expired records not yet swept do not make the store look full. */
START_TEST(test_mem_full_frees_expired)
{
	uint8_t p[100];

	fix_open(_i, COST(2, 100));
	tu_fill(p, sizeof(p), 1);
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

	/* Adoption: a large buffer itself becomes the payload (no copy); a
	 * small one is copied into the blob's own allocation instead (one
	 * allocation per payload, not two: memory per small entry). */
	{
		static uint8_t big[8192];

		tu_fill(big, sizeof(big), 7);
		w = (struct wr){ .action = BE_PUT, .level = 1,
		    .expires = LIVE, .data = big, .len = sizeof(big),
		    .adopt = 1 };
		ck_assert_int_eq(do_write(&w, S("d")), BE_OK);
		ck_assert_int_eq(w.adopted, 1);
		rec = get(S("d"), clock_now_ns());
		ck_assert_uint_eq(rec.len, sizeof(big));
		ck_assert_mem_eq(rec.data, big, sizeof(big));
	}
	w = (struct wr){ .action = BE_PUT, .level = 1, .expires = LIVE,
	    .data = "copied", .len = 6, .adopt = 1 };
	ck_assert_int_eq(do_write(&w, S("e")), BE_OK);
	ck_assert_int_eq(w.adopted, 0);
	rec = get(S("e"), clock_now_ns());
	ck_assert_mem_eq(rec.data, "copied", 6);

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
	struct lease l;
	struct be_record rec;

	fix_open(_i, 0);
	ck_assert_int_eq(put(S("k"), 1, "bytes", 5, LIVE), BE_OK);
	ck_assert_int_eq(lk(S("k"), clock_now_ns(), &rec, &l), 0);
	F.ops->close(F.be);
	F.be = NULL;
	ck_assert_mem_eq(l.data, "bytes", 5);
	lease_release(&l);
	event_base_free(F.base);
	tu_rmtree(F.dir);
}
END_TEST

/* --- memory: incremental growth ------------------------------------------- */

/* backend_memory_test_resize() and _steps(): backend_test.h. */

static const size_t frozen[4] = { 0, 0, 0, 0 };

/*
 * ck_assert*() record a checkpoint per call, a write(2) each: checking
 * every field of thousands of keys dozens of times that way took most of
 * these tests' time (and minutes under valgrind). These test first and
 * call into Check only to fail.
 */
#define GCHECK(c)	do {						\
	if (!(c))							\
		ck_abort_msg("Assertion '%s' failed", #c);		\
} while (0)
#define GCHECK_MSG(c, ...)	do {					\
	if (!(c))							\
		ck_abort_msg(__VA_ARGS__);				\
} while (0)
#define GCHECK_EQ(a, b)	do {						\
	uintmax_t a_ = (uintmax_t)(a), b_ = (uintmax_t)(b);		\
									\
	if (a_ != b_)							\
		ck_abort_msg("Assertion '%s == %s' failed: %ju != %ju",	\
		    #a, #b, a_, b_);					\
} while (0)

/* check_hev(), the same way. */
static void
g_hev(size_t i, enum be_event ev, const char *key, uint32_t level,
    size_t len)
{
	GCHECK(nhev > i);
	GCHECK_MSG(hevs[i].ev == ev && hevs[i].keylen == strlen(key) &&
	    memcmp(hevs[i].key, key, hevs[i].keylen) == 0 &&
	    hevs[i].level == level && hevs[i].len == len,
	    "event %zu: %d %.*s %u %zu, not %d %s %u %zu", i, (int)hevs[i].ev,
	    (int)hevs[i].keylen, (const char *)hevs[i].key,
	    (unsigned)hevs[i].level, hevs[i].len, (int)ev, key,
	    (unsigned)level, len);
}

static size_t
grow_left(void)
{
	return backend_memory_test_resize(F.be, NULL);
}

/* a - b, or 0 when b is larger: the most slots left after a step of b. */
static size_t
sub0(size_t a, size_t b)
{
	return a > b ? a - b : 0;
}

static uint64_t
grow_migrated(void)
{
	uint64_t n;

	backend_memory_test_resize(F.be, &n);
	return n;
}

/*
 * A model of every key the growth tests wrote: the record as stored (an
 * entry past its expiry stays BE_ENTRY until swept), against which each
 * write's decide() view, hook events and every lookup are checked.
 */
struct gk {
	enum be_kind	 kind;
	uint32_t	 level;
	uint64_t	 expires;
	size_t		 len;
	uint32_t	 seed;	/* payload tu_fill(seed) or digest_of(seed) */
};

static struct gk	*G;
static size_t		 ng, gcap;

/* Not an expiry the tests reach by the clock: swept by passing it. */
#define SHORT(s)	(F.t0 + (1000 + (uint64_t)(s)) * SEC)

static size_t
gkey(char *buf, size_t i)
{
	return (size_t)snprintf(buf, 64, "grow-%zu-%.*s", i, (int)(i % 17),
	    "abcdefghijklmnopq");
}

static void
g_reset(void)
{
	free(G);
	G = NULL;
	ng = gcap = 0;
}

static size_t
g_new(void)
{
	if (ng == gcap) {
		gcap = gcap ? gcap * 2 : 1024;
		G = realloc(G, gcap * sizeof(*G));
		GCHECK(G != NULL);
	}
	memset(&G[ng], 0, sizeof(G[ng]));
	return ng++;
}

/* memory completes a write inside write(): no loop to pump, which keeps
 * tens of thousands of writes quick under valgrind. */
static int
mwrite(struct wr *r, const void *key, size_t keylen)
{
	struct be_write w;

	memset(&w, 0, sizeof(w));
	w.key = key;
	w.keylen = keylen;
	w.decide = w_decide;
	w.done = w_done;
	w.arg = r;
	GCHECK_EQ(F.be->ops->write(F.be, &w), 0);
	GCHECK_EQ(r->ndecide, 1);
	GCHECK_EQ(r->ndone, 1);
	GCHECK(w.chg.adopt == NULL);
	return r->err;
}

static int
g_live(const struct gk *g, uint64_t now)
{
	return g->kind != BE_NONE && g->expires > now;
}

/* What decide() saw matches the model as of its `now`. */
static void
g_check_cur(const struct gk *g, const struct be_record *cur, uint64_t now)
{
	uint8_t d[BE_DIGEST_LEN];

	if (!g_live(g, now)) {
		GCHECK_EQ(cur->kind, BE_NONE);
		return;
	}
	GCHECK_EQ(cur->kind, g->kind);
	GCHECK_EQ(cur->level, g->level);
	GCHECK_EQ(cur->expires, g->expires);
	if (g->kind == BE_ENTRY)
		GCHECK_EQ(cur->len, g->len);
	else {
		digest_of(d, (int)g->seed);
		GCHECK(memcmp(cur->digest, d, BE_DIGEST_LEN) == 0);
	}
}

static void
g_put(size_t i, uint32_t level, uint32_t seed, uint64_t expires)
{
	struct gk *g = &G[i];
	uint8_t p[64];
	char key[64];
	size_t kl = gkey(key, i), n0 = nhev, len = seed % 50;
	struct wr w = { .action = BE_PUT, .level = level,
	    .expires = expires, .data = p, .len = len };

	tu_fill(p, len, seed);
	GCHECK_EQ(mwrite(&w, key, kl), BE_OK);
	g_check_cur(g, &w.cur, w.now);
	if (g->kind == BE_ENTRY && g->expires > w.now) {
		GCHECK_EQ(nhev, n0 + 1);
		g_hev(n0, BE_EV_UPDATE, key, level, len);
	} else if (g->kind == BE_ENTRY) {
		GCHECK_EQ(nhev, n0 + 2);
		g_hev(n0, BE_EV_EXPIRE, key, g->level, g->len);
		g_hev(n0 + 1, BE_EV_SET, key, level, len);
	} else {
		GCHECK_EQ(nhev, n0 + 1);
		g_hev(n0, BE_EV_SET, key, level, len);
	}
	*g = (struct gk){ .kind = BE_ENTRY, .level = level,
	    .expires = expires, .len = len, .seed = seed };
}

static void
g_tomb(size_t i, uint32_t level, uint32_t seed, uint64_t expires)
{
	struct gk *g = &G[i];
	char key[64];
	size_t kl = gkey(key, i), n0 = nhev;
	struct wr w = { .action = BE_PUT_TOMBSTONE, .level = level,
	    .expires = expires };

	digest_of(w.digest, (int)seed);
	GCHECK_EQ(mwrite(&w, key, kl), BE_OK);
	g_check_cur(g, &w.cur, w.now);
	if (g->kind == BE_ENTRY) {
		GCHECK_EQ(nhev, n0 + 1);
		g_hev(n0, g->expires > w.now ? BE_EV_DELETE :
		    BE_EV_EXPIRE, key, g->level, g->len);
	} else
		GCHECK_EQ(nhev, n0);
	*g = (struct gk){ .kind = BE_TOMBSTONE, .level = level,
	    .expires = expires, .seed = seed };
}

static void
g_touch(size_t i, uint64_t expires)
{
	struct gk *g = &G[i];
	char key[64];
	size_t kl = gkey(key, i), n0 = nhev;
	struct wr w = { .action = BE_TOUCH, .expires = expires };
	int err = mwrite(&w, key, kl);

	g_check_cur(g, &w.cur, w.now);
	GCHECK_EQ(nhev, n0);		/* not a change */
	if (g->kind == BE_ENTRY && g->expires > w.now) {
		GCHECK_EQ(err, BE_OK);
		g->expires = expires;
	} else
		GCHECK(err != BE_OK);
}

/* Sweep as of `now` in slices of `budget` until nothing expired remains;
 * every EXPIRE names a model entry due by then; tombstones go silently. */
static void
g_sweep(uint64_t now, size_t budget)
{
	char key[64];
	size_t n0 = nhev, freed = 0, n, k, i, due = 0;
	int more = 1;

	for (i = 0; i < ng; i++)
		if (G[i].kind != BE_NONE && G[i].expires <= now)
			due++;
	while (more) {
		n = F.be->ops->sweep(F.be, now, budget, &more);
		GCHECK(n <= budget);
		GCHECK(n > 0 || !more);
		freed += n;
	}
	GCHECK_EQ(freed, due);
	for (k = n0; k < nhev; k++) {
		GCHECK_EQ(hevs[k].ev, BE_EV_EXPIRE);
		GCHECK(hevs[k].keylen < sizeof(key));
		memcpy(key, hevs[k].key, hevs[k].keylen);
		key[hevs[k].keylen] = '\0';
		GCHECK(strncmp(key, "grow-", 5) == 0);
		i = strtoul(key + 5, NULL, 10);
		GCHECK(i < ng);
		GCHECK_EQ(G[i].kind, BE_ENTRY);
		GCHECK(G[i].expires <= now);
		GCHECK_EQ(hevs[k].level, G[i].level);
		GCHECK_EQ(hevs[k].len, G[i].len);
		G[i].kind = BE_NONE;
	}
	for (i = 0; i < ng; i++) {
		if (G[i].kind == BE_NONE || G[i].expires > now)
			continue;
		GCHECK_EQ(G[i].kind, BE_TOMBSTONE);
		G[i].kind = BE_NONE;
	}
}

/* Every key reads as the model says, and the stats add up. */
static void
g_verify(void)
{
	uint8_t p[64], d[BE_DIGEST_LEN];
	struct be_record rec;
	struct lease lease;
	struct be_stats st, want;
	char key[64];
	uint64_t now = clock_now_ns();
	size_t i, kl;
	const struct gk *g;

	memset(&want, 0, sizeof(want));
	for (i = 0; i < ng; i++) {
		g = &G[i];
		kl = gkey(key, i);
		GCHECK_EQ(lk(key, kl, now, &rec, i % 8 ? NULL : &lease), 0);
		if (g->kind == BE_ENTRY) {
			want.entries++;
			want.payload_bytes += g->len;
			want.used_bytes += COST(kl, g->len);
		} else if (g->kind == BE_TOMBSTONE) {
			want.tombstones++;
			want.used_bytes += COST(kl, 0);
		}
		if (!g_live(g, now)) {
			GCHECK_MSG(rec.kind == BE_NONE, "key %zu", i);
			continue;
		}
		GCHECK_MSG(rec.kind == g->kind, "key %zu: kind %d, not %d", i,
		    (int)rec.kind, (int)g->kind);
		GCHECK_EQ(rec.level, g->level);
		GCHECK_EQ(rec.expires, g->expires);
		if (g->kind == BE_TOMBSTONE) {
			digest_of(d, (int)g->seed);
			GCHECK(memcmp(rec.digest, d, BE_DIGEST_LEN) == 0);
			continue;
		}
		GCHECK_EQ(rec.len, g->len);
		tu_fill(p, g->len, g->seed);
		if (g->len > 0)
			GCHECK(memcmp(rec.data, p, g->len) == 0);
		if (i % 8 == 0) {
			GCHECK_EQ(lease.len, g->len);
			lease_release(&lease);
		}
	}
	st = stats();
	GCHECK_EQ(st.entries, want.entries);
	GCHECK_EQ(st.tombstones, want.tombstones);
	GCHECK_EQ(st.payload_bytes, want.payload_bytes);
	GCHECK_EQ(st.used_bytes, want.used_bytes);
}

/* The first write of key i: an entry (live, due at SHORT(), or already
 * expired), or a tombstone. */
static void
g_first(size_t i, size_t nstages)
{
	uint64_t exp = i % 3 == 0 ? SHORT(i % nstages) : LIVE;

	if (i % 13 == 0)
		g_tomb(i, (uint32_t)i, (uint32_t)i, exp);
	else
		g_put(i, (uint32_t)i, (uint32_t)i * 7 + 1,
		    i % 7 == 0 ? 1 + i : exp);
}

/* Migrate exactly n old slots (the steps being frozen around it). */
static void
g_advance(size_t n)
{
	const size_t adv[4] = { n, n, 0, 0 };
	struct be_record rec;

	backend_memory_test_steps(F.be, NULL, adv);
	GCHECK_EQ(lk(S("no-such-key"), clock_now_ns(), &rec, NULL), 0);
	GCHECK_EQ(rec.kind, BE_NONE);
	backend_memory_test_steps(F.be, NULL, frozen);
}

/*
 * Lookups, overwrites, deletes (tombstones), touches, new keys and expiry
 * sweeps while a growth is stopped at chosen points of its migration: at
 * the start, after one slot, and at arbitrary points that mostly fall in
 * the middle of a probe cluster (where records after the cursor have their
 * home slot before it), down to the last slot. The model is checked
 * against every key before and after each batch. Each round has a new
 * hash key, so a new layout of the table.
 */
#define GSTAGES	28
#define GROUNDS	3

static void
grow_interleaved(int be)
{
	/*
	 * Migrated old slots at each stage, in 4096ths of the old table;
	 * closely spaced at first, where a cluster that wrapped around the
	 * end of the table would be cut if the migration started at slot 0.
	 */
	static const size_t at[GSTAGES] = { 0, 1, 2, 3, 4, 6, 9, 13, 37, 200,
	    351, 511, 700, 901, 1201, 1501, 1777, 2001, 2222, 2503, 2750, 3001,
	    3301, 3499, 3701, 3901, 4094, 4095 };
	size_t defaults[4], oldcap, done = 0, target, st, j, i, left;
	uint32_t lvl;

	fix_open(be, 0);
	g_reset();
	backend_memory_test_steps(F.be, defaults, frozen);
	/* Frozen, each growth finishes the previous one in one go, so the
	 * last one starts from a table holding every key. */
	do {
		GCHECK(ng < 100000);
		g_first(g_new(), GSTAGES);
	} while (grow_left() < 4096);
	oldcap = grow_left();
	/* Some keys only in the new table; far below its next growth. */
	for (j = 0; j < oldcap / 5; j++)
		g_first(g_new(), GSTAGES);
	GCHECK_EQ(grow_left(), oldcap);
	g_verify();

	for (st = 0; st < GSTAGES; st++) {
		target = at[st] * oldcap / 4096;
		g_advance(target - done);
		done = target;
		/* Or done early: the slots left were all empty (the old table
		 * holds no record any more), which only the last few stops
		 * can meet. */
		left = grow_left();
		GCHECK(left == oldcap - done ||
		    (left == 0 && st + 3 >= GSTAGES));
		g_verify();
		for (j = 0; j < 32; j++) {
			i = (st * 7919 + j * 104729) % ng;
			lvl = (uint32_t)(st * 1000 + j);
			switch ((j + st) % 6) {
			case 0:
				g_put(i, lvl, lvl * 3, j % 4 ? LIVE :
				    SHORT(st + 1 + j % 3));
				break;
			case 1:
				g_tomb(i, lvl, lvl, j % 2 ? LIVE :
				    SHORT(st + 1));
				break;
			case 2:
				g_touch(i, LIVE + j);
				break;
			case 3:
				g_put(g_new(), lvl, lvl, LIVE);
				break;
			case 4:
				/* Already expired: swept, or overwritten
				 * (EXPIRE, then SET). */
				g_put(i, lvl, lvl, 2);
				break;
			default:
				g_touch(i, SHORT(st + 2));
				break;
			}
		}
		/* Frees records from both tables, from the middle of the
		 * old table's clusters too. */
		g_sweep(SHORT(st), 5);
		GCHECK_EQ(grow_left(), left);	/* still frozen */
		g_verify();
	}

	/* Unfrozen: one lookup migrates the last slot. */
	backend_memory_test_steps(F.be, NULL, defaults);
	GCHECK(grow_left() <= 1);
	get(S("no-such-key"), clock_now_ns());
	GCHECK_EQ(grow_left(), 0);
	g_verify();
	g_sweep(FAR, 100);
	g_verify();
	for (i = 0; i < ng; i++)
		GCHECK_EQ(G[i].kind, BE_NONE);
	GCHECK_EQ(stats().used_bytes, 0);
	g_reset();
	fix_close();
}

START_TEST(test_mem_grow_interleaved)
{
	int round;

	for (round = 0; round < GROUNDS; round++)
		grow_interleaved(_i);
}
END_TEST

/*
 * With the shipped steps: no single write, lookup or sweep migrates more
 * than its bound, each makes progress, and a sweeper that finds nothing to
 * expire still finishes the growth. The table is large enough (32768 old
 * slots, 256 KiB) to be mapped, so that its pages are given back as the
 * migration empties them.
 */
START_TEST(test_mem_grow_bounded)
{
	struct be_record rec;
	size_t steps[4], left, left0, oldcap = 0, j, i, sweeps;
	uint64_t m0;
	int more;

	fix_open(_i, 0);
	g_reset();
	backend_memory_test_steps(F.be, steps, NULL);
	GCHECK(steps[0] > 0);
	GCHECK(steps[1] >= steps[0]);
	GCHECK(steps[2] > 0);
	GCHECK(steps[3] >= steps[2]);
	/* Every write while filling: bounded, through several growths. */
	do {
		GCHECK(ng < 100000);
		left0 = grow_left();
		m0 = grow_migrated();
		i = g_new();
		g_put(i, (uint32_t)i, (uint32_t)i, i % 5 ? LIVE : SHORT(0));
		left = grow_left();
		GCHECK(grow_migrated() - m0 <= steps[1]);
		if (left > left0)
			oldcap = left;		/* a growth started */
		else if (left0 > 0)
			GCHECK(left <= sub0(left0, steps[0]));
	} while (oldcap < 32768);
	/* The write that started it rehashed nothing of the new growth. */
	GCHECK_EQ(grow_left(), oldcap);

	/* Interleaved lookups, overwrites, deletes and new keys. */
	for (j = 0; j < 24 && (left0 = grow_left()) > 0; j++) {
		m0 = grow_migrated();
		i = (j * 7919) % ng;
		switch (j % 4) {
		case 0:
			rec = get(S("no-such-key"), clock_now_ns());
			GCHECK_EQ(rec.kind, BE_NONE);
			break;
		case 1:
			g_put(i, (uint32_t)j, (uint32_t)j, LIVE);
			break;
		case 2:
			g_tomb(i, (uint32_t)j, (uint32_t)j, LIVE);
			break;
		default:
			g_put(g_new(), (uint32_t)j, (uint32_t)j, LIVE);
			break;
		}
		GCHECK(grow_migrated() - m0 <= steps[1]);
		GCHECK(grow_left() <= sub0(left0, steps[0]));
	}
	GCHECK(grow_left() > 0);	/* still growing */

	/* Idle but for the sweeper: it finishes. */
	for (sweeps = 0; (left0 = grow_left()) > 0; sweeps++) {
		GCHECK(sweeps <= oldcap / steps[2]);
		m0 = grow_migrated();
		more = -1;
		GCHECK_EQ(F.be->ops->sweep(F.be, clock_now_ns(),
		    SWEEP_SLICE, &more), 0);
		GCHECK_EQ(more, 0);
		GCHECK(grow_migrated() - m0 <= steps[3]);
		GCHECK(grow_left() <= sub0(left0, steps[2]));
	}
	g_verify();
	g_sweep(SHORT(0), SWEEP_SLICE);
	g_verify();
	g_reset();
	fix_close();
}
END_TEST

/* An old table that the sweeper emptied before the migration reached its
 * records is not walked slot by slot: the next operation ends it. */
START_TEST(test_mem_grow_emptied)
{
	size_t defaults[4], j, i;
	uint64_t m0;

	fix_open(_i, 0);
	g_reset();
	backend_memory_test_steps(F.be, defaults, frozen);
	do {
		GCHECK(ng < 100000);
		i = g_new();
		g_put(i, 1, (uint32_t)i, SHORT(0));
	} while (grow_left() < 4096);
	for (j = 0; j < 100; j++) {
		i = g_new();
		if (j % 2)
			g_put(i, 2, (uint32_t)i, LIVE);
		else
			g_tomb(i, 2, (uint32_t)i, LIVE);
	}
	g_sweep(SHORT(0), 64);
	GCHECK_EQ(grow_left(), 4096);
	g_verify();
	backend_memory_test_steps(F.be, NULL, defaults);
	m0 = grow_migrated();
	get(S("no-such-key"), clock_now_ns());
	GCHECK_EQ(grow_left(), 0);
	GCHECK_EQ(grow_migrated(), m0);	/* nothing to move */
	g_verify();
	GCHECK_EQ(stats().entries, 50);
	GCHECK_EQ(stats().tombstones, 50);
	g_reset();
	fix_close();
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

/* --- memory: LRU eviction (node mode) ------------------------------------- */

/*
 * With `mode node` the memory backend evicts instead of refusing: a PUT
 * that would pass max_memory first frees expired records, then evicts live
 * entries from the least recently used end (reported BE_EV_EVICT) until it
 * fits; an entry larger than the whole budget is refused as before, with
 * nothing evicted. A lookup that takes a lease makes the entry the most
 * recently used; one without a lease does not.
 */
static void
lru_open(int i, uint64_t max_memory)
{
	char err[256] = "";

	fix_open(i, max_memory);
	F.ops->close(F.be);
	F.cfg.mode = MODE_NODE;
	F.be = F.ops->open(&F.cfg, F.base, err, sizeof(err));
	ck_assert_msg(F.be != NULL, "open: %s", err);
	backend_set_hook(F.be, hook, NULL);
	nhev = 0;
}

static void
lru_touch(const char *key)
{
	struct be_record rec;
	struct lease l;

	ck_assert_int_eq(lk(S(key), clock_now_ns(), &rec, &l), 0);
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	lease_release(&l);
}

static int
lru_held(const char *key)
{
	return get(S(key), clock_now_ns()).kind == BE_ENTRY;
}

START_TEST(test_lru_evicts_least_recent)
{
	uint8_t p[200];
	uint64_t max = 3 * COST(2, 100);
	struct be_stats st;

	lru_open(_i, max);
	tu_fill(p, sizeof(p), 3);
	ck_assert_int_eq(put(S("k1"), 1, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k2"), 2, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k3"), 3, p, 100, LIVE), BE_OK);
	ck_assert_uint_eq(stats().used_bytes, max);
	lru_touch("k1");		/* k2, k3, k1 */
	ck_assert(lru_held("k2"));	/* no lease: no touch */
	nhev = 0;
	ck_assert_int_eq(put(S("k4"), 4, p, 100, LIVE), BE_OK);
	ck_assert_uint_eq(nhev, 2);
	check_hev(0, BE_EV_EVICT, "k2", 2, 100);
	check_hev(1, BE_EV_SET, "k4", 4, 100);
	ck_assert(!lru_held("k2"));
	ck_assert(lru_held("k1") && lru_held("k3") && lru_held("k4"));
	st = stats();
	ck_assert_uint_eq(st.entries, 3);
	ck_assert_uint_eq(st.payload_bytes, 300);
	ck_assert_uint_eq(st.used_bytes, max);

	/* A larger entry evicts as many as it needs, least recent first. */
	lru_touch("k3");		/* k1, k4, k3 */
	nhev = 0;
	ck_assert_int_eq(put(S("k5"), 5, p, 200, LIVE), BE_OK);
	ck_assert_uint_eq(nhev, 3);
	check_hev(0, BE_EV_EVICT, "k1", 1, 100);
	check_hev(1, BE_EV_EVICT, "k4", 4, 100);
	check_hev(2, BE_EV_SET, "k5", 5, 200);
	ck_assert(lru_held("k3") && lru_held("k5"));
	ck_assert_uint_eq(stats().used_bytes, COST(2, 100) + COST(2, 200));
	ck_assert_uint_eq(stats().entries, 2);
	fix_close();
}
END_TEST

START_TEST(test_lru_oversize_refused)
{
	uint8_t p[1000];
	uint64_t max = 2 * COST(2, 100);
	struct be_stats st0;
	struct wr w;

	lru_open(_i, max);
	tu_fill(p, sizeof(p), 4);
	ck_assert_int_eq(put(S("k1"), 1, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k2"), 1, p, 100, LIVE), BE_OK);
	st0 = stats();
	nhev = 0;
	/* One byte over the whole budget: refused, nothing evicted, the
	 * buffer not adopted. */
	w = (struct wr){ .action = BE_PUT, .level = 1, .expires = LIVE,
	    .data = p, .len = max - COST(2, 0) + 1, .adopt = 1 };
	ck_assert_int_eq(do_write(&w, S("k3")), BE_ERR_FULL);
	ck_assert_int_eq(w.adopted, 0);
	ck_assert_uint_eq(nhev, 0);
	ck_assert(lru_held("k1") && lru_held("k2") && !lru_held("k3"));
	ck_assert_uint_eq(stats().used_bytes, st0.used_bytes);
	/* Exactly the budget fits, evicting everything else. */
	ck_assert_int_eq(put(S("k3"), 1, p, max - COST(2, 0), LIVE), BE_OK);
	ck_assert_uint_eq(nhev, 3);
	check_hev(0, BE_EV_EVICT, "k1", 1, 100);
	check_hev(1, BE_EV_EVICT, "k2", 1, 100);
	ck_assert_uint_eq(stats().used_bytes, max);
	ck_assert_uint_eq(stats().entries, 1);
	fix_close();
}
END_TEST

/* Replacing an entry never evicts that entry; a leased entry's bytes
 * outlive its eviction. */
START_TEST(test_lru_replace_and_lease)
{
	uint8_t p1[300], p2[300], p3[300];
	uint64_t max = 3 * COST(2, 100);
	struct be_record rec;
	struct lease l;

	lru_open(_i, max);
	tu_fill(p1, sizeof(p1), 5);
	tu_fill(p2, sizeof(p2), 6);
	tu_fill(p3, sizeof(p3), 7);
	ck_assert_int_eq(put(S("k1"), 1, p1, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k2"), 1, p2, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k3"), 1, p3, 100, LIVE), BE_OK);
	ck_assert_int_eq(lk(S("k1"), clock_now_ns(), &rec, &l), 0);
	/* k2 (least recent) grows: k3 goes, not k2. */
	nhev = 0;
	ck_assert_int_eq(put(S("k2"), 2, p2, 200, LIVE), BE_OK);
	ck_assert_uint_eq(nhev, 2);
	check_hev(0, BE_EV_EVICT, "k3", 1, 100);
	check_hev(1, BE_EV_UPDATE, "k2", 2, 200);
	/* k1 (leased, least recent now) is evicted; its bytes stay. */
	nhev = 0;
	ck_assert_int_eq(put(S("k4"), 1, p3, 150, LIVE), BE_OK);
	check_hev(0, BE_EV_EVICT, "k1", 1, 100);
	ck_assert(!lru_held("k1"));
	ck_assert_uint_eq(l.len, 100);
	ck_assert_mem_eq(l.data, p1, 100);
	lease_release(&l);
	ck_assert(lru_held("k4"));
	fix_close();
}
END_TEST

START_TEST(test_lru_reconfigure_tombstones_central)
{
	uint8_t p[100];
	struct config cfg;
	uint64_t max = 2 * COST(2, 100);
	int more;

	lru_open(_i, 0);		/* no limit */
	tu_fill(p, sizeof(p), 8);
	ck_assert_int_eq(put(S("k1"), 1, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k2"), 1, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k3"), 1, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k4"), 1, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k5"), 1, p, 100, LIVE), BE_OK);
	lru_touch("k1");		/* k2, k3, k4, k5, k1 */
	/* A lower budget evicts at once, least recent first. */
	nhev = 0;
	cfg = F.cfg;
	cfg.max_memory = max;
	F.ops->reconfigure(F.be, &cfg);
	ck_assert_uint_eq(nhev, 3);
	check_hev(0, BE_EV_EVICT, "k2", 1, 100);
	check_hev(1, BE_EV_EVICT, "k3", 1, 100);
	check_hev(2, BE_EV_EVICT, "k4", 1, 100);
	ck_assert_uint_eq(stats().used_bytes, max);
	/* An entry that became a tombstone (the node drops a copy with one
	 * that is expired at once) leaves the LRU order; expired records go
	 * before any live entry is evicted. */
	ck_assert_int_eq(tomb(S("k5"), 1, 0, clock_now_ns()), BE_OK);
	ck_assert(!lru_held("k5"));
	nhev = 0;
	ck_assert_int_eq(put(S("k6"), 1, p, 100, LIVE), BE_OK);
	ck_assert_uint_eq(hook_count(BE_EV_EVICT), 0);
	ck_assert(lru_held("k1") && lru_held("k6"));
	ck_assert_uint_eq(stats().used_bytes, max);
	ck_assert_uint_eq(stats().tombstones, 0);
	/* Expiry and sweeping keep the order consistent. */
	ck_assert_int_eq(put(S("k7"), 1, p, 100, F.t0 + 1), BE_OK);
	F.ops->sweep(F.be, clock_now_ns(), 100, &more);
	ck_assert_uint_eq(hook_count(BE_EV_EXPIRE), 1);
	ck_assert_int_eq(put(S("k8"), 1, p, 100, LIVE), BE_OK);
	ck_assert_uint_eq(stats().entries, 2);
	fix_close();

	/* Central (no mode node): the same budget refuses, as before. */
	fix_open(_i, max);
	ck_assert_int_eq(put(S("k1"), 1, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k2"), 1, p, 100, LIVE), BE_OK);
	ck_assert_int_eq(put(S("k3"), 1, p, 100, LIVE), BE_ERR_FULL);
	ck_assert_uint_eq(hook_count(BE_EV_EVICT), 0);
	cfg = F.cfg;
	cfg.max_memory = COST(2, 100);
	F.ops->reconfigure(F.be, &cfg);
	ck_assert(lru_held("k1") && lru_held("k2"));
	fix_close();
}
END_TEST

/* --- Scans (the change feed's snapshot) ----------------------------------- */

#define NSCAN	600

/* What a scan visited: per key index, visits and the last level seen. */
static struct {
	int		 visits[NSCAN + 100];
	uint32_t	 level[NSCAN + 100];
	size_t		 total, strangers;
	size_t		 len_bad, exp_bad;
	int		 deleted[NSCAN + 100];
	size_t		 after_delete;	/* visits of a key after its delete */
} SV;

static int
scan_key_index(const uint8_t *key, size_t keylen)
{
	char buf[32];
	int i;

	if (keylen < 6 || keylen >= sizeof(buf) || memcmp(key, "scan-", 5) != 0)
		return -1;
	memcpy(buf, key, keylen);
	buf[keylen] = '\0';
	i = atoi(buf + 5);
	return i >= 0 && i < NSCAN + 100 ? i : -1;
}

static void
scan_fn(void *arg, const uint8_t *key, size_t keylen, uint32_t level,
    uint64_t gen, uint64_t inc, uint64_t expires, size_t len)
{
	int i = scan_key_index(key, keylen);

	(void)arg;
	SV.total++;
	if (i < 0) {
		SV.strangers++;
		return;
	}
	SV.visits[i]++;
	SV.level[i] = level;
	if (SV.deleted[i])
		SV.after_delete++;
	if (len != (size_t)(i % 13))
		SV.len_bad++;
	if (expires <= clock_now_ns())
		SV.exp_bad++;
}

static int
scan_put(int i, uint32_t level, uint64_t expires)
{
	char key[32], data[16] = "0123456789abcdef";

	snprintf(key, sizeof(key), "scan-%d", i);
	return put(key, strlen(key), level, data, (size_t)(i % 13), expires);
}

static int
scan_step(struct be_scan *sc, size_t budget)
{
	return scan_run(sc, budget, scan_fn, NULL);
}

/* Run the cursor to its end in slices of `budget`; returns the slices. */
static size_t
scan_all(struct be_scan *sc, size_t budget)
{
	size_t slices = 0, before;
	int rv;

	do {
		before = SV.total;
		rv = scan_step(sc, budget);
		ck_assert_uint_le(SV.total - before, budget);
		ck_assert_uint_lt(++slices, 100000);
	} while (rv == 1);
	return slices;
}

/* Live entries only (no tombstones, nothing expired), each exactly once
 * when nothing is written during the scan, in slices of the budget. */
START_TEST(test_scan_live_entries)
{
	struct be_scan *sc;
	char key[32];
	uint64_t soon = 0;
	int i;

	fix_open(_i, 0);
	memset(&SV, 0, sizeof(SV));
	/* Empty: one call, the end. */
	ck_assert_ptr_nonnull(sc = F.ops->scan_open(F.be));
	ck_assert_int_eq(scan_step(sc, 10), 0);
	F.ops->scan_close(F.be, sc);
	ck_assert_uint_eq(SV.total, 0);
	for (i = 0; i < NSCAN; i++) {
		uint64_t exp = i % 10 == 1 ? clock_now_ns() + SEC / 2 : LIVE;

		if (i % 10 == 1 && exp > soon)
			soon = exp;
		ck_assert_int_eq(scan_put(i, (uint32_t)i + 1, exp), BE_OK);
	}
	for (i = 0; i < NSCAN; i += 10) {	/* every tenth: a tombstone */
		snprintf(key, sizeof(key), "scan-%d", i);
		ck_assert_int_eq(tomb(key, strlen(key), (uint32_t)i + 1, i,
		    LIVE), BE_OK);
	}
	ck_assert_int_eq(tomb(S("tomb-only"), 3, 1, LIVE), BE_OK);
	/* i % 10 == 1 expires half a second after it was written: scanned
	 * after the last of them (a store that keeps wall-clock times may
	 * round them up to its millisecond; the writes may have been slow). */
	while (clock_now_ns() < soon + 10 * NS_PER_MS)
		event_base_loop(F.base, EVLOOP_NONBLOCK);
	ck_assert_ptr_nonnull(sc = F.ops->scan_open(F.be));
	ck_assert_uint_ge(scan_all(sc, 7), NSCAN * 8 / 10 / 7);
	F.ops->scan_close(F.be, sc);
	for (i = 0; i < NSCAN; i++) {
		if (i % 10 == 0 || i % 10 == 1)
			ck_assert_msg(SV.visits[i] == 0, "scan-%d visited", i);
		else {
			ck_assert_msg(SV.visits[i] == 1, "scan-%d visited %d "
			    "times", i, SV.visits[i]);
			ck_assert_uint_eq(SV.level[i], (uint32_t)i + 1);
		}
	}
	ck_assert_uint_eq(SV.strangers, 0);
	ck_assert_uint_eq(SV.len_bad, 0);
	ck_assert_uint_eq(SV.exp_bad, 0);
	ck_assert_uint_eq(SV.total, NSCAN * 8 / 10);
	fix_close();
}
END_TEST

/* Writes between slices: every entry live and untouched throughout is
 * visited (at least once), a deleted one is not visited after its
 * delete, an updated one shows a level it had, and the scan ends. */
START_TEST(test_scan_with_writes)
{
	struct be_scan *sc, *other;
	char key[32];
	int i, rv, slices = 0, step = 0;

	fix_open(_i, 0);
	memset(&SV, 0, sizeof(SV));
	for (i = 0; i < NSCAN; i++)
		ck_assert_int_eq(scan_put(i, 1, LIVE), BE_OK);
	ck_assert_ptr_nonnull(sc = F.ops->scan_open(F.be));
	/* A second cursor closed half-way must not disturb the first. */
	ck_assert_ptr_nonnull(other = F.ops->scan_open(F.be));
	do {
		rv = scan_step(sc, 20);
		if (other != NULL && slices == 3) {
			F.ops->scan_close(F.be, other);
			other = NULL;
		}
		/* Between slices: update multiples of 7, delete multiples
		 * of 11, add new keys, ten writes per slice. */
		for (i = 0; i < 10 && step < NSCAN + 100; i++, step++) {
			if (step >= NSCAN)
				ck_assert_int_eq(scan_put(step, 1, LIVE), BE_OK);
			else if (step % 11 == 0) {
				snprintf(key, sizeof(key), "scan-%d", step);
				ck_assert_int_eq(tomb(key, strlen(key), 1,
				    step, LIVE), BE_OK);
				SV.deleted[step] = 1;
			} else if (step % 7 == 0)
				ck_assert_int_eq(scan_put(step, 2, LIVE), BE_OK);
		}
		ck_assert_int_lt(++slices, 10000);
	} while (rv == 1);
	F.ops->scan_close(F.be, sc);
	for (i = 0; i < NSCAN; i++) {
		if (!SV.deleted[i] && (i % 7 != 0 || i >= step))
			ck_assert_msg(SV.visits[i] >= 1, "scan-%d missed", i);
		if (SV.visits[i] > 0)
			ck_assert(SV.level[i] == 1 || SV.level[i] == 2);
	}
	ck_assert_uint_eq(SV.strangers, 0);
	ck_assert_uint_eq(SV.after_delete, 0);
	ck_assert_int_gt(step, 100);	/* writes did happen meanwhile */
	fix_close();
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("backend");
	TCase *tc;
	int i, mem = -1, rv;

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
		tcase_add_loop_test(tc, test_generation, i, i + 1);
		tcase_add_loop_test(tc, test_expired_reads_none, i, i + 1);
		tcase_add_loop_test(tc, test_lease, i, i + 1);
		tcase_add_loop_test(tc, test_write_lease, i, i + 1);
		tcase_add_loop_test(tc, test_decide_done_once, i, i + 1);
		tcase_add_loop_test(tc, test_binary_keys, i, i + 1);
		tcase_add_loop_test(tc, test_scan_live_entries, i, i + 1);
		tcase_add_loop_test(tc, test_scan_with_writes, i, i + 1);
		/* A store of its own, swept by the backend (not s3's bucket,
		 * yet), and 10 000 keys. */
		if (strcmp(backend_all[i]->name, "s3") != 0) {
			tcase_add_loop_test(tc, test_sweep_budget, i, i + 1);
			tcase_add_loop_test(tc, test_sweep_order, i, i + 1);
			tcase_add_loop_test(tc, test_tombstone_expiry_silent,
			    i, i + 1);
			tcase_add_loop_test(tc, test_stats, i, i + 1);
			tcase_add_loop_test(tc, test_many_keys, i, i + 1);
			tcase_add_loop_test(tc, test_sweeper_timer, i, i + 1);
		} else
			s3url = tu_fakes3_start();
		suite_add_tcase(s, tc);
		if (strcmp(backend_all[i]->name, "memory") == 0)
			mem = i;
	}

	tc = tcase_create("memory-specific");
	tcase_set_timeout(tc, 10);
	if (mem >= 0) {
		tcase_add_loop_test(tc, test_mem_max_memory, mem, mem + 1);
		tcase_add_loop_test(tc, test_mem_write_lease, mem, mem + 1);
		tcase_add_loop_test(tc, test_mem_full_frees_expired, mem,
		    mem + 1);
		tcase_add_loop_test(tc, test_mem_accounting, mem, mem + 1);
		tcase_add_loop_test(tc, test_mem_lease_outlives_close, mem,
		    mem + 1);
	}
	if (mem >= 0)
		tcase_add_loop_test(tc, test_mem_incarnation, mem, mem + 1);
	tcase_add_test(tc, test_registry);
	tcase_add_test(tc, test_random_id);
	suite_add_tcase(s, tc);

	/* Tens of thousands of writes, every key checked dozens of times:
	 * a fraction of a second, half a minute under valgrind. */
	tc = tcase_create("memory-growth");
	tcase_set_timeout(tc, 60);
	if (mem >= 0) {
		tcase_add_loop_test(tc, test_mem_grow_interleaved, mem,
		    mem + 1);
		tcase_add_loop_test(tc, test_mem_grow_bounded, mem, mem + 1);
		tcase_add_loop_test(tc, test_mem_grow_emptied, mem, mem + 1);
	}
	suite_add_tcase(s, tc);

	/* Node mode's eviction policy (a separate TCase: memory only). */
	tc = tcase_create("memory-lru");
	tcase_set_timeout(tc, 10);
	if (mem >= 0) {
		tcase_add_loop_test(tc, test_lru_evicts_least_recent, mem,
		    mem + 1);
		tcase_add_loop_test(tc, test_lru_oversize_refused, mem,
		    mem + 1);
		tcase_add_loop_test(tc, test_lru_replace_and_lease, mem,
		    mem + 1);
		tcase_add_loop_test(tc, test_lru_reconfigure_tombstones_central,
		    mem, mem + 1);
	}
	suite_add_tcase(s, tc);

	rv = tu_run(s);
	tu_fakes3_stop();
	return rv;
}
