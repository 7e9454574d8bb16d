/*
 * config.c: reads alpcrund.conf (spec §7) into struct config.
 *
 * The parser knows value types, not directive names: config_table[] says
 * what each directive is, where it lives in struct config and what its
 * default is. Every error of a file is collected ("file:line: name: what was
 * expected") so that one run of `alpcrund -t` shows them all.
 *
 * Syntax: one directive per line, `name value`; `#` starts a comment
 * anywhere on a line (so values cannot hold `#`); values are one word
 * (no quoting, so no spaces in paths).
 */
#define _POSIX_C_SOURCE 200809L

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"

#define CONFIG_LINE_MAX		4096	/* bytes, newline excluded */
#define CONFIG_MAX_ERRORS	100	/* per load; the rest are counted */

#define WS	" \t\r\n\v\f"

/* Internal results of the value parsers. */
#define PV_OK		0
#define PV_BAD		(-1)	/* malformed */
#define PV_RANGE	(-2)	/* well formed but does not fit in 64 bits */

/* listen's count lives right after its array (see CONF_MULTI below). */
_Static_assert(offsetof(struct config, nlisten) ==
    offsetof(struct config, listen) + sizeof(((struct config *)0)->listen),
    "nlisten must follow listen[]");

struct loader {
	struct config		*cfg;
	struct config_errors	*errs;
	const char		*file;	/* name used in messages */
	size_t			 nerr;	/* errors of this load */
	unsigned		*line;	/* per directive: first line, 0 none */
	unsigned char		*set;	/* per directive: a value was stored */
	unsigned		 mline[CONFIG_MAX_LISTEN]; /* lines of listen[] */
	int			 defaults; /* applying built-in defaults */
};

/* --- Errors ------------------------------------------------------------- */

static void
errs_push(struct config_errors *errs, char *msg)
{
	char	**n;

	if (msg == NULL)
		return;
	n = realloc(errs->msgs, (errs->n + 1) * sizeof *n);
	if (n == NULL) {
		free(msg);
		return;
	}
	errs->msgs = n;
	errs->msgs[errs->n++] = msg;
}

static char *
vformat(const char *fmt, va_list ap)
{
	va_list	 ap2;
	char	*s;
	int	 len;

	va_copy(ap2, ap);
	len = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (len < 0 || (s = malloc((size_t)len + 1)) == NULL)
		return NULL;
	vsnprintf(s, (size_t)len + 1, fmt, ap);
	return s;
}

static char *
format(const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	s = vformat(fmt, ap);
	va_end(ap);
	return s;
}

/* "file:line: message", or "file: message" when lineno is 0. */
static void __attribute__((format(printf, 3, 4)))
add_error(struct loader *ld, unsigned lineno, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg, *full;

	ld->nerr++;
	if (ld->nerr > CONFIG_MAX_ERRORS + 1)
		return;
	if (ld->nerr == CONFIG_MAX_ERRORS + 1) {
		errs_push(ld->errs, format("%s: too many errors, stopped "
		    "listing after %d", ld->file, CONFIG_MAX_ERRORS));
		return;
	}
	va_start(ap, fmt);
	msg = vformat(fmt, ap);
	va_end(ap);
	if (msg == NULL)
		return;
	if (ld->defaults)
		full = format("built-in default: %s", msg);
	else if (lineno != 0)
		full = format("%s:%u: %s", ld->file, lineno, msg);
	else
		full = format("%s: %s", ld->file, msg);
	free(msg);
	errs_push(ld->errs, full);
}

/* A value as shown in a message: at most 64 bytes, non-printables escaped. */
static const char *
shown(const char *v, char *buf, size_t len)
{
	size_t	 o = 0;

	for (; *v != '\0' && o + 8 < len; v++) {
		unsigned char c = (unsigned char)*v;

		if (o >= 64) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	buf[o] = '\0';
	return buf;
}

/* --- Value parsers ------------------------------------------------------ */

/* Leading decimal digits of *sp (at least one). PV_RANGE on overflow, with
 * the digits consumed anyway so the caller can still check what follows. */
static int
digits(const char **sp, uint64_t *out)
{
	const char	*s = *sp;
	uint64_t	 v = 0;
	int		 over = 0;

	if (*s < '0' || *s > '9')
		return PV_BAD;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			over = 1;
		else
			v = v * 10 + d;
	}
	*sp = s;
	*out = v;
	return over ? PV_RANGE : PV_OK;
}

static int
scale(int rc, uint64_t v, uint64_t mult, uint64_t *out)
{
	if (rc != PV_OK)
		return rc;
	if (mult != 0 && v > UINT64_MAX / mult)
		return PV_RANGE;
	*out = v * mult;
	return PV_OK;
}

