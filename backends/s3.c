/*
 * s3.c: the `s3` backend (spec §6): a central's records in a bucket of an
 * S3-compatible store (s3rec.h names the objects), through the asynchronous
 * client of src/s3/s3client.h on the daemon's loop, so that several
 * centrals serve one store. The rules of spec §4 are kept by conditional
 * requests only.
 *
 * open(). The client from the configuration (s3conf.h); the bucket's
 * incarnation object read, or created with If-None-Match: * (a 412: another
 * central made it first, read the winner's): be->incarnation is that, so
 * every central of a bucket names one store. Its requests run on the
 * daemon's loop, turned by open() itself until they end, before anything
 * else runs on it (as the probe runs).
 *
 * The hot tier. A table of sessions in memory (SipHash), each with the
 * head last validated (and its ETag), and the payload of its level in a
 * reference-counted buffer: immutable per (session, level, generation),
 * so leases are plain references, as memory.c's blobs. Bounded by
 * max_memory (0: no bound) with LRU eviction of sessions nothing is
 * waiting on.
 *
 * Lookups (lookup_start()) ask the store: a GET of the session's head,
 * conditional (If-None-Match: <etag>) when one is held, a 304 keeping it;
 * concurrent lookups of one session share one head request. A head
 * confirmed (read, or written by this process) within s3_revalidate of
 * the confirming request's start is trusted without asking (0: never):
 * a write through another central may be missed that long. A live
 * head whose payload the hot tier holds is answered from it; else its level
 * record and then its payload object are fetched, streamed into a flight
 * (struct flight: a buffer of the record's size, hashed as it fills), and
 * the payload's size and SHA-256 checked against the head: a mismatch is
 * a storage error, never kept. Lookups that take a payload in flight
 * (backend.h) are answered once the level record is in and follow the
 * flight's bytes; those that come later join it with the bytes so far;
 * the others wait for the whole. lookup() answers at once from the hot tier alone (the head
 * as last validated), -1 for a session it does not hold: the change feed's
 * hook reads what this backend just wrote (backend.h). Expiry: the wall
 * clock in objects (ms, rounded up so that an entry never ends sooner
 * anywhere), the monotonic clock at this file's boundary with the offset
 * measured at open; the head this process wrote keeps its exact expiry.
 *
 * Writes, one at a time per session from this process (later ones queue),
 * so that this daemon's own writes never race each other; other centrals'
 * writes are caught by the conditions: read the head, decide() on it (an
 * entry whose payload the hot tier does not hold is shown by its digest:
 * backend.h), then apply:
 *  - BE_PUT: the payload object under a fresh nonce (no condition: it is
 *    visible only once a level record names it): one PUT, or past twice
 *    s3_part_size a multipart upload, PARTS_AT_ONCE parts in flight, each
 *    retried by the client, aborted when one fails for good; completed
 *    unconditionally (Ceph RGW ignores conditions there; the name is
 *    new). From BORROW_MIN bytes on the payload goes up from the writer's
 *    buffer as it lies and is adopted on success (be_change.adopt), never
 *    copied; from DIGEST_OFF_LOOP on its SHA-256 is made by the digest
 *    worker meanwhile (blob_ready() waits for both). Then the level
 *    record created with If-None-Match: * (412: read it; the same bytes:
 *    take the winner's record, its generation and payload object; other
 *    bytes whose
 *    keep_until has passed: replaced with If-Match, no copy of them can
 *    live any more; other bytes still within it, a racer's: decide() again
 *    with that content shown as the entry, which the rules refuse: an
 *    Update racing another gets the level mismatch of spec §4.2);
 *    then the head, with If-None-Match: * (none) or If-Match: <etag>.
 *  - BE_TOUCH: the level record's keep_until raised (If-Match; it never
 *    shrinks), then the head with the new expiry (If-Match).
 *  - BE_PUT_TOMBSTONE: the head becomes state deleted (If-Match); the
 *    records stay.
 * A 412, 409 or 404 on the head means another writer moved it: read it
 * again and decide again, up to WRITE_ATTEMPTS times, then BE_ERR_UNAVAIL
 * "store contended". A 412 after an attempt whose reply was lost
 * (earlier_unknown) is resolved by reading the head back: our writer nonce
 * there means our write won. Each applied change is reported to the hook
 * (an expired entry overwritten: EXPIRE first), then done() runs.
 *
 * The store's state (s3health.h) follows every request of the client. While
 * it is down, writes are refused at once (BE_ERR_UNAVAIL naming its last
 * error), and lookups answered by the hot tier alone, as lookup() does;
 * a lookup whose head request failed is answered from the head as last
 * validated when the session has one (its payload fetched if not held).
 *
 * Heads in state expired or gone (the bucket's sweeper, s3sweep.c) are
 * no entry, as an absent head: a Set commits over an expired one by
 * If-Match; over a gone one nothing is written: the write reads it again
 * after a short wait (its sweeper deletes it) and fails "store contended"
 * when it stays. sweep() frees the hot tier's expired copies, then runs
 * the bucket's sweeper.
 *
 * scan_next() lists heads a page at a time and reads them, a few at once;
 * it answers 2 while it waits on the store (backend.h "Scanning").
 */
#ifndef _GNU_SOURCE			/* configure defines it; for */
#define _GNU_SOURCE	1		/* memmem() */
#endif
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "backend.h"
#include "bigbuf.h"
#include "clock.h"
#include "config.h"
#include "digest.h"
#include "log.h"
#include "queue_compat.h"
#include "s3_internal.h"
#include "s3be.h"
#include "s3client.h"
#include "s3conf.h"
#include "s3health.h"
#include "s3rec.h"
#include "siphash.h"

#define KEY_MAX		256
#define WRITE_ATTEMPTS	8	/* head conditions lost in a row */
#define SCAN_PAGE	"100"	/* heads per LIST page */
#define SCAN_READS	8	/* heads read at once by a scan */
#define SMALL_BODY	4096	/* heads, records, listings: max_body */
#define LIST_BODY	(1024 * 1024)
#define GONE_WAIT_MS	20	/* a gone head read again after 20, 40, … ms */
/* Payloads from this size on: hashed by the digest worker, overlapped with
 * their upload, which then goes out unsigned (UNSIGNED-PAYLOAD: the bytes
 * are not hashed twice; the record's SHA-256 is checked on every read). */
#define DIGEST_OFF_LOOP	(256 * 1024)
/* Payloads from this size on are used where the writer's buffer holds
 * them (adopted once the write succeeded), not copied. */
#define BORROW_MIN	4096
#define PARTS_AT_ONCE	4	/* UploadPart requests in flight per write */
#define PARTS_MAX	10000	/* S3's */

struct s3be;
struct sess;
extern const struct backend_ops backend_s3;

/* A payload: immutable, shared by the hot tier and leases. Its bytes lie
 * in inl[] (a small copy), in own (a buffer of its own: adopted from the
 * writer, or fetched into), or, while borrowed, in the writer's buffer
 * that its write has not adopted yet (never leased nor kept then). */
struct pay {
	unsigned	 refs;
	int		 borrowed;
	size_t		 len;
	const uint8_t	*data;
	uint8_t		*own;		/* bigbuf_free() */
	uint8_t		 inl[];
};

/* An UploadPart of a multipart upload, or the single PUT of a payload
 * (n 0): its bytes are read from the payload where they lie. */
struct part {
	struct wop		*o;
	unsigned		 n;
	size_t			 off, len;
	struct s3_call		*call;
	char			 etag[128];
};

/* A payload's upload: one PUT, or CreateMultipartUpload, the parts a few
 * at once, CompleteMultipartUpload (AbortMultipartUpload on failure). */
struct upload {
	struct s3_call		*call;		/* create, complete */
	char			*cbody;		/* complete's body */
	char			 id[512];	/* UploadId; "" for one PUT */
	struct part		*parts;
	unsigned		 nparts, next, inflight, done;
};

/* A lookup waiting on its session's head (or payload). */
struct waiter {
	TAILQ_ENTRY(waiter)	 entry;
	be_lookup_fn		*fn;
	be_flow_fn		*flow;		/* takes a payload in flight */
	void			*arg;
	uint64_t		 now;
	int			 want_lease;
};
TAILQ_HEAD(waiter_list, waiter);

/* A lookup answered before its payload came: it follows the flight. */
struct follower {
	TAILQ_ENTRY(follower)	 entry;
	be_flow_fn		*fn;
	void			*arg;
	size_t			 sent;		/* bytes handed over */
};
TAILQ_HEAD(follower_list, follower);

/* A payload on its way from the store: its bytes land in pay as they
 * come, hashed on the way; followers get them by lease, from an event of
 * the flight's own (never from inside curl's callbacks). */
struct flight {
	struct sess		*s;
	struct pay		*pay;		/* the record's size, allocated */
	size_t			 have;
	int			 over;		/* more bytes came than that */
	int			 hash_failed;
	EVP_MD_CTX		*sha;
	struct event		*ev;
	struct follower_list	 fols;
	struct s3_level		 lvl;
};

enum wstate {
	W_HEAD,		/* reading the head */
	W_BLOB,		/* PUT of the payload object */
	W_LEVEL,	/* creating the level record */
	W_LEVEL_READ,	/* reading it after a 412 */
	W_LEVEL_RAISE,	/* touch: reading, then raising keep_until */
	W_COMMIT,	/* the head's conditional PUT */
	W_VERIFY,	/* reading the head back after a lost reply */
};

/* A write in flight (the first of its session's queue) or queued. */
struct wop {
	TAILQ_ENTRY(wop)	 entry;
	struct sess		*s;
	struct be_write		*w;
	enum wstate		 st;
	struct s3_call		*call;
	int			 attempts;
	int			 level_tries;
	struct event		*wait;		/* a gone head: read again */
	/* The record decide() saw, and whether an entry had expired. */
	struct be_record	 cur;
	int			 was_expired;
	struct s3_head		 expired;	/* its head, for EXPIRE */
	/* What is being written. */
	struct s3_head		 head;		/* the new head */
	uint64_t		 expires;	/* its exact monotonic expiry */
	uint64_t		 asked;		/* its last head request sent */
	struct s3_level		 lvl;		/* BE_PUT, BE_TOUCH */
	char			 lvl_etag[128];
	struct pay		*pay;		/* BE_PUT */
	struct upload		*up;		/* BE_PUT: its payload object */
	int			 hashing;	/* the digest worker has it */
	int			 uploaded;
	char			 body[S3REC_BODY_MAX];
	char			 key[S3REC_KEY_MAX];
};
TAILQ_HEAD(wop_list, wop);

