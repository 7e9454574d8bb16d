/*
 * cache.c: the central cache's handlers of alpcrun.v1.Cache (spec §4): Set,
 * Update, Get and Delete, validated and decided by the rules of rules.c and
 * run through the backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "digest.h"
#include "grpc.h"
#include "identity.h"
#include "metrics.h"
#include "reads.h"
#include "rules.h"
#include "sdwire.h"

static struct backend *store;

/* Payloads from this size on are hashed by the digest worker rather than on
 * the loop; below it, hashing takes well under a millisecond. */
#define DIGEST_OFF_LOOP	(256 * 1024)
static uint64_t default_ttl_ms = 600000, max_ttl_ms = 600000;

#define V(v, code, ...) do {						\
	(v)->status = (code);						\
	snprintf((v)->msg, sizeof((v)->msg), __VA_ARGS__);		\
} while (0)

/* --- handlers -------------------------------------------------------------- */

struct cache_op {
	struct call		*call;
	Alpcrun__V1__SharedData	*req;
	struct cache_req	 r;
	struct cache_verdict	 v;
	void			(*decide)(const struct cache_req *,
				    const struct be_record *, uint64_t,
				    struct be_change *, struct cache_verdict *);
	struct be_write		 w;
	struct lease		 lease;		/* Delete: the entry hashed */
};

static void
op_decide(void *arg, const struct be_record *cur, uint64_t now,
    struct be_change *chg)
{
	struct cache_op *op = arg;

	op->decide(&op->r, cur, now, chg, &op->v);
	/* The payload lies in the request's body: the backend may keep that
	 * buffer as it is. */
	if (chg->action == BE_PUT)
		chg->adopt = sdwire_body(op->req);
}

static void
op_done(void *arg, int err, const char *errmsg)
{
	struct cache_op *op = arg;
	Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;

	/* The backend kept the body: it is no longer ours. */
	if (op->w.chg.action == BE_PUT && op->w.chg.adopt == NULL &&
	    err == BE_OK)
		sdwire_body_taken(op->req);
	if (err == BE_ERR_FULL)
		call_error(op->call, GRPC_RESOURCE_EXHAUSTED, "%s", errmsg);
	else if (err == BE_ERR_UNAVAIL)	/* the client may retry */
		call_error(op->call, GRPC_UNAVAILABLE, "%s", errmsg);
	else if (err != BE_OK)
		call_error(op->call, GRPC_INTERNAL, "%s", errmsg);
	else if (op->v.status != GRPC_OK)
		call_error(op->call, op->v.status, "%s", op->v.msg);
	else
		call_reply(op->call, &empty.base, NULL);
	sdwire_free(&op->req->base);
	free(op);
}

static void
op_write(struct cache_op *op)
{
	op->w.key = op->r.key;
	op->w.keylen = op->r.keylen;
	op->w.decide = op_decide;
	op->w.done = op_done;
	op->w.arg = op;
	if (store->ops->write(store, &op->w) != 0) {
		call_error(op->call, GRPC_UNAVAILABLE, "store unavailable");
		sdwire_free(&op->req->base);
		free(op);
	}
}

static void
op_hashed(void *arg, const uint8_t digest[DIGEST_LEN])
{
	struct cache_op *op = arg;

	memcpy(op->r.digest, digest, BE_DIGEST_LEN);
	op->r.has_digest = 1;
	lease_release(&op->lease);
	op_write(op);
}

/*
 * A write that will need a digest of a large payload has it made by the
 * digest worker first, so that the decision (on the loop, for the memory
 * backend) only compares: a Delete of an entry, a Set at the level of a
 * tombstone. 1: the write goes on from op_hashed(). Only what the backend
 * can answer at once: lookup(), never backend_lookup() (a backend that
 * would have to ask its store answers -1, and the write goes on unhashed:
 * s3 hands decide() the stored digest itself).
 */
static int
op_prehash(struct cache_op *op)
{
	struct be_record rec;
	int del = op->decide == cache_decide_delete;

	if (!del && op->r.len < DIGEST_OFF_LOOP)
		return 0;
	if (store->ops->lookup(store, op->r.key, op->r.keylen, clock_now_ns(),
	    &rec, del ? &op->lease : NULL) != 0)
		return 0;
	if (del && rec.kind == BE_ENTRY && rec.len >= DIGEST_OFF_LOOP) {
		op->r.digest_level = rec.level;
		op->r.digest_len = rec.len;
		op->r.digest_expires = rec.expires;
		if (digest_start(op->lease.data, op->lease.len, op_hashed,
		    op) == 0)
			return 1;
	} else if (!del && rec.kind == BE_TOMBSTONE &&
	    rec.level == op->r.level) {
		if (digest_start(op->r.data, op->r.len, op_hashed, op) == 0)
			return 1;
	}
	lease_release(&op->lease);
	return 0;
}