static int
duration_ms(const char *s, uint64_t *ms)
{
	uint64_t	 v, mult;
	int		 rc;

	if ((rc = digits(&s, &v)) == PV_BAD)
		return PV_BAD;
	if (strcmp(s, "") == 0 || strcmp(s, "s") == 0)
		mult = 1000;
	else if (strcmp(s, "ms") == 0)
		mult = 1;
	else if (strcmp(s, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(s, "h") == 0)
		mult = 60 * 60 * 1000;
	else
		return PV_BAD;
	return scale(rc, v, mult, ms);
}

static int
size_bytes(const char *s, uint64_t *bytes)
{
	uint64_t	 v, mult;
	int		 rc;

	if ((rc = digits(&s, &v)) == PV_BAD)
		return PV_BAD;
	if (s[0] == '\0')
		mult = 1;
	else if (s[1] != '\0')
		return PV_BAD;
	else if (s[0] == 'k' || s[0] == 'K')
		mult = 1ULL << 10;
	else if (s[0] == 'm' || s[0] == 'M')
		mult = 1ULL << 20;
	else if (s[0] == 'g' || s[0] == 'G')
		mult = 1ULL << 30;
	else if (s[0] == 't' || s[0] == 'T')
		mult = 1ULL << 40;
	else
		return PV_BAD;
	return scale(rc, v, mult, bytes);
}

static int
number(const char *s, uint64_t *out)
{
	int	 rc;

	if ((rc = digits(&s, out)) == PV_BAD || *s != '\0')
		return PV_BAD;
	return rc;
}

static int
percent(const char *s, uint64_t *out)
{
	int	 rc;

	if ((rc = digits(&s, out)) == PV_BAD)
		return PV_BAD;
	if (*s == '%')
		s++;
	return *s == '\0' ? rc : PV_BAD;
}

int
parse_duration_ms(const char *s, uint64_t *ms)
{
	uint64_t	 v;

	if (s == NULL || duration_ms(s, &v) != PV_OK)
		return -1;
	*ms = v;
	return 0;
}

int
parse_size(const char *s, uint64_t *bytes)
{
	uint64_t	 v;

	if (s == NULL || size_bytes(s, &v) != PV_OK)
		return -1;
	*bytes = v;
	return 0;
}

/* --- Formatting back in the largest exact unit -------------------------- */

static const char *
fmt_duration(uint64_t ms, char *buf, size_t len)
{
	if (ms == 0)
		snprintf(buf, len, "0s");
	else if (ms % 3600000 == 0)
		snprintf(buf, len, "%" PRIu64 "h", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, len, "%" PRIu64 "m", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "ms", ms);
	return buf;
}

static const char *
fmt_size(uint64_t b, char *buf, size_t len)
{
	static const char units[] = "tgmk";
	int	 i;

	for (i = 0; i < 4 && b != 0; i++) {
		unsigned shift = (unsigned)(4 - i) * 10;

		if (b % (1ULL << shift) == 0) {
			snprintf(buf, len, "%" PRIu64 "%c", b >> shift,
			    units[i]);
			return buf;
		}
	}
	snprintf(buf, len, "%" PRIu64, b);
	return buf;
}

/* A number as the user would write it for this directive's type. */
const char *
config_format_value(const struct config_directive *d, uint64_t v, char *buf,
    size_t len)
{
	switch (d->type) {
	case CONF_DURATION:
		return fmt_duration(v, buf, len);
	case CONF_SIZE:
		return fmt_size(v, buf, len);
	case CONF_PERCENT:
		snprintf(buf, len, "%" PRIu64 "%%", v);
		return buf;
	default:
		snprintf(buf, len, "%" PRIu64, v);
		return buf;
	}
}

/* --- Table helpers ------------------------------------------------------ */

static void *
field(const struct config *cfg, const struct config_directive *d)
{
	return (char *)(uintptr_t)cfg + d->offset;
}

static int
is_string(const struct config_directive *d)
{
	switch (d->type) {
	case CONF_STRING:
	case CONF_PATH:
		return 1;
	case CONF_ADDRESS:
		return !(d->flags & CONF_MULTI);
	case CONF_CHOICE:
		return !(d->flags & CONF_ENUM);
	default:
		return 0;
	}
}

static int
is_number(const struct config_directive *d)
{
	return d->type == CONF_NUMBER || d->type == CONF_DURATION ||
	    d->type == CONF_SIZE || d->type == CONF_PERCENT;
}

static const struct config_directive *
lookup(const char *name, size_t *idx)
{
	size_t	 i;

	for (i = 0; i < config_table_len; i++) {
		if (strcmp(config_table[i].name, name) == 0) {
			*idx = i;
			return &config_table[i];
		}
	}
	return NULL;
}

static int
in_list(const char *const *list, const char *v)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(*list, v) == 0)
			return 1;
	return 0;
}

/* "a, b or c" */
static void
join_choices(const char *const *list, char *buf, size_t len)
{
	size_t	 o = 0;

	buf[0] = '\0';
	for (; list != NULL && *list != NULL && o < len; list++) {
		const char *sep = o == 0 ? "" : list[1] == NULL ? " or " : ", ";
		int n = snprintf(buf + o, len - o, "%s%s", sep, *list);

		if (n < 0)
			break;
		o += (size_t)n;
	}
}

/* What a value of this directive looks like, for messages. */
static const char *
expected(const struct config_directive *d, char *buf, size_t len)
{
	char	 list[256];

	switch (d->type) {
	case CONF_STRING:
		return "expected a word";
	case CONF_PATH:
		return "expected a path";
	case CONF_CHOICE:
		join_choices(d->choices, list, sizeof list);
		snprintf(buf, len, "expected %s", list);
		return buf;
	case CONF_FLAG:
		return "expected on or off";
	case CONF_NUMBER:
		return "expected a whole number";
	case CONF_DURATION:
		return "expected a duration like 500ms, 30s, 10m or 1h";
	case CONF_SIZE:
		return "expected a size like 512k, 64m or 8g";
	case CONF_PERCENT:
		return "expected a percentage like 90%";
	case CONF_ADDRESS:
		return "expected host:port, [v6]:port or unix:/path";
	}
	return "expected a value";
}

static char *
xstrdup(struct loader *ld, unsigned lineno, const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		add_error(ld, lineno, "out of memory");
	return p;
}

size_t
config_words(const char *list, char *buf, size_t len, const char **w,
    size_t max)
{
	char	*p, *save = NULL;
	size_t	 n = 0;

	if (list == NULL || strlen(list) >= len)
		return 0;
	memcpy(buf, list, strlen(list) + 1);
	for (p = strtok_r(buf, WS, &save); p != NULL && n < max;
	    p = strtok_r(NULL, WS, &save))
		w[n++] = p;
	return n;
}

/* A CONF_LIST value: 1..CONFIG_MAX_UPSTREAM addresses, each valid, none
 * twice. 0, or -1 with an error added naming the address at fault. */
