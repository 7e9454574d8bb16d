/*
 * methods.c: the one table of gRPC methods: path, metrics label, request
 * type, a handler column per mode (central's in cache.c, a node's in
 * node.c; watch.c's and health.c's in both: watch.c answers UNIMPLEMENTED
 * itself on a node without prefetch) and the request's in-place decoder
 * (SharedData: sdwire.h), whose free the handlers of both modes use. A
 * method without a handler in a mode is not served there (UNIMPLEMENTED).
 * main.c hands the mode's rows to the call layer (grpc_server_configure()).
 */
#include <string.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "cache.h"
#include "grpc.h"
#include "health.h"
#include "methods.h"
#include "node.h"
#include "sdwire.h"
#include "watch.h"

struct method_row {
	const char			 *path;
	enum metric_method		  metric;
	const ProtobufCMessageDescriptor *request;
	method_handler			 *central;
	method_handler			 *node;
	method_decoder			 *decode;
	int				  flags;
};

static const struct method_row rows[] = {
	{ "/alpcrun.v1.Cache/GetSharedData", MM_GET,
	    &alpcrun__v1__shared_data__descriptor, cache_get, node_get,
	    sdwire_decode, 0 },
	{ "/alpcrun.v1.Cache/SetSharedData", MM_SET,
	    &alpcrun__v1__shared_data__descriptor, cache_set, node_set,
	    sdwire_decode, 0 },
	{ "/alpcrun.v1.Cache/UpdateSharedData", MM_UPDATE,
	    &alpcrun__v1__shared_data__descriptor, cache_update, node_update,
	    sdwire_decode, 0 },
	{ "/alpcrun.v1.Cache/DeleteSharedData", MM_DELETE,
	    &alpcrun__v1__shared_data__descriptor, cache_delete, node_delete,
	    sdwire_decode, 0 },
	{ "/alpcrun.v1.Cache/WatchSharedData", MM_WATCH,
	    &alpcrun__v1__watch_request__descriptor, watch_shared_data,
	    watch_shared_data, NULL, METHOD_STREAMING },
	{ "/grpc.health.v1.Health/Check", MM_HEALTH_CHECK,
	    &grpc__health__v1__health_check_request__descriptor,
	    health_check, health_check, NULL, METHOD_NO_AUTH },
	{ "/grpc.health.v1.Health/Watch", MM_HEALTH_WATCH,
	    &grpc__health__v1__health_check_request__descriptor,
	    health_watch, health_watch, NULL,
	    METHOD_NO_AUTH | METHOD_STREAMING },
};

#define NROWS	(sizeof(rows) / sizeof(rows[0]))

static struct method served[2][NROWS];
static size_t nserved[2];

const struct method *
methods_for(int node, size_t *n)
{
	size_t i, k = 0;

	node = node != 0;
	if (nserved[node] == 0) {
		for (i = 0; i < NROWS; i++) {
			method_handler *h = node ? rows[i].node :
			    rows[i].central;

			if (h == NULL)
				continue;
			served[node][k].path = rows[i].path;
			served[node][k].metric = rows[i].metric;
			served[node][k].request = rows[i].request;
			served[node][k].handler = h;
			served[node][k].decode = rows[i].decode;
			served[node][k].flags = rows[i].flags;
			k++;
		}
		nserved[node] = k;
	}
	*n = nserved[node];
	return served[node];
}
