/*
 * s3sweep.c: backend s3's sweeper of the bucket (issue 20): expiry and
 * collection by the centrals themselves, shared without a leader. No
 * bucket lifecycle rule is needed on P/s/, and none may be (it would drop
 * tombstones and level records that still guard a level).
 *
 * Leases. The sessions are split in SHARDS shards by s3rec_shard(). A
 * central sweeps the shards whose lease object P/lease/<shard> it holds:
 * taken with If-None-Match: * when absent, with If-Match on the ETag read
 * when it ran out (or is its own), renewed by If-Match on its own ETag
 * when half of s3_lease_time is left, given up at close (until 0, If-Match).
 * A shard leased by another is skipped. Leases only save work: every step
 * below is conditional, or an unconditional DELETE argued safe, so two
 * sweepers on one shard (a lease lost mid-pass, clocks apart) break no
 * rule; they only race, and the conditions pick one.
 *
 * A pass: the leases, then the listing of P/s/ a page at a time, grouped
 * by session (a session's names are adjacent); each session of a shard
 * held is swept, a few at once, one request at a time:
 *  - live past its expiry: the head moves to state expired by If-Match on
 *    the ETag read. Exactly one of this and any other conditional write
 *    of that head (a Set on another central, another sweeper) wins; the
 *    winner alone reports the expiry (BE_EV_EXPIRE here; a Set that
 *    overwrites a live head past its expiry reports it in s3.c), so an
 *    expiry is reported once per store. A head written again meanwhile
 *    fails the If-Match and is left as it is.
 *  - expired, deleted past its expiry (a tombstone is honoured until
 *    then), no head but level records older than s3_orphan_grace (a Set
 *    that died between its level record and its head), or gone and stale:
 *    collected, once every level record listed has its keep_until passed
 *    (a copy of that level may live until then; else it waits). Collecting
 *    is a seal, then deletes:
 *  - the seal: the head moves to state gone (If-Match on the ETag read, or
 *    If-None-Match: * when there is none) with this sweeper's nonce and the
 *    time. No writer writes over a gone head (s3.c waits for it to go), so
 *    from the seal on nothing can commit a head for the session: a write
 *    that read the head before fails its If-Match, one that reads it after
 *    waits; nothing reads a record or payload of a session without a live
 *    head.
 *  - the deletes, unconditional (stores ignore If-Match on DELETE): the
 *    level records read, the payload objects they name, then the head. A
 *    record another writer wrote after our read and before our DELETE is
 *    lost with no harm: its writer's head commit fails on the seal, and it
 *    writes its record again after the head is gone. Only the sealer
 *    deletes, and only within half of the seal's staleness (4 s3_timeout
 *    + 30 s), each DELETE's retries within s3_timeout; a seal older than
 *    that is taken over by a new conditional seal: no DELETE of an old
 *    seal can land after the head was created anew.
 * Every tenth pass also lists P/b/ and multipart uploads: a payload object
 * older than s3_orphan_grace that its level record does not name (none,
 * or another nonce) is deleted (only its writer names a payload object,
 * right after writing it, so an old one no record names never will be);
 * an incomplete upload older than the grace is aborted. The grace must
 * outlast any upload.
 *
 * A level's records of a session that is still live (levels it moved on
 * from) stay until the session ends; their payloads with them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "backend.h"
#include "config.h"
#include "log.h"
#include "s3_internal.h"
#include "s3client.h"
#include "s3rec.h"

#define SHARDS		16
#define CONC		8	/* sessions swept at once */
#define ORPHAN_EVERY	10	/* passes */
#define LIST_PAGE	"1000"
#define LIST_MAX	(2 * 1024 * 1024)
#define SMALL		4096
#define SID_MAX		256
#define RELEASE_MS	2000	/* the most close() waits to give up leases */

enum phase { PH_IDLE = 0, PH_LEASES, PH_HEADS, PH_BLOBS, PH_UPLOADS };

/* One thing to sweep: a session's names (PH_HEADS), a payload object
 * (PH_BLOBS) or an upload (PH_UPLOADS). */
struct item {
	uint8_t		 sid[SID_MAX];
	size_t		 sidlen;
	int		 has_head;
	uint32_t	*levels;
	size_t		 nlevels, caplevels;
	int64_t		 newest_ms;	/* level records' LastModified */
	uint32_t	 level;		/* PH_BLOBS */
	uint64_t	 nonce;
	char		*key;		/* PH_BLOBS, PH_UPLOADS */
	char		*upload;
};

enum tstate { T_HEAD, T_EXPIRE, T_VERIFY, T_RECORD, T_SEAL, T_DEL, T_BLOB };