static int
check_list(struct loader *ld, const struct config_directive *d,
    const char *v, unsigned lineno)
{
	char		 buf[CONFIG_LINE_MAX + 1], got[80], why[128];
	const char	*w[CONFIG_MAX_UPSTREAM + 1];
	struct addr	 a;
	size_t		 n, k, j;

	n = config_words(v, buf, sizeof buf, w, CONFIG_MAX_UPSTREAM + 1);
	if (n > CONFIG_MAX_UPSTREAM) {
		add_error(ld, lineno, "%s: too many addresses, at most %d",
		    d->name, CONFIG_MAX_UPSTREAM);
		return -1;
	}
	for (k = 0; k < n; k++) {
		shown(w[k], got, sizeof got);
		if (addr_parse(w[k], 0, &a, why, sizeof why) != 0) {
			if (n == 1)
				add_error(ld, lineno, "%s: %s, got \"%s\"",
				    d->name, why, got);
			else
				add_error(ld, lineno, "%s: address %zu of "
				    "%zu: %s, got \"%s\"", d->name, k + 1, n,
				    why, got);
			return -1;
		}
		for (j = 0; j < k; j++) {
			if (strcmp(w[j], w[k]) == 0) {
				add_error(ld, lineno, "%s: %s given twice",
				    d->name, got);
				return -1;
			}
		}
	}
	return 0;
}

/* Check v for row i and store it. 0, or -1 with an error added. */
static int
set_value(struct loader *ld, size_t i, const char *v, unsigned lineno)
{
	const struct config_directive	*d = &config_table[i];
	void				*f = field(ld->cfg, d);
	char				 b1[32], b2[32], got[80], exp[300];
	char				 why[128];
	struct addr			 a;
	uint64_t			 n = 0;
	int				 rc = PV_OK;
	size_t				 k;

	shown(v, got, sizeof got);
	switch (d->type) {
	case CONF_STRING:
	case CONF_PATH:
		break;
	case CONF_ADDRESS:
		if (d->flags & CONF_LIST) {
			if (check_list(ld, d, v, lineno) != 0)
				return -1;
			break;
		}
		if (addr_parse(v, 0, &a, why, sizeof why) != 0) {
			add_error(ld, lineno, "%s: %s, got \"%s\"", d->name,
			    why, got);
			return -1;
		}
		break;
	case CONF_CHOICE:
		if (!in_list(d->choices, v)) {
			add_error(ld, lineno, "%s: %s, got \"%s\"", d->name,
			    expected(d, exp, sizeof exp), got);
			return -1;
		}
		if (in_list(d->later_choices, v)) {
			add_error(ld, lineno, "%s: %s: not supported in this "
			    "build", d->name, v);
			return -1;
		}
		break;
	case CONF_FLAG:
		if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
			add_error(ld, lineno, "%s: expected on or off, "
			    "got \"%s\"", d->name, got);
			return -1;
		}
		break;
	case CONF_NUMBER:
		rc = number(v, &n);
		break;
	case CONF_DURATION:
		rc = duration_ms(v, &n);
		break;
	case CONF_SIZE:
		rc = size_bytes(v, &n);
		break;
	case CONF_PERCENT:
		rc = percent(v, &n);
		break;
	}

	if (is_number(d)) {
		if (rc == PV_BAD) {
			add_error(ld, lineno, "%s: %s, got \"%s\"", d->name,
			    expected(d, exp, sizeof exp), got);
			return -1;
		}
		if (rc == PV_RANGE || n < d->min || n > d->max) {
			if (rc == PV_OK && n == 0 && (d->flags & CONF_ZERO))
				goto store;
			add_error(ld, lineno, "%s: %s is out of range, "
			    "expected %s%s to %s", d->name, got,
			    (d->flags & CONF_ZERO) ? "0 or " : "",
			    config_format_value(d, d->min, b1, sizeof b1),
			    config_format_value(d, d->max, b2, sizeof b2));
			return -1;
		}
	}

store:
	if (d->flags & CONF_MULTI) {
		char	**arr = f;
		size_t	 *cnt = (size_t *)(arr + CONFIG_MAX_LISTEN);

		for (k = 0; k < *cnt; k++) {
			if (strcmp(arr[k], v) == 0) {
				add_error(ld, lineno, "%s: %s already given "
				    "on line %u", d->name, got, ld->mline[k]);
				return -1;
			}
		}
		if (*cnt == CONFIG_MAX_LISTEN) {
			add_error(ld, lineno, "%s: too many, at most %d",
			    d->name, CONFIG_MAX_LISTEN);
			return -1;
		}
		if ((arr[*cnt] = xstrdup(ld, lineno, v)) == NULL)
			return -1;
		ld->mline[*cnt] = lineno;
		(*cnt)++;
	} else if (is_string(d)) {
		char	**sp = f, *p;

		if ((p = xstrdup(ld, lineno, v)) == NULL)
			return -1;
		free(*sp);
		*sp = p;
	} else if (d->type == CONF_CHOICE) {
		for (k = 0; d->choices[k] != NULL; k++)
			if (strcmp(d->choices[k], v) == 0)
				*(int *)f = (int)k;
	} else if (d->type == CONF_FLAG) {
		*(int *)f = strcmp(v, "on") == 0;
	} else {
		*(uint64_t *)f = n;
	}
	ld->set[i] = 1;
	return 0;
}

/* --- The loader --------------------------------------------------------- */

