/* Password checks against auth_file secrets (plain, "md5..." and SCRAM) and the MD5
 * computations of PostgreSQL's md5 method. Every secret compare is constant-time;
 * empty passwords and secrets never authenticate. */
#include "auth.h"

#include <stddef.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "scram.h"

#define MD5_HEX_LEN 32

static bool md5_hex(const void *a, size_t alen, const void *b, size_t blen,
		    char out[PG_MD5_LEN + 1]);
static bool secret_eq(const char *a, const char *b);

/* out = "md5" + hex(MD5(a || b)); "" on failure (e.g. MD5 unavailable under FIPS). */
static bool md5_hex(const void *a, size_t alen, const void *b, size_t blen,
		    char out[PG_MD5_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
		  EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
		  EVP_DigestFinal_ex(ctx, digest, &n) == 1 && n == MD5_HEX_LEN / 2;

	EVP_MD_CTX_free(ctx);
	out[0] = '\0';
	if (!ok)
		return false;
	memcpy(out, "md5", 3);
	for (unsigned int i = 0; i < n; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[4 + 2 * i] = hex[digest[i] & 0xf];
	}
	out[PG_MD5_LEN] = '\0';
	OPENSSL_cleanse(digest, sizeof(digest));
	return true;
}

/* Constant-time string equality that does not leak the length either: compares digests. */
static bool secret_eq(const char *a, const char *b)
{
	unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
	bool eq = SHA256((const unsigned char *)a, strlen(a), da) &&
		  SHA256((const unsigned char *)b, strlen(b), db) &&
		  CRYPTO_memcmp(da, db, sizeof(da)) == 0;

	OPENSSL_cleanse(da, sizeof(da));
	OPENSSL_cleanse(db, sizeof(db));
	return eq;
}

enum secret_kind secret_kind(const char *stored)
{
	if (strlen(stored) == PG_MD5_LEN && strncmp(stored, "md5", 3) == 0 &&
	    strspn(stored + 3, "0123456789abcdef") == MD5_HEX_LEN)
		return SECRET_MD5;
	if (strncmp(stored, "SCRAM-SHA-256$", strlen("SCRAM-SHA-256$")) == 0)
		return SECRET_SCRAM;
	return SECRET_PLAIN;
}

void pg_md5_encrypt(const char *password, const char *user, char out[PG_MD5_LEN + 1])
{
	md5_hex(password, strlen(password), user, strlen(user), out);
}

void pg_md5_salted(const char *stored_md5, const uint8_t salt[4], char out[PG_MD5_LEN + 1])
{
	out[0] = '\0';
	if (secret_kind(stored_md5) == SECRET_MD5)
		md5_hex(stored_md5 + 3, MD5_HEX_LEN, salt, 4, out);
}

bool auth_check_plain(const char *stored, const char *user, const char *given)
{
	struct scram_secret secret, derived;
	char md5[PG_MD5_LEN + 1];
	bool ok = false;

	if (!stored || !user || !given || !*stored || !*given)
		return false;
	switch (secret_kind(stored)) {
	case SECRET_PLAIN:
		return secret_eq(stored, given);
	case SECRET_MD5:
		pg_md5_encrypt(given, user, md5);
		ok = md5[0] && secret_eq(stored, md5);
		OPENSSL_cleanse(md5, sizeof(md5));
		return ok;
	case SECRET_SCRAM:
		if (scram_secret_parse(stored, &secret) == 0 &&
		    scram_secret_from_password(given, secret.salt, secret.salt_len,
					       secret.iterations, &derived) == 0) {
			ok = CRYPTO_memcmp(secret.stored_key, derived.stored_key, SCRAM_KEY_LEN) ==
			     0;
			OPENSSL_cleanse(&derived, sizeof(derived));
		}
		OPENSSL_cleanse(&secret, sizeof(secret));
		return ok;
	}
	return false;
}

bool auth_check_md5(const char *stored, const char *user, const uint8_t salt[4],
		    const char *response)
{
	char md5[PG_MD5_LEN + 1], expected[PG_MD5_LEN + 1];
	bool ok;

	if (!stored || !user || !response || !*stored)
		return false;
	switch (secret_kind(stored)) {
	case SECRET_PLAIN:
		pg_md5_encrypt(stored, user, md5);
		pg_md5_salted(md5, salt, expected);
		break;
	case SECRET_MD5:
		pg_md5_salted(stored, salt, expected);
		break;
	default:
		return false;
	}
	ok = expected[0] && secret_eq(expected, response);
	OPENSSL_cleanse(md5, sizeof(md5));
	OPENSSL_cleanse(expected, sizeof(expected));
	return ok;
}
