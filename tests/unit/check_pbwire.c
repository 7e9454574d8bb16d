/*
 * check_pbwire.c: unit tests of the protobuf wire-format reader
 * (src/grpc/pbwire.c): varints of every length, tags, length-delimited
 * fields and skipping by wire type, each against protobuf-c's own encoding
 * where one exists, and every way the bytes can be malformed: a varint cut
 * short or longer than 10 bytes, a length past the end, a fixed field cut
 * short, groups and undefined wire types. A refusal leaves the cursor where
 * it was. Inputs sit in malloc'ed buffers of their exact size, so that a
 * read past the end shows under ASan and valgrind.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "pbwire.h"
#include "testutil.h"

/* An exact-size heap copy of n bytes (at least one byte allocated). */
static uint8_t *
heap_copy(const uint8_t *b, size_t n)
{
	uint8_t *p;

	ck_assert_ptr_nonnull(p = malloc(n > 0 ? n : 1));
	if (n > 0)
		memcpy(p, b, n);
	return p;
}

/* Read one varint from exactly b[0..n): 0 with *v and the bytes read in
 * *used; or -1 and the cursor unmoved (*used 0). */
static int
varint_of(const uint8_t *b, size_t n, uint64_t *v, size_t *used)
{
	uint8_t *buf = heap_copy(b, n);
	const uint8_t *p = buf;
	int rv;

	rv = pbwire_varint(&p, buf + n, v);
	*used = (size_t)(p - buf);
	if (rv != 0)
		ck_assert_uint_eq(*used, 0);
	free(buf);
	return rv;
}

/* --- varints -------------------------------------------------------------- */

START_TEST(varint_values)
{
	static const struct {
		uint8_t	 b[10];
		size_t	 n;
		uint64_t v;
	} t[] = {
		{ { 0x00 }, 1, 0 },
		{ { 0x01 }, 1, 1 },
		{ { 0x7f }, 1, 127 },
		{ { 0x80, 0x01 }, 2, 128 },
		{ { 0xac, 0x02 }, 2, 300 },
		{ { 0xff, 0xff, 0xff, 0xff, 0x0f }, 5, UINT32_MAX },
		{ { 0x80, 0x80, 0x80, 0x80, 0x10 }, 5, 1ULL << 32 },
		{ { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0x01 }, 10, UINT64_MAX },
		{ { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
		    0x01 }, 10, 1ULL << 63 },
		/* Not minimal, still valid: zero in two bytes. */
		{ { 0x80, 0x00 }, 2, 0 },
		/* The tenth byte's bits past the 64th are dropped. */
		{ { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0x7f }, 10, UINT64_MAX },
	};
	uint64_t v;
	size_t i, used;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ck_assert_msg(varint_of(t[i].b, t[i].n, &v, &used) == 0,
		    "case %zu refused", i);
		ck_assert_uint_eq(used, t[i].n);
		ck_assert_msg(v == t[i].v, "case %zu: %llu", i,
		    (unsigned long long)v);
	}
}
END_TEST

/* It reads one varint and stops: what follows is not its business. */
START_TEST(varint_stops)
{
	static const uint8_t b[] = { 0xac, 0x02, 0xff, 0x05 };
	uint64_t v;
	size_t used;

	ck_assert_int_eq(varint_of(b, sizeof(b), &v, &used), 0);
	ck_assert_uint_eq(v, 300);
	ck_assert_uint_eq(used, 2);
}
END_TEST

START_TEST(varint_truncated)
{
	static const uint8_t b[] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
	};
	uint64_t v = 42;
	size_t n, used;

	/* Nothing at all, and every cut before the last byte. */
	for (n = 0; n < sizeof(b); n++) {
		ck_assert_msg(varint_of(b, n, &v, &used) == -1,
		    "%zu bytes of 10 read as a varint", n);
		ck_assert_uint_eq(v, 42);	/* untouched */
	}
}
END_TEST

