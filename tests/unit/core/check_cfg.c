/* Unit tests for cfg.c: the option table and its defaults, [databases] entries, error
 * messages with FILE:LINE, long lines past inih's buffer, and files next to the config. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cfg.h"

#define NAME "test.ini"

static const char doc_config[] =
	"[databases]\n"
	"doc = host=localhost port=15432 dbname=doc user=crate password=secret\n"
	"\n"
	"[cratebouncer]\n"
	"listen_addr = 127.0.0.1\n"
	"listen_port = 6432\n"
	"unix_socket_dir = /tmp\n"
	"auth_type = trust\n"
	"admin_users = admin\n"
	"stats_users = stats\n"
	"pool_mode = session\n"
	"default_pool_size = 20\n"
	"max_client_conn = 20000\n"
	"server_tls_sslmode = verify-full\n"
	"server_tls_ca_file = /path/to/ca.crt\n"
	"logfile = /path/to/cratebouncer.log\n"
	"pidfile = /path/to/cratebouncer.pid\n";

static char *all_errors(const struct cfg *cfg);
static struct cfg *parse_ok(const char *text);
static void expect_errors(const struct cfg *cfg, const char *const *expected);
static void expect_parse_errors(const char *text, const char *const *expected);
static char *write_file(const char *dir, const char *name, const char *content);
static void remove_file(char *path);

/* Every error, one per line, for failure messages. The caller frees. */
static char *all_errors(const struct cfg *cfg)
{
	size_t len = 1;
	char *s;

	for (size_t i = 0; i < cfg->nerrors; i++)
		len += strlen(cfg->errors[i]) + 3;
	s = calloc(1, len);
	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < cfg->nerrors; i++) {
		strcat(s, "\n  ");
		strcat(s, cfg->errors[i]);
	}
	return s;
}

/* Parses text as NAME and requires no errors. */
static struct cfg *parse_ok(const char *text)
{
	struct cfg *cfg = cfg_parse_string(text, NAME);

	ck_assert_ptr_nonnull(cfg);
	if (cfg->nerrors) {
		char *e = all_errors(cfg);
		ck_abort_msg("unexpected errors:%s", e);
		free(e);
	}
	return cfg;
}

/* Exactly these errors, in this order; expected is NULL-terminated. */
static void expect_errors(const struct cfg *cfg, const char *const *expected)
{
	size_t n = 0;
	char *e = all_errors(cfg);

	while (expected[n])
		n++;
	ck_assert_msg(cfg->nerrors == n, "expected %zu errors, got %zu:%s", n, cfg->nerrors, e);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(strcmp(cfg->errors[i], expected[i]) == 0,
			      "error %zu: expected \"%s\", got:%s", i, expected[i], e);
	free(e);
}

static void expect_parse_errors(const char *text, const char *const *expected)
{
	struct cfg *cfg = cfg_parse_string(text, NAME);

	expect_errors(cfg, expected);
	cfg_free(cfg);
}

/* dir/name with content; returns the malloc'd path. */
static char *write_file(const char *dir, const char *name, const char *content)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *path = malloc(len);
	FILE *f;

	ck_assert_ptr_nonnull(path);
	snprintf(path, len, "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_int_ge(fputs(content, f), 0);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

static void remove_file(char *path)
{
	ck_assert_msg(unlink(path) == 0, "%s: %s", path, strerror(errno));
	free(path);
}

START_TEST(test_doc_config)
{
	struct cfg *cfg = parse_ok(doc_config);
	const struct cfg_db *db;

	ck_assert_str_eq(cfg->listen_addr, "127.0.0.1");
	ck_assert_int_eq(cfg->listen_port, 6432);
	ck_assert_str_eq(cfg->unix_socket_dir, "/tmp");
	ck_assert_int_eq(cfg->auth_type, AUTH_TRUST);
	ck_assert_str_eq(cfg->admin_users, "admin");
	ck_assert_str_eq(cfg->stats_users, "stats");
	ck_assert_int_eq(cfg->pool_mode, POOL_SESSION);
	ck_assert_int_eq(cfg->default_pool_size, 20);
	ck_assert_int_eq(cfg->max_client_conn, 20000);
	ck_assert_int_eq(cfg->server_tls_sslmode, SSLMODE_VERIFY_FULL);
	ck_assert_str_eq(cfg->server_tls_ca_file, "/path/to/ca.crt");
	ck_assert_str_eq(cfg->logfile, "/path/to/cratebouncer.log");
	ck_assert_str_eq(cfg->pidfile, "/path/to/cratebouncer.pid");
	/* Untouched options keep their defaults. */
	ck_assert_str_eq(cfg->auth_file, "");
	ck_assert_str_eq(cfg->server_reset_query, "DISCARD ALL");
	ck_assert_int_eq(cfg->unix_socket_mode, 0777);
	ck_assert(cfg->tcp_keepalive);

	ck_assert_uint_eq(cfg->ndbs, 1);
	db = cfg_find_db(cfg, "doc");
	ck_assert_ptr_eq(db, &cfg->dbs[0]);
	ck_assert_str_eq(db->name, "doc");
	ck_assert_str_eq(db->host, "localhost");
	ck_assert_int_eq(db->port, 15432);
	ck_assert_str_eq(db->dbname, "doc");
	ck_assert_str_eq(db->user, "crate");
	ck_assert_str_eq(db->password, "secret");
	ck_assert_int_eq(db->pool_size, -1);
	ck_assert_int_eq(db->min_pool_size, -1);
	ck_assert_int_eq(db->pool_mode, -1);
	ck_assert_int_eq(db->sslmode, -1);
	ck_assert_ptr_null(db->sslrootcert);
	ck_assert_ptr_null(cfg_find_db(cfg, "Doc"));
	ck_assert_ptr_null(cfg_find_db(cfg, "other"));
	cfg_free(cfg);
}
END_TEST

START_TEST(test_option_table)
{
	/* Every option has a sane entry and can be found by name, in any case. */
	ck_assert_uint_gt(cfg_noptions, 0);
	ck_assert_uint_le(cfg_noptions, 128); /* parse_ctx.seen[128] is indexed by option */
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		char upper[64];

		ck_assert_ptr_nonnull(o->name);
		ck_assert_msg(o->def != NULL, "%s has no default", o->name);
		ck_assert_ptr_eq(cfg_find_opt_in(o->section, o->name), o);
		ck_assert_uint_lt(strlen(o->name), sizeof(upper));
		for (size_t j = 0; o->name[j]; j++)
			upper[j] = (char)(o->name[j] >= 'a' && o->name[j] <= 'z' ? o->name[j] - 32
										 : o->name[j]);
		upper[strlen(o->name)] = '\0';
		ck_assert_ptr_eq(cfg_find_opt_in(o->section, upper), o);
		if (o->type == CFG_INT || o->type == CFG_TIME)
			ck_assert_msg(o->min <= o->max, "%s: min > max", o->name);
		if (o->type == CFG_ENUM) {
			ck_assert_msg(o->names != NULL && o->names[0] != NULL, "%s: no names",
				      o->name);
			for (int v = 0; o->names[v]; v++)
				ck_assert_str_eq(cfg_enum_name(o, v), o->names[v]);
		}
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(cfg_options[j].name, o->name) != 0 ||
					      (cfg_options[j].section == NULL) !=
						      (o->section == NULL) ||
					      (o->section &&
					       strcmp(cfg_options[j].section, o->section) != 0),
				      "%s twice in one section", o->name);
	}
	ck_assert_ptr_null(cfg_find_opt("no_such_option"));
	ck_assert_ptr_null(cfg_find_opt(""));
	ck_assert_str_eq(cfg_enum_name(cfg_find_opt("auth_type"), AUTH_SCRAM), "scram-sha-256");
	ck_assert_str_eq(cfg_enum_name(cfg_find_opt("server_tls_sslmode"), 99), "?");
	ck_assert_str_eq(cfg_enum_name(cfg_find_opt("pool_mode"), -1), "?");
}
END_TEST

