/*
 * fuzz_config.c: the configuration parser (src/conf/config.c). The input is
 * written to a file and loaded as `alpcrund -c FILE` would; a valid file
 * is also dumped (`-t -v`) and compared with the defaults (what SIGHUP
 * does). A short input is also parsed as a duration and as a size.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

static char path[] = "/tmp/alpcrund-fuzz-config-XXXXXX";
static FILE *devnull;
static struct config defaults;

static void
cleanup(void)
{
	unlink(path);
	config_free(&defaults);
	if (devnull != NULL)
		fclose(devnull);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config_errors errs = { 0 };
	int fd;

	if ((fd = mkstemp(path)) < 0) {
		perror("mkstemp");
		exit(1);
	}
	close(fd);
	if ((devnull = fopen("/dev/null", "w")) == NULL) {
		perror("/dev/null");
		exit(1);
	}
	if (config_load(NULL, 1, &defaults, &errs) != 0) {
		fprintf(stderr, "the defaults do not load\n");
		exit(1);
	}
	config_errors_free(&errs);
	atexit(cleanup);
	return 0;
}

static void
values(const uint8_t *data, size_t size)
{
	char s[64];
	uint64_t v;

	if (size >= sizeof(s))
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	parse_duration_ms(s, &v);
	parse_size(s, &v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config conf;
	struct config_errors errs = { 0 };
	char changed[512];
	FILE *f;
	size_t i;

	values(data, size);
	if ((f = fopen(path, "wb")) == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	if (config_load(path, 0, &conf, &errs) == 0) {
		FUZZ_ASSERT(errs.n == 0);
		config_dump(&conf, devnull);
		config_restart_changes(&defaults, &conf, changed,
		    sizeof(changed));
		config_free(&conf);
	} else {
		FUZZ_ASSERT(errs.n > 0);
		for (i = 0; i < errs.n; i++)
			FUZZ_ASSERT(errs.msgs[i] != NULL);
	}
	config_errors_free(&errs);
	return 0;
}
