/* A new server's login: connected through upconn (resolve, each address in turn,
 * SSLRequest, TLS verify-full), then StartupMessage with the pool's user and database,
 * authentication (cleartext, MD5 or SCRAM-SHA-256, without channel binding), the
 * upstream's ParameterStatus and BackendKeyData, and its first ReadyForQuery; then it is
 * the pool's (server.c). Every step is bounded by server_connect_timeout. */
#include "server_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/sockio.h"
#include "core/upconn.h"
#include "core/util.h"
#include "pgproto.h"
#include "relay.h"
#include "scram.h"
#include "sessparam.h"

#define LOGIN_MSG_MAX (64 * 1024)

static uint64_t next_id;

static const char *const login_steps[] = { "connecting", "startup", "authenticating", "parameters",
					   "done" };

static void set_login(struct server *sv, enum sv_login to)
{
	server_log(sv, LOG_LVL_TRACE, "login %s -> %s", login_steps[sv->login], login_steps[to]);
	sv->login = to;
}

static void connected(struct sio *io, enum upconn_failure why, const char *detail, void *arg);
static void send_startup(struct server *sv);
static void timeout_cb(evutil_socket_t fd, short what, void *arg);
static void login_read_cb(struct sio *bev, void *arg);

void server_launch(struct pool *pool, int host)
{
	const struct cfg *cfg = rt_cfg();
	struct server *sv = calloc(1, sizeof(*sv));
	struct timeval tv;

	if (!sv) {
		log_error("out of memory: cannot open a connection to %s", pool->db->host);
		return;
	}
	sv->node.obj = sv;
	sv->node.is_server = true;
	sv->id = ++next_id;
	sv->host_idx = host >= 0 ? host : pool_pick_host(pool);
	sv->host = strdup(pool->hosts[sv->host_idx].name);
	if (!sv->host) {
		free(sv);
		log_error("out of memory: cannot open a connection to %s", pool->db->host);
		return;
	}
	sv->gen = pool->gen;
	sv->connect_time = now_usec();
	rl_server_init(&sv->rl);
	if (cfg->server_lifetime > 0) {
		/* up to 20% earlier, so that a pool opened at once is not renewed at once */
		uint32_t r = 0;
		if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
			r = (uint32_t)random();
		sv->lifetime = (uint64_t)(cfg->server_lifetime * 1e6 *
					  (0.8 + 0.2 * (r / 4294967296.0)));
	}
	pool_server_add(pool, &sv->node, SV_LOGIN);

	evtimer_assign(&sv->timer, rt_base(), timeout_cb, sv);
	tv.tv_sec = (time_t)cfg->server_connect_timeout;
	tv.tv_usec = (suseconds_t)((cfg->server_connect_timeout - (double)tv.tv_sec) * 1e6);
	evtimer_add(&sv->timer, &tv);

	server_log(sv, LOG_LVL_DEBUG, "connecting to %s:%d", sv_host(sv), sv_port(sv));
	struct upconn_opts o = { .host = sv_host(sv),
				 .port = sv_port(sv),
				 .tls = cfg_db_sslmode(cfg, pool->db) != SSLMODE_DISABLE,
				 .sslmode = cfg_db_sslmode(cfg, pool->db),
				 .ca_file = cfg_db_ca_file(cfg, pool->db),
				 .ssl_request = true,
				 .keepalive = cfg->tcp_keepalive };
	sv->uc = upconn_start(rt_base(), rt_dns(), &o, connected, sv);
	if (!sv->uc)
		server_fail(sv, "53200", "out of memory: cannot open a connection to %s",
			    sv_host(sv));
}

/* Connected, past SSLRequest and TLS (or failed on the way): the login starts. */
static void connected(struct sio *io, enum upconn_failure why, const char *detail, void *arg)
{
	struct server *sv = arg;
	const char *host = sv_host(sv);
	int port = sv_port(sv);

	sv->uc = NULL;
	switch (why) {
	case UC_OK:
		break;
	case UC_RESOLVE:
		server_fail(sv, "08006", "cannot resolve upstream host \"%s\": %s", host, detail);
		return;
	case UC_CONNECT:
		server_fail(sv, "08006", "cannot connect to upstream %s:%d: %s", host, port,
			    detail);
		return;
	case UC_SSL_CLOSED:
		server_fail(sv, "08006",
			    "upstream %s:%d closed the connection after SSLRequest%s%s", host, port,
			    *detail ? ": " : "", detail);
		return;
	case UC_SSL_REFUSED:
		server_fail(sv, "08006",
			    "upstream %s:%d does not accept TLS, and server_tls_sslmode "
			    "requires it",
			    host, port);
		return;
	case UC_SSL_INVALID:
		server_fail(sv, "08006", "upstream %s:%d sent an invalid answer to SSLRequest",
			    host, port);
		return;
	case UC_TLS_SETUP:
	case UC_TLS_HANDSHAKE:
		server_fail(sv, "08006", "%s", detail);
		return;
	case UC_NO_MEMORY:
		server_fail(sv, "53200", "cannot allocate a connection buffer");
		return;
	}
	sv->bev = io;
	sio_setcb(sv->bev, login_read_cb, server_write_cb, server_event_cb, sv);
	send_startup(sv);
}

