/* Unit tests for scram.c: the RFC 7677 vector on both sides, malformed messages,
 * client/server end to end, and secrets as PostgreSQL stores them. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "pgwire/scram.h"

#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL \
	"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* The RFC user's secret in PostgreSQL's format (computed independently with Python). */
#define RFC_SECRET                                                                     \
	"SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
/* From pg_authid after CREATE ROLE ... PASSWORD 'secret' on PostgreSQL. */
#define PG_SECRET                                       \
	"SCRAM-SHA-256$4096:zcPMawImbtFgU6VnSpUOGg=="   \
	"$PiT7ICkJOhGzQ1Q9tz6mIg1T+PZZiyyFcyx1L4R85qM=" \
	":g8hGOhHOH9SamWVPPHAWPsXS+KQoPjfWTPA+rnL4Cvs="

static const unsigned char rfc_salt[] = {
	0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
	0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81,
};

static struct scram_secret rfc_secret(void);
static struct scram_client *client_after_first(const char *nonce, const char *password);
static int exchange(const struct scram_secret *secret, const char *password, const char **err);

static struct scram_secret rfc_secret(void)
{
	struct scram_secret s;

	ck_assert_int_eq(scram_secret_from_password("pencil", rfc_salt, sizeof(rfc_salt), 4096, &s),
			 0);
	return s;
}

static struct scram_client *client_after_first(const char *nonce, const char *password)
{
	struct scram_client *sc = scram_client_new(password, nonce);
	char *out;
	size_t len;

	ck_assert_ptr_nonnull(sc);
	ck_assert_int_eq(scram_client_first(sc, "", &out, &len), 0);
	free(out);
	return sc;
}

/* Runs a full exchange between our client and server; 0 when both sides accept. */
static int exchange(const struct scram_secret *secret, const char *password, const char **err)
{
	struct scram_client *sc = scram_client_new(password, NULL);
	struct scram_server *ss = scram_server_new(secret, NULL);
	char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
	size_t l1, l2, l3, l4;
	int rc = -1;

	ck_assert_ptr_nonnull(sc);
	ck_assert_ptr_nonnull(ss);
	if (scram_client_first(sc, "ignored", &m1, &l1) == 0 &&
	    scram_server_first(ss, m1, l1, &m2, &l2, err) == 0 &&
	    scram_client_final(sc, m2, l2, &m3, &l3, err) == 0 &&
	    scram_server_final(ss, m3, l3, &m4, &l4, err) == 0 &&
	    scram_client_verify(sc, m4, l4, err) == 0)
		rc = 0;
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	scram_client_free(sc);
	scram_server_free(ss);
	return rc;
}

START_TEST(test_rfc7677_client)
{
	struct scram_client *sc = scram_client_new("pencil", RFC_CNONCE);
	const char *err = NULL;
	char *out;
	size_t len;

	ck_assert_ptr_nonnull(sc);
	ck_assert_int_eq(scram_client_first(sc, "user", &out, &len), 0);
	ck_assert_str_eq(out, RFC_CLIENT_FIRST);
	ck_assert_uint_eq(len, strlen(RFC_CLIENT_FIRST));
	free(out);
	ck_assert_int_eq(scram_client_final(sc, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out,
					    &len, &err),
			 0);
	ck_assert_str_eq(out, RFC_CLIENT_FINAL);
	ck_assert_uint_eq(len, strlen(RFC_CLIENT_FINAL));
	free(out);
	ck_assert_int_eq(scram_client_verify(sc, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err),
			 0);
	scram_client_free(sc);
}
END_TEST

START_TEST(test_client_first_format)
{
	struct scram_client *sc = scram_client_new("pw", NULL);
	char *out, *out2;
	size_t len;

	ck_assert_ptr_nonnull(sc);
	ck_assert_int_eq(scram_client_first(sc, "", &out, &len), 0);
	ck_assert_uint_eq(len, strlen("n,,n=,r=") + 24);
	ck_assert_int_eq(strncmp(out, "n,,n=,r=", 8), 0);
	ck_assert_uint_eq(strcspn(out + 8, ", \t\r\n"), 24);
	ck_assert_int_ne(scram_client_first(sc, "", &out2, &len), 0); /* only once */
	free(out);
	scram_client_free(sc);

	/* Two clients do not share a nonce. */
	sc = scram_client_new("pw", NULL);
	ck_assert_int_eq(scram_client_first(sc, "", &out2, &len), 0);
	scram_client_free(sc);
	sc = scram_client_new("pw", NULL);
	ck_assert_int_eq(scram_client_first(sc, "", &out, &len), 0);
	ck_assert_str_ne(out, out2);
	free(out);
	free(out2);
	scram_client_free(sc);

	sc = scram_client_new("pw", "abc");
	ck_assert_int_eq(scram_client_first(sc, "a=b,c", &out, &len), 0);
	ck_assert_str_eq(out, "n,,n=a=3Db=2Cc,r=abc");
	free(out);
	scram_client_free(sc);

	ck_assert_ptr_null(scram_client_new("pw", "bad,nonce"));
	ck_assert_ptr_null(scram_client_new("pw", ""));
	ck_assert_ptr_null(scram_client_new(NULL, NULL));
}
END_TEST

