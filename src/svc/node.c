/*
 * node.c: node mode (spec §5), a read-through cache in front of a central
 * cache, on one persistent HTTP/2 link (h2client.h).
 *
 * Get. The decision table of §5 (node_decide_get()): a held copy at the
 * asked level, or any held copy when no level is asked, is served from the
 * backend by lease, like central serves it; an older level asked than held
 * is refused locally; everything else is fetched from central.
 *
 * Coalescing. Fetches in flight live in a table keyed by (session, level)
 * or (session, none); a Get that misses joins the fetch of its key or
 * starts one. Each waiter has a timer for its own deadline, the shorter of
 * upstream_timeout and its grpc-timeout, and a cancel hook for a stream
 * that goes away; either takes only that waiter off the fetch, which goes
 * on for the others (and, with nobody left, still stores its result for
 * the next Get). The fetch's own deadline is upstream_timeout from its
 * start. Its one answer goes to every waiter: an error as central (or the
 * link) gave it, nothing stored; data is stored unless the node holds a
 * newer level by then (a late result never overwrites one), and every
 * waiter is sent the same bytes by lease.
 *
 * Cut-through. Waiters do not wait for the whole answer: h2client receives
 * it into the fetch's buffer (h2call_reply_into()) and tells as it fills
 * (fetch_arrived()). Once the answer's head is in (sdwire_parse_head():
 * every field before the payload, and the payload last, as a central of
 * this version writes it), every waiter's reply is begun (the node's own
 * head: central's level and generation, the copy's TTL) and each batch of
 * payload bytes is sent on to every waiter by lease on that buffer, a
 * waiter that joins later getting what came so far; at the end each
 * reply's message is ended OK and the buffer stored (waiter_feed(),
 * fetch_forward(), fetch_done()). A node behind this one is such a waiter:
 * a level moves down a chain of nodes with each hop one batch behind the
 * last, not one whole level. An answer that fails half way fails every
 * reply with its status after the bytes it had (call_message_begin(): a
 * message cut short, which no client takes for one), and nothing is
 * stored. An answer whose payload is not last (an older central) is sent
 * on whole once it is in, as before.
 *
 * Where a fetched payload is copied: h2client reads the reply message into
 * one buffer, the fetch's (the reply's one copy); sdwire_parse() finds the
 * payload in it without copying; replies send from it by reference while
 * it arrives; the memory backend then adopts it, payload where it lies,
 * and hands back a lease on it with the write (backend.h), which keeps it
 * for the replies still sending. A payload not stored (larger than the
 * whole max_memory, or a newer level held) is freed with the last reply.
 *
 * Memory in flight. A fetch's buffer counts against max_inflight_bytes
 * (node_set_inflight()) from the moment the reply's message prefix arrives
 * (fetch_alloc(): allocated whole then) until the backend adopts it or the
 * last reply referencing it is on the socket: one buffer per level in
 * flight, however many waiters. So do other replies held by h2client
 * (on_reply_mem) and the payloads of forwarded writes until h2client
 * releases them. A fetch that
 * would start while max_inflight_bytes is reached waits (its waiters'
 * deadlines still run) until there is room. The link's receive windows,
 * stream and connection alike, are max_inflight_bytes (at most 256 MiB,
 * opts_from()): they bound bytes on their way, not bytes held, since
 * h2client copies each DATA frame into its reply buffer at once; large,
 * so that one fetch is not held to a window per round trip below the
 * link's rate.
 *
 * Writes. Set, Update and Delete are forwarded as they came (the decoded
 * request is the body, its payload sent by reference) with the caller's
 * deadline; central's status and message go back unchanged; on OK the
 * node's copy of that session is dropped and fetches of that session then
 * in flight neither store their result nor take new waiters. A caller that
 * leaves does not cancel a forwarded write: it completes, and its OK still
 * drops the copy.
 *
 * Loops. Every request to upstream carries alpcrun-via (request metadata,
 * h2client.h): the ids of the nodes it passed through, comma-separated,
 * this node's (node_id) last: a fetch for a Get and a forwarded write
 * carry their caller's path and this node's id; the feed, the identity
 * probe and prefetches carry this node's id alone (h2client_set_meta()).
 * A coalesced fetch carries the path of the caller that started it. A
 * path longer than GRPC_REQ_META_VALUE_MAX loses its oldest ids, replaced
 * by "..." (a loop still shows within the ids kept). A call whose path
 * already holds this node's id is refused with FAILED_PRECONDITION
 * "request loop: node <id> is already on the path <via>", and logged,
 * once per second at most (a loop repeats each miss).
 *
 * Prefetch (prefetch.c, the change feed) uses the same table: node_prefetch()
 * joins or starts the fetch of (session, level) with no waiter but a notify
 * hook, which also keeps a queued fetch from being dropped as an orphan;
 * node_drop() drops a copy up to a level when central deleted or expired it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "auth.h"
#include "backend.h"
#include "bigbuf.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "grpc.h"
#include "grpc_frame.h"
#include "h2client.h"
#include "identity.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "queue_compat.h"
#include "reads.h"
#include "rules.h"
#include "sdwire.h"
#include "tls.h"
#include "siphash.h"
#include "watch.h"

#define PATH_GET	"/alpcrun.v1.Cache/GetSharedData"
#define PATH_SET	"/alpcrun.v1.Cache/SetSharedData"
#define PATH_UPDATE	"/alpcrun.v1.Cache/UpdateSharedData"
#define PATH_DELETE	"/alpcrun.v1.Cache/DeleteSharedData"
#define PATH_CHECK	"/grpc.health.v1.Health/Check"

#define NBUCKETS	1024		/* fetch table, a power of two */
/* The path of a request through nodes (Loops). */
#define META_VIA	"alpcrun-via"
#define QUEUE_POLL_MS	5		/* fetches waiting for inflight room */
#define KEY_MAX		4096		/* upstream api key */
/* A fetch sent again after a failover answered with other content. */
#define RESUME_OTHER	"the upstream was lost during the fetch, and the " \
	"next one holds another content for this level"
/* How far into an answer its payload's tag may be for cut-through. */
#define CUT_HEAD_SCAN	4096

struct fetch;

struct waiter {
	TAILQ_ENTRY(waiter)	 entry;
	struct fetch		*f;
	struct call		*call;
	struct event		*timer;		/* its own deadline */
	size_t			 sent;		/* its reply has the buffer up to */
	unsigned		 begun:1;	/* its reply message is begun */
	unsigned		 busy:1;	/* being sent to (waiter_feed()) */
	unsigned		 gone:1;	/* its stream went meanwhile */
};
TAILQ_HEAD(waiter_list, waiter);

