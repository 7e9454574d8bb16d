/*
 * s3rec.h: the objects `backend s3` keeps in a bucket, their names and
 * their bodies (spec §4, §6). Pure: no I/O, for the backend (s3.c) and
 * its tests.
 *
 * Names, under the prefix P (s3_prefix, may be empty; else it ends in
 * "/"), with a session id percent-encoded (every byte outside
 * [A-Za-z0-9._-] as %XX, so that "/" in an id makes no folder, and a
 * leading "." too, so that no id makes a "." or ".." segment):
 *	P/incarnation			created once per bucket: the store's
 *					identity for nodes (backend.h)
 *	P/s/<sid>/head			the session's one mutable object: its
 *					current state, moved by If-Match only
 *	P/s/<sid>/L/<level>		created once per (session, level) with
 *					If-None-Match: what makes a level name
 *					one content for ever; only its
 *					keep_until may grow afterwards
 *	P/b/<sid>/<level>-<nonce>	the payload, visible only once a level
 *					record names it
 *
 * Bodies are short text, one "name value" per line after a first line
 * naming the kind and its version ("alpcrund-head 1"), so that an operator
 * reading the bucket can tell what is there. A parser refuses a missing or
 * malformed field and a newer version, and ignores names it does not know
 * (a later version adds fields only where older daemons may skip them).
 * Times in objects are wall-clock milliseconds since the epoch: several
 * hosts share them.
 */
#ifndef ALPCRUND_S3REC_H
#define ALPCRUND_S3REC_H

#include <stddef.h>
#include <stdint.h>

#define S3REC_SHA256_LEN	32
#define S3REC_PREFIX_MAX	128	/* s3_prefix, its "/" included */
/* The longest name: prefix, "b/", 3 x 256 bytes of an encoded id, "/",
 * a level, "-", a nonce: within S3's 1024-byte keys. */
#define S3REC_KEY_MAX		1024

/*
 * Object names into buf (NUL-terminated): 0, or -1 when buf is too small
 * or the session id is empty or longer than 256 bytes.
 */
int	 s3rec_key_incarnation(char *buf, size_t len, const char *prefix);
int	 s3rec_key_head(char *buf, size_t len, const char *prefix,
	    const uint8_t *sid, size_t sidlen);
int	 s3rec_key_level(char *buf, size_t len, const char *prefix,
	    const uint8_t *sid, size_t sidlen, uint32_t level);
int	 s3rec_key_blob(char *buf, size_t len, const char *prefix,
	    const uint8_t *sid, size_t sidlen, uint32_t level, uint64_t nonce);
/* The folder that holds every head ("P/s/"), for listing. */
int	 s3rec_key_heads(char *buf, size_t len, const char *prefix);
/*
 * A listed name back to its session id: key must be exactly
 * "P/s/<sid>/head" with a well-formed encoding. 0 with sid (up to 256
 * bytes) and *sidlen filled; -1 for any other name.
 */
int	 s3rec_sid_of_head(const char *key, const char *prefix, uint8_t *sid,
	    size_t *sidlen);

enum s3_state {
	S3_LIVE = 1,	/* an entry: level, content, expiry */
	S3_DELETED,	/* a tombstone: the deleted level and its digest, until
			   the deleted entry's expiry */
};

/* P/s/<sid>/head. */
struct s3_head {
	enum s3_state	 state;
	uint32_t	 level;
	uint64_t	 gen;		/* the content's generation */
	uint64_t	 origin;	/* the incarnation it came from
					   (backend.h "Identity") */
	uint8_t		 sha256[S3REC_SHA256_LEN];
	uint64_t	 size;
	int64_t		 expires_ms;	/* entry or tombstone */
	uint64_t	 writer;	/* the committing request's nonce: a
					   writer whose reply was lost reads
					   it back to learn it won */
};

/* P/s/<sid>/L/<level>. */
struct s3_level {
	uint32_t	 level;
	uint64_t	 gen;
	uint8_t		 sha256[S3REC_SHA256_LEN];
	uint64_t	 size;
	uint64_t	 blob_nonce;	/* names the payload: s3rec_key_blob() */
	int64_t		 keep_until_ms;	/* the latest expiry ever reported for
					   this level: copies of it may live
					   until then */
};

/* P/incarnation. */
struct s3_incarnation {
	uint64_t	 inc;
	int64_t		 created_ms;
};

/* Bodies: the length written (without a NUL; buf is NUL-terminated when
 * there is room), or 0 when len is too small. S3REC_BODY_MAX always is
 * enough. */
#define S3REC_BODY_MAX	512
size_t	 s3rec_head_format(const struct s3_head *, char *buf, size_t len);
size_t	 s3rec_level_format(const struct s3_level *, char *buf, size_t len);
size_t	 s3rec_incarnation_format(const struct s3_incarnation *, char *buf,
	    size_t len);
/* 0, or -1 with err saying what is wrong (the object's name is the
 * caller's to add). */
int	 s3rec_head_parse(const char *body, size_t len, struct s3_head *,
	    char *err, size_t errlen);
int	 s3rec_level_parse(const char *body, size_t len, struct s3_level *,
	    char *err, size_t errlen);
int	 s3rec_incarnation_parse(const char *body, size_t len,
	    struct s3_incarnation *, char *err, size_t errlen);

/*
 * Do two level records name the same bytes (level, size, SHA-256)? A
 * writer that lost the race to create a level record with the same bytes
 * takes the winner's record (its generation and payload object) as its
 * own; other bytes are refused. Same record: also the same generation and
 * payload object (only keep_until may differ).
 */
int	 s3rec_level_same_content(const struct s3_level *,
	    const struct s3_level *);
int	 s3rec_level_same_record(const struct s3_level *,
	    const struct s3_level *);

#endif
