/*
 * check_config.c: unit tests of the configuration parser, the directive
 * table (spec §7) and the logger (spec §8).
 *
 * The tests write their files under a mkdtemp directory per test case. The
 * fixture is unchecked (it runs in the parent process) so that the
 * directory is removed even when a test fails in its child.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "testutil.h"

#define TEST_TIMEOUT	10	/* seconds per test */

static char	 tmpdir[] = "/tmp/check_config.XXXXXX";
static char	 tmpl[sizeof tmpdir];

static void
setup(void)
{
	memcpy(tmpl, tmpdir, sizeof tmpdir);
	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		abort();
	}
}

static void
teardown(void)
{
	DIR		*dp;
	struct dirent	*de;
	char		 p[512];

	if ((dp = opendir(tmpl)) != NULL) {
		while ((de = readdir(dp)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(p, sizeof p, "%s/%s", tmpl, de->d_name);
			if (unlink(p) == -1)
				rmdir(p);
		}
		closedir(dp);
	}
	rmdir(tmpl);
}

/* Path of `name` in the test's directory (a static buffer per slot). */
static const char *
tpath(const char *name)
{
	static char	 bufs[4][512];
	static int	 slot;
	char		*b = bufs[slot++ % 4];

	snprintf(b, 512, "%s/%s", tmpl, name);
	return b;
}

static const char *
write_file(const char *name, const char *text, size_t len)
{
	const char	*p = tpath(name);
	FILE		*fp = fopen(p, "w");

	ck_assert_ptr_nonnull(fp);
	ck_assert_uint_eq(fwrite(text, 1, len, fp), len);
	ck_assert_int_eq(fclose(fp), 0);
	return p;
}

/* Load `text` as t.conf. */
static int
load_text(const char *text, struct config *cfg, struct config_errors *errs)
{
	const char *p = write_file("t.conf", text, strlen(text));

	return config_load(p, 0, cfg, errs);
}

static char *
read_all(const char *path)
{
	FILE	*fp = fopen(path, "r");
	char	*buf;
	long	 len;

	ck_assert_ptr_nonnull(fp);
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)len + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)len, fp), (size_t)len);
	buf[len] = '\0';
	fclose(fp);
	return buf;
}

static char *
dump_string(const struct config *cfg)
{
	char	*buf = NULL;
	size_t	 len = 0;
	FILE	*fp = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(fp);
	config_dump(cfg, fp);
	fclose(fp);
	return buf;
}

static const struct config_directive *
row(const char *name)
{
	size_t	 i;

	for (i = 0; i < config_table_len; i++)
		if (strcmp(config_table[i].name, name) == 0)
			return &config_table[i];
	return NULL;
}

/* The one error of a load that must fail, compared in full. */
static void
expect_error(const char *text, const char *want_fmt, ...)
{
	struct config		 cfg;
	struct config_errors	 errs = { 0 };
	char			 want[1024], tail[900];
	va_list			 ap;
	int			 rc;

	va_start(ap, want_fmt);
	vsnprintf(tail, sizeof tail, want_fmt, ap);
	va_end(ap);
	snprintf(want, sizeof want, "%s/t.conf:%s", tmpl, tail);
	rc = load_text(text, &cfg, &errs);
	ck_assert_msg(rc == -1, "loaded without error: %s", text);
	ck_assert_msg(errs.n == 1, "%zu errors for \"%s\" (first: %s)",
	    errs.n, text, errs.n ? errs.msgs[0] : "none");
	ck_assert_str_eq(errs.msgs[0], want);
	config_errors_free(&errs);
}

/* A load that must fail with one error containing `part`. */
static void
expect_error_part(const char *text, const char *part)
{
	struct config		 cfg;
	struct config_errors	 errs = { 0 };

	ck_assert_msg(load_text(text, &cfg, &errs) == -1,
	    "loaded without error: %s", text);
	ck_assert_msg(errs.n == 1, "%zu errors for \"%s\"", errs.n, text);
	ck_assert_msg(strstr(errs.msgs[0], part) != NULL,
	    "\"%s\" lacks \"%s\"", errs.msgs[0], part);
	config_errors_free(&errs);
}

static void
expect_ok(const char *text, struct config *cfg)
{
	struct config_errors	 errs = { 0 };
	int			 rc = load_text(text, cfg, &errs);

	ck_assert_msg(rc == 0, "\"%s\": %s", text,
	    errs.n ? errs.msgs[0] : "no message");
	ck_assert_uint_eq(errs.n, 0);
}

/* --- The table ---------------------------------------------------------- */

static const char *const spec_order[] = {
	"mode", "listen", "backend", "lmdb_path", "lmdb_map_size", "lmdb_sync",
	"lmdb_max_readers", "lmdb_full_ratio", "s3_endpoint", "s3_bucket",
	"s3_prefix", "s3_region", "s3_credentials", "s3_ca_file", "s3_timeout",
	"s3_retries", "s3_lease_time", "s3_orphan_grace", "s3_part_size",
	"s3_revalidate", "max_memory", "default_ttl",
	"max_ttl", "sweep_interval", "max_message_size", "max_inflight_bytes",
	"api_key_file", "upstream_api_key_file", "tls_cert", "tls_key",
	"tls_client_ca", "upstream", "node_id", "upstream_tls", "upstream_ca",
	"upstream_cert", "upstream_key", "upstream_server_name",
	"upstream_timeout", "upstream_connect_timeout", "upstream_keepalive",
	"prefetch", "prefetch_concurrency", "watch_buffer", "metrics_listen",
	"status_sessions", "max_connections", "max_concurrent_streams", "handshake_timeout",
	"idle_timeout", "send_timeout", "shutdown_grace", "log_level",
	"log_target", "pid_file", NULL
};

static int
in(const char *const *list, const char *s)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, s) == 0)
			return 1;
	return 0;
}

START_TEST(table_order_and_flags)
{
	static const char *const later[] = { NULL };
	static const char *const restart[] = {
		"mode", "listen", "backend", "lmdb_path", "lmdb_map_size",
		"lmdb_sync", "lmdb_max_readers", "lmdb_full_ratio",
		"s3_endpoint", "s3_bucket", "s3_prefix", "s3_region",
		"s3_credentials", "s3_ca_file", "s3_timeout", "s3_retries",
		"s3_lease_time", "s3_orphan_grace", "upstream",
		"node_id", "upstream_tls", "prefetch", "metrics_listen",
		"max_connections", "pid_file", NULL
	};
	size_t	 i;

	for (i = 0; spec_order[i] != NULL; i++) {
		const struct config_directive *d = &config_table[i];

		ck_assert_uint_lt(i, config_table_len);
		ck_assert_str_eq(d->name, spec_order[i]);
		ck_assert_msg(!!(d->flags & CONF_LATER) == in(later, d->name),
		    "%s: CONF_LATER", d->name);
		ck_assert_msg((d->flags & CONF_LIVE) == 0 ? in(restart, d->name) :
		    !in(restart, d->name),
		    "%s: CONF_LIVE", d->name);
		ck_assert_msg(d->help != NULL && strlen(d->help) > 10,
		    "%s: help", d->name);
		ck_assert_msg((d->flags & CONF_MULTI) == 0 ||
		    strcmp(d->name, "listen") == 0, "%s: multi", d->name);
		if (d->type == CONF_CHOICE)
			ck_assert_ptr_nonnull(d->choices);
		if (d->type == CONF_DURATION || d->type == CONF_SIZE ||
		    d->type == CONF_NUMBER || d->type == CONF_PERCENT)
			ck_assert_msg(d->min <= d->max && d->max > 0,
			    "%s: bounds", d->name);
		if (d->type == CONF_DURATION)
			ck_assert_msg(strstr(d->help, "bare number: seconds"),
			    "%s: help must say a bare number is seconds",
			    d->name);
		if (d->def_node != NULL)
			ck_assert_msg(strcmp(d->name, "listen") == 0 ||
			    strcmp(d->name, "max_memory") == 0,
			    "%s: def_node", d->name);
	}
	ck_assert_uint_eq(i, config_table_len);
	ck_assert_ptr_null(row("mode")->later_choices);
	ck_assert_ptr_null(row("backend")->later_choices);
}
END_TEST

/* backend s3: what it needs, what its directives accept, and the s3_*
 * directives refused under another backend. */
