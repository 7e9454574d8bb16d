/*
 * grpc_frame.c: gRPC message framing (spec §3) as pure functions, and the
 * checks of the project's response metadata (grpc_frame.h).
 *
 * The deframer is a two-state machine per stream:
 *
 *	hdrlen < 5	collecting the 5-byte prefix (flag, big-endian u32 length);
 *	hdrlen == 5	the prefix is whole: the body buffer (exactly len bytes)
 *			is allocated, then filled until have == len.
 *
 * Bytes arrive in whatever chunks the HTTP/2 DATA frames bring: a message
 * may span many chunks and one chunk may hold the tail of one message, whole
 * messages and the head of the next. grpc_deframe() stops at the first
 * complete message so that the caller handles it before feeding the rest.
 *
 * Nothing is allocated before the prefix is whole and its length is checked
 * against max, so a hostile "4 GiB" prefix costs nothing. A length above max
 * leaves the deframer with hdrlen == 5 and buf == NULL: every later call
 * answers GF_TOO_LARGE again (consuming nothing) until grpc_deframer_reset().
 * GF_NOMEM leaves the same state, and the next call retries the allocation.
 *
 * The flag byte: 0 is uncompressed, 1 compressed. PROTOCOL-HTTP2 defines no
 * other value; rather than add an error of its own, the deframer carries any
 * nonzero flag as `compressed` (the raw byte), so that the caller's check
 * `compressed != 0` refuses it with UNIMPLEMENTED like a compressed message.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "bigbuf.h"
#include "grpc_frame.h"
#include "hex.h"

static void
deframer_clear(struct grpc_deframer *df)
{
	df->hdrlen = 0;
	df->buf = NULL;
	df->len = 0;
	df->have = 0;
	df->compressed = 0;
	df->given = 0;
}

enum grpc_deframe_result
grpc_deframe(struct grpc_deframer *df, const uint8_t *data, size_t len,
    size_t *consumed, struct grpc_message *msg)
{
	size_t	 used = 0, n;

	*consumed = 0;

	/* Collect the prefix. */
	if (df->hdrlen < GRPC_PREFIX_LEN) {
		n = GRPC_PREFIX_LEN - df->hdrlen;
		if (n > len)
			n = len;
		if (n > 0)
			memcpy(df->hdr + df->hdrlen, data, n);
		df->hdrlen += n;
		used += n;
		if (df->hdrlen < GRPC_PREFIX_LEN) {
			*consumed = used;
			return GF_NEED_MORE;
		}
		df->compressed = df->hdr[0];
		df->len = (uint32_t)df->hdr[1] << 24 | (uint32_t)df->hdr[2] << 16 |
		    (uint32_t)df->hdr[3] << 8 | (uint32_t)df->hdr[4];
		df->have = 0;
	}

	/* The prefix is whole: check the length, then allocate once. */
	if (df->buf == NULL) {
		if ((uint64_t)df->len > df->max) {
			df->announced = df->len;
			*consumed = used;
			return GF_TOO_LARGE;
		}
		if (df->len == 0) {
			msg->data = NULL;
			msg->len = 0;
			msg->compressed = df->compressed;
			deframer_clear(df);
			*consumed = used;
			return GF_MESSAGE;
		}
		df->given = df->alloc != NULL;
		df->buf = df->given ? df->alloc(df->alloc_arg, df->len) :
		    bigbuf_alloc(df->len);
		if (df->buf == NULL) {
			*consumed = used;
			return GF_NOMEM;
		}
	}

	/* Fill the body. */
	n = df->len - df->have;
	if (n > len - used)
		n = len - used;
	if (n > 0)
		memcpy(df->buf + df->have, data + used, n);
	df->have += (uint32_t)n;
	used += n;
	*consumed = used;
	if (df->have < df->len)
		return GF_NEED_MORE;

	msg->data = df->buf;
	msg->len = df->len;
	msg->compressed = df->compressed;
	deframer_clear(df);
	return GF_MESSAGE;
}

