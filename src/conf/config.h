/*
 * config.h: the daemon's configuration (spec §7) and the directive table that
 * drives parsing, validation, `alpcrund -t` and the man page.
 *
 * Every directive is one row of config_table[] (config_table.c): name, type,
 * bounds, default (as the text a user would write), whether it applies live on
 * SIGHUP, and a one-line help. The parser (config.c) knows types, not names.
 */
#ifndef ALPCRUND_CONFIG_H
#define ALPCRUND_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum alp_mode { MODE_CENTRAL = 0, MODE_NODE = 1 };

#define CONFIG_MAX_LISTEN 16
/* The longest node_id (config_node_id_ok()). */
#define CONFIG_NODE_ID_MAX 64

/* Values of every directive after parsing. Durations are in milliseconds,
 * sizes in bytes, percentages 0-100, flags 0/1. Strings are heap copies owned
 * by the struct (NULL when unset). */
struct config {
	int		 mode;			/* enum alp_mode */
	char		*listen[CONFIG_MAX_LISTEN];
	size_t		 nlisten;
	char		*backend;
	char		*lmdb_path;
	uint64_t	 lmdb_map_size;
	int		 lmdb_sync;
	uint64_t	 lmdb_max_readers;
	uint64_t	 lmdb_full_ratio;	/* percent */
	char		*s3_endpoint;
	char		*s3_bucket;
	char		*s3_prefix;
	char		*s3_region;
	char		*s3_credentials;
	char		*s3_ca_file;
	uint64_t	 s3_timeout;		/* ms */
	uint64_t	 s3_retries;
	uint64_t	 s3_lease_time;		/* ms */
	uint64_t	 s3_orphan_grace;	/* ms */
	uint64_t	 s3_part_size;
	uint64_t	 s3_revalidate;		/* ms */
	uint64_t	 max_memory;
	uint64_t	 default_ttl;		/* ms */
	uint64_t	 max_ttl;		/* ms */
	uint64_t	 sweep_interval;	/* ms */
	uint64_t	 max_message_size;
	uint64_t	 max_inflight_bytes;
	char		*api_key_file;
	char		*upstream_api_key_file;
	char		*tls_cert;
	char		*tls_key;
	char		*tls_client_ca;
	char		*upstream;
	char		*node_id;		/* set, or derived (node mode) */
	int		 upstream_tls;
	char		*upstream_ca;
	char		*upstream_cert;
	char		*upstream_key;
	char		*upstream_server_name;
	uint64_t	 upstream_timeout;	/* ms */
	uint64_t	 upstream_connect_timeout; /* ms */
	uint64_t	 upstream_keepalive;	/* ms */
	int		 prefetch;
	uint64_t	 prefetch_concurrency;
	uint64_t	 watch_buffer;
	char		*metrics_listen;
	int		 status_sessions;	/* the status page lists them */
	uint64_t	 max_connections;
	uint64_t	 max_concurrent_streams;
	uint64_t	 handshake_timeout;	/* ms */
	uint64_t	 idle_timeout;		/* ms */
	uint64_t	 send_timeout;		/* ms */
	uint64_t	 shutdown_grace;	/* ms */
	char		*log_level;
	char		*log_target;
	char		*pid_file;

	/* Not directives: where the values came from. */
	char		*path;			/* file read, NULL for none */
};

enum config_type {
	CONF_STRING,	/* any non-empty word */
	CONF_PATH,	/* a file system path */
	CONF_CHOICE,	/* one of choices[] */
	CONF_FLAG,	/* on | off */
	CONF_NUMBER,	/* unsigned integer */
	CONF_DURATION,	/* 500ms, 30s, 10m, 1h (bare number: seconds) */
	CONF_SIZE,	/* 512k, 64m, 8g (bare number: bytes) */
	CONF_PERCENT,	/* 90% (or 90) */
	CONF_ADDRESS,	/* host:port, [v6]:port or unix:/path */
};

