/*
 * check_lmdb.c: what only the lmdb backend promises (spec §6), beyond the
 * conformance suite that every backend passes (check_backend.c):
 * persistence across close and reopen with expiry converted back, records
 * that expired while closed, the lock against a second daemon, the fill
 * ratio, the heap-copy fallback when reader slots run short, leases that
 * outlive updates, deletes and even close(), leases taken by writes,
 * group commit, and how the asynchronous sweep meets writes in flight.
 *
 * Writes complete on the event loop after the writer thread commits: every
 * wait here pumps the loop until a condition holds (with a deadline), never
 * a fixed sleep.
 */
#define _XOPEN_SOURCE 700

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>
#include <lmdb.h>

#include "backend.h"
#include "backend_test.h"
#include "clock.h"
#include "config.h"
#include "testutil.h"

#define SEC		NS_PER_SEC
#define MS		NS_PER_MS
#define KIB		1024
#define MIB		(1024 * 1024)
#define DEADLINE	(20 * SEC)

/* --- Hook recorder ------------------------------------------------------- */

struct hev {
	enum be_event	 ev;
	char		 key[64];
	uint32_t	 level;
	uint64_t	 gen;
	size_t		 len;
};

static struct hev	 hevs[4096];
static size_t		 nhev;

static void
hook(void *arg, enum be_event ev, const uint8_t *key, size_t keylen,
    uint32_t level, uint64_t gen, size_t len)
{
	struct hev *h;

	(void)arg;
	ck_assert_uint_lt(nhev, sizeof(hevs) / sizeof(hevs[0]));
	h = &hevs[nhev++];
	h->ev = ev;
	ck_assert_uint_lt(keylen, sizeof(h->key));
	memcpy(h->key, key, keylen);
	h->key[keylen] = '\0';
	h->level = level;
	h->gen = gen;
	h->len = len;
}

static void
check_hev(size_t i, enum be_event ev, const char *key, uint32_t level,
    size_t len)
{
	ck_assert_uint_gt(nhev, i);
	ck_assert_int_eq(hevs[i].ev, ev);
	ck_assert_str_eq(hevs[i].key, key);
	ck_assert_uint_eq(hevs[i].level, level);
	ck_assert_uint_eq(hevs[i].len, len);
}

/* --- Fixture ------------------------------------------------------------- */

static struct {
	const struct backend_ops *ops;
	struct event_base	*base;
	struct backend		*be;
	struct config		 cfg;
	char			 dir[256];
	uint64_t		 t0;
} F;

/* A zeroed config with what the backend reads; tests adjust it before
 * be_open(). */
