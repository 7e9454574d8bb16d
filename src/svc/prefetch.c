/*
 * prefetch.c: the node's side of the change feed (spec §5, `prefetch on`).
 *
 * The stream. One WatchSharedData call (h2client_stream()) on the node's
 * own link to central, watching every session. When it ends, for whatever
 * reason (central gone, the link down, a drain's UNAVAILABLE, a cut-off
 * for falling watch_buffer behind), it is made again after a backoff of
 * 100 ms doubling to 5 s with +-20% jitter, as the link itself reconnects;
 * the backoff starts over only once a stream proved itself: a live notice
 * after its snapshot, or up for a second after SNAPSHOT_END (a central that
 * sends a whole snapshot and breaks the stream at once is not asked again
 * every 100 ms). Notices are small (a session id of at most 256 bytes), so
 * the stream refuses any message over NOTICE_MAX (h2call_max_message()):
 * a hostile central's announced 260 MiB notice ends the stream with
 * RESOURCE_EXHAUSTED before anything is allocated or counted in flight.
 *
 * An upstream without the feed. An upstream that answers UNIMPLEMENTED
 * (a node without prefetch, an older node or central) leaves the node's
 * copies unwatched: a level-less Get is served the level held, however old.
 * That is said once (a warning, not one per retry) and on /readyz as a
 * line of detail under "ready" (metrics_set_ready_detail()): the node
 * stays ready, since it serves every Get that names a level correctly and
 * its hits are what the spec promises without prefetch; readiness going
 * down would take a working cache out of rotation. The stream is asked
 * for again as after any loss (the backoff reaches 5 s), and the first
 * snapshot clears the detail.
 *
 * Tiers. The upstream may be a node (spec §5 "Tiers"): its feed has the
 * same format, its notices name central's incarnation and describe the
 * copies it holds, so nothing here depends on which tier answers.
 *
 * Notices. prefetch_decide() says what a notice means for the copy the node
 * holds (node_held(), a lookup that does not count as a use). A fetch is a
 * job per session: queued, then started after a random 0-50 ms delay (so
 * that the nodes of a cluster do not all ask central in the same
 * millisecond) while fewer than prefetch_concurrency run, through
 * node_prefetch(): the Get path's coalescing, so a worker asking for the
 * same level at the same moment shares the one fetch, and the result is
 * stored replacing the old level. A newer level noticed while a job waits
 * raises its level; while it runs, it runs again when done. A job whose
 * session is no longer held (dropped, evicted) or already held at that
 * level when its turn comes does nothing. Drops are done at once.
 *
 * Reconciliation. A new stream starts with a snapshot of central's live
 * sessions. Each SNAPSHOT notice is decided like an update (newer level:
 * fetch; same: keep, nothing downloaded; older: drop), and the sessions
 * held and listed are remembered (a set of keys; only held ones, so it is
 * no larger than the node's own table). At SNAPSHOT_END the node's copies
 * are scanned in slices (backend.h "Scanning", from an event of its own so
 * the loop never stalls) and every copy whose session the snapshot did not
 * list is dropped: central deleted it, or it expired, while the stream was
 * down. A copy a worker fetched after its session's place in the snapshot
 * went by is dropped too, and fetched again by the next Get: the price of
 * not holding notices back during the snapshot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "backend.h"
#include "clock.h"
#include "config.h"
#include "grpc.h"
#include "h2client.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "prefetch.h"
#include "siphash.h"

#define PATH_WATCH	"/alpcrun.v1.Cache/WatchSharedData"
#define KIND(k)		ALPCRUN__V1__SHARED_DATA_NOTICE__KIND__##k
#define NBUCKETS	256		/* jobs and the seen set, power of two */
#define DELAY_MAX_MS	50		/* random start delay, at most */
#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	5000
#define RECONCILE_SLICE	256		/* copies scanned per turn */
#define NOTICE_MAX	(64 * 1024)	/* largest notice message accepted */
#define PROVED_NS	(1000ULL * 1000 * 1000)	/* up after SNAPSHOT_END */

