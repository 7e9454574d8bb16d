/*
 * watch.c: the change feed (spec §5): the WatchSharedData handler and its
 * watchers, over a central's store or a node's copies.
 *
 * Tiers. A node with `prefetch on` serves the same feed to the nodes behind
 * it, over its own memory backend: the snapshot lists its live copies from
 * central's current store (watch_origin.current()), live notices come from
 * its backend's hook (a copy stored: SET or UPDATE with the copy's
 * generation, central's; dropped by node_drop(): DELETE; expired: EXPIRE;
 * evicted: nothing), and every notice announces central's incarnation as
 * the node learned it (watch_origin.incarnation()), never the node's own
 * memory store's, so that a child sees exactly what central would send.
 * When the node learns that central's store changed, watch_end_all() ends
 * every stream (UNAVAILABLE): the children resubscribe, learn the new
 * incarnation from the snapshot's first notice and reconcile against it,
 * rather than keep serving old copies until some notice happens by.
 *
 * Snapshot. A stream that watches every session walks the backend with a
 * scan cursor (backend.h "Scanning"), one slice at a time, from an event of
 * its own (the pump), and only while the stream's queued bytes are under a
 * low-water mark: a reader that does not read stops the walk (the call
 * layer tells us when DATA was framed and the queue fell, call_set_writable),
 * and a fast one gets at most SLICES_PER_TURN slices per turn of the loop,
 * so that a million sessions neither stall the loop nor pile up in memory.
 * A stream that names a session looks it up once instead (backend_lookup():
 * a backend that asks its store answers later, and the live notices of
 * that session are held until then as during a scan).
 *
 * Live notices. The backend's change hook (main.c forwards it here) becomes
 * one notice per watcher whose filter matches. While a watcher's snapshot
 * runs, its live notices are held in order and sent after SNAPSHOT_END: a
 * snapshot notice may therefore show a state newer than a live notice that
 * follows it, never older than the last one, so a reader that applies
 * notices in order ends in central's state. For SET and UPDATE the ttl is
 * looked up once per change (the hook carries no expiry) with lookup(),
 * which answers at once: a backend that keeps its records elsewhere (s3)
 * answers from what it just wrote, which is what the hook reports; it is
 * left out when the entry moved on meanwhile or cannot be told at once.
 *
 * Bound. Per watcher, the bytes packed for its stream but not yet framed
 * (call_queued()) plus the notices held during its snapshot stay within
 * watch_buffer: a notice that would pass it cuts the watcher off with
 * RST_STREAM ENHANCE_YOUR_CALM (the client sees RESOURCE_EXHAUSTED and
 * resubscribes). Bytes framed into DATA wait in the connection's output,
 * which conn.c bounds (OUT_HIGH) for every stream alike.
 *
 * Lifetime. A watcher is freed only by the pump: a stream that goes away
 * (or a watcher cut off) is marked dead from wherever that happens (inside a
 * send, inside a walk over the watchers) and skipped until the pump reaps
 * it. The drain (server.c, grpc_stream_drain) ends watch streams with
 * UNAVAILABLE through the cancel hook like any streaming call; a request's
 * grpc-timeout ends its stream with DEADLINE_EXCEEDED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "clock.h"
#include "config.h"
#include "grpc.h"
#include "grpc_frame.h"
#include "log.h"
#include "metrics.h"
#include "queue_compat.h"
#include "rules.h"
#include "server.h"
#include "watch.h"

#define KIND(k)		ALPCRUN__V1__SHARED_DATA_NOTICE__KIND__##k
/* Snapshot slices per watcher per turn of the loop. */
#define SLICES_PER_TURN	16
/* Entries per slice, at most (fewer with a small watch_buffer). */
#define SCAN_SLICE	64
/* Bytes a notice takes at most: session_id, the other fields, the prefix. */
#define NOTICE_MAX	(SESSION_ID_MAX + 66 + GRPC_PREFIX_LEN)
/* Low-water mark of a stream's queue for the snapshot, at most. */
#define LOW_WATER_MAX	(64 * 1024)