static void send_startup(struct server *sv)
{
	struct pool *pool = sv->node.pool;
	const char *params[] = { "user", pool->user, "database", pool->dbname, NULL };

	pg_put_startup(sio_output(sv->bev), params);
	set_login(sv, SVL_STARTUP);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *sv = arg;

	server_fail(sv, "08006",
		    "timed out connecting to upstream %s:%d (server_connect_timeout; "
		    "login step: %s)",
		    sv_host(sv), sv_port(sv), login_steps[sv->login]);
}

/* AuthenticationSASL: SCRAM-SHA-256 among the mechanisms the upstream offers (a list of
 * NUL-terminated names), its first message sent; -1 after server_fail. */
static int sasl_start(struct server *sv, const uint8_t *data, size_t dlen)
{
	char *msg = NULL;
	size_t mlen;

	for (size_t i = 0; i < dlen && data[i];) {
		const char *mech = (const char *)data + i;
		size_t n = strnlen(mech, dlen - i);
		if (n == strlen("SCRAM-SHA-256") && memcmp(mech, "SCRAM-SHA-256", n) == 0) {
			scram_client_free(sv->scram);
			sv->scram = scram_client_new(sv->node.pool->password, NULL);
			if (!sv->scram || scram_client_first(sv->scram, "", &msg, &mlen) < 0) {
				server_fail(sv, "53200", "cannot start SCRAM authentication");
				return -1;
			}
			pg_put_sasl_initial(sio_output(sv->bev), "SCRAM-SHA-256", msg, mlen);
			free(msg);
			return 0;
		}
		i += n + 1;
	}
	server_fail(sv, "28000", "upstream %s:%d offers no SASL mechanism cratebouncer supports",
		    sv_host(sv), sv_port(sv));
	return -1;
}

/* AuthenticationSASLContinue: the client's final message (with its proof); -1 after
 * server_fail. */
static int sasl_continue(struct server *sv, const uint8_t *data, size_t dlen)
{
	char *msg = NULL;
	size_t mlen;
	const char *err = NULL;

	if (scram_client_final(sv->scram, (const char *)data, dlen, &msg, &mlen, &err) < 0) {
		server_fail(sv, "28000", "upstream %s:%d: SCRAM: %s", sv_host(sv), sv_port(sv),
			    err);
		return -1;
	}
	pg_put_sasl_response(sio_output(sv->bev), msg, mlen);
	explicit_bzero(msg, mlen);
	free(msg);
	return 0;
}

/* Answers one authentication request; -1 after server_fail. */
static int handle_auth(struct server *sv, const uint8_t *body, size_t len)
{
	struct pool *pool = sv->node.pool;
	struct evbuffer *out = sio_output(sv->bev);
	uint32_t code;
	const uint8_t *data;
	size_t dlen;
	char md5a[PG_MD5_LEN + 1], md5b[PG_MD5_LEN + 1];
	const char *err = NULL;

	if (pg_parse_auth(body, len, &code, &data, &dlen) < 0)
		goto protocol;
	if (code == PG_AUTH_OK && sv->scram) {
		/* SCRAM is mutual: an upstream that did not prove it knows the password */
		server_fail(sv, "28000",
			    "upstream %s:%d ended SCRAM authentication without proving "
			    "it knows the password",
			    sv_host(sv), sv_port(sv));
		return -1;
	}
	if (code == PG_AUTH_OK) {
		set_login(sv, SVL_PARAMETERS);
		return 0;
	}
	set_login(sv, SVL_AUTHENTICATING);
	if (!pool->password) {
		server_fail(sv, "28P01",
			    "upstream %s:%d asks for a password, but none is configured "
			    "for user \"%s\"",
			    sv_host(sv), sv_port(sv), pool->user);
		return -1;
	}
	/* an auth_file md5 secret can answer MD5, nothing else */
	if (secret_kind(pool->password) != SECRET_PLAIN &&
	    !(code == PG_AUTH_MD5 && secret_kind(pool->password) == SECRET_MD5)) {
		server_fail(sv, "28P01",
			    "upstream %s:%d asks for authentication method %u, but "
			    "auth_file holds only a hashed secret for user \"%s\"",
			    sv_host(sv), sv_port(sv), code, pool->user);
		return -1;
	}
	switch (code) {
	case PG_AUTH_CLEARTEXT:
		pg_put_password(out, pool->password);
		return 0;
	case PG_AUTH_MD5:
		if (dlen != 4)
			goto protocol;
		if (secret_kind(pool->password) == SECRET_MD5)
			snprintf(md5a, sizeof(md5a), "%s", pool->password);
		else
			pg_md5_encrypt(pool->password, pool->user, md5a);
		pg_md5_salted(md5a, data, md5b);
		pg_put_password(out, md5b);
		return 0;
	case PG_AUTH_SASL:
		return sasl_start(sv, data, dlen);
	case PG_AUTH_SASL_CONTINUE:
		if (!sv->scram)
			goto protocol;
		return sasl_continue(sv, data, dlen);
	case PG_AUTH_SASL_FINAL:
		if (!sv->scram)
			goto protocol;
		if (scram_client_verify(sv->scram, (const char *)data, dlen, &err) < 0) {
			server_fail(sv, "28000", "upstream %s:%d: SCRAM: %s", sv_host(sv),
				    sv_port(sv), err);
			return -1;
		}
		scram_client_free(sv->scram);
		sv->scram = NULL;
		return 0;
	default:
		server_fail(sv, "28000",
			    "upstream %s:%d asks for authentication method %u, which "
			    "cratebouncer does not support",
			    sv_host(sv), sv_port(sv), code);
		return -1;
	}
protocol:
	server_fail(sv, "08P01", "upstream %s:%d sent an invalid authentication message",
		    sv_host(sv), sv_port(sv));
	return -1;
}

