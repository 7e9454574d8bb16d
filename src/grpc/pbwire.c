/*
 * pbwire.c: the protobuf wire-format reader of pbwire.h, bounds-checked
 * against the end of the buffer on every byte.
 */
#include "pbwire.h"

/* The longest varint: 64 bits in 7-bit groups. */
#define VARINT_MAX	10

int
pbwire_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
	const uint8_t *p = *pp;
	uint64_t r = 0;
	unsigned i;

	for (i = 0; i < VARINT_MAX; i++) {
		if (p >= end)
			return -1;
		r |= (uint64_t)(*p & 0x7f) << (7 * i);
		if ((*p++ & 0x80) == 0) {
			*pp = p;
			*v = r;
			return 0;
		}
	}
	return -1;
}

int
pbwire_tag(const uint8_t **pp, const uint8_t *end, uint64_t *field,
    unsigned *wt)
{
	uint64_t tag;

	if (pbwire_varint(pp, end, &tag) != 0)
		return -1;
	*field = tag >> 3;
	*wt = (unsigned)(tag & 7);
	return 0;
}

int
pbwire_len(const uint8_t **pp, const uint8_t *end, const uint8_t **data,
    size_t *len)
{
	const uint8_t *p = *pp;
	uint64_t n;

	/* Compared as lengths, not pointers: p + n may not be formed. */
	if (pbwire_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p))
		return -1;
	*data = p;
	*len = (size_t)n;
	*pp = p + n;
	return 0;
}

int
pbwire_skip(const uint8_t **pp, const uint8_t *end, unsigned wt)
{
	const uint8_t *data;
	uint64_t v;
	size_t len;

	switch (wt) {
	case PBWIRE_VARINT:
		return pbwire_varint(pp, end, &v);
	case PBWIRE_I64:
		if (end - *pp < 8)
			return -1;
		*pp += 8;
		return 0;
	case PBWIRE_LEN:
		return pbwire_len(pp, end, &data, &len);
	case PBWIRE_I32:
		if (end - *pp < 4)
			return -1;
		*pp += 4;
		return 0;
	default:
		return -1;
	}
}
