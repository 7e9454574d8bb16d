/*
 * check_frame.c: unit tests of grpc_frame.c (spec §3): the incremental
 * deframer under every split and coalescing of DATA frames, the size limit,
 * the prefix writer, grpc-message percent-encoding, grpc-timeout parsing
 * and the rules of response metadata names and values.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_frame.h"
#include "testutil.h"

/* Append one framed message (flag, length, body) to out; returns its size. */
static size_t
frame(uint8_t *out, int flag, const char *body, size_t len)
{
	out[0] = (uint8_t)flag;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
	if (len > 0)
		memcpy(out + 5, body, len);
	return 5 + len;
}

static void
df_init(struct grpc_deframer *df, uint64_t max)
{
	memset(df, 0, sizeof(*df));
	df->max = max;
}

/* Feed one chunk fully, collecting up to maxmsgs messages into msgs. */
static int
feed_all(struct grpc_deframer *df, const uint8_t *data, size_t len,
    struct grpc_message *msgs, int maxmsgs)
{
	struct grpc_message	 m;
	enum grpc_deframe_result r;
	size_t			 used;
	int			 n = 0;

	for (;;) {
		memset(&m, 0, sizeof(m));
		r = grpc_deframe(df, data, len, &used, &m);
		ck_assert_uint_le(used, len);
		data += used;
		len -= used;
		if (r == GF_NEED_MORE) {
			ck_assert_uint_eq(len, 0);
			return n;
		}
		ck_assert_int_eq(r, GF_MESSAGE);
		ck_assert_int_lt(n, maxmsgs);
		msgs[n++] = m;
		if (len == 0)
			return n;
	}
}

static void
assert_msg(const struct grpc_message *m, const char *body, size_t len)
{
	ck_assert_uint_eq(m->len, len);
	if (len == 0)
		ck_assert_ptr_null(m->data);
	else {
		ck_assert_ptr_nonnull(m->data);
		ck_assert_mem_eq(m->data, body, len);
	}
}

/* ----- deframer ------------------------------------------------------------ */

START_TEST(one_message_one_chunk)
{
	struct grpc_deframer	 df;
	struct grpc_message	 m;
	uint8_t			 buf[64];
	size_t			 n, used;

	df_init(&df, 1024);
	n = frame(buf, 0, "hello", 5);
	ck_assert_int_eq(grpc_deframe(&df, buf, n, &used, &m), GF_MESSAGE);
	ck_assert_uint_eq(used, n);
	assert_msg(&m, "hello", 5);
	ck_assert_int_eq(m.compressed, 0);
	ck_assert_int_eq(grpc_deframer_partial(&df), 0);
	free(m.data);

	/* Nothing fed: nothing happens. */
	ck_assert_int_eq(grpc_deframe(&df, NULL, 0, &used, &m), GF_NEED_MORE);
	ck_assert_uint_eq(used, 0);
}
END_TEST

START_TEST(split_every_point)
{
	static const char	 body[] = "0123456789abcdef";
	struct grpc_deframer	 df;
	struct grpc_message	 msgs[2];
	uint8_t			 buf[64];
	size_t			 n, split;
	int			 got;

	n = frame(buf, 0, body, 16);
	for (split = 0; split <= n; split++) {
		df_init(&df, 1024);
		got = feed_all(&df, buf, split, msgs, 2);
		if (split < n) {
			ck_assert_int_eq(got, 0);
			ck_assert_int_eq(grpc_deframer_partial(&df), (int)split);
		}
		got += feed_all(&df, buf + split, n - split, msgs + got, 2 - got);
		ck_assert_int_eq(got, 1);
		assert_msg(&msgs[0], body, 16);
		ck_assert_int_eq(grpc_deframer_partial(&df), 0);
		free(msgs[0].data);
	}
}
END_TEST

START_TEST(byte_by_byte)
{
	static const char	 body[] = "the quick brown fox";
	struct grpc_deframer	 df;
	struct grpc_message	 msgs[3];
	uint8_t			 buf[128];
	size_t			 n = 0, i;
	int			 got = 0;

	n += frame(buf + n, 0, body, strlen(body));
	n += frame(buf + n, 0, NULL, 0);
	n += frame(buf + n, 1, "xy", 2);
	df_init(&df, 1024);
	for (i = 0; i < n; i++)
		got += feed_all(&df, buf + i, 1, msgs + got, 3 - got);
	ck_assert_int_eq(got, 3);
	assert_msg(&msgs[0], body, strlen(body));
	assert_msg(&msgs[1], NULL, 0);
	assert_msg(&msgs[2], "xy", 2);
	ck_assert_int_eq(msgs[2].compressed, 1);
	free(msgs[0].data);
	free(msgs[2].data);
}
END_TEST

