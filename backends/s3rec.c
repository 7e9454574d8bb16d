/*
 * s3rec.c: names and bodies of the objects backend s3 keeps (s3rec.h).
 * One table of fields per kind drives both the formatter and the parser,
 * so that the two cannot disagree.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "s3rec.h"

#define SID_MAX		256
#define S3REC_VERSION	1

/* --- names ------------------------------------------------------------------- */

static int
safe(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* Append fmt to buf at *at; -1 once it does not fit. */
static int
put(char *buf, size_t len, size_t *at, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*at >= len)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(buf + *at, len - *at, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len - *at)
		return -1;
	*at += (size_t)n;
	return 0;
}

static int
put_sid(char *buf, size_t len, size_t *at, const uint8_t *sid, size_t n)
{
	size_t i;

	if (n == 0 || n > SID_MAX)
		return -1;
	/* A leading dot encoded too: no id makes a "." or ".." segment. */
	for (i = 0; i < n; i++)
		if (put(buf, len, at, safe(sid[i]) && (i > 0 ||
		    sid[i] != '.') ? "%c" : "%%%02X", sid[i]) != 0)
			return -1;
	return 0;
}

int
s3rec_key_incarnation(char *buf, size_t len, const char *prefix)
{
	size_t at = 0;

	return put(buf, len, &at, "%sincarnation", prefix);
}

int
s3rec_key_heads(char *buf, size_t len, const char *prefix)
{
	size_t at = 0;

	return put(buf, len, &at, "%ss/", prefix);
}

int
s3rec_key_head(char *buf, size_t len, const char *prefix, const uint8_t *sid,
    size_t sidlen)
{
	size_t at = 0;

	if (put(buf, len, &at, "%ss/", prefix) != 0 ||
	    put_sid(buf, len, &at, sid, sidlen) != 0)
		return -1;
	return put(buf, len, &at, "/head");
}

int
s3rec_key_level(char *buf, size_t len, const char *prefix, const uint8_t *sid,
    size_t sidlen, uint32_t level)
{
	size_t at = 0;

	if (put(buf, len, &at, "%ss/", prefix) != 0 ||
	    put_sid(buf, len, &at, sid, sidlen) != 0)
		return -1;
	return put(buf, len, &at, "/L/%" PRIu32, level);
}

int
s3rec_key_blob(char *buf, size_t len, const char *prefix, const uint8_t *sid,
    size_t sidlen, uint32_t level, uint64_t nonce)
{
	size_t at = 0;

	if (put(buf, len, &at, "%sb/", prefix) != 0 ||
	    put_sid(buf, len, &at, sid, sidlen) != 0)
		return -1;
	return put(buf, len, &at, "/%" PRIu32 "-%016" PRIx64, level, nonce);
}

int
s3rec_sid_of_head(const char *key, const char *prefix, uint8_t *sid,
    size_t *sidlen)
{
	size_t pl = strlen(prefix), kl = strlen(key), n = 0;
	const char *p, *end;
	int hi, lo;

	if (kl < pl + 2 + 5 || strncmp(key, prefix, pl) != 0 ||
	    strncmp(key + pl, "s/", 2) != 0 ||
	    strcmp(key + kl - 5, "/head") != 0)
		return -1;
	end = key + kl - 5;
	for (p = key + pl + 2; p < end; p++) {
		if (n == SID_MAX)
			return -1;
		if (*p == '%') {
			if (end - p < 3 || (hi = hex_digit(p[1])) < 0 ||
			    (lo = hex_digit(p[2])) < 0)
				return -1;
			sid[n++] = (uint8_t)(hi << 4 | lo);
			p += 2;
		} else if (safe((uint8_t)*p))
			sid[n++] = (uint8_t)*p;
		else
			return -1;
	}
	if (n == 0)
		return -1;
	/* Only the one spelling s3rec_key_head() makes ("%61" or "%2f"
	 * would name another object than this id's). */
	{
		char again[S3REC_KEY_MAX];

		if (s3rec_key_head(again, sizeof(again), prefix, sid, n) != 0 ||
		    strcmp(again, key) != 0)
			return -1;
	}
	*sidlen = n;
	return 0;
}

int
s3rec_key_blobs(char *buf, size_t len, const char *prefix)
{
	size_t at = 0;

	return put(buf, len, &at, "%sb/", prefix);
}

int
s3rec_key_lease(char *buf, size_t len, const char *prefix, unsigned shard)
{
	size_t at = 0;

	return put(buf, len, &at, "%slease/%u", prefix, shard);
}

/* Digits only, no sign or leading zero, within max; -1 otherwise. */
static int
digits(const char *p, const char *end, uint64_t max, uint64_t *v)
{
	uint64_t n = 0;

	if (p == end || (*p == '0' && end - p > 1))
		return -1;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9' || n > (max - (uint64_t)(*p - '0')) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	*v = n;
	return 0;
}

