/*
 * lmdb.c: the `lmdb` backend (spec §6): records in an LMDB environment at
 * lmdb_path, so that the central cache survives restarts and kill -9 and
 * can hold more than RAM.
 *
 * On-disk layout (layout 2; the "meta" database holds "layout" -> "2", and
 * an environment of a layout other than 1 or 2 is refused at open):
 *
 *   rec      session_id -> record header, big-endian fields:
 *              0  u8   layout of this record (2, or 1: see below)
 *              1  u8   kind: 1 entry, 2 tombstone (enum be_kind)
 *              2  u16  zero
 *              4  u32  update level
 *              8  u64  expiry, wall clock: ns since the Unix epoch
 *             16  u64  payload length (0 for a tombstone)
 *             24  u64  generation (zero for a tombstone)
 *             32  u64  origin: the incarnation the content came from
 *             40  [32] tombstone only: SHA-256 of the deleted payload
 *            (40 bytes for an entry, 72 for a tombstone)
 *   payload  session_id -> the payload bytes, for entries of length > 0.
 *            Apart from the header so that a TTL restart (BE_TOUCH)
 *            rewrites 40 bytes and not the payload: LMDB copies a value
 *            whole when it changes.
 *   expiry   u64 big-endian wall-clock expiry || session_id -> empty. The
 *            index the sweeper walks from its start: it touches expired
 *            records only, never the whole database.
 *   meta     "layout" -> "2"; "incarnation" -> u64 big-endian, drawn when
 *            the environment is created (backend.h "Identity"): a
 *            restart keeps it, a new or another file has its own;
 *            "tick" -> a counter (see run_jobs()).
 *
 * Layout 1 (the same without generation and origin: 24 and 56 bytes) is
 * read as well, as generation 0 and this store's origin, and turned into layout 2 at open by adding
 * "incarnation" and setting "layout" to "2" (its records are rewritten
 * when next written): an older build then refuses the file rather than
 * misreading it.
 *
 * Clocks: the interface speaks monotonic ns (clock_now_ns()); what is
 * stored is wall-clock, converted at this file's boundary with the offset
 * measured at open (wall - monotonic). A record that expired while the
 * daemon was down converts to a monotonic time in the past: it is
 * invisible from the first lookup, and its index entry, first in the
 * expiry index, is swept at the first ticks.
 *
 * Threads. The loop thread does every read (lookup, the sweeper's index
 * scan, the count at open); one writer thread does every write. write()
 * queues a job (mutex + condition variable); the writer takes everything
 * that queued meanwhile and runs it in one write transaction (group commit:
 * one fsync for many writes), each job in a nested (child) transaction so
 * that one job's failure (map full, say) is aborted alone and leaves no
 * trace while the others commit (the first job of a group runs in the
 * parent itself: nothing else is in it yet). A group is cut at GROUP_JOBS
 * jobs or GROUP_BYTES payload bytes, so that the dirty pages of one
 * transaction stay bounded. After the commit the writer appends the jobs to a
 * completion list (second mutex) and wakes the loop through an eventfd
 * watched by a libevent event (no evthread needed: libevent is touched by
 * the loop thread only). On the loop, each job's counters are applied, its
 * change reported to the hook, then its done() called, in queue order.
 * decide() runs in the writer, inside the job's own transaction, so it is
 * atomic with applying its answer (backend.h).
 *
 * Reads and leases (zero copy). A lookup reads through a shared read
 * transaction (MDB_NOTLS: the reader slot belongs to the transaction, not
 * to the thread). The current one serves new lookups until it is
 * RTX_MAX_AGE old or a commit completed since it began (read-your-writes:
 * an RPC answered OK is visible to the next Get); then a fresh snapshot is
 * taken, renewing the old handle in place when no lease holds it. A lease
 * is a reference on the transaction whose snapshot holds the payload: the
 * bytes are sent straight from the memory map, and an LMDB snapshot never
 * changes, whatever later writes do. A transaction left behind with leases
 * is reset at its last release (into a small pool of reset handles, which
 * keep their reader slot, or aborted).
 *
 * Why renew every few milliseconds: a read transaction pins every page
 * that was live in its snapshot, so pages freed by later commits cannot be
 * reused while it lives; a long-lived reader makes every write take fresh
 * pages at the end of the map, which then fills although the data did not
 * grow. So no snapshot is kept longer than a few ms for new lookups, and
 * only leases (bytes still on their way to a socket) keep one longer. A
 * slow client can hold a lease for minutes, so after each commit the
 * leases of old snapshots whose entry did not change move to the newest
 * snapshot (migrate()): only a lease on an entry that was since replaced
 * or deleted keeps its old snapshot, as it must to keep its bytes.
 *
 * Reader slots. Each live transaction holds one of lmdb_max_readers slots.
 * Leases may pin at most max_readers - 1 - max_readers/16 transactions;
 * past that, a lease is a heap copy of the payload instead of a pin, so
 * that slow readers can never exhaust the slots and make lookups fail: the
 * reserve always leaves a slot for the current snapshot (and a few for
 * tools such as mdb_stat).
 *
 * Store full. A write that adds data (BE_PUT) is refused with BE_ERR_FULL
 * "store full: ..." when the pages in use (the B-trees of every database,
 * the freelist's own pages and the two meta pages; free pages are not in
 * use) plus what the payload needs would pass lmdb_full_ratio of the map.
 * Deletes are never refused that way, so they can always make room again.
 * LMDB reuses the pages freed by transaction T only from T+2 on, once no
 * reader sees T-1 or older: a write that meets MDB_MAP_FULL right after
 * the Delete that made room is therefore run once more, after a commit and
 * once the loop has moved its readers on (run_jobs()). MDB_MAP_FULL that
 * persists (a map fragmented, or pages pinned by a lease on a replaced
 * entry) answers BE_ERR_FULL too; other LMDB errors answer BE_ERR_IO with
 * the LMDB error named. Both are logged.
 *
 * Sweeping. sweep() runs on the loop and must not block on the disk, so
 * its deletion is handed to the writer, while the interface (and the
 * conformance suite) expects it to free records synchronously. The two
 * meet thus: sweep() walks the expiry index in the current snapshot and
 * takes up to `budget` expired records whose key has no write queued or
 * unanswered (those are left to the write, which sees the record expired
 * and reports it, or to a later sweep). Each record taken is "doomed" at
 * once: every lookup presents it as BE_NONE, the counters drop it, EXPIRE
 * is reported to the hook (tombstones silently), and the count returned
 * and *more (another expired, undoomed record follows) describe that
 * logical removal. The physical deletion is one job queued to the writer,
 * ahead of any write queued after this call, which therefore sees the
 * record gone, exactly as decide() would have seen it expired. When that
 * job completes on the loop, the doomed marks go. A sweep transaction that
 * fails (a storage error) puts its records back in the counters and
 * undooms them, and a later sweep reports them again; a restart before
 * the deletion committed finds them expired anyway (their wall-clock
 * expiry passed) unless the caller swept with a `now` ahead of the clock,
 * which only tests do. The doomed backlog is bounded (DOOM_MAX): past it
 * sweep() frees nothing and the next tick carries on.
 *
 * Counters (stats()) are kept on the loop: counted once at open by one
 * scan of "rec", then moved by each committed job. used_bytes counts as
 * memory does (key + payload + BE_ENTRY_OVERHEAD per record); the fill
 * level that refuses writes is measured in LMDB pages instead.
 *
 * A second daemon on the same path is refused by flock(LOCK_EX|LOCK_NB) on
 * lmdb_path/alpcrund.lock, before LMDB's own files are opened (closing a
 * descriptor of them would drop LMDB's own locks). Stale reader slots of a
 * crashed process are cleared at open (mdb_reader_check; LMDB resets its
 * lock file anyway when no other process has the environment open).
 *
 * Durability: lmdb_sync on commits with fsync (an acknowledged write
 * survives kill -9 and power loss); off opens with MDB_NOSYNC (it survives
 * kill -9, whose pages are in the page cache already, not a machine crash).
 */
#define _POSIX_C_SOURCE 200809L
#ifndef _GNU_SOURCE			/* configure defines it */
#define _GNU_SOURCE	1
#endif

#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <lmdb.h>

#include "backend.h"
#include "backend_test.h"	/* the test-only entry points, at the end */
#include "clock.h"
#include "siphash.h"
#include "config.h"
#include "log.h"

extern const struct backend_ops backend_lmdb;

#define LAYOUT		2
#define LAYOUT_TEXT	"2"
#define LAYOUT1_TEXT	"1"
#define KEY_MAX		256
#define HDR_ENTRY	40
#define HDR_TOMB	(HDR_ENTRY + BE_DIGEST_LEN)
#define HDR1_ENTRY	24		/* layout 1 */
#define HDR1_TOMB	(HDR1_ENTRY + BE_DIGEST_LEN)
#define IDX_MAX		(8 + KEY_MAX)
#define LOCK_NAME	"alpcrund.lock"
/* A snapshot serves new lookups this long at most. */
#define RTX_MAX_AGE	(5 * NS_PER_MS)
/* Reset read transactions kept for reuse (each keeps its reader slot). */
#define RTX_POOL	4
/* Leases moved to the newest snapshot per completed commit, at most. */
#define MIGRATE_MAX	256
/* One write transaction: at most this many jobs or payload bytes. */
#define GROUP_JOBS	4096
#define GROUP_BYTES	(64ULL << 20)
/* How long the writer waits for the loop to move its readers on before it
 * runs a write again after MDB_MAP_FULL (run_jobs()). */
#define ACK_WAIT	(1 * NS_PER_SEC)
/* Records swept but not yet deleted by the writer, at most. */
#define DOOM_MAX	65536
/* Index entries a sweep may step over (doomed, or keys with writes in
 * flight) besides those it takes. */
#define SCAN_EXTRA	4096
/* Page header of an LMDB overflow page (PAGEHDRSZ), and the slack allowed
 * for the leaves a write touches besides its payload. */
#define OVPAGE_HDR	16
#define PUT_SLACK	4

/* --- Keys the loop is tracking ------------------------------------------ */