struct fetch {
	TAILQ_ENTRY(fetch)	 all;		/* n.fetches */
	TAILQ_ENTRY(fetch)	 entry;		/* a bucket, while joinable */
	TAILQ_ENTRY(fetch)	 qentry;	/* n.queue, while waiting */
	struct waiter_list	 waiters;
	size_t			 nwaiters;
	struct h2call		*hc;		/* sent, no answer yet */
	size_t			 bucket;
	unsigned		 joinable:1;
	unsigned		 queued:1;
	unsigned		 no_store:1;	/* a write made it stale */
	unsigned		 finishing:1;	/* its waiters are being answered */
	/* A prefetch (prefetch.c) waits on it without a call: told the
	 * outcome, and keeps a fetch with no waiter from being dropped. */
	node_fetched_fn		*notify;
	void			*notify_arg;
	char			*via;		/* its alpcrun-via; NULL: ours */
	int			 has_level;
	uint32_t		 level;
	/* The answer (Cut-through): its buffer once its prefix came, the
	 * bytes of it in; once its head is known (cut) or it is whole, what
	 * it says and where the payload lies. */
	struct shared		*s;
	size_t			 have;
	unsigned		 cut:1;		/* waiters get bytes as they come */
	unsigned		 nocut:1;	/* decided: they get it whole */
	unsigned		 known:1;	/* got_level .. plen are set */
	/* Sent again after its upstream was lost (Failover): the answer must
	 * name the content the replies already carry. */
	unsigned		 resuming:1;
	unsigned		 replied:1;	/* a waiter's reply was begun */
	unsigned		 resends;
	uint64_t		 deadline;	/* its own, from the first send */
	uint64_t		 started;	/* first sent (clock_now_ns()) */
	size_t			 total;		/* of the answer, once its prefix came */
	uint32_t		 got_level;
	uint64_t		 gen, inc;	/* its identity */
	uint64_t		 expires;	/* of the copy */
	size_t			 poff, plen;
	struct waiter		*cursor;	/* fetch_forward()'s next */
	size_t			 keylen;
	uint8_t			 key[];
};
TAILQ_HEAD(fetch_list, fetch);

/* A fetched payload that the waiters' replies share. */
struct shared {
	unsigned		 refs;
	const uint8_t		*data;
	size_t			 len;
	struct lease		 under;		/* stored: the backend's lease */
	uint8_t			*own;		/* pass-through: reply buffer */
	int64_t			 acct;		/* counted in flight */
};

/* Storing a fetched payload: the fetch's answer, f->s. */
struct store_op {
	struct be_write		 w;
	struct fetch		*f;
};

/* A forwarded write: freed when both done (or cancel) and release ran. */
struct fwd {
	TAILQ_ENTRY(fwd)	 entry;		/* n.fwds, until done */
	struct call		*call;
	struct h2call		*hc;
	Alpcrun__V1__SharedData	*req;		/* the body, until release */
	int64_t			 acct;
	unsigned		 refs;
	size_t			 keylen;
	uint8_t			 key[SESSION_ID_MAX];
};
TAILQ_HEAD(fwd_list, fwd);

static struct {
	struct event_base	*base;
	struct backend		*be;
	struct h2client		*up;
	char			*target;
	char			*id;		/* node_id */
	uint64_t		 loop_logged;	/* when a loop was last logged */
	uint64_t		 loops_quiet;	/* loops refused since */
	char			*key;		/* presented to central */
	uint64_t		 upstream_timeout_ms;
	uint64_t		 default_ttl_ms, max_ttl_ms;
	uint64_t		 max_memory;
	uint8_t			 seed[SIPHASH_KEY_LEN];	/* bucket_of() */
	struct fetch_list	 buckets[NBUCKETS];
	struct fetch_list	 fetches;
	struct fetch_list	 queue;
	struct fwd_list		 fwds;
	struct event		*queue_timer;
	/* Central's store as last learned (0: not yet, or a central that
	 * names none): only copies from it are served. */
	uint64_t		 incarnation;
	struct h2call		*probe;		/* asking it after a connect */
	int64_t			 inflight;
	struct node_inflight	 budget;	/* max_inflight_bytes, if set */
	int			 started;
	int			 draining;
} n;

/* --- pure parts ------------------------------------------------------------ */

enum node_get_action
node_decide_get(int held, uint32_t h, int has_level, uint32_t l)
{
	if (!held)
		return NODE_FETCH;		/* L or none: fetch */
	if (!has_level || h == l)
		return NODE_SERVE;
	return h < l ? NODE_FETCH : NODE_MISMATCH;
}

uint64_t
node_copy_ttl(const struct sd_view *r, uint64_t default_ttl_ms,
    uint64_t max_ttl_ms)
{
	uint64_t t, max = max_ttl_ms * NS_PER_MS;

	if (r->has_ttl && r->ttl_seconds >= 0 && r->ttl_nanos >= 0 &&
	    r->ttl_nanos < 1000000000 &&
	    (r->ttl_seconds > 0 || r->ttl_nanos > 0)) {
		if ((uint64_t)r->ttl_seconds >= max / NS_PER_SEC + 1)
			t = max;
		else
			t = (uint64_t)r->ttl_seconds * NS_PER_SEC +
			    (uint64_t)r->ttl_nanos;
	} else
		t = default_ttl_ms * NS_PER_MS;
	if (t > max)
		t = max;
	return t > 0 ? t : 1;
}

/* --- accounting --------------------------------------------------------------- */

static void
inflight(int64_t delta)
{
	if (delta == 0)
		return;
	n.inflight += delta;
	if (n.budget.add != NULL)
		n.budget.add(n.budget.arg, delta);
}

/* h2client's on_reply_mem: a fetch's reply counts from its prefix on. */
static void
reply_mem(void *arg, int64_t delta)
{
	inflight(delta);
}

static int
inflight_full(void)
{
	return n.budget.full != NULL && n.budget.full(n.budget.arg);
}

/* --- the link ---------------------------------------------------------------- */

/* --- central's identity (spec §4) ------------------------------------------ */

/*
 * Central named its store in a response (identity.h). Another one than the
 * copies came from: from now on none of them is served (node_get() and
 * node_held() see them as absent, a fetch replaces them whatever their
 * level, the reconciliation drops them) and nodes behind this one are told
 * the new name with every response, and the node's own watch streams end
 * (UNAVAILABLE), so that nodes watching this one resubscribe and reconcile
 * against a snapshot of the new store (spec §5 "Tiers").
 */
void
node_learn(uint64_t inc, const char *how)
{
	char hex[IDENTITY_HEX], was[IDENTITY_HEX];
	uint64_t inc_was;

	if (inc == 0 || inc == n.incarnation)
		return;
	identity_format(inc, hex);
	if (n.incarnation != 0) {
		identity_format(n.incarnation, was);
		log_warn("the central cache's store changed: copies taken "
		    "from the old one are not served any more",
		    "upstream=%s incarnation=%s was=%s learned_from=%s",
		    n.target, hex, was, how);
		metrics_count(MC_INCARNATION_CHANGES, 1);
	} else
		log_info("central cache identified", "upstream=%s "
		    "incarnation=%s learned_from=%s", n.target, hex, how);
	inc_was = n.incarnation;
	n.incarnation = inc;
	grpc_server_set_meta(META_INCARNATION, hex);
	/* The first name needs no restart: the next notices carry it. */
	if (inc_was != 0)
		watch_end_all("the central cache's store changed");
}

/* Learn the incarnation an alpcrun-incarnation header (hex: its value,
 * or NULL) names; it, or 0 for none. */
static uint64_t
learn_hex(const char *hex, const char *how)
{
	uint64_t inc;

	if (identity_parse(hex, &inc) != 0)
		return 0;		/* a central that names none */
	node_learn(inc, how);
	return inc;
}

