/*
 * status.c: the status page (status.h). /status.json is built at request
 * time in one evbuffer from the daemon's own state: role, version, uptime,
 * the store's figures, connections, bytes in flight, requests by method,
 * hits and misses; the sessions held and their reads (reads.h; a bounded
 * scan: at most STATUS_SESSIONS_MAX entries and STATUS_SCAN_CALLS calls to
 * the backend's scan, each bounded by the backend, so that a store of
 * millions never stalls the loop; the rest is a count); with backend s3
 * its store (endpoint, bucket, prefix, state, last error: s3health.h); on
 * a node also its id, central's
 * incarnation, its upstreams and every fetch in flight with bytes received
 * of total and rate. No payload byte is ever shown. / is a static page
 * whose script asks /status.json every second.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "h2client.h"
#include "identity.h"
#include "metrics.h"
#include "node.h"
#include "reads.h"
#include "s3be.h"
#include "s3client.h"
#include "s3health.h"
#include "status.h"
#include "watch.h"

/* At most this many sessions are listed; the rest are counted. */
#define STATUS_SESSIONS_MAX	1000
/* Scan calls per request (each steps over a bounded number of records). */
#define STATUS_SCAN_CALLS	64
#define STATUS_SCAN_BUDGET	256

static struct {
	struct backend		*be;
	uint64_t		 started;	/* clock_now_ns() at init */
	int			 sessions;	/* status_sessions */
	uint64_t		 max_memory;
	int			 node;
	/* backend s3: its store, as configured at start (a change of them
	 * needs a restart). */
	char			 s3_endpoint[256], s3_bucket[128];
} S;

/* A JSON string of bytes that are printable ASCII as session ids are
 * (spec §3); anything else is escaped all the same. */
static void
json_str(struct evbuffer *b, const uint8_t *p, size_t n)
{
	size_t i;

	evbuffer_add(b, "\"", 1);
	for (i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\')
			evbuffer_add_printf(b, "\\%c", p[i]);
		else if (p[i] < 0x20 || p[i] >= 0x7f)
			evbuffer_add_printf(b, "\\u%04x", p[i]);
		else
			evbuffer_add(b, p + i, 1);
	}
	evbuffer_add(b, "\"", 1);
}

static void
json_cstr(struct evbuffer *b, const char *s)
{
	json_str(b, (const uint8_t *)s, strlen(s));
}

struct list {
	struct evbuffer	*b;
	uint64_t	 now;
	size_t		 n;
};

static void
one_session(void *arg, const uint8_t *key, size_t keylen, uint32_t level,
    uint64_t gen, uint64_t inc, uint64_t expires, size_t len)
{
	struct list *l = arg;
	int64_t reads;

	(void)gen;
	(void)inc;
	if (l->n >= STATUS_SESSIONS_MAX)
		return;
	evbuffer_add_printf(l->b, "%s{\"id\":", l->n > 0 ? "," : "");
	json_str(l->b, key, keylen);
	evbuffer_add_printf(l->b, ",\"level\":%" PRIu32 ",\"bytes\":%zu,"
	    "\"ttl_s\":%.3f,\"reads\":", level, len, expires > l->now ?
	    (double)(expires - l->now) / NS_PER_SEC : 0.0);
	/* Not in the table: never read, unless the table is full. */
	if ((reads = reads_get(key, keylen)) >= 0)
		evbuffer_add_printf(l->b, "%" PRId64 "}", reads);
	else if (reads_tracked() < READS_MAX)
		evbuffer_add_printf(l->b, "0}");
	else
		evbuffer_add_printf(l->b, "null}");
	l->n++;
}