enum s3_kind
s3rec_parse_key(const char *key, const char *prefix, uint8_t *sid,
    size_t *sidlen, uint32_t *level, uint64_t *nonce)
{
	size_t pl = strlen(prefix);
	const char *p, *slash, *rest, *dash;
	char again[S3REC_KEY_MAX], enc[S3REC_KEY_MAX];
	enum s3_kind kind;
	uint64_t v = 0, nv = 0;
	int i, hi;

	if (strncmp(key, prefix, pl) != 0)
		return S3K_OTHER;
	p = key + pl;
	if (strncmp(p, "s/", 2) != 0 && strncmp(p, "b/", 2) != 0)
		return S3K_OTHER;
	if ((slash = strchr(p + 2, '/')) == NULL)
		return S3K_OTHER;
	rest = slash + 1;
	if (p[0] == 's' && strcmp(rest, "head") == 0)
		return s3rec_sid_of_head(key, prefix, sid, sidlen) == 0 ?
		    S3K_HEAD : S3K_OTHER;
	if (p[0] == 's') {
		if (strncmp(rest, "L/", 2) != 0 || digits(rest + 2,
		    rest + strlen(rest), UINT32_MAX, &v) != 0)
			return S3K_OTHER;
		kind = S3K_LEVEL;
	} else {
		if ((dash = strchr(rest, '-')) == NULL ||
		    digits(rest, dash, UINT32_MAX, &v) != 0 ||
		    strlen(dash + 1) != 16)
			return S3K_OTHER;
		for (i = 0; i < 16; i++) {
			if ((hi = hex_digit(dash[1 + i])) < 0 ||
			    (dash[1 + i] >= 'A' && dash[1 + i] <= 'F'))
				return S3K_OTHER;
			nv = nv << 4 | (uint64_t)hi;
		}
		kind = S3K_BLOB;
	}
	/* The id through the head's name, which checks its spelling. */
	if ((size_t)(slash - (p + 2)) + pl + 8 > sizeof(enc))
		return S3K_OTHER;
	snprintf(enc, sizeof(enc), "%ss/%.*s/head", prefix,
	    (int)(slash - (p + 2)), p + 2);
	if (s3rec_sid_of_head(enc, prefix, sid, sidlen) != 0)
		return S3K_OTHER;
	if ((kind == S3K_LEVEL ? s3rec_key_level(again, sizeof(again), prefix,
	    sid, *sidlen, (uint32_t)v) : s3rec_key_blob(again, sizeof(again),
	    prefix, sid, *sidlen, (uint32_t)v, nv)) != 0 ||
	    strcmp(again, key) != 0)
		return S3K_OTHER;
	*level = (uint32_t)v;
	if (kind == S3K_BLOB)
		*nonce = nv;
	return kind;
}

unsigned
s3rec_shard(const uint8_t *sid, size_t sidlen, unsigned nshards)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < sidlen; i++) {
		h ^= sid[i];
		h *= 0x100000001b3ULL;
	}
	return nshards > 0 ? (unsigned)(h % nshards) : 0;
}

/* --- bodies ------------------------------------------------------------------ */

enum ftype { F_U32, F_U64, F_I64, F_HEX64, F_SHA, F_STATE };

struct field {
	const char	*name;
	enum ftype	 type;
	size_t		 off;
};

#define H(f, t)	{ #f, t, offsetof(struct s3_head, f) }
static const struct field head_fields[] = {
	{ "state", F_STATE, offsetof(struct s3_head, state) },
	H(level, F_U32), H(gen, F_HEX64), H(origin, F_HEX64),
	H(sha256, F_SHA), H(size, F_U64),
	H(expires_ms, F_I64), H(writer, F_HEX64),
};
#undef H
#define L(f, t)	{ #f, t, offsetof(struct s3_level, f) }
static const struct field level_fields[] = {
	L(level, F_U32), L(gen, F_HEX64), L(sha256, F_SHA), L(size, F_U64),
	L(blob_nonce, F_HEX64), L(keep_until_ms, F_I64),
};
#undef L
#define E(f, t)	{ #f, t, offsetof(struct s3_lease, f) }
static const struct field lease_fields[] = {
	E(holder, F_HEX64), E(until_ms, F_I64),
};
#undef E
#define I(f, t)	{ #f, t, offsetof(struct s3_incarnation, f) }
static const struct field inc_fields[] = {
	I(inc, F_HEX64), I(created_ms, F_I64),
};
#undef I

#define NF(a)	(sizeof(a) / sizeof((a)[0]))

static const char *const state_names[] = {
	[S3_LIVE] = "live", [S3_DELETED] = "deleted",
	[S3_EXPIRED] = "expired", [S3_GONE] = "gone",
};

