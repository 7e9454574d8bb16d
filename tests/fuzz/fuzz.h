/*
 * fuzz.h: what every fuzz target defines (libFuzzer's interface). A target
 * is built either with libFuzzer's main (configure --enable-fuzzing, clang)
 * or with replay.c's, which runs each file it is given once.
 */
#ifndef ALPCRUND_FUZZ_H
#define ALPCRUND_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int	LLVMFuzzerInitialize(int *argc, char ***argv);
int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stop with a report the engine catches (abort: a crash input). */
#define FUZZ_ASSERT(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: fuzz assertion failed: %s\n",	\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

#endif
