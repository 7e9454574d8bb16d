/*
 * addr.c: the parser of "host:port", "[v6]:port" and "unix:/path", and the
 * socket address of what needs no resolver (see addr.h).
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "addr.h"

/* The message for what fits no form at all. */
#define EXPECTED	"expected host:port, [v6]:port or unix:/path"

static void
addr_why(char *why, size_t whylen, const char *msg)
{
	if (whylen > 0)
		snprintf(why, whylen, "%s", msg);
}

/* Decimal digits only, 1-65535 (leading zeros are fine). 0, or -1. */
static int
addr_port(const char *p, struct addr *a)
{
	unsigned long v = 0;

	if (*p == '\0')
		return -1;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		/* Stop counting past the range: no overflow on long input. */
		if (v <= 65535)
			v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	a->portnum = (uint16_t)v;
	snprintf(a->port, sizeof(a->port), "%lu", v);
	return 0;
}

/* Letters, digits, '-' and '_' in dot-separated labels of 1-63 bytes;
 * 253 bytes in all (a trailing dot is fine). */
static int
addr_hostname_ok(const char *h, size_t len)
{
	size_t i, label = 0;

	if (len == 0 || len > 253)
		return 0;
	for (i = 0; i < len; i++) {
		char c = h[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_') {
			if (++label > 63)
				return 0;
		} else
			return 0;
	}
	return 1;
}

static int
addr_unix(const char *path, unsigned flags, struct addr *a, char *why,
    size_t whylen)
{
	char msg[64];

	if (flags & ADDR_UNIX_RELATIVE) {
		if (path[0] == '\0') {
			addr_why(why, whylen, "expected a path after unix:");
			return -1;
		}
	} else if (path[0] != '/') {
		addr_why(why, whylen, "expected an absolute path after unix:");
		return -1;
	}
	if (strlen(path) > ADDR_UNIX_MAX) {
		snprintf(msg, sizeof(msg), "unix socket path too long (at most "
		    "%zu bytes)", ADDR_UNIX_MAX);
		addr_why(why, whylen, msg);
		return -1;
	}
	a->kind = ADDR_UNIX;
	memcpy(a->path, path, strlen(path) + 1);
	return 0;
}

/* [v6]:port. The checks come in the order the configuration's messages
 * were always given in. */
static int
addr_bracketed(const char *s, struct addr *a, char *why, size_t whylen)
{
	const char *end;
	struct in6_addr a6;
	size_t hlen;

	if ((end = strchr(s, ']')) == NULL) {
		addr_why(why, whylen, EXPECTED);
		return -1;
	}
	hlen = (size_t)(end - s - 1);
	if (hlen == 0 || hlen >= sizeof(a->host)) {
		addr_why(why, whylen, "bad IPv6 address in brackets");
		return -1;
	}
	memcpy(a->host, s + 1, hlen);
	a->host[hlen] = '\0';
	if (inet_pton(AF_INET6, a->host, &a6) != 1) {
		addr_why(why, whylen, "bad IPv6 address in brackets");
		return -1;
	}
	if (end[1] != ':') {
		addr_why(why, whylen, "expected :port after the brackets");
		return -1;
	}
	if (addr_port(end + 2, a) != 0) {
		addr_why(why, whylen, "expected a port 1-65535 after the "
		    "colon");
		return -1;
	}
	a->kind = ADDR_INET;
	a->bracketed = 1;
	return 0;
}

/* host:port. */
static int
addr_hostport(const char *s, unsigned flags, struct addr *a, char *why,
    size_t whylen)
{
	const char *colon;
	struct in_addr a4;
	size_t hlen, i;
	int numeric = 1;

	if ((colon = strrchr(s, ':')) == NULL) {
		addr_why(why, whylen, EXPECTED);
		return -1;
	}
	hlen = (size_t)(colon - s);
	if (memchr(s, ':', hlen) != NULL) {
		addr_why(why, whylen, "IPv6 addresses need brackets, like "
		    "[::1]:2337");
		return -1;
	}
	if (hlen == 0) {
		addr_why(why, whylen, "missing host before the colon "
		    "(0.0.0.0 for every address)");
		return -1;
	}
	if (addr_port(colon + 1, a) != 0) {
		addr_why(why, whylen, "expected a port 1-65535 after the "
		    "colon");
		return -1;
	}
	if (flags & ADDR_ANY_HOST) {
		if (hlen > ADDR_HOST_MAX) {
			addr_why(why, whylen, "host name too long (at most "
			    "255 bytes)");
			return -1;
		}
	} else if (!addr_hostname_ok(s, hlen)) {
		addr_why(why, whylen, "bad host name");
		return -1;
	}
	memcpy(a->host, s, hlen);
	a->host[hlen] = '\0';
	for (i = 0; i < hlen; i++)
		if (s[i] != '.' && (s[i] < '0' || s[i] > '9'))
			numeric = 0;
	/* All digits and dots is meant as an address, not as a name. */
	if (numeric && !(flags & ADDR_ANY_HOST) &&
	    inet_pton(AF_INET, a->host, &a4) != 1) {
		addr_why(why, whylen, "bad IPv4 address");
		return -1;
	}
	a->kind = ADDR_INET;
	return 0;
}

int
addr_parse(const char *s, unsigned flags, struct addr *a, char *why,
    size_t whylen)
{
	memset(a, 0, sizeof(*a));
	if (strncmp(s, "unix:", 5) == 0)
		return addr_unix(s + 5, flags, a, why, whylen);
	if (s[0] == '[')
		return addr_bracketed(s, a, why, whylen);
	return addr_hostport(s, flags, a, why, whylen);
}

int
addr_sockaddr(const struct addr *a, struct sockaddr_storage *ss,
    socklen_t *len)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)ss;
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (a->kind == ADDR_UNIX) {
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, a->path, strlen(a->path) + 1);
		*len = sizeof(*sun);
		return 0;
	}
	if (inet_pton(AF_INET, a->host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(a->portnum);
		*len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, a->host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->portnum);
		*len = sizeof(*in6);
		return 0;
	}
	return -1;
}

int
addr_is_any(const struct addr *a)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;

	if (a->kind != ADDR_INET || addr_sockaddr(a, &ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return in->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
}

int
addr_is_loopback(const struct addr *a)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	const struct in6_addr *a6 = &in6->sin6_addr;
	socklen_t len;

	if (a->kind != ADDR_INET)
		return 0;
	/* Names are not resolved here: only this one is known to be ours. */
	if (strcasecmp(a->host, "localhost") == 0)
		return 1;
	if (addr_sockaddr(a, &ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	/* A v4-mapped address is the IPv4 address on a dual-stack socket. */
	return IN6_IS_ADDR_LOOPBACK(a6) ||
	    (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

int
addr_same_host(const struct addr *a, const struct addr *b)
{
	struct sockaddr_storage sa, sb;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
	struct sockaddr_in *b4 = (struct sockaddr_in *)&sb;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
	struct sockaddr_in6 *b6 = (struct sockaddr_in6 *)&sb;
	socklen_t la, lb;
	int na, nb;

	if (a->kind != ADDR_INET || b->kind != ADDR_INET)
		return 0;
	na = addr_sockaddr(a, &sa, &la) == 0;
	nb = addr_sockaddr(b, &sb, &lb) == 0;
	if (!na && !nb)
		return strcasecmp(a->host, b->host) == 0;
	if (!na || !nb || sa.ss_family != sb.ss_family)
		return 0;
	if (sa.ss_family == AF_INET)
		return a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	return memcmp(&a6->sin6_addr, &b6->sin6_addr,
	    sizeof(a6->sin6_addr)) == 0;
}
