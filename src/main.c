/*
 * main.c: alpcrund's entry point and lifecycle: options, configuration,
 * the open-file limit, start-up of every part in order, signals (handlers
 * only note them: libevent's evsignal runs the work on the loop), SIGHUP
 * reload, SIGTERM/SIGINT drain, and exit.
 *
 * backend s3 is refused unless its store passes the probe of s3probe.h,
 * at start before anything listens and with -t; then the backend opens
 * (its incarnation read or created, on the loop before anything else runs
 * on it), its client told what the probe found (If-Match ETags bare),
 * and the central serves from the bucket.
 *
 * The change feed (watch.c) runs on a central over its store, and on a
 * node with `prefetch on` over its copies, announcing central's
 * incarnation as the node learned it (node_origin); a node without
 * prefetch serves none.
 */
#include <sys/resource.h>
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "auth.h"
#include "backend.h"
#include "bigbuf.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "digest.h"
#include "grpc.h"
#include "health.h"
#include "log.h"
#include "methods.h"
#include "metrics.h"
#include "node.h"
#include "prefetch.h"
#include "reads.h"
#include "s3be.h"
#include "s3client.h"
#include "s3conf.h"
#include "s3health.h"
#include "s3probe.h"
#include "server.h"
#include "status.h"
#include "sweeper.h"
#include "watch.h"
#include "tls.h"

/* Spec §7: the default file is /etc/alpcrund.conf whatever the prefix. */
#define DEFAULT_CONFIG	"/etc/alpcrund.conf"
/* Descriptors besides connections: listeners, log, metrics, backend. */
#define FD_RESERVE	64

static struct {
	const char		*path;		/* -c, or the default */
	int			 path_given;
	struct config		 conf;
	struct event_base	*base;
	struct backend		*be;
	struct server		 srv;
	struct sweeper		*sweeper;
	struct event		*trim;		/* bigbuf_trim(), every second */
	int			 mode;		/* enum alp_mode started in; a
						   reload keeps it */
	int			 node_on;
} d;

/* --- hooks registered into the lower layers ------------------------------ */

/* The methods of the mode the daemon started in (a reload may name
 * another mode, which needs a restart), and the live size limit. */
static void
serve_methods(int running, uint64_t max_message_size)
{
	size_t n;
	const struct method *m = methods_for(running == MODE_NODE, &n);

	grpc_server_configure(m, n, max_message_size);
}

static uint64_t
gauge_entries(void *arg)
{
	struct backend *be = arg;
	struct be_stats st;

	memset(&st, 0, sizeof(st));
	be->ops->stats(be, &st);
	return st.entries;
}

static uint64_t
gauge_payload_bytes(void *arg)
{
	struct backend *be = arg;
	struct be_stats st;

	memset(&st, 0, sizeof(st));
	be->ops->stats(be, &st);
	return st.payload_bytes;
}

/*
 * A large reply goes out as thousands of small output chains (a DATA
 * frame's header, a reference to the payload) allocated and freed within a
 * loop turn or two; glibc gives the top of its heap back after each such
 * burst and takes it again with the next (perf of a 64 MiB Get to a
 * grpc-go client: a fifth of the daemon's time in _int_malloc and brk).
 * Keep up to 64 MiB of free heap instead.
 */
