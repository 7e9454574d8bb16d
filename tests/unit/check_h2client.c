/*
 * check_h2client.c: unit tests of the HTTP/2 gRPC client (src/grpc/h2client.h,
 * spec §5 "Upstream link") against the real server, run in-process on the
 * same event loop as the client (memory backend, cache handlers, server on
 * a free loopback port or a unix socket), and against two stand-ins made
 * here: a TCP listener that accepts and never says a word, and one that
 * sends the server's SETTINGS and then nothing (no SETTINGS ACK, no PING
 * ACK, no reply): the silent peer keepalive exists for. The response
 * metadata a client keeps is checked against the real server and, for
 * what the server never sends (too many, too long, in trailers), against a
 * scripted nghttp2 server on a bufferevent_pair (h2client_new_bev()). The
 * request metadata it sends is read by a handler of the real server
 * (call_meta()) and, field by field, by the scripted server.
 *
 * Nothing sleeps: every wait pumps the loop until a condition holds or a
 * deadline passes (a 10 ms tick keeps EVLOOP_ONCE from blocking), so a
 * test takes as long as the behaviour it checks.
 *
 * Set HC_LOG=debug to see the client's and the server's log lines.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include "auth.h"
#include "backend.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "grpc.h"
#include "grpc_frame.h"
#include "h2client.h"
#include "health.h"
#include "log.h"
#include "methods.h"
#include "server.h"
#include "tls.h"
#include "testutil.h"

#define MS		NS_PER_MS
#define MIB		(1024 * 1024)
#define P_SET		"/alpcrun.v1.Cache/SetSharedData"
#define P_GET		"/alpcrun.v1.Cache/GetSharedData"
#define P_WATCH		"/grpc.health.v1.Health/Watch"
#define MAX_SILENT	16

/* --- Fixture -------------------------------------------------------------- */

/* The response metadata names a done callback looks up (res_done). */
static const char *const MNAMES[] = {
	"alpcrun-incarnation", "alpcrun-generation", "alpcrun-a",
	"alpcrun-b", "alpcrun-c", "alpcrun-d", "alpcrun-e", "alpcrun-long",
	"x-other",
};
#define NMNAMES	(sizeof(MNAMES) / sizeof(MNAMES[0]))

struct res {
	int		 done;
	int		 status;
	char		 msg[512];
	uint8_t		*data;
	size_t		 len;
	uint64_t	 at;		/* when done ran */
	/* h2reply_meta() of each of MNAMES; have: bit i when found. */
	char		 meta[NMNAMES][GRPC_META_VALUE_MAX + 1];
	unsigned	 have;
};

static struct {
	struct event_base	*base;
	struct event		*tick;
	int			 port;
	char			 addr[64];

	/* The real server. */
	int			 srv_on;
	struct config		 conf;
	struct backend		*be;
	struct server		 srv;

	/* The stand-ins. */
	struct evconnlistener	*silent;
	int			 silent_settings; /* send SETTINGS first */
	evutil_socket_t		 silent_fds[MAX_SILENT];
	int			 nsilent;

	/* The client under test, and what on_state said. */
	struct h2client		*cl;
	int			 nstate;
	int			 up;
	char			 reason[256];
	/* Started from on_state when the link goes down. */
	struct res		*down_res;
	uint64_t		 down_issued;

	int			 released;
} F;

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static int
free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, port;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

static void
setup(void)
{
	struct timeval tv = { 0, 10000 };
	const char *lvl = getenv("HC_LOG");

	memset(&F, 0, sizeof(F));
	signal(SIGPIPE, SIG_IGN);
	log_open("stderr", lvl != NULL ? lvl : "error");
	F.base = event_base_new();
	ck_assert_ptr_nonnull(F.base);
	F.tick = event_new(F.base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(F.tick, &tv);
	F.port = free_port();
	snprintf(F.addr, sizeof(F.addr), "127.0.0.1:%d", F.port);
}

static void
srv_start(const char *listen, const char *keyfile)
{
	struct config_errors errs = { 0 };
	char err[256];
	size_t i;

	ck_assert_int_eq(config_load(NULL, 0, &F.conf, &errs), 0);
	config_errors_free(&errs);
	for (i = 0; i < F.conf.nlisten; i++)
		free(F.conf.listen[i]);
	F.conf.listen[0] = strdup(listen);
	F.conf.nlisten = 1;
	if (keyfile != NULL)
		F.conf.api_key_file = strdup(keyfile);
	F.be = backend_find("memory")->open(&F.conf, F.base, err, sizeof(err));
	ck_assert_msg(F.be != NULL, "backend: %s", err);
	ck_assert_msg(auth_load(&F.conf, err, sizeof(err)) == 0, "auth: %s",
	    err);
	cache_init(F.be, &F.conf);
	health_set_serving(1);
	{
		size_t n;
		const struct method *m = methods_for(0, &n);

		grpc_server_configure(m, n, F.conf.max_message_size);
	}
	ck_assert_msg(server_init(&F.srv, F.base, &F.conf, &grpc_server_ops,
	    err, sizeof(err)) == 0, "server_init: %s", err);
	ck_assert_msg(server_listen(&F.srv, err, sizeof(err)) == 0,
	    "server_listen: %s", err);
	F.srv_on = 1;
}

static void
srv_stop(void)
{
	if (!F.srv_on)
		return;
	server_free(&F.srv);
	F.be->ops->close(F.be);
	config_free(&F.conf);
	auth_clear();
	F.srv_on = 0;
}

static void
silent_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int len, void *arg)
{
	/* An empty SETTINGS frame: the whole of the server's preface. */
	static const uint8_t settings[9] = { 0, 0, 0, 4, 0, 0, 0, 0, 0 };

	if (F.nsilent == MAX_SILENT) {
		close(fd);
		return;
	}
	F.silent_fds[F.nsilent++] = fd;
	if (F.silent_settings)
		ck_assert_int_eq(write(fd, settings, sizeof(settings)),
		    (int)sizeof(settings));
}

/* A listener on F.port that accepts and never answers (after the
 * server's SETTINGS when send_settings). */
static void
silent_start(int send_settings)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)F.port);
	F.silent_settings = send_settings;
	F.silent = evconnlistener_new_bind(F.base, silent_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	    (struct sockaddr *)&sin, sizeof(sin));
	ck_assert_ptr_nonnull(F.silent);
}

static void
teardown(void)
{
	int i;

	h2client_free(F.cl);
	F.cl = NULL;
	srv_stop();
	if (F.silent != NULL)
		evconnlistener_free(F.silent);
	for (i = 0; i < F.nsilent; i++)
		close(F.silent_fds[i]);
	event_free(F.tick);
	event_base_free(F.base);
	log_close();
}

/* --- Helpers -------------------------------------------------------------- */

#define PUMP(cond, ms) do {						\
	uint64_t end_ = clock_now_ns() + (uint64_t)(ms) * MS;		\
	while (!(cond) && clock_now_ns() < end_)			\
		event_base_loop(F.base, EVLOOP_ONCE);			\
} while (0)

/* Pump for a while whatever happens. */
static void
pump_ms(uint64_t ms)
{
	uint64_t end = clock_now_ns() + ms * MS;

	while (clock_now_ns() < end)
		event_base_loop(F.base, EVLOOP_ONCE);
}

static void
res_done(void *arg, struct h2reply *r)
{
	struct res *x = arg;
	const char *v;
	size_t i;

	x->done++;
	x->status = r->status;
	x->at = clock_now_ns();
	ck_assert_ptr_nonnull(r->message);
	snprintf(x->msg, sizeof(x->msg), "%s", r->message);
	free(x->data);
	x->data = r->data;	/* taken: ours to free */
	x->len = r->len;
	r->data = NULL;
	for (i = 0; i < NMNAMES; i++)
		if ((v = h2reply_meta(r, MNAMES[i])) != NULL) {
			ck_assert_uint_le(strlen(v), GRPC_META_VALUE_MAX);
			snprintf(x->meta[i], sizeof(x->meta[i]), "%s", v);
			x->have |= 1u << i;
		}
}

/* The value res_done found for name, or NULL. */
static const char *
mval(const struct res *x, const char *name)
{
	size_t i;

	for (i = 0; i < NMNAMES; i++)
		if (strcmp(MNAMES[i], name) == 0)
			return x->have & (1u << i) ? x->meta[i] : NULL;
	ck_abort_msg("%s is not in MNAMES", name);
	return NULL;
}

static void
res_clear(struct res *x)
{
	free(x->data);
	memset(x, 0, sizeof(*x));
}

static void
on_state(void *arg, int up, const char *reason)
{
	F.nstate++;
	F.up = up;
	snprintf(F.reason, sizeof(F.reason), "%s", reason);
	ck_assert_int_eq(up, h2client_up(F.cl));
	if (!up && F.down_res != NULL && F.down_issued == 0) {
		/* Fail fast: a call made while the link is down. */
		static const uint8_t none[1];
		struct h2body b = { .raw = none, .rawlen = 0 };

		F.down_issued = clock_now_ns();
		ck_assert_ptr_nonnull(h2client_unary_body(F.cl, P_GET, &b,
		    clock_now_ns() + 10000 * MS, res_done, F.down_res));
	}
}