/*
 * One per key with writes in flight (queued, or committed but done() not
 * yet called) or a sweep deletion pending. Loop thread only, except that
 * the writer reads key[] of doomed keys (immutable while doomed).
 */
struct kent {
	struct kent	*next;
	uint64_t	 hash;
	uint32_t	 inflight;
	uint8_t		 doomed;
	uint16_t	 keylen;
	uint8_t		 key[];
};

struct kmap {
	struct kent	**b;
	size_t		  nb;		/* power of two, or 0 */
	size_t		  n;
	uint8_t		  seed[16];	/* SipHash key: clients choose keys */
};

/* --- Read transactions ---------------------------------------------------- */

struct lm;

struct lease_obj;

struct rtx {
	struct rtx	*pnext;		/* in the pool */
	struct rtx	*onext, *oprev;	/* in the old list (see migrate()) */
	struct lm	*lm;
	MDB_txn		*txn;
	uint64_t	 born;		/* clock_now_ns() at (re)start */
	size_t		 refs;		/* leases */
	size_t		 movable;	/* leases not stuck */
	struct lease_obj *leases;
	int		 old;		/* on the old list */
};

/* One zero-copy lease: ctx of its lease. */
struct lease_obj {
	struct lease_obj *next, *prev;	/* in r->leases */
	struct rtx	*r;		/* the snapshot that holds the bytes */
	const uint8_t	*data;
	size_t		 len;
	uint8_t		 stuck;		/* the entry changed: cannot move */
	uint16_t	 keylen;
	uint8_t		 key[];
};

/* --- Jobs ----------------------------------------------------------------- */

enum job_kind { JOB_WRITE, JOB_SWEEP };

struct sitem {				/* one record a sweep takes */
	uint64_t	 wall;		/* its expiry, as indexed */
	struct kent	*k;		/* its key, doomed */
	uint8_t		 kind;
	uint32_t	 level;
	uint64_t	 gen;
	uint64_t	 len;
};

struct hev {
	enum be_event	 ev;
	uint32_t	 level;
	uint64_t	 gen;
	size_t		 len;
};

struct job {
	struct job	*next;
	enum job_kind	 kind;
	struct be_write	*w;		/* JOB_WRITE */
	struct kent	*k;		/* JOB_WRITE: its key, inflight */
	struct sitem	*items;		/* JOB_SWEEP */
	size_t		 nitems;
	/* Filled by the writer. */
	int		 err;
	char		 errmsg[224];
	int		 nev;
	struct hev	 ev[2];
	int64_t		 d_entries, d_tombs, d_payload, d_used;
	uint64_t	 bytes;		/* payload bytes written */
	uint8_t		 mapfull;	/* err came from MDB_MAP_FULL */
	uint8_t		 retried;	/* run again after a MAP_FULL */
	uint64_t	 now;		/* JOB_WRITE: decide()'s `now` */
};

struct lm {
	struct backend	 be;		/* first: backend.h's shared part */
	MDB_env		*env;
	MDB_dbi		 rec, pay, idx, meta;
	char		*path;
	int		 lockfd;
	uint64_t	 map_size;
	uint64_t	 map_pages, full_pages;
	unsigned	 ratio;
	size_t		 psize;
	size_t		 max_readers, pin_max;
	int64_t		 clock_off;	/* wall - monotonic, ns */

	/* Loop thread. */
	struct event	*wake;
	int		 efd;
	struct kmap	 keys;
	size_t		 ndoomed;
	struct rtx	*cur;		/* serves new lookups */
	struct rtx	*pool;
	struct rtx	*old_head, *old_tail;	/* leased, oldest first */
	size_t		 npool, nrtx, npinned;
	uint64_t	 entries, tombs, payload, used;
	uint64_t	 copies;
	int		 stopping, closing, rd_failing;

	/* The writer and its queue. */
	pthread_t	 thr;
	int		 thr_started;
	pthread_mutex_t	 qmtx;
	pthread_cond_t	 qcond;
	struct job	*qhead, **qtail;
	int		 stop, hold;		/* under qmtx */
	pthread_mutex_t	 dmtx;
	pthread_cond_t	 dcond;			/* acks moved */
	struct job	*dhead, **dtail;	/* completions, under dmtx */
	uint64_t	 commits;		/* under dmtx */
	uint64_t	 acks;			/* under dmtx: see wait_ack() */
	uint64_t	 retries;		/* under dmtx */
	int		 ack_wanted, wstop;	/* under dmtx */
	int		 full_logged;		/* writer only */
	uint64_t	 ticks;			/* writer only */
};

static const uint8_t empty[1];

/* --- Small helpers -------------------------------------------------------- */

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static uint64_t
mono_to_wall(const struct lm *l, uint64_t mono)
{
	uint64_t u;

	if (l->clock_off >= 0) {
		u = (uint64_t)l->clock_off;
		return mono > UINT64_MAX - u ? UINT64_MAX : mono + u;
	}
	u = (uint64_t)-(l->clock_off + 1) + 1;
	return mono > u ? mono - u : 0;
}

static uint64_t
wall_to_mono(const struct lm *l, uint64_t wall)
{
	uint64_t u;

	if (l->clock_off >= 0) {
		u = (uint64_t)l->clock_off;
		return wall > u ? wall - u : 0;	/* 0: long expired */
	}
	u = (uint64_t)-(l->clock_off + 1) + 1;
	return wall > UINT64_MAX - u ? UINT64_MAX : wall + u;
}

static uint64_t
rec_cost(size_t keylen, uint64_t len)
{
	return (uint64_t)keylen + BE_ENTRY_OVERHEAD + len;
}

/* The record header (see the layout at the top). */
struct hdr {
	uint8_t		 kind;		/* BE_ENTRY or BE_TOMBSTONE */
	uint32_t	 level;
	uint64_t	 wall;
	uint64_t	 len;
	uint64_t	 gen;
	uint64_t	 inc;		/* 0 in layout 1: this store's */
	uint8_t		 digest[BE_DIGEST_LEN];
};

static int
hdr_decode(const MDB_val *v, struct hdr *h)
{
	const uint8_t *p = v->mv_data;
	size_t entry;

	memset(h, 0, sizeof(*h));
	if (v->mv_size < HDR1_ENTRY)
		return -1;
	if (p[0] == LAYOUT && v->mv_size >= HDR_ENTRY) {
		entry = HDR_ENTRY;
		h->gen = get_be64(p + 24);
		h->inc = get_be64(p + 32);
	} else if (p[0] == 1)
		entry = HDR1_ENTRY;	/* generation 0 */
	else
		return -1;
	h->kind = p[1];
	h->level = get_be32(p + 4);
	h->wall = get_be64(p + 8);
	h->len = get_be64(p + 16);
	if (h->kind == BE_ENTRY && v->mv_size == entry)
		return 0;
	if (h->kind == BE_TOMBSTONE && v->mv_size == entry + BE_DIGEST_LEN &&
	    h->len == 0) {
		memcpy(h->digest, p + entry, BE_DIGEST_LEN);
		h->gen = h->inc = 0;
		return 0;
	}
	return -1;
}

static size_t
hdr_encode(const struct hdr *h, uint8_t buf[HDR_TOMB])
{
	memset(buf, 0, HDR_TOMB);
	buf[0] = LAYOUT;
	buf[1] = h->kind;
	put_be32(buf + 4, h->level);
	put_be64(buf + 8, h->wall);
	put_be64(buf + 16, h->len);
	if (h->kind != BE_TOMBSTONE) {
		put_be64(buf + 24, h->gen);
		put_be64(buf + 32, h->inc);
		return HDR_ENTRY;
	}
	memcpy(buf + HDR_ENTRY, h->digest, BE_DIGEST_LEN);
	return HDR_TOMB;
}

static size_t
idx_key(uint8_t buf[IDX_MAX], uint64_t wall, const uint8_t *key,
    size_t keylen)
{
	put_be64(buf, wall);
	memcpy(buf + 8, key, keylen);
	return 8 + keylen;
}

/* --- The key map (loop thread) -------------------------------------------- */

static struct kent *
key_find(struct lm *l, const uint8_t *key, size_t keylen)
{
	struct kmap *m = &l->keys;
	struct kent *e;
	uint64_t h;

	if (m->n == 0)
		return NULL;
	h = siphash24(m->seed, key, keylen);
	for (e = m->b[h & (m->nb - 1)]; e != NULL; e = e->next)
		if (e->hash == h && e->keylen == keylen &&
		    memcmp(e->key, key, keylen) == 0)
			return e;
	return NULL;
}

/* The entry for key, created when absent; NULL when out of memory. */
static struct kent *
key_get(struct lm *l, const uint8_t *key, size_t keylen)
{
	struct kmap *m = &l->keys;
	struct kent *e, **nb, *next;
	size_t i, nnb;
	uint64_t h;

	if ((e = key_find(l, key, keylen)) != NULL)
		return e;
	if (m->n + 1 > m->nb) {
		nnb = m->nb ? m->nb * 2 : 64;
		if ((nb = calloc(nnb, sizeof(*nb))) == NULL)
			return NULL;
		for (i = 0; i < m->nb; i++)
			for (e = m->b[i]; e != NULL; e = next) {
				next = e->next;
				e->next = nb[e->hash & (nnb - 1)];
				nb[e->hash & (nnb - 1)] = e;
			}
		free(m->b);
		m->b = nb;
		m->nb = nnb;
	}
	h = siphash24(m->seed, key, keylen);
	if ((e = calloc(1, sizeof(*e) + keylen)) == NULL)
		return NULL;
	e->hash = h;
	e->keylen = (uint16_t)keylen;
	memcpy(e->key, key, keylen);
	e->next = m->b[h & (m->nb - 1)];
	m->b[h & (m->nb - 1)] = e;
	m->n++;
	return e;
}