static void
parse_line(struct loader *ld, char *s, unsigned lineno)
{
	const struct config_directive	*d;
	char				*name, *value, *rest, *hash;
	char				 got[80], exp[300];
	size_t				 i;

	if ((hash = strchr(s, '#')) != NULL)
		*hash = '\0';
	name = s + strspn(s, WS);
	if (*name == '\0')
		return;
	value = name + strcspn(name, WS);
	if (*value != '\0')
		*value++ = '\0';
	value += strspn(value, WS);
	rest = value + strcspn(value, WS);
	if (*rest != '\0')
		*rest++ = '\0';
	rest += strspn(rest, WS);
	/* trailing whitespace of rest */
	for (i = strlen(rest); i > 0 && strchr(WS, rest[i - 1]) != NULL; i--)
		rest[i - 1] = '\0';

	if ((d = lookup(name, &i)) == NULL) {
		add_error(ld, lineno, "%s: unknown directive",
		    shown(name, got, sizeof got));
		return;
	}
	if (d->flags & CONF_LATER) {
		add_error(ld, lineno, "%s: not supported in this build",
		    d->name);
		return;
	}
	if (*value == '\0') {
		add_error(ld, lineno, "%s: missing value, %s", d->name,
		    expected(d, exp, sizeof exp));
		return;
	}
	if (*rest != '\0' && (d->flags & CONF_LIST)) {
		/* One value of several words, single blanks between them
		 * (rest is at most a line, its trailing blanks gone). */
		char	*o = value + strlen(value);

		*o++ = ' ';
		for (; *rest != '\0'; rest++) {
			if (strchr(WS, *rest) == NULL)
				*o++ = *rest;
			else if (o[-1] != ' ')
				*o++ = ' ';
		}
		*o = '\0';
		rest = o;
	}
	if (*rest != '\0') {
		add_error(ld, lineno, "%s: extra words after the value: \"%s\""
		    " (values are one word)", d->name,
		    shown(rest, got, sizeof got));
		return;
	}
	if (ld->line[i] != 0 && !(d->flags & CONF_MULTI)) {
		add_error(ld, lineno, "%s: already set on line %u", d->name,
		    ld->line[i]);
		return;
	}
	if (ld->line[i] == 0)
		ld->line[i] = lineno;
	set_value(ld, i, value, lineno);
}

static void
parse_file(struct loader *ld, FILE *fp)
{
	char		*buf = NULL;
	size_t		 cap = 0;
	ssize_t		 len;
	unsigned	 lineno = 0;

	errno = 0;
	while ((len = getline(&buf, &cap, fp)) != -1) {
		lineno++;
		if (len > 0 && buf[len - 1] == '\n')
			buf[--len] = '\0';
		if ((size_t)len > CONFIG_LINE_MAX) {
			add_error(ld, lineno, "line too long (more than %d "
			    "bytes)", CONFIG_LINE_MAX);
			continue;
		}
		if (strlen(buf) != (size_t)len) {
			add_error(ld, lineno, "line holds a NUL byte");
			continue;
		}
		parse_line(ld, buf, lineno);
		errno = 0;
	}
	if (ferror(fp))
		add_error(ld, 0, "cannot read: %s", strerror(errno ? errno : EIO));
	free(buf);
}

/* default_ttl must not exceed max_ttl: reported once, at the line of
 * whichever of the two was set last. */
static void
check_ttls(struct loader *ld)
{
	const struct config	*c = ld->cfg;
	size_t			 id, im;
	unsigned		 ld_, lm;
	char			 b1[32], b2[32];

	if (lookup("default_ttl", &id) == NULL ||
	    lookup("max_ttl", &im) == NULL || !ld->set[id] || !ld->set[im] ||
	    c->default_ttl <= c->max_ttl)
		return;
	fmt_duration(c->default_ttl, b1, sizeof b1);
	fmt_duration(c->max_ttl, b2, sizeof b2);
	ld_ = ld->line[id];
	lm = ld->line[im];
	if (lm > ld_)
		add_error(ld, lm, "max_ttl: %s is less than default_ttl %s",
		    b2, b1);
	else if (ld_ != 0)
		add_error(ld, ld_, "default_ttl: %s is greater than max_ttl %s",
		    b1, b2);
	else
		add_error(ld, 0, "default_ttl %s is greater than max_ttl %s",
		    b1, b2);
}

/* Node mode keeps its copies in memory (spec §5): `backend lmdb` with `mode
 * node` is refused, at the line of whichever of the two was set last. */
static void
check_backend_mode(struct loader *ld)
{
	const struct config	*c = ld->cfg;
	size_t			 ib, im;
	unsigned		 lb, lm;

	if (c->mode != MODE_NODE || c->backend == NULL ||
	    strcmp(c->backend, "lmdb") != 0 ||
	    lookup("backend", &ib) == NULL || lookup("mode", &im) == NULL)
		return;
	lb = ld->line[ib];
	lm = ld->line[im];
	add_error(ld, lb > lm ? lb : lm,
	    "backend lmdb is not supported with mode node");
}

/*
 * Whether upstream u reaches listen address l of this very process: the
 * same socket, or the same port on a wildcard listener reached through a
 * loopback (or wildcard) address. Both were checked by addr_parse() when
 * read, so a refusal here is only the same text.
 */
static int
same_socket(const char *u, const char *l)
{
	struct addr ua, la;

	if (addr_parse(u, 0, &ua, NULL, 0) != 0 ||
	    addr_parse(l, 0, &la, NULL, 0) != 0)
		return strcmp(u, l) == 0;
	if (ua.kind != la.kind)
		return 0;
	if (ua.kind == ADDR_UNIX)
		return strcmp(ua.path, la.path) == 0;
	/* Ports as numbers: "4000" and "04000" are one port. */
	if (ua.portnum != la.portnum)
		return 0;
	return addr_same_host(&ua, &la) || (addr_is_any(&la) &&
	    (addr_is_loopback(&ua) || addr_is_any(&ua)));
}

/* A node whose upstream is one of its own listen addresses would forward
 * to itself without end (spec §2: forwarding is strictly node -> central). */
