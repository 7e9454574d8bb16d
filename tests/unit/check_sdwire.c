/*
 * check_sdwire.c: unit tests of SharedData read in place (src/svc/sdwire.c):
 * the parse of central's replies (the payload found, never copied), the
 * decode of requests around their buffer (what it points into, who frees
 * what), and a table of inputs where the encoding guide and protobuf-c
 * differ, through both decoders (tests/sdwire_agree.h): protobuf-c is the
 * reference, but for a ttl given twice, which merges as protobuf says.
 * fuzz_pbwire.c holds them side by side on any input.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "rules.h"
#include "sdwire.h"
#include "testutil.h"
#include "../sdwire_agree.h"

/* --- the parse of a reply -------------------------------------------------------- */

static uint8_t *
pack(const char *sid, int has_level, uint32_t level, const uint8_t *p,
    size_t plen, const Google__Protobuf__Duration *ttl, size_t *len)
{
	Alpcrun__V1__SharedData m = ALPCRUN__V1__SHARED_DATA__INIT;
	uint8_t *buf;

	if (sid != NULL) {
		m.has_session_id = 1;
		m.session_id.data = (uint8_t *)(uintptr_t)sid;
		m.session_id.len = strlen(sid);
	}
	m.has_update_level = has_level;
	m.update_level = level;
	if (p != NULL) {
		m.has_payload = 1;
		m.payload.data = (uint8_t *)(uintptr_t)p;
		m.payload.len = plen;
	}
	m.ttl = (Google__Protobuf__Duration *)(uintptr_t)ttl;
	*len = protobuf_c_message_get_packed_size(&m.base);
	ck_assert_ptr_nonnull(buf = malloc(*len + 1));
	ck_assert_uint_eq(protobuf_c_message_pack(&m.base, buf), *len);
	return buf;
}

START_TEST(parse_full_reply)
{
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	struct sd_view r;
	uint8_t payload[70000], *buf;
	size_t len, i;

	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	ttl.seconds = 599;
	ttl.nanos = 123456789;
	buf = pack("session-1", 1, 42, payload, sizeof(payload), &ttl, &len);
	ck_assert_int_eq(sdwire_parse(buf, len, &r), 0);
	ck_assert_uint_eq(r.session_len, 9);
	ck_assert(memcmp(r.session_id, "session-1", 9) == 0);
	ck_assert_ptr_eq(r.session_id, buf + 2);	/* in place */
	ck_assert_int_eq(r.has_level, 1);
	ck_assert_uint_eq(r.level, 42);
	ck_assert_uint_eq(r.payload_len, sizeof(payload));
	ck_assert_uint_lt(r.payload_off, len);
	ck_assert(memcmp(buf + r.payload_off, payload, sizeof(payload)) == 0);
	ck_assert_int_eq(r.has_ttl, 1);
	ck_assert_int_eq(r.ttl_seconds, 599);
	ck_assert_int_eq(r.ttl_nanos, 123456789);
	free(buf);
}
END_TEST

START_TEST(parse_level_zero_and_absent)
{
	struct sd_view r;
	uint8_t *buf;
	size_t len;

	/* Level 0 is a real level: present, explicitly. */
	buf = pack("s", 1, 0, NULL, 0, NULL, &len);
	ck_assert_int_eq(sdwire_parse(buf, len, &r), 0);
	ck_assert_int_eq(r.has_level, 1);
	ck_assert_uint_eq(r.level, 0);
	ck_assert_uint_eq(r.payload_len, 0);
	ck_assert_int_eq(r.has_ttl, 0);
	free(buf);
	buf = pack("s", 0, 0, (const uint8_t *)"x", 1, NULL, &len);
	ck_assert_int_eq(sdwire_parse(buf, len, &r), 0);
	ck_assert_int_eq(r.has_level, 0);
	ck_assert_uint_eq(r.payload_len, 1);
	free(buf);
	/* The empty message parses, with nothing in it. */
	ck_assert_int_eq(sdwire_parse(NULL, 0, &r), 0);
	ck_assert_int_eq(r.has_level, 0);
}
END_TEST

