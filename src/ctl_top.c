/*
 * ctl_top.c: `alpcrunctl top`, a live view of one or more daemons from
 * their status pages (GET /status.json on metrics_listen, alpcrund(8)
 * STATUS PAGE), asked every interval over libevent's HTTP client: per
 * daemon requests per second by method, hit ratio, upstream bytes per
 * second, bytes in flight, entries and connections, and on a node every
 * fetch in flight with its progress. On a terminal the view is redrawn in
 * place; otherwise one line per daemon per interval (and one per fetch).
 *
 * The JSON read here is the daemon's own, of a fixed shape: the few
 * numbers wanted are found by their keys, not by a general parser.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "clock.h"
#include "ctl_top.h"

#define METHODS	4
static const char *const method_json[METHODS] = { "GetSharedData",
    "SetSharedData", "UpdateSharedData", "DeleteSharedData" };
static const char *const method_short[METHODS] = { "get", "set", "update",
    "delete" };

struct sample {
	int		 ok;		/* answered */
	uint64_t	 at;		/* clock_now_ns() */
	uint64_t	 calls[METHODS];
	uint64_t	 hits, misses, received;
	int64_t		 inflight, connections;
	uint64_t	 entries;
	int		 node;
};

struct daemon {
	const char		*addr;
	char			 host[256];
	int			 port;
	struct evhttp_connection *conn;
	struct sample		 last, now;
	char			 error[128];
	char			*body;		/* the last answer */
	int			 pending;
};

static struct {
	struct event_base	*base;
	struct daemon		*d;
	size_t			 n;
	struct event		*tick;
	uint64_t		 interval_ms;
	long			 count, done;	/* count 0: for ever */
	int			 tty;
	size_t			 pending;
} T;