static void
fix_start(void)
{
	memset(&F, 0, sizeof(F));
	nhev = 0;
	F.ops = backend_find("lmdb");
	ck_assert_ptr_nonnull(F.ops);
	snprintf(F.dir, sizeof(F.dir), "%s/check_lmdb.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(F.dir));
	F.cfg.backend = (char *)"lmdb";
	F.cfg.lmdb_path = F.dir;
	F.cfg.lmdb_map_size = 256ULL * MIB;
	F.cfg.lmdb_sync = 0;
	F.cfg.lmdb_max_readers = 126;
	F.cfg.lmdb_full_ratio = 90;
	F.base = event_base_new();
	ck_assert_ptr_nonnull(F.base);
	F.t0 = clock_now_ns();
}

static struct backend *
try_open(char *err, size_t errlen)
{
	struct backend *be;

	be = F.ops->open(&F.cfg, F.base, err, errlen);
	if (be != NULL)
		backend_set_hook(be, hook, NULL);
	return be;
}

static void
be_open(void)
{
	char err[512] = "";

	ck_assert_ptr_null(F.be);
	F.be = try_open(err, sizeof(err));
	ck_assert_msg(F.be != NULL, "open: %s", err);
}

static void
be_close(void)
{
	ck_assert_ptr_nonnull(F.be);
	F.ops->close(F.be);
	F.be = NULL;
}

static void
fix_end(void)
{
	if (F.be != NULL)
		be_close();
	event_base_free(F.base);
	tu_rmtree(F.dir);
	memset(&F, 0, sizeof(F));
}

/* --- Writes -------------------------------------------------------------- */

struct wr {
	enum be_action	 action;
	uint32_t	 level;
	uint64_t	 gen;
	uint64_t	 inc;
	uint64_t	 expires;
	const void	*data;
	size_t		 len;
	uint8_t		 digest[BE_DIGEST_LEN];
	char		 key[64];
	int		 want_lease;

	struct be_write	 w;
	int		 ndecide, ndone, err;
	char		 msg[256];
	struct be_record cur;
};

static void
w_decide(void *arg, const struct be_record *cur, uint64_t now,
    struct be_change *c)
{
	struct wr *r = arg;

	(void)now;
	r->ndecide++;
	r->cur = *cur;
	r->cur.data = NULL;
	c->action = r->action;
	c->level = r->level;
	c->gen = r->gen;
	c->inc = r->inc;
	c->expires = r->expires;
	c->data = r->data;
	c->len = r->len;
	c->adopt = NULL;
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

/* Queue r; done() comes later, from the loop. */
static void
queue(struct wr *r, const char *key)
{
	snprintf(r->key, sizeof(r->key), "%s", key);
	memset(&r->w, 0, sizeof(r->w));
	r->w.key = (const uint8_t *)r->key;
	r->w.keylen = strlen(r->key);
	r->w.decide = w_decide;
	r->w.done = w_done;
	r->w.arg = r;
	r->w.want_lease = r->want_lease;	/* then r->w.lease is ours */
	ck_assert_int_eq(F.be->ops->write(F.be, &r->w), 0);
}

/* Pump the loop until every one of n writes is done. */
static void
wait_done(struct wr *rs, size_t n)
{
	uint64_t deadline = clock_now_ns() + DEADLINE;
	size_t i, left;

	for (;;) {
		for (i = 0, left = 0; i < n; i++)
			left += rs[i].ndone == 0;
		if (left == 0)
			break;
		ck_assert_msg(clock_now_ns() < deadline, "%zu writes not done",
		    left);
		event_base_loop(F.base, EVLOOP_ONCE);
	}
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(rs[i].ndecide, 1);
		ck_assert_int_eq(rs[i].ndone, 1);
	}
}

static int
do_write(struct wr *r, const char *key)
{
	queue(r, key);
	wait_done(r, 1);
	return r->err;
}

static int
put(const char *key, uint32_t level, const void *data, size_t len,
    uint64_t expires)
{
	struct wr r = { .action = BE_PUT, .level = level, .expires = expires,
	    .data = data, .len = len };

	return do_write(&r, key);
}

static int
tomb(const char *key, uint32_t level, int seed, uint64_t expires)
{
	struct wr r = { .action = BE_PUT_TOMBSTONE, .level = level,
	    .expires = expires };
	int i;

	for (i = 0; i < BE_DIGEST_LEN; i++)
		r.digest[i] = (uint8_t)(seed + i);
	return do_write(&r, key);
}

static struct be_record
get(const char *key, uint64_t now)
{
	struct be_record rec;

	ck_assert_int_eq(F.be->ops->lookup(F.be, (const uint8_t *)key,
	    strlen(key), now, &rec, NULL), 0);
	return rec;
}

static struct be_record
lease(const char *key, struct lease *l)
{
	struct be_record rec;

	ck_assert_int_eq(F.be->ops->lookup(F.be, (const uint8_t *)key,
	    strlen(key), clock_now_ns(), &rec, l), 0);
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

static uint64_t
udiff(uint64_t a, uint64_t b)
{
	return a > b ? a - b : b - a;
}

#define LIVE	(F.t0 + 3600 * SEC)

/* Wait, without pumping a loop, until the monotonic clock passes t. */
static void
wait_clock(uint64_t t)
{
	struct timespec ts = { 0, 1000000 };

	while (clock_now_ns() <= t)
		nanosleep(&ts, NULL);
}

/* --- Persistence --------------------------------------------------------- */

/*
 * Entries and tombstones survive close and reopen, with their levels,
 * payloads and digests, their expiry converted to wall-clock and back
 * (the monotonic value comes back to within the two offset measurements),
 * and the counters recounted at open.
 */
START_TEST(test_persist)
{
	static uint8_t big[3 * MIB];
	struct be_record rec;
	struct be_stats st0, st1;
	struct lease l;
	int i;

	fix_start();
	F.cfg.lmdb_sync = 1;
	be_open();
	tu_fill(big, sizeof(big), 7);
	ck_assert_int_eq(put("small", 3, "hello", 5, LIVE), BE_OK);
	ck_assert_int_eq(put("big", 9, big, sizeof(big), LIVE + SEC), BE_OK);
	ck_assert_int_eq(put("empty", 0, "", 0, LIVE + 2 * SEC), BE_OK);
	ck_assert_int_eq(put("gone", 4, "xyz", 3, LIVE), BE_OK);
	ck_assert_int_eq(tomb("gone", 4, 11, LIVE + 3 * SEC), BE_OK);
	ck_assert_int_eq(put("touched", 1, "t", 1, LIVE), BE_OK);
	{
		struct wr w = { .action = BE_TOUCH,
		    .expires = LIVE + 4 * SEC };

		ck_assert_int_eq(do_write(&w, "touched"), BE_OK);
	}
	st0 = stats();
	ck_assert_uint_eq(st0.entries, 4);
	ck_assert_uint_eq(st0.tombstones, 1);
	ck_assert_uint_eq(st0.payload_bytes, 5 + sizeof(big) + 1);
	be_close();

	nhev = 0;
	be_open();
	st1 = stats();
	ck_assert_mem_eq(&st0, &st1, sizeof(st0));
	rec = get("small", clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 3);
	ck_assert_uint_eq(rec.len, 5);
	ck_assert_mem_eq(rec.data, "hello", 5);
	ck_assert_uint_lt(udiff(rec.expires, LIVE), 10 * MS);

	rec = lease("big", &l);
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 9);
	ck_assert_uint_eq(l.len, sizeof(big));
	ck_assert(memcmp(l.data, big, sizeof(big)) == 0);
	ck_assert_uint_lt(udiff(rec.expires, LIVE + SEC), 10 * MS);
	lease_release(&l);

	rec = get("empty", clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert_uint_eq(rec.level, 0);
	ck_assert_uint_eq(rec.len, 0);

	rec = get("gone", clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_TOMBSTONE);
	ck_assert_uint_eq(rec.level, 4);
	for (i = 0; i < BE_DIGEST_LEN; i++)
		ck_assert_uint_eq(rec.digest[i], (uint8_t)(11 + i));
	ck_assert_uint_lt(udiff(rec.expires, LIVE + 3 * SEC), 10 * MS);

	rec = get("touched", clock_now_ns());
	ck_assert_uint_lt(udiff(rec.expires, LIVE + 4 * SEC), 10 * MS);

	/* The reopened store takes writes, and decide() sees the old. */
	{
		struct wr w = { .action = BE_PUT, .level = 4, .expires = LIVE,
		    .data = "again", .len = 5 };

		ck_assert_int_eq(do_write(&w, "small"), BE_OK);
		ck_assert_int_eq(w.cur.kind, BE_ENTRY);
		ck_assert_uint_eq(w.cur.level, 3);
	}
	ck_assert_uint_eq(nhev, 1);
	check_hev(0, BE_EV_UPDATE, "small", 4, 5);
	fix_end();
}
END_TEST

/*
 * Records whose expiry passed while the store was closed are invisible at
 * once after open (counted until swept), then swept with EXPIRE for the
 * entries and silently for tombstones.
 */
/*
 * The incarnation is drawn with the file and kept in it: a reopen has the
 * same, another file another one (backend.h "Identity"); generations
 * survive the reopen with their entries.
 */
START_TEST(test_incarnation_kept)
{
	struct wr w = { .action = BE_PUT, .level = 4, .gen = 0xabcdef,
	    .inc = 0x5eed, .data = "v", .len = 1 };
	uint64_t inc;
	char other[300];

	fix_start();
	w.expires = LIVE;
	be_open();
	inc = F.be->incarnation;
	ck_assert_uint_ne(inc, 0);
	ck_assert_int_eq(do_write(&w, "k"), BE_OK);
	be_close();
	be_open();
	ck_assert_uint_eq(F.be->incarnation, inc);
	ck_assert_uint_eq(get("k", clock_now_ns()).gen, 0xabcdef);
	ck_assert_uint_eq(get("k", clock_now_ns()).inc, 0x5eed);
	be_close();

	/* Another directory: another store. */
	snprintf(other, sizeof(other), "%s/other", F.dir);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	F.cfg.lmdb_path = other;
	be_open();
	ck_assert_uint_ne(F.be->incarnation, 0);
	ck_assert_uint_ne(F.be->incarnation, inc);
	be_close();
	F.cfg.lmdb_path = F.dir;
	fix_end();
}
END_TEST

static void
be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/*
 * A file of layout 1 (records without a generation) opens: its entries
 * read as generation 0, the file becomes layout 2 with an incarnation, and
 * an entry written again takes its generation.
 */
START_TEST(test_layout1_upgrade)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi rec, pay, idx, meta;
	MDB_val k, v;
	uint8_t hdr[24] = { 1, BE_ENTRY }, ik[8 + 3];
	struct timespec ts;
	struct be_record r;
	struct lease l;
	uint64_t wall, inc;
	struct wr w = { .action = BE_TOUCH };

	fix_start();
	clock_gettime(CLOCK_REALTIME, &ts);
	wall = ((uint64_t)ts.tv_sec + 3600) * SEC;
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 4), 0);
	ck_assert_int_eq(mdb_env_set_mapsize(env, 16 * MIB), 0);
	ck_assert_int_eq(mdb_env_open(env, F.dir, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
	ck_assert_int_eq(mdb_dbi_open(t, "rec", MDB_CREATE, &rec), 0);
	ck_assert_int_eq(mdb_dbi_open(t, "payload", MDB_CREATE, &pay), 0);
	ck_assert_int_eq(mdb_dbi_open(t, "expiry", MDB_CREATE, &idx), 0);
	ck_assert_int_eq(mdb_dbi_open(t, "meta", MDB_CREATE, &meta), 0);
	k = (MDB_val){ 6, "layout" };
	v = (MDB_val){ 1, "1" };
	ck_assert_int_eq(mdb_put(t, meta, &k, &v, 0), 0);
	hdr[7] = 3;			/* level */
	be64(hdr + 8, wall);
	hdr[23] = 2;			/* length */
	k = (MDB_val){ 3, "old" };
	v = (MDB_val){ sizeof(hdr), hdr };
	ck_assert_int_eq(mdb_put(t, rec, &k, &v, 0), 0);
	v = (MDB_val){ 2, "hi" };
	ck_assert_int_eq(mdb_put(t, pay, &k, &v, 0), 0);
	be64(ik, wall);
	memcpy(ik + 8, "old", 3);
	k = (MDB_val){ sizeof(ik), ik };
	v = (MDB_val){ 0, "" };
	ck_assert_int_eq(mdb_put(t, idx, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(t), 0);
	mdb_env_close(env);

	be_open();
	inc = F.be->incarnation;
	ck_assert_uint_ne(inc, 0);
	r = lease("old", &l);
	ck_assert_int_eq(r.kind, BE_ENTRY);
	ck_assert_uint_eq(r.level, 3);
	ck_assert_uint_eq(r.gen, 0);
	ck_assert_uint_eq(r.inc, inc);		/* its own */
	ck_assert_uint_eq(l.len, 2);
	ck_assert_mem_eq(l.data, "hi", 2);
	lease_release(&l);
	/* Rewritten in layout 2 by its next write, generation kept. */
	w.expires = LIVE;
	ck_assert_int_eq(do_write(&w, "old"), BE_OK);
	ck_assert_uint_eq(w.cur.gen, 0);
	ck_assert_int_eq(get("old", clock_now_ns()).kind, BE_ENTRY);
	be_close();

	/* Layout 2 now, with the incarnation it was given. */
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 4), 0);
	ck_assert_int_eq(mdb_env_open(env, F.dir, MDB_RDONLY, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
	ck_assert_int_eq(mdb_dbi_open(t, "meta", 0, &meta), 0);
	k = (MDB_val){ 6, "layout" };
	ck_assert_int_eq(mdb_get(t, meta, &k, &v), 0);
	ck_assert_uint_eq(v.mv_size, 1);
	ck_assert_mem_eq(v.mv_data, "2", 1);
	ck_assert_int_eq(mdb_dbi_open(t, "rec", 0, &rec), 0);
	k = (MDB_val){ 3, "old" };
	ck_assert_int_eq(mdb_get(t, rec, &k, &v), 0);
	ck_assert_uint_eq(v.mv_size, 40);
	ck_assert_uint_eq(((uint8_t *)v.mv_data)[0], 2);
	mdb_txn_abort(t);
	mdb_env_close(env);
	be_open();
	ck_assert_uint_eq(F.be->incarnation, inc);
	be_close();
	fix_end();
}
END_TEST

/* A layout this build does not know is refused, naming both. */
START_TEST(test_layout_unknown_refused)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi meta;
	MDB_val k = { 6, "layout" }, v = { 1, "9" };
	char err[512] = "";

	fix_start();
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 4), 0);
	ck_assert_int_eq(mdb_env_open(env, F.dir, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
	ck_assert_int_eq(mdb_dbi_open(t, "meta", MDB_CREATE, &meta), 0);
	ck_assert_int_eq(mdb_put(t, meta, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(t), 0);
	mdb_env_close(env);
	ck_assert_ptr_null(try_open(err, sizeof(err)));
	ck_assert_msg(strstr(err, "holds layout \"9\"; this build reads "
	    "layouts 1 and 2") != NULL, "%s", err);
	fix_end();
}
END_TEST

START_TEST(test_expired_while_closed)
{
	struct be_stats st;
	uint64_t soon;
	int more;

	fix_start();
	be_open();
	soon = clock_now_ns() + 100 * MS;
	ck_assert_int_eq(put("short", 1, "s", 1, soon), BE_OK);
	ck_assert_int_eq(put("long", 2, "l", 1, LIVE), BE_OK);
	ck_assert_int_eq(put("t", 1, "x", 1, LIVE), BE_OK);
	ck_assert_int_eq(tomb("t", 1, 0, soon), BE_OK);
	ck_assert_int_eq(get("short", clock_now_ns()).kind, BE_ENTRY);
	be_close();
	wait_clock(soon);

	nhev = 0;
	be_open();
	ck_assert_int_eq(get("short", clock_now_ns()).kind, BE_NONE);
	ck_assert_int_eq(get("t", clock_now_ns()).kind, BE_NONE);
	ck_assert_int_eq(get("long", clock_now_ns()).kind, BE_ENTRY);
	st = stats();
	ck_assert_uint_eq(st.entries, 2);	/* not swept yet */
	ck_assert_uint_eq(st.tombstones, 1);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, clock_now_ns(), 100, &more),
	    2);
	ck_assert_int_eq(more, 0);
	ck_assert_uint_eq(nhev, 1);
	check_hev(0, BE_EV_EXPIRE, "short", 1, 1);
	st = stats();
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.tombstones, 0);
	/* And the deletion is on disk once the writer ran. */
	be_close();
	be_open();
	st = stats();
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.tombstones, 0);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, clock_now_ns(), 100, &more),
	    0);
	fix_end();
}
END_TEST

