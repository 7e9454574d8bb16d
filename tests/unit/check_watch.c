/*
 * check_watch.c: the pure parts of the change feed (spec §5): which change
 * hook events become notices (watch.c), the watch_buffer bound, and what a
 * node does with each notice for the copy it holds (prefetch.c's
 * reconciliation rules).
 */
#include <stdint.h>
#include <stdlib.h>

#include <check.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "prefetch.h"
#include "watch.h"
#include "testutil.h"

#define K(k)	ALPCRUN__V1__SHARED_DATA_NOTICE__KIND__##k

START_TEST(test_kind_of)
{
	ck_assert_int_eq(watch_kind_of(BE_EV_SET), K(SET));
	ck_assert_int_eq(watch_kind_of(BE_EV_UPDATE), K(UPDATE));
	ck_assert_int_eq(watch_kind_of(BE_EV_DELETE), K(DELETE));
	ck_assert_int_eq(watch_kind_of(BE_EV_EXPIRE), K(EXPIRE));
	/* central never evicts; a node's evictions are no notice */
	ck_assert_int_eq(watch_kind_of(BE_EV_EVICT), 0);
}
END_TEST

START_TEST(test_fits)
{
	ck_assert(watch_fits(0, 100, 4096));
	ck_assert(watch_fits(3996, 100, 4096));		/* exactly full */
	ck_assert(!watch_fits(3997, 100, 4096));
	/* an empty queue takes any notice, however small the limit */
	ck_assert(watch_fits(0, 10000, 4096));
	ck_assert(!watch_fits(1, 10000, 4096));
	ck_assert(!watch_fits(SIZE_MAX, 1, UINT64_MAX - 1));
}
END_TEST

START_TEST(test_decide_updates)
{
	int kinds[] = { K(SNAPSHOT), K(SET), K(UPDATE) };
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		int k = kinds[i];

		/* not held: ignored, whatever the level */
		ck_assert_int_eq(prefetch_decide(k, 0, 0, 0, 1, 5, 0), PF_NONE);
		/* newer: fetch; same: keep, nothing downloaded */
		ck_assert_int_eq(prefetch_decide(k, 1, 4, 0, 1, 5, 0), PF_FETCH);
		ck_assert_int_eq(prefetch_decide(k, 1, 0, 0, 1, UINT32_MAX, 0),
		    PF_FETCH);
		ck_assert_int_eq(prefetch_decide(k, 1, 5, 0, 1, 5, 0), PF_NONE);
		ck_assert_int_eq(prefetch_decide(k, 1, 0, 0, 1, 0, 0), PF_NONE);
		/* older than held: central lost it and it was set again */
		ck_assert_int_eq(prefetch_decide(k, 1, 6, 0, 1, 5, 0), PF_DROP);
		/* no level: nothing to compare */
		ck_assert_int_eq(prefetch_decide(k, 1, 6, 0, 0, 0, 0), PF_NONE);
		/* the same level, the same content: kept */
		ck_assert_int_eq(prefetch_decide(k, 1, 5, 0x77, 1, 5, 0x77),
		    PF_NONE);
		/* the same level, other content (a store that forgot, the
		 * level set again): dropped, not served again */
		ck_assert_int_eq(prefetch_decide(k, 1, 5, 0x77, 1, 5, 0x78),
		    PF_DROP);
		ck_assert_int_eq(prefetch_decide(k, 1, 5, 0, 1, 5, 0x78),
		    PF_DROP);
		/* no generation in the notice: levels only */
		ck_assert_int_eq(prefetch_decide(k, 1, 5, 0x77, 1, 5, 0),
		    PF_NONE);
		/* a generation does not matter for other levels */
		ck_assert_int_eq(prefetch_decide(k, 1, 4, 0x77, 1, 5, 0x78),
		    PF_FETCH);
	}
}
END_TEST

START_TEST(test_decide_removals)
{
	int kinds[] = { K(DELETE), K(EXPIRE) };
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		int k = kinds[i];

		ck_assert_int_eq(prefetch_decide(k, 1, 3, 0, 1, 3, 0), PF_DROP);
		ck_assert_int_eq(prefetch_decide(k, 1, 2, 0, 1, 3, 0), PF_DROP);
		/* a newer level held (fetched after a re-set): kept */
		ck_assert_int_eq(prefetch_decide(k, 1, 4, 0, 1, 3, 0), PF_NONE);
		ck_assert_int_eq(prefetch_decide(k, 0, 0, 0, 1, 3, 0), PF_NONE);
	}
	ck_assert_int_eq(prefetch_decide(K(SNAPSHOT_END), 1, 1, 0, 0, 0, 0),
	    PF_NONE);
	ck_assert_int_eq(prefetch_decide(K(KIND_UNSPECIFIED), 1, 1, 0, 1, 2,
	    0), PF_NONE);
	ck_assert_int_eq(prefetch_decide(99, 1, 1, 0, 1, 2, 0), PF_NONE);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("watch");
	TCase *tc = tcase_create("pure");

	tcase_add_test(tc, test_kind_of);
	tcase_add_test(tc, test_fits);
	tcase_add_test(tc, test_decide_updates);
	tcase_add_test(tc, test_decide_removals);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
