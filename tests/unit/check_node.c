/*
 * check_node.c: unit tests of node mode's pure parts (src/svc/node.c, spec §5):
 * the Get decision table, the in-place parser of central's SharedData
 * replies (the payload found, never copied), and the TTL of a copy.
 *
 * Coalescing, write-through and the link are exercised end to end by
 * tests/integration/node/test_node.py against real daemons.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "clock.h"
#include "node.h"
#include "testutil.h"

/* --- the decision table ---------------------------------------------------- */

START_TEST(decide_table)
{
	/* L given, H == L: serve the local copy. */
	ck_assert_int_eq(node_decide_get(1, 3, 1, 3), NODE_SERVE);
	ck_assert_int_eq(node_decide_get(1, 0, 1, 0), NODE_SERVE);
	ck_assert_int_eq(node_decide_get(1, UINT32_MAX, 1, UINT32_MAX),
	    NODE_SERVE);
	/* L given, nothing held: fetch (S, L). */
	ck_assert_int_eq(node_decide_get(0, 0, 1, 0), NODE_FETCH);
	ck_assert_int_eq(node_decide_get(0, 7, 1, 3), NODE_FETCH);
	/* L given, H < L: fetch (S, L). */
	ck_assert_int_eq(node_decide_get(1, 2, 1, 3), NODE_FETCH);
	ck_assert_int_eq(node_decide_get(1, 0, 1, UINT32_MAX), NODE_FETCH);
	/* L given, H > L: FAILED_PRECONDITION locally. */
	ck_assert_int_eq(node_decide_get(1, 3, 1, 2), NODE_MISMATCH);
	ck_assert_int_eq(node_decide_get(1, UINT32_MAX, 1, 0), NODE_MISMATCH);
	/* No level, H held: serve. */
	ck_assert_int_eq(node_decide_get(1, 5, 0, 0), NODE_SERVE);
	ck_assert_int_eq(node_decide_get(1, 5, 0, 9), NODE_SERVE);
	/* No level, nothing held: fetch (S, none). */
	ck_assert_int_eq(node_decide_get(0, 0, 0, 0), NODE_FETCH);
}
END_TEST

/* --- the reply parser -------------------------------------------------------- */

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
	struct node_reply r;
	uint8_t payload[70000], *buf;
	size_t len, i;

	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	ttl.seconds = 599;
	ttl.nanos = 123456789;
	buf = pack("session-1", 1, 42, payload, sizeof(payload), &ttl, &len);
	ck_assert_int_eq(node_parse_reply(buf, len, &r), 0);
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
	struct node_reply r;
	uint8_t *buf;
	size_t len;

	/* Level 0 is a real level: present, explicitly. */
	buf = pack("s", 1, 0, NULL, 0, NULL, &len);
	ck_assert_int_eq(node_parse_reply(buf, len, &r), 0);
	ck_assert_int_eq(r.has_level, 1);
	ck_assert_uint_eq(r.level, 0);
	ck_assert_uint_eq(r.payload_len, 0);
	ck_assert_int_eq(r.has_ttl, 0);
	free(buf);
	buf = pack("s", 0, 0, (const uint8_t *)"x", 1, NULL, &len);
	ck_assert_int_eq(node_parse_reply(buf, len, &r), 0);
	ck_assert_int_eq(r.has_level, 0);
	ck_assert_uint_eq(r.payload_len, 1);
	free(buf);
	/* The empty message parses, with nothing in it. */
	ck_assert_int_eq(node_parse_reply(NULL, 0, &r), 0);
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
	struct node_reply r;

	ck_assert_int_eq(node_parse_reply(msg, sizeof(msg), &r), 0);
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
	struct node_reply r;

	ck_assert_int_eq(node_parse_reply(trunc_len, sizeof(trunc_len), &r),
	    -1);
	ck_assert_int_eq(node_parse_reply(trunc_varint, sizeof(trunc_varint),
	    &r), -1);
	ck_assert_int_eq(node_parse_reply(wrong_wt_level,
	    sizeof(wrong_wt_level), &r), -1);
	ck_assert_int_eq(node_parse_reply(wrong_wt_payload,
	    sizeof(wrong_wt_payload), &r), -1);
	ck_assert_int_eq(node_parse_reply(group, sizeof(group), &r), -1);
	ck_assert_int_eq(node_parse_reply(field0, sizeof(field0), &r), -1);
	ck_assert_int_eq(node_parse_reply(long_varint, sizeof(long_varint),
	    &r), -1);
	ck_assert_int_eq(node_parse_reply(bad_ttl, sizeof(bad_ttl), &r), -1);
	ck_assert_int_eq(node_parse_reply(trunc_fixed, sizeof(trunc_fixed),
	    &r), -1);
}
END_TEST

