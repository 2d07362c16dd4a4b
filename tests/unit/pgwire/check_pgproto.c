/* Unit tests for pgproto.c: strict startup packet parsing, backend message parsers,
 * and the exact bytes every message builder appends. */
#include <check.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgwire/pgproto.h"

/* A string literal as (pointer, length without the compiler's final NUL). Literals are
 * split with "" "" wherever a hex or octal escape is followed by a hex digit. */
#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

static size_t mk_startup(uint8_t *pkt, uint32_t version, const void *body, size_t blen);
static void put_be32(uint8_t *p, uint32_t v);
static void expect_bytes(struct evbuffer *b, const uint8_t *exp, size_t len);
static void expect_reject(const uint8_t *pkt, size_t len, const char *why);

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A startup-class packet: correct length word, version, then body. */
static size_t mk_startup(uint8_t *pkt, uint32_t version, const void *body, size_t blen)
{
	put_be32(pkt, (uint32_t)(8 + blen));
	put_be32(pkt + 4, version);
	if (blen)
		memcpy(pkt + 8, body, blen);
	return 8 + blen;
}

/* The buffer holds exactly the expected bytes; it is drained afterwards. */
static void expect_bytes(struct evbuffer *b, const uint8_t *exp, size_t len)
{
	size_t have = evbuffer_get_length(b);

	ck_assert_uint_eq(have, len);
	ck_assert_mem_eq(evbuffer_pullup(b, -1), exp, len);
	evbuffer_drain(b, have);
}

/* pg_parse_startup must fail with exactly this message. */
static void expect_reject(const uint8_t *pkt, size_t len, const char *why)
{
	struct pg_startup st;
	const char *err = NULL;

	ck_assert_int_eq(pg_parse_startup(pkt, len, &st, &err), -1);
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(err, why);
}

START_TEST(test_get_u32)
{
	static const uint8_t b[] = { 0x00, 0x03, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef };

	ck_assert_uint_eq(pg_get_u32(b), PG_PROTO_V3);
	ck_assert_uint_eq(pg_get_u32(b + 4), 0xdeadbeefu);
}
END_TEST

START_TEST(test_startup_normal)
{
	static const char body[] = "user\0crate\0database\0doc\0application_name\0psql\0";
	uint8_t pkt[128];
	size_t len = mk_startup(pkt, PG_PROTO_V3, body, sizeof(body)); /* + terminator */
	struct pg_startup st;
	const char *err = NULL;

	ck_assert_uint_eq(len, 8 + 47);
	ck_assert_int_eq(pg_parse_startup(pkt, len, &st, &err), 0);
	ck_assert_int_eq(st.kind, PG_STARTUP_NORMAL);
	ck_assert_uint_eq(st.version, PG_PROTO_V3);
	ck_assert_str_eq(st.user, "crate");
	ck_assert_str_eq(st.database, "doc");
	/* Fields point into the packet. */
	ck_assert_ptr_eq(st.user, (const char *)pkt + 8 + 5);
	ck_assert_ptr_eq(st.database, (const char *)pkt + 8 + 20);
	ck_assert_ptr_eq(st.params, (const char *)pkt + 8);
	ck_assert_uint_eq(st.params_len, sizeof(body) - 1);
	ck_assert_uint_eq(st.cancel_pid, 0);
	ck_assert_uint_eq(st.cancel_key, 0);

	ck_assert_str_eq(pg_startup_param(&st, "application_name"), "psql");
	ck_assert_str_eq(pg_startup_param(&st, "user"), "crate");
	ck_assert_str_eq(pg_startup_param(&st, "database"), "doc");
	ck_assert_ptr_null(pg_startup_param(&st, "options"));
	ck_assert_ptr_null(pg_startup_param(&st, "application"));
	ck_assert_ptr_null(pg_startup_param(&st, ""));
	/* Values are not keys. */
	ck_assert_ptr_null(pg_startup_param(&st, "crate"));
	ck_assert_ptr_null(pg_startup_param(&st, "psql"));
}
END_TEST

/* NegotiateProtocolVersion for 3.2 or _pq_ options, as PostgreSQL: 3.0, the options named;
 * nothing for a plain 3.0 startup. */
