/*
 * s3probe.c: the start-up probe of an S3 store's conditional writes
 * (s3probe.h): one step at a time, the two races as 8 requests at once,
 * every failure named, the scratch keys deleted at the end.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "s3client.h"
#include "s3probe.h"

#define RACERS		8

enum step {
	ST_CREATE,		/* If-None-Match: * on a new key: 2xx */
	ST_CREATE_AGAIN,	/* the same: 412 */
	ST_WRONG_IFMATCH,	/* If-Match of another ETag: 412 or 404 */
	ST_ETAG,		/* HEAD: its ETag, when the create's reply
				   was lost */
	ST_RIGHT_IFMATCH,	/* If-Match of its ETag: 2xx */
	ST_RIGHT_IFMATCH_BARE,	/* … refused quoted: unquoted, 2xx */
	ST_IFMATCH_MISSING,	/* If-Match on a missing key: 412 or 404 */
	ST_HEAD_MISSING,	/* … and it is still missing: 404 */
	ST_RACE_CREATE,		/* 8 creates of one key: one wins */
	ST_READ_CREATE,		/* the key holds the winner's bytes */
	ST_RACE_UPDATE,		/* 8 If-Match PUTs of one ETag: one wins */
	ST_READ_UPDATE,
	ST_CLEANUP,
};

struct racer {
	struct s3_probe	*p;
	struct s3_call	*call;
	char		 body[80];
	int		 status;
	int		 ambiguous;	/* a retry's 412: maybe its own win */
	int		 won;
	char		 what[300];	/* the reply, for messages */
};

struct s3_probe {
	struct s3_client *cl;
	s3_probe_done_fn *done;
	void		*arg;
	enum step	 step;
	struct s3_call	*call;		/* the step's one request */
	struct racer	 racers[RACERS];
	int		 pending;	/* racers or deletes in flight */
	int		 created;	/* scratch keys to delete */
	int		 failed;
	int		 cleanup_failed;
	char		 cleanup_what[300];
	char		 dir[48];	/* .probe/<random>/ */
	char		 key_c[80], key_m[80], key_r[80];
	/* The same with the client's prefix: the keys in the bucket, as
	 * messages name them. */
	char		 full_c[600], full_m[600], full_r[600];
	char		 etag_c[128], etag_r[128];
	char		 msg[768];
	char		 err[256];
};

static void	step_done(void *, const struct s3_response *);
static void	cleanup(struct s3_probe *);

/* What a reply was, for a message: "HTTP 403 AccessDenied: Access
 * Denied", "cannot connect (Failed to connect to …)". */
static void
describe(const struct s3_response *r, char *buf, size_t len)
{
	char tries[32] = "";

	if (r->attempts > 1)
		snprintf(tries, sizeof(tries), " after %u attempts",
		    r->attempts);
	if (r->err != S3_E_NONE)
		snprintf(buf, len, "%s (%.200s)%s", s3_err_name(r->err),
		    r->errmsg, tries);
	else if (r->code[0] != '\0')
		snprintf(buf, len, "HTTP %d %.60s: %.200s%s", r->status,
		    r->code, r->message[0] != '\0' ? r->message :
		    "(no message)", tries);
	else
		snprintf(buf, len, "HTTP %d%s", r->status, tries);
}