static struct h2client *
client_new(const char *target, struct h2client_opts *o)
{
	struct h2client_opts def = { 0 };
	char err[256];

	if (o == NULL)
		o = &def;
	o->target = target;
	F.nstate = 0;
	F.up = 0;
	F.cl = h2client_new(F.base, NULL, o, on_state, NULL, err,
	    sizeof(err));
	ck_assert_msg(F.cl != NULL, "h2client_new: %s", err);
	return F.cl;
}

static void
wait_up(void)
{
	PUMP(F.up, 5000);
	ck_assert_msg(F.up, "link not up: %s", h2client_reason(F.cl));
}

static void
release_cb(void *arg)
{
	F.released++;
}

static Alpcrun__V1__SharedData
shared(const char *sid, int has_level, uint32_t level, const uint8_t *p,
    size_t n)
{
	Alpcrun__V1__SharedData sd = ALPCRUN__V1__SHARED_DATA__INIT;

	sd.has_session_id = 1;
	sd.session_id.data = (uint8_t *)(uintptr_t)sid;
	sd.session_id.len = strlen(sid);
	sd.has_update_level = has_level;
	sd.update_level = level;
	if (p != NULL) {
		sd.has_payload = 1;
		sd.payload.data = (uint8_t *)(uintptr_t)p;
		sd.payload.len = n;
	}
	return sd;
}

static struct h2call *
set_async(const char *sid, uint32_t level, const uint8_t *p, size_t n,
    int byref, struct res *r)
{
	Alpcrun__V1__SharedData sd = shared(sid, 1, level, p, n);
	struct h2body b = { .msg = &sd.base };

	if (byref) {
		b.release = release_cb;
		b.release_arg = NULL;
	}
	return h2client_unary_body(F.cl, P_SET, &b, 0, res_done, r);
}

static struct h2call *
get_async(const char *sid, uint64_t deadline, struct res *r)
{
	Alpcrun__V1__SharedData sd = shared(sid, 0, 0, NULL, 0);

	return h2client_unary(F.cl, P_GET, &sd.base, deadline, res_done, r);
}

static void
wait_res(struct res *r, uint64_t ms)
{
	PUMP(r->done, ms);
	ck_assert_msg(r->done == 1, "call not done (%d)", r->done);
}

static void
set_ok(const char *sid, uint32_t level, const uint8_t *p, size_t n)
{
	struct res r = { 0 };

	ck_assert_ptr_nonnull(set_async(sid, level, p, n, 0, &r));
	wait_res(&r, 20000);
	ck_assert_msg(r.status == GRPC_OK, "Set: %d %s", r.status, r.msg);
	res_clear(&r);
}

/* The payload of a GetSharedData reply equals p. */
static void
check_payload(const struct res *r, uint32_t level, const uint8_t *p,
    size_t n)
{
	Alpcrun__V1__SharedData *sd;

	ck_assert_msg(r->status == GRPC_OK, "Get: %d %s", r->status, r->msg);
	sd = alpcrun__v1__shared_data__unpack(NULL, r->len, r->data);
	ck_assert_ptr_nonnull(sd);
	ck_assert(sd->has_update_level);
	ck_assert_uint_eq(sd->update_level, level);
	ck_assert_uint_eq(sd->payload.len, n);
	ck_assert(memcmp(sd->payload.data, p, n) == 0);
	alpcrun__v1__shared_data__free_unpacked(sd, NULL);
}

static uint8_t *
pattern(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n);
	size_t i;

	ck_assert_ptr_nonnull(p);
	for (i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 12)) & 0xff);
	return p;
}

/* --- Round trips ---------------------------------------------------------- */

START_TEST(test_roundtrip_1k)
{
	uint8_t *p = pattern(1024, 1);
	struct res r = { 0 };

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	wait_up();
	ck_assert_int_eq(F.nstate, 1);
	ck_assert_str_eq(h2client_reason(F.cl), "");
	set_ok("s1k", 1, p, 1024);
	ck_assert_ptr_nonnull(get_async("s1k", clock_now_ns() + 5000 * MS,
	    &r));
	wait_res(&r, 5000);
	check_payload(&r, 1, p, 1024);
	res_clear(&r);
	free(p);
}
END_TEST

/* 64 MiB up by reference (no copy of the payload: release says when the
 * socket is done with it), and down into one buffer the test keeps. */
START_TEST(test_roundtrip_64m)
{
	size_t n = 64 * MIB;
	uint8_t *p = pattern(n, 2);
	struct res r = { 0 };

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	wait_up();
	ck_assert_ptr_nonnull(set_async("big", 7, p, n, 1, &r));
	wait_res(&r, 60000);
	ck_assert_msg(r.status == GRPC_OK, "Set: %d %s", r.status, r.msg);
	ck_assert_ptr_null(r.data);	/* Empty: no bytes */
	PUMP(F.released == 1, 5000);
	ck_assert_int_eq(F.released, 1);
	res_clear(&r);
	ck_assert_ptr_nonnull(get_async("big", 0, &r));
	wait_res(&r, 60000);
	check_payload(&r, 7, p, n);
	res_clear(&r);
	ck_assert_int_eq(F.released, 1);
	free(p);
}
END_TEST

/* --- Cut-through: the reply into the caller's buffer ---------------------- */

static struct {
	uint8_t		*buf;
	size_t		 len;
	int		 allocs;
	int		 arrivals;
	size_t		 last;		/* the last `have` */
	int		 partial;	/* arrivals with have < len */
	int		 grew;		/* have never went back */
	struct h2call	*call;
	int		 stop_at;	/* srv_stop() at this arrival */
	int		 cancel_at;	/* h2call_cancel() at this arrival */
} X;

static uint8_t *
into_alloc(void *arg, size_t len)
{
	X.allocs++;
	X.len = len;
	X.buf = malloc(len);
	return X.buf;
}

static void
into_arrived(void *arg, size_t have, size_t len)
{
	X.arrivals++;
	ck_assert_uint_eq(len, X.len);
	ck_assert_uint_le(have, len);
	if (have <= X.last)
		X.grew = 0;
	X.last = have;
	if (have < len)
		X.partial++;
	/* The response HEADERS came first: their metadata is there. */
	ck_assert_ptr_nonnull(h2call_meta(X.call, "alpcrun-incarnation"));
	if (X.arrivals == X.stop_at)
		srv_stop();
	if (X.arrivals == X.cancel_at)
		h2call_cancel(X.call);
}

static struct h2call *
get_into(const char *sid, struct res *r)
{
	memset(&X, 0, sizeof(X));
	X.grew = 1;
	X.call = get_async(sid, 0, r);
	ck_assert_ptr_nonnull(X.call);
	h2call_reply_into(X.call, into_alloc, into_arrived, NULL);
	return X.call;
}

/* The bytes land in the caller's buffer and are told as they come; done
 * points at that buffer, which the client never frees. */
START_TEST(test_reply_into)
{
	size_t n = 32 * MIB;
	uint8_t *p = pattern(n, 5);
	struct res r = { 0 };

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	wait_up();
	set_ok("into", 3, p, n);
	get_into("into", &r);
	wait_res(&r, 60000);
	ck_assert_int_eq(X.allocs, 1);
	ck_assert_ptr_eq(r.data, X.buf);
	ck_assert_uint_eq(r.len, X.len);
	check_payload(&r, 3, p, n);
	/* 32 MiB do not come in one read: told before the end, in order. */
	ck_assert_int_ge(X.partial, 1);
	ck_assert(X.grew);
	r.data = NULL;			/* X.buf: freed once, here */
	free(X.buf);
	res_clear(&r);
	free(p);
}
END_TEST

/* Failing half way: done with the status and no data; the buffer, half
 * filled, is still the caller's to free. A cancel: no done at all. */
START_TEST(test_reply_into_cut)
{
	size_t n = 32 * MIB;
	uint8_t *p = pattern(n, 6);
	struct res r = { 0 };

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	wait_up();
	set_ok("cut", 1, p, n);
	get_into("cut", &r);
	X.cancel_at = 1;
	PUMP(X.arrivals >= 1, 30000);
	pump_ms(200);
	ck_assert_int_eq(r.done, 0);
	ck_assert_int_eq(X.arrivals, 1);	/* none after the cancel */
	free(X.buf);

	get_into("cut", &r);
	X.stop_at = 1;
	wait_res(&r, 30000);
	ck_assert_int_eq(X.arrivals, 1);
	ck_assert_int_eq(r.status, GRPC_UNAVAILABLE);
	ck_assert_ptr_null(r.data);
	ck_assert_uint_eq(r.len, 0);
	ck_assert_int_eq(X.partial, 1);
	free(X.buf);
	res_clear(&r);
	free(p);
}
END_TEST

/* Statuses and messages from the server pass through unchanged, percent
 * encoding undone. */
START_TEST(test_errors_pass_through)
{
	uint8_t p[16] = "abc", q[16] = "xyz";
	struct res r = { 0 };
	static const uint8_t none[1];
	struct h2body empty = { .raw = none, .rawlen = 0 };

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	wait_up();

	get_async("nope", 0, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_NOT_FOUND);
	ck_assert_str_eq(r.msg, "shared data not found for session nope");
	ck_assert_ptr_null(r.data);
	res_clear(&r);

	set_ok("a%b~\"x\"", 1, p, sizeof(p));
	set_async("a%b~\"x\"", 1, q, sizeof(q), 0, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_ALREADY_EXISTS);
	ck_assert_str_eq(r.msg, "shared data already exists for session "
	    "a%b~\"x\" at update level 1");
	res_clear(&r);

	h2client_unary_body(F.cl, "/alpcrun.v1.Cache/Nope", &empty, 0,
	    res_done, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_UNIMPLEMENTED);
	ck_assert_str_eq(r.msg, "unknown method /alpcrun.v1.Cache/Nope");
	res_clear(&r);

	h2client_unary_body(F.cl, P_GET, &empty, 0, res_done, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_INVALID_ARGUMENT);
	ck_assert_str_eq(r.msg, "session_id is required");
	res_clear(&r);
}
END_TEST

