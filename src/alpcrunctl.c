/*
 * alpcrunctl.c: the command-line client, alpcrunctl(1) (spec §9). One gRPC
 * call per run (set, update, get, delete, health, watch) over the project's
 * own HTTP/2 client (h2client.c), the one node mode uses: main makes an
 * event base and a client, starts the call, and runs the loop until the call
 * is done. Owns the command line, payload files, the progress bar and the
 * exit status scheme (0 OK, 1 local error, 2 usage, 3 not SERVING, 10 + the
 * gRPC status code).
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "alpcrun/v1/cache.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "clock.h"
#include "ctl_top.h"
#include "config.h"
#include "auth.h"
#include "grpc_status.h"
#include "h2client.h"
#include "log.h"
#include "sdwire.h"
#include "tls.h"

#define DEFAULT_SERVER		"127.0.0.1:2337"
#define DEFAULT_TIMEOUT_MS	60000		/* unary calls; watch: none */
#define PROGRESS_MIN		(8ull << 20)	/* bar for payloads above */
#define PROGRESS_EVERY_NS	(100 * NS_PER_MS)

#define EXIT_LOCAL		1
#define EXIT_USAGE		2
#define EXIT_NOT_SERVING	3
#define EXIT_GRPC_BASE		10

#define PATH_SET	"/alpcrun.v1.Cache/SetSharedData"
#define PATH_UPDATE	"/alpcrun.v1.Cache/UpdateSharedData"
#define PATH_GET	"/alpcrun.v1.Cache/GetSharedData"
#define PATH_DELETE	"/alpcrun.v1.Cache/DeleteSharedData"
#define PATH_WATCH	"/alpcrun.v1.Cache/WatchSharedData"
#define PATH_HEALTH	"/grpc.health.v1.Health/Check"

static const char *usage_text =
    "usage: alpcrunctl [-v] [-s host:port | -s unix:/path] [--tls] [--ca file]\n"
    "                  [--cert file] [--key file] [--server-name name]\n"
    "                  [--api-key-file file]\n"
    "                  [--timeout duration] [--max-message-size size]\n"
    "                  command [argument ...]\n"
    "commands:\n"
    "  set session level file|- [--ttl duration]\n"
    "  update session level file|- [--ttl duration]\n"
    "  get session [level] [-o file]\n"
    "  delete session\n"
    "  health [service]\n"
    "  watch [session]\n"
    "  ls [prefix] [-o table|json]\n"
    "  top [--interval duration] [--count n] metrics-host:port ...\n";

/* ls: one session of the change feed's snapshot. */
struct ls_row {
	uint8_t		*id;
	size_t		 idlen;
	uint32_t	 level;
	uint64_t	 size;
	uint64_t	 ttl_ms;
	uint64_t	 gen;
};

/* Everything one run needs; one of it. */
static struct {
	struct event_base	*base;
	struct h2client		*client;
	struct h2client_opts	 opts;
	uint64_t		 timeout_ns;	/* 0: no deadline */
	struct h2call		*call;
	struct event		*sigint, *sigterm;
	int			 finished;	/* done ran, or interrupted */
	int			 exit;		/* the exit status */

	/* The request payload: mmap'ed file or malloc'ed stdin. */
	uint8_t			*payload;
	size_t			 payload_len;
	int			 payload_mapped;
	int			 payload_released;

	/* get */
	const char		*outfile;
	/* watch */
	int			 stdout_broken;
	/* ls: the sessions of the snapshot whose id starts with prefix */
	const char		*prefix;
	struct ls_row		*rows;
	size_t			 nrows, cap;

	/* Progress bar. */
	int			 tty;		/* stderr is a terminal */
	int			 bar_shown;
	uint64_t		 bar_last_ns;
	int			 bar_last_pct;
} g = { .bar_last_pct = -1 };

