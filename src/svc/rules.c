/*
 * rules.c: the cache rules of spec §4 (Set, Update, Delete, tombstones,
 * TTL, session_id) as pure functions over a request and a key's current
 * record, and the SharedData reply to a Get; cache.c and node.c apply them
 * (rules.h).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "clock.h"
#include "rules.h"

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

/*
 * --- decisions (pure; may run in a backend's writer thread) ---------------
 *
 * Each fills the whole verdict and the change's action from its arguments
 * alone, so a backend that decides again after losing a race (backend.h)
 * gets the answer for the newest record, nothing left from the first call.
 */

/* The request's payload's SHA-256: hashed before the write when it is
 * large (cache.c), else here. */
static void
req_digest(const struct cache_req *r, uint8_t digest[BE_DIGEST_LEN])
{
	if (r->has_digest)
		memcpy(digest, r->digest, BE_DIGEST_LEN);
	else
		SHA256(r->data, r->len, digest);
}

static int
same_payload(const struct cache_req *r, const struct be_record *cur)
{
	uint8_t digest[BE_DIGEST_LEN];

	if (cur->len != r->len)
		return 0;
	/* The retry path compares bytes directly (spec §4.1), or digests
	 * when the backend does not have the stored bytes at hand
	 * (backend.h): still only on this path. */
	if (cur->data == NULL) {
		req_digest(r, digest);
		return memcmp(digest, cur->digest, BE_DIGEST_LEN) == 0;
	}
	return r->len == 0 || memcmp(cur->data, r->data, r->len) == 0;
}

/*
 * The expiry of what a write leaves: now + ttl, but never before the
 * current record's (spec §4). Every copy a node took of this session's
 * levels expires no later than the record did when it was taken, and a
 * record's expiry only ever moves later, so as long as the record (entry or
 * tombstone) lives no copy of an older level outlives it, and no level can
 * be set again with other bytes while a copy of it is served. A shorter ttl
 * on a retry or an Update therefore does not shorten the session's life.
 */
uint64_t
cache_expiry(const struct be_record *cur, uint64_t now, uint64_t ttl_ns)
{
	uint64_t e = now + ttl_ns;

	if (cur->kind != BE_NONE && cur->expires > e)
		e = cur->expires;
	return e;
}

static void
put(const struct cache_req *r, const struct be_record *cur, uint64_t now,
    struct be_change *chg)
{
	chg->action = BE_PUT;
	chg->level = r->level;
	chg->gen = r->gen;
	chg->inc = r->inc;
	chg->expires = cache_expiry(cur, now, r->ttl_ns);
	chg->data = r->data;
	chg->len = r->len;
}

static void
touch(const struct cache_req *r, const struct be_record *cur, uint64_t now,
    struct be_change *chg)
{
	chg->action = BE_TOUCH;
	chg->level = r->level;
	chg->expires = cache_expiry(cur, now, r->ttl_ns);
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
			touch(r, cur, now, chg);	/* a retry: the TTL restarts */
			return;
		}
		V(v, GRPC_ALREADY_EXISTS, "shared data already exists for "
		    "session %.*s at update level %u", id, r->key, cur->level);
		return;
	case BE_TOMBSTONE:
		if (r->level > cur->level) {
			put(r, cur, now, chg);
			return;
		}
		/* Not the normal path: only a Set at the deleted level pays
		 * for a digest, to see whether it revives the same content. */
		if (r->level == cur->level) {
			req_digest(r, digest);
			if (memcmp(digest, cur->digest, sizeof(digest)) == 0) {
				put(r, cur, now, chg);
				return;
			}
		}
		V(v, GRPC_FAILED_PRECONDITION, "shared data for session %.*s "
		    "was deleted at update level %u; set update level %llu or "
		    "higher", id, r->key, cur->level,
		    (unsigned long long)cur->level + 1);
		return;
	case BE_NONE:
		put(r, cur, now, chg);
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
		put(r, cur, now, chg);
		return;
	}
	if (r->level == cur->level && same_payload(r, cur)) {
		touch(r, cur, now, chg);	/* a retry: the TTL restarts */
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
	if (cur->data == NULL)		/* the backend's own (backend.h) */
		memcpy(chg->digest, cur->digest, BE_DIGEST_LEN);
	else if (r->has_digest && r->digest_level == cur->level &&
	    r->digest_len == cur->len && r->digest_expires == cur->expires)
		memcpy(chg->digest, r->digest, BE_DIGEST_LEN);
	else
		SHA256(cur->data, cur->len, chg->digest);
}

/* --- replies -------------------------------------------------------------- */

void
cache_ttl_left(Google__Protobuf__Duration *ttl, uint64_t expires,
    uint64_t now)
{
	uint64_t left = expires > now ? expires - now : 1;

	google__protobuf__duration__init(ttl);
	ttl->seconds = (int64_t)(left / NS_PER_SEC);
	ttl->nanos = (int32_t)(left % NS_PER_SEC);
}

size_t
cache_reply_head(uint8_t out[CACHE_REPLY_HEAD_MAX], const uint8_t *key,
    size_t keylen, uint32_t level, size_t payload_len, uint64_t expires,
    uint64_t now)
{
	Alpcrun__V1__SharedData msg = ALPCRUN__V1__SHARED_DATA__INIT;
	Google__Protobuf__Duration ttl;
	size_t n;

	cache_ttl_left(&ttl, expires, now);
	msg.has_session_id = 1;
	msg.session_id.data = (uint8_t *)(uintptr_t)key;
	msg.session_id.len = keylen;
	msg.has_update_level = 1;
	msg.update_level = level;
	msg.ttl = &ttl;
	/* Fields 1, 2 and 4 by protobuf-c, then the payload's tag and
	 * length: the bytes follow. */
	n = protobuf_c_message_pack(&msg.base, out);
	out[n++] = (3 << 3) | 2;
	do {
		out[n++] = (uint8_t)((payload_len & 0x7f) |
		    (payload_len > 0x7f ? 0x80 : 0));
		payload_len >>= 7;
	} while (payload_len > 0);
	return n;
}
