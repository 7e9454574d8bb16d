/*
 * sdwire.h: SharedData (alpcrun.v1, spec §3) read in place: the one
 * message whose bytes field is a whole payload, decoded around that
 * payload instead of copying it. A request's message buffer thus becomes
 * the stored payload as it is (the memory backend adopts it), and a node's
 * fetched reply its stored copy.
 *
 * protobuf-c stays the reference: sdwire accepts exactly the bytes that
 * protobuf_c_message_unpack() accepts as a SharedData and finds the same
 * field values (tests/fuzz/fuzz_pbwire.c and check_sdwire.c hold the two
 * side by side). That includes protobuf-c's own limits, stricter than the
 * encoding guide's: a tag of at most 5 bytes and not a lone byte of field
 * 0, a length of at most 5 bytes and at most INT_MAX, at most
 * SDWIRE_FIELDS_MAX fields; of a field given twice the last wins. One
 * exception, where protobuf-c is wrong: a ttl given twice merges as
 * protobuf says and grpc-go and grpcio do (each of seconds and nanos the
 * last given, across the occurrences), where protobuf-c 1.4 keeps the last
 * ttl whole. Unknown fields are skipped, not kept.
 */
#ifndef ALPCRUND_SDWIRE_H
#define ALPCRUND_SDWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "alpcrun/v1/cache.pb-c.h"

/* protobuf-c's scan stops at 16 x (2^23 - 1) fields of one message. */
#define SDWIRE_FIELDS_MAX	(16ull * ((1ull << 23) - 1))

/* What a SharedData holds, pointing into the bytes parsed. */
struct sd_view {
	int		 has_session_id;
	const uint8_t	*session_id;
	size_t		 session_len;
	int		 has_level;
	uint32_t	 level;
	int		 has_payload;
	size_t		 payload_off;	/* from the start of the bytes */
	size_t		 payload_len;
	int		 has_ttl;
	int64_t		 ttl_seconds;
	int32_t		 ttl_nanos;
};

/* 0, or -1 when the bytes are not a SharedData message. */
int	 sdwire_parse(const uint8_t *, size_t, struct sd_view *);

/*
 * The head of a SharedData of `total` bytes of which the first `have` are
 * in (a node's fetch while it arrives, for cut-through): 1 when the payload
 * field is the last of the message (it ends at total) and every byte
 * before it is in: then *v is exactly what sdwire_parse() of the whole
 * message will give, payload included (offset and length), whatever the
 * payload's bytes; 0 when more bytes are needed to say; -1 when it is not
 * so (another field follows the payload, or the bytes before it are no
 * SharedData): wait for the whole message. The fields are scanned from the
 * start at every call: the caller bounds `have` (a payload's tag far into
 * a message is no reply of ours).
 */
int	 sdwire_parse_head(const uint8_t *, size_t have, size_t total,
	    struct sd_view *v);

/*
 * A request's message decoded around its buffer (a method's decode slot,
 * grpc.h): buf (malloc'ed, len bytes; NULL when len is 0) is taken over
 * whatever the outcome. The message's session_id and payload point into
 * buf; it is freed with sdwire_free(), never with
 * protobuf_c_message_free_unpacked(). NULL when the bytes do not decode or
 * memory ran out.
 */
ProtobufCMessage *sdwire_decode(uint8_t *buf, size_t len);
void	 sdwire_free(ProtobufCMessage *);

/* The malloc'ed buffer a decoded message's bytes lie in (NULL when there
 * is none): what a backend may adopt (backend.h, be_change). */
uint8_t	*sdwire_body(const Alpcrun__V1__SharedData *);
/* The buffer was adopted: sdwire_free() leaves it, and the message's
 * session_id and payload are no longer to be read. */
void	 sdwire_body_taken(Alpcrun__V1__SharedData *);

#endif
