/*
 * grpc_status.c: the names of gRPC status codes, for messages and logs.
 */
#include "grpc_status.h"

static const char *const status_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *
grpc_status_name(int code)
{
	if (code < 0 || code > GRPC_UNAUTHENTICATED)
		return "UNKNOWN";
	return status_names[code];
}