START_TEST(test_client_bad_server_final)
{
	static const char *const bad[] = {
		"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* wrong signature */
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",  /* bad base64 */
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5n",             /* too short */
		RFC_SERVER_FINAL ",x=1",                          /* trailing data */
		"e=invalid-proof",
		"",
	};
	static const char *const errs[] = {
		"server signature mismatch",
		"invalid SCRAM server-final message: invalid verifier",
		"invalid SCRAM server-final message: invalid verifier",
		"invalid SCRAM server-final message: expected only a verifier",
		"SCRAM authentication failed: the server reported an error",
		"invalid SCRAM server-final message: expected only a verifier",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct scram_client *sc = client_after_first(RFC_CNONCE, "pencil");
		const char *err = NULL;
		char *out;
		size_t len;

		ck_assert_int_eq(scram_client_final(sc, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST),
						    &out, &len, &err),
				 0);
		free(out);
		ck_assert_int_eq(scram_client_verify(sc, bad[i], strlen(bad[i]), &err), -1);
		ck_assert_str_eq(err, errs[i]);
		/* A failed exchange stays failed. */
		ck_assert_int_eq(
			scram_client_verify(sc, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err),
			-1);
		scram_client_free(sc);
	}
}
END_TEST

START_TEST(test_client_wrong_password)
{
	struct scram_client *sc = client_after_first(RFC_CNONCE, "pencil2");
	const char *err = NULL;
	char *out;
	size_t len;

	ck_assert_int_eq(scram_client_final(sc, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out,
					    &len, &err),
			 0);
	ck_assert_str_ne(out, RFC_CLIENT_FINAL);
	free(out);
	ck_assert_int_eq(scram_client_verify(sc, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err),
			 -1);
	ck_assert_str_eq(err, "server signature mismatch");
	scram_client_free(sc);
}
END_TEST

START_TEST(test_client_malformed_server_first)
{
	static const struct {
		const char *msg;
		const char *err;
	} cases[] = {
		{ "r=" RFC_CNONCE "xyz,i=4096", "missing salt" },
		{ "r=" RFC_CNONCE "xyz", "missing salt" },
		{ "r=someoneelse,s=" RFC_SALT ",i=4096", "nonce does not extend the client nonce" },
		{ "r=" RFC_CNONCE ",s=" RFC_SALT ",i=4096",
		  "nonce does not extend the client nonce" },
		{ "r=rOprNGfwEbeRWgbN,s=" RFC_SALT ",i=4096",
		  "nonce does not extend the client nonce" },
		{ "r=" RFC_CNONCE "a b,s=" RFC_SALT ",i=4096", "invalid nonce" },
		{ "s=" RFC_SALT ",r=" RFC_CNONCE "x,i=4096", "missing nonce" },
		{ "", "missing nonce" },
		{ "m=ext,r=" RFC_CNONCE "x,s=" RFC_SALT ",i=4096",
		  "mandatory extension not supported" },
		{ "r=" RFC_CNONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", "invalid salt" },
		{ "r=" RFC_CNONCE "x,s=W22ZaJ0SNY7so*sUEjb6gQ==,i=4096", "invalid salt" },
		{ "r=" RFC_CNONCE "x,s=W22Z=J0S,i=4096", "invalid salt" },
		{ "r=" RFC_CNONCE "x,s=,i=4096", "invalid salt" },
		{ "r=" RFC_CNONCE "x,s=" RFC_SALT ",i=0", "invalid iteration count" },
		{ "r=" RFC_CNONCE "x,s=" RFC_SALT ",i=-1", "invalid iteration count" },
		{ "r=" RFC_CNONCE "x,s=" RFC_SALT ",i=", "invalid iteration count" },
		{ "r=" RFC_CNONCE "x,s=" RFC_SALT ",i=4k", "invalid iteration count" },
		{ "r=" RFC_CNONCE "x,s=" RFC_SALT ",i=10000001", "invalid iteration count" },
		{ "r=" RFC_CNONCE "x,s=" RFC_SALT ",i=99999999999", "invalid iteration count" },
		{ "r=" RFC_CNONCE "x,s=" RFC_SALT, "missing iteration count" },
		{ "r=" RFC_CNONCE "x,s=" RFC_SALT ",i=4096,",
		  "unexpected data after the iteration count" },
		{ "r=" RFC_CNONCE "x,s=" RFC_SALT ",i=4096,x=y",
		  "unexpected data after the iteration count" },
	};
	const char prefix[] = "invalid SCRAM server-first message: ";

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_client *sc = client_after_first(RFC_CNONCE, "pencil");
		const char *err = NULL;
		char *out = NULL;
		size_t len;

		ck_assert_msg(scram_client_final(sc, cases[i].msg, strlen(cases[i].msg), &out, &len,
						 &err) == -1,
			      "accepted: %s", cases[i].msg);
		ck_assert_ptr_null(out);
		ck_assert_ptr_nonnull(err);
		ck_assert_int_eq(strncmp(err, prefix, strlen(prefix)), 0);
		ck_assert_str_eq(err + strlen(prefix), cases[i].err);
		scram_client_free(sc);
	}

	/* An embedded NUL byte, and the message out of order. */
	struct scram_client *sc = client_after_first(RFC_CNONCE, "pencil");
	const char *err = NULL;
	char *out;
	size_t len;

	ck_assert_int_eq(scram_client_final(sc, RFC_SERVER_FIRST, sizeof(RFC_SERVER_FIRST), &out,
					    &len, &err),
			 -1);
	scram_client_free(sc);
	sc = scram_client_new("pencil", RFC_CNONCE);
	ck_assert_int_eq(scram_client_final(sc, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out,
					    &len, &err),
			 -1);
	ck_assert_str_eq(err, "SCRAM exchange out of order");
	scram_client_free(sc);
}
END_TEST