/* --- Deadlines and dead peers --------------------------------------------- */

/* A peer that accepts and never speaks: the call waits for the attempt
 * (queued) and ends with its own deadline, long before the connect
 * timeout; then the attempt fails and calls fail fast. */
START_TEST(test_deadline_silent_listener)
{
	struct h2client_opts o = { .connect_timeout_ms = 700 };
	struct res r = { 0 }, down = { 0 };
	uint64_t t0, el;

	silent_start(0);
	F.down_res = &down;
	client_new(F.addr, &o);
	t0 = clock_now_ns();
	ck_assert_ptr_nonnull(get_async("x", t0 + 150 * MS, &r));
	wait_res(&r, 5000);
	el = r.at - t0;
	ck_assert_int_eq(r.status, GRPC_DEADLINE_EXCEEDED);
	ck_assert_str_eq(r.msg, "deadline exceeded");
	ck_assert_msg(el >= 140 * MS && el < 600 * MS, "after %llu ms",
	    (unsigned long long)(el / MS));
	ck_assert_int_eq(F.nstate, 0);
	ck_assert_int_eq(h2client_up(F.cl), 0);

	PUMP(F.nstate > 0, 5000);
	ck_assert_int_eq(F.up, 0);
	ck_assert_str_eq(F.reason, "no HTTP/2 handshake within 700ms");
	wait_res(&down, 1000);
	ck_assert_int_eq(down.status, GRPC_UNAVAILABLE);
	ck_assert_str_eq(down.msg, "central cache unreachable: no HTTP/2 "
	    "handshake within 700ms");
	ck_assert_msg(down.at - F.down_issued < 100 * MS, "not fast");
	res_clear(&r);
	res_clear(&down);
}
END_TEST

/* A peer that sends SETTINGS and then nothing: the link comes up, a call
 * is sent and times out (RST_STREAM CANCEL), PINGs go unanswered, the link
 * goes down with the keepalive reason, the call in flight fails, and new
 * calls fail fast. */
START_TEST(test_ping_timeout)
{
	struct h2client_opts o = { .keepalive_ms = 200 };
	struct res a = { 0 }, b = { 0 }, down = { 0 };
	uint64_t t0;

	silent_start(1);
	F.down_res = &down;
	client_new(F.addr, &o);
	wait_up();
	t0 = clock_now_ns();
	get_async("a", t0 + 100 * MS, &a);
	get_async("b", 0, &b);
	wait_res(&a, 2000);
	ck_assert_int_eq(a.status, GRPC_DEADLINE_EXCEEDED);
	ck_assert_msg(a.at - t0 < 190 * MS, "deadline late");

	wait_res(&b, 3000);
	ck_assert_int_eq(b.status, GRPC_UNAVAILABLE);
	ck_assert_str_eq(b.msg, "central cache unreachable: no PING answer "
	    "within 200ms");
	ck_assert_msg(b.at - t0 >= 200 * MS, "died before a PING period");
	PUMP(!F.up, 1000);
	ck_assert_int_eq(F.up, 0);
	ck_assert_str_eq(F.reason, "no PING answer within 200ms");
	ck_assert_str_eq(h2client_reason(F.cl), "no PING answer within 200ms");
	wait_res(&down, 1000);
	ck_assert_int_eq(down.status, GRPC_UNAVAILABLE);
	ck_assert_str_eq(down.msg, "central cache unreachable: no PING answer "
	    "within 200ms");
	ck_assert_msg(down.at - F.down_issued < 100 * MS, "not fast");
	res_clear(&a);
	res_clear(&b);
	res_clear(&down);
}
END_TEST

/* Nothing listens: the link is down with "connection refused", calls fail
 * at once; once the server listens, a retry brings the link up. */
START_TEST(test_refused_then_reconnect)
{
	uint8_t p[64] = "again";
	struct res down = { 0 }, r = { 0 };
	uint64_t t0;

	F.down_res = &down;
	client_new(F.addr, NULL);
	PUMP(F.nstate > 0, 5000);
	ck_assert_int_eq(F.up, 0);
	ck_assert_str_eq(F.reason, "connection refused");
	wait_res(&down, 1000);
	ck_assert_int_eq(down.status, GRPC_UNAVAILABLE);
	ck_assert_str_eq(down.msg, "central cache unreachable: connection "
	    "refused");
	ck_assert_msg(down.at - F.down_issued < 100 * MS, "not fast");

	/* Refused again and again while the backoff grows (100, 200, 400 ms
	 * ±20%): every call made meanwhile fails, none waits long. */
	pump_ms(350);
	t0 = clock_now_ns();
	get_async("x", t0 + 10000 * MS, &r);
	wait_res(&r, 2000);
	ck_assert_int_eq(r.status, GRPC_UNAVAILABLE);
	ck_assert_msg(r.at - t0 < 500 * MS, "waited %llu ms",
	    (unsigned long long)((r.at - t0) / MS));
	res_clear(&r);

	srv_start(F.addr, NULL);
	PUMP(F.up, 8000);
	ck_assert_msg(F.up, "no reconnect: %s", h2client_reason(F.cl));
	ck_assert_int_eq(F.nstate, 2);
	set_ok("back", 1, p, sizeof(p));
	res_clear(&down);
}
END_TEST

/* Still down, but for another reason: on_state reports it (so that
 * /readyz shows the latest), once, not once per attempt failing alike. */
START_TEST(test_down_reason_change)
{
	struct h2client_opts o = { .connect_timeout_ms = 300 };
	int n;

	client_new(F.addr, &o);
	PUMP(F.nstate > 0, 5000);
	ck_assert_int_eq(F.up, 0);
	ck_assert_str_eq(F.reason, "connection refused");
	pump_ms(400);		/* refused again: nothing new to say */
	ck_assert_int_eq(F.nstate, 1);

	silent_start(0);
	PUMP(F.nstate > 1, 5000);
	ck_assert_int_eq(F.nstate, 2);
	ck_assert_int_eq(F.up, 0);
	ck_assert_str_eq(F.reason, "no HTTP/2 handshake within 300ms");
	/* two more attempts failed alike once a third one was accepted (the
	 * backoff is capped at 5 s) */
	n = F.nsilent;
	PUMP(F.nsilent >= n + 3, 20000);
	ck_assert_int_ge(F.nsilent, n + 3);
	pump_ms(50);		/* the state event, had there been one */
	ck_assert_int_eq(F.nstate, 2);
	ck_assert_str_eq(h2client_reason(F.cl),
	    "no HTTP/2 handshake within 300ms");
}
END_TEST

/* --- GOAWAY --------------------------------------------------------------- */

/* The server drains: GOAWAY (shutdown notice, then the last stream); the
 * calls in flight finish on the old connection with all their bytes, the
 * client opens a new connection at once (refused: the listener is closed),
 * and a new call fails fast. */
START_TEST(test_goaway_drain)
{
	size_t n = 16 * MIB;
	uint8_t *p = pattern(n, 3);
	struct res g[4] = { { 0 } }, late = { 0 };
	uint64_t drained;
	int i;

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	wait_up();
	set_ok("drain", 3, p, n);
	for (i = 0; i < 4; i++)
		get_async("drain", 0, &g[i]);
	PUMP(!TAILQ_EMPTY(&F.srv.conns) &&
	    TAILQ_FIRST(&F.srv.conns)->nstreams > 0, 5000);
	ck_assert(TAILQ_FIRST(&F.srv.conns)->nstreams > 0);
	drained = clock_now_ns();
	server_drain(&F.srv);

	PUMP(!F.up, 5000);
	ck_assert_int_eq(F.up, 0);
	ck_assert_str_eq(F.reason, "connection refused");
	get_async("drain", 0, &late);
	wait_res(&late, 1000);
	ck_assert_int_eq(late.status, GRPC_UNAVAILABLE);

	PUMP(g[0].done && g[1].done && g[2].done && g[3].done, 20000);
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(g[i].done, 1);
		check_payload(&g[i], 3, p, n);
	}
	ck_assert(g[0].at > drained || g[1].at > drained ||
	    g[2].at > drained || g[3].at > drained);
	/* The old connection closes once its streams are done. */
	PUMP(F.srv.nconns == 0, 5000);
	ck_assert_uint_eq(F.srv.nconns, 0);
	for (i = 0; i < 4; i++)
		res_clear(&g[i]);
	res_clear(&late);
	free(p);
}
END_TEST

/* The server sends GOAWAY with the last stream it processed while a call
 * of ours is on its way: nghttp2 refuses that stream, and the client sends
 * it again on a new connection, where it succeeds. A graceful GOAWAY on a
 * connection that carried calls is a handover: the link never goes down. */
