/*
 * check_addr.c: unit tests of addr.c: every form addr_parse() accepts and
 * what it makes of it, every refusal with its reason, the client's forms
 * (ADDR_ANY_HOST, ADDR_UNIX_RELATIVE), addr_sockaddr(), and what
 * addr_is_any(), addr_is_loopback() and addr_same_host() make of a host.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "testutil.h"

#define CLIENT	(ADDR_ANY_HOST | ADDR_UNIX_RELATIVE)

static void
parse_ok(const char *s, unsigned flags, struct addr *a)
{
	char why[128] = "";

	ck_assert_msg(addr_parse(s, flags, a, why, sizeof(why)) == 0,
	    "%s refused (flags %u): %s", s, flags, why);
}

/* s is refused, and the reason begins with want. */
static void
parse_bad(const char *s, unsigned flags, const char *want)
{
	struct addr a;
	char why[128] = "";

	ck_assert_msg(addr_parse(s, flags, &a, why, sizeof(why)) == -1,
	    "\"%s\" accepted (flags %u)", s, flags);
	ck_assert_msg(strncmp(why, want, strlen(want)) == 0,
	    "\"%s\" (flags %u): \"%s\", expected \"%s\"", s, flags, why,
	    want);
}

static void
check_inet(const char *s, unsigned flags, const char *host, uint16_t port,
    int bracketed)
{
	struct addr a;
	char p[8];

	parse_ok(s, flags, &a);
	ck_assert_int_eq(a.kind, ADDR_INET);
	ck_assert_str_eq(a.host, host);
	ck_assert_uint_eq(a.portnum, port);
	snprintf(p, sizeof(p), "%u", (unsigned)port);
	ck_assert_str_eq(a.port, p);
	ck_assert_int_eq(a.bracketed, bracketed);
}

/* --- accepted ------------------------------------------------------------- */

START_TEST(accepts_host_port)
{
	check_inet("127.0.0.1:1", 0, "127.0.0.1", 1, 0);
	check_inet("0.0.0.0:2337", 0, "0.0.0.0", 2337, 0);
	check_inet("255.255.255.255:65535", 0, "255.255.255.255", 65535, 0);
	check_inet("localhost:65535", 0, "localhost", 65535, 0);
	check_inet("cache-1.example.com:2337", 0, "cache-1.example.com",
	    2337, 0);
	check_inet("central_cache:2337", 0, "central_cache", 2337, 0);
	check_inet("example.com.:80", 0, "example.com.", 80, 0);
	/* Leading zeros are a number like any other, and go. */
	check_inet("h:0080", 0, "h", 80, 0);
	check_inet("h:000000000000000000001", 0, "h", 1, 0);
}
END_TEST

START_TEST(accepts_v6)
{
	check_inet("[::]:3337", 0, "::", 3337, 1);
	check_inet("[::1]:2337", 0, "::1", 2337, 1);
	check_inet("[fe80::1]:80", 0, "fe80::1", 80, 1);
	check_inet("[::ffff:10.0.0.1]:9100", 0, "::ffff:10.0.0.1", 9100, 1);
	check_inet("[2001:db8:0:0:0:0:0:1]:1", 0, "2001:db8:0:0:0:0:0:1", 1,
	    1);
}
END_TEST

START_TEST(accepts_unix)
{
	struct addr a;
	char s[256];

	parse_ok("unix:/tmp/x.sock", 0, &a);
	ck_assert_int_eq(a.kind, ADDR_UNIX);
	ck_assert_str_eq(a.path, "/tmp/x.sock");
	ck_assert_str_eq(a.host, "");
	ck_assert_uint_eq(a.portnum, 0);
	parse_ok("unix:/run/alpcrund/alpcrund.sock", 0, &a);
	ck_assert_str_eq(a.path, "/run/alpcrund/alpcrund.sock");
	/* The longest path sun_path holds (with its NUL). */
	snprintf(s, sizeof(s), "unix:/");
	memset(s + 6, 'x', ADDR_UNIX_MAX - 1);
	s[5 + ADDR_UNIX_MAX] = '\0';
	parse_ok(s, 0, &a);
	ck_assert_uint_eq(strlen(a.path), ADDR_UNIX_MAX);
}
END_TEST