/* A prefetch of one session. */
struct job {
	TAILQ_ENTRY(job)	 bentry;	/* P.jobs[bucket] */
	TAILQ_ENTRY(job)	 qentry;	/* P.queue, while queued */
	struct event		*timer;		/* the start delay */
	uint32_t		 level;
	uint32_t		 again_level;	/* noticed while it ran */
	unsigned		 again:1;
	enum { J_QUEUED, J_DELAY, J_RUNNING } state;
	size_t			 bucket;
	size_t			 keylen;
	uint8_t			 key[];
};
TAILQ_HEAD(job_list, job);

/* A held session the snapshot listed. */
struct seen {
	struct seen		*next;
	size_t			 keylen;
	uint8_t			 key[];
};

/* A copy the reconciliation drops (collected during a scan slice). */
struct gone {
	struct gone		*next;
	uint32_t		 level;
	size_t			 keylen;
	uint8_t			 key[];
};

static struct {
	struct event_base	*base;
	struct backend		*be;
	uint64_t		 concurrency;
	uint8_t			 seed[SIPHASH_KEY_LEN];
	uint64_t		 rnd;		/* xorshift state: delays */
	/* The stream. */
	struct h2call		*hc;
	struct event		*retry;
	uint64_t		 backoff_ms;
	int			 in_snapshot;
	int			 healthy;	/* a snapshot arrived since the
						   last loss was logged */
	uint64_t		 snap_end_ns;	/* SNAPSHOT_END came then; 0 */
	int			 proved;	/* a live notice came */
	int			 no_feed;	/* upstream said UNIMPLEMENTED */
	/* Jobs. */
	struct job_list		 jobs[NBUCKETS];
	struct job_list		 queue;
	uint64_t		 running;
	/* Reconciliation. */
	struct seen		*seen[NBUCKETS];
	struct be_scan		*rscan;
	struct event		*rev;
	struct gone		*gone;
	uint64_t		 kept, fetched, dropped;
	int			 started;
} P;

static void	subscribe(void);

/* --- pure parts ------------------------------------------------------------ */

enum prefetch_action
prefetch_decide(int kind, int held, uint32_t h, uint64_t hg, int has_level,
    uint32_t l, uint64_t gen)
{
	if (!held || !has_level)
		return PF_NONE;
	switch (kind) {
	case KIND(SNAPSHOT):
	case KIND(SET):
	case KIND(UPDATE):
		if (h == l && gen != 0 && gen != hg)
			return PF_DROP;
		return h < l ? PF_FETCH : h > l ? PF_DROP : PF_NONE;
	case KIND(DELETE):
	case KIND(EXPIRE):
		return h <= l ? PF_DROP : PF_NONE;
	default:
		return PF_NONE;
	}
}

/* --- helpers ------------------------------------------------------------------ */

static size_t
bucket_of(const uint8_t *key, size_t keylen)
{
	return (size_t)siphash24(P.seed, key, keylen) & (NBUCKETS - 1);
}

static uint64_t
rnd(void)
{
	P.rnd ^= P.rnd << 13;
	P.rnd ^= P.rnd >> 7;
	P.rnd ^= P.rnd << 17;
	return P.rnd;
}

