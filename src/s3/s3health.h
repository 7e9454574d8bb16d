/*
 * s3health.h: the state of an S3 store as its requests find it, for
 * backend s3 (writes refused at once while it is down, Gets served from
 * the hot tier), /readyz, alpcrund_s3_store_up and the status page.
 *
 * Fed each request's outcome after its retries (s3_client_set_observer()).
 * A request failed when no response came (name resolution, connection,
 * TLS, the deadline, a connection lost mid-request), or the store answered
 * 5xx or 403 (credentials refused); any other answer (404, 412 and 304
 * included) is the store working. A 500 to a conditional write counts for
 * neither: Ceph RGW answers most losers of a race so. Then:
 *
 *	down		the last S3_HEALTH_DOWN_AFTER requests failed;
 *	degraded	not down, and a request failed within the last
 *			S3_HEALTH_WINDOW_S seconds;
 *	up		no request failed within that window.
 *
 * A success ends down (degraded then, up once the window has passed
 * with no failure). While down, the client GETs the probe key once a
 * second (one attempt, short deadline), so that the store is found back
 * without traffic: nothing else asks it while writes are refused.
 */
#ifndef ALPCRUND_S3HEALTH_H
#define ALPCRUND_S3HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "s3client.h"

#define S3_HEALTH_DOWN_AFTER	3
#define S3_HEALTH_WINDOW_S	30

struct event_base;
struct s3_health;

enum s3_health_kind {
	S3_HEALTH_UP = 0,
	S3_HEALTH_DEGRADED,
	S3_HEALTH_DOWN,
};

struct s3_health_info {
	enum s3_health_kind state;
	uint64_t	 since;		/* clock_now_ns() it became so */
	unsigned	 failed_in_a_row;
	uint64_t	 failures;	/* since start */
	uint64_t	 last_error_at;	/* clock_now_ns(); 0: none yet */
	/* "PUT s/abc/head: HTTP 503 SlowDown: Reduce your request rate",
	 * "GET s/abc/head: timeout: …": the key without the prefix. */
	char		 last_error[512];
};

/* Told of every change of state, and of each new error while not up. */
typedef void s3_health_fn(void *arg, const struct s3_health_info *);

/* The state of cl's store, observing cl from now on; probe_key (under
 * the prefix) is what a down store is asked for. NULL: out of memory. */
struct s3_health *s3_health_new(struct event_base *, struct s3_client *cl,
	    const char *probe_key);
void	 s3_health_free(struct s3_health *);
void	 s3_health_on_change(struct s3_health *, s3_health_fn *, void *arg);
/* As of now (a window passed turns degraded to up). */
const struct s3_health_info *s3_health_get(struct s3_health *);
/* 1 while down, with msg "s3 store down (N requests failed in a row,
 * the last: …)". */
int	 s3_health_down(struct s3_health *, char *msg, size_t len);
const char *s3_health_name(enum s3_health_kind);

/* The outcome of one request (the observer; exposed for the tests). */
void	 s3_health_note(struct s3_health *, enum s3_op, const char *key,
	    int conditional, const struct s3_response *);

#endif