/* --- The lock ------------------------------------------------------------ */

START_TEST(test_second_open_refused)
{
	struct backend *second;
	char err[512] = "", want[64];

	fix_start();
	be_open();
	ck_assert_int_eq(put("k", 1, "v", 1, LIVE), BE_OK);
	second = try_open(err, sizeof(err));
	ck_assert_ptr_null(second);
	ck_assert_msg(strstr(err, "in use by another alpcrund") != NULL, "%s",
	    err);
	ck_assert_msg(strstr(err, F.dir) != NULL, "%s", err);
	snprintf(want, sizeof(want), "pid %ld", (long)getpid());
	ck_assert_msg(strstr(err, want) != NULL, "%s", err);
	/* The refused open did not disturb the first. */
	ck_assert_int_eq(get("k", clock_now_ns()).kind, BE_ENTRY);
	ck_assert_int_eq(put("k2", 1, "v", 1, LIVE), BE_OK);
	be_close();
	/* Released with the first. */
	be_open();
	ck_assert_int_eq(get("k2", clock_now_ns()).kind, BE_ENTRY);
	fix_end();
}
END_TEST

START_TEST(test_path_errors)
{
	struct backend *be;
	char err[512] = "", file[300];
	FILE *f;

	fix_start();
	/* Created when missing (one level). */
	snprintf(file, sizeof(file), "%s/sub", F.dir);
	F.cfg.lmdb_path = file;
	be_open();
	be_close();
	/* A file where the directory should be. */
	snprintf(file, sizeof(file), "%s/plain", F.dir);
	f = fopen(file, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	F.cfg.lmdb_path = file;
	be = try_open(err, sizeof(err));
	ck_assert_ptr_null(be);
	ck_assert_msg(strstr(err, "not a directory") != NULL, "%s", err);
	/* Nothing can be created below a file. */
	snprintf(file, sizeof(file), "%s/plain/db", F.dir);
	be = try_open(err, sizeof(err));
	ck_assert_ptr_null(be);
	ck_assert_msg(strstr(err, "cannot create the directory") != NULL,
	    "%s", err);
	F.cfg.lmdb_path = NULL;
	be = try_open(err, sizeof(err));
	ck_assert_ptr_null(be);
	ck_assert_str_eq(err, "lmdb_path is not set");
	F.cfg.lmdb_path = F.dir;
	fix_end();
}
END_TEST

/* --- Fill ratio ---------------------------------------------------------- */

/*
 * With a small map and lmdb_full_ratio 60%, puts are refused with "store
 * full" before the map itself is full, leaving no trace; reads go on;
 * deletes are never refused, and one makes room for a put again.
 */
START_TEST(test_full_ratio)
{
	static uint8_t p[256 * KIB];
	struct be_record rec;
	struct be_stats st0, st1;
	struct wr w;
	char key[32];
	size_t n, i;
	int err;

	fix_start();
	F.cfg.lmdb_map_size = 8 * MIB;
	F.cfg.lmdb_full_ratio = 60;
	be_open();
	tu_fill(p, sizeof(p), 3);
	for (n = 0; n < 64; n++) {
		snprintf(key, sizeof(key), "fill-%zu", n);
		if ((err = put(key, 1, p, sizeof(p), LIVE)) != BE_OK)
			break;
	}
	ck_assert_int_eq(err, BE_ERR_FULL);
	/* 60% of 8 MiB is 4.8 MiB: 18 or so entries of 256 KiB. */
	ck_assert_uint_ge(n, 14);
	ck_assert_uint_le(n, 19);

	/* Refused: the message, and no trace of the write. */
	nhev = 0;
	st0 = stats();
	w = (struct wr){ .action = BE_PUT, .level = 1, .expires = LIVE,
	    .data = p, .len = sizeof(p) };
	ck_assert_int_eq(do_write(&w, "one-more"), BE_ERR_FULL);
	ck_assert_msg(strncmp(w.msg, "store full: ", 12) == 0, "%s", w.msg);
	ck_assert_msg(strstr(w.msg, "lmdb_full_ratio 60%") != NULL, "%s",
	    w.msg);
	ck_assert_int_eq(get("one-more", clock_now_ns()).kind, BE_NONE);
	ck_assert_uint_eq(nhev, 0);
	st1 = stats();
	ck_assert_mem_eq(&st0, &st1, sizeof(st0));
	/* An update of a stored entry adds pages too: refused alike. */
	ck_assert_int_eq(put("fill-0", 2, p, sizeof(p), LIVE), BE_ERR_FULL);
	ck_assert_uint_eq(get("fill-0", clock_now_ns()).level, 1);

	/* Reads are served. */
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "fill-%zu", i);
		rec = get(key, clock_now_ns());
		ck_assert_int_eq(rec.kind, BE_ENTRY);
		ck_assert(memcmp(rec.data, p, sizeof(p)) == 0);
	}
	/* A delete is not refused, and makes room (the delete commits
	 * before the put is decided: its pages are free by then). */
	ck_assert_int_eq(tomb("fill-1", 1, 0, LIVE), BE_OK);
	ck_assert_int_eq(tomb("fill-2", 1, 0, LIVE), BE_OK);
	ck_assert_int_eq(put("after", 1, p, sizeof(p), LIVE), BE_OK);
	ck_assert_int_eq(get("after", clock_now_ns()).kind, BE_ENTRY);
	/* Small writes still fit for a while after a big one is refused. */
	ck_assert_int_eq(put("tiny", 1, "x", 1, LIVE), BE_OK);
	fix_end();
}
END_TEST