START_TEST(varint_overlong)
{
	uint8_t b[16];
	uint64_t v;
	size_t used;

	/* Eleven bytes: the tenth still says more follows. */
	memset(b, 0x80, sizeof(b));
	b[10] = 0x00;
	ck_assert_int_eq(varint_of(b, 11, &v, &used), -1);
	/* Longer runs, whether or not a terminator is in the buffer. */
	ck_assert_int_eq(varint_of(b, sizeof(b), &v, &used), -1);
	memset(b, 0xff, sizeof(b));
	b[15] = 0x01;
	ck_assert_int_eq(varint_of(b, sizeof(b), &v, &used), -1);
}
END_TEST

/* An empty range, also when the buffer pointer is NULL. */
START_TEST(varint_empty)
{
	const uint8_t *p = NULL;
	uint64_t v;

	ck_assert_int_eq(pbwire_varint(&p, NULL, &v), -1);
	ck_assert_ptr_null(p);
}
END_TEST

/* --- tags ----------------------------------------------------------------- */

START_TEST(tag_split)
{
	static const struct {
		uint8_t	 b[5];
		size_t	 n;
		uint64_t field;
		unsigned wt;
	} t[] = {
		{ { 0x08 }, 1, 1, PBWIRE_VARINT },
		{ { 0x12 }, 1, 2, PBWIRE_LEN },
		{ { 0x19 }, 1, 3, PBWIRE_I64 },
		{ { 0x25 }, 1, 4, PBWIRE_I32 },
		{ { 0x4b }, 1, 9, PBWIRE_SGROUP },
		{ { 0x4c }, 1, 9, PBWIRE_EGROUP },
		{ { 0x0e }, 1, 1, 6 },
		{ { 0x0f }, 1, 1, 7 },
		{ { 0x80, 0x01 }, 2, 16, PBWIRE_VARINT },
		/* The largest field number protobuf allows, 2^29 - 1. */
		{ { 0xfa, 0xff, 0xff, 0xff, 0x0f }, 5, (1u << 29) - 1,
		    PBWIRE_LEN },
		/* Field 0 is read as such: the caller refuses it. */
		{ { 0x00 }, 1, 0, PBWIRE_VARINT },
	};
	uint64_t field;
	unsigned wt;
	uint8_t *buf;
	const uint8_t *p;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		buf = heap_copy(t[i].b, t[i].n);
		p = buf;
		ck_assert_msg(pbwire_tag(&p, buf + t[i].n, &field, &wt) == 0,
		    "case %zu refused", i);
		ck_assert_ptr_eq(p, buf + t[i].n);
		ck_assert_uint_eq(field, t[i].field);
		ck_assert_uint_eq(wt, t[i].wt);
		free(buf);
	}
}
END_TEST

START_TEST(tag_malformed)
{
	static const uint8_t cut[] = { 0x80, 0x80 };
	uint8_t over[11], *buf;
	const uint8_t *p;
	uint64_t field;
	unsigned wt;

	buf = heap_copy(cut, sizeof(cut));
	p = buf;
	ck_assert_int_eq(pbwire_tag(&p, buf + sizeof(cut), &field, &wt), -1);
	ck_assert_ptr_eq(p, buf);
	ck_assert_int_eq(pbwire_tag(&p, buf, &field, &wt), -1);
	ck_assert_ptr_eq(p, buf);
	free(buf);
	memset(over, 0x88, sizeof(over));
	over[10] = 0x00;
	buf = heap_copy(over, sizeof(over));
	p = buf;
	ck_assert_int_eq(pbwire_tag(&p, buf + sizeof(over), &field, &wt), -1);
	ck_assert_ptr_eq(p, buf);
	free(buf);
}
END_TEST

/* --- length-delimited fields ---------------------------------------------- */

