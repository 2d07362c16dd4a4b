/* Client-side TLS contexts for upstream connections. Verification follows libpq's
 * sslmode semantics: require encrypts only, verify-ca checks the chain, verify-full
 * also checks that the certificate names the host (DNS name or IP address). */
#include "tlsctx.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "util.h"

struct ctx_entry {
	int sslmode;
	char *ca_file;
	SSL_CTX *ctx;
};

static struct ctx_entry *ctxs;
static size_t nctxs;

/* Session resumption, as nginx's proxy_ssl_session_reuse: a reconnect to an upstream
 * skips the certificate exchange and the signature. Each SSL_CTX has its own cache (in
 * its ex_data, freed with it), so a session never crosses an sslmode or a CA file, and a
 * reload, which replaces the contexts, starts empty. A session is keyed on the name that
 * was verified, the host connected to (the configured one, or a redirect's node address)
 * and the port, and is offered only to that triple. TLS 1.3
 * tickets are used once (RFC 8446, appendix C.4); a TLS 1.2 session until it expires. */
#define SESS_HOSTS 32
#define SESS_PER_HOST 16 /* a pool refill opens several connections at once */

struct sess_host {
	char *key;
	SSL_SESSION *s[SESS_PER_HOST]; /* oldest first */
	int n;
	uint64_t used;
};

struct sess_cache {
	struct sess_host h[SESS_HOSTS];
	int n;
	uint64_t clock;
};

static bool reuse = true;
static int ctx_idx = -1, ssl_idx = -1;

void tls_set_session_reuse(bool on)
{
	reuse = on;
}

static void host_clear(struct sess_host *h)
{
	for (int i = 0; i < h->n; i++)
		SSL_SESSION_free(h->s[i]);
	h->n = 0;
}

static void cache_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct sess_cache *c = ptr;

	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	if (!c)
		return;
	for (int i = 0; i < c->n; i++) {
		host_clear(&c->h[i]);
		free(c->h[i].key);
	}
	free(c);
}

static void key_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	free(ptr);
}

/* The entry for key; with create, a new one (the least recently used is evicted). */
static struct sess_host *cache_host(struct sess_cache *c, const char *key, bool create)
{
	struct sess_host *h = NULL;

	for (int i = 0; i < c->n; i++)
		if (strcmp(c->h[i].key, key) == 0)
			return &c->h[i];
	if (!create)
		return NULL;
	char *k = strdup(key);
	if (!k)
		return NULL;
	if (c->n < SESS_HOSTS) {
		h = &c->h[c->n++];
	} else {
		h = &c->h[0];
		for (int i = 1; i < c->n; i++)
			if (c->h[i].used < h->used)
				h = &c->h[i];
		host_clear(h);
		free(h->key);
	}
	*h = (struct sess_host){ .key = k, .used = ++c->clock };
	return h;
}

static bool tls13(const SSL_SESSION *s)
{
	return SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION;
}

/* OpenSSL hands over each new session (TLS 1.3: each ticket, after the handshake). */
static int sess_new_cb(SSL *ssl, SSL_SESSION *sess)
{
	const char *key = SSL_get_ex_data(ssl, ssl_idx);
	struct sess_cache *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);
	struct sess_host *h;

	if (!reuse || !key || !c || !SSL_SESSION_is_resumable(sess))
		return 0;
	h = cache_host(c, key, true);
	if (!h)
		return 0;
	if (!tls13(sess))
		host_clear(h); /* the newest TLS 1.2 session is the one to resume */
	if (h->n == SESS_PER_HOST) {
		SSL_SESSION_free(h->s[0]);
		memmove(h->s, h->s + 1, (size_t)(--h->n) * sizeof(h->s[0]));
	}
	h->s[h->n++] = sess;
	return 1; /* the reference is ours */
}

/* Offers the newest session still valid for key; a TLS 1.3 ticket leaves the cache. */
static void sess_offer(SSL *ssl, const char *key)
{
	struct sess_cache *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);
	struct sess_host *h = c ? cache_host(c, key, false) : NULL;
	time_t now = time(NULL);

	if (!h)
		return;
	h->used = ++c->clock;
	while (h->n > 0) {
		SSL_SESSION *s = h->s[h->n - 1];
		bool ok = SSL_SESSION_is_resumable(s) &&
			  SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) > now;

		if (ok && SSL_set_session(ssl, s) != 1)
			ok = false;
		if (!ok || tls13(s)) {
			SSL_SESSION_free(s);
			h->n--;
		}
		if (ok)
			return;
	}
}