/*
 * At the fill ratio, a delete makes room for a put of the same size at
 * once, although LMDB reuses the pages a transaction freed only two
 * transactions later and the end of the map is used up: the put that meets
 * MDB_MAP_FULL runs once more after a commit that lets the freed pages be
 * reused (decide() still runs once, which do_write() checks).
 */
START_TEST(test_map_full_retry)
{
	static uint8_t p[256 * KIB];
	char key[32];
	size_t n, i;
	int err;

	fix_start();
	F.cfg.lmdb_map_size = 4 * MIB;
	F.cfg.lmdb_full_ratio = 95;
	be_open();
	tu_fill(p, sizeof(p), 9);
	for (n = 0; n < 64; n++) {
		snprintf(key, sizeof(key), "m-%zu", n);
		if ((err = put(key, 1, p, sizeof(p), LIVE)) != BE_OK)
			break;
	}
	ck_assert_int_eq(err, BE_ERR_FULL);
	ck_assert_uint_ge(n, 10);
	for (i = 0; i < 6; i++) {
		snprintf(key, sizeof(key), "m-%zu", i);
		ck_assert_int_eq(tomb(key, 1, 0, LIVE), BE_OK);
		snprintf(key, sizeof(key), "again-%zu", i);
		ck_assert_int_eq(put(key, 1, p, sizeof(p), LIVE), BE_OK);
		ck_assert(memcmp(get(key, clock_now_ns()).data, p,
		    sizeof(p)) == 0);
	}
	ck_assert_uint_gt(backend_lmdb_test_retries(F.be), 0);
	ck_assert_uint_eq(stats().entries, n);
	fix_end();
}
END_TEST