START_TEST(len_contents)
{
	static const uint8_t b[] = { 0x03, 'a', 'b', 'c', 0x00, 0x7f };
	uint8_t *buf = heap_copy(b, sizeof(b));
	const uint8_t *p = buf, *data;
	size_t len;

	ck_assert_int_eq(pbwire_len(&p, buf + sizeof(b), &data, &len), 0);
	ck_assert_ptr_eq(data, buf + 1);	/* in place, not copied */
	ck_assert_uint_eq(len, 3);
	ck_assert_ptr_eq(p, buf + 4);
	/* Empty contents; then one that ends exactly at the end. */
	ck_assert_int_eq(pbwire_len(&p, buf + sizeof(b) - 1, &data, &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_ptr_eq(data, buf + 5);
	ck_assert_ptr_eq(p, buf + 5);
	free(buf);
}
END_TEST

START_TEST(len_at_end)
{
	static const uint8_t b[] = { 0x02, 'h', 'i' };
	uint8_t *buf = heap_copy(b, sizeof(b));
	const uint8_t *p = buf, *data;
	size_t len;

	ck_assert_int_eq(pbwire_len(&p, buf + sizeof(b), &data, &len), 0);
	ck_assert_uint_eq(len, 2);
	ck_assert_ptr_eq(p, buf + sizeof(b));
	free(buf);
}
END_TEST

START_TEST(len_past_end)
{
	static const uint8_t one_short[] = { 0x03, 'a', 'b' };
	static const uint8_t no_contents[] = { 0x01 };
	/* 2^64 - 1 bytes: must not wrap around the pointer. */
	static const uint8_t huge[] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
		'x'
	};
	/* 2^63: as large as a ptrdiff_t cannot hold. */
	static const uint8_t half[] = {
		0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
		'x'
	};
	static const uint8_t cut_len[] = { 0x80 };
	static const struct {
		const uint8_t	*b;
		size_t		 n;
	} t[] = {
		{ one_short, sizeof(one_short) },
		{ no_contents, sizeof(no_contents) },
		{ huge, sizeof(huge) },
		{ half, sizeof(half) },
		{ cut_len, sizeof(cut_len) },
		{ NULL, 0 },
	};
	const uint8_t *p, *data = NULL;
	uint8_t *buf;
	size_t i, len = 7;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		buf = heap_copy(t[i].b, t[i].n);
		p = buf;
		ck_assert_msg(pbwire_len(&p, buf + t[i].n, &data, &len) == -1,
		    "case %zu accepted", i);
		ck_assert_ptr_eq(p, buf);
		ck_assert_ptr_null(data);
		ck_assert_uint_eq(len, 7);
		free(buf);
	}
}
END_TEST

/* --- skipping ------------------------------------------------------------- */

/* Skip one value of wire type wt that takes all of b[0..n) but the last
 * `after` bytes. */
static void
skip_ok(unsigned wt, const uint8_t *b, size_t n, size_t after)
{
	uint8_t *buf = heap_copy(b, n);
	const uint8_t *p = buf;

	ck_assert_msg(pbwire_skip(&p, buf + n, wt) == 0,
	    "wire type %u refused", wt);
	ck_assert_ptr_eq(p, buf + n - after);
	free(buf);
}

static void
skip_bad(unsigned wt, const uint8_t *b, size_t n)
{
	uint8_t *buf = heap_copy(b, n);
	const uint8_t *p = buf;

	ck_assert_msg(pbwire_skip(&p, buf + n, wt) == -1,
	    "wire type %u, %zu bytes: accepted", wt, n);
	ck_assert_ptr_eq(p, buf);
	free(buf);
}

START_TEST(skip_each_type)
{
	static const uint8_t b[] = {
		0x96, 0x01, 0x03, 'a', 'b', 'c', 1, 2, 3, 4, 5, 6, 7, 8, 9
	};

	skip_ok(PBWIRE_VARINT, b, 2, 0);
	skip_ok(PBWIRE_VARINT, b, sizeof(b), sizeof(b) - 2);
	skip_ok(PBWIRE_LEN, b + 2, 4, 0);
	skip_ok(PBWIRE_LEN, b + 2, sizeof(b) - 2, sizeof(b) - 6);
	skip_ok(PBWIRE_I64, b + 6, 8, 0);
	skip_ok(PBWIRE_I64, b + 6, 9, 1);
	skip_ok(PBWIRE_I32, b + 6, 4, 0);
	skip_ok(PBWIRE_I32, b + 6, 9, 5);
}
END_TEST

