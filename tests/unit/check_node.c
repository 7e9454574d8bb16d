/*
 * check_node.c: unit tests of node mode's pure parts (src/svc/node.c, spec §5):
 * the Get decision table and the TTL of a copy. (The in-place parser of
 * central's replies is sdwire.c's: check_sdwire.c.)
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
#include "identity.h"
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

/* --- the TTL of a copy ----------------------------------------------------------- */

START_TEST(copy_ttl)
{
	struct sd_view r;

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

/* The text form of incarnations and generations (identity.h): 16 hex
 * digits both ways; anything else is refused, and 0 is no identity. */
START_TEST(identity_text)
{
	char buf[IDENTITY_HEX];
	uint64_t v = 0;

	identity_format(0x0123456789abcdefULL, buf);
	ck_assert_str_eq(buf, "0123456789abcdef");
	ck_assert_int_eq(identity_parse(buf, &v), 0);
	ck_assert_uint_eq(v, 0x0123456789abcdefULL);
	identity_format(UINT64_MAX, buf);
	ck_assert_str_eq(buf, "ffffffffffffffff");
	ck_assert_int_eq(identity_parse("FFFFFFFFFFFFFFFF", &v), 0);
	ck_assert_uint_eq(v, UINT64_MAX);
	identity_format(1, buf);
	ck_assert_str_eq(buf, "0000000000000001");
	v = 7;
	ck_assert_int_eq(identity_parse(NULL, &v), -1);
	ck_assert_int_eq(identity_parse("", &v), -1);
	ck_assert_int_eq(identity_parse("0123456789abcde", &v), -1);
	ck_assert_int_eq(identity_parse("0123456789abcdef0", &v), -1);
	ck_assert_int_eq(identity_parse("0123456789abcdeg", &v), -1);
	ck_assert_int_eq(identity_parse(" 123456789abcdef", &v), -1);
	ck_assert_int_eq(identity_parse("0000000000000000", &v), -1);
	ck_assert_uint_eq(v, 7);		/* untouched when refused */
}
END_TEST

static Suite *
node_suite(void)
{
	Suite *s = suite_create("node");
	TCase *tc = tcase_create("pure");

	tcase_add_test(tc, decide_table);
	tcase_add_test(tc, copy_ttl);
	tcase_add_test(tc, identity_text);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(node_suite());
}