static void
arm_ms(struct event *ev, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

/* --- the seen set ------------------------------------------------------------- */

static void
seen_add(const uint8_t *key, size_t keylen)
{
	struct seen *s;
	size_t b = bucket_of(key, keylen);

	for (s = P.seen[b]; s != NULL; s = s->next)
		if (s->keylen == keylen && memcmp(s->key, key, keylen) == 0)
			return;
	if ((s = malloc(sizeof(*s) + keylen)) == NULL)
		return;		/* at worst that copy is dropped */
	s->keylen = keylen;
	memcpy(s->key, key, keylen);
	s->next = P.seen[b];
	P.seen[b] = s;
}

static int
seen_has(const uint8_t *key, size_t keylen)
{
	struct seen *s;

	for (s = P.seen[bucket_of(key, keylen)]; s != NULL; s = s->next)
		if (s->keylen == keylen && memcmp(s->key, key, keylen) == 0)
			return 1;
	return 0;
}

static void
seen_clear(void)
{
	struct seen *s;
	size_t i;

	for (i = 0; i < NBUCKETS; i++)
		while ((s = P.seen[i]) != NULL) {
			P.seen[i] = s->next;
			free(s);
		}
}

/* --- jobs ------------------------------------------------------------------------ */

static struct job *
job_find(const uint8_t *key, size_t keylen)
{
	struct job *j;

	TAILQ_FOREACH(j, &P.jobs[bucket_of(key, keylen)], bentry)
		if (j->keylen == keylen && memcmp(j->key, key, keylen) == 0)
			return j;
	return NULL;
}

static void
job_free(struct job *j)
{
	if (j->state == J_QUEUED)
		TAILQ_REMOVE(&P.queue, j, qentry);
	TAILQ_REMOVE(&P.jobs[j->bucket], j, bentry);
	event_free(j->timer);
	free(j);
}

static void	job_start_cb(evutil_socket_t, short, void *);

/* Start queued jobs while there is room. */
static void
pump(void)
{
	struct job *j;

	while (P.running < P.concurrency &&
	    (j = TAILQ_FIRST(&P.queue)) != NULL) {
		TAILQ_REMOVE(&P.queue, j, qentry);
		j->state = J_DELAY;
		P.running++;
		arm_ms(j->timer, rnd() % (DELAY_MAX_MS + 1));
	}
}

static void
job_end(struct job *j)
{
	P.running--;
	if (j->again) {
		j->again = 0;
		j->level = j->again_level;
		j->state = J_QUEUED;
		TAILQ_INSERT_TAIL(&P.queue, j, qentry);
	} else
		job_free(j);
	pump();
}

/* node_prefetch() ended. */
static void
job_fetched(void *arg, int status)
{
	struct job *j = arg;

	if (status == GRPC_OK)
		log_debug("prefetched", "session=%.*s level=%u",
		    (int)j->keylen, (const char *)j->key, j->level);
	else
		log_info("prefetch failed", "session=%.*s level=%u "
		    "status=%s", (int)j->keylen, (const char *)j->key,
		    j->level, grpc_status_name(status));
	job_end(j);
}

static void
job_start_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	uint32_t h;
	uint64_t g;

	j->state = J_RUNNING;
	/* Not held any more, or held at that level already: nothing to do. */
	if (!node_held(j->key, j->keylen, &h, &g) || h >= j->level) {
		job_end(j);
		return;
	}
	metrics_count(MC_PREFETCHES, 1);
	log_debug("prefetching", "session=%.*s level=%u held=%u",
	    (int)j->keylen, (const char *)j->key, j->level, h);
	if (node_prefetch(j->key, j->keylen, j->level, job_fetched, j) != 0)
		job_end(j);
	/* else j may be gone already (job_fetched ran) */
}

/* Fetch (session, level) soon. */
static void
want(const uint8_t *key, size_t keylen, uint32_t level)
{
	struct job *j;

	if ((j = job_find(key, keylen)) != NULL) {
		if (j->state != J_RUNNING) {
			if (level > j->level)
				j->level = level;
		} else if (level > j->level && (!j->again ||
		    level > j->again_level)) {
			j->again = 1;
			j->again_level = level;
		}
		return;
	}
	if ((j = calloc(1, sizeof(*j) + keylen)) == NULL ||
	    (j->timer = evtimer_new(P.base, job_start_cb, j)) == NULL) {
		free(j);
		log_warn("prefetch not queued", "error=\"out of memory\"");
		return;
	}
	memcpy(j->key, key, keylen);
	j->keylen = keylen;
	j->level = level;
	j->bucket = bucket_of(key, keylen);
	j->state = J_QUEUED;
	TAILQ_INSERT_TAIL(&P.jobs[j->bucket], j, bentry);
	TAILQ_INSERT_TAIL(&P.queue, j, qentry);
	pump();
}

/* --- reconciliation ------------------------------------------------------------ */

static void
reconcile_stop(void)
{
	struct gone *g;

	if (P.rscan != NULL)
		P.be->ops->scan_close(P.be, P.rscan);
	P.rscan = NULL;
	while ((g = P.gone) != NULL) {
		P.gone = g->next;
		free(g);
	}
	seen_clear();
}

