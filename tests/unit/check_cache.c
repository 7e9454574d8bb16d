/*
 * check_cache.c: unit tests of the cache rules of spec §4 (src/svc/rules.c):
 * session_id validation, TTL defaulting and clamping, the Set, Update
 * and Delete decisions with their tombstones, and the Get reply.
 *
 * The decisions are driven the way the daemon drives them: a struct
 * be_write whose decide() runs cache_decide_set/update/delete on the
 * record the backend presents, through be->ops->write(), for every backend
 * in backend_all[] (one TCase per backend, named after it), so a future
 * backend is covered by being listed there. The result is checked twice:
 * the verdict (status and exact message text of the spec) and the stored
 * record, read back through backend_lookup() (kind, level, payload bytes,
 * expiry, tombstone digest). The refusals are one table, refusals[]: each
 * row a state made by its setup writes and the write that must be refused,
 * which must also leave the record as it was.
 *
 * Rules that depend on time (a tombstone or entry that expired) are checked
 * both through the backend (short TTLs and a real wait) and on the pure
 * decide functions with hand-made records. Validation and purity tests do
 * not need a backend and live in the "rules" TCase.
 *
 * Backend s3 runs against fakes3.py, started once by main(), with a prefix
 * of its own per test; it answers lookups later (the loop is pumped) and
 * may decide() again after a lost race.
 */
#define _XOPEN_SOURCE 700

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>
#include <openssl/sha.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "google/protobuf/duration.pb-c.h"

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "grpc.h"
#include "rules.h"
#include "sdwire.h"
#include "testutil.h"

#define SEC		NS_PER_SEC
#define MS		NS_PER_MS
#define MIB		(1024 * 1024)
#define LOOP_DEADLINE	(10 * SEC)
/* How far a stored expiry may be from the one decided: a backend that keeps
 * wall-clock times may round at its boundary (backend.h). The TTLs below
 * differ by seconds, so this cannot hide a TTL that did not restart. */
#define EXP_SLACK	(1 * MS)
#define LONG_TTL	(600 * SEC)
#define SHORT_TTL	(5 * SEC)
#define SNAP_MAX	1024
#define LVL_MAX		UINT32_MAX	/* 4294967295 */

typedef void decide_fn(const struct cache_req *, const struct be_record *,
    uint64_t, struct be_change *, struct cache_verdict *);

#define K(s)		(const uint8_t *)(s), strlen(s)

/* --- Fixture -------------------------------------------------------------- */

static struct {
	const struct backend_ops *ops;
	struct event_base	*base;
	struct backend		*be;
	struct config		 cfg;
	char			 dir[256];
	char			 prefix[64];	/* s3: this test's */
} F;

static const char *s3url;	/* fakes3.py's, when backend s3 is listed */

static void
fix_close(void)
{
	if (F.be != NULL)
		F.ops->close(F.be);
	if (F.base != NULL)
		event_base_free(F.base);
	if (F.dir[0] != '\0')
		tu_rmtree(F.dir);
	memset(&F, 0, sizeof(F));
}

/* A zeroed config with only what backends read, set by hand (the lmdb
 * fields for the sake of a future lmdb backend). */
