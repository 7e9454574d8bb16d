/*
 * h2client.c: the HTTP/2 gRPC client on the libevent loop (spec §5
 * "Upstream link"; the contract is in h2client.h): its public functions,
 * the client's options, and the start of a call. The work is done by the
 * link (h2c_link.c), its connections (h2c_conn.c) and the calls
 * (h2c_call.c); h2c_internal.h says how they share the structs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "clock.h"
#include "grpc_status.h"
#include "h2c_internal.h"
#include "h2client.h"

#define DEFAULT_CONNECT_MS	3000
#define DEFAULT_MAX_MESSAGE	(260ull << 20)
#define DEFAULT_NAME		"central cache"

/* h2client_new(); start 0: no connection attempt yet (h2client_new_bev()). */
static struct h2client *
h2c_client_new(struct event_base *base, struct evdns_base *dns,
    const struct h2client_opts *o, h2_state_fn *on_state, void *arg,
    char *err, size_t errlen, int start)
{
	struct h2client *c;

	size_t i;

	if (o->target == NULL && o->ntargets == 0) {
		snprintf(err, errlen, "no target");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto nomem;
	c->base = base;
	c->dns = dns;
	c->on_state = on_state;
	c->on_reply_mem = o->on_reply_mem;
	c->arg = arg;
	c->fd = -1;
	c->reported = -1;
	c->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms :
	    DEFAULT_CONNECT_MS;
	c->keepalive_ms = o->keepalive_ms;
	c->max_msg = o->max_message_size ? o->max_message_size :
	    DEFAULT_MAX_MESSAGE;
	c->window = h2client_window(o->recv_window);
	c->rng = clock_now_ns() ^ (uint64_t)(uintptr_t)c ^
	    ((uint64_t)getpid() << 32);
	if (c->rng == 0)
		c->rng = 1;
	snprintf(c->reason, sizeof(c->reason), "not connected yet");
	TAILQ_INIT(&c->old);
	TAILQ_INIT(&c->pending);
	TAILQ_INIT(&c->calls);
	c->name = strdup(o->name != NULL ? o->name : DEFAULT_NAME);
	if (c->name == NULL ||
	    (o->api_key != NULL && (c->api_key = strdup(o->api_key)) == NULL))
		goto nomem;
	if (h2c_link_init(c) != 0)
		goto nomem;
	for (i = 0; i < (o->ntargets > 0 ? o->ntargets : 1); i++) {
		err[0] = '\0';
		if (h2c_link_parse_target(c, o->ntargets > 0 ? o->targets[i] :
		    o->target, err, errlen) != 0) {
			if (err[0] == '\0')
				snprintf(err, errlen, "out of memory");
			h2client_free(c);
			return NULL;
		}
	}
	if (h2c_link_tls_options(c, o, err, errlen) != 0) {
		h2client_free(c);
		return NULL;
	}
	if (start)
		h2c_link_attempt_start(c);
	return c;
nomem:
	snprintf(err, errlen, "out of memory");
	h2client_free(c);
	return NULL;
}

struct h2client *
h2client_new(struct event_base *base, struct evdns_base *dns,
    const struct h2client_opts *o, h2_state_fn *on_state, void *arg,
    char *err, size_t errlen)
{
	return h2c_client_new(base, dns, o, on_state, arg, err, errlen, 1);
}

/* The test seam (h2client.h): the first attempt on the caller's
 * bufferevent (h2c_link_attempt_bev()). */
struct h2client *
h2client_new_bev(struct event_base *base, const struct h2client_opts *o,
    struct bufferevent *bev, h2_state_fn *on_state, void *arg, char *err,
    size_t errlen)
{
	struct h2client_opts plain = *o;
	struct h2client *c;

	plain.ssl_ctx = NULL;
	if ((c = h2c_client_new(base, NULL, &plain, on_state, arg, err, errlen,
	    0)) == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	h2c_link_attempt_bev(c, bev);
	return c;
}

void
h2client_free(struct h2client *c)
{
	struct h2conn *conn;
	struct h2call *call;
	size_t i;

	if (c == NULL)
		return;
	h2c_link_stop(c);
	if (c->cur != NULL)
		h2c_conn_destroy(c->cur, NULL);
	while ((conn = TAILQ_FIRST(&c->old)) != NULL)
		h2c_conn_destroy(conn, NULL);
	/* Calls are dropped without done; the ones whose body the socket
	 * still references go when libevent frees those buffers, and one
	 * whose on_msg is running goes when it returns. */
	while ((call = TAILQ_FIRST(&c->calls)) != NULL) {
		TAILQ_REMOVE(&c->calls, call, all);
		event_del(call->ev);
		call->c = NULL;
		call->queued = 0;
		call->user = 0;
		h2c_call_msgs_clear(call);
		h2c_call_maybe_destroy(call);
	}
	h2c_link_free(c);
	SSL_CTX_free(c->ssl_ctx);
	free(c->name);
	free(c->api_key);
	for (i = 0; i < c->nrmeta; i++) {
		free(c->rmeta[i].name);
		free(c->rmeta[i].value);
	}
	free(c);
}

int
h2client_configure(struct h2client *c, const struct h2client_opts *o)
{
	char *key = NULL, err[128];

	if (o->api_key != NULL && (key = strdup(o->api_key)) == NULL)
		return -1;
	/* New certificates and name for the next connection; a client made
	 * without TLS stays without. */
	if (c->ssl_ctx != NULL && o->ssl_ctx != NULL &&
	    h2c_link_tls_options(c, o, err, sizeof(err)) != 0) {
		free(key);
		return -1;
	}
	if (c->api_key != NULL)
		explicit_bzero(c->api_key, strlen(c->api_key));
	free(c->api_key);
	c->api_key = key;
	c->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms :
	    DEFAULT_CONNECT_MS;
	c->max_msg = o->max_message_size ? o->max_message_size :
	    DEFAULT_MAX_MESSAGE;
	/* The connection up takes it at once; an old one finishing its
	 * streams after a GOAWAY keeps the window it had. */
	if (h2client_window(o->recv_window) != c->window) {
		c->window = h2client_window(o->recv_window);
		if (c->cur != NULL && h2c_conn_set_window(c->cur,
		    c->window) == 0)
			h2c_conn_flush(c->cur);
	}
	if (o->keepalive_ms != c->keepalive_ms) {
		c->keepalive_ms = o->keepalive_ms;
		if (c->cur != NULL && c->cur->up) {
			if (c->keepalive_ms > 0)
				h2c_conn_ping_arm(c->cur);
			else
				evtimer_del(c->cur->ping_ev);
		}
	}
	return 0;
}

uint32_t
h2client_window(uint64_t budget)
{
	if (budget == 0 || budget > H2CLIENT_WINDOW_MAX)
		return H2CLIENT_WINDOW_MAX;
	if (budget < NGHTTP2_INITIAL_WINDOW_SIZE)
		return NGHTTP2_INITIAL_WINDOW_SIZE;
	return (uint32_t)budget;
}

int
h2client_up(const struct h2client *c)
{
	return c->up;
}

size_t
h2client_ntargets(const struct h2client *c)
{
	return c->ntgt;
}

const char *
h2client_target(const struct h2client *c, size_t i,
    struct h2client_target_stats *st)
{
	if (i >= c->ntgt)
		return NULL;
	if (st != NULL)
		*st = c->tgt[i].st;
	return c->tgt[i].target;
}

const char *
h2client_reason(const struct h2client *c)
{
	return c->up ? "" : c->reason;
}

static struct h2call *
h2c_client_call_start(struct h2client *c, const char *path,
    const struct h2body *body, uint64_t deadline, h2_msg_fn *on_msg,
    h2_done_fn *done, void *arg)
{
	struct h2call *call;

	if ((call = h2c_call_new(c, path, deadline, on_msg, done,
	    arg)) == NULL) {
		if (body->release != NULL)
			body->release(body->release_arg);
		return NULL;
	}
	if (path[0] != '/') {
		call->release = body->release;
		call->release_arg = body->release_arg;
		h2c_call_finish(call, GRPC_INTERNAL, "bad method path %s",
		    path);
		return call;
	}
	if (h2c_call_set_meta(call, body) != 0 ||
	    h2c_call_set_body(call, body) != 0)
		return call;
	if (deadline != 0 && clock_now_ns() >= deadline) {
		h2c_call_finish(call, GRPC_DEADLINE_EXCEEDED,
		    "deadline exceeded");
		return call;
	}
	h2c_call_arm_deadline(call);
	h2c_link_enqueue(call);
	return call;
}

struct h2call *
h2client_unary(struct h2client *c, const char *path,
    const ProtobufCMessage *req, uint64_t deadline, h2_done_fn *done,
    void *arg)
{
	struct h2body b = { .msg = req };

	return h2c_client_call_start(c, path, &b, deadline, NULL, done, arg);
}

struct h2call *
h2client_unary_body(struct h2client *c, const char *path,
    const struct h2body *body, uint64_t deadline, h2_done_fn *done,
    void *arg)
{
	return h2c_client_call_start(c, path, body, deadline, NULL, done, arg);
}

struct h2call *
h2client_stream(struct h2client *c, const char *path,
    const ProtobufCMessage *req, uint64_t deadline, h2_msg_fn *on_msg,
    h2_done_fn *done, void *arg)
{
	struct h2body b = { .msg = req };

	return h2c_client_call_start(c, path, &b, deadline, on_msg, done, arg);
}

int
h2client_set_meta(struct h2client *c, const char *name, const char *value)
{
	char *v = NULL;
	size_t i;

	if (name == NULL || !grpc_meta_name_ok(name, strlen(name)) ||
	    (value != NULL && !grpc_req_meta_value_ok(value, strlen(value))))
		return -1;
	for (i = 0; i < c->nrmeta && strcmp(c->rmeta[i].name, name) != 0;
	    i++)
		;
	if (value == NULL) {
		if (i < c->nrmeta) {
			free(c->rmeta[i].name);
			free(c->rmeta[i].value);
			c->rmeta[i] = c->rmeta[--c->nrmeta];
		}
		return 0;
	}
	if (i == c->nrmeta && c->nrmeta == GRPC_REQ_META_MAX)
		return -1;
	if ((v = strdup(value)) == NULL)
		return -1;
	if (i == c->nrmeta) {
		if ((c->rmeta[i].name = strdup(name)) == NULL) {
			free(v);
			return -1;
		}
		c->nrmeta++;
	} else
		free(c->rmeta[i].value);
	c->rmeta[i].value = v;
	return 0;
}

void
h2call_progress(struct h2call *call, h2_progress_fn *fn, void *arg)
{
	if (call == NULL)
		return;
	call->progress = fn;
	call->progress_arg = arg;
}

/* The deframer's allocator for a call with h2call_reply_into(): the first
 * message only, which the caller is then told about. */
static uint8_t *
h2call_into_alloc(void *arg, size_t len)
{
	struct h2call *call = arg;
	uint8_t *p;

	if ((p = call->ralloc(call->into_arg, len)) == NULL)
		return NULL;
	call->ext = p;
	call->ext_len = len;
	call->df.alloc = NULL;		/* a second message is not the caller's */
	return p;
}

void
h2call_reply_into(struct h2call *call, h2_reply_alloc_fn *alloc,
    h2_reply_arrived_fn *arrived, void *arg)
{
	if (call == NULL || call->streaming || call->ext != NULL)
		return;
	call->ralloc = alloc;
	call->arrived = arrived;
	call->into_arg = arg;
	call->df.alloc = alloc != NULL ? h2call_into_alloc : NULL;
	call->df.alloc_arg = call;
}

void
h2call_max_message(struct h2call *call, uint64_t bytes)
{
	if (call != NULL && call->c != NULL)
		call->df.max = bytes > 0 ? bytes : call->c->max_msg;
}

const char *
h2reply_meta(const struct h2reply *r, const char *name)
{
	return h2c_call_meta_find(r->meta, name);
}

const char *
h2call_meta(const struct h2call *call, const char *name)
{
	return call != NULL ? h2c_call_meta_find(&call->meta, name) : NULL;
}

void
h2call_cancel(struct h2call *call)
{
	struct h2conn *conn;

	if (call == NULL || !call->user)
		return;
	call->user = 0;
	event_del(call->ev);
	h2c_call_msgs_clear(call);
	if (call->queued) {
		TAILQ_REMOVE(&call->c->pending, call, q);
		call->queued = 0;
	}
	conn = call->attached && !call->rst ? call->conn : NULL;
	call->finished = 1;
	h2c_call_rst(call);
	/* Still attached: freed when nghttp2 closes the stream. */
	h2c_call_maybe_destroy(call);
	if (conn != NULL)
		h2c_conn_flush(conn);
}