START_TEST(skip_truncated)
{
	static const uint8_t b[] = { 0x96, 0x05, 'a', 'b', 1, 2, 3, 4, 5, 6,
	    7, 8 };
	size_t n;

	skip_bad(PBWIRE_VARINT, b, 1);
	skip_bad(PBWIRE_VARINT, b, 0);
	skip_bad(PBWIRE_LEN, b + 1, 3);		/* 5 announced, 2 there */
	skip_bad(PBWIRE_LEN, b, 0);
	for (n = 0; n < 8; n++)
		skip_bad(PBWIRE_I64, b + 4, n);
	for (n = 0; n < 4; n++)
		skip_bad(PBWIRE_I32, b + 4, n);
}
END_TEST

START_TEST(skip_refused_types)
{
	static const uint8_t b[] = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0x00, 0x00 };

	/* Groups: not in proto3, and no length to skip them by. */
	skip_bad(PBWIRE_SGROUP, b, sizeof(b));
	skip_bad(PBWIRE_EGROUP, b, sizeof(b));
	/* Undefined wire types. */
	skip_bad(6, b, sizeof(b));
	skip_bad(7, b, sizeof(b));
}
END_TEST

/* --- whole messages ------------------------------------------------------- */

/* A SharedData as protobuf-c packs it, read field by field. */
START_TEST(reads_protobuf_c)
{
	Alpcrun__V1__SharedData sd = ALPCRUN__V1__SHARED_DATA__INIT;
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	uint8_t payload[200], *buf;
	const uint8_t *p, *end, *data, *dp;
	uint64_t field, inner, v;
	unsigned wt;
	size_t len, dlen;
	int seen = 0;

	memset(payload, 'p', sizeof(payload));
	sd.has_session_id = 1;
	sd.session_id.data = (uint8_t *)"sess";
	sd.session_id.len = 4;
	sd.has_update_level = 1;
	sd.update_level = UINT32_MAX;
	sd.has_payload = 1;
	sd.payload.data = payload;
	sd.payload.len = sizeof(payload);
	ttl.seconds = -1;		/* ten bytes on the wire */
	ttl.nanos = 999999999;
	sd.ttl = &ttl;
	len = protobuf_c_message_get_packed_size(&sd.base);
	ck_assert_ptr_nonnull(buf = malloc(len));
	ck_assert_uint_eq(protobuf_c_message_pack(&sd.base, buf), len);
	p = buf;
	end = buf + len;
	while (p < end) {
		ck_assert_int_eq(pbwire_tag(&p, end, &field, &wt), 0);
		switch (field) {
		case 1:
			ck_assert_uint_eq(wt, PBWIRE_LEN);
			ck_assert_int_eq(pbwire_len(&p, end, &data, &dlen), 0);
			ck_assert_uint_eq(dlen, 4);
			ck_assert(memcmp(data, "sess", 4) == 0);
			break;
		case 2:
			ck_assert_uint_eq(wt, PBWIRE_VARINT);
			ck_assert_int_eq(pbwire_varint(&p, end, &v), 0);
			ck_assert_uint_eq(v, UINT32_MAX);
			break;
		case 3:
			ck_assert_int_eq(pbwire_len(&p, end, &data, &dlen), 0);
			ck_assert_uint_eq(dlen, sizeof(payload));
			ck_assert(memcmp(data, payload, dlen) == 0);
			break;
		case 4:
			ck_assert_int_eq(pbwire_len(&p, end, &data, &dlen), 0);
			dp = data;
			ck_assert_int_eq(pbwire_tag(&dp, data + dlen, &inner,
			    &wt), 0);
			ck_assert_uint_eq(inner, 1);
			ck_assert_int_eq(pbwire_varint(&dp, data + dlen, &v),
			    0);
			ck_assert_int_eq((int64_t)v, -1);
			ck_assert_int_eq(pbwire_tag(&dp, data + dlen, &inner,
			    &wt), 0);
			ck_assert_uint_eq(inner, 2);
			ck_assert_int_eq(pbwire_varint(&dp, data + dlen, &v),
			    0);
			ck_assert_uint_eq(v, 999999999);
			ck_assert_ptr_eq(dp, data + dlen);
			break;
		default:
			ck_abort_msg("field %llu", (unsigned long long)field);
		}
		seen |= 1 << field;
	}
	ck_assert_ptr_eq(p, end);
	ck_assert_int_eq(seen, 0x1e);
	free(buf);
}
END_TEST