/* The same, of an answer. */
static uint64_t
learn_from(const struct h2reply *r, const char *how)
{
	return learn_hex(h2reply_meta(r, META_INCARNATION), how);
}

static void
probe_done(void *arg, struct h2reply *r)
{
	char hex[IDENTITY_HEX];
	uint64_t before = n.incarnation;

	n.probe = NULL;
	if (learn_from(r, "connect") == before && before != 0) {
		identity_format(before, hex);
		log_info("central cache's store unchanged", "upstream=%s "
		    "incarnation=%s", n.target, hex);
	}
}

/* After every (re)connect: a central restarted meanwhile has another
 * store, whatever this node fetches next. Only while copies are held:
 * without any there is nothing to protect, and the first fetch names the
 * store anyway. */
static void
probe_incarnation(void)
{
	Grpc__Health__V1__HealthCheckRequest req =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	struct be_stats st;

	if (n.probe != NULL)
		return;
	n.be->ops->stats(n.be, &st);
	if (st.entries == 0)
		return;
	n.probe = h2client_unary(n.up, PATH_CHECK, &req.base,
	    clock_now_ns() + n.upstream_timeout_ms * NS_PER_MS, probe_done,
	    NULL);
}

static void
on_link(void *arg, int up, const char *reason)
{
	char why[256];
	int draining = n.draining;

	metrics_upstream_up(up);
	if (up) {
		log_info("upstream up", "upstream=%s", n.target);
		if (!draining)
			metrics_set_ready(1, NULL);
		probe_incarnation();
		return;
	}
	log_warn("upstream down", "upstream=%s reason=\"%s\"", n.target,
	    reason);
	snprintf(why, sizeof(why), "central cache unreachable: %s", reason);
	if (!draining)
		metrics_set_ready(0, why);
}

/* --- replies ---------------------------------------------------------------- */

static void
shared_release(void *arg)
{
	struct shared *s = arg;

	if (--s->refs > 0)
		return;
	lease_release(&s->under);
	bigbuf_free(s->own);
	inflight(-s->acct);
	free(s);
}

/* A lease on len bytes at p of s, for a reply. */
static void
shared_lease(struct shared *s, const uint8_t *p, size_t len,
    struct lease *l)
{
	s->refs++;
	l->data = p;
	l->len = len;
	l->release = shared_release;
	l->ctx = s;
}

/* --- the fetch table -------------------------------------------------------- */

static void	 fetch_send(struct fetch *);

static size_t
bucket_of(const uint8_t *key, size_t keylen)
{
	/* Keyed: clients choose session ids. */
	return (size_t)siphash24(n.seed, key, keylen) & (NBUCKETS - 1);
}

static struct fetch *
fetch_find(const uint8_t *key, size_t keylen, int has_level, uint32_t level)
{
	struct fetch *f;

	TAILQ_FOREACH(f, &n.buckets[bucket_of(key, keylen)], entry)
		if (f->keylen == keylen && f->has_level == has_level &&
		    (!has_level || f->level == level) &&
		    memcmp(f->key, key, keylen) == 0)
			return f;
	return NULL;
}

static struct fetch *
fetch_new(const uint8_t *key, size_t keylen, int has_level, uint32_t level)
{
	struct fetch *f;

	if ((f = calloc(1, sizeof(*f) + keylen)) == NULL)
		return NULL;
	TAILQ_INIT(&f->waiters);
	memcpy(f->key, key, keylen);
	f->keylen = keylen;
	f->has_level = has_level;
	f->level = has_level ? level : 0;
	f->bucket = bucket_of(key, keylen);
	f->joinable = 1;
	TAILQ_INSERT_TAIL(&n.buckets[f->bucket], f, entry);
	TAILQ_INSERT_TAIL(&n.fetches, f, all);
	return f;
}

/* No new waiter joins it from now on. */
static void
fetch_unjoin(struct fetch *f)
{
	if (f->joinable) {
		TAILQ_REMOVE(&n.buckets[f->bucket], f, entry);
		f->joinable = 0;
	}
}

static void
fetch_free(struct fetch *f)
{
	fetch_unjoin(f);
	if (f->queued) {
		TAILQ_REMOVE(&n.queue, f, qentry);
		f->queued = 0;
	}
	/* The call first: the client writes into f->s until then. */
	h2call_cancel(f->hc);
	if (f->s != NULL)
		shared_release(f->s);
	TAILQ_REMOVE(&n.fetches, f, all);
	free(f->via);
	free(f);
}

/* Take w off its fetch; the caller then finishes w's call. */
static struct call *
waiter_remove(struct waiter *w)
{
	struct call *call = w->call;
	struct fetch *f = w->f;

	if (f->cursor == w)
		f->cursor = TAILQ_NEXT(w, entry);
	TAILQ_REMOVE(&f->waiters, w, entry);
	f->nwaiters--;
	event_free(w->timer);
	call_set_cancel(call, NULL, NULL);
	free(w);
	return call;
}

/* Nobody waits on a fetch not sent yet: it is dropped. One that was sent
 * goes on, to store its result for the next Get. */
static void
fetch_orphan_check(struct fetch *f)
{
	if (f->nwaiters == 0 && f->queued && !f->finishing &&
	    f->notify == NULL)
		fetch_free(f);
}

/* Tell a prefetch waiting on f how it ended. */
static void
fetch_notify(struct fetch *f, int status)
{
	node_fetched_fn *fn = f->notify;

	if (fn != NULL) {
		f->notify = NULL;
		fn(f->notify_arg, status);
	}
}

/* Every waiter fails with status (after what its reply had: a message cut
 * short, Cut-through); f is freed. */
static void
fetch_fail(struct fetch *f, int status, const char *msg)
{
	struct waiter *w;

	fetch_notify(f, status);

	/* Answering a waiter may close a connection, and with it other
	 * waiters of f (waiter_cancel()): f stays until the loop ends. */
	f->finishing = 1;
	while ((w = TAILQ_FIRST(&f->waiters)) != NULL)
		call_error(waiter_remove(w), status, "%s", msg);
	fetch_free(f);
}

static void
waiter_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;
	struct fetch *f = w->f;
	struct call *call = waiter_remove(w);

	/* f first: answering may close a connection and cancel others. */
	fetch_orphan_check(f);
	call_error(call, GRPC_DEADLINE_EXCEEDED,
	    "deadline exceeded waiting for the central cache");
}

/* The waiter's stream went away: only it leaves. */
static void
waiter_cancel(struct call *call, void *arg)
{
	struct waiter *w = arg;
	struct fetch *f = w->f;

	if (w->busy) {			/* waiter_feed() finishes it */
		w->gone = 1;
		return;
	}
	(void)waiter_remove(w);		/* returns call */
	fetch_orphan_check(f);
	call_error(call, GRPC_CANCELLED, NULL);
}

/*
 * Send w's reply on up to what arrived (Cut-through): the head, then the
 * payload's bytes by lease on the fetch's buffer. 0 when w still waits,
 * -1 when it left (its call finished, w freed): a send may flush, close
 * its connection and cancel it, which waiter_cancel() then only notes.
 */
