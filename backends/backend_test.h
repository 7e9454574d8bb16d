/*
 * backend_test.h: the test-only entry points of the backends, for the unit
 * tests (tests/unit/check_backend.c, check_lmdb.c) and for them only: not
 * part of backend.h, and the daemon never calls them. Each is defined at
 * the end of its backend's file.
 */
#ifndef ALPCRUND_BACKEND_TEST_H
#define ALPCRUND_BACKEND_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/*
 * memory.c.
 * backend_memory_test_resize(): old-table slots still to migrate (0: not
 * growing); *migrated (when not NULL): old slots migrated since open.
 * backend_memory_test_steps(): get (when not NULL), then set (when not
 * NULL), how many old slots lookup()/write() and sweep() migrate, at least
 * and at most: { MIGRATE_STEP, MIGRATE_MAX, SWEEP_MIGRATE,
 * SWEEP_MIGRATE_MAX }. All zero freezes a migration half-way.
 */
size_t	 backend_memory_test_resize(struct backend *, uint64_t *migrated);
void	 backend_memory_test_steps(struct backend *, size_t get[4],
	    const size_t set[4]);

/*
 * lmdb.c.
 * backend_lmdb_test_commits(): write transactions committed since open.
 * backend_lmdb_test_copies(): leases served from a heap copy since open.
 * backend_lmdb_test_retries(): jobs run again after MDB_MAP_FULL.
 * backend_lmdb_test_readers(): read transactions holding a reader slot;
 * *pinned (when not NULL): those that leases hold.
 * backend_lmdb_test_hold(): 1: the writer leaves its queue alone; 0: it
 * takes everything queued meanwhile (close() lets it go too).
 */
uint64_t backend_lmdb_test_commits(struct backend *);
uint64_t backend_lmdb_test_copies(struct backend *);
uint64_t backend_lmdb_test_retries(struct backend *);
size_t	 backend_lmdb_test_readers(struct backend *, size_t *pinned);
void	 backend_lmdb_test_hold(struct backend *, int hold);

#endif
