/*
 * check_s3health.c: unit tests of an S3 store's state (src/s3/s3health.c)
 * from outcomes fed to it: what counts as a failure (no response, 5xx,
 * 403; not 404, 412 or 304; not a 500 to a conditional write, which is
 * how Ceph RGW refuses the losers of a race), down after three in a row
 * with the last error named, a success ending down, the change callback.
 */
#include <stdio.h>
#include <string.h>

#include <check.h>
#include <event2/event.h>

#include "s3client.h"
#include "s3health.h"
#include "testutil.h"

static struct event_base *base;
static struct s3_client *cl;
static struct s3_health *h;
static int changes;

static void
changed(void *arg, const struct s3_health_info *info)
{
	(void)arg;
	(void)info;
	changes++;
}

static void
setup(void)
{
	struct s3_client_config cc = { .endpoint = "http://127.0.0.1:9",
	    .bucket = "b", .access_key = "AK", .secret_key = "SK" };
	char err[256];

	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_ptr_nonnull(cl = s3_client_new(base, &cc, err,
	    sizeof(err)));
	ck_assert_ptr_nonnull(h = s3_health_new(base, cl, "incarnation"));
	s3_health_on_change(h, changed, NULL);
	changes = 0;
}

static void
teardown(void)
{
	s3_health_free(h);
	s3_client_free(cl);
	event_base_free(base);
}

static void
status(enum s3_op op, const char *key, int cond, int st, const char *code)
{
	struct s3_response r;

	memset(&r, 0, sizeof(r));
	r.status = st;
	snprintf(r.code, sizeof(r.code), "%s", code);
	snprintf(r.message, sizeof(r.message), "%s", *code ? "words" : "");
	s3_health_note(h, op, key, cond, &r);
}

static void
no_answer(enum s3_op op, const char *key, enum s3_err e)
{
	struct s3_response r;

	memset(&r, 0, sizeof(r));
	r.err = e;
	snprintf(r.errmsg, sizeof(r.errmsg), "Connection refused");
	s3_health_note(h, op, key, 0, &r);
}

START_TEST(answers_are_not_failures)
{
	const int ok[] = { 200, 204, 304, 404, 409, 412 };
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		status(S3_GET, "k", 0, ok[i], "");
	/* Ceph RGW's losers of an If-Match race. */
	for (i = 0; i < 5; i++)
		status(S3_PUT, "s/x/head", 1, 500, "UnknownError");
	ck_assert_int_eq(s3_health_get(h)->state, S3_HEALTH_UP);
	ck_assert_uint_eq(s3_health_get(h)->failures, 0);
	ck_assert_int_eq(changes, 0);
}
END_TEST

START_TEST(down_after_three_in_a_row)
{
	const struct s3_health_info *i;
	char msg[768];

	status(S3_GET, "s/a/head", 0, 503, "SlowDown");
	i = s3_health_get(h);
	ck_assert_int_eq(i->state, S3_HEALTH_DEGRADED);
	ck_assert_str_eq(i->last_error, "GET s/a/head: HTTP 503 SlowDown: "
	    "words");
	ck_assert_int_eq(s3_health_down(h, msg, sizeof(msg)), 0);
	/* An answer between failures: the run starts again. */
	status(S3_GET, "s/a/head", 0, 404, "");
	status(S3_PUT, "s/a/head", 0, 403, "AccessDenied");
	no_answer(S3_GET, "s/b/head", S3_E_CONNECT);
	ck_assert_int_eq(s3_health_get(h)->state, S3_HEALTH_DEGRADED);
	no_answer(S3_LIST, NULL, S3_E_TIMEOUT);
	i = s3_health_get(h);
	ck_assert_int_eq(i->state, S3_HEALTH_DOWN);
	ck_assert_uint_eq(i->failed_in_a_row, 3);
	ck_assert_uint_eq(i->failures, 4);
	ck_assert_int_eq(s3_health_down(h, msg, sizeof(msg)), 1);
	ck_assert_str_eq(msg, "s3 store down (3 requests failed in a row, "
	    "the last: LIST (bucket): timed out: Connection refused)");
	ck_assert_int_eq(changes, 4);	/* each failure, the last down */
	/* Ours, not the store's: no outcome. */
	{
		struct s3_response r;

		memset(&r, 0, sizeof(r));
		r.err = S3_E_TOO_LARGE;
		s3_health_note(h, S3_GET, "k", 0, &r);
	}
	ck_assert_int_eq(s3_health_get(h)->state, S3_HEALTH_DOWN);
	/* One answer: degraded (the window has not passed). */
	status(S3_GET, "incarnation", 0, 200, "");
	ck_assert_int_eq(s3_health_get(h)->state, S3_HEALTH_DEGRADED);
	ck_assert_int_eq(s3_health_down(h, msg, sizeof(msg)), 0);
	ck_assert_str_eq(s3_health_name(S3_HEALTH_DEGRADED), "degraded");
}
END_TEST

static Suite *
s3health_suite(void)
{
	Suite *s = suite_create("s3health");
	TCase *tc = tcase_create("s3health");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, answers_are_not_failures);
	tcase_add_test(tc, down_after_three_in_a_row);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(s3health_suite());
}
