/*
 * s3health.c: an S3 store's state from its requests' outcomes (s3health.h),
 * and the probe that finds a down store back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "log.h"
#include "s3client.h"
#include "s3health.h"

#define PROBE_EVERY_MS	1000
#define PROBE_TIMEOUT_MS 2000

struct s3_health {
	struct event_base	*base;
	struct s3_client	*cl;
	struct event		*timer;
	struct s3_call		*probe;
	char			*probe_key;
	s3_health_fn		*fn;
	void			*arg;
	struct s3_health_info	 info;
};

static const char *const names[] = { "up", "degraded", "down" };

const char *
s3_health_name(enum s3_health_kind k)
{
	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] :
	    "unknown";
}

/* 1 failed, 0 answered, -1 neither. */
static int
failed(int conditional, const struct s3_response *res)
{
	switch (res->err) {
	case S3_E_NONE:
		if (conditional && res->status == 500)
			return -1;
		return res->status >= 500 || res->status == 403;
	case S3_E_RESOLVE:
	case S3_E_CONNECT:
	case S3_E_TLS:
	case S3_E_TIMEOUT:
	case S3_E_IO:
		return 1;
	default:
		/* Ours (a body refused or too large, out of memory), not the
		 * store's: no outcome. */
		return -1;
	}
}

static void
arm(struct s3_health *st, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000 * 1000) };

	event_add(st->timer, &tv);
}

static void
change(struct s3_health *st, enum s3_health_kind to)
{
	enum s3_health_kind from = st->info.state;

	if (to == from)
		return;
	st->info.state = to;
	st->info.since = clock_now_ns();
	if (to == S3_HEALTH_UP)
		log_info("s3 store up", "url=%s", s3_client_url(st->cl));
	else
		log_warn(to == S3_HEALTH_DOWN ? "s3 store down" :
		    "s3 store degraded", "url=%s failed_in_a_row=%u "
		    "last_error=\"%s\"", s3_client_url(st->cl),
		    st->info.failed_in_a_row, st->info.last_error);
	/* Down: probe it; degraded: come back when the window has passed. */
	event_del(st->timer);
	if (to == S3_HEALTH_DOWN)
		arm(st, PROBE_EVERY_MS);
	else if (to == S3_HEALTH_DEGRADED)
		arm(st, S3_HEALTH_WINDOW_S * 1000ULL);
}

/* Degraded whose window has passed: up. */
static void
settle(struct s3_health *st)
{
	if (st->info.state == S3_HEALTH_DEGRADED &&
	    clock_now_ns() - st->info.last_error_at >=
	    S3_HEALTH_WINDOW_S * NS_PER_SEC) {
		change(st, S3_HEALTH_UP);
		if (st->fn != NULL)
			st->fn(st->arg, &st->info);
	}
}

void
s3_health_note(struct s3_health *st, enum s3_op op, const char *key,
    int conditional, const struct s3_response *res)
{
	enum s3_health_kind was = st->info.state;
	int f = failed(conditional, res);

	if (f < 0)
		return;
	if (f == 0) {
		st->info.failed_in_a_row = 0;
		if (was == S3_HEALTH_DOWN) {
			change(st, S3_HEALTH_DEGRADED);
			if (st->fn != NULL)
				st->fn(st->arg, &st->info);
		} else
			settle(st);
		return;
	}
	st->info.failed_in_a_row++;
	st->info.failures++;
	st->info.last_error_at = clock_now_ns();
	if (key == NULL)
		key = "(bucket)";
	if (res->err != S3_E_NONE)
		snprintf(st->info.last_error, sizeof(st->info.last_error),
		    "%s %s: %s: %s", s3_op_name(op), key,
		    s3_err_name(res->err), res->errmsg);
	else
		snprintf(st->info.last_error, sizeof(st->info.last_error),
		    "%s %s: HTTP %d %s: %s", s3_op_name(op), key, res->status,
		    res->code[0] ? res->code : "-",
		    res->message[0] ? res->message : "-");
	if (st->info.failed_in_a_row >= S3_HEALTH_DOWN_AFTER)
		change(st, S3_HEALTH_DOWN);
	else if (was == S3_HEALTH_UP)
		change(st, S3_HEALTH_DEGRADED);
	if (st->fn != NULL)
		st->fn(st->arg, &st->info);
}

static void
observe(void *arg, enum s3_op op, const char *key, int conditional,
    const struct s3_response *res)
{
	s3_health_note(arg, op, key, conditional, res);
}

static void
probe_done(void *arg, const struct s3_response *res)
{
	struct s3_health *st = arg;

	(void)res;	/* the observer has noted it */
	st->probe = NULL;
	if (st->info.state == S3_HEALTH_DOWN)
		arm(st, PROBE_EVERY_MS);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct s3_health *st = arg;
	struct s3_request rq;
	char err[256];

	(void)fd;
	(void)what;
	if (st->info.state == S3_HEALTH_DEGRADED) {
		settle(st);
		/* A later failure moved the window's end. */
		if (st->info.state == S3_HEALTH_DEGRADED)
			arm(st, (st->info.last_error_at + S3_HEALTH_WINDOW_S *
			    NS_PER_SEC - clock_now_ns()) / NS_PER_MS + 1);
		return;
	}
	if (st->info.state != S3_HEALTH_DOWN || st->probe != NULL)
		return;
	memset(&rq, 0, sizeof(rq));
	rq.op = S3_GET;
	rq.key = st->probe_key;
	rq.max_body = 4096;
	rq.timeout_ms = PROBE_TIMEOUT_MS;
	rq.retry = S3_RETRY_NEVER;
	rq.done = probe_done;
	rq.arg = st;
	if ((st->probe = s3_start(st->cl, &rq, err, sizeof(err))) == NULL)
		arm(st, PROBE_EVERY_MS);
}

struct s3_health *
s3_health_new(struct event_base *base, struct s3_client *cl,
    const char *probe_key)
{
	struct s3_health *st;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->base = base;
	st->cl = cl;
	st->info.since = clock_now_ns();
	if ((st->probe_key = strdup(probe_key)) == NULL ||
	    (st->timer = evtimer_new(base, timer_cb, st)) == NULL) {
		s3_health_free(st);
		return NULL;
	}
	s3_client_set_observer(cl, observe, st);
	return st;
}

void
s3_health_free(struct s3_health *st)
{
	if (st == NULL)
		return;
	s3_client_set_observer(st->cl, NULL, NULL);
	if (st->probe != NULL)
		s3_cancel(st->probe);
	if (st->timer != NULL)
		event_free(st->timer);
	free(st->probe_key);
	free(st);
}

void
s3_health_on_change(struct s3_health *st, s3_health_fn *fn, void *arg)
{
	st->fn = fn;
	st->arg = arg;
}

const struct s3_health_info *
s3_health_get(struct s3_health *st)
{
	settle(st);
	return &st->info;
}

int
s3_health_down(struct s3_health *st, char *msg, size_t len)
{
	if (st->info.state != S3_HEALTH_DOWN)
		return 0;
	snprintf(msg, len, "s3 store down (%u requests failed in a row, the "
	    "last: %s)", st->info.failed_in_a_row, st->info.last_error);
	return 1;
}
