/*
 * testutil.c: helpers the unit tests share (see testutil.h).
 */
#define _GNU_SOURCE 1		/* prctl(), setenv() */
#include <sys/prctl.h>
#include <sys/wait.h>

#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

int
tu_run(Suite *s)
{
	SRunner	*sr = srunner_create(s);
	int	 failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
tu_rmtree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void
tu_fill(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* --- a fake S3 store ------------------------------------------------------- */

#ifndef TOP_SRCDIR
#define TOP_SRCDIR	"."
#endif

static pid_t	 s3pid;
static char	 s3url[64];

const char *
tu_fakes3_start(void)
{
	const char *top = getenv("TOP_SRCDIR") != NULL ? getenv("TOP_SRCDIR") :
	    TOP_SRCDIR;
	char script[4096], portfile[256];
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	int i, port = 0;
	FILE *f;

	if (s3pid > 0)
		return s3url;
	snprintf(script, sizeof(script), "%s/tests/integration/s3/fakes3.py",
	    top);
	snprintf(portfile, sizeof(portfile), "%s/tu_fakes3.%d.port",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp",
	    (int)getpid());
	unlink(portfile);
	setenv("AWS_ACCESS_KEY_ID", TU_S3_KEY, 1);
	setenv("AWS_SECRET_ACCESS_KEY", TU_S3_SECRET, 1);
	if ((s3pid = fork()) == -1) {
		s3pid = 0;
		return NULL;
	}
	if (s3pid == 0) {
		/* It goes when the test binary goes, however that ends. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execl("/usr/bin/python3", "python3", script, "--listen",
		    "127.0.0.1:0", "--port-file", portfile, "--bucket",
		    TU_BUCKET, "--access-key", TU_S3_KEY, "--secret-key",
		    TU_S3_SECRET, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 500 && port == 0; i++) {
		nanosleep(&ts, NULL);
		if ((f = fopen(portfile, "r")) != NULL) {
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
		}
		if (waitpid(s3pid, NULL, WNOHANG) == s3pid) {
			s3pid = 0;
			return NULL;
		}
	}
	unlink(portfile);
	if (port == 0) {
		tu_fakes3_stop();
		return NULL;
	}
	snprintf(s3url, sizeof(s3url), "http://127.0.0.1:%d", port);
	return s3url;
}

void
tu_fakes3_stop(void)
{
	if (s3pid <= 0)
		return;
	kill(s3pid, SIGTERM);
	waitpid(s3pid, NULL, 0);
	s3pid = 0;
}
