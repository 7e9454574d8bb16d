/*
 * siphash.h: SipHash-2-4 (Aumasson and Bernstein) with a secret random key,
 * for every hash table keyed by a session id a client chooses: with a
 * guessable hash, chosen ids could all land in one chain.
 */
#ifndef ALPCRUND_SIPHASH_H
#define ALPCRUND_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_LEN	16

uint64_t siphash24(const uint8_t key[SIPHASH_KEY_LEN], const uint8_t *in,
	    size_t len);
/* Fill key from getrandom(2). 0, or -1 with errno set. */
int	 siphash_key(uint8_t key[SIPHASH_KEY_LEN]);

#endif
