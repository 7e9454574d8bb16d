/*
 * fuzz_h2client.c: the client side of an HTTP/2 connection (h2client.c,
 * what a node speaks to central) fed raw server bytes, with no socket.
 *
 * A node must survive a hostile or broken central: whatever central
 * sends, the client must not crash, leak, call back twice, or lose track
 * of the reply bytes it reports as held.
 *
 * The input: one control byte, then records of a 2-byte big-endian length
 * and that many bytes (the last record takes what is left). Per input: a
 * fresh event loop, a bufferevent_pair, and h2client_new_bev() on one end;
 * the calls the control byte asks for are started at once (they wait for
 * the server's SETTINGS, then go out in this order, so on streams 1, 3, 5
 * of those started):
 *	bit 0	a unary Get (with a progress hook)
 *	bit 1	a server-streaming WatchSharedData (the change feed)
 *	bit 2	a unary Set whose 70 KiB body is sent by reference (a
 *		release callback, as node mode forwards writes)
 *	bit 3	cancel the streaming call after the first record
 *	bit 4	free the client after the second record (calls in flight)
 *	bit 5	from the unary call's done, start one more unary call
 * Each record is written into the other end and the loop run until idle;
 * then the server's EOF, and everything freed. The client's output is
 * discarded. Timers do not fire (no deadlines, no PINGs, a 60 s connect
 * timeout): a run is deterministic, apart from a reconnect attempt after
 * a lost connection, which goes to a unix socket that does not exist.
 *
 * Checked: done at most once per call, never on_msg after done, every
 * status a gRPC code with a message; the reply bytes reported held go back
 * to 0 once every call is done; a release callback runs exactly once.
 * FUZZ_VERBOSE=1 logs at debug and prints each call's outcome.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "grpc.h"
#include "h2client.h"
#include "log.h"
#include "fuzz.h"

#define PATH_GET	"/alpcrun.v1.Cache/GetSharedData"
#define PATH_SET	"/alpcrun.v1.Cache/SetSharedData"
#define PATH_WATCH	"/alpcrun.v1.Cache/WatchSharedData"
#define MAX_MESSAGE	(96u << 10)	/* a too-large reply within 96 KiB */
#define BODY_LEN	(70u << 10)	/* more than one stream window */

enum { C_UNARY, C_STREAM, C_BODY, C_AGAIN, NCALLS };

struct slot {
	struct h2call	*hc;
	int		 started;
	int		 done;
	size_t		 msgs;
};

static struct slot slots[NCALLS];
static struct h2client *client;
static int verbose;
static int again;		/* bit 5 */
static int64_t held;		/* on_reply_mem's sum */
static int releases;
static uint8_t body_payload[BODY_LEN];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	signal(SIGPIPE, SIG_IGN);
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	log_open("stderr", verbose ? "debug" : "error");
	memset(body_payload, 'b', sizeof(body_payload));
	return 0;
}

static void
reply_mem(void *arg, int64_t delta)
{
	held += delta;
	FUZZ_ASSERT(held >= 0);
}

static void
on_state(void *arg, int up, const char *reason)
{
	FUZZ_ASSERT(reason != NULL);
	if (verbose)
		fprintf(stderr, "link %s %s\n", up ? "up" : "down", reason);
}

static void
progress(void *arg, uint64_t sent, uint64_t send_total, uint64_t received,
    uint64_t recv_total)
{
	FUZZ_ASSERT(sent <= send_total);
}

static struct h2call *start_unary(int);

static void
done(void *arg, struct h2reply *r)
{
	struct slot *s = arg;

	FUZZ_ASSERT(!s->done);
	FUZZ_ASSERT(r->status >= 0 && r->status <= GRPC_UNAUTHENTICATED);
	FUZZ_ASSERT(r->message != NULL);
	FUZZ_ASSERT(r->status == GRPC_OK || r->data == NULL);
	FUZZ_ASSERT(s != &slots[C_STREAM] || r->data == NULL);
	if (r->data != NULL) {
		Alpcrun__V1__SharedData *m;

		/* What node.c does with a fetched reply, first of all. */
		m = alpcrun__v1__shared_data__unpack(NULL, r->len, r->data);
		if (m != NULL)
			alpcrun__v1__shared_data__free_unpacked(m, NULL);
	}
	s->done = 1;
	s->hc = NULL;
	if (verbose)
		fprintf(stderr, "call %d: status %d \"%s\" %zu bytes, %zu "
		    "messages\n", (int)(s - slots), r->status, r->message,
		    r->len, s->msgs);
	/* A callback may start calls (node mode retries from done). */
	if (s == &slots[C_UNARY] && again && !slots[C_AGAIN].started)
		start_unary(C_AGAIN);
}

static void
on_msg(void *arg, const uint8_t *msg, size_t len)
{
	struct slot *s = arg;
	Alpcrun__V1__SharedDataNotice *n;

	FUZZ_ASSERT(!s->done);
	FUZZ_ASSERT(len <= MAX_MESSAGE);
	s->msgs++;
	n = alpcrun__v1__shared_data_notice__unpack(NULL, len, msg);
	if (n != NULL)
		alpcrun__v1__shared_data_notice__free_unpacked(n, NULL);
}

static void
release(void *arg)
{
	releases++;
}

