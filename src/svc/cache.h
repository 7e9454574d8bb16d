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

#endif
