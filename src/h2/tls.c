/*
 * tls.c: the OpenSSL contexts (spec §3, §7): building the listeners' server
 * context and the client contexts (node -> central, alpcrunctl) from PEM
 * files with precise errors, the current server context and its reload on
 * SIGHUP, the per-connection SSL objects, and the words for why a handshake
 * failed. The handshake runs in libevent's bufferevent_openssl; after it
 * the connection reads and writes the records itself (h2read.h,
 * tlsout.h).
 *
 * Each SSL carries a small note (ex_data) that the callbacks fill during
 * the handshake: the first byte the client sent (a cleartext client on a
 * TLS port), the ALPN refusal, the refused peer certificate's subject and
 * why. OpenSSL's own error codes say much less ("alert certificate
 * required"), so tls_failure() prefers the note.
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>

#include "tls.h"

/* TLS 1.2: ECDHE with AEAD only (RFC 9113 §9.2.2 forbids the rest for
 * HTTP/2). */
#define TLS12_CIPHERS	"ECDHE-ECDSA-AES128-GCM-SHA256:" \
			"ECDHE-RSA-AES128-GCM-SHA256:" \
			"ECDHE-ECDSA-AES256-GCM-SHA384:" \
			"ECDHE-RSA-AES256-GCM-SHA384:" \
			"ECDHE-ECDSA-CHACHA20-POLY1305:" \
			"ECDHE-RSA-CHACHA20-POLY1305"
/* TLS 1.3: OpenSSL's suites with AES-128-GCM first, as in the TLS 1.2
 * list (OpenSSL puts AES-256 first): the record encryption is most of
 * the CPU of a large reply, and AES-128 takes ten rounds to AES-256's
 * fourteen (RFC 8446 makes it the one every peer implements). */
#define TLS13_SUITES	"TLS_AES_128_GCM_SHA256:" \
			"TLS_AES_256_GCM_SHA384:" \
			"TLS_CHACHA20_POLY1305_SHA256"
/* Resumed sessions must come from this daemon's contexts (required when
 * client certificates are verified). */
#define SESSION_ID_CTX	"alpcrund"
#define SESSION_CACHE	20480	/* sessions; tickets need no cache */
/*
 * Output chains of tls_out_add(): 128 KiB allocations with libevent's
 * chain header, eight records each, used once full frames go out.
 */
#define OUT_CHUNK	((128u << 10) - 128)
#define FULL_FRAME	(16384 + 9)
/* Small frames (HEADERS, small replies, SETTINGS) gather in chains of
 * one record: many replies of a burst share a record. */
#define SMALL_CHUNK	((16u << 10) - 128)

static const unsigned char alpn_h2[] = { 2, 'h', '2' };

/* What the handshake callbacks learned about one SSL. */
struct tls_note {
	int	 first_byte;		/* -1: nothing read yet */
	int	 kind;			/* enum tls_fail */
	char	 reason[160];
	char	 subject[256];		/* of a refused certificate */
};

static int note_idx = -1;
static SSL_CTX *server_ctx;	/* current; each SSL holds its own ref */

/* Named files of one context, for messages. */
struct names {
	const char	*ca, *cert, *key;
};

static const struct names server_names = { "tls_client_ca", "tls_cert",
	"tls_key" };
static const struct names upstream_names = { "upstream_ca", "upstream_cert",
	"upstream_key" };
static const struct names client_names = { "CA file", "certificate",
	"key" };

/* --- notes --------------------------------------------------------------- */

static void
note_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	free(ptr);
}

static int
note_setup(void)
{
	if (note_idx < 0)
		note_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, note_free);
	return note_idx < 0 ? -1 : 0;
}

static struct tls_note *
note_get(SSL *ssl)
{
	if (ssl == NULL || note_idx < 0)
		return NULL;
	return SSL_get_ex_data(ssl, note_idx);
}

static int
note_attach(SSL *ssl)
{
	struct tls_note *n;

	if (note_setup() != 0 || (n = calloc(1, sizeof(*n))) == NULL)
		return -1;
	n->first_byte = -1;
	if (!SSL_set_ex_data(ssl, note_idx, n)) {
		free(n);
		return -1;
	}
	return 0;
}