START_TEST(parse_unknown_and_repeated_fields)
{
	/* field 9 varint, field 10 fixed64, field 11 bytes, field 12 fixed32,
	 * then level 1 then level 2 (last wins), payload "ab" then "xyz". */
	static const uint8_t msg[] = {
		0x48, 0x96, 0x01,
		0x51, 1, 2, 3, 4, 5, 6, 7, 8,
		0x5a, 0x02, 'h', 'i',
		0x65, 1, 2, 3, 4,
		0x10, 0x01,
		0x1a, 0x02, 'a', 'b',
		0x10, 0x02,
		0x1a, 0x03, 'x', 'y', 'z',
		0x22, 0x02, 0x08, 0x05,		/* ttl { seconds: 5 } */
	};
	struct sd_view r;

	ck_assert_int_eq(sdwire_parse(msg, sizeof(msg), &r), 0);
	ck_assert_uint_eq(r.level, 2);
	ck_assert_uint_eq(r.payload_len, 3);
	ck_assert(memcmp(msg + r.payload_off, "xyz", 3) == 0);
	ck_assert_int_eq(r.ttl_seconds, 5);
	ck_assert_int_eq(r.ttl_nanos, 0);
}
END_TEST

START_TEST(parse_refuses_malformed)
{
	static const uint8_t trunc_len[] = { 0x1a, 0x05, 'a', 'b' };
	static const uint8_t trunc_varint[] = { 0x10, 0x80 };
	static const uint8_t wrong_wt_level[] = { 0x12, 0x01, 0x00 };
	static const uint8_t wrong_wt_payload[] = { 0x18, 0x01 };
	static const uint8_t group[] = { 0x4b, 0x4c };
	static const uint8_t field0[] = { 0x00, 0x01 };
	static const uint8_t long_varint[] = {
		0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0x01
	};
	static const uint8_t bad_ttl[] = { 0x22, 0x02, 0x08 };
	static const uint8_t trunc_fixed[] = { 0x51, 1, 2, 3 };
	struct sd_view r;

	ck_assert_int_eq(sdwire_parse(trunc_len, sizeof(trunc_len), &r),
	    -1);
	ck_assert_int_eq(sdwire_parse(trunc_varint, sizeof(trunc_varint),
	    &r), -1);
	ck_assert_int_eq(sdwire_parse(wrong_wt_level,
	    sizeof(wrong_wt_level), &r), -1);
	ck_assert_int_eq(sdwire_parse(wrong_wt_payload,
	    sizeof(wrong_wt_payload), &r), -1);
	ck_assert_int_eq(sdwire_parse(group, sizeof(group), &r), -1);
	ck_assert_int_eq(sdwire_parse(field0, sizeof(field0), &r), -1);
	ck_assert_int_eq(sdwire_parse(long_varint, sizeof(long_varint),
	    &r), -1);
	ck_assert_int_eq(sdwire_parse(bad_ttl, sizeof(bad_ttl), &r), -1);
	ck_assert_int_eq(sdwire_parse(trunc_fixed, sizeof(trunc_fixed),
	    &r), -1);
}
END_TEST

/* A tag takes at most 5 bytes, as protobuf-c reads it: a field number up
 * to 2^32 - 1 is an unknown field (skipped), never a low field in
 * disguise; a longer tag, even of a low field, is malformed. */
START_TEST(parse_tag_lengths)
{
	static const uint8_t five[] = {
		0x10, 0x07,				/* level 7 */
		/* field 2^32 - 1, length-delimited: unknown */
		0xfa, 0xff, 0xff, 0xff, 0x7f, 0x02, 'n', 'o',
		/* field 2^29 + 3, varint: unknown */
		0x98, 0x80, 0x80, 0x80, 0x10, 0x09,
		/* field 0 in two bytes: unknown as well */
		0x80, 0x00, 0x05,
	};
	static const uint8_t six[] = {
		0x10, 0x07,
		/* field 3 padded to six bytes */
		0x9a, 0x80, 0x80, 0x80, 0x80, 0x00, 0x02, 'n', 'o',
	};
	struct sd_view r;

	ck_assert_int_eq(sdwire_parse(five, sizeof(five), &r), 0);
	ck_assert_uint_eq(r.level, 7);
	ck_assert_int_eq(r.has_payload, 0);
	ck_assert_int_eq(sdwire_parse(six, sizeof(six), &r), -1);
}
END_TEST

/* Every prefix of a valid message either parses or is refused, never
 * reads past its end (valgrind and ASan runs watch that). */
START_TEST(parse_every_prefix)
{
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	struct sd_view r;
	uint8_t payload[300], *buf, *copy;
	size_t len, i;

	memset(payload, 'p', sizeof(payload));
	ttl.seconds = 12;
	ttl.nanos = 5;
	buf = pack("abc", 1, 300, payload, sizeof(payload), &ttl, &len);
	for (i = 0; i <= len; i++) {
		ck_assert_ptr_nonnull(copy = malloc(i ? i : 1));
		memcpy(copy, buf, i);
		if (sdwire_parse(copy, i, &r) == 0)
			ck_assert_uint_le(r.payload_off + r.payload_len, i);
		free(copy);
	}
	free(buf);
}
END_TEST