START_TEST(test_defaults)
{
	static const char *const errs[] = { NAME ":0: auth_type md5 needs auth_file", NULL };
	struct cfg *cfg = cfg_parse_string("", NAME);

	/* The md5 default needs an auth_file, and nothing else is missing. */
	expect_errors(cfg, errs);
	ck_assert_uint_eq(cfg->ndbs, 0);
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		const char *field = (const char *)cfg + o->offset;
		const char *name = o->name;
		char *end;

		switch (o->type) {
		case CFG_STR:
			ck_assert_msg(*(char *const *)field != NULL, "%s is NULL", name);
			ck_assert_msg(strcmp(*(char *const *)field, o->def) == 0,
				      "%s: \"%s\" != \"%s\"", name, *(char *const *)field, o->def);
			break;
		case CFG_INT: {
			long v = strtol(o->def, &end, 0);
			ck_assert_msg(*end == '\0', "%s: default \"%s\" is not an integer", name,
				      o->def);
			ck_assert_msg(v >= o->min && v <= o->max, "%s: default out of range", name);
			ck_assert_msg(*(const int *)field == v, "%s: %d != %ld", name,
				      *(const int *)field, v);
			break;
		}
		case CFG_TIME: {
			double v = strtod(o->def, &end);
			ck_assert_msg(*end == '\0', "%s: default \"%s\" has a unit", name, o->def);
			ck_assert_msg(v >= o->min && v <= o->max, "%s: default out of range", name);
			ck_assert_msg(*(const double *)field == v, "%s: %g != %g", name,
				      *(const double *)field, v);
			break;
		}
		case CFG_BOOL: {
			bool v = strcmp(o->def, "1") == 0 || strcmp(o->def, "on") == 0 ||
				 strcmp(o->def, "yes") == 0 || strcmp(o->def, "true") == 0;
			ck_assert_msg(*(const bool *)field == v, "%s: bool default", name);
			break;
		}
		case CFG_ENUM: {
			int v = -1;
			for (int j = 0; o->names[j]; j++)
				if (strcmp(o->names[j], o->def) == 0)
					v = j;
			ck_assert_msg(v >= 0, "%s: default \"%s\" is not a name", name, o->def);
			ck_assert_msg(*(const int *)field == v, "%s: %d != %d", name,
				      *(const int *)field, v);
			break;
		}
		}
	}
	/* Spot checks against the documented defaults. */
	ck_assert_str_eq(cfg->listen_addr, "127.0.0.1");
	ck_assert_int_eq(cfg->listen_port, 6432);
	ck_assert_int_eq(cfg->unix_socket_mode, 0777);
	ck_assert_int_eq(cfg->auth_type, AUTH_MD5);
	ck_assert_int_eq(cfg->pool_mode, POOL_SESSION);
	ck_assert_int_eq(cfg->server_tls_sslmode, SSLMODE_VERIFY_FULL);
	ck_assert_double_eq(cfg->server_connect_timeout, 15);
	ck_assert_double_eq(cfg->server_lifetime, 3600);
	ck_assert(cfg->tcp_keepalive);
	cfg_free(cfg);

	/* Comments and blank lines only; empty sections are fine too. */
	cfg = parse_ok(
		"; comment\n# comment\n\n   \n\t\n[cratebouncer]\nauth_type = trust\n[databases]\n");
	ck_assert_int_eq(cfg->default_pool_size, 20);
	cfg_free(cfg);
}
END_TEST

START_TEST(test_pgbouncer_alias)
{
	struct cfg *cfg = parse_ok("[pgbouncer]\nlisten_port = 7000\nauth_type = trust\n"
				   "[databases]\nx = host=h\n");

	ck_assert_int_eq(cfg->listen_port, 7000);
	ck_assert_int_eq(cfg->auth_type, AUTH_TRUST);
	ck_assert_uint_eq(cfg->ndbs, 1);
	cfg_free(cfg);

	/* Section names and option names are case-insensitive. */
	cfg = parse_ok("[PgBouncer]\nLISTEN_PORT = 7001\n[CrateBouncer]\nAuth_Type = TRUST\n"
		       "[DATABASES]\nx = host=h\n");
	ck_assert_int_eq(cfg->listen_port, 7001);
	ck_assert_int_eq(cfg->auth_type, AUTH_TRUST);
	ck_assert_uint_eq(cfg->ndbs, 1);
	cfg_free(cfg);

	/* Both sections feed the same options, so a value in each is a duplicate. */
	static const char *const errs[] = { NAME ":4: listen_port is set twice", NULL };
	expect_parse_errors("[pgbouncer]\nlisten_port = 1\n[cratebouncer]\nlisten_port = 2\n"
			    "auth_type = trust\n",
			    errs);
}
END_TEST

