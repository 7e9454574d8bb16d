/*
 * cache.c: the cache semantics of spec §4 (Set, Update, Get, Delete,
 * tombstones, TTL) as pure decision functions over a key's current record,
 * and the central cache's RPC handlers that run them through the backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "digest.h"
#include "grpc.h"
#include "metrics.h"

static struct backend *store;

/* Payloads from this size on are hashed by the digest worker rather than on
 * the loop; below it, hashing takes well under a millisecond. */
#define DIGEST_OFF_LOOP	(256 * 1024)
static uint64_t default_ttl_ms = 600000, max_ttl_ms = 600000;

#define V(v, code, ...) do {						\
	(v)->status = (code);						\
	snprintf((v)->msg, sizeof((v)->msg), __VA_ARGS__);		\
} while (0)

/* --- validation ------------------------------------------------------------ */

int
cache_check_session(const uint8_t *id, size_t len, int present,
    struct cache_verdict *v)
{
	size_t i;

	if (!present || len == 0) {
		V(v, GRPC_INVALID_ARGUMENT, "session_id is required");
		return -1;
	}
	if (len > SESSION_ID_MAX) {
		V(v, GRPC_INVALID_ARGUMENT, "session_id is %zu bytes; at most "
		    "%d are allowed", len, SESSION_ID_MAX);
		return -1;
	}
	/* Printable ASCII without space: this also refuses an embedded NUL,
	 * which is why the C twin carries session_id as bytes. */
	for (i = 0; i < len; i++)
		if (id[i] <= 0x20 || id[i] >= 0x7f) {
			V(v, GRPC_INVALID_ARGUMENT, "session_id must be "
			    "printable ASCII without spaces (byte %zu is "
			    "0x%02x)", i, id[i]);
			return -1;
		}
	return 0;
}

int
cache_ttl(const Google__Protobuf__Duration *d, uint64_t def_ms,
    uint64_t max_ms, uint64_t *ns, struct cache_verdict *v)
{
	uint64_t t;

	if (d == NULL || (d->seconds == 0 && d->nanos == 0)) {
		t = def_ms * NS_PER_MS;
	} else {
		if (d->nanos <= -1000000000 || d->nanos >= 1000000000 ||
		    (d->seconds > 0 && d->nanos < 0) ||
		    (d->seconds < 0 && d->nanos > 0)) {
			V(v, GRPC_INVALID_ARGUMENT, "ttl nanos %d out of "
			    "range", d->nanos);
			return -1;
		}
		if (d->seconds < 0 || d->nanos < 0) {
			V(v, GRPC_INVALID_ARGUMENT, "ttl must not be "
			    "negative");
			return -1;
		}
		if ((uint64_t)d->seconds >= UINT64_MAX / NS_PER_SEC / 2)
			t = UINT64_MAX / 2;
		else
			t = (uint64_t)d->seconds * NS_PER_SEC +
			    (uint64_t)d->nanos;
	}
	/* Above max_ttl is clamped, not refused (spec §4.5). */
	if (t > max_ms * NS_PER_MS)
		t = max_ms * NS_PER_MS;
	*ns = t;
	return 0;
}

/* --- decisions (pure; may run in a backend's writer thread) --------------- */

static int
same_payload(const struct cache_req *r, const struct be_record *cur)
{
	/* The retry path compares bytes directly (spec §4.1). */
	return cur->len == r->len &&
	    (r->len == 0 || memcmp(cur->data, r->data, r->len) == 0);
}

static void
put(const struct cache_req *r, uint64_t now, struct be_change *chg)
{
	chg->action = BE_PUT;
	chg->level = r->level;
	chg->expires = now + r->ttl_ns;
	chg->data = r->data;
	chg->len = r->len;
}

static void
touch(const struct cache_req *r, uint64_t now, struct be_change *chg)
{
	chg->action = BE_TOUCH;
	chg->level = r->level;
	chg->expires = now + r->ttl_ns;
}

void
cache_decide_set(const struct cache_req *r, const struct be_record *cur,
    uint64_t now, struct be_change *chg, struct cache_verdict *v)
{
	uint8_t digest[BE_DIGEST_LEN];
	int id = (int)r->keylen;

	chg->action = BE_KEEP;
	v->status = GRPC_OK;
	v->msg[0] = '\0';
	switch (cur->kind) {
	case BE_ENTRY:
		if (cur->level == r->level && same_payload(r, cur)) {
			touch(r, now, chg);	/* a retry: TTL restarts */
			return;
		}
		V(v, GRPC_ALREADY_EXISTS, "shared data already exists for "
		    "session %.*s at update level %u", id, r->key, cur->level);
		return;
	case BE_TOMBSTONE:
		if (r->level > cur->level) {
			put(r, now, chg);
			return;
		}
		/* Not the normal path: only a Set at the deleted level pays
		 * for a digest, to see whether it revives the same content. */
		if (r->level == cur->level) {
			if (r->has_digest)
				memcpy(digest, r->digest, sizeof(digest));
			else
				SHA256(r->data, r->len, digest);
			if (memcmp(digest, cur->digest, sizeof(digest)) == 0) {
				put(r, now, chg);
				return;
			}
		}
		V(v, GRPC_FAILED_PRECONDITION, "shared data for session %.*s "
		    "was deleted at update level %u; set update level %llu or "
		    "higher", id, r->key, cur->level,
		    (unsigned long long)cur->level + 1);
		return;
	case BE_NONE:
		put(r, now, chg);
		return;
	}
}

