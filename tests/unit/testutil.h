/*
 * testutil.h: helpers the unit tests share: the main() of every test
 * binary, removing a test's temporary directory tree, and filling a buffer
 * with reproducible bytes.
 */
#ifndef ALPCRUND_TESTUTIL_H
#define ALPCRUND_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <check.h>

/*
 * Run suite s (freed with its runner) and return main()'s exit status:
 * EXIT_SUCCESS when every test passed. Check prints its summary line
 * ("100%: Checks: 22, Failures: 0, Errors: 0", which tests/run-all reads)
 * and each failure; CK_FORK=no in the environment runs the tests in this
 * process (valgrind), as Check reads it.
 */
int	 tu_run(Suite *s);

/* Remove dir and everything below it (no symlinks followed). */
void	 tu_rmtree(const char *dir);
/* Deterministic pseudo-random bytes (xorshift) from seed. */
void	 tu_fill(uint8_t *p, size_t len, uint32_t seed);

#endif
