/*
 * backend.c: the table of storage backends by name (spec §6). Adding a
 * backend is one line in backend_all[]; the `backend` directive and the
 * conformance suite (tests/unit/check_backend.c) both go through it. Also
 * the random identities of backend.h ("Identity").
 */
#include <unistd.h>

#include <stddef.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "siphash.h"

/* Each backend file defines one of these, and nothing else is public. */
extern const struct backend_ops backend_memory;
extern const struct backend_ops backend_lmdb;
extern const struct backend_ops backend_s3;

/* s3 needs a store: the suites start a fake one for it (tests/unit). */
const struct backend_ops *const backend_all[] = {
	&backend_memory,
	&backend_lmdb,
	&backend_s3,
	NULL
};

const struct backend_ops *
backend_find(const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; backend_all[i] != NULL; i++)
		if (strcmp(backend_all[i]->name, name) == 0)
			return backend_all[i];
	return NULL;
}

/*
 * SipHash of a counter under a key drawn once: as unpredictable as
 * getrandom(2) for our purpose (two stores or two contents never meet the
 * same value by chance), without a syscall per Set. Loop thread only.
 */
uint64_t
backend_random_id(void)
{
	static uint8_t key[SIPHASH_KEY_LEN];
	static uint64_t counter;
	static int keyed;
	uint64_t id;

	if (!keyed) {
		if (siphash_key(key) != 0) {
			/* getrandom(2) failed: the clock and the pid still
			 * make two stores differ. */
			uint64_t t[2] = { clock_now_ns(), (uint64_t)getpid() };

			memcpy(key, t, sizeof(key));
		}
		keyed = 1;
	}
	do {
		counter++;
		id = siphash24(key, (const uint8_t *)&counter,
		    sizeof(counter));
	} while (id == 0);
	return id;
}