static void
sessions(struct evbuffer *b, const struct be_stats *st, uint64_t now)
{
	struct list l = { b, now, 0 };
	struct be_scan *sc;
	int i, more = 1;

	if (!S.sessions) {
		evbuffer_add_printf(b, ",\"sessions\":null");
		return;
	}
	evbuffer_add_printf(b, ",\"sessions\":[");
	if ((sc = S.be->ops->scan_open(S.be)) != NULL) {
		for (i = 0; i < STATUS_SCAN_CALLS && more == 1 &&
		    l.n < STATUS_SESSIONS_MAX; i++)
			more = S.be->ops->scan_next(S.be, sc, now,
			    STATUS_SCAN_BUDGET, one_session, &l);
		S.be->ops->scan_close(S.be, sc);
	}
	/* The rest, counted by the store (expired ones not yet swept
	 * included: an upper bound). */
	evbuffer_add_printf(b, "],\"sessions_more\":%" PRIu64,
	    st->entries > l.n ? st->entries - l.n : 0);
}

static void
one_fetch(void *arg, const uint8_t *key, size_t keylen, int has_level,
    uint32_t level, uint64_t received, uint64_t total, size_t waiters,
    uint64_t started)
{
	struct list *l = arg;
	double age = started != 0 && l->now > started ?
	    (double)(l->now - started) / NS_PER_SEC : 0.0;

	evbuffer_add_printf(l->b, "%s{\"session\":", l->n > 0 ? "," : "");
	if (S.sessions)
		json_str(l->b, key, keylen);
	else
		evbuffer_add_printf(l->b, "null");
	if (has_level)
		evbuffer_add_printf(l->b, ",\"level\":%" PRIu32, level);
	else
		evbuffer_add_printf(l->b, ",\"level\":null");
	evbuffer_add_printf(l->b, ",\"received\":%" PRIu64 ",\"total\":%"
	    PRIu64 ",\"waiters\":%zu,\"queued\":%s,\"age_s\":%.3f,"
	    "\"rate_bps\":%.0f}", received, total, waiters,
	    started == 0 ? "true" : "false", age,
	    age > 0 ? (double)received / age : 0.0);
	l->n++;
}

static void
node_part(struct evbuffer *b, uint64_t now)
{
	struct h2client *up = node_link();
	struct h2client_target_stats ts;
	struct list l = { b, now, 0 };
	const char *t;
	char hex[IDENTITY_HEX];
	size_t i;

	evbuffer_add_printf(b, ",\"node_id\":");
	json_cstr(b, node_id() != NULL ? node_id() : "");
	identity_format(node_incarnation(), hex);
	evbuffer_add_printf(b, ",\"incarnation\":\"%s\",\"upstreams\":[",
	    node_incarnation() != 0 ? hex : "");
	for (i = 0; up != NULL && (t = h2client_target(up, i, &ts)) != NULL;
	    i++) {
		evbuffer_add_printf(b, "%s{\"address\":", i > 0 ? "," : "");
		json_cstr(b, t);
		evbuffer_add_printf(b, ",\"up\":%s,\"calls\":%" PRIu64
		    ",\"failovers\":%" PRIu64 ",\"returns\":%" PRIu64
		    ",\"sent_bytes\":%" PRIu64 ",\"received_bytes\":%" PRIu64
		    "}", ts.up ? "true" : "false", ts.calls, ts.failovers,
		    ts.returns, ts.sent_bytes, ts.received_bytes);
	}
	evbuffer_add_printf(b, "],\"link\":");
	json_cstr(b, up != NULL && !h2client_up(up) ? h2client_reason(up) :
	    "up");
	evbuffer_add_printf(b, ",\"fetches\":[");
	node_fetches(one_fetch, &l);
	evbuffer_add_printf(b, "]");
}