struct sess {
	struct sess		*hnext;
	TAILQ_ENTRY(sess)	 lru;
	struct s3be		*b;
	uint64_t		 hash;
	/* The head as last validated: known, and absent or not. */
	int			 known, absent;
	char			 etag[128];
	struct s3_head		 head;
	uint64_t		 expires;	/* head.expires_ms, monotonic */
	uint64_t		 seen;		/* when the head was learnt */
	uint64_t		 validated;	/* when the request that confirmed
						   it was sent (s3_revalidate) */
	uint64_t		 hasked;	/* the lookups' head request's */
	struct pay		*pay;		/* the head's level's payload */
	/* Lookups: the shared head request, then a payload fetch. */
	struct s3_call		*hcall, *pcall;
	int			 pstage;	/* 1 level record, 2 payload */
	struct s3_level		 plvl;
	struct flight		*fl;		/* pstage 2 */
	struct waiter_list	 waiters;
	struct wop_list		 wops;
	size_t			 keylen;
	uint8_t			 key[KEY_MAX];
};
TAILQ_HEAD(sess_list, sess);

struct s3be {
	struct backend		 be;
	struct event_base	*base;
	struct s3_settings	 set;
	struct s3_client	*cl;
	struct s3_health	*health;	/* up, degraded, down */
	int64_t			 clock_off;	/* wall - monotonic, ns */
	uint8_t			 seed[SIPHASH_KEY_LEN];
	struct sess		**tab;
	size_t			 tabsz, nsess;
	struct sess_list	 lru;
	uint64_t		 max_memory, used, payload_bytes;
	uint64_t		 part_size;	/* s3_part_size */
	uint64_t		 revalidate;	/* s3_revalidate, ns */
	size_t			 max_body;	/* a payload's, as fetched */
	struct s3sweep		*sweep;		/* the bucket's sweeper */
	char			 prefix[S3REC_PREFIX_MAX + 1];
};

static void	 serve(struct sess *);
static void	 wop_next(struct sess *);
static void	 wop_read_head(struct wop *);
static void	 wop_decide(struct wop *);

/* --- clocks ---------------------------------------------------------------- */

static int64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Rounded up: an expiry never moves sooner on its way to the bucket. */
static int64_t
mono_to_ms(const struct s3be *b, uint64_t mono)
{
	int64_t w;

	if (mono > (uint64_t)INT64_MAX / 2)
		return INT64_MAX / 2 / 1000000;
	w = (int64_t)mono + b->clock_off;
	if (w <= 0)
		return 0;
	return (w + 999999) / 1000000;
}

static uint64_t
ms_to_mono(const struct s3be *b, int64_t ms)
{
	int64_t m;

	if (ms <= 0)
		return 0;
	if (ms >= INT64_MAX / 2 / 1000000)
		return UINT64_MAX / 2;
	m = ms * 1000000 - b->clock_off;
	return m > 0 ? (uint64_t)m : 0;
}

/* --- payloads -------------------------------------------------------------- */

static struct pay *
pay_new(const uint8_t *data, size_t len)
{
	struct pay *p;

	if ((p = malloc(sizeof(*p) + len + 1)) == NULL)
		return NULL;
	memset(p, 0, sizeof(*p));
	p->refs = 1;
	p->len = len;
	p->data = p->inl;
	if (len > 0)
		memcpy(p->inl, data, len);
	return p;
}

/* The writer's bytes where they lie, until pay_adopt(). */
static struct pay *
pay_borrow(const uint8_t *data, size_t len)
{
	struct pay *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->refs = 1;
	p->borrowed = 1;
	p->len = len;
	p->data = data;
	return p;
}

/* A borrowed payload's buffer becomes its own (be_change.adopt). */
static void
pay_adopt(struct pay *p, struct be_change *c)
{
	if (!p->borrowed)
		return;
	p->own = c->adopt;
	c->adopt = NULL;
	p->borrowed = 0;
}

static void
pay_unref(struct pay *p)
{
	if (p != NULL && --p->refs == 0) {
		if (p->own != NULL)
			bigbuf_free(p->own);
		free(p);
	}
}

static void
pay_release(void *ctx)
{
	pay_unref(ctx);
}

static void
pay_lease(struct pay *p, struct lease *l)
{
	p->refs++;
	l->data = p->data;
	l->len = p->len;
	l->release = pay_release;
	l->ctx = p;
}

/* --- the hot tier ---------------------------------------------------------- */

static uint64_t
sess_cost(const struct sess *s)
{
	return s->keylen + BE_ENTRY_OVERHEAD + (s->pay != NULL ? s->pay->len :
	    0);
}

static void
sess_set_pay(struct sess *s, struct pay *p)
{
	struct s3be *b = s->b;

	b->used -= sess_cost(s);
	if (s->pay != NULL)
		b->payload_bytes -= s->pay->len;
	pay_unref(s->pay);
	s->pay = p;
	if (p != NULL) {
		p->refs++;
		b->payload_bytes += p->len;
	}
	b->used += sess_cost(s);
}

static int
sess_busy(const struct sess *s)
{
	return s->hcall != NULL || s->pcall != NULL ||
	    !TAILQ_EMPTY(&s->waiters) || !TAILQ_EMPTY(&s->wops);
}

static void
sess_free(struct sess *s)
{
	struct s3be *b = s->b;
	struct sess **pp = &b->tab[s->hash & (b->tabsz - 1)];

	while (*pp != s)
		pp = &(*pp)->hnext;
	*pp = s->hnext;
	sess_set_pay(s, NULL);
	b->used -= sess_cost(s);
	TAILQ_REMOVE(&b->lru, s, lru);
	b->nsess--;
	free(s);
}

/* Within max_memory: the least recently used idle sessions go. */
static void
trim(struct s3be *b, const struct sess *keep)
{
	struct sess *s, *prev;

	if (b->max_memory == 0)
		return;
	for (s = TAILQ_FIRST(&b->lru); s != NULL && b->used > b->max_memory;
	    s = prev) {
		prev = TAILQ_NEXT(s, lru);
		if (s != keep && !sess_busy(s))
			sess_free(s);
	}
}

static int
tab_grow(struct s3be *b)
{
	size_t n = b->tabsz ? b->tabsz * 2 : 64, i;
	struct sess **t, *s, *next;

	if ((t = calloc(n, sizeof(*t))) == NULL)
		return -1;
	for (i = 0; i < b->tabsz; i++)
		for (s = b->tab[i]; s != NULL; s = next) {
			next = s->hnext;
			s->hnext = t[s->hash & (n - 1)];
			t[s->hash & (n - 1)] = s;
		}
	free(b->tab);
	b->tab = t;
	b->tabsz = n;
	return 0;
}

static struct sess *
sess_find(struct s3be *b, const uint8_t *key, size_t keylen, int create)
{
	uint64_t h = siphash24(b->seed, key, keylen);
	struct sess *s;

	if (b->tabsz > 0)
		for (s = b->tab[h & (b->tabsz - 1)]; s != NULL; s = s->hnext)
			if (s->hash == h && s->keylen == keylen &&
			    memcmp(s->key, key, keylen) == 0) {
				TAILQ_REMOVE(&b->lru, s, lru);
				TAILQ_INSERT_TAIL(&b->lru, s, lru);
				return s;
			}
	if (!create || keylen == 0 || keylen > KEY_MAX)
		return NULL;
	if ((b->nsess + 1) * 4 > b->tabsz * 3 && tab_grow(b) != 0)
		return NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->b = b;
	s->hash = h;
	s->keylen = keylen;
	memcpy(s->key, key, keylen);
	TAILQ_INIT(&s->waiters);
	TAILQ_INIT(&s->wops);
	s->hnext = b->tab[h & (b->tabsz - 1)];
	b->tab[h & (b->tabsz - 1)] = s;
	TAILQ_INSERT_TAIL(&b->lru, s, lru);
	b->nsess++;
	b->used += sess_cost(s);
	return s;
}

/* A head as the contract shows it, as of now (expired: BE_NONE). */
static void
present(const struct sess *s, uint64_t now, struct be_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	if (!s->known || s->absent || s->expires <= now ||
	    s->head.state == S3_EXPIRED || s->head.state == S3_GONE)
		return;
	rec->level = s->head.level;
	rec->expires = s->expires;
	if (s->head.state == S3_DELETED) {
		rec->kind = BE_TOMBSTONE;
		memcpy(rec->digest, s->head.sha256, BE_DIGEST_LEN);
		return;
	}
	rec->kind = BE_ENTRY;
	rec->gen = s->head.gen;
	rec->inc = s->head.origin;
	rec->len = (size_t)s->head.size;
	memcpy(rec->digest, s->head.sha256, BE_DIGEST_LEN);
	if (s->pay != NULL)
		rec->data = s->pay->data;
}

/* A new head for the session: the payload held stays only when it is the
 * same content. */
static void
sess_head(struct sess *s, const struct s3_head *h, const char *etag,
    uint64_t expires)
{
	if (s->pay != NULL && (!s->known || s->absent ||
	    h->state != S3_LIVE || h->level != s->head.level ||
	    h->gen != s->head.gen ||
	    memcmp(h->sha256, s->head.sha256, S3REC_SHA256_LEN) != 0))
		sess_set_pay(s, NULL);
	s->known = 1;
	s->absent = 0;
	s->seen = clock_now_ns();
	s->head = *h;
	s->expires = expires;
	snprintf(s->etag, sizeof(s->etag), "%s", etag);
}

static void
sess_absent(struct sess *s)
{
	sess_set_pay(s, NULL);
	s->known = 1;
	s->absent = 1;
	s->seen = clock_now_ns();
	s->etag[0] = '\0';
	memset(&s->head, 0, sizeof(s->head));
	s->expires = 0;
}

/* --- requests -------------------------------------------------------------- */

static void
s3_errmsg(char *buf, size_t len, const char *op, const char *key,
    const struct s3_response *res)
{
	if (res->err != S3_E_NONE)
		snprintf(buf, len, "s3 store: %s %s: %s: %s", op, key,
		    s3_err_name(res->err), res->errmsg);
	else
		snprintf(buf, len, "s3 store: %s %s: HTTP %d %s: %s", op, key,
		    res->status, res->code[0] ? res->code : "-",
		    res->message[0] ? res->message : "-");
}

static int
ok2xx(const struct s3_response *res)
{
	return res->err == S3_E_NONE && res->status >= 200 &&
	    res->status < 300;
}

/* Start a request; NULL with err filled. */
static struct s3_call *
req(struct s3be *b, enum s3_op op, const char *key, const char *cond,
    const char *etag, const void *body, size_t len, s3_done_fn *done,
    void *arg, char *err, size_t errlen)
{
	struct s3_header h = { cond, etag };
	struct s3_request rq;

	memset(&rq, 0, sizeof(rq));
	rq.op = op;
	rq.key = key;
	if (cond != NULL) {
		rq.headers = &h;
		rq.nheaders = 1;
	}
	rq.body = body;
	rq.body_len = len;
	rq.max_body = op == S3_GET ? b->max_body : SMALL_BODY;
	rq.retry = S3_RETRY_IDEMPOTENT;
	rq.done = done;
	rq.arg = arg;
	return s3_start(b->cl, &rq, err, errlen);
}

