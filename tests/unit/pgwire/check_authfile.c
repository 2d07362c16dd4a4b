/* Unit tests for authfile.c: PgBouncer userlist parsing, error positions, lookups
 * and loading from disk. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgwire/authfile.h"

#define MD5_SECRET "md5d933c280ea30e21eb496698dfa49653a"
#define SCRAM_SECRET                                    \
	"SCRAM-SHA-256$4096:zcPMawImbtFgU6VnSpUOGg=="   \
	"$PiT7ICkJOhGzQ1Q9tz6mIg1T+PZZiyyFcyx1L4R85qM=" \
	":g8hGOhHOH9SamWVPPHAWPsXS+KQoPjfWTPA+rnL4Cvs="

static void expect_error(const char *text, const char *expected);

/* Parsing text must fail with exactly the expected message. */
static void expect_error(const char *text, const char *expected)
{
	char *err = NULL;
	struct authfile *af = authfile_parse(text, "users.txt", &err);

	ck_assert_msg(af == NULL, "accepted: %s", text);
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(err, expected);
	free(err);
}

START_TEST(test_parse_good)
{
	const char *text = "; PgBouncer userlist\n"
			   "# another comment\n"
			   "\n"
			   "   \t\n"
			   "\"crate\" \"secret\"\n"
			   "  \"md5user\"\t\"" MD5_SECRET "\" \"ignored\" extra\n"
			   "\"scram\" \"" SCRAM_SECRET "\"\n"
			   "\"we\"\"ird\" \"pa\"\"ss\"\"\"\r\n"
			   "\"spaced user\" \"two words\"\n"
			   "   ; indented comment with \"quotes\n"
			   "\"empty\" \"\"\n"
			   "\"last\" \"no newline\"";
	char *err = NULL;
	struct authfile *af = authfile_parse(text, "users.txt", &err);

	ck_assert_ptr_nonnull(af);
	ck_assert_ptr_null(err);
	ck_assert_str_eq(authfile_lookup(af, "crate"), "secret");
	ck_assert_str_eq(authfile_lookup(af, "md5user"), MD5_SECRET);
	ck_assert_str_eq(authfile_lookup(af, "scram"), SCRAM_SECRET);
	ck_assert_str_eq(authfile_lookup(af, "we\"ird"), "pa\"ss\"");
	ck_assert_str_eq(authfile_lookup(af, "spaced user"), "two words");
	ck_assert_str_eq(authfile_lookup(af, "empty"), "");
	ck_assert_str_eq(authfile_lookup(af, "last"), "no newline");
	authfile_free(af);
}
END_TEST

START_TEST(test_parse_empty)
{
	char *err = NULL;
	struct authfile *af = authfile_parse("", "users.txt", &err);

	ck_assert_ptr_nonnull(af);
	ck_assert_ptr_null(authfile_lookup(af, "crate"));
	ck_assert_ptr_null(authfile_lookup(af, ""));
	authfile_free(af);

	af = authfile_parse("# only comments\n\n;\n", "users.txt", &err);
	ck_assert_ptr_nonnull(af);
	ck_assert_ptr_null(authfile_lookup(af, "crate"));
	authfile_free(af);
	authfile_free(NULL);
	ck_assert_ptr_null(authfile_lookup(NULL, "crate"));
}
END_TEST

START_TEST(test_lookup)
{
	const char *text = "\"bob\" \"b\"\n\"alice\" \"a\"\n\"carol\" \"c\"\n"
			   "\"alice\" \"a2\"\n" /* a later duplicate wins */
			   "\"Alice\" \"A\"\n";
	char *err = NULL;
	struct authfile *af = authfile_parse(text, "users.txt", &err);

	ck_assert_ptr_nonnull(af);
	ck_assert_str_eq(authfile_lookup(af, "alice"), "a2");
	ck_assert_str_eq(authfile_lookup(af, "Alice"), "A");
	ck_assert_str_eq(authfile_lookup(af, "bob"), "b");
	ck_assert_str_eq(authfile_lookup(af, "carol"), "c");
	ck_assert_ptr_null(authfile_lookup(af, "dave"));
	ck_assert_ptr_null(authfile_lookup(af, "alic"));
	ck_assert_ptr_null(authfile_lookup(af, "alice "));
	ck_assert_ptr_null(authfile_lookup(af, ""));
	authfile_free(af);
}
END_TEST