START_TEST(test_put_negotiate)
{
	static const char plain[] = "user\0crate\0_pq_x\0v\0";
	static const char opts[] = "user\0crate\0_pq_.a\0_pq_.v\0x\0_pq_.b\0_pq_.c\0"
				   "1\0";
	uint8_t pkt[128];
	struct pg_startup st;
	const char *err = NULL;
	struct evbuffer *b = evbuffer_new();
	size_t len = mk_startup(pkt, PG_PROTO_V3, plain, sizeof(plain));

	ck_assert_int_eq(pg_parse_startup(pkt, len, &st, &err), 0);
	ck_assert(!pg_put_negotiate(b, &st));
	ck_assert_uint_eq(evbuffer_get_length(b), 0);
	len = mk_startup(pkt, PG_PROTO_V3 + 2, plain, sizeof(plain));
	ck_assert_int_eq(pg_parse_startup(pkt, len, &st, &err), 0);
	ck_assert(pg_put_negotiate(b, &st));
	expect_bytes(b, LIT("v\0\0\0\x0c\0\x03\0\0\0\0\0\0"));
	len = mk_startup(pkt, PG_PROTO_V3, opts, sizeof(opts));
	ck_assert_int_eq(pg_parse_startup(pkt, len, &st, &err), 0);
	ck_assert(pg_put_negotiate(b, &st));
	expect_bytes(b, LIT("v\0\0\0\x1a\0\x03\0\0\0\0\0\x02_pq_.a\0_pq_.c\0"));
	evbuffer_free(b);
}
END_TEST

START_TEST(test_startup_database_defaults_to_user)
{
	static const char only_user[] = "user\0crate\0";
	static const char empty_db[] = "database\0\0user\0bob\0options\0\0";
	uint8_t pkt[128];
	size_t len;
	struct pg_startup st;
	const char *err = NULL;

	len = mk_startup(pkt, PG_PROTO_V3, only_user, sizeof(only_user));
	ck_assert_int_eq(pg_parse_startup(pkt, len, &st, &err), 0);
	ck_assert_str_eq(st.user, "crate");
	ck_assert_ptr_eq(st.database, st.user);
	ck_assert_uint_eq(st.params_len, sizeof(only_user) - 1);

	/* An empty database name also means the user name; empty values are fine. */
	len = mk_startup(pkt, PG_PROTO_V3, empty_db, sizeof(empty_db));
	ck_assert_int_eq(pg_parse_startup(pkt, len, &st, &err), 0);
	ck_assert_str_eq(st.user, "bob");
	ck_assert_ptr_eq(st.database, st.user);
	ck_assert_str_eq(pg_startup_param(&st, "options"), "");
	ck_assert_str_eq(pg_startup_param(&st, "database"), "");
}
END_TEST