static const char *
state_name(enum s3_state st)
{
	return st >= S3_LIVE && st <= S3_GONE ? state_names[st] : "live";
}

static size_t
format(const char *kind, const struct field *f, size_t nf, const void *rec,
    char *buf, size_t len)
{
	const uint8_t *r = rec;
	size_t at = 0, i, j;
	int rv;

	if (put(buf, len, &at, "%s %d\n", kind, S3REC_VERSION) != 0)
		return 0;
	for (i = 0; i < nf; i++) {
		const void *p = r + f[i].off;

		rv = put(buf, len, &at, "%s ", f[i].name);
		switch (f[i].type) {
		case F_U32:
			rv |= put(buf, len, &at, "%" PRIu32,
			    *(const uint32_t *)p);
			break;
		case F_U64:
			rv |= put(buf, len, &at, "%" PRIu64,
			    *(const uint64_t *)p);
			break;
		case F_I64:
			rv |= put(buf, len, &at, "%" PRId64,
			    *(const int64_t *)p);
			break;
		case F_HEX64:
			rv |= put(buf, len, &at, "%016" PRIx64,
			    *(const uint64_t *)p);
			break;
		case F_SHA:
			for (j = 0; j < S3REC_SHA256_LEN; j++)
				rv |= put(buf, len, &at, "%02x",
				    ((const uint8_t *)p)[j]);
			break;
		case F_STATE:
			rv |= put(buf, len, &at, "%s",
			    state_name(*(const enum s3_state *)p));
			break;
		}
		if (rv != 0 || put(buf, len, &at, "\n") != 0)
			return 0;
	}
	return at;
}

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* One value (NUL-terminated v) into the field; 0 or -1. */
static int
value(const struct field *f, const char *v, void *rec)
{
	uint8_t *p = (uint8_t *)rec + f->off;
	unsigned long long u;
	long long s;
	char *end;
	size_t j;
	int hi, lo;

	if (*v == '\0' || *v == ' ' || *v == '+')
		return -1;
	errno = 0;
	switch (f->type) {
	case F_U32:
	case F_U64:
		if (*v == '-')
			return -1;
		u = strtoull(v, &end, 10);
		if (errno != 0 || *end != '\0' ||
		    (f->type == F_U32 && u > UINT32_MAX))
			return -1;
		if (f->type == F_U32)
			*(uint32_t *)p = (uint32_t)u;
		else
			*(uint64_t *)p = (uint64_t)u;
		return 0;
	case F_I64:
		s = strtoll(v, &end, 10);
		if (errno != 0 || *end != '\0')
			return -1;
		*(int64_t *)p = (int64_t)s;
		return 0;
	case F_HEX64:
		if (strlen(v) != 16)
			return -1;
		for (u = 0, j = 0; j < 16; j++) {
			if ((hi = hex_digit(v[j])) < 0)
				return -1;
			u = u << 4 | (unsigned)hi;
		}
		*(uint64_t *)p = (uint64_t)u;
		return 0;
	case F_SHA:
		if (strlen(v) != 2 * S3REC_SHA256_LEN)
			return -1;
		for (j = 0; j < S3REC_SHA256_LEN; j++) {
			if ((hi = hex_digit(v[2 * j])) < 0 ||
			    (lo = hex_digit(v[2 * j + 1])) < 0)
				return -1;
			p[j] = (uint8_t)(hi << 4 | lo);
		}
		return 0;
	case F_STATE:
		for (j = S3_LIVE; j <= S3_GONE; j++)
			if (strcmp(v, state_names[j]) == 0) {
				*(enum s3_state *)p = (enum s3_state)j;
				return 0;
			}
		return -1;
	}
	return -1;
}

/* A version: 1-9999 in decimal, nothing else; -1 otherwise. */
static int
number(const char *s)
{
	int v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > 999)
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

