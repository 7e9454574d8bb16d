/*
 * ctl_top.h: `alpcrunctl top` (ctl_top.c), a live view of daemons from
 * their status pages.
 */
#ifndef ALPCRUND_CTL_TOP_H
#define ALPCRUND_CTL_TOP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/* host:port or [v6]:port of a metrics_listen; 0, or -1 when malformed. */
int	 ctl_top_addr(const char *, char *host, size_t cap, int *port);
/*
 * Ask each address's /status.json every interval_ms and print the view,
 * count times (0: until interrupted), redrawn in place when tty. 0, or -1
 * (out of memory, a malformed address).
 */
int	 ctl_top(struct event_base *, char **addrs, size_t n,
	    uint64_t interval_ms, long count, int tty);

#endif