/* --- requests decoded around their buffer ---------------------------------- */

START_TEST(decode_points_into_body)
{
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	Alpcrun__V1__SharedData *m;
	uint8_t payload[70000], *buf, *body;
	size_t len;

	tu_fill(payload, sizeof(payload), 3);
	ttl.seconds = 30;
	ttl.nanos = 7;
	buf = pack("sess", 1, 9, payload, sizeof(payload), &ttl, &len);
	m = (Alpcrun__V1__SharedData *)sdwire_decode(buf, len);
	ck_assert_ptr_nonnull(m);
	body = sdwire_body(m);
	ck_assert_ptr_eq(body, buf);		/* taken, not copied */
	ck_assert_int_eq(m->has_session_id, 1);
	ck_assert_uint_eq(m->session_id.len, 4);
	ck_assert(m->session_id.data > body &&
	    m->session_id.data < body + len);
	ck_assert_mem_eq(m->session_id.data, "sess", 4);
	ck_assert_int_eq(m->has_update_level, 1);
	ck_assert_uint_eq(m->update_level, 9);
	ck_assert_int_eq(m->has_payload, 1);
	ck_assert_uint_eq(m->payload.len, sizeof(payload));
	ck_assert(m->payload.data > body &&
	    m->payload.data + sizeof(payload) <= body + len);
	ck_assert_mem_eq(m->payload.data, payload, sizeof(payload));
	ck_assert_ptr_nonnull(m->ttl);
	ck_assert_int_eq(m->ttl->seconds, 30);
	ck_assert_int_eq(m->ttl->nanos, 7);
	/* It packs as the message it was (node mode forwards it so). */
	ck_assert_uint_eq(protobuf_c_message_get_packed_size(&m->base), len);
	sdwire_free(&m->base);
}
END_TEST

/* Refused bytes: the buffer is freed all the same (ASan and valgrind
 * runs see a leak otherwise); the empty message decodes to nothing. */
START_TEST(decode_refused_and_empty)
{
	static const uint8_t bad[] = { 0x1a, 0x05, 'a', 'b' };
	Alpcrun__V1__SharedData *m;
	uint8_t *buf;

	ck_assert_ptr_nonnull(buf = malloc(sizeof(bad)));
	memcpy(buf, bad, sizeof(bad));
	ck_assert_ptr_null(sdwire_decode(buf, sizeof(bad)));
	m = (Alpcrun__V1__SharedData *)sdwire_decode(NULL, 0);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->has_session_id, 0);
	ck_assert_int_eq(m->has_update_level, 0);
	ck_assert_int_eq(m->has_payload, 0);
	ck_assert_ptr_null(m->ttl);
	ck_assert_ptr_null(sdwire_body(m));
	sdwire_free(&m->base);
}
END_TEST

/* Once a backend adopted the body, freeing the message leaves it. */
START_TEST(decode_body_taken)
{
	Alpcrun__V1__SharedData *m;
	uint8_t payload[5000], *buf, *body;
	size_t len;

	tu_fill(payload, sizeof(payload), 4);
	buf = pack("s", 1, 1, payload, sizeof(payload), NULL, &len);
	m = (Alpcrun__V1__SharedData *)sdwire_decode(buf, len);
	ck_assert_ptr_nonnull(m);
	body = sdwire_body(m);
	sdwire_body_taken(m);
	ck_assert_ptr_null(sdwire_body(m));
	ck_assert_ptr_null(m->payload.data);
	sdwire_free(&m->base);
	ck_assert_mem_eq(body + len - sizeof(payload), payload,
	    sizeof(payload));
	free(body);
}
END_TEST

/* A ttl given twice merges as protobuf merges an embedded message (grpc-go
 * and grpcio alike): each field the last given, across the occurrences;
 * protobuf-c 1.4 would keep the last ttl whole (seconds 0 here). */