START_TEST(test_end_to_end)
{
	static const unsigned char salt[16] = "0123456789abcdef";
	struct scram_secret secret;
	const char *err = NULL;

	ck_assert_int_eq(scram_secret_from_password("s3cret, with=odd chars", salt, sizeof(salt),
						    SCRAM_DEFAULT_ITERATIONS, &secret),
			 0);
	ck_assert_int_eq(exchange(&secret, "s3cret, with=odd chars", &err), 0);
	ck_assert_int_eq(exchange(&secret, "s3cret", &err), -1);
	ck_assert_str_eq(err, "client proof does not match");
	ck_assert_int_eq(exchange(&secret, "", &err), -1);
	ck_assert_str_eq(err, "client proof does not match");

	/* Against a secret PostgreSQL generated. */
	ck_assert_int_eq(scram_secret_parse(PG_SECRET, &secret), 0);
	ck_assert_int_eq(exchange(&secret, "secret", &err), 0);
	ck_assert_int_eq(exchange(&secret, "Secret", &err), -1);
}
END_TEST

START_TEST(test_rfc7677_server)
{
	struct scram_secret secret = rfc_secret();
	struct scram_server *ss = scram_server_new(&secret, RFC_SNONCE);
	const char *err = NULL;
	char *out;
	size_t len;

	ck_assert_ptr_nonnull(ss);
	ck_assert_int_eq(scram_server_first(ss, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &out,
					    &len, &err),
			 0);
	ck_assert_str_eq(out, RFC_SERVER_FIRST);
	ck_assert_uint_eq(len, strlen(RFC_SERVER_FIRST));
	free(out);
	ck_assert_int_eq(scram_server_final(ss, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out,
					    &len, &err),
			 0);
	ck_assert_str_eq(out, RFC_SERVER_FINAL);
	ck_assert_uint_eq(len, strlen(RFC_SERVER_FINAL));
	free(out);
	/* Nothing more is accepted. */
	ck_assert_int_eq(scram_server_final(ss, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out,
					    &len, &err),
			 -1);
	ck_assert_str_eq(err, "SCRAM exchange out of order");
	scram_server_free(ss);
}
END_TEST