/* The tracked parameters where this server's login values differ from the pool's. */
static void server_login_params(struct server *sv, const uint8_t *p, size_t len)
{
	const char *const *defaults = sv->node.pool->rl.defaults;

	uint8_t type;
	const uint8_t *body;
	size_t blen, mlen;
	const char *name, *value;

	while (pg_next_msg(&p, &len, &type, &body, &blen, &mlen)) {
		if (type == 'S' && pg_parse_param_status(body, blen, &name, &value) == 0) {
			int i = sp_index(name, strlen(name));
			if (i >= 0 && (!defaults[i] || strcmp(defaults[i], value) != 0) &&
			    sp_put(&sv->rl.params, i, value, false) < 0)
				log_warn("out of memory tracking %s", name);
		}
	}
}

static void login_done(struct server *sv)
{
	size_t plen = evbuffer_get_length(sv->params);
	uint8_t *params = evbuffer_pullup(sv->params, -1);

	set_login(sv, SVL_DONE);
	evtimer_del(&sv->timer);
	server_forwarding(sv);
	sv->ready = true;
	sv->rl.status = 'I';
	sv->idle_since = now_usec();
	server_log(sv, LOG_LVL_DEBUG, "logged in to %s:%d as %s", sv_host(sv), sv_port(sv),
		   sv->node.pool->user);
	if (sv->gen != sv->node.pool->gen) {
		server_close(sv, "renewed by RECONNECT or a reload");
		return;
	}
	pool_server_login_ok(sv, params, plen);
	server_login_params(sv, params, plen);
	evbuffer_free(sv->params);
	sv->params = NULL;
	pool_server_idle(sv);
}

static void login_read_cb(struct sio *bev, void *arg)
{
	struct server *sv = arg;
	struct evbuffer *in = sio_input(bev);
	uint8_t hdr[PG_HDR_LEN];
	struct pg_error e;

	while (evbuffer_get_length(in) >= PG_HDR_LEN) {
		evbuffer_copyout(in, hdr, PG_HDR_LEN);
		uint32_t mlen = pg_get_u32(hdr + 1);
		if (mlen < 4 || mlen > LOGIN_MSG_MAX) {
			server_fail(sv, "08P01",
				    "upstream %s:%d sent an invalid message during login",
				    sv_host(sv), sv_port(sv));
			return;
		}
		if (evbuffer_get_length(in) < (size_t)mlen + 1)
			return;
		uint8_t *msg = evbuffer_pullup(in, mlen + 1);
		const uint8_t *body = msg + PG_HDR_LEN;
		size_t blen = mlen - 4;

		switch (hdr[0]) {
		case 'R':
			if (handle_auth(sv, body, blen) < 0)
				return;
			break;
		case 'S': {
			if (!sv->params)
				sv->params = evbuffer_new();
			if (sv->params)
				evbuffer_add(sv->params, msg, mlen + 1);
			break;
		}
		case 'K':
			/* clients get keys issued by cratebouncer; the pid is for SHOW SERVERS */
			if (blen == 8) {
				sv->be_pid = pg_get_u32(body);
				sv->be_key = pg_get_u32(body + 4);
			}
			break;
		case 'E':
			pg_parse_error(body, blen, &e);
			server_fail(sv, *e.code ? e.code : "08006",
				    "upstream login to %s:%d as \"%s\" failed: %s", sv_host(sv),
				    sv_port(sv), sv->node.pool->user, e.message);
			return;
		case 'Z':
			evbuffer_drain(in, mlen + 1);
			if (!sv->params)
				sv->params = evbuffer_new();
			if (!sv->params) {
				server_fail(sv, "53200", "out of memory");
				return;
			}
			login_done(sv);
			return;
		case 'N':
		case 'v':
			break;
		default:
			server_fail(sv, "08P01", "upstream %s:%d sent message '%c' during login",
				    sv_host(sv), sv_port(sv), hdr[0]);
			return;
		}
		evbuffer_drain(in, mlen + 1);
	}
}