static void __attribute__((format(printf, 3, 4)))
note_set(SSL *ssl, enum tls_fail kind, const char *fmt, ...)
{
	struct tls_note *n = note_get(ssl);
	va_list ap;

	if (n == NULL || n->reason[0] != '\0')
		return;		/* the first cause is the one to tell */
	n->kind = kind;
	va_start(ap, fmt);
	vsnprintf(n->reason, sizeof(n->reason), fmt, ap);
	va_end(ap);
}

static void
name_line(X509_NAME *name, char *buf, size_t len)
{
	BIO *b;
	int n;

	buf[0] = '\0';
	if (name == NULL || (b = BIO_new(BIO_s_mem())) == NULL) {
		snprintf(buf, len, "(none)");
		return;
	}
	/* RFC 2253 order reversed (CN first), one line, UTF-8 kept. */
	X509_NAME_print_ex(b, name, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
	n = BIO_read(b, buf, (int)len - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(b);
	if (buf[0] == '\0')
		snprintf(buf, len, "(empty subject)");
}

/* --- errors -------------------------------------------------------------- */

/* OpenSSL's reason for the last error on this thread's queue, and clear
 * it; fallback when there is none. */
static const char *
ssl_reason(const char *fallback)
{
	unsigned long e, last = 0;
	const char *r;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last == 0 || (r = ERR_reason_error_string(last)) == NULL)
		return fallback;
	return r;
}

/*
 * Empty this thread's error queue; 1 when one of its errors is lib's
 * reason (OpenSSL queues the telling error first and a generic one, "PEM
 * lib", last). *why: the first error's reason, or fallback.
 */
static int
drain_has(int lib, int reason, const char **why, const char *fallback)
{
	unsigned long e, first = 0;
	int found = 0;

	while ((e = ERR_get_error()) != 0) {
		if (first == 0)
			first = e;
		if (ERR_GET_LIB(e) == lib && ERR_GET_REASON(e) == reason)
			found = 1;
	}
	if (why != NULL)
		*why = first != 0 && ERR_reason_error_string(first) != NULL ?
		    ERR_reason_error_string(first) : fallback;
	return found;
}

/* A file that cannot be opened: its name and strerror(). fopen() first
 * because OpenSSL's own message for this is "system lib". */
static int
readable(const char *what, const char *path, char *err, size_t errlen)
{
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	fclose(fp);
	return 0;
}

/* notBefore/notAfter of a certificate, as a warning (not an error: an
 * operator may be mid-rotation, and peers decide for themselves). */
static void
check_dates(const char *what, const char *path, X509 *x, char *warn,
    size_t warnlen)
{
	const ASN1_TIME *t;
	char when[64];
	BIO *b;
	int n;

	if (warn == NULL || warnlen == 0 || x == NULL)
		return;
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		t = X509_get0_notAfter(x);
	else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		t = X509_get0_notBefore(x);
	else
		return;
	when[0] = '\0';
	if ((b = BIO_new(BIO_s_mem())) != NULL) {
		ASN1_TIME_print(b, t);
		n = BIO_read(b, when, sizeof(when) - 1);
		when[n > 0 ? n : 0] = '\0';
		BIO_free(b);
	}
	snprintf(warn, warnlen, "%s %s: certificate %s %s", what, path,
	    t == X509_get0_notAfter(x) ? "expired on" : "not valid before",
	    when);
}

/* --- loading ------------------------------------------------------------- */

static int
load_chain(SSL_CTX *ctx, const char *what, const char *path, char *warn,
    size_t warnlen, char *err, size_t errlen)
{
	if (readable(what, path, err, errlen) != 0)
		return -1;
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1) {
		const char *why;

		if (drain_has(ERR_LIB_PEM, PEM_R_NO_START_LINE, &why,
		    "cannot load the certificate"))
			snprintf(err, errlen, "%s %s: no PEM certificate in "
			    "the file", what, path);
		else
			snprintf(err, errlen, "%s %s: %s", what, path, why);
		return -1;
	}
	check_dates(what, path, SSL_CTX_get0_certificate(ctx), warn, warnlen);
	return 0;
}