START_TEST(ttl_twice_merges)
{
	static const uint8_t msg[] = {
		0x22, 0x02, 0x08, 0x05,		/* ttl { seconds: 5 } */
		0x22, 0x02, 0x10, 0x07,		/* ttl { nanos: 7 } */
		0x22, 0x02, 0x10, 0x09,		/* ttl { nanos: 9 } */
	};
	Alpcrun__V1__SharedData *m;
	struct sd_view r;
	uint8_t *buf;

	ck_assert_int_eq(sdwire_parse(msg, sizeof(msg), &r), 0);
	ck_assert_int_eq(r.has_ttl, 1);
	ck_assert_int_eq(r.ttl_seconds, 5);
	ck_assert_int_eq(r.ttl_nanos, 9);
	ck_assert_ptr_nonnull(buf = malloc(sizeof(msg)));
	memcpy(buf, msg, sizeof(msg));
	m = (Alpcrun__V1__SharedData *)sdwire_decode(buf, sizeof(msg));
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->ttl->seconds, 5);
	ck_assert_int_eq(m->ttl->nanos, 9);
	sdwire_free(&m->base);
}
END_TEST

/* --- the same as protobuf-c ---------------------------------------------------- */

/* Where protobuf-c's rules are not the encoding guide's, or easy to get
 * wrong; each with the verdict protobuf-c gives. */
START_TEST(agree_with_protobuf_c)
{
	const struct {
		const uint8_t	*b;
		size_t		 n;
		int		 decodes;
		const char	*what;
	} t[] = {
		{ NULL, 0, 1, "empty message" },
		{ (const uint8_t []){ 0x80, 0x00, 0x05, 0x10, 0x01 }, 5, 1,
		    "field 0 in a two-byte tag: unknown" },
		{ (const uint8_t []){ 0x00, 0x01 }, 2, 0, "field 0 in one byte" },
		{ (const uint8_t []){ 0xfa, 0xff, 0xff, 0xff, 0x7f, 0x00 }, 6, 1,
		    "field 2^32 - 1: unknown" },
		{ (const uint8_t []){ 0x9a, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00 }, 7, 0,
		    "a six-byte tag" },
		{ (const uint8_t []){ 0x1a, 0x81, 0x80, 0x80, 0x80, 0x00, 'a' }, 7, 1,
		    "a five-byte length" },
		{ (const uint8_t []){ 0x1a, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 'a' }, 8, 0,
		    "a six-byte length" },
		{ (const uint8_t []){ 0x5a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 }, 7, 0,
		    "a six-byte length of an unknown field" },
		{ (const uint8_t []){ 0x1a, 0xff, 0xff, 0xff, 0xff, 0x07 }, 6, 0,
		    "a length past INT_MAX" },
		{ (const uint8_t []){ 0x22, 0x02, 0x08, 0x05, 0x22, 0x02, 0x10, 0x07 }, 8, 1,
		    "ttl twice: merged" },
		{ (const uint8_t []){ 0x22, 0x04, 0x08, 0x05, 0x18, 0x01 }, 6, 1,
		    "ttl with an unknown field" },
		{ (const uint8_t []){ 0x22, 0x02, 0x0a, 0x00 }, 4, 0,
		    "ttl seconds not a varint" },
		{ (const uint8_t []){ 0x22, 0x03, 0x08, 0x05, 0x08 }, 5, 0,
		    "ttl cut inside" },
		{ (const uint8_t []){ 0x22, 0x0b, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0xff, 0xff, 0xff, 0x01 }, 13, 1,
		    "ttl nanos of ten bytes: its low 32 bits" },
		{ (const uint8_t []){ 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0x01 }, 11, 1, "level of ten bytes: its low 32 bits" },
		{ (const uint8_t []){ 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0xff, 0x01 }, 12, 0, "level of eleven bytes" },
		{ (const uint8_t []){ 0x0a, 0x01, 'a', 0x0a, 0x02, 'b', 'c' }, 7, 1,
		    "session_id twice: the last" },
		{ (const uint8_t []){ 0x1a, 0x01, 'a', 0x1a, 0x00 }, 5, 1,
		    "payload, then an empty one" },
		{ (const uint8_t []){ 0x4b, 0x4c }, 2, 0, "a group" },
		{ (const uint8_t []){ 0x4e, 0x00 }, 2, 0, "wire type 6" },
		{ (const uint8_t []){ 0x4f, 0x00 }, 2, 0, "wire type 7" },
		{ (const uint8_t []){ 0x15, 1, 2, 3, 4 }, 5, 0, "level as fixed32" },
		{ (const uint8_t []){ 0x08, 0x01 }, 2, 0, "session_id as a varint" },
		{ (const uint8_t []){ 0x21, 1, 2, 3, 4, 5, 6, 7, 8 }, 9, 0, "ttl as fixed64" },
		{ (const uint8_t []){ 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x65, 1, 2, 3, 4 }, 14, 1,
		    "unknown fixed64 and fixed32" },
	};
	size_t i;
	int decoded;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ck_assert_msg(sdwire_agree(t[i].b, t[i].n, &decoded),
		    "%s: the decoders disagree", t[i].what);
		ck_assert_msg(decoded == t[i].decodes, "%s: %s", t[i].what,
		    decoded ? "decoded" : "refused");
	}
}
END_TEST