/* Forget e when nothing holds it any more. */
static void
key_put(struct lm *l, struct kent *e)
{
	struct kmap *m = &l->keys;
	struct kent **pp;

	if (e->inflight > 0 || e->doomed)
		return;
	for (pp = &m->b[e->hash & (m->nb - 1)]; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	m->n--;
	free(e);
}

static void
key_map_free(struct kmap *m)
{
	struct kent *e, *next;
	size_t i;

	for (i = 0; i < m->nb; i++)
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	free(m->b);
	m->b = NULL;
	m->nb = m->n = 0;
}

/* --- Read transactions (loop thread) -------------------------------------- */

static void
rtx_abort(struct lm *l, struct rtx *r)
{
	mdb_txn_abort(r->txn);
	free(r);
	l->nrtx--;
}

/* r serves no lookup and holds no lease: end its snapshot now. */
static void
rtx_retire(struct lm *l, struct rtx *r)
{
	if (l->closing || l->npool >= RTX_POOL) {
		rtx_abort(l, r);
		return;
	}
	mdb_txn_reset(r->txn);		/* keeps the slot (MDB_NOTLS) */
	r->pnext = l->pool;
	l->pool = r;
	l->npool++;
}

/* r, leased, no longer serves new lookups: onto the old list (newest
 * last), until its last lease goes or migrate() moves them all. */
static void
old_append(struct lm *l, struct rtx *r)
{
	r->old = 1;
	r->onext = NULL;
	r->oprev = l->old_tail;
	if (l->old_tail != NULL)
		l->old_tail->onext = r;
	else
		l->old_head = r;
	l->old_tail = r;
}

static void
old_unlink(struct lm *l, struct rtx *r)
{
	if (r->oprev != NULL)
		r->oprev->onext = r->onext;
	else
		l->old_head = r->onext;
	if (r->onext != NULL)
		r->onext->oprev = r->oprev;
	else
		l->old_tail = r->oprev;
	r->old = 0;
	r->onext = r->oprev = NULL;
}

/* cur stops serving new lookups. */
static void
cur_drop(struct lm *l)
{
	struct rtx *r = l->cur;

	if (r == NULL)
		return;
	l->cur = NULL;
	if (r->refs == 0)
		rtx_retire(l, r);
	else
		old_append(l, r);
}

static void
rtx_pin(struct lm *l, struct rtx *r, struct lease_obj *o)
{
	o->r = r;
	o->prev = NULL;
	o->next = r->leases;
	if (r->leases != NULL)
		r->leases->prev = o;
	r->leases = o;
	if (r->refs++ == 0)
		l->npinned++;
	if (!o->stuck)
		r->movable++;
}

/* Take o off r; r goes when o was its last lease and r is not cur. */
static void
rtx_unpin(struct lm *l, struct rtx *r, struct lease_obj *o)
{
	if (o->prev != NULL)
		o->prev->next = o->next;
	else
		r->leases = o->next;
	if (o->next != NULL)
		o->next->prev = o->prev;
	if (!o->stuck)
		r->movable--;
	if (--r->refs > 0)
		return;
	l->npinned--;
	if (r->old)
		old_unlink(l, r);
	if (r != l->cur)
		rtx_retire(l, r);
}

static void
rd_error(struct lm *l, int rc, const char *what)
{
	if (l->rd_failing)
		return;
	l->rd_failing = 1;		/* once per burst */
	log_error("lmdb read failed", "path=%s op=%s error=\"%s\"", l->path,
	    what, mdb_strerror(rc));
}

/* The snapshot new lookups use; NULL (logged) when none can be had. */
static struct rtx *
snapshot(struct lm *l)
{
	uint64_t t = clock_now_ns();
	struct rtx *r = l->cur;
	int rc;

	if (r != NULL && t - r->born < RTX_MAX_AGE)
		return r;
	if (r != NULL && r->refs == 0) {
		/* Same handle and slot, a new snapshot. */
		mdb_txn_reset(r->txn);
		if ((rc = mdb_txn_renew(r->txn)) != 0) {
			l->cur = NULL;
			rtx_abort(l, r);
			rd_error(l, rc, "mdb_txn_renew");
			return NULL;
		}
		r->born = t;
		l->rd_failing = 0;
		return r;
	}
	cur_drop(l);
	if ((r = l->pool) != NULL) {
		l->pool = r->pnext;
		l->npool--;
		if ((rc = mdb_txn_renew(r->txn)) != 0) {
			rtx_abort(l, r);
			rd_error(l, rc, "mdb_txn_renew");
			return NULL;
		}
	} else {
		if (l->nrtx >= l->max_readers) {
			rd_error(l, MDB_READERS_FULL, "mdb_txn_begin");
			return NULL;
		}
		if ((r = calloc(1, sizeof(*r))) == NULL) {
			rd_error(l, ENOMEM, "mdb_txn_begin");
			return NULL;
		}
		if ((rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY,
		    &r->txn)) != 0) {
			free(r);
			rd_error(l, rc, "mdb_txn_begin");
			return NULL;
		}
		r->lm = l;
		l->nrtx++;
	}
	r->born = t;
	r->refs = r->movable = 0;
	r->leases = NULL;
	l->cur = r;
	l->rd_failing = 0;
	return r;
}

/*
 * Move leases from old snapshots to the newest one, oldest first, so that
 * a slow reader of an entry that did not change does not keep pages freed
 * since (by deletes and updates of other entries) from being reused: the
 * map would fill behind it. A lease moves when the newest snapshot finds
 * the same key's payload at the same address with the same length: those
 * pages were live in both snapshots, and LMDB never rewrites a page that a
 * live snapshot can reach (pages freed after the old snapshot are not
 * reused while it lives), so they hold the same bytes. A lease whose entry
 * changed is stuck: it keeps its snapshot until released. (A payload small
 * enough to sit inside a B-tree leaf moves only while that leaf is not
 * rewritten by a write to a neighbouring key; such replies are small, and
 * the socket takes them at once.) Called when a
 * commit completed (that is what frees pages), after cur was dropped, so
 * the snapshot taken here sees that commit; at most MIGRATE_MAX leases.
 */
static void
migrate(struct lm *l)
{
	struct rtx *r, *rnext, *n;
	struct lease_obj *o, *onext;
	size_t budget = MIGRATE_MAX;
	MDB_val k, v;
	int last;

	if (l->old_head == NULL || (n = snapshot(l)) == NULL)
		return;
	for (r = l->old_head; r != NULL && budget > 0; r = rnext) {
		rnext = r->onext;
		for (o = r->leases; o != NULL && r->movable > 0 && budget > 0;
		    o = onext) {
			onext = o->next;
			if (o->stuck)
				continue;
			budget--;
			k.mv_size = o->keylen;
			k.mv_data = o->key;
			if (mdb_get(n->txn, l->pay, &k, &v) != 0 ||
			    v.mv_data != (void *)(uintptr_t)o->data ||
			    v.mv_size != o->len) {
				o->stuck = 1;
				r->movable--;
				continue;
			}
			/* A slot to spare, or one freed by this move. */
			if (n->refs == 0 && l->npinned >= l->pin_max &&
			    r->refs > 1)
				return;
			last = r->refs == 1;
			rtx_unpin(l, r, o);	/* r may go */
			rtx_pin(l, n, o);
			if (last)
				break;
		}
	}
}

static void lm_finish(struct lm *);

/* lease.release of a zero-copy lease: loop thread only (backend.h). */
static void
lease_release_rtx(void *ctx)
{
	struct lease_obj *o = ctx;
	struct rtx *r = o->r;
	struct lm *l = r->lm;

	rtx_unpin(l, r, o);
	free(o);
	if (l->closing && l->npinned == 0)
		lm_finish(l);
}

static void
lease_release_copy(void *ctx)
{
	free(ctx);
}

/* --- The writer thread ---------------------------------------------------- */

/*
 * Did rc come from a filesystem without room for the write? ENOSPC and
 * EDQUOT say so; LMDB turns a short write (what a full disk gives) into
 * EIO, so an EIO while the filesystem has less room than the payload and
 * a megabyte is taken as that too.
 */
static int
disk_full(struct lm *l, struct job *j, int rc, uint64_t *avail)
{
	struct statvfs sv;
	uint64_t need = 1 << 20;

	*avail = UINT64_MAX;
	if (rc != ENOSPC && rc != EDQUOT && rc != EIO)
		return 0;
	if (statvfs(l->path, &sv) == 0)
		*avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (rc != EIO)
		return 1;
	if (j->kind == JOB_WRITE && j->w != NULL)
		need += j->w->chg.len;
	return *avail < need;
}

/* Record LMDB error rc of operation `what` as the job's outcome. */
static void
job_err(struct lm *l, struct job *j, int rc, const char *what)
{
	uint64_t avail;

	j->nev = 0;
	j->d_entries = j->d_tombs = j->d_payload = j->d_used = 0;
	j->bytes = 0;
	j->mapfull = rc == MDB_MAP_FULL;
	if (rc == MDB_MAP_FULL) {
		j->err = BE_ERR_FULL;
		snprintf(j->errmsg, sizeof(j->errmsg), "store full: LMDB map "
		    "full (%s: %s; lmdb_map_size %" PRIu64 " bytes)", what,
		    mdb_strerror(rc), l->map_size);
	} else if (disk_full(l, j, rc, &avail)) {
		/* The transaction was aborted whole: nothing half-written,
		 * and writes go through again once there is room. */
		j->err = BE_ERR_FULL;
		snprintf(j->errmsg, sizeof(j->errmsg), "store full: no space "
		    "left on the filesystem of lmdb_path (%s: %s; %" PRIu64
		    " KiB free)", what, rc == EIO ? "short write" :
		    mdb_strerror(rc), avail == UINT64_MAX ? 0 : avail >> 10);
	} else {
		j->err = BE_ERR_IO;
		snprintf(j->errmsg, sizeof(j->errmsg), "lmdb %s: %s", what,
		    mdb_strerror(rc));
	}
}

static void
job_fail(struct lm *l, struct job *j, int rc, const char *what)
{
	job_err(l, j, rc, what);
	if (j->mapfull && !j->retried)
		return;			/* run again before it counts */
	log_warn("lmdb write failed", "path=%s op=%s error=\"%s\"", l->path,
	    what, mdb_strerror(rc));
}

