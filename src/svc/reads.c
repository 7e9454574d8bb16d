/*
 * reads.c: per-session read counts (reads.h). Chained buckets under a
 * keyed SipHash (session ids are the clients' choice); READS_MAX buckets
 * for at most READS_MAX sessions, so chains stay short without ever
 * growing the table.
 */
#include <stdlib.h>
#include <string.h>

#include "reads.h"
#include "siphash.h"

struct rd {
	struct rd	*next;
	uint64_t	 reads;
	size_t		 keylen;
	uint8_t		 key[];
};

static struct {
	struct rd	**b;
	size_t		  n;
	uint8_t		  seed[SIPHASH_KEY_LEN];
} R;

static struct rd **
slot(const uint8_t *key, size_t keylen)
{
	struct rd **p = &R.b[siphash24(R.seed, key, keylen) &
	    (READS_MAX - 1)];

	while (*p != NULL && ((*p)->keylen != keylen ||
	    memcmp((*p)->key, key, keylen) != 0))
		p = &(*p)->next;
	return p;
}

int
reads_init(void)
{
	if (R.b != NULL)
		return 0;
	if (siphash_key(R.seed) != 0 ||
	    (R.b = calloc(READS_MAX, sizeof(*R.b))) == NULL)
		return -1;
	R.n = 0;
	return 0;
}

void
reads_free(void)
{
	struct rd *r, *next;
	size_t i;

	if (R.b == NULL)
		return;
	for (i = 0; i < READS_MAX; i++)
		for (r = R.b[i]; r != NULL; r = next) {
			next = r->next;
			free(r);
		}
	free(R.b);
	R.b = NULL;
	R.n = 0;
}

void
reads_hit(const uint8_t *key, size_t keylen)
{
	struct rd **p, *r;

	if (R.b == NULL)
		return;
	p = slot(key, keylen);
	if (*p != NULL) {
		(*p)->reads++;
		return;
	}
	if (R.n >= READS_MAX ||
	    (r = malloc(sizeof(*r) + keylen)) == NULL)
		return;
	r->next = NULL;
	r->reads = 1;
	r->keylen = keylen;
	memcpy(r->key, key, keylen);
	*p = r;
	R.n++;
}

void
reads_forget(const uint8_t *key, size_t keylen)
{
	struct rd **p, *r;

	if (R.b == NULL)
		return;
	p = slot(key, keylen);
	if ((r = *p) == NULL)
		return;
	*p = r->next;
	free(r);
	R.n--;
}

int64_t
reads_get(const uint8_t *key, size_t keylen)
{
	struct rd **p;

	if (R.b == NULL || *(p = slot(key, keylen)) == NULL)
		return -1;
	return (int64_t)(*p)->reads;
}

size_t
reads_tracked(void)
{
	return R.n;
}