static int
waiter_feed(struct fetch *f, struct waiter *w, uint64_t now)
{
	uint8_t head[CACHE_REPLY_HEAD_MAX];
	char hex[IDENTITY_HEX];
	struct lease l;
	struct call *call;
	size_t hl = 0, avail = f->have > f->poff ? f->have - f->poff : 0;
	int rv = 0, gone;

	if (avail > f->plen)		/* fields after it (not ours) */
		avail = f->plen;

	w->busy = 1;
	if (!w->begun) {
		/* As central's reply would say (cache_reply()). */
		if (f->gen != 0) {
			identity_format(f->gen, hex);
			call_set_meta(w->call, META_GENERATION, hex);
		}
		hl = cache_reply_head(head, f->key, f->keylen, f->got_level,
		    f->plen, f->expires, now);
		w->begun = 1;
		f->replied = 1;
		if ((rv = call_message_begin(w->call, hl + f->plen)) == 0 &&
		    !w->gone)
			rv = call_message_add(w->call, head, hl, NULL);
	}
	if (rv == 0 && !w->gone && avail > w->sent) {
		shared_lease(f->s, f->s->data + w->sent, avail - w->sent, &l);
		w->sent = avail;
		rv = call_message_add(w->call, l.data, l.len, &l);
	}
	if (rv == 0 && !w->gone)
		call_message_flush(w->call);
	w->busy = 0;
	if ((gone = w->gone) == 0 && rv == 0)
		return 0;
	call = waiter_remove(w);
	fetch_orphan_check(f);
	if (gone)
		call_error(call, GRPC_CANCELLED, NULL);
	else if (rv == -2)
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "reply of %zu bytes "
		    "exceeds max_message_size", hl + f->plen);
	else
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	return -1;
}

/* Every waiter's reply on up to what arrived. */
static void
fetch_forward(struct fetch *f)
{
	struct waiter *w;
	uint64_t now = clock_now_ns();

	/* A feed may take other waiters off too (waiter_remove() moves
	 * the cursor past them). */
	for (w = TAILQ_FIRST(&f->waiters); w != NULL; w = f->cursor) {
		f->cursor = TAILQ_NEXT(w, entry);
		(void)waiter_feed(f, w, now);
	}
	f->cursor = NULL;
}

/* What the answer says (v: its head, or the whole of it), for every reply
 * and the copy. 0, or -1 when it is not the answer asked for, -2 when a
 * resumed fetch's answer names other content than the first. */
static int
fetch_head(struct fetch *f, const struct sd_view *v, uint64_t inc,
    const char *gen)
{
	uint64_t g;

	if (!v->has_level || (f->has_level && v->level != f->level))
		return -1;
	if (f->resuming) {
		/* The same content (identity.h), so the same bytes: the
		 * replies go on where they were. */
		if (identity_parse(gen, &g) != 0 || g != f->gen ||
		    inc != f->inc || v->level != f->got_level ||
		    v->payload_len != f->plen)
			return -2;
		f->resuming = 0;
		f->poff = v->payload_off;
		f->s->data = f->s->own + f->poff;
		f->s->len = f->plen;
		return 0;
	}
	f->known = 1;
	f->got_level = v->level;
	f->inc = inc;
	if (identity_parse(gen, &f->gen) != 0)
		f->gen = 0;
	f->expires = clock_now_ns() + node_copy_ttl(v, n.default_ttl_ms,
	    n.max_ttl_ms);
	f->poff = v->payload_off;
	f->plen = v->payload_len;
	f->s->data = f->s->own + f->poff;
	f->s->len = f->plen;
	return 0;
}

/* The answer's buffer, once its prefix came (h2call_reply_into(), from
 * inside nghttp2): what the replies and the store share, counted in
 * flight from now on. */
static uint8_t *
fetch_alloc(void *arg, size_t len)
{
	struct fetch *f = arg;
	struct shared *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	if ((s->own = bigbuf_alloc(len)) == NULL) {
		free(s);
		return NULL;
	}
	s->refs = 1;			/* the fetch's */
	s->acct = (int64_t)len;
	inflight(s->acct);
	f->s = s;
	f->total = len;
	return s->own;
}

/* More of the answer is in (Cut-through). */
static void
fetch_arrived(void *arg, size_t have, size_t len)
{
	struct fetch *f = arg;
	struct sd_view v;
	uint64_t inc;

	f->have = have;
	if (!f->cut || f->resuming) {
		if (f->nocut)
			return;
		switch (sdwire_parse_head(f->s->own, have, len, &v)) {
		case 0:
			/* Ours is a few hundred bytes: none in sight is no
			 * reply of ours. */
			if (have >= CUT_HEAD_SCAN)
				f->nocut = 1;
			return;
		case -1:
			f->nocut = 1;	/* the whole answer decides */
			return;
		}
		inc = learn_hex(h2call_meta(f->hc, META_INCARNATION),
		    "fetch");
		switch (fetch_head(f, &v, inc, h2call_meta(f->hc,
		    META_GENERATION))) {
		case 0:
			break;
		case -2:
			fetch_fail(f, GRPC_UNAVAILABLE, RESUME_OTHER);
			return;
		default:
			f->nocut = 1;	/* fetch_done() fails it */
			return;
		}
		f->cut = 1;
	}
	fetch_forward(f);
}

static void
store_decide(void *arg, const struct be_record *cur, uint64_t now,
    struct be_change *chg)
{
	struct store_op *op = arg;
	struct fetch *f = op->f;

	/* A late result never overwrites a newer level (of the same
	 * store: a copy from a store central forgot is replaced). */
	if (cur->kind == BE_ENTRY && cur->level > f->got_level &&
	    cur->inc == f->inc) {
		chg->action = BE_KEEP;
		return;
	}
	chg->action = BE_PUT;
	chg->level = f->got_level;
	chg->gen = f->gen;
	chg->inc = f->inc;
	chg->expires = f->expires;
	chg->data = f->s->data;
	chg->len = f->plen;
	chg->adopt = f->s->own;
}

static void
store_done(void *arg, int err, const char *errmsg)
{
	struct store_op *op = arg;
	struct fetch *f = op->f;
	struct shared *s = f->s;

	if (err == BE_OK && op->w.chg.action == BE_PUT &&
	    op->w.chg.adopt == NULL) {
		/* The backend owns the buffer now and leased it back with the
		 * write (backend.h: it does when it adopts): replies still
		 * sending from it hold that lease through s. */
		s->own = NULL;
		s->under = op->w.lease;
		inflight(-s->acct);
		s->acct = 0;
		if (s->under.data == NULL)
			log_error("a backend adopted a fetched copy without "
			    "leasing it back", "bytes=%zu", f->plen);
	} else {
		/* Stored as a copy (the buffer is still ours), kept for a
		 * newer level, or not stored at all. */
		lease_release(&op->w.lease);
		if (err != BE_OK)
			log_debug("fetched copy not stored", "error=\"%s\"",
			    errmsg);
	}
	fetch_notify(f, GRPC_OK);
	fetch_free(f);
	free(op);
}