/* Pages in use as of t: every B-tree, the freelist's own pages and the
 * two meta pages. Free pages (listed in the freelist) are not in use. */
static int
pages_in_use(struct lm *l, MDB_txn *t, uint64_t *out)
{
	MDB_dbi dbis[6] = { 0, 1, l->rec, l->pay, l->idx, l->meta };
	MDB_stat st;
	uint64_t n = 2;
	size_t i;
	int rc;

	for (i = 0; i < 6; i++) {
		if ((rc = mdb_stat(t, dbis[i], &st)) != 0)
			return rc;
		n += st.ms_branch_pages + st.ms_leaf_pages +
		    st.ms_overflow_pages;
	}
	*out = n;
	return 0;
}

static uint64_t
pages_for(const struct lm *l, uint64_t len)
{
	return (len + OVPAGE_HDR + l->psize - 1) / l->psize + PUT_SLACK;
}

/* Move key's index entry from old_wall (when had) to new_wall. */
static int
idx_move(struct lm *l, MDB_txn *t, int had, uint64_t old_wall,
    uint64_t new_wall, const uint8_t *key, size_t keylen, const char **what)
{
	uint8_t ib[IDX_MAX];
	MDB_val k, v = { 0, (void *)empty };
	int rc;

	if (had && old_wall == new_wall)
		return 0;
	k.mv_data = ib;
	if (had) {
		k.mv_size = idx_key(ib, old_wall, key, keylen);
		rc = mdb_del(t, l->idx, &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			*what = "mdb_del(expiry)";
			return rc;
		}
	}
	k.mv_size = idx_key(ib, new_wall, key, keylen);
	if ((rc = mdb_put(t, l->idx, &k, &v, 0)) != 0)
		*what = "mdb_put(expiry)";
	return rc;
}

static void
add_ev(struct job *j, enum be_event ev, uint32_t level, uint64_t gen,
    size_t len)
{
	j->ev[j->nev].ev = ev;
	j->ev[j->nev].level = level;
	j->ev[j->nev].gen = gen;
	j->ev[j->nev].len = len;
	j->nev++;
}

/* Count the old record out of the job's deltas. */
static void
delta_out(struct job *j, const struct hdr *old, size_t keylen)
{
	if (old->kind == BE_ENTRY) {
		j->d_entries--;
		j->d_payload -= (int64_t)old->len;
	} else
		j->d_tombs--;
	j->d_used -= (int64_t)rec_cost(keylen, old->len);
}

/* One write in its child transaction t: read, decide(), apply. */
static void
exec_write(struct lm *l, MDB_txn *t, struct job *j)
{
	struct be_write *w = j->w;
	struct be_change *c = &w->chg;
	struct be_record cur;
	struct hdr old, nh;
	uint8_t hb[HDR_TOMB];
	uint64_t now, inuse, need;
	MDB_val k = { w->keylen, (void *)(uintptr_t)w->key }, v;
	const char *what = "";
	int had = 0, live, rc;

	/* Run again after a MAP_FULL: as of the same `now`. */
	if (!j->retried)
		j->now = clock_now_ns();
	now = j->now;
	memset(&cur, 0, sizeof(cur));
	memset(&old, 0, sizeof(old));
	rc = mdb_get(t, l->rec, &k, &v);
	if (rc == 0) {
		if (hdr_decode(&v, &old) != 0) {
			rc = MDB_CORRUPTED;
			what = "record header";
			goto fail;
		}
		had = 1;
	} else if (rc != MDB_NOTFOUND) {
		what = "mdb_get(rec)";
		goto fail;
	}
	live = had && wall_to_mono(l, old.wall) > now;
	if (live) {
		cur.kind = old.kind;
		cur.level = old.level;
		cur.gen = old.gen;
		cur.inc = old.inc != 0 ? old.inc : l->be.incarnation;
		cur.expires = wall_to_mono(l, old.wall);
		if (old.kind == BE_TOMBSTONE)
			memcpy(cur.digest, old.digest, BE_DIGEST_LEN);
		else if (old.len == 0)
			cur.data = empty;
		else {
			if ((rc = mdb_get(t, l->pay, &k, &v)) != 0 ||
			    v.mv_size != old.len) {
				rc = rc != 0 ? rc : MDB_CORRUPTED;
				what = "mdb_get(payload)";
				goto fail;
			}
			cur.data = v.mv_data;
			cur.len = (size_t)old.len;
		}
	}
	/* Run again after a MAP_FULL: decided already, on this very state
	 * (nothing was applied in between), so decide() runs once. */
	if (!j->retried)
		w->decide(w->arg, &cur, now, c);

	switch (c->action) {
	case BE_KEEP:
		return;
	case BE_TOUCH:
		/* Not a change: no report, no counters. */
		if (!live || old.kind != BE_ENTRY) {
			j->err = BE_ERR_IO;
			snprintf(j->errmsg, sizeof(j->errmsg),
			    "touch: no live entry");
			return;
		}
		nh = old;
		nh.wall = mono_to_wall(l, c->expires);
		v.mv_size = hdr_encode(&nh, hb);
		v.mv_data = hb;
		if ((rc = mdb_put(t, l->rec, &k, &v, 0)) != 0) {
			what = "mdb_put(rec)";
			goto fail;
		}
		if ((rc = idx_move(l, t, 1, old.wall, nh.wall, w->key,
		    w->keylen, &what)) != 0)
			goto fail;
		return;
	case BE_PUT:
		if (c->len > 0 && c->data == NULL) {
			j->err = BE_ERR_IO;
			snprintf(j->errmsg, sizeof(j->errmsg),
			    "put: no payload");
			return;
		}
		if ((rc = pages_in_use(l, t, &inuse)) != 0) {
			what = "mdb_stat";
			goto fail;
		}
		need = pages_for(l, c->len);
		if (inuse + need > l->full_pages) {
			j->err = BE_ERR_FULL;
			snprintf(j->errmsg, sizeof(j->errmsg), "store full: "
			    "LMDB map %" PRIu64 "%% used, writes stop at "
			    "lmdb_full_ratio %u%% of lmdb_map_size %" PRIu64
			    " bytes", inuse * 100 / l->map_pages, l->ratio,
			    l->map_size);
			if (!l->full_logged)
				log_warn("store full, refusing writes until "
				    "deletes or expiry make room", "path=%s "
				    "used_pages=%" PRIu64 " limit_pages=%"
				    PRIu64 " need_pages=%" PRIu64, l->path,
				    inuse, l->full_pages, need);
			l->full_logged = 1;
			return;
		}
		memset(&nh, 0, sizeof(nh));
		nh.kind = BE_ENTRY;
		nh.level = c->level;
		nh.gen = c->gen;
		nh.inc = c->inc;
		nh.wall = mono_to_wall(l, c->expires);
		nh.len = c->len;
		v.mv_size = hdr_encode(&nh, hb);
		v.mv_data = hb;
		if ((rc = mdb_put(t, l->rec, &k, &v, 0)) != 0) {
			what = "mdb_put(rec)";
			goto fail;
		}
		if (c->len > 0) {
			/* The one copy of the payload on the way in: from
			 * the request into LMDB's page (MDB_RESERVE). */
			v.mv_size = c->len;
			v.mv_data = NULL;
			if ((rc = mdb_put(t, l->pay, &k, &v, MDB_RESERVE))
			    != 0) {
				what = "mdb_put(payload)";
				goto fail;
			}
			memcpy(v.mv_data, c->data, c->len);
		} else if (had && old.kind == BE_ENTRY && old.len > 0 &&
		    (rc = mdb_del(t, l->pay, &k, NULL)) != 0) {
			what = "mdb_del(payload)";
			goto fail;
		}
		if ((rc = idx_move(l, t, had, old.wall, nh.wall, w->key,
		    w->keylen, &what)) != 0)
			goto fail;
		if (had && old.kind == BE_ENTRY && live)
			add_ev(j, BE_EV_UPDATE, c->level, c->gen, c->len);
		else {
			/* An entry that expired unswept goes first. */
			if (had && old.kind == BE_ENTRY)
				add_ev(j, BE_EV_EXPIRE, old.level, old.gen,
				    (size_t)old.len);
			add_ev(j, BE_EV_SET, c->level, c->gen, c->len);
		}
		if (had)
			delta_out(j, &old, w->keylen);
		j->d_entries++;
		j->d_payload += (int64_t)c->len;
		j->d_used += (int64_t)rec_cost(w->keylen, c->len);
		j->bytes = c->len;
		l->full_logged = 0;
		return;
	case BE_PUT_TOMBSTONE:
		/* Never refused for the fill level: deletes make room. */
		memset(&nh, 0, sizeof(nh));
		nh.kind = BE_TOMBSTONE;
		nh.level = c->level;
		nh.wall = mono_to_wall(l, c->expires);
		memcpy(nh.digest, c->digest, BE_DIGEST_LEN);
		v.mv_size = hdr_encode(&nh, hb);
		v.mv_data = hb;
		if ((rc = mdb_put(t, l->rec, &k, &v, 0)) != 0) {
			what = "mdb_put(rec)";
			goto fail;
		}
		if (had && old.kind == BE_ENTRY && old.len > 0 &&
		    (rc = mdb_del(t, l->pay, &k, NULL)) != 0) {
			what = "mdb_del(payload)";
			goto fail;
		}
		if ((rc = idx_move(l, t, had, old.wall, nh.wall, w->key,
		    w->keylen, &what)) != 0)
			goto fail;
		if (had && old.kind == BE_ENTRY)
			add_ev(j, live ? BE_EV_DELETE : BE_EV_EXPIRE,
			    old.level, old.gen, (size_t)old.len);
		if (had)
			delta_out(j, &old, w->keylen);
		j->d_tombs++;
		j->d_used += (int64_t)rec_cost(w->keylen, 0);
		return;
	default:
		j->err = BE_ERR_IO;
		snprintf(j->errmsg, sizeof(j->errmsg), "unknown action %d",
		    (int)c->action);
		return;
	}
fail:
	job_fail(l, j, rc, what);
}