START_TEST(s3_directives)
{
	struct config	 cfg;

	expect_ok("backend s3\ns3_endpoint https://s3.example.net:9000/\n"
	    "s3_bucket alp-cache.1\ns3_prefix central/\ns3_credentials "
	    "/etc/alpcrund/s3.cred\ns3_ca_file /etc/ssl/ca.pem\n"
	    "s3_timeout 2s\ns3_retries 0\ns3_region eu-west-3\n"
	    "s3_lease_time 5s\ns3_orphan_grace 2h\n", &cfg);
	ck_assert_str_eq(cfg.backend, "s3");
	ck_assert_str_eq(cfg.s3_endpoint, "https://s3.example.net:9000/");
	ck_assert_str_eq(cfg.s3_bucket, "alp-cache.1");
	ck_assert_str_eq(cfg.s3_prefix, "central/");
	ck_assert_str_eq(cfg.s3_region, "eu-west-3");
	ck_assert_uint_eq(cfg.s3_timeout, 2000);
	ck_assert_uint_eq(cfg.s3_retries, 0);
	ck_assert_uint_eq(cfg.s3_lease_time, 5000);
	ck_assert_uint_eq(cfg.s3_orphan_grace, 7200000);
	config_free(&cfg);
	expect_ok("backend s3\ns3_endpoint http://[::1]:9000\n"
	    "s3_bucket abc\n", &cfg);
	ck_assert_str_eq(cfg.s3_region, "us-east-1");
	ck_assert_uint_eq(cfg.s3_timeout, 10000);
	ck_assert_uint_eq(cfg.s3_retries, 4);
	ck_assert_uint_eq(cfg.s3_lease_time, 30000);
	ck_assert_uint_eq(cfg.s3_orphan_grace, 3600000);
	ck_assert_ptr_null(cfg.s3_prefix);
	ck_assert_ptr_null(cfg.s3_credentials);
	config_free(&cfg);

	expect_error("backend s3\ns3_bucket abc\n", "1: backend s3: needs "
	    "s3_endpoint (the store's http:// or https:// URL)");
	expect_error("backend s3\ns3_endpoint http://h\n",
	    "1: backend s3: needs s3_bucket");
	expect_error("backend s3\ns3_bucket abc\ns3_endpoint ftp://h\n",
	    "3: s3_endpoint: ftp://h: not an http:// or https:// URL");
	expect_error("backend s3\ns3_bucket abc\ns3_endpoint http://:80\n",
	    "3: s3_endpoint: http://:80: no host");
	expect_error("backend s3\ns3_bucket abc\ns3_endpoint http://h:0\n",
	    "3: s3_endpoint: http://h:0: bad port");
	expect_error("backend s3\ns3_bucket abc\ns3_endpoint "
	    "http://h/abc\n", "3: s3_endpoint: http://h/abc: no path or "
	    "query after host[:port]: requests add the bucket and key");
	expect_error("backend s3\ns3_bucket abc\ns3_endpoint "
	    "http://ak:sk@h\n", "3: s3_endpoint: http://ak:sk@h: user names "
	    "belong in s3_credentials, not in the URL");
	expect_error("backend s3\ns3_endpoint http://h\ns3_bucket My_B\n",
	    "3: s3_bucket: My_B: not a bucket name (3 to 63 of a-z, 0-9, "
	    "dots and hyphens, a letter or digit at each end)");
	expect_error("backend s3\ns3_endpoint http://h\ns3_bucket abc\n"
	    "s3_prefix /p/\n", "4: s3_prefix: /p/: must not start with a "
	    "slash");
	expect_error("backend s3\ns3_endpoint http://h\ns3_bucket abc\n"
	    "s3_prefix p\n", "4: s3_prefix: p: must end with a slash and be "
	    "at most 127 bytes, such as alpcrund/");
	expect_error("backend s3\ns3_endpoint http://h\ns3_bucket abc\n"
	    "s3_region eu:west\n", "4: s3_region: eu:west: not a region name "
	    "(1 to 64 of a-z, 0-9 and hyphens)");
	expect_error("backend s3\ns3_endpoint http://h\ns3_bucket abc\n"
	    "s3_ca_file /ca.pem\n", "4: s3_ca_file: needs an https:// "
	    "s3_endpoint");
	expect_error("s3_endpoint http://h\n", "1: s3_endpoint: needs "
	    "backend s3");
	expect_error("backend lmdb\ns3_bucket abc\n", "2: s3_bucket: needs "
	    "backend s3");
	expect_error("backend s3\ns3_endpoint http://h\ns3_bucket abc\n"
	    "mode node\n", "4: backend s3 is not supported with mode node");
	expect_error_part("backend s3\ns3_endpoint http://h\ns3_bucket abc\n"
	    "s3_retries 21\n", "s3_retries");
}
END_TEST

/* Node defaults: the table, each def_node value accepted as written in a
 * file, and the loader applying them when the file says `mode node`. */
START_TEST(table_node_defaults)
{
	struct config	 cfg;
	char		 text[1024] = "";
	size_t		 i;

	ck_assert_str_eq(row("listen")->def, "127.0.0.1:2337");
	ck_assert_str_eq(row("listen")->def_node, "127.0.0.1:3337");
	ck_assert_str_eq(row("max_memory")->def, "0");
	ck_assert_str_eq(row("max_memory")->def_node, "1g");
	for (i = 0; i < config_table_len; i++) {
		const struct config_directive *d = &config_table[i];

		if (d->def_node == NULL)
			continue;
		ck_assert_msg(!(d->flags & CONF_LATER), "%s", d->name);
		strcat(text, d->name);
		strcat(text, " ");
		strcat(text, d->def_node);
		strcat(text, "\n");
	}
	expect_ok(text, &cfg);
	ck_assert_uint_eq(cfg.nlisten, 1);
	ck_assert_str_eq(cfg.listen[0], "127.0.0.1:3337");
	ck_assert_uint_eq(cfg.max_memory, 1ULL << 30);
	config_free(&cfg);
	expect_ok("# a node\nmode node\n", &cfg);
	ck_assert_int_eq(cfg.mode, MODE_NODE);
	ck_assert_uint_eq(cfg.nlisten, 1);
	ck_assert_str_eq(cfg.listen[0], "127.0.0.1:3337");
	ck_assert_uint_eq(cfg.max_memory, 1ULL << 30);
	ck_assert_str_eq(cfg.upstream, "127.0.0.1:2337");
	config_free(&cfg);
	/* What the file sets wins over the node defaults. */
	expect_ok("mode node\nmax_memory 64m\nlisten 127.0.0.1:9\n", &cfg);
	ck_assert_uint_eq(cfg.max_memory, 64ULL << 20);
	ck_assert_uint_eq(cfg.nlisten, 1);
	ck_assert_str_eq(cfg.listen[0], "127.0.0.1:9");
	config_free(&cfg);
	/* A node keeps its copies in memory (spec §5). */
	expect_error("mode node\nbackend lmdb\n",
	    "2: backend lmdb is not supported with mode node");
	expect_error("backend lmdb\n# x\nmode node\n",
	    "3: backend lmdb is not supported with mode node");
	/* A node never forwards to itself. */
	expect_error("mode node\nlisten 127.0.0.1:4000\nupstream "
	    "127.0.0.1:4000\n", "3: upstream: 127.0.0.1:4000 is this node's "
	    "own listen address 127.0.0.1:4000; it must name the central "
	    "cache");
	expect_error("mode node\nupstream localhost:3337\nlisten "
	    "0.0.0.0:3337\n", "2: upstream: localhost:3337 is this node's "
	    "own listen address 0.0.0.0:3337; it must name the central "
	    "cache");
	expect_error("mode node\nupstream 127.0.0.1:3337\n", "2: upstream: "
	    "127.0.0.1:3337 is this node's own listen address "
	    "127.0.0.1:3337; it must name the central cache");
	expect_ok("mode node\nlisten 127.0.0.1:4000\nupstream "
	    "10.0.0.1:4000\n", &cfg);
	config_free(&cfg);
	/* A central ignores upstream. */
	expect_ok("listen 127.0.0.1:4000\nupstream 127.0.0.1:4000\n", &cfg);
	config_free(&cfg);
}
END_TEST

/* upstream: one directive, 1..8 addresses separated by blanks. */
START_TEST(upstream_lists)
{
	struct config	 cfg;
	char		 buf[256];
	const char	*w[CONFIG_MAX_UPSTREAM];

	expect_ok("mode node\nupstream 10.0.0.1:2337\n", &cfg);
	ck_assert_str_eq(cfg.upstream, "10.0.0.1:2337");
	ck_assert_uint_eq(config_words(cfg.upstream, buf, sizeof buf, w,
	    CONFIG_MAX_UPSTREAM), 1);
	config_free(&cfg);
	/* Three, blanks of any kind and number between them: kept with
	 * single blanks, in order. */
	expect_ok("mode node\nupstream  10.0.0.1:2337 \t[::1]:2338   "
	    "unix:/run/c.sock  # three\n", &cfg);
	ck_assert_str_eq(cfg.upstream,
	    "10.0.0.1:2337 [::1]:2338 unix:/run/c.sock");
	ck_assert_uint_eq(config_words(cfg.upstream, buf, sizeof buf, w,
	    CONFIG_MAX_UPSTREAM), 3);
	ck_assert_str_eq(w[0], "10.0.0.1:2337");
	ck_assert_str_eq(w[1], "[::1]:2338");
	ck_assert_str_eq(w[2], "unix:/run/c.sock");
	config_free(&cfg);
	expect_ok("mode node\nupstream a:1 b:2 c:3 d:4 e:5 f:6 g:7 h:8\n",
	    &cfg);
	config_free(&cfg);
	expect_error("mode node\nupstream a:1 b:2 c:3 d:4 e:5 f:6 g:7 h:8 "
	    "i:9\n", "2: upstream: too many addresses, at most 8");
	/* A bad address is named, with its place. */
	expect_error("mode node\nupstream 10.0.0.1:1 10.0.0.2 10.0.0.3:1\n",
	    "2: upstream: address 2 of 3: expected host:port, [v6]:port or "
	    "unix:/path, got \"10.0.0.2\"");
	expect_error("mode node\nupstream 10.0.0.1:1 10.0.0.1:1\n",
	    "2: upstream: 10.0.0.1:1 given twice");
	/* Still one directive. */
	expect_error("mode node\nupstream 10.0.0.1:1\nupstream 10.0.0.2:1\n",
	    "3: upstream: already set on line 2");
	/* Any address of the list may not be the node itself. */
	expect_error("mode node\nlisten 127.0.0.1:4000\nupstream "
	    "10.0.0.1:4000 127.0.0.1:4000\n", "3: upstream: 127.0.0.1:4000 "
	    "is this node's own listen address 127.0.0.1:4000; it must name "
	    "the central cache");
	/* TLS to a unix: address of the list needs a name to verify. */
	expect_error_part("mode node\nupstream_tls on\nupstream 10.0.0.1:1 "
	    "unix:/run/c.sock\n", "upstream_tls: a unix: upstream has no "
	    "host name");
	/* Other directives keep one word. */
	expect_error_part("listen 127.0.0.1:1 127.0.0.1:2\n",
	    "extra words after the value");
}
END_TEST