struct task {
	struct s3sweep	*sw;
	struct item	 it;
	enum tstate	 st;
	struct s3_call	*call;
	struct s3_head	 head;		/* as read, then as written */
	char		 etag[128];
	struct s3_head	 was;		/* EXPIRE: the entry reported */
	uint64_t	*nonces;	/* per level: 0 none read */
	size_t		 li;		/* level record at hand */
	int		 del;		/* T_DEL: 0 records, 1 payloads, 2 head */
	int64_t		 seal_ms;
	char		 key[S3REC_KEY_MAX];
	char		 body[S3REC_BODY_MAX];
};

struct s3sweep;

/* A lease request's context: which sweeper, which shard. */
struct lease_ctx {
	struct s3sweep	*sw;
	unsigned	 i;
	int		 of_pass;
};

struct shard {
	struct lease_ctx ctx;
	int		 held;
	int64_t		 until_ms;
	int64_t		 want_ms;
	char		 etag[128];
	struct s3_call	*call;
	char		 body[S3REC_BODY_MAX];
};

struct s3sweep {
	struct backend		*be;
	struct event_base	*base;
	struct s3_client	*cl;
	char			 prefix[S3REC_PREFIX_MAX + 1];
	uint64_t		 me;
	int64_t			 lease_ms, grace_ms, stale_ms;
	struct shard		 sh[SHARDS];
	unsigned		 nheld;		/* as last logged */
	/* The pass. */
	enum phase		 phase;
	unsigned		 passes;
	int			 pending;	/* lease reads of the pass */
	struct s3_call		*list;
	char			*token, *token2;
	int			 listed_all, failed;
	struct item		*items;
	size_t			 nitems, capitems, at;
	struct item		 carry;		/* a session a page may cut */
	int			 carrying;
	struct task		*tasks[CONC];
	size_t			 ntasks;
	size_t			 credits, expired;
	/* close(): leases given up on a loop of their own. */
	struct event_base	*rbase;
	struct s3_client	*rcl;
	int			 rpending;
};

static void pump(struct s3sweep *);

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
ok2xx(const struct s3_response *res)
{
	return res->err == S3_E_NONE && res->status >= 200 &&
	    res->status < 300;
}

static int
lost_race(const struct s3_response *res)
{
	return res->err == S3_E_NONE && (res->status == 412 ||
	    res->status == 409 || res->status == 404);
}

static void
warn_res(const char *what, const char *key, const struct s3_response *res)
{
	char kv[1400];

	if (res->err != S3_E_NONE)
		snprintf(kv, sizeof(kv), "key=\"%s\" error=\"%s: %s\"", key,
		    s3_err_name(res->err), res->errmsg);
	else
		snprintf(kv, sizeof(kv), "key=\"%s\" error=\"HTTP %d %s\"",
		    key, res->status, res->code[0] ? res->code : "-");
	log_warn(what, "%s", kv);
}

static struct s3_call *
req(struct s3_client *cl, enum s3_op op, const char *key,
    const char *cond, const char *etag, const char *body,
    const struct s3_param *q, size_t nq, s3_done_fn *done, void *arg)
{
	struct s3_header h = { cond, etag };
	struct s3_request rq;
	char err[256];
	struct s3_call *c;

	memset(&rq, 0, sizeof(rq));
	rq.op = op;
	rq.key = key;
	if (cond != NULL) {
		rq.headers = &h;
		rq.nheaders = 1;
	}
	rq.body = body;
	rq.body_len = body != NULL ? strlen(body) : 0;
	rq.query = q;
	rq.nquery = nq;
	rq.max_body = op == S3_LIST ? LIST_MAX : SMALL;
	rq.retry = S3_RETRY_IDEMPOTENT;
	rq.done = done;
	rq.arg = arg;
	if ((c = s3_start(cl, &rq, err, sizeof(err))) == NULL)
		log_warn("s3 sweep: cannot start a request", "key=\"%s\" "
		    "error=\"%s\"", key != NULL ? key : "-", err);
	return c;
}

/* --- leases ---------------------------------------------------------------- */

static int
lease_fresh(const struct s3sweep *sw, unsigned i, int64_t now)
{
	/* A quarter of the lease left: no new work under it. */
	return sw->sh[i].held && sw->sh[i].until_ms - sw->lease_ms / 4 > now;
}

static void
lease_log(struct s3sweep *sw)
{
	unsigned i, n = 0;

	for (i = 0; i < SHARDS; i++)
		n += sw->sh[i].held != 0;
	if (n != sw->nheld)
		log_info("s3 sweep: shards held", "holder=%016" PRIx64
		    " shards=%u of=%u", sw->me, n, SHARDS);
	sw->nheld = n;
}

static void
lease_settled(struct s3sweep *sw)
{
	lease_log(sw);
	if (sw->phase == PH_LEASES && --sw->pending == 0) {
		sw->phase = PH_HEADS;
		pump(sw);
	}
}

static void lease_put(struct s3sweep *, unsigned, const char *cond,
		    const char *etag, int of_pass);