/*
 * MDB_MAP_FULL itself (here: a lease on a replaced version keeps every
 * page freed since from reuse, so the map fills behind it) answers
 * BE_ERR_FULL "store full: LMDB map full", after the one run again, and
 * leaves no trace; once the lease goes, writes work again.
 */
START_TEST(test_map_full_lmdb)
{
	static uint8_t p[256 * KIB], v1[256 * KIB];
	struct lease l;
	struct wr w;
	uint32_t lvl;
	uint64_t r0;
	int err = BE_OK;

	fix_start();
	F.cfg.lmdb_map_size = 4 * MIB;
	be_open();
	tu_fill(p, sizeof(p), 4);
	memcpy(v1, p, sizeof(v1));
	ck_assert_int_eq(put("k", 1, p, sizeof(p), LIVE), BE_OK);
	lease("k", &l);
	for (lvl = 2; lvl < 64; lvl++) {
		p[0] = (uint8_t)lvl;
		if ((err = put("k", lvl, p, sizeof(p), LIVE)) != BE_OK)
			break;
	}
	ck_assert_int_eq(err, BE_ERR_FULL);
	ck_assert_uint_ge(lvl, 8);
	nhev = 0;
	r0 = backend_lmdb_test_retries(F.be);
	w = (struct wr){ .action = BE_PUT, .level = 99, .expires = LIVE,
	    .data = p, .len = sizeof(p) };
	ck_assert_int_eq(do_write(&w, "other"), BE_ERR_FULL);
	ck_assert_msg(strncmp(w.msg, "store full: LMDB map full", 25) == 0,
	    "%s", w.msg);
	ck_assert_uint_eq(backend_lmdb_test_retries(F.be), r0 + 1);
	ck_assert_uint_eq(nhev, 0);
	ck_assert_int_eq(get("other", clock_now_ns()).kind, BE_NONE);
	ck_assert_uint_eq(get("k", clock_now_ns()).level, lvl - 1);
	ck_assert_uint_eq(l.len, sizeof(v1));
	ck_assert(memcmp(l.data, v1, sizeof(v1)) == 0);
	lease_release(&l);
	ck_assert_int_eq(put("other", 1, p, sizeof(p), LIVE), BE_OK);
	fix_end();
}
END_TEST

/*
 * One group commit in which one write is refused (full) and the others
 * commit: the failure aborts only its own nested transaction.
 */
START_TEST(test_group_partial_failure)
{
	static uint8_t big[7 * MIB + MIB / 2];
	struct wr w[5];
	uint64_t c0;
	int i;

	fix_start();
	F.cfg.lmdb_map_size = 8 * MIB;
	be_open();
	tu_fill(big, sizeof(big), 1);
	memset(w, 0, sizeof(w));
	backend_lmdb_test_hold(F.be, 1);
	c0 = backend_lmdb_test_commits(F.be);
	for (i = 0; i < 5; i++) {
		w[i] = (struct wr){ .action = BE_PUT, .level = (uint32_t)i,
		    .expires = LIVE, .data = i == 2 ? (const void *)big :
		    (const void *)"ok", .len = i == 2 ? sizeof(big) : 2 };
	}
	w[4].action = BE_KEEP;
	queue(&w[0], "a");
	queue(&w[1], "b");
	queue(&w[2], "huge");		/* past 90% of the map */
	queue(&w[3], "c");
	queue(&w[4], "b");		/* sees b as written by w[1] */
	backend_lmdb_test_hold(F.be, 0);
	wait_done(w, 5);
	ck_assert_uint_eq(backend_lmdb_test_commits(F.be) - c0, 1);
	ck_assert_int_eq(w[0].err, BE_OK);
	ck_assert_int_eq(w[1].err, BE_OK);
	ck_assert_int_eq(w[2].err, BE_ERR_FULL);
	ck_assert_int_eq(w[3].err, BE_OK);
	ck_assert_int_eq(w[4].err, BE_OK);
	ck_assert_int_eq(w[4].cur.kind, BE_ENTRY);
	ck_assert_uint_eq(w[4].cur.level, 1);
	ck_assert_int_eq(get("a", clock_now_ns()).kind, BE_ENTRY);
	ck_assert_int_eq(get("huge", clock_now_ns()).kind, BE_NONE);
	ck_assert_int_eq(get("c", clock_now_ns()).kind, BE_ENTRY);
	ck_assert_uint_eq(stats().entries, 3);
	ck_assert_uint_eq(nhev, 3);
	fix_end();
}
END_TEST

/* --- Group commit -------------------------------------------------------- */

#define NGROUP	300

/*
 * Writes queued while the writer is busy commit together: NGROUP writes
 * queued before the writer looks commit in one transaction (one fsync),
 * each answered once, in order, with its own result.
 */
