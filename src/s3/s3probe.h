/*
 * s3probe.h: the start-up probe of an S3 store: does it honour the
 * conditional writes `backend s3` builds on, alone and under races?
 *
 * Sequential behaviour proves nothing about races (stores have let several
 * racers "win" before fixes), so the probe races too. Against a scratch
 * prefix `<s3_prefix>.probe/<random>/` it checks, in order:
 *
 *   1. a create (PUT If-None-Match: *) of a new key succeeds;
 *   2. a second create of that key answers 412;
 *   3. a PUT with a wrong If-Match answers 412 (or 404), and one with
 *      the key's own ETag succeeds (a store that takes the ETag only
 *      without its quotes, as Ceph RGW 16 does, is sent it so from then
 *      on: s3_client_set_bare_if_match());
 *   4. a PUT with If-Match of a missing key answers 412 or 404, and the
 *      key is still missing after it;
 *   5. of 8 concurrent creates of one new key exactly one succeeds, and
 *      the key then holds the winner's bytes;
 *   6. of 8 concurrent PUTs with the key's If-Match exactly one succeeds,
 *      and the key then holds the winner's bytes;
 *
 * then deletes the scratch keys. A retried write that comes back 412 may
 * have lost the reply of its own success: such a racer is resolved by
 * reading the key back, as the backend will. Each failure's message names
 * what failed: "s3 store at URL: 3 of 8 racing creates of one key
 * succeeded; it does not honour If-None-Match under races".
 */
#ifndef ALPCRUND_S3PROBE_H
#define ALPCRUND_S3PROBE_H

#include <stddef.h>

struct event_base;
struct s3_client;
struct s3_probe;

/* ok 1 (msg says what passed) or 0 (msg says what failed). */
typedef void s3_probe_done_fn(void *arg, int ok, const char *msg);

/* Start the probe on the client's loop; NULL when out of memory. done
 * runs once, after the clean-up, unless the probe is cancelled. */
struct s3_probe *s3_probe_start(struct s3_client *, s3_probe_done_fn *,
	    void *arg);
/* Stop it (its requests cancelled, its scratch keys left); done never
 * runs. */
void	 s3_probe_cancel(struct s3_probe *);

/* Run the probe to its end on base, turning the loop itself (start-up
 * and -t, before anything else runs on it): 0 passed, -1 failed; msg
 * filled either way. */
int	 s3_probe_run(struct event_base *, struct s3_client *, char *msg,
	    size_t msglen);

#endif