static void
lease_wrote(void *arg, const struct s3_response *res)
{
	struct lease_ctx *c = arg;
	struct s3sweep *sw = c->sw;
	struct shard *s = &sw->sh[c->i];
	int of_pass = c->of_pass;

	s->call = NULL;
	if (ok2xx(res)) {
		s->held = 1;
		s->until_ms = s->want_ms;
		snprintf(s->etag, sizeof(s->etag), "%s", res->etag);
	} else {
		/* Another took it (or the store failed): not ours now. */
		if (!lost_race(res))
			warn_res("s3 sweep: lease not written",
			    "lease", res);
		s->held = 0;
	}
	if (of_pass)
		lease_settled(sw);
	else
		lease_log(sw);
}

static void
lease_read(void *arg, const struct s3_response *res)
{
	struct lease_ctx *c = arg;
	struct s3sweep *sw = c->sw;
	unsigned i = c->i;
	struct shard *s = &sw->sh[i];
	struct s3_lease l;
	char err[128], etag[128];

	s->call = NULL;
	if (res->err == S3_E_NONE && res->status == 404) {
		lease_put(sw, i, "If-None-Match", "*", 1);
		return;
	}
	if (!ok2xx(res)) {
		warn_res("s3 sweep: lease not read", "lease", res);
		s->held = 0;
		lease_settled(sw);
		return;
	}
	/* A damaged lease is taken over like a lapsed one. */
	if (s3rec_lease_parse((const char *)res->body, res->body_len, &l,
	    err, sizeof(err)) == 0 && !s3rec_lease_takable(&l, sw->me,
	    wall_ms())) {
		s->held = 0;
		lease_settled(sw);
		return;
	}
	snprintf(etag, sizeof(etag), "%s", res->etag);
	lease_put(sw, i, "If-Match", etag, 1);
}

static void
lease_put(struct s3sweep *sw, unsigned i, const char *cond, const char *etag,
    int of_pass)
{
	struct shard *s = &sw->sh[i];
	struct s3_lease l = { sw->me, 0 };
	char key[S3REC_KEY_MAX];

	s->want_ms = wall_ms() + sw->lease_ms;
	l.until_ms = s->want_ms;
	s3rec_lease_format(&l, s->body, sizeof(s->body));
	s3rec_key_lease(key, sizeof(key), "", i);
	s->ctx.sw = sw;
	s->ctx.i = i;
	s->ctx.of_pass = of_pass;
	if ((s->call = req(sw->cl, S3_PUT, key, cond, etag, s->body, NULL, 0,
	    lease_wrote, &s->ctx)) == NULL) {
		s->held = 0;
		if (of_pass)
			lease_settled(sw);
	}
}

/* A pass: read every lease not held (held ones are renewed by ticks). */
static void
leases_take(struct s3sweep *sw)
{
	struct lease_ctx *c;
	char key[S3REC_KEY_MAX];
	unsigned i;

	sw->phase = PH_LEASES;
	sw->pending = 1;
	for (i = 0; i < SHARDS; i++) {
		if (sw->sh[i].held || sw->sh[i].call != NULL)
			continue;
		s3rec_key_lease(key, sizeof(key), "", i);
		c = &sw->sh[i].ctx;
		c->sw = sw;
		c->i = i;
		c->of_pass = 1;
		if ((sw->sh[i].call = req(sw->cl, S3_GET, key, NULL, NULL,
		    NULL, NULL, 0, lease_read, c)) == NULL)
			continue;
		sw->pending++;
	}
	lease_settled(sw);
}

/* Held leases with half their time left or less: renewed. */
static void
leases_renew(struct s3sweep *sw, int64_t now)
{
	char etag[128];
	unsigned i;

	for (i = 0; i < SHARDS; i++) {
		struct shard *s = &sw->sh[i];

		if (!s->held || s->call != NULL ||
		    s->until_ms - now > sw->lease_ms / 2)
			continue;
		if (s->until_ms <= now) {
			s->held = 0;	/* lapsed: taken again by a pass */
			continue;
		}
		snprintf(etag, sizeof(etag), "%s", s->etag);
		lease_put(sw, i, "If-Match", etag, 0);
	}
	lease_log(sw);
}

/* --- listings -------------------------------------------------------------- */