START_TEST(test_error_lines)
{
	static const char text[] = "; many bad lines, all reported\n" /* 1 */
				   "[cratebouncer]\n"                 /* 2 */
				   "auth_type = trust\n"              /* 3 */
				   "listen_port = 6432\n"             /* 4 */
				   "bogus_option = 1\n"               /* 5 */
				   "default_pool_size = many\n"       /* 6 */
				   "max_client_conn = 0\n"            /* 7 */
				   "server_tls_sslmode = prefer\n"    /* 8 */
				   "server_lifetime = 5 weeks\n"      /* 9 */
				   "listen_port = 7000\n"             /* 10 */
				   "this line has no equals sign\n"   /* 11 */
				   "tcp_keepalive = maybe\n"          /* 12 */
				   "\n"                               /* 13 */
				   "[nosuch]\n"                       /* 14 */
				   "foo = bar\n"                      /* 15 */
				   "[databases]\n"                    /* 16 */
				   "doc = host=localhost\n"           /* 17 */
				   "doc = host=otherhost\n"           /* 18 */
				   "nohost = port=5432 dbname=x\n"    /* 19 */
				   "weird = host=x colour=blue\n"     /* 20 */
				   "quoted = host=x password='oops\n" /* 21 */
				   "good = host=y\n";                 /* 22 */
	static const char *const errs[] = {
		NAME ":5: unknown option \"bogus_option\" in [cratebouncer]",
		NAME ":6: default_pool_size: \"many\" is not an integer",
		NAME ":7: max_client_conn: 0 is out of range (1 to 1000000)",
		NAME
		":8: server_tls_sslmode: \"prefer\" is not one of: disable, require, verify-ca, verify-full",
		NAME
		":9: server_lifetime: \"5 weeks\" is not a duration (seconds, or a number with ms, s, min, h, d)",
		NAME ":10: listen_port is set twice",
		NAME ":11: syntax error: expected \"key = value\"",
		NAME ":12: tcp_keepalive: \"maybe\" is not a boolean (0/1, on/off)",
		NAME ":15: unknown section [nosuch]",
		NAME ":18: database \"doc\" is defined twice",
		NAME ":19: database \"nohost\": host= is required",
		NAME ":20: database \"weird\": unknown parameter \"colour\"",
		NAME ":21: database \"quoted\": unterminated quoted value",
		NULL
	};
	struct cfg *cfg = cfg_parse_string(text, NAME);

	expect_errors(cfg, errs);
	/* Bad values leave the default in place; good entries around bad ones survive. */
	ck_assert_int_eq(cfg->default_pool_size, 20);
	ck_assert_int_eq(cfg->max_client_conn, 100);
	ck_assert_int_eq(cfg->server_tls_sslmode, SSLMODE_VERIFY_FULL);
	ck_assert_double_eq(cfg->server_lifetime, 3600);
	ck_assert(cfg->tcp_keepalive);
	ck_assert_uint_eq(cfg->ndbs, 2);
	ck_assert_str_eq(cfg_find_db(cfg, "doc")->host, "localhost");
	ck_assert_str_eq(cfg_find_db(cfg, "good")->host, "y");
	ck_assert_ptr_null(cfg_find_db(cfg, "nohost"));
	ck_assert_ptr_null(cfg_find_db(cfg, "weird"));
	ck_assert_ptr_null(cfg_find_db(cfg, "quoted"));
	cfg_free(cfg);

	/* The file name is the one given. */
	cfg = cfg_parse_string("[cratebouncer]\nauth_type = trust\nnope = 1\n", "/etc/cb.ini");
	ck_assert_uint_eq(cfg->nerrors, 1);
	ck_assert_str_eq(cfg->errors[0],
			 "/etc/cb.ini:3: unknown option \"nope\" in [cratebouncer]");
	cfg_free(cfg);
}
END_TEST


START_TEST(test_more_errors)
{
	static const char *const enum_err[] = {
		NAME
		":2: auth_type: \"kerberos\" is not one of: trust, plain, md5, scram-sha-256, peer",
		NAME ":0: auth_type md5 needs auth_file", NULL
	};
	static const char *const range_err[] = {
		NAME ":3: server_connect_timeout: 0.005 s is out of range (0.01 to 3600 s)",
		NAME ":4: query_wait_timeout: -1 s is out of range (0 to 86400 s)",
		NAME ":5: listen_port: 65536 is out of range (1 to 65535)",
		NAME ":6: verbose: -1 is out of range (0 to 5)",
		NAME ":7: unix_socket_mode: \"0778\" is not an integer",
		NAME ":9: listen_addr is set twice",
		NAME ":10: default_pool_size: \"20x\" is not an integer",
		NAME ":11: max_client_conn: \"99999999999999999999\" is not an integer",
		NAME
		":12: server_idle_timeout: \"\" is not a duration (seconds, or a number with ms, s, min, h, d)",
		NAME
		":13: server_lifetime: \"1m\" is not a duration (seconds, or a number with ms, s, min, h, d)",
		NAME
		":14: client_login_timeout: \"inf\" is not a duration (seconds, or a number with ms, s, min, h, d)",
		NAME ":15: min_pool_size: \"\" is not an integer",
		NULL
	};
	static const char *const db_err[] = {
		NAME ":2: database \"a\": port: \"70000\" must be an integer from 1 to 65535",
		NAME ":3: database \"b\": pool_size: \"-1\" must be an integer from 0 to 10000",
		NAME ":4: database \"c\": min_pool_size: \"x\" must be an integer from 0 to 10000",
		NAME
		":5: database \"d\": sslmode: \"prefer\" is not one of: disable, require, verify-ca, verify-full",
		NAME
		":6: database \"e\": pool_mode: \"none\" is not one of: session, transaction, statement",
		NAME ":7: database \"f\": expected key=value",
		NAME ":8: database \"g\": give password= or password_file=, not both",
		NAME ":9: database \"h\": port: \"\" must be an integer from 1 to 65535",
		NAME ":10: database \"i\": host= is required",
		NAME ":11: database \"j\": unknown parameter \"\"",
		NAME ":0: auth_type md5 needs auth_file",
		NULL
	};
	static const char *const mode_err[] = { NAME ":0: auth_type scram-sha-256 needs auth_file",
						NULL };
	static const char *const users_err[] = {
		NAME
		":2: user \"a\": pool_mode: \"txn\" is not one of: session, transaction, statement",
		NAME ":3: user \"b\": unknown parameter \"pool_size\"",
		NAME ":5: user \"c\" is defined twice",
		NAME ":0: track_extra_parameters: \"a;b\" is not a list of parameter names", NULL
	};
	static const char *const nosection_err[] = { NAME ":1: unknown section []",
						     NAME ":2: unknown section []", NULL };
	static const char *const colon_err[] = { NAME ":3: syntax error: expected \"key = value\"",
						 NULL };

	expect_parse_errors("[cratebouncer]\nauth_type = kerberos\n", enum_err);
	expect_parse_errors("[cratebouncer]\n"                         /* 1 */
			    "auth_type = trust\n"                      /* 2 */
			    "server_connect_timeout = 5ms\n"           /* 3 */
			    "query_wait_timeout = -1\n"                /* 4 */
			    "listen_port = 65536\n"                    /* 5 */
			    "verbose = -1\n"                           /* 6 */
			    "unix_socket_mode = 0778\n"                /* 7 */
			    "listen_addr = a\nlisten_addr = b\n"       /* 8, 9 */
			    "default_pool_size = 20x\n"                /* 10 */
			    "max_client_conn = 99999999999999999999\n" /* 11 */
			    "server_idle_timeout =\n"                  /* 12 */
			    "server_lifetime = 1m\n"                   /* 13 */
			    "client_login_timeout = inf\n"             /* 14 */
			    "min_pool_size =\n",
			    range_err);                                          /* 15 */
	expect_parse_errors("[databases]\n"                                      /* 1 */
			    "a = host=h port=70000\n"                            /* 2 */
			    "b = host=h pool_size=-1\n"                          /* 3 */
			    "c = host=h min_pool_size=x\n"                       /* 4 */
			    "d = host=h sslmode=prefer\n"                        /* 5 */
			    "e = host=h pool_mode=none\n"                        /* 6 */
			    "f = host=h dbname\n"                                /* 7 */
			    "g = host=h password=x password_file=/nonexistent\n" /* 8 */
			    "h = host=h port=\n"                                 /* 9 */
			    "i =\n"                                              /* 10 */
			    "j = host=h =x\n"                                    /* 11 */
			    "t = host=h pool_mode=transaction\n",
			    db_err); /* 12 */
	expect_parse_errors("[cratebouncer]\nauth_type = scram-sha-256\npool_mode = statement\n",
			    mode_err);
	expect_parse_errors("[users]\n"                                        /* 1 */
			    "a = pool_mode=txn\n"                              /* 2 */
			    "b = pool_size=3\n"                                /* 3 */
			    "c = pool_mode=statement\nc = pool_mode=session\n" /* 4, 5 */
			    "[cratebouncer]\nauth_type = trust\n"              /* 6 */
			    "track_extra_parameters = a;b\n",
			    users_err); /* 7 */
	expect_parse_errors("a = 1\nb = 2\n[cratebouncer]\nauth_type = trust\n", nosection_err);
	/* inih would take ':' as a delimiter; cratebouncer insists on '='. */
	expect_parse_errors("[cratebouncer]\nauth_type = trust\nlisten_port: 7000\n", colon_err);
}
END_TEST