/* The client's target keeps what it always accepted. */
START_TEST(accepts_client_forms)
{
	struct addr a;
	char s[300];

	parse_ok("unix:relative.sock", CLIENT, &a);
	ck_assert_int_eq(a.kind, ADDR_UNIX);
	ck_assert_str_eq(a.path, "relative.sock");
	/* A host the resolver judges: not a name, not an address. */
	check_inet("h@st:1", CLIENT, "h@st", 1, 0);
	check_inet("1.2.3:80", CLIENT, "1.2.3", 80, 0);
	check_inet("a..b:1", CLIENT, "a..b", 1, 0);
	/* 255 bytes of host, the most a client takes. */
	memset(s, 'h', ADDR_HOST_MAX);
	snprintf(s + ADDR_HOST_MAX, sizeof(s) - ADDR_HOST_MAX, ":9");
	parse_ok(s, CLIENT, &a);
	ck_assert_uint_eq(strlen(a.host), ADDR_HOST_MAX);
	/* Everything the strict forms accept, too. */
	check_inet("127.0.0.1:2337", CLIENT, "127.0.0.1", 2337, 0);
	check_inet("[::1]:2337", CLIENT, "::1", 2337, 1);
	parse_ok("unix:/tmp/x.sock", CLIENT, &a);
	ck_assert_str_eq(a.path, "/tmp/x.sock");
}
END_TEST

/* --- refused -------------------------------------------------------------- */

START_TEST(refuses_shape)
{
	static const unsigned flags[] = { 0, CLIENT };
	size_t i;

	for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		unsigned f = flags[i];

		parse_bad("", f, "expected host:port, [v6]:port or "
		    "unix:/path");
		parse_bad("127.0.0.1", f, "expected host:port, [v6]:port or "
		    "unix:/path");
		parse_bad("nonsense", f, "expected host:port");
		/* An unterminated bracket. */
		parse_bad("[::1:1", f, "expected host:port");
		parse_bad("[", f, "expected host:port");
		parse_bad("[::1]2337", f, "expected :port after the "
		    "brackets");
		parse_bad("[::1]", f, "expected :port after the brackets");
		parse_bad("::1:2337", f, "IPv6 addresses need brackets, like "
		    "[::1]:2337");
		parse_bad("a:b:80", f, "IPv6 addresses need brackets");
	}
}
END_TEST

START_TEST(refuses_host)
{
	static const unsigned flags[] = { 0, CLIENT };
	struct addr a;
	char s[300];
	size_t i;

	for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		unsigned f = flags[i];

		/* An empty host. */
		parse_bad(":2337", f, "missing host before the colon "
		    "(0.0.0.0 for every address)");
		parse_bad(":", f, "missing host");
		parse_bad("[]:1", f, "bad IPv6 address in brackets");
		parse_bad("[zz]:1", f, "bad IPv6 address in brackets");
		/* An IPv4 address is not one in brackets. */
		parse_bad("[1.2.3.4]:80", f, "bad IPv6 address in brackets");
		parse_bad("[example.com]:80", f, "bad IPv6 address");
	}
	parse_bad("256.1.1.1:80", 0, "bad IPv4 address");
	parse_bad("1.2.3:80", 0, "bad IPv4 address");
	parse_bad("1.2.3.4.5:80", 0, "bad IPv4 address");
	parse_bad("a..b:1", 0, "bad host name");
	parse_bad(".a:1", 0, "bad host name");
	parse_bad("h@st:1", 0, "bad host name");
	parse_bad("h st:1", 0, "bad host name");
	parse_bad("*:1", 0, "bad host name");
	/* A label of 64 (63 is fine), a name of 254. */
	memset(s, 'a', 64);
	snprintf(s + 64, sizeof(s) - 64, ":1");
	parse_bad(s, 0, "bad host name");
	s[63] = '.';
	parse_ok(s, 0, &a);
	ck_assert_uint_eq(strlen(a.host), 64);
	for (i = 0; i < 254; i++)
		s[i] = i % 2 == 0 ? 'a' : '.';
	snprintf(s + 254, sizeof(s) - 254, ":1");
	parse_bad(s, 0, "bad host name");
	/* The client's longest host is 255 bytes; brackets hold no more. */
	memset(s, 'h', ADDR_HOST_MAX + 1);
	snprintf(s + ADDR_HOST_MAX + 1, sizeof(s) - ADDR_HOST_MAX - 1, ":9");
	parse_bad(s, CLIENT, "host name too long (at most 255 bytes)");
	memset(s, ':', ADDR_HOST_MAX + 2);
	s[0] = '[';
	snprintf(s + ADDR_HOST_MAX + 2, sizeof(s) - ADDR_HOST_MAX - 2, "]:9");
	parse_bad(s, 0, "bad IPv6 address in brackets");
	parse_bad(s, CLIENT, "bad IPv6 address in brackets");
}
END_TEST