static int64_t
iso_ms(const char *s)
{
	struct tm tm;
	int ms = 0, n = 0;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%d-%d-%dT%d:%d:%d%n", &tm.tm_year, &tm.tm_mon,
	    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return -1;
	if (s[n] == '.')
		ms = atoi(s + n + 1) % 1000;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

static void
item_clear(struct item *it)
{
	free(it->levels);
	free(it->key);
	free(it->upload);
	memset(it, 0, sizeof(*it));
}

static int
items_add(struct s3sweep *sw, struct item *it)
{
	struct item *v;
	size_t cap;

	if (sw->nitems == sw->capitems) {
		cap = sw->capitems ? sw->capitems * 2 : 64;
		if ((v = realloc(sw->items, cap * sizeof(*v))) == NULL)
			return -1;
		sw->items = v;
		sw->capitems = cap;
	}
	sw->items[sw->nitems++] = *it;
	memset(it, 0, sizeof(*it));
	return 0;
}

static void
items_free(struct s3sweep *sw)
{
	size_t i;

	for (i = sw->at; i < sw->nitems; i++)
		item_clear(&sw->items[i]);
	free(sw->items);
	sw->items = NULL;
	sw->nitems = sw->capitems = sw->at = 0;
}

/* A session's names are complete: swept when its shard is held. */
static void
carry_flush(struct s3sweep *sw, int64_t now)
{
	struct item *c = &sw->carry;

	if (!sw->carrying)
		return;
	sw->carrying = 0;
	if (lease_fresh(sw, s3rec_shard(c->sid, c->sidlen, SHARDS), now) &&
	    items_add(sw, c) == 0)
		return;
	item_clear(c);
}

static void
heads_page(struct s3sweep *sw, const char *p, const char *end, int64_t now)
{
	char key[S3REC_KEY_MAX + 64], when[64];
	uint8_t sid[SID_MAX];
	size_t sidlen;
	uint32_t level;
	uint64_t nonce;
	enum s3_kind k;
	uint32_t *v;

	while (s3_xml_next(&p, end, "Key", key, sizeof(key)) == 0) {
		if (s3_xml_next(&p, end, "LastModified", when,
		    sizeof(when)) != 0)
			break;
		k = s3rec_parse_key(key, sw->prefix, sid, &sidlen, &level,
		    &nonce);
		if (k != S3K_HEAD && k != S3K_LEVEL)
			continue;
		if (sw->carrying && (sidlen != sw->carry.sidlen ||
		    memcmp(sid, sw->carry.sid, sidlen) != 0))
			carry_flush(sw, now);
		if (!sw->carrying) {
			memset(&sw->carry, 0, sizeof(sw->carry));
			memcpy(sw->carry.sid, sid, sidlen);
			sw->carry.sidlen = sidlen;
			sw->carrying = 1;
		}
		if (k == S3K_HEAD) {
			sw->carry.has_head = 1;
			continue;
		}
		if (sw->carry.nlevels == sw->carry.caplevels) {
			size_t cap = sw->carry.caplevels ?
			    sw->carry.caplevels * 2 : 8;

			if ((v = realloc(sw->carry.levels, cap *
			    sizeof(*v))) == NULL)
				continue;
			sw->carry.levels = v;
			sw->carry.caplevels = cap;
		}
		sw->carry.levels[sw->carry.nlevels++] = level;
		if (iso_ms(when) > sw->carry.newest_ms)
			sw->carry.newest_ms = iso_ms(when);
	}
}

static void
blobs_page(struct s3sweep *sw, const char *p, const char *end, int64_t now)
{
	char key[S3REC_KEY_MAX + 64], when[64];
	struct item it;
	int64_t t;

	while (s3_xml_next(&p, end, "Key", key, sizeof(key)) == 0) {
		if (s3_xml_next(&p, end, "LastModified", when,
		    sizeof(when)) != 0)
			break;
		memset(&it, 0, sizeof(it));
		if (s3rec_parse_key(key, sw->prefix, it.sid, &it.sidlen,
		    &it.level, &it.nonce) != S3K_BLOB ||
		    (t = iso_ms(when)) < 0 || t > now - sw->grace_ms ||
		    !lease_fresh(sw, s3rec_shard(it.sid, it.sidlen, SHARDS),
		    now))
			continue;
		/* Under the prefix: the client adds it again. */
		if ((it.key = strdup(key + strlen(sw->prefix))) == NULL ||
		    items_add(sw, &it) != 0)
			item_clear(&it);
	}
}

static void
uploads_page(struct s3sweep *sw, const char *p, const char *end,
    int64_t now)
{
	char key[S3REC_KEY_MAX + 64], id[1024], when[64];
	struct item it;
	size_t pl = strlen(sw->prefix);
	unsigned shard;
	uint32_t level;
	uint64_t nonce;
	int64_t t;

	for (;;) {
		if (s3_xml_next(&p, end, "Key", key, sizeof(key)) != 0 ||
		    s3_xml_next(&p, end, "UploadId", id, sizeof(id)) != 0 ||
		    s3_xml_next(&p, end, "Initiated", when, sizeof(when)) != 0)
			break;
		memset(&it, 0, sizeof(it));
		if (strncmp(key, sw->prefix, pl) != 0 ||
		    (t = iso_ms(when)) < 0 || t > now - sw->grace_ms)
			continue;
		shard = s3rec_parse_key(key, sw->prefix, it.sid, &it.sidlen,
		    &level, &nonce) == S3K_BLOB ? s3rec_shard(it.sid,
		    it.sidlen, SHARDS) : s3rec_shard((const uint8_t *)key,
		    strlen(key), SHARDS);
		if (!lease_fresh(sw, shard, now))
			continue;
		if ((it.key = strdup(key + pl)) == NULL ||
		    (it.upload = strdup(id)) == NULL ||
		    items_add(sw, &it) != 0)
			item_clear(&it);
	}
}

static void
list_done(void *arg, const struct s3_response *res)
{
	struct s3sweep *sw = arg;
	const char *p, *end;
	char tok[1024];
	int64_t now = wall_ms();

	sw->list = NULL;
	if (!ok2xx(res)) {
		warn_res("s3 sweep: listing failed", sw->phase == PH_UPLOADS ?
		    "?uploads" : sw->phase == PH_BLOBS ? "b/" : "s/", res);
		sw->failed = 1;
		pump(sw);
		return;
	}
	p = (const char *)res->body;
	end = p + res->body_len;
	if (sw->phase == PH_HEADS)
		heads_page(sw, p, end, now);
	else if (sw->phase == PH_BLOBS)
		blobs_page(sw, p, end, now);
	else
		uploads_page(sw, p, end, now);
	free(sw->token);
	free(sw->token2);
	sw->token = sw->token2 = NULL;
	p = (const char *)res->body;
	if (sw->phase != PH_UPLOADS) {
		if (s3_xml_next(&p, end, "NextContinuationToken", tok,
		    sizeof(tok)) == 0)
			sw->token = strdup(tok);
	} else if (s3_xml_next(&p, end, "IsTruncated", tok, sizeof(tok)) ==
	    0 && strcmp(tok, "true") == 0) {
		p = (const char *)res->body;
		if (s3_xml_next(&p, end, "NextKeyMarker", tok, sizeof(tok)) ==
		    0)
			sw->token = strdup(tok);
		p = (const char *)res->body;
		if (s3_xml_next(&p, end, "NextUploadIdMarker", tok,
		    sizeof(tok)) == 0)
			sw->token2 = strdup(tok);
	}
	if (sw->token == NULL) {
		sw->listed_all = 1;
		carry_flush(sw, now);
	}
	pump(sw);
}

static void
list_next(struct s3sweep *sw)
{
	char pfx[S3REC_PREFIX_MAX + 8];
	struct s3_param q[5];
	size_t n = 0;

	if (sw->phase == PH_UPLOADS) {
		snprintf(pfx, sizeof(pfx), "%sb/", sw->prefix);
		q[n++] = (struct s3_param){ "uploads", NULL };
		q[n++] = (struct s3_param){ "prefix", pfx };
		if (sw->token != NULL)
			q[n++] = (struct s3_param){ "key-marker", sw->token };
		if (sw->token2 != NULL)
			q[n++] = (struct s3_param){ "upload-id-marker",
			    sw->token2 };
	} else {
		snprintf(pfx, sizeof(pfx), "%s%s", sw->prefix,
		    sw->phase == PH_HEADS ? "s/" : "b/");
		q[n++] = (struct s3_param){ "list-type", "2" };
		q[n++] = (struct s3_param){ "max-keys", LIST_PAGE };
		q[n++] = (struct s3_param){ "prefix", pfx };
		if (sw->token != NULL)
			q[n++] = (struct s3_param){ "continuation-token",
			    sw->token };
	}
	if ((sw->list = req(sw->cl, S3_LIST, NULL, NULL, NULL, NULL, q, n,
	    list_done, sw)) == NULL)
		sw->failed = 1;
}

/* --- sweeping one session -------------------------------------------------- */

static void task_step(struct task *);

static void
task_end(struct task *t)
{
	struct s3sweep *sw = t->sw;
	size_t i;

	for (i = 0; i < sw->ntasks; i++)
		if (sw->tasks[i] == t) {
			sw->tasks[i] = sw->tasks[--sw->ntasks];
			break;
		}
	item_clear(&t->it);
	free(t->nonces);
	free(t);
	pump(sw);
}

static void
task_req(struct task *t, enum s3_op op, const char *cond, const char *etag,
    const char *body, const struct s3_param *q, size_t nq, s3_done_fn *fn)
{
	if ((t->call = req(t->sw->cl, op, t->key, cond, etag, body, q,
	    nq, fn, t)) == NULL)
		task_end(t);
}

static void
report_expiry(struct task *t)
{
	struct s3sweep *sw = t->sw;

	sw->expired++;
	backend_report(sw->be, BE_EV_EXPIRE, t->it.sid, t->it.sidlen,
	    t->was.level, t->was.gen, (size_t)t->was.size);
}

/* The seal: the head to gone, by its ETag (none: created). */
static void
seal(struct task *t, s3_done_fn *fn)
{
	int had = t->it.has_head;
	char etag[128];

	t->st = T_SEAL;
	t->head.state = S3_GONE;
	t->head.writer = backend_random_id();
	t->head.expires_ms = t->seal_ms = wall_ms();
	s3rec_key_head(t->key, sizeof(t->key), "", t->it.sid, t->it.sidlen);
	s3rec_head_format(&t->head, t->body, sizeof(t->body));
	snprintf(etag, sizeof(etag), "%s", t->etag);
	task_req(t, S3_PUT, had ? "If-Match" : "If-None-Match", had ? etag :
	    "*", t->body, NULL, 0, fn);
}

static void
verify_done(void *arg, const struct s3_response *res)
{
	struct task *t = arg;
	struct s3_head h;
	char err[128];

	t->call = NULL;
	/* Our lost reply won only when the head holds our nonce. */
	if (!ok2xx(res) || s3rec_head_parse((const char *)res->body,
	    res->body_len, &h, err, sizeof(err)) != 0 ||
	    h.writer != t->head.writer) {
		task_end(t);
		return;
	}
	snprintf(t->etag, sizeof(t->etag), "%s", res->etag);
	if (h.state == S3_EXPIRED) {
		report_expiry(t);
		t->st = T_RECORD;
		t->li = 0;
	} else {
		t->st = T_DEL;
		t->del = 0;
		t->li = 0;
	}
	task_step(t);
}

static void
cond_done(void *arg, const struct s3_response *res)
{
	struct task *t = arg;

	t->call = NULL;
	if (ok2xx(res)) {
		snprintf(t->etag, sizeof(t->etag), "%s", res->etag);
		t->it.has_head = 1;
		if (t->st == T_EXPIRE) {
			report_expiry(t);
			t->st = T_RECORD;
		} else {
			t->st = T_DEL;
			t->del = 0;
		}
		t->li = 0;
		task_step(t);
		return;
	}
	if (lost_race(res) && res->earlier_unknown) {
		t->st = T_VERIFY;
		task_req(t, S3_GET, NULL, NULL, NULL, NULL, 0, verify_done);
		return;
	}
	/* Moved by another writer (a Set, another sweeper): left to it. */
	if (!lost_race(res))
		warn_res("s3 sweep: head not written", t->key, res);
	task_end(t);
}

static void
record_done(void *arg, const struct s3_response *res)
{
	struct task *t = arg;
	struct s3_level l;
	char err[128];

	t->call = NULL;
	if (ok2xx(res) && s3rec_level_parse((const char *)res->body,
	    res->body_len, &l, err, sizeof(err)) == 0) {
		if (l.keep_until_ms > wall_ms()) {
			task_end(t);	/* a copy may live: later */
			return;
		}
		t->nonces[t->li] = l.blob_nonce;
	} else if (!(res->err == S3_E_NONE && res->status == 404)) {
		warn_res("s3 sweep: level record not read", t->key, res);
		task_end(t);
		return;
	}
	t->li++;
	task_step(t);
}

static void
del_done(void *arg, const struct s3_response *res)
{
	struct task *t = arg;

	t->call = NULL;
	if (!ok2xx(res) && !(res->err == S3_E_NONE && res->status == 404)) {
		warn_res("s3 sweep: not deleted", t->key, res);
		task_end(t);	/* the seal stays: taken over when stale */
		return;
	}
	if (t->del == 2 || t->st == T_BLOB) {
		task_end(t);
		return;
	}
	t->li++;
	task_step(t);
}

static void
head_done(void *arg, const struct s3_response *res)
{
	struct task *t = arg;
	struct s3sweep *sw = t->sw;
	int64_t now = wall_ms();
	const struct s3_head *h = NULL;
	char err[128];
	int old;

	t->call = NULL;
	if (ok2xx(res)) {
		if (s3rec_head_parse((const char *)res->body, res->body_len,
		    &t->head, err, sizeof(err)) != 0) {
			log_warn("s3 sweep: head not understood", "key=\"%s\" "
			    "error=\"%s\"", t->key, err);
			task_end(t);
			return;
		}
		snprintf(t->etag, sizeof(t->etag), "%s", res->etag);
		h = &t->head;
	} else if (res->err == S3_E_NONE && res->status == 404) {
		t->it.has_head = 0;
		memset(&t->head, 0, sizeof(t->head));
	} else {
		warn_res("s3 sweep: head not read", t->key, res);
		task_end(t);
		return;
	}
	old = t->it.nlevels > 0 && t->it.newest_ms <= now - sw->grace_ms;
	switch (s3rec_sweep_step(h, old, now, sw->stale_ms)) {
	case S3SW_KEEP:
		task_end(t);
		return;
	case S3SW_EXPIRE:
		t->was = t->head;
		t->head.state = S3_EXPIRED;
		t->head.writer = backend_random_id();
		s3rec_head_format(&t->head, t->body, sizeof(t->body));
		t->st = T_EXPIRE;
		{
			char etag[128];

			snprintf(etag, sizeof(etag), "%s", t->etag);
			task_req(t, S3_PUT, "If-Match", etag, t->body, NULL,
			    0, cond_done);
		}
		return;
	case S3SW_COLLECT:
		t->st = T_RECORD;
		t->li = 0;
		task_step(t);
		return;
	}
}

/* The next request of a session's collection. */
static void
task_step(struct task *t)
{
	struct s3sweep *sw = t->sw;

	if (t->st == T_RECORD) {
		if (t->li < t->it.nlevels) {
			s3rec_key_level(t->key, sizeof(t->key), "", t->it.sid,
			    t->it.sidlen, t->it.levels[t->li]);
			task_req(t, S3_GET, NULL, NULL, NULL, NULL, 0,
			    record_done);
			return;
		}
		seal(t, cond_done);
		return;
	}
	/* T_DEL: the sealer alone, and only while its seal is fresh. */
	if (wall_ms() >= t->seal_ms + sw->stale_ms / 2) {
		log_warn("s3 sweep: a seal outlived its time; left to be "
		    "taken over", "session_len=%zu", t->it.sidlen);
		task_end(t);
		return;
	}
	while (t->del < 2 && t->li < t->it.nlevels &&
	    (t->nonces[t->li] == 0 && t->del == 1))
		t->li++;
	if (t->del < 2 && t->li >= t->it.nlevels) {
		t->del++;
		t->li = 0;
		task_step(t);
		return;
	}
	if (t->del == 0)
		s3rec_key_level(t->key, sizeof(t->key), "", t->it.sid,
		    t->it.sidlen, t->it.levels[t->li]);
	else if (t->del == 1)
		s3rec_key_blob(t->key, sizeof(t->key), "", t->it.sid,
		    t->it.sidlen, t->it.levels[t->li], t->nonces[t->li]);
	else
		s3rec_key_head(t->key, sizeof(t->key), "", t->it.sid,
		    t->it.sidlen);
	task_req(t, S3_DELETE, NULL, NULL, NULL, NULL, 0, del_done);
}

/* A payload object's level record: does it name it? */
static void
blob_record_done(void *arg, const struct s3_response *res)
{
	struct task *t = arg;
	struct s3_level l;
	char err[128];

	t->call = NULL;
	if (ok2xx(res)) {
		if (s3rec_level_parse((const char *)res->body, res->body_len,
		    &l, err, sizeof(err)) != 0 || l.blob_nonce ==
		    t->it.nonce) {
			task_end(t);
			return;
		}
	} else if (!(res->err == S3_E_NONE && res->status == 404)) {
		warn_res("s3 sweep: level record not read", t->key, res);
		task_end(t);
		return;
	}
	t->st = T_BLOB;
	snprintf(t->key, sizeof(t->key), "%s", t->it.key);
	task_req(t, S3_DELETE, NULL, NULL, NULL, NULL, 0, del_done);
}

static void
task_start(struct s3sweep *sw, struct item *it)
{
	struct task *t;
	struct s3_param q;

	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (it->nlevels > 0 && (t->nonces = calloc(it->nlevels,
	    sizeof(*t->nonces))) == NULL)) {
		free(t);
		item_clear(it);
		return;
	}
	t->sw = sw;
	t->it = *it;
	memset(it, 0, sizeof(*it));
	sw->tasks[sw->ntasks++] = t;
	switch (sw->phase) {
	case PH_HEADS:
		t->st = T_HEAD;
		s3rec_key_head(t->key, sizeof(t->key), "", t->it.sid,
		    t->it.sidlen);
		if (!t->it.has_head) {
			struct s3_response none;

			memset(&none, 0, sizeof(none));
			none.status = 404;
			head_done(t, &none);
			return;
		}
		task_req(t, S3_GET, NULL, NULL, NULL, NULL, 0, head_done);
		return;
	case PH_BLOBS:
		s3rec_key_level(t->key, sizeof(t->key), "", t->it.sid,
		    t->it.sidlen, t->it.level);
		task_req(t, S3_GET, NULL, NULL, NULL, NULL, 0,
		    blob_record_done);
		return;
	default:
		t->st = T_BLOB;
		snprintf(t->key, sizeof(t->key), "%s", t->it.key);
		q.name = "uploadId";
		q.value = t->it.upload;
		task_req(t, S3_DELETE, NULL, NULL, NULL, &q, 1, del_done);
		return;
	}
}

