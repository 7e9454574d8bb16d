/*
 * cache.h: the central cache's handlers of alpcrun.v1.Cache (spec §4). The
 * rules they apply (validation, the Set/Update/Delete decisions) are in
 * rules.h.
 */
#ifndef ALPCRUND_CACHE_H
#define ALPCRUND_CACHE_H

#include "backend.h"
#include "grpc.h"

struct config;

/* The handlers of alpcrun.v1.Cache on the central cache. */
void	 cache_init(struct backend *, const struct config *);
void	 cache_reconfigure(const struct config *);
method_handler cache_set, cache_update, cache_get, cache_delete;
/*
 * Answer a Get with an entry (central, and a node's copy): the generation
 * header (gen 0: none), then the reply of rules.h (cache_reply_head())
 * with the payload sent by reference under lease, which the call takes.
 */
void	 cache_reply(struct call *, const uint8_t *key, size_t keylen,
	    uint32_t level, uint64_t gen, uint64_t expires, uint64_t now,
	    struct lease *);

#endif
