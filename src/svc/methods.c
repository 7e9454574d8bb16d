/*
 * methods.c: the method tables: which gRPC paths are served, by which
 * handler, with which request type and metrics label. A central serves
 * alpcrun.v1.Cache with cache.c's handlers, a node with node.c's (the mode
 * picks the table at start).
 */
#include <string.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "cache.h"
#include "grpc.h"
#include "health.h"
#include "node.h"
#include "watch.h"

static const struct method central_methods[] = {
	{ "/alpcrun.v1.Cache/GetSharedData", MM_GET,
	    &alpcrun__v1__shared_data__descriptor, cache_get, 0 },
	{ "/alpcrun.v1.Cache/SetSharedData", MM_SET,
	    &alpcrun__v1__shared_data__descriptor, cache_set, 0 },
	{ "/alpcrun.v1.Cache/UpdateSharedData", MM_UPDATE,
	    &alpcrun__v1__shared_data__descriptor, cache_update, 0 },
	{ "/alpcrun.v1.Cache/DeleteSharedData", MM_DELETE,
	    &alpcrun__v1__shared_data__descriptor, cache_delete, 0 },
	{ "/alpcrun.v1.Cache/WatchSharedData", MM_WATCH,
	    &alpcrun__v1__watch_request__descriptor, watch_shared_data,
	    METHOD_STREAMING },
	{ "/grpc.health.v1.Health/Check", MM_HEALTH_CHECK,
	    &grpc__health__v1__health_check_request__descriptor,
	    health_check, METHOD_NO_AUTH },
	{ "/grpc.health.v1.Health/Watch", MM_HEALTH_WATCH,
	    &grpc__health__v1__health_check_request__descriptor,
	    health_watch, METHOD_NO_AUTH | METHOD_STREAMING },
};

static const struct method node_methods[] = {
	{ "/alpcrun.v1.Cache/GetSharedData", MM_GET,
	    &alpcrun__v1__shared_data__descriptor, node_get, 0 },
	{ "/alpcrun.v1.Cache/SetSharedData", MM_SET,
	    &alpcrun__v1__shared_data__descriptor, node_set, 0 },
	{ "/alpcrun.v1.Cache/UpdateSharedData", MM_UPDATE,
	    &alpcrun__v1__shared_data__descriptor, node_update, 0 },
	{ "/alpcrun.v1.Cache/DeleteSharedData", MM_DELETE,
	    &alpcrun__v1__shared_data__descriptor, node_delete, 0 },
	{ "/grpc.health.v1.Health/Check", MM_HEALTH_CHECK,
	    &grpc__health__v1__health_check_request__descriptor,
	    health_check, METHOD_NO_AUTH },
	{ "/grpc.health.v1.Health/Watch", MM_HEALTH_WATCH,
	    &grpc__health__v1__health_check_request__descriptor,
	    health_watch, METHOD_NO_AUTH | METHOD_STREAMING },
};

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

static const struct method *methods = central_methods;
static size_t nmethods = NELEM(central_methods);

void
method_table_node(int on)
{
	methods = on ? node_methods : central_methods;
	nmethods = on ? NELEM(node_methods) : NELEM(central_methods);
}

const struct method *
method_find(const char *path, size_t len)
{
	size_t i;

	for (i = 0; i < nmethods; i++)
		if (strlen(methods[i].path) == len &&
		    memcmp(methods[i].path, path, len) == 0)
			return &methods[i];
	return NULL;
}