START_TEST(refuses_port)
{
	static const char *const bad[] = {
		"127.0.0.1:", "127.0.0.1:0", "127.0.0.1:00000",
		"127.0.0.1:65536", "127.0.0.1:99999999999999999999999",
		"127.0.0.1:http", "127.0.0.1:-1", "127.0.0.1:+80",
		"127.0.0.1: 80", "127.0.0.1:80 ", "127.0.0.1:0x50",
		"127.0.0.1:8o", "host:", "host:0", "host:99999",
		"[::1]:", "[::1]:0", "[::1]:65536", "[::1]:x",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		parse_bad(bad[i], 0, "expected a port 1-65535 after the "
		    "colon");
		parse_bad(bad[i], CLIENT, "expected a port 1-65535 after "
		    "the colon");
	}
}
END_TEST

START_TEST(refuses_unix)
{
	char s[256], want[64];

	/* An empty path. */
	parse_bad("unix:", 0, "expected an absolute path after unix:");
	parse_bad("unix:", CLIENT, "expected a path after unix:");
	parse_bad("unix:relative.sock", 0, "expected an absolute path after "
	    "unix:");
	/* A path one byte longer than sun_path holds. */
	snprintf(want, sizeof(want), "unix socket path too long (at most %zu "
	    "bytes)", ADDR_UNIX_MAX);
	snprintf(s, sizeof(s), "unix:/");
	memset(s + 6, 'x', ADDR_UNIX_MAX);
	s[6 + ADDR_UNIX_MAX] = '\0';
	parse_bad(s, 0, want);
	parse_bad(s, CLIENT, want);
	s[5] = 'x';
	parse_bad(s, CLIENT, want);
	/* Linux: the configuration's message is "at most 107 bytes". */
	if (sizeof(((struct sockaddr_un *)0)->sun_path) == 108)
		ck_assert_str_eq(want, "unix socket path too long (at most "
		    "107 bytes)");
}
END_TEST

/* A refusal with no room for the reason is still a refusal. */
START_TEST(refuses_without_reason)
{
	struct addr a;
	char why[8] = "unset";

	ck_assert_int_eq(addr_parse("x", 0, &a, NULL, 0), -1);
	ck_assert_int_eq(addr_parse("x:0", 0, &a, why, 0), -1);
	ck_assert_str_eq(why, "unset");
	ck_assert_int_eq(addr_parse("x:0", 0, &a, why, sizeof(why)), -1);
	ck_assert_str_eq(why, "expecte");	/* cut to fit */
}
END_TEST

/* --- socket addresses ----------------------------------------------------- */

START_TEST(sockaddrs)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
	struct addr a;
	socklen_t len;
	char buf[INET6_ADDRSTRLEN];

	parse_ok("10.1.2.3:2337", 0, &a);
	ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), 0);
	ck_assert_int_eq(in->sin_family, AF_INET);
	ck_assert_uint_eq(ntohs(in->sin_port), 2337);
	ck_assert_uint_eq(len, sizeof(*in));
	ck_assert_str_eq(inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf)),
	    "10.1.2.3");

	parse_ok("[fe80::1]:80", 0, &a);
	ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), 0);
	ck_assert_int_eq(in6->sin6_family, AF_INET6);
	ck_assert_uint_eq(ntohs(in6->sin6_port), 80);
	ck_assert_uint_eq(len, sizeof(*in6));
	ck_assert_str_eq(inet_ntop(AF_INET6, &in6->sin6_addr, buf,
	    sizeof(buf)), "fe80::1");

	parse_ok("unix:/tmp/x.sock", 0, &a);
	ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), 0);
	ck_assert_int_eq(sun->sun_family, AF_UNIX);
	ck_assert_str_eq(sun->sun_path, "/tmp/x.sock");
	ck_assert_uint_eq(len, sizeof(*sun));

	/* A name needs a resolver. */
	parse_ok("localhost:2337", 0, &a);
	ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), -1);
	parse_ok("1.2.3:80", CLIENT, &a);
	ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), -1);
}
END_TEST

/* --- what a host means ---------------------------------------------------- */

/* The parsed s is (or is not) the wildcard and a loopback address. */
static void
check_meaning(const char *s, unsigned flags, int any, int loopback)
{
	struct addr a;

	parse_ok(s, flags, &a);
	ck_assert_msg(addr_is_any(&a) == any, "%s: addr_is_any() != %d", s,
	    any);
	ck_assert_msg(addr_is_loopback(&a) == loopback,
	    "%s: addr_is_loopback() != %d", s, loopback);
}