START_TEST(test_group_commit)
{
	static struct wr w[NGROUP];
	char key[32];
	uint64_t c0, c1;
	uint32_t v;
	size_t i;

	fix_start();
	F.cfg.lmdb_sync = 1;
	be_open();
	memset(w, 0, sizeof(w));
	backend_lmdb_test_hold(F.be, 1);
	c0 = backend_lmdb_test_commits(F.be);
	for (i = 0; i < NGROUP; i++) {
		w[i].action = BE_PUT;
		w[i].level = (uint32_t)i;
		w[i].expires = LIVE;
		w[i].data = &w[i].level;
		w[i].len = sizeof(w[i].level);
		snprintf(key, sizeof(key), "g-%zu", i % (NGROUP / 2));
		queue(&w[i], key);
	}
	/* Nothing is answered before it commits. */
	event_base_loop(F.base, EVLOOP_NONBLOCK);
	for (i = 0; i < NGROUP; i++)
		ck_assert_int_eq(w[i].ndone, 0);
	ck_assert_uint_eq(backend_lmdb_test_commits(F.be), c0);
	backend_lmdb_test_hold(F.be, 0);
	wait_done(w, NGROUP);
	c1 = backend_lmdb_test_commits(F.be);
	ck_assert_uint_eq(c1 - c0, 1);
	/* The second write of each key saw the first, in queue order. */
	for (i = 0; i < NGROUP; i++) {
		ck_assert_int_eq(w[i].err, BE_OK);
		if (i < NGROUP / 2)
			ck_assert_int_eq(w[i].cur.kind, BE_NONE);
		else {
			ck_assert_int_eq(w[i].cur.kind, BE_ENTRY);
			ck_assert_uint_eq(w[i].cur.level, i - NGROUP / 2);
		}
	}
	ck_assert_uint_eq(nhev, NGROUP);
	for (i = 0; i < NGROUP; i++) {
		snprintf(key, sizeof(key), "g-%zu", i % (NGROUP / 2));
		check_hev(i, i < NGROUP / 2 ? BE_EV_SET : BE_EV_UPDATE, key,
		    (uint32_t)i, sizeof(v));
	}
	for (i = 0; i < NGROUP / 2; i++) {
		snprintf(key, sizeof(key), "g-%zu", i);
		memcpy(&v, get(key, clock_now_ns()).data, sizeof(v));
		ck_assert_uint_eq(v, i + NGROUP / 2);
	}
	ck_assert_uint_eq(stats().entries, NGROUP / 2);
	fix_end();
}
END_TEST

/* --- Leases -------------------------------------------------------------- */

/*
 * A lease keeps its bytes, unchanged, while the entry is replaced many
 * times, deleted and swept, and the writer keeps taking pages. (Pages
 * freed after the lease's snapshot are not reused while it lives: the map
 * is sized for that here.)
 */
START_TEST(test_lease_outlives_churn)
{
	static uint8_t a[1 * MIB], b[1 * MIB], c[100];
	struct lease la, lc;
	struct be_record rec;
	const uint8_t *pa;
	char key[32];
	int i, more;

	fix_start();
	F.cfg.lmdb_map_size = 64 * MIB;
	be_open();
	tu_fill(a, sizeof(a), 1);
	tu_fill(c, sizeof(c), 3);
	ck_assert_int_eq(put("k", 1, a, sizeof(a), LIVE), BE_OK);
	ck_assert_int_eq(put("small", 1, c, sizeof(c), F.t0 + 10 * SEC),
	    BE_OK);
	rec = lease("k", &la);
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	pa = la.data;
	rec = lease("small", &lc);
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	for (i = 2; i < 18; i++) {
		tu_fill(b, sizeof(b), (uint32_t)i);
		ck_assert_int_eq(put("k", (uint32_t)i, b, sizeof(b), LIVE),
		    BE_OK);
		snprintf(key, sizeof(key), "other-%d", i % 4);
		ck_assert_int_eq(put(key, (uint32_t)i, b, sizeof(b) / 4, LIVE),
		    BE_OK);
	}
	rec = get("k", clock_now_ns());
	ck_assert_uint_eq(rec.level, 17);
	ck_assert(memcmp(rec.data, b, sizeof(b)) == 0);
	ck_assert_ptr_eq(la.data, pa);
	ck_assert_uint_eq(la.len, sizeof(a));
	ck_assert(memcmp(la.data, a, sizeof(a)) == 0);

	ck_assert_int_eq(tomb("k", 17, 0, LIVE), BE_OK);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, F.t0 + 20 * SEC, 10, &more),
	    1);
	/* The deletion commits and new writes take pages meanwhile. */
	for (i = 0; i < 8; i++) {
		snprintf(key, sizeof(key), "after-%d", i);
		ck_assert_int_eq(put(key, 1, b, sizeof(b), LIVE), BE_OK);
	}
	ck_assert_int_eq(get("small", clock_now_ns()).kind, BE_NONE);
	ck_assert(memcmp(la.data, a, sizeof(a)) == 0);
	ck_assert_uint_eq(lc.len, sizeof(c));
	ck_assert(memcmp(lc.data, c, sizeof(c)) == 0);
	lease_release(&la);
	lease_release(&lc);
	fix_end();
}
END_TEST

/*
 * With lmdb_max_readers 4, leases may pin 3 snapshots; a lease that would
 * pin a fourth is a heap copy (same bytes), and lookups keep working; once
 * released, leases pin snapshots again. Each lease here is on a version of
 * "k" that the next write replaces, so that it cannot move to a newer
 * snapshot and keeps its own.
 */
START_TEST(test_lease_copy_fallback)
{
	struct lease l[8];
	struct be_record rec;
	uint8_t p[8][2000];
	size_t readers, pinned;
	int i;

	fix_start();
	F.cfg.lmdb_max_readers = 4;
	be_open();
	for (i = 0; i < 8; i++) {
		tu_fill(p[i], sizeof(p[i]), (uint32_t)i + 1);
		/* Each write commits, so each lease takes a new snapshot. */
		ck_assert_int_eq(put("k", (uint32_t)i, p[i], sizeof(p[i]), LIVE),
		    BE_OK);
		rec = lease("k", &l[i]);
		ck_assert_int_eq(rec.kind, BE_ENTRY);
		ck_assert_uint_eq(rec.level, i);
		ck_assert_uint_eq(l[i].len, sizeof(p[i]));
		ck_assert(memcmp(l[i].data, p[i], sizeof(p[i])) == 0);
		readers = backend_lmdb_test_readers(F.be, &pinned);
		ck_assert_uint_le(readers, 4);
		ck_assert_uint_eq(pinned, i < 3 ? (size_t)i + 1 : 3);
		ck_assert_uint_eq(backend_lmdb_test_copies(F.be),
		    i < 3 ? 0 : (uint64_t)i - 2);
	}
	/* Plain lookups still answer, from the one free slot. */
	ck_assert_int_eq(put("other", 1, p[1], sizeof(p[1]), LIVE), BE_OK);
	rec = get("other", clock_now_ns());
	ck_assert_int_eq(rec.kind, BE_ENTRY);
	ck_assert(memcmp(rec.data, p[1], sizeof(p[1])) == 0);
	rec = get("k", clock_now_ns());
	ck_assert_uint_eq(rec.level, 7);
	/* Copies are as good as pins after the entry goes. */
	ck_assert_int_eq(tomb("k", 7, 0, LIVE), BE_OK);
	for (i = 0; i < 8; i++) {
		ck_assert(memcmp(l[i].data, p[i], sizeof(p[i])) == 0);
		lease_release(&l[i]);
	}
	backend_lmdb_test_readers(F.be, &pinned);
	ck_assert_uint_eq(pinned, 0);
	lease("other", &l[0]);
	backend_lmdb_test_readers(F.be, &pinned);
	ck_assert_uint_eq(pinned, 1);
	ck_assert_uint_eq(backend_lmdb_test_copies(F.be), 5);
	lease_release(&l[0]);
	fix_end();
}
END_TEST

