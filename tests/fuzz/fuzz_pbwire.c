/*
 * fuzz_pbwire.c: the protobuf wire reader (src/grpc/pbwire.c) and the
 * in-place reader of SharedData built on it (src/svc/sdwire.c: requests
 * decoded around their buffer, a node's fetched replies).
 *
 * Input: any bytes, read four ways.
 *  1. From every offset to the end, and in windows of 0-11 bytes copied to
 *     the very end of a heap block (so ASan sees a read at or past end),
 *     through each pbwire function, checked against a reference decoder
 *     written apart from pbwire.c: same verdict, same cursor, same value.
 *     Whatever the verdict, the cursor stays within [start, end], a refused
 *     read leaves it where it was, a length lies within the input.
 *  2. As a message: tags and values walked to the end, length-delimited
 *     fields walked again as messages (a few levels deep).
 *  3. Through sdwire_parse(): what it finds lies within the input. Through
 *     sdwire_decode() and protobuf-c's unpack: the same verdict on every
 *     input and, when both decode, the same fields, a ttl given twice
 *     merged as protobuf says (tests/sdwire_agree.h).
 *  4. As a SharedData to build: protobuf-c's packing of it is parsed by
 *     sdwire_parse() and must give back every field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "node.h"
#include "pbwire.h"
#include "sdwire.h"
#include "fuzz.h"
#include "../sdwire_agree.h"

/* A window as long as the longest varint and one byte more. */
#define WINDOW_MAX	11
/* Offsets given windows: the walk stays linear in the input. */
#define WINDOW_OFFSETS	512
/* Levels of length-delimited fields walked as messages. */
#define DEPTH_MAX	8
/* A node_copy_ttl() bound: 1h, and a default of 10m. */
#define MAX_TTL_MS	3600000ull
#define DEF_TTL_MS	600000ull

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

/* --- the reference: the encoding guide's rules, not pbwire.c's code ------- */

/* A varint at p of at most 10 bytes within avail; its length, or 0. */
static size_t
ref_varint(const uint8_t *p, size_t avail, uint64_t *v)
{
	size_t i;

	*v = 0;
	for (i = 0; i < avail && i < 10; i++) {
		*v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if ((p[i] & 0x80) == 0)
			return i + 1;
	}
	return 0;
}

/* The length of a field's value of wire type wt at p, or 0 if refused (no
 * value is empty: even a zero length takes its one byte). */
static size_t
ref_value(const uint8_t *p, size_t avail, unsigned wt, uint64_t *lenp)
{
	uint64_t n;
	size_t k;

	switch (wt) {
	case 0:
		return ref_varint(p, avail, &n);
	case 1:
		return avail >= 8 ? 8 : 0;
	case 2:
		if ((k = ref_varint(p, avail, &n)) == 0 || n > avail - k)
			return 0;
		*lenp = n;
		return k + (size_t)n;
	case 5:
		return avail >= 4 ? 4 : 0;
	default:
		return 0;
	}
}

/* --- 1: each function at one cursor --------------------------------------- */

/*
 * Every pbwire function from start, with end: the verdict and the cursor
 * against the reference, and the cursor within bounds either way.
 */