static bool sess_init(SSL_CTX *ctx)
{
	struct sess_cache *c;

	if (ctx_idx < 0)
		ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, cache_free);
	if (ssl_idx < 0)
		ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, key_free);
	if (ctx_idx < 0 || ssl_idx < 0)
		return false;
	c = calloc(1, sizeof(*c));
	if (!c)
		return false;
	if (SSL_CTX_set_ex_data(ctx, ctx_idx, c) != 1) {
		free(c);
		return false;
	}
	SSL_CTX_set_session_cache_mode(ctx,
				       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, sess_new_cb);
	return true;
}

bool is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL_CTX *tls_client_ctx(int sslmode, const char *ca_file, char **err)
{
	SSL_CTX *ctx;
	const char *key = ca_file ? ca_file : "";

	for (size_t i = 0; i < nctxs; i++)
		if (ctxs[i].sslmode == sslmode && strcmp(ctxs[i].ca_file, key) == 0)
			return ctxs[i].ctx;

	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		*err = xstrdup("cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* no SSL_MODE_RELEASE_BUFFERS: servers are few and busy, a malloc per record is not */
	if (sslmode >= SSLMODE_VERIFY_CA) {
		int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
				 : SSL_CTX_set_default_verify_paths(ctx);
		if (ok != 1) {
			unsigned long e = ERR_get_error();
			*err = xasprintf("cannot load CA file %s: %s",
					 ca_file ? ca_file : "(system store)",
					 e ? ERR_reason_error_string(e) : "unknown error");
			ERR_clear_error();
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (!sess_init(ctx)) {
		*err = xstrdup("cannot create a TLS session cache");
		SSL_CTX_free(ctx);
		return NULL;
	}
	ctxs = xrealloc(ctxs, (nctxs + 1) * sizeof(*ctxs));
	ctxs[nctxs++] = (struct ctx_entry){ sslmode, xstrdup(key), ctx };
	return ctx;
}

SSL *tls_client_ssl(SSL_CTX *ctx, int sslmode, const char *host, const char *addr, int port)
{
	SSL *ssl = SSL_new(ctx);
	bool ip = is_ip_literal(host);

	if (!ssl)
		return NULL;
	if (reuse) {
		char *key = xasprintf("%s@%s:%d", host, addr, port);
		if (SSL_set_ex_data(ssl, ssl_idx, key) != 1) {
			free(key);
			goto fail;
		}
		sess_offer(ssl, key);
	}
	SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
	/* RFC 6066 forbids IP literals in SNI; every host name is sent. */
	if (!ip && SSL_set_tlsext_host_name(ssl, host) != 1)
		goto fail;
	if (sslmode == SSLMODE_VERIFY_FULL) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
		if (ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1
		       : SSL_set1_host(ssl, host) != 1)
			goto fail;
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

void tls_close_notify(SSL *ssl)
{
	if (ssl && SSL_is_init_finished(ssl)) {
		ERR_clear_error();
		SSL_shutdown(ssl);
		ERR_clear_error();
	}
}

void tls_describe(SSL *ssl, char *buf, size_t len)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);

	if (!cipher || !SSL_is_init_finished(ssl))
		snprintf(buf, len, "TLS");
	else
		snprintf(buf, len, "%s/%s%s", SSL_get_version(ssl), SSL_CIPHER_get_name(cipher),
			 SSL_session_reused(ssl) ? "/resumed" : "");
}

char *tls_failure(SSL *ssl, const char *host, unsigned long ossl_err)
{
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	char buf[256];

	if (vr != X509_V_OK)
		return xasprintf("server certificate of \"%s\" failed verification: %s", host,
				 X509_verify_cert_error_string(vr));
	if (ossl_err) {
		ERR_error_string_n(ossl_err, buf, sizeof(buf));
		return xasprintf("TLS handshake with \"%s\" failed: %s", host, buf);
	}
	return xasprintf("TLS handshake with \"%s\" failed: connection closed", host);
}

void tls_free_all(void)
{
	for (size_t i = 0; i < nctxs; i++) {
		SSL_CTX_free(ctxs[i].ctx);
		free(ctxs[i].ca_file);
	}
	free(ctxs);
	ctxs = NULL;
	nctxs = 0;
}
