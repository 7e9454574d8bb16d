/*
 * auth.h: the API key (spec §3): loaded from api_key_file or, when that is
 * unset, the environment variable METALCORE_API_KEY; every RPC but health
 * must carry it as metadata `api_key`, compared in constant time.
 */
#ifndef ALPCRUND_AUTH_H
#define ALPCRUND_AUTH_H

#include <stddef.h>

struct config;

/* Load (or on SIGHUP reload) the key. 0, or -1 with err filled and the
 * previous key kept. */
int	 auth_load(const struct config *, char *err, size_t errlen);
/* Is a key configured? */
int	 auth_enabled(void);
/* GRPC_OK, GRPC_UNAUTHENTICATED (no api_key) or GRPC_PERMISSION_DENIED. */
int	 auth_check(int present, const char *key, size_t len);
void	 auth_clear(void);
/*
 * Node mode: the key presented to central (spec §5): upstream_api_key_file,
 * else the node's own key (api_key_file, else METALCORE_API_KEY). 1 with
 * the key in buf, 0 when there is none, -1 with err filled.
 */
int	 auth_upstream_key(const struct config *, char *buf, size_t cap,
	    char *err, size_t errlen);

#endif