/* Would a copy of len bytes fit in max_memory at all? */
static int
fits(size_t keylen, size_t len)
{
	return n.max_memory == 0 ||
	    (uint64_t)keylen + BE_ENTRY_OVERHEAD + len <= n.max_memory;
}

/*
 * The upstream was lost while the fetch was under way (Failover): send it
 * again, to the next upstream the link moved to, within its own deadline,
 * once per other upstream. Replies already begun go on only with the same
 * content: its generation and central's incarnation known and the same,
 * checked at the new answer's head (fetch_head()). 0 when sent again, -1
 * when the fetch must fail.
 */
static int
fetch_resend(struct fetch *f, const char *why)
{
	if (f->resends + 1 >= h2client_ntargets(n.up) ||
	    clock_now_ns() >= f->deadline ||
	    (f->replied && (f->gen == 0 || f->inc == 0)))
		return -1;
	f->resends++;
	log_info("upstream lost during a fetch: sent again", "session=%.*s "
	    "level=%u bytes_before=%zu reason=\"%s\"", (int)f->keylen, f->key,
	    f->has_level ? f->level : f->got_level, f->cut && f->have > f->poff ?
	    f->have - f->poff : 0, why);
	/* The replies keep the old buffer as long as they send from it. */
	if (f->s != NULL)
		shared_release(f->s);
	f->s = NULL;
	f->have = f->total = 0;
	if (f->replied)
		f->resuming = 1;
	else			/* nobody has a byte: a fresh start */
		f->cut = f->known = f->nocut = 0;
	fetch_send(f);
	return 0;
}

static void
fetch_done(void *arg, struct h2reply *r)
{
	struct fetch *f = arg;
	struct sd_view rep;
	struct store_op *op;
	struct waiter *w;
	uint64_t inc;

	f->hc = NULL;
	inc = learn_from(r, "fetch");
	if (r->status == GRPC_UNAVAILABLE && fetch_resend(f, r->message) == 0)
		return;
	fetch_unjoin(f);		/* its answer is decided */
	if (r->status != GRPC_OK) {
		/* Passed through as it came; nothing stored (NOT_FOUND is
		 * not cached). Waiters cut through get it after the bytes
		 * they had: a message cut short. */
		fetch_fail(f, r->status, r->message);
		return;
	}
	/* r->data is f->s's buffer (h2call_reply_into()), NULL for an
	 * empty message. */
	if (f->s == NULL || sdwire_parse(r->data, r->len, &rep) != 0 ||
	    !rep.has_level) {
		fetch_fail(f, GRPC_INTERNAL, "the central cache sent a reply "
		    "that is not shared data");
		return;
	}
	if (f->has_level && rep.level != f->level) {
		char msg[128];

		snprintf(msg, sizeof(msg), "the central cache answered "
		    "update level %u for update level %u", rep.level,
		    f->level);
		fetch_fail(f, GRPC_INTERNAL, msg);
		return;
	}
	if ((!f->cut || f->resuming) && fetch_head(f, &rep, inc,
	    h2reply_meta(r, META_GENERATION)) != 0) {
		fetch_fail(f, GRPC_UNAVAILABLE, RESUME_OTHER);
		return;
	}
	/* Every waiter gets the rest and its end, from the buffer that is
	 * then stored: the same bytes. */
	f->have = r->len;
	f->finishing = 1;		/* as in fetch_fail() */
	fetch_forward(f);
	while ((w = TAILQ_FIRST(&f->waiters)) != NULL)
		call_message_end(waiter_remove(w));
	if (f->no_store || !fits(f->keylen, f->plen) ||
	    (op = calloc(1, sizeof(*op))) == NULL) {
		fetch_notify(f, GRPC_OK);
		fetch_free(f);
		return;
	}
	/* No copy: the backend adopts the answer's buffer, the payload
	 * where it lies in it. */
	op->f = f;
	op->w.key = f->key;
	op->w.keylen = f->keylen;
	op->w.decide = store_decide;
	op->w.done = store_done;
	op->w.arg = op;
	op->w.want_lease = 1;		/* replies may still send from it */
	if (n.be->ops->write(n.be, &op->w) != 0) {
		free(op);
		fetch_notify(f, GRPC_OK);
		fetch_free(f);
	}
}