/* A live notice held while the watcher's snapshot runs. */
struct held {
	STAILQ_ENTRY(held)	 entry;
	int			 kind;
	uint32_t		 level;
	uint64_t		 gen;
	uint64_t		 expires;	/* 0: no ttl */
	uint64_t		 size;		/* the payload's */
	size_t			 cost;		/* counted against watch_buffer */
	size_t			 keylen;
	uint8_t			 key[];
};
STAILQ_HEAD(held_list, held);

struct watcher {
	TAILQ_ENTRY(watcher)	 entry;		/* W.all */
	TAILQ_ENTRY(watcher)	 rentry;	/* W.ready or the pump's list */
	struct call		*call;		/* NULL once dead */
	uint64_t		 seq;		/* of the last notice sent */
	struct be_scan		*scan;		/* the snapshot's cursor */
	struct event		*deadline;	/* grpc-timeout, if any */
	struct event		*later;		/* the scan waits on its store */
	struct held_list	 held;
	size_t			 held_bytes;
	unsigned		 in_snapshot:1;	/* SNAPSHOT_END not sent yet */
	unsigned		 ready:1;	/* on a ready list */
	unsigned		 dead:1;
	size_t			 filterlen;	/* 0: every session */
	uint8_t			 filter[SESSION_ID_MAX];
	/* The one session's snapshot lookup while the backend answers it
	 * later (backend_lookup() said 1); NULLed when the watcher goes
	 * first. */
	struct lookup_ticket	*ticket;
	/* Who, for the status page: the path its call came through (a
	 * node's id last), and since when. */
	char			 via[WATCH_VIA_MAX + 1];
	uint64_t		 since;
};
TAILQ_HEAD(watcher_list, watcher);

/* A lookup in flight outlives its watcher: the answer finds w NULL and
 * only frees the ticket. */
struct lookup_ticket {
	struct watcher		*w;
};

static struct {
	struct event_base	*base;
	struct backend		*be;
	struct event		*pump;
	struct watcher_list	 all;
	struct watcher_list	 ready;
	struct watch_origin	 origin;	/* a node's; unset on central */
	uint64_t		 buffer;	/* watch_buffer */
	uint64_t		 nwatchers;
	int			 started;
	int			 draining;	/* no new watchers */
} W;

/* --- pure parts ------------------------------------------------------------ */

int
watch_kind_of(enum be_event ev)
{
	switch (ev) {
	case BE_EV_SET:
		return KIND(SET);
	case BE_EV_UPDATE:
		return KIND(UPDATE);
	case BE_EV_DELETE:
		return KIND(DELETE);
	case BE_EV_EXPIRE:
		return KIND(EXPIRE);
	default:
		return 0;
	}
}

int
watch_fits(size_t queued, size_t size, uint64_t limit)
{
	return queued == 0 || (size <= limit && queued <= limit - size);
}

/* --- whose store -------------------------------------------------------------- */

/* The incarnation every notice announces: central's. */
static uint64_t
announced(void)
{
	if (W.origin.incarnation != NULL)
		return W.origin.incarnation(W.origin.arg);
	return W.be->incarnation;
}

/* May an entry of origin inc be listed? */
static int
listed(uint64_t inc)
{
	return W.origin.current == NULL || W.origin.current(W.origin.arg, inc);
}

/* --- watchers ----------------------------------------------------------------- */

static size_t
low_water(void)
{
	uint64_t lw = W.buffer / 2;

	return lw < LOW_WATER_MAX ? (size_t)lw : LOW_WATER_MAX;
}

static size_t
slice_budget(void)
{
	size_t n = low_water() / NOTICE_MAX;

	return n < 1 ? 1 : n > SCAN_SLICE ? SCAN_SLICE : n;
}

static void
make_ready(struct watcher *w)
{
	if (!w->ready) {
		w->ready = 1;
		TAILQ_INSERT_TAIL(&W.ready, w, rentry);
	}
	event_active(W.pump, EV_TIMEOUT, 0);
}

/* No call any more: skip it from now on; the pump frees it. */
static void
watcher_kill(struct watcher *w)
{
	if (w->dead)
		return;
	w->dead = 1;
	w->call = NULL;
	make_ready(w);
}

