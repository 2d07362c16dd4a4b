/* Unit tests for auth.c: PostgreSQL's MD5 computations, secret kinds, and password
 * checks against plain, md5 and SCRAM secrets. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "pgwire/auth.h"

/* printf %s secretcrate | md5sum */
#define MD5_SECRET "md5d933c280ea30e21eb496698dfa49653a"
/* "md5" + md5(hex part of MD5_SECRET + "\x01\x02\x03\x04"), computed with Python. */
#define MD5_SALTED "md51568ba546948730109c8ca7c277812ae"
/* From pg_authid after CREATE ROLE crate PASSWORD 'secret' on PostgreSQL. */
#define SCRAM_SECRET                                    \
	"SCRAM-SHA-256$4096:zcPMawImbtFgU6VnSpUOGg=="   \
	"$PiT7ICkJOhGzQ1Q9tz6mIg1T+PZZiyyFcyx1L4R85qM=" \
	":g8hGOhHOH9SamWVPPHAWPsXS+KQoPjfWTPA+rnL4Cvs="

static const uint8_t salt[4] = { 1, 2, 3, 4 };

START_TEST(test_md5_encrypt)
{
	char out[PG_MD5_LEN + 1];

	pg_md5_encrypt("secret", "crate", out);
	ck_assert_str_eq(out, MD5_SECRET);
	pg_md5_encrypt("secret", "crate2", out);
	ck_assert_str_ne(out, MD5_SECRET);
}
END_TEST

START_TEST(test_md5_salted)
{
	static const uint8_t other[4] = { 1, 2, 3, 5 };
	char out[PG_MD5_LEN + 1];

	pg_md5_salted(MD5_SECRET, salt, out);
	ck_assert_str_eq(out, MD5_SALTED);
	pg_md5_salted(MD5_SECRET, other, out);
	ck_assert_str_ne(out, MD5_SALTED);
	/* Only an md5 secret can be salted. */
	pg_md5_salted("secret", salt, out);
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_secret_kind)
{
	ck_assert_int_eq(secret_kind(MD5_SECRET), SECRET_MD5);
	ck_assert_int_eq(secret_kind(SCRAM_SECRET), SECRET_SCRAM);
	ck_assert_int_eq(secret_kind("SCRAM-SHA-256$garbage"), SECRET_SCRAM);
	ck_assert_int_eq(secret_kind("secret"), SECRET_PLAIN);
	ck_assert_int_eq(secret_kind(""), SECRET_PLAIN);
	ck_assert_int_eq(secret_kind("md5"), SECRET_PLAIN);
	ck_assert_int_eq(secret_kind("md5d933c280ea30e21eb496698dfa49653"), SECRET_PLAIN);
	ck_assert_int_eq(secret_kind("md5d933c280ea30e21eb496698dfa49653a0"), SECRET_PLAIN);
	ck_assert_int_eq(secret_kind("md5D933C280EA30E21EB496698DFA49653A"), SECRET_PLAIN);
	ck_assert_int_eq(secret_kind("md5d933c280ea30e21eb496698dfa4965xa"), SECRET_PLAIN);
	ck_assert_int_eq(secret_kind("MD5d933c280ea30e21eb496698dfa49653a"), SECRET_PLAIN);
	ck_assert_int_eq(secret_kind("scram-sha-256$4096:x$y:z"), SECRET_PLAIN);
	ck_assert_int_eq(secret_kind("SCRAM-SHA-256"), SECRET_PLAIN);
}
END_TEST

START_TEST(test_check_plain)
{
	/* Plain stored secret. */
	ck_assert(auth_check_plain("secret", "crate", "secret"));
	ck_assert(!auth_check_plain("secret", "crate", "secret2"));
	ck_assert(!auth_check_plain("secret", "crate", "secre"));
	ck_assert(!auth_check_plain("secret", "crate", "Secret"));
	ck_assert(!auth_check_plain("", "crate", ""));
	ck_assert(!auth_check_plain("secret", "crate", ""));

	/* md5 stored secret: salted with the user name. */
	ck_assert(auth_check_plain(MD5_SECRET, "crate", "secret"));
	ck_assert(!auth_check_plain(MD5_SECRET, "crate", "wrong"));
	ck_assert(!auth_check_plain(MD5_SECRET, "other", "secret"));
	ck_assert(!auth_check_plain(MD5_SECRET, "crate", MD5_SECRET));

	/* SCRAM stored secret. */
	ck_assert(auth_check_plain(SCRAM_SECRET, "crate", "secret"));
	ck_assert(auth_check_plain(SCRAM_SECRET, "anyone", "secret"));
	ck_assert(!auth_check_plain(SCRAM_SECRET, "crate", "wrong"));
	ck_assert(!auth_check_plain(SCRAM_SECRET, "crate", SCRAM_SECRET));
	ck_assert(!auth_check_plain("SCRAM-SHA-256$garbage", "crate", "SCRAM-SHA-256$garbage"));
}
END_TEST

START_TEST(test_check_md5)
{
	static const uint8_t other[4] = { 4, 3, 2, 1 };

	/* Plain stored secret: the md5 secret is computed from it first. */
	ck_assert(auth_check_md5("secret", "crate", salt, MD5_SALTED));
	ck_assert(!auth_check_md5("secret", "crate", other, MD5_SALTED));
	ck_assert(!auth_check_md5("secret", "other", salt, MD5_SALTED));
	ck_assert(!auth_check_md5("wrong", "crate", salt, MD5_SALTED));

	/* md5 stored secret. */
	ck_assert(auth_check_md5(MD5_SECRET, "crate", salt, MD5_SALTED));
	ck_assert(!auth_check_md5(MD5_SECRET, "crate", other, MD5_SALTED));
	ck_assert(
		!auth_check_md5(MD5_SECRET, "crate", salt, "md51568ba546948730109c8ca7c277812af"));
	ck_assert(!auth_check_md5(MD5_SECRET, "crate", salt, MD5_SECRET));
	ck_assert(!auth_check_md5(MD5_SECRET, "crate", salt, ""));

	/* SCRAM secrets cannot answer an MD5 challenge; nor can an empty secret. */
	ck_assert(!auth_check_md5(SCRAM_SECRET, "crate", salt, MD5_SALTED));
	ck_assert(!auth_check_md5(SCRAM_SECRET, "crate", salt, ""));
	ck_assert(!auth_check_md5("", "crate", salt, ""));
}
END_TEST

START_TEST(test_check_md5_empty_plain)
{
	/* md5("" + user) is public knowledge, so an empty plain secret must not pass. */
	char md5[PG_MD5_LEN + 1], response[PG_MD5_LEN + 1];

	pg_md5_encrypt("", "crate", md5);
	pg_md5_salted(md5, salt, response);
	ck_assert(!auth_check_md5("", "crate", salt, response));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_md5_encrypt);
	tcase_add_test(tc, test_md5_salted);
	tcase_add_test(tc, test_secret_kind);
	tcase_add_test(tc, test_check_plain);
	tcase_add_test(tc, test_check_md5);
	tcase_add_test(tc, test_check_md5_empty_plain);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
