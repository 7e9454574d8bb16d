/*
 * auth.c: the API key (spec §3). Only a SHA-256 of the key is kept, and a
 * presented key is hashed and compared with CRYPTO_memcmp, so neither the
 * comparison time nor its length tells anything about the key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "auth.h"
#include "config.h"
#include "grpc_status.h"

#define KEY_FILE_MAX	4096

static int have_key;
static uint8_t key_digest[SHA256_DIGEST_LENGTH];

static int
read_key_file(const char *what, const char *path, char *buf, size_t cap,
    char *err, size_t errlen)
{
	FILE *f;
	size_t n;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s %s: %s", what, path,
		    strerror(errno));
		return -1;
	}
	n = fread(buf, 1, cap - 1, f);
	if (ferror(f) || !feof(f)) {
		snprintf(err, errlen, "%s %s: %s", what, path,
		    ferror(f) ? strerror(errno) : "larger than 4 KiB");
		fclose(f);
		return -1;
	}
	fclose(f);
	buf[n] = '\0';
	/* A trailing newline is what editors and `echo` leave: not key. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
	    buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	if (n == 0) {
		snprintf(err, errlen, "%s %s: empty", what, path);
		return -1;
	}
	return 0;
}

int
auth_load(const struct config *conf, char *err, size_t errlen)
{
	char buf[KEY_FILE_MAX];
	const char *key;

	if (conf->api_key_file != NULL) {
		if (read_key_file("api_key_file", conf->api_key_file, buf,
		    sizeof(buf), err, errlen) != 0)
			return -1;
		key = buf;
	} else if ((key = getenv("METALCORE_API_KEY")) == NULL || *key == '\0') {
		have_key = 0;
		return 0;
	}
	SHA256((const uint8_t *)key, strlen(key), key_digest);
	OPENSSL_cleanse(buf, sizeof(buf));
	have_key = 1;
	return 0;
}

int
auth_upstream_key(const struct config *conf, char *buf, size_t cap,
    char *err, size_t errlen)
{
	const char *env;

	if (conf->upstream_api_key_file != NULL)
		return read_key_file("upstream_api_key_file",
		    conf->upstream_api_key_file, buf, cap, err, errlen) == 0 ?
		    1 : -1;
	if (conf->api_key_file != NULL)
		return read_key_file("api_key_file", conf->api_key_file, buf,
		    cap, err, errlen) == 0 ? 1 : -1;
	if ((env = getenv("METALCORE_API_KEY")) == NULL || *env == '\0')
		return 0;
	if (strlen(env) >= cap) {
		snprintf(err, errlen, "METALCORE_API_KEY: longer than 4 KiB");
		return -1;
	}
	memcpy(buf, env, strlen(env) + 1);
	return 1;
}

int
auth_enabled(void)
{
	return have_key;
}

int
auth_check(int present, const char *key, size_t len)
{
	uint8_t d[SHA256_DIGEST_LENGTH];

	if (!have_key)
		return GRPC_OK;
	if (!present)
		return GRPC_UNAUTHENTICATED;
	SHA256((const uint8_t *)key, len, d);
	return CRYPTO_memcmp(d, key_digest, sizeof(d)) == 0 ? GRPC_OK :
	    GRPC_PERMISSION_DENIED;
}

void
auth_clear(void)
{
	have_key = 0;
	OPENSSL_cleanse(key_digest, sizeof(key_digest));
}
