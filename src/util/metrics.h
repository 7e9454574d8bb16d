/*
 * metrics.h: the daemon's counters and gauges (spec §8) and the HTTP server
 * (libevent evhttp on metrics_listen) that shows them: /metrics in the
 * Prometheus text format, /healthz (liveness) and /readyz (readiness).
 *
 * Counting is plain increments of static arrays on the loop thread: no lock,
 * no allocation on the request path.
 */
#ifndef ALPCRUND_METRICS_H
#define ALPCRUND_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/* The label `method` of requests_total and request_duration_seconds. */
enum metric_method {
	MM_SET = 0,		/* SetSharedData */
	MM_UPDATE,		/* UpdateSharedData */
	MM_GET,			/* GetSharedData */
	MM_DELETE,		/* DeleteSharedData */
	MM_WATCH,		/* WatchSharedData (change feed) */
	MM_HEALTH_CHECK,	/* grpc.health.v1.Health/Check */
	MM_HEALTH_WATCH,	/* grpc.health.v1.Health/Watch */
	MM_UNKNOWN,		/* any other path */
	MM_COUNT
};

enum metric_counter {
	MC_CACHE_HITS = 0,
	MC_CACHE_MISSES,
	MC_UPSTREAM_FETCHES,
	MC_COALESCED_WAITS,
	MC_EVICTIONS,
	MC_EXPIRED,
	MC_WATCH_NOTICES,	/* change feed notices sent (central) */
	MC_WATCH_CUTOFFS,	/* watchers cut off past watch_buffer */
	MC_PREFETCHES,		/* fetches started by the change feed (node) */
	MC_INCARNATION_CHANGES,	/* central's store found changed (node) */
	MC_COUNT
};

const char *metrics_method_name(enum metric_method);

/* A finished RPC: its method, gRPC status code (0-16) and duration. */
void	 metrics_request(enum metric_method, int code, uint64_t duration_ns);
void	 metrics_count(enum metric_counter, uint64_t n);
void	 metrics_connections(int delta);
/* Bytes of request bodies buffered now (max_inflight_bytes accounting). */
void	 metrics_inflight(int64_t delta);
void	 metrics_upstream_up(int up);

/* A gauge another module keeps: fn(arg) is read at each scrape and shown
 * as `name` with its help text (both kept by reference), after the
 * daemon's own, in the order registered. 0, or -1. */
int	 metrics_gauge(const char *name, const char *help,
	    uint64_t (*fn)(void *), void *arg);

/* A family of samples with one label, another module's: at each scrape
 * fn(arg, i, &v) for i = 0, 1, ... gives sample i's label value (escaped
 * here) and value, NULL past the last. type: "gauge" or "counter"; the
 * strings are kept by reference. 0, or -1. */
int	 metrics_family(const char *name, const char *type, const char *help,
	    const char *label, const char *(*fn)(void *, size_t, uint64_t *),
	    void *arg);

/* As metrics_family(), with a second label: fn also sets *second, sample
 * i's value of label2 (escaped here too). 0, or -1. */
int	 metrics_family2(const char *name, const char *type, const char *help,
	    const char *label, const char *label2,
	    const char *(*fn)(void *, size_t, const char **second, uint64_t *),
	    void *arg);

/*
 * A histogram of durations another module keeps, on the daemon's bucket
 * bounds (50 us to 10 s): the module owns the counts (one struct per label
 * value, so observing allocates nothing) and observes into them with
 * metrics_observe(); metrics_histogram() shows hist[0..n-1] as `name` by
 * `label` = values[i]. Everything is kept by reference. 0, or -1.
 */
#define METRICS_HIST_BUCKETS	17
struct metrics_hist {
	uint64_t	 buckets[METRICS_HIST_BUCKETS + 1];	/* last: +Inf */
	uint64_t	 sum_ns;
	uint64_t	 count;
};
void	 metrics_observe(struct metrics_hist *, uint64_t duration_ns);
int	 metrics_histogram(const char *name, const char *help,
	    const char *label, const char *const *values,
	    const struct metrics_hist *hist, size_t n);

/* Readiness for /readyz: ready 1, or 0 with a reason ("draining", …). */
void	 metrics_set_ready(int ready, const char *reason);
/* A line /readyz shows under its verdict, whatever the verdict (NULL or
 * "": none): a daemon that serves, but less well than it should. */
void	 metrics_set_ready_detail(const char *detail);

/* Start the HTTP server on "host:port" or "[v6]:port". 0, or -1 with err
 * filled. */
int	 metrics_listen(struct event_base *, const char *addr, char *err,
	    size_t errlen);
/* Stop the HTTP server and forget the registered gauges (at exit). */
void	 metrics_close(void);

/* Read back a counter, for tests and logs. */
uint64_t metrics_requests(enum metric_method, int code);
/* Read back, for the status page. */
uint64_t metrics_counter(enum metric_counter);
int64_t	 metrics_connections_now(void);
int64_t	 metrics_inflight_now(void);

/*
 * Another page on metrics_listen (the status page, status.h): GET and HEAD
 * of path (kept by reference) go to fn, which answers req with
 * evhttp_send_reply() at once or later from the loop. At most
 * METRICS_ROUTES_MAX; 0, or -1. Other methods get 405 as the built-in
 * pages do.
 */
#define METRICS_ROUTES_MAX	4
struct evhttp_request;
typedef void metrics_route_fn(struct evhttp_request *, void *arg);
int	 metrics_route(const char *path, metrics_route_fn *fn, void *arg);

#endif