START_TEST(three_coalesced)
{
	struct grpc_deframer	 df;
	struct grpc_message	 m;
	uint8_t			 buf[128];
	size_t			 n = 0, off = 0, used;

	n += frame(buf + n, 0, "one", 3);
	n += frame(buf + n, 0, "second", 6);
	n += frame(buf + n, 0, "3", 1);
	df_init(&df, 1024);

	ck_assert_int_eq(grpc_deframe(&df, buf, n, &used, &m), GF_MESSAGE);
	ck_assert_uint_eq(used, 8);
	assert_msg(&m, "one", 3);
	free(m.data);
	off += used;
	ck_assert_int_eq(grpc_deframe(&df, buf + off, n - off, &used, &m),
	    GF_MESSAGE);
	ck_assert_uint_eq(used, 11);
	assert_msg(&m, "second", 6);
	free(m.data);
	off += used;
	ck_assert_int_eq(grpc_deframe(&df, buf + off, n - off, &used, &m),
	    GF_MESSAGE);
	ck_assert_uint_eq(used, 6);
	assert_msg(&m, "3", 1);
	free(m.data);
	off += used;
	ck_assert_uint_eq(off, n);
	ck_assert_int_eq(grpc_deframer_partial(&df), 0);
}
END_TEST

START_TEST(message_then_half)
{
	struct grpc_deframer	 df;
	struct grpc_message	 m;
	uint8_t			 buf[128];
	size_t			 n1, n2, used;

	n1 = frame(buf, 0, "first", 5);
	n2 = frame(buf + n1, 0, "second!", 7);
	df_init(&df, 1024);

	/* The first message and half of the second (in its body). */
	ck_assert_int_eq(grpc_deframe(&df, buf, n1 + 8, &used, &m), GF_MESSAGE);
	ck_assert_uint_eq(used, n1);
	assert_msg(&m, "first", 5);
	free(m.data);
	ck_assert_int_eq(grpc_deframe(&df, buf + n1, 8, &used, &m),
	    GF_NEED_MORE);
	ck_assert_uint_eq(used, 8);
	ck_assert_int_eq(grpc_deframer_partial(&df), 8);
	ck_assert_int_eq(grpc_deframe(&df, buf + n1 + 8, n2 - 8, &used, &m),
	    GF_MESSAGE);
	ck_assert_uint_eq(used, n2 - 8);
	assert_msg(&m, "second!", 7);
	free(m.data);

	/* A message and half of the next prefix. */
	n1 = frame(buf, 0, "a", 1);
	frame(buf + n1, 0, "bc", 2);
	ck_assert_int_eq(grpc_deframe(&df, buf, n1 + 2, &used, &m), GF_MESSAGE);
	ck_assert_uint_eq(used, n1);
	free(m.data);
	ck_assert_int_eq(grpc_deframe(&df, buf + n1, 2, &used, &m),
	    GF_NEED_MORE);
	ck_assert_int_eq(grpc_deframer_partial(&df), 2);
	ck_assert_int_eq(grpc_deframe(&df, buf + n1 + 2, 5, &used, &m),
	    GF_MESSAGE);
	assert_msg(&m, "bc", 2);
	free(m.data);
}
END_TEST

START_TEST(zero_length)
{
	struct grpc_deframer	 df;
	struct grpc_message	 m;
	uint8_t			 buf[16];
	size_t			 n, used;

	n = frame(buf, 0, NULL, 0);
	frame(buf + n, 0, "z", 1);
	df_init(&df, 1024);
	memset(&m, 0xa5, sizeof(m));
	ck_assert_int_eq(grpc_deframe(&df, buf, n + 6, &used, &m), GF_MESSAGE);
	ck_assert_uint_eq(used, 5);
	ck_assert_ptr_null(m.data);
	ck_assert_uint_eq(m.len, 0);
	ck_assert_int_eq(m.compressed, 0);
	ck_assert_ptr_null(df.buf);
	ck_assert_int_eq(grpc_deframe(&df, buf + n, 6, &used, &m), GF_MESSAGE);
	assert_msg(&m, "z", 1);
	free(m.data);

	/* Zero-length is accepted even with max 0. */
	df_init(&df, 0);
	ck_assert_int_eq(grpc_deframe(&df, buf, n, &used, &m), GF_MESSAGE);
	ck_assert_ptr_null(m.data);
}
END_TEST