/* [users] beats the database entry, which beats the global pool_mode. */
/* Every option of the table, set once, is accepted (seen[] covers the whole table). */
START_TEST(test_every_option_once)
{
	struct cfg *cfg = parse_ok("[http]\nqueue_timeout = 3\nupstream_idle_timeout = 4\n"
				   "max_sql_body_mb = 5\n[cratebouncer]\nauth_type = trust\n");

	ck_assert_int_eq(cfg->http_max_sql_body_mb, 5);
	ck_assert(cfg->http_queue_timeout == 3);
	cfg_free(cfg);
}
END_TEST

START_TEST(test_pool_mode_precedence)
{
	struct cfg *cfg = parse_ok("[databases]\n"
				   "s = host=h pool_mode=session\n"
				   "d = host=h\n"
				   "[users]\n"
				   "batch = pool_mode=statement\n"
				   "[cratebouncer]\nauth_type = trust\npool_mode = transaction\n");

	ck_assert_int_eq(cfg_pool_mode(cfg, cfg_find_db(cfg, "s"), "app"), POOL_SESSION);
	ck_assert_int_eq(cfg_pool_mode(cfg, cfg_find_db(cfg, "d"), "app"), POOL_TRANSACTION);
	ck_assert_int_eq(cfg_pool_mode(cfg, cfg_find_db(cfg, "s"), "batch"), POOL_STATEMENT);
	ck_assert_int_eq(cfg->max_prepared_statements, 200);
	ck_assert_int_eq(cfg->max_packet_size, 104857600);
	cfg_free(cfg);
}
END_TEST

START_TEST(test_durations)
{
	struct cfg *cfg = parse_ok("[cratebouncer]\nauth_type = trust\n"
				   "server_connect_timeout = 500ms\n"
				   "query_wait_timeout = 2s\n"
				   "server_idle_timeout = 1min\n"
				   "server_lifetime = 1h\n"
				   "client_login_timeout = 1.5\n"
				   "server_login_retry = 0\n");

	ck_assert_double_eq_tol(cfg->server_connect_timeout, 0.5, 1e-9);
	ck_assert_double_eq_tol(cfg->query_wait_timeout, 2, 1e-9);
	ck_assert_double_eq_tol(cfg->server_idle_timeout, 60, 1e-9);
	ck_assert_double_eq_tol(cfg->server_lifetime, 3600, 1e-9);
	ck_assert_double_eq_tol(cfg->client_login_timeout, 1.5, 1e-9);
	ck_assert_double_eq(cfg->server_login_retry, 0);
	cfg_free(cfg);

	cfg = parse_ok("[cratebouncer]\nauth_type = trust\n"
		       "server_connect_timeout = 10ms\n"
		       "query_wait_timeout = 0.25s\n"
		       "server_idle_timeout = 1d\n"
		       "server_lifetime = 2 min\n"
		       "client_login_timeout = 1.5h\n"
		       "server_login_retry = 3600\n");
	ck_assert_double_eq_tol(cfg->server_connect_timeout, 0.01, 1e-9);
	ck_assert_double_eq_tol(cfg->query_wait_timeout, 0.25, 1e-9);
	ck_assert_double_eq_tol(cfg->server_idle_timeout, 86400, 1e-9);
	ck_assert_double_eq_tol(cfg->server_lifetime, 120, 1e-9);
	ck_assert_double_eq_tol(cfg->client_login_timeout, 5400, 1e-9);
	ck_assert_double_eq_tol(cfg->server_login_retry, 3600, 1e-9);
	cfg_free(cfg);
}
END_TEST

