/*
 * metrics.c: the daemon's counters and gauges (spec §8) and the HTTP server
 * that shows them, on libevent's evhttp bound to metrics_listen:
 *
 *	GET /metrics	Prometheus text exposition format 0.0.4
 *	GET /healthz	200 "ok\n" (the loop answered: liveness)
 *	GET /readyz	200 "ready\n", or 503 "<reason>\n" (metrics_set_ready);
 *			either followed by a line of detail while one is set
 *			(metrics_set_ready_detail: a degraded but serving daemon)
 *	GET <route>	what another module registered (metrics_route(): the
 *			status page)
 *	other paths	404; a known path with a method other than GET (or
 *			HEAD, which libevent answers without the body) 405
 *
 * Counting is plain arithmetic on static arrays from the loop thread: no
 * lock, no allocation on the request path. A scrape builds its response in
 * an evbuffer at scrape time.
 *
 * Out-of-range arguments never index past the arrays: a method outside the
 * enum counts as MM_UNKNOWN, a status code outside 0-16 as UNKNOWN (2), an
 * unknown counter is ignored.
 *
 * Defaults before the daemon says otherwise: ready (the daemon calls
 * metrics_set_ready(0, …) while starting or draining), upstream_up 0.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "accept_guard.h"
#include "addr.h"
#include "metrics.h"

#define GRPC_CODES	17

/* Histogram bucket upper bounds, in ns and as Prometheus `le` labels. */
static const uint64_t bucket_ns[] = {
	50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
	100000000, 250000000, 500000000,
	1000000000, 2500000000, 5000000000, 10000000000,
};
#define NBUCKETS	(sizeof(bucket_ns) / sizeof(bucket_ns[0]))
_Static_assert(NBUCKETS == METRICS_HIST_BUCKETS,
    "metrics.h's METRICS_HIST_BUCKETS must follow bucket_ns[]");
static const char *const bucket_le[NBUCKETS] = {
	"0.00005", "0.0001", "0.00025", "0.0005",
	"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
	"0.1", "0.25", "0.5",
	"1", "2.5", "5", "10",
};

static const char *const method_names[MM_COUNT] = {
	[MM_SET] = "SetSharedData",
	[MM_UPDATE] = "UpdateSharedData",
	[MM_GET] = "GetSharedData",
	[MM_DELETE] = "DeleteSharedData",
	[MM_WATCH] = "WatchSharedData",
	[MM_HEALTH_CHECK] = "grpc.health.v1.Health/Check",
	[MM_HEALTH_WATCH] = "grpc.health.v1.Health/Watch",
	[MM_UNKNOWN] = "unknown",
};

static const char *const code_names[GRPC_CODES] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
	"DATA_LOSS", "UNAUTHENTICATED",
};

static const struct {
	const char	*name;
	const char	*help;
} counter_info[MC_COUNT] = {
	[MC_CACHE_HITS] = { "alpcrund_cache_hits_total",
	    "Lookups answered from the cache." },
	[MC_CACHE_MISSES] = { "alpcrund_cache_misses_total",
	    "Lookups that found no entry." },
	[MC_UPSTREAM_FETCHES] = { "alpcrund_upstream_fetches_total",
	    "Fetches from the upstream cache (node mode)." },
	[MC_COALESCED_WAITS] = { "alpcrund_coalesced_waits_total",
	    "Requests that waited on a fetch already in flight." },
	[MC_EVICTIONS] = { "alpcrund_evictions_total",
	    "Entries evicted to make room." },
	[MC_EXPIRED] = { "alpcrund_expired_total",
	    "Entries whose TTL ran out." },
	[MC_WATCH_NOTICES] = { "alpcrund_watch_notices_total",
	    "Change feed notices sent to watchers (central)." },
	[MC_WATCH_CUTOFFS] = { "alpcrund_watch_cutoffs_total",
	    "Watchers cut off for falling more than watch_buffer behind." },
	[MC_PREFETCHES] = { "alpcrund_prefetches_total",
	    "Fetches of a newer level started by the change feed (node)." },
	[MC_INCARNATION_CHANGES] = { "alpcrund_upstream_incarnation_changes_total",
	    "Times the upstream's store was found to be another one than the "
	    "node's copies came from; they were dropped (node mode)." },
};

static void	 http_close(void);