void
cache_decide_update(const struct cache_req *r, const struct be_record *cur,
    uint64_t now, struct be_change *chg, struct cache_verdict *v)
{
	int id = (int)r->keylen;

	chg->action = BE_KEEP;
	v->status = GRPC_OK;
	v->msg[0] = '\0';
	if (cur->kind != BE_ENTRY) {
		V(v, GRPC_NOT_FOUND, "shared data not found for session %.*s",
		    id, r->key);
		return;
	}
	if (cur->level != UINT32_MAX && r->level == cur->level + 1) {
		put(r, now, chg);
		return;
	}
	if (r->level == cur->level && same_payload(r, cur)) {
		touch(r, now, chg);	/* a retry: TTL restarts */
		return;
	}
	if (cur->level == UINT32_MAX) {
		V(v, GRPC_FAILED_PRECONDITION, "update level exhausted for "
		    "session %.*s", id, r->key);
		return;
	}
	V(v, GRPC_FAILED_PRECONDITION, "update level mismatch: expected %u, "
	    "got %u", cur->level + 1, r->level);
}

void
cache_decide_delete(const struct cache_req *r, const struct be_record *cur,
    uint64_t now, struct be_change *chg, struct cache_verdict *v)
{
	chg->action = BE_KEEP;
	v->status = GRPC_OK;
	v->msg[0] = '\0';
	if (cur->kind != BE_ENTRY) {
		V(v, GRPC_NOT_FOUND, "shared data not found for session %.*s",
		    (int)r->keylen, r->key);
		return;
	}
	/* The tombstone lives as long as the entry would have, so that no
	 * node copy of this level can outlive it (spec §4). */
	chg->action = BE_PUT_TOMBSTONE;
	chg->level = cur->level;
	chg->expires = cur->expires;
	/* The entry hashed before the write, unless another took its place
	 * meanwhile (a new entry has a new expiry). */
	if (r->has_digest && r->digest_level == cur->level &&
	    r->digest_len == cur->len && r->digest_expires == cur->expires)
		memcpy(chg->digest, r->digest, BE_DIGEST_LEN);
	else
		SHA256(cur->data, cur->len, chg->digest);
}

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
	if (chg->action == BE_PUT)
		chg->adopt = op->req->payload.data;
}

static void
op_done(void *arg, int err, const char *errmsg)
{
	struct cache_op *op = arg;
	Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;

	/* The backend kept the unpacked payload: it is no longer ours. */
	if (op->w.chg.action == BE_PUT && op->w.chg.adopt == NULL &&
	    err == BE_OK) {
		op->req->payload.data = NULL;
		op->req->payload.len = 0;
	}
	if (err == BE_ERR_FULL)
		call_error(op->call, GRPC_RESOURCE_EXHAUSTED, "%s", errmsg);
	else if (err != BE_OK)
		call_error(op->call, GRPC_INTERNAL, "%s", errmsg);
	else if (op->v.status != GRPC_OK)
		call_error(op->call, op->v.status, "%s", op->v.msg);
	else
		call_reply(op->call, &empty.base, NULL);
	protobuf_c_message_free_unpacked(&op->req->base, NULL);
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
		protobuf_c_message_free_unpacked(&op->req->base, NULL);
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
 * tombstone. 1: the write goes on from op_hashed().
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
	if (decide != cache_decide_update && op_prehash(op))
		return;
	op_write(op);
	return;
refuse:
	call_error(call, v.status, "%s", v.msg);
	protobuf_c_message_free_unpacked(msg, NULL);
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
cache_get(struct call *call, ProtobufCMessage *msg)
{
	Alpcrun__V1__SharedData *req = (Alpcrun__V1__SharedData *)msg;
	Alpcrun__V1__SharedData reply = ALPCRUN__V1__SHARED_DATA__INIT;
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	struct be_record rec;
	struct lease lease = { 0 };
	struct cache_verdict v;
	uint64_t now = clock_now_ns(), left;

	if (cache_check_session(req->session_id.data, req->session_id.len,
	    req->has_session_id, &v) != 0) {
		call_error(call, v.status, "%s", v.msg);
		goto out;
	}
	if (store->ops->lookup(store, req->session_id.data,
	    req->session_id.len, now, &rec, &lease) != 0) {
		call_error(call, GRPC_INTERNAL, "store lookup failed");
		goto out;
	}
	if (rec.kind != BE_ENTRY) {
		metrics_count(MC_CACHE_MISSES, 1);
		call_error(call, GRPC_NOT_FOUND, "shared data not found for "
		    "session %.*s", (int)req->session_id.len,
		    req->session_id.data);
		goto out;
	}
	if (req->has_update_level && req->update_level != rec.level) {
		lease_release(&lease);
		call_error(call, GRPC_FAILED_PRECONDITION, "update level "
		    "mismatch: expected %u, got %u", rec.level,
		    req->update_level);
		goto out;
	}
	metrics_count(MC_CACHE_HITS, 1);
	left = rec.expires > now ? rec.expires - now : 1;
	ttl.seconds = (int64_t)(left / NS_PER_SEC);
	ttl.nanos = (int32_t)(left % NS_PER_SEC);
	reply.has_session_id = 1;
	reply.session_id = req->session_id;
	reply.has_update_level = 1;
	reply.update_level = rec.level;
	reply.has_payload = 1;
	reply.payload.data = (uint8_t *)lease.data;	/* sent by reference */
	reply.payload.len = lease.len;
	reply.ttl = &ttl;
	call_reply(call, &reply.base, &lease);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
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
	store = be;
	cache_reconfigure(conf);
}