/* --- Defaults ----------------------------------------------------------- */

START_TEST(defaults_without_file)
{
	struct config		 cfg;
	struct config_errors	 errs = { 0 };

	ck_assert_int_eq(config_load(NULL, 0, &cfg, &errs), 0);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_ptr_null(cfg.path);
	ck_assert_int_eq(cfg.mode, MODE_CENTRAL);
	ck_assert_uint_eq(cfg.nlisten, 1);
	ck_assert_str_eq(cfg.listen[0], "127.0.0.1:2337");
	ck_assert_ptr_null(cfg.listen[1]);
	ck_assert_str_eq(cfg.backend, "memory");
	ck_assert_str_eq(cfg.lmdb_path, "/var/lib/alpcrund");
	ck_assert_uint_eq(cfg.lmdb_map_size, 4ULL << 30);
	ck_assert_int_eq(cfg.lmdb_sync, 1);
	ck_assert_uint_eq(cfg.lmdb_max_readers, 512);
	ck_assert_uint_eq(cfg.lmdb_full_ratio, 90);
	ck_assert_uint_eq(cfg.max_memory, 0);
	ck_assert_uint_eq(cfg.default_ttl, 600000);
	ck_assert_uint_eq(cfg.max_ttl, 600000);
	ck_assert_uint_eq(cfg.sweep_interval, 1000);
	ck_assert_uint_eq(cfg.max_message_size, 272629760);
	ck_assert_uint_eq(cfg.max_inflight_bytes, 1ULL << 30);
	ck_assert_ptr_null(cfg.api_key_file);
	ck_assert_ptr_null(cfg.upstream_api_key_file);
	ck_assert_ptr_null(cfg.tls_cert);
	ck_assert_ptr_null(cfg.tls_key);
	ck_assert_ptr_null(cfg.tls_client_ca);
	ck_assert_str_eq(cfg.upstream, "127.0.0.1:2337");
	ck_assert_int_eq(cfg.upstream_tls, 0);
	ck_assert_ptr_null(cfg.upstream_ca);
	ck_assert_ptr_null(cfg.upstream_cert);
	ck_assert_ptr_null(cfg.upstream_key);
	ck_assert_ptr_null(cfg.upstream_server_name);
	ck_assert_uint_eq(cfg.upstream_timeout, 30000);
	ck_assert_uint_eq(cfg.upstream_connect_timeout, 3000);
	ck_assert_uint_eq(cfg.upstream_keepalive, 10000);
	ck_assert_int_eq(cfg.prefetch, 0);
	ck_assert_uint_eq(cfg.prefetch_concurrency, 4);
	ck_assert_uint_eq(cfg.watch_buffer, 1ULL << 20);
	ck_assert_ptr_null(cfg.metrics_listen);
	ck_assert_int_eq(cfg.status_sessions, 1);
	ck_assert_uint_eq(cfg.max_connections, 10000);
	ck_assert_uint_eq(cfg.max_concurrent_streams, 128);
	ck_assert_uint_eq(cfg.handshake_timeout, 10000);
	ck_assert_uint_eq(cfg.idle_timeout, 300000);
	ck_assert_uint_eq(cfg.send_timeout, 60000);
	ck_assert_uint_eq(cfg.shutdown_grace, 30000);
	ck_assert_str_eq(cfg.log_level, "info");
	ck_assert_str_eq(cfg.log_target, "stderr");
	ck_assert_ptr_null(cfg.pid_file);
	config_free(&cfg);
	ck_assert_ptr_null(cfg.listen[0]);
	ck_assert_uint_eq(cfg.nlisten, 0);
	config_free(&cfg);	/* twice is harmless */
}
END_TEST

START_TEST(missing_file)
{
	struct config		 cfg;
	struct config_errors	 errs = { 0 };
	const char		*p = tpath("absent.conf");
	char			 want[600];

	ck_assert_int_eq(config_load(p, 0, &cfg, &errs), -1);
	ck_assert_uint_eq(errs.n, 1);
	snprintf(want, sizeof want, "%s: cannot open: %s", p,
	    strerror(ENOENT));
	ck_assert_str_eq(errs.msgs[0], want);
	config_errors_free(&errs);
	ck_assert_ptr_null(errs.msgs);
	ck_assert_uint_eq(errs.n, 0);

	ck_assert_int_eq(config_load(p, 1, &cfg, &errs), 0);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_ptr_null(cfg.path);
	ck_assert_str_eq(cfg.listen[0], "127.0.0.1:2337");
	config_free(&cfg);

	/* A directory is not a missing file, even with allow_missing. */
	ck_assert_int_eq(config_load(tmpl, 1, &cfg, &errs), -1);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_msg(strstr(errs.msgs[0], "cannot") != NULL, "%s",
	    errs.msgs[0]);
	config_errors_free(&errs);
}
END_TEST

/* --- Value parsers ------------------------------------------------------ */

START_TEST(durations)
{
	static const struct { const char *s; uint64_t ms; } ok[] = {
		{ "0", 0 }, { "0s", 0 }, { "0ms", 0 }, { "0h", 0 },
		{ "1", 1000 }, { "30", 30000 }, { "500ms", 500 },
		{ "30s", 30000 }, { "10m", 600000 }, { "1h", 3600000 },
		{ "007s", 7000 }, { "8760h", 31536000000ULL },
		{ "18446744073709551615ms", UINT64_MAX },
		{ "18446744073709551s", 18446744073709551000ULL },
	};
	static const char *const bad[] = {
		"", "abc", "-1", "+1", "1.5s", "10 m", " 10s", "10s ", "10x",
		"10S", "10M", "1d", "ms", "s", "1sm", "1ms2", "0x10",
		"99999999999999999999s", "99999999999999999999",
		"18446744073709552s", "6000000000000h", "18446744073709551616ms",
	};
	uint64_t	 v;
	size_t		 i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		v = 12345;
		ck_assert_msg(parse_duration_ms(ok[i].s, &v) == 0, "%s",
		    ok[i].s);
		ck_assert_msg(v == ok[i].ms, "%s: %llu", ok[i].s,
		    (unsigned long long)v);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = 12345;
		ck_assert_msg(parse_duration_ms(bad[i], &v) == -1, "\"%s\"",
		    bad[i]);
		ck_assert_uint_eq(v, 12345);
	}
	ck_assert_int_eq(parse_duration_ms(NULL, &v), -1);
}
END_TEST

START_TEST(sizes)
{
	static const struct { const char *s; uint64_t b; } ok[] = {
		{ "0", 0 }, { "1", 1 }, { "0k", 0 }, { "512k", 524288 },
		{ "512K", 524288 }, { "64m", 64ULL << 20 },
		{ "260m", 272629760 }, { "8g", 8ULL << 30 },
		{ "8G", 8ULL << 30 }, { "1t", 1ULL << 40 }, { "1T", 1ULL << 40 },
		{ "16777215t", 16777215ULL << 40 },
		{ "18446744073709551615", UINT64_MAX },
	};
	static const char *const bad[] = {
		"", "-1", "+1", "1.5g", "10 m", "1kb", "1KiB", "1x", "k", "g",
		" 1k", "1k ", "1mm", "99999999999999999999",
		"18446744073709551616", "16777216t", "17179869184g",
	};
	uint64_t	 v;
	size_t		 i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		v = 12345;
		ck_assert_msg(parse_size(ok[i].s, &v) == 0, "%s", ok[i].s);
		ck_assert_msg(v == ok[i].b, "%s: %llu", ok[i].s,
		    (unsigned long long)v);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = 12345;
		ck_assert_msg(parse_size(bad[i], &v) == -1, "\"%s\"", bad[i]);
		ck_assert_uint_eq(v, 12345);
	}
	ck_assert_int_eq(parse_size(NULL, &v), -1);
}
END_TEST

/* --- Syntax ------------------------------------------------------------- */

START_TEST(syntax_comments_and_space)
{
	struct config	 cfg;

	expect_ok("# a comment line\n"
	    "\n"
	    "   \t  \n"
	    "   # indented comment\n"
	    "\tmax_ttl   20m   # a comment after the value\n"
	    "default_ttl 90#tight comment\n"
	    "log_level debug\r\n"
	    "   log_target    /var/log/alpcrund.log   \n"
	    "sweep_interval 250ms", &cfg);	/* no final newline */
	ck_assert_uint_eq(cfg.max_ttl, 1200000);
	ck_assert_uint_eq(cfg.default_ttl, 90000);
	ck_assert_str_eq(cfg.log_level, "debug");
	ck_assert_str_eq(cfg.log_target, "/var/log/alpcrund.log");
	ck_assert_uint_eq(cfg.sweep_interval, 250);
	ck_assert_str_eq(cfg.path, tpath("t.conf"));
	config_free(&cfg);

	expect_ok("", &cfg);
	ck_assert_str_eq(cfg.listen[0], "127.0.0.1:2337");
	config_free(&cfg);
}
END_TEST