/* One sweep job: delete the records it names that are still as indexed. */
static void
exec_sweep(struct lm *l, MDB_txn *t, struct job *j)
{
	uint8_t ib[IDX_MAX];
	struct hdr h;
	MDB_val k, v, ik;
	const char *what = "";
	size_t i;
	int rc;

	for (i = 0; i < j->nitems; i++) {
		k.mv_size = j->items[i].k->keylen;
		k.mv_data = j->items[i].k->key;
		ik.mv_data = ib;
		ik.mv_size = idx_key(ib, j->items[i].wall, k.mv_data,
		    k.mv_size);
		rc = mdb_get(t, l->rec, &k, &v);
		if (rc == 0 && hdr_decode(&v, &h) == 0 &&
		    h.wall == j->items[i].wall) {
			what = "mdb_del(rec)";
			if ((rc = mdb_del(t, l->rec, &k, NULL)) != 0)
				goto fail;
			what = "mdb_del(payload)";
			if (h.kind == BE_ENTRY && h.len > 0 &&
			    (rc = mdb_del(t, l->pay, &k, NULL)) != 0 &&
			    rc != MDB_NOTFOUND)
				goto fail;
		} else if (rc != 0 && rc != MDB_NOTFOUND) {
			what = "mdb_get(rec)";
			goto fail;
		}
		/* Else a stale index entry: only it goes. */
		what = "mdb_del(expiry)";
		if ((rc = mdb_del(t, l->idx, &ik, NULL)) != 0 &&
		    rc != MDB_NOTFOUND)
			goto fail;
	}
	return;
fail:
	job_fail(l, j, rc, what);
}

/* Hand a group of finished jobs (may be none) to the loop; want_ack: ask
 * it to move its readers to a new snapshot even without jobs. Returns the
 * ack count to wait past (wait_ack()). */
static uint64_t
post(struct lm *l, struct job *group, int committed, int want_ack)
{
	struct job **tail;
	uint64_t one = 1, acks;
	ssize_t n;

	pthread_mutex_lock(&l->dmtx);
	if (group != NULL) {
		for (tail = &group; *tail != NULL; tail = &(*tail)->next)
			;
		*l->dtail = group;
		l->dtail = tail;
	}
	if (committed)
		l->commits++;
	if (want_ack) {
		l->ack_wanted = 1;
		l->retries++;
	}
	acks = l->acks;
	pthread_mutex_unlock(&l->dmtx);
	do
		n = write(l->efd, &one, sizeof(one));
	while (n == -1 && errno == EINTR);
	/* EAGAIN: the counter is full, so the loop is awake already. */
	return acks;
}

/*
 * Wait (at most ACK_WAIT) until the loop has taken a new snapshot and moved
 * the leases it could to it, after the commit posted with want_ack. The
 * writer may wait for the loop; the loop never waits for the writer.
 */
static void
wait_ack(struct lm *l, uint64_t acks)
{
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += ACK_WAIT % NS_PER_SEC;
	ts.tv_sec += ACK_WAIT / NS_PER_SEC + ts.tv_nsec / (long)NS_PER_SEC;
	ts.tv_nsec %= (long)NS_PER_SEC;
	pthread_mutex_lock(&l->dmtx);
	while (l->acks == acks && !l->wstop && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&l->dcond, &l->dmtx, &ts);
	pthread_mutex_unlock(&l->dmtx);
}

/* A small write in its own nested transaction, so that the commit of
 * parent makes a new transaction even when nothing else changed. */
static int
tick(struct lm *l, MDB_txn *parent)
{
	MDB_txn *c;
	uint8_t buf[8];
	MDB_val k = { 4, (void *)(uintptr_t)"tick" }, v = { 8, buf };

	put_be64(buf, ++l->ticks);
	if (mdb_txn_begin(l->env, parent, 0, &c) != 0)
		return 0;
	if (mdb_put(c, l->meta, &k, &v, 0) != 0) {
		mdb_txn_abort(c);
		return 0;
	}
	return mdb_txn_commit(c);
}

/* A group that did not commit: nothing of it was applied. Jobs that had
 * failed on their own keep their error. */
static void
group_fail(struct lm *l, struct job *group, int rc, const char *what)
{
	struct job *j;
	size_t n = 0;

	if (group == NULL)
		return;
	for (j = group; j != NULL; j = j->next) {
		if (j->err != BE_OK)
			continue;
		job_err(l, j, rc, what);
		n++;
	}
	log_warn("lmdb commit failed, its writes are refused", "path=%s "
	    "op=%s jobs=%zu error=\"%s\"", l->path, what, n,
	    mdb_strerror(rc));
}

/*
 * Run the jobs of list in write transactions of at most GROUP_JOBS jobs
 * and GROUP_BYTES bytes, posting each group once it committed.
 *
 * A job that fails with MDB_MAP_FULL runs once more: LMDB reuses a page
 * freed by transaction T only in T+2 and later, and only once no reader
 * still sees T-1 or older, so a write right after the Delete that made
 * room finds that room unusable yet. The group is cut before the job and
 * committed (with a tick, so that it is a new transaction), the loop is
 * asked to move its readers on (a new snapshot; leases follow, see
 * migrate()), and the job runs again at the head of the next group. Nothing
 * was applied in between, so its first decide() still holds.
 */
static void
run_jobs(struct lm *l, struct job *list)
{
	struct job *group, *j, *last, *prev, *retry;
	MDB_txn *parent, *child;
	uint64_t bytes, acks;
	size_t n;
	int rc, fatal, clean;
	const char *what = "";

	while (list != NULL) {
		group = list;
		if ((rc = mdb_txn_begin(l->env, NULL, 0, &parent)) != 0) {
			group_fail(l, group, rc, "mdb_txn_begin");
			post(l, group, 0, 0);
			return;
		}
		n = 0;
		bytes = 0;
		fatal = 0;
		clean = 1;		/* nothing applied in parent yet */
		last = prev = retry = NULL;
		for (j = list; j != NULL && !fatal; j = j->next) {
			last = j;
			n++;
			/*
			 * A job runs in a nested transaction, so that its
			 * failure undoes it alone; the first of a group runs
			 * in the parent itself (a nested transaction costs
			 * LMDB a few MiB of allocations), whose abort then
			 * undoes nothing else: a lone write pays for none.
			 */
			if (clean)
				child = parent;
			else if ((rc = mdb_txn_begin(l->env, parent, 0,
			    &child)) != 0) {
				job_fail(l, j, rc, "mdb_txn_begin(nested)");
				prev = j;
				continue;
			}
			if (j->kind == JOB_WRITE)
				exec_write(l, child, j);
			else
				exec_sweep(l, child, j);
			if (j->err != BE_OK) {
				/* Nothing of this job remains. */
				mdb_txn_abort(child);
				if (child == parent && (rc = mdb_txn_begin(
				    l->env, NULL, 0, &parent)) != 0) {
					parent = NULL;
					what = "mdb_txn_begin";
					fatal = 1;
				}
				if (j->mapfull && !j->retried) {
					retry = j;
					break;
				}
			} else if (child != parent &&
			    (rc = mdb_txn_commit(child)) != 0) {
				/* The parent may be unusable now. */
				what = "mdb_txn_commit(nested)";
				fatal = 1;
			} else
				clean = 0;
			prev = j;
			bytes += j->bytes;
			if (n >= GROUP_JOBS || bytes >= GROUP_BYTES)
				break;
		}
		if (retry != NULL) {
			/* The group is what came before it. */
			if (prev != NULL)
				prev->next = NULL;
			else
				group = NULL;
			list = retry;
			if (!fatal && (rc = tick(l, parent)) != 0) {
				what = "mdb_txn_commit(nested)";
				fatal = 1;
			}
		} else {
			list = last->next;
			last->next = NULL;
		}
		if (fatal) {
			if (parent != NULL)
				mdb_txn_abort(parent);
		} else if ((rc = mdb_txn_commit(parent)) != 0) {
			what = "mdb_txn_commit";
			fatal = 1;
		}
		if (fatal) {
			/* Nothing of the group was applied; a job to run
			 * again keeps its MAP_FULL (its decide() saw the
			 * group applied). */
			if (retry != NULL) {
				list = retry->next;
				retry->next = NULL;
				if (prev != NULL)
					prev->next = retry;
				else
					group = retry;
				retry->retried = 1;
				log_warn("lmdb write failed", "path=%s op=%s "
				    "error=\"%s\"", l->path, "mdb_put",
				    mdb_strerror(MDB_MAP_FULL));
			}
			group_fail(l, group, rc, what);
			post(l, group, 0, 0);
			continue;
		}
		acks = post(l, group, 1, retry != NULL);
		if (retry != NULL) {
			wait_ack(l, acks);
			retry->retried = 1;
			retry->err = BE_OK;
			retry->errmsg[0] = '\0';
			retry->mapfull = 0;
		}
	}
}

static void *
writer_main(void *arg)
{
	struct lm *l = arg;
	struct job *list;

	for (;;) {
		pthread_mutex_lock(&l->qmtx);
		while (!l->stop && (l->qhead == NULL || l->hold))
			pthread_cond_wait(&l->qcond, &l->qmtx);
		list = l->qhead;
		l->qhead = NULL;
		l->qtail = &l->qhead;
		pthread_mutex_unlock(&l->qmtx);
		if (list == NULL)
			break;		/* stopping, and nothing left */
		/* Everything that queued meanwhile: one group commit. */
		run_jobs(l, list);
	}
	return NULL;
}

static void
enqueue(struct lm *l, struct job *j)
{
	pthread_mutex_lock(&l->qmtx);
	*l->qtail = j;
	l->qtail = &j->next;
	pthread_cond_signal(&l->qcond);
	pthread_mutex_unlock(&l->qmtx);
}

/* --- Completions (loop thread) -------------------------------------------- */

static int lm_lookup(struct backend *, const uint8_t *, size_t, uint64_t,
    struct be_record *, struct lease *);

