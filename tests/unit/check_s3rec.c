/*
 * check_s3rec.c: unit tests of the objects backend s3 keeps
 * (backends/s3rec.c): names (ids percent-encoded, listed names back to
 * ids, bounds), bodies formatted and parsed back, and every refusal of
 * the parser (a damaged or foreign object, a newer version, a field
 * missing, twice or malformed); fields a later version adds are skipped;
 * the sweeper's names (every listed kind back to its id, leases, shards),
 * its states (expired, gone) and its decisions.
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "s3rec.h"
#include "testutil.h"

#define K(s)	(const uint8_t *)(s), strlen(s)

START_TEST(names)
{
	char b[S3REC_KEY_MAX];

	ck_assert_int_eq(s3rec_key_head(b, sizeof(b), "", K("model-7")), 0);
	ck_assert_str_eq(b, "s/model-7/head");
	ck_assert_int_eq(s3rec_key_head(b, sizeof(b), "site/",
	    K("a/b%c~d")), 0);
	ck_assert_str_eq(b, "site/s/a%2Fb%25c%7Ed/head");
	ck_assert_int_eq(s3rec_key_level(b, sizeof(b), "p/", K("x"),
	    4294967295u), 0);
	ck_assert_str_eq(b, "p/s/x/L/4294967295");
	ck_assert_int_eq(s3rec_key_blob(b, sizeof(b), "p/", K("x"), 3,
	    0xabcdefULL), 0);
	ck_assert_str_eq(b, "p/b/x/3-0000000000abcdef");
	ck_assert_int_eq(s3rec_key_incarnation(b, sizeof(b), "p/"), 0);
	ck_assert_str_eq(b, "p/incarnation");
	ck_assert_int_eq(s3rec_key_heads(b, sizeof(b), "p/"), 0);
	ck_assert_str_eq(b, "p/s/");
	/* No id makes a "." or ".." segment, which stores refuse or fold
	 * away: a leading dot is encoded. */
	ck_assert_int_eq(s3rec_key_head(b, sizeof(b), "p/", K(".")), 0);
	ck_assert_str_eq(b, "p/s/%2E/head");
	ck_assert_int_eq(s3rec_key_level(b, sizeof(b), "p/", K(".."), 1), 0);
	ck_assert_str_eq(b, "p/s/%2E./L/1");
	ck_assert_int_eq(s3rec_key_blob(b, sizeof(b), "p/", K("..a.b."), 1,
	    1), 0);
	ck_assert_str_eq(b, "p/b/%2E.a.b./1-0000000000000001");
}
END_TEST

START_TEST(names_bounded)
{
	char b[S3REC_KEY_MAX], prefix[S3REC_PREFIX_MAX + 1];
	uint8_t sid[257];

	/* The longest: a prefix of S3REC_PREFIX_MAX, 256 bytes that all
	 * need encoding, the largest level and a nonce: it fits. */
	memset(prefix, 'p', S3REC_PREFIX_MAX - 1);
	prefix[S3REC_PREFIX_MAX - 1] = '/';
	prefix[S3REC_PREFIX_MAX] = '\0';
	memset(sid, '/', sizeof(sid));
	ck_assert_int_eq(s3rec_key_blob(b, sizeof(b), prefix, sid, 256,
	    UINT32_MAX, UINT64_MAX), 0);
	ck_assert_uint_lt(strlen(b), S3REC_KEY_MAX);
	/* No id, or one too long; a buffer too small. */
	ck_assert_int_eq(s3rec_key_head(b, sizeof(b), "", sid, 0), -1);
	ck_assert_int_eq(s3rec_key_head(b, sizeof(b), "", sid, 257), -1);
	ck_assert_int_eq(s3rec_key_head(b, 10, "", K("model-7")), -1);
	ck_assert_int_eq(s3rec_key_head(b, 14, "", K("model-7")), -1);
	ck_assert_int_eq(s3rec_key_head(b, 15, "", K("model-7")), 0);
}
END_TEST