/* --- the pass -------------------------------------------------------------- */

static void
phase_next(struct s3sweep *sw)
{
	items_free(sw);
	free(sw->token);
	free(sw->token2);
	sw->token = sw->token2 = NULL;
	sw->listed_all = 0;
	if (sw->failed) {
		sw->phase = PH_IDLE;
		return;
	}
	if (sw->phase == PH_HEADS && sw->passes % ORPHAN_EVERY == 1)
		sw->phase = PH_BLOBS;
	else if (sw->phase == PH_BLOBS)
		sw->phase = PH_UPLOADS;
	else {
		if (sw->phase == PH_UPLOADS)
			log_info("s3 sweep: orphans looked for", "holder=%016"
			    PRIx64 " shards=%u", sw->me, sw->nheld);
		sw->phase = PH_IDLE;
	}
}

/* Start what can run: sessions within the credits, then the next page or
 * phase. Re-entered from callbacks. */
static void
pump(struct s3sweep *sw)
{
	for (;;) {
		if (sw->phase == PH_IDLE || sw->phase == PH_LEASES)
			return;
		while (sw->ntasks < CONC && sw->at < sw->nitems &&
		    sw->credits > 0 && !sw->failed) {
			sw->credits--;
			task_start(sw, &sw->items[sw->at++]);
		}
		if (sw->ntasks > 0 || sw->list != NULL ||
		    (sw->at < sw->nitems && !sw->failed))
			return;
		items_free(sw);
		if (sw->nheld == 0 || sw->failed || sw->listed_all) {
			phase_next(sw);
			continue;
		}
		list_next(sw);
		if (sw->list != NULL)
			return;
	}
}

