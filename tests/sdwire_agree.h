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
#include "sdwire.h"

static int
sdwire_bytes_eq(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	return a->len == b->len && (a->len == 0 ? a->data == NULL &&
	    b->data == NULL : memcmp(a->data, b->data, a->len) == 0);
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
		    (ref->ttl == NULL) == (m->ttl == NULL) &&
		    (ref->ttl == NULL || (ref->ttl->seconds == m->ttl->seconds &&
		    ref->ttl->nanos == m->ttl->nanos));
	if (ref != NULL)
		alpcrun__v1__shared_data__free_unpacked(ref, NULL);
	if (m != NULL)
		sdwire_free(&m->base);
	return ok;
}

#endif
