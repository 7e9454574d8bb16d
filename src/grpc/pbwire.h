/*
 * pbwire.h: a small reader of the protobuf wire format, for the places that
 * read a message in place rather than unpack a copy (node mode's fetched
 * replies, node.c): varints, tags, length-delimited fields, and skipping a
 * field of any wire type but groups.
 *
 * Every function reads from a cursor *pp (at most end) and never at or past
 * end. It returns 0 and moves *pp past what it read, or -1 when the bytes
 * are malformed or run past end, and then leaves *pp where it was.
 */
#ifndef ALPCRUND_PBWIRE_H
#define ALPCRUND_PBWIRE_H

#include <stddef.h>
#include <stdint.h>

enum pbwire_type {
	PBWIRE_VARINT = 0,
	PBWIRE_I64 = 1,
	PBWIRE_LEN = 2,		/* bytes, strings, messages */
	PBWIRE_SGROUP = 3,	/* groups: refused (not in proto3) */
	PBWIRE_EGROUP = 4,
	PBWIRE_I32 = 5,
};

/* A varint of at most 10 bytes (longer is malformed); bits past the 64th
 * are dropped. */
int	 pbwire_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v);
/* A field's tag, split into field number (not checked: 0 and numbers past
 * 2^29 - 1 are the caller's to refuse) and wire type (0-7). */
int	 pbwire_tag(const uint8_t **pp, const uint8_t *end, uint64_t *field,
	    unsigned *wt);
/* A length-delimited field's contents, after its tag: *data points into
 * the buffer (nothing is copied) and [*data, *data + *len) is within it. */
int	 pbwire_len(const uint8_t **pp, const uint8_t *end,
	    const uint8_t **data, size_t *len);
/* Skip a field's value, after its tag, by its wire type; groups and the
 * undefined types 6 and 7 are malformed here. */
int	 pbwire_skip(const uint8_t **pp, const uint8_t *end, unsigned wt);

#endif
