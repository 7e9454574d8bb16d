/*
 * log.h: one line per event, `ts=… level=… msg=… key=value…` (spec §8), to
 * stderr, syslog or a file that SIGHUP reopens.
 */
#ifndef ALPCRUND_LOG_H
#define ALPCRUND_LOG_H

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* target: "stderr", "syslog" or a path. Returns 0, or -1 with errno set when
 * the file cannot be opened (the previous target stays in use). */
int	 log_open(const char *target, const char *level);
int	 log_level_parse(const char *, enum log_level *);
void	 log_close(void);

/*
 * log_msg(LOG_LVL_INFO, "listening", "addr=%s", addr) writes
 * `ts=2026-11-25T00:01:38.123Z level=info msg=listening addr=127.0.0.1:2337`.
 * msg is quoted when it holds a space. kv may be NULL.
 */
void	 log_msg(enum log_level, const char *msg, const char *kv, ...)
	    __attribute__((format(printf, 3, 4)));

#define log_debug(...)	log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...)	log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
