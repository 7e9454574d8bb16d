/*
 * reads.h: how many times each session was read (Gets served), for the
 * status page. At most READS_MAX sessions are counted at once, in a table
 * of fixed size (no rehash ever stalls the loop); a session read when the
 * table is full is not counted (reads_get() says so). A session leaves the
 * table when its entry leaves the store (deleted, expired, evicted), so
 * the table holds only sessions the store holds.
 */
#ifndef ALPCRUND_READS_H
#define ALPCRUND_READS_H

#include <stddef.h>
#include <stdint.h>

#define READS_MAX	65536

/* 0, or -1 when out of memory (the daemon does not start). */
int	 reads_init(void);
void	 reads_free(void);
/* A Get of key was answered from the store. */
void	 reads_hit(const uint8_t *key, size_t keylen);
/* key's entry left the store. */
void	 reads_forget(const uint8_t *key, size_t keylen);
/* key's reads; -1 when it is not counted (never read, or the table was
 * full when it was). */
int64_t	 reads_get(const uint8_t *key, size_t keylen);
/* Sessions counted now. */
size_t	 reads_tracked(void);

#endif
