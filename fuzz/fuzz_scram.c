/* SCRAM-SHA-256 (scram.c), both sides fed what the other side would send.
 * Input: byte 0 (bit 0: server side), then three fields, each a 2-byte length and bytes.
 * Client side: A is the server-first, B the server-final, C the user name. Checked: the
 *   client-first carries the user escaped (n= unescapes to it) and the nonce; an accepted
 *   server-first gives a client-final "c=biws,r=<its nonce>,p=<44 base64>"; when the
 *   server-first is the one scram_server would write for that salt, count and nonce, the
 *   server side accepts the client's proof and the client accepts the server's
 *   signature (a full exchange), else B goes to scram_client_verify.
 * Server side: A is tried as a "SCRAM-SHA-256$..." secret (parsed, rebuilt, parsed again:
 *   the same), else a fixed one is used; B is the client-first, C the client-final.
 *   Checked: server-first is "r=<client nonce><server nonce>,s=<salt>,i=<count>"; when B
 *   is what scram_client_first writes, a full exchange with the real client succeeds,
 *   else C goes to scram_server_final, and what it accepts is answered "v=<44 base64>".
 * Server-firsts asking for more than 256 iterations are skipped (PBKDF2 would make each
 * run slow; the bound itself, 10000000, is in scram.c and checked by the unit tests). */
#include "fuzz_common.h"

#include <openssl/evp.h>

#include "pgwire/scram.h"

#define PASSWORD "pencil"
#define CNONCE "rOprNGfwEbeRWgbNEkqO"
#define SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define MAX_FUZZ_ITER 256

static char *dup0(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	CHECK(s != NULL);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Base64 of 32 bytes: 44 characters, one '=' of padding. */
static bool is_b64_key(const char *s)
{
	unsigned char raw[48];

	return strlen(s) == 44 && s[43] == '=' &&
	       EVP_DecodeBlock(raw, (const unsigned char *)s, 44) == 33;
}

static bool b64_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '/' || s[i] == '='))
			return false;
	return true;
}

/* Any "i=<digits>" asking for a costly PBKDF2 that scram.c would still accept. */
static bool costly(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 2 < n; i++) {
		if (p[i] != 'i' || p[i + 1] != '=')
			continue;
		unsigned long long v = 0;
		for (size_t k = i + 2; k < n && k < i + 14 && p[k] >= '0' && p[k] <= '9'; k++)
			v = v * 10 + (p[k] - '0');
		if (v > MAX_FUZZ_ITER && v <= 10000000)
			return true;
	}
	return false;
}