/*
 * A message with a field of every skippable type, walked by tag and skip:
 * whole, it ends exactly at its end; every shorter prefix is refused at
 * the field it cuts, or ends between two fields, and never reads past its
 * end (ASan, valgrind).
 */
START_TEST(walk_every_prefix)
{
	static const uint8_t msg[] = {
		0x08, 0x96, 0x01,			/* 1: varint 150 */
		0x11, 1, 2, 3, 4, 5, 6, 7, 8,		/* 2: fixed64 */
		0x1a, 0x03, 'a', 'b', 'c',		/* 3: bytes */
		0x25, 1, 2, 3, 4,			/* 4: fixed32 */
		0x80, 0x01, 0x00,			/* 16: varint 0 */
	};
	/* The offsets where a field ends. */
	static const size_t ends[] = { 0, 3, 12, 17, 22, sizeof(msg) };
	uint8_t *buf;
	const uint8_t *p;
	uint64_t field;
	unsigned wt;
	size_t n, i;
	int ok, at_end;

	for (n = 0; n <= sizeof(msg); n++) {
		buf = heap_copy(msg, n);
		p = buf;
		ok = 1;
		while (p < buf + n) {
			if (pbwire_tag(&p, buf + n, &field, &wt) != 0 ||
			    pbwire_skip(&p, buf + n, wt) != 0) {
				ok = 0;
				break;
			}
		}
		for (at_end = 0, i = 0; i < sizeof(ends) / sizeof(ends[0]);
		    i++)
			if (ends[i] == n)
				at_end = 1;
		ck_assert_msg(ok == at_end, "prefix of %zu bytes: %s", n,
		    ok ? "accepted" : "refused");
		if (ok)
			ck_assert_ptr_eq(p, buf + n);
		free(buf);
	}
}
END_TEST

static Suite *
pbwire_suite(void)
{
	Suite *s = suite_create("pbwire");
	TCase *tc;

	tc = tcase_create("varint");
	tcase_add_test(tc, varint_values);
	tcase_add_test(tc, varint_stops);
	tcase_add_test(tc, varint_truncated);
	tcase_add_test(tc, varint_overlong);
	tcase_add_test(tc, varint_empty);
	suite_add_tcase(s, tc);

	tc = tcase_create("tag");
	tcase_add_test(tc, tag_split);
	tcase_add_test(tc, tag_malformed);
	suite_add_tcase(s, tc);

	tc = tcase_create("len");
	tcase_add_test(tc, len_contents);
	tcase_add_test(tc, len_at_end);
	tcase_add_test(tc, len_past_end);
	suite_add_tcase(s, tc);

	tc = tcase_create("skip");
	tcase_add_test(tc, skip_each_type);
	tcase_add_test(tc, skip_truncated);
	tcase_add_test(tc, skip_refused_types);
	suite_add_tcase(s, tc);

	tc = tcase_create("message");
	tcase_add_test(tc, reads_protobuf_c);
	tcase_add_test(tc, walk_every_prefix);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(pbwire_suite());
}