static void
tune_malloc(void)
{
	(void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
	(void)mallopt(M_TOP_PAD, 4 << 20);
}

static uint64_t
gauge_buffers_kept(void *arg)
{
	return bigbuf_kept_bytes();
}

static void
trim_cb(evutil_socket_t fd, short what, void *arg)
{
	bigbuf_trim(clock_now_ns());
}

static void
drain_ready(void *arg)
{
	health_set_serving(0);
	metrics_set_ready(0, "draining");
}

static void
node_inflight_add(void *arg, int64_t delta)
{
	server_inflight(arg, delta);
}

static int
node_inflight_full(void *arg)
{
	return server_inflight_full(arg);
}

static uint64_t
gauge_s3_up(void *arg)
{
	return s3_health_get(arg)->state != S3_HEALTH_DOWN;
}

static uint64_t
gauge_s3_state(void *arg)
{
	return (uint64_t)s3_health_get(arg)->state;
}

/*
 * backend s3's store on /readyz: a line of detail while it is degraded or
 * down, the central still ready. Its peers share the store, so none would
 * be ready either, and a Service without endpoints would end the Gets
 * the hot tiers still answer.
 */
static void
s3_health_changed(void *arg, const struct s3_health_info *h)
{
	char line[768];

	(void)arg;
	if (h->state == S3_HEALTH_UP) {
		metrics_set_ready_detail(NULL);
		return;
	}
	snprintf(line, sizeof(line), "s3 store %s%s: %s",
	    s3_health_name(h->state), h->state == S3_HEALTH_DOWN ?
	    " (writes refused, Gets from this central's copies)" : "",
	    h->last_error);
	metrics_set_ready_detail(line);
}

/* The gauges of other modules, the drain's hooks. 0, or -1. */
static int
register_hooks(void)
{
	struct s3_health *h;

	if (d.be->ops->stats != NULL &&
	    (metrics_gauge("alpcrund_entries",
	    "Entries stored (live or not yet swept).", gauge_entries,
	    d.be) != 0 ||
	    metrics_gauge("alpcrund_payload_bytes", "Bytes of payload stored.",
	    gauge_payload_bytes, d.be) != 0))
		return -1;
	if (metrics_gauge("alpcrund_watchers",
	    "Change feed streams open.", watch_gauge_watchers,
	    NULL) != 0 ||
	    metrics_gauge("alpcrund_watch_queued_bytes",
	    "Change feed notice bytes queued for watchers, not yet framed.",
	    watch_gauge_queued, NULL) != 0 ||
	    metrics_gauge("alpcrund_payload_buffers_kept_bytes",
	    "Freed payload-sized buffers kept for the next upload or fetch "
	    "(given back after 10 s unused).", gauge_buffers_kept, NULL) != 0)
		return -1;
	if ((h = backend_s3_health(d.be)) != NULL) {
		if (metrics_gauge("alpcrund_s3_store_up", "1 while the S3 "
		    "store answers (up or degraded), 0 while it is down.",
		    gauge_s3_up, h) != 0 ||
		    metrics_gauge("alpcrund_s3_store_state", "The S3 store's "
		    "state: 0 up, 1 degraded (a request failed within 30 s), "
		    "2 down (3 requests failed in a row).", gauge_s3_state,
		    h) != 0)
			return -1;
		s3_health_on_change(h, s3_health_changed, NULL);
		s3_health_changed(NULL, s3_health_get(h));
	}
	/* Readiness first, then the services that refuse new work. */
	if (server_on_drain(&d.srv, drain_ready, NULL) != 0 ||
	    server_on_drain(&d.srv, watch_drain, NULL) != 0 ||
	    (d.node_on && server_on_drain(&d.srv, node_drain, NULL) != 0))
		return -1;
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: alpcrund [-htvV] [-c file]\n"
	    "  -c file  configuration file (default %s)\n"
	    "  -t       check the configuration and exit\n"
	    "  -v       with -t, print the effective configuration\n"
	    "  -h       this help\n"
	    "  -V       print the version\n", DEFAULT_CONFIG);
}

/* Load the configuration. At start errors go to stderr as `file:line: …`
 * (the operator is at the terminal, and no log is open yet); on SIGHUP
 * they go to the log, one line each. */
static int
load(struct config *conf, int to_log)
{
	struct config_errors errs = { 0 };
	size_t i;
	int rv;

	rv = config_load(d.path, !d.path_given, conf, &errs);
	for (i = 0; i < errs.n; i++) {
		if (to_log)
			log_error(errs.msgs[i], NULL);
		else
			fprintf(stderr, "%s\n", errs.msgs[i]);
	}
	config_errors_free(&errs);
	return rv;
}