START_TEST(values_of_each_type)
{
	struct config	 cfg;

	expect_ok("max_memory 512m\n"
	    "max_message_size 1k\n"
	    "max_inflight_bytes 64k\n"
	    "api_key_file /etc/alpcrund/key\n"
	    "metrics_listen [::]:9100\n"
	    "max_connections 1000000\n"
	    "max_concurrent_streams 1\n"
	    "handshake_timeout 100ms\n"
	    "idle_timeout 0\n"
	    "send_timeout 24h\n"
	    "shutdown_grace 0\n"
	    "mode central\n"
	    "backend memory\n"
	    "log_target syslog\n"
	    "pid_file /run/alpcrund.pid\n", &cfg);
	ck_assert_uint_eq(cfg.max_memory, 512ULL << 20);
	ck_assert_uint_eq(cfg.max_message_size, 1024);
	ck_assert_uint_eq(cfg.max_inflight_bytes, 65536);
	ck_assert_str_eq(cfg.api_key_file, "/etc/alpcrund/key");
	ck_assert_str_eq(cfg.metrics_listen, "[::]:9100");
	ck_assert_uint_eq(cfg.max_connections, 1000000);
	ck_assert_uint_eq(cfg.max_concurrent_streams, 1);
	ck_assert_uint_eq(cfg.handshake_timeout, 100);
	ck_assert_uint_eq(cfg.idle_timeout, 0);
	ck_assert_uint_eq(cfg.send_timeout, 86400000);
	ck_assert_uint_eq(cfg.shutdown_grace, 0);
	ck_assert_int_eq(cfg.mode, MODE_CENTRAL);
	ck_assert_str_eq(cfg.backend, "memory");
	ck_assert_str_eq(cfg.log_target, "syslog");
	ck_assert_str_eq(cfg.pid_file, "/run/alpcrund.pid");
	config_free(&cfg);

	expect_ok("backend lmdb\n"
	    "lmdb_path /srv/alpcrund\n"
	    "lmdb_map_size 64g\n"
	    "lmdb_sync off\n"
	    "lmdb_max_readers 1024\n"
	    "lmdb_full_ratio 80%\n", &cfg);
	ck_assert_str_eq(cfg.backend, "lmdb");
	ck_assert_str_eq(cfg.lmdb_path, "/srv/alpcrund");
	ck_assert_uint_eq(cfg.lmdb_map_size, 64ULL << 30);
	ck_assert_int_eq(cfg.lmdb_sync, 0);
	ck_assert_uint_eq(cfg.lmdb_max_readers, 1024);
	ck_assert_uint_eq(cfg.lmdb_full_ratio, 80);
	config_free(&cfg);
}
END_TEST

/* --- Errors ------------------------------------------------------------- */

START_TEST(error_messages)
{
	char	 text[5100];

	expect_error("bogus 1\n", "1: bogus: unknown directive");
	expect_error("Mode central\n", "1: Mode: unknown directive");
	expect_error("\n\nmax_ttl\n", "3: max_ttl: missing value, expected "
	    "a duration like 500ms, 30s, 10m or 1h");
	expect_error("max_ttl   # nothing\n", "1: max_ttl: missing value, "
	    "expected a duration like 500ms, 30s, 10m or 1h");
	expect_error("max_ttl 10 m\n", "1: max_ttl: extra words after the "
	    "value: \"m\" (values are one word)");
	expect_error("log_target /a b  c  # x\n", "1: log_target: extra words "
	    "after the value: \"b  c\" (values are one word)");
	expect_error("max_ttl 10m\nmax_ttl abc\n", "2: max_ttl: "
	    "already set on line 1");
	expect_error("# x\nmax_ttl abc\n", "2: max_ttl: expected a duration "
	    "like 500ms, 30s, 10m or 1h, got \"abc\"");
	expect_error("max_message_size 1.5g\n", "1: max_message_size: "
	    "expected a size like 512k, 64m or 8g, got \"1.5g\"");
	expect_error("max_connections -1\n", "1: max_connections: expected a "
	    "whole number, got \"-1\"");
	expect_error("mode edge\n", "1: mode: expected central or node, "
	    "got \"edge\"");
	expect_error("log_level verbose\n", "1: log_level: expected debug, "
	    "info, warn or error, got \"verbose\"");
	expect_error("backend redis\n", "1: backend: expected memory, lmdb or s3, "
	    "got \"redis\"");

	/* Out of range, in the units a user writes. */
	expect_error("sweep_interval 5ms\n", "1: sweep_interval: 5ms is out "
	    "of range, expected 10ms to 1h");
	expect_error("max_message_size 3g\n", "1: max_message_size: 3g is out "
	    "of range, expected 1k to 2g");
	expect_error("max_message_size 1023\n", "1: max_message_size: 1023 is "
	    "out of range, expected 1k to 2g");
	expect_error("max_inflight_bytes 1k\n", "1: max_inflight_bytes: 1k is "
	    "out of range, expected 64k to 1t");
	expect_error("default_ttl 8761h\n", "1: default_ttl: 8761h is out of "
	    "range, expected 1s to 8760h");
	expect_error("max_ttl 0\n", "1: max_ttl: 0 is out of range, expected "
	    "1s to 8760h");
	expect_error("max_ttl 99999999999999999999s\n", "1: max_ttl: "
	    "99999999999999999999s is out of range, expected 1s to 8760h");
	expect_error("idle_timeout 50ms\n", "1: idle_timeout: 50ms is out of "
	    "range, expected 0 or 100ms to 24h");
	expect_error("handshake_timeout 0\n", "1: handshake_timeout: 0 is out "
	    "of range, expected 100ms to 24h");
	expect_error("shutdown_grace 2h\n", "1: shutdown_grace: 2h is out of "
	    "range, expected 0s to 1h");
	expect_error("max_memory 512k\n", "1: max_memory: 512k is out of "
	    "range, expected 0 or 1m to 16t");
	expect_error("max_connections 0\n", "1: max_connections: 0 is out of "
	    "range, expected 1 to 1000000");
	expect_error("max_concurrent_streams 65537\n", "1: "
	    "max_concurrent_streams: 65537 is out of range, expected 1 to "
	    "65536");

	expect_error("lmdb_full_ratio 0%\n", "1: lmdb_full_ratio: 0%% is out "
	    "of range, expected 1%% to 100%%");
	expect_error("lmdb_map_size 512k\n", "1: lmdb_map_size: 512k is out "
	    "of range, expected 1m to 16t");
	expect_error("lmdb_max_readers 0\n", "1: lmdb_max_readers: 0 is out "
	    "of range, expected 1 to 65536");
	expect_error("lmdb_sync yes\n", "1: lmdb_sync: expected on or off, "
	    "got \"yes\"");

	/* TLS directives that need another one, at their own line. */
	expect_error("tls_cert /etc/ssl/a.pem\n",
	    "1: tls_cert: needs tls_key (the certificate's private key)");
	expect_error("log_level info\ntls_key /etc/ssl/a.key\n",
	    "2: tls_key: needs tls_cert (the certificate of this key)");
	expect_error("tls_client_ca /etc/ssl/ca.pem\n",
	    "1: tls_client_ca: needs tls_cert and tls_key (client certificates "
	    "are asked for over TLS)");
	expect_error("upstream_tls on\nupstream_cert /c.pem\n",
	    "2: upstream_cert: needs upstream_key (the certificate's private "
	    "key)");
	expect_error("upstream_tls on\nupstream_key /c.key\n",
	    "2: upstream_key: needs upstream_cert (the certificate of this "
	    "key)");
	expect_error("upstream_ca /ca.pem\n",
	    "1: upstream_ca: needs upstream_tls on");
	expect_error("upstream_tls off\nupstream_server_name central\n",
	    "2: upstream_server_name: needs upstream_tls on");
	expect_error("upstream unix:/run/c.sock\nupstream_tls on\n",
	    "2: upstream_tls: a unix: upstream has no host name to verify; "
	    "set upstream_server_name");

	/* The change feed's bounds. */
	expect_error("prefetch_concurrency 0\n", "1: prefetch_concurrency: 0 "
	    "is out of range, expected 1 to 1024");
	expect_error("watch_buffer 1k\n", "1: watch_buffer: 1k is out of "
	    "range, expected 4k to 1g");

	/* Line too long, and a NUL byte. */
	memset(text, 'a', 5000);
	memcpy(text, "log_target ", 11);
	text[5000] = '\n';
	text[5001] = '\0';
	expect_error(text, "1: line too long (more than 4096 bytes)");
	{
		struct config		 cfg;
		struct config_errors	 errs = { 0 };
		const char		*p;

		p = write_file("t.conf", "max_ttl 1m\0x\n", 13);
		ck_assert_int_eq(config_load(p, 0, &cfg, &errs), -1);
		ck_assert_uint_eq(errs.n, 1);
		ck_assert_ptr_nonnull(strstr(errs.msgs[0],
		    "t.conf:1: line holds a NUL byte"));
		config_errors_free(&errs);
	}

	/* Non-printable bytes are escaped in messages. */
	expect_error("max_ttl 1\x01s\n", "1: max_ttl: expected a duration "
	    "like 500ms, 30s, 10m or 1h, got \"1\\x01s\"");
}
END_TEST