/*
 * The lease a write asks for on what it stores (backend.h) pins the
 * snapshot that its commit made, like a lookup's: no copy. It is a heap
 * copy of the written bytes only when that snapshot may no longer show
 * them: another write to the key was queued behind it, or the entry had
 * already expired.
 */
START_TEST(test_write_lease_zero_copy)
{
	struct wr w[2];
	struct be_record rec;
	uint8_t a[3000], b[3000];
	size_t pinned;

	fix_start();
	be_open();
	tu_fill(a, sizeof(a), 1);
	tu_fill(b, sizeof(b), 2);
	w[0] = (struct wr){ .action = BE_PUT, .level = 1, .expires = LIVE,
	    .data = a, .len = sizeof(a), .want_lease = 1 };
	ck_assert_int_eq(do_write(&w[0], "k"), BE_OK);
	ck_assert_uint_eq(backend_lmdb_test_copies(F.be), 0);
	backend_lmdb_test_readers(F.be, &pinned);
	ck_assert_uint_eq(pinned, 1);
	ck_assert_uint_eq(w[0].w.lease.len, sizeof(a));
	ck_assert(memcmp(w[0].w.lease.data, a, sizeof(a)) == 0);
	lease_release(&w[0].w.lease);

	/* Two in flight: the first is copied, the second pinned. */
	w[0] = (struct wr){ .action = BE_PUT, .level = 2, .expires = LIVE,
	    .data = a, .len = sizeof(a), .want_lease = 1 };
	w[1] = (struct wr){ .action = BE_PUT, .level = 3, .expires = LIVE,
	    .data = b, .len = sizeof(b), .want_lease = 1 };
	queue(&w[0], "k");
	queue(&w[1], "k");
	wait_done(w, 2);
	ck_assert_int_eq(w[0].err, BE_OK);
	ck_assert_int_eq(w[1].err, BE_OK);
	ck_assert_uint_eq(backend_lmdb_test_copies(F.be), 1);
	ck_assert(memcmp(w[0].w.lease.data, a, sizeof(a)) == 0);
	ck_assert(memcmp(w[1].w.lease.data, b, sizeof(b)) == 0);
	rec = get("k", clock_now_ns());
	ck_assert_uint_eq(rec.level, 3);
	lease_release(&w[0].w.lease);
	lease_release(&w[1].w.lease);

	/* Expired as written: copied. */
	w[0] = (struct wr){ .action = BE_PUT, .level = 4, .expires = 1,
	    .data = b, .len = sizeof(b), .want_lease = 1 };
	ck_assert_int_eq(do_write(&w[0], "k"), BE_OK);
	ck_assert_uint_eq(backend_lmdb_test_copies(F.be), 2);
	ck_assert(memcmp(w[0].w.lease.data, b, sizeof(b)) == 0);
	lease_release(&w[0].w.lease);
	backend_lmdb_test_readers(F.be, &pinned);
	ck_assert_uint_eq(pinned, 0);
	fix_end();
}
END_TEST

/*
 * A lease on an entry that does not change follows the newest snapshot at
 * each commit, so that the snapshot it started in does not live on (its
 * pages freed since could not be reused): however many leases on unchanged
 * entries are held across commits, one snapshot holds them all; a lease on
 * an entry that changed keeps its own. (Payloads of a page or more, on
 * overflow pages; a small one inside a B-tree leaf moves only while that
 * leaf is untouched.)
 */
START_TEST(test_lease_moves_to_new_snapshot)
{
	static uint8_t a[256 * KIB], b[256 * KIB], c[8 * KIB];
	struct lease l[6], lc;
	size_t pinned;
	char key[32];
	int i;

	fix_start();
	be_open();
	tu_fill(a, sizeof(a), 1);
	tu_fill(b, sizeof(b), 2);
	tu_fill(c, sizeof(c), 3);
	ck_assert_int_eq(put("stay", 1, a, sizeof(a), LIVE), BE_OK);
	ck_assert_int_eq(put("page", 1, c, sizeof(c), LIVE), BE_OK);
	ck_assert_int_eq(put("change", 1, b, sizeof(b), LIVE), BE_OK);
	lease("change", &lc);
	for (i = 0; i < 6; i++) {
		lease(i % 2 ? "page" : "stay", &l[i]);
		snprintf(key, sizeof(key), "churn-%d", i);
		ck_assert_int_eq(put(key, 1, b, sizeof(b), LIVE), BE_OK);
		ck_assert_int_eq(tomb(key, 1, 0, LIVE), BE_OK);
		backend_lmdb_test_readers(F.be, &pinned);
		/* "change" is unchanged so far: all in one snapshot. */
		ck_assert_uint_eq(pinned, 1);
	}
	/* A TOUCH rewrites the header, not the payload: still movable. */
	{
		struct wr w = { .action = BE_TOUCH, .expires = LIVE + SEC };

		ck_assert_int_eq(do_write(&w, "stay"), BE_OK);
	}
	backend_lmdb_test_readers(F.be, &pinned);
	ck_assert_uint_eq(pinned, 1);
	ck_assert_int_eq(put("change", 2, a, sizeof(a), LIVE), BE_OK);
	ck_assert_int_eq(put("churn", 1, b, sizeof(b), LIVE), BE_OK);
	backend_lmdb_test_readers(F.be, &pinned);
	ck_assert_uint_eq(pinned, 2);		/* lc stays behind */
	for (i = 0; i < 6; i++) {
		if (i % 2)
			ck_assert(memcmp(l[i].data, c, sizeof(c)) == 0);
		else
			ck_assert(memcmp(l[i].data, a, sizeof(a)) == 0);
		lease_release(&l[i]);
	}
	ck_assert(memcmp(lc.data, b, sizeof(b)) == 0);
	lease_release(&lc);
	backend_lmdb_test_readers(F.be, &pinned);
	ck_assert_uint_eq(pinned, 0);
	fix_end();
}
END_TEST

/*
 * The contract says leases go before close(); one that did not still
 * reads its bytes, and the environment (and the lock) goes with it.
 */