START_TEST(test_bools_ints_enums)
{
	static const char *const yes[] = { "1", "on", "yes", "true", "ON", "True", NULL };
	static const char *const no[] = { "0", "off", "no", "false", "OFF", "No", NULL };
	char text[256];
	struct cfg *cfg;

	for (size_t i = 0; yes[i]; i++) {
		snprintf(text, sizeof(text),
			 "[cratebouncer]\nauth_type = trust\ntcp_keepalive = %s\n", yes[i]);
		cfg = parse_ok(text);
		ck_assert_msg(cfg->tcp_keepalive, "%s", yes[i]);
		cfg_free(cfg);
	}
	for (size_t i = 0; no[i]; i++) {
		snprintf(text, sizeof(text),
			 "[cratebouncer]\nauth_type = trust\ntcp_keepalive = %s\n", no[i]);
		cfg = parse_ok(text);
		ck_assert_msg(!cfg->tcp_keepalive, "%s", no[i]);
		cfg_free(cfg);
	}

	/* Integers: octal for the socket mode, bounds are inclusive. */
	cfg = parse_ok(
		"[cratebouncer]\nauth_type = trust\nunix_socket_mode = 0700\nlisten_port = 65535\n"
		"verbose = 5\nmax_client_conn = 1000000\nmin_pool_size = 10000\n"
		"default_pool_size = 1\n");
	ck_assert_int_eq(cfg->unix_socket_mode, 0700);
	ck_assert_int_eq(cfg->listen_port, 65535);
	ck_assert_int_eq(cfg->verbose, 5);
	ck_assert_int_eq(cfg->max_client_conn, 1000000);
	ck_assert_int_eq(cfg->min_pool_size, 10000);
	ck_assert_int_eq(cfg->default_pool_size, 1);
	cfg_free(cfg);

	/* Every enum name, in any case. */
	static const struct {
		const char *opt, *val;
		size_t off;
		int want;
	} enums[] = {
		{ "auth_type", "trust", offsetof(struct cfg, auth_type), AUTH_TRUST },
		{ "auth_type", "plain", offsetof(struct cfg, auth_type), AUTH_PLAIN },
		{ "auth_type", "MD5", offsetof(struct cfg, auth_type), AUTH_MD5 },
		{ "auth_type", "scram-sha-256", offsetof(struct cfg, auth_type), AUTH_SCRAM },
		{ "auth_type", "Peer", offsetof(struct cfg, auth_type), AUTH_PEER },
		{ "pool_mode", "SESSION", offsetof(struct cfg, pool_mode), POOL_SESSION },
		{ "server_tls_sslmode", "disable", offsetof(struct cfg, server_tls_sslmode),
		  SSLMODE_DISABLE },
		{ "server_tls_sslmode", "require", offsetof(struct cfg, server_tls_sslmode),
		  SSLMODE_REQUIRE },
		{ "server_tls_sslmode", "verify-ca", offsetof(struct cfg, server_tls_sslmode),
		  SSLMODE_VERIFY_CA },
		{ "server_tls_sslmode", "Verify-Full", offsetof(struct cfg, server_tls_sslmode),
		  SSLMODE_VERIFY_FULL },
	};
	for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++) {
		snprintf(text, sizeof(text),
			 "[cratebouncer]\nauth_file = /etc/users.txt\n%s = %s\n", enums[i].opt,
			 enums[i].val);
		cfg = parse_ok(text);
		ck_assert_msg(*(int *)((char *)cfg + enums[i].off) == enums[i].want, "%s = %s",
			      enums[i].opt, enums[i].val);
		cfg_free(cfg);
	}

	/* Strings are taken verbatim, inner spaces included; surrounding ones are trimmed. */
	cfg = parse_ok("[cratebouncer]\nauth_type = trust\nserver_reset_query =   RESET ALL;  \n"
		       "admin_users=a,b\nlisten_addr =\n");
	ck_assert_str_eq(cfg->server_reset_query, "RESET ALL;");
	ck_assert_str_eq(cfg->admin_users, "a,b");
	ck_assert_str_eq(cfg->listen_addr, "");
	cfg_free(cfg);
}
END_TEST

START_TEST(test_db_entries)
{
	struct cfg *cfg = parse_ok(
		"[cratebouncer]\nauth_type = trust\n"
		"[databases]\n"
		"q = host='my host' dbname='db name' user = 'it\\'s' password='pa ss\\\\word\\'x'"
		" sslrootcert='/path with spaces/ca.crt'\n"
		"opts = host=h\tport=6000  pool_size=5 min_pool_size=2 pool_mode=session sslmode=verify-ca"
		" sslrootcert=/ca.crt\n"
		"empty = host=h password='' user=''\n"
		"eq = host=h password=a=b=c\n"
		"case = host=h sslmode=REQUIRE pool_mode=Session\n"
		"last = host=a host=b port=1 port=2\n");
	const struct cfg_db *db;

	ck_assert_uint_eq(cfg->ndbs, 6);
	db = cfg_find_db(cfg, "q");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "my host");
	ck_assert_str_eq(db->dbname, "db name");
	ck_assert_str_eq(db->user, "it's");
	ck_assert_str_eq(db->password, "pa ss\\word'x");
	ck_assert_str_eq(db->sslrootcert, "/path with spaces/ca.crt");
	ck_assert_int_eq(db->port, 5432);

	db = cfg_find_db(cfg, "opts");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "h");
	ck_assert_int_eq(db->port, 6000);
	ck_assert_int_eq(db->pool_size, 5);
	ck_assert_int_eq(db->min_pool_size, 2);
	ck_assert_int_eq(db->pool_mode, POOL_SESSION);
	ck_assert_int_eq(db->sslmode, SSLMODE_VERIFY_CA);
	ck_assert_str_eq(db->sslrootcert, "/ca.crt");
	ck_assert_ptr_null(db->dbname);
	ck_assert_ptr_null(db->user);
	ck_assert_ptr_null(db->password);

	db = cfg_find_db(cfg, "empty");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->password, "");
	ck_assert_str_eq(db->user, "");

	db = cfg_find_db(cfg, "eq");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->password, "a=b=c");

	db = cfg_find_db(cfg, "case");
	ck_assert_ptr_nonnull(db);
	ck_assert_int_eq(db->sslmode, SSLMODE_REQUIRE);
	ck_assert_int_eq(db->pool_mode, POOL_SESSION);

	/* A repeated parameter: the last one wins, as in libpq. */
	db = cfg_find_db(cfg, "last");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "b");
	ck_assert_int_eq(db->port, 2);
	cfg_free(cfg);
}
END_TEST

START_TEST(test_db_server_kind)
{
	struct cfg *cfg = parse_ok("[cratebouncer]\nauth_type = trust\n[databases]\n"
				   "a = host=h\nc = host=h server_kind=cratedb\n"
				   "p = host=h server_kind=PostgreSQL\n");

	ck_assert_int_eq(cfg_find_db(cfg, "a")->server_kind, SERVER_KIND_AUTO);
	ck_assert_int_eq(cfg_find_db(cfg, "c")->server_kind, SERVER_KIND_CRATEDB);
	ck_assert_int_eq(cfg_find_db(cfg, "p")->server_kind, SERVER_KIND_POSTGRESQL);
	cfg_free(cfg);
	cfg = cfg_parse_string("[cratebouncer]\nauth_type = trust\n[databases]\n"
			       "x = host=h server_kind=mysql\n",
			       NAME);
	ck_assert_uint_eq(cfg->nerrors, 1);
	ck_assert_ptr_nonnull(strstr(
		cfg->errors[0], "server_kind: \"mysql\" is not one of: auto, cratedb, postgresql"));
	cfg_free(cfg);
}
END_TEST

