/*
 * check_h2io.c: the wire plumbing both sides share (src/h2/h2io.c): body
 * queues of owned, inline and referenced bytes, DATA frames from them into
 * a connection's output (staged, by reference, or refused when the queue
 * is shorter than the frame), and rewinding a kept body.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "h2io.h"
#include "testutil.h"

static struct event_base *base;
static struct bufferevent *pair[2];
static struct h2_out out;

static int released;

static void
release(struct h2_ref *r)
{
	released++;
}

static struct h2_ref ref = { 0, release };

static void
setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(bufferevent_pair_new(base, 0, pair), 0);
	bufferevent_enable(pair[0], EV_WRITE);
	bufferevent_enable(pair[1], EV_READ);
	memset(&out, 0, sizeof(out));
	out.bev = pair[0];
	released = 0;
	ref.refs = 0;
}

static void
teardown(void)
{
	h2_out_forget(&out);
	bufferevent_free(pair[0]);
	bufferevent_free(pair[1]);
	event_base_free(base);
}

/* What was written, committed and passed to the other end of the pair
 * (the output's front is frozen: only its bufferevent drains it). */
static struct evbuffer *
delivered(size_t *n)
{
	struct evbuffer *in = bufferevent_get_input(pair[1]);

	ck_assert_int_eq(h2_out_commit(), 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_output(pair[0])),
	    0);
	*n = evbuffer_get_length(in);
	return in;
}

/* The same as one buffer. */
static uint8_t *
output(size_t *n)
{
	return evbuffer_pullup(delivered(n), -1);
}

static const uint8_t hd[9] = { 0, 0, 0, 0, 0, 0, 0, 0, 1 };

START_TEST(owned_bytes_are_staged_with_their_header)
{
	struct h2_body b;
	uint8_t *p, *got;
	size_t n;

	h2_body_init(&b);
	p = h2_body_add_inline(&b, 100);
	ck_assert_ptr_nonnull(p);
	memset(p, 'a', 100);
	ck_assert_uint_eq(b.len, 100);
	ck_assert_int_eq(h2_out_data(&out, hd, &b, 60), 0);
	ck_assert_uint_eq(b.len, 40);
	ck_assert_uint_eq(h2_out_len(&out), 69);	/* staged, counted */
	ck_assert_int_eq(h2_out_data(&out, hd, &b, 40), 0);
	ck_assert_uint_eq(b.len, 0);
	got = output(&n);
	ck_assert_uint_eq(n, 9 + 60 + 9 + 40);
	ck_assert(memcmp(got, hd, 9) == 0 && got[9] == 'a' && got[68] == 'a');
	ck_assert(memcmp(got + 69, hd, 9) == 0);
	h2_body_clear(&b);
}
END_TEST

START_TEST(a_frame_longer_than_the_queue_is_refused_whole)
{
	struct h2_body b;
	uint8_t *p;
	size_t n;

	h2_body_init(&b);
	p = h2_body_add_inline(&b, 10);
	memset(p, 'b', 10);
	/* As after a queue was emptied under a frame nghttp2 holds. */
	ck_assert_int_eq(h2_out_data(&out, hd, &b, 11), -2);
	ck_assert_uint_eq(b.len, 10);
	(void)output(&n);
	ck_assert_uint_eq(n, 0);			/* not even the header */
	h2_body_clear(&b);
}
END_TEST

START_TEST(referenced_range_goes_by_reference_and_is_released_once)
{
	static uint8_t payload[64 << 10];
	struct h2_body b;
	struct evbuffer *in;
	size_t n;

	memset(payload, 'p', sizeof(payload));
	h2_body_init(&b);
	ref.refs = 1;					/* the caller's */
	ck_assert_int_eq(h2_body_add_ref(&b, payload, sizeof(payload), &ref),
	    0);
	ck_assert_uint_eq(ref.refs, 2);
	ck_assert_int_eq(h2_out_data(&out, hd, &b, sizeof(payload)), 0);
	/* The segment is gone; the output's reference holds the bytes. */
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(ref.refs, 2);
	h2_ref_drop(&ref);				/* the caller lets go */
	ck_assert_int_eq(released, 0);
	in = delivered(&n);
	ck_assert_uint_eq(n, 9 + sizeof(payload));
	ck_assert_int_eq(released, 0);			/* still referenced */
	ck_assert_int_eq(evbuffer_drain(in, n), 0);	/* the peer read it */
	ck_assert_int_eq(released, 1);
	h2_body_clear(&b);
}
END_TEST

START_TEST(clearing_drops_every_hold)
{
	static uint8_t payload[8 << 10];
	struct h2_body b;
	uint8_t *owned = malloc(32);

	h2_body_init(&b);
	ref.refs = 1;
	ck_assert_int_eq(h2_body_add_ref(&b, payload, 5000, &ref), 0);
	ck_assert_int_eq(h2_body_add_ref(&b, payload + 5000, 3000, &ref), 0);
	ck_assert_int_eq(h2_body_add_owned(&b, owned, 32), 0);
	ck_assert_uint_eq(b.len, 8032);
	ck_assert_uint_eq(ref.refs, 3);
	h2_body_clear(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(ref.refs, 1);
	h2_ref_drop(&ref);
	ck_assert_int_eq(released, 1);
}
END_TEST

START_TEST(append_moves_segments_in_order)
{
	struct h2_body a, b;
	uint8_t *p, *got;
	size_t n;

	h2_body_init(&a);
	h2_body_init(&b);
	p = h2_body_add_inline(&a, 3);
	memcpy(p, "abc", 3);
	p = h2_body_add_inline(&b, 3);
	memcpy(p, "def", 3);
	h2_body_append(&a, &b);
	ck_assert_uint_eq(a.len, 6);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_null(STAILQ_FIRST(&b.segs));
	ck_assert_int_eq(h2_out_data(&out, hd, &a, 6), 0);
	got = output(&n);
	ck_assert_uint_eq(n, 15);
	ck_assert(memcmp(got + 9, "abcdef", 6) == 0);
	h2_body_clear(&a);
	h2_body_clear(&b);
}
END_TEST

START_TEST(a_kept_body_goes_out_again_after_rewind)
{
	struct h2_body b;
	uint8_t *p, *got;
	size_t n;

	h2_body_init(&b);
	b.keep = 1;
	p = h2_body_add_inline(&b, 4);
	memcpy(p, "once", 4);
	ck_assert_int_eq(h2_out_data(&out, hd, &b, 4), 0);
	ck_assert_uint_eq(b.len, 0);
	h2_body_rewind(&b);
	ck_assert_uint_eq(b.len, 4);
	ck_assert_int_eq(h2_out_data(&out, hd, &b, 4), 0);
	got = output(&n);
	ck_assert_uint_eq(n, 26);
	ck_assert(memcmp(got + 9, "once", 4) == 0 &&
	    memcmp(got + 22, "once", 4) == 0);
	h2_body_clear(&b);
}
END_TEST

static Suite *
h2io_suite(void)
{
	Suite	*s = suite_create("h2io");
	TCase	*tc = tcase_create("body");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, owned_bytes_are_staged_with_their_header);
	tcase_add_test(tc, a_frame_longer_than_the_queue_is_refused_whole);
	tcase_add_test(tc, referenced_range_goes_by_reference_and_is_released_once);
	tcase_add_test(tc, clearing_drops_every_hold);
	tcase_add_test(tc, append_moves_segments_in_order);
	tcase_add_test(tc, a_kept_body_goes_out_again_after_rewind);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(h2io_suite());
}