START_TEST(test_many_users)
{
	char *text = malloc(100 * 32), *p = text, user[16], secret[16], *err = NULL;
	struct authfile *af;

	for (int i = 0; i < 100; i++)
		p += sprintf(p, "\"user%d\" \"pw%d\"\n", (i * 37) % 100, i);
	af = authfile_parse(text, "users.txt", &err);
	ck_assert_ptr_nonnull(af);
	for (int i = 0; i < 100; i++) {
		snprintf(user, sizeof(user), "user%d", (i * 37) % 100);
		snprintf(secret, sizeof(secret), "pw%d", i);
		ck_assert_str_eq(authfile_lookup(af, user), secret);
	}
	authfile_free(af);
	free(text);
}
END_TEST

START_TEST(test_parse_errors)
{
	expect_error("\"crate\" \"secret\"\n\"bob\" \"unterminated\n\"x\" \"y\"\n",
		     "users.txt:2: unterminated quoted secret");
	expect_error("# c\n\n\"bob\n", "users.txt:3: unterminated quoted user name");
	expect_error("\"bob\"",
		     "users.txt:1: missing secret: expected a quoted secret after the user name");
	expect_error("\"a\" \"b\"\n\"bob\"\n",
		     "users.txt:2: missing secret: expected a quoted secret after the user name");
	expect_error("\"bob\" secret\n",
		     "users.txt:1: missing secret: expected a quoted secret after the user name");
	expect_error("\"a\" \"b\"\n\n\nbob \"secret\"\n",
		     "users.txt:4: expected a quoted user name");
	expect_error("\"\" \"secret\"\n", "users.txt:1: empty user name");
	/* A doubled quote is an escape, so this user name never ends. */
	expect_error("\"bob\"\"\n", "users.txt:1: unterminated quoted user name");
}
END_TEST

START_TEST(test_error_hides_secret)
{
	char *err = NULL;

	ck_assert_ptr_null(authfile_parse("\"bob\" \"hunter2\n", "f", &err));
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_null(strstr(err, "hunter2"));
	free(err);
	/* err may be NULL. */
	ck_assert_ptr_null(authfile_parse("\"bob\"", "f", NULL));
}
END_TEST

START_TEST(test_load)
{
	char path[] = "/tmp/check_authfile_XXXXXX", *err = NULL;
	int fd = mkstemp(path);
	const char *text = "\"crate\" \"secret\"\n\"scram\" \"" SCRAM_SECRET "\"\n";
	struct authfile *af;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	af = authfile_load(path, &err);
	ck_assert_ptr_nonnull(af);
	ck_assert_str_eq(authfile_lookup(af, "crate"), "secret");
	ck_assert_str_eq(authfile_lookup(af, "scram"), SCRAM_SECRET);
	authfile_free(af);

	/* Errors from a file carry its path. */
	fd = open(path, O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "oops\n", 5), 5);
	close(fd);
	ck_assert_ptr_null(authfile_load(path, &err));
	ck_assert_ptr_nonnull(err);
	ck_assert_int_eq(strncmp(err, path, strlen(path)), 0);
	ck_assert_str_eq(err + strlen(path), ":3: expected a quoted user name");
	free(err);
	unlink(path);
}
END_TEST

START_TEST(test_load_big)
{
	char path[] = "/tmp/check_authfile_XXXXXX", *err = NULL, user[32];
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	struct authfile *af;

	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 5000; i++)
		fprintf(f, "\"user%d\" \"%s\"\n", i, SCRAM_SECRET);
	fclose(f);
	af = authfile_load(path, &err);
	ck_assert_ptr_nonnull(af);
	for (int i = 0; i < 5000; i += 499) {
		snprintf(user, sizeof(user), "user%d", i);
		ck_assert_str_eq(authfile_lookup(af, user), SCRAM_SECRET);
	}
	authfile_free(af);
	unlink(path);
}
END_TEST

START_TEST(test_load_missing)
{
	char *err = NULL;

	ck_assert_ptr_null(authfile_load("/nonexistent/users.txt", &err));
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(err, "/nonexistent/users.txt: No such file or directory");
	free(err);

	ck_assert_ptr_null(authfile_load("/tmp", &err));
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(err, "/tmp: Is a directory");
	free(err);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("authfile");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_parse_good);
	tcase_add_test(tc, test_parse_empty);
	tcase_add_test(tc, test_lookup);
	tcase_add_test(tc, test_many_users);
	tcase_add_test(tc, test_parse_errors);
	tcase_add_test(tc, test_error_hides_secret);
	tcase_add_test(tc, test_load);
	tcase_add_test(tc, test_load_big);
	tcase_add_test(tc, test_load_missing);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
