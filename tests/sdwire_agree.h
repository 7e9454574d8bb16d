/*
 * sdwire_agree.h: one input through both SharedData decoders, protobuf-c's
 * unpack (the reference) and sdwire_decode(), and whether they agree: the
 * same verdict and, when both decode, every known field the same. For the
 * unit tests (check_sdwire.c) and the fuzz target (fuzz_pbwire.c).
 */
#ifndef ALPCRUND_SDWIRE_AGREE_H
#define ALPCRUND_SDWIRE_AGREE_H

#include <stdlib.h>
#include <string.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "pbwire.h"
#include "sdwire.h"

static int
sdwire_bytes_eq(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	return a->len == b->len && (a->len == 0 ? a->data == NULL &&
	    b->data == NULL : memcmp(a->data, b->data, a->len) == 0);
}

/*
 * How many times the ttl (field 4) occurs at the top level of a message
 * protobuf-c decoded, and its seconds and nanos merged as protobuf merges
 * them.
 */
static unsigned
sdwire_ttl_merged(const uint8_t *p, size_t n, int64_t *sec, int32_t *nanos)
{
	const uint8_t *end = p + n, *d, *q;
	uint64_t field, v;
	unsigned wt, k = 0;
	size_t len;

	*sec = 0;
	*nanos = 0;
	while (p < end && pbwire_tag(&p, end, &field, &wt) == 0) {
		if ((uint32_t)field != 4 || wt != PBWIRE_LEN) {
			if (pbwire_skip(&p, end, wt) != 0)
				break;
			continue;
		}
		if (pbwire_len(&p, end, &d, &len) != 0)
			break;
		k++;
		for (q = d; q < d + len && pbwire_tag(&q, d + len, &field,
		    &wt) == 0; ) {
			if ((field == 1 || field == 2) && wt == PBWIRE_VARINT &&
			    pbwire_varint(&q, d + len, &v) == 0) {
				if (field == 1)
					*sec = (int64_t)v;
				else
					*nanos = (int32_t)(uint32_t)v;
			} else if (pbwire_skip(&q, d + len, wt) != 0)
				break;
		}
	}
	return k;
}

/*
 * 1 when they agree, 0 when not; *decoded says whether they decoded.
 * sdwire_decode() is handed an exact-size heap copy, so that a read past
 * the end shows under ASan and valgrind.
 */
static int
sdwire_agree(const uint8_t *b, size_t n, int *decoded)
{
	Alpcrun__V1__SharedData *ref, *m;
	uint8_t *copy = NULL;
	int64_t sec = 0;
	int32_t nanos = 0;
	int ok;

	ref = alpcrun__v1__shared_data__unpack(NULL, n, b);
	if (n > 0) {
		if ((copy = malloc(n)) == NULL)
			abort();
		memcpy(copy, b, n);
	}
	m = (Alpcrun__V1__SharedData *)sdwire_decode(copy, n);
	*decoded = m != NULL;
	if (ref == NULL || m == NULL)
		ok = ref == NULL && m == NULL;
	else
		ok = ref->has_session_id == m->has_session_id &&
		    sdwire_bytes_eq(&ref->session_id, &m->session_id) &&
		    ref->has_update_level == m->has_update_level &&
		    ref->update_level == m->update_level &&
		    ref->has_payload == m->has_payload &&
		    sdwire_bytes_eq(&ref->payload, &m->payload) &&
		    (ref->ttl == NULL) == (m->ttl == NULL);
	if (ok && ref != NULL && ref->ttl != NULL) {
		if (sdwire_ttl_merged(b, n, &sec, &nanos) < 2) {
			sec = ref->ttl->seconds;
			nanos = ref->ttl->nanos;
		}
		ok = m->ttl->seconds == sec && m->ttl->nanos == nanos;
	}
	if (ref != NULL)
		alpcrun__v1__shared_data__free_unpacked(ref, NULL);
	if (m != NULL)
		sdwire_free(&m->base);
	return ok;
}

#endif
