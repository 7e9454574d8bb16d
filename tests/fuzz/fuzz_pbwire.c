/*
 * fuzz_pbwire.c: the protobuf wire reader (src/grpc/pbwire.c) and node
 * mode's in-place parse of a fetched reply built on it (node_parse_reply(),
 * src/svc/node.c).
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
 *  3. Through node_parse_reply(): what it finds lies within the input; if
 *     protobuf-c unpacks the bytes as a SharedData with no unknown field,
 *     the two agree on every field.
 *  4. As a SharedData to build: protobuf-c's packing of it is parsed by
 *     node_parse_reply() and must give back every field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "node.h"
#include "pbwire.h"
#include "fuzz.h"

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

/*
 * How many times field 4 (ttl) occurs at the top level of [p, p + size),
 * and its seconds and nanos as protobuf merges them: the last of each
 * wins, over every occurrence. For bytes protobuf-c unpacked whole.
 */
static unsigned
ref_ttl(const uint8_t *p, size_t size, int64_t *sec, int32_t *nanos)
{
	size_t off = 0, k, in, ik, end;
	uint64_t tag, len = 0, itag, ilen, v;
	unsigned n = 0;

	*sec = 0;
	*nanos = 0;
	while (off < size) {
		if ((k = ref_varint(p + off, size - off, &tag)) == 0)
			break;
		off += k;
		if ((k = ref_value(p + off, size - off, (unsigned)(tag & 7),
		    &len)) == 0)
			break;
		if (tag == (4 << 3 | 2)) {
			n++;
			/* The value: its length's varint, then len bytes. */
			end = off + k;
			for (in = end - (size_t)len; in < end; in += ik) {
				if ((ik = ref_varint(p + in, end - in,
				    &itag)) == 0)
					break;
				in += ik;
				if (itag == (1 << 3) &&
				    ref_varint(p + in, end - in, &v) > 0)
					*sec = (int64_t)v;
				else if (itag == (2 << 3) &&
				    ref_varint(p + in, end - in, &v) > 0)
					*nanos = (int32_t)(uint32_t)v;
				if ((ik = ref_value(p + in, end - in,
				    (unsigned)(itag & 7), &ilen)) == 0)
					break;
			}
		}
		off += k;
	}
	return n;
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

/* --- 3: node_parse_reply() on the bytes ----------------------------------- */

/* Field by field, r against what protobuf-c made of the same bytes (the
 * ttl's values only if ttl_values). */
static void
same_as_protobuf_c(const uint8_t *buf, const struct node_reply *r,
    const Alpcrun__V1__SharedData *sd, int ttl_values)
{
	FUZZ_ASSERT(r->session_len == (sd->has_session_id ?
	    sd->session_id.len : 0));
	if (r->session_len > 0)
		FUZZ_ASSERT(memcmp(r->session_id, sd->session_id.data,
		    r->session_len) == 0);
	FUZZ_ASSERT(r->has_level == (sd->has_update_level != 0));
	if (r->has_level)
		FUZZ_ASSERT(r->level == sd->update_level);
	FUZZ_ASSERT(r->payload_len == (sd->has_payload ? sd->payload.len : 0));
	if (r->payload_len > 0)
		FUZZ_ASSERT(memcmp(buf + r->payload_off, sd->payload.data,
		    r->payload_len) == 0);
	FUZZ_ASSERT(r->has_ttl == (sd->ttl != NULL));
	if (sd->ttl != NULL && ttl_values) {
		FUZZ_ASSERT(r->ttl_seconds == sd->ttl->seconds);
		FUZZ_ASSERT(r->ttl_nanos == sd->ttl->nanos);
	}
}

static void
reply_checks(const uint8_t *data, size_t size)
{
	static const uint8_t empty[1];
	const uint8_t *p = size > 0 ? data : empty;
	Alpcrun__V1__SharedData *sd;
	struct node_reply r;
	uint64_t t;
	int64_t sec;
	int32_t nanos;
	int rc;

	rc = node_parse_reply(size > 0 ? data : NULL, size, &r);
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
	sd = (Alpcrun__V1__SharedData *)protobuf_c_message_unpack(
	    &alpcrun__v1__shared_data__descriptor, NULL, size, p);
	if (sd == NULL)
		return;
	/*
	 * Unknown fields are protobuf-c's to keep and node's to skip; with
	 * none, every field was one of the four, and both must read them
	 * alike: the last of each scalar wins. But a ttl given twice:
	 * protobuf-c 1.4.1 keeps the last whole, where protobuf merges them
	 * as node does (corpus file pbwire/repeated); the reference says
	 * what the merge is. Central packs one ttl, so the difference never
	 * reaches node.
	 */
	if (sd->base.n_unknown_fields == 0 && (sd->ttl == NULL ||
	    sd->ttl->base.n_unknown_fields == 0)) {
		FUZZ_ASSERT(rc == 0);
		if (ref_ttl(data, size, &sec, &nanos) < 2)
			same_as_protobuf_c(data, &r, sd, 1);
		else {
			same_as_protobuf_c(data, &r, sd, 0);
			FUZZ_ASSERT(r.ttl_seconds == sec &&
			    r.ttl_nanos == nanos);
		}
	}
	protobuf_c_message_free_unpacked(&sd->base, NULL);
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
	struct node_reply r;
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
	FUZZ_ASSERT(node_parse_reply(buf, n, &r) == 0);
	same_as_protobuf_c(buf, &r, &sd, 1);
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
