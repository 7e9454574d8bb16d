/*
 * log.c: one line per event (spec §8),
 *
 *	ts=2026-11-25T00:01:38.123Z level=info msg=listening addr=127.0.0.1:2337
 *
 * to stderr, syslog or a file. Each line goes out in one write(2), so lines
 * from several threads never interleave; a file is opened O_APPEND, so a
 * rotated file is picked up by calling log_open again (SIGHUP). Until
 * log_open is called, lines go to stderr at level info.
 *
 * Messages below the level are dropped before anything is formatted. The
 * target is swapped under a mutex so that a reopen never races a writer.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	4096	/* longer lines are cut, still one line */

enum log_kind { LK_STDERR, LK_SYSLOG, LK_FILE };

static pthread_mutex_t	 log_mtx = PTHREAD_MUTEX_INITIALIZER;
static enum log_kind	 log_kind = LK_STDERR;
static int		 log_fd = STDERR_FILENO;
static atomic_int	 log_min = LOG_LVL_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

int
log_level_parse(const char *s, enum log_level *out)
{
	int	 i;

	if (s == NULL)
		return -1;
	for (i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int
log_open(const char *target, const char *level)
{
	enum log_level	 lvl = (enum log_level)atomic_load(&log_min);
	enum log_kind	 kind, old_kind;
	int		 fd, old_fd;

	if (level != NULL && log_level_parse(level, &lvl) != 0) {
		errno = EINVAL;
		return -1;
	}
	if (target == NULL || strcmp(target, "stderr") == 0) {
		kind = LK_STDERR;
		fd = STDERR_FILENO;
	} else if (strcmp(target, "syslog") == 0) {
		kind = LK_SYSLOG;
		fd = -1;
	} else {
		if (*target == '\0') {
			errno = ENOENT;
			return -1;
		}
		/* The new file first: on failure the old target stays. */
		fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
		    O_NOCTTY, 0640);
		if (fd == -1)
			return -1;
		kind = LK_FILE;
	}

	pthread_mutex_lock(&log_mtx);
	old_kind = log_kind;
	old_fd = log_fd;
	if (kind == LK_SYSLOG && old_kind != LK_SYSLOG)
		openlog("alpcrund", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_kind = kind;
	log_fd = fd;
	if (old_kind == LK_FILE)
		close(old_fd);
	if (old_kind == LK_SYSLOG && kind != LK_SYSLOG)
		closelog();
	atomic_store(&log_min, (int)lvl);
	pthread_mutex_unlock(&log_mtx);
	return 0;
}

void
log_close(void)
{
	pthread_mutex_lock(&log_mtx);
	if (log_kind == LK_FILE)
		close(log_fd);
	else if (log_kind == LK_SYSLOG)
		closelog();
	log_kind = LK_STDERR;
	log_fd = STDERR_FILENO;
	pthread_mutex_unlock(&log_mtx);
}

/* Append s to buf at *o, escaping what would break the line; quote it when
 * `quote` and it holds a space, '"', '=' or is empty. */
static void
put(char *buf, size_t len, size_t *o, const char *s, int quote)
{
	int	 q = 0;
	size_t	 i;

	if (quote)
		q = *s == '\0' || strpbrk(s, " \"=\\") != NULL;
	for (i = 0; quote && !q && s[i] != '\0'; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			q = 1;
	if (q && *o < len)
		buf[(*o)++] = '"';
	for (; *s != '\0' && *o + 4 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (q && (c == '"' || c == '\\')) {
			buf[(*o)++] = '\\';
			buf[(*o)++] = (char)c;
		} else if (c == '\n') {
			buf[(*o)++] = '\\';
			buf[(*o)++] = 'n';
		} else if (c < 0x20 || c == 0x7f) {
			*o += (size_t)snprintf(buf + *o, len - *o, "\\x%02x",
			    c);
		} else
			buf[(*o)++] = (char)c;
	}
	if (q && *o < len)
		buf[(*o)++] = '"';
}

void
log_msg(enum log_level lvl, const char *msg, const char *kv, ...)
{
	char		 line[LOG_LINE_MAX + 1], kvbuf[LOG_LINE_MAX];
	size_t		 o = 0, body;
	struct timespec	 ts;
	struct tm	 tm;
	va_list		 ap;
	ssize_t		 n;
	size_t		 off;
	int		 saved = errno, prio;

	if ((int)lvl < atomic_load_explicit(&log_min, memory_order_relaxed))
		return;
	if ((unsigned)lvl > LOG_LVL_ERROR)
		lvl = LOG_LVL_ERROR;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	o = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
	o += (size_t)snprintf(line + o, sizeof line - o, ".%03ldZ ",
	    ts.tv_nsec / 1000000);
	body = o;
	o += (size_t)snprintf(line + o, sizeof line - o, "level=%s msg=",
	    level_names[lvl]);
	put(line, LOG_LINE_MAX, &o, msg != NULL ? msg : "", 1);
	if (kv != NULL) {
		va_start(ap, kv);
		vsnprintf(kvbuf, sizeof kvbuf, kv, ap);
		va_end(ap);
		if (kvbuf[0] != '\0') {
			if (o < LOG_LINE_MAX)
				line[o++] = ' ';
			put(line, LOG_LINE_MAX, &o, kvbuf, 0);
		}
	}
	if (o > LOG_LINE_MAX)
		o = LOG_LINE_MAX;
	line[o++] = '\n';

	pthread_mutex_lock(&log_mtx);
	if (log_kind == LK_SYSLOG) {
		static const int prios[] = {
			LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR
		};

		/* syslog stamps the time itself. */
		prio = prios[lvl];
		line[o - 1] = '\0';
		syslog(prio, "%s", line + body);
	} else {
		for (off = 0; off < o; off += (size_t)n) {
			n = write(log_fd, line + off, o - off);
			if (n == -1 && errno == EINTR) {
				n = 0;
				continue;
			}
			if (n <= 0)
				break;
		}
	}
	pthread_mutex_unlock(&log_mtx);
	errno = saved;
}