static void
check_upstream_loop(struct loader *ld)
{
	const struct config	*c = ld->cfg;
	size_t			 iu, k;
	unsigned		 line;

	char			 buf[CONFIG_LINE_MAX + 1];
	const char		*w[CONFIG_MAX_UPSTREAM];
	size_t			 n, j;

	if (c->mode != MODE_NODE || c->upstream == NULL ||
	    lookup("upstream", &iu) == NULL)
		return;
	n = config_words(c->upstream, buf, sizeof buf, w, CONFIG_MAX_UPSTREAM);
	for (j = 0; j < n; j++) {
		for (k = 0; k < c->nlisten; k++) {
			if (!same_socket(w[j], c->listen[k]))
				continue;
			line = ld->line[iu] != 0 ? ld->line[iu] :
			    ld->mline[k];
			add_error(ld, line, "upstream: %s is this node's own "
			    "listen address %s; it must name the central "
			    "cache", w[j], c->listen[k]);
			return;
		}
	}
}

/* --- node_id ---------------------------------------------------------------- */

static unsigned	line_of(struct loader *, const char *);

static int
id_char(char ch, int first)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9'))
		return 1;
	return !first && strchr("._:/[]-", ch) != NULL;
}

int
config_node_id_ok(const char *s)
{
	size_t i, len = strlen(s);

	if (len == 0 || len > CONFIG_NODE_ID_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!id_char(s[i], i == 0))
			return 0;
	return 1;
}

/*
 * The default node_id: "<host name>/<first listen address>", each byte
 * outside the id's set made '_'; one longer than CONFIG_NODE_ID_MAX keeps
 * its head and ends with '-' and 16 hex digits of an FNV-1a hash of the
 * whole, so that long unix paths of one host still differ.
 */
static char *
node_id_default(const struct config *c)
{
	char host[256], id[512], *out;
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i, len;

	if (gethostname(host, sizeof host) != 0)
		snprintf(host, sizeof host, "localhost");
	host[sizeof host - 1] = '\0';
	snprintf(id, sizeof id, "%s/%s", host[0] != '\0' ? host : "localhost",
	    c->nlisten > 0 ? c->listen[0] : "");
	len = strlen(id);
	for (i = 0; i < len; i++) {
		h = (h ^ (unsigned char)id[i]) * 0x100000001b3ULL;
		if (!id_char(id[i], i == 0))
			id[i] = i == 0 ? 'n' : '_';
	}
	if (len > CONFIG_NODE_ID_MAX)
		snprintf(id + CONFIG_NODE_ID_MAX - 17, 18, "-%016" PRIx64, h);
	if ((out = strdup(id)) == NULL)
		return NULL;
	return out;
}

/* node_id as written, or derived when left out (node mode only). */
static void
check_node_id(struct loader *ld)
{
	struct config	*c = ld->cfg;

	if (c->node_id != NULL) {
		if (!config_node_id_ok(c->node_id))
			add_error(ld, line_of(ld, "node_id"), "node_id: \"%s\" "
			    "is not an id: a letter or digit, then letters, "
			    "digits and . _ : / [ ] -, at most %d bytes",
			    c->node_id, CONFIG_NODE_ID_MAX);
		return;
	}
	if (c->mode == MODE_NODE && (c->node_id = node_id_default(c)) ==
	    NULL)
		add_error(ld, 0, "out of memory");
}

/* --- upstream resolved --------------------------------------------------------- */

/* An address as 16 bytes (IPv4 as v4-mapped IPv6) and its port. */
struct ip {
	uint8_t		 a[16];
	uint16_t	 port;
};

static int
ip_from(const struct sockaddr *sa, struct ip *ip)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0xff, 0xff };

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		memcpy(ip->a, mapped, 12);
		memcpy(ip->a + 12, &in->sin_addr, 4);
		ip->port = ntohs(in->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		memcpy(ip->a, &in6->sin6_addr, 16);
		ip->port = ntohs(in6->sin6_port);
		return 0;
	}
	return -1;
}

static int
ip_is_any(const struct ip *ip)
{
	static const uint8_t zero[16], v4any[16] = { 0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0xff, 0xff, 0, 0, 0, 0 };

	return memcmp(ip->a, zero, 16) == 0 || memcmp(ip->a, v4any, 16) == 0;
}

static int
ip_is_loopback(const struct ip *ip)
{
	static const uint8_t one[16] = { [15] = 1 }, v4[13] = { [10] = 0xff,
		[11] = 0xff, [12] = 127 };

	return memcmp(ip->a, one, 16) == 0 || memcmp(ip->a, v4, 13) == 0;
}

static void
ip_text(const struct ip *ip, char *buf, size_t len)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (memcmp(ip->a, mapped, 12) == 0)
		inet_ntop(AF_INET, ip->a + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, ip->a, buf, (socklen_t)len);
}

/* Resolve host:port into at most max addresses; the count (0 when it does
 * not resolve). */
static size_t
resolve(const struct addr *a, int passive, struct ip *out, size_t max)
{
	struct addrinfo hints, *res, *r;
	size_t n = 0;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	if (getaddrinfo(a->host, a->port, &hints, &res) != 0)
		return 0;
	for (r = res; r != NULL && n < max; r = r->ai_next)
		if (ip_from(r->ai_addr, &out[n]) == 0)
			n++;
	freeaddrinfo(res);
	return n;
}

/* Is ip one of this host's interface addresses? */
static int
ip_is_local(const struct ip *ip)
{
	struct ifaddrs *ifs, *i;
	struct ip x;
	int found = 0;

	if (getifaddrs(&ifs) != 0)
		return 0;
	for (i = ifs; i != NULL && !found; i = i->ifa_next)
		if (i->ifa_addr != NULL && ip_from(i->ifa_addr, &x) == 0 &&
		    memcmp(x.a, ip->a, 16) == 0)
			found = 1;
	freeifaddrs(ifs);
	return found;
}

/* Does a connection to u reach a listener bound to l (same port)? */
static int
ip_reaches(const struct ip *u, const struct ip *l)
{
	if (memcmp(u->a, l->a, 16) == 0)
		return 1;
	if (ip_is_any(l))
		return ip_is_any(u) || ip_is_loopback(u) || ip_is_local(u);
	/* Connecting to the wildcard address reaches this host. */
	return ip_is_any(u);
}

