/*
 * server.h: the process-wide server: listeners (TCP and unix sockets), the
 * list of connections, the limits every connection obeys (live on SIGHUP),
 * accounting of request bytes in flight, and the drain on SIGTERM.
 */
#ifndef ALPCRUND_SERVER_H
#define ALPCRUND_SERVER_H

#include <sys/queue.h>
#include <stdint.h>

#include "h2conn.h"

struct config;
struct event_base;
struct listener;

/* Told when the drain starts (SIGTERM), before any stream is ended. */
struct drain_hook {
	void			(*fn)(void *);
	void			*arg;
	struct drain_hook	*next;
};

/* The limits a connection reads at use time; SIGHUP replaces them. */
struct limits {
	uint64_t	 max_message_size;
	uint64_t	 max_inflight_bytes;
	uint64_t	 max_concurrent_streams;
	uint64_t	 handshake_ms;
	uint64_t	 idle_ms;
	uint64_t	 send_ms;
	uint64_t	 shutdown_grace_ms;
};

struct server {
	struct event_base	*base;
	const struct h2s_ops	*ops;		/* the layer on the streams */
	const struct config	*conf;		/* current; owned by main.c */
	struct limits		 lim;
	uint64_t		 max_connections; /* fixed at start (rlimit) */

	struct listener		*listeners;
	size_t			 nlisteners;
	unsigned		 accept_paused:1; /* max_connections reached */
	unsigned		 draining:1;

	TAILQ_HEAD(, h2s_conn)	 conns;
	size_t			 nconns;

	uint64_t		 inflight;	/* request body bytes reserved */
	TAILQ_HEAD(, h2s_stream) starved;	/* streams waiting for a reservation */

	struct event		*drain_timer;	/* GOAWAY step two */
	struct event		*grace_timer;	/* shutdown_grace */
	void			(*on_drained)(struct server *);
	struct drain_hook	*drain_hooks;
};

/* ops: what runs on every request stream (the call layer's table). */
int	 server_init(struct server *, struct event_base *,
	    const struct config *, const struct h2s_ops *ops, char *err,
	    size_t errlen);
/* Call fn(arg) when the drain starts (main.c registers readiness, health
 * and the services that must refuse new work). 0, or -1. */
int	 server_on_drain(struct server *, void (*fn)(void *), void *arg);
/* Bind every `listen` address. */
int	 server_listen(struct server *, char *err, size_t errlen);
/* SIGHUP: the new configuration's live values. */
void	 server_reconfigure(struct server *, const struct config *);
/* SIGTERM: the drain hooks, stop accepting, GOAWAY in two steps, end
 * long-lived replies (h2s_ops.drain), let the others finish within
 * shutdown_grace; then on_drained(). */
void	 server_drain(struct server *);
void	 server_free(struct server *);

/* h2srv.c -> server. */
void	 server_conn_closed(struct server *, struct h2s_conn *);
/* Request body bytes buffered (+) or released (-); releasing gives held
 * window back to starved connections. */
void	 server_inflight(struct server *, int64_t delta);
int	 server_inflight_full(const struct server *);

#endif