/* Long transfers: the deadline grows with the bytes (a second per MiB
 * more), the stall bound stays s3_timeout. */
static void
big_timeouts(const struct s3be *b, struct s3_request *rq, size_t len)
{
	uint64_t t = b->set.cc.timeout_ms != 0 ? b->set.cc.timeout_ms : 10000;

	if (len < DIGEST_OFF_LOOP)
		return;
	rq->timeout_ms = t + (uint64_t)(len >> 20) * 1000;
	rq->stall_ms = t;
}

/* --- lookups --------------------------------------------------------------- */

static void
answer(struct sess *s, struct waiter *wt, int rv)
{
	struct be_record rec;
	struct lease lease = { 0 };

	TAILQ_REMOVE(&s->waiters, wt, entry);
	if (rv == 0) {
		present(s, wt->now, &rec);
		if (rec.kind == BE_ENTRY && wt->want_lease)
			pay_lease(s->pay, &lease);
		wt->fn(wt->arg, 0, &rec, wt->want_lease ? &lease : NULL);
	} else
		wt->fn(wt->arg, -1, NULL, NULL);
	free(wt);
}

static void
fail_waiters(struct sess *s, const char *msg)
{
	log_warn("s3 store lookup failed", "error=\"%s\"", msg);
	while (!TAILQ_EMPTY(&s->waiters))
		answer(s, TAILQ_FIRST(&s->waiters), -1);
}

/* --- payloads in flight --------------------------------------------------- */

/* Is the flight under way the head's content? */
static int
fl_current(const struct sess *s)
{
	return s->fl != NULL && s->known && !s->absent &&
	    s->head.state == S3_LIVE && s->head.level == s->fl->lvl.level &&
	    s->head.gen == s->fl->lvl.gen;
}

static void	 fl_follow(struct sess *, struct waiter *);

/* Lookups that joined the flight follow it (getting the bytes so far);
 * every follower is handed the bytes that came since its last (the
 * flight's event). */
static void
fl_push(evutil_socket_t fd, short what, void *arg)
{
	struct flight *fl = arg;
	struct sess *s = fl->s;
	struct follower *f, *next;
	struct waiter *wt, *wnext;
	struct be_record rec;
	struct lease l;

	(void)fd;
	(void)what;
	for (wt = TAILQ_FIRST(&s->waiters); wt != NULL && fl_current(s);
	    wt = wnext) {
		wnext = TAILQ_NEXT(wt, entry);
		present(s, wt->now, &rec);
		if (wt->flow != NULL && rec.kind == BE_ENTRY)
			fl_follow(s, wt);
	}
	for (f = TAILQ_FIRST(&fl->fols); f != NULL; f = next) {
		next = TAILQ_NEXT(f, entry);
		if (fl->have <= f->sent)
			continue;
		pay_lease(fl->pay, &l);
		l.data = fl->pay->data + f->sent;
		l.len = fl->have - f->sent;
		f->sent = fl->have;
		f->fn(f->arg, &l, 0, NULL);
	}
}

/* The end (1 whole and checked, -1 msg): every follower told, the flight
 * freed; the session's payload taken by the caller before. */
static void
fl_end(struct flight *fl, int end, const char *msg)
{
	struct follower *f;
	struct lease l;

	fl->s->fl = NULL;
	event_free(fl->ev);
	EVP_MD_CTX_free(fl->sha);
	while ((f = TAILQ_FIRST(&fl->fols)) != NULL) {
		TAILQ_REMOVE(&fl->fols, f, entry);
		memset(&l, 0, sizeof(l));
		if (end == 1 && fl->have > f->sent) {
			pay_lease(fl->pay, &l);
			l.data = fl->pay->data + f->sent;
			l.len = fl->have - f->sent;
		}
		f->fn(f->arg, &l, end, msg);
		free(f);
	}
	pay_unref(fl->pay);
	free(fl);
}

/* on_data, inside curl: copy, hash, and have the followers told. */
static int
fl_data(void *arg, const void *buf, size_t len)
{
	struct flight *fl = arg;

	if (len > fl->pay->len - fl->have) {
		fl->over = 1;
		return -1;
	}
	memcpy(fl->pay->own + fl->have, buf, len);
	if (EVP_DigestUpdate(fl->sha, buf, len) != 1)
		fl->hash_failed = 1;
	fl->have += len;
	if (!TAILQ_EMPTY(&fl->fols))
		event_active(fl->ev, EV_TIMEOUT, 1);
	return 0;
}

/* A waiter that takes the payload in flight follows it from here. */
static void
fl_follow(struct sess *s, struct waiter *wt)
{
	struct flight *fl = s->fl;
	struct follower *f;
	struct be_record rec;
	struct lease none = { 0 };

	if ((f = calloc(1, sizeof(*f))) == NULL) {
		TAILQ_REMOVE(&s->waiters, wt, entry);
		wt->fn(wt->arg, -1, NULL, NULL);
		free(wt);
		return;
	}
	f->fn = wt->flow;
	f->arg = wt->arg;
	TAILQ_INSERT_TAIL(&fl->fols, f, entry);
	TAILQ_REMOVE(&s->waiters, wt, entry);
	present(s, wt->now, &rec);
	rec.data = NULL;
	wt->fn(wt->arg, 0, &rec, &none);
	free(wt);
	if (fl->have > 0)
		event_active(fl->ev, EV_TIMEOUT, 1);
}

static void
blob_done(void *arg, const struct s3_response *res)
{
	struct sess *s = arg;
	struct s3be *b = s->b;
	struct flight *fl = s->fl;
	uint8_t sha[SHA256_DIGEST_LENGTH];
	char key[S3REC_KEY_MAX], msg[1600];

	s->pcall = NULL;
	s->pstage = 0;
	s3rec_key_blob(key, sizeof(key), "", s->key, s->keylen,
	    fl->lvl.level, fl->lvl.blob_nonce);
	if (EVP_DigestFinal_ex(fl->sha, sha, NULL) != 1)
		fl->hash_failed = 1;
	if (fl->over)
		snprintf(msg, sizeof(msg), "s3 store: GET %s: more bytes than "
		    "the record's %zu: not served", key, fl->pay->len);
	else if (!ok2xx(res))
		s3_errmsg(msg, sizeof(msg), "GET", key, res);
	else if (fl->hash_failed)
		snprintf(msg, sizeof(msg), "s3 store: GET %s: hashing failed",
		    key);
	else if (fl->have != fl->pay->len ||
	    memcmp(sha, fl->lvl.sha256, sizeof(sha)) != 0)
		snprintf(msg, sizeof(msg), "s3 store: GET %s: %zu bytes whose "
		    "SHA-256 is not the record's: not served", key, fl->have);
	else
		msg[0] = '\0';
	if (msg[0] != '\0') {
		if (TAILQ_EMPTY(&s->waiters))
			log_warn("s3 store lookup failed", "error=\"%s\"", msg);
		fl_end(fl, -1, msg);
		fail_waiters(s, msg);
		return;
	}
	/* Still the head's content? It may have moved meanwhile: then the
	 * waiters are answered by the next round. */
	if (s->known && !s->absent && s->head.state == S3_LIVE &&
	    s->head.level == fl->lvl.level && s->head.gen == fl->lvl.gen)
		sess_set_pay(s, fl->pay);
	fl_end(fl, 1, NULL);
	serve(s);
	trim(b, NULL);
}

