/*
 * testutil.h: helpers the unit tests share: the main() of every test
 * binary, removing a test's temporary directory tree, filling a buffer
 * with reproducible bytes, and a fake S3 store for backend s3.
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

/*
 * tests/integration/s3/fakes3.py as a child process (the source tree from
 * $TOP_SRCDIR, else the one this was built from), serving bucket TU_BUCKET
 * on 127.0.0.1 with the credentials TU_S3_KEY/TU_S3_SECRET, which it also
 * puts in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) for
 * s3conf. Its endpoint ("http://127.0.0.1:PORT"), or NULL when it could
 * not start. Once per process; it dies with the process, or at
 * tu_fakes3_stop(). tu_fakes3_pid(): its pid, 0 when none.
 */
#define TU_BUCKET	"alp-unit"
#define TU_S3_KEY	"AKIDUNITTEST"
#define TU_S3_SECRET	"unit-test-secret"
const char *tu_fakes3_start(void);
void	 tu_fakes3_stop(void);

#endif