static void
usage(const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		fputs("alpcrunctl: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fputs(usage_text, stderr);
	exit(EXIT_USAGE);
}

static void __attribute__((format(printf, 1, 2)))
fatal(const char *fmt, ...)
{
	va_list ap;

	fputs("alpcrunctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_LOCAL);
}

/* --- the progress bar ----------------------------------------------------- */

static void
bar_draw(uint64_t done, uint64_t total, int force)
{
	char line[128], bar[31];
	uint64_t now = clock_now_ns();
	int pct, fill, n;

	if (total == 0)
		return;
	if (done > total)
		done = total;
	pct = (int)(done * 100 / total);
	/* At most ten redraws a second, and one per percent. */
	if (!force && (pct == g.bar_last_pct ||
	    now - g.bar_last_ns < PROGRESS_EVERY_NS))
		return;
	g.bar_last_pct = pct;
	g.bar_last_ns = now;
	fill = pct * 30 / 100;
	memset(bar, '#', (size_t)fill);
	memset(bar + fill, ' ', (size_t)(30 - fill));
	bar[30] = '\0';
	n = snprintf(line, sizeof(line), "\r[%s] %3d%% %.1f/%.1f MiB", bar,
	    pct, (double)done / 1048576.0, (double)total / 1048576.0);
	/* write(2), not stdio: the hook runs from inside nghttp2. */
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) > 0)
		g.bar_shown = 1;
}

static void
bar_end(void)
{
	if (g.bar_shown && write(STDERR_FILENO, "\n", 1) < 0)
		return;
	g.bar_shown = 0;
}

/* h2call_progress(): uploads of a payload over PROGRESS_MIN draw the
 * request, downloads the reply once it is known to be over PROGRESS_MIN
 * (its few bytes of other fields included). */
static void
progress_cb(void *arg, uint64_t sent, uint64_t send_total, uint64_t received,
    uint64_t recv_total)
{
	if (g.payload_len > PROGRESS_MIN && recv_total == 0)
		bar_draw(sent, send_total, sent == send_total);
	else if (recv_total > PROGRESS_MIN)
		bar_draw(received, recv_total, received == recv_total);
}

/* --- the loop --------------------------------------------------------------- */

static int
grpc_exit(int status)
{
	return status == GRPC_OK ? 0 : EXIT_GRPC_BASE + status;
}

static void
report_status(const struct h2reply *r)
{
	bar_end();
	if (r->status != GRPC_OK)
		fprintf(stderr, "alpcrunctl: %s: %s\n",
		    grpc_status_name(r->status), r->message);
	g.exit = grpc_exit(r->status);
}

static void
finish(void)
{
	g.finished = 1;
	g.call = NULL;
	event_base_loopbreak(g.base);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	/* Interrupting watch (or top) is its normal end. */
	h2call_cancel(g.call);
	bar_end();
	g.exit = 0;
	finish();
}

/* SIGINT and SIGTERM end the run through signal_cb(). */
static void
catch_signals(void)
{
	g.sigint = evsignal_new(g.base, SIGINT, signal_cb, NULL);
	g.sigterm = evsignal_new(g.base, SIGTERM, signal_cb, NULL);
	if (g.sigint == NULL || g.sigterm == NULL ||
	    evsignal_add(g.sigint, NULL) != 0 ||
	    evsignal_add(g.sigterm, NULL) != 0)
		fatal("cannot catch signals");
}

static void
payload_release(void *arg)
{
	/* The bytes stay until exit: see main(). */
	g.payload_released = 1;
}

static uint64_t
deadline(void)
{
	return g.timeout_ns != 0 ? clock_now_ns() + g.timeout_ns : 0;
}

/* The client is made once the command line has been taken apart, so that
 * a usage error never opens a connection. */
static struct h2client *
client(void)
{
	char err[256];

	if ((g.client = h2client_new(g.base, NULL, &g.opts, NULL, NULL, err,
	    sizeof(err))) == NULL)
		fatal("%s%s", g.opts.ssl_ctx != NULL ? "--tls: " : "", err);
	return g.client;
}

static void
run(void)
{
	while (!g.finished)
		if (event_base_dispatch(g.base) != 0)
			fatal("event loop failed");
}

/* --- payload input and output ----------------------------------------------- */