START_TEST(ttl_conflict)
{
	struct config		 cfg;
	struct config_errors	 errs = { 0 };

	expect_error("default_ttl 20m\n", "1: default_ttl: 20m is greater "
	    "than max_ttl 10m");
	/* default_ttl left out follows max_ttl down: no conflict. */
	expect_ok("max_ttl 1m\n", &cfg);
	ck_assert_uint_eq(cfg.max_ttl, 60000);
	ck_assert_uint_eq(cfg.default_ttl, 60000);
	config_free(&cfg);
	expect_error("default_ttl 20m\n# x\nmax_ttl 15m\n", "3: max_ttl: 15m "
	    "is less than default_ttl 20m");
	expect_error("max_ttl 1m\ndefault_ttl 90s\n", "2: default_ttl: 90s is "
	    "greater than max_ttl 1m");
	/* A bad value is reported alone, not as a conflict too. */
	expect_error("default_ttl abc\nmax_ttl 1m\n", "1: default_ttl: "
	    "expected a duration like 500ms, 30s, 10m or 1h, got \"abc\"");
	expect_ok("default_ttl 1h\nmax_ttl 1h\n", &cfg);
	ck_assert_uint_eq(cfg.default_ttl, cfg.max_ttl);
	config_free(&cfg);
	ck_assert_int_eq(load_text("default_ttl 1h\n", &cfg, &errs), -1);
	ck_assert_uint_eq(errs.n, 1);
	config_errors_free(&errs);
}
END_TEST

START_TEST(all_errors_in_one_run)
{
	struct config		 cfg;
	struct config_errors	 errs = { 0 };
	const char		*p;
	char			 want[600];
	size_t			 i;

	memset(&cfg, 0xa5, sizeof cfg);
	ck_assert_int_eq(load_text("max_ttl 20m\n"
	    "max_ttl nope\n"
	    "listen 0.0.0.0:2337\n"
	    "colour blue\n"
	    "log_level debug\n"
	    "max_connections many\n", &cfg, &errs), -1);
	ck_assert_uint_eq(errs.n, 3);
	p = tpath("t.conf");
	snprintf(want, sizeof want, "%s:2: max_ttl: already set on line 1",
	    p);
	ck_assert_str_eq(errs.msgs[0], want);
	snprintf(want, sizeof want, "%s:4: colour: unknown directive", p);
	ck_assert_str_eq(errs.msgs[1], want);
	snprintf(want, sizeof want, "%s:6: max_connections: expected a whole "
	    "number, got \"many\"", p);
	ck_assert_str_eq(errs.msgs[2], want);
	/* A failed load leaves *out zeroed. */
	ck_assert_ptr_null(cfg.listen[0]);
	ck_assert_uint_eq(cfg.nlisten, 0);
	ck_assert_ptr_null(cfg.log_level);
	ck_assert_ptr_null(cfg.path);

	/* Errors are appended, not reset. */
	ck_assert_int_eq(load_text("x 1\n", &cfg, &errs), -1);
	ck_assert_uint_eq(errs.n, 4);
	config_errors_free(&errs);

	/* A file full of junk stops listing after 100. */
	{
		char	*junk = malloc(200 * 8 + 1);

		ck_assert_ptr_nonnull(junk);
		junk[0] = '\0';
		for (i = 0; i < 200; i++)
			strcat(junk, "junk 1\n");
		ck_assert_int_eq(load_text(junk, &cfg, &errs), -1);
		free(junk);
		ck_assert_uint_eq(errs.n, 101);
		ck_assert_ptr_nonnull(strstr(errs.msgs[99], ":100: junk:"));
		ck_assert_ptr_nonnull(strstr(errs.msgs[100],
		    "too many errors"));
		config_errors_free(&errs);
	}
}
END_TEST

/* --- listen and addresses ----------------------------------------------- */

START_TEST(listen_repeats)
{
	struct config	 cfg;
	char		 text[1024] = "";
	int		 i;

	expect_ok("listen 0.0.0.0:2337\n"
	    "listen [::1]:2337\n"
	    "listen unix:/run/alpcrund/alpcrund.sock\n", &cfg);
	ck_assert_uint_eq(cfg.nlisten, 3);
	ck_assert_str_eq(cfg.listen[0], "0.0.0.0:2337");
	ck_assert_str_eq(cfg.listen[1], "[::1]:2337");
	ck_assert_str_eq(cfg.listen[2], "unix:/run/alpcrund/alpcrund.sock");
	config_free(&cfg);

	expect_ok("listen 10.0.0.1:2337\n", &cfg);
	ck_assert_uint_eq(cfg.nlisten, 1);
	ck_assert_str_eq(cfg.listen[0], "10.0.0.1:2337");
	config_free(&cfg);

	expect_error("listen 0.0.0.0:2337\n\nlisten 0.0.0.0:2337\n",
	    "3: listen: 0.0.0.0:2337 already given on line 1");

	for (i = 0; i < CONFIG_MAX_LISTEN; i++)
		snprintf(text + strlen(text), sizeof text - strlen(text),
		    "listen 127.0.0.1:%d\n", 4000 + i);
	expect_ok(text, &cfg);
	ck_assert_uint_eq(cfg.nlisten, CONFIG_MAX_LISTEN);
	config_free(&cfg);
	strcat(text, "listen 127.0.0.1:5000\n");
	expect_error(text, "17: listen: too many, at most 16");
}
END_TEST

START_TEST(addresses)
{
	static const char *const good[] = {
		"127.0.0.1:1", "0.0.0.0:2337", "localhost:65535", "[::]:3337",
		"[fe80::1]:80", "[::ffff:10.0.0.1]:9100", "unix:/tmp/x.sock",
		"cache-1.example.com:2337", "central_cache:2337",
	};
	static const struct { const char *v, *why; } bad[] = {
		{ "127.0.0.1", "expected host:port, [v6]:port or unix:/path" },
		{ "127.0.0.1:0", "expected a port 1-65535" },
		{ "127.0.0.1:65536", "expected a port 1-65535" },
		{ "127.0.0.1:", "expected a port 1-65535" },
		{ "127.0.0.1:http", "expected a port 1-65535" },
		{ ":2337", "missing host" },
		{ "::1:2337", "IPv6 addresses need brackets" },
		{ "[::1]2337", "expected :port after the brackets" },
		{ "[::1]:", "expected a port 1-65535" },
		{ "[zz]:1", "bad IPv6 address" },
		{ "[]:1", "bad IPv6 address" },
		{ "[::1:1", "expected host:port" },
		{ "unix:relative.sock", "expected an absolute path" },
		{ "unix:", "expected an absolute path" },
		{ "256.1.1.1:80", "bad IPv4 address" },
		{ "1.2.3:80", "bad IPv4 address" },
		{ "a..b:1", "bad host name" },
		{ "h@st:1", "bad host name" },
	};
	struct config	 cfg;
	char		 text[512], want[256];
	size_t		 i;

	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		snprintf(text, sizeof text, "upstream %s\n", good[i]);
		expect_ok(text, &cfg);
		ck_assert_str_eq(cfg.upstream, good[i]);
		config_free(&cfg);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(text, sizeof text, "upstream %s\n", bad[i].v);
		snprintf(want, sizeof want, ":1: upstream: %s",
		    bad[i].why);
		expect_error_part(text, want);
		snprintf(want, sizeof want, "got \"%s\"", bad[i].v);
		expect_error_part(text, want);
	}
	/* sun_path holds 107 bytes and a NUL. */
	memset(text, 'x', sizeof text);
	memcpy(text, "listen unix:/", 13);
	memcpy(text + 13 + 106, "\n", 2);
	expect_ok(text, &cfg);
	config_free(&cfg);
	memcpy(text + 13 + 106, "y\n", 3);
	expect_error_part(text, ":1: listen: unix socket path too long");
}
END_TEST

/* A node's upstream is compared with its listen addresses as addresses
 * (addr.c), not as text. */
START_TEST(upstream_loop_as_addresses)
{
	static const struct { const char *listen, *upstream; } same[] = {
		{ "127.0.0.1:4000", "127.0.0.1:04000" },
		{ "[::1]:4000", "[0:0:0:0:0:0:0:1]:4000" },
		{ "[::]:4000", "127.0.0.1:4000" },
		{ "[0::0]:4000", "[::1]:4000" },
		{ "0.0.0.0:4000", "[::ffff:127.0.0.1]:4000" },
		{ "0.0.0.0:4000", "0.0.0.0:4000" },
		{ "unix:/tmp/n.sock", "unix:/tmp/n.sock" },
	};
	static const struct { const char *listen, *upstream; } apart[] = {
		{ "127.0.0.1:4000", "127.0.0.1:4001" },
		{ "0.0.0.0:4000", "10.0.0.1:4000" },
		/* A name is not resolved; only localhost is known to be us. */
		{ "0.0.0.0:4000", "127.example.com:4000" },
		{ "unix:/tmp/n.sock", "unix:/tmp/c.sock" },
	};
	struct config	 cfg;
	char		 text[256];
	size_t		 i;

	for (i = 0; i < sizeof same / sizeof same[0]; i++) {
		snprintf(text, sizeof text, "mode node\nlisten %s\nupstream "
		    "%s\n", same[i].listen, same[i].upstream);
		expect_error(text, "3: upstream: %s is this node's own listen "
		    "address %s; it must name the central cache",
		    same[i].upstream, same[i].listen);
	}
	for (i = 0; i < sizeof apart / sizeof apart[0]; i++) {
		snprintf(text, sizeof text, "mode node\nlisten %s\nupstream "
		    "%s\n", apart[i].listen, apart[i].upstream);
		expect_ok(text, &cfg);
		config_free(&cfg);
	}
}
END_TEST

/* node_id: checked when written, derived from the host name and the first
 * listen address when left out (node mode). */
