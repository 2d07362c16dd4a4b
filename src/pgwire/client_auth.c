/* A client's login: the startup packet (SSLRequest and GSSENCRequest answered 'N', a
 * CancelRequest passed on), then authentication per auth_type (trust, plain, md5,
 * scram-sha-256 against auth_file, peer on the Unix socket), the admin console's roles,
 * and once it passed, a cancel key of its own; the welcome follows when the pool has a
 * server's parameters (client_welcome in client.c). */
#include "client_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "authfile.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/sockio.h"
#include "core/util.h"
#include "pgproto.h"
#include "pool.h"
#include "scram.h"
#include "server.h"

static uint32_t next_pid;
static const struct authfile *users;

void client_set_authfile(const struct authfile *af)
{
	users = af;
}

/* Authentication passed: the login state goes, the client gets its cancel key. -1 after
 * failing the client. */
static int finish_login(struct client *c, const char *what)
{
	scram_server_free(c->auth->scram);
	free_secret(c->auth->secret);
	free(c->auth);
	c->auth = NULL;
	sio_set_timeouts(c->bev, NULL, NULL);
	c->cancel_pid = ++next_pid;
	/* a guessable key would let anyone cancel this client's queries */
	if (RAND_bytes((unsigned char *)&c->cancel_key, sizeof(c->cancel_key)) != 1) {
		client_fail(c, "53200", "cannot generate a cancel key");
		return -1;
	}
	c->wait_since = now_usec();
	if (rt_cfg()->log_connections)
		client_log(c, LOG_LVL_INFO, "login db=%s user=%s%s", db_of(c), user_of(c), what);
	return 0;
}

/* A console client: no pool, no server; admin.c answers its queries. */
static void admin_login(struct client *c)
{
	if (finish_login(c, " (admin console)") < 0)
		return;
	c->node.state = CL_IDLE;
	client_console()->welcome(sio_output(c->bev), c->cancel_pid, c->cancel_key);
	sio_enable(c->bev, EV_READ);
	if (evbuffer_get_length(sio_input(c->bev)) > 0)
		client_read_cb(c->bev, c);
}

static void auth_done(struct client *c)
{
	const struct cfg_db *db = cfg_find_db(rt_cfg(), db_of(c));
	char *err = NULL;
	struct pool *pool;

	if (c->admin) {
		admin_login(c);
		return;
	}
	if (!db) { /* removed by a reload during the login */
		client_fail(c, "3D000", "no such database: %s", db_of(c));
		return;
	}
	pool = pool_get(db, user_of(c), db_of(c), c->auth->secret, &err);
	if (!pool) {
		client_fail(c, "53200", "%s", err ? err : "cannot create pool");
		free(err);
		return;
	}
	if (finish_login(c, "") < 0)
		return;
	pool_client_add(pool, &c->node, CL_LOGIN_WAIT);
	sio_disable(c->bev, EV_READ);
	pool_client_login(pool, c);
}

static void auth_fail(struct client *c)
{
	client_fail(c, "28P01", "password authentication failed for user \"%s\"", user_of(c));
}

static uid_t overflow_uid(void)
{
	char buf[32];
	FILE *f = fopen("/proc/sys/kernel/overflowuid", "r");
	uid_t uid = 65534;

	if (f) {
		if (fgets(buf, sizeof(buf), f))
			uid = (uid_t)strtoul(buf, NULL, 10);
		fclose(f);
	}
	return uid;
}

