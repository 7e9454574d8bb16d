/*
 * fuzz_conn.c: a whole server connection fed raw bytes, with no socket.
 *
 * Per input: a fresh event loop, memory backend, cache handlers, the change
 * feed (watch.c, fed by the backend's hook) and server (as main.c sets them
 * up, with small limits so that the interesting paths are reached with
 * small inputs: a 4 KiB watch_buffer cuts off a stalled watcher within a
 * few writes), one connection on the server side
 * of a bufferevent_pair (conn_new_bev), the input written into the other
 * side in pieces with the loop run until idle after each, then the
 * client's EOF, and everything freed. The client side discards what the
 * server sends. Timers (handshake, idle, linger) never fire: the loop only
 * runs what is ready, so a run is deterministic.
 *
 * The API key is "fuzz-key" (the seeds send it as api_key metadata).
 * FUZZ_VERBOSE=1 logs at debug and says what each input did.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth.h"
#include "backend.h"
#include "cache.h"
#include "config.h"
#include "grpc.h"
#include "h2conn.h"
#include "log.h"
#include "methods.h"
#include "metrics.h"
#include "server.h"
#include "watch.h"
#include "fuzz.h"

/* Bytes written per piece: frames arrive cut at odd places. */
#define PIECE	997

static struct config conf;
static int verbose;		/* FUZZ_VERBOSE: what each input did */
static size_t received;		/* bytes the server sent */

static void
cleanup(void)
{
	config_free(&conf);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config_errors errs = { 0 };
	char err[256];

	signal(SIGPIPE, SIG_IGN);
	if (config_load(NULL, 1, &conf, &errs) != 0) {
		fprintf(stderr, "the defaults do not load\n");
		exit(1);
	}
	config_errors_free(&errs);
	/* Small limits: oversized messages, a full store and starved
	 * uploads within a few KiB of input. */
	conf.max_message_size = 1u << 20;
	conf.max_inflight_bytes = 48u << 10;
	conf.max_memory = 1u << 20;
	conf.max_concurrent_streams = 16;
	conf.watch_buffer = 4096;
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	log_open("stderr", verbose ? "debug" : "error");
	setenv("METALCORE_API_KEY", "fuzz-key", 1);
	if (auth_load(&conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "auth_load: %s\n", err);
		exit(1);
	}
	atexit(cleanup);
	return 0;
}

/* The backend's change hook, as main.c forwards it: the change feed. */
static void
on_change(void *arg, enum be_event ev, const uint8_t *key, size_t keylen,
    uint32_t level, uint64_t gen, size_t len)
{
	watch_backend_event(ev, key, keylen, level, gen, len);
}

/* The client: read and discard whatever the server sends. */
static void
client_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	received += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
}

/* FUZZ_VERBOSE: the calls answered, by method and status. */
static void
report(void)
{
	static uint64_t seen[MM_COUNT][17];
	int m, code;
	uint64_t n;

	fprintf(stderr, "server sent %zu bytes;", received);
	for (m = 0; m < MM_COUNT; m++)
		for (code = 0; code <= 16; code++) {
			n = metrics_requests((enum metric_method)m, code);
			if (n != seen[m][code])
				fprintf(stderr, " %s/%d x%llu",
				    metrics_method_name((enum metric_method)m),
				    code, (unsigned long long)(n - seen[m][code]));
			seen[m][code] = n;
		}
	fprintf(stderr, "\n");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct event_base *base;
	struct backend *be;
	struct server srv;
	struct bufferevent *pair[2];
	const struct backend_ops *ops;
	const struct method *mt;
	char err[256];
	size_t off, n, nmt;

	if ((base = event_base_new()) == NULL)
		abort();
	ops = backend_find("memory");
	FUZZ_ASSERT(ops != NULL);
	if ((be = ops->open(&conf, base, err, sizeof(err))) == NULL) {
		fprintf(stderr, "memory backend: %s\n", err);
		abort();
	}
	backend_set_hook(be, on_change, NULL);
	cache_init(be, &conf);
	FUZZ_ASSERT(watch_init(base, be, &conf, NULL) == 0);
	mt = methods_for(0, &nmt);
	grpc_server_configure(mt, nmt, conf.max_message_size);
	FUZZ_ASSERT(server_init(&srv, base, &conf, &grpc_server_ops, err,
	    sizeof(err)) == 0);
	FUZZ_ASSERT(bufferevent_pair_new(base, BEV_OPT_DEFER_CALLBACKS,
	    pair) == 0);
	bufferevent_setcb(pair[1], client_read, NULL, NULL, NULL);
	bufferevent_enable(pair[1], EV_READ | EV_WRITE);
	if (h2s_conn_new_bev(&srv, pair[0], "fuzz") == NULL)
		abort();
	event_base_loop(base, EVLOOP_NONBLOCK);

	for (off = 0; off < size; off += n) {
		n = size - off < PIECE ? size - off : PIECE;
		bufferevent_write(pair[1], data + off, n);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	/* The client goes away: the server sees EOF. */
	bufferevent_free(pair[1]);
	event_base_loop(base, EVLOOP_NONBLOCK);

	watch_free();		/* before server_free(), as main.c */
	server_free(&srv);
	event_base_loop(base, EVLOOP_NONBLOCK);
	/* Every lease was released with the connection's buffers. */
	ops->close(be);
	event_base_free(base);
	if (verbose)
		report();
	received = 0;
	return 0;
}
