/*
 * addr.h: the one parser of the daemon's addresses: "host:port",
 * "[v6]:port" and "unix:/path". The configuration checks listen,
 * metrics_listen and upstream with it, the listeners (server.c) and the
 * upstream client (h2client) take their addresses apart with it.
 *
 * What it accepts:
 *	unix:/path	an absolute path of at most ADDR_UNIX_MAX bytes
 *	[v6]:port	a numeric IPv6 address in brackets
 *	host:port	a dotted IPv4 address, or a host name: letters, digits,
 *			'-' and '_' in dot-separated labels of at most 63, 253
 *			in all (so no ':' in host: IPv6 needs brackets)
 *	port		decimal digits only, 1-65535
 * Each refusal says why, in the words of the configuration's messages
 * ("expected a port 1-65535 after the colon", ...).
 *
 * addr_same_host(), addr_is_any() and addr_is_loopback() tell what a parsed
 * host means, for the configuration's check that a node does not forward
 * to itself.
 */
#ifndef ALPCRUND_ADDR_H
#define ALPCRUND_ADDR_H

#include <sys/socket.h>
#include <sys/un.h>
#include <stddef.h>
#include <stdint.h>

/* The longest unix socket path (sun_path holds it and a NUL). */
#define ADDR_UNIX_MAX	(sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
/* The longest host accepted by ADDR_ANY_HOST (a name is at most 253). */
#define ADDR_HOST_MAX	255

/*
 * Flags: what a caller accepts beyond the forms above. A client's target
 * (alpcrunctl -s) keeps what it always accepted: a host the resolver
 * judges, a unix socket path relative to the working directory.
 */
#define ADDR_ANY_HOST		0x01	/* host: any bytes but ':' */
#define ADDR_UNIX_RELATIVE	0x02	/* unix:path need not start with / */

enum addr_kind { ADDR_INET, ADDR_UNIX };

struct addr {
	enum addr_kind	 kind;
	/* ADDR_INET: the host without its brackets, and the port. */
	char		 host[ADDR_HOST_MAX + 1];
	char		 port[6];	/* decimal, without leading zeros */
	uint16_t	 portnum;
	int		 bracketed;	/* written [v6]:port */
	/* ADDR_UNIX: the path. */
	char		 path[ADDR_UNIX_MAX + 1];
};

/*
 * Parse s into *a. 0, or -1 with why filled (a phrase without the address
 * itself: the caller says which value it was).
 */
int	 addr_parse(const char *s, unsigned flags, struct addr *a, char *why,
	    size_t whylen);
/*
 * The socket address of a unix path or of a numeric host, without
 * resolving anything (*ss zeroed first). 0, or -1 for a host name.
 */
int	 addr_sockaddr(const struct addr *a, struct sockaddr_storage *ss,
	    socklen_t *len);
/*
 * Whether an ADDR_INET host is the wildcard address (0.0.0.0, ::) or one of
 * this machine's loopback addresses (127/8, ::1, ::ffff:127/104, the name
 * localhost). Numeric hosts are compared as addresses, so "[0::0]" is "::";
 * no other name is resolved. 1 or 0 (always 0 for ADDR_UNIX).
 */
int	 addr_is_any(const struct addr *a);
int	 addr_is_loopback(const struct addr *a);
/*
 * Whether two ADDR_INET hosts are one: numeric hosts as addresses ("::1" is
 * "0:0:0:0:0:0:0:1"), names without regard to case. Ports are not compared.
 * 1 or 0 (0 if either is ADDR_UNIX).
 */
int	 addr_same_host(const struct addr *a, const struct addr *b);

#endif