/* be_scan_fn: a copy the node holds. */
static void
reconcile_one(void *arg, const uint8_t *key, size_t keylen, uint32_t level,
    uint64_t gen, uint64_t inc, uint64_t expires, size_t len)
{
	struct gone *g;

	/* Listed, and from central's current store: kept. */
	if (seen_has(key, keylen) && node_copy_current(inc))
		return;
	/* Dropped after the slice: the scan may not write. */
	if ((g = malloc(sizeof(*g) + keylen)) == NULL)
		return;
	g->level = level;
	g->keylen = keylen;
	memcpy(g->key, key, keylen);
	g->next = P.gone;
	P.gone = g;
}

static void
reconcile_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gone *g;
	int rv;

	if (P.rscan == NULL)
		return;
	rv = P.be->ops->scan_next(P.be, P.rscan, clock_now_ns(),
	    RECONCILE_SLICE, reconcile_one, NULL);
	while ((g = P.gone) != NULL) {
		P.gone = g->next;
		log_debug("copy dropped: not in central's snapshot",
		    "session=%.*s level=%u", (int)g->keylen,
		    (const char *)g->key, g->level);
		node_drop(g->key, g->keylen, g->level);
		P.dropped++;
		free(g);
	}
	if (rv == 1) {
		event_active(P.rev, EV_TIMEOUT, 0);
		return;
	}
	log_info("change feed reconciled", "kept=%llu fetched=%llu "
	    "dropped=%llu", (unsigned long long)P.kept,
	    (unsigned long long)P.fetched, (unsigned long long)P.dropped);
	reconcile_stop();
}

/* --- the stream ------------------------------------------------------------------ */

static void
apply(int kind, const uint8_t *key, size_t keylen, int has_level,
    uint32_t level, uint64_t gen)
{
	uint32_t h = 0;
	uint64_t hg = 0;
	int held = node_held(key, keylen, &h, &hg);

	switch (prefetch_decide(kind, held, h, hg, has_level, level, gen)) {
	case PF_FETCH:
		if (kind == KIND(SNAPSHOT))
			P.fetched++;
		want(key, keylen, level);
		break;
	case PF_DROP:
		log_debug("copy dropped", "session=%.*s level=%u kind=%d",
		    (int)keylen, (const char *)key, h, kind);
		node_drop(key, keylen, kind == KIND(DELETE) ||
		    kind == KIND(EXPIRE) ? level : h);
		if (kind == KIND(SNAPSHOT))
			P.dropped++;
		return;		/* not "seen": dropped already */
	case PF_NONE:
		if (kind == KIND(SNAPSHOT) && held)
			P.kept++;
		break;
	}
	if (kind == KIND(SNAPSHOT) && held)
		seen_add(key, keylen);
}

static void
on_notice(void *arg, const uint8_t *msg, size_t len)
{
	Alpcrun__V1__SharedDataNotice *n;

	if ((n = alpcrun__v1__shared_data_notice__unpack(NULL, len,
	    msg)) == NULL) {
		log_warn("change feed: a notice that does not decode", NULL);
		return;
	}
	/* Before the notice is applied: copies of another store first go
	 * (node_learn()). */
	if (n->has_incarnation)
		node_learn(n->incarnation, "change feed");
	if (n->kind == KIND(SNAPSHOT_END)) {
		P.in_snapshot = 0;
		P.snap_end_ns = clock_now_ns();
		P.healthy = 1;
		if (P.no_feed) {
			P.no_feed = 0;
			metrics_set_ready_detail(NULL);
			log_info("change feed available upstream now", NULL);
		}
		log_info("change feed snapshot received", "notices=%llu "
		    "kept=%llu fetching=%llu dropped=%llu",
		    (unsigned long long)n->seq, (unsigned long long)P.kept,
		    (unsigned long long)P.fetched,
		    (unsigned long long)P.dropped);
		if ((P.rscan = P.be->ops->scan_open(P.be)) != NULL)
			event_active(P.rev, EV_TIMEOUT, 0);
		else
			seen_clear();
	} else if (n->has_session_id && n->session_id.len > 0) {
		if (!P.in_snapshot)
			P.proved = 1;
		apply(n->kind, n->session_id.data, n->session_id.len,
		    n->has_update_level, n->update_level,
		    n->has_generation ? n->generation : 0);
	}
	protobuf_c_message_free_unpacked(&n->base, NULL);
}