/*
 * The lease a BE_PUT asked for (backend.h), before its done(). With no
 * other write to the key queued or unanswered and no sweep of it pending,
 * the newest snapshot (drain() took it after this commit) holds this
 * write's entry: it is leased in place, like a lookup's. Otherwise, or
 * when it already expired, the payload is copied from the change, whose
 * bytes stay the writer's until done() returns.
 */
static void
lease_written(struct lm *l, struct job *j)
{
	struct be_write *w = j->w;
	struct be_record rec;
	uint8_t *copy;

	if (j->k->inflight == 0 && !j->k->doomed &&
	    lm_lookup(&l->be, w->key, w->keylen, clock_now_ns(), &rec,
	    &w->lease) == 0) {
		if (rec.kind == BE_ENTRY && rec.level == w->chg.level &&
		    rec.len == w->chg.len)
			return;
		lease_release(&w->lease);
	}
	memset(&w->lease, 0, sizeof(w->lease));
	if (w->chg.len == 0) {
		w->lease.data = empty;		/* nothing to hold */
		return;
	}
	if ((copy = malloc(w->chg.len)) == NULL)
		return;				/* no lease; the write stands */
	memcpy(copy, w->chg.data, w->chg.len);
	l->copies++;
	w->lease.data = copy;
	w->lease.len = w->chg.len;
	w->lease.release = lease_release_copy;
	w->lease.ctx = copy;
}

static void
complete(struct lm *l, struct job *j)
{
	struct be_write *w = j->w;
	struct sitem *it;
	size_t i;
	int e;

	if (j->kind == JOB_WRITE) {
		if (j->err == BE_OK) {
			l->entries += (uint64_t)j->d_entries;
			l->tombs += (uint64_t)j->d_tombs;
			l->payload += (uint64_t)j->d_payload;
			l->used += (uint64_t)j->d_used;
		}
		j->k->inflight--;
		if (j->err == BE_OK && w->want_lease &&
		    w->chg.action == BE_PUT)
			lease_written(l, j);
		key_put(l, j->k);
		/* Reports first, as applied; done() last (the caller may
		 * free w there). */
		for (e = 0; e < j->nev; e++)
			backend_report(&l->be, j->ev[e].ev, w->key, w->keylen,
			    j->ev[e].level, j->ev[e].gen, j->ev[e].len);
		w->done(w->arg, j->err, j->err == BE_OK ? NULL : j->errmsg);
	} else {
		if (j->err != BE_OK)
			log_warn("lmdb sweep failed, records kept",
			    "path=%s records=%zu error=\"%s\"", l->path,
			    j->nitems, j->errmsg);
		for (i = 0; i < j->nitems; i++) {
			it = &j->items[i];
			if (j->err != BE_OK) {
				/* Back in the counters; swept again later. */
				if (it->kind == BE_ENTRY) {
					l->entries++;
					l->payload += it->len;
				} else
					l->tombs++;
				l->used += rec_cost(it->k->keylen, it->len);
			}
			it->k->doomed = 0;
			l->ndoomed--;
			key_put(l, it->k);
		}
		free(j->items);
	}
	free(j);
}

/* Run every completion the writer posted, in order. */
static void
drain(struct lm *l)
{
	struct job *list, *j;

	int want;

	pthread_mutex_lock(&l->dmtx);
	list = l->dhead;
	l->dhead = NULL;
	l->dtail = &l->dhead;
	want = l->ack_wanted;
	l->ack_wanted = 0;
	pthread_mutex_unlock(&l->dmtx);
	if (list == NULL && !want)
		return;
	/* New lookups must see these commits (read-your-writes): a new
	 * snapshot, which leases of unchanged entries move to. */
	cur_drop(l);
	migrate(l);
	if (want) {
		pthread_mutex_lock(&l->dmtx);
		l->acks++;
		pthread_cond_broadcast(&l->dcond);
		pthread_mutex_unlock(&l->dmtx);
	}
	while ((j = list) != NULL) {
		list = j->next;
		complete(l, j);
	}
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	(void)what;
	while (read(fd, &n, sizeof(n)) == -1 && errno == EINTR)
		;
	drain(arg);
}

/* --- backend_ops ---------------------------------------------------------- */

static void
lm_finish(struct lm *l)
{
	if (l->env != NULL)
		mdb_env_close(l->env);
	if (l->lockfd != -1)
		close(l->lockfd);	/* drops the flock */
	key_map_free(&l->keys);
	free(l->path);
	free(l);
}

/* Take the lock file beside the database, or say who holds it. */
static int
take_lock(struct lm *l, char *err, size_t errlen)
{
	char lp[4096], buf[32];
	ssize_t n;
	long pid;

	if ((size_t)snprintf(lp, sizeof(lp), "%s/%s", l->path, LOCK_NAME) >=
	    sizeof(lp)) {
		snprintf(err, errlen, "lmdb_path %s: path too long", l->path);
		return -1;
	}
	if ((l->lockfd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0640)) == -1) {
		snprintf(err, errlen, "lmdb_path %s: cannot open lock file "
		    "%s: %s", l->path, lp, strerror(errno));
		return -1;
	}
	if (flock(l->lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK) {
			snprintf(err, errlen, "lmdb_path %s: cannot lock %s: "
			    "%s", l->path, lp, strerror(errno));
			return -1;
		}
		n = pread(l->lockfd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		pid = strtol(buf, NULL, 10);
		if (pid > 0)
			snprintf(err, errlen, "lmdb_path %s is in use by "
			    "another alpcrund (pid %ld holds %s)", l->path,
			    pid, lp);
		else
			snprintf(err, errlen, "lmdb_path %s is in use by "
			    "another alpcrund (%s is locked)", l->path, lp);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(l->lockfd, 0) == 0)
		(void)!pwrite(l->lockfd, buf, (size_t)n, 0);
	return 0;
}

/* The directory: created when missing, and writable. */
static int
check_dir(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (mkdir(path, 0750) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "lmdb_path %s: cannot create the "
		    "directory: %s", path, strerror(errno));
		return -1;
	}
	if (stat(path, &st) == -1) {
		snprintf(err, errlen, "lmdb_path %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "lmdb_path %s: not a directory", path);
		return -1;
	}
	if (access(path, W_OK | X_OK) == -1) {
		snprintf(err, errlen, "lmdb_path %s: not writable: %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* Open the databases, check the layout, and count the records. */
static int
open_dbs(struct lm *l, char *err, size_t errlen)
{
	static const char layout[] = LAYOUT_TEXT, layout1[] = LAYOUT1_TEXT;
	MDB_txn *t = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k = { 6, (void *)(uintptr_t)"layout" }, v;
	MDB_val ik = { 11, (void *)(uintptr_t)"incarnation" };
	uint8_t inc[8];
	struct hdr h;
	const char *what;
	uint64_t bad = 0;
	int rc;

	what = "mdb_txn_begin";
	if ((rc = mdb_txn_begin(l->env, NULL, 0, &t)) != 0)
		goto fail;
	what = "mdb_dbi_open";
	if ((rc = mdb_dbi_open(t, "rec", MDB_CREATE, &l->rec)) != 0 ||
	    (rc = mdb_dbi_open(t, "payload", MDB_CREATE, &l->pay)) != 0 ||
	    (rc = mdb_dbi_open(t, "expiry", MDB_CREATE, &l->idx)) != 0 ||
	    (rc = mdb_dbi_open(t, "meta", MDB_CREATE, &l->meta)) != 0)
		goto fail;
	rc = mdb_get(t, l->meta, &k, &v);
	if (rc == 0 && !(v.mv_size == sizeof(layout) - 1 &&
	    memcmp(v.mv_data, layout, v.mv_size) == 0) &&
	    !(v.mv_size == sizeof(layout1) - 1 &&
	    memcmp(v.mv_data, layout1, v.mv_size) == 0)) {
		snprintf(err, errlen, "lmdb_path %s holds layout \"%.*s\"; "
		    "this build reads layouts %s and %s", l->path,
		    (int)(v.mv_size < 32 ? v.mv_size : 32),
		    (const char *)v.mv_data, layout1, layout);
		mdb_txn_abort(t);
		return -1;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		what = "mdb_get(meta)";
		goto fail;
	}
	/* New, or layout 1 (read as it is): layout 2 from now on. */
	if (rc == MDB_NOTFOUND || v.mv_size != sizeof(layout) - 1 ||
	    memcmp(v.mv_data, layout, v.mv_size) != 0) {
		v.mv_size = sizeof(layout) - 1;
		v.mv_data = (void *)(uintptr_t)layout;
		what = "mdb_put(meta)";
		if ((rc = mdb_put(t, l->meta, &k, &v, 0)) != 0)
			goto fail;
	}
	/* The store's identity: drawn with the file, kept in it. */
	rc = mdb_get(t, l->meta, &ik, &v);
	if (rc == 0 && v.mv_size == sizeof(inc) &&
	    get_be64(v.mv_data) != 0)
		l->be.incarnation = get_be64(v.mv_data);
	else if (rc == 0 || rc == MDB_NOTFOUND) {
		l->be.incarnation = backend_random_id();
		put_be64(inc, l->be.incarnation);
		v.mv_size = sizeof(inc);
		v.mv_data = inc;
		what = "mdb_put(meta)";
		if ((rc = mdb_put(t, l->meta, &ik, &v, 0)) != 0)
			goto fail;
	} else {
		what = "mdb_get(meta)";
		goto fail;
	}
	what = "mdb_txn_commit";
	rc = mdb_txn_commit(t);
	t = NULL;
	if (rc != 0)
		goto fail;

	/* One scan at start for the counters. */
	what = "mdb_txn_begin";
	if ((rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &t)) != 0)
		goto fail;
	what = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(t, l->rec, &cur)) != 0)
		goto fail;
	what = "mdb_cursor_get";
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (hdr_decode(&v, &h) != 0) {
			bad++;
			continue;
		}
		if (h.kind == BE_ENTRY) {
			l->entries++;
			l->payload += h.len;
		} else
			l->tombs++;
		l->used += rec_cost(k.mv_size, h.len);
	}
	if (rc != MDB_NOTFOUND)
		goto fail;
	mdb_cursor_close(cur);
	mdb_txn_abort(t);
	if (bad > 0)
		log_warn("lmdb records with an unreadable header ignored",
		    "path=%s records=%" PRIu64, l->path, bad);
	return 0;
