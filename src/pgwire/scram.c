/* SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: both sides of the
 * exchange and the "SCRAM-SHA-256$..." secrets, built on OpenSSL primitives.
 * Incoming messages are validated strictly; errors are static strings. */
#include "scram.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define SECRET_PREFIX "SCRAM-SHA-256$"
#define NONCE_RAW_LEN 18
#define CLIENT_MAX_ITERATIONS 10000000 /* bounds the PBKDF2 work an upstream can demand */
#define B64_MAX_RAW 256
#define MAX_SALT_LEN (sizeof(((struct scram_secret *)0)->salt))

#define SF_ERR "invalid SCRAM server-first message: "
#define SV_ERR "invalid SCRAM server-final message: "
#define CF_ERR "invalid SCRAM client-first message: "
#define CL_ERR "invalid SCRAM client-final message: "
#define ORDER_ERR "SCRAM exchange out of order"
#define OOM_ERR "out of memory"
#define CRYPTO_ERR "SCRAM cryptographic operation failed"

/* In the message functions: record a static error and jump to the cleanup. */
#define FAIL(msg)          \
	do {               \
		e = (msg); \
		goto out;  \
	} while (0)

enum scram_state { ST_INIT, ST_FIRST, ST_FINAL, ST_DONE, ST_FAILED };

struct scram_client {
	enum scram_state state;
	char *password;
	char *nonce;
	char *client_first_bare;
	unsigned char server_signature[SCRAM_KEY_LEN];
};

struct scram_server {
	enum scram_state state;
	struct scram_secret secret;
	char *server_nonce;
	char *nonce;     /* client nonce + server nonce */
	char *cbind_b64; /* the c= value the client must send: base64 of its GS2 header */
	char *client_first_bare;
	char *server_first;
};

static char *b64_encode(const unsigned char *in, size_t len);
static int b64_decode(const char *in, size_t len, unsigned char *out, size_t max, size_t *outlen);
static int hmac(const unsigned char key[SCRAM_KEY_LEN], const char *data,
		unsigned char out[SCRAM_KEY_LEN]);
static int derive(const char *password, const unsigned char *salt, size_t salt_len, int iterations,
		  unsigned char client_key[SCRAM_KEY_LEN], unsigned char stored_key[SCRAM_KEY_LEN],
		  unsigned char server_key[SCRAM_KEY_LEN]);
static int parse_int(const char *s, size_t len, int max, int *out);
static bool valid_nonce(const char *s, size_t len);
static char *random_nonce(void);
static char *dup_msg(const char *msg, size_t len);
static int read_attr(const char **p, char name, const char **val, size_t *vlen);
static bool next_attr(const char **p);
static char *escape_user(const char *user);
static char *fmt(const char *format, ...) __attribute__((format(printf, 1, 2)));
static int emit(char *msg, char **out, size_t *outlen);

/* Base64 helpers */

static char *b64_encode(const unsigned char *in, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

/* Strict decoding: canonical alphabet, length a multiple of 4, '=' only as final padding. */
static int b64_decode(const char *in, size_t len, unsigned char *out, size_t max, size_t *outlen)
{
	unsigned char tmp[B64_MAX_RAW + 3];
	size_t pad = 0, n;

	if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(tmp))
		return -1;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < len - pad; i++) {
		char c = in[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return -1;
	}
	/* EVP_DecodeBlock counts padding as zero bytes; the real length drops them. */
	if (EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len) != (int)(len / 4 * 3))
		return -1;
	n = len / 4 * 3 - pad;
	if (n > max) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return -1;
	}
	memcpy(out, tmp, n);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	*outlen = n;
	return 0;
}

/* Key derivation */

static int hmac(const unsigned char key[SCRAM_KEY_LEN], const char *data,
		unsigned char out[SCRAM_KEY_LEN])
{
	unsigned int n = 0;

	if (!HMAC(EVP_sha256(), key, SCRAM_KEY_LEN, (const unsigned char *)data, strlen(data), out,
		  &n))
		return -1;
	return n == SCRAM_KEY_LEN ? 0 : -1;
}

