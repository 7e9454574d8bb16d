/*
 * s3_internal.h: what backend s3 (s3.c) shares with the sweeper of its
 * bucket (s3sweep.c). Private to the backend.
 */
#ifndef ALPCRUND_S3_INTERNAL_H
#define ALPCRUND_S3_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct backend;
struct config;
struct event_base;
struct s3_client;
struct s3_client_config;
struct s3sweep;

/*
 * The bucket's sweeper for be, on base, through cl (prefix: the client's).
 * cc is the client's configuration, used once more at s3sweep_free() to
 * give the leases up on a loop of its own. NULL when out of memory.
 */
struct s3sweep	*s3sweep_new(struct backend *be, struct event_base *base,
		    struct s3_client *cl, const struct s3_client_config *cc,
		    const struct config *conf);
/*
 * One tick of the sweeper (backend.h "Sweeping"): renews the leases held,
 * starts a pass when none runs, lets the pass start up to budget sessions'
 * sweeps (they go on by themselves on the loop). Returns how many expiries
 * this central reported since the last call; *more is set when the budget
 * stopped work that could run now.
 */
size_t		 s3sweep_run(struct s3sweep *, size_t budget, int *more);
/* Stops every request, gives the leases held up (a bounded wait on a
 * private loop: nothing else runs meanwhile), frees. NULL: nothing. */
void		 s3sweep_free(struct s3sweep *);

/* Text between <tag> and </tag> from *p on, unescaped into out; 0, or
 * -1 when there is none (s3.c). */
int		 s3_xml_next(const char **p, const char *end, const char *tag,
		    char *out, size_t len);

#endif