fail:
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (t != NULL)
		mdb_txn_abort(t);
	snprintf(err, errlen, "lmdb_path %s: %s: %s", l->path, what,
	    mdb_strerror(rc));
	return -1;
}

static void lm_close(struct backend *);

static struct backend *
lm_open(const struct config *cfg, struct event_base *base, char *err,
    size_t errlen)
{
	struct lm *l;
	struct timespec rt, mt;
	MDB_envinfo ei;
	MDB_stat st;
	sigset_t all, old;
	int rc, dead = 0;
	char dummy[8];

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (cfg == NULL || cfg->lmdb_path == NULL || cfg->lmdb_path[0] == '\0') {
		snprintf(err, errlen, "lmdb_path is not set");
		return NULL;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->path = strdup(cfg->lmdb_path)) == NULL) {
		free(l);
		snprintf(err, errlen, "lmdb backend: out of memory");
		return NULL;
	}
	l->be.ops = &backend_lmdb;
	l->lockfd = -1;
	l->efd = -1;
	l->qtail = &l->qhead;
	l->dtail = &l->dhead;
	pthread_mutex_init(&l->qmtx, NULL);
	pthread_cond_init(&l->qcond, NULL);
	pthread_mutex_init(&l->dmtx, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&l->dcond, &ca);
		pthread_condattr_destroy(&ca);
	}
	l->max_readers = cfg->lmdb_max_readers > 0 ?
	    (size_t)cfg->lmdb_max_readers : 126;
	/* Leases never take the last slots (see the top of the file). */
	l->pin_max = l->max_readers - 1 - l->max_readers / 16;
	l->ratio = cfg->lmdb_full_ratio > 0 && cfg->lmdb_full_ratio <= 100 ?
	    (unsigned)cfg->lmdb_full_ratio : 90;

	if (check_dir(l->path, err, errlen) != 0 ||
	    take_lock(l, err, errlen) != 0)
		goto fail;
	if ((rc = mdb_env_create(&l->env)) != 0) {
		snprintf(err, errlen, "mdb_env_create: %s", mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_env_set_mapsize(l->env, (size_t)cfg->lmdb_map_size))
	    != 0 || (rc = mdb_env_set_maxreaders(l->env,
	    (unsigned)l->max_readers)) != 0 ||
	    (rc = mdb_env_set_maxdbs(l->env, 4)) != 0) {
		snprintf(err, errlen, "lmdb_path %s: %s", l->path,
		    mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_env_open(l->env, l->path, MDB_NOTLS |
	    (cfg->lmdb_sync ? 0 : MDB_NOSYNC), 0640)) != 0) {
		snprintf(err, errlen, "lmdb_path %s: mdb_env_open: %s",
		    l->path, mdb_strerror(rc));
		mdb_env_close(l->env);
		l->env = NULL;
		goto fail;
	}
	/* Slots of a process that died with a read transaction open. */
	if ((rc = mdb_reader_check(l->env, &dead)) != 0)
		log_warn("lmdb reader check failed", "path=%s error=\"%s\"",
		    l->path, mdb_strerror(rc));
	else if (dead > 0)
		log_info("cleared stale LMDB reader slots", "path=%s slots=%d",
		    l->path, dead);
	if ((rc = mdb_env_stat(l->env, &st)) != 0 ||
	    (rc = mdb_env_info(l->env, &ei)) != 0) {
		snprintf(err, errlen, "lmdb_path %s: %s", l->path,
		    mdb_strerror(rc));
		goto fail;
	}
	l->psize = st.ms_psize;
	l->map_size = ei.me_mapsize;	/* as LMDB rounded it */
	l->map_pages = l->map_size / l->psize;
	l->full_pages = l->map_pages * l->ratio / 100;
	if (open_dbs(l, err, errlen) != 0)
		goto fail;

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mt);
	l->clock_off = ((int64_t)rt.tv_sec - (int64_t)mt.tv_sec) *
	    (int64_t)NS_PER_SEC + ((int64_t)rt.tv_nsec - (int64_t)mt.tv_nsec);

	if (siphash_key(l->keys.seed) != 0) {
		snprintf(err, errlen, "lmdb backend: getrandom: %s",
		    strerror(errno));
		goto fail;
	}
	if ((l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		snprintf(err, errlen, "lmdb backend: eventfd: %s",
		    strerror(errno));
		goto fail;
	}
	if ((l->wake = event_new(base, l->efd, EV_READ | EV_PERSIST, on_wake,
	    l)) == NULL || event_add(l->wake, NULL) == -1) {
		snprintf(err, errlen, "lmdb backend: cannot add an event");
		goto fail;
	}
	/* Signals are the loop's business, never the writer's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&l->thr, NULL, writer_main, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "lmdb backend: pthread_create: %s",
		    strerror(rc));
		goto fail;
	}
	l->thr_started = 1;
	log_info("lmdb backend open", "path=%s map_size=%" PRIu64
	    " sync=%s entries=%" PRIu64 " tombstones=%" PRIu64, l->path,
	    l->map_size, cfg->lmdb_sync ? "on" : "off", l->entries, l->tombs);
	return &l->be;
fail:
	lm_close(&l->be);
	return NULL;
}

/*
 * Finishes the queued writes (their done() runs here, on the loop thread),
 * joins the writer and closes the environment. Leases must have been
 * released (backend.h); if some were not, the environment stays open until
 * the last of them is.
 */
static void
lm_close(struct backend *be)
{
	struct lm *l = (struct lm *)be;
	struct rtx *r;

	if (l == NULL)
		return;
	l->stopping = 1;
	if (l->thr_started) {
		pthread_mutex_lock(&l->qmtx);
		l->stop = 1;
		l->hold = 0;
		pthread_cond_signal(&l->qcond);
		pthread_mutex_unlock(&l->qmtx);
		/* The loop is here, not in drain(): no ack to wait for. */
		pthread_mutex_lock(&l->dmtx);
		l->wstop = 1;
		pthread_cond_broadcast(&l->dcond);
		pthread_mutex_unlock(&l->dmtx);
		pthread_join(l->thr, NULL);
		l->thr_started = 0;
		drain(l);
	}
	if (l->wake != NULL)
		event_free(l->wake);
	if (l->efd != -1)
		close(l->efd);
	l->closing = 1;
	if ((r = l->cur) != NULL) {
		l->cur = NULL;
		if (r->refs == 0)
			rtx_abort(l, r);
	}
	/* Leased ones go at their last release (closing: aborted). */
	while ((r = l->old_head) != NULL)
		old_unlink(l, r);
	while ((r = l->pool) != NULL) {
		l->pool = r->pnext;
		l->npool--;
		rtx_abort(l, r);
	}
	pthread_mutex_destroy(&l->qmtx);
	pthread_cond_destroy(&l->qcond);
	pthread_mutex_destroy(&l->dmtx);
	pthread_cond_destroy(&l->dcond);
	if (l->npinned > 0) {
		log_warn("lmdb backend closed with leases held; the "
		    "environment closes at the last release", "path=%s "
		    "transactions=%zu", l->path, l->npinned);
		return;
	}
	lm_finish(l);
}

static int
lm_lookup(struct backend *be, const uint8_t *key, size_t keylen,
    uint64_t now, struct be_record *rec, struct lease *lease)
{
	struct lm *l = (struct lm *)be;
	struct kent *e;
	struct rtx *r;
	struct lease_obj *o;
	struct hdr h;
	MDB_val k = { keylen, (void *)(uintptr_t)key }, v;
	uint8_t *copy;
	int rc;

	memset(rec, 0, sizeof(*rec));
	if (lease != NULL)
		memset(lease, 0, sizeof(*lease));
	if (keylen < 1 || keylen > KEY_MAX)
		return 0;
	/* Swept, its deletion not yet committed: gone already. */
	if ((e = key_find(l, key, keylen)) != NULL && e->doomed)
		return 0;
	if ((r = snapshot(l)) == NULL)
		return -1;
	if ((rc = mdb_get(r->txn, l->rec, &k, &v)) == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		rd_error(l, rc, "mdb_get(rec)");
		return -1;
	}
	if (hdr_decode(&v, &h) != 0) {
		rd_error(l, MDB_CORRUPTED, "record header");
		return -1;
	}
	/* Lazy expiry: invisible at once, freed by the sweeper. */
	if (wall_to_mono(l, h.wall) <= now)
		return 0;
	rec->kind = h.kind;
	rec->level = h.level;
	rec->gen = h.gen;
	rec->inc = h.inc != 0 ? h.inc : l->be.incarnation;
	rec->expires = wall_to_mono(l, h.wall);
	if (h.kind == BE_TOMBSTONE) {
		memcpy(rec->digest, h.digest, BE_DIGEST_LEN);
		return 0;
	}
	if (h.len == 0) {
		rec->data = empty;
		if (lease != NULL)
			lease->data = empty;	/* nothing to hold */
		return 0;
	}
	if ((rc = mdb_get(r->txn, l->pay, &k, &v)) != 0 ||
	    v.mv_size != h.len) {
		rd_error(l, rc != 0 ? rc : MDB_CORRUPTED, "mdb_get(payload)");
		return -1;
	}
	rec->data = v.mv_data;		/* in the map */
	rec->len = v.mv_size;
	if (lease == NULL)
		return 0;
	lease->data = rec->data;
	lease->len = rec->len;
	if ((r->refs > 0 || l->npinned < l->pin_max) &&
	    (o = malloc(sizeof(*o) + keylen)) != NULL) {
		/* Zero copy: the snapshot holds the bytes. */
		o->data = rec->data;
		o->len = rec->len;
		o->stuck = 0;
		o->keylen = (uint16_t)keylen;
		memcpy(o->key, key, keylen);
		rtx_pin(l, r, o);
		lease->release = lease_release_rtx;
		lease->ctx = o;
		return 0;
	}
	/* Reader slots run short: the one copy of a payload on this path. */
	if ((copy = malloc(rec->len)) == NULL) {
		memset(lease, 0, sizeof(*lease));
		rd_error(l, ENOMEM, "lease copy");
		return -1;
	}
	memcpy(copy, rec->data, rec->len);
	l->copies++;
	lease->data = copy;
	lease->release = lease_release_copy;
	lease->ctx = copy;
	return 0;
}

static int
lm_write(struct backend *be, struct be_write *w)
{
	struct lm *l = (struct lm *)be;
	struct job *j;

	memset(&w->lease, 0, sizeof(w->lease));
	if (w->keylen < 1 || w->keylen > KEY_MAX || l->stopping)
		return -1;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return -1;
	if ((j->k = key_get(l, w->key, w->keylen)) == NULL) {
		free(j);
		return -1;
	}
	j->k->inflight++;
	j->kind = JOB_WRITE;
	j->w = w;
	enqueue(l, j);
	return 0;
}

/* See "Sweeping" at the top of the file. */
static size_t
lm_sweep(struct backend *be, uint64_t now, size_t budget, int *more)
{
	struct lm *l = (struct lm *)be;
	struct sitem *items = NULL, *ni;
	struct job *j;
	struct rtx *r;
	struct kent *e;
	struct hdr h;
	MDB_cursor *cur = NULL;
	MDB_val k, v, rk;
	uint64_t now_wall = mono_to_wall(l, now), wall;
	size_t n = 0, cap = 0, steps = 0, maxsteps, i;
	int rc, found = 0;

	if (more != NULL)
		*more = 0;
	if (l->stopping || l->ndoomed >= DOOM_MAX)
		return 0;		/* the next tick carries on */
	if ((r = snapshot(l)) == NULL)
		return 0;
	maxsteps = l->ndoomed + SCAN_EXTRA;
	maxsteps = budget > SIZE_MAX - maxsteps ? SIZE_MAX : budget + maxsteps;
	if ((rc = mdb_cursor_open(r->txn, l->idx, &cur)) != 0) {
		rd_error(l, rc, "mdb_cursor_open(expiry)");
		return 0;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (++steps > maxsteps)
			break;
		if (k.mv_size <= 8 || k.mv_size > IDX_MAX)
			continue;
		if ((wall = get_be64(k.mv_data)) > now_wall)
			break;
		rk.mv_size = k.mv_size - 8;
		rk.mv_data = (uint8_t *)k.mv_data + 8;
		/* A key with a write in flight is the write's to expire. */
		if ((e = key_find(l, rk.mv_data, rk.mv_size)) != NULL &&
		    (e->doomed || e->inflight > 0))
			continue;
		if (mdb_get(r->txn, l->rec, &rk, &v) != 0 ||
		    hdr_decode(&v, &h) != 0 || h.wall != wall)
			continue;	/* stale index entry */
		if (n == budget) {
			found = 1;
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((ni = realloc(items, cap * sizeof(*ni))) == NULL)
				break;
			items = ni;
		}
		if ((e = key_get(l, rk.mv_data, rk.mv_size)) == NULL)
			break;
		e->doomed = 1;
		l->ndoomed++;
		items[n].wall = wall;
		items[n].k = e;
		items[n].kind = h.kind;
		items[n].level = h.level;
		items[n].gen = h.gen;
		items[n].len = h.kind == BE_ENTRY ? h.len : 0;
		n++;
	}
	mdb_cursor_close(cur);
	if (n == 0) {
		free(items);
		if (more != NULL)
			*more = found;
		return 0;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		for (i = 0; i < n; i++) {
			items[i].k->doomed = 0;
			l->ndoomed--;
			key_put(l, items[i].k);
		}
		free(items);
		return 0;
	}
	j->kind = JOB_SWEEP;
	j->items = items;
	j->nitems = n;
	for (i = 0; i < n; i++) {
		if (items[i].kind == BE_ENTRY) {
			l->entries--;
			l->payload -= items[i].len;
		} else
			l->tombs--;
		l->used -= rec_cost(items[i].k->keylen, items[i].len);
	}
	enqueue(l, j);
	/* Reports last: the hook may call back into the backend. The items
	 * (and their keys, doomed) live until the job completes, which
	 * cannot happen during this call: completions run from the loop. */
	for (i = 0; i < n; i++)
		if (items[i].kind == BE_ENTRY)
			backend_report(&l->be, BE_EV_EXPIRE, items[i].k->key,
			    items[i].k->keylen, items[i].level, items[i].gen,
			    (size_t)items[i].len);
	if (more != NULL)
		*more = found;
	return n;
}

static void
lm_stats(struct backend *be, struct be_stats *st)
{
	struct lm *l = (struct lm *)be;

	st->entries = l->entries;
	st->tombstones = l->tombs;
	st->payload_bytes = l->payload;
	st->used_bytes = l->used;
}

/* Nothing of the lmdb backend changes live: lmdb_* need a restart (spec
 * §7; the directive table marks them so and reload() logs it), and
 * max_memory is the memory backend's. */
static void
lm_reconfigure(struct backend *be, const struct config *cfg)
{
	(void)be;
	(void)cfg;
}

/*
 * Test-only, for tests/unit/check_lmdb.c, which declares them; they are not
 * part of backend.h and the daemon never calls them.
 *
 * backend_lmdb_test_commits(): write transactions committed since open.
 * backend_lmdb_test_copies(): leases served from a heap copy since open.
 * backend_lmdb_test_retries(): jobs run again after MDB_MAP_FULL.
 * backend_lmdb_test_readers(): read transactions holding a reader slot;
 * *pinned: those that leases hold.
 * backend_lmdb_test_hold(): 1 makes the writer leave the queue alone, 0
 * lets it take everything queued meanwhile (close() lets it go too).
 */
uint64_t
backend_lmdb_test_commits(struct backend *be)
{
	struct lm *l = (struct lm *)be;
	uint64_t n;

	pthread_mutex_lock(&l->dmtx);
	n = l->commits;
	pthread_mutex_unlock(&l->dmtx);
	return n;
}

uint64_t
backend_lmdb_test_retries(struct backend *be)
{
	struct lm *l = (struct lm *)be;
	uint64_t n;

	pthread_mutex_lock(&l->dmtx);
	n = l->retries;
	pthread_mutex_unlock(&l->dmtx);
	return n;
}

uint64_t
backend_lmdb_test_copies(struct backend *be)
{
	return ((struct lm *)be)->copies;
}

size_t
backend_lmdb_test_readers(struct backend *be, size_t *pinned)
{
	struct lm *l = (struct lm *)be;

	if (pinned != NULL)
		*pinned = l->npinned;
	return l->nrtx;
}

void
backend_lmdb_test_hold(struct backend *be, int hold)
{
	struct lm *l = (struct lm *)be;

	pthread_mutex_lock(&l->qmtx);
	l->hold = hold;
	pthread_cond_signal(&l->qcond);
	pthread_mutex_unlock(&l->qmtx);
}

/* --- Scans --------------------------------------------------------------- */

/*
 * A scan walks "rec" in key order, resuming after the last key it visited,
 * in the current snapshot (which a completed commit renews: an entry whose
 * change the hook has reported is seen as changed). Key order is fixed, so
 * an entry live throughout is visited exactly once; one written meanwhile
 * is seen as it is when the cursor passes it. Doomed records (swept, their
 * deletion not yet committed) are gone already, as for lookup().
 */
#define SCAN_STEPS	4096	/* records stepped over per call, at most,
				   besides the budget visited */

struct be_scan {
	int		 started;
	size_t		 keylen;
	uint8_t		 key[KEY_MAX];	/* the last one visited */
};

static struct be_scan *
lm_scan_open(struct backend *be)
{
	(void)be;
	return calloc(1, sizeof(struct be_scan));
}

static int
lm_scan_next(struct backend *be, struct be_scan *sc, uint64_t now,
    size_t budget, be_scan_fn *fn, void *arg)
{
	struct lm *l = (struct lm *)be;
	struct kent *e;
	struct rtx *r;
	struct hdr h;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	uint64_t now_wall = mono_to_wall(l, now);
	size_t n = 0, steps = 0;
	int rc;

	if ((r = snapshot(l)) == NULL)
		return -1;
	if ((rc = mdb_cursor_open(r->txn, l->rec, &cur)) != 0) {
		rd_error(l, rc, "mdb_cursor_open(rec)");
		return -1;
	}
	if (sc->started) {
		k.mv_size = sc->keylen;
		k.mv_data = sc->key;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && k.mv_size == sc->keylen &&
		    memcmp(k.mv_data, sc->key, sc->keylen) == 0)
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	} else
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	sc->started = 1;
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (n == budget || steps == budget + SCAN_STEPS)
			break;
		steps++;
		if (k.mv_size < 1 || k.mv_size > KEY_MAX)
			continue;
		sc->keylen = k.mv_size;
		memcpy(sc->key, k.mv_data, k.mv_size);
		if (hdr_decode(&v, &h) != 0 || h.kind != BE_ENTRY ||
		    h.wall <= now_wall)
			continue;
		if ((e = key_find(l, k.mv_data, k.mv_size)) != NULL &&
		    e->doomed)
			continue;
		fn(arg, k.mv_data, k.mv_size, h.level, h.gen,
		    h.inc != 0 ? h.inc : l->be.incarnation,
		    wall_to_mono(l, h.wall),
		    (size_t)h.len);
		n++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		rd_error(l, rc, "mdb_cursor_get(rec)");
		return -1;
	}
	return rc == 0;		/* stopped on a record: more may follow */
}

static void
lm_scan_close(struct backend *be, struct be_scan *sc)
{
	(void)be;
	free(sc);
}

const struct backend_ops backend_lmdb = {
	.name = "lmdb",
	.open = lm_open,
	.close = lm_close,
	.lookup = lm_lookup,
	.write = lm_write,
	.sweep = lm_sweep,
	.stats = lm_stats,
	.reconfigure = lm_reconfigure,
	.scan_open = lm_scan_open,
	.scan_next = lm_scan_next,
	.scan_close = lm_scan_close,
};
