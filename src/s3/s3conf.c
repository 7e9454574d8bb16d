/*
 * s3conf.c: the S3 client's settings and credentials from the
 * configuration and the environment (s3conf.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "s3conf.h"

#define CRED_LINE_MAX	4096

static void
wipe_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* The value of one of the three names into *slot; -1 when the name is
 * none of them, -2 when it was given before (an AWS file of several
 * profiles: which keys are meant is not ours to guess). */
static int
take(struct s3_settings *s, const char *name, const char *value)
{
	char **slot;

	if (strncmp(name, "aws_", 4) == 0)
		name += 4;
	if (strcmp(name, "access_key_id") == 0)
		slot = &s->access_key;
	else if (strcmp(name, "secret_access_key") == 0)
		slot = &s->secret_key;
	else if (strcmp(name, "session_token") == 0)
		slot = &s->session_token;
	else
		return -1;
	if (*slot != NULL)
		return -2;
	*slot = strdup(value);
	return 0;
}

static int
read_file(struct s3_settings *s, const char *path, char *err, size_t errlen)
{
	char line[CRED_LINE_MAX + 2], *p, *name, *value, *e;
	unsigned n = 0;
	FILE *f;
	int rv = -1;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "s3_credentials %s: %s", path,
		    strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		n++;
		if (strlen(line) > CRED_LINE_MAX) {
			snprintf(err, errlen, "s3_credentials %s: line %u: "
			    "too long", path, n);
			goto out;
		}
		p = line + strspn(line, " \t");
		e = p + strlen(p);
		while (e > p && strchr(" \t\r\n", e[-1]) != NULL)
			*--e = '\0';
		if (*p == '\0' || *p == '#' || *p == '[')
			continue;
		name = p;
		p += strcspn(p, " \t=");
		value = p + strspn(p, " \t");
		if (*value == '=')
			value += 1 + strspn(value + 1, " \t");
		*p = '\0';
		if (*value == '\0') {
			snprintf(err, errlen, "s3_credentials %s: line %u: %s "
			    "has no value", path, n, name);
			goto out;
		}
		switch (take(s, name, value)) {
		case 0:
			break;
		case -2:
			snprintf(err, errlen, "s3_credentials %s: line %u: %.64s "
			    "given twice (one profile only)", path, n, name);
			goto out;
		default:
			snprintf(err, errlen, "s3_credentials %s: line %u: "
			    "unknown name %.64s (access_key_id, "
			    "secret_access_key or session_token)", path, n,
			    name);
			goto out;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "s3_credentials %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if (s->access_key == NULL || s->secret_key == NULL) {
		snprintf(err, errlen, "s3_credentials %s: no %s line", path,
		    s->access_key == NULL ? "access_key_id" :
		    "secret_access_key");
		goto out;
	}
	rv = 0;
out:
	explicit_bzero(line, sizeof(line));
	fclose(f);
	return rv;
}

static int
from_env(struct s3_settings *s, char *err, size_t errlen)
{
	const char *ak = getenv("AWS_ACCESS_KEY_ID");
	const char *sk = getenv("AWS_SECRET_ACCESS_KEY");
	const char *tok = getenv("AWS_SESSION_TOKEN");

	if (ak == NULL || *ak == '\0' || sk == NULL || *sk == '\0') {
		snprintf(err, errlen, "backend s3: no credentials: set "
		    "s3_credentials, or AWS_ACCESS_KEY_ID and "
		    "AWS_SECRET_ACCESS_KEY in the environment");
		return -1;
	}
	s->access_key = strdup(ak);
	s->secret_key = strdup(sk);
	if (tok != NULL && *tok != '\0')
		s->session_token = strdup(tok);
	return 0;
}

int
s3conf_load(const struct config *conf, struct s3_settings *s, char *err,
    size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if ((conf->s3_credentials != NULL ? read_file(s,
	    conf->s3_credentials, err, errlen) : from_env(s, err,
	    errlen)) != 0) {
		s3conf_free(s);
		return -1;
	}
	if (s->access_key == NULL || s->secret_key == NULL) {
		snprintf(err, errlen, "out of memory");
		s3conf_free(s);
		return -1;
	}
	if (strchr(s->access_key, ':') != NULL) {
		snprintf(err, errlen, "backend s3: the access key id holds a "
		    "colon");
		s3conf_free(s);
		return -1;
	}
	s->cc.endpoint = conf->s3_endpoint;
	s->cc.bucket = conf->s3_bucket;
	s->cc.prefix = conf->s3_prefix;
	s->cc.region = conf->s3_region;
	s->cc.ca_file = conf->s3_ca_file;
	s->cc.timeout_ms = conf->s3_timeout;
	s->cc.retries = (unsigned)conf->s3_retries;
	s->cc.access_key = s->access_key;
	s->cc.secret_key = s->secret_key;
	s->cc.session_token = s->session_token;
	return 0;
}

void
s3conf_free(struct s3_settings *s)
{
	wipe_free(s->access_key);
	wipe_free(s->secret_key);
	wipe_free(s->session_token);
	memset(s, 0, sizeof(*s));
}
