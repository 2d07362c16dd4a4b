/* SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: the client side for
 * logging in to the upstream with injected credentials, the server side for
 * authenticating local clients against auth_file secrets. Pure functions over
 * strings plus OpenSSL primitives; no sockets. */
#ifndef CB_SCRAM_H
#define CB_SCRAM_H

#include <stddef.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_DEFAULT_ITERATIONS 4096

struct scram_secret {
	int iterations;
	unsigned char salt[64];
	size_t salt_len;
	unsigned char stored_key[SCRAM_KEY_LEN];
	unsigned char server_key[SCRAM_KEY_LEN];
};

/* "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>" -> 0, else -1. */
int scram_secret_parse(const char *text, struct scram_secret *out)
	__attribute__((warn_unused_result));
/* Derive a secret from a cleartext password (no SASLprep: ASCII passwords are unaffected). */
int scram_secret_from_password(const char *password, const unsigned char *salt, size_t salt_len,
			       int iterations, struct scram_secret *out)
	__attribute__((warn_unused_result));

/* Client side. Every produced message is NUL-terminated and malloc'd (caller frees).
 * On error the functions return -1 and set *err to a static message. */
struct scram_client;
/* nonce NULL: 18 random bytes, base64. A fixed nonce is for test vectors. */
struct scram_client *scram_client_new(const char *password, const char *nonce);
/* "n,,n=<user>,r=<nonce>"; PostgreSQL ignores the user, pass "". */
int scram_client_first(struct scram_client *sc, const char *user, char **out, size_t *outlen)
	__attribute__((warn_unused_result));
/* Consumes server-first ("r=..,s=..,i=.."), produces client-final with proof. */
int scram_client_final(struct scram_client *sc, const char *server_first, size_t len, char **out,
		       size_t *outlen, const char **err) __attribute__((warn_unused_result));
/* Checks server-final ("v=..."): 0 when the server proved it knows the secret. */
int scram_client_verify(struct scram_client *sc, const char *server_final, size_t len,
			const char **err) __attribute__((warn_unused_result));
void scram_client_free(struct scram_client *sc);

/* Server side. */
struct scram_server;
/* nonce NULL: random server nonce part. */
struct scram_server *scram_server_new(const struct scram_secret *secret, const char *nonce);
/* Consumes client-first (with GS2 header "n,," or "y,,"; "p=" is refused since we
 * never offer channel binding), produces server-first. */
int scram_server_first(struct scram_server *ss, const char *client_first, size_t len, char **out,
		       size_t *outlen, const char **err) __attribute__((warn_unused_result));
/* Consumes client-final; 0 and server-final ("v=...") when the proof is valid. */
int scram_server_final(struct scram_server *ss, const char *client_final, size_t len, char **out,
		       size_t *outlen, const char **err) __attribute__((warn_unused_result));
void scram_server_free(struct scram_server *ss);

#endif
