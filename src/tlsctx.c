/* Client-side TLS contexts for upstream connections. Verification follows libpq's
 * sslmode semantics: require encrypts only, verify-ca checks the chain, verify-full
 * also checks that the certificate names the host (DNS name or IP address). */
#include "tlsctx.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <string.h>

#include "cfg.h"
#include "util.h"

struct ctx_entry {
	int sslmode;
	char *ca_file;
	SSL_CTX *ctx;
};

static struct ctx_entry *ctxs;
static size_t nctxs;

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
			*err = xasprintf("cannot load CA file %s: %s", ca_file ? ca_file : "(system store)",
					 e ? ERR_reason_error_string(e) : "unknown error");
			ERR_clear_error();
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	ctxs = xrealloc(ctxs, (nctxs + 1) * sizeof(*ctxs));
	ctxs[nctxs++] = (struct ctx_entry){ sslmode, xstrdup(key), ctx };
	return ctx;
}

SSL *tls_client_ssl(SSL_CTX *ctx, int sslmode, const char *host)
{
	SSL *ssl = SSL_new(ctx);
	bool ip = is_ip_literal(host);

	if (!ssl)
		return NULL;
	SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
	/* RFC 6066 forbids IP literals in SNI; every host name is sent. */
	if (!ip && SSL_set_tlsext_host_name(ssl, host) != 1)
		goto fail;
	if (sslmode == SSLMODE_VERIFY_FULL) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
		if (ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1 : SSL_set1_host(ssl, host) != 1)
			goto fail;
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
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