size_t
s3sweep_run(struct s3sweep *sw, size_t budget, int *more)
{
	size_t n;

	*more = 0;
	sw->credits = budget;
	leases_renew(sw, wall_ms());
	if (sw->phase == PH_IDLE) {
		sw->passes++;
		sw->failed = 0;
		sw->listed_all = 0;
		item_clear(&sw->carry);
		sw->carrying = 0;
		leases_take(sw);
	}
	pump(sw);
	*more = sw->credits == 0 && sw->at < sw->nitems;
	n = sw->expired;
	sw->expired = 0;
	return n;
}

struct s3sweep *
s3sweep_new(struct backend *be, struct event_base *base, struct s3_client *cl,
    const struct s3_client_config *cc, const struct config *conf)
{
	struct s3sweep *sw;
	char err[256];

	if ((sw = calloc(1, sizeof(*sw))) == NULL)
		return NULL;
	sw->be = be;
	sw->base = base;
	sw->cl = cl;
	snprintf(sw->prefix, sizeof(sw->prefix), "%s", s3_client_prefix(cl));
	sw->me = backend_random_id();
	sw->lease_ms = (int64_t)conf->s3_lease_time;
	sw->grace_ms = (int64_t)conf->s3_orphan_grace;
	sw->stale_ms = 30000 + 4 * (int64_t)conf->s3_timeout;
	if ((sw->rbase = event_base_new()) == NULL ||
	    (sw->rcl = s3_client_new(sw->rbase, cc, err, sizeof(err))) ==
	    NULL) {
		if (sw->rbase != NULL)
			event_base_free(sw->rbase);
		free(sw);
		return NULL;
	}
	return sw;
}