START_TEST(size_limit)
{
	struct grpc_deframer	 df;
	struct grpc_message	 m;
	uint8_t			 buf[64], big[5] = { 0, 0xff, 0xff, 0xff, 0xff };
	size_t			 n, used;

	/* len == max is accepted. */
	df_init(&df, 10);
	n = frame(buf, 0, "0123456789", 10);
	ck_assert_int_eq(grpc_deframe(&df, buf, n, &used, &m), GF_MESSAGE);
	assert_msg(&m, "0123456789", 10);
	free(m.data);

	/* max + 1 is refused, announced, nothing allocated; it stays refused. */
	df_init(&df, 10);
	n = frame(buf, 0, "0123456789A", 11);
	ck_assert_int_eq(grpc_deframe(&df, buf, n, &used, &m), GF_TOO_LARGE);
	ck_assert_uint_eq(used, 5);
	ck_assert_uint_eq(df.announced, 11);
	ck_assert_ptr_null(df.buf);
	ck_assert_int_eq(grpc_deframe(&df, buf + 5, n - 5, &used, &m),
	    GF_TOO_LARGE);
	ck_assert_uint_eq(used, 0);
	ck_assert_ptr_null(df.buf);
	grpc_deframer_reset(&df);
	ck_assert_int_eq(grpc_deframer_partial(&df), 0);

	/* The prefix split before the refusal. */
	df_init(&df, 10);
	ck_assert_int_eq(grpc_deframe(&df, buf, 3, &used, &m), GF_NEED_MORE);
	ck_assert_int_eq(grpc_deframe(&df, buf + 3, n - 3, &used, &m),
	    GF_TOO_LARGE);
	ck_assert_uint_eq(used, 2);
	ck_assert_ptr_null(df.buf);

	/* A 4 GiB prefix never allocates, whatever max. */
	df_init(&df, 4u << 20);
	ck_assert_int_eq(grpc_deframe(&df, big, 5, &used, &m), GF_TOO_LARGE);
	ck_assert_uint_eq(df.announced, 0xffffffffu);
	ck_assert_ptr_null(df.buf);
	grpc_deframer_reset(&df);
}
END_TEST

START_TEST(compressed_flag)
{
	struct grpc_deframer	 df;
	struct grpc_message	 m;
	uint8_t			 buf[32];
	size_t			 n, used;

	df_init(&df, 1024);
	n = frame(buf, 1, "zz", 2);
	ck_assert_int_eq(grpc_deframe(&df, buf, n, &used, &m), GF_MESSAGE);
	ck_assert_int_eq(m.compressed, 1);
	assert_msg(&m, "zz", 2);
	free(m.data);

	/* Undefined flag values are carried as they are (nonzero: refused). */
	n = frame(buf, 0x80, "q", 1);
	ck_assert_int_eq(grpc_deframe(&df, buf, n, &used, &m), GF_MESSAGE);
	ck_assert_int_eq(m.compressed, 0x80);
	free(m.data);

	/* The next message's flag does not inherit the previous one. */
	n = frame(buf, 0, "r", 1);
	ck_assert_int_eq(grpc_deframe(&df, buf, n, &used, &m), GF_MESSAGE);
	ck_assert_int_eq(m.compressed, 0);
	free(m.data);
}
END_TEST