#define RESOLVED_MAX	16

int
config_check_upstream(const struct config *c, char *err, size_t errlen)
{
	struct ip us[RESOLVED_MAX], ls[RESOLVED_MAX];
	struct addr ua, la;
	char ubuf[INET6_ADDRSTRLEN], buf[CONFIG_LINE_MAX + 1];
	const char *w[CONFIG_MAX_UPSTREAM];
	size_t nu, nl, nw, u, k, i, j;

	if (c->mode != MODE_NODE || c->upstream == NULL)
		return 0;
	/* Each address of the list (failover): none may be this node. */
	nw = config_words(c->upstream, buf, sizeof buf, w, CONFIG_MAX_UPSTREAM);
	for (u = 0; u < nw; u++) {
		if (addr_parse(w[u], 0, &ua, NULL, 0) != 0 ||
		    ua.kind != ADDR_INET)
			continue;
		/* A name that does not resolve now may later: the link
		 * retries. */
		if ((nu = resolve(&ua, 0, us, RESOLVED_MAX)) == 0)
			continue;
		for (k = 0; k < c->nlisten; k++) {
			if (addr_parse(c->listen[k], 0, &la, NULL, 0) != 0 ||
			    la.kind != ADDR_INET || la.portnum != ua.portnum)
				continue;
			nl = resolve(&la, 1, ls, RESOLVED_MAX);
			for (i = 0; i < nu; i++)
				for (j = 0; j < nl; j++) {
					if (!ip_reaches(&us[i], &ls[j]))
						continue;
					ip_text(&us[i], ubuf, sizeof ubuf);
					snprintf(err, errlen, "upstream: %s (%s) "
					    "is this node's own listen address "
					    "%s; it must name the central "
					    "cache", w[u], ubuf, c->listen[k]);
					return -1;
				}
		}
	}
	return 0;
}

/* The metrics server is evhttp on a TCP socket: a unix: address is
 * refused here rather than at start-up. */
static void
check_metrics_listen(struct loader *ld)
{
	const struct config	*c = ld->cfg;
	struct addr		 a;
	size_t			 i;

	if (c->metrics_listen != NULL &&
	    addr_parse(c->metrics_listen, 0, &a, NULL, 0) == 0 &&
	    a.kind == ADDR_UNIX)
		add_error(ld, lookup("metrics_listen", &i) != NULL ?
		    ld->line[i] : 0, "metrics_listen: %s: the metrics server "
		    "listens on host:port or [v6]:port only, not on a unix "
		    "socket", c->metrics_listen);
}

/* The line a directive was set at, 0 for none. */
static unsigned
line_of(struct loader *ld, const char *name)
{
	size_t i;

	return lookup(name, &i) != NULL ? ld->line[i] : 0;
}

/* Directive a, set, cannot work without directive b. */
static void
need(struct loader *ld, const char *a, const void *va, const char *b,
    const void *vb, const char *what)
{
	if (va != NULL && vb == NULL)
		add_error(ld, line_of(ld, a), "%s: needs %s%s", a, b, what);
}

/*
 * TLS directives that do nothing alone (spec §7), at the line of the one
 * set. Whether the files load is checked when the daemon starts (and by
 * -t), not here: a reload may be written before the files are.
 */
static void
check_tls(struct loader *ld)
{
	static const char *const up[] = { "upstream_ca", "upstream_cert",
		"upstream_key", "upstream_server_name" };
	const struct config	*c = ld->cfg;
	const char		*v[4];
	struct addr		 a;
	size_t			 k, n;
	char			 buf[CONFIG_LINE_MAX + 1];
	const char		*w[CONFIG_MAX_UPSTREAM];

	need(ld, "tls_cert", c->tls_cert, "tls_key", c->tls_key,
	    " (the certificate's private key)");
	need(ld, "tls_key", c->tls_key, "tls_cert", c->tls_cert,
	    " (the certificate of this key)");
	need(ld, "tls_client_ca", c->tls_client_ca, "tls_cert", c->tls_cert,
	    " and tls_key (client certificates are asked for over TLS)");
	need(ld, "upstream_cert", c->upstream_cert, "upstream_key",
	    c->upstream_key, " (the certificate's private key)");
	need(ld, "upstream_key", c->upstream_key, "upstream_cert",
	    c->upstream_cert, " (the certificate of this key)");
	v[0] = c->upstream_ca;
	v[1] = c->upstream_cert;
	v[2] = c->upstream_key;
	v[3] = c->upstream_server_name;
	for (k = 0; k < 4; k++)
		if (v[k] != NULL && !c->upstream_tls)
			add_error(ld, line_of(ld, up[k]), "%s: needs "
			    "upstream_tls on", up[k]);
	if (!c->upstream_tls || c->upstream_server_name != NULL)
		return;
	n = config_words(c->upstream, buf, sizeof buf, w, CONFIG_MAX_UPSTREAM);
	for (k = 0; k < n; k++) {
		if (addr_parse(w[k], 0, &a, NULL, 0) == 0 &&
		    a.kind == ADDR_UNIX) {
			add_error(ld, line_of(ld, "upstream_tls"),
			    "upstream_tls: a unix: upstream has no host name "
			    "to verify; set upstream_server_name");
			return;
		}
	}
}

/* s3_endpoint: http:// or https://, a host, an optional port, nothing
 * after but one slash (requests add the bucket and key). NULL, or what is
 * wrong. */