static void
one_watcher(void *arg, const char *peer, const char *via,
    const uint8_t *filter,
    size_t filterlen, uint64_t notices, uint64_t queued, int in_snapshot,
    uint64_t since)
{
	struct list *l = arg;
	const char *node = strrchr(via, ',');

	evbuffer_add_printf(l->b, "%s{\"node_id\":", l->n > 0 ? "," : "");
	if (via[0] == '\0')
		evbuffer_add_printf(l->b, "null");
	else
		json_cstr(l->b, node != NULL ? node + 1 : via);
	evbuffer_add_printf(l->b, ",\"peer\":");
	json_cstr(l->b, peer);
	evbuffer_add_printf(l->b, ",\"via\":");
	json_cstr(l->b, via);
	evbuffer_add_printf(l->b, ",\"session\":");
	if (filterlen == 0)
		evbuffer_add_printf(l->b, "null");
	else if (S.sessions)
		json_str(l->b, filter, filterlen);
	else
		evbuffer_add_printf(l->b, "\"(hidden)\"");
	evbuffer_add_printf(l->b, ",\"notices\":%" PRIu64 ",\"queued_bytes\":%"
	    PRIu64 ",\"in_snapshot\":%s,\"age_s\":%.3f}", notices, queued,
	    in_snapshot ? "true" : "false", l->now > since ?
	    (double)(l->now - since) / NS_PER_SEC : 0.0);
	l->n++;
}

static void
requests(struct evbuffer *b)
{
	static const enum metric_method mm[] = { MM_GET, MM_SET, MM_UPDATE,
	    MM_DELETE, MM_WATCH };
	uint64_t ok, all;
	size_t i;
	int code;

	evbuffer_add_printf(b, ",\"requests\":{");
	for (i = 0; i < sizeof(mm) / sizeof(mm[0]); i++) {
		for (all = 0, code = 0; code <= 16; code++)
			all += metrics_requests(mm[i], code);
		ok = metrics_requests(mm[i], 0);
		evbuffer_add_printf(b, "%s\"%s\":{\"ok\":%" PRIu64 ",\"errors\":%"
		    PRIu64 "}", i > 0 ? "," : "", metrics_method_name(mm[i]),
		    ok, all - ok);
	}
	evbuffer_add_printf(b, "}");
}

static void
s3_part(struct evbuffer *b, uint64_t now)
{
	struct s3_health *sh = backend_s3_health(S.be);
	const struct s3_health_info *h;

	if (sh == NULL)
		return;
	h = s3_health_get(sh);
	evbuffer_add_printf(b, ",\"s3\":{\"endpoint\":");
	json_cstr(b, S.s3_endpoint);
	evbuffer_add_printf(b, ",\"bucket\":");
	json_cstr(b, S.s3_bucket);
	evbuffer_add_printf(b, ",\"prefix\":");
	json_cstr(b, s3_client_prefix(backend_s3_client(S.be)));
	evbuffer_add_printf(b, ",\"state\":\"%s\",\"since_s\":%.3f,"
	    "\"failed_in_a_row\":%u,\"failures\":%" PRIu64 ",\"last_error\":",
	    s3_health_name(h->state), now > h->since ?
	    (double)(now - h->since) / NS_PER_SEC : 0.0, h->failed_in_a_row,
	    h->failures);
	if (h->last_error_at == 0) {
		evbuffer_add_printf(b, "null,\"last_error_age_s\":null}");
		return;
	}
	json_cstr(b, h->last_error);
	evbuffer_add_printf(b, ",\"last_error_age_s\":%.3f}", now >
	    h->last_error_at ? (double)(now - h->last_error_at) / NS_PER_SEC :
	    0.0);
}

