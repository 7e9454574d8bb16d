/*
 * rules.h: the cache rules of spec §4, pure: request validation (session_id,
 * TTL) and the decision functions that turn a request and a key's current
 * record into a change and a status. No call, no backend, no clock: the
 * central cache's handlers (cache.c), node mode (node.c) and the change
 * feed (watch.c) apply them, and the unit tests drive them directly.
 *
 * The decide functions may run in a backend's writer thread, atomically with
 * applying their change (backend.h): they read only their arguments.
 */
#ifndef ALPCRUND_RULES_H
#define ALPCRUND_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "backend.h"
#include "grpc.h"		/* enum grpc_status, for verdicts */

#define SESSION_ID_MAX	256
#define VERDICT_MSG_MAX	512

struct cache_req {
	const uint8_t	*key;
	size_t		 keylen;
	int		 has_level;
	uint32_t	 level;
	const uint8_t	*data;		/* Set, Update: the payload */
	size_t		 len;
	uint64_t	 ttl_ns;	/* already defaulted and clamped */
	uint64_t	 gen;		/* Set, Update: the new content's
					   generation (backend.h) */
	uint64_t	 inc;		/* and its origin: the store's */
	/*
	 * A digest hashed off the loop before the write (src/util/digest.c):
	 * for a Set, of data; for a Delete, of the entry that was
	 * (digest_level, digest_len, digest_expires) when it was looked up.
	 * A decision uses it only when it still describes the record it sees,
	 * and hashes inline otherwise.
	 */
	int		 has_digest;
	uint32_t	 digest_level;
	size_t		 digest_len;
	uint64_t	 digest_expires;
	uint8_t		 digest[BE_DIGEST_LEN];
};

struct cache_verdict {
	int		 status;	/* enum grpc_status */
	char		 msg[VERDICT_MSG_MAX];
};

/* session_id: 1-256 bytes of printable ASCII without spaces. 0, or -1
 * with the INVALID_ARGUMENT verdict filled. */
int	 cache_check_session(const uint8_t *, size_t, int present,
	    struct cache_verdict *);
/* The TTL of a Set or Update (spec §4.5): absent or zero -> default_ttl,
 * above max_ttl -> max_ttl, negative or bad nanos -> INVALID_ARGUMENT. */
int	 cache_ttl(const struct Google__Protobuf__Duration *, uint64_t def_ms,
	    uint64_t max_ms, uint64_t *ns, struct cache_verdict *);

/* now + ttl_ns, or the current record's expiry if later (spec §4: what a
 * write leaves never ends before what was reported of the session). */
uint64_t cache_expiry(const struct be_record *cur, uint64_t now,
	    uint64_t ttl_ns);

void	 cache_decide_set(const struct cache_req *, const struct be_record *,
	    uint64_t now, struct be_change *, struct cache_verdict *);
void	 cache_decide_update(const struct cache_req *,
	    const struct be_record *, uint64_t now, struct be_change *,
	    struct cache_verdict *);
void	 cache_decide_delete(const struct cache_req *,
	    const struct be_record *, uint64_t now, struct be_change *,
	    struct cache_verdict *);

/* The TTL an entry expiring at `expires` has left as of now; at least 1 ns,
 * as an entry that is served is live. */
void	 cache_ttl_left(Google__Protobuf__Duration *, uint64_t expires,
	    uint64_t now);

/*
 * The alpcrun.v1.SharedData reply to a Get that found an entry, on central
 * and on a node alike: session_id, update_level, the TTL left, and the
 * payload LAST (field 3 after field 4: protobuf takes fields in any
 * order). cache_reply_head() writes the bytes before the payload, up to
 * its length; the payload itself follows by reference. Last, so that a
 * node forwarding a reply while it arrives (cut-through, node.c) knows
 * every other field before the first payload byte.
 */
#define CACHE_REPLY_HEAD_MAX	(1 + 2 + SESSION_ID_MAX + 1 + 5 + \
	1 + 1 + 11 + 6 + 1 + 5)
size_t	 cache_reply_head(uint8_t out[CACHE_REPLY_HEAD_MAX],
	    const uint8_t *key, size_t keylen, uint32_t level,
	    size_t payload_len, uint64_t expires, uint64_t now);

#endif