static int
load_key(SSL_CTX *ctx, const struct names *nm, const char *cert,
    const char *key, char *err, size_t errlen)
{
	if (readable(nm->key, key, err, errlen) != 0)
		return -1;
	ERR_clear_error();
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_error();
		const char *why;

		/* A key of another type than the certificate's is refused
		 * here already: say it the same way as a mismatch. */
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    (ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH ||
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)) {
			ERR_clear_error();
			snprintf(err, errlen, "%s %s: key does not match the "
			    "certificate %s %s", nm->key, key, nm->cert, cert);
		} else if (drain_has(ERR_LIB_PEM, PEM_R_NO_START_LINE, &why,
		    "cannot load the private key"))
			snprintf(err, errlen, "%s %s: no PEM private key in "
			    "the file", nm->key, key);
		else
			snprintf(err, errlen, "%s %s: %s", nm->key, key, why);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "%s %s: key does not match the "
		    "certificate %s %s", nm->key, key, nm->cert, cert);
		return -1;
	}
	return 0;
}

/*
 * Every certificate of a PEM file into the context's trust store; a file
 * without one is an error (OpenSSL would silently trust nothing). With
 * client_list, their subjects also go into the CertificateRequest, so a
 * client holding several certificates picks the right one.
 */
static int
load_ca(SSL_CTX *ctx, const char *what, const char *path, int client_list,
    char *err, size_t errlen)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	STACK_OF(X509_NAME) *names = NULL;
	X509 *x;
	BIO *b;
	int n = 0, rv = -1;

	if (readable(what, path, err, errlen) != 0)
		return -1;
	if ((b = BIO_new_file(path, "r")) == NULL) {
		snprintf(err, errlen, "%s %s: %s", what, path,
		    ssl_reason("cannot open"));
		return -1;
	}
	if (client_list && (names = sk_X509_NAME_new_null()) == NULL)
		goto nomem;
	ERR_clear_error();
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (!X509_STORE_add_cert(store, x)) {
			unsigned long e = ERR_peek_last_error();

			/* The same CA twice in a bundle is harmless. */
			if (ERR_GET_REASON(e) !=
			    X509_R_CERT_ALREADY_IN_HASH_TABLE) {
				X509_free(x);
				snprintf(err, errlen, "%s %s: %s", what, path,
				    ssl_reason("cannot add a certificate"));
				goto out;
			}
			ERR_clear_error();
		}
		if (names != NULL) {
			X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));

			if (nm == NULL || !sk_X509_NAME_push(names, nm)) {
				X509_NAME_free(nm);
				X509_free(x);
				goto nomem;
			}
		}
		X509_free(x);
		n++;
	}
	/* The loop ends on PEM_R_NO_START_LINE at the end of the file;
	 * anything else is a damaged certificate. */
	{
		unsigned long e = ERR_peek_last_error();

		if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM &&
		    ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
			snprintf(err, errlen, "%s %s: certificate %d: %s",
			    what, path, n + 1, ssl_reason("unreadable"));
			goto out;
		}
		ERR_clear_error();
	}
	if (n == 0) {
		snprintf(err, errlen, "%s %s: no certificates in the file",
		    what, path);
		goto out;
	}
	if (names != NULL) {
		SSL_CTX_set_client_CA_list(ctx, names);
		names = NULL;
	}
	rv = 0;
	goto out;
nomem:
	snprintf(err, errlen, "%s %s: out of memory", what, path);
out:
	if (names != NULL)
		sk_X509_NAME_pop_free(names, X509_NAME_free);
	BIO_free(b);
	return rv;
}

static SSL_CTX *
ctx_common(const SSL_METHOD *method, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (note_setup() != 0 || (ctx = SSL_CTX_new(method)) == NULL) {
		snprintf(err, errlen, "TLS: %s", ssl_reason("out of memory"));
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) ||
	    !SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES)) {
		snprintf(err, errlen, "TLS: %s", ssl_reason("bad defaults"));
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION);
	/* libevent may retry a write from a different buffer address. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
}

/* --- client -------------------------------------------------------------- */