/* The saslname in "n=<name>," unescaped: =3D is '=', =2C is ','. */
static char *unescape_user(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	CHECK(out != NULL);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=') {
			CHECK(i + 2 < n);
			CHECK(starts(s + i, "=3D") || starts(s + i, "=2C"));
			*o++ = s[i + 1] == '3' ? '=' : ',';
			i += 2;
		} else {
			CHECK(s[i] != ',');
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

static void client_side(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
			const uint8_t *u, size_t ulen)
{
	struct scram_client *sc = scram_client_new(PASSWORD, CNONCE);
	char *user = dup0(u, ulen), *first = NULL, *final = NULL;
	size_t flen = 0, fnlen = 0;
	const char *err = NULL;

	CHECK(sc != NULL);
	CHECK(scram_client_first(sc, user, &first, &flen) == 0);
	CHECK(flen == strlen(first) && starts(first, "n,,n="));
	const char *r = strstr(first + 5, ",r=");
	CHECK(r && strcmp(r, ",r=" CNONCE) == 0 && !strstr(r + 1, ",r="));
	char *back = unescape_user(first + 5, (size_t)(r - first - 5));
	CHECK(strcmp(back, user) == 0);
	free(back);
	/* a second first is refused */
	char *again = NULL;
	CHECK(scram_client_first(sc, user, &again, NULL) < 0 && !again);

	int rc = scram_client_final(sc, (const char *)a, alen, &final, &fnlen, &err);
	if (rc < 0) {
		CHECK(err && *err && !final);
		err = NULL;
		CHECK(scram_client_verify(sc, (const char *)b, blen, &err) < 0 && err);
		goto out;
	}
	/* accepted: "r=<nonce>,s=<salt>,i=<n>" and nothing else */
	char *sf = dup0(a, alen);
	CHECK(starts(sf, "r=" CNONCE));
	const char *comma = strchr(sf, ',');
	CHECK(comma && starts(comma, ",s="));
	size_t nlen = (size_t)(comma - sf - 2);
	CHECK(fnlen == strlen(final));
	CHECK(starts(final, "c=biws,r=") && strncmp(final + 9, sf + 2, nlen) == 0);
	CHECK(starts(final + 9 + nlen, ",p=") && is_b64_key(final + 9 + nlen + 3));

	/* the server side that would have written this server-first */
	const char *salt = comma + 3, *iend = strstr(salt, ",i=");
	CHECK(iend && b64_valid(salt, (size_t)(iend - salt)));
	unsigned char raw[256 + 3];
	int rawlen = EVP_DecodeBlock(raw, (const unsigned char *)salt, (int)(iend - salt));
	CHECK(rawlen > 0);
	size_t pad = iend[-1] == '=' ? (iend[-2] == '=' ? 2 : 1) : 0;
	int iters = atoi(iend + 3);
	struct scram_secret secret;
	const char *suffix = sf + 2 + strlen(CNONCE);
	bool canonical = false;
	char *sfirst = NULL, *sfinal = NULL;
	struct scram_server *ss = NULL;
	{
		char *sn = strndup(suffix, nlen - strlen(CNONCE));
		CHECK(sn != NULL);
		if ((size_t)rawlen - pad <= sizeof(secret.salt) &&
		    scram_secret_from_password(PASSWORD, raw, (size_t)rawlen - pad, iters, &secret) == 0 &&
		    (ss = scram_server_new(&secret, sn)) &&
		    scram_server_first(ss, first, flen, &sfirst, NULL, &err) == 0)
			canonical = strcmp(sfirst, sf) == 0;
		free(sn);
	}
	if (canonical) {
		CHECK(scram_server_final(ss, final, fnlen, &sfinal, NULL, &err) == 0);
		CHECK(starts(sfinal, "v=") && is_b64_key(sfinal + 2));
		CHECK(scram_client_verify(sc, sfinal, strlen(sfinal), &err) == 0);
	} else if (scram_client_verify(sc, (const char *)b, blen, &err) == 0) {
		/* only the server's real signature passes: it came from the input */
		CHECK(blen == 46 && starts((const char *)b, "v="));
	}
	free(sfirst);
	free(sfinal);
	scram_server_free(ss);
	free(sf);
out:
	free(first);
	free(final);
	free(user);
	scram_client_free(sc);
}

static const struct scram_secret *fixed_secret(void)
{
	static struct scram_secret s;
	static bool done;

	if (!done) {
		CHECK(scram_secret_from_password(PASSWORD, (const unsigned char *)"fuzzsalt", 8, 16,
						 &s) == 0);
		done = true;
	}
	return &s;
}

/* A parsed secret written back in the same format parses to the same. */
static void check_secret_roundtrip(const struct scram_secret *s)
{
	unsigned char b1[4 * 22 + 1], b2[4 * 11 + 1], b3[4 * 11 + 1];
	char text[256];

	CHECK(s->iterations >= 1 && s->salt_len >= 1 && s->salt_len <= sizeof(s->salt));
	EVP_EncodeBlock(b1, s->salt, (int)s->salt_len);
	EVP_EncodeBlock(b2, s->stored_key, SCRAM_KEY_LEN);
	EVP_EncodeBlock(b3, s->server_key, SCRAM_KEY_LEN);
	snprintf(text, sizeof(text), "SCRAM-SHA-256$%d:%s$%s:%s", s->iterations, b1, b2, b3);
	struct scram_secret t;
	CHECK(scram_secret_parse(text, &t) == 0);
	CHECK(memcmp(&t, s, sizeof(t)) == 0);
}

static void server_side(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
			const uint8_t *c, size_t clen)
{
	char *text = dup0(a, alen), *sfirst = NULL, *sfinal = NULL;
	struct scram_secret parsed;
	const struct scram_secret *secret = fixed_secret();
	const char *err = NULL;
	size_t slen = 0, fnlen = 0;

	memset(&parsed, 0, sizeof(parsed));
	if (scram_secret_parse(text, &parsed) == 0) {
		check_secret_roundtrip(&parsed);
		secret = &parsed;
	}
	free(text);
	struct scram_server *ss = scram_server_new(secret, SNONCE);
	CHECK(ss != NULL);
	if (scram_server_first(ss, (const char *)b, blen, &sfirst, &slen, &err) < 0) {
		CHECK(err && *err && !sfirst);
		CHECK(scram_server_final(ss, (const char *)c, clen, &sfinal, NULL, &err) < 0);
		scram_server_free(ss);
		return;
	}
	CHECK(slen == strlen(sfirst) && starts(sfirst, "r="));
	const char *sn = strstr(sfirst, SNONCE ",s=");
	CHECK(sn && sn > sfirst + 2);
	/* the client's nonce, as it came after "r=" in the client-first */
	char *cn = strndup(sfirst + 2, (size_t)(sn - sfirst - 2));
	CHECK(cn != NULL);
	char *bs = dup0(b, blen), *at = strstr(bs, ",r=");
	CHECK(at && starts(at + 3, cn));
	unsigned char salt64[4 * 22 + 1];
	char tail[128];
	EVP_EncodeBlock(salt64, secret->salt, (int)secret->salt_len);
	snprintf(tail, sizeof(tail), ",s=%s,i=%d", salt64, secret->iterations);
	CHECK(strcmp(sn + strlen(SNONCE), tail) == 0);

	char canonical[600];
	snprintf(canonical, sizeof(canonical), "n,,n=,r=%s", cn);
	if (secret == fixed_secret() && strcmp(bs, canonical) == 0) {
		/* the real client, with the same nonce: a whole exchange */
		struct scram_client *sc = scram_client_new(PASSWORD, cn);
		char *first = NULL, *final = NULL;
		CHECK(sc && scram_client_first(sc, "", &first, NULL) == 0);
		CHECK(strcmp(first, bs) == 0);
		CHECK(scram_client_final(sc, sfirst, slen, &final, NULL, &err) == 0);
		CHECK(scram_server_final(ss, final, strlen(final), &sfinal, &fnlen, &err) == 0);
		CHECK(scram_client_verify(sc, sfinal, fnlen, &err) == 0);
		free(first);
		free(final);
		scram_client_free(sc);
	} else if (scram_server_final(ss, (const char *)c, clen, &sfinal, &fnlen, &err) == 0) {
		CHECK(fnlen == strlen(sfinal) && starts(sfinal, "v=") && is_b64_key(sfinal + 2));
	} else {
		CHECK(err && *err && !sfinal);
	}
	free(bs);
	free(cn);
	free(sfirst);
	free(sfinal);
	scram_server_free(ss);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	size_t alen, blen, clen;

	fuzz_init();
	uint8_t mode = fuzz_byte(&in);
	const uint8_t *a = fuzz_field(&in, &alen);
	const uint8_t *b = fuzz_field(&in, &blen);
	const uint8_t *c = fuzz_field(&in, &clen);

	/* the messages as the wire gives them: exactly their bytes (ASan sees any overread) */
	uint8_t *ca = malloc(alen ? alen : 1), *cb = malloc(blen ? blen : 1), *cc = malloc(clen ? clen : 1);
	CHECK(ca && cb && cc);
	memcpy(ca, a, alen);
	memcpy(cb, b, blen);
	memcpy(cc, c, clen);
	if (mode & 1)
		server_side(ca, alen, cb, blen, cc, clen);
	else if (!costly(a, alen))
		client_side(ca, alen, cb, blen, cc, strnlen((const char *)c, clen));
	free(ca);
	free(cb);
	free(cc);
	return 0;
}