/* Validate a write request and run it through the backend. */
static void
cache_write(struct call *call, ProtobufCMessage *msg, int need_level,
    void (*decide)(const struct cache_req *, const struct be_record *,
    uint64_t, struct be_change *, struct cache_verdict *))
{
	Alpcrun__V1__SharedData *req = (Alpcrun__V1__SharedData *)msg;
	struct cache_op *op;
	struct cache_verdict v;
	uint64_t ttl = 0;

	if (cache_check_session(req->session_id.data, req->session_id.len,
	    req->has_session_id, &v) != 0)
		goto refuse;
	if (need_level && !req->has_update_level) {
		V(&v, GRPC_INVALID_ARGUMENT, "update_level is required");
		goto refuse;
	}
	if (need_level && cache_ttl(req->ttl, default_ttl_ms, max_ttl_ms,
	    &ttl, &v) != 0)
		goto refuse;
	if ((op = calloc(1, sizeof(*op))) == NULL) {
		V(&v, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto refuse;
	}
	op->call = call;
	op->req = req;
	op->decide = decide;
	op->r.key = req->session_id.data;
	op->r.keylen = req->session_id.len;
	op->r.has_level = req->has_update_level;
	op->r.level = req->update_level;
	op->r.data = req->payload.data;
	op->r.len = req->payload.len;
	op->r.ttl_ns = ttl;
	/* Drawn for every write: used only when it stores new content. */
	if (need_level)
		op->r.gen = backend_random_id();
	op->r.inc = store->incarnation;
	if (decide != cache_decide_update && op_prehash(op))
		return;
	op_write(op);
	return;
refuse:
	call_error(call, v.status, "%s", v.msg);
	sdwire_free(msg);
}

void
cache_set(struct call *call, ProtobufCMessage *msg)
{
	cache_write(call, msg, 1, cache_decide_set);
}

void
cache_update(struct call *call, ProtobufCMessage *msg)
{
	cache_write(call, msg, 1, cache_decide_update);
}

void
cache_delete(struct call *call, ProtobufCMessage *msg)
{
	cache_write(call, msg, 0, cache_decide_delete);
}

void
cache_reply(struct call *call, const uint8_t *key, size_t keylen,
    uint32_t level, uint64_t gen, uint64_t expires, uint64_t now,
    struct lease *lease)
{
	uint8_t head[CACHE_REPLY_HEAD_MAX];
	size_t hl;
	char hex[IDENTITY_HEX];

	/* Which content this is (identity.h), for nodes. */
	if (gen != 0) {
		identity_format(gen, hex);
		call_set_meta(call, META_GENERATION, hex);
	}
	hl = cache_reply_head(head, key, keylen, level, lease->len, expires,
	    now);
	switch (call_message_begin(call, hl + lease->len)) {
	case 0:
		break;
	case -2:
		lease_release(lease);
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "reply of %zu bytes "
		    "exceeds max_message_size", hl + lease->len);
		return;
	default:
		lease_release(lease);
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (call_message_add(call, head, hl, NULL) != 0) {
		lease_release(lease);
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	/* The payload by reference, under the lease. */
	if (call_message_add(call, lease->data, lease->len, lease) != 0) {
		call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	call_message_end(call);
}

/* A Get's answer, now or later: the reply, or the refusal. */
static void
get_answer(struct call *call, Alpcrun__V1__SharedData *req, int rv,
    const struct be_record *rec, struct lease *lease)
{
	if (rv != 0) {
		/* A remote store (one that may answer later) may come
		 * back: UNAVAILABLE, which clients retry. */
		if (store->ops->lookup_start != NULL)
			call_error(call, GRPC_UNAVAILABLE, "store lookup "
			    "failed");
		else
			call_error(call, GRPC_INTERNAL, "store lookup failed");
		return;
	}
	if (rec->kind != BE_ENTRY) {
		metrics_count(MC_CACHE_MISSES, 1);
		call_error(call, GRPC_NOT_FOUND, "shared data not found for "
		    "session %.*s", (int)req->session_id.len,
		    req->session_id.data);
		return;
	}
	if (req->has_update_level && req->update_level != rec->level) {
		lease_release(lease);
		call_error(call, GRPC_FAILED_PRECONDITION, "update level "
		    "mismatch: expected %u, got %u", rec->level,
		    req->update_level);
		return;
	}
	metrics_count(MC_CACHE_HITS, 1);
	reads_hit(req->session_id.data, req->session_id.len);
	cache_reply(call, req->session_id.data, req->session_id.len,
	    rec->level, rec->gen, rec->expires, clock_now_ns(), lease);
}

/*
 * A Get kept until its backend answers (backend_lookup_flow() said 1),
 * and, when the answer is an entry whose payload is in flight (backend.h
 * "Payloads in flight"), until the payload's last bytes: the reply is
 * begun at once and its bytes sent on by lease as they come, so that a
 * large payload's first byte reaches the client before the store sent its
 * last; a payload that fails its check ends the reply with an error
 * status after the bytes sent (a message cut short), never OK. call is
 * NULL once the call is finished (the flow still runs to its end).
 */
struct get_op {
	struct call		*call;
	Alpcrun__V1__SharedData	*req;
};

static void
get_free(struct get_op *g)
{
	sdwire_free(&g->req->base);
	free(g);
}

/* An entry whose bytes follow: the reply's head now. 0, or -1 when the
 * call is finished. */
static int
get_begin(struct get_op *g, const struct be_record *rec)
{
	uint8_t head[CACHE_REPLY_HEAD_MAX];
	char hex[IDENTITY_HEX];
	size_t hl;
	int rv;

	if (rec->gen != 0) {
		identity_format(rec->gen, hex);
		call_set_meta(g->call, META_GENERATION, hex);
	}
	hl = cache_reply_head(head, g->req->session_id.data,
	    g->req->session_id.len, rec->level, rec->len, rec->expires,
	    clock_now_ns());
	if ((rv = call_message_begin(g->call, hl + rec->len)) == -2)
		call_error(g->call, GRPC_RESOURCE_EXHAUSTED, "reply of %zu "
		    "bytes exceeds max_message_size", hl + rec->len);
	else if (rv != 0 || call_message_add(g->call, head, hl, NULL) != 0)
		call_error(g->call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else {
		call_message_flush(g->call);
		return 0;
	}
	g->call = NULL;
	return -1;
}

static void
get_flow(void *arg, struct lease *bytes, int end, const char *errmsg)
{
	struct get_op *g = arg;

	if (g->call == NULL || end == -1)
		lease_release(bytes);
	else if (bytes != NULL && bytes->len > 0) {
		if (call_message_add(g->call, bytes->data, bytes->len,
		    bytes) != 0) {
			/* The stream went (or no memory): the bytes to come
			 * are dropped. */
			call_error(g->call, GRPC_RESOURCE_EXHAUSTED, "out of "
			    "memory");
			g->call = NULL;
		} else if (end == 0)
			call_message_flush(g->call);
	} else
		lease_release(bytes);
	if (end == 0)
		return;
	if (g->call != NULL && end == 1)
		call_message_end(g->call);
	else if (g->call != NULL)
		call_error(g->call, GRPC_UNAVAILABLE, "store lookup failed: %s",
		    errmsg);
	get_free(g);
}

static void
get_answered(void *arg, int rv, const struct be_record *rec,
    struct lease *lease)
{
	struct get_op *g = arg;

	/* Finishing a call whose stream went meanwhile only frees it. */
	if (rv == 0 && rec->kind == BE_ENTRY && rec->data == NULL &&
	    lease != NULL && lease->data == NULL) {
		/* get_flow() frees g */
		if (g->req->has_update_level &&
		    g->req->update_level != rec->level) {
			get_answer(g->call, g->req, rv, rec, lease);
			g->call = NULL;
		} else {
			metrics_count(MC_CACHE_HITS, 1);
			reads_hit(g->req->session_id.data,
			    g->req->session_id.len);
			(void)get_begin(g, rec);
		}
		return;
	}
	get_answer(g->call, g->req, rv, rec, lease);
	get_free(g);
}

void
cache_get(struct call *call, ProtobufCMessage *msg)
{
	Alpcrun__V1__SharedData *req = (Alpcrun__V1__SharedData *)msg;
	struct be_record rec;
	struct lease lease = { 0 };
	struct cache_verdict v;
	struct get_op *g = NULL;
	int rv;

	if (cache_check_session(req->session_id.data, req->session_id.len,
	    req->has_session_id, &v) != 0) {
		call_error(call, v.status, "%s", v.msg);
		goto out;
	}
	/* Only a backend that may answer later costs an allocation: the
	 * 1 KiB Get of memory and lmdb stays on the stack. */
	if (store->ops->lookup_start != NULL) {
		if ((g = calloc(1, sizeof(*g))) == NULL) {
			call_error(call, GRPC_RESOURCE_EXHAUSTED, "out of "
			    "memory");
			goto out;
		}
		g->call = call;
		g->req = req;
	}
	rv = backend_lookup_flow(store, req->session_id.data,
	    req->session_id.len, clock_now_ns(), &rec, &lease, get_answered,
	    get_flow, g);
	if (rv == 1)
		return;		/* get_answered() finishes it */
	free(g);
	get_answer(call, req, rv, &rec, &lease);
out:
	sdwire_free(msg);
}

void
cache_reconfigure(const struct config *conf)
{
	default_ttl_ms = conf->default_ttl;
	max_ttl_ms = conf->max_ttl;
}

void
cache_init(struct backend *be, const struct config *conf)
{
	char inc[IDENTITY_HEX];

	store = be;
	cache_reconfigure(conf);
	/* Every response of a central names its store (spec §4): a node
	 * that sees another incarnation than its copies came from drops
	 * them. A node names its central's (node.c). */
	if (conf->mode == MODE_CENTRAL) {
		identity_format(be->incarnation, inc);
		grpc_server_set_meta(META_INCARNATION, inc);
	}
}