START_TEST(test_goaway_retry)
{
	uint8_t p[64] = "retry";
	struct res r = { 0 };

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	wait_up();
	set_ok("gr", 1, p, sizeof(p));
	/* The request is in our output buffer, not yet read by the server,
	 * when the server says GOAWAY(last = the Set's stream). */
	get_async("gr", clock_now_ns() + 5000 * MS, &r);
	h2s_conn_goaway(TAILQ_FIRST(&F.srv.conns));
	wait_res(&r, 5000);
	check_payload(&r, 1, p, sizeof(p));
	ck_assert_int_eq(F.nstate, 1);
	ck_assert_int_eq(h2client_up(F.cl), 1);
	PUMP(F.srv.nconns == 1, 5000);
	ck_assert_uint_eq(F.srv.nconns, 1);
	res_clear(&r);
	set_ok("gr2", 1, p, sizeof(p));
}
END_TEST

/* --- Cancel --------------------------------------------------------------- */

START_TEST(test_cancel)
{
	size_t n = 16 * MIB;
	uint8_t *p = pattern(n, 4);
	struct res a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 }, ok = { 0 };
	struct h2call *h;

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	/* Queued while the first attempt runs. */
	h = get_async("x", clock_now_ns() + 50 * MS, &a);
	ck_assert_ptr_nonnull(h);
	h2call_cancel(h);
	wait_up();
	set_ok("cx", 1, p, n);

	/* In flight: a 16 MiB reply cut off. */
	h = get_async("cx", 0, &b);
	PUMP(TAILQ_FIRST(&F.srv.conns)->nstreams > 0, 5000);
	h2call_cancel(h);

	/* Finished (fails at once: bad path) but not yet delivered. */
	{
		static const uint8_t none[1];
		struct h2body e = { .raw = none, .rawlen = 0 };

		h = h2client_unary_body(F.cl, "no-slash", &e, 0, res_done, &c);
		h2call_cancel(h);
	}
	/* A body by reference, cancelled before it went out: released. */
	h = set_async("cy", 1, p, n, 1, &d);
	h2call_cancel(h);

	pump_ms(300);
	ck_assert_int_eq(a.done + b.done + c.done + d.done, 0);
	PUMP(F.released == 1, 2000);
	ck_assert_int_eq(F.released, 1);
	/* The connection is fine. */
	get_async("cx", 0, &ok);
	wait_res(&ok, 10000);
	check_payload(&ok, 1, p, n);
	ck_assert_int_eq(F.nstate, 1);
	res_clear(&ok);
	free(p);
}
END_TEST

/* --- Many calls on one connection ----------------------------------------- */

static int
count_done(const struct res *r, int n)
{
	int i, d = 0;

	for (i = 0; i < n; i++)
		d += r[i].done;
	return d;
}

START_TEST(test_many_concurrent)
{
	enum { N = 1000 };
	uint8_t *p = pattern(1024, 5);
	struct res *r = calloc(N, sizeof(*r));
	int i, done;

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	wait_up();
	set_ok("many", 9, p, 1024);
	for (i = 0; i < N; i++)
		ck_assert_ptr_nonnull(get_async("many",
		    clock_now_ns() + 30000 * MS, &r[i]));
	PUMP((done = count_done(r, N)) == N, 30000);
	ck_assert_int_eq(done, N);
	for (i = 0; i < N; i++) {
		ck_assert_int_eq(r[i].done, 1);
		check_payload(&r[i], 9, p, 1024);
		res_clear(&r[i]);
	}
	ck_assert_uint_eq(F.srv.nconns, 1);
	free(r);
	free(p);
}
END_TEST

/* --- api_key -------------------------------------------------------------- */

START_TEST(test_api_key)
{
	char path[64];
	uint8_t p[8] = "k";
	struct h2client_opts good = { .api_key = "s3cret-key" };
	struct h2client_opts bad = { .api_key = "wrong" };
	struct res r = { 0 };
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/check_h2client_key.%ld",
	    (long)getpid());
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs("s3cret-key\n", f);
	fclose(f);
	srv_start(F.addr, path);
	unlink(path);

	client_new(F.addr, &good);
	wait_up();
	set_ok("keyed", 1, p, sizeof(p));
	h2client_free(F.cl);

	client_new(F.addr, &bad);
	get_async("keyed", 0, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_PERMISSION_DENIED);
	ck_assert_str_eq(r.msg, "invalid api_key");
	res_clear(&r);
	h2client_free(F.cl);

	client_new(F.addr, NULL);
	get_async("keyed", 0, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_UNAUTHENTICATED);
	ck_assert_str_eq(r.msg, "missing api_key metadata");
	res_clear(&r);
}
END_TEST

/* --- Targets -------------------------------------------------------------- */

START_TEST(test_dns_localhost)
{
	struct evdns_base *dns;
	char target[64], err[128];
	struct h2client_opts o = { 0 };
	uint8_t p[32] = "resolved";
	struct res r = { 0 };

	srv_start(F.addr, NULL);
	snprintf(target, sizeof(target), "localhost:%d", F.port);
	/* The caller's evdns base. */
	dns = evdns_base_new(F.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	ck_assert_ptr_nonnull(dns);
	o.target = target;
	F.nstate = 0;
	F.up = 0;
	F.cl = h2client_new(F.base, dns, &o, on_state, NULL, err,
	    sizeof(err));
	ck_assert_ptr_nonnull(F.cl);
	wait_up();
	set_ok("dns", 1, p, sizeof(p));
	h2client_free(F.cl);
	F.cl = NULL;
	evdns_base_free(dns, 0);

	/* The client's own. */
	client_new(target, NULL);
	wait_up();
	get_async("dns", 0, &r);
	wait_res(&r, 5000);
	check_payload(&r, 1, p, sizeof(p));
	res_clear(&r);
	h2client_free(F.cl);

	/* A name that does not resolve: down with the resolver's reason. */
	client_new("no-such-host.invalid:80", NULL);
	PUMP(F.nstate > 0, 10000);
	ck_assert_int_eq(F.up, 0);
	ck_assert_msg(strncmp(F.reason, "cannot resolve no-such-host.invalid",
	    35) == 0, "reason: %s", F.reason);
}
END_TEST

/* A nameserver that never answers: the attempt's deadline covers DNS,
 * and freeing the client with a lookup pending cancels it cleanly. */
START_TEST(test_dns_silent)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct evdns_base *dns;
	struct h2client_opts o = { .target = "central.test:2337",
	    .connect_timeout_ms = 300 };
	struct res r = { 0 };
	char ns[64], err[128];
	uint64_t t0;
	int fd;

	fd = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_ge(fd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(ns, sizeof(ns), "127.0.0.1:%d", ntohs(sin.sin_port));
	dns = evdns_base_new(F.base, 0);
	ck_assert_ptr_nonnull(dns);
	ck_assert_int_eq(evdns_base_nameserver_ip_add(dns, ns), 0);

	F.cl = h2client_new(F.base, dns, &o, on_state, NULL, err,
	    sizeof(err));
	ck_assert_ptr_nonnull(F.cl);
	t0 = clock_now_ns();
	get_async("x", 0, &r);
	wait_res(&r, 3000);
	ck_assert_int_eq(r.status, GRPC_UNAVAILABLE);
	ck_assert_str_eq(r.msg, "central cache unreachable: cannot resolve "
	    "central.test within 300ms");
	ck_assert_msg(r.at - t0 >= 290 * MS, "early");
	ck_assert_str_eq(F.reason, "cannot resolve central.test within "
	    "300ms");
	res_clear(&r);
	/* The next attempt is resolving again when the client goes. */
	pump_ms(200);
	h2client_free(F.cl);
	F.cl = NULL;
	pump_ms(50);
	evdns_base_free(dns, 0);
	close(fd);
}
END_TEST

START_TEST(test_unix_socket)
{
	char target[64];
	uint8_t p[32] = "unix";
	struct res r = { 0 };

	snprintf(target, sizeof(target), "unix:/tmp/check_h2client.%ld.sock",
	    (long)getpid());
	srv_start(target, NULL);
	client_new(target, NULL);
	wait_up();
	set_ok("ux", 1, p, sizeof(p));
	get_async("ux", 0, &r);
	wait_res(&r, 5000);
	check_payload(&r, 1, p, sizeof(p));
	res_clear(&r);
}
END_TEST

START_TEST(test_bad_options)
{
	static const char *const bad[] = { "nonsense", "host:", ":80",
	    "host:0", "host:99999", "[::1:80", "unix:", "a:b:80" };
	struct h2client_opts o = { 0 };
	char err[128];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.target = bad[i];
		err[0] = '\0';
		ck_assert_msg(h2client_new(F.base, NULL, &o, NULL, NULL, err,
		    sizeof(err)) == NULL, "%s accepted", bad[i]);
		ck_assert_msg(strstr(err, bad[i]) != NULL, "%s: %s", bad[i],
		    err);
	}
	/* TLS over a unix socket: no host name to verify unless given. */
	o.target = "unix:/tmp/nowhere.sock";
	o.ssl_ctx = tls_client_ctx_new(NULL, NULL, NULL, err, sizeof(err));
	ck_assert_msg(o.ssl_ctx != NULL, "%s", err);
	ck_assert_ptr_null(h2client_new(F.base, NULL, &o, NULL, NULL, err,
	    sizeof(err)));
	ck_assert_str_eq(err, "unix:/tmp/nowhere.sock: TLS over a unix socket "
	    "needs a server name");
	SSL_CTX_free(o.ssl_ctx);
}
END_TEST

/* Target i's stats. */
static struct h2client_target_stats
tstats(size_t i)
{
	struct h2client_target_stats st;

	ck_assert_ptr_nonnull(h2client_target(F.cl, i, &st));
	return st;
}