static void
read_at(const uint8_t *start, const uint8_t *end)
{
	size_t avail = (size_t)(end - start), k, want;
	const uint8_t *p, *data;
	uint64_t v, rv, field, rlen = 0;
	unsigned wt, w;
	size_t len;
	int rc;

	/* Varint. */
	k = ref_varint(start, avail, &rv);
	p = start;
	rc = pbwire_varint(&p, end, &v);
	FUZZ_ASSERT(p >= start && p <= end);
	FUZZ_ASSERT(rc == (k > 0 ? 0 : -1));
	FUZZ_ASSERT(p == start + k);
	if (rc == 0)
		FUZZ_ASSERT(v == rv);

	/* Tag: the same varint, split. */
	p = start;
	rc = pbwire_tag(&p, end, &field, &wt);
	FUZZ_ASSERT(p >= start && p <= end);
	FUZZ_ASSERT(rc == (k > 0 ? 0 : -1));
	FUZZ_ASSERT(p == start + k);
	if (rc == 0) {
		FUZZ_ASSERT(field == rv >> 3 && wt == (rv & 7));
		FUZZ_ASSERT(wt <= 7);
	}

	/* Length-delimited. */
	want = ref_value(start, avail, PBWIRE_LEN, &rlen);
	p = start;
	rc = pbwire_len(&p, end, &data, &len);
	FUZZ_ASSERT(p >= start && p <= end);
	FUZZ_ASSERT(rc == (want > 0 ? 0 : -1));
	FUZZ_ASSERT(p == start + want);
	if (rc == 0) {
		FUZZ_ASSERT(data > start && data <= end);
		FUZZ_ASSERT(len <= (size_t)(end - data));
		FUZZ_ASSERT(data + len == p && len == rlen);
	}

	/* Skip, by every wire type (3, 4, 6 and 7 are always refused). */
	for (w = 0; w < 8; w++) {
		want = ref_value(start, avail, w, &rlen);
		p = start;
		rc = pbwire_skip(&p, end, w);
		FUZZ_ASSERT(p >= start && p <= end);
		FUZZ_ASSERT(rc == (want > 0 ? 0 : -1));
		FUZZ_ASSERT(p == start + want);
	}
}

static void
read_everywhere(const uint8_t *data, size_t size, uint8_t *win)
{
	size_t i, w;

	/* From every offset, and from the end itself. */
	for (i = 0; i <= size; i++)
		read_at(data + i, data + size);
	/* Short windows at the end of win: any byte read past the window is
	 * past the block. */
	for (i = 0; i < size && i < WINDOW_OFFSETS; i++)
		for (w = 0; w <= WINDOW_MAX && i + w <= size; w++) {
			memcpy(win + WINDOW_MAX - w, data + i, w);
			read_at(win + WINDOW_MAX - w, win + WINDOW_MAX);
		}
}

/* --- 2: as a message ------------------------------------------------------ */

static void
walk(const uint8_t *p, const uint8_t *end, int depth)
{
	const uint8_t *before, *data;
	uint64_t field;
	unsigned wt;
	size_t len;

	while (p < end) {
		before = p;
		if (pbwire_tag(&p, end, &field, &wt) != 0) {
			FUZZ_ASSERT(p == before);
			return;
		}
		FUZZ_ASSERT(p > before && p <= end);
		before = p;
		if (wt == PBWIRE_LEN && depth < DEPTH_MAX) {
			if (pbwire_len(&p, end, &data, &len) != 0) {
				FUZZ_ASSERT(p == before);
				return;
			}
			FUZZ_ASSERT(data > before && data + len == p &&
			    p <= end);
			walk(data, data + len, depth + 1);
		} else if (pbwire_skip(&p, end, wt) != 0) {
			FUZZ_ASSERT(p == before);
			return;
		}
		/* Every field moves on: a zero length still has its byte. */
		FUZZ_ASSERT(p > before && p <= end);
	}
	FUZZ_ASSERT(p == end);
}

/* --- 3: sdwire on the bytes, against protobuf-c ------------------------- */

/* Field by field, r against the SharedData sd the bytes at buf hold. */
static void
same_fields(const uint8_t *buf, const struct sd_view *r,
    const Alpcrun__V1__SharedData *sd)
{
	FUZZ_ASSERT(r->has_session_id == (sd->has_session_id != 0));
	FUZZ_ASSERT(r->session_len == (sd->has_session_id ?
	    sd->session_id.len : 0));
	if (r->session_len > 0)
		FUZZ_ASSERT(memcmp(r->session_id, sd->session_id.data,
		    r->session_len) == 0);
	FUZZ_ASSERT(r->has_level == (sd->has_update_level != 0));
	if (r->has_level)
		FUZZ_ASSERT(r->level == sd->update_level);
	FUZZ_ASSERT(r->has_payload == (sd->has_payload != 0));
	FUZZ_ASSERT(r->payload_len == (sd->has_payload ? sd->payload.len : 0));
	if (r->payload_len > 0)
		FUZZ_ASSERT(memcmp(buf + r->payload_off, sd->payload.data,
		    r->payload_len) == 0);
	FUZZ_ASSERT(r->has_ttl == (sd->ttl != NULL));
	if (sd->ttl != NULL) {
		FUZZ_ASSERT(r->ttl_seconds == sd->ttl->seconds);
		FUZZ_ASSERT(r->ttl_nanos == sd->ttl->nanos);
	}
}