/* Each connection is a descriptor: make room, or refuse to start. */
static int
raise_nofile(uint64_t max_connections)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)max_connections + FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur >= need)
		return 0;
	if (rl.rlim_max < need) {
		struct rlimit up = { need, need };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return 0;
		log_error("cannot raise the open-file limit",
		    "max_connections=%llu need=%llu hard_limit=%llu",
		    (unsigned long long)max_connections,
		    (unsigned long long)need,
		    (unsigned long long)rl.rlim_max);
		return -1;
	}
	rl.rlim_cur = need;
	return setrlimit(RLIMIT_NOFILE, &rl);
}

static int
write_pid_file(const char *path)
{
	char buf[32];
	int fd, n;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) < 0)
		return -1;
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	return close(fd);
}

static void
on_backend_change(void *arg, enum be_event ev, const uint8_t *key,
    size_t keylen, uint32_t level, uint64_t gen, size_t len)
{
	if (ev == BE_EV_EXPIRE)
		metrics_count(MC_EXPIRED, 1);
	else if (ev == BE_EV_EVICT)
		metrics_count(MC_EVICTIONS, 1);
	if (ev == BE_EV_DELETE || ev == BE_EV_EXPIRE || ev == BE_EV_EVICT)
		reads_forget(key, keylen);
	/* A central's or a node's feed; nothing when none runs. */
	watch_backend_event(ev, key, keylen, level, gen, len);
}

/* A node's feed: central's store as the node knows it (watch.h). */
static uint64_t
node_origin_incarnation(void *arg)
{
	return node_incarnation();
}

static int
node_origin_current(void *arg, uint64_t inc)
{
	return node_copy_current(inc);
}

/*
 * The listeners' TLS context from tls_cert, tls_key and tls_client_ca: at
 * start (an error stops the daemon) and on SIGHUP (an error keeps the old
 * context, so new connections keep being served). An expired certificate
 * is only a warning: clients decide.
 */
static int
tls_load(const struct config *conf, int at_start)
{
	char warn[512], err[512];

	if (conf->tls_cert == NULL)
		return 0;
	if (tls_server_reload(conf->tls_cert, conf->tls_key,
	    conf->tls_client_ca, warn, sizeof(warn), err, sizeof(err)) != 0) {
		if (at_start)
			log_error("cannot set up TLS", "error=\"%s\"", err);
		else
			log_error("TLS certificate not reloaded, keeping the "
			    "old one", "error=\"%s\"", err);
		return -1;
	}
	if (warn[0] != '\0')
		log_warn("TLS certificate not valid now", "warning=\"%s\"",
		    warn);
	log_info(at_start ? "TLS on" : "TLS certificate reloaded",
	    "cert=%s client_ca=%s", conf->tls_cert,
	    conf->tls_client_ca != NULL ? conf->tls_client_ca : "(none)");
	return 0;
}

/* alpcrund -t: what building one context said; -1 when it failed. */
static int
tls_report(struct ssl_ctx_st *ctx, const char *warn, const char *err)
{
	if (ctx == NULL) {
		fprintf(stderr, "alpcrund: %s\n", err);
		return -1;
	}
	if (warn[0] != '\0')
		fprintf(stderr, "alpcrund: warning: %s\n", warn);
	SSL_CTX_free(ctx);
	return 0;
}

/* -t: the TLS files load, as they would at start. */
static int
tls_check(const struct config *conf)
{
	struct ssl_ctx_st *ctx;
	char warn[512], err[512];
	int rv = 0;

	if (conf->tls_cert != NULL) {
		ctx = tls_server_ctx_new(conf->tls_cert, conf->tls_key,
		    conf->tls_client_ca, warn, sizeof(warn), err, sizeof(err));
		if (tls_report(ctx, warn, err) != 0)
			rv = -1;
	}
	if (conf->mode == MODE_NODE && conf->upstream_tls) {
		ctx = tls_upstream_ctx_new(conf->upstream_ca,
		    conf->upstream_cert, conf->upstream_key, warn,
		    sizeof(warn), err, sizeof(err));
		if (tls_report(ctx, warn, err) != 0)
			rv = -1;
	}
	return rv;
}

static int
is_s3(const struct config *conf)
{
	return conf->backend != NULL && strcmp(conf->backend, "s3") == 0;
}

/* backend s3: the credentials, a client on base, and the probe run to
 * its end there. 0 when the store passed (msg says so; *bare whether it
 * takes If-Match ETags only unquoted), -1 with msg saying what failed. */
