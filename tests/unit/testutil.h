/*
 * testutil.h: helpers the unit tests share: removing a test's temporary
 * directory tree, and filling a buffer with reproducible bytes.
 */
#ifndef ALPCRUND_TESTUTIL_H
#define ALPCRUND_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Remove dir and everything below it (no symlinks followed). */
void	 tu_rmtree(const char *dir);
/* Deterministic pseudo-random bytes (xorshift) from seed. */
void	 tu_fill(uint8_t *p, size_t len, uint32_t seed);

#endif