/*
 * What sdwire_parse() finds lies within the input; sdwire_decode() and
 * protobuf-c agree on every input, unknown and repeated fields included
 * (sdwire_agree.h), and the parse says what the decode says.
 */
static void
reply_checks(const uint8_t *data, size_t size)
{
	struct sd_view r;
	uint64_t t;
	int rc, decoded;

	rc = sdwire_parse(size > 0 ? data : NULL, size, &r);
	if (rc == 0) {
		if (r.session_len > 0)
			FUZZ_ASSERT(r.session_id >= data &&
			    r.session_len <= size - (size_t)(r.session_id -
			    data));
		FUZZ_ASSERT(r.payload_off <= size &&
		    r.payload_len <= size - r.payload_off);
		t = node_copy_ttl(&r, DEF_TTL_MS, MAX_TTL_MS);
		FUZZ_ASSERT(t >= 1 && t <= MAX_TTL_MS * 1000000ull);
	}
	FUZZ_ASSERT(sdwire_agree(size > 0 ? data : NULL, size, &decoded));
	FUZZ_ASSERT(decoded == (rc == 0));
}

/* --- 4: protobuf-c's encoding of a SharedData from the bytes -------------- */

/* The bytes taken in turn; past the end, zeros. */
struct taker {
	const uint8_t	*p;
	size_t		 left;
};

static uint64_t
take(struct taker *t, size_t n)
{
	uint64_t v = 0;

	while (n-- > 0) {
		v = v << 8 | (t->left > 0 ? *t->p : 0);
		if (t->left > 0) {
			t->p++;
			t->left--;
		}
	}
	return v;
}

static void
round_trip(const uint8_t *data, size_t size)
{
	Alpcrun__V1__SharedData sd = ALPCRUN__V1__SHARED_DATA__INIT;
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	struct taker t = { data, size };
	struct sd_view r;
	unsigned flags;
	size_t n, packed, slen;
	uint8_t *buf;

	flags = (unsigned)take(&t, 1);
	slen = (size_t)take(&t, 1);
	if (slen > t.left)
		slen = t.left;
	sd.has_session_id = (flags & 1) != 0;
	sd.session_id.data = (uint8_t *)(uintptr_t)t.p;
	sd.session_id.len = sd.has_session_id ? slen : 0;
	t.p += slen;
	t.left -= slen;
	sd.has_update_level = (flags & 2) != 0;
	sd.update_level = (uint32_t)take(&t, 4);
	if (flags & 4) {
		/* Any 64 and 32 bits, negative ones too (ten-byte varints). */
		ttl.seconds = (int64_t)take(&t, 8);
		ttl.nanos = (int32_t)(uint32_t)take(&t, 4);
		sd.ttl = &ttl;
	}
	sd.has_payload = (flags & 8) != 0;
	sd.payload.data = (uint8_t *)(uintptr_t)t.p;
	sd.payload.len = sd.has_payload ? t.left : 0;

	n = protobuf_c_message_get_packed_size(&sd.base);
	buf = malloc(n > 0 ? n : 1);
	FUZZ_ASSERT(buf != NULL);
	packed = protobuf_c_message_pack(&sd.base, buf);
	FUZZ_ASSERT(packed == n);
	FUZZ_ASSERT(sdwire_parse(buf, n, &r) == 0);
	same_fields(buf, &r, &sd);
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *win;

	win = malloc(WINDOW_MAX);
	FUZZ_ASSERT(win != NULL);
	read_everywhere(data, size, win);
	free(win);
	walk(data, data + size, 0);
	reply_checks(data, size);
	round_trip(data, size);
	return 0;
}