static int
s3_probe_store(const struct config *conf, struct event_base *base,
    char *msg, size_t len, int *bare)
{
	struct s3_settings s3;
	struct s3_client *cl;
	char err[512];
	int rv;

	if (s3conf_load(conf, &s3, err, sizeof(err)) != 0) {
		snprintf(msg, len, "%s", err);
		return -1;
	}
	if ((cl = s3_client_new(base, &s3.cc, err, sizeof(err))) == NULL) {
		snprintf(msg, len, "backend s3: %s", err);
		s3conf_free(&s3);
		return -1;
	}
	rv = s3_probe_run(base, cl, msg, len);
	*bare = s3_client_bare_if_match(cl);
	s3_client_free(cl);
	s3conf_free(&s3);
	return rv;
}

/* -t: the store of backend s3 passes the probe, on a loop of its own. */
static int
s3_check(const struct config *conf)
{
	struct event_base *base;
	char msg[1024];
	int rv, bare;

	if (!is_s3(conf))
		return 0;
	if ((base = event_base_new()) == NULL) {
		fprintf(stderr, "alpcrund: cannot create an event loop\n");
		return -1;
	}
	rv = s3_probe_store(conf, base, msg, sizeof(msg), &bare);
	fprintf(stderr, "alpcrund: %s\n", msg);
	event_base_free(base);
	return rv;
}

static void
reload(void)
{
	struct config next;
	char err[256], changed[512];
	size_t n;

	log_info("reloading", "file=%s", d.path);
	if (load(&next, 1) != 0) {
		log_error("reload failed, configuration unchanged",
		    "file=%s", d.path);
		return;
	}
	if (log_open(next.log_target, next.log_level) != 0)
		log_error("cannot open log target, keeping the old one",
		    "target=%s error=\"%s\"", next.log_target,
		    strerror(errno));
	if (auth_load(&next, err, sizeof(err)) != 0)
		log_error("api key not reloaded, keeping the old one",
		    "error=\"%s\"", err);
	n = config_restart_changes(&d.conf, &next, changed, sizeof(changed));
	if (n > 0)
		log_warn("changes need a restart", "directives=\"%s\"",
		    changed);
	if ((d.conf.tls_cert == NULL) != (next.tls_cert == NULL))
		log_warn("turning TLS on or off needs a restart",
		    "tls_cert=%s", next.tls_cert != NULL ? next.tls_cert :
		    "(unset)");
	else
		tls_load(&next, 0);
	cache_reconfigure(&next);
	watch_reconfigure(&next);
	if (d.node_on)
		node_reconfigure(&next);
	prefetch_reconfigure(&next);
	status_reconfigure(&next);
	d.be->ops->reconfigure(d.be, &next);
	sweeper_set_interval(d.sweeper, next.sweep_interval);
	server_reconfigure(&d.srv, &next);
	serve_methods(d.mode, next.max_message_size);
	config_free(&d.conf);
	d.conf = next;
	d.srv.conf = &d.conf;
	log_info("reloaded", "file=%s", d.path);
}