START_TEST(test_db_fallbacks)
{
	struct cfg *cfg = parse_ok(
		"[cratebouncer]\nauth_type = trust\n"
		"default_pool_size = 30\nmin_pool_size = 3\n"
		"server_tls_sslmode = require\nserver_tls_ca_file = /global/ca.crt\n"
		"[databases]\n"
		"plain = host=a\n"
		"custom = host=b pool_size=5 min_pool_size=0 sslmode=disable sslrootcert=/db/ca.crt\n"
		"* = host=fallback port=5433\n"
		"emptyca = host=c sslrootcert=''\n");
	const struct cfg_db *plain = cfg_find_db(cfg, "plain"),
			    *custom = cfg_find_db(cfg, "custom");
	const struct cfg_db *star = cfg_find_db(cfg, "*");

	ck_assert_ptr_nonnull(plain);
	ck_assert_ptr_nonnull(custom);
	ck_assert_ptr_nonnull(star);
	ck_assert_str_eq(plain->name, "plain");
	ck_assert_str_eq(custom->name, "custom");
	ck_assert_str_eq(star->name, "*");
	ck_assert_str_eq(star->host, "fallback");
	ck_assert_int_eq(star->port, 5433);
	/* Any other name, even the empty one, finds the '*' entry. */
	ck_assert_ptr_eq(cfg_find_db(cfg, "anything"), star);
	ck_assert_ptr_eq(cfg_find_db(cfg, "Plain"), star);
	ck_assert_ptr_eq(cfg_find_db(cfg, ""), star);

	ck_assert_int_eq(cfg_db_pool_size(cfg, plain), 30);
	ck_assert_int_eq(cfg_db_min_pool_size(cfg, plain), 3);
	ck_assert_int_eq(cfg_db_sslmode(cfg, plain), SSLMODE_REQUIRE);
	ck_assert_str_eq(cfg_db_ca_file(cfg, plain), "/global/ca.crt");

	ck_assert_int_eq(cfg_db_pool_size(cfg, custom), 5);
	ck_assert_int_eq(cfg_db_min_pool_size(cfg, custom), 0); /* 0 is a value, not "unset" */
	ck_assert_int_eq(cfg_db_sslmode(cfg, custom), SSLMODE_DISABLE);
	ck_assert_str_eq(cfg_db_ca_file(cfg, custom), "/db/ca.crt");

	ck_assert_str_eq(cfg_db_ca_file(cfg, cfg_find_db(cfg, "emptyca")), "/global/ca.crt");
	cfg_free(cfg);

	/* The exact name wins even when '*' comes first; no CA file at all is NULL. */
	cfg = parse_ok("[cratebouncer]\nauth_type = trust\n"
		       "[databases]\n* = host=fallback\nexact = host=e\n");
	ck_assert_str_eq(cfg_find_db(cfg, "exact")->host, "e");
	ck_assert_str_eq(cfg_find_db(cfg, "other")->host, "fallback");
	ck_assert_ptr_null(cfg_db_ca_file(cfg, cfg_find_db(cfg, "exact")));
	ck_assert_int_eq(cfg_db_sslmode(cfg, cfg_find_db(cfg, "exact")), SSLMODE_VERIFY_FULL);
	ck_assert_int_eq(cfg_db_pool_size(cfg, cfg_find_db(cfg, "exact")), 20);
	ck_assert_int_eq(cfg_db_min_pool_size(cfg, cfg_find_db(cfg, "exact")), 0);
	cfg_free(cfg);

	/* Without '*', unknown names find nothing. */
	cfg = parse_ok("[cratebouncer]\nauth_type = trust\n[databases]\nexact = host=e\n");
	ck_assert_ptr_null(cfg_find_db(cfg, "other"));
	ck_assert_ptr_null(cfg_find_db(cfg, "*"));
	cfg_free(cfg);
}
END_TEST

START_TEST(test_long_lines)
{
	/* inih reads into a 200-byte buffer; longer lines must parse all the same. */
	char ca[200], query[260], pw[320], text[4096], line[512];
	struct cfg *cfg;
	const struct cfg_db *db;
	static const char *const errs[] = {
		NAME
		":6: database \"next\": port: \"notanumber\" must be an integer from 1 to 65535",
		NAME ":9: unknown option \"bogus\" in [cratebouncer]", NULL
	};

	snprintf(ca, sizeof(ca), "/very/long/path/%0150d/ca.crt", 0);
	snprintf(query, sizeof(query), "SELECT '%0220d'", 7);
	memset(pw, 'z', 300);
	pw[300] = '\0';
	snprintf(line, sizeof(line),
		 "long = host=db.example.com port=6543 dbname=longdb user=crate "
		 "password='a long password with spaces and \\'quotes\\'' sslmode=verify-ca "
		 "sslrootcert=%s pool_size=7\n",
		 ca);
	ck_assert_uint_gt(strlen(line), 300);
	snprintf(text, sizeof(text),
		 "[cratebouncer]\n"                 /* 1 */
		 "auth_type = trust\n"              /* 2 */
		 "server_reset_query = %s\n"        /* 3 */
		 "[databases]\n"                    /* 4 */
		 "%s"                               /* 5 */
		 "next = host=n port=notanumber\n"  /* 6 */
		 "crlf = host=c sslrootcert=%s\r\n" /* 7 */
		 "[cratebouncer]\n"                 /* 8 */
		 "bogus = %s%s\n"                   /* 9 */
		 "[databases]\n"                    /* 10 */
		 "last = host=l password=%s",       /* 11, no newline */
		 query, line, ca, ca, ca, pw);
	cfg = cfg_parse_string(text, NAME);
	expect_errors(cfg, errs);
	ck_assert_str_eq(cfg->server_reset_query, query);
	ck_assert_uint_eq(cfg->ndbs, 3);
	db = cfg_find_db(cfg, "long");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "db.example.com");
	ck_assert_int_eq(db->port, 6543);
	ck_assert_str_eq(db->dbname, "longdb");
	ck_assert_str_eq(db->user, "crate");
	ck_assert_str_eq(db->password, "a long password with spaces and 'quotes'");
	ck_assert_int_eq(db->sslmode, SSLMODE_VERIFY_CA);
	ck_assert_str_eq(db->sslrootcert, ca);
	ck_assert_int_eq(db->pool_size, 7);
	db = cfg_find_db(cfg, "crlf");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->sslrootcert, ca);
	db = cfg_find_db(cfg, "last");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->password, pw);
	cfg_free(cfg);
}
END_TEST