int
grpc_deframer_partial(const struct grpc_deframer *df)
{
	uint64_t	 n = (uint64_t)df->hdrlen + df->have;

	return n > INT_MAX ? INT_MAX : (int)n;
}

void
grpc_deframer_reset(struct grpc_deframer *df)
{
	if (!df->given)
		bigbuf_free(df->buf);
	deframer_clear(df);
	df->announced = 0;
}

void
grpc_frame_prefix(uint8_t out[GRPC_PREFIX_LEN], uint32_t len)
{
	out[0] = 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

/* grpc-message: bytes outside 0x20-0x7e, and '%' itself, become %XX. */
size_t
grpc_percent_encode(const char *in, char *out, size_t outlen)
{
	static const char	 hex[] = "0123456789ABCDEF";
	const unsigned char	*p = (const unsigned char *)in;
	size_t			 o = 0;

	if (outlen == 0)
		return 0;
	for (; *p != '\0'; p++) {
		if (*p < 0x20 || *p > 0x7e || *p == '%') {
			if (outlen - 1 - o < 3)
				break;
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 0x0f];
		} else {
			if (outlen - 1 - o < 1)
				break;
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
	return o;
}

/* Malformed escapes ("%", "%4", "%zz") are kept as they are. */
size_t
grpc_percent_decode(char *s)
{
	size_t	 i = 0, o = 0;
	int	 hi, lo;

	while (s[i] != '\0') {
		if (s[i] == '%' &&
		    (hi = hex_digit((unsigned char)s[i + 1])) >= 0 &&
		    (lo = hex_digit((unsigned char)s[i + 2])) >= 0) {
			s[o++] = (char)(hi << 4 | lo);
			i += 3;
		} else
			s[o++] = s[i++];
	}
	s[o] = '\0';
	return o;
}

/*
 * grpc-timeout: TimeoutValue TimeoutUnit, the value 1-8 ASCII digits, the
 * unit one of H M S m u n. 99999999H does not fit in 64 bits of nanoseconds:
 * such values saturate at UINT64_MAX.
 */
int
grpc_timeout_parse(const char *value, size_t len, uint64_t *ns)
{
	uint64_t	 v = 0, mult;
	size_t		 i;

	if (value == NULL || len < 2 || len > 9)
		return -1;
	for (i = 0; i < len - 1; i++) {
		if (value[i] < '0' || value[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(value[i] - '0');
	}
	switch (value[len - 1]) {
	case 'H':
		mult = UINT64_C(3600000000000);
		break;
	case 'M':
		mult = UINT64_C(60000000000);
		break;
	case 'S':
		mult = UINT64_C(1000000000);
		break;
	case 'm':
		mult = UINT64_C(1000000);
		break;
	case 'u':
		mult = UINT64_C(1000);
		break;
	case 'n':
		mult = 1;
		break;
	default:
		return -1;
	}
	*ns = v > UINT64_MAX / mult ? UINT64_MAX : v * mult;
	return 0;
}

int
grpc_meta_name_ok(const char *name, size_t len)
{
	size_t i, plen = sizeof(GRPC_META_PREFIX) - 1;

	if (len <= plen || len > GRPC_META_NAME_MAX ||
	    memcmp(name, GRPC_META_PREFIX, plen) != 0)
		return 0;
	for (i = plen; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		    (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
			return 0;
	return 1;
}

static int
meta_value_ok(const char *value, size_t len, size_t max)
{
	size_t i;

	if (len > max)
		return 0;
	if (len > 0 && (value[0] == ' ' || value[len - 1] == ' '))
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)value[i] < 0x20 ||
		    (unsigned char)value[i] > 0x7e)
			return 0;
	return 1;
}

int
grpc_meta_value_ok(const char *value, size_t len)
{
	return meta_value_ok(value, len, GRPC_META_VALUE_MAX);
}

int
grpc_req_meta_value_ok(const char *value, size_t len)
{
	return meta_value_ok(value, len, GRPC_REQ_META_VALUE_MAX);
}