static void
released(void *arg, const struct s3_response *res)
{
	struct s3sweep *sw = arg;

	(void)res;
	if (--sw->rpending == 0)
		event_base_loopbreak(sw->rbase);
}

void
s3sweep_free(struct s3sweep *sw)
{
	struct timeval tv = { RELEASE_MS / 1000, (RELEASE_MS % 1000) * 1000 };
	struct s3_lease l;
	char key[S3REC_KEY_MAX];
	size_t i;

	if (sw == NULL)
		return;
	if (sw->list != NULL)
		s3_cancel(sw->list);
	for (i = 0; i < sw->ntasks; i++) {
		if (sw->tasks[i]->call != NULL)
			s3_cancel(sw->tasks[i]->call);
		item_clear(&sw->tasks[i]->it);
		free(sw->tasks[i]->nonces);
		free(sw->tasks[i]);
	}
	for (i = 0; i < SHARDS; i++)
		if (sw->sh[i].call != NULL) {
			s3_cancel(sw->sh[i].call);
			sw->sh[i].call = NULL;
			sw->sh[i].held = 0;
		}
	/* Given up so that another central sweeps at once. */
	s3_client_set_bare_if_match(sw->rcl, s3_client_bare_if_match(sw->cl));
	for (i = 0; i < SHARDS; i++) {
		if (!sw->sh[i].held || sw->sh[i].until_ms <= wall_ms())
			continue;
		l.holder = sw->me;
		l.until_ms = 0;
		s3rec_lease_format(&l, sw->sh[i].body, sizeof(sw->sh[i].body));
		s3rec_key_lease(key, sizeof(key), "", (unsigned)i);
		if (req(sw->rcl, S3_PUT, key, "If-Match", sw->sh[i].etag,
		    sw->sh[i].body, NULL, 0, released, sw) != NULL)
			sw->rpending++;
	}
	if (sw->rpending > 0) {
		event_base_loopexit(sw->rbase, &tv);
		event_base_dispatch(sw->rbase);
	}
	s3_client_free(sw->rcl);
	event_base_free(sw->rbase);
	items_free(sw);
	item_clear(&sw->carry);
	free(sw->token);
	free(sw->token2);
	free(sw);
}