static void
fetch_send(struct fetch *f)
{
	Alpcrun__V1__SharedData req = ALPCRUN__V1__SHARED_DATA__INIT;
	struct h2reqmeta via = { META_VIA, f->via };
	struct h2body body = { .msg = &req.base, .meta = &via,
	    .nmeta = f->via != NULL };

	req.has_session_id = 1;
	req.session_id.data = f->key;
	req.session_id.len = f->keylen;
	req.has_update_level = f->has_level;
	req.update_level = f->level;
	metrics_count(MC_UPSTREAM_FETCHES, 1);
	if (f->deadline == 0) {
		f->started = clock_now_ns();
		f->deadline = f->started + n.upstream_timeout_ms * NS_PER_MS;
	}
	f->hc = h2client_unary_body(n.up, PATH_GET, &body, f->deadline,
	    fetch_done, f);
	if (f->hc == NULL) {
		fetch_unjoin(f);
		fetch_fail(f, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	h2call_reply_into(f->hc, fetch_alloc, fetch_arrived, f);
}


static void
queue_arm(void)
{
	struct timeval tv = { 0, QUEUE_POLL_MS * 1000 };

	if (!evtimer_pending(n.queue_timer, NULL))
		evtimer_add(n.queue_timer, &tv);
}

static void
queue_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetch *f;

	while ((f = TAILQ_FIRST(&n.queue)) != NULL && !inflight_full()) {
		TAILQ_REMOVE(&n.queue, f, qentry);
		f->queued = 0;
		fetch_send(f);
	}
	if (!TAILQ_EMPTY(&n.queue))
		queue_arm();
}

static void
fetch_start(struct fetch *f)
{
	if (!TAILQ_EMPTY(&n.queue) || inflight_full()) {
		f->queued = 1;
		TAILQ_INSERT_TAIL(&n.queue, f, qentry);
		queue_arm();
		return;
	}
	fetch_send(f);
}

/* --- loops ---------------------------------------------------------------- */

/* Is id one of the comma-separated ids of via? */
static int
via_has(const char *via, const char *id)
{
	size_t len = strlen(id);
	const char *p = via, *e;

	for (;;) {
		e = strchr(p, ',');
		if ((e != NULL ? (size_t)(e - p) : strlen(p)) == len &&
		    memcmp(p, id, len) == 0)
			return 1;
		if (e == NULL)
			return 0;
		p = e + 1;
	}
}

/*
 * The path of a call upstream made for this call (Loops): the call's
 * alpcrun-via, then this node's id; the oldest ids dropped, and "..." put
 * first, until it fits in cap - 1 bytes.
 */
static void
via_next(struct call *call, char *out, size_t cap)
{
	const char *via = call_meta(call, META_VIA), *p;
	size_t idlen = strlen(n.id);

	if (via == NULL || via[0] == '\0') {
		snprintf(out, cap, "%s", n.id);
		return;
	}
	if (strlen(via) + 1 + idlen < cap) {
		size_t vl = strlen(via);

		memcpy(out, via, vl);
		out[vl] = ',';
		memcpy(out + vl + 1, n.id, idlen + 1);
		return;
	}
	/* "...," + the newest ids that fit + "," + ours. */
	for (p = via; p != NULL && strlen(p) + 5 + idlen >= cap;)
		if ((p = strchr(p, ',')) != NULL)
			p++;
	if (p == NULL || *p == '\0')
		snprintf(out, cap, "...,%s", n.id);
	else
		snprintf(out, cap, "...,%s,%s", p, n.id);
	log_debug("request path trimmed", "via=\"%s\" sent=\"%s\"", via, out);
}

/* A call whose path holds this node's id: refused, and logged once per
 * second at most. 1 when refused (the call is finished). */
static int
loop_refused(struct call *call)
{
	const char *via = call_meta(call, META_VIA);
	uint64_t now;

	if (via == NULL)
		return 0;
	if (!via_has(via, n.id)) {
		log_debug("request path", "via=\"%s\"", via);
		return 0;
	}
	now = clock_now_ns();
	if (n.loop_logged == 0 || now - n.loop_logged >= NS_PER_SEC) {
		log_error("request loop refused: this node is already on the "
		    "request's path; check upstream and node_id of the nodes "
		    "on it", "node_id=%s via=\"%s\" upstream=%s "
		    "refused_since_last=%llu", n.id, via, n.target,
		    (unsigned long long)n.loops_quiet);
		n.loop_logged = now;
		n.loops_quiet = 0;
	} else
		n.loops_quiet++;
	call_error(call, GRPC_FAILED_PRECONDITION, "request loop: node %s is "
	    "already on the path %s", n.id, via);
	return 1;
}

/* A Get that missed: join the fetch of its key, or start one. */
static void
node_wait(struct call *call, const uint8_t *key, size_t keylen,
    int has_level, uint32_t level, uint64_t now)
{
	struct fetch *f;
	struct waiter *w;
	struct timeval tv;
	uint64_t dl, cd = call_deadline(call);
	int start = 0;

	dl = now + n.upstream_timeout_ms * NS_PER_MS;
	if (cd != 0 && cd < dl)
		dl = cd;
	if (dl <= now) {
		call_error(call, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    (w->timer = evtimer_new(n.base, waiter_timeout, w)) == NULL)
		goto oom;
	if ((f = fetch_find(key, keylen, has_level, level)) != NULL)
		metrics_count(MC_COALESCED_WAITS, 1);
	else if ((f = fetch_new(key, keylen, has_level, level)) != NULL) {
		start = 1;
		/* The first caller's path is the fetch's (Loops). */
		if (call_meta(call, META_VIA) != NULL) {
			char via[GRPC_REQ_META_VALUE_MAX + 1];

			via_next(call, via, sizeof(via));
			f->via = strdup(via);	/* NULL: ours alone */
		}
	} else
		goto oom;
	w->f = f;
	w->call = call;
	TAILQ_INSERT_TAIL(&f->waiters, w, entry);
	f->nwaiters++;
	call_set_cancel(call, waiter_cancel, w);
	tv.tv_sec = (time_t)((dl - now) / NS_PER_SEC);
	tv.tv_usec = (suseconds_t)((dl - now) % NS_PER_SEC / 1000);
	evtimer_add(w->timer, &tv);
	if (start)
		fetch_start(f);
	return;
oom:
	if (w != NULL && w->timer != NULL)
		event_free(w->timer);
	free(w);
	call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

/* --- Get ----------------------------------------------------------------------- */

void
node_get(struct call *call, ProtobufCMessage *msg)
{
	Alpcrun__V1__SharedData *req = (Alpcrun__V1__SharedData *)msg;
	struct be_record rec;
	struct lease lease = { 0 };
	struct cache_verdict v;
	uint64_t now = clock_now_ns();
	const uint8_t *key = req->session_id.data;
	size_t keylen = req->session_id.len;

	if (loop_refused(call))
		goto out;
	if (cache_check_session(key, keylen, req->has_session_id, &v) != 0) {
		call_error(call, v.status, "%s", v.msg);
		goto out;
	}
	if (n.be->ops->lookup(n.be, key, keylen, now, &rec, &lease) != 0) {
		call_error(call, GRPC_INTERNAL, "store lookup failed");
		goto out;
	}
	/* A copy from a store central forgot is no copy (node_learn()). */
	switch (node_decide_get(rec.kind == BE_ENTRY &&
	    rec.inc == n.incarnation, rec.level, req->has_update_level,
	    req->update_level)) {
	case NODE_SERVE:
		metrics_count(MC_CACHE_HITS, 1);
		reads_hit(key, keylen);
		cache_reply(call, key, keylen, rec.level, rec.gen, rec.expires,
		    now, &lease);
		break;
	case NODE_MISMATCH:
		lease_release(&lease);
		call_error(call, GRPC_FAILED_PRECONDITION, "update level "
		    "mismatch: expected %u, got %u", rec.level,
		    req->update_level);
		break;
	case NODE_FETCH:
		lease_release(&lease);
		metrics_count(MC_CACHE_MISSES, 1);
		node_wait(call, key, keylen, req->has_update_level,
		    req->update_level, now);
		break;
	}
out:
	sdwire_free(msg);
}

/* --- writes ------------------------------------------------------------------ */

/* Dropping a copy: levels up to `upto` only. */
struct drop_op {
	struct be_write		 w;
	uint32_t		 upto;
	uint8_t			 key[];
};

static void
drop_decide(void *arg, const struct be_record *cur, uint64_t now,
    struct be_change *chg)
{
	struct drop_op *op = arg;

	/* A tombstone that is expired at once: the entry is gone for every
	 * lookup from now on, and the sweeper frees the record. */
	if (cur->kind != BE_ENTRY || (cur->level > op->upto &&
	    cur->inc == n.incarnation)) {
		chg->action = BE_KEEP;
		return;
	}
	chg->action = BE_PUT_TOMBSTONE;
	chg->level = cur->level;
	chg->expires = now;
}

static void
drop_done(void *arg, int err, const char *errmsg)
{
	if (err != BE_OK)
		log_warn("cannot drop a local copy", "error=\"%s\"", errmsg);
	free(arg);
}

/* Drop the copy of a session at levels up to upto, and keep fetches of
 * such levels (or of no level) then in flight from storing (or being
 * joined). */
void
node_drop(const uint8_t *key, size_t keylen, uint32_t upto)
{
	struct fetch *f, *next;
	struct drop_op *op;

	if (keylen == 0 || !n.started)
		return;
	TAILQ_FOREACH_SAFE(f, &n.buckets[bucket_of(key, keylen)], entry,
	    next)
		if (f->keylen == keylen && memcmp(f->key, key, keylen) == 0 &&
		    (!f->has_level || f->level <= upto)) {
			f->no_store = 1;
			fetch_unjoin(f);
		}
	if ((op = calloc(1, sizeof(*op) + keylen)) == NULL) {
		log_warn("cannot drop a local copy", "error=\"out of memory\"");
		return;
	}
	memcpy(op->key, key, keylen);
	op->upto = upto;
	op->w.key = op->key;
	op->w.keylen = keylen;
	op->w.decide = drop_decide;
	op->w.done = drop_done;
	op->w.arg = op;
	if (n.be->ops->write(n.be, &op->w) != 0) {
		log_warn("cannot drop a local copy", "error=\"store "
		    "unavailable\"");
		free(op);
	}
}

/* A write to this session succeeded at central: drop the copy, whatever
 * its level. */
static void
drop_copy(const uint8_t *key, size_t keylen)
{
	node_drop(key, keylen, UINT32_MAX);
}

/* --- for prefetch.c ---------------------------------------------------------- */

struct h2client *
node_link(void)
{
	return n.up;
}

int
node_held(const uint8_t *key, size_t keylen, uint32_t *level, uint64_t *gen)
{
	struct be_record rec;

	/* No lease: a check, not a use (the LRU order stays). */
	if (!n.started || n.be->ops->lookup(n.be, key, keylen,
	    clock_now_ns(), &rec, NULL) != 0 || rec.kind != BE_ENTRY ||
	    rec.inc != n.incarnation)
		return 0;
	*level = rec.level;
	*gen = rec.gen;
	return 1;
}

int
node_copy_current(uint64_t inc)
{
	return inc == n.incarnation;
}

void
node_fetches(node_fetch_fn *fn, void *arg)
{
	struct fetch *f;

	TAILQ_FOREACH(f, &n.fetches, all)
		fn(arg, f->key, f->keylen, f->has_level, f->level, f->have,
		    f->total, f->nwaiters, f->started);
}

const char *
node_id(void)
{
	return n.id;
}

uint64_t
node_incarnation(void)
{
	return n.incarnation;
}

int
node_prefetch(const uint8_t *key, size_t keylen, uint32_t level,
    node_fetched_fn *fn, void *arg)
{
	struct fetch *f;
	int start = 0;

	if (!n.started)
		return -1;
	/* Not a request: a fetch joined is not a coalesced wait. */
	if ((f = fetch_find(key, keylen, 1, level)) == NULL) {
		if ((f = fetch_new(key, keylen, 1, level)) == NULL)
			return -1;
		start = 1;
	}
	if (f->notify != NULL)
		return -1;		/* one prefetch per fetch */
	f->notify = fn;
	f->notify_arg = arg;
	if (start)
		fetch_start(f);
	return 0;
}

void
node_prefetch_forget(void)
{
	struct fetch *f;

	TAILQ_FOREACH(f, &n.fetches, all)
		f->notify = NULL;
}

static void
fwd_unref(struct fwd *fw)
{
	if (--fw->refs == 0)
		free(fw);
}

/* h2client is done with the body (maybe from libevent's buffer code:
 * memory only). */
static void
fwd_release(void *arg)
{
	struct fwd *fw = arg;

	sdwire_free(&fw->req->base);
	fw->req = NULL;
	inflight(-fw->acct);
	fw->acct = 0;
	fwd_unref(fw);
}

static void
fwd_done(void *arg, struct h2reply *r)
{
	struct fwd *fw = arg;
	Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;

	TAILQ_REMOVE(&n.fwds, fw, entry);
	fw->hc = NULL;
	learn_from(r, "write");
	if (r->status == GRPC_OK) {
		drop_copy(fw->key, fw->keylen);
		call_reply(fw->call, &empty.base, NULL);
	} else
		call_error(fw->call, r->status, "%s", r->message);
	fwd_unref(fw);
}

static void
forward(struct call *call, ProtobufCMessage *msg, const char *path)
{
	Alpcrun__V1__SharedData *req = (Alpcrun__V1__SharedData *)msg;
	char path_via[GRPC_REQ_META_VALUE_MAX + 1];
	struct h2reqmeta via = { META_VIA, path_via };
	struct h2body body = { 0 };
	struct fwd *fw;

	if (loop_refused(call)) {
		sdwire_free(msg);
		return;
	}
	if (call_meta(call, META_VIA) != NULL) {
		via_next(call, path_via, sizeof(path_via));
		body.meta = &via;
		body.nmeta = 1;
	}
	if ((fw = calloc(1, sizeof(*fw))) == NULL) {
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		sdwire_free(msg);
		return;
	}
	fw->call = call;
	fw->req = req;
	fw->refs = 2;			/* done (or cancel), and release */
	if (req->has_session_id && req->session_id.len <= SESSION_ID_MAX) {
		memcpy(fw->key, req->session_id.data, req->session_id.len);
		fw->keylen = req->session_id.len;
	}
	fw->acct = (int64_t)req->payload.len;
	inflight(fw->acct);
	TAILQ_INSERT_TAIL(&n.fwds, fw, entry);
	/* The decoded request is the body: its payload goes by reference,
	 * not copied again. */
	body.msg = msg;
	body.release = fwd_release;
	body.release_arg = fw;
	fw->hc = h2client_unary_body(n.up, path, &body, call_deadline(call),
	    fwd_done, fw);
	if (fw->hc == NULL) {		/* release ran; done never will */
		TAILQ_REMOVE(&n.fwds, fw, entry);
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		fwd_unref(fw);
	}
}

void
node_set(struct call *call, ProtobufCMessage *msg)
{
	forward(call, msg, PATH_SET);
}

void
node_update(struct call *call, ProtobufCMessage *msg)
{
	forward(call, msg, PATH_UPDATE);
}

void
node_delete(struct call *call, ProtobufCMessage *msg)
{
	forward(call, msg, PATH_DELETE);
}

/* --- life ----------------------------------------------------------------------- */

static void
set_values(const struct config *conf)
{
	n.upstream_timeout_ms = conf->upstream_timeout;
	n.default_ttl_ms = conf->default_ttl;
	n.max_ttl_ms = conf->max_ttl;
	n.max_memory = conf->max_memory;
}

/* The upstream list (h2client_opts targets), and its metrics. */
static char up_words[4097];
static const char *up_list[CONFIG_MAX_UPSTREAM];

static const char *
upstream_sample(void *arg, size_t i, uint64_t *v)
{
	struct h2client_target_stats st;
	const char *t;

	if (n.up == NULL || (t = h2client_target(n.up, i, &st)) == NULL)
		return NULL;
	switch ((int)(intptr_t)arg) {
	case 0:	*v = (uint64_t)st.up; break;
	case 1:	*v = st.calls; break;
	case 2:	*v = st.failovers; break;
	case 4:	*v = st.sent_bytes; break;
	case 5:	*v = st.received_bytes; break;
	default: *v = st.returns; break;
	}
	return t;
}

static int
upstream_metrics(void)
{
	static int done;

	if (done++)
		return 0;
	return metrics_family("alpcrund_upstream_target_up", "gauge",
	    "1 for the upstream the node's link uses now, by upstream.",
	    "upstream", upstream_sample, (void *)0) != 0 ||
	    metrics_family("alpcrund_upstream_calls_total", "counter",
	    "Calls the node sent upstream (fetches, writes, the change "
	    "feed), by upstream.", "upstream", upstream_sample,
	    (void *)1) != 0 ||
	    metrics_family("alpcrund_upstream_failovers_total", "counter",
	    "Times the link failed over to this upstream from another.",
	    "upstream", upstream_sample, (void *)2) != 0 ||
	    metrics_family("alpcrund_upstream_returns_total", "counter",
	    "Times the link returned to the first upstream once it was "
	    "back.", "upstream", upstream_sample, (void *)3) != 0 ||
	    metrics_family("alpcrund_upstream_sent_bytes_total", "counter",
	    "Request DATA bytes the node framed to this upstream (message "
	    "prefixes included).", "upstream", upstream_sample,
	    (void *)4) != 0 ||
	    metrics_family("alpcrund_upstream_received_bytes_total", "counter",
	    "Reply DATA bytes the node received from this upstream (message "
	    "prefixes included).", "upstream", upstream_sample,
	    (void *)5) != 0 ? -1 : 0;
}

static void
opts_from(const struct config *conf, struct h2client_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->target = conf->upstream;
	o->ntargets = config_words(conf->upstream, up_words, sizeof(up_words),
	    up_list, CONFIG_MAX_UPSTREAM);
	o->targets = up_list;
	o->connect_timeout_ms = conf->upstream_connect_timeout;
	o->keepalive_ms = conf->upstream_keepalive;
	o->api_key = n.key;
	o->max_message_size = conf->max_message_size;
	o->on_reply_mem = reply_mem;
	/* Windows sized for bandwidth x delay (h2client.h, Windows): central
	 * may have up to max_inflight_bytes on its way to us, never more than
	 * the node lets itself hold in flight, capped at 256 MiB. */
	o->recv_window = h2client_window(conf->max_inflight_bytes);
}

/*
 * upstream_tls: a client context from upstream_ca, upstream_cert and
 * upstream_key, and the name to verify, into o. The caller frees
 * o->ssl_ctx once the link took its own reference.
 */
static int
upstream_tls(const struct config *conf, struct h2client_opts *o, char *err,
    size_t errlen)
{
	char warn[256];

	o->ssl_ctx = tls_upstream_ctx_new(conf->upstream_ca,
	    conf->upstream_cert, conf->upstream_key, warn, sizeof(warn), err,
	    errlen);
	if (o->ssl_ctx == NULL)
		return -1;
	if (warn[0] != '\0')
		log_warn("upstream client certificate not valid now",
		    "warning=\"%s\"", warn);
	o->server_name = conf->upstream_server_name;
	return 0;
}

/* Read the key presented to central into n.key. */
static int
load_key(const struct config *conf, char *err, size_t errlen)
{
	char buf[KEY_MAX], *k = NULL;
	int rv;

	if ((rv = auth_upstream_key(conf, buf, sizeof(buf), err,
	    errlen)) < 0)
		return -1;
	if (rv == 1 && (k = strdup(buf)) == NULL) {
		snprintf(err, errlen, "out of memory");
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	explicit_bzero(buf, sizeof(buf));
	if (n.key != NULL) {
		explicit_bzero(n.key, strlen(n.key));
		free(n.key);
	}
	n.key = k;
	return 0;
}

int
node_init(struct event_base *base, struct backend *be,
    const struct config *conf, char *err, size_t errlen)
{
	struct h2client_opts o;
	size_t i;

	memset(&n, 0, sizeof(n));
	n.base = base;
	n.be = be;
	for (i = 0; i < NBUCKETS; i++)
		TAILQ_INIT(&n.buckets[i]);
	TAILQ_INIT(&n.fetches);
	TAILQ_INIT(&n.queue);
	TAILQ_INIT(&n.fwds);
	set_values(conf);
	if (siphash_key(n.seed) != 0) {
		snprintf(err, errlen, "getrandom: %s", strerror(errno));
		return -1;
	}
	if (load_key(conf, err, errlen) != 0)
		return -1;
	if ((n.target = strdup(conf->upstream)) == NULL ||
	    (n.id = strdup(conf->node_id != NULL ? conf->node_id :
	    "node")) == NULL ||
	    (n.queue_timer = evtimer_new(base, queue_cb, NULL)) == NULL ||
	    upstream_metrics() != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* In log lines: the list joined by commas (one logfmt value). */
	for (char *p = n.target; (p = strchr(p, ' ')) != NULL; )
		*p = ',';
	metrics_upstream_up(0);
	metrics_set_ready(0, "central cache not connected yet");
	opts_from(conf, &o);
	if (conf->upstream_tls && upstream_tls(conf, &o, err, errlen) != 0)
		goto fail;
	n.up = h2client_new(base, NULL, &o, on_link, NULL, err, errlen);
	SSL_CTX_free(o.ssl_ctx);
	if (n.up == NULL)
		goto fail;
	/* Every call upstream names this node (Loops). */
	if (h2client_set_meta(n.up, META_VIA, n.id) != 0) {
		snprintf(err, errlen, "node_id \"%s\" cannot be sent as %s",
		    n.id, META_VIA);
		goto fail;
	}
	n.started = 1;
	log_info("node mode", "upstream=%s node_id=%s upstream_timeout_ms=%llu "
	    "max_memory=%llu", n.target, n.id,
	    (unsigned long long)n.upstream_timeout_ms,
	    (unsigned long long)n.max_memory);
	return 0;
fail:
	node_free();
	return -1;
}

void
node_reconfigure(const struct config *conf)
{
	struct h2client_opts o;
	char err[256];

	if (n.up == NULL)
		return;
	set_values(conf);
	if (load_key(conf, err, sizeof(err)) != 0)
		log_error("upstream key not reloaded, keeping the old one",
		    "error=\"%s\"", err);
	opts_from(conf, &o);
	/* New certificates apply to the next connection to central; the
	 * one up keeps its session. */
	if (conf->upstream_tls && upstream_tls(conf, &o, err,
	    sizeof(err)) != 0)
		log_error("upstream TLS not reloaded, keeping the old "
		    "certificates", "error=\"%s\"", err);
	if (h2client_configure(n.up, &o) != 0)
		log_error("upstream link not reconfigured", "error=\"out of "
		    "memory\"");
	SSL_CTX_free(o.ssl_ctx);
}

void
node_set_inflight(const struct node_inflight *acct)
{
	n.budget = *acct;
}

void
node_drain(void *unused)
{
	n.draining = 1;
}

void
node_free(void)
{
	struct fetch *f;
	struct fwd *fw;

	while ((f = TAILQ_FIRST(&n.fetches)) != NULL)
		fetch_fail(f, GRPC_UNAVAILABLE, "node shutting down");
	while ((fw = TAILQ_FIRST(&n.fwds)) != NULL) {
		TAILQ_REMOVE(&n.fwds, fw, entry);
		h2call_cancel(fw->hc);
		call_error(fw->call, GRPC_UNAVAILABLE, "node shutting down");
		fwd_unref(fw);
	}
	h2call_cancel(n.probe);
	n.probe = NULL;
	/* Bodies still referenced are released from in here (or later). */
	h2client_free(n.up);
	n.up = NULL;
	if (n.queue_timer != NULL)
		event_free(n.queue_timer);
	n.queue_timer = NULL;
	free(n.target);
	n.target = NULL;
	free(n.id);
	n.id = NULL;
	if (n.key != NULL) {
		explicit_bzero(n.key, strlen(n.key));
		free(n.key);
	}
	n.key = NULL;
	n.started = 0;
	n.draining = 0;
}
