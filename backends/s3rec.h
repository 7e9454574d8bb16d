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
 *	P/lease/<shard>			a sweeper's lease on one shard of the
 *					sessions (s3sweep.c)
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
/* The folder of every payload object ("P/b/"), and a shard's lease. */
int	 s3rec_key_blobs(char *buf, size_t len, const char *prefix);
int	 s3rec_key_lease(char *buf, size_t len, const char *prefix,
	    unsigned shard);

/* What a listed name is (s3rec_parse_key()). */
enum s3_kind {
	S3K_OTHER = 0,
	S3K_HEAD,	/* P/s/<sid>/head */
	S3K_LEVEL,	/* P/s/<sid>/L/<level> */
	S3K_BLOB,	/* P/b/<sid>/<level>-<nonce> */
};
/*
 * A listed name back to what it is: the kind, with sid (up to 256 bytes)
 * and *sidlen filled, and for S3K_LEVEL and S3K_BLOB *level, for S3K_BLOB
 * *nonce; only the one spelling the key functions make is recognised
 * (S3K_OTHER for any other name).
 */
enum s3_kind s3rec_parse_key(const char *key, const char *prefix,
	    uint8_t *sid, size_t *sidlen, uint32_t *level, uint64_t *nonce);

/*
 * The sweeping shard of a session, 0..nshards-1: FNV-1a of its id, the
 * same on every central and in every release (leases name shards).
 */
unsigned s3rec_shard(const uint8_t *sid, size_t sidlen, unsigned nshards);

/* A head's state (s3sweep.c says how they move and why). */
enum s3_state {
	S3_LIVE = 1,	/* an entry: level, content, expiry */
	S3_DELETED,	/* a tombstone: the deleted level and its digest, until
			   the deleted entry's expiry */
	S3_EXPIRED,	/* the entry's expiry was reported by the sweeper that
			   wrote this state: no entry, as absent to writers */
	S3_GONE,	/* sealed by a sweeper (writer: its nonce; expires_ms:
			   when) that deletes the session's objects, the head
			   last: no entry, and no writer writes over it */
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

/* P/lease/<shard>. */
struct s3_lease {
	uint64_t	 holder;	/* the holding sweeper's nonce */
	int64_t		 until_ms;	/* held until then (0: given up) */
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
size_t	 s3rec_lease_format(const struct s3_lease *, char *buf, size_t len);
/* 0, or -1 with err saying what is wrong (the object's name is the
 * caller's to add). */
int	 s3rec_head_parse(const char *body, size_t len, struct s3_head *,
	    char *err, size_t errlen);
int	 s3rec_level_parse(const char *body, size_t len, struct s3_level *,
	    char *err, size_t errlen);
int	 s3rec_incarnation_parse(const char *body, size_t len,
	    struct s3_incarnation *, char *err, size_t errlen);
int	 s3rec_lease_parse(const char *body, size_t len, struct s3_lease *,
	    char *err, size_t errlen);

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


/*
 * The sweeper's decisions, pure (s3sweep.c applies them). A session's
 * head (NULL: none) as of now_ms: what its sweep does first.
 */
enum s3_sweep_step {
	S3SW_KEEP = 0,	/* nothing now (a live entry, a tombstone within its
			   time, a seal still fresh, no head and no record) */
	S3SW_EXPIRE,	/* a live head past its expiry: move it to expired */
	S3SW_COLLECT,	/* seal it (gone) and delete the session's objects,
			   once every level record's keep_until has passed */
};
/* stale_ms: how long a seal holds before another sweeper may take it
 * over; old_levels: level records were listed, all older than the grace
 * period (an interrupted Set's, with no head). */
enum s3_sweep_step s3rec_sweep_step(const struct s3_head *, int old_levels,
	    int64_t now_ms, int64_t stale_ms);

/* A shard's lease as read (NULL: none) for the sweeper me: may it be
 * taken (or renewed) now? */
int	 s3rec_lease_takable(const struct s3_lease *, uint64_t me,
	    int64_t now_ms);

#endif
