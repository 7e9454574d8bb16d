/*
 * health.c: the standard grpc.health.v1.Health service (spec §3): SERVING
 * for "" and "alpcrun.v1.Cache" while the daemon serves, NOT_SERVING while
 * it drains; Watch sends the status and stays open until the stream ends or
 * the drain closes it with UNAVAILABLE.
 */
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc.h"
#include "health.h"

static int serving = 1;

static int
known_service(const char *name)
{
	return name == NULL || *name == '\0' ||
	    strcmp(name, "alpcrun.v1.Cache") == 0;
}

static Grpc__Health__V1__HealthCheckResponse__ServingStatus
status_of(const char *service)
{
	if (!known_service(service))
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	return serving ?
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING :
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

void
health_check(struct call *call, ProtobufCMessage *msg)
{
	Grpc__Health__V1__HealthCheckRequest *req = (void *)msg;
	Grpc__Health__V1__HealthCheckResponse resp =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

	if (!known_service(req->service))
		call_error(call, GRPC_NOT_FOUND, "unknown service %s",
		    req->service);
	else {
		resp.status = status_of(req->service);
		call_reply(call, &resp.base, NULL);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
}

/* The stream went away (or the drain ended it): finish our side. */
static void
watch_cancel(struct call *call, void *arg)
{
	call_error(call, GRPC_CANCELLED, NULL);
}

void
health_watch(struct call *call, ProtobufCMessage *msg)
{
	Grpc__Health__V1__HealthCheckRequest *req = (void *)msg;
	Grpc__Health__V1__HealthCheckResponse resp =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

	resp.status = status_of(req->service);
	protobuf_c_message_free_unpacked(msg, NULL);
	call_set_cancel(call, watch_cancel, NULL);
	if (call_send(call, &resp.base) != 0)
		call_error(call, GRPC_INTERNAL, "cannot send");
}

void
health_set_serving(int on)
{
	serving = on;
}