/* Two targets, the first refusing: the link fails over to the second,
 * and the DATA bytes of calls, each way, count at the second only,
 * exactly: the gRPC messages with their prefixes. */
START_TEST(test_target_bytes)
{
	char dead[64];
	const char *tl[2];
	struct h2client_opts o = { 0 };
	struct h2client_target_stats st;
	uint8_t *p = pattern(1000, 3);
	Alpcrun__V1__SharedData set = shared("tb", 1, 1, p, 1000);
	Alpcrun__V1__SharedData get = shared("tb", 0, 0, NULL, 0);
	size_t setlen = GRPC_PREFIX_LEN +
	    alpcrun__v1__shared_data__get_packed_size(&set);
	size_t getlen = GRPC_PREFIX_LEN +
	    alpcrun__v1__shared_data__get_packed_size(&get);
	struct res r = { 0 };

	snprintf(dead, sizeof(dead), "127.0.0.1:%d", free_port());
	tl[0] = dead;
	tl[1] = F.addr;
	o.targets = tl;
	o.ntargets = 2;
	srv_start(F.addr, NULL);
	client_new(F.addr, &o);
	wait_up();
	ck_assert_uint_eq(h2client_ntargets(F.cl), 2);
	ck_assert_str_eq(h2client_target(F.cl, 1, NULL), F.addr);
	st = tstats(1);
	ck_assert_int_eq(st.up, 1);
	ck_assert_uint_eq(st.sent_bytes, 0);
	ck_assert_uint_eq(st.received_bytes, 0);

	/* Set: its request up, an Empty reply (a prefix alone) down. */
	set_ok("tb", 1, p, 1000);
	st = tstats(1);
	ck_assert_uint_eq(st.calls, 1);
	ck_assert_uint_eq(st.sent_bytes, setlen);
	ck_assert_uint_eq(st.received_bytes, GRPC_PREFIX_LEN);

	/* Get: the payload down. */
	ck_assert_ptr_nonnull(get_async("tb", clock_now_ns() + 5000 * MS,
	    &r));
	wait_res(&r, 5000);
	check_payload(&r, 1, p, 1000);
	ck_assert_uint_gt(r.len, 1000);
	st = tstats(1);
	ck_assert_uint_eq(st.calls, 2);
	ck_assert_uint_eq(st.sent_bytes, setlen + getlen);
	ck_assert_uint_eq(st.received_bytes, 2 * GRPC_PREFIX_LEN + r.len);

	/* The first, never up, carried nothing. */
	st = tstats(0);
	ck_assert_int_eq(st.up, 0);
	ck_assert_uint_eq(st.calls, 0);
	ck_assert_uint_eq(st.sent_bytes, 0);
	ck_assert_uint_eq(st.received_bytes, 0);
	res_clear(&r);
	free(p);
}
END_TEST

/* --- Windows -------------------------------------------------------------- */

/* The receive window for a budget (node mode: max_inflight_bytes): the
 * budget itself within HTTP/2's initial window and the cap. */
START_TEST(test_window_sizing)
{
	ck_assert_uint_eq(h2client_window(0), H2CLIENT_WINDOW_MAX);
	ck_assert_uint_eq(h2client_window(1), 65535);
	ck_assert_uint_eq(h2client_window(65535), 65535);
	ck_assert_uint_eq(h2client_window(64 * 1024), 64 * 1024);
	ck_assert_uint_eq(h2client_window(5000000), 5000000);
	ck_assert_uint_eq(h2client_window(64ull * MIB), 64ull * MIB);
	ck_assert_uint_eq(h2client_window(H2CLIENT_WINDOW_MAX),
	    H2CLIENT_WINDOW_MAX);
	ck_assert_uint_eq(h2client_window(H2CLIENT_WINDOW_MAX + 1ull),
	    H2CLIENT_WINDOW_MAX);
	/* max_inflight_bytes' default and its largest value */
	ck_assert_uint_eq(h2client_window(1ull << 30), H2CLIENT_WINDOW_MAX);
	ck_assert_uint_eq(h2client_window(1ull << 40), H2CLIENT_WINDOW_MAX);
	/* HTTP/2's largest window is 2^31 - 1 */
	ck_assert_uint_le(H2CLIENT_WINDOW_MAX, 0x7fffffffu);
}
END_TEST

/* --- Limits --------------------------------------------------------------- */

START_TEST(test_max_message_size)
{
	struct h2client_opts o = { .max_message_size = 2048 };
	uint8_t *p = pattern(4096, 6);
	struct res r = { 0 };

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	wait_up();
	set_ok("m4k", 1, p, 4096);
	h2client_free(F.cl);

	client_new(F.addr, &o);
	wait_up();
	get_async("m4k", 0, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_RESOURCE_EXHAUSTED);
	ck_assert_msg(strstr(r.msg, "exceeds max_message_size 2048") != NULL,
	    "%s", r.msg);
	ck_assert_ptr_null(r.data);
	res_clear(&r);

	set_async("m4k2", 1, p, 4096, 0, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_RESOURCE_EXHAUSTED);
	ck_assert_msg(strncmp(r.msg, "request of ", 11) == 0, "%s", r.msg);
	res_clear(&r);

	/* The connection still serves small calls. */
	set_ok("small", 1, p, 100);
	ck_assert_int_eq(F.nstate, 1);
	free(p);
}
END_TEST

/* --- Streaming ------------------------------------------------------------ */

static int watch_msgs;
static int watch_status = -1;

static void
watch_msg(void *arg, const uint8_t *m, size_t len)
{
	Grpc__Health__V1__HealthCheckResponse *r;

	r = grpc__health__v1__health_check_response__unpack(NULL, len, m);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->status,
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	grpc__health__v1__health_check_response__free_unpacked(r, NULL);
	watch_msgs++;
}

static void
watch_done(void *arg, struct h2reply *r)
{
	ck_assert_ptr_null(r->data);
	watch_status = r->status;
	ck_assert_str_eq(r->message, "server shutting down");
}

START_TEST(test_stream_watch)
{
	Grpc__Health__V1__HealthCheckRequest req =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

	watch_msgs = 0;
	watch_status = -1;
	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	req.service = "alpcrun.v1.Cache";
	ck_assert_ptr_nonnull(h2client_stream(F.cl, P_WATCH, &req.base, 0,
	    watch_msg, watch_done, NULL));
	PUMP(watch_msgs == 1, 5000);
	ck_assert_int_eq(watch_msgs, 1);
	pump_ms(50);
	ck_assert_int_eq(watch_status, -1);
	server_drain(&F.srv);
	PUMP(watch_status != -1, 5000);
	ck_assert_int_eq(watch_status, GRPC_UNAVAILABLE);
	ck_assert_int_eq(watch_msgs, 1);
}
END_TEST

/* --- Freeing with calls outstanding --------------------------------------- */

static void
free_in_done(void *arg, struct h2reply *r)
{
	struct res *x = arg;

	x->done++;
	h2client_free(F.cl);	/* from a callback: allowed */
	F.cl = NULL;
}

START_TEST(test_free_with_calls)
{
	size_t n = 8 * MIB;
	uint8_t *p = pattern(n, 7);
	struct res a = { 0 }, b = { 0 }, c = { 0 };

	srv_start(F.addr, NULL);
	client_new(F.addr, NULL);
	/* Queued, then dropped: no done. */
	get_async("x", 0, &a);
	h2client_free(F.cl);
	F.cl = NULL;
	pump_ms(50);
	ck_assert_int_eq(a.done, 0);

	client_new(F.addr, NULL);
	wait_up();
	set_ok("fw", 1, p, n);
	/* In flight both ways, then dropped. */
	get_async("fw", 0, &a);
	set_async("fw2", 1, p, n, 1, &b);
	pump_ms(5);
	h2client_free(F.cl);
	F.cl = NULL;
	PUMP(F.released == 1, 2000);
	ck_assert_int_eq(F.released, 1);
	ck_assert_int_eq(a.done + b.done, 0);

	/* Freed from a done callback with a stream open (health Watch
	 * never ends by itself). */
	client_new(F.addr, NULL);
	wait_up();
	{
		Grpc__Health__V1__HealthCheckRequest hr =
		    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
		Alpcrun__V1__SharedData sd = shared("nope", 0, 0, NULL, 0);

		watch_msgs = 0;
		watch_status = -1;
		h2client_stream(F.cl, P_WATCH, &hr.base, 0, watch_msg,
		    watch_done, NULL);
		PUMP(watch_msgs == 1, 5000);
		ck_assert_int_eq(watch_msgs, 1);
		h2client_unary(F.cl, P_GET, &sd.base, 0, free_in_done, &c);
	}
	PUMP(c.done, 5000);
	ck_assert_int_eq(c.done, 1);
	ck_assert_ptr_null(F.cl);
	pump_ms(50);
	ck_assert_int_eq(watch_status, -1);
	free(p);
}
END_TEST

/* --- Response metadata ---------------------------------------------------- */

#define INC	"00000000deadbeef"
#define GEN	"0123456789abcdef"
#define P_CHECK	"/grpc.health.v1.Health/Check"

static struct h2call *meta_call;	/* the streaming call of the test */
/* What h2call_meta() said in on_msg. */
static char meta_seen[GRPC_META_VALUE_MAX + 1];
static int meta_msgs;