static bool peer_ok(struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (getsockopt(sio_fd(c->bev), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	/* In a user namespace (systemd's PrivateUsers=yes) every unmapped uid reads as the
	 * overflow uid: it names no one, so it must never match a user. */
	if (cred.uid == overflow_uid()) {
		log_warn(
			"peer authentication: the client's uid is not visible (user namespace, e.g. "
			"PrivateUsers=yes); refusing \"%s\"",
			user_of(c));
		return false;
	}
	if (getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return false;
	return strcmp(res->pw_name, user_of(c)) == 0;
}

/* The database the client asked for: the console (for admin_users and stats_users), or a
 * [databases] entry not disabled; false after failing the client. */
static bool db_allowed(struct client *c)
{
	const struct cfg *cfg = rt_cfg();
	const struct client_console *console = client_console();

	if (console && console->is_console_db(db_of(c))) {
		c->admin = (uint8_t)console->role_for(cfg, user_of(c));
		if (!c->admin) {
			client_fail(c, "28000",
				    "not allowed to use the admin console: user \"%s\" is in "
				    "neither admin_users nor stats_users",
				    user_of(c));
			return false;
		}
	} else if (!cfg_find_db(cfg, db_of(c))) {
		client_fail(c, "3D000", "no such database: %s", db_of(c));
		return false;
	} else if (pools_is_disabled(db_of(c))) {
		client_fail(c, "08P01",
			    "database \"%s\" is disabled (DISABLE from the admin console)",
			    db_of(c));
		return false;
	}
	return true;
}

/* scram-sha-256 (and md5 for a user whose secret is SCRAM): AuthenticationSASL, with the
 * server side of the exchange made from the user's secret. */
static void start_scram(struct client *c)
{
	struct client_auth *a = c->auth;
	struct scram_secret ss;
	unsigned char salt[16];
	int ok = -1;

	if (a->secret && secret_kind(a->secret) == SECRET_SCRAM)
		ok = scram_secret_parse(a->secret, &ss);
	else if (a->secret && secret_kind(a->secret) == SECRET_PLAIN &&
		 RAND_bytes(salt, sizeof(salt)) == 1)
		ok = scram_secret_from_password(a->secret, salt, sizeof(salt),
						SCRAM_DEFAULT_ITERATIONS, &ss);
	if (ok < 0) {
		/* unknown user or an md5 secret: run the exchange against a random
		 * secret so that it fails like a wrong password */
		if (a->secret && secret_kind(a->secret) == SECRET_MD5)
			log_warn("user \"%s\": an md5 secret in auth_file cannot be used with "
				 "scram-sha-256",
				 user_of(c));
		memset(&ss, 0, sizeof(ss));
		ss.iterations = SCRAM_DEFAULT_ITERATIONS;
		ss.salt_len = 16;
		if (RAND_bytes(ss.salt, 16) != 1 || RAND_bytes(ss.stored_key, SCRAM_KEY_LEN) != 1 ||
		    RAND_bytes(ss.server_key, SCRAM_KEY_LEN) != 1) {
			client_fail(c, "53200", "cannot generate a salt");
			return;
		}
	}
	a->scram = scram_server_new(&ss, NULL);
	explicit_bzero(&ss, sizeof(ss));
	if (!a->scram) {
		client_fail(c, "53200", "out of memory");
		return;
	}
	a->step = AS_SASL_INIT;
	pg_put_auth(sio_output(c->bev), PG_AUTH_SASL, "SCRAM-SHA-256\0", sizeof("SCRAM-SHA-256\0"));
}

/* The startup packet named a database and user: pick the entry, start auth. */
static void start_auth(struct client *c)
{
	const struct cfg *cfg = rt_cfg();
	struct evbuffer *out = sio_output(c->bev);
	struct client_auth *a = c->auth;
	const char *secret;

	if (!db_allowed(c))
		return;
	secret = users ? authfile_lookup(users, user_of(c)) : NULL;
	if (secret) {
		a->secret = strdup(secret);
		if (!a->secret) {
			client_fail(c, "53200", "out of memory");
			return;
		}
	}
	switch (cfg->auth_type) {
	case AUTH_TRUST:
		auth_done(c);
		return;
	case AUTH_PEER:
		if (!c->unix_socket) {
			client_fail(c, "28000",
				    "peer authentication failed for user \"%s\": "
				    "peer authentication works only on the Unix socket",
				    user_of(c));
			return;
		}
		if (!peer_ok(c)) {
			client_fail(c, "28000", "peer authentication failed for user \"%s\"",
				    user_of(c));
			return;
		}
		auth_done(c);
		return;
	case AUTH_PLAIN:
		a->step = AS_PASSWORD;
		pg_put_auth(out, PG_AUTH_CLEARTEXT, NULL, 0);
		return;
	case AUTH_MD5:
		/* as PgBouncer: a SCRAM secret cannot answer MD5, so such users get SCRAM */
		if (!a->secret || secret_kind(a->secret) != SECRET_SCRAM) {
			a->step = AS_MD5;
			if (RAND_bytes(a->salt, sizeof(a->salt)) != 1) {
				client_fail(c, "53200", "cannot generate a salt");
				return;
			}
			pg_put_auth(out, PG_AUTH_MD5, a->salt, sizeof(a->salt));
			return;
		}
		/* fall through */
	case AUTH_SCRAM:
		start_scram(c);
		return;
	}
}

/* One password-message ('p') body during authentication. */
static void auth_message(struct client *c, const uint8_t *body, size_t len)
{
	struct client_auth *a = c->auth;
	struct evbuffer *out = sio_output(c->bev);
	char *msg = NULL;
	size_t mlen;
	const char *err = NULL;

	switch (a->step) {
	case AS_PASSWORD:
	case AS_MD5:
		if (len == 0 || body[len - 1] != '\0' || strlen((const char *)body) + 1 != len) {
			client_fail(c, "08P01", "invalid password message");
			return;
		}
		if (a->secret &&
		    (a->step == AS_PASSWORD
			     ? auth_check_plain(a->secret, user_of(c), (const char *)body)
			     : auth_check_md5(a->secret, user_of(c), a->salt, (const char *)body)))
			auth_done(c);
		else
			auth_fail(c);
		return;
	case AS_SASL_INIT: {
		size_t n = strnlen((const char *)body, len);
		if (n == len || len - n - 1 < 4) {
			client_fail(c, "08P01", "invalid SASLInitialResponse message");
			return;
		}
		if (strcmp((const char *)body, "SCRAM-SHA-256") != 0) {
			client_fail(c, "28000", "unsupported SASL mechanism \"%s\"",
				    (const char *)body);
			return;
		}
		uint32_t dlen = pg_get_u32(body + n + 1);
		if (dlen != len - n - 5) {
			client_fail(c, "08P01", "invalid SASLInitialResponse length");
			return;
		}
		if (scram_server_first(a->scram, (const char *)body + n + 5, dlen, &msg, &mlen,
				       &err) < 0) {
			client_fail(c, "08P01", "SCRAM: %s", err);
			return;
		}
		pg_put_auth(out, PG_AUTH_SASL_CONTINUE, msg, mlen);
		free(msg);
		a->step = AS_SASL_FINAL;
		return;
	}
	case AS_SASL_FINAL:
		if (scram_server_final(a->scram, (const char *)body, len, &msg, &mlen, &err) < 0) {
			auth_fail(c);
			return;
		}
		pg_put_auth(out, PG_AUTH_SASL_FINAL, msg, mlen);
		free(msg);
		auth_done(c);
		return;
	case AS_STARTUP:
		break;
	}
	client_fail(c, "08P01", "unexpected message during authentication");
}

static void handle_startup(struct client *c, const uint8_t *pkt, size_t len)
{
	struct pg_startup st;
	const char *err;

	if (pg_parse_startup(pkt, len, &st, &err) < 0) {
		client_fail(c, "08P01", "%s", err);
		return;
	}
	switch (st.kind) {
	case PG_STARTUP_SSL:
	case PG_STARTUP_GSSENC:
		if (++c->ssl_requests > 2) {
			client_fail(c, "08P01", "too many SSL/GSSENC requests");
			return;
		}
		evbuffer_add(sio_output(c->bev), "N", 1);
		return;
	case PG_STARTUP_CANCEL: {
		/* the key must match the one we issued; only a linked session has a query to
		 * cancel (in session mode the link is the session's) */
		struct client *target = client_by_id(st.cancel_pid);
		if (target && CRYPTO_memcmp(&target->cancel_key, &st.cancel_key, 4) == 0 &&
		    target->server)
			server_cancel_client(target->server, target);
		else
			client_log(c, LOG_LVL_DEBUG,
				   "cancel request for %u matches no running query", st.cancel_pid);
		client_close(c, false, "cancel request");
		return;
	}
	case PG_STARTUP_NORMAL:
		break;
	}
	/* with the packet's terminating empty name, so that the block can be walked */
	c->params = malloc(st.params_len + 1);
	c->auth = calloc(1, sizeof(*c->auth));
	if (!c->params || !c->auth) {
		client_fail(c, "53200", "out of memory");
		return;
	}
	memcpy(c->params, st.params, st.params_len + 1);
	/* protocol 3.2 (PostgreSQL 18's longer cancel keys) or _pq_ options: the client is told
	 * it gets 3.0 without them, before authentication, as PostgreSQL does */
	if (pg_put_negotiate(sio_output(c->bev), &st))
		client_log(c, LOG_LVL_DEBUG, "asked for protocol 3.%u or options, offered 3.0",
			   st.version & 0xffff);
	start_auth(c);
}

void client_login_read(struct client *c)
{
	struct evbuffer *in = sio_input(c->bev);
	uint8_t hdr[PG_HDR_LEN];

	while (!c->closing && c->node.state == CL_LOGIN) {
		size_t avail = evbuffer_get_length(in);
		if (!c->auth) {
			/* startup-class packet: length word, no type byte */
			if (avail < 4)
				return;
			evbuffer_copyout(in, hdr, 4);
			uint32_t plen = pg_get_u32(hdr);
			if (plen > PG_STARTUP_MAX) {
				client_fail(c, "08P01",
					    "startup packet too large (%u bytes, limit %d)", plen,
					    PG_STARTUP_MAX);
				return;
			}
			if (plen < 8) {
				client_fail(c, "08P01", "invalid startup packet length");
				return;
			}
			if (avail < plen)
				return;
			/* taken out of the buffer first: handling may finish the login and
			 * read what follows */
			uint8_t pkt[PG_STARTUP_MAX];
			evbuffer_remove(in, pkt, plen);
			handle_startup(c, pkt, plen);
			continue;
		}
		if (avail < PG_HDR_LEN)
			return;
		evbuffer_copyout(in, hdr, PG_HDR_LEN);
		uint32_t mlen = pg_get_u32(hdr + 1);
		if (hdr[0] != 'p' || mlen < 4 || mlen > AUTH_MSG_MAX) {
			client_fail(c, "08P01",
				    "expected a password message during authentication");
			return;
		}
		if (avail < (size_t)mlen + 1)
			return;
		uint8_t msg[AUTH_MSG_MAX + 1];
		evbuffer_remove(in, msg, mlen + 1);
		auth_message(c, msg + PG_HDR_LEN, mlen - 4);
		explicit_bzero(msg, mlen + 1);
	}
}
