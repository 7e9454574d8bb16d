/*
 * health.h: the grpc.health.v1.Health handlers.
 */
#ifndef ALPCRUND_HEALTH_H
#define ALPCRUND_HEALTH_H

#include "grpc.h"

method_handler health_check, health_watch;
/* The drain turns Check to NOT_SERVING. */
void	 health_set_serving(int);

#endif
