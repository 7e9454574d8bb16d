/*
 * fuzz_deframe.c: the gRPC message deframer (src/grpc/grpc_frame.c) and request
 * decoding, as the daemon does them on a stream's DATA.
 *
 * Input: two bytes that seed the chunk splits, then the DATA byte stream.
 * The stream is fed to grpc_deframe() in chunks of pseudo-random sizes (1
 * byte to a few KiB), the way DATA frames may cut it; each complete
 * message is unpacked as a SharedData (and as a HealthCheckRequest), run
 * through the request checks of rules.c, packed again and unpacked once
 * more: re-packing what was unpacked must be stable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rules.h"
#include "grpc_frame.h"
#include "fuzz.h"

/* A max_message_size low enough that bodies stay cheap to allocate. */
#define FUZZ_MAX_MESSAGE	(1u << 20)

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

static uint32_t
next_rand(uint32_t *s)
{
	/* xorshift32 */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/*
 * Pack m, unpack the result, pack again: the two packings must agree.
 * Not for messages with unknown fields: protobuf-c 1.4.1 keeps a field
 * numbered 0 written as an overlong varint (80 00) as an unknown field and
 * packs it back as 00, which it then refuses to unpack (corpus file
 * deframe/crash-67b86539...). The daemon never packs a request again, so
 * that quirk of the library costs it nothing.
 */
static void
repack(const ProtobufCMessageDescriptor *desc, const ProtobufCMessage *m,
    const ProtobufCMessage *sub)
{
	size_t n = protobuf_c_message_get_packed_size(m), n2;
	uint8_t *a, *b;
	ProtobufCMessage *again;

	if (m->n_unknown_fields > 0 ||
	    (sub != NULL && sub->n_unknown_fields > 0))
		return;
	a = malloc(n ? n : 1);
	FUZZ_ASSERT(a != NULL);
	FUZZ_ASSERT(protobuf_c_message_pack(m, a) == n);
	again = protobuf_c_message_unpack(desc, NULL, n, a);
	FUZZ_ASSERT(again != NULL);
	n2 = protobuf_c_message_get_packed_size(again);
	FUZZ_ASSERT(n2 == n);
	b = malloc(n2 ? n2 : 1);
	FUZZ_ASSERT(b != NULL);
	FUZZ_ASSERT(protobuf_c_message_pack(again, b) == n2);
	FUZZ_ASSERT(memcmp(a, b, n) == 0);
	protobuf_c_message_free_unpacked(again, NULL);
	free(a);
	free(b);
}

static void
decode(const struct grpc_message *msg)
{
	static const uint8_t empty[1];
	const uint8_t *p = msg->data != NULL ? msg->data : empty;
	Alpcrun__V1__SharedData *sd;
	Grpc__Health__V1__HealthCheckRequest *hc;
	struct cache_verdict v;
	uint64_t ns;

	FUZZ_ASSERT(msg->len == 0 || msg->data != NULL);
	/* COPY: as the call layer (src/grpc/call.c) does, the payload is copied out by protobuf-c. */
	sd = (Alpcrun__V1__SharedData *)protobuf_c_message_unpack(
	    &alpcrun__v1__shared_data__descriptor, NULL, msg->len, p);
	if (sd != NULL) {
		cache_check_session(sd->session_id.data, sd->session_id.len,
		    sd->has_session_id, &v);
		if (cache_ttl(sd->ttl, 600000, 3600000, &ns, &v) == 0)
			FUZZ_ASSERT(ns <= 3600000ull * 1000000ull);
		repack(&alpcrun__v1__shared_data__descriptor, &sd->base,
		    sd->ttl != NULL ? &sd->ttl->base : NULL);
		protobuf_c_message_free_unpacked(&sd->base, NULL);
	}
	hc = (Grpc__Health__V1__HealthCheckRequest *)protobuf_c_message_unpack(
	    &grpc__health__v1__health_check_request__descriptor, NULL,
	    msg->len, p);
	if (hc != NULL) {
		repack(&grpc__health__v1__health_check_request__descriptor,
		    &hc->base, NULL);
		protobuf_c_message_free_unpacked(&hc->base, NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct grpc_deframer df;
	struct grpc_message msg;
	uint32_t seed;
	size_t chunk, used, fed = 0;

	if (size < 2)
		return 0;
	seed = ((uint32_t)data[0] << 8 | data[1]) * 2654435761u | 1;
	data += 2;
	size -= 2;
	memset(&df, 0, sizeof(df));
	df.max = FUZZ_MAX_MESSAGE;
	while (fed < size) {
		uint32_t r = next_rand(&seed);

		/* Mostly small pieces, sometimes a few KiB. */
		chunk = (r & 7) == 0 ? 1 + (r >> 8) % 8192 : 1 + (r >> 8) % 16;
		if (chunk > size - fed)
			chunk = size - fed;
		while (chunk > 0) {
			enum grpc_deframe_result res;

			res = grpc_deframe(&df, data + fed, chunk, &used, &msg);
			FUZZ_ASSERT(used <= chunk);
			switch (res) {
			case GF_NEED_MORE:
				FUZZ_ASSERT(used == chunk);
				FUZZ_ASSERT(df.hdrlen <= GRPC_PREFIX_LEN);
				break;
			case GF_MESSAGE:
				FUZZ_ASSERT(msg.len <= FUZZ_MAX_MESSAGE);
				decode(&msg);
				free(msg.data);
				FUZZ_ASSERT(grpc_deframer_partial(&df) == 0);
				break;
			case GF_TOO_LARGE:
				FUZZ_ASSERT(df.announced > FUZZ_MAX_MESSAGE);
				/* Nothing was allocated, and the deframer
				 * stays refused until reset. */
				FUZZ_ASSERT(df.buf == NULL);
				FUZZ_ASSERT(grpc_deframe(&df, data, size, &used,
				    &msg) == GF_TOO_LARGE && used == 0);
				goto out;
			case GF_NOMEM:
				goto out;
			}
			fed += used;
			chunk -= used;
		}
	}
out:
	grpc_deframer_reset(&df);
	FUZZ_ASSERT(grpc_deframer_partial(&df) == 0);
	return 0;
}
