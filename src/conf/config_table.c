/*
 * config_table.c: every directive of alpcrund.conf (spec §7), in the spec's
 * order. One row drives parsing and validation (config.c), `alpcrund -t -v`
 * (config_dump) and the man page.
 *
 * Flags: CONF_LIVE means SIGHUP applies the new value at once; anything else
 * is logged as needing a restart. CONF_LATER marks directives the parser
 * knows but this build does not implement yet: their defaults are set, but
 * naming one in a file is an error.
 */
#include <stddef.h>

#include "config.h"

#define MS_S	1000ULL
#define MS_M	(60 * MS_S)
#define MS_H	(60 * MS_M)
#define MS_DAY	(24 * MS_H)
#define KIB	1024ULL
#define MIB	(1024 * KIB)
#define GIB	(1024 * MIB)
#define TIB	(1024 * GIB)

#define OFF(f)	offsetof(struct config, f)

static const char *const mode_choices[] = { "central", "node", NULL };
static const char *const backend_choices[] = {
	"memory", "lmdb", "s3", NULL
};
static const char *const level_choices[] = {
	"debug", "info", "warn", "error", NULL
};

const struct config_directive config_table[] = {
	{ "mode", CONF_CHOICE, CONF_ENUM, 0, 0,
	  "central", NULL, mode_choices, NULL, OFF(mode),
	  "central (takes writes) or node (per-host cache in front of a central)" },
	{ "listen", CONF_ADDRESS, CONF_MULTI, 0, 0,
	  "127.0.0.1:2337", "127.0.0.1:3337", NULL, NULL, OFF(listen),
	  "gRPC address: host:port, [v6]:port or unix:/path; may repeat "
	  "(up to 16); the first one replaces the default" },
	{ "backend", CONF_CHOICE, 0, 0, 0,
	  "memory", NULL, backend_choices, NULL, OFF(backend),
	  "storage: memory (hash table in RAM), lmdb (on disk) or s3 (an "
	  "S3-compatible object store; this build checks the store at start "
	  "and with -t, and serves no backend s3 yet)" },
	{ "lmdb_path", CONF_PATH, 0, 0, 0,
	  "/var/lib/alpcrund", NULL, NULL, NULL, OFF(lmdb_path),
	  "directory of the LMDB environment (created if missing); "
	  "also holds the lock file alpcrund.lock" },
	{ "lmdb_map_size", CONF_SIZE, 0, 1 * MIB, 16 * TIB,
	  "4g", NULL, NULL, NULL, OFF(lmdb_map_size),
	  "LMDB map size: the most the database can hold" },
	{ "lmdb_sync", CONF_FLAG, 0, 0, 0,
	  "on", NULL, NULL, NULL, OFF(lmdb_sync),
	  "on: an acknowledged write is durable (fsync at commit); off: it "
	  "survives a crash of the daemon but not of the machine" },
	{ "lmdb_max_readers", CONF_NUMBER, 0, 1, 65536,
	  "512", NULL, NULL, NULL, OFF(lmdb_max_readers),
	  "LMDB reader slots; when they run short, reads are served from "
	  "heap copies" },
	{ "lmdb_full_ratio", CONF_PERCENT, 0, 1, 100,
	  "90%", NULL, NULL, NULL, OFF(lmdb_full_ratio),
	  "map fill level at which writes are refused with RESOURCE_EXHAUSTED" },
	{ "s3_endpoint", CONF_STRING, 0, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(s3_endpoint),
	  "backend s3: the store's URL, http://host[:port] or "
	  "https://host[:port]; requests are path-style, "
	  "endpoint/bucket/key" },
	{ "s3_bucket", CONF_STRING, 0, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(s3_bucket),
	  "backend s3: the bucket (3 to 63 lower-case letters, digits, dots "
	  "and hyphens)" },
	{ "s3_prefix", CONF_STRING, 0, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(s3_prefix),
	  "backend s3: written before every key, so that deployments can "
	  "share a bucket, such as alpcrund/ (unset: none)" },
	{ "s3_region", CONF_STRING, 0, 0, 0,
	  "us-east-1", NULL, NULL, NULL, OFF(s3_region),
	  "backend s3: the region requests are signed for (SigV4)" },
	{ "s3_credentials", CONF_PATH, 0, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(s3_credentials),
	  "backend s3: file of lines access_key_id, secret_access_key and "
	  "optionally session_token, each followed by its value, of one "
	  "profile (else AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
	  "AWS_SESSION_TOKEN from the environment)" },
	{ "s3_ca_file", CONF_PATH, 0, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(s3_ca_file),
	  "backend s3: PEM CA certificates that sign the https endpoint's "
	  "certificate (default: the system's trust store; the certificate "
	  "is always verified)" },
	{ "s3_timeout", CONF_DURATION, 0, 100, 1 * MS_H,
	  "10s", NULL, NULL, NULL, OFF(s3_timeout),
	  "backend s3: deadline of one request to the store, its retries "
	  "included (bare number: seconds)" },
	{ "s3_retries", CONF_NUMBER, CONF_ZERO, 1, 20,
	  "4", NULL, NULL, NULL, OFF(s3_retries),
	  "backend s3: attempts made again after a 5xx, a 503 SlowDown, a "
	  "409 conflict or a connection error, with random waits that grow "
	  "(full jitter), within s3_timeout" },
	{ "s3_lease_time", CONF_DURATION, 0, 1 * MS_S, 1 * MS_H,
	  "30s", NULL, NULL, NULL, OFF(s3_lease_time),
	  "backend s3: how long a central's lease on a shard of the sessions "
	  "to sweep lasts unless renewed, so that the shards of a central "
	  "that died are swept by another after it (bare number: seconds)" },
	{ "s3_orphan_grace", CONF_DURATION, 0, 1 * MS_M, 30 * MS_DAY,
	  "1h", NULL, NULL, NULL, OFF(s3_orphan_grace),
	  "backend s3: age past which a payload object no level record names, "
	  "an incomplete multipart upload or a session's level records "
	  "without a head are deleted; longer than any upload takes "
	  "(bare number: seconds)" },
	{ "s3_part_size", CONF_SIZE, CONF_LIVE, 5 * MIB, 1 * GIB,
	  "8m", NULL, NULL, NULL, OFF(s3_part_size),
	  "backend s3: a payload larger than twice this goes up as a "
	  "multipart upload in parts of this size, a few at once, each "
	  "retried (S3's least part is 5m)" },
	{ "s3_revalidate", CONF_DURATION, CONF_LIVE | CONF_ZERO, 1, 1 * MS_H,
	  "0", NULL, NULL, NULL, OFF(s3_revalidate),
	  "backend s3: how long a Get trusts a session's head that the store "
	  "confirmed, without asking the store again (0: every Get asks, by "
	  "a conditional GET shared among concurrent Gets); a Get on one "
	  "central may then miss a Set, Update or Delete made through another "
	  "central for at most this long, and an update level still names "
	  "one content (bare number: seconds)" },
	{ "max_memory", CONF_SIZE, CONF_LIVE | CONF_ZERO, 1 * MIB, 16 * TIB,
	  "0", "1g", NULL, NULL, OFF(max_memory),
	  "payload budget of the memory backend; 0 = no limit "
	  "(default: 0 central, 1g node)" },
	{ "default_ttl", CONF_DURATION, CONF_LIVE, 1 * MS_S, 365 * MS_DAY,
	  "600s", NULL, NULL, NULL, OFF(default_ttl),
	  "TTL of an entry stored with no ttl; at most max_ttl, which it "
	  "follows down when left out (bare number: seconds)" },
	{ "max_ttl", CONF_DURATION, CONF_LIVE, 1 * MS_S, 365 * MS_DAY,
	  "600s", NULL, NULL, NULL, OFF(max_ttl),
	  "longer TTLs are clamped to this (bare number: seconds)" },
	{ "sweep_interval", CONF_DURATION, CONF_LIVE, 10, 1 * MS_H,
	  "1s", NULL, NULL, NULL, OFF(sweep_interval),
	  "period of the sweeper that frees expired entries "
	  "(bare number: seconds)" },
	{ "max_message_size", CONF_SIZE, CONF_LIVE, 1 * KIB, 2 * GIB,
	  "260m", NULL, NULL, NULL, OFF(max_message_size),
	  "largest gRPC message accepted or sent (a 256 MiB payload fits in 260m)" },
	{ "max_inflight_bytes", CONF_SIZE, CONF_LIVE, 64 * KIB, 1 * TIB,
	  "1g", NULL, NULL, NULL, OFF(max_inflight_bytes),
	  "upload bodies buffered at once across all connections; past it "
	  "the server stops granting HTTP/2 window; node: also its receive "
	  "windows on the link to central (at most 256m)" },
	{ "api_key_file", CONF_PATH, CONF_LIVE, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(api_key_file),
	  "file holding the API key callers must send (else METALCORE_API_KEY)" },
	{ "upstream_api_key_file", CONF_PATH, CONF_LIVE, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(upstream_api_key_file),
	  "node: file holding the key presented to central "
	  "(default: the node's own key)" },
	{ "tls_cert", CONF_PATH, CONF_LIVE, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(tls_cert),
	  "PEM certificate chain, leaf first; with tls_key, every listener "
	  "speaks TLS 1.2+ with ALPN h2 (SIGHUP reloads the files; turning "
	  "TLS on or off needs a restart)" },
	{ "tls_key", CONF_PATH, CONF_LIVE, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(tls_key),
	  "PEM private key of tls_cert" },
	{ "tls_client_ca", CONF_PATH, CONF_LIVE, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(tls_client_ca),
	  "PEM CA certificates; clients must present a certificate signed "
	  "by one of them (mTLS; needs tls_cert)" },
	{ "upstream", CONF_ADDRESS, CONF_LIST, 0, 0,
	  "127.0.0.1:2337", NULL, NULL, NULL, OFF(upstream),
	  "node: address of the central cache, or up to 8 addresses "
	  "separated by blanks, tried in order: the node fails over to the "
	  "next when one is unreachable (a fetch under way is sent again "
	  "there) and returns to the first once it is back; an address may "
	  "be another node's: tiers, such as a rack-level parent in front of "
	  "central or a chain for the largest levels, each node passing a "
	  "level on to the nodes behind it as its bytes arrive "
	  "(cut-through); list central last, so that a dead parent is no "
	  "dead end (alpcrund(8), NODE MODE; the source tree's "
	  "conf/alpcrund-rack.conf)" },
	{ "node_id", CONF_STRING, 0, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(node_id),
	  "node: this node's name on the path of its fetches (request "
	  "metadata alpcrun-via), by which it refuses a request loop: a letter "
	  "or digit, then letters, digits and . _ : / [ ] -, at most 64 bytes "
	  "(default: host name/first listen address, e.g. "
	  "web1/127.0.0.1:3337; must differ between nodes)" },
	{ "upstream_tls", CONF_FLAG, 0, 0, 0,
	  "off", NULL, NULL, NULL, OFF(upstream_tls),
	  "node: speak TLS 1.2+ with ALPN h2 to central, verifying its "
	  "certificate" },
	{ "upstream_ca", CONF_PATH, CONF_LIVE, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(upstream_ca),
	  "node: PEM CA certificates that sign central's certificate "
	  "(default: the system's trust store; needs upstream_tls)" },
	{ "upstream_cert", CONF_PATH, CONF_LIVE, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(upstream_cert),
	  "node: PEM client certificate chain presented to central "
	  "(needs upstream_key and upstream_tls)" },
	{ "upstream_key", CONF_PATH, CONF_LIVE, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(upstream_key),
	  "node: PEM private key of upstream_cert" },
	{ "upstream_server_name", CONF_STRING, CONF_LIVE, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(upstream_server_name),
	  "node: name (or address) sent as SNI and checked in central's "
	  "certificate (default: host of upstream; needs upstream_tls)" },
	{ "upstream_timeout", CONF_DURATION, CONF_LIVE,
	  100, 1 * MS_DAY,
	  "30s", NULL, NULL, NULL, OFF(upstream_timeout),
	  "node: deadline of a fetch from central (bare number: seconds)" },
	{ "upstream_connect_timeout", CONF_DURATION, CONF_LIVE,
	  100, 1 * MS_DAY,
	  "3s", NULL, NULL, NULL, OFF(upstream_connect_timeout),
	  "node: bound on connecting to central (bare number: seconds)" },
	{ "upstream_keepalive", CONF_DURATION, CONF_LIVE,
	  1 * MS_S, 1 * MS_DAY,
	  "10s", NULL, NULL, NULL, OFF(upstream_keepalive),
	  "node: HTTP/2 PING period on the link to central "
	  "(bare number: seconds)" },
	{ "prefetch", CONF_FLAG, 0, 0, 0,
	  "off", NULL, NULL, NULL, OFF(prefetch),
	  "node: follow the upstream's change feed (WatchSharedData): fetch a "
	  "newer level of a held session before any worker asks, drop a copy "
	  "at once when central deletes or expires it; and serve a feed of "
	  "the node's own copies to the nodes behind it" },
	{ "prefetch_concurrency", CONF_NUMBER, CONF_LIVE, 1, 1024,
	  "4", NULL, NULL, NULL, OFF(prefetch_concurrency),
	  "node: prefetches running at once (each starts after a random "
	  "0-50ms delay)" },
	{ "watch_buffer", CONF_SIZE, CONF_LIVE, 4 * KIB, 1 * GIB,
	  "1m", NULL, NULL, NULL, OFF(watch_buffer),
	  "central: bytes of change-feed notices queued per watcher; a watcher "
	  "further behind is cut off (RST_STREAM ENHANCE_YOUR_CALM)" },
	{ "metrics_listen", CONF_ADDRESS, 0, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(metrics_listen),
	  "host:port or [v6]:port (not a unix socket) for HTTP /metrics, "
	  "/healthz, /readyz and the status page / and /status.json (unset: "
	  "none)" },
	{ "status_sessions", CONF_FLAG, CONF_LIVE, 0, 0,
	  "on", NULL, NULL, NULL, OFF(status_sessions),
	  "list the sessions held (ids, levels, sizes, time left) on the "
	  "status page; off where session ids are sensitive (the page then "
	  "shows their count only)" },
	{ "max_connections", CONF_NUMBER, 0, 1, 1000000,
	  "10000", NULL, NULL, NULL, OFF(max_connections),
	  "open client connections; the open-file limit is raised to fit" },
	{ "max_concurrent_streams", CONF_NUMBER, CONF_LIVE, 1, 65536,
	  "128", NULL, NULL, NULL, OFF(max_concurrent_streams),
	  "HTTP/2 streams per connection (applies to new connections)" },
	{ "handshake_timeout", CONF_DURATION, CONF_LIVE, 100, 1 * MS_DAY,
	  "10s", NULL, NULL, NULL, OFF(handshake_timeout),
	  "time a new connection has to send its first request "
	  "(bare number: seconds)" },
	{ "idle_timeout", CONF_DURATION, CONF_LIVE | CONF_ZERO, 100, 1 * MS_DAY,
	  "300s", NULL, NULL, NULL, OFF(idle_timeout),
	  "close a connection with no stream open this long; 0 = never "
	  "(bare number: seconds)" },
	{ "send_timeout", CONF_DURATION, CONF_LIVE, 100, 1 * MS_DAY,
	  "60s", NULL, NULL, NULL, OFF(send_timeout),
	  "close a connection making no send progress while data is queued "
	  "(bare number: seconds)" },
	{ "shutdown_grace", CONF_DURATION, CONF_LIVE, 0, 1 * MS_H,
	  "30s", NULL, NULL, NULL, OFF(shutdown_grace),
	  "on SIGTERM, time unary RPCs have to finish (bare number: seconds)" },
	{ "log_level", CONF_CHOICE, CONF_LIVE, 0, 0,
	  "info", NULL, level_choices, NULL, OFF(log_level),
	  "least severe level logged: debug, info, warn or error" },
	{ "log_target", CONF_STRING, CONF_LIVE, 0, 0,
	  "stderr", NULL, NULL, NULL, OFF(log_target),
	  "stderr, syslog or a file path (reopened on SIGHUP)" },
	{ "pid_file", CONF_PATH, 0, 0, 0,
	  NULL, NULL, NULL, NULL, OFF(pid_file),
	  "file to write the daemon's process id to (unset: none)" },
};

const size_t config_table_len = sizeof config_table / sizeof config_table[0];
