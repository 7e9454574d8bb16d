/*
 * sweep_bench.c: what a million entries expiring at once cost the loop
 * (spec §4.5). Not a test: it prints figures and always exits 0 unless
 * something fails outright.
 *
 * Inserts N entries of 64 bytes through the backend's write() (the same
 * decide()/done() path the daemon uses), all expiring at the same moment,
 * then sweeps them in slices of SWEEP_SLICE records as the sweeper does and
 * times each slice. Also reports the insert rate, the worst single write
 * and the tail of the write latencies (the memory backend's hash table
 * grows while writes go on: no single write may stall the loop for more
 * than a millisecond or two, at any size), a lookup of every key with the
 * worst single lookup, and resident memory per entry from
 * /proc/self/status.
 *
 * On a shared or virtual machine a single write can also be slow because
 * the process was descheduled; the count of writes over 1 ms and 2 ms
 * tells a rare preemption from a stall that every growth repeats, and with
 * `cpu` single operations (writes, lookups, sweep slices) are timed by the
 * thread's CPU time instead, which leaves preemption out (and adds a
 * system call or two to each, so rates come out lower). A guest without
 * steal time accounting still counts the host's preemptions of its vCPU as
 * CPU time: there even a loop that does nothing sees a few gaps of several
 * milliseconds a minute, in lookups as much as in writes.
 *
 * Usage: sweep_bench [backend [entries [cpu]]]	(default: memory 1000000)
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "sweeper.h"

#define PAYLOAD_LEN	64
#define HIST_US		20000	/* latency histogram: 1 us buckets */

static uint64_t	 nexpired;

/* Latencies of single operations. */
struct lat {
	uint64_t	 n, worst, over1ms, over2ms;
	uint64_t	 hist[HIST_US + 1];	/* the last: HIST_US and over */
};

static struct lat	 wlat, llat;
static int		 cpu_clock;	/* time operations by CPU time */

/* For timing one operation: the monotonic clock, or this thread's CPU
 * time. */
static uint64_t
op_now(void)
{
	struct timespec ts;

	if (!cpu_clock)
		return clock_now_ns();
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void
lat_add(struct lat *l, uint64_t ns)
{
	uint64_t us = ns / 1000;

	l->n++;
	if (ns > l->worst)
		l->worst = ns;
	l->over1ms += ns > 1000000;
	l->over2ms += ns > 2000000;
	l->hist[us < HIST_US ? us : HIST_US]++;
}

/* The latency in us under which a fraction p of the operations came. */
static uint64_t
lat_pct(const struct lat *l, double p)
{
	uint64_t want = (uint64_t)((double)l->n * p), seen = 0, us;

	for (us = 0; us < HIST_US; us++)
		if ((seen += l->hist[us]) > want)
			break;
	return us + 1;
}

static void
lat_print(const char *what, const struct lat *l)
{
	printf("%s: p99 %" PRIu64 " us, p99.9 %" PRIu64 " us, p99.99 %"
	    PRIu64 " us, worst %.2f ms; %" PRIu64 " over 1 ms, %" PRIu64
	    " over 2 ms\n", what, lat_pct(l, 0.99), lat_pct(l, 0.999),
	    lat_pct(l, 0.9999), (double)l->worst / 1e6, l->over1ms,
	    l->over2ms);
}

static void
hook(void *arg, enum be_event ev, const uint8_t *key, size_t keylen,
    uint32_t level, uint64_t gen, size_t len)
{
	(void)arg;
	(void)gen;
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
	struct be_record rec;
	struct put p;
	uint8_t payload[PAYLOAD_LEN];
	char key[32], err[256] = "";
	uint64_t t0, t1, a, b, expires, worst_write = 0, *slice, total = 0;
	size_t i, nslices = 0, freed = 0;
	long rss0, rss1, rss2;
	int more;

	cpu_clock = argc > 3 && strcmp(argv[3], "cpu") == 0;
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
	/* Touched now, so that the RSS per entry does not count them. */
	memset(&wlat, 0, sizeof(wlat));
	memset(&llat, 0, sizeof(llat));

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
		a = op_now();
		if (ops->write(be, &w) != 0) {
			fprintf(stderr, "sweep_bench: write %zu refused\n", i);
			return 1;
		}
		while (!p.done)
			event_base_loop(base, EVLOOP_ONCE);
		b = op_now();
		if (p.err != BE_OK) {
			fprintf(stderr, "sweep_bench: write %zu: error %d\n",
			    i, p.err);
			return 1;
		}
		if (b - a > worst_write)
			worst_write = b - a;
		lat_add(&wlat, b - a);
	}
	t1 = clock_now_ns();
	rss1 = rss_kib();
	ops->stats(be, &st);

	printf("backend %s, %zu entries of %d bytes, keys of 15 bytes; single "
	    "operations timed by %s\n", name, n, PAYLOAD_LEN, cpu_clock ?
	    "thread CPU time" : "the monotonic clock");
	printf("insert: %.3f s, %.0f entries/s, worst single write %.1f ms\n",
	    (double)(t1 - t0) / 1e9, (double)n * 1e9 / (double)(t1 - t0),
	    (double)worst_write / 1e6);
	lat_print("write", &wlat);
	printf("RSS: %ld KiB before, %ld KiB after: %.1f bytes per entry "
	    "(used_bytes counts %.1f per entry)\n", rss0, rss1,
	    (double)(rss1 - rss0) * 1024.0 / (double)n,
	    (double)st.used_bytes / (double)n);

	/* Every key once, in insertion order. */
	a = clock_now_ns();
	for (i = 0; i < n; i++) {
		w.keylen = (size_t)snprintf(key, sizeof(key), "session-%07zu",
		    i);
		t0 = op_now();
		if (ops->lookup(be, (const uint8_t *)key, w.keylen,
		    clock_now_ns(), &rec, NULL) != 0 || rec.kind != BE_ENTRY ||
		    rec.len != PAYLOAD_LEN) {
			fprintf(stderr, "sweep_bench: lookup %zu failed\n", i);
			return 1;
		}
		lat_add(&llat, op_now() - t0);
	}
	b = clock_now_ns();
	printf("lookup: %.3f s, %.0f lookups/s\n", (double)(b - a) / 1e9,
	    (double)n * 1e9 / (double)(b - a));
	lat_print("lookup", &llat);

	if ((slice = calloc(n / SWEEP_SLICE + 2, sizeof(*slice))) == NULL)
		return 1;
	do {
		a = op_now();
		freed += ops->sweep(be, expires, SWEEP_SLICE, &more);
		b = op_now();
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
