/*
 * grpc_frame.h: gRPC message framing (spec §3) as pure functions: the
 * incremental deframer of the 5-byte-prefixed messages carried in DATA frames,
 * the prefix writer, grpc-message percent-encoding, grpc-timeout parsing,
 * and the rules of the project's own response metadata (alpcrun-* headers),
 * which the server sends (grpc.h) and the client keeps (h2client.h).
 * No I/O here, so that every split and coalesced case is unit-tested.
 */
#ifndef ALPCRUND_GRPC_FRAME_H
#define ALPCRUND_GRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define GRPC_PREFIX_LEN	5

enum grpc_deframe_result {
	GF_NEED_MORE = 0,	/* every byte consumed, no message complete */
	GF_MESSAGE,		/* a message is complete: take it */
	GF_TOO_LARGE,		/* the prefix announced more than max: nothing was
				   allocated; the stream must be refused */
	GF_NOMEM,		/* the body buffer could not be allocated */
};

/* One stream's deframer. Zero it, set max, feed it. */
struct grpc_deframer {
	uint64_t	 max;		/* largest message accepted */
	uint8_t		 hdr[GRPC_PREFIX_LEN];
	size_t		 hdrlen;	/* prefix bytes seen of the current message */
	uint8_t		*buf;		/* body, malloc'ed once the prefix is whole */
	uint32_t	 len;		/* announced body length */
	uint32_t	 have;		/* body bytes received */
	int		 compressed;	/* flag byte of the current message */
	uint32_t	 announced;	/* GF_TOO_LARGE: the length the prefix gave */
	/* NULL: bodies from bigbuf_alloc(), freed by reset until handed
	 * over. Set: from alloc(alloc_arg, len), the giver's to free (reset
	 * only forgets such a body: given); NULL from it is GF_NOMEM. */
	uint8_t		*(*alloc)(void *arg, size_t len);
	void		*alloc_arg;
	int		 given;
};

/* A complete message, handed to the caller (who then owns msg). */
struct grpc_message {
	uint8_t		*data;		/* malloc'ed, NULL when len is 0 */
	uint32_t	 len;
	int		 compressed;
};

/*
 * Feed bytes. Consumes up to len bytes and stops early at a complete message
 * or an error; *consumed says how many were used (feed the rest again). On
 * GF_MESSAGE the deframer resets for the next message and *msg is filled.
 * The body buffer is allocated only once the whole prefix is known and the
 * length is within max, so an oversized message allocates nothing.
 */
enum grpc_deframe_result grpc_deframe(struct grpc_deframer *,
	    const uint8_t *data, size_t len, size_t *consumed,
	    struct grpc_message *msg);
/* Bytes of a partial message buffered (prefix and body); 0 between messages. */
int	 grpc_deframer_partial(const struct grpc_deframer *);
/* Free a partial body. */
void	 grpc_deframer_reset(struct grpc_deframer *);

/* Write the 5-byte prefix of an uncompressed message of len bytes. */
void	 grpc_frame_prefix(uint8_t out[GRPC_PREFIX_LEN], uint32_t len);

/*
 * Percent-encode a grpc-message value: bytes outside 0x20-0x7e and '%' become
 * %XX (uppercase hex). Writes at most outlen-1 bytes plus NUL, never cutting
 * an escape in half; returns the length written.
 */
size_t	 grpc_percent_encode(const char *in, char *out, size_t outlen);
/* The reverse, for the client side and tests: in place, returns length. */
size_t	 grpc_percent_decode(char *s);

/*
 * Parse a grpc-timeout value ("1H", "2M", "30S", "100m", "5u", "7n": 1-8
 * ASCII digits and a unit) into nanoseconds. Returns 0, or -1 when malformed.
 */
int	 grpc_timeout_parse(const char *value, size_t len, uint64_t *ns);

/*
 * Response metadata of the project's own (the central cache's identity,
 * an entry's generation): header fields whose name is "alpcrun-" and then
 * [a-z0-9-] (at most GRPC_META_NAME_MAX bytes in all), whose value is
 * printable ASCII (0x20-0x7e, no space at either end: HTTP trims it) of
 * at most GRPC_META_VALUE_MAX bytes. Small and bounded on both sides: a
 * peer cannot make either side keep more than a few short strings.
 */
#define GRPC_META_PREFIX	"alpcrun-"
#define GRPC_META_NAME_MAX	32
#define GRPC_META_VALUE_MAX	64
int	 grpc_meta_name_ok(const char *name, size_t len);
int	 grpc_meta_value_ok(const char *value, size_t len);
/*
 * Request metadata of the project's own (a node's upstream calls carry
 * alpcrun-via, the ids of the nodes a fetch passed through) follows the
 * same rules, with room for a longer value: at most
 * GRPC_REQ_META_VALUE_MAX bytes, and at most GRPC_REQ_META_MAX names per
 * request on either side (h2client.h sends them, grpc.h keeps them).
 */
#define GRPC_REQ_META_VALUE_MAX	512
#define GRPC_REQ_META_MAX	4
int	 grpc_req_meta_value_ok(const char *value, size_t len);

#endif
