/*
 * tls.h: the OpenSSL contexts of the daemon and its tools (spec §3, §7):
 * the listeners' server context (tls_cert, tls_key, tls_client_ca), the
 * node's upstream client context (upstream_ca, upstream_cert, upstream_key)
 * and the one alpcrunctl uses.
 *
 * Every context speaks TLS 1.2 or later (TLS 1.2 with forward-secret AEAD
 * ciphers only, as HTTP/2 requires; TLS 1.3 with OpenSSL's suites,
 * AES-128-GCM first) and
 * offers or requires ALPN "h2" only. Errors are written to err
 * as one line naming the file and what is wrong with it ("tls_key
 * /etc/x.key: key does not match the certificate"), never to the log.
 */
#ifndef ALPCRUND_TLS_H
#define ALPCRUND_TLS_H

#include <stddef.h>

struct ssl_ctx_st;		/* OpenSSL's SSL_CTX */
struct ssl_st;			/* OpenSSL's SSL */

/*
 * A client context: verification of the server's chain on (against ca_file,
 * or the system's default trust store when ca_file is NULL), ALPN "h2",
 * TLS 1.2 minimum, with the client certificate chain cert_file and its key
 * key_file when both are set (mTLS; both NULL: no client certificate).
 * Hostname verification and SNI are per connection: see tls_client_ssl_new().
 * NULL with err filled on any error. Free with SSL_CTX_free().
 */
struct ssl_ctx_st *tls_client_ctx_new(const char *ca_file,
		    const char *cert_file, const char *key_file, char *err,
		    size_t errlen);

/*
 * The same for the node's link to central: errors name the directives
 * upstream_ca, upstream_cert and upstream_key. An expired client
 * certificate is accepted with a line in warn (may be NULL).
 */
struct ssl_ctx_st *tls_upstream_ctx_new(const char *ca_file,
		    const char *cert_file, const char *key_file, char *warn,
		    size_t warnlen, char *err, size_t errlen);

/*
 * A new SSL for one client connection: SNI set to server_name (unless it
 * is a numeric address, which SNI does not carry) and the peer's
 * certificate checked against server_name (DNS name or IP address);
 * server_name NULL checks the chain only, no name (h2client always gives
 * one). NULL with err filled when out of memory.
 */
struct ssl_st	*tls_client_ssl_new(struct ssl_ctx_st *,
		    const char *server_name, char *err, size_t errlen);
/* Did the server agree to ALPN h2? (after the handshake) */
int		 tls_alpn_is_h2(struct ssl_st *);

/*
 * A server context: cert_file (PEM chain, leaf first) and key_file, which
 * must match; ALPN "h2" required (a client offering no h2 fails the
 * handshake); session resumption through tickets and a session cache; and
 * with client_ca_file set, client certificates required and verified
 * against it. An expired (or not yet valid) certificate is accepted, with
 * a line in warn (warn may be NULL). NULL with err filled on any error.
 * Free with SSL_CTX_free().
 */
struct ssl_ctx_st *tls_server_ctx_new(const char *cert_file,
		    const char *key_file, const char *client_ca_file,
		    char *warn, size_t warnlen, char *err, size_t errlen);

/*
 * The listeners' current server context, shared by every listener.
 * tls_server_reload() builds a new one from the files and, when that
 * worked, makes it current: connections accepted from then on use it,
 * while established ones keep the old context (each SSL holds a reference
 * to its own). When it fails, the current context stays and -1 is returned
 * with err filled. 0 on success.
 */
int		 tls_server_reload(const char *cert_file,
		    const char *key_file, const char *client_ca_file,
		    char *warn, size_t warnlen, char *err, size_t errlen);
/* The current server context (not a new reference), or NULL: cleartext. */
struct ssl_ctx_st *tls_server_ctx(void);
/* Drop the current server context (at exit). */
void		 tls_server_free(void);
/*
 * A new SSL for an accepted connection, from the current server context,
 * without a BIO yet. NULL when out of memory.
 */
struct ssl_st	*tls_server_ssl_new(void);
/*
 * Once the SSL has its BIO (bufferevent_openssl sets one): watch the first
 * byte the client sends, for tls_failure() to tell a cleartext client.
 */
void		 tls_watch_first_byte(struct ssl_st *);

/*
 * Why a TLS connection failed (bufferevent_openssl reported an error), as
 * a short phrase for logs and link reasons: "certificate verify failed:
 * hostname mismatch", "client offered no ALPN h2", "no client
 * certificate", "not TLS: the client sent cleartext", ... Takes the
 * errors the bufferevent collected and drains OpenSSL's error queue.
 * *kind, when not NULL, is set to what the failure was about.
 */
enum tls_fail {
	TLS_FAIL_OTHER,
	TLS_FAIL_PLAINTEXT,	/* server: the first byte is not TLS */
	TLS_FAIL_ALPN,		/* no h2 agreed */
	TLS_FAIL_PEER_CERT,	/* the peer's certificate was refused */
	TLS_FAIL_IO,		/* no TLS error: a socket error, or EOF */
};
struct bufferevent;
const char	*tls_failure(struct bufferevent *, enum tls_fail *kind,
		    char *buf, size_t len);
/* The same once the connection reads and writes the records itself
 * (h2read.h, tlsout.h): from OpenSSL's error queue and errno. */
const char	*tls_failure_ssl(struct ssl_st *, enum tls_fail *kind,
		    char *buf, size_t len);

/*
 * Coalescing for bufferevent_openssl, which makes one SSL_write (so at
 * least one record) of every evbuffer chain: append n bytes at p to out,
 * filling the last chain to the brim and then starting a chain large
 * enough for several full HTTP/2 DATA frames, so that frames leave in
 * full 16 KiB records rather than a 9-byte record per frame header. frame
 * is the size of the frame the bytes belong to: small frames gather in
 * chains of one record instead. *room is the caller's memory of the free
 * space left in the last chain (0 at first; lower it when adding to out by
 * other means, or add everything through here). 0, or -1 when out of
 * memory.
 */
struct evbuffer;
int		 tls_out_add(struct evbuffer *out, size_t *room,
		    const void *p, size_t n, size_t frame);

/* The subject of the peer's certificate as one line, or "(none)": for a
 * refused certificate, the one refused. */
const char	*tls_peer_subject(struct ssl_st *, char *buf, size_t len);

#endif