static SSL_CTX *
client_ctx(const struct names *nm, const char *ca, const char *cert,
    const char *key, char *warn, size_t warnlen, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (warn != NULL && warnlen > 0)
		warn[0] = '\0';
	if ((cert == NULL) != (key == NULL)) {
		snprintf(err, errlen, "%s without %s",
		    cert ? nm->cert : nm->key, cert ? nm->key : nm->cert);
		return NULL;
	}
	if ((ctx = ctx_common(TLS_client_method(), err, errlen)) == NULL)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* SSL_CTX_set_alpn_protos() returns 0 on success. */
	if (SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2)) != 0) {
		snprintf(err, errlen, "TLS: out of memory");
		goto fail;
	}
	if (ca != NULL) {
		if (load_ca(ctx, nm->ca, ca, 0, err, errlen) != 0)
			goto fail;
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "TLS: cannot load the system's trusted "
		    "certificates: %s", ssl_reason("unknown error"));
		goto fail;
	}
	if (cert != NULL) {
		if (load_chain(ctx, nm->cert, cert, warn, warnlen, err,
		    errlen) != 0 ||
		    load_key(ctx, nm, cert, key, err, errlen) != 0)
			goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tls_client_ctx_new(const char *ca_file, const char *cert_file,
    const char *key_file, char *err, size_t errlen)
{
	return client_ctx(&client_names, ca_file, cert_file, key_file, NULL, 0,
	    err, errlen);
}

SSL_CTX *
tls_upstream_ctx_new(const char *ca_file, const char *cert_file,
    const char *key_file, char *warn, size_t warnlen, char *err,
    size_t errlen)
{
	return client_ctx(&upstream_names, ca_file, cert_file, key_file, warn,
	    warnlen, err, errlen);
}

static int
is_ip(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1;
}

SSL *
tls_client_ssl_new(SSL_CTX *ctx, const char *server_name, char *err,
    size_t errlen)
{
	SSL *ssl;

	if ((ssl = SSL_new(ctx)) == NULL || note_attach(ssl) != 0)
		goto nomem;
	if (server_name != NULL && server_name[0] != '\0') {
		if (is_ip(server_name)) {
			/* An address is checked against the certificate's
			 * IP SANs; SNI carries names only (RFC 6066). */
			if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
			    server_name)) {
				snprintf(err, errlen, "TLS: bad address %s",
				    server_name);
				SSL_free(ssl);
				return NULL;
			}
		} else if (!SSL_set_tlsext_host_name(ssl, server_name) ||
		    !SSL_set1_host(ssl, server_name))
			goto nomem;
		/* Partial wildcards (f*.example.com) are not names. */
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	}
	return ssl;
nomem:
	snprintf(err, errlen, "TLS: %s", ssl_reason("out of memory"));
	SSL_free(ssl);
	return NULL;
}

int
tls_alpn_is_h2(SSL *ssl)
{
	const unsigned char *p;
	unsigned int len;

	SSL_get0_alpn_selected(ssl, &p, &len);
	return len == 2 && memcmp(p, "h2", 2) == 0;
}

/* --- server -------------------------------------------------------------- */

/* A ClientHello without ALPN at all: refused here, since the ALPN
 * callback only runs when the extension is present. */
static int
client_hello_cb(SSL *ssl, int *al, void *arg)
{
	const unsigned char *p;
	size_t len;

	if (SSL_client_hello_get0_ext(ssl,
	    TLSEXT_TYPE_application_layer_protocol_negotiation, &p, &len))
		return SSL_CLIENT_HELLO_SUCCESS;
	note_set(ssl, TLS_FAIL_ALPN, "client offered no ALPN (h2 required)");
	*al = SSL_AD_NO_APPLICATION_PROTOCOL;
	return SSL_CLIENT_HELLO_ERROR;
}

static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned char *sel;
	char offered[96];
	size_t o = 0;
	unsigned int i;

	if (SSL_select_next_proto(&sel, outlen, alpn_h2, sizeof(alpn_h2), in,
	    inlen) == OPENSSL_NPN_NEGOTIATED) {
		*out = sel;
		return SSL_TLSEXT_ERR_OK;
	}
	/* The list, for the log: "http/1.1,spdy/3". */
	offered[0] = '\0';
	for (i = 0; i < inlen && o + 1 < sizeof(offered); ) {
		unsigned int n = in[i++], k;

		if (o > 0 && o + 1 < sizeof(offered))
			offered[o++] = ',';
		for (k = 0; k < n && i < inlen && o + 1 < sizeof(offered);
		    k++, i++)
			offered[o++] = (in[i] >= 0x20 && in[i] < 0x7f) ?
			    (char)in[i] : '?';
		i += n - k;
	}
	offered[o] = '\0';
	note_set(ssl, TLS_FAIL_ALPN, "client offered no ALPN h2 (offered: %s)",
	    offered);
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Remember the refused certificate's subject and why: the log line for a
 * refused client names both. */