START_TEST(node_id_set_and_derived)
{
	struct config	 cfg;
	char		 host[256], want[600], longl[200];

	expect_ok("mode node\nnode_id edge-1.fra:[::1]/x_y\n", &cfg);
	ck_assert_str_eq(cfg.node_id, "edge-1.fra:[::1]/x_y");
	config_free(&cfg);
	expect_error("mode node\n\nnode_id a,b\n", "3: node_id: \"a,b\" is "
	    "not an id: a letter or digit, then letters, digits and . _ : / "
	    "[ ] -, at most 64 bytes");
	expect_error_part("mode node\nnode_id -a\n", "is not an id");
	expect_error_part("mode node\nnode_id "
	    "a1234567890123456789012345678901234567890123456789012345678901234"
	    "\n", "is not an id");
	ck_assert_int_eq(config_node_id_ok("n"), 1);
	ck_assert_int_eq(config_node_id_ok(""), 0);
	ck_assert_int_eq(config_node_id_ok("a b"), 0);

	ck_assert_int_eq(gethostname(host, sizeof host), 0);
	expect_ok("mode node\nlisten 127.0.0.1:4555\n", &cfg);
	snprintf(want, sizeof want, "%s/127.0.0.1:4555", host);
	if (strlen(want) <= CONFIG_NODE_ID_MAX)
		ck_assert_str_eq(cfg.node_id, want);
	ck_assert_int_eq(config_node_id_ok(cfg.node_id), 1);
	config_free(&cfg);
	/* Too long a default keeps its head and a hash of the whole. */
	snprintf(longl, sizeof longl, "listen unix:/tmp/%090d.sock\n", 7);
	snprintf(want, sizeof want, "mode node\n%s", longl);
	expect_ok(want, &cfg);
	ck_assert_uint_eq(strlen(cfg.node_id), CONFIG_NODE_ID_MAX);
	ck_assert_int_eq(config_node_id_ok(cfg.node_id), 1);
	config_free(&cfg);
	/* A central has none unless set. */
	expect_ok("listen 127.0.0.1:4555\n", &cfg);
	ck_assert_ptr_null(cfg.node_id);
	config_free(&cfg);
}
END_TEST

/* The upstream resolved (-t and start): any name or form of one of the
 * node's own listen addresses is refused. */
static void
upstream_check(const char *text, const char *want)
{
	struct config	 cfg;
	char		 err[512] = "";
	int		 rv;

	expect_ok(text, &cfg);
	rv = config_check_upstream(&cfg, err, sizeof err);
	config_free(&cfg);
	if (want == NULL) {
		ck_assert_msg(rv == 0, "%s: refused: %s", text, err);
		return;
	}
	ck_assert_msg(rv == -1, "%s: accepted", text);
	ck_assert_msg(strstr(err, want) != NULL, "%s: %s", text, err);
}

/* A non-loopback IPv4 address of this host's, as text; -1 for none. */
static int
first_if_addr(char *buf, size_t len)
{
	struct ifaddrs *ifs, *i;
	int rv = -1;

	if (getifaddrs(&ifs) != 0)
		return -1;
	for (i = ifs; i != NULL && rv != 0; i = i->ifa_next) {
		const struct sockaddr_in *in = (const void *)i->ifa_addr;

		if (in != NULL && in->sin_family == AF_INET &&
		    (ntohl(in->sin_addr.s_addr) >> 24) != 127 &&
		    inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)len) !=
		    NULL)
			rv = 0;
	}
	freeifaddrs(ifs);
	return rv;
}

START_TEST(upstream_resolved)
{
	char host[256], text[512], addr[64];

	upstream_check("mode node\nlisten 127.0.0.1:4555\nupstream "
	    "localhost:4555\n", "upstream: localhost:4555 (127.0.0.1) is this "
	    "node's own listen address 127.0.0.1:4555; it must name the "
	    "central cache");
	/* A wildcard listener: the host's own name (resolved), any of its
	 * interface addresses. */
	ck_assert_int_eq(gethostname(host, sizeof host), 0);
	snprintf(text, sizeof text, "mode node\nlisten [::]:4555\nupstream "
	    "%s:4555\n", host);
	upstream_check(text, "own listen address [::]:4555");
	if (first_if_addr(addr, sizeof addr) == 0) {
		snprintf(text, sizeof text, "mode node\nlisten 0.0.0.0:4555\n"
		    "upstream %s:4555\n", addr);
		upstream_check(text, "own listen address 0.0.0.0:4555");
	}
	upstream_check("mode node\nlisten 127.0.0.1:9\nlisten "
	    "localhost:4555\nupstream 127.0.0.1:4555\n",
	    "own listen address localhost:4555");
	/* Any address of a failover list. */
	upstream_check("mode node\nlisten 127.0.0.1:4555\nupstream "
	    "192.0.2.7:2337 localhost:4555\n", "upstream: localhost:4555 "
	    "(127.0.0.1) is this node's own listen address 127.0.0.1:4555");
	upstream_check("mode node\nlisten 127.0.0.1:4555\nupstream "
	    "192.0.2.7:2337 localhost:4556\n", NULL);
	/* Another port, another host, a name that does not resolve. */
	upstream_check("mode node\nlisten 127.0.0.1:4555\nupstream "
	    "localhost:4556\n", NULL);
	upstream_check("mode node\nlisten 127.0.0.1:4555\nupstream "
	    "127.0.0.2:4555\n", NULL);
	upstream_check("mode node\nlisten 0.0.0.0:4555\nupstream "
	    "192.0.2.200:4555\n", NULL);
	upstream_check("mode node\nlisten 0.0.0.0:4555\nupstream "
	    "no-such-host.invalid:4555\n", NULL);
	/* A central has no upstream to check. */
	upstream_check("listen 127.0.0.1:4555\nupstream localhost:4555\n",
	    NULL);
}
END_TEST

/* The metrics server listens on TCP only: a unix: address is refused when
 * the file is read, not when the daemon starts. */
START_TEST(metrics_listen_not_unix)
{
	struct config	 cfg;

	expect_error("listen 127.0.0.1:4000\nmetrics_listen unix:/tmp/m.sock\n",
	    "2: metrics_listen: unix:/tmp/m.sock: the metrics server listens "
	    "on host:port or [v6]:port only, not on a unix socket");
	expect_ok("metrics_listen [::1]:9337\n", &cfg);
	config_free(&cfg);
}
END_TEST

/* --- Dump --------------------------------------------------------------- */

START_TEST(dump_defaults)
{
	struct config		 cfg;
	struct config_errors	 errs = { 0 };
	char			*out, line[128];
	size_t			 i;
	static const char *const lines[] = {
		"mode central\n", "listen 127.0.0.1:2337\n", "backend memory\n",
		"lmdb_path /var/lib/alpcrund\n", "lmdb_map_size 4g\n",
		"lmdb_sync on\n", "lmdb_max_readers 512\n",
		"lmdb_full_ratio 90%\n",
		"max_memory 0\n", "default_ttl 10m\n", "max_ttl 10m\n",
		"sweep_interval 1s\n", "max_message_size 260m\n",
		"max_inflight_bytes 1g\n", "# api_key_file (unset)\n",
		"# tls_cert (unset)\n",
		"upstream 127.0.0.1:2337\n",
		"upstream_tls off\n",
		"prefetch off\n", "prefetch_concurrency 4\n",
		"watch_buffer 1m\n",
		"# metrics_listen (unset)\n", "max_connections 10000\n",
		"max_concurrent_streams 128\n", "handshake_timeout 10s\n",
		"idle_timeout 5m\n", "send_timeout 1m\n",
		"shutdown_grace 30s\n", "log_level info\n",
		"log_target stderr\n", "# pid_file (unset)\n",
	};

	ck_assert_int_eq(config_load(NULL, 0, &cfg, &errs), 0);
	out = dump_string(&cfg);
	for (i = 0; i < sizeof lines / sizeof lines[0]; i++)
		ck_assert_msg(strstr(out, lines[i]) != NULL, "dump lacks %s",
		    lines[i]);
	/* Every directive appears, at the start of a line. */
	for (i = 0; i < config_table_len; i++) {
		snprintf(line, sizeof line, "\n%s ", config_table[i].name);
		if (strncmp(out, line + 1, strlen(line + 1)) == 0)
			continue;
		if (strstr(out, line) != NULL)
			continue;
		snprintf(line, sizeof line, "\n# %s ", config_table[i].name);
		ck_assert_msg(strstr(out, line) != NULL, "dump lacks %s",
		    config_table[i].name);
	}
	free(out);
	config_free(&cfg);
}
END_TEST