START_TEST(test_startup_ssl_gss_cancel)
{
	static const uint8_t ssl[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	static const uint8_t gss[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30 };
	static const uint8_t cancel[] = { 0,    0,    0,    16,   0x04, 0xd2, 0x16, 0x2e,
					  0x00, 0x00, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef };
	struct pg_startup st;
	const char *err = NULL;

	ck_assert_int_eq(pg_parse_startup(ssl, sizeof(ssl), &st, &err), 0);
	ck_assert_int_eq(st.kind, PG_STARTUP_SSL);
	ck_assert_uint_eq(st.version, PG_SSL_REQUEST);
	ck_assert_ptr_null(st.user);
	ck_assert_ptr_null(st.database);
	ck_assert_ptr_null(st.params);
	ck_assert_uint_eq(st.params_len, 0);

	ck_assert_int_eq(pg_parse_startup(gss, sizeof(gss), &st, &err), 0);
	ck_assert_int_eq(st.kind, PG_STARTUP_GSSENC);
	ck_assert_uint_eq(st.version, PG_GSSENC_REQUEST);

	ck_assert_int_eq(pg_parse_startup(cancel, sizeof(cancel), &st, &err), 0);
	ck_assert_int_eq(st.kind, PG_STARTUP_CANCEL);
	ck_assert_uint_eq(st.version, PG_CANCEL_REQUEST);
	ck_assert_uint_eq(st.cancel_pid, 12345);
	ck_assert_uint_eq(st.cancel_key, 0xdeadbeefu);
	ck_assert_ptr_null(st.user);
}
END_TEST

START_TEST(test_startup_bad_lengths)
{
	static const char body[] = "user\0crate\0";
	static const uint8_t tiny[] = { 0, 0, 0, 4 };
	static const uint8_t seven[] = { 0, 0, 0, 7, 0x00, 0x03, 0x00 };
	static const uint8_t ssl12[] = { 0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 0 };
	static const uint8_t gss12[] = { 0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x30, 0, 0, 0, 0 };
	static const uint8_t cancel12[] = { 0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1 };
	static const uint8_t cancel20[] = { 0, 0, 0, 20, 0x04, 0xd2, 0x16, 0x2e, 0, 0,
					    0, 1, 0, 0,  0,    2,    0,    0,    0, 3 };
	uint8_t pkt[64];
	size_t len = mk_startup(pkt, PG_PROTO_V3, body, sizeof(body));

	/* The length word must equal the bytes handed over, in both directions. */
	put_be32(pkt, (uint32_t)len + 1);
	expect_reject(pkt, len, "invalid startup packet length");
	put_be32(pkt, (uint32_t)len - 1);
	expect_reject(pkt, len, "invalid startup packet length");
	put_be32(pkt, 0);
	expect_reject(pkt, len, "invalid startup packet length");
	put_be32(pkt, 0xffffffffu);
	expect_reject(pkt, len, "invalid startup packet length");

	expect_reject(tiny, sizeof(tiny), "startup packet too short");
	expect_reject(seven, sizeof(seven), "startup packet too short");
	expect_reject(tiny, 0, "startup packet too short");

	expect_reject(ssl12, sizeof(ssl12), "invalid SSLRequest/GSSENCRequest length");
	expect_reject(gss12, sizeof(gss12), "invalid SSLRequest/GSSENCRequest length");
	expect_reject(cancel12, sizeof(cancel12), "invalid CancelRequest length");
	expect_reject(cancel20, sizeof(cancel20), "invalid CancelRequest length");
	/* A CancelRequest cut to its first 8 bytes, length word adjusted. */
	{
		uint8_t c8[8];
		memcpy(c8, cancel12, 8);
		c8[3] = 8;
		expect_reject(c8, sizeof(c8), "invalid CancelRequest length");
	}
}
END_TEST

START_TEST(test_startup_max_length)
{
	/* Exactly PG_STARTUP_MAX bytes is accepted, one more is not. */
	uint8_t *pkt = malloc(PG_STARTUP_MAX + 1), *body = malloc(PG_STARTUP_MAX);
	size_t blen = PG_STARTUP_MAX - 8, vlen;
	struct pg_startup st;
	const char *err = NULL;

	ck_assert_ptr_nonnull(pkt);
	ck_assert_ptr_nonnull(body);
	/* "user\0crate\0application_name\0" + value + "\0" + "\0" */
	memcpy(body, "user\0crate\0application_name\0", 28);
	vlen = blen - 28 - 2;
	memset(body + 28, 'a', vlen);
	body[28 + vlen] = '\0';
	body[28 + vlen + 1] = '\0';
	ck_assert_uint_eq(mk_startup(pkt, PG_PROTO_V3, body, blen), PG_STARTUP_MAX);
	ck_assert_int_eq(pg_parse_startup(pkt, PG_STARTUP_MAX, &st, &err), 0);
	ck_assert_uint_eq(strlen(pg_startup_param(&st, "application_name")), vlen);

	memset(body + 28, 'a', vlen + 1);
	body[28 + vlen + 1] = '\0';
	body[28 + vlen + 2] = '\0';
	ck_assert_uint_eq(mk_startup(pkt, PG_PROTO_V3, body, blen + 1), PG_STARTUP_MAX + 1);
	expect_reject(pkt, PG_STARTUP_MAX + 1, "invalid startup packet length");
	free(pkt);
	free(body);
}
END_TEST

START_TEST(test_startup_bad_protocol)
{
	static const char body[] = "user\0crate\0";
	uint8_t pkt[64];
	size_t len;

	len = mk_startup(pkt, 0x00020000u, body, sizeof(body));
	expect_reject(pkt, len, "unsupported frontend protocol (only 3.x is supported)");
	len = mk_startup(pkt, 0x00040000u, body, sizeof(body));
	expect_reject(pkt, len, "unsupported frontend protocol (only 3.x is supported)");
	len = mk_startup(pkt, 0, body, sizeof(body));
	expect_reject(pkt, len, "unsupported frontend protocol (only 3.x is supported)");
	/* A neighbour of the special request codes is not one of them. */
	len = mk_startup(pkt, PG_SSL_REQUEST + 10, body, sizeof(body));
	expect_reject(pkt, len, "unsupported frontend protocol (only 3.x is supported)");
}
END_TEST

START_TEST(test_startup_bad_params)
{
	uint8_t pkt[128];
	size_t len;

	/* No user at all, and an empty user. */
	len = mk_startup(pkt, PG_PROTO_V3, LIT("database\0doc\0\0"));
	expect_reject(pkt, len, "no user name in the startup packet");
	len = mk_startup(pkt, PG_PROTO_V3, LIT("user\0\0database\0doc\0\0"));
	expect_reject(pkt, len, "no user name in the startup packet");
	/* Only the terminator. */
	len = mk_startup(pkt, PG_PROTO_V3, LIT("\0"));
	expect_reject(pkt, len, "no user name in the startup packet");
	/* "User" is not "user". */
	len = mk_startup(pkt, PG_PROTO_V3, LIT("User\0crate\0\0"));
	expect_reject(pkt, len, "no user name in the startup packet");

	/* Not NUL-terminated: no body at all, a missing terminator, a cut value. */
	len = mk_startup(pkt, PG_PROTO_V3, NULL, 0);
	expect_reject(pkt, len, "startup packet is not NUL-terminated");
	len = mk_startup(pkt, PG_PROTO_V3, LIT("user\0crate"));
	expect_reject(pkt, len, "startup packet is not NUL-terminated");
	len = mk_startup(pkt, PG_PROTO_V3, LIT("user\0crate\0\0x"));
	expect_reject(pkt, len, "startup packet is not NUL-terminated");

	/* A key whose NUL is the last byte has no value (and no terminator). */
	len = mk_startup(pkt, PG_PROTO_V3, LIT("user\0crate\0options\0"));
	expect_reject(pkt, len, "startup parameter without a value");
	len = mk_startup(pkt, PG_PROTO_V3, LIT("user\0"));
	expect_reject(pkt, len, "startup parameter without a value");
	/* A key whose value swallows the terminator: whatever the reading, no terminator. */
	len = mk_startup(pkt, PG_PROTO_V3, LIT("user\0crate\0options\0\0"));
	expect_reject(pkt, len, "startup packet has data after its terminator");

	/* Trailing bytes after the terminating empty name. */
	len = mk_startup(pkt, PG_PROTO_V3, LIT("user\0crate\0\0junk\0"));
	expect_reject(pkt, len, "startup packet has data after its terminator");
	len = mk_startup(pkt, PG_PROTO_V3, LIT("user\0crate\0\0\0"));
	expect_reject(pkt, len, "startup packet has data after its terminator");
	len = mk_startup(pkt, PG_PROTO_V3, LIT("user\0crate\0\0user\0evil\0\0"));
	expect_reject(pkt, len, "startup packet has data after its terminator");
}
END_TEST

START_TEST(test_startup_param_on_special)
{
	static const uint8_t ssl[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	struct pg_startup st;
	const char *err = NULL;

	ck_assert_int_eq(pg_parse_startup(ssl, sizeof(ssl), &st, &err), 0);
	ck_assert_ptr_null(pg_startup_param(&st, "user"));
}
END_TEST

START_TEST(test_parse_error)
{
	static const char full[] = "SFEHLER\0VERROR\0C28P01\0Mpassword authentication failed\0"
				   "Dsome detail\0Hsome hint\0Pfoo\0Fauth.c\0";
	struct pg_error e;

	ck_assert_int_eq(pg_parse_error((const uint8_t *)full, sizeof(full), &e), 0);
	ck_assert_str_eq(e.severity, "ERROR"); /* V (never localized) wins over S */
	ck_assert_str_eq(e.code, "28P01");
	ck_assert_str_eq(e.message, "password authentication failed");
	ck_assert_str_eq(e.detail, "some detail");
	ck_assert_str_eq(e.hint, "some hint");
	ck_assert_ptr_eq(e.code, full + 16); /* points into the body */

	/* V before S: still V. */
	ck_assert_int_eq(pg_parse_error(LIT("VFATAL\0SFATALE\0\0"), &e), 0);
	ck_assert_str_eq(e.severity, "FATAL");

	/* Only S (pre-9.6 servers): S is used; missing fields are "". */
	ck_assert_int_eq(pg_parse_error(LIT("SFATAL\0Mno\0\0"), &e), 0);
	ck_assert_str_eq(e.severity, "FATAL");
	ck_assert_str_eq(e.message, "no");
	ck_assert_str_eq(e.code, "");
	ck_assert_str_eq(e.detail, "");
	ck_assert_str_eq(e.hint, "");

	/* Only the terminator. */
	ck_assert_int_eq(pg_parse_error(LIT("\0"), &e), 0);
	ck_assert_str_eq(e.severity, "");
	ck_assert_str_eq(e.code, "");
	ck_assert_str_eq(e.message, "");
	ck_assert_str_eq(e.detail, "");
	ck_assert_str_eq(e.hint, "");

	/* Unterminated: empty, a cut field value. */
	ck_assert_int_eq(pg_parse_error((const uint8_t *)"", 0, &e), -1);
	ck_assert_str_eq(e.message, "");
	ck_assert_int_eq(pg_parse_error(LIT("SERROR\0Mcut"), &e), -1);
	ck_assert_int_eq(pg_parse_error(LIT("SERROR\0M"), &e), -1);
	ck_assert_int_eq(pg_parse_error(LIT("M"), &e), -1);
}
END_TEST

START_TEST(test_parse_auth)
{
	uint32_t code = 99;
	const uint8_t *data = NULL;
	size_t dlen = 99;
	static const uint8_t ok[] = { 0, 0, 0, 0 };
	static const uint8_t md5[] = { 0, 0, 0, 5, 0xaa, 0xbb, 0xcc, 0xdd };
	static const char sasl[] = "\0\0\0\x0a"
				   "SCRAM-SHA-256\0"; /* + list terminator */

	ck_assert_int_eq(pg_parse_auth(ok, sizeof(ok), &code, &data, &dlen), 0);
	ck_assert_uint_eq(code, PG_AUTH_OK);
	ck_assert_ptr_eq(data, ok + 4);
	ck_assert_uint_eq(dlen, 0);

	ck_assert_int_eq(pg_parse_auth(md5, sizeof(md5), &code, &data, &dlen), 0);
	ck_assert_uint_eq(code, PG_AUTH_MD5);
	ck_assert_uint_eq(dlen, 4);
	ck_assert_mem_eq(data, "\xaa\xbb\xcc\xdd", 4);

	ck_assert_int_eq(pg_parse_auth((const uint8_t *)sasl, sizeof(sasl), &code, &data, &dlen),
			 0);
	ck_assert_uint_eq(code, PG_AUTH_SASL);
	ck_assert_uint_eq(dlen, 15);
	ck_assert_mem_eq(data, "SCRAM-SHA-256\0\0", 15);

	ck_assert_int_eq(pg_parse_auth(md5, 3, &code, &data, &dlen), -1);
	ck_assert_int_eq(pg_parse_auth(md5, 0, &code, &data, &dlen), -1);
}
END_TEST

START_TEST(test_parse_param_status)
{
	const char *name = NULL, *value = NULL;
	static const char ok[] = "server_version\0"
				 "16.2"; /* + final NUL */

	ck_assert_int_eq(pg_parse_param_status((const uint8_t *)ok, sizeof(ok), &name, &value), 0);
	ck_assert_str_eq(name, "server_version");
	ck_assert_str_eq(value, "16.2");
	ck_assert_ptr_eq(name, ok);
	ck_assert_ptr_eq(value, ok + 15);

	/* An empty value is valid (PostgreSQL reports application_name that way). */
	ck_assert_int_eq(pg_parse_param_status(LIT("application_name\0\0"), &name, &value), 0);
	ck_assert_str_eq(name, "application_name");
	ck_assert_str_eq(value, "");

	/* Missing value, trailing bytes, unterminated, too short. */
	ck_assert_int_eq(pg_parse_param_status(LIT("server_version\0"), &name, &value), -1);
	ck_assert_int_eq(pg_parse_param_status(LIT("a\0b\0c\0"), &name, &value), -1);
	ck_assert_int_eq(pg_parse_param_status(LIT("a\0b\0\0"), &name, &value), -1);
	ck_assert_int_eq(pg_parse_param_status(LIT("a\0b"), &name, &value), -1);
	ck_assert_int_eq(pg_parse_param_status(LIT("ab"), &name, &value), -1);
	ck_assert_int_eq(pg_parse_param_status(LIT("\0"), &name, &value), -1);
	ck_assert_int_eq(pg_parse_param_status((const uint8_t *)"", 0, &name, &value), -1);
}
END_TEST

START_TEST(test_put_error)
{
	struct evbuffer *b = evbuffer_new();

	pg_put_error(b, "FATAL", "28P01", "password authentication failed for user \"%s\"",
		     "crate");
	expect_bytes(b, LIT("E\0\0\0\x4b"
			    "SFATAL\0VFATAL\0C28P01\0"
			    "Mpassword authentication failed for user \"crate\"\0"
			    "\0"));
	pg_put_error(b, "ERROR", "08P01", "%d%%", 5);
	expect_bytes(b, LIT("E\0\0\0\x1e"
			    "SERROR\0VERROR\0C08P01\0M5%\0\0"));
	evbuffer_free(b);
}
END_TEST

START_TEST(test_put_error_long_message)
{
	/* The message is cut to fit, and the result still ends with the terminator. */
	struct evbuffer *b = evbuffer_new();
	char *msg = malloc(3000);
	const uint8_t *p;
	size_t len;
	struct pg_error e;

	ck_assert_ptr_nonnull(msg);
	memset(msg, 'x', 2999);
	msg[2999] = '\0';
	pg_put_error(b, "ERROR", "XX000", "%s", msg);
	len = evbuffer_get_length(b);
	p = evbuffer_pullup(b, -1);
	ck_assert_uint_eq(p[0], 'E');
	ck_assert_uint_eq(pg_get_u32(p + 1), len - 1);
	ck_assert_uint_eq(p[len - 1], 0);
	ck_assert_uint_eq(p[len - 2], 0);
	ck_assert_int_eq(pg_parse_error(p + 5, len - 5, &e), 0);
	ck_assert_str_eq(e.severity, "ERROR");
	ck_assert_str_eq(e.code, "XX000");
	ck_assert_uint_eq(strlen(e.message), 1023);
	ck_assert_int_eq(strspn(e.message, "x"), 1023);
	evbuffer_free(b);
	free(msg);
}
END_TEST

START_TEST(test_put_auth)
{
	struct evbuffer *b = evbuffer_new();
	static const uint8_t salt[4] = { 0x01, 0x02, 0xfe, 0xff };

	pg_put_auth(b, PG_AUTH_OK, NULL, 0);
	expect_bytes(b, LIT("R\0\0\0\x08\0\0\0\0"));
	pg_put_auth(b, PG_AUTH_CLEARTEXT, NULL, 0);
	expect_bytes(b, LIT("R\0\0\0\x08\0\0\0\x03"));
	pg_put_auth(b, PG_AUTH_MD5, salt, sizeof(salt));
	expect_bytes(b, LIT("R\0\0\0\x0c\0\0\0\x05\x01\x02\xfe\xff"));
	pg_put_auth(b, PG_AUTH_SASL, "SCRAM-SHA-256\0", 15);
	expect_bytes(b, LIT("R\0\0\0\x17\0\0\0\x0a"
			    "SCRAM-SHA-256\0\0"));
	pg_put_auth(b, PG_AUTH_SASL_FINAL, "v=abc", 5);
	expect_bytes(b, LIT("R\0\0\0\x0d\0\0\0\x0c"
			    "v=abc"));
	evbuffer_free(b);
}
END_TEST

START_TEST(test_put_simple)
{
	struct evbuffer *b = evbuffer_new();

	pg_put_param_status(b, "client_encoding", "UTF8");
	expect_bytes(b, LIT("S\0\0\0\x19"
			    "client_encoding\0UTF8\0"));
	pg_put_param_status(b, "application_name", "");
	expect_bytes(b, LIT("S\0\0\0\x16"
			    "application_name\0\0"));

	pg_put_backend_key(b, 0x01020304u, 0xdeadbeefu);
	expect_bytes(b, LIT("K\0\0\0\x0c\x01\x02\x03\x04\xde\xad\xbe\xef"));

	pg_put_ready(b, 'I');
	expect_bytes(b, LIT("Z\0\0\0\x05I"));
	pg_put_ready(b, 'T');
	expect_bytes(b, LIT("Z\0\0\0\x05T"));

	pg_put_query(b, "SELECT 1");
	expect_bytes(b, LIT("Q\0\0\0\x0d"
			    "SELECT 1\0"));
	pg_put_query(b, "");
	expect_bytes(b, LIT("Q\0\0\0\x05\0"));

	pg_put_terminate(b);
	expect_bytes(b, LIT("X\0\0\0\x04"));

	pg_put_password(b, "secret");
	expect_bytes(b, LIT("p\0\0\0\x0b"
			    "secret\0"));
	evbuffer_free(b);
}
END_TEST

START_TEST(test_put_startup_family)
{
	struct evbuffer *b = evbuffer_new();
	static const char *const params[] = { "user", "crate", "database", "doc", NULL };
	static const char *const none[] = { NULL };

	pg_put_startup(b, params);
	expect_bytes(b, LIT("\0\0\0\x21\0\x03\0\0"
			    "user\0crate\0database\0doc\0\0"));
	pg_put_startup(b, none);
	expect_bytes(b, LIT("\0\0\0\x09\0\x03\0\0\0"));

	pg_put_ssl_request(b);
	expect_bytes(b, LIT("\0\0\0\x08\x04\xd2\x16\x2f"));

	pg_put_cancel(b, 12345, 0xdeadbeefu);
	expect_bytes(b, LIT("\0\0\0\x10\x04\xd2\x16\x2e\0\0\x30\x39\xde\xad\xbe\xef"));
	evbuffer_free(b);
}
END_TEST

START_TEST(test_put_sasl)
{
	struct evbuffer *b = evbuffer_new();

	pg_put_sasl_initial(b, "SCRAM-SHA-256", "n,,n=,r=abc", 11);
	expect_bytes(b, LIT("p\0\0\0\x21"
			    "SCRAM-SHA-256\0"
			    "\0\0\0\x0b"
			    "n,,n=,r=abc"));
	pg_put_sasl_initial(b, "X", NULL, 0);
	expect_bytes(b, LIT("p\0\0\0\x0aX\0\0\0\0\0"));

	/* No NUL added to the SASL data. */
	pg_put_sasl_response(b, "c=biws,r=abc,p=xyz", 18);
	expect_bytes(b, LIT("p\0\0\0\x16"
			    "c=biws,r=abc,p=xyz"));
	pg_put_sasl_response(b, NULL, 0);
	expect_bytes(b, LIT("p\0\0\0\x04"));
	evbuffer_free(b);
}
END_TEST

START_TEST(test_put_msg)
{
	struct evbuffer *b = evbuffer_new();
	uint8_t *big = malloc(70000);

	ck_assert_ptr_nonnull(big);
	pg_put_msg(b, 'd', "\0\x01\xff", 3);
	expect_bytes(b, LIT("d\0\0\0\x07\0\x01\xff"));
	pg_put_msg(b, 'c', NULL, 0);
	expect_bytes(b, LIT("c\0\0\0\x04"));

	/* A body past 64 KiB: all four length bytes matter. */
	memset(big, 0x5a, 70000);
	pg_put_msg(b, 'D', big, 70000);
	ck_assert_uint_eq(evbuffer_get_length(b), 70005);
	ck_assert_mem_eq(evbuffer_pullup(b, 5), "D\0\x01\x11\x74", 5);
	ck_assert_mem_eq(evbuffer_pullup(b, -1) + 5, big, 70000);
	evbuffer_drain(b, 70005);

	/* Builders append: several messages in one buffer, in order. */
	pg_put_auth(b, PG_AUTH_OK, NULL, 0);
	pg_put_param_status(b, "a", "b");
	pg_put_backend_key(b, 1, 2);
	pg_put_ready(b, 'I');
	expect_bytes(b, LIT("R\0\0\0\x08\0\0\0\0"
			    "S\0\0\0\x08"
			    "a\0b\0"
			    "K\0\0\0\x0c\0\0\0\x01\0\0\0\x02"
			    "Z\0\0\0\x05I"));
	evbuffer_free(b);
	free(big);
}
END_TEST

START_TEST(test_roundtrip_startup)
{
	struct evbuffer *b = evbuffer_new();
	static const char *const params[] = {
		"user",         "crate",   "database", "doc", "application_name",
		"cratebouncer", "options", "",         NULL
	};
	struct pg_startup st;
	const char *err = NULL;
	const uint8_t *p;
	size_t len;

	pg_put_startup(b, params);
	len = evbuffer_get_length(b);
	p = evbuffer_pullup(b, -1);
	ck_assert_int_eq(pg_parse_startup(p, len, &st, &err), 0);
	ck_assert_int_eq(st.kind, PG_STARTUP_NORMAL);
	ck_assert_uint_eq(st.version, PG_PROTO_V3);
	ck_assert_str_eq(st.user, "crate");
	ck_assert_str_eq(st.database, "doc");
	ck_assert_str_eq(pg_startup_param(&st, "application_name"), "cratebouncer");
	ck_assert_str_eq(pg_startup_param(&st, "options"), "");
	ck_assert_uint_eq(st.params_len, len - 9);
	evbuffer_drain(b, len);

	pg_put_ssl_request(b);
	ck_assert_int_eq(pg_parse_startup(evbuffer_pullup(b, -1), 8, &st, &err), 0);
	ck_assert_int_eq(st.kind, PG_STARTUP_SSL);
	evbuffer_drain(b, 8);

	pg_put_cancel(b, 4242, 0x80000001u);
	ck_assert_int_eq(pg_parse_startup(evbuffer_pullup(b, -1), 16, &st, &err), 0);
	ck_assert_int_eq(st.kind, PG_STARTUP_CANCEL);
	ck_assert_uint_eq(st.cancel_pid, 4242);
	ck_assert_uint_eq(st.cancel_key, 0x80000001u);
	evbuffer_free(b);
}
END_TEST

START_TEST(test_roundtrip_messages)
{
	struct evbuffer *b = evbuffer_new();
	struct pg_error e;
	const uint8_t *p, *data;
	const char *name, *value;
	uint32_t code;
	size_t len, dlen;

	pg_put_error(b, "FATAL", "53300", "too many clients (%d)", 100);
	len = evbuffer_get_length(b);
	p = evbuffer_pullup(b, -1);
	ck_assert_uint_eq(p[0], 'E');
	ck_assert_uint_eq(pg_get_u32(p + 1), len - 1);
	ck_assert_int_eq(pg_parse_error(p + PG_HDR_LEN, len - PG_HDR_LEN, &e), 0);
	ck_assert_str_eq(e.severity, "FATAL");
	ck_assert_str_eq(e.code, "53300");
	ck_assert_str_eq(e.message, "too many clients (100)");
	ck_assert_str_eq(e.detail, "");
	ck_assert_str_eq(e.hint, "");
	evbuffer_drain(b, len);

	pg_put_param_status(b, "TimeZone", "Etc/UTC");
	len = evbuffer_get_length(b);
	p = evbuffer_pullup(b, -1);
	ck_assert_int_eq(pg_parse_param_status(p + PG_HDR_LEN, len - PG_HDR_LEN, &name, &value), 0);
	ck_assert_str_eq(name, "TimeZone");
	ck_assert_str_eq(value, "Etc/UTC");
	evbuffer_drain(b, len);

	pg_put_auth(b, PG_AUTH_SASL_CONTINUE, "r=x,s=y,i=4096", 14);
	len = evbuffer_get_length(b);
	p = evbuffer_pullup(b, -1);
	ck_assert_int_eq(pg_parse_auth(p + PG_HDR_LEN, len - PG_HDR_LEN, &code, &data, &dlen), 0);
	ck_assert_uint_eq(code, PG_AUTH_SASL_CONTINUE);
	ck_assert_uint_eq(dlen, 14);
	ck_assert_mem_eq(data, "r=x,s=y,i=4096", 14);
	evbuffer_free(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pgproto");
	TCase *tc_parse = tcase_create("parse");
	TCase *tc_build = tcase_create("build");
	SRunner *sr;
	int failed;

	tcase_add_test(tc_parse, test_get_u32);
	tcase_add_test(tc_parse, test_startup_normal);
	tcase_add_test(tc_parse, test_startup_database_defaults_to_user);
	tcase_add_test(tc_build, test_put_negotiate);
	tcase_add_test(tc_parse, test_startup_ssl_gss_cancel);
	tcase_add_test(tc_parse, test_startup_bad_lengths);
	tcase_add_test(tc_parse, test_startup_max_length);
	tcase_add_test(tc_parse, test_startup_bad_protocol);
	tcase_add_test(tc_parse, test_startup_bad_params);
	tcase_add_test(tc_parse, test_startup_param_on_special);
	tcase_add_test(tc_parse, test_parse_error);
	tcase_add_test(tc_parse, test_parse_auth);
	tcase_add_test(tc_parse, test_parse_param_status);
	tcase_add_test(tc_build, test_put_error);
	tcase_add_test(tc_build, test_put_error_long_message);
	tcase_add_test(tc_build, test_put_auth);
	tcase_add_test(tc_build, test_put_simple);
	tcase_add_test(tc_build, test_put_startup_family);
	tcase_add_test(tc_build, test_put_sasl);
	tcase_add_test(tc_build, test_put_msg);
	tcase_add_test(tc_build, test_roundtrip_startup);
	tcase_add_test(tc_build, test_roundtrip_messages);
	suite_add_tcase(s, tc_parse);
	suite_add_tcase(s, tc_build);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