static int
verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl;
	struct tls_note *n;

	if (ok)
		return ok;
	ssl = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	if ((n = note_get(ssl)) == NULL || n->reason[0] != '\0')
		return ok;
	name_line(X509_get_subject_name(X509_STORE_CTX_get0_cert(xs)),
	    n->subject, sizeof(n->subject));
	note_set(ssl, TLS_FAIL_PEER_CERT, "certificate verify failed: %s",
	    X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
	return ok;
}

SSL_CTX *
tls_server_ctx_new(const char *cert, const char *key, const char *client_ca,
    char *warn, size_t warnlen, char *err, size_t errlen)
{
	const struct names *nm = &server_names;
	SSL_CTX *ctx;

	if (warn != NULL && warnlen > 0)
		warn[0] = '\0';
	if (cert == NULL || key == NULL) {
		snprintf(err, errlen, "%s without %s",
		    cert ? nm->cert : nm->key, cert ? nm->key : nm->cert);
		return NULL;
	}
	if ((ctx = ctx_common(TLS_server_method(), err, errlen)) == NULL)
		return NULL;
	if (load_chain(ctx, nm->cert, cert, warn, warnlen, err, errlen) != 0 ||
	    load_key(ctx, nm, cert, key, err, errlen) != 0)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	/* Resumption: stateless tickets (on by default, keys per context)
	 * and, for TLS 1.2 clients without tickets, a session cache. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE);
	SSL_CTX_set_session_id_context(ctx,
	    (const unsigned char *)SESSION_ID_CTX, sizeof(SESSION_ID_CTX) - 1);
	/* Buffers go back to the allocator while a connection is idle:
	 * thousands of idle connections would otherwise hold 34 KiB each. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (client_ca != NULL) {
		if (load_ca(ctx, nm->ca, client_ca, 1, err, errlen) != 0)
			goto fail;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int
tls_server_reload(const char *cert, const char *key, const char *client_ca,
    char *warn, size_t warnlen, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if ((ctx = tls_server_ctx_new(cert, key, client_ca, warn, warnlen, err,
	    errlen)) == NULL)
		return -1;
	/* Established connections hold references to the old context. */
	SSL_CTX_free(server_ctx);
	server_ctx = ctx;
	return 0;
}

SSL_CTX *
tls_server_ctx(void)
{
	return server_ctx;
}

void
tls_server_free(void)
{
	SSL_CTX_free(server_ctx);
	server_ctx = NULL;
}

/*
 * The first read on an accepted TLS socket: a TLS client starts with a
 * handshake record (0x16); anything else is a cleartext client, which
 * tls_failure() can then name. The callback removes itself.
 */
static long
first_read_cb(BIO *b, int oper, const char *argp, size_t len, int argi,
    long argl, int ret, size_t *processed)
{
	struct tls_note *n = (struct tls_note *)BIO_get_callback_arg(b);

	if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 &&
	    processed != NULL && *processed > 0) {
		if (n != NULL)
			n->first_byte = (unsigned char)argp[0];
		BIO_set_callback_ex(b, NULL);
	}
	return ret;
}