static int derive(const char *password, const unsigned char *salt, size_t salt_len, int iterations,
		  unsigned char client_key[SCRAM_KEY_LEN], unsigned char stored_key[SCRAM_KEY_LEN],
		  unsigned char server_key[SCRAM_KEY_LEN])
{
	unsigned char salted[SCRAM_KEY_LEN];
	size_t pwlen = strlen(password);
	int rc = -1;

	if (pwlen > INT_MAX || salt_len == 0 || salt_len > INT_MAX || iterations < 1)
		return -1;
	if (PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, (int)salt_len, iterations, EVP_sha256(),
			      SCRAM_KEY_LEN, salted) != 1)
		goto out;
	if (hmac(salted, "Client Key", client_key) < 0 ||
	    !SHA256(client_key, SCRAM_KEY_LEN, stored_key) ||
	    hmac(salted, "Server Key", server_key) < 0)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	return rc;
}

int scram_secret_from_password(const char *password, const unsigned char *salt, size_t salt_len,
			       int iterations, struct scram_secret *out)
{
	unsigned char client_key[SCRAM_KEY_LEN];
	int rc;

	if (!password || !salt || salt_len == 0 || salt_len > MAX_SALT_LEN || iterations < 1)
		return -1;
	memset(out, 0, sizeof(*out));
	rc = derive(password, salt, salt_len, iterations, client_key, out->stored_key,
		    out->server_key);
	OPENSSL_cleanse(client_key, sizeof(client_key));
	if (rc < 0) {
		OPENSSL_cleanse(out, sizeof(*out));
		return -1;
	}
	out->iterations = iterations;
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	return 0;
}

int scram_secret_parse(const char *text, struct scram_secret *out)
{
	struct scram_secret s = { 0 };
	const char *p, *colon, *dollar;
	size_t n;
	int rc = -1;

	if (!text || strncmp(text, SECRET_PREFIX, strlen(SECRET_PREFIX)) != 0)
		return -1;
	p = text + strlen(SECRET_PREFIX);
	if (!(colon = strchr(p, ':')) ||
	    parse_int(p, (size_t)(colon - p), INT_MAX, &s.iterations) < 0)
		goto out;
	p = colon + 1;
	if (!(dollar = strchr(p, '$')) ||
	    b64_decode(p, (size_t)(dollar - p), s.salt, sizeof(s.salt), &s.salt_len) < 0)
		goto out;
	p = dollar + 1;
	if (!(colon = strchr(p, ':')) ||
	    b64_decode(p, (size_t)(colon - p), s.stored_key, SCRAM_KEY_LEN, &n) < 0 ||
	    n != SCRAM_KEY_LEN)
		goto out;
	p = colon + 1;
	if (b64_decode(p, strlen(p), s.server_key, SCRAM_KEY_LEN, &n) < 0 || n != SCRAM_KEY_LEN)
		goto out;
	*out = s;
	rc = 0;
out:
	OPENSSL_cleanse(&s, sizeof(s));
	return rc;
}

/* Message parsing */

