/*
 * digest.h: SHA-256 of large payloads off the event loop.
 *
 * Tombstones keep the digest of the payload they replaced (spec §4), so a
 * Delete hashes the entry and a Set onto a tombstone at its level hashes
 * the request. At 256 MiB that is a fifth of a second: on the loop it would
 * stall every other client. One worker thread hashes instead, and the
 * result comes back to the loop.
 *
 * The contract: digest_start() queues a job; the bytes must stay valid and
 * unchanged until done runs, or until digest_cancel() of the job returns. done runs on the loop thread, from an event of
 * its own, exactly once per queued job (digest_free() runs those still
 * queued, after hashing them, before it returns). digest_start() returns -1
 * when the worker is not running (never started, or out of memory): the
 * caller then hashes inline.
 */
#ifndef ALPCRUND_DIGEST_H
#define ALPCRUND_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define DIGEST_LEN	32

struct event_base;

typedef void digest_done_fn(void *arg, const uint8_t digest[DIGEST_LEN]);

/* Start the worker; -1 with err filled. */
int	 digest_init(struct event_base *, char *err, size_t errlen);
/* Finish every queued job (their done included) and stop the worker. */
void	 digest_free(void);
int	 digest_start(const uint8_t *data, size_t len, digest_done_fn *done,
	    void *arg);
/* Forget the job queued with done and arg (on the loop thread): once this
 * returns its bytes are not read any more and its done never runs. When
 * the worker is hashing it right now, this waits for the piece under way
 * (1 MiB, a few milliseconds). Nothing when there is no such job. */
void	 digest_cancel(digest_done_fn *done, void *arg);

#endif