static void
status_json(struct evhttp_request *req, void *arg)
{
	struct evbuffer *b = evbuffer_new();
	struct be_stats st;
	uint64_t now = clock_now_ns();

	(void)arg;
	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	S.be->ops->stats(S.be, &st);
	evbuffer_add_printf(b, "{\"role\":\"%s\",\"version\":\"%s\","
	    "\"uptime_s\":%.3f,\"backend\":", S.node ? "node" : "central",
	    PACKAGE_VERSION, (double)(now - S.started) / NS_PER_SEC);
	json_cstr(b, S.be->ops->name);
	evbuffer_add_printf(b, ",\"store\":{\"entries\":%" PRIu64
	    ",\"tombstones\":%" PRIu64 ",\"payload_bytes\":%" PRIu64
	    ",\"used_bytes\":%" PRIu64 ",\"budget_bytes\":%" PRIu64 "}"
	    ",\"connections\":%" PRId64 ",\"inflight_bytes\":%" PRId64
	    ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64, st.entries,
	    st.tombstones, st.payload_bytes, st.used_bytes, S.max_memory,
	    metrics_connections_now(), metrics_inflight_now(),
	    metrics_counter(MC_CACHE_HITS), metrics_counter(MC_CACHE_MISSES));
	s3_part(b, now);
	requests(b);
	{
		struct list l = { b, now, 0 };

		evbuffer_add_printf(b, ",\"watchers\":[");
		watch_each(one_watcher, &l);
		evbuffer_add_printf(b, "]");
	}
	sessions(b, &st, now);
	if (S.node)
		node_part(b, now);
	evbuffer_add_printf(b, "}\n");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

/* The page: no outside asset; its script renders /status.json. */
static const char page[] =
"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
"<title>alpcrund</title>\n<style>\n"
"body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\n"
"h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.4em}\n"
"table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right;"
"border-bottom:1px solid #ddd}th{background:#f3f3f3}"
"td:first-child,th:first-child{text-align:left}\n"
".bad{color:#b00}.ok{color:#080}#err{color:#b00}\n"
"progress{width:10em}\n</style></head><body>\n"
"<h1 id=\"title\">alpcrund</h1><div id=\"err\"></div>\n"
"<table id=\"summary\"></table>\n"
"<div id=\"node\"></div>\n<h2>Sessions held</h2><div id=\"sessions\">"
"</div>\n<script>\n"
"'use strict';\n"
"function esc(s){return String(s).replace(/[&<>\"]/g,function(c){"
"return {'&':'&amp;','<':'&lt;','>':'&gt;','\"':'&quot;'}[c];});}\n"
"function size(n){var u=['B','KiB','MiB','GiB','TiB'],i=0;"
"while(n>=1024&&i<4){n/=1024;i++;}return (i?n.toFixed(1):n)+' '+u[i];}\n"
"function row(c,h){return '<tr>'+c.map(function(x){return "
"(h?'<th>':'<td>')+x+(h?'</th>':'</td>');}).join('')+'</tr>';}\n"
"function table(h,rows){return '<table>'+row(h,1)+rows.join('')+"
"'</table>';}\n"
"function show(s){\n"
" document.getElementById('title').textContent='alpcrund '+s.role+"
"(s.node_id?' '+s.node_id:'')+' \\u2014 '+s.version;\n"
" var q=s.requests,g=q.GetSharedData||{ok:0,errors:0};\n"
" var hr=s.hits+s.misses?(100*s.hits/(s.hits+s.misses)).toFixed(1)+' %':"
"'-';\n"
" document.getElementById('summary').innerHTML=\n"
"  row(['uptime',s.uptime_s.toFixed(0)+' s'])+row(['backend',"
"esc(s.backend)])+\n"
"  row(['memory used',size(s.store.used_bytes)+(s.store.budget_bytes?"
"' of '+size(s.store.budget_bytes):'')])+\n"
"  row(['entries',s.store.entries])+(s.s3?row(['s3 store',"
"esc(s.s3.endpoint+'/'+s.s3.bucket+'/'+s.s3.prefix)+' <span class='+"
"(s.s3.state==='up'?'ok':'bad')+'>'+s.s3.state+'</span>'+(s.s3."
"last_error?'<br>last error ('+s.s3.last_error_age_s.toFixed(0)+' s ago): '"
"+esc(s.s3.last_error):'')]):'')+row(['connections',s.connections])+\n"
"  row(['bytes in flight',size(s.inflight_bytes)])+row(['hit ratio',hr])"
"+\n"
"  Object.keys(q).map(function(k){return row([esc(k),q[k].ok+' ok, '+"
"q[k].errors+' errors']);}).join('');\n"
" var n='';\n"
" if(s.role==='node'){\n"
"  n+='<h2>Upstreams</h2>'+table(['address','state','calls','failovers',"
"'received'],s.upstreams.map(function(u){return row([esc(u.address),"
"u.up?'<span class=ok>in use</span>':'standby',u.calls,u.failovers,"
"size(u.received_bytes)]);}));\n"
"  if(s.link!=='up')n+='<p class=bad>'+esc(s.link)+'</p>';\n"
"  n+='<h2>Fetches in flight</h2>'+(s.fetches.length?table(['session',"
"'level','received','progress','rate','waiters'],s.fetches.map("
"function(f){return row([f.session===null?'-':esc(f.session),f.level==="
"null?'any':f.level,size(f.received)+(f.total?' of '+size(f.total):''),"
"f.total?'<progress max=\"'+f.total+'\" value=\"'+f.received+'\">"
"</progress>':(f.queued?'queued':''),size(f.rate_bps)+'/s',f.waiters]);}"
")):'<p>none</p>');\n"
" }\n"
" n+='<h2>'+(s.role==='node'?'Nodes watching this one':'Watchers')+"
"'</h2>'+(s.watchers.length?table(['node','address','session','notices',"
"'queued','age'],s.watchers.map(function(w){return row([w.node_id===null?"
"'(a client)':esc(w.node_id),esc(w.peer),w.session===null?'all':esc(w.session),"
"w.notices+(w.in_snapshot?' (snapshot)':''),size(w.queued_bytes),"
"w.age_s.toFixed(0)+' s']);})):'<p>none</p>');\n"
" document.getElementById('node').innerHTML=n;\n"
" var ss=document.getElementById('sessions');\n"
" if(s.sessions===null)ss.innerHTML='<p>'+s.store.entries+' (the list is "
"off: status_sessions)</p>';\n"
" else ss.innerHTML=table(['session','level','size','time left','reads'],"
"s.sessions.map(function(x){return row([esc(x.id),x.level,size(x.bytes),"
"x.ttl_s.toFixed(1)+' s',x.reads===null?'-':x.reads]);}))+(s.sessions_more?'<p>and '+"
"s.sessions_more+' more</p>':'');\n"
"}\n"
"function tick(){fetch('status.json',{cache:'no-store'}).then("
"function(r){return r.json();}).then(function(s){"
"document.getElementById('err').textContent='';show(s);},function(e){"
"document.getElementById('err').textContent='no answer: '+e;});}\n"
"tick();setInterval(tick,1000);\n"
"</script></body></html>\n";

static void
status_page(struct evhttp_request *req, void *arg)
{
	struct evbuffer *b = evbuffer_new();

	(void)arg;
	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add_reference(b, page, sizeof(page) - 1, NULL, NULL);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/html; charset=utf-8");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

void
status_reconfigure(const struct config *conf)
{
	S.sessions = conf->status_sessions;
	S.max_memory = conf->max_memory;
}

int
status_init(const struct config *conf, struct backend *be)
{
	S.be = be;
	S.started = clock_now_ns();
	S.node = conf->mode == MODE_NODE;
	snprintf(S.s3_endpoint, sizeof(S.s3_endpoint), "%s",
	    conf->s3_endpoint != NULL ? conf->s3_endpoint : "");
	snprintf(S.s3_bucket, sizeof(S.s3_bucket), "%s",
	    conf->s3_bucket != NULL ? conf->s3_bucket : "");
	status_reconfigure(conf);
	if (reads_init() != 0)
		return -1;
	if (metrics_route("/", status_page, NULL) != 0 ||
	    metrics_route("/status.json", status_json, NULL) != 0)
		return -1;
	return 0;
}
