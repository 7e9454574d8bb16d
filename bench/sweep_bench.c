/*
 * sweep_bench.c: what a million entries expiring at once cost the loop
 * (spec §4.5). Not a test: it prints figures and always exits 0 unless
 * something fails outright.
 *
 * Inserts N entries of 64 bytes through the backend's write() (the same
 * decide()/done() path the daemon uses), all expiring at the same moment,
 * then sweeps them in slices of SWEEP_SLICE records as the sweeper does and
 * times each slice. Also reports the insert rate, the worst single write
 * (hash table growth happens inside one write) and resident memory per
 * entry from /proc/self/status.
 *
 * Usage: sweep_bench [backend [entries]]	(default: memory 1000000)
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "sweeper.h"

#define PAYLOAD_LEN	64

static uint64_t	 nexpired;

static void
hook(void *arg, enum be_event ev, const uint8_t *key, size_t keylen,
    uint32_t level, size_t len)
{
	(void)arg;
	(void)key;
	(void)keylen;
	(void)level;
	(void)len;
	if (ev == BE_EV_EXPIRE)
		nexpired++;
}

struct put {
	const uint8_t	*data;
	uint64_t	 expires;
	int		 done, err;
};

static void
put_decide(void *arg, const struct be_record *cur, uint64_t now,
    struct be_change *c)
{
	struct put *p = arg;

	(void)cur;
	(void)now;
	c->action = BE_PUT;
	c->level = 1;
	c->expires = p->expires;
	c->data = p->data;
	c->len = PAYLOAD_LEN;
	c->adopt = NULL;
}

static void
put_done(void *arg, int err, const char *msg)
{
	struct put *p = arg;

	(void)msg;
	p->done = 1;
	p->err = err;
}

/* VmRSS in KiB, or -1. */
static long
rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f;

	if ((f = fopen("/proc/self/status", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kib = strtol(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "memory";
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
	const struct backend_ops *ops;
	struct event_base *base;
	struct backend *be;
	struct config cfg;
	struct be_write w;
	struct be_stats st;
	struct put p;
	uint8_t payload[PAYLOAD_LEN];
	char key[32], err[256] = "";
	uint64_t t0, t1, a, b, expires, worst_write = 0, *slice, total = 0;
	size_t i, nslices = 0, freed = 0;
	long rss0, rss1, rss2;
	int more;

	if ((ops = backend_find(name)) == NULL) {
		fprintf(stderr, "sweep_bench: no backend %s\n", name);
		return 1;
	}
	/* Zeroed: no max_memory. A disk backend would need its own fields. */
	memset(&cfg, 0, sizeof(cfg));
	if ((base = event_base_new()) == NULL ||
	    (be = ops->open(&cfg, base, err, sizeof(err))) == NULL) {
		fprintf(stderr, "sweep_bench: open %s: %s\n", name, err);
		return 1;
	}
	backend_set_hook(be, hook, NULL);
	memset(payload, 'p', sizeof(payload));

	rss0 = rss_kib();
	t0 = clock_now_ns();
	/* All at the same moment, far enough that none expires while the
	 * inserts run. */
	expires = t0 + 3600 * NS_PER_SEC;
	memset(&w, 0, sizeof(w));
	w.decide = put_decide;
	w.done = put_done;
	w.arg = &p;
	for (i = 0; i < n; i++) {
		w.keylen = (size_t)snprintf(key, sizeof(key), "session-%07zu",
		    i);
		w.key = (const uint8_t *)key;
		p = (struct put){ .data = payload, .expires = expires };
		a = clock_now_ns();
		if (ops->write(be, &w) != 0) {
			fprintf(stderr, "sweep_bench: write %zu refused\n", i);
			return 1;
		}
		while (!p.done)
			event_base_loop(base, EVLOOP_ONCE);
		b = clock_now_ns();
		if (p.err != BE_OK) {
			fprintf(stderr, "sweep_bench: write %zu: error %d\n",
			    i, p.err);
			return 1;
		}
		if (b - a > worst_write)
			worst_write = b - a;
	}
	t1 = clock_now_ns();
	rss1 = rss_kib();
	ops->stats(be, &st);

	printf("backend %s, %zu entries of %d bytes, keys of 15 bytes\n",
	    name, n, PAYLOAD_LEN);
	printf("insert: %.3f s, %.0f entries/s, worst single write %.1f ms\n",
	    (double)(t1 - t0) / 1e9, (double)n * 1e9 / (double)(t1 - t0),
	    (double)worst_write / 1e6);
	printf("RSS: %ld KiB before, %ld KiB after: %.1f bytes per entry "
	    "(used_bytes counts %.1f per entry)\n", rss0, rss1,
	    (double)(rss1 - rss0) * 1024.0 / (double)n,
	    (double)st.used_bytes / (double)n);

	if ((slice = calloc(n / SWEEP_SLICE + 2, sizeof(*slice))) == NULL)
		return 1;
	do {
		a = clock_now_ns();
		freed += ops->sweep(be, expires, SWEEP_SLICE, &more);
		b = clock_now_ns();
		slice[nslices++] = b - a;
		total += b - a;
	} while (more);
	rss2 = rss_kib();
	qsort(slice, nslices, sizeof(*slice), cmp_u64);
	printf("sweep: %zu freed (%" PRIu64 " reported) in %zu slices of %d, "
	    "total %.1f ms\n", freed, nexpired, nslices, SWEEP_SLICE,
	    (double)total / 1e6);
	printf("slice: median %.0f us, max %.0f us, min %.0f us "
	    "(%.0f ns per record)\n", (double)slice[nslices / 2] / 1e3,
	    (double)slice[nslices - 1] / 1e3, (double)slice[0] / 1e3,
	    (double)total / (double)(freed ? freed : 1));
	printf("RSS after sweep: %ld KiB\n", rss2);

	free(slice);
	ops->close(be);
	event_base_free(base);
	return freed == n ? 0 : 1;
}