static void
on_drained(struct server *srv)
{
	event_base_loopexit(d.base, NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	switch (sig) {
	case SIGHUP:
		reload();
		break;
	case SIGTERM:
	case SIGINT:
		if (d.srv.draining) {
			log_info("already draining", "signal=%d", (int)sig);
			break;
		}
		log_info("signal received, draining", "signal=%s",
		    sig == SIGTERM ? "TERM" : "INT");
		d.srv.on_drained = on_drained;
		server_drain(&d.srv);
		if (d.srv.nconns == 0)
			event_base_loopexit(d.base, NULL);
		break;
	}
}

int
main(int argc, char *argv[])
{
	const struct backend_ops *ops;
	struct event *sigs[4];
	const int signos[4] = { SIGHUP, SIGTERM, SIGINT, 0 };
	char err[512];
	int ch, test = 0, verbose = 0, rv = 1, s3_bare = 0;
	size_t i;

	d.path = DEFAULT_CONFIG;
	while ((ch = getopt(argc, argv, "c:htvV")) != -1) {
		switch (ch) {
		case 'c':
			d.path = optarg;
			d.path_given = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 't':
			test = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'V':
			printf("alpcrund %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	if (load(&d.conf, 0) != 0) {
		if (test)
			fprintf(stderr, "%s: configuration has errors\n",
			    d.path);
		return 1;
	}
	/* The upstream by whatever name: resolved now, at -t and start
	 * only (a reload keeps the upstream it started with). */
	if (config_check_upstream(&d.conf, err, sizeof(err)) != 0) {
		const char *file = d.conf.path != NULL ? d.conf.path :
		    "(defaults)";

		fprintf(stderr, "%s: %s\n", file, err);
		if (test)
			fprintf(stderr, "%s: configuration has errors\n", file);
		config_free(&d.conf);
		return 1;
	}
	if (test) {
		if (tls_check(&d.conf) != 0 || s3_check(&d.conf) != 0) {
			fprintf(stderr, "%s: configuration has errors\n",
			    d.conf.path != NULL ? d.conf.path : "(defaults)");
			config_free(&d.conf);
			return 1;
		}
		if (verbose)
			config_dump(&d.conf, stdout);
		fprintf(stderr, "%s: configuration OK\n",
		    d.conf.path != NULL ? d.conf.path : "(defaults)");
		config_free(&d.conf);
		return 0;
	}
	if (log_open(d.conf.log_target, d.conf.log_level) != 0) {
		fprintf(stderr, "alpcrund: log_target %s: %s\n",
		    d.conf.log_target, strerror(errno));
		return 1;
	}
	if (raise_nofile(d.conf.max_connections) != 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	tune_malloc();
	if ((d.base = event_base_new()) == NULL) {
		log_error("cannot create the event loop", NULL);
		return 1;
	}
	if (is_s3(&d.conf)) {
		/* Before anything listens: a store that does not honour
		 * conditional writes would break spec §4 quietly. */
		if (s3_client_metrics() != 0 ||
		    s3_probe_store(&d.conf, d.base, err, sizeof(err),
		    &s3_bare) != 0) {
			log_error("s3 store refused", "error=\"%s\"", err);
			event_base_free(d.base);
			return 1;
		}
		log_info("s3 store probed", "result=\"%s\"", err);
	}
	if ((ops = backend_find(d.conf.backend)) == NULL) {
		log_error("unknown backend", "backend=%s", d.conf.backend);
		return 1;
	}
	if ((d.be = ops->open(&d.conf, d.base, err, sizeof(err))) == NULL) {
		log_error("cannot open the backend", "backend=%s error=\"%s\"",
		    ops->name, err);
		return 1;
	}
	/* The backend's own client speaks to the store as the probe found
	 * it must (Ceph RGW: If-Match ETags unquoted). */
	if (backend_s3_client(d.be) != NULL)
		s3_client_set_bare_if_match(backend_s3_client(d.be), s3_bare);
	backend_set_hook(d.be, on_backend_change, NULL);
	if (auth_load(&d.conf, err, sizeof(err)) != 0) {
		log_error("cannot load the api key", "error=\"%s\"", err);
		goto out;
	}
	if (tls_load(&d.conf, 1) != 0)
		goto out;
	cache_init(d.be, &d.conf);
	if (d.conf.mode == MODE_CENTRAL && d.conf.prefetch)
		log_warn("prefetch applies to mode node only, ignored", NULL);
	if (d.conf.mode == MODE_CENTRAL && watch_init(d.base, d.be,
	    &d.conf, NULL) != 0) {
		log_error("cannot start the change feed", "error=\"out of "
		    "memory\"");
		goto out;
	}
	if (digest_init(d.base, err, sizeof(err)) != 0) {
		log_error("cannot start the digest worker", "error=\"%s\"",
		    err);
		goto out;
	}
	d.mode = d.conf.mode;
	serve_methods(d.mode, d.conf.max_message_size);
	if (server_init(&d.srv, d.base, &d.conf, &grpc_server_ops, err,
	    sizeof(err)) != 0 ||
	    server_listen(&d.srv, err, sizeof(err)) != 0) {
		log_error("cannot listen", "error=\"%s\"", err);
		goto out;
	}
	if (d.conf.mode == MODE_NODE) {
		struct node_inflight acct = { node_inflight_add,
		    node_inflight_full, &d.srv };
		struct watch_origin origin = { node_origin_incarnation,
		    node_origin_current, NULL };

		if (node_init(d.base, d.be, &d.conf, err, sizeof(err)) != 0) {
			log_error("cannot start node mode", "error=\"%s\"",
			    err);
			goto out;
		}
		d.node_on = 1;
		node_set_inflight(&acct);
		if (d.conf.prefetch && prefetch_init(d.base, d.be,
		    &d.conf) != 0) {
			log_error("cannot start prefetch", "error=\"out of "
			    "memory\"");
			goto out;
		}
		/* Fed from upstream, the node feeds the nodes behind it
		 * (spec §5 "Tiers"); without prefetch its copies go stale
		 * unseen, and it announces none. */
		if (d.conf.prefetch && watch_init(d.base, d.be, &d.conf,
		    &origin) != 0) {
			log_error("cannot start the change feed", "error=\"out "
			    "of memory\"");
			goto out;
		}
	}
	if (register_hooks() != 0) {
		log_error("cannot start", "error=\"out of memory\"");
		goto out;
	}
	if (d.conf.metrics_listen != NULL) {
		if (metrics_listen(d.base, d.conf.metrics_listen, err,
		    sizeof(err)) != 0) {
			log_error("cannot serve metrics", "error=\"%s\"", err);
			goto out;
		}
		log_info("metrics listening", "addr=%s", d.conf.metrics_listen);
		if (status_init(&d.conf, d.be) != 0) {
			log_error("cannot start", "error=\"out of memory\"");
			goto out;
		}
	}
	if ((d.sweeper = sweeper_start(d.base, d.be,
	    d.conf.sweep_interval)) == NULL) {
		log_error("cannot start the sweeper", NULL);
		goto out;
	}
	{
		struct timeval tv = { 1, 0 };

		if ((d.trim = event_new(d.base, -1, EV_PERSIST, trim_cb,
		    NULL)) == NULL || event_add(d.trim, &tv) != 0) {
			log_error("cannot start", "error=\"out of memory\"");
			goto out;
		}
	}
	if (d.conf.pid_file != NULL && write_pid_file(d.conf.pid_file) != 0) {
		log_error("cannot write pid_file", "path=%s error=\"%s\"",
		    d.conf.pid_file, strerror(errno));
		goto out;
	}
	for (i = 0; signos[i] != 0; i++) {
		sigs[i] = evsignal_new(d.base, signos[i], signal_cb, NULL);
		evsignal_add(sigs[i], NULL);
	}
	sigs[i] = NULL;
	log_info("ready", "version=%s mode=%s backend=%s config=%s",
	    PACKAGE_VERSION, d.conf.mode == MODE_NODE ? "node" : "central",
	    ops->name, d.conf.path != NULL ? d.conf.path : "(defaults)");
	event_base_dispatch(d.base);
	for (i = 0; sigs[i] != NULL; i++)
		event_free(sigs[i]);
	log_info("exiting", NULL);
	rv = 0;
out:
	/* Node waiters and forwarded writes first: they answer calls of
	 * connections server_free() closes. */
	prefetch_free();	/* before node_free(): it waits on fetches */
	if (d.node_on)
		node_free();
	/* Writes waiting for a digest go on to the backend, and answer. */
	digest_free();
	watch_free();
	server_free(&d.srv);
	if (d.sweeper != NULL)
		sweeper_stop(d.sweeper);
	if (d.trim != NULL)
		event_free(d.trim);
	metrics_close();	/* also frees the registered gauges */
	reads_free();
	if (d.conf.pid_file != NULL && rv == 0)
		unlink(d.conf.pid_file);
	tls_server_free();
	d.be->ops->close(d.be);
	bigbuf_trim(UINT64_MAX);	/* after the backend freed its payloads */
	event_base_free(d.base);
	config_free(&d.conf);
	log_close();
	return rv;
}