START_TEST(dump_round_trip)
{
	struct config		 a, b;
	struct config_errors	 errs = { 0 };
	char			*da, *db, buf[256];
	const char		*p;

	expect_ok("listen 0.0.0.0:2337\n"
	    "listen unix:/run/alpcrund.sock\n"
	    "max_memory 1536k\n"
	    "default_ttl 120\n"
	    "max_ttl 600\n"
	    "sweep_interval 1500ms\n"
	    "max_message_size 268435456\n"
	    "max_inflight_bytes 1048576\n"
	    "api_key_file /etc/alpcrund.key\n"
	    "metrics_listen [::1]:9100\n"
	    "max_connections 500\n"
	    "max_concurrent_streams 64\n"
	    "handshake_timeout 90s\n"
	    "idle_timeout 0\n"
	    "send_timeout 2h\n"
	    "shutdown_grace 0\n"
	    "log_level warn\n"
	    "log_target /var/log/alpcrund.log\n"
	    "pid_file /run/alpcrund.pid\n", &a);
	da = dump_string(&a);
	/* Largest exact unit. */
	ck_assert_ptr_nonnull(strstr(da, "\nmax_ttl 10m\n"));
	ck_assert_ptr_nonnull(strstr(da, "\ndefault_ttl 2m\n"));
	ck_assert_ptr_nonnull(strstr(da, "\nmax_message_size 256m\n"));
	ck_assert_ptr_nonnull(strstr(da, "\nmax_inflight_bytes 1m\n"));
	ck_assert_ptr_nonnull(strstr(da, "\nmax_memory 1536k\n"));
	ck_assert_ptr_nonnull(strstr(da, "\nsweep_interval 1500ms\n"));
	ck_assert_ptr_nonnull(strstr(da, "\nhandshake_timeout 90s\n"));
	ck_assert_ptr_nonnull(strstr(da, "\nidle_timeout 0s\n"));
	ck_assert_ptr_nonnull(strstr(da, "\nsend_timeout 2h\n"));
	ck_assert_ptr_nonnull(strstr(da, "\nlisten 0.0.0.0:2337\n"
	    "listen unix:/run/alpcrund.sock\n"));

	p = write_file("dump.conf", da, strlen(da));
	ck_assert_int_eq(config_load(p, 0, &b, &errs), 0);
	ck_assert_uint_eq(errs.n, 0);
	db = dump_string(&b);
	ck_assert_str_eq(da, db);
	ck_assert_uint_eq(config_restart_changes(&a, &b, buf, sizeof buf), 0);
	ck_assert_uint_eq(b.nlisten, 2);
	ck_assert_str_eq(b.listen[1], "unix:/run/alpcrund.sock");
	ck_assert_uint_eq(b.max_memory, 1536 * 1024);
	ck_assert_uint_eq(b.default_ttl, 120000);
	ck_assert_uint_eq(b.max_ttl, 600000);
	ck_assert_uint_eq(b.sweep_interval, 1500);
	ck_assert_uint_eq(b.max_message_size, 268435456);
	ck_assert_uint_eq(b.max_inflight_bytes, 1048576);
	ck_assert_str_eq(b.api_key_file, "/etc/alpcrund.key");
	ck_assert_str_eq(b.metrics_listen, "[::1]:9100");
	ck_assert_uint_eq(b.max_connections, 500);
	ck_assert_uint_eq(b.max_concurrent_streams, 64);
	ck_assert_uint_eq(b.handshake_timeout, 90000);
	ck_assert_uint_eq(b.idle_timeout, 0);
	ck_assert_uint_eq(b.send_timeout, 7200000);
	ck_assert_uint_eq(b.shutdown_grace, 0);
	ck_assert_str_eq(b.log_level, "warn");
	ck_assert_str_eq(b.log_target, "/var/log/alpcrund.log");
	ck_assert_str_eq(b.pid_file, "/run/alpcrund.pid");
	ck_assert_str_eq(b.lmdb_path, a.lmdb_path);
	ck_assert_uint_eq(b.lmdb_map_size, a.lmdb_map_size);
	free(da);
	free(db);
	config_free(&a);
	config_free(&b);

	/* The defaults round-trip as well. */
	ck_assert_int_eq(config_load(NULL, 0, &a, &errs), 0);
	da = dump_string(&a);
	p = write_file("dump.conf", da, strlen(da));
	ck_assert_int_eq(config_load(p, 0, &b, &errs), 0);
	db = dump_string(&b);
	ck_assert_str_eq(da, db);
	free(da);
	free(db);
	config_free(&a);
	config_free(&b);
}
END_TEST

/* --- Restart changes ---------------------------------------------------- */

START_TEST(restart_changes)
{
	struct config		 a, b, c;
	struct config_errors	 errs = { 0 };
	char			 buf[256], small[10];

	ck_assert_int_eq(config_load(NULL, 0, &a, &errs), 0);
	expect_ok("listen 0.0.0.0:2337\n"
	    "max_ttl 20m\n"
	    "default_ttl 20m\n"
	    "log_level debug\n"
	    "log_target syslog\n"
	    "api_key_file /k\n"
	    "max_concurrent_streams 10\n"
	    "idle_timeout 1m\n"
	    "metrics_listen 127.0.0.1:9100\n"
	    "max_connections 50\n"
	    "pid_file /run/a.pid\n", &b);
	ck_assert_uint_eq(config_restart_changes(&a, &b, buf, sizeof buf), 4);
	ck_assert_str_eq(buf,
	    "listen, metrics_listen, max_connections, pid_file");
	ck_assert_uint_eq(config_restart_changes(&b, &a, buf, sizeof buf), 4);
	ck_assert_uint_eq(config_restart_changes(&a, &a, buf, sizeof buf), 0);
	ck_assert_str_eq(buf, "");
	/* A short buffer is cut, never overrun; the count stays right. */
	memset(small, 'z', sizeof small);
	ck_assert_uint_eq(config_restart_changes(&a, &b, small, sizeof small),
	    4);
	ck_assert_uint_lt(strlen(small), sizeof small);
	ck_assert_uint_eq(config_restart_changes(&a, &b, NULL, 0), 4);
	config_free(&b);

	/* Live changes only: nothing needs a restart. */
	expect_ok("max_ttl 1h\nlog_level error\nsend_timeout 5s\n"
	    "max_message_size 1m\nmax_memory 2g\nsweep_interval 100ms\n", &b);
	ck_assert_uint_eq(config_restart_changes(&a, &b, buf, sizeof buf), 0);
	config_free(&b);

	/* The same listen addresses in another order are no change. */
	expect_ok("listen 127.0.0.1:1\nlisten 127.0.0.1:2\n", &b);
	write_file("c.conf", "listen 127.0.0.1:2\nlisten 127.0.0.1:1\n", 38);
	ck_assert_int_eq(config_load(tpath("c.conf"), 0, &c, &errs), 0);
	ck_assert_uint_eq(config_restart_changes(&b, &c, buf, sizeof buf), 0);
	config_free(&c);
	write_file("c.conf", "listen 127.0.0.1:2\nlisten 127.0.0.1:3\n", 38);
	ck_assert_int_eq(config_load(tpath("c.conf"), 0, &c, &errs), 0);
	ck_assert_uint_eq(config_restart_changes(&b, &c, buf, sizeof buf), 1);
	ck_assert_str_eq(buf, "listen");
	config_free(&c);
	config_free(&b);
	config_free(&a);
	ck_assert_uint_eq(errs.n, 0);
}
END_TEST

/* --- Logger ------------------------------------------------------------- */

#define TS_RE	"^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}" \
		"\\.[0-9]{3}Z "

/* Line `n` (0-based) of text, without its newline, into buf. */
static const char *
nth_line(const char *text, int n, char *buf, size_t len)
{
	const char	*e;
	size_t		 l;

	for (; n > 0 && text != NULL; n--)
		if ((text = strchr(text, '\n')) != NULL)
			text++;
	if (text == NULL || *text == '\0')
		return NULL;
	e = strchr(text, '\n');
	l = e != NULL ? (size_t)(e - text) : strlen(text);
	if (l >= len)
		l = len - 1;
	memcpy(buf, text, l);
	buf[l] = '\0';
	return buf;
}

static int
count_lines(const char *text)
{
	int	 n = 0;

	for (; *text != '\0'; text++)
		if (*text == '\n')
			n++;
	return n;
}