START_TEST(wildcard_and_loopback)
{
	check_meaning("0.0.0.0:1", 0, 1, 0);
	check_meaning("[::]:1", 0, 1, 0);
	/* Numeric hosts are compared as addresses, not as text. */
	check_meaning("[0::0]:1", 0, 1, 0);
	check_meaning("[0:0:0:0:0:0:0:0]:1", 0, 1, 0);
	check_meaning("127.0.0.1:1", 0, 0, 1);
	check_meaning("127.255.1.2:1", 0, 0, 1);
	check_meaning("[::1]:1", 0, 0, 1);
	check_meaning("[0:0:0:0:0:0:0:1]:1", 0, 0, 1);
	check_meaning("[::ffff:127.0.0.1]:1", 0, 0, 1);
	check_meaning("localhost:1", 0, 0, 1);
	check_meaning("LocalHost:1", 0, 0, 1);
	/* Neither. */
	check_meaning("10.0.0.1:1", 0, 0, 0);
	check_meaning("128.0.0.1:1", 0, 0, 0);
	check_meaning("[::2]:1", 0, 0, 0);
	check_meaning("[::ffff:10.0.0.1]:1", 0, 0, 0);
	check_meaning("[::ffff:0.0.0.0]:1", 0, 0, 0);
	check_meaning("0.0.0.1:1", 0, 0, 0);
	/* A name is not resolved: one that merely begins with 127. is not a
	 * loopback address, and localhost's neighbours are names too. */
	check_meaning("127.example.com:1", 0, 0, 0);
	check_meaning("localhost.example.com:1", 0, 0, 0);
	check_meaning("example.com:1", 0, 0, 0);
	check_meaning("0.0.0:1", CLIENT, 0, 0);
	check_meaning("*:1", CLIENT, 0, 0);
	/* A unix socket is neither. */
	check_meaning("unix:/tmp/x.sock", 0, 0, 0);
	check_meaning("unix:127.0.0.1", CLIENT, 0, 0);
}
END_TEST

/* Whether s1 and s2 name one host, either way round. */
static void
check_same(const char *s1, const char *s2, unsigned flags, int same)
{
	struct addr a, b;

	parse_ok(s1, flags, &a);
	parse_ok(s2, flags, &b);
	ck_assert_msg(addr_same_host(&a, &b) == same,
	    "%s, %s: addr_same_host() != %d", s1, s2, same);
	ck_assert_msg(addr_same_host(&b, &a) == same,
	    "%s, %s: addr_same_host() != %d", s2, s1, same);
}

START_TEST(same_host)
{
	check_same("127.0.0.1:1", "127.0.0.1:2", 0, 1);	/* ports aside */
	check_same("[::1]:1", "[0:0:0:0:0:0:0:1]:1", 0, 1);
	check_same("[fe80::1]:1", "[FE80:0::1]:1", 0, 1);
	check_same("example.com:1", "EXAMPLE.com:1", 0, 1);
	check_same("127.0.0.1:1", "127.0.0.2:1", 0, 0);
	/* A v4-mapped address is of another family: not the same host. */
	check_same("127.0.0.1:1", "[::ffff:127.0.0.1]:1", 0, 0);
	/* A name is never an address, even localhost. */
	check_same("localhost:1", "127.0.0.1:1", 0, 0);
	check_same("a.example:1", "b.example:1", 0, 0);
	/* Not a numeric address to the client either: compared as text. */
	check_same("1.2.3:1", "1.2.3:2", CLIENT, 1);
	check_same("unix:/tmp/x", "unix:/tmp/x", 0, 0);
	check_same("unix:/tmp/x", "127.0.0.1:1", 0, 0);
}
END_TEST

static Suite *
addr_suite(void)
{
	Suite	*s = suite_create("addr");
	TCase	*tc;

	tc = tcase_create("accepted");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, accepts_host_port);
	tcase_add_test(tc, accepts_v6);
	tcase_add_test(tc, accepts_unix);
	tcase_add_test(tc, accepts_client_forms);
	suite_add_tcase(s, tc);

	tc = tcase_create("refused");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, refuses_shape);
	tcase_add_test(tc, refuses_host);
	tcase_add_test(tc, refuses_port);
	tcase_add_test(tc, refuses_unix);
	tcase_add_test(tc, refuses_without_reason);
	suite_add_tcase(s, tc);

	tc = tcase_create("sockaddr");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, sockaddrs);
	suite_add_tcase(s, tc);

	tc = tcase_create("meaning");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, wildcard_and_loopback);
	tcase_add_test(tc, same_host);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(addr_suite());
}
