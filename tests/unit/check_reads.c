/*
 * check_reads.c: unit tests of the per-session read counts
 * (src/svc/reads.c): counted per key, forgotten when the entry leaves, at
 * most READS_MAX sessions at once (one beyond is not counted, and is once
 * room is made), nothing counted before reads_init().
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "reads.h"
#include "testutil.h"

#define K(s)	(const uint8_t *)(s), strlen(s)

static void
teardown(void)
{
	reads_free();
}

START_TEST(counted_per_session)
{
	ck_assert_int_eq(reads_init(), 0);
	ck_assert_int_eq(reads_get(K("a")), -1);
	reads_hit(K("a"));
	reads_hit(K("a"));
	reads_hit(K("ab"));
	ck_assert_int_eq(reads_get(K("a")), 2);
	ck_assert_int_eq(reads_get(K("ab")), 1);
	ck_assert_uint_eq(reads_tracked(), 2);
	reads_forget(K("a"));
	reads_forget(K("never"));
	ck_assert_int_eq(reads_get(K("a")), -1);
	ck_assert_int_eq(reads_get(K("ab")), 1);
	ck_assert_uint_eq(reads_tracked(), 1);
}
END_TEST

START_TEST(bounded)
{
	char key[32];
	size_t i;

	ck_assert_int_eq(reads_init(), 0);
	for (i = 0; i < READS_MAX; i++) {
		snprintf(key, sizeof(key), "s%zu", i);
		reads_hit(K(key));
	}
	ck_assert_uint_eq(reads_tracked(), READS_MAX);
	reads_hit(K("one-too-many"));
	ck_assert_int_eq(reads_get(K("one-too-many")), -1);
	ck_assert_uint_eq(reads_tracked(), READS_MAX);
	reads_hit(K("s7"));			/* a counted one goes on */
	ck_assert_int_eq(reads_get(K("s7")), 2);
	reads_forget(K("s0"));
	reads_hit(K("one-too-many"));
	ck_assert_int_eq(reads_get(K("one-too-many")), 1);
}
END_TEST

START_TEST(nothing_before_init)
{
	reads_hit(K("a"));
	reads_forget(K("a"));
	ck_assert_int_eq(reads_get(K("a")), -1);
	ck_assert_uint_eq(reads_tracked(), 0);
}
END_TEST

static Suite *
reads_suite(void)
{
	Suite *s = suite_create("reads");
	TCase *tc = tcase_create("reads");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, counted_per_session);
	tcase_add_test(tc, bounded);
	tcase_add_test(tc, nothing_before_init);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(reads_suite());
}