START_TEST(reset_partial)
{
	struct grpc_deframer	 df;
	struct grpc_message	 m;
	uint8_t			 buf[64];
	size_t			 n, used;

	df_init(&df, 1024);
	n = frame(buf, 0, "partial body", 12);
	ck_assert_int_eq(grpc_deframe(&df, buf, 9, &used, &m), GF_NEED_MORE);
	ck_assert_ptr_nonnull(df.buf);
	ck_assert_int_eq(grpc_deframer_partial(&df), 9);
	grpc_deframer_reset(&df);	/* leaks show under valgrind/ASan */
	ck_assert_ptr_null(df.buf);
	ck_assert_int_eq(grpc_deframer_partial(&df), 0);
	ck_assert_uint_eq(df.max, 1024);

	/* Usable again after the reset. */
	ck_assert_int_eq(grpc_deframe(&df, buf, n, &used, &m), GF_MESSAGE);
	assert_msg(&m, "partial body", 12);
	free(m.data);

	/* Resetting an idle deframer is harmless. */
	grpc_deframer_reset(&df);
	grpc_deframer_reset(&df);
}
END_TEST

START_TEST(prefix_round_trip)
{
	static const uint32_t	 lens[] = { 0, 1, 255, 256, 65536, 0x01020304,
	    0x7fffffff, 0xffffffff };
	uint8_t			 p[GRPC_PREFIX_LEN];
	struct grpc_deframer	 df;
	struct grpc_message	 m;
	size_t			 i, used;

	grpc_frame_prefix(p, 0x01020304);
	ck_assert_uint_eq(p[0], 0);
	ck_assert_uint_eq(p[1], 1);
	ck_assert_uint_eq(p[2], 2);
	ck_assert_uint_eq(p[3], 3);
	ck_assert_uint_eq(p[4], 4);

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		grpc_frame_prefix(p, lens[i]);
		df_init(&df, 0);	/* max 0: the length is only read */
		if (lens[i] == 0) {
			ck_assert_int_eq(grpc_deframe(&df, p, 5, &used, &m),
			    GF_MESSAGE);
			ck_assert_uint_eq(m.len, 0);
		} else {
			ck_assert_int_eq(grpc_deframe(&df, p, 5, &used, &m),
			    GF_TOO_LARGE);
			ck_assert_uint_eq(df.announced, lens[i]);
			ck_assert_int_eq(df.compressed, 0);
		}
		grpc_deframer_reset(&df);
	}
}
END_TEST

/* ----- grpc-message percent-encoding ---------------------------------------- */

