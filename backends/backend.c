/*
 * backend.c: the table of storage backends by name (spec §6). Adding a
 * backend is one line in backend_all[]; the `backend` directive and the
 * conformance suite (tests/unit/check_backend.c) both go through it.
 */
#include <stddef.h>
#include <string.h>

#include "backend.h"

/* Each backend file defines one of these, and nothing else is public. */
extern const struct backend_ops backend_memory;
extern const struct backend_ops backend_lmdb;

const struct backend_ops *const backend_all[] = {
	&backend_memory,
	&backend_lmdb,
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
