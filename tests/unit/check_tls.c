/*
 * check_tls.c: unit tests of tls.c: tls_out_add()'s coalescing (the chains
 * bufferevent_openssl turns into TLS records, spec §11: full DATA frames
 * must leave in full 16 KiB records, small frames share records) and the
 * errors of the context builders for arguments that need no files.
 * Certificates and their errors are tested end to end in
 * tests/integration/tls/test_tls.py.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "testutil.h"

#define FRAME	(16384 + 9)

/* Lengths of out's chains into lens (at most max); returns the count. */
static int
chains(struct evbuffer *out, size_t *lens, int max)
{
	struct evbuffer_iovec v[256];
	int n, i;

	n = evbuffer_peek(out, -1, NULL, v, 256);
	ck_assert_int_le(n, 256);
	for (i = 0; i < n && i < max; i++)
		lens[i] = v[i].iov_len;
	return n;
}

START_TEST(full_frames_fill_large_chains)
{
	struct evbuffer *out = evbuffer_new();
	uint8_t *payload = malloc(16384), hd[9], *back;
	size_t room = 0, lens[256], total = 0, i;
	int n, k;

	ck_assert_ptr_nonnull(out);
	for (i = 0; i < 16384; i++)
		payload[i] = (uint8_t)(i * 7);
	memset(hd, 0xee, sizeof(hd));
	/* 64 frames as nghttp2 hands them over: header, then payload. */
	for (k = 0; k < 64; k++) {
		ck_assert_int_eq(tls_out_add(out, &room, hd, 9, FRAME), 0);
		ck_assert_int_eq(tls_out_add(out, &room, payload, 16384, FRAME),
		    0);
	}
	ck_assert_uint_eq(evbuffer_get_length(out), 64 * (size_t)FRAME);
	n = chains(out, lens, 256);
	/* Every chain but the last holds at least seven full records: no
	 * short record at each frame header. */
	for (k = 0; k < n - 1; k++) {
		ck_assert_msg(lens[k] >= 7 * 16384, "chain %d: %zu bytes", k,
		    lens[k]);
		total += lens[k];
	}
	ck_assert_int_le(n, 64 * FRAME / (7 * 16384) + 2);
	/* The bytes, in order. */
	back = malloc(64 * (size_t)FRAME);
	ck_assert_int_eq(evbuffer_remove(out, back, 64 * (size_t)FRAME),
	    64 * FRAME);
	for (k = 0; k < 64; k++) {
		ck_assert_mem_eq(back + (size_t)k * FRAME, hd, 9);
		ck_assert_mem_eq(back + (size_t)k * FRAME + 9, payload, 16384);
	}
	free(back);
	free(payload);
	evbuffer_free(out);
}
END_TEST

START_TEST(small_frames_share_chains)
{
	struct evbuffer *out = evbuffer_new();
	uint8_t frame[1100];
	size_t room = 0, lens[256];
	int n, k;

	memset(frame, 0x5a, sizeof(frame));
	/* A burst of small replies: 40 frames of 1100 bytes. */
	for (k = 0; k < 40; k++)
		ck_assert_int_eq(tls_out_add(out, &room, frame, sizeof(frame),
		    sizeof(frame)), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 40 * sizeof(frame));
	n = chains(out, lens, 256);
	/* About 16 KiB per chain: three or four records, not forty. */
	ck_assert_int_le(n, 4);
	for (k = 0; k < n - 1; k++)
		ck_assert_uint_ge(lens[k], 15 * 1024);
	evbuffer_free(out);
}
END_TEST

START_TEST(stale_room_is_harmless)
{
	struct evbuffer *out = evbuffer_new();
	uint8_t buf[FRAME];
	size_t room = 0;

	memset(buf, 1, sizeof(buf));
	ck_assert_int_eq(tls_out_add(out, &room, buf, sizeof(buf), FRAME), 0);
	/* The socket took everything: the chain is gone, room is stale. */
	evbuffer_drain(out, evbuffer_get_length(out));
	ck_assert_uint_gt(room, 0);
	ck_assert_int_eq(tls_out_add(out, &room, buf, sizeof(buf), FRAME), 0);
	ck_assert_int_eq(tls_out_add(out, &room, buf, sizeof(buf), FRAME), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 2 * sizeof(buf));
	evbuffer_free(out);
}
END_TEST

START_TEST(context_argument_errors)
{
	char err[256], warn[256];
	SSL_CTX *ctx;

	ctx = tls_client_ctx_new(NULL, "/c.pem", NULL, err, sizeof(err));
	ck_assert_ptr_null(ctx);
	ck_assert_str_eq(err, "certificate without key");
	ctx = tls_upstream_ctx_new(NULL, NULL, "/k.pem", warn, sizeof(warn),
	    err, sizeof(err));
	ck_assert_ptr_null(ctx);
	ck_assert_str_eq(err, "upstream_key without upstream_cert");
	ctx = tls_client_ctx_new("/nonexistent/ca.pem", NULL, NULL, err,
	    sizeof(err));
	ck_assert_ptr_null(ctx);
	ck_assert_str_eq(err, "CA file /nonexistent/ca.pem: No such file or "
	    "directory");
	ctx = tls_server_ctx_new("/nonexistent/s.pem", "/nonexistent/s.key",
	    NULL, warn, sizeof(warn), err, sizeof(err));
	ck_assert_ptr_null(ctx);
	ck_assert_str_eq(err, "tls_cert /nonexistent/s.pem: No such file or "
	    "directory");
	/* The system's trust store, no client certificate: fine. */
	ctx = tls_client_ctx_new(NULL, NULL, NULL, err, sizeof(err));
	ck_assert_msg(ctx != NULL, "%s", err);
	SSL_CTX_free(ctx);
	ck_assert_ptr_null(tls_server_ctx());
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");

	tcase_add_test(tc, full_frames_fill_large_chains);
	tcase_add_test(tc, small_frames_share_chains);
	tcase_add_test(tc, stale_room_is_harmless);
	tcase_add_test(tc, context_argument_errors);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