/* Only from the pump (or watch_free()), off every ready list. */
static void
watcher_free(struct watcher *w)
{
	struct held *h;

	if (w->call != NULL) {
		call_set_cancel(w->call, NULL, NULL);
		call_set_writable(w->call, NULL, NULL, 0);
		call_error(w->call, GRPC_UNAVAILABLE, "server shutting down");
		w->call = NULL;
	}
	if (w->ticket != NULL)
		w->ticket->w = NULL;
	if (w->scan != NULL)
		W.be->ops->scan_close(W.be, w->scan);
	if (w->deadline != NULL)
		event_free(w->deadline);
	if (w->later != NULL)
		event_free(w->later);
	while ((h = STAILQ_FIRST(&w->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&w->held, entry);
		free(h);
	}
	TAILQ_REMOVE(&W.all, w, entry);
	W.nwatchers--;
	free(w);
}

static void
cut_off(struct watcher *w, size_t queued)
{
	log_info("watcher cut off", "queued=%zu watch_buffer=%llu "
	    "notices_sent=%llu", queued, (unsigned long long)W.buffer,
	    (unsigned long long)w->seq);
	metrics_count(MC_WATCH_CUTOFFS, 1);
	call_reset(w->call, NGHTTP2_ENHANCE_YOUR_CALM,
	    GRPC_RESOURCE_EXHAUSTED);
	w->call = NULL;
	watcher_kill(w);
}

/* Send one notice; 0, or -1 when the watcher is dead now. */
static int
send_notice(struct watcher *w, int kind, const uint8_t *key, size_t keylen,
    int has_level, uint32_t level, uint64_t gen, uint64_t paylen,
    uint64_t expires, uint64_t now)
{
	Alpcrun__V1__SharedDataNotice n = ALPCRUN__V1__SHARED_DATA_NOTICE__INIT;
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	size_t size, queued;

	if (w->dead)
		return -1;
	if (keylen > 0) {
		n.has_session_id = 1;
		n.session_id.data = (uint8_t *)(uintptr_t)key;
		n.session_id.len = keylen;
	}
	n.has_update_level = has_level;
	n.update_level = level;
	if (expires != 0) {
		cache_ttl_left(&ttl, expires, now);
		n.ttl = &ttl;
	}
	n.has_kind = 1;
	n.kind = kind;
	n.has_seq = 1;
	n.seq = w->seq + 1;
	n.has_generation = gen != 0;
	n.generation = gen;
	n.has_incarnation = 1;
	n.incarnation = announced();
	/* What a listing shows (alpcrunctl ls); 0 is proto3's absent. */
	n.has_size = paylen != 0 && (kind == KIND(SNAPSHOT) ||
	    kind == KIND(SET) || kind == KIND(UPDATE));
	n.size = paylen;
	size = protobuf_c_message_get_packed_size(&n.base) + GRPC_PREFIX_LEN;
	queued = call_queued(w->call) + w->held_bytes;
	if (!watch_fits(queued, size, W.buffer)) {
		cut_off(w, queued);
		return -1;
	}
	if (call_send(w->call, &n.base) != 0) {
		/* The stream is gone (the cancel hook follows) or the notice
		 * could not be packed. */
		if (w->call != NULL && call_alive(w->call)) {
			call_set_cancel(w->call, NULL, NULL);
			call_error(w->call, GRPC_RESOURCE_EXHAUSTED,
			    "out of memory");
			w->call = NULL;
		}
		watcher_kill(w);
		return -1;
	}
	w->seq++;
	metrics_count(MC_WATCH_NOTICES, 1);
	return 0;
}

/* A live notice during the snapshot: kept, in order, within the bound. */
static void
hold(struct watcher *w, int kind, const uint8_t *key, size_t keylen,
    uint32_t level, uint64_t gen, uint64_t size, uint64_t expires)
{
	struct held *h;
	size_t cost = sizeof(*h) + keylen, queued;

	queued = call_queued(w->call) + w->held_bytes;
	if (!watch_fits(queued, cost, W.buffer)) {
		cut_off(w, queued);
		return;
	}
	if ((h = malloc(sizeof(*h) + keylen)) == NULL) {
		cut_off(w, queued);
		return;
	}
	h->kind = kind;
	h->level = level;
	h->gen = gen;
	h->size = size;
	h->expires = expires;
	h->cost = cost;
	h->keylen = keylen;
	memcpy(h->key, key, keylen);
	STAILQ_INSERT_TAIL(&w->held, h, entry);
	w->held_bytes += cost;
}

/* be_scan_fn: one live session of the snapshot. */
static void
snap_one(void *arg, const uint8_t *key, size_t keylen, uint32_t level,
    uint64_t gen, uint64_t inc, uint64_t expires, size_t len)
{
	struct watcher *w = arg;

	if (!listed(inc))
		return;		/* a node's copy from a store central forgot */
	send_notice(w, KIND(SNAPSHOT), key, keylen, 1, level, gen, len,
	    expires, clock_now_ns());
}

/* SNAPSHOT_END, then the notices held meanwhile. */
static void
snapshot_end(struct watcher *w)
{
	struct held *h;
	uint64_t now = clock_now_ns();

	w->in_snapshot = 0;
	if (send_notice(w, KIND(SNAPSHOT_END), NULL, 0, 0, 0, 0, 0, 0, now) !=
	    0)
		return;
	log_debug("watcher snapshot sent", "notices=%llu held=%zu",
	    (unsigned long long)w->seq, w->held_bytes);
	while (!w->dead && (h = STAILQ_FIRST(&w->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&w->held, entry);
		w->held_bytes -= h->cost;
		send_notice(w, h->kind, h->key, h->keylen, 1, h->level,
		    h->gen, h->size, h->expires, now);
		free(h);
	}
}

/* call_set_writable(): inside the send path, only note it. */
static void
on_writable(struct call *call, void *arg)
{
	make_ready(arg);
}

/* The stream went away (or the drain ended it). */
static void
on_cancel(struct call *call, void *arg)
{
	struct watcher *w = arg;

	w->call = NULL;
	call_error(call, GRPC_CANCELLED, NULL);
	watcher_kill(w);
}

/* The request's grpc-timeout passed: the stream ends as gRPC says. */
static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct watcher *w = arg;

	if (w->dead)
		return;
	call_set_cancel(w->call, NULL, NULL);
	call_error(w->call, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
	w->call = NULL;
	watcher_kill(w);
}

static void
on_later(evutil_socket_t fd, short what, void *arg)
{
	make_ready(arg);
}

/* Go on with a watcher's snapshot while its stream drains. */
static void
fill(struct watcher *w)
{
	size_t slices = 0;
	int rv;

	while (!w->dead && w->in_snapshot) {
		if (call_queued(w->call) >= low_water()) {
			call_set_writable(w->call, on_writable, w,
			    low_water());
			return;
		}
		if (slices++ == SLICES_PER_TURN) {
			make_ready(w);	/* the loop runs other work first */
			return;
		}
		if (w->scan == NULL) {
			/* A one-session lookup still out: its answer ends
			 * the snapshot. */
			if (w->ticket == NULL)
				snapshot_end(w);
			return;
		}
		rv = W.be->ops->scan_next(W.be, w->scan, clock_now_ns(),
		    slice_budget(), snap_one, w);
		if (w->dead)
			return;
		if (rv < 0) {
			call_set_cancel(w->call, NULL, NULL);
			call_error(w->call, GRPC_UNAVAILABLE,
			    "cannot read the store for the snapshot");
			w->call = NULL;
			watcher_kill(w);
			return;
		}
		if (rv == 0) {
			W.be->ops->scan_close(W.be, w->scan);
			w->scan = NULL;
		}
		if (rv == 2) {
			/* The backend waits on its store (s3): look again
			 * shortly rather than spin the loop. */
			static const struct timeval soon = { 0, 2000 };

			if (w->later == NULL && (w->later = evtimer_new(W.base,
			    on_later, w)) == NULL) {
				make_ready(w);
				return;
			}
			evtimer_add(w->later, &soon);
			return;
		}
	}
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watcher_list turn;
	struct watcher *w;

	/* This turn's watchers; any made ready meanwhile wait for the
	 * next one. */
	TAILQ_INIT(&turn);
	TAILQ_CONCAT(&turn, &W.ready, rentry);
	while ((w = TAILQ_FIRST(&turn)) != NULL) {
		TAILQ_REMOVE(&turn, w, rentry);
		w->ready = 0;
		if (!w->dead)
			fill(w);
		if (w->dead && !w->ready)
			watcher_free(w);
		else if (w->dead) {
			/* Made ready again by its own death: free it now. */
			TAILQ_REMOVE(&W.ready, w, rentry);
			watcher_free(w);
		}
	}
}

/* --- the handler ---------------------------------------------------------------- */

/* The one session's snapshot: its record, or a storage error (rv -1). */
static void
snapshot_lookup(struct watcher *w, int rv, const struct be_record *rec)
{
	if (rv != 0) {
		call_set_cancel(w->call, NULL, NULL);
		call_error(w->call, GRPC_UNAVAILABLE,
		    "cannot read the store for the snapshot");
		w->call = NULL;
		watcher_kill(w);
		return;
	}
	/* Live notices that came meanwhile were held: they follow. */
	if (rec->kind == BE_ENTRY && listed(rec->inc) &&
	    send_notice(w, KIND(SNAPSHOT), w->filter, w->filterlen, 1,
	    rec->level, rec->gen, rec->len, rec->expires, clock_now_ns()) != 0)
		return;
	snapshot_end(w);
}

static void
snapshot_answered(void *arg, int rv, const struct be_record *rec,
    struct lease *lease)
{
	struct lookup_ticket *t = arg;
	struct watcher *w = t->w;

	(void)lease;		/* none asked for */
	free(t);
	if (w == NULL)
		return;		/* freed meanwhile */
	w->ticket = NULL;
	if (!w->dead)
		snapshot_lookup(w, rv, rec);
}

void
watch_shared_data(struct call *call, ProtobufCMessage *msg)
{
	Alpcrun__V1__WatchRequest *req = (Alpcrun__V1__WatchRequest *)msg;
	struct cache_verdict v;
	struct watcher *w;
	struct be_record rec;
	uint64_t now = clock_now_ns(), dl;
	size_t len = req->has_session_id ? req->session_id.len : 0;

	if (len > 0 && cache_check_session(req->session_id.data, len, 1,
	    &v) != 0) {
		call_error(call, v.status, "%s", v.msg);
		goto out;
	}
	if (!W.started) {
		/* A node without prefetch: its copies are not kept up to
		 * date, so it announces none. */
		call_error(call, GRPC_UNIMPLEMENTED, "no change feed here "
		    "(a node serves it with prefetch on)");
		goto out;
	}
	if (W.draining) {
		call_error(call, GRPC_UNAVAILABLE, "server shutting down");
		goto out;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	STAILQ_INIT(&w->held);
	w->call = call;
	w->since = clock_now_ns();
	if (call_meta(call, "alpcrun-via") != NULL)
		snprintf(w->via, sizeof(w->via), "%s",
		    call_meta(call, "alpcrun-via"));
	w->filterlen = len;
	if (len > 0)
		memcpy(w->filter, req->session_id.data, len);
	TAILQ_INSERT_TAIL(&W.all, w, entry);
	W.nwatchers++;
	call_set_cancel(call, on_cancel, w);
	if ((dl = call_deadline(call)) != 0) {
		struct timeval tv;
		uint64_t left = dl > now ? dl - now : 0;

		tv.tv_sec = (time_t)(left / NS_PER_SEC);
		tv.tv_usec = (suseconds_t)(left % NS_PER_SEC / 1000);
		if ((w->deadline = evtimer_new(W.base, on_deadline, w)) !=
		    NULL)
			evtimer_add(w->deadline, &tv);
	}
	log_debug("watcher started", "session=%.*s", (int)len,
	    len > 0 ? (const char *)w->filter : "");
	if (len > 0) {
		/* One session: its snapshot is one lookup, now or later. */
		struct lookup_ticket *t;
		int rv;

		w->in_snapshot = 1;
		if ((t = malloc(sizeof(*t))) == NULL) {
			snapshot_lookup(w, -1, NULL);
			goto out;
		}
		t->w = w;
		rv = backend_lookup(W.be, w->filter, len, now, &rec, NULL,
		    snapshot_answered, t);
		if (rv == 1) {
			w->ticket = t;
			goto out;
		}
		free(t);
		snapshot_lookup(w, rv, &rec);
		goto out;
	}
	w->in_snapshot = 1;
	if ((w->scan = W.be->ops->scan_open(W.be)) == NULL) {
		call_set_cancel(call, NULL, NULL);
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		w->call = NULL;
		watcher_kill(w);
		goto out;
	}
	make_ready(w);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}

/* --- the change hook ------------------------------------------------------------- */

void
watch_backend_event(enum be_event ev, const uint8_t *key, size_t keylen,
    uint32_t level, uint64_t gen, size_t len)
{
	struct watcher *w;
	struct be_record rec;
	uint64_t expires = 0, now;
	int kind;

	if (!W.started || W.nwatchers == 0 ||
	    (kind = watch_kind_of(ev)) == 0)
		return;
	now = clock_now_ns();
	if ((kind == KIND(SET) || kind == KIND(UPDATE)) &&
	    W.be->ops->lookup(W.be, key, keylen, now, &rec, NULL) == 0 &&
	    rec.kind == BE_ENTRY && rec.level == level) {
		if (!listed(rec.inc))
			return;	/* a node stored a copy of a forgotten store */
		expires = rec.expires;
	}
	/* Nothing is freed during the walk: the dead wait for the pump. */
	TAILQ_FOREACH(w, &W.all, entry) {
		if (w->dead || (w->filterlen > 0 && (w->filterlen != keylen ||
		    memcmp(w->filter, key, keylen) != 0)))
			continue;
		if (w->in_snapshot)
			hold(w, kind, key, keylen, level, gen, len, expires);
		else
			send_notice(w, kind, key, keylen, 1, level, gen, len,
			    expires, now);
	}
}

void
watch_end_all(const char *why)
{
	struct watcher *w;

	if (!W.started)
		return;
	TAILQ_FOREACH(w, &W.all, entry) {
		if (w->dead)
			continue;
		call_set_cancel(w->call, NULL, NULL);
		call_set_writable(w->call, NULL, NULL, 0);
		call_error(w->call, GRPC_UNAVAILABLE, "%s", why);
		w->call = NULL;
		watcher_kill(w);
	}
}

void
watch_drain(void *unused)
{
	W.draining = 1;
}

void
watch_each(watch_each_fn *fn, void *arg)
{
	struct watcher *w;

	if (!W.started)
		return;
	TAILQ_FOREACH(w, &W.all, entry)
		if (!w->dead)
			fn(arg, call_peer(w->call), w->via, w->filter,
			    w->filterlen, w->seq,
			    call_queued(w->call) + w->held_bytes,
			    w->in_snapshot, w->since);
}

void
watch_stats(uint64_t *watchers, uint64_t *queued)
{
	struct watcher *w;

	*watchers = *queued = 0;
	if (!W.started)
		return;
	TAILQ_FOREACH(w, &W.all, entry)
		if (!w->dead) {
			(*watchers)++;
			*queued += call_queued(w->call) + w->held_bytes;
		}
}

uint64_t
watch_gauge_watchers(void *unused)
{
	uint64_t watchers, queued;

	watch_stats(&watchers, &queued);
	return watchers;
}

uint64_t
watch_gauge_queued(void *unused)
{
	uint64_t watchers, queued;

	watch_stats(&watchers, &queued);
	return queued;
}

/* --- life ---------------------------------------------------------------------- */

int
watch_init(struct event_base *base, struct backend *be,
    const struct config *conf, const struct watch_origin *origin)
{
	memset(&W, 0, sizeof(W));
	TAILQ_INIT(&W.all);
	TAILQ_INIT(&W.ready);
	W.base = base;
	W.be = be;
	if (origin != NULL)
		W.origin = *origin;
	W.buffer = conf->watch_buffer;
	if ((W.pump = event_new(base, -1, 0, pump_cb, NULL)) == NULL)
		return -1;
	W.started = 1;
	return 0;
}

void
watch_reconfigure(const struct config *conf)
{
	W.buffer = conf->watch_buffer;
}

void
watch_free(void)
{
	struct watcher *w;

	if (!W.started)
		return;
	while ((w = TAILQ_FIRST(&W.ready)) != NULL) {
		TAILQ_REMOVE(&W.ready, w, rentry);
		w->ready = 0;
	}
	while ((w = TAILQ_FIRST(&W.all)) != NULL)
		watcher_free(w);
	event_free(W.pump);
	W.pump = NULL;
	W.started = 0;
}