START_TEST(encode_ascii)
{
	char	 out[64];

	ck_assert_uint_eq(grpc_percent_encode("key not found: a~b", out,
	    sizeof(out)), 18);
	ck_assert_str_eq(out, "key not found: a~b");
	ck_assert_uint_eq(grpc_percent_encode("", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(encode_escapes)
{
	char	 out[64];

	ck_assert_uint_eq(grpc_percent_encode("100%", out, sizeof(out)), 6);
	ck_assert_str_eq(out, "100%25");
	/* UTF-8 "é" and "€". */
	grpc_percent_encode("caf\xc3\xa9 \xe2\x82\xac", out, sizeof(out));
	ck_assert_str_eq(out, "caf%C3%A9 %E2%82%AC");
	/* Control characters and DEL. */
	grpc_percent_encode("a\tb\r\nc\x7f\x01", out, sizeof(out));
	ck_assert_str_eq(out, "a%09b%0D%0Ac%7F%01");
	/* The printable edges stay. */
	grpc_percent_encode(" ~", out, sizeof(out));
	ck_assert_str_eq(out, " ~");
}
END_TEST

START_TEST(encode_truncation)
{
	static const size_t cuts[] = { 0, 3, 6, 7, 10, 11 };
	char	 out[16];
	size_t	 n, outlen, i, want = 0;

	/* "ab%" needs 5+1 bytes: with 5, the escape is dropped whole. */
	memset(out, 'X', sizeof(out));
	n = grpc_percent_encode("ab%", out, 5);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(out, "ab");
	ck_assert_int_eq(out[5], 'X');	/* nothing past outlen */
	n = grpc_percent_encode("ab%", out, 6);
	ck_assert_uint_eq(n, 5);
	ck_assert_str_eq(out, "ab%25");

	/* Every size: never a cut escape, never past outlen. */
	for (outlen = 1; outlen <= sizeof(out); outlen++) {
		memset(out, 'X', sizeof(out));
		n = grpc_percent_encode("\xff\xfe" "a%b", out, outlen);
		ck_assert_uint_lt(n, outlen);
		ck_assert_uint_eq(strlen(out), n);
		/* The longest whole-escape prefix of "%FF%FEa%25b" that fits. */
		for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
			if (cuts[i] <= outlen - 1)
				want = cuts[i];
		ck_assert_uint_eq(n, want);
		ck_assert_int_eq(strncmp(out, "%FF%FEa%25b", n), 0);
		if (outlen < sizeof(out))
			ck_assert_int_eq(out[outlen], 'X');
	}

	/* outlen 0 writes nothing; 1 writes only the NUL. */
	out[0] = 'X';
	ck_assert_uint_eq(grpc_percent_encode("abc", out, 0), 0);
	ck_assert_int_eq(out[0], 'X');
	ck_assert_uint_eq(grpc_percent_encode("abc", out, 1), 0);
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(decode)
{
	char	 s[64];

	strcpy(s, "caf%C3%A9 100%25");
	ck_assert_uint_eq(grpc_percent_decode(s), 10);
	ck_assert_str_eq(s, "caf\xc3\xa9 100%");
	/* Lowercase hex is tolerated. */
	strcpy(s, "%e2%82%ac");
	ck_assert_uint_eq(grpc_percent_decode(s), 3);
	ck_assert_str_eq(s, "\xe2\x82\xac");
	/* Malformed escapes are left alone. */
	strcpy(s, "50% off %zz %4 %");
	ck_assert_uint_eq(grpc_percent_decode(s), 16);
	ck_assert_str_eq(s, "50% off %zz %4 %");
	strcpy(s, "%%41");
	grpc_percent_decode(s);
	ck_assert_str_eq(s, "%A");
	/* Round trip. */
	grpc_percent_encode("a\x01%\xff z", s, sizeof(s));
	ck_assert_uint_eq(grpc_percent_decode(s), 6);
	ck_assert_mem_eq(s, "a\x01%\xff z", 7);
	strcpy(s, "");
	ck_assert_uint_eq(grpc_percent_decode(s), 0);
}
END_TEST

/* ----- grpc-timeout ------------------------------------------------------------ */

static int
tparse(const char *s, uint64_t *ns)
{
	*ns = 12345;
	return grpc_timeout_parse(s, strlen(s), ns);
}

START_TEST(timeout_units)
{
	uint64_t	 ns;

	ck_assert_int_eq(tparse("2H", &ns), 0);
	ck_assert_uint_eq(ns, UINT64_C(7200000000000));
	ck_assert_int_eq(tparse("3M", &ns), 0);
	ck_assert_uint_eq(ns, UINT64_C(180000000000));
	ck_assert_int_eq(tparse("30S", &ns), 0);
	ck_assert_uint_eq(ns, UINT64_C(30000000000));
	ck_assert_int_eq(tparse("100m", &ns), 0);
	ck_assert_uint_eq(ns, UINT64_C(100000000));
	ck_assert_int_eq(tparse("5u", &ns), 0);
	ck_assert_uint_eq(ns, 5000);
	ck_assert_int_eq(tparse("7n", &ns), 0);
	ck_assert_uint_eq(ns, 7);
	ck_assert_int_eq(tparse("0S", &ns), 0);
	ck_assert_uint_eq(ns, 0);
	/* The length is honoured: no NUL needed. */
	ck_assert_int_eq(grpc_timeout_parse("15SJUNK", 3, &ns), 0);
	ck_assert_uint_eq(ns, UINT64_C(15000000000));
}
END_TEST

START_TEST(timeout_limits)
{
	uint64_t	 ns;

	ck_assert_int_eq(tparse("99999999n", &ns), 0);
	ck_assert_uint_eq(ns, 99999999);
	ck_assert_int_eq(tparse("99999999M", &ns), 0);
	ck_assert_uint_eq(ns, UINT64_C(5999999940000000000));
	/* 99999999 hours overflow 64 bits of ns: saturated. */
	ck_assert_int_eq(tparse("99999999H", &ns), 0);
	ck_assert_uint_eq(ns, UINT64_MAX);
	ck_assert_int_eq(tparse("00000001S", &ns), 0);
	ck_assert_uint_eq(ns, UINT64_C(1000000000));
	/* 9 digits are rejected. */
	ck_assert_int_eq(tparse("100000000n", &ns), -1);
	ck_assert_int_eq(tparse("000000001S", &ns), -1);
	ck_assert_uint_eq(ns, 12345);	/* untouched on error */
}
END_TEST

START_TEST(timeout_malformed)
{
	uint64_t	 ns;

	ck_assert_int_eq(tparse("", &ns), -1);
	ck_assert_int_eq(grpc_timeout_parse(NULL, 0, &ns), -1);
	ck_assert_int_eq(tparse("S", &ns), -1);		/* no digits */
	ck_assert_int_eq(tparse("10", &ns), -1);	/* no unit */
	ck_assert_int_eq(tparse("1", &ns), -1);
	ck_assert_int_eq(tparse("10s", &ns), -1);	/* bad unit */
	ck_assert_int_eq(tparse("10h", &ns), -1);
	ck_assert_int_eq(tparse("10x", &ns), -1);
	ck_assert_int_eq(tparse("10SS", &ns), -1);
	ck_assert_int_eq(tparse("1a0S", &ns), -1);	/* non-digit */
	ck_assert_int_eq(tparse("-1S", &ns), -1);
	ck_assert_int_eq(tparse("+1S", &ns), -1);
	ck_assert_int_eq(tparse(" 1S", &ns), -1);
	ck_assert_int_eq(tparse("1 S", &ns), -1);
	ck_assert_int_eq(tparse("1.5S", &ns), -1);
	ck_assert_int_eq(grpc_timeout_parse("1\0S", 3, &ns), -1);
	ck_assert_uint_eq(ns, 12345);
}
END_TEST

static int
name_ok(const char *s)
{
	return grpc_meta_name_ok(s, strlen(s));
}

static int
value_ok(const char *s)
{
	return grpc_meta_value_ok(s, strlen(s));
}

START_TEST(meta_rules)
{
	char v[GRPC_META_VALUE_MAX + 2];

	ck_assert(name_ok("alpcrun-incarnation"));
	ck_assert(name_ok("alpcrun-x-1"));
	ck_assert(name_ok("alpcrun-0123456789abcdefghijklmn"));	/* 32 */
	ck_assert(!name_ok("alpcrun-0123456789abcdefghijklmno"));
	ck_assert(!name_ok("alpcrun-"));
	ck_assert(!name_ok("alpcrun"));
	ck_assert(!name_ok("x-alpcrun-a"));
	ck_assert(!name_ok("Alpcrun-a"));
	ck_assert(!name_ok("alpcrun-A"));
	ck_assert(!name_ok("alpcrun-a_b"));
	ck_assert(!name_ok("alpcrun-a:"));

	ck_assert(value_ok(""));
	ck_assert(value_ok("0123456789abcdef"));
	ck_assert(value_ok("a b ~!"));
	ck_assert(!value_ok(" a"));
	ck_assert(!value_ok("a "));
	ck_assert(!value_ok("a\tb"));
	ck_assert(!value_ok("a\r\nb"));
	ck_assert(!value_ok("\x7f"));
	ck_assert(!value_ok("caf\xc3\xa9"));
	ck_assert(!grpc_meta_value_ok("a\0b", 3));
	memset(v, 'v', sizeof(v));
	ck_assert(grpc_meta_value_ok(v, GRPC_META_VALUE_MAX));
	ck_assert(!grpc_meta_value_ok(v, GRPC_META_VALUE_MAX + 1));
}
END_TEST

static Suite *
frame_suite(void)
{
	Suite	*s = suite_create("grpc_frame");
	TCase	*tc;

	tc = tcase_create("deframer");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, one_message_one_chunk);
	tcase_add_test(tc, split_every_point);
	tcase_add_test(tc, byte_by_byte);
	tcase_add_test(tc, three_coalesced);
	tcase_add_test(tc, message_then_half);
	tcase_add_test(tc, zero_length);
	tcase_add_test(tc, size_limit);
	tcase_add_test(tc, compressed_flag);
	tcase_add_test(tc, reset_partial);
	tcase_add_test(tc, prefix_round_trip);
	suite_add_tcase(s, tc);

	tc = tcase_create("percent");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, encode_ascii);
	tcase_add_test(tc, encode_escapes);
	tcase_add_test(tc, encode_truncation);
	tcase_add_test(tc, decode);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeout");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, timeout_units);
	tcase_add_test(tc, timeout_limits);
	tcase_add_test(tc, timeout_malformed);
	suite_add_tcase(s, tc);

	tc = tcase_create("meta");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, meta_rules);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(frame_suite());
}