/* A decimal in 1..max, digits only. */
static int parse_int(const char *s, size_t len, int max, int *out)
{
	long long v = 0;

	if (len == 0 || len > 10)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

/* RFC 5802: printable ASCII except ','. */
static bool valid_nonce(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

static char *random_nonce(void)
{
	unsigned char raw[NONCE_RAW_LEN];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return NULL;
	return b64_encode(raw, sizeof(raw));
}

/* A NUL-terminated copy of a wire message; NULL if it holds a NUL byte (or on OOM). */
static char *dup_msg(const char *msg, size_t len)
{
	char *s;

	if (!msg || memchr(msg, '\0', len))
		return NULL;
	if ((s = malloc(len + 1))) {
		memcpy(s, msg, len);
		s[len] = '\0';
	}
	return s;
}

/* Reads "<name>=<value>" at *p (name 0: any letter); leaves *p at the next ',' or the end. */
static int read_attr(const char **p, char name, const char **val, size_t *vlen)
{
	const char *s = *p;

	if (!((name && s[0] == name) ||
	      (!name && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))) ||
	    s[1] != '=')
		return -1;
	s += 2;
	*val = s;
	*vlen = strcspn(s, ",");
	*p = s + *vlen;
	return 0;
}

static bool next_attr(const char **p)
{
	if (**p != ',')
		return false;
	(*p)++;
	return true;
}

/* saslname: '=' -> "=3D", ',' -> "=2C". */
static char *escape_user(const char *user)
{
	char *out = malloc(strlen(user) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (const char *s = user; *s; s++) {
		if (*s == '=' || *s == ',') {
			memcpy(o, *s == '=' ? "=3D" : "=2C", 3);
			o += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

/* asprintf that returns the string, NULL on failure. */
static char *fmt(const char *format, ...)
{
	va_list ap;
	char *s;
	int rc;

	va_start(ap, format);
	rc = vasprintf(&s, format, ap);
	va_end(ap);
	return rc < 0 ? NULL : s;
}

/* Hands a malloc'd message to the caller. */
static int emit(char *msg, char **out, size_t *outlen)
{
	*out = msg;
	if (outlen)
		*outlen = strlen(msg);
	return 0;
}

/* Client side */

struct scram_client *scram_client_new(const char *password, const char *nonce)
{
	struct scram_client *sc;

	if (!password || (nonce && !valid_nonce(nonce, strlen(nonce))))
		return NULL;
	if (!(sc = calloc(1, sizeof(*sc))))
		return NULL;
	sc->password = strdup(password);
	sc->nonce = nonce ? strdup(nonce) : random_nonce();
	if (!sc->password || !sc->nonce) {
		scram_client_free(sc);
		return NULL;
	}
	return sc;
}

int scram_client_first(struct scram_client *sc, const char *user, char **out, size_t *outlen)
{
	char *u, *msg;

	if (sc->state != ST_INIT)
		return -1;
	sc->state = ST_FAILED;
	if (!(u = escape_user(user ? user : "")))
		return -1;
	sc->client_first_bare = fmt("n=%s,r=%s", u, sc->nonce);
	free(u);
	if (!sc->client_first_bare || !(msg = fmt("n,,%s", sc->client_first_bare)))
		return -1;
	sc->state = ST_FIRST;
	return emit(msg, out, outlen);
}

int scram_client_final(struct scram_client *sc, const char *server_first, size_t len, char **out,
		       size_t *outlen, const char **err)
{
	unsigned char salt[B64_MAX_RAW], client_key[SCRAM_KEY_LEN], stored_key[SCRAM_KEY_LEN];
	unsigned char server_key[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	char *msg = NULL, *without_proof = NULL, *auth_msg = NULL, *proof_b64 = NULL, *final;
	const char *p, *val, *nonce, *e = NULL;
	size_t vlen, nonce_len, salt_len, cnonce_len = strlen(sc->nonce);
	int iterations, rc = -1;

	if (sc->state != ST_FIRST) {
		*err = ORDER_ERR;
		return -1;
	}
	sc->state = ST_FAILED;
	if (!(msg = dup_msg(server_first, len)))
		FAIL(SF_ERR "contains a NUL byte");
	p = msg;
	if (p[0] == 'm' && p[1] == '=')
		FAIL(SF_ERR "mandatory extension not supported");
	if (read_attr(&p, 'r', &nonce, &nonce_len) < 0)
		FAIL(SF_ERR "missing nonce");
	if (nonce_len <= cnonce_len || memcmp(nonce, sc->nonce, cnonce_len) != 0)
		FAIL(SF_ERR "nonce does not extend the client nonce");
	if (!valid_nonce(nonce, nonce_len))
		FAIL(SF_ERR "invalid nonce");
	if (!next_attr(&p) || read_attr(&p, 's', &val, &vlen) < 0)
		FAIL(SF_ERR "missing salt");
	if (b64_decode(val, vlen, salt, sizeof(salt), &salt_len) < 0 || salt_len == 0)
		FAIL(SF_ERR "invalid salt");
	if (!next_attr(&p) || read_attr(&p, 'i', &val, &vlen) < 0)
		FAIL(SF_ERR "missing iteration count");
	if (parse_int(val, vlen, CLIENT_MAX_ITERATIONS, &iterations) < 0)
		FAIL(SF_ERR "invalid iteration count");
	if (*p)
		FAIL(SF_ERR "unexpected data after the iteration count");

	if (derive(sc->password, salt, salt_len, iterations, client_key, stored_key, server_key) <
	    0)
		FAIL(CRYPTO_ERR);
	if (!(without_proof = fmt("c=biws,r=%.*s", (int)nonce_len, nonce)) ||
	    !(auth_msg = fmt("%s,%s,%s", sc->client_first_bare, msg, without_proof)))
		FAIL(OOM_ERR);
	if (hmac(stored_key, auth_msg, proof) < 0 ||
	    hmac(server_key, auth_msg, sc->server_signature) < 0)
		FAIL(CRYPTO_ERR);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] ^= client_key[i];
	if (!(proof_b64 = b64_encode(proof, sizeof(proof))) ||
	    !(final = fmt("%s,p=%s", without_proof, proof_b64)))
		FAIL(OOM_ERR);
	sc->state = ST_FINAL;
	rc = emit(final, out, outlen);
out:
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(stored_key, sizeof(stored_key));
	OPENSSL_cleanse(server_key, sizeof(server_key));
	OPENSSL_cleanse(proof, sizeof(proof));
	free(msg);
	free(without_proof);
	free(auth_msg);
	free(proof_b64);
	if (e)
		*err = e;
	return rc;
}

int scram_client_verify(struct scram_client *sc, const char *server_final, size_t len,
			const char **err)
{
	unsigned char sig[SCRAM_KEY_LEN];
	const char *p, *val;
	char *msg;
	size_t vlen, n;
	int rc = -1;

	if (sc->state != ST_FINAL) {
		*err = ORDER_ERR;
		return -1;
	}
	sc->state = ST_FAILED;
	if (!(msg = dup_msg(server_final, len))) {
		*err = SV_ERR "contains a NUL byte";
		return -1;
	}
	p = msg;
	if (p[0] == 'e' && p[1] == '=')
		*err = "SCRAM authentication failed: the server reported an error";
	else if (read_attr(&p, 'v', &val, &vlen) < 0 || *p)
		*err = SV_ERR "expected only a verifier";
	else if (b64_decode(val, vlen, sig, sizeof(sig), &n) < 0 || n != SCRAM_KEY_LEN)
		*err = SV_ERR "invalid verifier";
	else if (CRYPTO_memcmp(sig, sc->server_signature, SCRAM_KEY_LEN) != 0)
		*err = "server signature mismatch";
	else
		rc = 0;
	if (rc == 0)
		sc->state = ST_DONE;
	free(msg);
	return rc;
}

void scram_client_free(struct scram_client *sc)
{
	if (!sc)
		return;
	if (sc->password)
		OPENSSL_clear_free(sc->password, strlen(sc->password));
	free(sc->nonce);
	free(sc->client_first_bare);
	OPENSSL_cleanse(sc->server_signature, sizeof(sc->server_signature));
	free(sc);
}

/* Server side */

struct scram_server *scram_server_new(const struct scram_secret *secret, const char *nonce)
{
	struct scram_server *ss;

	if (!secret || secret->iterations < 1 || secret->salt_len == 0 ||
	    secret->salt_len > MAX_SALT_LEN || (nonce && !valid_nonce(nonce, strlen(nonce))))
		return NULL;
	if (!(ss = calloc(1, sizeof(*ss))))
		return NULL;
	ss->secret = *secret;
	if (!(ss->server_nonce = nonce ? strdup(nonce) : random_nonce())) {
		scram_server_free(ss);
		return NULL;
	}
	return ss;
}

int scram_server_first(struct scram_server *ss, const char *client_first, size_t len, char **out,
		       size_t *outlen, const char **err)
{
	char *msg = NULL, *salt_b64 = NULL, *reply = NULL;
	const char *p, *val, *cnonce, *e = NULL;
	size_t vlen, cnonce_len;
	int rc = -1;

	if (ss->state != ST_INIT) {
		*err = ORDER_ERR;
		return -1;
	}
	ss->state = ST_FAILED;
	if (!(msg = dup_msg(client_first, len)))
		FAIL(CF_ERR "contains a NUL byte");
	p = msg;
	if (p[0] == 'p' && p[1] == '=')
		FAIL("SCRAM channel binding requested by the client but not offered");
	if ((p[0] != 'n' && p[0] != 'y') || p[1] != ',')
		FAIL(CF_ERR "invalid GS2 header");
	p += 2;
	if (p[0] == 'a' && p[1] == '=')
		FAIL(CF_ERR "authorization identity not supported");
	if (*p++ != ',')
		FAIL(CF_ERR "invalid GS2 header");
	if (!(ss->cbind_b64 = b64_encode((const unsigned char *)msg, (size_t)(p - msg))))
		FAIL(OOM_ERR);
	if (!(ss->client_first_bare = strdup(p)))
		FAIL(OOM_ERR);
	if (p[0] == 'm' && p[1] == '=')
		FAIL(CF_ERR "mandatory extension not supported");
	/* PostgreSQL takes the user from the startup packet and ignores n=. */
	if (read_attr(&p, 'n', &val, &vlen) < 0)
		FAIL(CF_ERR "missing user name");
	if (!next_attr(&p) || read_attr(&p, 'r', &cnonce, &cnonce_len) < 0)
		FAIL(CF_ERR "missing nonce");
	if (!valid_nonce(cnonce, cnonce_len))
		FAIL(CF_ERR "invalid nonce");
	while (next_attr(&p))
		if (read_attr(&p, 0, &val, &vlen) < 0)
			FAIL(CF_ERR "malformed extension");
	if (!(salt_b64 = b64_encode(ss->secret.salt, ss->secret.salt_len)) ||
	    !(ss->nonce = fmt("%.*s%s", (int)cnonce_len, cnonce, ss->server_nonce)) ||
	    !(ss->server_first = fmt("r=%s,s=%s,i=%d", ss->nonce, salt_b64,
				     ss->secret.iterations)) ||
	    !(reply = strdup(ss->server_first)))
		FAIL(OOM_ERR);
	ss->state = ST_FIRST;
	rc = emit(reply, out, outlen);
out:
	free(msg);
	free(salt_b64);
	if (e)
		*err = e;
	return rc;
}

int scram_server_final(struct scram_server *ss, const char *client_final, size_t len, char **out,
		       size_t *outlen, const char **err)
{
	unsigned char proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], key_hash[SCRAM_KEY_LEN];
	char *msg = NULL, *auth_msg = NULL, *sig_b64 = NULL, *reply;
	const char *p, *val, *proof_val = NULL, *e = NULL;
	size_t vlen, proof_len = 0, without_proof_len = 0, n;
	int rc = -1;

	if (ss->state != ST_FIRST) {
		*err = ORDER_ERR;
		return -1;
	}
	ss->state = ST_FAILED;
	if (!(msg = dup_msg(client_final, len)))
		FAIL(CL_ERR "contains a NUL byte");
	p = msg;
	if (read_attr(&p, 'c', &val, &vlen) < 0)
		FAIL(CL_ERR "missing channel binding");
	if (vlen != strlen(ss->cbind_b64) || memcmp(val, ss->cbind_b64, vlen) != 0)
		FAIL(CL_ERR "unexpected channel binding data");
	if (!next_attr(&p) || read_attr(&p, 'r', &val, &vlen) < 0)
		FAIL(CL_ERR "missing nonce");
	if (vlen != strlen(ss->nonce) || memcmp(val, ss->nonce, vlen) != 0)
		FAIL(CL_ERR "nonce mismatch");
	while (!proof_val && next_attr(&p)) {
		without_proof_len = (size_t)(p - 1 - msg);
		if (p[0] == 'p' && read_attr(&p, 'p', &proof_val, &proof_len) == 0)
			break;
		if (read_attr(&p, 0, &val, &vlen) < 0)
			FAIL(CL_ERR "malformed extension");
	}
	if (!proof_val)
		FAIL(CL_ERR "missing proof");
	if (*p)
		FAIL(CL_ERR "unexpected data after the proof");
	if (b64_decode(proof_val, proof_len, proof, sizeof(proof), &n) < 0 || n != SCRAM_KEY_LEN)
		FAIL(CL_ERR "invalid proof");
	if (!(auth_msg = fmt("%s,%s,%.*s", ss->client_first_bare, ss->server_first,
			     (int)without_proof_len, msg)))
		FAIL(OOM_ERR);
	/* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); it must hash to StoredKey. */
	if (hmac(ss->secret.stored_key, auth_msg, sig) < 0)
		FAIL(CRYPTO_ERR);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] ^= sig[i];
	if (!SHA256(proof, SCRAM_KEY_LEN, key_hash))
		FAIL(CRYPTO_ERR);
	if (CRYPTO_memcmp(key_hash, ss->secret.stored_key, SCRAM_KEY_LEN) != 0)
		FAIL("client proof does not match");
	if (hmac(ss->secret.server_key, auth_msg, sig) < 0)
		FAIL(CRYPTO_ERR);
	if (!(sig_b64 = b64_encode(sig, sizeof(sig))) || !(reply = fmt("v=%s", sig_b64)))
		FAIL(OOM_ERR);
	ss->state = ST_DONE;
	rc = emit(reply, out, outlen);
out:
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(key_hash, sizeof(key_hash));
	free(msg);
	free(auth_msg);
	free(sig_b64);
	if (e)
		*err = e;
	return rc;
}

void scram_server_free(struct scram_server *ss)
{
	if (!ss)
		return;
	OPENSSL_cleanse(&ss->secret, sizeof(ss->secret));
	free(ss->server_nonce);
	free(ss->nonce);
	free(ss->cbind_b64);
	free(ss->client_first_bare);
	free(ss->server_first);
	free(ss);
}