/* Read fd to its end into one malloc'ed buffer. */
static uint8_t *
read_all(int fd, const char *name, size_t *lenp)
{
	size_t cap = 1 << 16, len = 0;
	uint8_t *buf, *p;
	ssize_t n;

	if ((buf = malloc(cap)) == NULL)
		fatal("out of memory");
	for (;;) {
		if (len == cap) {
			cap *= 2;
			if ((p = realloc(buf, cap)) == NULL)
				fatal("out of memory reading %s", name);
			buf = p;
		}
		if ((n = read(fd, buf + len, cap - len)) == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fatal("%s: %s", name, strerror(errno));
		}
		len += (size_t)n;
	}
	*lenp = len;
	return buf;
}

/* A regular file is mapped and sent from the mapping, by reference; stdin
 * and other files are read into one buffer (the only copy made here). */
static void
load_payload(const char *path)
{
	struct stat st;
	int fd;

	if (strcmp(path, "-") == 0) {
		g.payload = read_all(STDIN_FILENO, "stdin", &g.payload_len);
		return;
	}
	if ((fd = open(path, O_RDONLY)) == -1)
		fatal("%s: %s", path, strerror(errno));
	if (fstat(fd, &st) == -1)
		fatal("%s: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		fatal("%s: %s", path, strerror(EISDIR));
	if (S_ISREG(st.st_mode) && st.st_size > 0) {
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ,
		    MAP_PRIVATE, fd, 0);

		if (p == MAP_FAILED)
			fatal("%s: %s", path, strerror(errno));
		g.payload = p;
		g.payload_len = (size_t)st.st_size;
		g.payload_mapped = 1;
	} else if (!S_ISREG(st.st_mode))
		g.payload = read_all(fd, path, &g.payload_len);
	close(fd);
}

static void
free_payload(void)
{
	/* After h2client_free(): only if the client let go of the bytes. */
	if (!g.payload_released)
		return;
	if (g.payload_mapped)
		munmap(g.payload, g.payload_len);
	else
		free(g.payload);
	g.payload = NULL;
}

static int
write_all(int fd, const uint8_t *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, p, len)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* --- arguments ---------------------------------------------------------------- */

static uint32_t
parse_level(const char *s)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		usage("bad update level: %s", s);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > UINT32_MAX)
		usage("bad update level: %s", s);
	return (uint32_t)v;
}

static uint64_t
parse_duration(const char *opt, const char *s)
{
	uint64_t ms;

	if (parse_duration_ms(s, &ms) != 0)
		usage("%s: expected a duration like 500ms, 30s, 10m or 1h: %s",
		    opt, s);
	return ms;
}

/* --- commands ------------------------------------------------------------------ */

static void
empty_done(void *arg, struct h2reply *r)
{
	report_status(r);
	finish();
}

static void
get_done(void *arg, struct h2reply *r)
{
	struct sd_view m;
	int fd = STDOUT_FILENO;
	const char *name = "stdout";

	report_status(r);
	finish();
	if (r->status != GRPC_OK)
		return;
	/* The payload is written from the reply's buffer, where it lies (the
	 * one copy of it in this process). */
	if (sdwire_parse(r->data, r->len, &m) != 0) {
		fprintf(stderr, "alpcrunctl: cannot decode the reply\n");
		g.exit = EXIT_LOCAL;
		return;
	}
	/* The file is opened only now, so a failed get leaves it alone. */
	if (g.outfile != NULL) {
		name = g.outfile;
		fd = open(g.outfile, O_WRONLY | O_CREAT | O_TRUNC, 0666);
	}
	if (fd == -1 || (m.payload_len > 0 && write_all(fd,
	    r->data + m.payload_off, m.payload_len) != 0) ||
	    (fd != STDOUT_FILENO && close(fd) != 0)) {
		fprintf(stderr, "alpcrunctl: %s: %s\n", name, strerror(errno));
		g.exit = EXIT_LOCAL;
	}
}

