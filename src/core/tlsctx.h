/* Upstream TLS: one SSL_CTX per (sslmode, CA file), TLS 1.2 minimum, and per-connection
 * setup that always sends SNI for host names and checks the host name in verify-full. */
#ifndef CB_TLSCTX_H
#define CB_TLSCTX_H

#include <openssl/ssl.h>
#include <stdbool.h>

/* Cached; NULL with *err (malloc'd) when the CA file cannot be loaded. */
SSL_CTX *tls_client_ctx(int sslmode, const char *ca_file, char **err);
/* A new SSL for host (sent as SNI, checked in verify-full) reached at addr:port (addr as
 * configured: a name or a redirect's node address),
 * verification set up per sslmode, offered a cached session for that host, address and
 * port when session reuse is on. NULL on failure. */
SSL *tls_client_ssl(SSL_CTX *ctx, int sslmode, const char *host, const char *addr, int port);
/* server_tls_session_reuse: whether new connections offer and keep sessions. */
void tls_set_session_reuse(bool on);
/* "TLSv1.3/TLS_AES_256_GCM_SHA384", with "/resumed" when the session was: into buf. */
void tls_describe(SSL *ssl, char *buf, size_t len);
/* Before SSL_free: close_notify, one try, when the handshake had finished. Besides telling
 * the peer, it keeps the session resumable (OpenSSL's SSL_free marks a session that was not
 * shut down as bad, and a TLS 1.2 session is the one the pool's connections share). Not
 * after a fatal TLS error (the handshake state says so), whose session is rightly dropped. */
void tls_close_notify(SSL *ssl);
/* host is an IPv4 or IPv6 address, not a name (no SNI; certificates checked by IP). */
bool is_ip_literal(const char *host);
/* Describes why a handshake failed, naming host: malloc'd. */
char *tls_failure(SSL *ssl, const char *host, unsigned long ossl_err);
void tls_free_all(void);

#endif
