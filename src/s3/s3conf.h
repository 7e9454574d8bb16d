/*
 * s3conf.h: the S3 client's settings from alpcrund.conf: the s3_*
 * directives, and the credentials from the s3_credentials file or the
 * environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
 *
 * The credentials file holds lines `name value` (or `name = value`):
 * access_key_id, secret_access_key and optionally session_token (an
 * aws_ prefix is taken too, as AWS's own files write them); blank lines,
 * `#` comments and `[section]` lines are skipped, and a name given twice
 * (a file of several profiles) is refused.
 */
#ifndef ALPCRUND_S3CONF_H
#define ALPCRUND_S3CONF_H

#include <stddef.h>

#include "s3client.h"

struct config;

struct s3_settings {
	struct s3_client_config	 cc;	/* points into conf and below */
	char			*access_key;
	char			*secret_key;
	char			*session_token;
};

/* Fill s from conf (backend s3): 0, or -1 with err filled ("backend s3:
 * no credentials: …", "s3_credentials FILE: line 3: …"). */
int	 s3conf_load(const struct config *, struct s3_settings *, char *err,
	    size_t errlen);
/* Forget the credentials (wiped) and everything else of s. */
void	 s3conf_free(struct s3_settings *);

#endif