START_TEST(test_lease_outlives_close)
{
	static uint8_t p[300 * KIB];
	struct lease l;

	fix_start();
	be_open();
	tu_fill(p, sizeof(p), 5);
	ck_assert_int_eq(put("k", 1, p, sizeof(p), LIVE), BE_OK);
	lease("k", &l);
	be_close();
	ck_assert(memcmp(l.data, p, sizeof(p)) == 0);
	lease_release(&l);
	be_open();			/* the lock went with it */
	ck_assert_int_eq(get("k", clock_now_ns()).kind, BE_ENTRY);
	fix_end();
}
END_TEST

/* --- Sweeping and writes in flight --------------------------------------- */

/*
 * sweep() removes records at once for every reader while the writer
 * deletes them later; a key whose write is queued is left to that write
 * (which reports EXPIRE then SET), and a write queued after the sweep sees
 * the record gone (SET only). Each expired entry is reported exactly once.
 */
START_TEST(test_sweep_meets_writes)
{
	struct wr w1 = { .action = BE_PUT, .level = 2, .data = "new",
	    .len = 3 };
	struct wr w2 = { .action = BE_PUT, .level = 5, .data = "five",
	    .len = 4 };
	uint64_t exp;
	int more;

	fix_start();
	be_open();
	exp = clock_now_ns() + 50 * MS;
	ck_assert_int_eq(put("busy", 1, "b", 1, exp), BE_OK);
	ck_assert_int_eq(put("idle", 1, "i", 1, exp), BE_OK);
	ck_assert_int_eq(put("later", 1, "l", 1, exp), BE_OK);
	wait_clock(exp);
	nhev = 0;

	backend_lmdb_test_hold(F.be, 1);
	/* busy: a write queued before the sweep. */
	w1.expires = LIVE;
	queue(&w1, "busy");
	more = -1;
	ck_assert_uint_eq(F.be->ops->sweep(F.be, clock_now_ns(), 10, &more),
	    2);
	ck_assert_int_eq(more, 0);
	ck_assert_uint_eq(nhev, 2);
	ck_assert_int_eq(hevs[0].ev, BE_EV_EXPIRE);
	ck_assert_int_eq(hevs[1].ev, BE_EV_EXPIRE);
	ck_assert_str_ne(hevs[0].key, "busy");
	ck_assert_str_ne(hevs[1].key, "busy");
	ck_assert_uint_eq(stats().entries, 1);
	/* Gone for readers before the writer ran, even as of a time
	 * before their expiry. */
	ck_assert_int_eq(get("idle", F.t0).kind, BE_NONE);
	ck_assert_int_eq(get("later", F.t0).kind, BE_NONE);
	ck_assert_int_eq(get("busy", F.t0).kind, BE_ENTRY);
	/* later: a write queued after the sweep. */
	w2.expires = LIVE;
	queue(&w2, "later");
	/* Nothing more to sweep meanwhile (busy is in flight). */
	ck_assert_uint_eq(F.be->ops->sweep(F.be, clock_now_ns(), 10, &more),
	    0);
	ck_assert_int_eq(more, 0);
	backend_lmdb_test_hold(F.be, 0);
	wait_done(&w1, 1);
	wait_done(&w2, 1);
	ck_assert_int_eq(w1.cur.kind, BE_NONE);	/* decide: expired */
	ck_assert_int_eq(w2.cur.kind, BE_NONE);	/* decide: swept */
	ck_assert_uint_eq(nhev, 5);
	check_hev(2, BE_EV_EXPIRE, "busy", 1, 1);
	check_hev(3, BE_EV_SET, "busy", 2, 3);
	check_hev(4, BE_EV_SET, "later", 5, 4);
	ck_assert_uint_eq(stats().entries, 2);
	ck_assert_uint_eq(F.be->ops->sweep(F.be, clock_now_ns(), 10, &more),
	    0);
	be_close();
	be_open();
	ck_assert_uint_eq(stats().entries, 2);
	ck_assert_int_eq(get("idle", clock_now_ns()).kind, BE_NONE);
	ck_assert_uint_eq(get("later", clock_now_ns()).level, 5);
	fix_end();
}
END_TEST

/* Sweeps queue faster than the writer deletes: each slice takes the next
 * records, never one twice, and *more says when they ran out. */
START_TEST(test_sweep_slices_in_flight)
{
	char key[32];
	size_t n, total = 0;
	int i, more = 1;

	fix_start();
	be_open();
	for (i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "s%03d", i);
		ck_assert_int_eq(put(key, 1, "v", 1, F.t0 + 10 * SEC +
		    (uint64_t)i), BE_OK);
	}
	nhev = 0;
	backend_lmdb_test_hold(F.be, 1);
	while (more) {
		n = F.be->ops->sweep(F.be, F.t0 + 20 * SEC, 7, &more);
		ck_assert_uint_le(n, 7);
		ck_assert(n > 0);
		total += n;
	}
	ck_assert_uint_eq(total, 100);
	ck_assert_uint_eq(nhev, 100);
	for (i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "s%03d", i);
		check_hev((size_t)i, BE_EV_EXPIRE, key, 1, 1);
	}
	ck_assert_uint_eq(stats().entries, 0);
	backend_lmdb_test_hold(F.be, 0);
	be_close();
	be_open();
	ck_assert_uint_eq(stats().entries, 0);
	fix_end();
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("lmdb");
	TCase *tc;

	/* Each case opens a store or two in a temporary directory; a few
	 * hundred writes, some with fsync, tens of MiB of payloads: seconds,
	 * a minute under valgrind. */
	tc = tcase_create("persistence");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_persist);
	tcase_add_test(tc, test_incarnation_kept);
	tcase_add_test(tc, test_layout1_upgrade);
	tcase_add_test(tc, test_layout_unknown_refused);
	tcase_add_test(tc, test_expired_while_closed);
	tcase_add_test(tc, test_second_open_refused);
	tcase_add_test(tc, test_path_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("writes");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_full_ratio);
	tcase_add_test(tc, test_map_full_retry);
	tcase_add_test(tc, test_map_full_lmdb);
	tcase_add_test(tc, test_group_partial_failure);
	tcase_add_test(tc, test_group_commit);
	suite_add_tcase(s, tc);

	tc = tcase_create("leases");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_lease_outlives_churn);
	tcase_add_test(tc, test_lease_copy_fallback);
	tcase_add_test(tc, test_write_lease_zero_copy);
	tcase_add_test(tc, test_lease_moves_to_new_snapshot);
	tcase_add_test(tc, test_lease_outlives_close);
	suite_add_tcase(s, tc);

	tc = tcase_create("sweep");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_sweep_meets_writes);
	tcase_add_test(tc, test_sweep_slices_in_flight);
	suite_add_tcase(s, tc);

	return tu_run(s);
}