/* Directive flags. */
#define CONF_LIVE	0x01	/* SIGHUP applies it at once */
#define CONF_MULTI	0x02	/* may repeat (listen) */
#define CONF_LATER	0x04	/* not supported in this build yet */
#define CONF_ZERO	0x08	/* 0 (off / no limit) accepted besides min..max */
#define CONF_ENUM	0x10	/* CONF_CHOICE stored as an int index, not a string */
#define CONF_LIST	0x20	/* CONF_ADDRESS: 1..CONFIG_MAX_UPSTREAM addresses
				   separated by blanks, stored as one string
				   with single blanks (upstream) */

/* Addresses of one `upstream` directive, tried in order. */
#define CONFIG_MAX_UPSTREAM	8

struct config_directive {
	const char	 *name;
	enum config_type  type;
	int		  flags;
	uint64_t	  min, max;	/* bounds for number, duration (ms), size, percent */
	const char	 *def;		/* default as written in a file; NULL: unset */
	const char	 *def_node;	/* default in mode node, when it differs */
	const char *const *choices;	/* CONF_CHOICE: NULL-terminated */
	const char *const *later_choices; /* choices not supported in this build */
	size_t		  offset;	/* into struct config */
	const char	 *help;		/* one line for -t -v and the man page */
};

extern const struct config_directive config_table[];
extern const size_t config_table_len;

/* One error: "file:line: message", collected so that all are reported in one
 * run. */
struct config_errors {
	char	**msgs;
	size_t	  n;
};

/*
 * Parse `path` (NULL: no file, defaults only) into a fresh config. Returns 0
 * and fills *out, or -1 with every error appended to errs (and *out left
 * zeroed). `path` that does not exist is an error unless allow_missing.
 */
int	 config_load(const char *path, int allow_missing, struct config *out,
	    struct config_errors *errs);
void	 config_free(struct config *);
void	 config_errors_free(struct config_errors *);

/* Write every directive with its effective value, one per line, in file
 * syntax (`alpcrund -t -v`). */
void	 config_dump(const struct config *, FILE *);

/* Names of restart-only directives whose values differ between a and b,
 * separated by ", " into buf; returns the count. */
size_t	 config_restart_changes(const struct config *a,
	    const struct config *b, char *buf, size_t len);

/* A number of directive d's type as a user writes it (600000 ms -> "10m",
 * 268435456 -> "256m"); returns buf. */
const char *config_format_value(const struct config_directive *d, uint64_t v,
	    char *buf, size_t len);

/* Is s a node_id: a letter or digit, then letters, digits and . _ : / [ ]
 * -, at most CONFIG_NODE_ID_MAX bytes (no comma or space: a list of them
 * is comma-separated)? 1 or 0. */
int	 config_node_id_ok(const char *s);
/*
 * Does upstream reach one of this node's own listen addresses, whatever
 * name or address form names it? Names are resolved (getaddrinfo(3),
 * blocking: for -t and start only); an address on a wildcard listener's
 * port is ours when it is a loopback or wildcard address or one of the
 * host's interface addresses (getifaddrs(3)). 0 when not (or not node
 * mode, or a name that does not resolve now), -1 with err filled ("upstream
 * localhost:4555 (127.0.0.1) is this node's own listen address
 * 127.0.0.1:4555; ...").
 */
int	 config_check_upstream(const struct config *, char *err,
	    size_t errlen);
/*
 * The words of a CONF_LIST value (upstream): copied into buf (len bytes)
 * and pointed to by w[0..max-1]; returns the count (at most max; 0 for
 * NULL or when buf is too small).
 */
size_t	 config_words(const char *list, char *buf, size_t len,
	    const char **w, size_t max);

/* Write the DIRECTIVES list of alpcrund.conf(5) in mdoc (config_man.c). */
void	 config_man(FILE *);

/* Value parsers, shared with tests: 0 on success, -1 on a malformed or
 * overflowing value. */
int	 parse_duration_ms(const char *, uint64_t *ms);
int	 parse_size(const char *, uint64_t *bytes);

#endif