static const char *
s3_url_problem(const char *u)
{
	const char *h, *p;

	if (strncmp(u, "http://", 7) == 0)
		h = u + 7;
	else if (strncmp(u, "https://", 8) == 0)
		h = u + 8;
	else
		return "not an http:// or https:// URL";
	if (*h == '[') {
		if ((p = strchr(h, ']')) == NULL || p == h + 1)
			return "no host";
		p++;
	} else {
		p = h + strcspn(h, ":/?@");
		if (p == h)
			return "no host";
	}
	if (*p == '@' || strchr(h, '@') != NULL)
		return "user names belong in s3_credentials, not in the URL";
	if (*p == ':') {
		const char *d = ++p;

		while (*p >= '0' && *p <= '9')
			p++;
		if (p == d || p - d > 5 || atoi(d) == 0 || atoi(d) > 65535)
			return "bad port";
	}
	if (*p == '/' && p[1] == '\0')
		return NULL;
	if (*p != '\0')
		return "no path or query after host[:port]: requests add "
		    "the bucket and key";
	return NULL;
}

/* Bucket names as S3 has them (3-63 of a-z 0-9 . -, starting and ending
 * with a letter or digit). */
static int
s3_bucket_ok(const char *b)
{
	size_t i, n = strlen(b);

	if (n < 3 || n > 63)
		return 0;
	for (i = 0; i < n; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') ||
		    (b[i] >= '0' && b[i] <= '9') ||
		    ((b[i] == '.' || b[i] == '-') && i > 0 && i < n - 1)))
			return 0;
	return 1;
}