static void
health_done(void *arg, struct h2reply *r)
{
	Grpc__Health__V1__HealthCheckResponse *m;
	const ProtobufCEnumValue *v;

	report_status(r);
	finish();
	if (r->status != GRPC_OK)
		return;
	m = grpc__health__v1__health_check_response__unpack(NULL, r->len,
	    r->data);
	if (m == NULL) {
		fprintf(stderr, "alpcrunctl: cannot decode the reply\n");
		g.exit = EXIT_LOCAL;
		return;
	}
	v = protobuf_c_enum_descriptor_get_value(
	    &grpc__health__v1__health_check_response__serving_status__descriptor,
	    m->status);
	if (v != NULL)
		printf("%s\n", v->name);
	else
		printf("%d\n", (int)m->status);
	if (m->status !=
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
		g.exit = EXIT_NOT_SERVING;
	grpc__health__v1__health_check_response__free_unpacked(m, NULL);
}

/* Session ids are printable ASCII; anything else is shown escaped. */
static void
print_escaped(FILE *fp, const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] > 0x20 && p[i] < 0x7f && p[i] != '\\')
			fputc(p[i], fp);
		else
			fprintf(fp, "\\x%02x", p[i]);
	}
}

static void
watch_msg(void *arg, const uint8_t *msg, size_t len)
{
	Alpcrun__V1__SharedDataNotice *m;
	const ProtobufCEnumValue *v;

	if (g.stdout_broken)
		return;
	m = alpcrun__v1__shared_data_notice__unpack(NULL, len, msg);
	if (m == NULL) {
		printf("(undecodable notice of %zu bytes)\n", len);
		goto out;
	}
	v = protobuf_c_enum_descriptor_get_value(
	    &alpcrun__v1__shared_data_notice__kind__descriptor, m->kind);
	printf("seq=%" PRIu64 " kind=", m->seq);
	if (v != NULL)
		printf("%s", v->name);
	else
		printf("%d", (int)m->kind);
	if (m->has_session_id) {
		fputs(" session=", stdout);
		print_escaped(stdout, m->session_id.data, m->session_id.len);
	}
	if (m->has_update_level)
		printf(" level=%" PRIu32, m->update_level);
	if (m->ttl != NULL)
		printf(" ttl=%" PRId64 ".%03ds", m->ttl->seconds,
		    (int)(m->ttl->nanos / 1000000));
	putchar('\n');
	alpcrun__v1__shared_data_notice__free_unpacked(m, NULL);
out:
	/* Line by line, and stop when nobody reads any more. */
	if (fflush(stdout) != 0) {
		g.stdout_broken = 1;
		fprintf(stderr, "alpcrunctl: stdout: %s\n", strerror(errno));
		h2call_cancel(g.call);
		g.exit = EXIT_LOCAL;
		finish();
	}
}

static void
watch_done(void *arg, struct h2reply *r)
{
	report_status(r);
	finish();
}

/* --- ls: the snapshot of the change feed, as a table or JSON ---------------- */

static int
ls_cmp(const void *a, const void *b)
{
	const struct ls_row *x = a, *y = b;
	size_t n = x->idlen < y->idlen ? x->idlen : y->idlen;
	int c = memcmp(x->id, y->id, n);

	return c != 0 ? c : (x->idlen > y->idlen) - (x->idlen < y->idlen);
}