/* The number after "key": in s, or 0 when it is not there. */
static uint64_t
num_after(const char *s, const char *key)
{
	const char *p = s != NULL ? strstr(s, key) : NULL;

	return p != NULL ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static void
parse(const char *b, struct sample *s)
{
	char key[64];
	const char *p;
	size_t i;

	memset(s, 0, sizeof(*s));
	s->ok = 1;
	s->at = clock_now_ns();
	for (i = 0; i < METHODS; i++) {
		snprintf(key, sizeof(key), "\"%s\":{\"ok\":", method_json[i]);
		s->calls[i] = num_after(b, key);
		if ((p = strstr(b, key)) != NULL)
			s->calls[i] += num_after(p, "\"errors\":");
	}
	s->hits = num_after(b, "\"hits\":");
	s->misses = num_after(b, "\"misses\":");
	s->inflight = (int64_t)num_after(b, "\"inflight_bytes\":");
	s->connections = (int64_t)num_after(b, "\"connections\":");
	s->entries = num_after(b, "\"entries\":");
	s->node = strstr(b, "\"role\":\"node\"") != NULL;
	for (p = b; (p = strstr(p, "\"received_bytes\":")) != NULL; p++)
		s->received += num_after(p, "\"received_bytes\":");
}

static double
per_s(uint64_t a, uint64_t b, double secs)
{
	return b >= a && secs > 0 ? (double)(b - a) / secs : 0;
}

static void
size_str(double v, char *out, size_t cap)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

/* Each fetch in flight of a node's answer: a line, with a bar on a tty. */
static void
fetches(const struct daemon *d)
{
	const char *p = d->body != NULL ? strstr(d->body, "\"fetches\":[") :
	    NULL;
	char got[32], of[32];

	for (; p != NULL && (p = strstr(p, "{\"session\":")) != NULL; p++) {
		const char *q = p + 11, *e;
		uint64_t rx = num_after(p, "\"received\":");
		uint64_t total = num_after(p, "\"total\":");
		int w = 0, i;

		if (*q == '"' && (e = strchr(q + 1, '"')) != NULL)
			w = (int)(e - q - 1);
		size_str((double)rx, got, sizeof(got));
		size_str((double)total, of, sizeof(of));
		printf("  fetch %.*s: %s of %s", w, w ? q + 1 : "-", got,
		    total ? of : "?");
		if (T.tty && total > 0) {
			fputs("  [", stdout);
			for (i = 0; i < 30; i++)
				putchar((uint64_t)i * total < rx * 30 ? '#' : '.');
			printf("] %3d%%", (int)(rx * 100 / total));
		}
		putchar('\n');
	}
}

static void
show(void)
{
	size_t i, m;
	char buf[32], in[32];

	if (T.tty)
		fputs("\033[H\033[2J", stdout);
	if (T.tty)
		printf("%-22s %-7s %9s %9s %9s %9s %7s %11s %10s %9s %6s\n",
		    "DAEMON", "ROLE", "get/s", "set/s", "update/s", "delete/s",
		    "hit", "upstream/s", "inflight", "entries", "conns");
	for (i = 0; i < T.n; i++) {
		struct daemon *d = &T.d[i];
		double secs = d->last.ok && d->now.ok ?
		    (double)(d->now.at - d->last.at) / 1e9 : 0;
		uint64_t h = d->now.hits - d->last.hits;
		uint64_t all = h + (d->now.misses - d->last.misses);

		if (!d->now.ok) {
			printf(T.tty ? "%-22s %s\n" : "%s unreachable: %s\n",
			    d->addr, d->error);
			continue;
		}
		size_str((double)d->now.inflight, buf, sizeof(buf));
		size_str(per_s(d->last.received, d->now.received, secs), in,
		    sizeof(in));
		if (T.tty) {
			printf("%-22s %-7s", d->addr, d->now.node ? "node" :
			    "central");
			for (m = 0; m < METHODS; m++)
				printf(" %9.0f", per_s(d->last.calls[m],
				    d->now.calls[m], secs));
			if (all > 0)
				printf(" %6.1f%%", 100.0 * (double)h / (double)all);
			else
				printf(" %7s", "-");
			printf(" %9s/s %10s %9" PRIu64 " %6" PRId64 "\n", in,
			    buf, d->now.entries, d->now.connections);
		} else {
			printf("%s %s", d->addr, d->now.node ? "node" :
			    "central");
			for (m = 0; m < METHODS; m++)
				printf(" %s/s=%.0f", method_short[m],
				    per_s(d->last.calls[m], d->now.calls[m],
				    secs));
			if (all > 0)
				printf(" hit=%.1f%%", 100.0 * (double)h /
				    (double)all);
			else
				printf(" hit=-");
			printf(" upstream_in=%s/s inflight=%s entries=%" PRIu64
			    " connections=%" PRId64 "\n", in, buf,
			    d->now.entries, d->now.connections);
		}
		if (d->now.node)
			fetches(d);
	}
	fflush(stdout);
}

static void ask(void);

static void
answered(void)
{
	struct timeval tv;

	if (--T.pending > 0)
		return;
	T.done++;
	show();
	if (T.count > 0 && T.done >= T.count) {
		event_base_loopbreak(T.base);
		return;
	}
	tv.tv_sec = (time_t)(T.interval_ms / 1000);
	tv.tv_usec = (suseconds_t)(T.interval_ms % 1000 * 1000);
	evtimer_add(T.tick, &tv);
}

static void
on_answer(struct evhttp_request *req, void *arg)
{
	struct daemon *d = arg;
	struct evbuffer *in;
	size_t len;

	d->last = d->now;
	d->now.ok = 0;
	if (req == NULL || evhttp_request_get_response_code(req) == 0)
		snprintf(d->error, sizeof(d->error), "no answer");
	else if (evhttp_request_get_response_code(req) != 200)
		snprintf(d->error, sizeof(d->error), "HTTP %d",
		    evhttp_request_get_response_code(req));
	else {
		in = evhttp_request_get_input_buffer(req);
		len = evbuffer_get_length(in);
		free(d->body);
		if ((d->body = malloc(len + 1)) != NULL) {
			evbuffer_copyout(in, d->body, len);
			d->body[len] = '\0';
			parse(d->body, &d->now);
		}
	}
	if (!d->now.ok)
		d->last.ok = 0;		/* no rate across a gap */
	d->pending = 0;
	answered();
}

static void
ask(void)
{
	struct evhttp_request *req;
	size_t i;

	T.pending = T.n;
	for (i = 0; i < T.n; i++) {
		struct daemon *d = &T.d[i];

		d->pending = 1;
		if (d->conn == NULL && (d->conn = evhttp_connection_base_new(
		    T.base, NULL, d->host, (unsigned short)d->port)) != NULL)
			evhttp_connection_set_timeout(d->conn, 5);
		if (d->conn == NULL ||
		    (req = evhttp_request_new(on_answer, d)) == NULL) {
			snprintf(d->error, sizeof(d->error), "out of memory");
			d->now.ok = d->last.ok = 0;
			answered();
			continue;
		}
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Host", d->host);
		if (evhttp_make_request(d->conn, req, EVHTTP_REQ_GET,
		    "/status.json") != 0) {
			snprintf(d->error, sizeof(d->error), "cannot ask");
			d->now.ok = d->last.ok = 0;
			answered();
		}
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	ask();
}

int
ctl_top_addr(const char *s, char *host, size_t cap, int *port)
{
	const char *c = strrchr(s, ':');
	char *end;
	long p;

	if (c == NULL || c == s || (size_t)(c - s) >= cap)
		return -1;
	p = strtol(c + 1, &end, 10);
	if (*end != '\0' || p < 1 || p > 65535)
		return -1;
	if (s[0] == '[' && c[-1] == ']') {
		memcpy(host, s + 1, (size_t)(c - s - 2));
		host[c - s - 2] = '\0';
	} else {
		memcpy(host, s, (size_t)(c - s));
		host[c - s] = '\0';
	}
	*port = (int)p;
	return 0;
}

int
ctl_top(struct event_base *base, char **addrs, size_t n,
    uint64_t interval_ms, long count, int tty)
{
	size_t i;

	T.base = base;
	T.n = n;
	T.interval_ms = interval_ms;
	T.count = count;
	T.tty = tty;
	if ((T.d = calloc(n, sizeof(*T.d))) == NULL ||
	    (T.tick = evtimer_new(base, tick_cb, NULL)) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		T.d[i].addr = addrs[i];
		if (ctl_top_addr(addrs[i], T.d[i].host, sizeof(T.d[i].host),
		    &T.d[i].port) != 0)
			return -1;
	}
	ask();
	event_base_dispatch(base);
	for (i = 0; i < n; i++) {
		if (T.d[i].conn != NULL)
			evhttp_connection_free(T.d[i].conn);
		free(T.d[i].body);
	}
	event_free(T.tick);
	free(T.d);
	return 0;
}
