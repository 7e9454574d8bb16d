/*
 * replay.c: a main for the fuzz targets without libFuzzer: every argument
 * (a file, or a directory whose files are taken in name order) is passed
 * once to LLVMFuzzerTestOneInput. This is how CI replays the corpus with
 * any compiler (gcc and the sanitizers); a crash, a sanitizer report or a
 * leak at exit fails the run. With libFuzzer (-DALPCRUND_LIBFUZZER) this
 * file compiles to nothing: libFuzzer's main also runs file arguments once.
 */
#ifndef ALPCRUND_LIBFUZZER

#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static int
run_file(const char *path)
{
	FILE *f;
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (len == cap) {
			uint8_t *nb;

			cap = cap ? cap * 2 : 4096;
			if ((nb = realloc(buf, cap)) == NULL) {
				fprintf(stderr, "%s: out of memory\n", path);
				free(buf);
				fclose(f);
				return -1;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	/* An exact-size copy, so that ASan sees a read past the input. */
	{
		uint8_t *in = malloc(len ? len : 1);

		if (in == NULL) {
			free(buf);
			return -1;
		}
		memcpy(in, buf, len);
		free(buf);
		LLVMFuzzerTestOneInput(in, len);
		free(in);
	}
	return 0;
}

static int
cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
run_dir(const char *dir, size_t *count)
{
	DIR *d;
	struct dirent *e;
	char **names = NULL, path[4096];
	size_t n = 0, cap = 0, i;
	int rv = 0;

	if ((d = opendir(dir)) == NULL) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **nn;

			cap = cap ? cap * 2 : 64;
			if ((nn = realloc(names, cap * sizeof(*names))) == NULL)
				break;
			names = nn;
		}
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (run_file(path) != 0)
			rv = -1;
		else
			(*count)++;
		free(names[i]);
	}
	free(names);
	return rv;
}

int
main(int argc, char **argv)
{
	struct stat sb;
	size_t count = 0;
	int i, rv = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++) {
		if (argv[i][0] == '-')
			continue;	/* libFuzzer flags: ignored here */
		if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
			if (run_dir(argv[i], &count) != 0)
				rv = 1;
		} else if (run_file(argv[i]) != 0)
			rv = 1;
		else
			count++;
	}
	fprintf(stderr, "replayed %zu input%s\n", count, count == 1 ? "" : "s");
	return rv;
}

#else
typedef int replay_unused;	/* libFuzzer provides main */
#endif