/* A gauge another module keeps, read at scrape time (metrics_gauge()). */
struct gauge {
	const char	*name;
	const char	*help;
	uint64_t	(*fn)(void *);
	void		*arg;
	struct gauge	*next;
	/* A family with a label (metrics_family()): fn NULL. */
	const char	*type;
	const char	*label;
	const char	*(*lfn)(void *, size_t, uint64_t *);
	/* With a second label (metrics_family2()): lfn NULL. */
	const char	*label2;
	const char	*(*lfn2)(void *, size_t, const char **, uint64_t *);
	/* A histogram (metrics_histogram()): lfn and lfn2 NULL. */
	const char *const *hvalues;
	const struct metrics_hist *hist;
	size_t		 nhist;
};

static struct {
	uint64_t	 requests[MM_COUNT][GRPC_CODES];
	uint64_t	 buckets[MM_COUNT][NBUCKETS + 1];	/* last: +Inf */
	uint64_t	 sum_ns[MM_COUNT];
	uint64_t	 count[MM_COUNT];
	uint64_t	 counters[MC_COUNT];
	int64_t		 connections;
	int64_t		 inflight;
	int		 upstream_up;
	int		 ready;
	/* Whole: "central cache unreachable: " and an h2client reason. */
	char		 reason[256];
	/* A line under the verdict: what works less well than it should. */
	char		 detail[256];
	struct gauge	*gauges;	/* registered, in order */
	struct {
		const char	*path;
		metrics_route_fn *fn;
		void		*arg;
	}		 routes[METRICS_ROUTES_MAX];
	size_t		 nroutes;
	struct evhttp	*http;
	struct accept_guard *guard;
} m = { .ready = 1 };


const char *
metrics_method_name(enum metric_method mm)
{
	if ((unsigned)mm >= MM_COUNT)
		return method_names[MM_UNKNOWN];
	return method_names[mm];
}

void
metrics_request(enum metric_method mm, int code, uint64_t duration_ns)
{
	size_t	 b;

	if ((unsigned)mm >= MM_COUNT)
		mm = MM_UNKNOWN;
	if (code < 0 || code >= GRPC_CODES)
		code = 2;	/* UNKNOWN */
	m.requests[mm][code]++;
	for (b = 0; b < NBUCKETS && duration_ns > bucket_ns[b]; b++)
		;
	m.buckets[mm][b]++;
	m.sum_ns[mm] += duration_ns;
	m.count[mm]++;
}

void
metrics_count(enum metric_counter c, uint64_t n)
{
	if ((unsigned)c < MC_COUNT)
		m.counters[c] += n;
}

uint64_t
metrics_counter(enum metric_counter c)
{
	return (unsigned)c < MC_COUNT ? m.counters[c] : 0;
}

int64_t
metrics_connections_now(void)
{
	return m.connections;
}

int64_t
metrics_inflight_now(void)
{
	return m.inflight;
}

int
metrics_route(const char *path, metrics_route_fn *fn, void *arg)
{
	if (m.nroutes == METRICS_ROUTES_MAX)
		return -1;
	m.routes[m.nroutes].path = path;
	m.routes[m.nroutes].fn = fn;
	m.routes[m.nroutes].arg = arg;
	m.nroutes++;
	return 0;
}

void
metrics_connections(int delta)
{
	m.connections += delta;
}

void
metrics_inflight(int64_t delta)
{
	m.inflight += delta;
}

void
metrics_upstream_up(int up)
{
	m.upstream_up = up != 0;
}

/* A new entry at the end of the registered gauges (scrape order is
 * registration order); NULL when out of memory. */
