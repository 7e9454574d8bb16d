/*
 * check_bigbuf.c: unit tests of payload-sized buffers (src/util/bigbuf.c):
 * a large buffer freed is handed out again for a size it fits, never for
 * one it would waste more than a quarter of; small ones are not kept; at
 * most BIGBUF_KEEP are, the oldest making room; bigbuf_trim() gives back
 * those unused for BIGBUF_KEEP_MS, and the gauge counts what is kept.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>

#include <check.h>

#include "bigbuf.h"
#include "clock.h"
#include "testutil.h"

#define MB	((size_t)1 << 20)

static void
teardown(void)
{
	bigbuf_trim(UINT64_MAX);
	ck_assert_uint_eq(bigbuf_kept_bytes(), 0);
}

START_TEST(reused_for_a_size_it_fits)
{
	uint8_t *a, *b;
	size_t cap;

	ck_assert_ptr_nonnull(a = bigbuf_alloc(8 * MB));
	memset(a, 1, 8 * MB);
	cap = malloc_usable_size(a);
	bigbuf_free(a);
	ck_assert_uint_eq(bigbuf_kept_bytes(), cap);
	/* Too small for it: a quarter of it would be wasted. */
	ck_assert_ptr_nonnull(b = bigbuf_alloc(5 * MB));
	ck_assert_ptr_ne(b, a);
	ck_assert_uint_eq(bigbuf_kept_bytes(), cap);
	free(b);
	/* Too large for it. */
	ck_assert_ptr_nonnull(b = bigbuf_alloc(9 * MB));
	ck_assert_ptr_ne(b, a);
	free(b);
	/* The same size, and a little less: the kept buffer. */
	ck_assert_ptr_eq(b = bigbuf_alloc(8 * MB - 4096), a);
	ck_assert_uint_eq(bigbuf_kept_bytes(), 0);
	bigbuf_free(b);
	ck_assert_ptr_eq(b = bigbuf_alloc(8 * MB), a);
	bigbuf_free(b);
}
END_TEST

START_TEST(small_ones_are_not_kept)
{
	bigbuf_free(bigbuf_alloc(BIGBUF_MIN / 2));
	bigbuf_free(malloc(1000));
	bigbuf_free(NULL);
	ck_assert_uint_eq(bigbuf_kept_bytes(), 0);
}
END_TEST

START_TEST(the_oldest_makes_room)
{
	uint8_t *p[BIGBUF_KEEP + 1];
	size_t i;

	for (i = 0; i <= BIGBUF_KEEP; i++)
		ck_assert_ptr_nonnull(p[i] = bigbuf_alloc((8 + i) * MB));
	for (i = 0; i <= BIGBUF_KEEP; i++)
		bigbuf_free(p[i]);
	/* p[0], freed first, was given back; the others are kept. */
	ck_assert_uint_le(bigbuf_kept_bytes(), (size_t)BIGBUF_KEEP *
	    (9 + BIGBUF_KEEP) * MB);
	for (i = 1; i <= BIGBUF_KEEP; i++)
		ck_assert_ptr_eq(bigbuf_alloc((8 + i) * MB), p[i]);
	ck_assert_uint_eq(bigbuf_kept_bytes(), 0);
	for (i = 1; i <= BIGBUF_KEEP; i++)
		free(p[i]);
}
END_TEST

START_TEST(trimmed_after_keep_ms)
{
	uint64_t now;

	bigbuf_free(bigbuf_alloc(8 * MB));
	now = clock_now_ns();
	bigbuf_trim(now);			/* kept just now: stays */
	ck_assert_uint_gt(bigbuf_kept_bytes(), 0);
	bigbuf_trim(now + (uint64_t)BIGBUF_KEEP_MS * NS_PER_MS + NS_PER_SEC);
	ck_assert_uint_eq(bigbuf_kept_bytes(), 0);
}
END_TEST

static Suite *
bigbuf_suite(void)
{
	Suite *s = suite_create("bigbuf");
	TCase *tc = tcase_create("recycling");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, reused_for_a_size_it_fits);
	tcase_add_test(tc, small_ones_are_not_kept);
	tcase_add_test(tc, the_oldest_makes_room);
	tcase_add_test(tc, trimmed_after_keep_ms);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(bigbuf_suite());
}