static void
on_end(void *arg, struct h2reply *r)
{
	uint64_t ms;

	P.hc = NULL;
	P.in_snapshot = 0;
	reconcile_stop();
	if (P.proved || (P.snap_end_ns != 0 &&
	    clock_now_ns() - P.snap_end_ns >= PROVED_NS))
		P.backoff_ms = BACKOFF_MIN_MS;
	ms = P.backoff_ms;
	ms = ms * 4 / 5 + rnd() % (ms * 2 / 5 + 1);	/* +-20% */
	if (r->status == GRPC_UNIMPLEMENTED && !P.no_feed) {
		P.no_feed = 1;
		log_warn("upstream serves no change feed: copies are not kept "
		    "up to date, a Get without a level may be served an old "
		    "level", "message=\"%s\"", r->message);
		metrics_set_ready_detail("prefetch: upstream serves no change "
		    "feed (WatchSharedData UNIMPLEMENTED), copies may be "
		    "stale");
	}
	if (P.healthy)
		log_info("change feed lost, resubscribing", "status=%s "
		    "message=\"%s\" retry_ms=%llu", grpc_status_name(r->status),
		    r->message, (unsigned long long)ms);
	else
		log_debug("change feed unavailable", "status=%s "
		    "message=\"%s\" retry_ms=%llu", grpc_status_name(r->status),
		    r->message, (unsigned long long)ms);
	P.healthy = 0;
	P.backoff_ms = P.backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
	    P.backoff_ms * 2;
	arm_ms(P.retry, ms);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	subscribe();
}

static void
subscribe(void)
{
	Alpcrun__V1__WatchRequest req = ALPCRUN__V1__WATCH_REQUEST__INIT;
	struct h2client *up = node_link();

	reconcile_stop();
	P.kept = P.fetched = P.dropped = 0;
	P.in_snapshot = 1;
	P.snap_end_ns = 0;
	P.proved = 0;
	if (up == NULL || (P.hc = h2client_stream(up, PATH_WATCH, &req.base,
	    0, on_notice, on_end, NULL)) == NULL) {
		P.in_snapshot = 0;
		arm_ms(P.retry, BACKOFF_MAX_MS);
		return;
	}
	h2call_max_message(P.hc, NOTICE_MAX);
}

/* --- life ---------------------------------------------------------------------- */

int
prefetch_init(struct event_base *base, struct backend *be,
    const struct config *conf)
{
	size_t i;

	memset(&P, 0, sizeof(P));
	P.base = base;
	P.be = be;
	P.concurrency = conf->prefetch_concurrency;
	P.backoff_ms = BACKOFF_MIN_MS;
	P.rnd = clock_now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
	if (P.rnd == 0)
		P.rnd = 1;
	for (i = 0; i < NBUCKETS; i++)
		TAILQ_INIT(&P.jobs[i]);
	TAILQ_INIT(&P.queue);
	if (siphash_key(P.seed) != 0 ||
	    (P.retry = evtimer_new(base, retry_cb, NULL)) == NULL ||
	    (P.rev = event_new(base, -1, 0, reconcile_cb, NULL)) == NULL) {
		prefetch_free();
		return -1;
	}
	P.started = 1;
	log_info("prefetch on", "prefetch_concurrency=%llu",
	    (unsigned long long)P.concurrency);
	subscribe();
	return 0;
}

void
prefetch_reconfigure(const struct config *conf)
{
	if (!P.started)
		return;
	P.concurrency = conf->prefetch_concurrency;
	pump();
}

void
prefetch_free(void)
{
	struct job *j;
	size_t i;

	node_prefetch_forget();
	h2call_cancel(P.hc);
	P.hc = NULL;
	reconcile_stop();
	for (i = 0; i < NBUCKETS; i++)
		while ((j = TAILQ_FIRST(&P.jobs[i])) != NULL)
			job_free(j);
	if (P.retry != NULL)
		event_free(P.retry);
	if (P.rev != NULL)
		event_free(P.rev);
	P.retry = P.rev = NULL;
	P.started = 0;
}