SSL *
tls_server_ssl_new(void)
{
	SSL *ssl;

	if (server_ctx == NULL || (ssl = SSL_new(server_ctx)) == NULL)
		return NULL;
	if (note_attach(ssl) != 0) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

void
tls_watch_first_byte(SSL *ssl)
{
	BIO *bio = SSL_get_rbio(ssl);

	if (bio == NULL)
		return;
	BIO_set_callback_arg(bio, (char *)note_get(ssl));
	BIO_set_callback_ex(bio, first_read_cb);
}

/* --- output -------------------------------------------------------------- */

int
tls_out_add(struct evbuffer *out, size_t *room, const void *p, size_t n,
    size_t frame)
{
	const uint8_t *q = p;
	struct evbuffer_iovec v;
	size_t k, want;

	while (n > 0) {
		/* *room may be stale (the chain was written and freed): then
		 * the reservation below makes a small chain, and the next
		 * round a large one. */
		if (*room == 0) {
			/* Larger pieces fill several chains. */
			want = frame >= FULL_FRAME ? OUT_CHUNK : SMALL_CHUNK;
			if (evbuffer_expand(out, want) != 0)
				return -1;
		}
		/* All the free space of the last chain (at least 1 byte). */
		if (evbuffer_reserve_space(out, 1, &v, 1) != 1)
			return -1;
		k = v.iov_len < n ? v.iov_len : n;
		memcpy(v.iov_base, q, k);
		*room = v.iov_len - k;
		v.iov_len = k;
		if (evbuffer_commit_space(out, &v, 1) != 0)
			return -1;
		q += k;
		n -= k;
	}
	return 0;
}

/* --- failures ------------------------------------------------------------ */

static const char *failure(SSL *, unsigned long, enum tls_fail *, char *,
		    size_t);

const char *
tls_failure(struct bufferevent *bev, enum tls_fail *kind, char *buf,
    size_t len)
{
	unsigned long e, first = 0;

	/* Errors libevent collected (it returns the latest first: keep the
	 * earliest, the cause; it also records SSL_get_error() values,
	 * which name no library), else the first left on the queue. */
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (ERR_GET_LIB(e) != 0)
			first = e;
	while ((e = ERR_get_error()) != 0)
		if (first == 0)
			first = e;
	return failure(bufferevent_openssl_get_ssl(bev), first, kind, buf, len);
}

const char *
tls_failure_ssl(SSL *ssl, enum tls_fail *kind, char *buf, size_t len)
{
	unsigned long e, first = 0;

	while ((e = ERR_get_error()) != 0)
		if (first == 0)
			first = e;
	return failure(ssl, first, kind, buf, len);
}

static const char *
failure(SSL *ssl, unsigned long first, enum tls_fail *kind, char *buf,
    size_t len)
{
	struct tls_note *n = note_get(ssl);
	long vr;
	int serr;

	if (kind != NULL)
		*kind = TLS_FAIL_OTHER;
	if (n != NULL && n->first_byte >= 0 && n->first_byte != 0x16 &&
	    ssl != NULL && SSL_is_server(ssl)) {
		if (kind != NULL)
			*kind = TLS_FAIL_PLAINTEXT;
		snprintf(buf, len, "not TLS: the client sent cleartext%s",
		    n->first_byte == 'P' ? " (an HTTP/2 preface?)" : "");
		return buf;
	}
	if (n != NULL && n->reason[0] != '\0') {
		if (kind != NULL)
			*kind = n->kind;
		snprintf(buf, len, "%s", n->reason);
		return buf;
	}
	/* A client's own verification of the server. */
	if (ssl != NULL && !SSL_is_server(ssl) &&
	    (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		if (kind != NULL)
			*kind = TLS_FAIL_PEER_CERT;
		snprintf(buf, len, "certificate verify failed: %s",
		    X509_verify_cert_error_string(vr));
		return buf;
	}
	if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
	    ERR_GET_REASON(first) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		if (kind != NULL)
			*kind = TLS_FAIL_PEER_CERT;
		snprintf(buf, len, "no client certificate");
		return buf;
	}
	if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
	    ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING &&
	    ssl != NULL && SSL_is_server(ssl) && !SSL_is_init_finished(ssl)) {
		snprintf(buf, len, "the client closed the connection during "
		    "the handshake (does it trust this certificate?)");
		return buf;
	}
	if (first != 0 && ERR_reason_error_string(first) != NULL) {
		snprintf(buf, len, "%s", ERR_reason_error_string(first));
		return buf;
	}
	if (kind != NULL)
		*kind = TLS_FAIL_IO;
	if ((serr = EVUTIL_SOCKET_ERROR()) != 0) {
		snprintf(buf, len, "%s", evutil_socket_error_to_string(serr));
		return buf;
	}
	snprintf(buf, len, "connection closed%s", ssl != NULL &&
	    SSL_is_init_finished(ssl) ? "" : " during the TLS handshake");
	return buf;
}

const char *
tls_peer_subject(SSL *ssl, char *buf, size_t len)
{
	struct tls_note *n = note_get(ssl);
	X509 *x;

	if (n != NULL && n->subject[0] != '\0') {
		snprintf(buf, len, "%s", n->subject);
		return buf;
	}
	if (ssl == NULL || (x = SSL_get0_peer_certificate(ssl)) == NULL) {
		snprintf(buf, len, "(none)");
		return buf;
	}
	name_line(X509_get_subject_name(x), buf, len);
	return buf;
}