static void
ls_print(void)
{
	int json = g.outfile != NULL && strcmp(g.outfile, "json") == 0;
	size_t i, w = 7;

	if (g.nrows > 0)		/* UBSan: no NULL base, even for none */
		qsort(g.rows, g.nrows, sizeof(g.rows[0]), ls_cmp);
	for (i = 0; i < g.nrows; i++)
		if (g.rows[i].idlen > w)
			w = g.rows[i].idlen;
	if (json)
		putchar('[');
	else
		printf("%-*s %10s %14s %10s\n", (int)w, "SESSION", "LEVEL",
		    "BYTES", "TTL");
	for (i = 0; i < g.nrows; i++) {
		const struct ls_row *r = &g.rows[i];

		if (json) {
			size_t k;

			printf("%s{\"session\":\"", i > 0 ? "," : "");
			for (k = 0; k < r->idlen; k++)
				if (r->id[k] == '"' || r->id[k] == '\\')
					printf("\\%c", r->id[k]);
				else if (r->id[k] < 0x20 || r->id[k] >= 0x7f)
					printf("\\u%04x", r->id[k]);
				else
					putchar(r->id[k]);
			printf("\",\"level\":%" PRIu32 ",\"bytes\":%" PRIu64
			    ",\"ttl_s\":%.3f,\"generation\":\"%016" PRIx64
			    "\"}", r->level, r->size, (double)r->ttl_ms / 1000,
			    r->gen);
		} else {
			print_escaped(stdout, r->id, r->idlen);
			printf("%*s %10" PRIu32 " %14" PRIu64 " %9.1fs\n",
			    (int)(w > r->idlen ? w - r->idlen : 0), "",
			    r->level, r->size, (double)r->ttl_ms / 1000);
		}
	}
	if (json)
		puts("]");
}

static void
ls_msg(void *arg, const uint8_t *msg, size_t len)
{
	Alpcrun__V1__SharedDataNotice *m;
	size_t plen = g.prefix != NULL ? strlen(g.prefix) : 0;
	struct ls_row *r;

	if (g.finished ||
	    (m = alpcrun__v1__shared_data_notice__unpack(NULL, len, msg)) ==
	    NULL)
		return;
	if (m->kind == ALPCRUN__V1__SHARED_DATA_NOTICE__KIND__SNAPSHOT_END) {
		/* The snapshot is whole: what was held when it began. */
		alpcrun__v1__shared_data_notice__free_unpacked(m, NULL);
		h2call_cancel(g.call);
		ls_print();
		g.exit = 0;
		finish();
		return;
	}
	if (m->kind != ALPCRUN__V1__SHARED_DATA_NOTICE__KIND__SNAPSHOT ||
	    !m->has_session_id || m->session_id.len < plen ||
	    (plen > 0 && memcmp(m->session_id.data, g.prefix, plen) != 0))
		goto out;
	if (g.nrows == g.cap) {
		size_t cap = g.cap ? 2 * g.cap : 256;
		struct ls_row *nr = realloc(g.rows, cap * sizeof(*nr));

		if (nr == NULL)
			fatal("out of memory");
		g.rows = nr;
		g.cap = cap;
	}
	r = &g.rows[g.nrows];
	if ((r->id = malloc(m->session_id.len + 1)) == NULL)
		fatal("out of memory");
	memcpy(r->id, m->session_id.data, m->session_id.len);
	r->idlen = m->session_id.len;
	r->level = m->update_level;
	r->size = m->size;
	r->gen = m->generation;
	r->ttl_ms = m->ttl != NULL && m->ttl->seconds >= 0 ?
	    (uint64_t)m->ttl->seconds * 1000 + (uint64_t)m->ttl->nanos /
	    1000000 : 0;
	g.nrows++;
out:
	alpcrun__v1__shared_data_notice__free_unpacked(m, NULL);
}

/* The stream ended before its snapshot did: the daemon's status (a node
 * without prefetch serves no feed: UNIMPLEMENTED). */
static void
ls_done(void *arg, struct h2reply *r)
{
	if (r->status == GRPC_OK) {
		fprintf(stderr, "alpcrunctl: ls: the change feed ended before "
		    "its snapshot did\n");
		g.exit = EXIT_LOCAL;
	} else
		report_status(r);
	finish();
}