static void
meta_msg(void *arg, const uint8_t *m, size_t len)
{
	const char *v = h2call_meta(meta_call, "alpcrun-incarnation");

	snprintf(meta_seen, sizeof(meta_seen), "%s", v != NULL ? v : "(none)");
	meta_msgs++;
}

/* The real server's server-wide header, on a health Check, an error
 * (Trailers-Only) and a stream's HEADERS (read from on_msg). */
START_TEST(test_meta_from_server)
{
	Grpc__Health__V1__HealthCheckRequest hr =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	struct res r = { 0 };

	srv_start(F.addr, NULL);
	grpc_server_set_meta("alpcrun-incarnation", INC);
	client_new(F.addr, NULL);
	wait_up();

	h2client_unary(F.cl, P_CHECK, &hr.base, 0, res_done, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_str_eq(mval(&r, "alpcrun-incarnation"), INC);
	ck_assert_ptr_null(mval(&r, "alpcrun-generation"));
	res_clear(&r);

	get_async("nope", 0, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_NOT_FOUND);
	ck_assert_str_eq(mval(&r, "alpcrun-incarnation"), INC);
	res_clear(&r);

	meta_msgs = 0;
	meta_call = h2client_stream(F.cl, P_WATCH, &hr.base, 0, meta_msg,
	    res_done, &r);
	ck_assert_ptr_nonnull(meta_call);
	PUMP(meta_msgs == 1, 5000);
	ck_assert_int_eq(meta_msgs, 1);
	ck_assert_str_eq(meta_seen, INC);
	h2call_cancel(meta_call);

	/* A new identity, then none. */
	grpc_server_set_meta("alpcrun-incarnation", "00000000cafef00d");
	h2client_unary(F.cl, P_CHECK, &hr.base, 0, res_done, &r);
	wait_res(&r, 5000);
	ck_assert_str_eq(mval(&r, "alpcrun-incarnation"), "00000000cafef00d");
	res_clear(&r);
	grpc_server_set_meta("alpcrun-incarnation", NULL);
	h2client_unary(F.cl, P_CHECK, &hr.base, 0, res_done, &r);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_uint_eq(r.have, 0);
	res_clear(&r);
}
END_TEST

/*
 * The scripted server: nghttp2's server session on our end of a
 * bufferevent_pair, answering each request as S says: its HEADERS with
 * S.hdrs after :status and content-type, then one empty message and
 * trailers with grpc-status 0 and S.trls; or, with S.status nonzero, a
 * Trailers-Only response with that grpc-status and S.hdrs.
 */
static struct {
	struct bufferevent	*bev;
	nghttp2_session		*h2;
	const nghttp2_nv	*hdrs, *trls;
	size_t			 nhdrs, ntrls;
	int			 status;
	/* The alpcrun-* fields of the last request, in order, and the
	 * number of requests seen. */
	struct {
		char	name[GRPC_META_NAME_MAX + 1];
		char	value[GRPC_REQ_META_VALUE_MAX + 1];
	}			 rq[16];
	size_t			 nrq;
	int			 requests;
	/* Set: the reply's DATA instead of one empty message. */
	const uint8_t		*body;
	size_t			 bodylen;
} S;

#define SNV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, \
	sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE }

static ssize_t
s_send(nghttp2_session *h2, const uint8_t *data, size_t len, int flags,
    void *arg)
{
	ck_assert_int_eq(bufferevent_write(S.bev, data, len), 0);
	return (ssize_t)len;
}

static ssize_t
s_body(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	nghttp2_nv nv[8] = { SNV("grpc-status", "0") };

	ck_assert_uint_lt(S.ntrls, 8);
	if (S.ntrls > 0)
		memcpy(nv + 1, S.trls, S.ntrls * sizeof(nv[0]));
	*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	ck_assert_int_eq(nghttp2_submit_trailer(h2, id, nv, 1 + S.ntrls), 0);
	if (S.body != NULL) {
		ck_assert_uint_le(S.bodylen, len);
		memcpy(buf, S.body, S.bodylen);
		return (ssize_t)S.bodylen;
	}
	memset(buf, 0, GRPC_PREFIX_LEN);	/* one empty message */
	return GRPC_PREFIX_LEN;
}

static int
s_frame(nghttp2_session *h2, const nghttp2_frame *f, void *arg)
{
	static const char *const codes[] = { "0", "1", "2", "3", "4", "5" };
	nghttp2_nv nv[16] = { SNV(":status", "200"),
	    SNV("content-type", "application/grpc") };
	nghttp2_data_provider prd = { .read_callback = s_body };
	size_t n = 2;

	if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	ck_assert_uint_lt(S.nhdrs, 13);
	if (S.nhdrs > 0)		/* S.hdrs may be NULL then */
		memcpy(nv + n, S.hdrs, S.nhdrs * sizeof(nv[0]));
	n += S.nhdrs;
	if (S.status != 0) {
		nv[n].name = (uint8_t *)"grpc-status";
		nv[n].namelen = 11;
		nv[n].value = (uint8_t *)codes[S.status];
		nv[n].valuelen = strlen(codes[S.status]);
		nv[n++].flags = NGHTTP2_NV_FLAG_NONE;
	}
	ck_assert_int_eq(nghttp2_submit_response(h2, f->hd.stream_id, nv, n,
	    S.status != 0 ? NULL : &prd), 0);
	return 0;
}

static int
s_begin(nghttp2_session *h2, const nghttp2_frame *f, void *arg)
{
	if (f->hd.type == NGHTTP2_HEADERS &&
	    f->headers.cat == NGHTTP2_HCAT_REQUEST) {
		S.requests++;
		S.nrq = 0;
	}
	return 0;
}

static int
s_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
    void *arg)
{
	if (f->headers.cat != NGHTTP2_HCAT_REQUEST || namelen < 8 ||
	    memcmp(name, GRPC_META_PREFIX, 8) != 0)
		return 0;
	ck_assert_uint_lt(S.nrq, 16);
	ck_assert_uint_le(namelen, GRPC_META_NAME_MAX);
	ck_assert_uint_le(valuelen, GRPC_REQ_META_VALUE_MAX);
	memcpy(S.rq[S.nrq].name, name, namelen);
	S.rq[S.nrq].name[namelen] = '\0';
	memcpy(S.rq[S.nrq].value, value, valuelen);
	S.rq[S.nrq].value[valuelen] = '\0';
	S.nrq++;
	return 0;
}

/* The value of the last request's field name, NULL when it had none;
 * fails when it had the name more than once. */
static const char *
s_rq(const char *name)
{
	const char *v = NULL;
	size_t i;

	for (i = 0; i < S.nrq; i++)
		if (strcmp(S.rq[i].name, name) == 0) {
			ck_assert_msg(v == NULL, "%s sent twice", name);
			v = S.rq[i].value;
		}
	return v;
}

static void
s_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);

	ck_assert_int_eq(nghttp2_session_mem_recv(S.h2,
	    evbuffer_pullup(in, -1), len), (ssize_t)len);
	evbuffer_drain(in, len);
	ck_assert_int_eq(nghttp2_session_send(S.h2), 0);
}

/* Start the scripted server and a client connected to it. */
static void
s_start(void)
{
	struct h2client_opts o = { .target = "127.0.0.1:1" };
	nghttp2_session_callbacks *cbs;
	struct bufferevent *pair[2];
	char err[256];

	ck_assert_int_eq(bufferevent_pair_new(F.base, BEV_OPT_CLOSE_ON_FREE |
	    BEV_OPT_DEFER_CALLBACKS, pair), 0);
	S.bev = pair[1];
	bufferevent_setcb(S.bev, s_read, NULL, NULL, NULL);
	bufferevent_enable(S.bev, EV_READ | EV_WRITE);
	ck_assert_int_eq(nghttp2_session_callbacks_new(&cbs), 0);
	nghttp2_session_callbacks_set_send_callback(cbs, s_send);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, s_frame);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, s_begin);
	nghttp2_session_callbacks_set_on_header_callback(cbs, s_header);
	ck_assert_int_eq(nghttp2_session_server_new(&S.h2, cbs, NULL), 0);
	nghttp2_session_callbacks_del(cbs);
	ck_assert_int_eq(nghttp2_submit_settings(S.h2, NGHTTP2_FLAG_NONE,
	    NULL, 0), 0);
	ck_assert_int_eq(nghttp2_session_send(S.h2), 0);
	F.cl = h2client_new_bev(F.base, &o, pair[0], on_state, NULL, err,
	    sizeof(err));
	ck_assert_msg(F.cl != NULL, "h2client_new_bev: %s", err);
	wait_up();
}

static void
s_stop(void)
{
	h2client_free(F.cl);
	F.cl = NULL;
	nghttp2_session_del(S.h2);
	bufferevent_free(S.bev);
	memset(&S, 0, sizeof(S));
}

/* One unary call to the scripted server, its outcome in r. */
static void
s_call(struct res *r)
{
	static const uint8_t none[1];
	struct h2body b = { .raw = none, .rawlen = 0 };

	res_clear(r);
	ck_assert_ptr_nonnull(h2client_unary_body(F.cl, P_GET, &b, 0,
	    res_done, r));
	wait_res(r, 5000);
}

#define V64	"0123456789abcdef0123456789abcdef" \
		"0123456789abcdef0123456789abcdef"

/* From HEADERS and trailers: only alpcrun-* with a value that fits; a
 * name in both, the trailers' value. */