static void
fix_open(int i)
{
	char err[256] = "";

	fix_close();
	F.ops = backend_all[i];
	ck_assert_ptr_nonnull(F.ops);
	snprintf(F.dir, sizeof(F.dir), "%s/check_cache.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(F.dir));
	F.cfg.mode = MODE_CENTRAL;
	F.cfg.backend = (char *)F.ops->name;
	F.cfg.lmdb_path = F.dir;
	F.cfg.lmdb_map_size = 256ULL * MIB;
	F.cfg.lmdb_max_readers = 126;
	F.cfg.lmdb_full_ratio = 90;
	F.cfg.max_memory = 64ULL * MIB;
	F.cfg.default_ttl = 600000;	/* ms */
	F.cfg.max_ttl = 600000;
	F.cfg.sweep_interval = 100;
	if (strcmp(F.ops->name, "s3") == 0) {
		static unsigned n;

		ck_assert_msg(s3url != NULL, "fakes3.py did not start");
		snprintf(F.prefix, sizeof(F.prefix), "c%d-%u-%llu/",
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
}

/* --- Writes through the backend ------------------------------------------ */

/* One cache write as the daemon runs it, and what the test saw of it. */
struct cw {
	decide_fn		*fn;
	struct cache_req	 r;
	struct cache_verdict	 v;
	struct be_change	 chg;	/* as decided */
	struct be_record	 cur;	/* as decide() saw it (data: NULL) */
	uint64_t		 now;	/* the `now` decide() was given */
	int			 ndecide, ndone, err;
	char			 errmsg[160];
};

static void
cw_decide(void *arg, const struct be_record *cur, uint64_t now,
    struct be_change *chg)
{
	struct cw *c = arg;

	c->ndecide++;
	c->now = now;
	c->cur = *cur;
	c->cur.data = NULL;	/* valid only during the call */
	c->fn(&c->r, cur, now, chg, &c->v);
	c->chg = *chg;
}

static void
cw_done(void *arg, int err, const char *msg)
{
	struct cw *c = arg;

	c->ndone++;
	c->err = err;
	if (msg != NULL)
		snprintf(c->errmsg, sizeof(c->errmsg), "%s", msg);
}

/* Write and wait for done() (it may come later, from the loop). */
static struct cw
wr(decide_fn *fn, const uint8_t *key, size_t keylen, uint32_t level,
    const void *data, size_t len, uint64_t ttl)
{
	struct be_write w;
	struct cw c;
	uint64_t deadline;
	int i;

	memset(&c, 0, sizeof(c));
	c.fn = fn;
	c.r.key = key;
	c.r.keylen = keylen;
	c.r.has_level = fn != cache_decide_delete;
	c.r.level = c.r.has_level ? level : 0;
	c.r.data = data;
	c.r.len = len;
	c.r.ttl_ns = ttl;
	/* A decide that forgets to fill the verdict shows. */
	c.v.status = -1;
	snprintf(c.v.msg, sizeof(c.v.msg), "(verdict not filled)");

	memset(&w, 0, sizeof(w));
	w.key = key;
	w.keylen = keylen;
	w.decide = cw_decide;
	w.done = cw_done;
	w.arg = &c;
	ck_assert_int_eq(F.be->ops->write(F.be, &w), 0);
	deadline = clock_now_ns() + LOOP_DEADLINE;
	while (c.ndone == 0 && clock_now_ns() < deadline)
		event_base_loop(F.base, EVLOOP_ONCE);
	for (i = 0; i < 3; i++)
		event_base_loop(F.base, EVLOOP_NONBLOCK);
	/* Once, or again after a lost race (backend.h). */
	if (strcmp(F.ops->name, "s3") == 0)
		ck_assert_int_ge(c.ndecide, 1);
	else
		ck_assert_int_eq(c.ndecide, 1);
	ck_assert_int_eq(c.ndone, 1);
	ck_assert_msg(c.err == BE_OK, "%s: write failed: %d %s", F.ops->name,
	    c.err, c.errmsg);
	/* adopt was never offered: nothing to free. */
	ck_assert_ptr_null(w.chg.adopt);
	return c;
}

static struct cw
set_(const uint8_t *key, size_t keylen, uint32_t level, const void *data,
    size_t len, uint64_t ttl)
{
	return wr(cache_decide_set, key, keylen, level, data, len, ttl);
}

static struct cw
upd_(const uint8_t *key, size_t keylen, uint32_t level, const void *data,
    size_t len, uint64_t ttl)
{
	return wr(cache_decide_update, key, keylen, level, data, len, ttl);
}

static struct cw
del_(const uint8_t *key, size_t keylen)
{
	return wr(cache_decide_delete, key, keylen, 0, NULL, 0, 0);
}

/* With a NUL-terminated key and payload. */
#define SET(k, l, d, t)	set_(K(k), (l), (d), strlen(d), (t))
#define UPD(k, l, d, t)	upd_(K(k), (l), (d), strlen(d), (t))
#define DEL(k)		del_(K(k))

static void
expect_ok(const struct cw *c, enum be_action action)
{
	ck_assert_msg(c->v.status == GRPC_OK, "%s: expected OK, got %s (%d) "
	    "\"%s\"", F.ops->name, grpc_status_name(c->v.status), c->v.status,
	    c->v.msg);
	ck_assert_int_eq(c->chg.action, action);
}

/* --- Records ------------------------------------------------------------- */

struct snap {
	enum be_kind	 kind;
	uint32_t	 level;
	uint64_t	 expires;
	size_t		 len;
	uint8_t		 data[SNAP_MAX];
	uint8_t		 digest[BE_DIGEST_LEN];
};

/* A lookup answered later (backend_lookup() said 1). */
struct lka {
	int			 done, rv;
	struct be_record	 rec;
	struct lease		 lease;
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
	a->rec.data = NULL;	/* valid during the call only */
	if (lease != NULL) {
		a->lease = *lease;
		if (rec->kind == BE_ENTRY)
			a->rec.data = lease->data;
	}
}

/* backend_lookup() with the loop pumped until it answers (rec.data is
 * only good with a lease). */
static int
lk(const uint8_t *key, size_t keylen, uint64_t now, struct be_record *rec,
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
	return a.rv;
}

/* The key's record as of `now`, payload copied out under a lease. */
static void
snap(const uint8_t *key, size_t keylen, uint64_t now, struct snap *s)
{
	struct be_record rec;
	struct lease lease;

	memset(s, 0, sizeof(*s));
	ck_assert_int_eq(lk(key, keylen, now, &rec,
	    &lease), 0);
	s->kind = rec.kind;
	if (rec.kind == BE_NONE)
		return;
	s->level = rec.level;
	s->expires = rec.expires;
	if (rec.kind == BE_TOMBSTONE) {
		memcpy(s->digest, rec.digest, BE_DIGEST_LEN);
		return;
	}
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_le(rec.len, SNAP_MAX);
	ck_assert_uint_eq(lease.len, rec.len);
	s->len = rec.len;
	if (rec.len > 0) {
		ck_assert_mem_eq(lease.data, rec.data, rec.len);
		memcpy(s->data, lease.data, rec.len);
	}
	lease_release(&lease);
}

/* The first part of a record that differs between a and b, or NULL. */
static const char *
snap_diff(const struct snap *a, const struct snap *b)
{
	if (a->kind != b->kind)
		return "kind";
	if (a->level != b->level)
		return "level";
	if (a->expires != b->expires)
		return "expiry";
	if (a->len != b->len || memcmp(a->data, b->data, a->len) != 0)
		return "payload";
	if (memcmp(a->digest, b->digest, BE_DIGEST_LEN) != 0)
		return "digest";
	return NULL;
}

static void
expect_expiry(uint64_t got, uint64_t want)
{
	ck_assert_msg(got + EXP_SLACK >= want && got <= want + EXP_SLACK,
	    "%s: expiry %llu ns, expected %llu ns (off by %lld ns)",
	    F.ops->name, (unsigned long long)got, (unsigned long long)want,
	    (long long)(got - want));
}

static struct snap
expect_entry_(const uint8_t *key, size_t keylen, uint32_t level,
    const void *data, size_t len, uint64_t expires)
{
	struct snap s;

	snap(key, keylen, clock_now_ns(), &s);
	ck_assert_msg(s.kind == BE_ENTRY, "%s: expected an entry, found "
	    "kind %d", F.ops->name, (int)s.kind);
	ck_assert_uint_eq(s.level, level);
	ck_assert_uint_eq(s.len, len);
	if (len > 0)
		ck_assert_mem_eq(s.data, data, len);
	expect_expiry(s.expires, expires);
	return s;
}

static struct snap
expect_tomb_(const uint8_t *key, size_t keylen, uint32_t level,
    const void *payload, size_t len, uint64_t expires)
{
	uint8_t digest[BE_DIGEST_LEN];
	struct snap s;

	snap(key, keylen, clock_now_ns(), &s);
	ck_assert_msg(s.kind == BE_TOMBSTONE, "%s: expected a tombstone, "
	    "found kind %d", F.ops->name, (int)s.kind);
	ck_assert_uint_eq(s.level, level);
	expect_expiry(s.expires, expires);
	SHA256(payload, len, digest);
	ck_assert_mem_eq(s.digest, digest, BE_DIGEST_LEN);
	return s;
}

static void
expect_none_(const uint8_t *key, size_t keylen)
{
	struct snap s;

	snap(key, keylen, clock_now_ns(), &s);
	ck_assert_msg(s.kind == BE_NONE, "%s: expected no record, found "
	    "kind %d", F.ops->name, (int)s.kind);
}

#define EXPECT_ENTRY(k, l, d, e) expect_entry_(K(k), (l), (d), strlen(d), (e))
#define EXPECT_TOMB(k, l, d, e)	expect_tomb_(K(k), (l), (d), strlen(d), (e))
#define EXPECT_NONE(k)		expect_none_(K(k))

static void
sleep_until(uint64_t t)
{
	struct timespec ts;
	uint64_t now;

	while ((now = clock_now_ns()) <= t) {
		ts.tv_sec = (time_t)((t - now) / SEC);
		ts.tv_nsec = (long)((t - now) % SEC) + 1000;
		if (ts.tv_nsec >= (long)SEC) {
			ts.tv_sec++;
			ts.tv_nsec -= (long)SEC;
		}
		nanosleep(&ts, NULL);
	}
}

/* --- SetSharedData (§4.1) ------------------------------------------------ */

START_TEST(test_set_new)
{
	struct cw c, c1;

	fix_open(_i);
	c1 = SET("s1", 7, "hello", LONG_TTL);
	expect_ok(&c1, BE_PUT);
	ck_assert_int_eq(c1.cur.kind, BE_NONE);
	EXPECT_ENTRY("s1", 7, "hello", c1.now + LONG_TTL);
	/* Another key is another entry. */
	c = SET("s2", 1, "world!", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("s2", 1, "world!", c.now + SHORT_TTL);
	EXPECT_ENTRY("s1", 7, "hello", c1.now + LONG_TTL);
	/* An empty payload is a payload. */
	c = SET("s3", 2, "", LONG_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("s3", 2, "", c.now + LONG_TTL);
	/* Binary bytes, NULs included, are stored as given. */
	{
		static const uint8_t bin[] = { 0, 1, 0xff, 0, 0x80, '\n', 0 };

		c = set_(K("s4"), 3, bin, sizeof(bin), LONG_TTL);
		expect_ok(&c, BE_PUT);
		expect_entry_(K("s4"), 3, bin, sizeof(bin), c.now + LONG_TTL);
	}
	fix_close();
}
END_TEST

/* An identical retry is OK and the TTL restarts from the retry's ttl,
 * shorter or longer than before. */
START_TEST(test_set_retry)
{
	struct snap s;
	struct cw c1, c2, c3;

	fix_open(_i);
	c1 = SET("s", 4, "payload", SHORT_TTL);
	expect_ok(&c1, BE_PUT);
	c2 = SET("s", 4, "payload", LONG_TTL);
	expect_ok(&c2, BE_TOUCH);
	ck_assert_int_eq(c2.cur.kind, BE_ENTRY);
	s = EXPECT_ENTRY("s", 4, "payload", c2.now + LONG_TTL);
	/* A shorter ttl restarts nothing: never earlier than reported. */
	c3 = SET("s", 4, "payload", SHORT_TTL);
	expect_ok(&c3, BE_TOUCH);
	EXPECT_ENTRY("s", 4, "payload", s.expires);

	/* Empty payloads compare equal too. */
	c1 = SET("e", 1, "", SHORT_TTL);
	expect_ok(&c1, BE_PUT);
	c2 = SET("e", 1, "", LONG_TTL);
	expect_ok(&c2, BE_TOUCH);
	EXPECT_ENTRY("e", 1, "", c2.now + LONG_TTL);
	fix_close();
}
END_TEST

/* Level 0 is a level like any other, not "no level". */
START_TEST(test_level_zero)
{
	struct snap s;
	struct cw c, d;

	fix_open(_i);
	c = SET("z", 0, "zero", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("z", 0, "zero", c.now + SHORT_TTL);
	c = SET("z", 0, "zero", LONG_TTL);
	expect_ok(&c, BE_TOUCH);
	EXPECT_ENTRY("z", 0, "zero", c.now + LONG_TTL);
	c = UPD("z", 0, "zero", LONG_TTL);	/* retry at level 0 */
	expect_ok(&c, BE_TOUCH);
	EXPECT_ENTRY("z", 0, "zero", c.now + LONG_TTL);

	/* Deleted at level 0: level 1 or higher, or the same content. */
	c = SET("t", 0, "zero", LONG_TTL);
	expect_ok(&c, BE_PUT);
	d = DEL("t");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	s = EXPECT_TOMB("t", 0, "zero", c.now + LONG_TTL);
	/* (Other content at level 0: refused, in refusals[].) Revived,
	 * it keeps at least the tombstone's expiry. */
	c = SET("t", 0, "zero", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("t", 0, "zero", s.expires);

	/* Update from 0 to 1. */
	c = SET("u", 0, "zero", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	c = UPD("u", 1, "one", LONG_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("u", 1, "one", c.now + LONG_TTL);
	fix_close();
}
END_TEST

/* --- Tombstones (§4, §4.1, §4.4) ----------------------------------------- */

/* Delete leaves a tombstone of the deleted level, living until the entry's
 * own expiry (the one its last Set/Update retry gave it). */
START_TEST(test_delete_tombstone)
{
	struct snap s;
	struct cw c, d;

	fix_open(_i);
	c = SET("s", 9, "payload", LONG_TTL);
	expect_ok(&c, BE_PUT);
	s = EXPECT_ENTRY("s", 9, "payload", c.now + LONG_TTL);
	d = DEL("s");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	ck_assert_int_eq(d.cur.kind, BE_ENTRY);
	ck_assert_uint_eq(d.chg.level, 9);
	ck_assert_uint_eq(d.chg.expires, s.expires);
	EXPECT_TOMB("s", 9, "payload", s.expires);

	/* A retry lengthened the TTL: the tombstone follows it. A shorter
	 * one does not shorten it (spec §4: copies of it may live that
	 * long). */
	c = SET("r", 2, "data", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	c = SET("r", 2, "data", LONG_TTL);
	expect_ok(&c, BE_TOUCH);
	s = EXPECT_ENTRY("r", 2, "data", c.now + LONG_TTL);
	c = SET("r", 2, "data", SHORT_TTL);
	expect_ok(&c, BE_TOUCH);
	d = DEL("r");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	EXPECT_TOMB("r", 2, "data", s.expires);

	/* After an Update: the updated level and payload, and an expiry
	 * no earlier than the level before. */
	c = SET("u", 1, "one", LONG_TTL);
	expect_ok(&c, BE_PUT);
	s = EXPECT_ENTRY("u", 1, "one", c.now + LONG_TTL);
	c = UPD("u", 2, "two", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	d = DEL("u");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	EXPECT_TOMB("u", 2, "two", s.expires);
	fix_close();
}
END_TEST

START_TEST(test_tombstone_revive)
{
	struct snap t;
	struct cw c, d;

	fix_open(_i);
	c = SET("s", 9, "payload", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	d = DEL("s");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	/* Identical level and payload: the entry is back, with this TTL
	 * (longer than the tombstone's). */
	c = SET("s", 9, "payload", LONG_TTL);
	expect_ok(&c, BE_PUT);
	ck_assert_int_eq(c.cur.kind, BE_TOMBSTONE);
	EXPECT_ENTRY("s", 9, "payload", c.now + LONG_TTL);
	/* It is a live entry again: retries, Update and Delete see it. */
	c = SET("s", 9, "payload", LONG_TTL);
	expect_ok(&c, BE_TOUCH);
	EXPECT_ENTRY("s", 9, "payload", c.now + LONG_TTL);
	d = DEL("s");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	EXPECT_TOMB("s", 9, "payload", c.now + LONG_TTL);

	/* An empty payload revives too; with a shorter ttl, not before
	 * the tombstone would have ended. */
	c = SET("e", 3, "", LONG_TTL);
	expect_ok(&c, BE_PUT);
	d = DEL("e");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	t = EXPECT_TOMB("e", 3, "", c.now + LONG_TTL);
	c = SET("e", 3, "", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("e", 3, "", t.expires);
	fix_close();
}
END_TEST

START_TEST(test_tombstone_higher)
{
	struct snap t;
	struct cw c, d;

	fix_open(_i);
	c = SET("s", 9, "payload", LONG_TTL);
	expect_ok(&c, BE_PUT);
	d = DEL("s");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	t = EXPECT_TOMB("s", 9, "payload", c.now + LONG_TTL);
	/* Not before the tombstone would have ended. */
	c = SET("s", 10, "other", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("s", 10, "other", t.expires);

	/* Same payload, higher level; and far higher. */
	d = DEL("s");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	c = SET("s", 11, "other", LONG_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("s", 11, "other", c.now + LONG_TTL);
	d = DEL("s");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	c = SET("s", LVL_MAX, "top", LONG_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("s", LVL_MAX, "top", c.now + LONG_TTL);
	fix_close();
}
END_TEST

/* A tombstone of the top level: the same content revives it (what else
 * is refused, without n + 1 wrapping in the message: refusals[]). */
START_TEST(test_tombstone_max)
{
	struct snap t;
	struct cw c, d;

	fix_open(_i);
	c = SET("m", LVL_MAX, "top", LONG_TTL);
	expect_ok(&c, BE_PUT);
	d = DEL("m");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	t = EXPECT_TOMB("m", LVL_MAX, "top", c.now + LONG_TTL);
	c = SET("m", LVL_MAX, "top", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("m", LVL_MAX, "top", t.expires);
	fix_close();
}
END_TEST

/*
 * Time: a tombstone lives until the deleted entry's expiry, then any level
 * is accepted; an entry that simply expired leaves no tombstone. Real time,
 * short TTLs.
 */
START_TEST(test_expiry)
{
	const uint64_t ttl = 150 * MS;
	struct be_record rec;
	struct snap t;
	struct cw c, d;

	fix_open(_i);
	c = SET("gone", 9, "payload", ttl);
	expect_ok(&c, BE_PUT);
	d = DEL("gone");
	expect_ok(&d, BE_PUT_TOMBSTONE);
	t = EXPECT_TOMB("gone", 9, "payload", c.now + ttl);
	c = SET("old", 5, "five", ttl);
	expect_ok(&c, BE_PUT);

	/* Presented as BE_NONE from its expiry on (lookup's `now`). */
	ck_assert_int_eq(lk(K("gone"), t.expires - 1,
	    &rec, NULL), 0);
	ck_assert_int_eq(rec.kind, BE_TOMBSTONE);
	ck_assert_int_eq(lk(K("gone"), t.expires, &rec,
	    NULL), 0);
	ck_assert_int_eq(rec.kind, BE_NONE);

	sleep_until((t.expires > c.now + ttl ? t.expires : c.now + ttl) +
	    10 * MS);

	/* The tombstone is gone: a lower level, other payload, is fine. */
	EXPECT_NONE("gone");
	c = SET("gone", 0, "new", LONG_TTL);
	expect_ok(&c, BE_PUT);
	ck_assert_int_eq(c.cur.kind, BE_NONE);
	EXPECT_ENTRY("gone", 0, "new", c.now + LONG_TTL);

	/* An expired entry is invisible: a Set at any level is new (Update
	 * and Delete find nothing: refusals[]). */
	EXPECT_NONE("old");
	c = SET("old", 1, "other", LONG_TTL);
	expect_ok(&c, BE_PUT);
	ck_assert_int_eq(c.cur.kind, BE_NONE);
	EXPECT_ENTRY("old", 1, "other", c.now + LONG_TTL);
	fix_close();
}
END_TEST

/* --- UpdateSharedData (§4.2) --------------------------------------------- */

/* current + 1: payload and level replaced, TTL reset. */
START_TEST(test_update_next)
{
	struct snap s;
	struct cw c;

	fix_open(_i);
	c = SET("s", 5, "v5", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	c = UPD("s", 6, "v6 is longer", LONG_TTL);
	expect_ok(&c, BE_PUT);
	ck_assert_int_eq(c.cur.kind, BE_ENTRY);
	ck_assert_uint_eq(c.cur.level, 5);
	s = EXPECT_ENTRY("s", 6, "v6 is longer", c.now + LONG_TTL);
	/* A shorter ttl: not before the level it replaces would have
	 * ended (a copy of level 6 may live that long). */
	c = UPD("s", 7, "v7", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("s", 7, "v7", s.expires);
	c = UPD("s", 8, "", LONG_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("s", 8, "", c.now + LONG_TTL);
	/* The same payload at the next level is an update too. */
	c = UPD("s", 9, "", LONG_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("s", 9, "", c.now + LONG_TTL);
	/* Up to the top level. */
	c = SET("m", LVL_MAX - 1, "almost", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	c = UPD("m", LVL_MAX, "top", LONG_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_ENTRY("m", LVL_MAX, "top", c.now + LONG_TTL);
	fix_close();
}
END_TEST

/* Same level, identical payload: a retry, TTL restarts (a different
 * payload is a mismatch: refusals[]). */
START_TEST(test_update_retry)
{
	struct snap s;
	struct cw c;

	fix_open(_i);
	c = SET("s", 5, "v5", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	c = UPD("s", 6, "v6", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	c = UPD("s", 6, "v6", LONG_TTL);
	expect_ok(&c, BE_TOUCH);
	s = EXPECT_ENTRY("s", 6, "v6", c.now + LONG_TTL);
	/* Shorter: no earlier than before. */
	c = UPD("s", 6, "v6", SHORT_TTL);
	expect_ok(&c, BE_TOUCH);
	EXPECT_ENTRY("s", 6, "v6", s.expires);
	/* An Update at the level a Set stored, same bytes: a retry too. */
	c = SET("t", 2, "two", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	c = UPD("t", 2, "two", LONG_TTL);
	expect_ok(&c, BE_TOUCH);
	EXPECT_ENTRY("t", 2, "two", c.now + LONG_TTL);
	fix_close();
}
END_TEST

/* At 4294967295 there is no next level: every other Update is "exhausted"
 * (refusals[]), but an identical retry at 4294967295 is still OK. */
START_TEST(test_update_exhausted)
{
	struct cw c;

	fix_open(_i);
	c = SET("m", LVL_MAX, "top", SHORT_TTL);
	expect_ok(&c, BE_PUT);
	c = UPD("m", LVL_MAX, "top", LONG_TTL);
	expect_ok(&c, BE_TOUCH);
	EXPECT_ENTRY("m", LVL_MAX, "top", c.now + LONG_TTL);
	fix_close();
}
END_TEST

/* --- Keys ---------------------------------------------------------------- */

/* Keys are independent: a write to one never shows on another. */
START_TEST(test_keys_independent)
{
	struct cw a, b, c;

	fix_open(_i);
	a = SET("a", 1, "A", LONG_TTL);
	expect_ok(&a, BE_PUT);
	b = SET("b", 1, "B", SHORT_TTL);
	expect_ok(&b, BE_PUT);
	c = DEL("a");
	expect_ok(&c, BE_PUT_TOMBSTONE);
	EXPECT_ENTRY("b", 1, "B", b.now + SHORT_TTL);
	c = UPD("b", 2, "BB", LONG_TTL);
	expect_ok(&c, BE_PUT);
	EXPECT_TOMB("a", 1, "A", a.now + LONG_TTL);
	/* "a" and "ab" differ; so do "b" and "B". */
	c = SET("ab", 7, "AB", LONG_TTL);
	expect_ok(&c, BE_PUT);
	b = SET("B", 3, "b", SHORT_TTL);
	expect_ok(&b, BE_PUT);
	EXPECT_ENTRY("ab", 7, "AB", c.now + LONG_TTL);
	EXPECT_ENTRY("B", 3, "b", b.now + SHORT_TTL);
	EXPECT_TOMB("a", 1, "A", a.now + LONG_TTL);
	fix_close();
}
END_TEST

/* --- Refusals (§4.1, §4.2, §4.4) ----------------------------------------- */

/*
 * Every write the rules refuse, one row each: the state its setup writes
 * make (each must be OK with the action given), then the write, which must
 * get the status and the exact message of the spec, decide BE_KEEP, and
 * leave the record as it was (compared as of one `now`, so that nothing
 * expires in between). test_refusal runs each row on a fresh backend, every
 * backend; a failure names the backend and the row.
 *
 * A message is a printf format whose one argument is the row's key: the
 * session id in messages is exactly the key's bytes (not NUL-terminated,
 * never used as a format, not truncated at 256 bytes).
 */

/* A setup write: S Set, U Update, D Delete, X Set with EXPIRING_TTL (the
 * row waits until it expired); key NULL: the row's key. */
struct step {
	char		 op;
	enum be_action	 action;	/* what it must decide */
	uint32_t	 level;
	const char	*data;
	const char	*key;
	size_t		 keylen;
};

#define STEP_SET(l, d)		{ 'S', BE_PUT, (l), (d), NULL, 0 }
#define STEP_RETRY(l, d)	{ 'S', BE_TOUCH, (l), (d), NULL, 0 }
#define STEP_UPD(l, d)		{ 'U', BE_PUT, (l), (d), NULL, 0 }
#define STEP_UPD_RETRY(l, d)	{ 'U', BE_TOUCH, (l), (d), NULL, 0 }
#define STEP_DEL		{ 'D', BE_PUT_TOMBSTONE, 0, NULL, NULL, 0 }
#define STEP_EXPIRED(l, d)	{ 'X', BE_PUT, (l), (d), NULL, 0 }
#define STEP_SET_KEY(k, n, l, d) { 'S', BE_PUT, (l), (d), (k), (n) }
#define NO_SETUP		{ 0 }
#define EXPIRING_TTL		(150 * MS)

struct refusal {
	const char	*name;
	decide_fn	*fn;
	const char	*key;
	size_t		 keylen;	/* 0: strlen(key) */
	uint32_t	 level;		/* Set and Update */
	const char	*data;		/* Set and Update */
	int		 status;
	const char	*msg;		/* format; its argument: the key */
	struct step	 setup[5];	/* up to op 0 */
};

#define REFUSE(name, fn, key, l, d, st, msg, ...)			\
	{ (name), (fn), (key), 0, (l), (d), (st), (msg), { __VA_ARGS__ } }
/* A key of keylen bytes, not NUL-terminated there. */
#define REFUSE_KEY(name, fn, key, n, l, d, st, msg, ...)		\
	{ (name), (fn), (key), (n), (l), (d), (st), (msg), { __VA_ARGS__ } }

#define SET_	cache_decide_set
#define UPD_	cache_decide_update
#define DEL_	cache_decide_delete
#define EXISTS	GRPC_ALREADY_EXISTS
#define PRECOND	GRPC_FAILED_PRECONDITION
#define MISSING	GRPC_NOT_FOUND

#define M_EXISTS(s, l)							\
	"shared data already exists for session " s " at update level " l
#define M_DELETED(s, l, n)						\
	"shared data for session " s " was deleted at update level " l	\
	"; set update level " n " or higher"
#define M_MISMATCH(want, got)						\
	"update level mismatch: expected " want ", got " got
#define M_EXHAUSTED(s)	"update level exhausted for session " s
#define M_NOT_FOUND(s)	"shared data not found for session " s

/* 256 bytes, every printable byte but space over and over (refusal_run()
 * fills it). */
static char big_key[SESSION_ID_MAX];
#define PCT_KEY		"%s%n%x%%"

static const struct refusal refusals[] = {
	/* Set on a live entry: ALREADY_EXISTS naming the stored level,
	 * unless level and payload are identical (a retry). */
	REFUSE("set: same level, last byte differs", SET_, "s", 3, "alphb",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: same level, first byte differs", SET_, "s", 3, "blpha",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: same level, payload a prefix", SET_, "s", 3, "alph",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: same level, payload longer", SET_, "s", 3, "alpha!",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: same level, payload empty", SET_, "s", 3, "",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: same level, payload in capitals", SET_, "s", 3, "ALPHA",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: stored payload empty, one given", SET_, "e", 8, "x",
	    EXISTS, M_EXISTS("e", "8"), STEP_SET(8, "")),
	REFUSE("set: level above, same payload", SET_, "s", 4, "alpha",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: level below, same payload", SET_, "s", 2, "alpha",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: level above, other payload", SET_, "s", 4, "beta",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: level 0 over level 3", SET_, "s", 0, "alpha",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: top level over level 3", SET_, "s", LVL_MAX, "alpha",
	    EXISTS, M_EXISTS("s", "3"), STEP_SET(3, "alpha")),
	REFUSE("set: level 0 over the top level", SET_, "m", 0, "top",
	    EXISTS, M_EXISTS("m", "4294967295"), STEP_SET(LVL_MAX, "top")),
	REFUSE("set: level 0 entry, other payload at 0", SET_, "z", 0,
	    "nonzero", EXISTS, M_EXISTS("z", "0"),
	    STEP_SET(0, "zero"), STEP_RETRY(0, "zero")),
	REFUSE("set: level 1 over a level 0 entry", SET_, "z", 1, "zero",
	    EXISTS, M_EXISTS("z", "0"),
	    STEP_SET(0, "zero"), STEP_RETRY(0, "zero")),
	REFUSE("set: revived entry, other payload", SET_, "s", 9, "other",
	    EXISTS, M_EXISTS("s", "9"),
	    STEP_SET(9, "payload"), STEP_DEL, STEP_SET(9, "payload"),
	    STEP_RETRY(9, "payload")),

	/* Set on a live tombstone: at or below its level, only the identical
	 * level and payload revive it. */
	REFUSE("set: tombstone, its level, other payload", SET_, "s", 9,
	    "other", PRECOND, M_DELETED("s", "9", "10"),
	    STEP_SET(9, "payload"), STEP_DEL),
	REFUSE("set: tombstone, its level, last byte differs", SET_, "s", 9,
	    "payloaD", PRECOND, M_DELETED("s", "9", "10"),
	    STEP_SET(9, "payload"), STEP_DEL),
	REFUSE("set: tombstone, its level, payload longer", SET_, "s", 9,
	    "payload+", PRECOND, M_DELETED("s", "9", "10"),
	    STEP_SET(9, "payload"), STEP_DEL),
	REFUSE("set: tombstone, its level, payload empty", SET_, "s", 9, "",
	    PRECOND, M_DELETED("s", "9", "10"),
	    STEP_SET(9, "payload"), STEP_DEL),
	REFUSE("set: tombstone, level below, other payload", SET_, "s", 8,
	    "other", PRECOND, M_DELETED("s", "9", "10"),
	    STEP_SET(9, "payload"), STEP_DEL),
	REFUSE("set: tombstone, level below, its payload", SET_, "s", 8,
	    "payload", PRECOND, M_DELETED("s", "9", "10"),
	    STEP_SET(9, "payload"), STEP_DEL),
	REFUSE("set: tombstone, level 0, its payload", SET_, "s", 0,
	    "payload", PRECOND, M_DELETED("s", "9", "10"),
	    STEP_SET(9, "payload"), STEP_DEL),
	REFUSE("set: tombstone, level 0, other payload", SET_, "s", 0,
	    "other", PRECOND, M_DELETED("s", "9", "10"),
	    STEP_SET(9, "payload"), STEP_DEL),
	REFUSE("set: tombstone of level 0, other payload", SET_, "t", 0,
	    "other", PRECOND, M_DELETED("t", "0", "1"),
	    STEP_SET(0, "zero"), STEP_DEL),
	REFUSE("set: tombstone after an update, the payload before", SET_,
	    "u", 2, "one", PRECOND, M_DELETED("u", "2", "3"),
	    STEP_SET(1, "one"), STEP_UPD(2, "two"), STEP_DEL),
	REFUSE("set: tombstone after an update, the level before", SET_,
	    "u", 1, "one", PRECOND, M_DELETED("u", "2", "3"),
	    STEP_SET(1, "one"), STEP_UPD(2, "two"), STEP_DEL),
	REFUSE("set: tombstone of an empty payload, one given", SET_, "e", 3,
	    "x", PRECOND, M_DELETED("e", "3", "4"),
	    STEP_SET(3, ""), STEP_DEL),
	/* n + 1 of the message does not wrap at the top level. */
	REFUSE("set: top tombstone, its level, other payload", SET_, "m",
	    LVL_MAX, "other", PRECOND,
	    M_DELETED("m", "4294967295", "4294967296"),
	    STEP_SET(LVL_MAX, "top"), STEP_DEL),
	REFUSE("set: top tombstone, level 0, its payload", SET_, "m", 0,
	    "top", PRECOND, M_DELETED("m", "4294967295", "4294967296"),
	    STEP_SET(LVL_MAX, "top"), STEP_DEL),
	REFUSE("set: top tombstone, level below, its payload", SET_, "m",
	    LVL_MAX - 1, "top", PRECOND,
	    M_DELETED("m", "4294967295", "4294967296"),
	    STEP_SET(LVL_MAX, "top"), STEP_DEL),

	/* Update: only of a live entry, to its level + 1 (or an identical
	 * retry at its level). */
	REFUSE("update: nothing stored", UPD_, "nobody", 1, "x",
	    MISSING, M_NOT_FOUND("nobody"), NO_SETUP),
	REFUSE("update: nothing stored, level 0", UPD_, "nobody", 0, "x",
	    MISSING, M_NOT_FOUND("nobody"), NO_SETUP),
	REFUSE("update: a tombstone, its level + 1", UPD_, "s", 5, "five",
	    MISSING, M_NOT_FOUND("s"), STEP_SET(4, "four"), STEP_DEL),
	REFUSE("update: a tombstone, its level and payload", UPD_, "s", 4,
	    "four", MISSING, M_NOT_FOUND("s"), STEP_SET(4, "four"), STEP_DEL),
	REFUSE("update: an expired entry, its level + 1", UPD_, "old", 6,
	    "six", MISSING, M_NOT_FOUND("old"), STEP_EXPIRED(5, "five")),
	REFUSE("update: an expired entry, its level and payload", UPD_, "old",
	    5, "five", MISSING, M_NOT_FOUND("old"), STEP_EXPIRED(5, "five")),
	REFUSE("update: level 0 entry, other payload at 0", UPD_, "z", 0,
	    "nonzero", PRECOND, M_MISMATCH("1", "0"),
	    STEP_SET(0, "zero"), STEP_RETRY(0, "zero")),
	REFUSE("update: level 0 entry, level 2", UPD_, "z", 2, "two",
	    PRECOND, M_MISMATCH("1", "2"),
	    STEP_SET(0, "zero"), STEP_RETRY(0, "zero")),
	REFUSE("update: retry at its level, payload longer", UPD_, "s", 6,
	    "v6x", PRECOND, M_MISMATCH("7", "6"),
	    STEP_SET(5, "v5"), STEP_UPD(6, "v6"), STEP_UPD_RETRY(6, "v6")),
	REFUSE("update: retry at its level, payload in capitals", UPD_, "s",
	    6, "V6", PRECOND, M_MISMATCH("7", "6"),
	    STEP_SET(5, "v5"), STEP_UPD(6, "v6"), STEP_UPD_RETRY(6, "v6")),
	REFUSE("update: retry at its level, payload empty", UPD_, "s", 6, "",
	    PRECOND, M_MISMATCH("7", "6"),
	    STEP_SET(5, "v5"), STEP_UPD(6, "v6"), STEP_UPD_RETRY(6, "v6")),
	REFUSE("update: a level skipped", UPD_, "s", 7, "v7",
	    PRECOND, M_MISMATCH("6", "7"), STEP_SET(5, "v5")),
	REFUSE("update: level below", UPD_, "s", 4, "v4",
	    PRECOND, M_MISMATCH("6", "4"), STEP_SET(5, "v5")),
	REFUSE("update: level below, the stored payload", UPD_, "s", 4, "v5",
	    PRECOND, M_MISMATCH("6", "4"), STEP_SET(5, "v5")),
	REFUSE("update: level 0", UPD_, "s", 0, "v0",
	    PRECOND, M_MISMATCH("6", "0"), STEP_SET(5, "v5")),
	REFUSE("update: its level, other payload", UPD_, "s", 5, "other",
	    PRECOND, M_MISMATCH("6", "5"), STEP_SET(5, "v5")),
	REFUSE("update: the top level", UPD_, "s", LVL_MAX, "v",
	    PRECOND, M_MISMATCH("6", "4294967295"), STEP_SET(5, "v5")),
	REFUSE("update: level 0 below the top level", UPD_, "n", 0, "y",
	    PRECOND, M_MISMATCH("4294967295", "0"),
	    STEP_SET(LVL_MAX - 1, "x")),
	/* At the top level there is no next one. */
	REFUSE("update: top level entry, level 0", UPD_, "m", 0, "wrap",
	    PRECOND, M_EXHAUSTED("m"), STEP_SET(LVL_MAX, "top")),
	REFUSE("update: top level entry, its level, other payload", UPD_, "m",
	    LVL_MAX, "other", PRECOND, M_EXHAUSTED("m"),
	    STEP_SET(LVL_MAX, "top")),
	REFUSE("update: top level entry, level below", UPD_, "m",
	    LVL_MAX - 1, "top", PRECOND, M_EXHAUSTED("m"),
	    STEP_SET(LVL_MAX, "top")),
	REFUSE("update: top level entry, level 1", UPD_, "m", 1, "one",
	    PRECOND, M_EXHAUSTED("m"), STEP_SET(LVL_MAX, "top")),

	/* Delete: only of a live entry. */
	REFUSE("delete: nothing stored", DEL_, "nobody", 0, NULL,
	    MISSING, M_NOT_FOUND("nobody"), NO_SETUP),
	REFUSE("delete: a tombstone (a second delete)", DEL_, "s", 0, NULL,
	    MISSING, M_NOT_FOUND("s"), STEP_SET(2, "data"), STEP_DEL),
	REFUSE("delete: an expired entry", DEL_, "old", 0, NULL,
	    MISSING, M_NOT_FOUND("old"), STEP_EXPIRED(5, "five")),

	/* The key in messages: "abc" inside a longer buffer; "abcdef" is
	 * another key; format characters printed as they are; a 256-byte
	 * key of every printable byte, in every message. */
	REFUSE_KEY("message: key inside a longer buffer, update", UPD_,
	    "abcdefXYZ", 3, 1, "x", MISSING, M_NOT_FOUND("abc"), NO_SETUP),
	REFUSE_KEY("message: key inside a longer buffer, set", SET_,
	    "abcdefXYZ", 3, 1, "y", EXISTS, M_EXISTS("abc", "1"),
	    STEP_SET(1, "x")),
	REFUSE_KEY("message: a longer key of the same buffer, delete", DEL_,
	    "abcdefXYZ", 6, 0, NULL, MISSING, M_NOT_FOUND("abcdef"),
	    STEP_SET_KEY("abcdefXYZ", 3, 1, "x")),
	REFUSE("message: format characters in the key, update", UPD_,
	    PCT_KEY, 1, "x", MISSING, M_NOT_FOUND("%s"), NO_SETUP),
	REFUSE("message: format characters in the key, set", SET_,
	    PCT_KEY, 1, "y", EXISTS, M_EXISTS("%s", "1"), STEP_SET(1, "x")),
	REFUSE("message: format characters in the key, tombstone", SET_,
	    PCT_KEY, 1, "y", PRECOND, M_DELETED("%s", "1", "2"),
	    STEP_SET(1, "x"), STEP_DEL),
	REFUSE_KEY("message: 256-byte key, update", UPD_, big_key,
	    SESSION_ID_MAX, 1, "x", MISSING, M_NOT_FOUND("%s"), NO_SETUP),
	REFUSE_KEY("message: 256-byte key, delete", DEL_, big_key,
	    SESSION_ID_MAX, 0, NULL, MISSING, M_NOT_FOUND("%s"), NO_SETUP),
	REFUSE_KEY("message: 256-byte key, set", SET_, big_key,
	    SESSION_ID_MAX, LVL_MAX, "y", EXISTS,
	    M_EXISTS("%s", "4294967295"), STEP_SET(LVL_MAX, "x")),
	REFUSE_KEY("message: 256-byte key, update exhausted", UPD_, big_key,
	    SESSION_ID_MAX, 0, "y", PRECOND, M_EXHAUSTED("%s"),
	    STEP_SET(LVL_MAX, "x")),
	REFUSE_KEY("message: 256-byte key, tombstone", SET_, big_key,
	    SESSION_ID_MAX, LVL_MAX, "y", PRECOND,
	    M_DELETED("%s", "4294967295", "4294967296"),
	    STEP_SET(LVL_MAX, "x"), STEP_DEL),
};

#define NREFUSALS	((int)(sizeof(refusals) / sizeof(refusals[0])))

static void
refusal_run(const struct refusal *row)
{
	const uint8_t *key = (const uint8_t *)row->key;
	size_t keylen = row->keylen != 0 ? row->keylen : strlen(row->key);
	char keystr[SESSION_ID_MAX + 1], want[VERDICT_MSG_MAX];
	struct snap before, after;
	uint64_t now, expired = 0;
	const char *diff;
	struct cw c;
	size_t i;

	for (i = 0; i < sizeof(big_key); i++)
		big_key[i] = (char)(0x21 + i % (0x7f - 0x21));

	for (i = 0; row->setup[i].op != 0; i++) {
		const struct step *st = &row->setup[i];
		decide_fn *fn = st->op == 'U' ? cache_decide_update :
		    st->op == 'D' ? cache_decide_delete : cache_decide_set;
		uint64_t ttl = st->op == 'X' ? EXPIRING_TTL : LONG_TTL;

		c = wr(fn, st->key != NULL ? (const uint8_t *)st->key : key,
		    st->key != NULL ? st->keylen : keylen, st->level, st->data,
		    st->data != NULL ? strlen(st->data) : 0,
		    st->op == 'D' ? 0 : ttl);
		ck_assert_msg(c.v.status == GRPC_OK && c.chg.action ==
		    st->action, "%s: %s: setup write %zu: %s (%d) \"%s\", "
		    "action %d; expected OK, action %d", F.ops->name,
		    row->name, i + 1, grpc_status_name(c.v.status),
		    c.v.status, c.v.msg, (int)c.chg.action, (int)st->action);
		if (st->op == 'X')
			expired = c.now + ttl;
	}
	if (expired != 0)
		sleep_until(expired + 10 * MS);

	memcpy(keystr, key, keylen);
	keystr[keylen] = '\0';
	snprintf(want, sizeof(want), row->msg, keystr);
	now = clock_now_ns();
	snap(key, keylen, now, &before);
	c = wr(row->fn, key, keylen, row->level, row->data,
	    row->data != NULL ? strlen(row->data) : 0,
	    row->fn == cache_decide_delete ? 0 : SHORT_TTL);
	snap(key, keylen, now, &after);
	ck_assert_msg(c.v.status == row->status, "%s: %s: expected %s, got %s "
	    "(%d) \"%s\"", F.ops->name, row->name,
	    grpc_status_name(row->status), grpc_status_name(c.v.status),
	    c.v.status, c.v.msg);
	ck_assert_msg(strcmp(c.v.msg, want) == 0, "%s: %s: message \"%s\", "
	    "expected \"%s\"", F.ops->name, row->name, c.v.msg, want);
	/* Every refusal leaves the backend alone. */
	ck_assert_msg(c.chg.action == BE_KEEP, "%s: %s: refused, but "
	    "decided action %d", F.ops->name, row->name, (int)c.chg.action);
	diff = snap_diff(&before, &after);
	ck_assert_msg(diff == NULL, "%s: %s: the refused write changed the "
	    "record's %s", F.ops->name, row->name, diff);
}

/* _i: backend * NREFUSALS + row. */
START_TEST(test_refusal)
{
	fix_open(_i / NREFUSALS);
	refusal_run(&refusals[_i % NREFUSALS]);
	fix_close();
}
END_TEST

/* --- Pure rules: session_id ---------------------------------------------- */

static void
session_ok(const uint8_t *id, size_t len)
{
	struct cache_verdict v;

	memset(&v, 0, sizeof(v));
	ck_assert_msg(cache_check_session(id, len, 1, &v) == 0,
	    "session_id of %zu bytes refused: %s", len, v.msg);
}

static void
session_bad(const uint8_t *id, size_t len, int present)
{
	struct cache_verdict v;

	memset(&v, 0, sizeof(v));
	v.status = GRPC_OK;
	ck_assert_msg(cache_check_session(id, len, present, &v) == -1,
	    "session_id of %zu bytes (present %d) accepted", len, present);
	ck_assert_int_eq(v.status, GRPC_INVALID_ARGUMENT);
	ck_assert_msg(v.msg[0] != '\0', "INVALID_ARGUMENT without a message");
	ck_assert_ptr_nonnull(memchr(v.msg, '\0', sizeof(v.msg)));
}

START_TEST(test_session)
{
	static const uint8_t bad[] = { ' ', '\t', '\n', '\r', 0x7f, 0, 0x01,
	    0x1f, 0x80, 0xa0, 0xc3, 0xfe, 0xff };
	uint8_t id[SESSION_ID_MAX + 1], all[0x7f - 0x21];
	size_t i, pos;
	int c;

	session_ok(K("a"));
	session_ok(K("session-42"));
	/* Empty and absent. */
	session_bad((const uint8_t *)"", 0, 1);
	session_bad((const uint8_t *)"abc", 3, 0);
	session_bad(NULL, 0, 0);
	/* 256 bytes is the most. */
	memset(id, 'x', sizeof(id));
	session_ok(id, SESSION_ID_MAX);
	session_bad(id, SESSION_ID_MAX + 1, 1);
	/* Every printable byte but space, alone and all together. */
	for (c = 0x21; c <= 0x7e; c++) {
		id[0] = (uint8_t)c;
		session_ok(id, 1);
		all[c - 0x21] = (uint8_t)c;
	}
	session_ok(all, sizeof(all));
	/* Every other byte, alone, first, in the middle and last. */
	for (c = 0; c <= 0xff; c++) {
		if (c >= 0x21 && c <= 0x7e)
			continue;
		id[0] = (uint8_t)c;
		session_bad(id, 1, 1);
	}
	for (i = 0; i < sizeof(bad); i++)
		for (pos = 0; pos < 3; pos++) {
			memcpy(id, "abc", 3);
			id[pos] = bad[i];
			session_bad(id, 3, 1);
			memset(id, 'x', SESSION_ID_MAX);
			id[pos == 0 ? 0 : pos == 1 ? 128 : SESSION_ID_MAX - 1]
			    = bad[i];
			session_bad(id, SESSION_ID_MAX, 1);
		}
	/* An embedded NUL: "ab\0cd" is not "ab". */
	session_bad((const uint8_t *)"ab\0cd", 5, 1);
	session_bad((const uint8_t *)"ab\0", 3, 1);
}
END_TEST

/* --- Pure rules: TTL ----------------------------------------------------- */

#define DEF_MS	600000ULL		/* default_ttl 600 s */
#define MAX_MS	3600000ULL		/* max_ttl 1 h */
#define YEAR_MS	(365ULL * 86400 * 1000)	/* the largest max_ttl (config) */

static uint64_t
ttl_ok(int64_t sec, int32_t nanos, int absent, uint64_t def_ms,
    uint64_t max_ms)
{
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
	struct cache_verdict v;
	uint64_t ns = 12345;

	memset(&v, 0, sizeof(v));
	d.seconds = sec;
	d.nanos = nanos;
	ck_assert_msg(cache_ttl(absent ? NULL : &d, def_ms, max_ms, &ns,
	    &v) == 0, "ttl %llds %dns refused: %s", (long long)sec, nanos,
	    v.msg);
	return ns;
}

static void
ttl_bad(int64_t sec, int32_t nanos)
{
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
	struct cache_verdict v;
	uint64_t ns = 12345;

	memset(&v, 0, sizeof(v));
	v.status = GRPC_OK;
	d.seconds = sec;
	d.nanos = nanos;
	ck_assert_msg(cache_ttl(&d, DEF_MS, MAX_MS, &ns, &v) == -1,
	    "ttl %llds %dns accepted as %llu ns", (long long)sec, nanos,
	    (unsigned long long)ns);
	ck_assert_int_eq(v.status, GRPC_INVALID_ARGUMENT);
	ck_assert_msg(v.msg[0] != '\0', "INVALID_ARGUMENT without a message");
}

START_TEST(test_ttl)
{
	/* Absent or zero: default_ttl. */
	ck_assert_uint_eq(ttl_ok(0, 0, 1, DEF_MS, MAX_MS), DEF_MS * MS);
	ck_assert_uint_eq(ttl_ok(0, 0, 0, DEF_MS, MAX_MS), DEF_MS * MS);
	ck_assert_uint_eq(ttl_ok(0, 0, 1, 1000, MAX_MS), 1 * SEC);
	ck_assert_uint_eq(ttl_ok(0, 0, 0, 1000, MAX_MS), 1 * SEC);
	/* As given. */
	ck_assert_uint_eq(ttl_ok(5, 0, 0, DEF_MS, MAX_MS), 5 * SEC);
	ck_assert_uint_eq(ttl_ok(1, 500000000, 0, DEF_MS, MAX_MS),
	    1500 * MS);
	ck_assert_uint_eq(ttl_ok(0, 1, 0, DEF_MS, MAX_MS), 1);
	ck_assert_uint_eq(ttl_ok(0, 999999999, 0, DEF_MS, MAX_MS),
	    999999999);
	ck_assert_uint_eq(ttl_ok(3600, 0, 0, DEF_MS, MAX_MS), 3600 * SEC);
	/* Above max_ttl: clamped, not refused. */
	ck_assert_uint_eq(ttl_ok(3600, 1, 0, DEF_MS, MAX_MS), MAX_MS * MS);
	ck_assert_uint_eq(ttl_ok(3601, 0, 0, DEF_MS, MAX_MS), MAX_MS * MS);
	ck_assert_uint_eq(ttl_ok(700, 0, 0, DEF_MS, 600000), 600 * SEC);
	/* Huge: clamped without overflowing on the way. */
	ck_assert_uint_eq(ttl_ok(INT64_MAX, 999999999, 0, DEF_MS, MAX_MS),
	    MAX_MS * MS);
	ck_assert_uint_eq(ttl_ok(INT64_MAX, 0, 0, DEF_MS, YEAR_MS),
	    YEAR_MS * MS);
	/* 18446744074 s * 1e9 wraps 2^64 to 0.29 s if multiplied blindly. */
	ck_assert_uint_eq(ttl_ok(18446744074LL, 0, 0, DEF_MS, YEAR_MS),
	    YEAR_MS * MS);
	ck_assert_uint_eq(ttl_ok(18446744073LL, 709551616, 0, DEF_MS,
	    YEAR_MS), YEAR_MS * MS);
	ck_assert_uint_eq(ttl_ok(9223372037LL, 0, 0, DEF_MS, YEAR_MS),
	    YEAR_MS * MS);
	ck_assert_uint_eq(ttl_ok((int64_t)(YEAR_MS / 1000), 0, 0, DEF_MS,
	    YEAR_MS), YEAR_MS * MS);
	ck_assert_uint_eq(ttl_ok((int64_t)(YEAR_MS / 1000) - 1, 0, 0,
	    DEF_MS, YEAR_MS), YEAR_MS * MS - SEC);

	/* Negative. */
	ttl_bad(-1, 0);
	ttl_bad(-5, 0);
	ttl_bad(INT64_MIN, 0);
	ttl_bad(0, -1);
	ttl_bad(-1, -500000000);
	/* Nanos out of range. */
	ttl_bad(0, 1000000000);
	ttl_bad(5, 1000000000);
	ttl_bad(0, INT32_MAX);
	ttl_bad(0, -1000000000);
	ttl_bad(0, INT32_MIN);
	/* Signs disagree. */
	ttl_bad(5, -1);
	ttl_bad(1, -999999999);
	ttl_bad(-1, 1);
}
END_TEST

/* --- Pure rules: the Get reply -------------------------------------------- */

START_TEST(test_ttl_left)
{
	Google__Protobuf__Duration d;
	uint64_t now = 1000 * SEC;

	cache_ttl_left(&d, now + 90 * SEC + 250, now);
	ck_assert_int_eq(d.seconds, 90);
	ck_assert_int_eq(d.nanos, 250);
	cache_ttl_left(&d, now + 999999999, now);
	ck_assert_int_eq(d.seconds, 0);
	ck_assert_int_eq(d.nanos, 999999999);
	/* Due now or past: served live, so at least 1 ns, never 0 (which a
	 * client would read as no TTL). */
	cache_ttl_left(&d, now, now);
	ck_assert_int_eq(d.seconds, 0);
	ck_assert_int_eq(d.nanos, 1);
	cache_ttl_left(&d, now - SEC, now);
	ck_assert_int_eq(d.seconds, 0);
	ck_assert_int_eq(d.nanos, 1);
	cache_ttl_left(&d, UINT64_MAX, 0);
	ck_assert_int_eq(d.seconds, (int64_t)(UINT64_MAX / SEC));
	ck_assert_int_eq(d.nanos, (int32_t)(UINT64_MAX % SEC));
}
END_TEST

START_TEST(test_reply_head)
{
	static const uint8_t key[] = "sess-1", payload[] = { 0, 'a', 0xff };
	static const size_t lens[] = { 0, 3, 127, 128, 16383, 16384,
	    (size_t)1 << 28 };
	Alpcrun__V1__SharedData *back;
	uint8_t head[CACHE_REPLY_HEAD_MAX], *buf;
	struct sd_view v;
	size_t hl, i;

	hl = cache_reply_head(head, key, 6, UINT32_MAX, sizeof(payload),
	    10 * SEC + 7, 4 * SEC);
	ck_assert_ptr_nonnull(buf = malloc(hl + sizeof(payload)));
	memcpy(buf, head, hl);
	memcpy(buf + hl, payload, sizeof(payload));
	/* What goes on the wire, read back by protobuf-c. */
	back = alpcrun__v1__shared_data__unpack(NULL, hl + sizeof(payload),
	    buf);
	ck_assert_ptr_nonnull(back);
	ck_assert(back->has_session_id && back->session_id.len == 6 &&
	    memcmp(back->session_id.data, key, 6) == 0);
	ck_assert(back->has_update_level);
	ck_assert_uint_eq(back->update_level, UINT32_MAX);
	ck_assert(back->has_payload &&
	    back->payload.len == sizeof(payload) &&
	    memcmp(back->payload.data, payload, sizeof(payload)) == 0);
	ck_assert_ptr_nonnull(back->ttl);
	ck_assert_int_eq(back->ttl->seconds, 6);
	ck_assert_int_eq(back->ttl->nanos, 7);
	alpcrun__v1__shared_data__free_unpacked(back, NULL);
	/* The payload is last: it starts where the head ends. */
	ck_assert_int_eq(sdwire_parse(buf, hl + sizeof(payload), &v), 0);
	ck_assert(v.has_payload && v.has_ttl);
	ck_assert_uint_eq(v.payload_off, hl);
	free(buf);

	/* Every length form; the longest session and level fit. */
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t big[SESSION_ID_MAX];

		memset(big, 'k', sizeof(big));
		hl = cache_reply_head(head, big, sizeof(big), UINT32_MAX,
		    lens[i], UINT64_MAX, 0);
		ck_assert_uint_le(hl, CACHE_REPLY_HEAD_MAX);
		/* The head alone, announcing lens[i] bytes, is a prefix of
		 * a SharedData: an empty payload makes it whole. */
		if (lens[i] == 0) {
			ck_assert_int_eq(sdwire_parse(head, hl, &v), 0);
			ck_assert(v.has_payload);
			ck_assert_uint_eq(v.payload_len, 0);
			ck_assert_uint_eq(v.level, UINT32_MAX);
		} else
			ck_assert_int_ne(sdwire_parse(head, hl, &v), 0);
	}
}
END_TEST

/* --- Pure rules: the decide functions ------------------------------------ */

static const uint8_t PAY[] = "payload";
#define PAYLEN	(sizeof(PAY) - 1)

static struct be_record
rec_entry(uint32_t level, const void *data, size_t len, uint64_t expires)
{
	struct be_record r;

	memset(&r, 0, sizeof(r));
	r.kind = BE_ENTRY;
	r.level = level;
	r.data = data;
	r.len = len;
	r.expires = expires;
	return r;
}

static struct be_record
rec_tomb(uint32_t level, const void *data, size_t len, uint64_t expires)
{
	struct be_record r;

	memset(&r, 0, sizeof(r));
	r.kind = BE_TOMBSTONE;
	r.level = level;
	r.expires = expires;
	SHA256(data, len, r.digest);
	return r;
}

static struct cache_req
req(const char *key, uint32_t level, const void *data, size_t len,
    uint64_t ttl)
{
	struct cache_req r;

	memset(&r, 0, sizeof(r));
	r.key = (const uint8_t *)key;
	r.keylen = strlen(key);
	r.has_level = 1;
	r.level = level;
	r.data = data;
	r.len = len;
	r.ttl_ns = ttl;
	return r;
}

/* Run fn with garbage in chg and v first, so that anything left unset
 * shows. */
static void
decide(decide_fn *fn, const struct cache_req *r, const struct be_record *cur,
    uint64_t now, struct be_change *chg, struct cache_verdict *v, int fill)
{
	memset(chg, fill, sizeof(*chg));
	memset(v, fill, sizeof(*v));
	chg->action = BE_PUT;	/* the worst thing to leave behind */
	v->status = GRPC_OK;
	v->msg[sizeof(v->msg) - 1] = '\0';
	fn(r, cur, now, chg, v);
}

static void
same_change(const struct be_change *a, const struct be_change *b)
{
	ck_assert_int_eq(a->action, b->action);
	switch (a->action) {
	case BE_KEEP:
		break;
	case BE_PUT:
		ck_assert_uint_eq(a->level, b->level);
		ck_assert_uint_eq(a->expires, b->expires);
		ck_assert_ptr_eq(a->data, b->data);
		ck_assert_uint_eq(a->len, b->len);
		break;
	case BE_TOUCH:
		ck_assert_uint_eq(a->expires, b->expires);
		break;
	case BE_PUT_TOMBSTONE:
		ck_assert_uint_eq(a->level, b->level);
		ck_assert_uint_eq(a->expires, b->expires);
		ck_assert_mem_eq(a->digest, b->digest, BE_DIGEST_LEN);
		break;
	default:
		ck_abort_msg("unknown action %d", (int)a->action);
	}
}

/*
 * Every decide function on every kind of record: twice with the same inputs
 * (different garbage in the outputs) gives the same change and verdict, the
 * inputs are not written, and a refusal is BE_KEEP.
 */
START_TEST(test_decide_pure)
{
	static decide_fn *const fns[] = {
		cache_decide_set, cache_decide_update, cache_decide_delete,
	};
	static const uint32_t lv[] = { 0, 1, 4, 5, 6, LVL_MAX - 1, LVL_MAX };
	static const char *pays[] = { "payload", "other", "" };
	const uint64_t now = 1000 * SEC, exp = now + 42 * SEC;
	struct be_record recs[1 + 2 * 3 * 7], rcopy;
	struct cache_req r, rcopy2;
	struct be_change c1, c2;
	struct cache_verdict v1, v2;
	uint8_t rbytes[16], pbytes[16];
	size_t nrec = 0, f, i, j, k;

	memset(&recs[nrec++], 0, sizeof(recs[0]));	/* BE_NONE */
	for (i = 0; i < sizeof(lv) / sizeof(lv[0]); i++)
		for (k = 0; k < 3; k++) {
			recs[nrec++] = rec_entry(lv[i], pays[k],
			    strlen(pays[k]), exp);
			recs[nrec++] = rec_tomb(lv[i], pays[k],
			    strlen(pays[k]), exp);
		}
	for (f = 0; f < 3; f++)
	for (i = 0; i < nrec; i++)
	for (j = 0; j < sizeof(lv) / sizeof(lv[0]); j++)
	for (k = 0; k < 3; k++) {
		r = req("sess", lv[j], pays[k], strlen(pays[k]), 7 * SEC);
		if (fns[f] == cache_decide_delete) {
			r.has_level = 0;
			r.level = 0;
			r.data = NULL;
			r.len = 0;
		}
		rcopy = recs[i];
		rcopy2 = r;
		if (recs[i].len > 0)
			memcpy(rbytes, recs[i].data, recs[i].len);
		if (r.len > 0)
			memcpy(pbytes, r.data, r.len);

		decide(fns[f], &r, &recs[i], now, &c1, &v1, 0xa5);
		decide(fns[f], &r, &recs[i], now, &c2, &v2, 0x5a);
		same_change(&c1, &c2);
		ck_assert_int_eq(v1.status, v2.status);
		ck_assert_str_eq(v1.msg, v2.msg);
		/* A refusal changes nothing; an acceptance changes
		 * something. */
		if (v1.status != GRPC_OK)
			ck_assert_msg(c1.action == BE_KEEP, "fn %zu rec %zu "
			    "level %u: refused (%s) but action %d", f, i,
			    lv[j], v1.msg, (int)c1.action);
		else
			ck_assert_msg(c1.action != BE_KEEP, "fn %zu rec %zu "
			    "level %u: OK but BE_KEEP", f, i, lv[j]);
		/* The inputs are read only. */
		ck_assert_ptr_eq(rcopy2.key, r.key);
		ck_assert_uint_eq(rcopy2.keylen, r.keylen);
		ck_assert_int_eq(rcopy2.has_level, r.has_level);
		ck_assert_uint_eq(rcopy2.level, r.level);
		ck_assert_ptr_eq(rcopy2.data, r.data);
		ck_assert_uint_eq(rcopy2.len, r.len);
		ck_assert_uint_eq(rcopy2.ttl_ns, r.ttl_ns);
		ck_assert_int_eq(rcopy.kind, recs[i].kind);
		ck_assert_uint_eq(rcopy.level, recs[i].level);
		ck_assert_uint_eq(rcopy.expires, recs[i].expires);
		ck_assert_ptr_eq(rcopy.data, recs[i].data);
		ck_assert_uint_eq(rcopy.len, recs[i].len);
		ck_assert_mem_eq(rcopy.digest, recs[i].digest, BE_DIGEST_LEN);
		if (recs[i].len > 0)
			ck_assert_mem_eq(rbytes, recs[i].data, recs[i].len);
		if (r.len > 0)
			ck_assert_mem_eq(pbytes, r.data, r.len);
	}
}
END_TEST

/* The changes themselves, with `now` chosen by the test. */
START_TEST(test_decide_changes)
{
	const uint64_t now = 5000 * SEC, exp = now + 100 * SEC;
	struct be_record cur;
	struct cache_req r;
	struct be_change c;
	struct cache_verdict v;
	uint8_t digest[BE_DIGEST_LEN];

	/* Set on nothing: PUT with expiry now + ttl and the request's
	 * bytes. */
	memset(&cur, 0, sizeof(cur));
	r = req("s", 3, PAY, PAYLEN, 7 * SEC);
	decide(cache_decide_set, &r, &cur, now, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_OK);
	ck_assert_int_eq(c.action, BE_PUT);
	ck_assert_uint_eq(c.level, 3);
	ck_assert_uint_eq(c.expires, now + 7 * SEC);
	ck_assert_uint_eq(c.len, PAYLEN);
	ck_assert_mem_eq(c.data, PAY, PAYLEN);
	/* The same at another `now`: the expiry follows it. */
	decide(cache_decide_set, &r, &cur, 2 * now, &c, &v, 0);
	ck_assert_uint_eq(c.expires, 2 * now + 7 * SEC);

	/* A retry: TOUCH to now + the retry's ttl, never earlier than the
	 * entry's expiry (spec §4). */
	cur = rec_entry(3, "payload", PAYLEN, exp);
	decide(cache_decide_set, &r, &cur, now, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_OK);
	ck_assert_int_eq(c.action, BE_TOUCH);
	ck_assert_uint_eq(c.expires, exp);
	r = req("s", 3, PAY, PAYLEN, 7 * SEC);
	decide(cache_decide_update, &r, &cur, now, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_OK);
	ck_assert_int_eq(c.action, BE_TOUCH);
	ck_assert_uint_eq(c.expires, exp);
	r = req("s", 3, PAY, PAYLEN, 101 * SEC);
	decide(cache_decide_set, &r, &cur, now, &c, &v, 0xa5);
	ck_assert_uint_eq(c.expires, now + 101 * SEC);
	decide(cache_decide_update, &r, &cur, now, &c, &v, 0xa5);
	ck_assert_uint_eq(c.expires, now + 101 * SEC);

	/* Update to the next level: PUT, with the request's generation, and
	 * again never earlier than the entry it replaces. */
	r = req("s", 4, "new", 3, 9 * SEC);
	r.gen = 0x4242;
	decide(cache_decide_update, &r, &cur, now, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_OK);
	ck_assert_int_eq(c.action, BE_PUT);
	ck_assert_uint_eq(c.level, 4);
	ck_assert_uint_eq(c.gen, 0x4242);
	ck_assert_uint_eq(c.expires, exp);
	ck_assert_uint_eq(c.len, 3);
	ck_assert_mem_eq(c.data, "new", 3);
	r = req("s", 4, "new", 3, 200 * SEC);
	decide(cache_decide_update, &r, &cur, now, &c, &v, 0xa5);
	ck_assert_uint_eq(c.expires, now + 200 * SEC);

	/* Delete: a tombstone of the entry's level, digest and own expiry,
	 * whatever `now`. */
	r = req("s", 0, NULL, 0, 0);
	r.has_level = 0;
	decide(cache_decide_delete, &r, &cur, now, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_OK);
	ck_assert_int_eq(c.action, BE_PUT_TOMBSTONE);
	ck_assert_uint_eq(c.level, 3);
	ck_assert_uint_eq(c.expires, exp);
	SHA256(PAY, PAYLEN, digest);
	ck_assert_mem_eq(c.digest, digest, BE_DIGEST_LEN);
	decide(cache_decide_delete, &r, &cur, now + 50 * SEC, &c, &v, 0);
	ck_assert_uint_eq(c.expires, exp);
	cur = rec_entry(LVL_MAX, "", 0, exp);
	decide(cache_decide_delete, &r, &cur, now, &c, &v, 0xa5);
	ck_assert_int_eq(c.action, BE_PUT_TOMBSTONE);
	ck_assert_uint_eq(c.level, LVL_MAX);
	SHA256((const uint8_t *)"", 0, digest);
	ck_assert_mem_eq(c.digest, digest, BE_DIGEST_LEN);
}
END_TEST

/*
 * After its expiry a tombstone is presented as BE_NONE (backend.h): then any
 * level is accepted. While it lives, revival goes by its digest.
 */
START_TEST(test_decide_tombstone)
{
	const uint64_t now = 5000 * SEC;
	struct be_record none, tomb;
	struct cache_req r;
	struct be_change c;
	struct cache_verdict v;
	uint32_t l;

	memset(&none, 0, sizeof(none));
	tomb = rec_tomb(9, PAY, PAYLEN, now + SEC);
	for (l = 0; l <= 12; l++) {
		r = req("s", l, "other", 5, 7 * SEC);
		decide(cache_decide_set, &r, &none, now, &c, &v, 0xa5);
		ck_assert_int_eq(v.status, GRPC_OK);
		ck_assert_int_eq(c.action, BE_PUT);
		ck_assert_uint_eq(c.level, l);

		decide(cache_decide_set, &r, &tomb, now, &c, &v, 0xa5);
		if (l > 9) {
			ck_assert_int_eq(v.status, GRPC_OK);
			ck_assert_int_eq(c.action, BE_PUT);
			ck_assert_uint_eq(c.level, l);
		} else {
			ck_assert_int_eq(v.status, GRPC_FAILED_PRECONDITION);
			ck_assert_str_eq(v.msg, "shared data for session s was "
			    "deleted at update level 9; set update level 10 or "
			    "higher");
			ck_assert_int_eq(c.action, BE_KEEP);
		}
		/* The deleted payload itself: only at level 9 or above. */
		r = req("s", l, PAY, PAYLEN, 7 * SEC);
		decide(cache_decide_set, &r, &tomb, now, &c, &v, 0xa5);
		if (l >= 9) {
			ck_assert_int_eq(v.status, GRPC_OK);
			ck_assert_int_eq(c.action, BE_PUT);
			ck_assert_uint_eq(c.expires, now + 7 * SEC);
			/* Never earlier than the tombstone. */
			tomb.expires = now + 8 * SEC;
			decide(cache_decide_set, &r, &tomb, now, &c, &v, 0);
			ck_assert_uint_eq(c.expires, now + 8 * SEC);
			tomb.expires = now + SEC;
		} else {
			ck_assert_int_eq(v.status, GRPC_FAILED_PRECONDITION);
			ck_assert_int_eq(c.action, BE_KEEP);
		}
		/* Update and Delete never see a tombstone as an entry. */
		decide(cache_decide_update, &r, &tomb, now, &c, &v, 0xa5);
		ck_assert_int_eq(v.status, GRPC_NOT_FOUND);
		ck_assert_str_eq(v.msg, "shared data not found for session s");
		ck_assert_int_eq(c.action, BE_KEEP);
		decide(cache_decide_update, &r, &none, now, &c, &v, 0xa5);
		ck_assert_int_eq(v.status, GRPC_NOT_FOUND);
		ck_assert_int_eq(c.action, BE_KEEP);
	}
	r = req("s", 0, NULL, 0, 0);
	r.has_level = 0;
	decide(cache_decide_delete, &r, &tomb, now, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_NOT_FOUND);
	ck_assert_str_eq(v.msg, "shared data not found for session s");
	ck_assert_int_eq(c.action, BE_KEEP);
	decide(cache_decide_delete, &r, &none, now, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_NOT_FOUND);
	ck_assert_int_eq(c.action, BE_KEEP);

	/* A tombstone of the top level: n + 1 does not wrap. */
	tomb = rec_tomb(LVL_MAX, PAY, PAYLEN, now + SEC);
	r = req("s", LVL_MAX, "x", 1, SEC);
	decide(cache_decide_set, &r, &tomb, now, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_FAILED_PRECONDITION);
	ck_assert_str_eq(v.msg, "shared data for session s was deleted at "
	    "update level 4294967295; set update level 4294967296 or higher");
	ck_assert_int_eq(c.action, BE_KEEP);
}
END_TEST

/* Payloads are compared byte by byte on the retry path: same length,
 * one bit apart, anywhere. */
START_TEST(test_decide_compare)
{
	uint8_t a[300], b[300];
	struct be_record cur;
	struct cache_req r;
	struct be_change c;
	struct cache_verdict v;
	size_t i;

	for (i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i * 7);
	cur = rec_entry(2, a, sizeof(a), 100 * SEC);
	for (i = 0; i < sizeof(a); i += 37) {
		memcpy(b, a, sizeof(b));
		b[i] ^= 0x01;
		r = req("s", 2, b, sizeof(b), SEC);
		decide(cache_decide_set, &r, &cur, SEC, &c, &v, 0xa5);
		ck_assert_int_eq(v.status, GRPC_ALREADY_EXISTS);
		ck_assert_int_eq(c.action, BE_KEEP);
		decide(cache_decide_update, &r, &cur, SEC, &c, &v, 0xa5);
		ck_assert_int_eq(v.status, GRPC_FAILED_PRECONDITION);
		ck_assert_str_eq(v.msg,
		    "update level mismatch: expected 3, got 2");
		ck_assert_int_eq(c.action, BE_KEEP);
	}
	memcpy(b, a, sizeof(b));
	r = req("s", 2, b, sizeof(b), SEC);	/* equal bytes, other buffer */
	decide(cache_decide_set, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_OK);
	ck_assert_int_eq(c.action, BE_TOUCH);
	r = req("s", 2, b, sizeof(b) - 1, SEC);	/* a prefix */
	decide(cache_decide_set, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_ALREADY_EXISTS);
	ck_assert_int_eq(c.action, BE_KEEP);
}
END_TEST

/*
 * An entry whose bytes the backend does not have at hand (backend.h: data
 * NULL, digest its SHA-256): a retry is told by digests, a changed byte is
 * refused, and a Delete's tombstone keeps the backend's digest. Deciding
 * again on the same record (a backend that lost a race decides anew) gives
 * the same answer, whatever an earlier call left in the change.
 */
START_TEST(test_decide_digest_only)
{
	uint8_t a[300], b[300];
	struct be_record cur;
	struct cache_req r;
	struct be_change c;
	struct cache_verdict v;
	size_t i;

	for (i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i * 7);
	cur = rec_entry(2, a, sizeof(a), 100 * SEC);
	SHA256(a, sizeof(a), cur.digest);
	cur.data = NULL;
	memcpy(b, a, sizeof(b));
	r = req("s", 2, b, sizeof(b), SEC);
	decide(cache_decide_set, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_OK);
	ck_assert_int_eq(c.action, BE_TOUCH);
	decide(cache_decide_update, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_OK);
	ck_assert_int_eq(c.action, BE_TOUCH);
	b[17] ^= 0x40;
	decide(cache_decide_set, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_ALREADY_EXISTS);
	ck_assert_int_eq(c.action, BE_KEEP);
	decide(cache_decide_update, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_FAILED_PRECONDITION);
	ck_assert_int_eq(c.action, BE_KEEP);
	/* Same length needed before any hashing. */
	r = req("s", 2, a, sizeof(a) - 1, SEC);
	decide(cache_decide_set, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_ALREADY_EXISTS);

	/* Delete: the tombstone's digest is the backend's. */
	r = req("s", 0, NULL, 0, 0);
	r.has_level = 0;
	decide(cache_decide_delete, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_OK);
	ck_assert_int_eq(c.action, BE_PUT_TOMBSTONE);
	ck_assert_mem_eq(c.digest, cur.digest, BE_DIGEST_LEN);

	/* Decided again after a lost race: a PUT first, then the newest
	 * record says otherwise; nothing of the first answer is left. */
	r = req("s", 3, b, sizeof(b), SEC);
	decide(cache_decide_update, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(c.action, BE_PUT);
	cur.level = 3;
	decide(cache_decide_update, &r, &cur, SEC, &c, &v, 0xa5);
	ck_assert_int_eq(v.status, GRPC_FAILED_PRECONDITION);
	ck_assert_str_eq(v.msg, "update level mismatch: expected 4, got 3");
	ck_assert_int_eq(c.action, BE_KEEP);
}
END_TEST

START_TEST(test_backends_listed)
{
	size_t i;

	ck_assert_ptr_nonnull(backend_all[0]);
	for (i = 0; backend_all[i] != NULL; i++)
		ck_assert_ptr_nonnull(backend_all[i]->name);
}
END_TEST

/* --- Suite --------------------------------------------------------------- */

static Suite *
cache_suite(void)
{
	Suite *s = suite_create("cache");
	TCase *tc;
	int i;

	tc = tcase_create("rules");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_backends_listed);
	tcase_add_test(tc, test_session);
	tcase_add_test(tc, test_ttl);
	tcase_add_test(tc, test_ttl_left);
	tcase_add_test(tc, test_reply_head);
	tcase_add_test(tc, test_decide_pure);
	tcase_add_test(tc, test_decide_changes);
	tcase_add_test(tc, test_decide_tombstone);
	tcase_add_test(tc, test_decide_compare);
	tcase_add_test(tc, test_decide_digest_only);
	suite_add_tcase(s, tc);

	for (i = 0; backend_all[i] != NULL; i++) {
		tc = tcase_create(backend_all[i]->name);
		/* Each test is a few dozen writes; test_expiry sleeps about
		 * 160 ms. Generous for a slow disk-backed backend. */
		tcase_set_timeout(tc, 30);
		tcase_add_loop_test(tc, test_set_new, i, i + 1);
		tcase_add_loop_test(tc, test_set_retry, i, i + 1);
		tcase_add_loop_test(tc, test_level_zero, i, i + 1);
		tcase_add_loop_test(tc, test_delete_tombstone, i, i + 1);
		tcase_add_loop_test(tc, test_tombstone_revive, i, i + 1);
		tcase_add_loop_test(tc, test_tombstone_higher, i, i + 1);
		tcase_add_loop_test(tc, test_tombstone_max, i, i + 1);
		tcase_add_loop_test(tc, test_expiry, i, i + 1);
		tcase_add_loop_test(tc, test_update_next, i, i + 1);
		tcase_add_loop_test(tc, test_update_retry, i, i + 1);
		tcase_add_loop_test(tc, test_update_exhausted, i, i + 1);
		tcase_add_loop_test(tc, test_keys_independent, i, i + 1);
		tcase_add_loop_test(tc, test_refusal, i * NREFUSALS,
		    (i + 1) * NREFUSALS);
		suite_add_tcase(s, tc);
		if (strcmp(backend_all[i]->name, "s3") == 0)
			s3url = tu_fakes3_start();
	}
	return s;
}

int
main(void)
{
	int rv = tu_run(cache_suite());

	tu_fakes3_stop();
	return rv;
}