START_TEST(test_long_line_boundary)
{
	/* Lines of 195 to 205 bytes (newline included) straddle inih's 200-byte buffer;
	 * each is parsed whole, and line numbers stay right. */
	char text[8192], *p = text, name[16], want[256];
	struct cfg *cfg;

	p += sprintf(p, "[cratebouncer]\nauth_type = trust\n[databases]\n");
	for (int len = 195; len <= 205; len++) {
		int n = sprintf(p, "b%d = host=h password=", len);
		memset(p + n, 'x', (size_t)(len - n - 1));
		p[len - 1] = '\n';
		p += len;
	}
	p += sprintf(p, "bad = port=1\n"); /* line 3 + 11 + 1 = 15 */
	*p = '\0';
	cfg = cfg_parse_string(text, NAME);
	ck_assert_uint_eq(cfg->nerrors, 1);
	ck_assert_str_eq(cfg->errors[0], NAME ":15: database \"bad\": host= is required");
	ck_assert_uint_eq(cfg->ndbs, 11);
	for (int len = 195; len <= 205; len++) {
		const struct cfg_db *db;
		int n;

		snprintf(name, sizeof(name), "b%d", len);
		n = snprintf(want, sizeof(want), "%s = host=h password=", name);
		memset(want, 'x', (size_t)(len - n - 1));
		want[len - n - 1] = '\0';
		db = cfg_find_db(cfg, name);
		ck_assert_msg(db != NULL, "%s missing", name);
		ck_assert_str_eq(db->name, name);
		ck_assert_str_eq(db->password, want);
	}
	cfg_free(cfg);
}
END_TEST

START_TEST(test_cfg_load)
{
	char dir[] = "/tmp/check_cfg.XXXXXX", text[1024];
	char *path, *sub, *pw, *pw2, *pw3, *empty, *blank, *cfgpath;
	struct cfg *cfg;
	const struct cfg_db *db;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* The exact documented config, from a file: errors name the path. */
	snprintf(text, sizeof(text), "%sbogus = 1\n", doc_config);
	path = write_file(dir, "doc.ini", text);
	cfg = cfg_load(path);
	ck_assert_uint_eq(cfg->nerrors, 1);
	snprintf(text, sizeof(text), "%s:18: unknown option \"bogus\" in [cratebouncer]", path);
	ck_assert_str_eq(cfg->errors[0], text);
	ck_assert_int_eq(cfg->listen_port, 6432);
	ck_assert_str_eq(cfg_find_db(cfg, "doc")->password, "secret");
	cfg_free(cfg);
	remove_file(path);

	/* password_file: relative to the config's directory, or absolute. */
	sub = malloc(strlen(dir) + 5);
	ck_assert_ptr_nonnull(sub);
	sprintf(sub, "%s/sub", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	pw = write_file(dir, "pw.txt", "s3cret\nsecond line is ignored\n");
	pw2 = write_file(dir, "pw2.txt", "abs secret");
	pw3 = write_file(sub, "pw3.txt", "crlf\r\n");
	empty = write_file(dir, "empty.txt", "");
	blank = write_file(dir, "blank.txt", "\n");
	snprintf(text, sizeof(text),
		 "[cratebouncer]\n"                                /* 1 */
		 "auth_type = trust\n"                             /* 2 */
		 "[databases]\n"                                   /* 3 */
		 "rel = host=h password_file=pw.txt\n"             /* 4 */
		 "abs = host=h password_file=%s\n"                 /* 5 */
		 "subdir = host=h password_file='sub/pw3.txt'\n"   /* 6 */
		 "empty = host=h password_file=empty.txt\n"        /* 7 */
		 "blank = host=h password_file=blank.txt\n"        /* 8 */
		 "missing = host=h password_file=missing.txt\n"    /* 9 */
		 "both = host=h password=x password_file=pw.txt\n" /* 10 */
		 "after = host=h\n",                               /* 11 */
		 pw2);
	cfgpath = write_file(dir, "cb.ini", text);
	cfg = cfg_load(cfgpath);
	{
		char e7[512], e8[512], e9[512], e10[512];
		const char *const errs[] = { e7, e8, e9, e10, NULL };

		snprintf(e7, sizeof(e7),
			 "%s:7: database \"empty\": password_file %s/empty.txt: file is empty",
			 cfgpath, dir);
		snprintf(e8, sizeof(e8),
			 "%s:8: database \"blank\": password_file %s/blank.txt: file is empty",
			 cfgpath, dir);
		snprintf(
			e9, sizeof(e9),
			"%s:9: database \"missing\": password_file %s/missing.txt: No such file or directory",
			cfgpath, dir);
		snprintf(e10, sizeof(e10),
			 "%s:10: database \"both\": give password= or password_file=, not both",
			 cfgpath);
		expect_errors(cfg, errs);
	}
	ck_assert_uint_eq(cfg->ndbs, 4);
	db = cfg_find_db(cfg, "rel");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->password, "s3cret");
	db = cfg_find_db(cfg, "abs");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->password, "abs secret");
	db = cfg_find_db(cfg, "subdir");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->password, "crlf");
	ck_assert_ptr_nonnull(cfg_find_db(cfg, "after"));
	ck_assert_ptr_null(cfg_find_db(cfg, "empty"));
	ck_assert_ptr_null(cfg_find_db(cfg, "both"));
	cfg_free(cfg);

	/* A config given by a relative path: its directory is ".". */
	{
		char cwd[4096];
		ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
		ck_assert_int_eq(chdir(dir), 0);
		cfg = cfg_load("cb.ini");
		ck_assert_uint_eq(cfg->nerrors, 4);
		ck_assert_str_eq(
			cfg->errors[0],
			"cb.ini:7: database \"empty\": password_file ./empty.txt: file is empty");
		ck_assert_str_eq(cfg_find_db(cfg, "rel")->password, "s3cret");
		ck_assert_str_eq(cfg_find_db(cfg, "subdir")->password, "crlf");
		cfg_free(cfg);
		ck_assert_int_eq(chdir(cwd), 0);
	}

	/* Without a file (cfg_parse_string), relative paths are not rewritten. */
	cfg = cfg_parse_string("[cratebouncer]\nauth_type = trust\n[databases]\n"
			       "x = host=h password_file=no-such-relative-file\n",
			       NAME);
	ck_assert_uint_eq(cfg->nerrors, 1);
	ck_assert_str_eq(cfg->errors[0],
			 NAME ":4: database \"x\": password_file no-such-relative-file: "
			      "No such file or directory");
	cfg_free(cfg);

	remove_file(cfgpath);
	remove_file(pw);
	remove_file(pw2);
	remove_file(pw3);
	remove_file(empty);
	remove_file(blank);
	ck_assert_int_eq(rmdir(sub), 0);
	free(sub);

	/* A config file that cannot be read: one error at line 0, defaults in place. */
	snprintf(text, sizeof(text), "%s/nonexistent.ini", dir);
	cfg = cfg_load(text);
	ck_assert_uint_eq(cfg->nerrors, 1);
	{
		char want[1200];
		snprintf(want, sizeof(want), "%s:0: cannot read config: No such file or directory",
			 text);
		ck_assert_str_eq(cfg->errors[0], want);
	}
	ck_assert_int_eq(cfg->listen_port, 6432);
	ck_assert_uint_eq(cfg->ndbs, 0);
	cfg_free(cfg);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_list_has)
{
	const char *list = "admin, stats ,x";

	ck_assert(cfg_list_has(list, "admin"));
	ck_assert(cfg_list_has(list, "stats"));
	ck_assert(cfg_list_has(list, "x"));
	ck_assert(!cfg_list_has(list, "adm"));
	ck_assert(!cfg_list_has(list, "admins"));
	ck_assert(!cfg_list_has(list, "Admin"));
	ck_assert(!cfg_list_has(list, "admin,"));
	ck_assert(!cfg_list_has(list, "stats "));
	ck_assert(!cfg_list_has(list, "admin, stats"));
	ck_assert(!cfg_list_has(list, "y"));
	ck_assert(!cfg_list_has(list, ""));
	ck_assert(cfg_list_has("a\tb", "b"));
	ck_assert(cfg_list_has(",,a,,", "a"));
	ck_assert(!cfg_list_has("", "admin"));
	ck_assert(!cfg_list_has(NULL, "admin"));
}
END_TEST