/* A field number past 32 bits is unknown, not a low field in disguise: the
 * number is compared whole, never truncated. */
START_TEST(parse_huge_field_number)
{
	static const uint8_t msg[] = {
		0x10, 0x07,				/* level 7 */
		/* field 2^32 + 3, length-delimited: not the payload */
		0x9a, 0x80, 0x80, 0x80, 0x80, 0x01, 0x02, 'n', 'o',
		/* field 2^32 + 2, varint: not the level */
		0x90, 0x80, 0x80, 0x80, 0x80, 0x01, 0x09,
	};
	struct node_reply r;

	ck_assert_int_eq(node_parse_reply(msg, sizeof(msg), &r), 0);
	ck_assert_uint_eq(r.level, 7);
	ck_assert_uint_eq(r.payload_len, 0);
}
END_TEST

/* Every prefix of a valid message either parses or is refused, never
 * reads past its end (valgrind and ASan runs watch that). */
START_TEST(parse_every_prefix)
{
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	struct node_reply r;
	uint8_t payload[300], *buf, *copy;
	size_t len, i;

	memset(payload, 'p', sizeof(payload));
	ttl.seconds = 12;
	ttl.nanos = 5;
	buf = pack("abc", 1, 300, payload, sizeof(payload), &ttl, &len);
	for (i = 0; i <= len; i++) {
		ck_assert_ptr_nonnull(copy = malloc(i ? i : 1));
		memcpy(copy, buf, i);
		if (node_parse_reply(copy, i, &r) == 0)
			ck_assert_uint_le(r.payload_off + r.payload_len, i);
		free(copy);
	}
	free(buf);
}
END_TEST

/* --- the TTL of a copy ----------------------------------------------------------- */

START_TEST(copy_ttl)
{
	struct node_reply r;

	memset(&r, 0, sizeof(r));
	/* Central's remaining TTL, as reported. */
	r.has_ttl = 1;
	r.ttl_seconds = 42;
	r.ttl_nanos = 500;
	ck_assert_uint_eq(node_copy_ttl(&r, 600000, 600000),
	    42 * NS_PER_SEC + 500);
	/* Clamped to the node's max_ttl. */
	ck_assert_uint_eq(node_copy_ttl(&r, 10000, 20000), 20 * NS_PER_SEC);
	r.ttl_seconds = INT64_MAX;
	ck_assert_uint_eq(node_copy_ttl(&r, 600000, 600000),
	    600 * NS_PER_SEC);
	/* Sub-second. */
	r.ttl_seconds = 0;
	r.ttl_nanos = 1;
	ck_assert_uint_eq(node_copy_ttl(&r, 600000, 600000), 1);
	/* None, zero or bad: the node's default_ttl, clamped. */
	r.ttl_nanos = 0;
	ck_assert_uint_eq(node_copy_ttl(&r, 30000, 600000), 30 * NS_PER_SEC);
	r.ttl_seconds = -5;
	ck_assert_uint_eq(node_copy_ttl(&r, 30000, 600000), 30 * NS_PER_SEC);
	r.ttl_seconds = 1;
	r.ttl_nanos = -1;
	ck_assert_uint_eq(node_copy_ttl(&r, 30000, 600000), 30 * NS_PER_SEC);
	r.ttl_nanos = 1000000000;
	ck_assert_uint_eq(node_copy_ttl(&r, 30000, 600000), 30 * NS_PER_SEC);
	r.has_ttl = 0;
	r.ttl_nanos = 0;
	ck_assert_uint_eq(node_copy_ttl(&r, 30000, 600000), 30 * NS_PER_SEC);
	ck_assert_uint_eq(node_copy_ttl(&r, 900000, 600000),
	    600 * NS_PER_SEC);
}
END_TEST

static Suite *
node_suite(void)
{
	Suite *s = suite_create("node");
	TCase *tc = tcase_create("pure");

	tcase_add_test(tc, decide_table);
	tcase_add_test(tc, parse_full_reply);
	tcase_add_test(tc, parse_level_zero_and_absent);
	tcase_add_test(tc, parse_unknown_and_repeated_fields);
	tcase_add_test(tc, parse_refuses_malformed);
	tcase_add_test(tc, parse_huge_field_number);
	tcase_add_test(tc, parse_every_prefix);
	tcase_add_test(tc, copy_ttl);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(node_suite());
}