/* Every prefix of a message with every field agrees too. */
START_TEST(agree_every_prefix)
{
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	uint8_t payload[200], *buf;
	size_t len, i;
	int decoded;

	memset(payload, 'q', sizeof(payload));
	ttl.seconds = 1;
	ttl.nanos = 2;
	buf = pack("abc", 1, 300, payload, sizeof(payload), &ttl, &len);
	for (i = 0; i <= len; i++)
		ck_assert_msg(sdwire_agree(buf, i, &decoded),
		    "prefix of %zu bytes: the decoders disagree", i);
	free(buf);
}
END_TEST

/* The head of a reply while it arrives: known once the payload's tag and
 * length are in, exactly as the whole message parses; never for a message
 * with a field after its payload. */
START_TEST(parse_head)
{
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	static const uint8_t key[] = "sess";
	uint8_t payload[300], msg[CACHE_REPLY_HEAD_MAX + sizeof(payload)];
	uint8_t *buf;
	struct sd_view h, w;
	size_t hl, len, i;
	int rv;

	memset(payload, 'p', sizeof(payload));
	/* Payload last: a reply of ours. */
	hl = cache_reply_head(msg, key, 4, 9, sizeof(payload), 5000000000ull,
	    0);
	memcpy(msg + hl, payload, sizeof(payload));
	len = hl + sizeof(payload);
	ck_assert_int_eq(sdwire_parse(msg, len, &w), 0);
	for (i = 0; i <= len; i++) {
		rv = sdwire_parse_head(msg, i, len, &h);
		if (i < hl) {
			ck_assert_msg(rv == 0, "%zu bytes: %d", i, rv);
			continue;
		}
		ck_assert_msg(rv == 1, "%zu bytes: %d", i, rv);
		ck_assert(h.has_session_id && h.session_len == 4 &&
		    h.session_id == msg + 2);
		ck_assert(h.has_level && h.level == w.level);
		ck_assert(h.has_ttl && h.ttl_seconds == w.ttl_seconds &&
		    h.ttl_nanos == w.ttl_nanos);
		ck_assert(h.has_payload);
		ck_assert_uint_eq(h.payload_off, w.payload_off);
		ck_assert_uint_eq(h.payload_len, w.payload_len);
	}

	/* protobuf-c's order (the ttl after the payload): never a head. */
	ttl.seconds = 5;
	buf = pack("sess", 1, 9, payload, sizeof(payload), &ttl, &len);
	for (i = 0; i <= len; i++)
		ck_assert_int_ne(sdwire_parse_head(buf, i, len, &h), 1);
	ck_assert_int_eq(sdwire_parse_head(buf, len, len, &h), -1);
	free(buf);

	/* A payload announcing more than the message holds, or less. */
	hl = cache_reply_head(msg, key, 4, 9, sizeof(payload), 1, 0);
	ck_assert_int_eq(sdwire_parse_head(msg, hl, hl + sizeof(payload) + 1,
	    &h), -1);
	ck_assert_int_eq(sdwire_parse_head(msg, hl, hl + sizeof(payload) - 1,
	    &h), -1);
	/* Bytes before the payload that are no SharedData: a level sent as
	 * a length-delimited field. */
	{
		static const uint8_t bad[] = { 0x12, 0x01, 'x', 0x1a, 0x02 };

		ck_assert_int_eq(sdwire_parse_head(bad, sizeof(bad),
		    sizeof(bad) + 2, &h), -1);
	}
}
END_TEST

static Suite *
sdwire_suite(void)
{
	Suite *s = suite_create("sdwire");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, parse_full_reply);
	tcase_add_test(tc, parse_level_zero_and_absent);
	tcase_add_test(tc, parse_unknown_and_repeated_fields);
	tcase_add_test(tc, parse_refuses_malformed);
	tcase_add_test(tc, parse_tag_lengths);
	tcase_add_test(tc, parse_every_prefix);
	tcase_add_test(tc, parse_head);
	suite_add_tcase(s, tc);
	tc = tcase_create("decode");
	tcase_add_test(tc, decode_points_into_body);
	tcase_add_test(tc, decode_refused_and_empty);
	tcase_add_test(tc, decode_body_taken);
	tcase_add_test(tc, ttl_twice_merges);
	tcase_add_test(tc, agree_with_protobuf_c);
	tcase_add_test(tc, agree_every_prefix);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(sdwire_suite());
}