/* top: the status pages of daemons (ctl_top.c), not a gRPC call. */
static int
top(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t interval_ms = 1000;
	long count = 0;
	char host[256], *end;
	int ch, i, port;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":i:n:", lo, NULL)) != -1) {
		switch (ch) {
		case 'i':
			interval_ms = parse_duration("--interval", optarg);
			if (interval_ms < 100)
				usage("top: --interval: at least 100ms: %s",
				    optarg);
			break;
		case 'n':
			count = strtol(optarg, &end, 10);
			if (*end != '\0' || count < 1)
				usage("top: --count: a number of views, 1 or "
				    "more: %s", optarg);
			break;
		case ':':
			usage("top: option needs an argument: %s",
			    argv[optind - 1]);
			break;
		default:
			usage("top: unknown option: %s", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		usage("top: expected the metrics_listen address of one or "
		    "more daemons");
	for (i = optind; i < argc; i++)
		if (ctl_top_addr(argv[i], host, sizeof(host), &port) != 0)
			usage("top: expected host:port (a metrics_listen): %s",
			    argv[i]);
	signal(SIGPIPE, SIG_IGN);
	if ((g.base = event_base_new()) == NULL)
		fatal("cannot make an event base");
	catch_signals();
	if (ctl_top(g.base, argv + optind, (size_t)(argc - optind),
	    interval_ms, count, isatty(STDOUT_FILENO)) != 0)
		fatal("out of memory");
	event_free(g.sigint);
	event_free(g.sigterm);
	event_base_free(g.base);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "alpcrunctl: stdout: %s\n", strerror(errno));
		return EXIT_LOCAL;
	}
	return 0;
}