static struct gauge *
gauge_add(const char *name, const char *help, void *arg)
{
	struct gauge *g, **tail;

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	g->name = name;
	g->help = help;
	g->arg = arg;
	for (tail = &m.gauges; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = g;
	return g;
}

int
metrics_gauge(const char *name, const char *help, uint64_t (*fn)(void *),
    void *arg)
{
	struct gauge *g;

	if ((g = gauge_add(name, help, arg)) == NULL)
		return -1;
	g->fn = fn;
	return 0;
}

int
metrics_family(const char *name, const char *type, const char *help,
    const char *label, const char *(*fn)(void *, size_t, uint64_t *),
    void *arg)
{
	struct gauge *g;

	if ((g = gauge_add(name, help, arg)) == NULL)
		return -1;
	g->type = type;
	g->label = label;
	g->lfn = fn;
	return 0;
}

int
metrics_family2(const char *name, const char *type, const char *help,
    const char *label, const char *label2,
    const char *(*fn)(void *, size_t, const char **, uint64_t *), void *arg)
{
	struct gauge *g;

	if ((g = gauge_add(name, help, arg)) == NULL)
		return -1;
	g->type = type;
	g->label = label;
	g->label2 = label2;
	g->lfn2 = fn;
	return 0;
}

void
metrics_observe(struct metrics_hist *h, uint64_t duration_ns)
{
	size_t	 b;

	for (b = 0; b < NBUCKETS && duration_ns > bucket_ns[b]; b++)
		;
	h->buckets[b]++;
	h->sum_ns += duration_ns;
	h->count++;
}

int
metrics_histogram(const char *name, const char *help, const char *label,
    const char *const *values, const struct metrics_hist *hist, size_t n)
{
	struct gauge *g;

	if ((g = gauge_add(name, help, NULL)) == NULL)
		return -1;
	g->type = "histogram";
	g->label = label;
	g->hvalues = values;
	g->hist = hist;
	g->nhist = n;
	return 0;
}

void
metrics_set_ready(int ready, const char *reason)
{
	m.ready = ready != 0;
	if (m.ready)
		m.reason[0] = '\0';
	else
		snprintf(m.reason, sizeof(m.reason), "%s",
		    reason != NULL && reason[0] != '\0' ? reason : "not ready");
}

void
metrics_set_ready_detail(const char *detail)
{
	snprintf(m.detail, sizeof(m.detail), "%s", detail != NULL ? detail :
	    "");
}

uint64_t
metrics_requests(enum metric_method mm, int code)
{
	if ((unsigned)mm >= MM_COUNT || code < 0 || code >= GRPC_CODES)
		return 0;
	return m.requests[mm][code];
}

/* ----- exposition ------------------------------------------------------------ */

static void
head(struct evbuffer *out, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

/* A label value, escaped: backslash, quote, newline. */
static void
label_value(struct evbuffer *out, const char *lv)
{
	for (; *lv != '\0'; lv++) {
		if (*lv == '\\' || *lv == '"')
			evbuffer_add_printf(out, "\\%c", *lv);
		else if (*lv == '\n')
			evbuffer_add_printf(out, "\\n");
		else
			evbuffer_add(out, lv, 1);
	}
}

static void
render_histogram(struct evbuffer *out, const struct gauge *g)
{
	const struct metrics_hist *h;
	uint64_t cum;
	size_t i, b;

	head(out, g->name, "histogram", g->help);
	for (i = 0; i < g->nhist; i++) {
		h = &g->hist[i];
		cum = 0;
		for (b = 0; b <= NBUCKETS; b++) {
			cum += h->buckets[b];
			evbuffer_add_printf(out, "%s_bucket{%s=\"", g->name,
			    g->label);
			label_value(out, g->hvalues[i]);
			evbuffer_add_printf(out, "\",le=\"%s\"} %" PRIu64 "\n",
			    b < NBUCKETS ? bucket_le[b] : "+Inf", cum);
		}
		evbuffer_add_printf(out, "%s_sum{%s=\"", g->name, g->label);
		label_value(out, g->hvalues[i]);
		evbuffer_add_printf(out, "\"} %" PRIu64 ".%09" PRIu64 "\n",
		    h->sum_ns / 1000000000, h->sum_ns % 1000000000);
		evbuffer_add_printf(out, "%s_count{%s=\"", g->name, g->label);
		label_value(out, g->hvalues[i]);
		evbuffer_add_printf(out, "\"} %" PRIu64 "\n", h->count);
	}
}

static void
render(struct evbuffer *out)
{
	struct gauge	*g;
	uint64_t	 cum;
	size_t		 mm, c, b;

	head(out, "alpcrund_requests_total", "counter",
	    "gRPC requests finished, by method and status code.");
	for (mm = 0; mm < MM_COUNT; mm++)
		for (c = 0; c < GRPC_CODES; c++)
			if (m.requests[mm][c] != 0)
				evbuffer_add_printf(out,
				    "alpcrund_requests_total{method=\"%s\","
				    "code=\"%s\"} %" PRIu64 "\n",
				    method_names[mm], code_names[c],
				    m.requests[mm][c]);

	head(out, "alpcrund_request_duration_seconds", "histogram",
	    "Time from a request's headers to its trailers, by method.");
	for (mm = 0; mm < MM_COUNT; mm++) {
		cum = 0;
		for (b = 0; b <= NBUCKETS; b++) {
			cum += m.buckets[mm][b];
			evbuffer_add_printf(out,
			    "alpcrund_request_duration_seconds_bucket"
			    "{method=\"%s\",le=\"%s\"} %" PRIu64 "\n",
			    method_names[mm],
			    b < NBUCKETS ? bucket_le[b] : "+Inf", cum);
		}
		evbuffer_add_printf(out,
		    "alpcrund_request_duration_seconds_sum{method=\"%s\"} "
		    "%" PRIu64 ".%09" PRIu64 "\n"
		    "alpcrund_request_duration_seconds_count{method=\"%s\"} "
		    "%" PRIu64 "\n",
		    method_names[mm], m.sum_ns[mm] / 1000000000,
		    m.sum_ns[mm] % 1000000000, method_names[mm], m.count[mm]);
	}

	for (c = 0; c < MC_COUNT; c++) {
		head(out, counter_info[c].name, "counter", counter_info[c].help);
		evbuffer_add_printf(out, "%s %" PRIu64 "\n", counter_info[c].name,
		    m.counters[c]);
	}

	head(out, "alpcrund_connections", "gauge",
	    "Client connections open.");
	evbuffer_add_printf(out, "alpcrund_connections %" PRId64 "\n",
	    m.connections);
	head(out, "alpcrund_upstream_up", "gauge",
	    "1 when the link to the upstream cache is up (node mode).");
	evbuffer_add_printf(out, "alpcrund_upstream_up %d\n", m.upstream_up);
	head(out, "alpcrund_inflight_bytes", "gauge",
	    "Bytes of request bodies buffered now.");
	evbuffer_add_printf(out, "alpcrund_inflight_bytes %" PRId64 "\n",
	    m.inflight);
	for (g = m.gauges; g != NULL; g = g->next) {
		const char *lv, *lv2;
		uint64_t v;
		size_t i;

		if (g->hist != NULL) {
			render_histogram(out, g);
			continue;
		}
		if (g->lfn2 != NULL) {
			head(out, g->name, g->type, g->help);
			for (i = 0; (lv = g->lfn2(g->arg, i, &lv2, &v)) !=
			    NULL; i++) {
				evbuffer_add_printf(out, "%s{%s=\"", g->name,
				    g->label);
				label_value(out, lv);
				evbuffer_add_printf(out, "\",%s=\"", g->label2);
				label_value(out, lv2);
				evbuffer_add_printf(out, "\"} %" PRIu64 "\n", v);
			}
			continue;
		}
		if (g->lfn == NULL) {
			head(out, g->name, "gauge", g->help);
			evbuffer_add_printf(out, "%s %" PRIu64 "\n", g->name,
			    g->fn(g->arg));
			continue;
		}
		head(out, g->name, g->type, g->help);
		for (i = 0; (lv = g->lfn(g->arg, i, &v)) != NULL; i++) {
			evbuffer_add_printf(out, "%s{%s=\"", g->name,
			    g->label);
			label_value(out, lv);
			evbuffer_add_printf(out, "\"} %" PRIu64 "\n", v);
		}
	}
}

/* ----- HTTP -------------------------------------------------------------------- */

static void
reply(struct evhttp_request *req, int code, const char *reason,
    const char *ctype, struct evbuffer *body)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static void
handle(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	const char		*path = uri != NULL ? evhttp_uri_get_path(uri) :
				    NULL;
	enum evhttp_cmd_type	 cmd = evhttp_request_get_command(req);
	struct evbuffer		*body;
	enum { R_NONE, R_METRICS, R_HEALTHZ, R_READYZ, R_OTHER } route =
	    R_NONE;
	size_t i, other = 0;

	(void)arg;
	if (path != NULL) {
		if (strcmp(path, "/metrics") == 0)
			route = R_METRICS;
		else if (strcmp(path, "/healthz") == 0)
			route = R_HEALTHZ;
		else if (strcmp(path, "/readyz") == 0)
			route = R_READYZ;
		for (i = 0; route == R_NONE && i < m.nroutes; i++)
			if (strcmp(path, m.routes[i].path) == 0) {
				route = R_OTHER;
				other = i;
			}
	}
	if (route == R_OTHER && (cmd == EVHTTP_REQ_GET ||
	    cmd == EVHTTP_REQ_HEAD)) {
		m.routes[other].fn(req, m.routes[other].arg);
		return;
	}

	if ((body = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if (route == R_NONE) {
		evbuffer_add_printf(body, "not found\n");
		reply(req, HTTP_NOTFOUND, "Not Found",
		    "text/plain; charset=utf-8", body);
	} else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		evbuffer_add_printf(body, "method not allowed\n");
		reply(req, HTTP_BADMETHOD, "Method Not Allowed",
		    "text/plain; charset=utf-8", body);
	} else if (route == R_METRICS) {
		render(body);
		reply(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8",
		    body);
	} else if (route == R_HEALTHZ) {
		evbuffer_add_printf(body, "ok\n");
		reply(req, HTTP_OK, "OK", "text/plain; charset=utf-8", body);
	} else if (m.ready) {
		evbuffer_add_printf(body, "ready\n");
		if (m.detail[0] != '\0')
			evbuffer_add_printf(body, "%s\n", m.detail);
		reply(req, HTTP_OK, "OK", "text/plain; charset=utf-8", body);
	} else {
		evbuffer_add_printf(body, "%s\n", m.reason);
		if (m.detail[0] != '\0')
			evbuffer_add_printf(body, "%s\n", m.detail);
		reply(req, HTTP_SERVUNAVAIL, "Service Unavailable",
		    "text/plain; charset=utf-8", body);
	}
	evbuffer_free(body);
}

/*
 * metrics_listen's address, by addr.c like every other address (the
 * configuration has checked it so already). Returns 0, or -1 with err
 * filled.
 */
static int
parse_addr(const char *addr, struct addr *a, char *err, size_t errlen)
{
	char why[128];

	if (addr_parse(addr, 0, a, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "metrics_listen \"%s\": %s", addr, why);
		return -1;
	}
	/*
	 * The configuration takes unix:/path for any address, but evhttp is
	 * bound here to a TCP host and port only. The message is the one
	 * such a value has always had.
	 */
	if (a->kind == ADDR_UNIX) {
		snprintf(err, errlen, "metrics_listen \"%s\": bad port", addr);
		return -1;
	}
	return 0;
}

int
metrics_listen(struct event_base *base, const char *addr, char *err,
    size_t errlen)
{
	struct evhttp	*http;
	struct evhttp_bound_socket *bound;
	struct accept_guard *guard;
	struct addr	 a;

	if (parse_addr(addr, &a, err, errlen) == -1)
		return -1;
	if ((http = evhttp_new(base)) == NULL) {
		snprintf(err, errlen, "metrics_listen: evhttp_new failed");
		return -1;
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_timeout(http, 30);
	evhttp_set_max_headers_size(http, 16384);
	evhttp_set_max_body_size(http, 65536);
	evhttp_set_gencb(http, handle, NULL);
	errno = 0;
	if ((bound = evhttp_bind_socket_with_handle(http, a.host,
	    a.portnum)) == NULL) {
		snprintf(err, errlen, "metrics_listen \"%s\": %s", addr,
		    errno != 0 ? strerror(errno) : "cannot bind");
		evhttp_free(http);
		return -1;
	}
	/* evhttp's listener has no error callback: out of descriptors it
	 * would spin. */
	guard = accept_guard_new(base, evhttp_bound_socket_get_listener(bound),
	    addr, NULL, NULL);
	if (guard == NULL) {
		snprintf(err, errlen, "metrics_listen: out of memory");
		evhttp_free(http);
		return -1;
	}
	/* A new address (reload) replaces the old server only once bound. */
	http_close();
	m.http = http;
	m.guard = guard;
	return 0;
}

static void
http_close(void)
{
	if (m.http != NULL)
		evhttp_free(m.http);
	m.http = NULL;
	accept_guard_free(m.guard);
	m.guard = NULL;
}

void
metrics_close(void)
{
	http_close();
	m.nroutes = 0;
	while (m.gauges != NULL) {
		struct gauge *g = m.gauges;

		m.gauges = g->next;
		free(g);
	}
}
