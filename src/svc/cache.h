/*
 * cache.h: the cache semantics of spec §4 on the central cache: request
 * validation (session_id, update_level, TTL) and the decision functions that
 * turn a request and the key's current record into a change and a status,
 * plus the four RPC handlers built on them.
 *
 * The decide functions are pure: the backend may run them in its writer
 * thread, atomically with applying their change (backend.h).
 */
#ifndef ALPCRUND_CACHE_H
#define ALPCRUND_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "grpc.h"

struct config;
struct Google__Protobuf__Duration;

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
	/*
	 * A digest hashed off the loop before the write (src/digest.c): for
	 * a Set, of data; for a Delete, of the entry that was (digest_level,
	 * digest_len, digest_expires) when it was looked up. A decision uses
	 * it only when it still describes the record it sees, and hashes
	 * inline otherwise.
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

void	 cache_decide_set(const struct cache_req *, const struct be_record *,
	    uint64_t now, struct be_change *, struct cache_verdict *);
void	 cache_decide_update(const struct cache_req *,
	    const struct be_record *, uint64_t now, struct be_change *,
	    struct cache_verdict *);
void	 cache_decide_delete(const struct cache_req *,
	    const struct be_record *, uint64_t now, struct be_change *,
	    struct cache_verdict *);

/* The handlers of alpcrun.v1.Cache on the central cache. */
void	 cache_init(struct backend *, const struct config *);
void	 cache_reconfigure(const struct config *);
method_handler cache_set, cache_update, cache_get, cache_delete;

#endif
