/*
 * identity.h: how a central cache names its store and each content on the
 * wire (spec §4), for nodes: the store's incarnation (backend.h
 * "Identity") in every response's `alpcrun-incarnation` header, an
 * entry's generation in a Get reply's `alpcrun-generation` header, both
 * as 16 lowercase hex digits (the change feed carries them as fixed64
 * fields of its notices instead).
 */
#ifndef ALPCRUND_IDENTITY_H
#define ALPCRUND_IDENTITY_H

#include <stdint.h>

#define META_INCARNATION	"alpcrun-incarnation"
#define META_GENERATION		"alpcrun-generation"
#define IDENTITY_HEX		17	/* 16 digits and the NUL */

/* v as 16 hex digits. */
void	 identity_format(uint64_t v, char buf[IDENTITY_HEX]);
/* 16 hex digits (either case), nothing else, not all zero -> 0 with *v
 * set; anything else (NULL included) -> -1. */
int	 identity_parse(const char *s, uint64_t *v);

#endif