/* Command options after the command word: --ttl and -o, anywhere. */
static int
cmd_args(int argc, char **argv, int allow_ttl, int allow_out,
    uint64_t *ttl_ms, int *has_ttl, char ***args)
{
	static const struct option lo[] = {
		{ "ttl", required_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 0;	/* glibc: start afresh (and permute) */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":o:", lo, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (!allow_ttl)
				usage("%s: --ttl is not an option of this "
				    "command", argv[0]);
			*ttl_ms = parse_duration("--ttl", optarg);
			*has_ttl = 1;
			break;
		case 'o':
			if (!allow_out)
				usage("%s: -o is not an option of this command",
				    argv[0]);
			g.outfile = optarg;
			break;
		case ':':
			usage("%s: option needs an argument: %s", argv[0],
			    argv[optind - 1]);
			break;
		default:
			usage("%s: unknown option: %s", argv[0],
			    argv[optind - 1]);
		}
	}
	*args = argv + optind;
	return argc - optind;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "server", required_argument, NULL, 's' },
		{ "tls", no_argument, NULL, 'T' },
		{ "ca", required_argument, NULL, 'A' },
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "server-name", required_argument, NULL, 'N' },
		{ "api-key-file", required_argument, NULL, 'k' },
		{ "timeout", required_argument, NULL, 'w' },
		{ "max-message-size", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct h2client_opts *o = &g.opts;
	const char *server = DEFAULT_SERVER, *keyfile = NULL;
	const char *ca = NULL, *cert = NULL, *key = NULL, *sname = NULL;
	struct config kconf = { 0 };
	char err[256], keybuf[4096], *apikey = NULL, **args, *cmd;
	uint64_t timeout_ms = DEFAULT_TIMEOUT_MS, ttl_ms = 0;
	int ch, nargs, tls = 0, has_timeout = 0, has_ttl = 0, verbose = 0;

	opterr = 0;
	/* "+": global options end at the command word. */
	while ((ch = getopt_long(argc, argv, "+:s:hv", lo, NULL)) != -1) {
		switch (ch) {
		case 's':
			server = optarg;
			break;
		case 'T':
			tls = 1;
			break;
		case 'A':
			ca = optarg;
			break;
		case 'C':
			cert = optarg;
			break;
		case 'K':
			key = optarg;
			break;
		case 'N':
			sname = optarg;
			break;
		case 'k':
			keyfile = optarg;
			break;
		case 'w':
			timeout_ms = parse_duration("--timeout", optarg);
			has_timeout = 1;
			break;
		case 'm':
			if (parse_size(optarg, &o->max_message_size) != 0 ||
			    o->max_message_size == 0 ||
			    o->max_message_size > UINT32_MAX)
				usage("--max-message-size: expected a size "
				    "like 512k, 64m or 1g (at most 4g-1): %s",
				    optarg);
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case ':':
			usage("option needs an argument: %s", argv[optind - 1]);
			break;
		default:
			usage("unknown option: %s", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		usage("no command");
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "top") == 0)
		return top(argc, argv);
	/* Usage errors come before any connection is made. */
	if (strcmp(cmd, "set") != 0 && strcmp(cmd, "update") != 0 &&
	    strcmp(cmd, "get") != 0 && strcmp(cmd, "delete") != 0 &&
	    strcmp(cmd, "health") != 0 && strcmp(cmd, "watch") != 0 &&
	    strcmp(cmd, "ls") != 0)
		usage("unknown command: %s", cmd);

	if ((ca != NULL || cert != NULL || key != NULL || sname != NULL) &&
	    !tls)
		usage("--ca, --cert, --key and --server-name need --tls");
	if ((cert == NULL) != (key == NULL))
		usage("--cert and --key go together");

	/* The API key: --api-key-file, else METALCORE_API_KEY, read as
	 * node mode reads the key it presents upstream (auth.c). */
	kconf.upstream_api_key_file = (char *)(uintptr_t)keyfile;
	switch (auth_upstream_key(&kconf, keybuf, sizeof(keybuf), err,
	    sizeof(err))) {
	case -1:
		/* auth.c names the file by its directive; here it is an
		 * option. */
		if (strncmp(err, "upstream_api_key_file ", 22) == 0)
			fatal("--api-key-file %s", err + 22);
		fatal("%s", err);
		break;
	case 1:
		apikey = keybuf;
		break;
	}

	if (verbose)
		log_open("stderr", "debug");
	signal(SIGPIPE, SIG_IGN);
	g.tty = isatty(STDERR_FILENO);

	if ((g.base = event_base_new()) == NULL)
		fatal("cannot make an event base");
	o->target = server;
	o->name = server;
	o->api_key = apikey;
	if (tls) {
		/* Never cleartext when TLS was asked for: a client that
		 * cannot speak it fails in h2client_new(). */
		if ((o->ssl_ctx = tls_client_ctx_new(ca, cert, key, err,
		    sizeof(err))) == NULL)
			fatal("--tls: %s", err);
		/* Unset, h2client checks the target's host (by addr.c, as it
		 * takes the target apart) and refuses a unix: target. */
		o->server_name = sname;
	}
	/* The deadline counts from the call, not from reading stdin. */
	if (strcmp(cmd, "watch") != 0 || has_timeout)
		g.timeout_ns = timeout_ms * NS_PER_MS;

	if (strcmp(cmd, "set") == 0 || strcmp(cmd, "update") == 0) {
		Alpcrun__V1__SharedData req = ALPCRUN__V1__SHARED_DATA__INIT;
		Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
		struct h2body body = { 0 };

		nargs = cmd_args(argc, argv, 1, 0, &ttl_ms, &has_ttl, &args);
		if (nargs != 3)
			usage("%s: expected session, level and file", cmd);
		req.has_session_id = 1;
		req.session_id.data = (uint8_t *)args[0];
		req.session_id.len = strlen(args[0]);
		req.has_update_level = 1;
		req.update_level = parse_level(args[1]);
		load_payload(args[2]);
		req.has_payload = 1;
		req.payload.data = g.payload;
		req.payload.len = g.payload_len;
		if (has_ttl) {
			ttl.seconds = (int64_t)(ttl_ms / 1000);
			ttl.nanos = (int32_t)(ttl_ms % 1000) * 1000000;
			req.ttl = &ttl;
		}
		/* The payload goes from the mapping (or buffer) by
		 * reference: h2client copies only the small fields. */
		body.msg = &req.base;
		body.release = payload_release;
		g.call = h2client_unary_body(client(), cmd[0] == 's' ?
		    PATH_SET : PATH_UPDATE, &body, deadline(), empty_done, NULL);
	} else if (strcmp(cmd, "get") == 0) {
		Alpcrun__V1__SharedData req = ALPCRUN__V1__SHARED_DATA__INIT;

		nargs = cmd_args(argc, argv, 0, 1, &ttl_ms, &has_ttl, &args);
		if (nargs < 1 || nargs > 2)
			usage("get: expected session [level]");
		req.has_session_id = 1;
		req.session_id.data = (uint8_t *)args[0];
		req.session_id.len = strlen(args[0]);
		if (nargs == 2) {
			req.has_update_level = 1;
			req.update_level = parse_level(args[1]);
		}
		g.call = h2client_unary(client(), PATH_GET, &req.base,
		    deadline(), get_done, NULL);
	} else if (strcmp(cmd, "delete") == 0) {
		Alpcrun__V1__SharedData req = ALPCRUN__V1__SHARED_DATA__INIT;

		nargs = cmd_args(argc, argv, 0, 0, &ttl_ms, &has_ttl, &args);
		if (nargs != 1)
			usage("delete: expected session");
		req.has_session_id = 1;
		req.session_id.data = (uint8_t *)args[0];
		req.session_id.len = strlen(args[0]);
		g.call = h2client_unary(client(), PATH_DELETE, &req.base,
		    deadline(), empty_done, NULL);
	} else if (strcmp(cmd, "health") == 0) {
		Grpc__Health__V1__HealthCheckRequest req =
		    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

		nargs = cmd_args(argc, argv, 0, 0, &ttl_ms, &has_ttl, &args);
		if (nargs > 1)
			usage("health: expected at most a service name");
		if (nargs == 1)
			req.service = args[0];
		g.call = h2client_unary(client(), PATH_HEALTH, &req.base,
		    deadline(), health_done, NULL);
	} else if (strcmp(cmd, "watch") == 0) {
		Alpcrun__V1__WatchRequest req = ALPCRUN__V1__WATCH_REQUEST__INIT;

		nargs = cmd_args(argc, argv, 0, 0, &ttl_ms, &has_ttl, &args);
		if (nargs > 1)
			usage("watch: expected at most a session");
		if (nargs == 1) {
			req.has_session_id = 1;
			req.session_id.data = (uint8_t *)args[0];
			req.session_id.len = strlen(args[0]);
		}
		setvbuf(stdout, NULL, _IOLBF, 0);
		catch_signals();
		g.call = h2client_stream(client(), PATH_WATCH, &req.base,
		    deadline(), watch_msg, watch_done, NULL);
	} else if (strcmp(cmd, "ls") == 0) {
		Alpcrun__V1__WatchRequest req = ALPCRUN__V1__WATCH_REQUEST__INIT;

		nargs = cmd_args(argc, argv, 0, 1, &ttl_ms, &has_ttl, &args);
		if (nargs > 1)
			usage("ls: expected at most a prefix");
		if (g.outfile != NULL && strcmp(g.outfile, "json") != 0 &&
		    strcmp(g.outfile, "table") != 0)
			usage("ls: -o takes table or json: %s", g.outfile);
		g.prefix = nargs == 1 ? args[0] : NULL;
		/* The whole feed: a prefix is no filter of the server's. */
		g.call = h2client_stream(client(), PATH_WATCH, &req.base,
		    deadline(), ls_msg, ls_done, NULL);
		h2call_max_message(g.call, 64 << 10);
	} else
		usage("unknown command: %s", cmd);

	if (g.call == NULL)
		fatal("out of memory");
	if (g.tty)
		h2call_progress(g.call, progress_cb, NULL);
	run();

	/* Let the socket drop its references to the payload, then go. */
	h2client_free(g.client);
	event_base_loop(g.base, EVLOOP_NONBLOCK);
	if (g.sigint != NULL)
		event_free(g.sigint);
	if (g.sigterm != NULL)
		event_free(g.sigterm);
	event_base_free(g.base);
	free_payload();
	while (g.nrows > 0)
		free(g.rows[--g.nrows].id);
	free(g.rows);
	if (o->ssl_ctx != NULL)
		SSL_CTX_free(o->ssl_ctx);
	if (fflush(stdout) != 0 && g.exit == 0) {
		fprintf(stderr, "alpcrunctl: stdout: %s\n", strerror(errno));
		g.exit = EXIT_LOCAL;
	}
	return g.exit;
}