static void __attribute__((format(printf, 2, 3)))
fail(struct s3_probe *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(p->msg, sizeof(p->msg), "s3 store at %s: ",
	    s3_client_url(p->cl));
	if (n < 0 || (size_t)n >= sizeof(p->msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(p->msg + n, sizeof(p->msg) - (size_t)n, fmt, ap);
	va_end(ap);
	p->failed = 1;
	cleanup(p);
}

static void
finish(struct s3_probe *p)
{
	if (!p->failed) {
		snprintf(p->msg, sizeof(p->msg), "s3 store at %s: conditional "
		    "writes honoured (create, If-None-Match, If-Match, "
		    "%d racing creates and %d racing updates with one "
		    "winner each)%s%s%.200s%s", s3_client_url(p->cl), RACERS,
		    RACERS, s3_client_bare_if_match(p->cl) ? "; If-Match "
		    "ETags are sent unquoted, the only form it takes" : "",
		    p->cleanup_failed ? "; scratch keys left under " :
		    "", p->cleanup_failed ? s3_client_prefix(p->cl) : "",
		    p->cleanup_failed ? p->dir : "");
	}
	if (p->done != NULL)		/* NULL: cancelled in clean-up */
		p->done(p->arg, !p->failed, p->msg);
	free(p);
}

static int
ok2xx(const struct s3_response *r)
{
	return r->err == S3_E_NONE && r->status >= 200 && r->status < 300;
}

/* One request of the current step; its reply goes to step_done(). 0, or
 * -1 with err filled. */
static int
issue(struct s3_probe *p, enum s3_op op, const char *key, const char *hname,
    const char *hval, const char *body)
{
	struct s3_header h = { hname, hval };
	struct s3_request rq;

	memset(&rq, 0, sizeof(rq));
	rq.op = op;
	rq.key = key;
	if (hname != NULL) {
		rq.headers = &h;
		rq.nheaders = 1;
	}
	if (body != NULL) {
		rq.body = body;
		rq.body_len = strlen(body);
	}
	rq.done = step_done;
	rq.arg = p;
	return (p->call = s3_start(p->cl, &rq, p->err, sizeof(p->err))) ==
	    NULL ? -1 : 0;
}

/* The next step's request, or the failure to send it. */
static void
next(struct s3_probe *p, enum step st, enum s3_op op, const char *key,
    const char *hname, const char *hval, const char *body)
{
	p->step = st;
	if (issue(p, op, key, hname, hval, body) != 0)
		fail(p, "cannot send a request: %s", p->err);
}

/* --- the races ----------------------------------------------------------------- */

static void	race_done(void *, const struct s3_response *);

static void
race(struct s3_probe *p, const char *hname, const char *hval,
    const char *tag)
{
	struct s3_header h = { hname, hval };
	struct s3_request rq;
	char err[256];
	int i;

	p->pending = RACERS;
	for (i = 0; i < RACERS; i++) {
		struct racer *r = &p->racers[i];

		memset(r, 0, sizeof(*r));
		r->p = p;
		snprintf(r->body, sizeof(r->body), "%s %d of %s", tag, i,
		    p->dir);
		memset(&rq, 0, sizeof(rq));
		rq.op = S3_PUT;
		rq.key = p->key_r;
		rq.headers = &h;
		rq.nheaders = 1;
		rq.body = r->body;
		rq.body_len = strlen(r->body);
		/* Side by side: none ahead on the connection the steps
		 * before left warm, none multiplexed behind another. */
		rq.fresh_connection = 1;
		rq.done = race_done;
		rq.arg = r;
		if ((r->call = s3_start(p->cl, &rq, err, sizeof(err))) ==
		    NULL) {
			/* Those started answer; the step fails after. */
			snprintf(r->what, sizeof(r->what), "not sent: %s",
			    err);
			r->status = -1;
			p->pending--;
		}
	}
	if (p->pending == 0)
		fail(p, "cannot send the racing requests");
}

static void
race_done(void *arg, const struct s3_response *res)
{
	struct racer *r = arg;
	struct s3_probe *p = r->p;

	r->call = NULL;
	r->status = res->err != S3_E_NONE ? -1 : res->status;
	r->ambiguous = res->status == 412 && res->earlier_unknown;
	r->won = ok2xx(res);
	if (r->won)
		p->created = 1;
	describe(res, r->what, sizeof(r->what));
	if (--p->pending > 0)
		return;
	next(p, p->step == ST_RACE_CREATE ? ST_READ_CREATE : ST_READ_UPDATE,
	    S3_GET, p->key_r, NULL, NULL, NULL);
}

/*
 * The key read back after a race: count the winners (a retried racer's
 * 412 is its own win when the key holds its bytes), check that the key
 * holds the one winner's bytes. 0, or -1 after fail().
 */
static int
judge(struct s3_probe *p, const struct s3_response *res, const char *what,
    const char *cond)
{
	char other[300] = "";
	int i, winners = 0, winner = -1, held = -1;

	if (!ok2xx(res)) {
		describe(res, other, sizeof(other));
		fail(p, "reading %s back after %d racing %s: %s", p->full_r,
		    RACERS, what, other);
		return -1;
	}
	for (i = 0; i < RACERS; i++) {
		struct racer *r = &p->racers[i];

		if (res->body_len == strlen(r->body) &&
		    memcmp(res->body, r->body, res->body_len) == 0)
			held = i;
	}
	for (i = 0; i < RACERS; i++) {
		struct racer *r = &p->racers[i];

		if (r->ambiguous && held == i)
			r->won = 1;
		if (r->won) {
			winners++;
			winner = i;
		} else if (r->status != 412 && r->status != 409 &&
		    other[0] == '\0')
			snprintf(other, sizeof(other), "%s", r->what);
	}
	if (winners > 1) {
		fail(p, "%d of %d racing %s of one key succeeded; it does not "
		    "honour %s under races", winners, RACERS, what, cond);
		return -1;
	}
	if (winners == 0) {
		fail(p, "none of %d racing %s of one key succeeded (%s)",
		    RACERS, what, other[0] != '\0' ? other : "each answered "
		    "412 or 409");
		return -1;
	}
	if (other[0] != '\0') {
		fail(p, "a racing %s answered %s, not 412 or 409", what,
		    other);
		return -1;
	}
	if (held != winner) {
		fail(p, "after %d racing %s the key holds other bytes than "
		    "the one that succeeded wrote; it does not honour %s "
		    "under races", RACERS, what, cond);
		return -1;
	}
	snprintf(p->etag_r, sizeof(p->etag_r), "%s", res->etag);
	return 0;
}

/* --- the steps in turn ---------------------------------------------------------- */

static void
step_done(void *arg, const struct s3_response *res)
{
	struct s3_probe *p = arg;
	char what[300];

	p->call = NULL;
	describe(res, what, sizeof(what));
	switch (p->step) {
	case ST_CREATE:
		/* A retry's 412 may be this very create, its reply lost. */
		if (!ok2xx(res) && !(res->status == 412 &&
		    res->earlier_unknown)) {
			fail(p, "a create (PUT If-None-Match: *) of the new key "
			    "%s failed: %s", p->full_c, what);
			return;
		}
		p->created = 1;
		/* "": the reply was lost; read by ST_ETAG. */
		snprintf(p->etag_c, sizeof(p->etag_c), "%s", ok2xx(res) ?
		    res->etag : "");
		next(p, ST_CREATE_AGAIN, S3_PUT, p->key_c, "If-None-Match",
		    "*", "second");
		return;
	case ST_CREATE_AGAIN:
		if (ok2xx(res)) {
			fail(p, "a second create (PUT If-None-Match: *) of "
			    "the key %s succeeded; it does not honour "
			    "If-None-Match", p->full_c);
			return;
		}
		if (res->status != 412) {
			fail(p, "a second create (PUT If-None-Match: *) of the "
			    "key %s answered %s, not 412", p->full_c, what);
			return;
		}
		next(p, ST_WRONG_IFMATCH, S3_PUT, p->key_c, "If-Match",
		    "\"00000000000000000000000000000000\"", "wrong etag");
		return;
	case ST_WRONG_IFMATCH:
		if (ok2xx(res)) {
			fail(p, "a PUT with a wrong If-Match to the key %s "
			    "succeeded; it does not honour If-Match",
			    p->full_c);
			return;
		}
		if (res->status != 412 && res->status != 404) {
			fail(p, "a PUT with a wrong If-Match to the key %s "
			    "answered %s, not 412", p->full_c, what);
			return;
		}
		if (p->etag_c[0] == '\0') {
			next(p, ST_ETAG, S3_HEAD, p->key_c, NULL, NULL, NULL);
			return;
		}
		next(p, ST_RIGHT_IFMATCH, S3_PUT, p->key_c, "If-Match",
		    p->etag_c, "right etag");
		return;
	case ST_ETAG:
		if (!ok2xx(res) || res->etag[0] == '\0') {
			fail(p, "a HEAD of the key %s answered %s%s", p->full_c,
			    what, ok2xx(res) ? " without an ETag" : "");
			return;
		}
		snprintf(p->etag_c, sizeof(p->etag_c), "%s", res->etag);
		next(p, ST_RIGHT_IFMATCH, S3_PUT, p->key_c, "If-Match",
		    p->etag_c, "right etag");
		return;
	case ST_RIGHT_IFMATCH:
	case ST_RIGHT_IFMATCH_BARE:
		if (!ok2xx(res) && !(res->status == 412 &&
		    res->earlier_unknown)) {
			if (res->status == 412 && p->step == ST_RIGHT_IFMATCH &&
			    p->etag_c[0] == '"') {
				/* Ceph RGW 16 takes the ETag only unquoted. */
				s3_client_set_bare_if_match(p->cl, 1);
				next(p, ST_RIGHT_IFMATCH_BARE, S3_PUT,
				    p->key_c, "If-Match", p->etag_c,
				    "right etag");
				return;
			}
			fail(p, "a PUT with the ETag %s of the key %s in "
			    "If-Match answered %s%s; it does not honour "
			    "If-Match", p->etag_c, p->full_c, what,
			    p->step == ST_RIGHT_IFMATCH_BARE ? " (also with "
			    "the ETag unquoted)" : "");
			return;
		}
		next(p, ST_IFMATCH_MISSING, S3_PUT, p->key_m, "If-Match",
		    p->etag_c, "missing");
		return;
	case ST_IFMATCH_MISSING:
		if (ok2xx(res)) {
			fail(p, "a PUT with If-Match to the missing key %s "
			    "succeeded and created it; it does not honour "
			    "If-Match on missing keys", p->full_m);
			return;
		}
		if (res->status != 412 && res->status != 404) {
			fail(p, "a PUT with If-Match to the missing key %s "
			    "answered %s, not 412 or 404", p->full_m, what);
			return;
		}
		next(p, ST_HEAD_MISSING, S3_HEAD, p->key_m, NULL, NULL, NULL);
		return;
	case ST_HEAD_MISSING:
		if (ok2xx(res)) {
			fail(p, "a PUT with If-Match to the missing key %s "
			    "answered %d but created the key; it does not "
			    "honour If-Match on missing keys", p->full_m,
			    res->status);
			return;
		}
		if (res->status != 404) {
			fail(p, "a HEAD of the missing key %s answered %s, "
			    "not 404", p->full_m, what);
			return;
		}
		p->step = ST_RACE_CREATE;
		race(p, "If-None-Match", "*", "create");
		return;
	case ST_READ_CREATE:
		if (judge(p, res, "creates", "If-None-Match") != 0)
			return;
		p->step = ST_RACE_UPDATE;
		race(p, "If-Match", p->etag_r, "update");
		return;
	case ST_READ_UPDATE:
		if (judge(p, res, "updates with one If-Match", "If-Match") != 0)
			return;
		cleanup(p);
		return;
	default:
		return;
	}
}

/* --- clean-up --------------------------------------------------------------------- */

static void
deleted(void *arg, const struct s3_response *res)
{
	struct s3_probe *p = arg;

	if (!ok2xx(res) && res->status != 404 && !p->cleanup_failed) {
		p->cleanup_failed = 1;
		describe(res, p->cleanup_what, sizeof(p->cleanup_what));
	}
	if (--p->pending == 0)
		finish(p);
}

/* Delete the scratch keys (when any was made), then report. */
static void
cleanup(struct s3_probe *p)
{
	const char *keys[3] = { p->key_c, p->key_m, p->key_r };
	struct s3_request rq;
	char err[256];
	int i;

	p->step = ST_CLEANUP;
	if (!p->created) {
		finish(p);
		return;
	}
	p->pending = 1;		/* held until every delete is sent */
	for (i = 0; i < 3; i++) {
		memset(&rq, 0, sizeof(rq));
		rq.op = S3_DELETE;
		rq.key = keys[i];
		rq.done = deleted;
		rq.arg = p;
		if (s3_start(p->cl, &rq, err, sizeof(err)) != NULL)
			p->pending++;
		else
			p->cleanup_failed = 1;
	}
	if (--p->pending == 0)
		finish(p);
}

struct s3_probe *
s3_probe_start(struct s3_client *cl, s3_probe_done_fn *done, void *arg)
{
	struct s3_probe *p;
	uint8_t rnd[8];
	int i;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->cl = cl;
	p->done = done;
	p->arg = arg;
	arc4random_buf(rnd, sizeof(rnd));
	i = snprintf(p->dir, sizeof(p->dir), ".probe/");
	for (size_t k = 0; k < sizeof(rnd); k++)
		i += snprintf(p->dir + i, sizeof(p->dir) - (size_t)i, "%02x",
		    rnd[k]);
	snprintf(p->dir + i, sizeof(p->dir) - (size_t)i, "/");
	snprintf(p->key_c, sizeof(p->key_c), "%screate", p->dir);
	snprintf(p->key_m, sizeof(p->key_m), "%smissing", p->dir);
	snprintf(p->key_r, sizeof(p->key_r), "%srace", p->dir);
	snprintf(p->full_c, sizeof(p->full_c), "%.500s%s", s3_client_prefix(cl),
	    p->key_c);
	snprintf(p->full_m, sizeof(p->full_m), "%.500s%s", s3_client_prefix(cl),
	    p->key_m);
	snprintf(p->full_r, sizeof(p->full_r), "%.500s%s", s3_client_prefix(cl),
	    p->key_r);
	p->step = ST_CREATE;
	if (issue(p, S3_PUT, p->key_c, "If-None-Match", "*", "first") != 0) {
		free(p);
		return NULL;
	}
	return p;
}

void
s3_probe_cancel(struct s3_probe *p)
{
	int i;

	if (p == NULL)
		return;
	s3_cancel(p->call);
	for (i = 0; i < RACERS; i++)
		s3_cancel(p->racers[i].call);
	/* Deletes in flight keep p: let them run to an inert end. */
	if (p->step == ST_CLEANUP && p->pending > 0) {
		p->done = NULL;
		return;
	}
	free(p);
}

struct run {
	int	 done;
	int	 ok;
	char	*msg;
	size_t	 len;
};

static void
run_done(void *arg, int ok, const char *msg)
{
	struct run *r = arg;

	r->done = 1;
	r->ok = ok;
	snprintf(r->msg, r->len, "%s", msg);
}

int
s3_probe_run(struct event_base *base, struct s3_client *cl, char *msg,
    size_t msglen)
{
	struct run r = { 0, 0, msg, msglen };

	if (s3_probe_start(cl, run_done, &r) == NULL) {
		snprintf(msg, msglen, "s3 store at %s: cannot start the "
		    "probe (out of memory)", s3_client_url(cl));
		return -1;
	}
	while (!r.done)
		if (event_base_loop(base, EVLOOP_ONCE) != 0 && !r.done) {
			snprintf(msg, msglen, "s3 store at %s: the probe "
			    "stalled with nothing to wait on",
			    s3_client_url(cl));
			return -1;
		}
	return r.ok ? 0 : -1;
}