START_TEST(listed_names_back_to_ids)
{
	char b[S3REC_KEY_MAX];
	uint8_t sid[256], all[256];
	size_t n, i;

	for (i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	ck_assert_int_eq(s3rec_key_head(b, sizeof(b), "pre/", all, 256), 0);
	ck_assert_int_eq(s3rec_sid_of_head(b, "pre/", sid, &n), 0);
	ck_assert_uint_eq(n, 256);
	ck_assert_mem_eq(sid, all, 256);
	ck_assert_int_eq(s3rec_sid_of_head("pre/s/a%2Fb/head", "pre/", sid,
	    &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(sid, "a/b", 3);
	/* Only the spelling the daemon makes: another is another object. */
	ck_assert_int_eq(s3rec_sid_of_head("pre/s/a%2fb/head", "pre/", sid,
	    &n), -1);
	ck_assert_int_eq(s3rec_sid_of_head("pre/s/%61/head", "pre/", sid, &n),
	    -1);
	/* Not a head, not under the prefix, badly encoded, empty. */
	ck_assert_int_eq(s3rec_sid_of_head("pre/s/a/L/3", "pre/", sid, &n),
	    -1);
	ck_assert_int_eq(s3rec_sid_of_head("other/s/a/head", "pre/", sid,
	    &n), -1);
	ck_assert_int_eq(s3rec_sid_of_head("pre/b/a/head", "pre/", sid, &n),
	    -1);
	ck_assert_int_eq(s3rec_sid_of_head("pre/s/a%2/head", "pre/", sid,
	    &n), -1);
	ck_assert_int_eq(s3rec_sid_of_head("pre/s/a%zz/head", "pre/", sid,
	    &n), -1);
	ck_assert_int_eq(s3rec_sid_of_head("pre/s/a/b/head", "pre/", sid,
	    &n), -1);		/* a raw "/" is no encoded id */
	ck_assert_int_eq(s3rec_sid_of_head("pre/s//head", "pre/", sid, &n),
	    -1);
	ck_assert_int_eq(s3rec_sid_of_head("pre/s/head", "pre/", sid, &n),
	    -1);
}
END_TEST

static void
sha(uint8_t d[S3REC_SHA256_LEN], uint8_t seed)
{
	size_t i;

	for (i = 0; i < S3REC_SHA256_LEN; i++)
		d[i] = (uint8_t)(seed + i * 7);
}

START_TEST(bodies_round_trip)
{
	struct s3_head h, h2;
	struct s3_level l, l2;
	struct s3_incarnation c, c2;
	char b[S3REC_BODY_MAX], err[128];
	size_t n;

	/* Zeroed whole: the comparisons below cover the padding too. */
	memset(&h, 0, sizeof(h));
	memset(&l, 0, sizeof(l));
	memset(&c, 0, sizeof(c));
	h.state = S3_LIVE;
	h.level = 7;
	h.gen = 0x0123456789abcdefULL;
	h.origin = 0x1122334455667788ULL;
	h.size = 67108864;
	h.expires_ms = 1796000000123LL;
	h.writer = 0xfedcba9876543210ULL;
	l.level = 4294967295u;
	l.gen = 42;
	l.blob_nonce = UINT64_MAX;
	l.keep_until_ms = -5;
	c.inc = 0x1122334455667788ULL;
	c.created_ms = 1;
	sha(h.sha256, 3);
	sha(l.sha256, 200);
	ck_assert_uint_gt(n = s3rec_head_format(&h, b, sizeof(b)), 0);
	ck_assert_uint_eq(n, strlen(b));
	ck_assert_ptr_nonnull(strstr(b, "alpcrund-head 1\nstate live\n"
	    "level 7\ngen 0123456789abcdef\norigin 1122334455667788\n"));
	ck_assert_int_eq(s3rec_head_parse(b, n, &h2, err, sizeof(err)), 0);
	ck_assert_mem_eq(&h, &h2, sizeof(h));
	h.state = S3_DELETED;
	n = s3rec_head_format(&h, b, sizeof(b));
	ck_assert_ptr_nonnull(strstr(b, "state deleted\n"));
	ck_assert_int_eq(s3rec_head_parse(b, n, &h2, err, sizeof(err)), 0);
	ck_assert_int_eq(h2.state, S3_DELETED);

	n = s3rec_level_format(&l, b, sizeof(b));
	ck_assert_int_eq(s3rec_level_parse(b, n, &l2, err, sizeof(err)), 0);
	ck_assert_mem_eq(&l, &l2, sizeof(l));
	n = s3rec_incarnation_format(&c, b, sizeof(b));
	ck_assert_int_eq(s3rec_incarnation_parse(b, n, &c2, err,
	    sizeof(err)), 0);
	ck_assert_mem_eq(&c, &c2, sizeof(c));
	/* Too small a buffer: 0, never a cut body. */
	ck_assert_uint_eq(s3rec_head_format(&h, b, 20), 0);
	ck_assert_uint_eq(s3rec_level_format(&l, b, n - 1), 0);
}
END_TEST

START_TEST(same_content)
{
	struct s3_level a = { 3, 1, { 0 }, 10, 100, 5 }, b;

	sha(a.sha256, 1);
	b = a;
	b.gen = 2;			/* another writer's record of the */
	b.blob_nonce = 200;		/* same bytes */
	b.keep_until_ms = 9;
	ck_assert(s3rec_level_same_content(&a, &b));
	ck_assert(!s3rec_level_same_record(&a, &b));
	b.gen = a.gen;
	b.blob_nonce = a.blob_nonce;
	ck_assert(s3rec_level_same_record(&a, &b));
	b.sha256[31] ^= 1;
	ck_assert(!s3rec_level_same_content(&a, &b));
	b = a;
	b.size++;
	ck_assert(!s3rec_level_same_content(&a, &b));
}
END_TEST

static const char good_inc[] =
    "alpcrund-incarnation 1\ninc 00000000000000ff\ncreated_ms 12\n";

static void
refused(const char *body, const char *why)
{
	struct s3_incarnation c;
	char err[128] = "";

	ck_assert_msg(s3rec_incarnation_parse(body, strlen(body), &c, err,
	    sizeof(err)) == -1, "accepted: %s", body);
	ck_assert_msg(strstr(err, why) != NULL, "\"%s\" does not say \"%s\"",
	    err, why);
}

START_TEST(parse_refusals)
{
	struct s3_incarnation c;
	struct s3_head h;
	char err[128], body[S3REC_BODY_MAX];
	size_t n;

	ck_assert_int_eq(s3rec_incarnation_parse(good_inc, strlen(good_inc),
	    &c, err, sizeof(err)), 0);
	ck_assert_uint_eq(c.inc, 255);
	refused("", "empty");
	refused("alpcrund-head 1\ninc 00000000000000ff\ncreated_ms 1\n",
	    "not an alpcrund-incarnation object");
	refused("alpcrund-incarnation 2\ninc 00000000000000ff\n"
	    "created_ms 1\n", "version 2 is newer");
	refused("alpcrund-incarnation 1junk\ninc 00000000000000ff\n"
	    "created_ms 1\n", "not an alpcrund-incarnation object");
	refused("alpcrund-incarnation 0\ninc 00000000000000ff\n"
	    "created_ms 1\n", "not an alpcrund-incarnation object");
	refused("alpcrund-incarnation 1\ncreated_ms 1\n", "no inc");
	refused("alpcrund-incarnation 1\ninc 00000000000000ff\n"
	    "inc 00000000000000fe\ncreated_ms 1\n", "inc given twice");
	refused("alpcrund-incarnation 1\ninc 00000000000000f\n"
	    "created_ms 1\n", "bad inc");
	refused("alpcrund-incarnation 1\ninc 00000000000000fg\n"
	    "created_ms 1\n", "bad inc");
	refused("alpcrund-incarnation 1\ninc 0000000000000000\n"
	    "created_ms 1\n", "inc is 0");
	refused("alpcrund-incarnation 1\ninc 00000000000000ff\n"
	    "created_ms 1x\n", "bad created_ms");
	refused("alpcrund-incarnation 1\ninc 00000000000000ff\n"
	    "created_ms 99999999999999999999\n", "bad created_ms");
	refused("alpcrund-incarnation 1\ninc 00000000000000ff\n"
	    "created_ms 1", "no newline");
	refused("alpcrund-incarnation 1\ninc\ncreated_ms 1\n",
	    "without a value");
	refused("alpcrund-incarnation 1\ninc  00000000000000ff\n"
	    "created_ms 1\n", "bad inc");
	/* A NUL inside. */
	memcpy(body, good_inc, sizeof(good_inc));
	body[30] = '\0';
	ck_assert_int_eq(s3rec_incarnation_parse(body, strlen(good_inc), &c,
	    err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "NUL"));
	/* A later version's field is skipped. */
	n = (size_t)snprintf(body, sizeof(body), "%sregion eu-1\n", good_inc);
	ck_assert_int_eq(s3rec_incarnation_parse(body, n, &c, err,
	    sizeof(err)), 0);

	/* Head values: the state, a level beyond 32 bits, a negative size,
	 * a short digest. */
#define HEAD(st, lvl, size, sha) "alpcrund-head 1\nstate " st "\nlevel " \
	lvl "\ngen 0000000000000001\norigin 0000000000000003\nsha256 " sha "\nsize " size \
	"\nexpires_ms 1\nwriter 0000000000000002\n"
#define SHA64 "00112233445566778899aabbccddeeff" \
	"00112233445566778899aabbccddeeff"
	strcpy(body, HEAD("live", "4294967295", "0", SHA64));
	ck_assert_int_eq(s3rec_head_parse(body, strlen(body), &h, err,
	    sizeof(err)), 0);
	ck_assert_uint_eq(h.level, 4294967295u);
	strcpy(body, HEAD("sealed", "1", "0", SHA64));
	ck_assert_int_eq(s3rec_head_parse(body, strlen(body), &h, err,
	    sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "bad state"));
	strcpy(body, HEAD("live", "4294967296", "0", SHA64));
	ck_assert_int_eq(s3rec_head_parse(body, strlen(body), &h, err,
	    sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "bad level"));
	strcpy(body, HEAD("live", "1", "-1", SHA64));
	ck_assert_int_eq(s3rec_head_parse(body, strlen(body), &h, err,
	    sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "bad size"));
	strcpy(body, HEAD("live", "1", "0", "0011"));
	ck_assert_int_eq(s3rec_head_parse(body, strlen(body), &h, err,
	    sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "bad sha256"));
}
END_TEST

START_TEST(sweep_names)
{
	char b[S3REC_KEY_MAX];
	uint8_t sid[256];
	size_t n;
	uint32_t level = 0;
	uint64_t nonce = 0;

	ck_assert_int_eq(s3rec_key_lease(b, sizeof(b), "p/", 15), 0);
	ck_assert_str_eq(b, "p/lease/15");
	ck_assert_int_eq(s3rec_key_blobs(b, sizeof(b), "p/"), 0);
	ck_assert_str_eq(b, "p/b/");
	ck_assert_int_eq(s3rec_parse_key("p/s/a%2Fb/head", "p/", sid, &n,
	    &level, &nonce), S3K_HEAD);
	ck_assert_mem_eq(sid, "a/b", n);
	ck_assert_int_eq(s3rec_parse_key("p/s/x/L/4294967295", "p/", sid, &n,
	    &level, &nonce), S3K_LEVEL);
	ck_assert_uint_eq(level, 4294967295u);
	ck_assert_int_eq(s3rec_parse_key("p/b/%2Ex/3-0000000000abcdef", "p/",
	    sid, &n, &level, &nonce), S3K_BLOB);
	ck_assert_mem_eq(sid, ".x", n);
	ck_assert_uint_eq(level, 3);
	ck_assert_uint_eq(nonce, 0xabcdefULL);
	/* Only the spellings the daemon makes. */
	ck_assert_int_eq(s3rec_parse_key("p/s/x/L/04", "p/", sid, &n, &level,
	    &nonce), S3K_OTHER);
	ck_assert_int_eq(s3rec_parse_key("p/s/x/L/4294967296", "p/", sid, &n,
	    &level, &nonce), S3K_OTHER);
	ck_assert_int_eq(s3rec_parse_key("p/b/x/3-0000000000ABCDEF", "p/",
	    sid, &n, &level, &nonce), S3K_OTHER);
	ck_assert_int_eq(s3rec_parse_key("p/b/x/3-abcdef", "p/", sid, &n,
	    &level, &nonce), S3K_OTHER);
	ck_assert_int_eq(s3rec_parse_key("p/b/%61/3-0000000000abcdef", "p/",
	    sid, &n, &level, &nonce), S3K_OTHER);
	ck_assert_int_eq(s3rec_parse_key("p/s/x/L/1/more", "p/", sid, &n,
	    &level, &nonce), S3K_OTHER);
	ck_assert_int_eq(s3rec_parse_key("q/s/x/head", "p/", sid, &n, &level,
	    &nonce), S3K_OTHER);
	ck_assert_int_eq(s3rec_parse_key("p/lease/3", "p/", sid, &n, &level,
	    &nonce), S3K_OTHER);
	/* Shards: fixed for ever (leases name them), spread. */
	ck_assert_uint_eq(s3rec_shard((const uint8_t *)"", 0, 16),
	    0xcbf29ce484222325ULL % 16);
	ck_assert_uint_eq(s3rec_shard(K("a"), 16), 0xaf63dc4c8601ec8cULL % 16);
	ck_assert_uint_lt(s3rec_shard(K("model-7"), 16), 16);
}
END_TEST

START_TEST(sweep_bodies_and_steps)
{
	struct s3_head h, h2;
	struct s3_lease l, l2;
	char b[S3REC_BODY_MAX], err[128];
	size_t n;

	memset(&h, 0, sizeof(h));
	h.state = S3_EXPIRED;
	h.expires_ms = 1000;
	n = s3rec_head_format(&h, b, sizeof(b));
	ck_assert_ptr_nonnull(strstr(b, "state expired\n"));
	ck_assert_int_eq(s3rec_head_parse(b, n, &h2, err, sizeof(err)), 0);
	ck_assert_int_eq(h2.state, S3_EXPIRED);
	h.state = S3_GONE;
	n = s3rec_head_format(&h, b, sizeof(b));
	ck_assert_ptr_nonnull(strstr(b, "state gone\n"));
	ck_assert_int_eq(s3rec_head_parse(b, n, &h2, err, sizeof(err)), 0);
	ck_assert_int_eq(h2.state, S3_GONE);
	memset(&l, 0, sizeof(l));
	l.holder = 0x0102030405060708ULL;
	l.until_ms = 1796000000123LL;
	n = s3rec_lease_format(&l, b, sizeof(b));
	ck_assert_str_eq(b, "alpcrund-lease 1\nholder 0102030405060708\n"
	    "until_ms 1796000000123\n");
	ck_assert_int_eq(s3rec_lease_parse(b, n, &l2, err, sizeof(err)), 0);
	ck_assert_mem_eq(&l, &l2, sizeof(l));
	ck_assert_int_eq(s3rec_lease_parse("alpcrund-lease 1\nholder 1\n", 27,
	    &l2, err, sizeof(err)), -1);

	/* Leases: free, expired or one's own; never another's in time. */
	ck_assert(s3rec_lease_takable(NULL, 7, 100));
	ck_assert(s3rec_lease_takable(&l, l.holder, 0));
	ck_assert(!s3rec_lease_takable(&l, 7, l.until_ms - 1));
	ck_assert(s3rec_lease_takable(&l, 7, l.until_ms));

	/* Steps: now 5000, seals stale after 1000. */
	ck_assert_int_eq(s3rec_sweep_step(NULL, 0, 5000, 1000), S3SW_KEEP);
	ck_assert_int_eq(s3rec_sweep_step(NULL, 1, 5000, 1000), S3SW_COLLECT);
	h.state = S3_LIVE;
	h.expires_ms = 5001;
	ck_assert_int_eq(s3rec_sweep_step(&h, 1, 5000, 1000), S3SW_KEEP);
	h.expires_ms = 5000;
	ck_assert_int_eq(s3rec_sweep_step(&h, 1, 5000, 1000), S3SW_EXPIRE);
	h.state = S3_DELETED;
	h.expires_ms = 5001;
	ck_assert_int_eq(s3rec_sweep_step(&h, 1, 5000, 1000), S3SW_KEEP);
	h.expires_ms = 5000;
	ck_assert_int_eq(s3rec_sweep_step(&h, 1, 5000, 1000), S3SW_COLLECT);
	h.state = S3_EXPIRED;
	h.expires_ms = 4000;
	ck_assert_int_eq(s3rec_sweep_step(&h, 0, 5000, 1000), S3SW_COLLECT);
	h.state = S3_GONE;
	h.expires_ms = 4001;
	ck_assert_int_eq(s3rec_sweep_step(&h, 1, 5000, 1000), S3SW_KEEP);
	h.expires_ms = 4000;
	ck_assert_int_eq(s3rec_sweep_step(&h, 1, 5000, 1000), S3SW_COLLECT);
}
END_TEST

static Suite *
s3rec_suite(void)
{
	Suite *s = suite_create("s3rec");
	TCase *tc = tcase_create("s3rec");

	tcase_add_test(tc, names);
	tcase_add_test(tc, names_bounded);
	tcase_add_test(tc, listed_names_back_to_ids);
	tcase_add_test(tc, bodies_round_trip);
	tcase_add_test(tc, same_content);
	tcase_add_test(tc, parse_refusals);
	tcase_add_test(tc, sweep_names);
	tcase_add_test(tc, sweep_bodies_and_steps);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(s3rec_suite());
}