/* A broken server's reply into the caller's buffer: a compressed message
 * fails the call and leaves the buffer to the caller (freed once, by the
 * test: the sanitizers and valgrind see a second free); a message after an
 * empty one is refused as with any buffer. */
START_TEST(test_reply_into_broken_server)
{
	static const uint8_t compressed[] = { 1, 0, 0, 0, 4, 'a', 'b', 'c',
	    'd' };
	static const uint8_t two[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 'x', 'y',
	    'z' };
	static const uint8_t none[1];
	struct h2body b = { .raw = none, .rawlen = 0 };
	struct res r = { 0 };

	s_start();
	S.body = compressed;
	S.bodylen = sizeof(compressed);
	memset(&X, 0, sizeof(X));
	X.call = h2client_unary_body(F.cl, P_GET, &b, 0, res_done, &r);
	h2call_reply_into(X.call, into_alloc, NULL, NULL);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_INTERNAL);
	ck_assert_ptr_null(r.data);
	ck_assert_int_eq(X.allocs, 1);
	free(X.buf);

	S.body = two;
	S.bodylen = sizeof(two);
	memset(&X, 0, sizeof(X));
	res_clear(&r);
	X.call = h2client_unary_body(F.cl, P_GET, &b, 0, res_done, &r);
	h2call_reply_into(X.call, into_alloc, NULL, NULL);
	wait_res(&r, 5000);
	ck_assert_msg(r.status == GRPC_INTERNAL, "%d %s", r.status, r.msg);
	ck_assert_ptr_null(r.data);
	free(X.buf);
	res_clear(&r);
	s_stop();
}
END_TEST