START_TEST(test_server_malformed_client_final)
{
	static const struct {
		const char *msg;
		const char *err;
	} cases[] = {
		{ "c=eSws,r=" RFC_CNONCE RFC_SNONCE
		  ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		  "invalid SCRAM client-final message: unexpected channel binding data" },
		{ "r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		  "invalid SCRAM client-final message: missing channel binding" },
		{ "c=biws,r=" RFC_CNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		  "invalid SCRAM client-final message: nonce mismatch" },
		{ "c=biws,r=" RFC_CNONCE RFC_SNONCE,
		  "invalid SCRAM client-final message: missing proof" },
		{ "c=biws,r=" RFC_CNONCE RFC_SNONCE
		  ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
		  "invalid SCRAM client-final message: invalid proof" },
		{ "c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7An",
		  "invalid SCRAM client-final message: invalid proof" },
		{ RFC_CLIENT_FINAL ",x=1",
		  "invalid SCRAM client-final message: unexpected data after the proof" },
		{ "c=biws,r=" RFC_CNONCE RFC_SNONCE
		  ",,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		  "invalid SCRAM client-final message: malformed extension" },
		{ "c=biws,r=" RFC_CNONCE RFC_SNONCE
		  ",p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		  "client proof does not match" },
		/* An extension changes the signed message, so the proof no longer matches. */
		{ "c=biws,r=" RFC_CNONCE RFC_SNONCE
		  ",x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		  "client proof does not match" },
	};
	struct scram_secret secret = rfc_secret();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server *ss = scram_server_new(&secret, RFC_SNONCE);
		const char *err = NULL;
		char *out = NULL;
		size_t len;

		ck_assert_int_eq(scram_server_first(ss, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
						    &out, &len, &err),
				 0);
		free(out);
		out = NULL;
		ck_assert_msg(scram_server_final(ss, cases[i].msg, strlen(cases[i].msg), &out, &len,
						 &err) == -1,
			      "accepted: %s", cases[i].msg);
		ck_assert_ptr_null(out);
		ck_assert_str_eq(err, cases[i].err);
		scram_server_free(ss);
	}
}
END_TEST

START_TEST(test_server_client_first)
{
	static const struct {
		const char *msg;
		const char *err; /* NULL: accepted */
	} cases[] = {
		{ "n,,n=,r=abc", NULL },
		{ "y,,n=user,r=abc", NULL },
		{ "n,,n=x,r=abc,x=ext", NULL },
		{ "p=tls-server-end-point,,n=,r=abc",
		  "SCRAM channel binding requested by the client but not offered" },
		{ "n,a=admin,n=,r=abc",
		  "invalid SCRAM client-first message: authorization identity not supported" },
		{ "x,,n=,r=abc", "invalid SCRAM client-first message: invalid GS2 header" },
		{ "n,n=,r=abc", "invalid SCRAM client-first message: invalid GS2 header" },
		{ "n=,r=abc", "invalid SCRAM client-first message: invalid GS2 header" },
		{ "", "invalid SCRAM client-first message: invalid GS2 header" },
		{ "n,,r=abc", "invalid SCRAM client-first message: missing user name" },
		{ "n,,n=", "invalid SCRAM client-first message: missing nonce" },
		{ "n,,n=,r=", "invalid SCRAM client-first message: invalid nonce" },
		{ "n,,n=,r=a\x7f", "invalid SCRAM client-first message: invalid nonce" },
		{ "n,,m=x,n=,r=abc",
		  "invalid SCRAM client-first message: mandatory extension not supported" },
		{ "n,,n=,r=abc,", "invalid SCRAM client-first message: malformed extension" },
		{ "n,,n=,r=abc,==", "invalid SCRAM client-first message: malformed extension" },
	};
	struct scram_secret secret = rfc_secret();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server *ss = scram_server_new(&secret, "srv");
		const char *err = NULL;
		char *out = NULL;
		size_t len;
		int rc = scram_server_first(ss, cases[i].msg, strlen(cases[i].msg), &out, &len,
					    &err);

		if (cases[i].err) {
			ck_assert_msg(rc == -1, "accepted: %s", cases[i].msg);
			ck_assert_ptr_null(out);
			ck_assert_str_eq(err, cases[i].err);
		} else {
			ck_assert_msg(rc == 0, "refused: %s: %s", cases[i].msg, err);
			ck_assert_str_eq(out, "r=abcsrv,s=" RFC_SALT ",i=4096");
			free(out);
		}
		scram_server_free(ss);
	}
}
END_TEST

START_TEST(test_server_gs2_y)
{
	/* "y,," must be echoed as c=eSws (base64 "y,,"), not c=biws. */
	struct scram_secret secret = rfc_secret();
	struct scram_server *ss = scram_server_new(&secret, RFC_SNONCE);
	const char *err = NULL;
	char *out;
	size_t len;

	ck_assert_int_eq(scram_server_first(ss, "y,,n=user,r=" RFC_CNONCE,
					    strlen("y,,n=user,r=" RFC_CNONCE), &out, &len, &err),
			 0);
	free(out);
	ck_assert_int_eq(scram_server_final(ss, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out,
					    &len, &err),
			 -1);
	ck_assert_str_eq(err,
			 "invalid SCRAM client-final message: unexpected channel binding data");
	scram_server_free(ss);

	/* With c=eSws the channel binding is accepted, but the proof signed "c=biws". */
	ss = scram_server_new(&secret, RFC_SNONCE);
	ck_assert_int_eq(scram_server_first(ss, "y,,n=user,r=" RFC_CNONCE,
					    strlen("y,,n=user,r=" RFC_CNONCE), &out, &len, &err),
			 0);
	free(out);
	const char *eSws = "c=eSws,r=" RFC_CNONCE RFC_SNONCE
			   ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	ck_assert_int_eq(scram_server_final(ss, eSws, strlen(eSws), &out, &len, &err), -1);
	ck_assert_str_eq(err, "client proof does not match");
	scram_server_free(ss);
}
END_TEST

START_TEST(test_server_new_checks)
{
	struct scram_secret secret = rfc_secret();
	struct scram_secret bad = secret;

	ck_assert_ptr_null(scram_server_new(NULL, NULL));
	ck_assert_ptr_null(scram_server_new(&secret, "a,b"));
	bad.iterations = 0;
	ck_assert_ptr_null(scram_server_new(&bad, NULL));
	bad = secret;
	bad.salt_len = 0;
	ck_assert_ptr_null(scram_server_new(&bad, NULL));
	scram_server_free(NULL);
	scram_client_free(NULL);
}
END_TEST

START_TEST(test_secret_parse)
{
	struct scram_secret parsed, derived;

	ck_assert_int_eq(scram_secret_parse(RFC_SECRET, &parsed), 0);
	derived = rfc_secret();
	ck_assert_int_eq(parsed.iterations, 4096);
	ck_assert_uint_eq(parsed.salt_len, sizeof(rfc_salt));
	ck_assert_mem_eq(parsed.salt, rfc_salt, sizeof(rfc_salt));
	ck_assert_mem_eq(parsed.stored_key, derived.stored_key, SCRAM_KEY_LEN);
	ck_assert_mem_eq(parsed.server_key, derived.server_key, SCRAM_KEY_LEN);

	/* PostgreSQL's own secret matches our derivation from its salt. */
	ck_assert_int_eq(scram_secret_parse(PG_SECRET, &parsed), 0);
	ck_assert_int_eq(scram_secret_from_password("secret", parsed.salt, parsed.salt_len,
						    parsed.iterations, &derived),
			 0);
	ck_assert_mem_eq(parsed.stored_key, derived.stored_key, SCRAM_KEY_LEN);
	ck_assert_mem_eq(parsed.server_key, derived.server_key, SCRAM_KEY_LEN);
	ck_assert_int_eq(scram_secret_from_password("secreT", parsed.salt, parsed.salt_len,
						    parsed.iterations, &derived),
			 0);
	ck_assert_mem_ne(parsed.stored_key, derived.stored_key, SCRAM_KEY_LEN);

	ck_assert_int_ne(scram_secret_from_password("x", rfc_salt, 0, 4096, &derived), 0);
	ck_assert_int_ne(scram_secret_from_password("x", rfc_salt, 65, 4096, &derived), 0);
	ck_assert_int_ne(scram_secret_from_password("x", rfc_salt, 16, 0, &derived), 0);
}
END_TEST

START_TEST(test_secret_parse_garbage)
{
	static const char *const bad[] = {
		"",
		"garbage",
		"md5d933c280ea30e21eb496698dfa49653a",
		"SCRAM-SHA-256$",
		"SCRAM-SHA-1$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$0:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$x:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7so!sUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY"
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbs="
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
		"SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=x",
		"SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=:",
	};
	struct scram_secret s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(scram_secret_parse(bad[i], &s) == -1, "accepted: %s", bad[i]);
	ck_assert_int_eq(scram_secret_parse(NULL, &s), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("scram");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_rfc7677_client);
	tcase_add_test(tc, test_client_first_format);
	tcase_add_test(tc, test_client_bad_server_final);
	tcase_add_test(tc, test_client_wrong_password);
	tcase_add_test(tc, test_client_malformed_server_first);
	tcase_add_test(tc, test_end_to_end);
	tcase_add_test(tc, test_rfc7677_server);
	tcase_add_test(tc, test_server_malformed_client_final);
	tcase_add_test(tc, test_server_client_first);
	tcase_add_test(tc, test_server_gs2_y);
	tcase_add_test(tc, test_server_new_checks);
	tcase_add_test(tc, test_secret_parse);
	tcase_add_test(tc, test_secret_parse_garbage);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