/* Line n matches TS_RE followed by `rest` exactly. */
static void
expect_line(const char *text, int n, const char *rest)
{
	char	 buf[8192];
	regex_t	 re;

	ck_assert_ptr_nonnull(nth_line(text, n, buf, sizeof buf));
	ck_assert_int_eq(regcomp(&re, TS_RE, REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_msg(regexec(&re, buf, 0, NULL, 0) == 0, "bad ts: %s", buf);
	regfree(&re);
	ck_assert_str_eq(buf + strlen("ts=2026-11-25T00:01:38.123Z "), rest);
}

START_TEST(log_format)
{
	const char	*p = tpath("a.log");
	char		*text, big[6000];
	struct stat	 st;

	umask(022);
	ck_assert_int_eq(log_open(p, "info"), 0);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0640);
	log_info("listening", "addr=%s", "127.0.0.1:2337");
	log_debug("dropped", NULL);
	log_warn("cannot bind", "addr=%s errno=%d", "[::1]:1", 98);
	log_error("a=b", NULL);
	log_info("say \"hi\"", NULL);
	log_info("two\nlines", "k=%s", "v\nw");
	log_info("", NULL);
	log_info("started", "%s", "");
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	log_info("big", "k=%s", big);
	log_close();

	text = read_all(p);
	ck_assert_int_eq(count_lines(text), 8);
	expect_line(text, 0, "level=info msg=listening addr=127.0.0.1:2337");
	expect_line(text, 1, "level=warn msg=\"cannot bind\" addr=[::1]:1 "
	    "errno=98");
	expect_line(text, 2, "level=error msg=\"a=b\"");
	expect_line(text, 3, "level=info msg=\"say \\\"hi\\\"\"");
	expect_line(text, 4, "level=info msg=\"two\\nlines\" k=v\\nw");
	expect_line(text, 5, "level=info msg=\"\"");
	expect_line(text, 6, "level=info msg=started");
	{
		char	 line[8192];

		ck_assert_ptr_nonnull(nth_line(text, 7, line, sizeof line));
		ck_assert_uint_le(strlen(line) + 1, 4097);
		ck_assert_ptr_nonnull(strstr(line, "level=info msg=big k=xxx"));
	}
	free(text);
}
END_TEST

START_TEST(log_utc_time)
{
	const char	*p = tpath("utc.log");
	char		*text, want[32];
	struct tm	 tm;
	struct timespec	 ts;
	time_t		 t0, t1;

	/* Local time 5 hours behind UTC must not leak into the log. */
	setenv("TZ", "XST+5", 1);
	tzset();
	ck_assert_int_eq(log_open(p, NULL), 0);
	/* The log's own clock, not time(3): glibc's time() reads a coarse
	 * clock that can still say the previous second (CI saw :33 against
	 * the log's :34.003). */
	clock_gettime(CLOCK_REALTIME, &ts);
	t0 = ts.tv_sec;
	log_info("tick", NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	t1 = ts.tv_sec;
	log_close();
	text = read_all(p);
	gmtime_r(&t0, &tm);
	strftime(want, sizeof want, "ts=%Y-%m-%dT%H:%M:%S", &tm);
	if (strncmp(text, want, strlen(want)) != 0) {
		gmtime_r(&t1, &tm);
		strftime(want, sizeof want, "ts=%Y-%m-%dT%H:%M:%S", &tm);
		ck_assert_msg(strncmp(text, want, strlen(want)) == 0,
		    "%s is not %s", text, want);
	}
	free(text);
}
END_TEST

START_TEST(log_levels)
{
	const char	*p = tpath("l.log");
	char		*text;
	enum log_level	 l;

	ck_assert_int_eq(log_level_parse("debug", &l), 0);
	ck_assert_int_eq(l, LOG_LVL_DEBUG);
	ck_assert_int_eq(log_level_parse("info", &l), 0);
	ck_assert_int_eq(l, LOG_LVL_INFO);
	ck_assert_int_eq(log_level_parse("warn", &l), 0);
	ck_assert_int_eq(l, LOG_LVL_WARN);
	ck_assert_int_eq(log_level_parse("error", &l), 0);
	ck_assert_int_eq(l, LOG_LVL_ERROR);
	ck_assert_int_eq(log_level_parse("warning", &l), -1);
	ck_assert_int_eq(log_level_parse("", &l), -1);
	ck_assert_int_eq(log_level_parse(NULL, &l), -1);

	ck_assert_int_eq(log_open(p, "warn"), 0);
	log_debug("d", NULL);
	log_info("i", NULL);
	log_warn("w", NULL);
	log_error("e", NULL);
	/* A bad level changes nothing. */
	errno = 0;
	ck_assert_int_eq(log_open(tpath("other.log"), "loud"), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(access(tpath("other.log"), F_OK), -1);
	log_info("i2", NULL);
	ck_assert_int_eq(log_open(p, "debug"), 0);
	log_debug("d2", NULL);
	log_close();
	text = read_all(p);
	ck_assert_int_eq(count_lines(text), 3);
	expect_line(text, 0, "level=warn msg=w");
	expect_line(text, 1, "level=error msg=e");
	expect_line(text, 2, "level=debug msg=d2");
	free(text);
}
END_TEST

START_TEST(log_reopen)
{
	const char	*p = tpath("r.log"), *old = tpath("r.log.1");
	char		*text;

	ck_assert_int_eq(log_open(p, "info"), 0);
	log_info("first", NULL);
	ck_assert_int_eq(rename(p, old), 0);
	log_info("second", NULL);	/* still the renamed file */
	ck_assert_int_eq(log_open(p, "info"), 0);
	log_info("third", NULL);
	/* A target that cannot be opened keeps the old one. */
	errno = 0;
	ck_assert_int_eq(log_open(tpath("no/such/dir.log"), "info"), -1);
	ck_assert_int_eq(errno, ENOENT);
	log_info("fourth", NULL);
	/* syslog and back. */
	ck_assert_int_eq(log_open("syslog", "info"), 0);
	log_debug("to syslog, dropped", NULL);
	ck_assert_int_eq(log_open(p, "info"), 0);
	log_info("fifth", NULL);
	log_close();

	text = read_all(old);
	ck_assert_int_eq(count_lines(text), 2);
	expect_line(text, 0, "level=info msg=first");
	expect_line(text, 1, "level=info msg=second");
	free(text);
	text = read_all(p);
	ck_assert_int_eq(count_lines(text), 3);
	expect_line(text, 0, "level=info msg=third");
	expect_line(text, 1, "level=info msg=fourth");
	expect_line(text, 2, "level=info msg=fifth");
	free(text);
}
END_TEST

/*
 * Before log_open: stderr at info. The logger's state must be the one a
 * process starts with, and the tests before this one changed it; with
 * CK_FORK=no (valgrind) they ran in this very process, so a fork would
 * inherit that too. The part that logs runs in a fresh copy of this
 * program instead: exec'd with FRESH_LOG_ENV set, its stderr the file.
 */
#define FRESH_LOG_ENV	"CHECK_CONFIG_FRESH_LOG"

static int
fresh_log_child(void)
{
	log_debug("hidden", NULL);
	log_info("shown", "k=%d", 1);
	return 0;
}

START_TEST(log_default_stderr)
{
	const char	*p = tpath("stderr.log");
	char		 self[4096], *text;
	ssize_t		 n;
	pid_t		 pid;
	int		 fd, status;

	n = readlink("/proc/self/exe", self, sizeof self - 1);
	ck_assert_msg(n > 0 && (size_t)n < sizeof self - 1,
	    "readlink /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ne(fd, -1);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		if (dup2(fd, STDERR_FILENO) == -1 ||
		    setenv(FRESH_LOG_ENV, "1", 1) == -1)
			_exit(126);
		execl(self, self, (char *)NULL);
		_exit(127);
	}
	close(fd);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "%s as a fresh process: wait status %#x", self, status);
	text = read_all(p);
	ck_assert_int_eq(count_lines(text), 1);
	expect_line(text, 0, "level=info msg=shown k=1");
	free(text);
}
END_TEST

/* Several writers at once: every line arrives whole. */
START_TEST(log_no_interleaving)
{
	const char	*p = tpath("many.log");
	char		*text, pad[1500], line[8192];
	pid_t		 pids[4];
	int		 i, j, status, n;
	regex_t		 re;

	memset(pad, 'p', sizeof pad - 1);
	pad[sizeof pad - 1] = '\0';
	ck_assert_int_eq(log_open(p, "info"), 0);
	for (i = 0; i < 4; i++) {
		pids[i] = fork();
		ck_assert_int_ne(pids[i], -1);
		if (pids[i] == 0) {
			for (j = 0; j < 300; j++)
				log_info("burst", "writer=%d seq=%d pad=%s",
				    i, j, pad);
			_exit(0);
		}
	}
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	log_close();
	text = read_all(p);
	n = count_lines(text);
	ck_assert_int_eq(n, 1200);
	ck_assert_int_eq(regcomp(&re, TS_RE "level=info msg=burst writer=[0-3] "
	    "seq=[0-9]+ pad=p{1499}$", REG_EXTENDED | REG_NOSUB), 0);
	for (i = 0; i < n; i++) {
		ck_assert_ptr_nonnull(nth_line(text, i, line, sizeof line));
		ck_assert_msg(regexec(&re, line, 0, NULL, 0) == 0,
		    "line %d mangled", i);
	}
	regfree(&re);
	free(text);
}
END_TEST

/* --- Runner ------------------------------------------------------------- */

static TCase *
tcase(const char *name)
{
	TCase	*tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TEST_TIMEOUT);
	return tc;
}

int
main(void)
{
	Suite	*s;
	TCase	*tc;

	if (getenv(FRESH_LOG_ENV) != NULL)
		return fresh_log_child();

	s = suite_create("config");
	tc = tcase("table");
	tcase_add_test(tc, table_order_and_flags);
	tcase_add_test(tc, table_node_defaults);
	tcase_add_test(tc, s3_directives);
	suite_add_tcase(s, tc);

	tc = tcase("load");
	tcase_add_test(tc, defaults_without_file);
	tcase_add_test(tc, missing_file);
	tcase_add_test(tc, syntax_comments_and_space);
	tcase_add_test(tc, values_of_each_type);
	tcase_add_test(tc, listen_repeats);
	tcase_add_test(tc, addresses);
	tcase_add_test(tc, upstream_loop_as_addresses);
	tcase_add_test(tc, node_id_set_and_derived);
	tcase_add_test(tc, upstream_resolved);
	tcase_add_test(tc, upstream_lists);
	tcase_add_test(tc, metrics_listen_not_unix);
	suite_add_tcase(s, tc);

	tc = tcase("values");
	tcase_add_test(tc, durations);
	tcase_add_test(tc, sizes);
	suite_add_tcase(s, tc);

	tc = tcase("errors");
	tcase_add_test(tc, error_messages);
	tcase_add_test(tc, ttl_conflict);
	tcase_add_test(tc, all_errors_in_one_run);
	suite_add_tcase(s, tc);

	tc = tcase("dump");
	tcase_add_test(tc, dump_defaults);
	tcase_add_test(tc, dump_round_trip);
	tcase_add_test(tc, restart_changes);
	suite_add_tcase(s, tc);

	tc = tcase("log");
	tcase_add_test(tc, log_format);
	tcase_add_test(tc, log_utc_time);
	tcase_add_test(tc, log_levels);
	tcase_add_test(tc, log_reopen);
	tcase_add_test(tc, log_default_stderr);
	tcase_add_test(tc, log_no_interleaving);
	suite_add_tcase(s, tc);

	return tu_run(s);
}