static int
s3_region_ok(const char *r)
{
	size_t i, n = strlen(r);

	if (n < 1 || n > 64)
		return 0;
	for (i = 0; i < n; i++)
		if (!((r[i] >= 'a' && r[i] <= 'z') ||
		    (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
			return 0;
	return 1;
}

/*
 * backend s3 needs a store and a bucket; the s3_* directives that name
 * them mean nothing under another backend; a node keeps its copies in
 * memory. The credentials are looked for at start and by -t (a file
 * written later, or the environment), not here.
 */
static void
check_s3(struct loader *ld)
{
	static const char *const own[] = { "s3_endpoint", "s3_bucket",
		"s3_prefix", "s3_credentials", "s3_ca_file" };
	const struct config	*c = ld->cfg;
	const char		*v[5], *why;
	size_t			 k;
	int			 s3 = c->backend != NULL &&
				    strcmp(c->backend, "s3") == 0;

	v[0] = c->s3_endpoint;
	v[1] = c->s3_bucket;
	v[2] = c->s3_prefix;
	v[3] = c->s3_credentials;
	v[4] = c->s3_ca_file;
	if (!s3) {
		for (k = 0; k < 5; k++)
			if (v[k] != NULL)
				add_error(ld, line_of(ld, own[k]), "%s: needs "
				    "backend s3", own[k]);
		return;
	}
	if (c->mode == MODE_NODE) {
		unsigned lb = line_of(ld, "backend"), lm = line_of(ld, "mode");

		add_error(ld, lb > lm ? lb : lm,
		    "backend s3 is not supported with mode node");
	}
	if (c->s3_endpoint == NULL)
		add_error(ld, line_of(ld, "backend"), "backend s3: needs "
		    "s3_endpoint (the store's http:// or https:// URL)");
	else if ((why = s3_url_problem(c->s3_endpoint)) != NULL)
		add_error(ld, line_of(ld, "s3_endpoint"), "s3_endpoint: %s: %s",
		    c->s3_endpoint, why);
	if (c->s3_bucket == NULL)
		add_error(ld, line_of(ld, "backend"), "backend s3: needs "
		    "s3_bucket");
	else if (!s3_bucket_ok(c->s3_bucket))
		add_error(ld, line_of(ld, "s3_bucket"), "s3_bucket: %s: not a "
		    "bucket name (3 to 63 of a-z, 0-9, dots and hyphens, "
		    "a letter or digit at each end)", c->s3_bucket);
	if (c->s3_prefix != NULL && c->s3_prefix[0] == '/')
		add_error(ld, line_of(ld, "s3_prefix"), "s3_prefix: %s: must "
		    "not start with a slash", c->s3_prefix);
	else if (c->s3_prefix != NULL && (strlen(c->s3_prefix) > 127 ||
	    c->s3_prefix[strlen(c->s3_prefix) - 1] != '/'))
		add_error(ld, line_of(ld, "s3_prefix"), "s3_prefix: %s: must "
		    "end with a slash and be at most 127 bytes, such as "
		    "alpcrund/", c->s3_prefix);
	/* SigV4's scope carries it: "aws:amz:<region>:s3" for curl. */
	if (c->s3_region != NULL && !s3_region_ok(c->s3_region))
		add_error(ld, line_of(ld, "s3_region"), "s3_region: %s: not a "
		    "region name (1 to 64 of a-z, 0-9 and hyphens)",
		    c->s3_region);
	if (c->s3_ca_file != NULL && c->s3_endpoint != NULL &&
	    strncmp(c->s3_endpoint, "https://", 8) != 0)
		add_error(ld, line_of(ld, "s3_ca_file"), "s3_ca_file: needs "
		    "an https:// s3_endpoint");
}

int
config_load(const char *path, int allow_missing, struct config *out,
    struct config_errors *errs)
{
	struct config	 cfg;
	struct loader	 ld;
	FILE		*fp = NULL;
	size_t		 i, idttl;
	int		 dttl_given;

	memset(&cfg, 0, sizeof cfg);
	memset(&ld, 0, sizeof ld);
	memset(out, 0, sizeof *out);
	ld.cfg = &cfg;
	ld.errs = errs;
	ld.file = path != NULL ? path : "(defaults)";
	ld.line = calloc(config_table_len, sizeof *ld.line);
	ld.set = calloc(config_table_len, sizeof *ld.set);
	if (ld.line == NULL || ld.set == NULL) {
		add_error(&ld, 0, "out of memory");
		goto done;
	}

	if (path != NULL) {
		if ((fp = fopen(path, "r")) == NULL) {
			if (!(errno == ENOENT && allow_missing))
				add_error(&ld, 0, "cannot open: %s",
				    strerror(errno));
			path = NULL;
		} else {
			parse_file(&ld, fp);
			fclose(fp);
		}
	}

	dttl_given = lookup("default_ttl", &idttl) != NULL &&
	    (ld.set[idttl] || ld.line[idttl] != 0);
	/* Defaults for everything the file left out; mode picks the set. */
	ld.defaults = 1;
	for (i = 0; i < config_table_len; i++) {
		const struct config_directive *d = &config_table[i];
		const char *def = d->def;

		if (ld.set[i] || ld.line[i] != 0)
			continue;
		if (cfg.mode == MODE_NODE && d->def_node != NULL)
			def = d->def_node;
		if (def != NULL)
			set_value(&ld, i, def, 0);
	}
	ld.defaults = 0;
	/* A default_ttl left out follows max_ttl down: only values both
	 * given can conflict (check_ttls()). */
	if (!dttl_given && cfg.default_ttl > cfg.max_ttl)
		cfg.default_ttl = cfg.max_ttl;

	check_ttls(&ld);
	check_backend_mode(&ld);
	check_upstream_loop(&ld);
	check_node_id(&ld);
	check_metrics_listen(&ld);
	check_tls(&ld);
	check_s3(&ld);
	if (ld.nerr == 0 && path != NULL)
		cfg.path = xstrdup(&ld, 0, path);	/* NULL: error added */

done:
	free(ld.line);
	free(ld.set);
	if (ld.nerr != 0) {
		config_free(&cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

void
config_free(struct config *cfg)
{
	size_t	 i, k;

	if (cfg == NULL)
		return;
	for (i = 0; i < config_table_len; i++) {
		const struct config_directive *d = &config_table[i];

		if (d->flags & CONF_MULTI) {
			char	**arr = field(cfg, d);
			size_t	 *cnt = (size_t *)(arr + CONFIG_MAX_LISTEN);

			for (k = 0; k < *cnt; k++)
				free(arr[k]);
		} else if (is_string(d))
			free(*(char **)field(cfg, d));
	}
	free(cfg->path);
	memset(cfg, 0, sizeof *cfg);
}

void
config_errors_free(struct config_errors *errs)
{
	size_t	 i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}

/* --- Dump and compare --------------------------------------------------- */

/* The value of a non-multi directive in file syntax, NULL when unset. */
static const char *
value_text(const struct config *cfg, const struct config_directive *d,
    char *buf, size_t len)
{
	const void	*f = field(cfg, d);
	int		 k;

	if (is_string(d))
		return *(char *const *)f;
	switch (d->type) {
	case CONF_CHOICE:
		k = *(const int *)f;
		for (int j = 0; d->choices[j] != NULL; j++)
			if (j == k)
				return d->choices[j];
		snprintf(buf, len, "%d", k);
		return buf;
	case CONF_FLAG:
		return *(const int *)f ? "on" : "off";
	default:
		return config_format_value(d, *(const uint64_t *)f, buf, len);
	}
}

void
config_dump(const struct config *cfg, FILE *fp)
{
	size_t	 i, k;
	char	 buf[64];

	for (i = 0; i < config_table_len; i++) {
		const struct config_directive *d = &config_table[i];
		const char *pre = "", *post = "", *v;

		if (d->flags & CONF_LATER) {
			/* Commented out, so the dump still loads. */
			pre = "# ";
			post = "\t# not supported in this build";
		}
		if (d->flags & CONF_MULTI) {
			char *const	*arr = field(cfg, d);
			const size_t	*cnt =
			    (const size_t *)(arr + CONFIG_MAX_LISTEN);

			if (*cnt == 0)
				fprintf(fp, "# %s (unset)%s\n", d->name, post);
			for (k = 0; k < *cnt; k++)
				fprintf(fp, "%s%s %s%s\n", pre, d->name,
				    arr[k], post);
			continue;
		}
		if ((v = value_text(cfg, d, buf, sizeof buf)) == NULL)
			fprintf(fp, "# %s (unset)%s\n", d->name, post);
		else
			fprintf(fp, "%s%s %s%s\n", pre, d->name, v, post);
	}
}

static int
same_value(const struct config *a, const struct config *b,
    const struct config_directive *d)
{
	const void	*fa = field(a, d), *fb = field(b, d);
	size_t		 i, j;

	if (d->flags & CONF_MULTI) {
		char *const	*la = fa, *const *lb = fb;
		size_t		 na = *(const size_t *)(la + CONFIG_MAX_LISTEN);
		size_t		 nb = *(const size_t *)(lb + CONFIG_MAX_LISTEN);

		/* Same set of addresses; order does not matter. */
		if (na != nb)
			return 0;
		for (i = 0; i < na; i++) {
			for (j = 0; j < nb; j++)
				if (strcmp(la[i], lb[j]) == 0)
					break;
			if (j == nb)
				return 0;
		}
		return 1;
	}
	if (is_string(d)) {
		const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;

		if (sa == NULL || sb == NULL)
			return sa == sb;
		return strcmp(sa, sb) == 0;
	}
	if (d->type == CONF_CHOICE || d->type == CONF_FLAG)
		return *(const int *)fa == *(const int *)fb;
	return *(const uint64_t *)fa == *(const uint64_t *)fb;
}

size_t
config_restart_changes(const struct config *a, const struct config *b,
    char *buf, size_t len)
{
	size_t	 i, count = 0, o = 0;

	if (buf != NULL && len > 0)
		buf[0] = '\0';
	for (i = 0; i < config_table_len; i++) {
		const struct config_directive *d = &config_table[i];
		int n;

		if ((d->flags & CONF_LIVE) || same_value(a, b, d))
			continue;
		if (buf != NULL && o < len) {
			n = snprintf(buf + o, len - o, "%s%s",
			    count == 0 ? "" : ", ", d->name);
			if (n > 0)
				o += (size_t)n;
		}
		count++;
	}
	return count;
}