/* The payload object, streamed into a flight of the record's size. */
static int
fl_start(struct sess *s, char *msg, size_t msglen)
{
	struct s3be *b = s->b;
	struct flight *fl;
	struct s3_request rq;
	char key[S3REC_KEY_MAX], err[256];
	size_t len = (size_t)s->plvl.size;

	s3rec_key_blob(key, sizeof(key), "", s->key, s->keylen,
	    s->plvl.level, s->plvl.blob_nonce);
	if (s->plvl.size > SIZE_MAX / 2 || (b->max_body > 0 &&
	    s->plvl.size >= b->max_body)) {
		snprintf(msg, msglen, "s3 store: %s: %" PRIu64 " bytes, more "
		    "than max_message_size", key, s->plvl.size);
		return -1;
	}
	if ((fl = calloc(1, sizeof(*fl))) == NULL ||
	    (fl->pay = calloc(1, sizeof(*fl->pay))) == NULL ||
	    (fl->pay->own = bigbuf_alloc(len + 1)) == NULL ||
	    (fl->ev = event_new(b->base, -1, 0, fl_push, fl)) == NULL ||
	    (fl->sha = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(fl->sha, EVP_sha256(), NULL) != 1) {
		if (fl != NULL && fl->pay != NULL) {
			fl->pay->refs = 1;
			pay_unref(fl->pay);
		}
		if (fl != NULL && fl->ev != NULL)
			event_free(fl->ev);
		if (fl != NULL)
			EVP_MD_CTX_free(fl->sha);
		free(fl);
		snprintf(msg, msglen, "s3 store: out of memory");
		return -1;
	}
	fl->s = s;
	fl->pay->refs = 1;
	fl->pay->len = len;
	fl->pay->data = fl->pay->own;
	fl->lvl = s->plvl;
	TAILQ_INIT(&fl->fols);
	memset(&rq, 0, sizeof(rq));
	rq.op = S3_GET;
	rq.key = key;
	rq.on_data = fl_data;
	rq.data_arg = fl;
	rq.max_body = SMALL_BODY * 4;	/* an error's */
	rq.retry = S3_RETRY_IDEMPOTENT;
	big_timeouts(b, &rq, len);
	rq.done = blob_done;
	rq.arg = s;
	s->fl = fl;
	s->pstage = 2;
	if ((s->pcall = s3_start(b->cl, &rq, err, sizeof(err))) == NULL) {
		snprintf(msg, msglen, "s3 store: GET %s: %s", key, err);
		s->fl = NULL;
		s->pstage = 0;
		event_free(fl->ev);
		EVP_MD_CTX_free(fl->sha);
		pay_unref(fl->pay);
		free(fl);
		return -1;
	}
	return 0;
}

static void
plevel_done(void *arg, const struct s3_response *res)
{
	struct sess *s = arg;
	char key[S3REC_KEY_MAX], msg[1600], err[256];

	s->pcall = NULL;
	s3rec_key_level(key, sizeof(key), "", s->key, s->keylen,
	    s->head.level);
	if (!ok2xx(res)) {
		s3_errmsg(msg, sizeof(msg), "GET", key, res);
		goto fail;
	}
	if (s3rec_level_parse((const char *)res->body, res->body_len,
	    &s->plvl, err, sizeof(err)) != 0) {
		snprintf(msg, sizeof(msg), "s3 store: %s: %s", key, err);
		goto fail;
	}
	if (s->plvl.gen != s->head.gen || s->plvl.size != s->head.size ||
	    memcmp(s->plvl.sha256, s->head.sha256, S3REC_SHA256_LEN) != 0) {
		snprintf(msg, sizeof(msg), "s3 store: %s names other content "
		    "than its head", key);
		goto fail;
	}
	if (fl_start(s, msg, sizeof(msg)) != 0)
		goto fail;
	/* Lookups that take the payload in flight are answered now. */
	serve(s);
	return;
fail:
	s->pstage = 0;
	fail_waiters(s, msg);
}

/* The payload's fetch starts with its level record (plevel_done()). */
static int
level_fetch(struct sess *s, char *msg, size_t msglen)
{
	char key[S3REC_KEY_MAX], err[256];

	s->pstage = 1;
	s3rec_key_level(key, sizeof(key), "", s->key, s->keylen,
	    s->head.level);
	if ((s->pcall = req(s->b, S3_GET, key, NULL, NULL, NULL, 0,
	    plevel_done, s, err, sizeof(err))) == NULL) {
		s->pstage = 0;
		snprintf(msg, msglen, "s3 store: GET %s: %s", key, err);
		return -1;
	}
	return 0;
}

/* Answer every waiter the hot tier can (or the flight under way, for
 * those that take it); fetch the payload for the others. */
static void
serve(struct sess *s)
{
	struct waiter *wt, *next;
	struct be_record rec;
	char msg[1600];

	for (wt = TAILQ_FIRST(&s->waiters); wt != NULL; wt = next) {
		next = TAILQ_NEXT(wt, entry);
		present(s, wt->now, &rec);
		if (rec.kind != BE_ENTRY || !wt->want_lease || s->pay != NULL)
			answer(s, wt, 0);
		else if (wt->flow != NULL && fl_current(s))
			fl_follow(s, wt);
	}
	if (TAILQ_EMPTY(&s->waiters) || s->pcall != NULL)
		return;
	if (level_fetch(s, msg, sizeof(msg)) != 0)
		fail_waiters(s, msg);
}

/* A head's answer (200, 304, 404) into the session; 0, or -1 with msg. */
static int
take_head(struct sess *s, const struct s3_response *res, const char *key,
    uint64_t asked, char *msg, size_t len)
{
	struct s3_head h;
	char err[256];

	if (res->err == S3_E_NONE && res->status == 304 && s->known &&
	    !s->absent) {
		s->validated = asked;
		return 0;
	}
	if (res->err == S3_E_NONE && res->status == 404) {
		sess_absent(s);
		s->validated = asked;
		return 0;
	}
	if (!ok2xx(res)) {
		s3_errmsg(msg, len, "GET", key, res);
		return -1;
	}
	if (s3rec_head_parse((const char *)res->body, res->body_len, &h, err,
	    sizeof(err)) != 0) {
		snprintf(msg, len, "s3 store: %s: %s", key, err);
		return -1;
	}
	/* Our own head unchanged keeps its exact expiry. */
	sess_head(s, &h, res->etag, s->known && !s->absent &&
	    strcmp(s->etag, res->etag) == 0 ? s->expires :
	    ms_to_mono(s->b, h.expires_ms));
	s->validated = asked;
	return 0;
}

static void
lhead_done(void *arg, const struct s3_response *res)
{
	struct sess *s = arg;
	char key[S3REC_KEY_MAX], msg[1600];

	s->hcall = NULL;
	s3rec_key_head(key, sizeof(key), "", s->key, s->keylen);
	if (take_head(s, res, key, s->hasked, msg, sizeof(msg)) != 0) {
		/* The store failed: the head as last validated serves. */
		if (!s->known) {
			fail_waiters(s, msg);
			return;
		}
		log_warn("s3 store lookup failed, answered from the hot tier",
		    "error=\"%s\"", msg);
	}
	serve(s);
}

/* Start the session's shared head request, conditional on the ETag held. */
static int
head_get(struct sess *s, s3_done_fn *done, void *arg, struct s3_call **call,
    char *err, size_t errlen)
{
	char key[S3REC_KEY_MAX];
	int cond = s->known && !s->absent && s->etag[0] != '\0';

	if (s3rec_key_head(key, sizeof(key), "", s->key, s->keylen) != 0) {
		snprintf(err, errlen, "session id out of range");
		return -1;
	}
	if (call == &s->hcall)
		s->hasked = clock_now_ns();
	*call = req(s->b, S3_GET, key, cond ? "If-None-Match" : NULL,
	    cond ? s->etag : NULL, NULL, 0, done, arg, err, errlen);
	return *call != NULL ? 0 : -1;
}

static int
s3_lookup_start(struct backend *be, const uint8_t *key, size_t keylen,
    uint64_t now, struct be_record *rec, struct lease *lease,
    be_lookup_fn *fn, be_flow_fn *flow, void *arg)
{
	struct s3be *b = (struct s3be *)be;
	struct waiter *wt;
	struct sess *s;
	char err[1600];
	int fresh;

	memset(rec, 0, sizeof(*rec));
	if (lease != NULL)
		memset(lease, 0, sizeof(*lease));
	if (keylen == 0 || keylen > KEY_MAX)
		return 0;		/* no such session can be stored */
	/* A store known down is not waited for: the hot tier answers. */
	if (fn == NULL || s3_health_down(b->health, NULL, 0))
		return be->ops->lookup(be, key, keylen, now, rec, lease);
	if ((s = sess_find(b, key, keylen, 1)) == NULL)
		return -1;
	/* A head confirmed within s3_revalidate is trusted: answered from
	 * the hot tier now, or its payload fetched without asking for the
	 * head again. */
	fresh = b->revalidate > 0 && s->known && s->validated != 0 &&
	    s->hcall == NULL && now < s->validated + b->revalidate;
	if (fresh) {
		present(s, now, rec);
		if (rec->kind != BE_ENTRY || lease == NULL || s->pay != NULL) {
			if (rec->kind == BE_ENTRY && lease != NULL)
				pay_lease(s->pay, lease);
			return 0;
		}
		memset(rec, 0, sizeof(*rec));
	}
	if ((wt = calloc(1, sizeof(*wt))) == NULL)
		return -1;
	wt->fn = fn;
	wt->flow = lease != NULL ? flow : NULL;
	wt->arg = arg;
	wt->now = now;
	wt->want_lease = lease != NULL;
	TAILQ_INSERT_TAIL(&s->waiters, wt, entry);
	if (fresh && s->pcall == NULL && level_fetch(s, err,
	    sizeof(err)) != 0) {
		TAILQ_REMOVE(&s->waiters, wt, entry);
		free(wt);
		log_warn("s3 store lookup failed", "error=\"%s\"", err);
		return -1;
	}
	if (!fresh && s->hcall == NULL && s->pcall == NULL &&
	    head_get(s, lhead_done, s, &s->hcall, err, sizeof(err)) != 0) {
		TAILQ_REMOVE(&s->waiters, wt, entry);
		free(wt);
		log_warn("s3 store lookup failed", "error=\"%s\"", err);
		return -1;
	}
	/* A payload on its way: this lookup joins it (fl_push()). */
	if (s->fl != NULL && wt->flow != NULL)
		event_active(s->fl->ev, EV_TIMEOUT, 1);
	return 1;
}

/* What the hot tier holds, at once (backend.h). */
static int
s3_lookup(struct backend *be, const uint8_t *key, size_t keylen,
    uint64_t now, struct be_record *rec, struct lease *lease)
{
	struct s3be *b = (struct s3be *)be;
	struct sess *s;

	memset(rec, 0, sizeof(*rec));
	if (lease != NULL)
		memset(lease, 0, sizeof(*lease));
	if (keylen == 0 || keylen > KEY_MAX)
		return 0;
	if ((s = sess_find(b, key, keylen, 0)) == NULL || !s->known)
		return -1;
	present(s, now, rec);
	if (rec->kind == BE_ENTRY && lease != NULL) {
		if (s->pay == NULL)
			return -1;
		pay_lease(s->pay, lease);
	}
	return 0;
}

/* --- writes ---------------------------------------------------------------- */

static void	 upload_stop(struct wop *);
static void	 wop_hashed(void *, const uint8_t [DIGEST_LEN]);

/* Whatever the write still has going: its upload, its hashing. */
static void
wop_stop(struct wop *o)
{
	if (o->call != NULL)
		s3_cancel(o->call);
	o->call = NULL;
	if (o->hashing)
		digest_cancel(wop_hashed, o);
	o->hashing = 0;
	upload_stop(o);
}

static void
wop_finish(struct wop *o, int err, const char *msg)
{
	struct sess *s = o->s;
	struct be_write *w = o->w;

	if (err != BE_OK)
		log_warn("s3 store write failed", "error=\"%s\"", msg);
	TAILQ_REMOVE(&s->wops, o, entry);
	wop_stop(o);
	pay_unref(o->pay);
	if (o->wait != NULL)
		event_free(o->wait);
	free(o);
	w->done(w->arg, err, msg);
	wop_next(s);
	trim(s->b, NULL);
}

static void
wop_fail(struct wop *o, const char *op, const char *key,
    const struct s3_response *res)
{
	char msg[1600];

	s3_errmsg(msg, sizeof(msg), op, key, res);
	wop_finish(o, BE_ERR_UNAVAIL, msg);
}

static void
wop_start_failed(struct wop *o, const char *op, const char *err)
{
	char msg[1600];

	snprintf(msg, sizeof(msg), "s3 store: %s %s: %s", op, o->key, err);
	wop_finish(o, BE_ERR_UNAVAIL, msg);
}

/* The change is in the store: the hot tier, the hook, done(). */
static void
wop_applied(struct wop *o, const char *etag)
{
	struct sess *s = o->s;
	struct s3be *b = s->b;
	struct be_write *w = o->w;
	const struct be_change *c = &w->chg;

	sess_head(s, &o->head, etag, o->expires);
	s->validated = o->asked;
	/* The writer's buffer is ours from here (backend.h: adopt is NULL
	 * exactly when the write succeeded and kept it). */
	if (c->action == BE_PUT && o->pay != NULL)
		pay_adopt(o->pay, &w->chg);
	if (c->action == BE_PUT && o->pay != NULL && s->pay == NULL)
		sess_set_pay(s, o->pay);
	if (o->was_expired)
		backend_report(&b->be, BE_EV_EXPIRE, s->key, s->keylen,
		    o->expired.level, o->expired.gen,
		    (size_t)o->expired.size);
	if (c->action == BE_PUT) {
		backend_report(&b->be, o->cur.kind == BE_ENTRY ?
		    BE_EV_UPDATE : BE_EV_SET, s->key, s->keylen,
		    o->head.level, o->head.gen, (size_t)o->head.size);
		if (w->want_lease && o->pay != NULL)
			pay_lease(o->pay, &w->lease);
	} else if (c->action == BE_PUT_TOMBSTONE && o->cur.kind == BE_ENTRY)
		backend_report(&b->be, BE_EV_DELETE, s->key, s->keylen,
		    o->cur.level, o->cur.gen, o->cur.len);
	wop_finish(o, BE_OK, NULL);
}

/* Lost the head's condition: read it again and decide again. */
static void
wop_again(struct wop *o)
{
	if (++o->attempts >= WRITE_ATTEMPTS) {
		char msg[1600];

		snprintf(msg, sizeof(msg), "s3 store: %s: store contended "
		    "(%d conditional writes lost in a row)", o->key,
		    o->attempts);
		wop_finish(o, BE_ERR_UNAVAIL, msg);
		return;
	}
	wop_read_head(o);
}

static void
verify_done(void *arg, const struct s3_response *res)
{
	struct wop *o = arg;
	struct s3_head h;
	char err[256];

	o->call = NULL;
	if (ok2xx(res) && s3rec_head_parse((const char *)res->body,
	    res->body_len, &h, err, sizeof(err)) == 0 &&
	    h.writer == o->head.writer) {
		wop_applied(o, res->etag);	/* the lost reply was ours */
		return;
	}
	if (!ok2xx(res) && !(res->err == S3_E_NONE && res->status == 404)) {
		wop_fail(o, "GET", o->key, res);
		return;
	}
	wop_again(o);
}

static void
commit_done(void *arg, const struct s3_response *res)
{
	struct wop *o = arg;
	char err[256];

	o->call = NULL;
	if (ok2xx(res)) {
		wop_applied(o, res->etag);
		return;
	}
	if (res->err == S3_E_NONE && (res->status == 412 ||
	    res->status == 409 || res->status == 404)) {
		if (res->earlier_unknown) {
			/* Our own earlier attempt may have won: its nonce. */
			o->st = W_VERIFY;
			if ((o->call = req(o->s->b, S3_GET, o->key, NULL,
			    NULL, NULL, 0, verify_done, o, err,
			    sizeof(err))) == NULL)
				wop_start_failed(o, "GET", err);
			return;
		}
		wop_again(o);
		return;
	}
	wop_fail(o, "PUT", o->key, res);
}

/* The head's conditional PUT: create when there is none, else If-Match. */
static void
wop_commit(struct wop *o)
{
	struct sess *s = o->s;
	char err[256];
	size_t n;

	s3rec_key_head(o->key, sizeof(o->key), "", s->key, s->keylen);
	o->head.writer = backend_random_id();
	o->head.expires_ms = mono_to_ms(s->b, o->expires);
	n = s3rec_head_format(&o->head, o->body, sizeof(o->body));
	o->st = W_COMMIT;
	o->asked = clock_now_ns();
	if ((o->call = req(s->b, S3_PUT, o->key, s->absent ? "If-None-Match" :
	    "If-Match", s->absent ? "*" : s->etag, o->body, n, commit_done, o,
	    err, sizeof(err))) == NULL)
		wop_start_failed(o, "PUT", err);
}

/* --- level records --------------------------------------------------------- */

static void level_put(struct wop *, const char *cond, const char *etag);

static void
level_read_done(void *arg, const struct s3_response *res)
{
	struct wop *o = arg;
	struct s3be *b = o->s->b;
	struct s3_level l;
	char err[256], msg[1600];

	o->call = NULL;
	if (!ok2xx(res)) {
		/* Gone meanwhile (another central replaced it): again. */
		if (o->st != W_LEVEL_RAISE && res->err == S3_E_NONE &&
		    res->status == 404 &&
		    ++o->level_tries < WRITE_ATTEMPTS) {
			level_put(o, "If-None-Match", "*");
			return;
		}
		wop_fail(o, "GET", o->key, res);
		return;
	}
	if (s3rec_level_parse((const char *)res->body, res->body_len, &l, err,
	    sizeof(err)) != 0) {
		snprintf(msg, sizeof(msg), "s3 store: %s: %s", o->key, err);
		wop_finish(o, BE_ERR_UNAVAIL, msg);
		return;
	}
	snprintf(o->lvl_etag, sizeof(o->lvl_etag), "%s", res->etag);
	if (o->st == W_LEVEL_RAISE) {
		/* A touch: the record's keep_until only ever grows. */
		int64_t want = o->lvl.keep_until_ms;

		if (l.keep_until_ms >= want) {
			wop_commit(o);
			return;
		}
		o->lvl = l;
		o->lvl.keep_until_ms = want;
		level_put(o, "If-Match", o->lvl_etag);
		return;
	}
	if (s3rec_level_same_content(&l, &o->lvl)) {
		/* Another writer stored these very bytes first (or our
		 * own lost reply): its record is ours. */
		o->lvl = l;
		o->head.gen = l.gen;
		wop_commit(o);
		return;
	}
	if (l.keep_until_ms <= (wall_ns() / 1000000) &&
	    ++o->level_tries < WRITE_ATTEMPTS) {
		/* No copy of those bytes can live any more. */
		level_put(o, "If-Match", o->lvl_etag);
		return;
	}
	/* The level still names other bytes (a racer's, whose head commit
	 * is on its way): decide again, shown that level's content as the
	 * entry, which the rules refuse as they refuse any other content at
	 * a level (an Update: the level mismatch; a Set: it exists). */
	if (++o->attempts >= WRITE_ATTEMPTS) {
		snprintf(msg, sizeof(msg), "s3 store: %s names other bytes "
		    "at this level", o->key);
		wop_finish(o, BE_ERR_UNAVAIL, msg);
		return;
	}
	memset(&o->cur, 0, sizeof(o->cur));
	o->cur.kind = BE_ENTRY;
	o->cur.level = l.level;
	o->cur.gen = l.gen;
	o->cur.inc = b->be.incarnation;
	o->cur.len = (size_t)l.size;
	memcpy(o->cur.digest, l.sha256, BE_DIGEST_LEN);
	o->cur.expires = ms_to_mono(b, l.keep_until_ms);
	wop_decide(o);
}

static void
level_done(void *arg, const struct s3_response *res)
{
	struct wop *o = arg;
	char err[256];

	o->call = NULL;
	if (ok2xx(res)) {
		wop_commit(o);
		return;
	}
	if (res->err == S3_E_NONE && (res->status == 412 ||
	    res->status == 409 || res->status == 404)) {
		if (o->st != W_LEVEL_RAISE)
			o->st = W_LEVEL_READ;
		if (++o->level_tries >= WRITE_ATTEMPTS) {
			wop_fail(o, "PUT", o->key, res);
			return;
		}
		if ((o->call = req(o->s->b, S3_GET, o->key, NULL, NULL, NULL,
		    0, level_read_done, o, err, sizeof(err))) == NULL)
			wop_start_failed(o, "GET", err);
		return;
	}
	wop_fail(o, "PUT", o->key, res);
}

static void
level_put(struct wop *o, const char *cond, const char *etag)
{
	struct sess *s = o->s;
	char err[256];
	size_t n;

	s3rec_key_level(o->key, sizeof(o->key), "", s->key, s->keylen,
	    o->lvl.level);
	n = s3rec_level_format(&o->lvl, o->body, sizeof(o->body));
	if (o->st != W_LEVEL_RAISE)
		o->st = W_LEVEL;
	if ((o->call = req(s->b, S3_PUT, o->key, cond, etag, o->body, n,
	    level_done, o, err, sizeof(err))) == NULL)
		wop_start_failed(o, "PUT", err);
}

/* --- payload objects ------------------------------------------------------ */

/* Both done, the upload and the SHA-256: the level record names it. */
static void
blob_ready(struct wop *o)
{
	if (!o->uploaded || o->hashing)
		return;
	level_put(o, "If-None-Match", "*");
}

static void
wop_hashed(void *arg, const uint8_t digest[DIGEST_LEN])
{
	struct wop *o = arg;

	o->hashing = 0;
	memcpy(o->head.sha256, digest, S3REC_SHA256_LEN);
	memcpy(o->lvl.sha256, digest, S3REC_SHA256_LEN);
	blob_ready(o);
}

static void
blob_uploaded(struct wop *o)
{
	o->uploaded = 1;
	upload_stop(o);
	blob_ready(o);
}

/* A part's bytes (or the single PUT's), read where the payload lies. */
static ssize_t
part_read(void *arg, uint64_t off, void *buf, size_t len)
{
	struct part *pt = arg;

	if (off >= pt->len)
		return 0;
	if (len > pt->len - off)
		len = (size_t)(pt->len - off);
	memcpy(buf, pt->o->pay->data + pt->off + off, len);
	return (ssize_t)len;
}

static void
abort_done(void *arg, const struct s3_response *res)
{
	char msg[1600];

	(void)arg;
	if (ok2xx(res) || (res->err == S3_E_NONE && res->status == 404))
		return;
	s3_errmsg(msg, sizeof(msg), "DELETE", "(AbortMultipartUpload)", res);
	log_warn("s3 store: an abandoned upload stays until the bucket's "
	    "lifecycle rules remove it", "error=\"%s\"", msg);
}

/* Cancel what is in flight; a multipart upload begun is aborted. */
static void
upload_stop(struct wop *o)
{
	struct upload *up = o->up;
	struct s3_param q = { "uploadId", NULL };
	struct s3_request rq;
	char err[256];
	unsigned i;

	if (up == NULL)
		return;
	o->up = NULL;
	if (up->call != NULL)
		s3_cancel(up->call);
	for (i = 0; i < up->nparts; i++)
		if (up->parts[i].call != NULL)
			s3_cancel(up->parts[i].call);
	if (up->id[0] != '\0' && !o->uploaded) {
		q.value = up->id;
		memset(&rq, 0, sizeof(rq));
		rq.op = S3_DELETE;
		rq.key = o->key;
		rq.query = &q;
		rq.nquery = 1;
		rq.max_body = SMALL_BODY;
		rq.done = abort_done;
		rq.arg = o->s->b;
		if (s3_start(o->s->b->cl, &rq, err, sizeof(err)) == NULL)
			log_warn("s3 store: AbortMultipartUpload not sent",
			    "key=\"%s\" error=\"%s\"", o->key, err);
	}
	free(up->parts);
	free(up->cbody);
	free(up);
}

static void
upload_fail(struct wop *o, const char *what, const struct s3_response *res)
{
	char msg[1600];

	s3_errmsg(msg, sizeof(msg), what, o->key, res);
	wop_finish(o, BE_ERR_UNAVAIL, msg);
}

static void
upload_start_failed(struct wop *o, const char *what, const char *err)
{
	char msg[1600];

	snprintf(msg, sizeof(msg), "s3 store: %s %s: %s", what, o->key, err);
	wop_finish(o, BE_ERR_UNAVAIL, msg);
}

static void part_next(struct wop *);

static void
single_done(void *arg, const struct s3_response *res)
{
	struct part *pt = arg;
	struct wop *o = pt->o;

	pt->call = NULL;
	if (!ok2xx(res)) {
		upload_fail(o, "PUT", res);
		return;
	}
	blob_uploaded(o);
}

static void
part_done(void *arg, const struct s3_response *res)
{
	struct part *pt = arg;
	struct wop *o = pt->o;
	char what[64];

	pt->call = NULL;
	o->up->inflight--;
	if (!ok2xx(res) || res->etag[0] == '\0') {
		snprintf(what, sizeof(what), "PUT part %u of %u", pt->n,
		    o->up->nparts);
		upload_fail(o, what, res);
		return;
	}
	snprintf(pt->etag, sizeof(pt->etag), "%s", res->etag);
	o->up->done++;
	part_next(o);
}

static void
complete_done(void *arg, const struct s3_response *res)
{
	struct wop *o = arg;

	o->up->call = NULL;
	/* S3 may answer 200 and tell a failure in the body. */
	if (!ok2xx(res) || (res->body != NULL &&
	    memmem(res->body, res->body_len, "<Error>", 7) != NULL)) {
		upload_fail(o, "POST (CompleteMultipartUpload)", res);
		return;
	}
	blob_uploaded(o);
}

/* The parts' list, as CompleteMultipartUpload takes it. */
static char *
complete_body(const struct upload *up, size_t *len)
{
	size_t cap = 128 + (size_t)up->nparts * 200, n;
	unsigned i;
	char *x;

	if ((x = malloc(cap)) == NULL)
		return NULL;
	n = (size_t)snprintf(x, cap, "<CompleteMultipartUpload>");
	for (i = 0; i < up->nparts; i++)
		n += (size_t)snprintf(x + n, cap - n, "<Part><PartNumber>%u"
		    "</PartNumber><ETag>%s</ETag></Part>", up->parts[i].n,
		    up->parts[i].etag);
	n += (size_t)snprintf(x + n, cap - n, "</CompleteMultipartUpload>");
	*len = n;
	return x;
}

/* Keep PARTS_AT_ONCE parts going; once all are in, complete. */
static void
part_next(struct wop *o)
{
	struct upload *up = o->up;
	struct s3be *b = o->s->b;
	struct s3_request rq;
	struct s3_param q[2];
	char err[256], num[16];
	size_t n;

	while (up->inflight < PARTS_AT_ONCE && up->next < up->nparts) {
		struct part *pt = &up->parts[up->next++];

		snprintf(num, sizeof(num), "%u", pt->n);
		q[0].name = "partNumber";
		q[0].value = num;
		q[1].name = "uploadId";
		q[1].value = up->id;
		memset(&rq, 0, sizeof(rq));
		rq.op = S3_PUT;
		rq.key = o->key;
		rq.query = q;
		rq.nquery = 2;
		rq.body_read = part_read;
		rq.body_arg = pt;
		rq.body_size = pt->len;
		rq.max_body = SMALL_BODY;
		rq.retry = S3_RETRY_IDEMPOTENT;
		big_timeouts(b, &rq, pt->len);
		rq.done = part_done;
		rq.arg = pt;
		if ((pt->call = s3_start(b->cl, &rq, err, sizeof(err))) ==
		    NULL) {
			upload_start_failed(o, "PUT part", err);
			return;
		}
		up->inflight++;
	}
	if (up->done < up->nparts || up->call != NULL)
		return;
	{
		struct s3_param cq = { "uploadId", up->id };
		char *x;

		if ((x = complete_body(up, &n)) == NULL) {
			upload_start_failed(o, "POST", "out of memory");
			return;
		}
		memset(&rq, 0, sizeof(rq));
		rq.op = S3_POST;
		rq.key = o->key;
		rq.query = &cq;
		rq.nquery = 1;
		rq.body = x;
		rq.body_len = n;
		rq.max_body = SMALL_BODY;
		/* Retried: a second completion of one upload is the same
		 * object (no condition on it: stores ignore them here). */
		rq.retry = S3_RETRY_IDEMPOTENT;
		rq.done = complete_done;
		rq.arg = o;
		up->call = s3_start(b->cl, &rq, err, sizeof(err));
		/* A memory body is read until done: the upload keeps it. */
		if (up->call == NULL) {
			free(x);
			upload_start_failed(o, "POST", err);
			return;
		}
		free(up->cbody);
		up->cbody = x;
	}
}

static void
create_done(void *arg, const struct s3_response *res)
{
	struct wop *o = arg;
	struct upload *up = o->up;
	const char *p, *end;

	up->call = NULL;
	p = (const char *)res->body;
	end = p != NULL ? p + res->body_len : NULL;
	if (!ok2xx(res) || p == NULL ||
	    s3_xml_next(&p, end, "UploadId", up->id, sizeof(up->id)) != 0 ||
	    up->id[0] == '\0') {
		up->id[0] = '\0';
		upload_fail(o, "POST (CreateMultipartUpload)", res);
		return;
	}
	part_next(o);
}

/* The payload object: one PUT, or a multipart upload past twice the part
 * size; its bytes by reference where they lie. */
static void
upload_start(struct wop *o)
{
	struct s3be *b = o->s->b;
	size_t len = o->pay->len, psize = (size_t)b->part_size;
	struct s3_param q = { "uploads", NULL };
	struct s3_request rq;
	struct upload *up;
	char err[256];
	unsigned i;

	if ((up = calloc(1, sizeof(*up))) == NULL) {
		upload_start_failed(o, "PUT", "out of memory");
		return;
	}
	o->up = up;
	o->uploaded = 0;
	if (psize == 0 || len <= 2 * psize)
		up->nparts = 1;
	else {
		while ((len + psize - 1) / psize > PARTS_MAX)
			psize *= 2;
		up->nparts = (unsigned)((len + psize - 1) / psize);
	}
	if ((up->parts = calloc(up->nparts, sizeof(*up->parts))) == NULL) {
		upload_start_failed(o, "PUT", "out of memory");
		return;
	}
	for (i = 0; i < up->nparts; i++) {
		up->parts[i].o = o;
		up->parts[i].n = up->nparts > 1 ? i + 1 : 0;
		up->parts[i].off = (size_t)i * psize;
		up->parts[i].len = up->nparts > 1 ? (i + 1 < up->nparts ?
		    psize : len - up->parts[i].off) : len;
	}
	memset(&rq, 0, sizeof(rq));
	rq.key = o->key;
	rq.max_body = SMALL_BODY;
	rq.retry = S3_RETRY_IDEMPOTENT;
	if (up->nparts == 1) {
		rq.op = S3_PUT;
		if (len < DIGEST_OFF_LOOP) {
			rq.body = o->pay->data;
			rq.body_len = len;
		} else {
			rq.body_read = part_read;
			rq.body_arg = &up->parts[0];
			rq.body_size = len;
			big_timeouts(b, &rq, len);
		}
		rq.done = single_done;
		rq.arg = &up->parts[0];
		if ((up->parts[0].call = s3_start(b->cl, &rq, err,
		    sizeof(err))) == NULL)
			upload_start_failed(o, "PUT", err);
		return;
	}
	rq.op = S3_POST;
	rq.query = &q;
	rq.nquery = 1;
	rq.done = create_done;
	rq.arg = o;
	if ((up->call = s3_start(b->cl, &rq, err, sizeof(err))) == NULL)
		upload_start_failed(o, "POST", err);
}

/* --- deciding and applying ------------------------------------------------- */

static void
wop_decide(struct wop *o)
{
	struct sess *s = o->s;
	struct s3be *b = s->b;
	struct be_write *w = o->w;
	struct be_change *c = &w->chg;
	uint64_t now = clock_now_ns();
	char err[256];

	/* Each call fills the change anew (backend.h). */
	memset(c, 0, sizeof(*c));
	w->decide(w->arg, &o->cur, now, c);
	memset(&o->head, 0, sizeof(o->head));
	o->expires = c->expires;
	switch (c->action) {
	case BE_KEEP:
		wop_finish(o, BE_OK, NULL);
		return;
	case BE_TOUCH:
		if (o->cur.kind != BE_ENTRY) {
			wop_finish(o, BE_OK, NULL);
			return;
		}
		o->head = s->head;
		/* The level record first: it never says less than the
		 * head. */
		memset(&o->lvl, 0, sizeof(o->lvl));
		o->lvl.level = s->head.level;
		o->lvl.keep_until_ms = mono_to_ms(b, c->expires);
		o->st = W_LEVEL_RAISE;
		s3rec_key_level(o->key, sizeof(o->key), "", s->key,
		    s->keylen, s->head.level);
		if ((o->call = req(b, S3_GET, o->key, NULL, NULL, NULL, 0,
		    level_read_done, o, err, sizeof(err))) == NULL)
			wop_start_failed(o, "GET", err);
		return;
	case BE_PUT_TOMBSTONE:
		o->head.state = S3_DELETED;
		o->head.level = c->level;
		memcpy(o->head.sha256, c->digest, S3REC_SHA256_LEN);
		wop_commit(o);
		return;
	case BE_PUT:
		break;
	}
	/* BE_PUT: the payload object, the level record, the head. A large
	 * payload is not copied: it goes up from the writer's buffer, which
	 * the hot tier adopts once the write succeeded. */
	wop_stop(o);
	pay_unref(o->pay);
	o->pay = c->adopt != NULL && c->len >= BORROW_MIN ?
	    pay_borrow(c->data, c->len) : pay_new(c->data, c->len);
	if (o->pay == NULL) {
		wop_finish(o, BE_ERR_FULL, "s3 store: out of memory");
		return;
	}
	o->head.state = S3_LIVE;
	o->head.level = c->level;
	o->head.gen = c->gen;
	o->head.origin = c->inc;
	o->head.size = c->len;
	memset(&o->lvl, 0, sizeof(o->lvl));
	o->lvl.level = c->level;
	o->lvl.gen = c->gen;
	o->lvl.size = c->len;
	o->lvl.blob_nonce = backend_random_id();
	o->lvl.keep_until_ms = mono_to_ms(b, c->expires);
	o->level_tries = 0;
	o->st = W_BLOB;
	s3rec_key_blob(o->key, sizeof(o->key), "", s->key, s->keylen,
	    c->level, o->lvl.blob_nonce);
	/* The SHA-256 off the loop while the bytes go up (blob_ready()). */
	o->hashing = c->len >= DIGEST_OFF_LOOP &&
	    digest_start(o->pay->data, o->pay->len, wop_hashed, o) == 0;
	if (!o->hashing) {
		SHA256(o->pay->data, o->pay->len, o->head.sha256);
		memcpy(o->lvl.sha256, o->head.sha256, S3REC_SHA256_LEN);
	}
	upload_start(o);
}

static void
gone_waited(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	wop_again(arg);
}

/* A gone head is never written over (s3sweep.c): its sweeper is deleting
 * the session; read it again a little later. */
static void
wop_wait_gone(struct wop *o)
{
	struct timeval tv;
	uint64_t ms = (uint64_t)GONE_WAIT_MS << (o->attempts < 8 ?
	    o->attempts : 8);

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	if (o->wait == NULL && (o->wait = evtimer_new(o->s->b->base,
	    gone_waited, o)) == NULL) {
		wop_finish(o, BE_ERR_UNAVAIL, "s3 store: out of memory");
		return;
	}
	evtimer_add(o->wait, &tv);
}

static void
whead_done(void *arg, const struct s3_response *res)
{
	struct wop *o = arg;
	struct sess *s = o->s;
	uint64_t now = clock_now_ns();
	char msg[1600];

	o->call = NULL;
	if (take_head(s, res, o->key, o->asked, msg, sizeof(msg)) != 0) {
		wop_finish(o, BE_ERR_UNAVAIL, msg);
		return;
	}
	/* Waiting lookups learn the head too. */
	if (!TAILQ_EMPTY(&s->waiters) && s->hcall == NULL && s->pcall == NULL)
		serve(s);
	if (!s->absent && s->head.state == S3_GONE) {
		wop_wait_gone(o);
		return;
	}
	present(s, now, &o->cur);
	o->was_expired = !s->absent && s->head.state == S3_LIVE &&
	    s->expires <= now;
	o->expired = s->head;
	wop_decide(o);
}

static void
wop_read_head(struct wop *o)
{
	char err[256], down[768];

	o->st = W_HEAD;
	s3rec_key_head(o->key, sizeof(o->key), "", o->s->key, o->s->keylen);
	/* Refused at once while the store is down, not after the retries. */
	if (s3_health_down(o->s->b->health, down, sizeof(down))) {
		wop_finish(o, BE_ERR_UNAVAIL, down);
		return;
	}
	o->asked = clock_now_ns();
	if (head_get(o->s, whead_done, o, &o->call, err, sizeof(err)) != 0)
		wop_start_failed(o, "GET", err);
}

/* The session's next queued write, when none is in flight. */
static void
wop_next(struct sess *s)
{
	struct wop *o = TAILQ_FIRST(&s->wops);

	if (o != NULL && o->call == NULL)
		wop_read_head(o);
}

static int
s3_write(struct backend *be, struct be_write *w)
{
	struct s3be *b = (struct s3be *)be;
	struct sess *s;
	struct wop *o;
	int first;

	memset(&w->lease, 0, sizeof(w->lease));
	if (w->keylen == 0 || w->keylen > KEY_MAX ||
	    (s = sess_find(b, w->key, w->keylen, 1)) == NULL ||
	    (o = calloc(1, sizeof(*o))) == NULL)
		return -1;
	o->s = s;
	o->w = w;
	first = TAILQ_EMPTY(&s->wops);
	TAILQ_INSERT_TAIL(&s->wops, o, entry);
	if (first)
		wop_read_head(o);
	return 0;
}

/* --- sweeping, stats ------------------------------------------------------- */

/* The hot tier's expired copies, reported to nobody (the store's entry is
 * reported by whichever central moves its head: s3sweep.c), then a tick
 * of the bucket's sweeper, which counts the expiries it reported. */
static size_t
s3_sweep(struct backend *be, uint64_t now, size_t budget, int *more)
{
	struct s3be *b = (struct s3be *)be;
	struct sess *s, *next;
	size_t n = 0;
	int bmore = 0;

	*more = 0;
	for (s = TAILQ_FIRST(&b->lru); s != NULL; s = next) {
		next = TAILQ_NEXT(s, lru);
		if (sess_busy(s) || !s->known || (!s->absent &&
		    s->expires > now))
			continue;
		if (n == budget) {
			*more = 1;
			break;
		}
		sess_free(s);
		n++;
	}
	if (b->sweep != NULL) {
		n += s3sweep_run(b->sweep, budget, &bmore);
		*more |= bmore;
	}
	return n;
}

static void
s3_stats(struct backend *be, struct be_stats *st)
{
	struct s3be *b = (struct s3be *)be;
	struct sess *s;

	memset(st, 0, sizeof(*st));
	TAILQ_FOREACH(s, &b->lru, lru) {
		if (!s->known || s->absent)
			continue;
		if (s->head.state == S3_LIVE)
			st->entries++;
		else if (s->head.state == S3_DELETED)
			st->tombstones++;
	}
	st->payload_bytes = b->payload_bytes;
	st->used_bytes = b->used;
}

static void
s3_reconfigure(struct backend *be, const struct config *conf)
{
	struct s3be *b = (struct s3be *)be;

	b->max_memory = conf->max_memory;
	b->part_size = conf->s3_part_size;
	b->revalidate = conf->s3_revalidate * 1000000;
	trim(b, NULL);
}

/* --- scanning -------------------------------------------------------------- */

/* A head read for a scan, visited once it arrived. */
struct sread {
	TAILQ_ENTRY(sread)	 entry;
	struct be_scan		*sc;
	struct s3_call		*call;
	int			 arrived, ok;
	uint64_t		 asked;		/* when the read started */
	struct s3_head		 head;
	size_t			 keylen;
	uint8_t			 key[KEY_MAX];
};
TAILQ_HEAD(sread_list, sread);

struct be_scan {
	struct s3be		*b;
	struct s3_call		*list;		/* a page in flight */
	char			*token;		/* the next page's, or NULL */
	int			 started, listed_all, failed;
	/* Names of the page not read yet. */
	char			**names;
	size_t			 nnames, at;
	struct sread_list	 reads;		/* in order */
	size_t			 inflight;
};

static void scan_pump(struct be_scan *);

static void
sread_done(void *arg, const struct s3_response *res)
{
	struct sread *r = arg;
	char err[256];

	r->call = NULL;
	r->arrived = 1;
	r->sc->inflight--;
	if (ok2xx(res))
		r->ok = s3rec_head_parse((const char *)res->body,
		    res->body_len, &r->head, err, sizeof(err)) == 0;
	else if (!(res->err == S3_E_NONE && res->status == 404))
		r->sc->failed = 1;
	scan_pump(r->sc);
}

/* Text between <tag> and </tag> from *p on, unescaped into out
 * (s3_internal.h). */
int
s3_xml_next(const char **p, const char *end, const char *tag, char *out,
    size_t len)
{
	char open[64], close[64];
	const char *a, *z;
	size_t n = 0;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	if ((a = memmem(*p, (size_t)(end - *p), open, strlen(open))) == NULL)
		return -1;
	a += strlen(open);
	if ((z = memmem(a, (size_t)(end - a), close, strlen(close))) == NULL)
		return -1;
	*p = z + strlen(close);
	while (a < z && n + 1 < len) {
		static const struct { const char *e; char c; } ents[] = {
			{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
			{ "&quot;", '"' }, { "&apos;", '\'' },
		};
		size_t i;

		for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++)
			if ((size_t)(z - a) >= strlen(ents[i].e) &&
			    memcmp(a, ents[i].e, strlen(ents[i].e)) == 0)
				break;
		if (i < sizeof(ents) / sizeof(ents[0])) {
			out[n++] = ents[i].c;
			a += strlen(ents[i].e);
		} else
			out[n++] = *a++;
	}
	out[n] = '\0';
	return 0;
}

static void
list_done(void *arg, const struct s3_response *res)
{
	struct be_scan *sc = arg;
	const char *p, *end;
	char name[S3REC_KEY_MAX + 64], tok[1024];
	size_t cap = 0;
	char **v;

	sc->list = NULL;
	if (!ok2xx(res)) {
		sc->failed = 1;
		return;
	}
	p = (const char *)res->body;
	end = p + res->body_len;
	while (s3_xml_next(&p, end, "Key", name, sizeof(name)) == 0) {
		if (sc->nnames == cap) {
			cap = cap ? cap * 2 : 128;
			if ((v = realloc(sc->names, cap * sizeof(*v))) ==
			    NULL) {
				sc->failed = 1;
				return;
			}
			sc->names = v;
		}
		if ((sc->names[sc->nnames] = strdup(name)) == NULL) {
			sc->failed = 1;
			return;
		}
		sc->nnames++;
	}
	free(sc->token);
	sc->token = NULL;
	p = (const char *)res->body;
	if (s3_xml_next(&p, end, "NextContinuationToken", tok, sizeof(tok)) ==
	    0 && (sc->token = strdup(tok)) == NULL)
		sc->failed = 1;
	if (sc->token == NULL)
		sc->listed_all = 1;
	scan_pump(sc);
}

/* Keep a page listed and a few heads read ahead. */
static void
scan_pump(struct be_scan *sc)
{
	struct s3be *b = sc->b;
	struct sread *r;
	char err[256], key[S3REC_KEY_MAX], pfx[S3REC_PREFIX_MAX + 64];
	uint8_t sid[KEY_MAX];
	size_t sidlen, i;

	if (sc->failed)
		return;
	while (sc->inflight < SCAN_READS && sc->at < sc->nnames) {
		const char *name = sc->names[sc->at++];

		if (s3rec_sid_of_head(name, b->prefix, sid, &sidlen) != 0)
			continue;
		if ((r = calloc(1, sizeof(*r))) == NULL) {
			sc->failed = 1;
			return;
		}
		r->sc = sc;
		r->asked = clock_now_ns();
		r->keylen = sidlen;
		memcpy(r->key, sid, sidlen);
		s3rec_key_head(key, sizeof(key), "", sid, sidlen);
		if ((r->call = req(b, S3_GET, key, NULL, NULL, NULL, 0,
		    sread_done, r, err, sizeof(err))) == NULL) {
			free(r);
			sc->failed = 1;
			return;
		}
		TAILQ_INSERT_TAIL(&sc->reads, r, entry);
		sc->inflight++;
	}
	if (sc->at == sc->nnames && sc->nnames > 0) {
		for (i = 0; i < sc->nnames; i++)
			free(sc->names[i]);
		sc->nnames = sc->at = 0;
	}
	if (sc->list == NULL && sc->at == sc->nnames && !sc->listed_all &&
	    (!sc->started || sc->token != NULL)) {
		struct s3_param q[4] = {
			{ "list-type", "2" }, { "max-keys", SCAN_PAGE },
			{ "prefix", pfx }, { "continuation-token", sc->token },
		};
		struct s3_request rq;

		snprintf(pfx, sizeof(pfx), "%ss/", b->prefix);
		memset(&rq, 0, sizeof(rq));
		rq.op = S3_LIST;
		rq.query = q;
		rq.nquery = sc->token != NULL ? 4 : 3;
		rq.max_body = LIST_BODY;
		rq.done = list_done;
		rq.arg = sc;
		sc->started = 1;
		if ((sc->list = s3_start(b->cl, &rq, err, sizeof(err))) ==
		    NULL)
			sc->failed = 1;
	}
}

static struct be_scan *
s3_scan_open(struct backend *be)
{
	struct be_scan *sc;

	if ((sc = calloc(1, sizeof(*sc))) == NULL)
		return NULL;
	sc->b = (struct s3be *)be;
	TAILQ_INIT(&sc->reads);
	return sc;
}

static int
s3_scan_next(struct backend *be, struct be_scan *sc, uint64_t now,
    size_t budget, be_scan_fn *fn, void *arg)
{
	struct s3be *b = (struct s3be *)be;
	struct sread *r;
	struct sess *s;
	size_t n = 0;
	uint64_t exp;

	if (!sc->started)
		scan_pump(sc);
	while (n < budget && (r = TAILQ_FIRST(&sc->reads)) != NULL &&
	    r->arrived) {
		TAILQ_REMOVE(&sc->reads, r, entry);
		exp = ms_to_mono(b, r->head.expires_ms);
		/* Read ahead: a head this process learnt since (its own
		 * write, say) is newer than the one read. */
		if ((s = sess_find(b, r->key, r->keylen, 0)) != NULL &&
		    s->known && s->seen > r->asked) {
			r->ok = !s->absent;
			r->head = s->head;
			exp = s->expires;
		}
		if (r->ok && r->head.state == S3_LIVE && exp > now) {
			fn(arg, r->key, r->keylen, r->head.level, r->head.gen,
			    r->head.origin, exp, (size_t)r->head.size);
			n++;
		}
		free(r);
	}
	if (sc->failed)
		return -1;
	scan_pump(sc);
	if (sc->failed)
		return -1;
	if (TAILQ_EMPTY(&sc->reads) && sc->list == NULL && sc->listed_all &&
	    sc->at == sc->nnames)
		return 0;
	/* 2 only when nothing was visited: the caller comes back later. */
	return n > 0 || ((r = TAILQ_FIRST(&sc->reads)) != NULL &&
	    r->arrived) ? 1 : 2;
}

static void
s3_scan_close(struct backend *be, struct be_scan *sc)
{
	struct sread *r;
	size_t i;

	(void)be;
	if (sc->list != NULL)
		s3_cancel(sc->list);
	while ((r = TAILQ_FIRST(&sc->reads)) != NULL) {
		TAILQ_REMOVE(&sc->reads, r, entry);
		if (r->call != NULL)
			s3_cancel(r->call);
		free(r);
	}
	for (i = sc->at; i < sc->nnames; i++)
		free(sc->names[i]);
	free(sc->names);
	free(sc->token);
	free(sc);
}

/* --- open, close ----------------------------------------------------------- */

struct incget {
	const char	*op;
	int		 done, status, unknown;
	char		 msg[1600];
	char		 body[S3REC_BODY_MAX + 1];
};

static void
inc_done(void *arg, const struct s3_response *res)
{
	struct incget *g = arg;
	char key[S3REC_KEY_MAX];

	g->done = 1;
	g->status = res->err == S3_E_NONE ? res->status : 0;
	g->unknown = res->earlier_unknown;
	if (ok2xx(res) && res->body_len < sizeof(g->body)) {
		if (res->body_len > 0)	/* a PUT's empty reply: body NULL */
			memcpy(g->body, res->body, res->body_len);
		g->body[res->body_len] = '\0';
	}
	s3rec_key_incarnation(key, sizeof(key), "");
	s3_errmsg(g->msg, sizeof(g->msg), g->op, key, res);
}

/* One request run to its end on the loop (open() only). */
static int
inc_run(struct s3be *b, enum s3_op op, const char *body, struct incget *g,
    char *err, size_t errlen)
{
	char key[S3REC_KEY_MAX];

	memset(g, 0, sizeof(*g));
	g->op = op == S3_PUT ? "PUT" : "GET";
	s3rec_key_incarnation(key, sizeof(key), "");
	if (req(b, op, key, op == S3_PUT ? "If-None-Match" : NULL,
	    op == S3_PUT ? "*" : NULL, body, body != NULL ? strlen(body) : 0,
	    inc_done, g, err, errlen) == NULL)
		return -1;
	while (!g->done)
		if (event_base_loop(b->base, EVLOOP_ONCE) != 0 && !g->done) {
			snprintf(err, errlen, "s3 store: the loop stalled");
			return -1;
		}
	return 0;
}

/* The bucket's incarnation: read, or created once for every central. */
static int
incarnation(struct s3be *b, char *err, size_t errlen)
{
	struct s3_incarnation inc;
	struct incget g;
	char body[S3REC_BODY_MAX], perr[256];
	int i;

	for (i = 0; i < 4; i++) {
		if (inc_run(b, S3_GET, NULL, &g, err, errlen) != 0)
			return -1;
		if (g.status >= 200 && g.status < 300) {
			if (s3rec_incarnation_parse(g.body, strlen(g.body),
			    &inc, perr, sizeof(perr)) != 0 || inc.inc == 0) {
				snprintf(err, errlen, "s3 store %s: "
				    "incarnation: %s", s3_client_url(b->cl),
				    perr);
				return -1;
			}
			b->be.incarnation = inc.inc;
			return 0;
		}
		if (g.status != 404) {
			snprintf(err, errlen, "%s", g.msg);
			return -1;
		}
		inc.inc = backend_random_id();
		inc.created_ms = wall_ns() / 1000000;
		s3rec_incarnation_format(&inc, body, sizeof(body));
		if (inc_run(b, S3_PUT, body, &g, err, errlen) != 0)
			return -1;
		if (g.status >= 200 && g.status < 300) {
			b->be.incarnation = inc.inc;
			log_info("s3 store: a new incarnation", "url=%s",
			    s3_client_url(b->cl));
			return 0;
		}
		if (g.status != 412 && g.status != 409) {
			snprintf(err, errlen, "%s", g.msg);
			return -1;
		}
		/* Another central created it first (or our lost reply
		 * did): read it. */
	}
	snprintf(err, errlen, "s3 store %s: the incarnation object could "
	    "not be settled", s3_client_url(b->cl));
	return -1;
}

static void s3_close(struct backend *);

static struct backend *
s3_open(const struct config *conf, struct event_base *base, char *err,
    size_t errlen)
{
	struct s3be *b;
	char e[512];

	if ((b = calloc(1, sizeof(*b))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->be.ops = &backend_s3;
	b->base = base;
	b->max_memory = conf->max_memory;
	b->part_size = conf->s3_part_size;
	b->revalidate = conf->s3_revalidate * 1000000;
	/* No payload is larger than a message (0: the client's 16 MiB). */
	b->max_body = conf->max_message_size > 0 ?
	    (size_t)conf->max_message_size + 1 : 0;
	TAILQ_INIT(&b->lru);
	if (siphash_key(b->seed) != 0)
		memset(b->seed, 0x5a, sizeof(b->seed));
	b->clock_off = wall_ns() - (int64_t)clock_now_ns();
	if (s3conf_load(conf, &b->set, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "%s", e);
		free(b);
		return NULL;
	}
	if ((b->cl = s3_client_new(base, &b->set.cc, e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "backend s3: %s", e);
		s3conf_free(&b->set);
		free(b);
		return NULL;
	}
	snprintf(b->prefix, sizeof(b->prefix), "%s", s3_client_prefix(b->cl));
	s3rec_key_incarnation(e, sizeof(e), "");
	if ((b->health = s3_health_new(base, b->cl, e)) == NULL) {
		snprintf(err, errlen, "out of memory");
		s3_close(&b->be);
		return NULL;
	}
	if (incarnation(b, err, errlen) != 0) {
		s3_close(&b->be);
		return NULL;
	}
	if ((b->sweep = s3sweep_new(&b->be, base, b->cl, &b->set.cc,
	    conf)) == NULL) {
		snprintf(err, errlen, "backend s3: out of memory");
		s3_close(&b->be);
		return NULL;
	}
	return &b->be;
}

/* Every lookup answered -1 and every write done() BE_ERR_UNAVAIL first
 * (backend.h); leases outlive it (the payloads are reference counted). */
static void
s3_close(struct backend *be)
{
	struct s3be *b = (struct s3be *)be;
	struct sess *s;
	struct wop *o;
	struct be_write *w;

	if (b == NULL)
		return;
	s3sweep_free(b->sweep);
	TAILQ_FOREACH(s, &b->lru, lru) {
		if (s->hcall != NULL)
			s3_cancel(s->hcall);
		if (s->pcall != NULL)
			s3_cancel(s->pcall);
		s->hcall = s->pcall = NULL;
		if (s->fl != NULL)
			fl_end(s->fl, -1, "s3 store: closing");
		while (!TAILQ_EMPTY(&s->waiters))
			answer(s, TAILQ_FIRST(&s->waiters), -1);
		while ((o = TAILQ_FIRST(&s->wops)) != NULL) {
			wop_stop(o);
			if (o->wait != NULL)
				event_free(o->wait);
			TAILQ_REMOVE(&s->wops, o, entry);
			w = o->w;
			pay_unref(o->pay);
			free(o);
			w->done(w->arg, BE_ERR_UNAVAIL, "s3 store: closing");
		}
	}
	while ((s = TAILQ_FIRST(&b->lru)) != NULL)
		sess_free(s);
	free(b->tab);
	s3_health_free(b->health);
	s3_client_free(b->cl);
	s3conf_free(&b->set);
	free(b);
}

struct s3_client *
backend_s3_client(struct backend *be)
{
	return be != NULL && be->ops == &backend_s3 ? ((struct s3be *)be)->cl :
	    NULL;
}

struct s3_health *
backend_s3_health(struct backend *be)
{
	return be != NULL && be->ops == &backend_s3 ?
	    ((struct s3be *)be)->health : NULL;
}

const struct backend_ops backend_s3 = {
	.name = "s3",
	.open = s3_open,
	.close = s3_close,
	.lookup = s3_lookup,
	.lookup_start = s3_lookup_start,
	.write = s3_write,
	.sweep = s3_sweep,
	.stats = s3_stats,
	.reconfigure = s3_reconfigure,
	.scan_open = s3_scan_open,
	.scan_next = s3_scan_next,
	.scan_close = s3_scan_close,
};