static int
parse(const char *kind, const struct field *f, size_t nf, const char *body,
    size_t len, void *rec, size_t recsize, char *err, size_t errlen)
{
	char line[160], *sp;
	const char *p = body, *end = body + len, *nl;
	unsigned seen = 0;
	size_t i, n, kl = strlen(kind);
	int first = 1, version;

	memset(rec, 0, recsize);
	while (p < end) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			return fail(err, errlen, "%s: the last line has no "
			    "newline", kind);
		n = (size_t)(nl - p);
		if (n >= sizeof(line) || memchr(p, '\0', n) != NULL)
			return fail(err, errlen, "%s: a line too long or with "
			    "a NUL", kind);
		memcpy(line, p, n);
		line[n] = '\0';
		p = nl + 1;
		if (first) {
			first = 0;
			if (strncmp(line, kind, kl) != 0 || line[kl] != ' ' ||
			    (version = number(line + kl + 1)) < 1)
				return fail(err, errlen, "not an %s object",
				    kind);
			if (version > S3REC_VERSION)
				return fail(err, errlen, "%s version %d is "
				    "newer than this daemon's %d", kind,
				    version, S3REC_VERSION);
			continue;
		}
		if ((sp = strchr(line, ' ')) == NULL)
			return fail(err, errlen, "%s: a line without a value: "
			    "\"%.40s\"", kind, line);
		*sp = '\0';
		for (i = 0; i < nf && strcmp(f[i].name, line) != 0; i++)
			;
		if (i == nf)
			continue;	/* a later version's field */
		if (seen & (1u << i))
			return fail(err, errlen, "%s: %s given twice", kind,
			    line);
		if (value(&f[i], sp + 1, rec) != 0)
			return fail(err, errlen, "%s: bad %s \"%.70s\"", kind,
			    line, sp + 1);
		seen |= 1u << i;
	}
	if (first)
		return fail(err, errlen, "%s: empty", kind);
	for (i = 0; i < nf; i++)
		if (!(seen & (1u << i)))
			return fail(err, errlen, "%s: no %s", kind, f[i].name);
	return 0;
}

size_t
s3rec_head_format(const struct s3_head *h, char *buf, size_t len)
{
	return format("alpcrund-head", head_fields, NF(head_fields), h, buf,
	    len);
}

size_t
s3rec_level_format(const struct s3_level *l, char *buf, size_t len)
{
	return format("alpcrund-level", level_fields, NF(level_fields), l,
	    buf, len);
}

size_t
s3rec_incarnation_format(const struct s3_incarnation *c, char *buf,
    size_t len)
{
	return format("alpcrund-incarnation", inc_fields, NF(inc_fields), c,
	    buf, len);
}

int
s3rec_head_parse(const char *body, size_t len, struct s3_head *h, char *err,
    size_t errlen)
{
	return parse("alpcrund-head", head_fields, NF(head_fields), body, len,
	    h, sizeof(*h), err, errlen);
}

int
s3rec_level_parse(const char *body, size_t len, struct s3_level *l,
    char *err, size_t errlen)
{
	return parse("alpcrund-level", level_fields, NF(level_fields), body,
	    len, l, sizeof(*l), err, errlen);
}

int
s3rec_incarnation_parse(const char *body, size_t len,
    struct s3_incarnation *c, char *err, size_t errlen)
{
	if (parse("alpcrund-incarnation", inc_fields, NF(inc_fields), body,
	    len, c, sizeof(*c), err, errlen) != 0)
		return -1;
	if (c->inc == 0)
		return fail(err, errlen, "alpcrund-incarnation: inc is 0");
	return 0;
}

size_t
s3rec_lease_format(const struct s3_lease *l, char *buf, size_t len)
{
	return format("alpcrund-lease", lease_fields, NF(lease_fields), l, buf,
	    len);
}

int
s3rec_lease_parse(const char *body, size_t len, struct s3_lease *l,
    char *err, size_t errlen)
{
	return parse("alpcrund-lease", lease_fields, NF(lease_fields), body,
	    len, l, sizeof(*l), err, errlen);
}

int
s3rec_level_same_content(const struct s3_level *a, const struct s3_level *b)
{
	return a->level == b->level && a->size == b->size &&
	    memcmp(a->sha256, b->sha256, S3REC_SHA256_LEN) == 0;
}

int
s3rec_level_same_record(const struct s3_level *a, const struct s3_level *b)
{
	return s3rec_level_same_content(a, b) && a->gen == b->gen &&
	    a->blob_nonce == b->blob_nonce;
}

/* --- the sweeper's decisions ------------------------------------------------- */

enum s3_sweep_step
s3rec_sweep_step(const struct s3_head *h, int old_levels, int64_t now_ms,
    int64_t stale_ms)
{
	if (h == NULL)
		return old_levels ? S3SW_COLLECT : S3SW_KEEP;
	switch (h->state) {
	case S3_LIVE:
		return h->expires_ms <= now_ms ? S3SW_EXPIRE : S3SW_KEEP;
	case S3_DELETED:
		/* A tombstone is honoured until its time. */
		return h->expires_ms <= now_ms ? S3SW_COLLECT : S3SW_KEEP;
	case S3_EXPIRED:
		return S3SW_COLLECT;
	case S3_GONE:
		/* Its sealer is deleting; one that died is taken over. */
		return h->expires_ms <= now_ms - stale_ms ? S3SW_COLLECT :
		    S3SW_KEEP;
	}
	return S3SW_KEEP;
}

int
s3rec_lease_takable(const struct s3_lease *l, uint64_t me, int64_t now_ms)
{
	return l == NULL || l->holder == me || l->until_ms <= now_ms;
}