START_TEST(test_meta_headers_and_trailers)
{
	const nghttp2_nv hdrs[] = {
		SNV("alpcrun-incarnation", INC),
		SNV("x-other", "1"),
		SNV("alpcrun-long", V64 "x"),
		SNV("alpcrun-a", V64),
	};
	const nghttp2_nv trls[] = {
		SNV("alpcrun-generation", GEN),
		SNV("alpcrun-incarnation", "00000000cafef00d"),
	};
	struct res r = { 0 };

	s_start();
	S.hdrs = hdrs;
	S.nhdrs = 4;
	S.trls = trls;
	S.ntrls = 2;
	s_call(&r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_str_eq(mval(&r, "alpcrun-incarnation"), "00000000cafef00d");
	ck_assert_str_eq(mval(&r, "alpcrun-generation"), GEN);
	ck_assert_str_eq(mval(&r, "alpcrun-a"), V64);	/* 64: fits */
	ck_assert_ptr_null(mval(&r, "alpcrun-long"));	/* 65: ignored */
	ck_assert_ptr_null(mval(&r, "x-other"));		/* not ours */

	/* Each call its own: the next reply has none. */
	S.nhdrs = S.ntrls = 0;
	s_call(&r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_uint_eq(r.have, 0);
	res_clear(&r);
	s_stop();
}
END_TEST

/* Four names at most; further ones ignored, the call fine. */
START_TEST(test_meta_bounded)
{
	const nghttp2_nv hdrs[] = {
		SNV("alpcrun-a", "a"), SNV("alpcrun-b", "b"),
		SNV("alpcrun-c", "c"), SNV("alpcrun-d", "d"),
		SNV("alpcrun-e", "e"),
		SNV("alpcrun-a", "aa"),		/* known: still replaced */
	};
	const nghttp2_nv trls[] = { SNV("alpcrun-generation", GEN) };
	struct res r = { 0 };

	ck_assert_int_eq(H2_META_MAX, 4);
	s_start();
	S.hdrs = hdrs;
	S.nhdrs = 6;
	S.trls = trls;
	S.ntrls = 1;
	s_call(&r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_str_eq(mval(&r, "alpcrun-a"), "aa");
	ck_assert_str_eq(mval(&r, "alpcrun-b"), "b");
	ck_assert_str_eq(mval(&r, "alpcrun-c"), "c");
	ck_assert_str_eq(mval(&r, "alpcrun-d"), "d");
	ck_assert_ptr_null(mval(&r, "alpcrun-e"));
	ck_assert_ptr_null(mval(&r, "alpcrun-generation"));
	res_clear(&r);
	s_stop();
}
END_TEST

/* A Trailers-Only response: its one HEADERS frame. */
START_TEST(test_meta_trailers_only)
{
	const nghttp2_nv hdrs[] = {
		SNV("alpcrun-incarnation", INC),
		SNV("alpcrun-generation", GEN),
		SNV("grpc-message", "gone"),
	};
	struct res r = { 0 };

	s_start();
	S.hdrs = hdrs;
	S.nhdrs = 3;
	S.status = GRPC_NOT_FOUND;
	s_call(&r);
	ck_assert_int_eq(r.status, GRPC_NOT_FOUND);
	ck_assert_str_eq(r.msg, "gone");
	ck_assert_str_eq(mval(&r, "alpcrun-incarnation"), INC);
	ck_assert_str_eq(mval(&r, "alpcrun-generation"), GEN);
	res_clear(&r);
	s_stop();
}
END_TEST

/* A stream: h2call_meta() from on_msg (HEADERS), done's from trailers. */
START_TEST(test_meta_stream)
{
	Grpc__Health__V1__HealthCheckRequest hr =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	const nghttp2_nv hdrs[] = { SNV("alpcrun-incarnation", INC) };
	const nghttp2_nv trls[] = { SNV("alpcrun-generation", GEN) };
	struct res r = { 0 };

	s_start();
	S.hdrs = hdrs;
	S.nhdrs = 1;
	S.trls = trls;
	S.ntrls = 1;
	meta_msgs = 0;
	meta_call = h2client_stream(F.cl, P_WATCH, &hr.base, 0, meta_msg,
	    res_done, &r);
	ck_assert_ptr_nonnull(meta_call);
	wait_res(&r, 5000);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_int_eq(meta_msgs, 1);
	ck_assert_str_eq(meta_seen, INC);
	ck_assert_str_eq(mval(&r, "alpcrun-incarnation"), INC);
	ck_assert_str_eq(mval(&r, "alpcrun-generation"), GEN);
	ck_assert_ptr_null(h2call_meta(NULL, "alpcrun-incarnation"));
	res_clear(&r);
	s_stop();
}
END_TEST

/* --- Request metadata ----------------------------------------------------- */

#define P_META	"/t.T/Meta"

/* What the real server's handler found with call_meta(). */
static char seen_via[GRPC_REQ_META_VALUE_MAX + 1];
static char seen_x[GRPC_REQ_META_VALUE_MAX + 1];
static int seen_calls;

static void
h_meta(struct call *call, ProtobufCMessage *req)
{
	Alpcrun__V1__SharedData sd = ALPCRUN__V1__SHARED_DATA__INIT;
	const char *v;

	v = call_meta(call, "alpcrun-via");
	snprintf(seen_via, sizeof(seen_via), "%s", v != NULL ? v : "(none)");
	v = call_meta(call, "alpcrun-x");
	snprintf(seen_x, sizeof(seen_x), "%s", v != NULL ? v : "(none)");
	seen_calls++;
	protobuf_c_message_free_unpacked(req, NULL);
	call_reply(call, &sd.base, NULL);
}

static const struct method meta_methods[] = {
	{ P_META, MM_GET, &alpcrun__v1__shared_data__descriptor, h_meta,
	    NULL, 0 },
};

/* One call with nmeta headers of its own (to path), its outcome in r. */
static void
meta_call_with(const char *path, const struct h2reqmeta *m, size_t nmeta,
    struct res *r)
{
	static const uint8_t none[1];
	struct h2body b = { .raw = none, .rawlen = 0, .meta = m,
	    .nmeta = nmeta };

	res_clear(r);
	ck_assert_ptr_nonnull(h2client_unary_body(F.cl, path, &b, 0,
	    res_done, r));
	wait_res(r, 5000);
}

/* A value of n bytes: 'v' and a digit at the end. */
static char *
long_value(size_t n)
{
	char *v = malloc(n + 1);

	ck_assert_ptr_nonnull(v);
	memset(v, 'v', n);
	v[n - 1] = '9';
	v[n] = '\0';
	return v;
}

/* The real server's handler reads them with call_meta(): the client's on
 * every call, a call's own instead of the client's of that name for that
 * call only, none once removed. */
START_TEST(test_reqmeta_to_server)
{
	const struct h2reqmeta own[] = {
		{ "alpcrun-via", "n2,n1" }, { "alpcrun-x", "y" },
	};
	char *max = long_value(GRPC_REQ_META_VALUE_MAX);
	struct res r = { 0 };

	seen_calls = 0;
	srv_start(F.addr, NULL);
	grpc_server_configure(meta_methods, 1, F.conf.max_message_size);
	client_new(F.addr, NULL);
	wait_up();

	meta_call_with(P_META, NULL, 0, &r);	/* none yet */
	ck_assert_msg(r.status == GRPC_OK, "%d %s", r.status, r.msg);
	ck_assert_str_eq(seen_via, "(none)");

	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", "n1"), 0);
	meta_call_with(P_META, NULL, 0, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_str_eq(seen_via, "n1");
	ck_assert_str_eq(seen_x, "(none)");

	meta_call_with(P_META, own, 2, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_str_eq(seen_via, "n2,n1");
	ck_assert_str_eq(seen_x, "y");

	meta_call_with(P_META, NULL, 0, &r);	/* that call's only */
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_str_eq(seen_via, "n1");
	ck_assert_str_eq(seen_x, "(none)");

	/* A new value, the longest there is. */
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", max), 0);
	meta_call_with(P_META, NULL, 0, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_str_eq(seen_via, max);

	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", NULL), 0);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", NULL), 0);
	meta_call_with(P_META, NULL, 0, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_str_eq(seen_via, "(none)");
	ck_assert_int_eq(seen_calls, 6);
	res_clear(&r);
	free(max);
}
END_TEST

/* On the wire (the scripted server): one field per name, a call's own
 * in place of the client's, the client's again on the next call. */
START_TEST(test_reqmeta_wire)
{
	const struct h2reqmeta own[] = { { "alpcrun-via", "own" } };
	struct res r = { 0 };

	s_start();
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", "c1"), 0);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-a", "a"), 0);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", "c2"), 0);
	meta_call_with(P_GET, NULL, 0, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_uint_eq(S.nrq, 2);
	ck_assert_str_eq(s_rq("alpcrun-via"), "c2");
	ck_assert_str_eq(s_rq("alpcrun-a"), "a");

	meta_call_with(P_GET, own, 1, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_uint_eq(S.nrq, 2);
	ck_assert_str_eq(s_rq("alpcrun-via"), "own");
	ck_assert_str_eq(s_rq("alpcrun-a"), "a");

	meta_call_with(P_GET, NULL, 0, &r);
	ck_assert_uint_eq(S.nrq, 2);
	ck_assert_str_eq(s_rq("alpcrun-via"), "c2");

	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-a", NULL), 0);
	meta_call_with(P_GET, NULL, 0, &r);
	ck_assert_uint_eq(S.nrq, 1);
	ck_assert_ptr_null(s_rq("alpcrun-a"));
	ck_assert_str_eq(s_rq("alpcrun-via"), "c2");
	ck_assert_int_eq(S.requests, 4);
	res_clear(&r);
	s_stop();
}
END_TEST

/* Breaking the rules: h2client_set_meta() refuses and changes nothing; a
 * call's own fails that call (INTERNAL, never sent), not the next. */
START_TEST(test_reqmeta_bad)
{
	char *max = long_value(GRPC_REQ_META_VALUE_MAX);
	char *over = long_value(GRPC_REQ_META_VALUE_MAX + 1);
	const struct h2reqmeta longv[] = { { "alpcrun-via", "ok" },
	    { "alpcrun-long", over } };
	const struct h2reqmeta maxv[] = { { "alpcrun-long", max } };
	const struct h2reqmeta badname[] = { { "x-via", "1" } };
	const struct h2reqmeta upper[] = { { "alpcrun-Via", "1" } };
	const struct h2reqmeta ctl[] = { { "alpcrun-via", "a\nb" } };
	const struct h2reqmeta nullv[] = { { "alpcrun-via", NULL } };
	struct res r = { 0 };
	int before;

	s_start();
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", "c1"), 0);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", over), -1);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", "a\nb"), -1);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-via", " a"), -1);
	ck_assert_int_eq(h2client_set_meta(F.cl, "x-via", "1"), -1);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-Via", "1"), -1);
	ck_assert_int_eq(h2client_set_meta(F.cl, NULL, "1"), -1);
	meta_call_with(P_GET, NULL, 0, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_uint_eq(S.nrq, 1);
	ck_assert_str_eq(s_rq("alpcrun-via"), "c1");

	before = S.requests;
	meta_call_with(P_GET, longv, 2, &r);
	ck_assert_int_eq(r.status, GRPC_INTERNAL);
	ck_assert_str_eq(r.msg, "bad request metadata alpcrun-long");
	meta_call_with(P_GET, badname, 1, &r);
	ck_assert_int_eq(r.status, GRPC_INTERNAL);
	ck_assert_str_eq(r.msg, "bad request metadata x-via");
	meta_call_with(P_GET, upper, 1, &r);
	ck_assert_int_eq(r.status, GRPC_INTERNAL);
	ck_assert_str_eq(r.msg, "bad request metadata alpcrun-Via");
	meta_call_with(P_GET, ctl, 1, &r);
	ck_assert_int_eq(r.status, GRPC_INTERNAL);
	ck_assert_str_eq(r.msg, "bad request metadata alpcrun-via");
	meta_call_with(P_GET, nullv, 1, &r);
	ck_assert_int_eq(r.status, GRPC_INTERNAL);
	ck_assert_str_eq(r.msg, "bad request metadata alpcrun-via");
	pump_ms(20);
	ck_assert_int_eq(S.requests, before);	/* none went out */

	/* The longest value is fine, and the link still works. */
	meta_call_with(P_GET, maxv, 1, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_str_eq(s_rq("alpcrun-long"), max);
	ck_assert_str_eq(s_rq("alpcrun-via"), "c1");
	ck_assert_int_eq(S.requests, before + 1);
	ck_assert(h2client_up(F.cl));
	res_clear(&r);
	s_stop();
	free(max);
	free(over);
}
END_TEST

/* GRPC_REQ_META_MAX names of each: a fifth client name is refused until
 * one is removed (a known one may still change); a call's own five fail
 * the call; four of each go out together. */
START_TEST(test_reqmeta_bounded)
{
	static const char *const names[] = { "alpcrun-a", "alpcrun-b",
	    "alpcrun-c", "alpcrun-d", "alpcrun-e" };
	const struct h2reqmeta own[] = {
		{ "alpcrun-o1", "1" }, { "alpcrun-o2", "2" },
		{ "alpcrun-o3", "3" }, { "alpcrun-o4", "4" },
		{ "alpcrun-o5", "5" },
	};
	struct res r = { 0 };
	size_t i;
	int before;

	ck_assert_int_eq(GRPC_REQ_META_MAX, 4);
	s_start();
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(h2client_set_meta(F.cl, names[i], "v"), 0);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-e", "v"), -1);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-a", "a2"), 0);
	meta_call_with(P_GET, NULL, 0, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_uint_eq(S.nrq, 4);
	ck_assert_str_eq(s_rq("alpcrun-a"), "a2");
	ck_assert_ptr_null(s_rq("alpcrun-e"));

	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-b", NULL), 0);
	ck_assert_int_eq(h2client_set_meta(F.cl, "alpcrun-e", "e"), 0);
	meta_call_with(P_GET, NULL, 0, &r);
	ck_assert_uint_eq(S.nrq, 4);
	ck_assert_ptr_null(s_rq("alpcrun-b"));
	ck_assert_str_eq(s_rq("alpcrun-e"), "e");

	before = S.requests;
	meta_call_with(P_GET, own, 5, &r);
	ck_assert_int_eq(r.status, GRPC_INTERNAL);
	ck_assert_str_eq(r.msg, "bad request metadata (too many)");
	pump_ms(20);
	ck_assert_int_eq(S.requests, before);

	meta_call_with(P_GET, own, 4, &r);
	ck_assert_int_eq(r.status, GRPC_OK);
	ck_assert_uint_eq(S.nrq, 8);
	ck_assert_str_eq(s_rq("alpcrun-o4"), "4");
	ck_assert_str_eq(s_rq("alpcrun-e"), "e");
	res_clear(&r);
	s_stop();
}
END_TEST

/* --- Suite ---------------------------------------------------------------- */

static Suite *
h2client_suite(void)
{
	Suite *s = suite_create("h2client");
	TCase *tc;

	tc = tcase_create("calls");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_roundtrip_1k);
	tcase_add_test(tc, test_errors_pass_through);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_many_concurrent);
	tcase_add_test(tc, test_api_key);
	tcase_add_test(tc, test_max_message_size);
	tcase_add_test(tc, test_stream_watch);
	tcase_add_test(tc, test_free_with_calls);
	suite_add_tcase(s, tc);

	/* 64 MiB each way, and the drain's 4 x 16 MiB: slower under
	 * valgrind. */
	tc = tcase_create("large");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_roundtrip_64m);
	tcase_add_test(tc, test_reply_into);
	tcase_add_test(tc, test_reply_into_cut);
	tcase_add_test(tc, test_goaway_drain);
	tcase_add_test(tc, test_goaway_retry);
	suite_add_tcase(s, tc);

	tc = tcase_create("link");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_deadline_silent_listener);
	tcase_add_test(tc, test_ping_timeout);
	tcase_add_test(tc, test_refused_then_reconnect);
	tcase_add_test(tc, test_down_reason_change);
	tcase_add_test(tc, test_dns_localhost);
	tcase_add_test(tc, test_dns_silent);
	tcase_add_test(tc, test_unix_socket);
	tcase_add_test(tc, test_bad_options);
	tcase_add_test(tc, test_target_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("meta");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_meta_from_server);
	tcase_add_test(tc, test_meta_headers_and_trailers);
	tcase_add_test(tc, test_reply_into_broken_server);
	tcase_add_test(tc, test_meta_bounded);
	tcase_add_test(tc, test_meta_trailers_only);
	tcase_add_test(tc, test_meta_stream);
	tcase_add_test(tc, test_reqmeta_to_server);
	tcase_add_test(tc, test_reqmeta_wire);
	tcase_add_test(tc, test_reqmeta_bad);
	tcase_add_test(tc, test_reqmeta_bounded);
	suite_add_tcase(s, tc);

	tc = tcase_create("windows");
	tcase_add_test(tc, test_window_sizing);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(h2client_suite());
}