static struct h2call *
start_unary(int i)
{
	Alpcrun__V1__SharedData req = ALPCRUN__V1__SHARED_DATA__INIT;

	req.has_session_id = 1;
	req.session_id.data = (uint8_t *)"fuzz-session";
	req.session_id.len = 12;
	slots[i].started = 1;
	slots[i].hc = h2client_unary(client, PATH_GET, &req.base, 0, done,
	    &slots[i]);
	FUZZ_ASSERT(slots[i].hc != NULL);
	h2call_progress(slots[i].hc, progress, NULL);
	return slots[i].hc;
}

static void
start_calls(unsigned ctl)
{
	if (ctl & 1)
		start_unary(C_UNARY);
	if (ctl & 2) {
		Alpcrun__V1__WatchRequest w = ALPCRUN__V1__WATCH_REQUEST__INIT;

		slots[C_STREAM].started = 1;
		slots[C_STREAM].hc = h2client_stream(client, PATH_WATCH,
		    &w.base, 0, on_msg, done, &slots[C_STREAM]);
		FUZZ_ASSERT(slots[C_STREAM].hc != NULL);
	}
	if (ctl & 4) {
		static Alpcrun__V1__SharedData set =
		    ALPCRUN__V1__SHARED_DATA__INIT;
		struct h2body b = { 0 };

		set.has_session_id = 1;
		set.session_id.data = (uint8_t *)"fuzz-session";
		set.session_id.len = 12;
		set.has_update_level = 1;
		set.update_level = 1;
		set.has_payload = 1;
		set.payload.data = body_payload;
		set.payload.len = sizeof(body_payload);
		b.msg = &set.base;
		b.release = release;
		b.release_arg = NULL;
		slots[C_BODY].started = 1;
		slots[C_BODY].hc = h2client_unary_body(client, PATH_SET, &b, 0,
		    done, &slots[C_BODY]);
		FUZZ_ASSERT(slots[C_BODY].hc != NULL);
	}
}

/* The server: read and discard whatever the client sends. */
static void
server_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	evbuffer_drain(in, evbuffer_get_length(in));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct h2client_opts o = { 0 };
	struct event_base *base;
	struct bufferevent *pair[2];
	char err[256];
	unsigned ctl, nrec = 0;
	size_t off, n;
	int i, all_done, body;

	if (size < 1)
		return 0;
	ctl = data[0];
	memset(slots, 0, sizeof(slots));
	again = (ctl & 32) != 0;
	held = 0;
	releases = 0;
	if ((base = event_base_new()) == NULL)
		abort();
	FUZZ_ASSERT(bufferevent_pair_new(base, BEV_OPT_DEFER_CALLBACKS,
	    pair) == 0);
	bufferevent_setcb(pair[1], server_read, NULL, NULL, NULL);
	bufferevent_enable(pair[1], EV_READ | EV_WRITE);
	o.target = "unix:/nonexistent/alpcrund-fuzz";
	o.name = "fuzz central";
	o.connect_timeout_ms = 60000;
	o.api_key = "fuzz-key";
	o.max_message_size = MAX_MESSAGE;
	o.on_reply_mem = reply_mem;
	client = h2client_new_bev(base, &o, pair[0], on_state, NULL, err,
	    sizeof(err));
	if (client == NULL) {
		fprintf(stderr, "h2client_new_bev: %s\n", err);
		abort();
	}
	start_calls(ctl);
	event_base_loop(base, EVLOOP_NONBLOCK);

	for (off = 1; off < size; off += n) {
		if (size - off < 2)
			n = size - off;
		else {
			n = (size_t)data[off] << 8 | data[off + 1];
			off += 2;
			if (n > size - off)
				n = size - off;
		}
		if (n > 0)
			bufferevent_write(pair[1], data + off, n);
		event_base_loop(base, EVLOOP_NONBLOCK);
		nrec++;
		if (nrec == 1 && (ctl & 8) && slots[C_STREAM].hc != NULL) {
			h2call_cancel(slots[C_STREAM].hc);
			slots[C_STREAM].hc = NULL;
			slots[C_STREAM].done = 1;	/* no done from now */
			event_base_loop(base, EVLOOP_NONBLOCK);
		}
		if (nrec == 2 && (ctl & 16) && client != NULL) {
			h2client_free(client);
			client = NULL;
			event_base_loop(base, EVLOOP_NONBLOCK);
		}
	}
	/* The server goes away: the client sees EOF, every call ends (its
	 * done, and what a done started, each run from an event). */
	bufferevent_flush(pair[1], EV_WRITE, BEV_FINISHED);
	bufferevent_free(pair[1]);
	for (i = 0; i < 4; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);

	all_done = 1;
	for (i = 0; i < NCALLS; i++)
		if (slots[i].started && !slots[i].done)
			all_done = 0;
	if (client != NULL) {
		/* The connection was lost: every call has its answer. */
		FUZZ_ASSERT(all_done);
		FUZZ_ASSERT(held == 0);
		h2client_free(client);
		client = NULL;
	}
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_free(base);
	body = slots[C_BODY].started;
	FUZZ_ASSERT(releases == body);
	if (verbose)
		fprintf(stderr, "%u records, held %lld, releases %d\n", nrec,
		    (long long)held, releases);
	return 0;
}