/* Tests below expose bugs in src/core/cfg.c (see each comment). They fail until it is fixed;
 * CK_RUN_CASE=core runs the rest. */

/* BUG (cfg.c handle_long_line): a line of 200+ bytes is checked for '=' before it is
 * recognised as a comment or blank line, so a long comment without '=' (or a long
 * whitespace-only line) is reported as "syntax error". Also, inih strips an inline
 * " ; comment" from short lines, but the long-line path keeps it in the value, so the
 * same [databases] entry fails ("expected key=value") only once it is long. */
START_TEST(test_bug_long_comment_lines)
{
	char text[2048], comment[300], ca[200];
	struct cfg *cfg;

	memset(comment, 'c', 260);
	comment[260] = '\0';
	snprintf(text, sizeof(text), "[cratebouncer]\nauth_type = trust\n; %s\n# %s\n", comment,
		 comment);
	cfg = parse_ok(text);
	cfg_free(cfg);

	memset(comment, ' ', 260);
	snprintf(text, sizeof(text), "[cratebouncer]\nauth_type = trust\n%s\n", comment);
	cfg = parse_ok(text);
	cfg_free(cfg);

	snprintf(ca, sizeof(ca), "/very/long/path/%0150d/ca.crt", 0);
	snprintf(text, sizeof(text),
		 "[cratebouncer]\nauth_type = trust\n[databases]\n"
		 "short = host=h ; primary\nlong = host=h sslrootcert=%s ; primary\n",
		 ca);
	cfg = parse_ok(text);
	ck_assert_str_eq(cfg_find_db(cfg, "short")->host, "h");
	ck_assert_str_eq(cfg_find_db(cfg, "long")->sslrootcert, ca);
	cfg_free(cfg);
}
END_TEST

/* BUG (cfg.c cfg_ini_reader): inih skips a UTF-8 byte order mark on line 1
 * (INI_ALLOW_BOM), but the reader sees "\xEF\xBB\xBF[cratebouncer]" first: it reports
 * line 1 as a syntax error, blanks it, and every following key lands in section "". */
START_TEST(test_bug_utf8_bom)
{
	struct cfg *cfg = parse_ok(
		"\xEF\xBB\xBF[cratebouncer]\nauth_type = trust\n[databases]\nx = host=h\n");

	ck_assert_int_eq(cfg->auth_type, AUTH_TRUST);
	ck_assert_uint_eq(cfg->ndbs, 1);
	cfg_free(cfg);
}
END_TEST

/* BUG (cfg.c parse_with_dir): inih's own error line (here "[databases" without ']') is
 * reported only when nothing else was, and inih then keeps the previous section, so the
 * entries below become "unknown option" errors: the real cause is never named. */
START_TEST(test_bug_unterminated_section)
{
	struct cfg *cfg = cfg_parse_string(
		"[cratebouncer]\nauth_type = trust\n[databases\ndoc = host=x\n", NAME);
	bool found = false;
	char *e = all_errors(cfg);

	for (size_t i = 0; i < cfg->nerrors; i++)
		if (strncmp(cfg->errors[i], NAME ":3: ", strlen(NAME ":3: ")) == 0)
			found = true;
	ck_assert_msg(found, "line 3 \"[databases\" is not reported:%s", e);
	free(e);
	cfg_free(cfg);
}
END_TEST

/* BUG (cfg.c parse_db): values are read into char val[1024] and silently cut, so a
 * longer password (or sslrootcert path) is stored truncated with no error. */
START_TEST(test_bug_db_value_truncated)
{
	char text[2048], pw[1501];
	struct cfg *cfg;

	memset(pw, 'p', 1500);
	pw[1500] = '\0';
	snprintf(text, sizeof(text),
		 "[cratebouncer]\nauth_type = trust\n[databases]\nx = host=h password=%s\n", pw);
	cfg = cfg_parse_string(text, NAME);
	if (cfg->nerrors == 0) {
		ck_assert_uint_eq(cfg->ndbs, 1);
		ck_assert_uint_eq(strlen(cfg->dbs[0].password), 1500);
	}
	cfg_free(cfg);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cfg");
	TCase *tc = tcase_create("core");
	TCase *tc_bugs = tcase_create("bugs");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_doc_config);
	tcase_add_test(tc, test_db_server_kind);
	tcase_add_test(tc, test_option_table);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_pgbouncer_alias);
	tcase_add_test(tc, test_error_lines);
	tcase_add_test(tc, test_more_errors);
	tcase_add_test(tc, test_durations);
	tcase_add_test(tc, test_pool_mode_precedence);
	tcase_add_test(tc, test_every_option_once);
	tcase_add_test(tc, test_bools_ints_enums);
	tcase_add_test(tc, test_db_entries);
	tcase_add_test(tc, test_db_fallbacks);
	tcase_add_test(tc, test_long_lines);
	tcase_add_test(tc, test_long_line_boundary);
	tcase_add_test(tc, test_cfg_load);
	tcase_add_test(tc, test_list_has);
	tcase_add_test(tc_bugs, test_bug_long_comment_lines);
	tcase_add_test(tc_bugs, test_bug_utf8_bom);
	tcase_add_test(tc_bugs, test_bug_unterminated_section);
	tcase_add_test(tc_bugs, test_bug_db_value_truncated);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, tc_bugs);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
