/*
 * methods.h: the methods a mode serves (methods.c).
 */
#ifndef ALPCRUND_METHODS_H
#define ALPCRUND_METHODS_H

#include <stddef.h>

#include "grpc.h"

/* The methods of node mode (node 1) or central's (0): *n of them. */
const struct method *methods_for(int node, size_t *n);

#endif
