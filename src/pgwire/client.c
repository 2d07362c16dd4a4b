/* Client connections. A client's life: startup packet (SSLRequest and GSSENCRequest
 * answered 'N'), authentication per auth_type, the welcome (ParameterStatus from the
 * pool, BackendKeyData issued here), then its session on a server from the pool. An
 * idle logged-in client holds no I/O buffer memory: its evbuffers are empty between
 * messages. */
#include "client.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <stdarg.h>
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
#include "pgproto.h"
#include "pipeline.h"
#include "prepared.h"
#include "relay.h"
#include "scram.h"
#include "server.h"
#include "sessparam.h"
#include "core/sockio.h"
#include "core/util.h"

#define OUT_HIGH_WATER (256 * 1024)
#define WAIT_BUFFER_MAX (256 * 1024)
#define AUTH_MSG_MAX 8192
#define CLOSE_FLUSH_SECS 5
#define PEER_LEN (INET6_ADDRSTRLEN + 16)

enum auth_step { AS_STARTUP, AS_PASSWORD, AS_MD5, AS_SASL_INIT, AS_SASL_FINAL };

/* Only while logging in. */
struct client_auth {
	enum auth_step step;
	uint8_t salt[4];
	char *secret;			/* from auth_file; NULL when the user has none */
	struct scram_server *scram;
};

struct client {
	struct pool_node node;
	TAILQ_ENTRY(client) all;	/* every client, for shutdown */
	struct sio *bev;
	struct server *server;
	char *params;			/* startup parameters, "k\0v\0...", user_of and db_of */
	struct client_auth *auth;
	uint64_t connect_time, wait_since;
	uint32_t cancel_pid, cancel_key;
	struct rl_client rl;		/* its prepared statement names and session settings */
	uint64_t request_time;		/* last message from the client, for SHOW CLIENTS */
	uint8_t ssl_requests;
	uint8_t admin;			/* enum admin_role, for console clients */
	bool admin_skip;		/* the console skips an extended-protocol group */
	bool unix_socket, paused, closing, buried;
	bool cut;		/* its answer stops inside a message (client_cut) */
};

static TAILQ_HEAD(, client) all_clients = TAILQ_HEAD_INITIALIZER(all_clients);
static int nclients;
static uint32_t next_pid;
static const struct authfile *users;

static void read_cb(struct sio *bev, void *arg);
static void write_cb(struct sio *bev, void *arg);
static void event_cb(struct sio *bev, short what, void *arg);
static void client_close(struct client *c, bool flush, const char *reason);
static void fail(struct client *c, bool log, const char *sqlstate, const char *msg);
static void fail_flush(struct client *c, bool log, bool flush, const char *sqlstate,
		       const char *msg);
static void login_read(struct client *c);
static void forward(struct client *c);

/* A parameter of its startup packet, the last of that name as pg_parse_startup takes
 * it (NULL: none). Looked up, not kept: a few dozen bytes walked at login and by SHOW
 * CLIENTS, and an idle client is two pointers smaller. */
static const char *startup_param(const struct client *c, const char *name)
{
	const char *p, *found = NULL;

	for (p = c->params; p && *p; p += strlen(p) + 1) {
		const char *v = p + strlen(p) + 1;
		if (strcmp(p, name) == 0)
			found = v;
		p = v;
	}
	return found;
}

/* Only once the startup packet was taken (pg_parse_startup refuses an empty user). */
static const char *user_of(const struct client *c)
{
	return startup_param(c, "user");
}

static const char *db_of(const struct client *c)
{
	const char *db = startup_param(c, "database");
	return db && *db ? db : user_of(c);
}

void client_set_authfile(const struct authfile *af)
{
	users = af;
}

struct evbuffer *client_output(struct client *c)
{
	return sio_output(c->bev);
}

uint32_t client_id(const struct client *c)
{
	return c->cancel_pid;
}

struct client *client_by_id(uint32_t id)
{
	struct client *c;

	TAILQ_FOREACH(c, &all_clients, all)
		if (c->cancel_pid == id && !c->closing)
			return c;
	return NULL;
}

void clients_trim(void)
{
	struct client *c;

	TAILQ_FOREACH(c, &all_clients, all)
		if (!c->closing)
			sio_trim(c->bev);
}

size_t client_struct_size(void)
{
	return sizeof(struct client);
}

void clients_foreach(void (*fn)(const struct client_info *ci, void *arg), void *arg)
{
	static const char *const names[] = { "login", "waiting", "active", "waiting", "active",
					     "closing" };
	struct client *c, *next;

	for (c = TAILQ_FIRST(&all_clients); c; c = next) {
		struct client_info ci = { 0 };
		int fd = sio_fd(c->bev);
		const char *app = c->params ? NULL : "";

		next = TAILQ_NEXT(c, all);
		if (c->closing)
			continue;
		if (c->params) {
			struct pg_startup st = { .params = c->params };
			const char *p = c->params;
			/* params_len is not kept: walk to the empty name */
			while (*p) {
				p += strlen(p) + 1;
				p += strlen(p) + 1;
			}
			st.params_len = (size_t)(p - c->params);
			app = pg_startup_param(&st, "application_name");
		}
		ci.user = c->params ? user_of(c) : "";
		ci.database = c->params ? db_of(c) : "";
		ci.state = c->admin ? "active" : names[c->node.state];
		ci.application_name = app ? app : "";
		sock_addr_text(fd, 1, ci.addr, sizeof(ci.addr), &ci.port, "unix");
		sock_addr_text(fd, 0, ci.local_addr, sizeof(ci.local_addr), &ci.local_port, "unix");
		ci.connect_usec = c->connect_time;
		ci.request_usec = c->request_time ? c->request_time : c->connect_time;
		ci.wait_usec = c->node.state == CL_WAITING || c->node.state == CL_LOGIN_WAIT
				       ? now_usec() - c->wait_since : 0;
		ci.ptr = c;
		ci.link = c->server;
		ci.id = c->cancel_pid;
		ci.prepared = rl_client_prepared(&c->rl);
		ci.admin = c->admin != ADMIN_NONE;
		fn(&ci, arg);
	}
}

struct pool_node *client_node(struct client *c)
{
	return &c->node;
}

enum client_state client_state(const struct client *c)
{
	return c->node.state;
}

struct pool *client_pool(const struct client *c)
{
	return c->node.pool;
}

struct server *client_server(const struct client *c)
{
	return c->server;
}

uint64_t client_request_time(const struct client *c)
{
	return c->request_time ? c->request_time : c->connect_time;
}

uint64_t client_wait_since(const struct client *c)
{
	return c->wait_since;
}

int clients_total(void)
{
	return nclients;
}

void client_send(struct client *c, struct evbuffer *src, size_t n)
{
	sio_write_buffer(c->bev, src, n);
}

bool client_output_full(struct client *c)
{
	return evbuffer_get_length(sio_output(c->bev)) > OUT_HIGH_WATER;
}

void client_pause_read(struct client *c, bool pause)
{
	if (c->paused == pause || c->closing)
		return;
	c->paused = pause;
	if (pause)
		sio_disable(c->bev, EV_READ);
	else if (c->node.state == CL_ACTIVE || c->node.state == CL_IDLE)
		sio_enable(c->bev, EV_READ);
}

/* "ip:port" or "unix", for log lines; computed when logging, not stored. */
static const char *peer(const struct client *c, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	int port;

	if (c->unix_socket)
		return "unix";
	sock_addr_text(sio_fd(c->bev), 1, host, sizeof(host), &port, "?");
	snprintf(buf, len, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	return buf;
}

/* Refuses a connection before a client object exists (max_client_conn). */
static void refuse_early(int fd, const char *sqlstate, const char *msg)
{
	struct evbuffer *b = evbuffer_new();

	if (b) {
		pg_put_error(b, "FATAL", sqlstate, "%s", msg);
		size_t n = evbuffer_get_length(b);
		if (send(fd, evbuffer_pullup(b, -1), n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("cannot send refusal: %s", strerror(errno));
		evbuffer_free(b);
	}
	close(fd);
}

void client_accept(int fd, const struct sockaddr *sa, int salen, bool unix_socket)
{
	const struct cfg *cfg = rt_cfg();
	struct client *c;
	struct timeval tv;

	if (nclients >= cfg->max_client_conn) {
		log_warn("refusing a client: max_client_conn (%d) reached", cfg->max_client_conn);
		refuse_early(fd, "53300", "no more connections allowed (max_client_conn)");
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->bev = sio_new(rt_base(), fd, NULL);
	if (!c || !c->bev) {
		free(c);
		refuse_early(fd, "53200", "out of memory");
		return;
	}
	nclients++;
	TAILQ_INSERT_TAIL(&all_clients, c, all);
	c->node.obj = c;
	c->node.state = CL_LOGIN;
	c->unix_socket = unix_socket;
	c->connect_time = now_usec();
	if (!unix_socket) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	sio_setcb(c->bev, read_cb, write_cb, event_cb, c);
	if (cfg->client_login_timeout > 0) {
		tv.tv_sec = (time_t)cfg->client_login_timeout;
		tv.tv_usec = (suseconds_t)((cfg->client_login_timeout - (double)tv.tv_sec) * 1e6);
		sio_set_timeouts(c->bev, &tv, NULL);
	}
	sio_enable(c->bev, EV_READ | EV_WRITE);
}

static void fail(struct client *c, bool log, const char *sqlstate, const char *msg)
{
	fail_flush(c, log, true, sqlstate, msg);
}

/* With flush false nothing more is sent and the fd closes now. */
static void fail_flush(struct client *c, bool log, bool flush, const char *sqlstate,
		       const char *msg)
{
	char buf[PEER_LEN];

	if (c->closing)
		return;
	if (log && rt_cfg()->log_pooler_errors)
		log_warn("C-%p %s: pooler error: %s", (void *)c, peer(c, buf, sizeof(buf)), msg);
	/* in the middle of a message an ErrorResponse would be read as the message's bytes:
	 * the connection just ends, as when PostgreSQL dies */
	if (!c->cut && flush)
		pg_put_error(sio_output(c->bev), "FATAL", sqlstate, "%s", msg);
	client_close(c, flush, log ? "pooler error" : "upstream unavailable");
}

void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail(c, true, sqlstate, msg);
}

void client_fail_stalled(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail_flush(c, true, false, sqlstate, msg);
}

void client_cut(struct client *c)
{
	c->cut = true;
}

void client_refuse_upstream(struct client *c, const char *sqlstate, const char *msg)
{
	fail(c, false, sqlstate, msg);
}

void client_server_lost(struct client *c, const char *sqlstate, const char *msg)
{
	c->server = NULL;
	client_fail(c, sqlstate, "%s", msg);
}

static void bury(struct client *c)
{
	if (c->buried)
		return;
	c->buried = true;
	TAILQ_REMOVE(&all_clients, c, all);
	sio_setcb(c->bev, NULL, NULL, NULL, NULL);
	sio_disable(c->bev, EV_READ | EV_WRITE);
	pool_bury(&c->node);
}

/* Leaves the pool (returning the server) and frees later; with flush, after what is
 * queued for the client has been written. */
static void client_close(struct client *c, bool flush, const char *reason)
{
	struct timeval tv = { CLOSE_FLUSH_SECS, 0 };
	char buf[PEER_LEN];

	if (c->closing)
		return;
	c->closing = true;
	if (rt_cfg()->log_disconnections)
		log_info("C-%p %s: closing because: %s (age=%.3fs)", (void *)c, peer(c, buf, sizeof(buf)),
			 reason, (double)(now_usec() - c->connect_time) / 1e6);
	if (c->server) {
		struct server *sv = c->server;
		c->server = NULL;
		if (!server_pipe_forget(sv, c) && (c->rl.pass > 0 || !server_head_left(sv)))
			server_release(sv, c->rl.pass > 0);
	}
	pool_client_remove(&c->node);
	nclients--;
	if (flush && evbuffer_get_length(sio_output(c->bev)) > 0) {
		sio_disable(c->bev, EV_READ);
		sio_set_timeouts(c->bev, NULL, &tv);
		return; /* write_cb buries it once drained */
	}
	bury(c);
}

void clients_shutdown(void)
{
	struct client *c;

	while ((c = TAILQ_FIRST(&all_clients))) {
		client_fail(c, "57P01", "cratebouncer is shutting down");
		/* one non-blocking attempt to deliver what is queued */
		evbuffer_write(sio_output(c->bev), sio_fd(c->bev));
		bury(c);
	}
}

void client_free(struct client *c)
{
	sio_free(c->bev);
	if (c->auth) {
		scram_server_free(c->auth->scram);
		if (c->auth->secret)
			explicit_bzero(c->auth->secret, strlen(c->auth->secret));
		free(c->auth->secret);
		free(c->auth);
	}
	rl_client_clear(&c->rl);
	free(c->params);
	free(c);
}

static void read_cb(struct sio *bev, void *arg)
{
	struct client *c = arg;

	if (c->closing)
		return;
	c->request_time = now_usec();
	if (c->admin && c->node.state != CL_LOGIN) {
		if (admin_handle(c, c->admin, &c->admin_skip, sio_input(bev), sio_output(bev)) < 0)
			client_close(c, true, "client close request");
		return;
	}
	switch (c->node.state) {
	case CL_LOGIN:
		login_read(c);
		break;
	case CL_IDLE: {
		struct evbuffer *in = sio_input(bev);
		uint8_t type;
		if (evbuffer_copyout(in, &type, 1) == 1 && type == 'X') {
			client_close(c, false, "client close request");
			return;
		}
		if (rl_idle_answer(&c->rl, &c->node.pool->rl, in, sio_output(bev)) &&
		    evbuffer_get_length(in) == 0)
			return;
		pool_client_want_server(c->node.pool, c);
		if (!c->closing && c->node.state == CL_WAITING)
			c->wait_since = now_usec();
		break;
	}
	case CL_ACTIVE:
		forward(c);
		break;
	default:
		/* waiting for a server: reading goes on (no epoll_ctl pair per wait), up to a
		 * bound on what is buffered */
		if (evbuffer_get_length(sio_input(bev)) > WAIT_BUFFER_MAX)
			sio_disable(bev, EV_READ);
		break;
	}
}

static void write_cb(struct sio *bev, void *arg)
{
	struct client *c = arg;

	if (c->closing) {
		if (evbuffer_get_length(sio_output(bev)) == 0)
			bury(c);
		return;
	}
	/* our output drained: the server may send more (if it is answering this client) */
	if (c->server && server_is_head(c->server, c))
		server_pause_read(c->server, false);
}

static void event_cb(struct sio *bev, short what, void *arg)
{
	struct client *c = arg;

	if (c->closing) {
		bury(c);
		return;
	}
	if ((what & SIO_TIMEOUT) && c->node.state == CL_LOGIN) {
		client_fail(c, "08P01", "client_login_timeout: login not completed in %g s",
			    rt_cfg()->client_login_timeout);
		return;
	}
	client_close(c, false, what & SIO_EOF ? "client disconnected" : "client connection error");
}

/* Passes the client's messages to its server through the relay; a Terminate ends the
 * session here, the server stays open for the pool. */
static void forward(struct client *c)
{
	const char *err = NULL;

	if (!server_is_head(c->server, c) || server_pipe_busy(c->server)) {
		/* its query is pipelined (or others' are behind it): what it sends next
		 * waits for that answer */
		if (evbuffer_get_length(sio_input(c->bev)) > WAIT_BUFFER_MAX)
			client_pause_read(c, true);	/* client_unlinked resumes it */
		return;
	}
	server_head_more(c->server);

	switch (server_forward(c->server, c, sio_input(c->bev), &err)) {
	case RL_OK:
		break;
	case RL_TERMINATE:
		client_close(c, false, "client close request");
		return;
	case RL_ERROR:
		client_fail(c, "08P01", "%s", err);
		return;
	}
	if (c->server && server_output_full(c->server))
		client_pause_read(c, true);
}

struct rl_client *client_relay(struct client *c)
{
	return &c->rl;
}

void client_unlinked(struct client *c)
{
	c->server = NULL;
	pool_client_move(&c->node, CL_IDLE);
	client_pause_read(c, false);
}

void client_resume(struct client *c)
{
	if (!c->closing && c->node.state == CL_IDLE &&
	    evbuffer_get_length(sio_input(c->bev)) > 0)
		read_cb(c->bev, c);
}

void client_linked(struct client *c, struct server *sv)
{
	client_linked_shape(c, sv, pool_pipelining(c->node.pool) ? client_pipe_shape(c) : 0);
}

void client_linked_shape(struct client *c, struct server *sv, uint64_t shape)
{
	c->server = sv;
	pool_client_move(&c->node, CL_ACTIVE);
	sio_enable(c->bev, EV_READ);
	if (evbuffer_get_length(sio_input(c->bev)) > 0)
		forward(c);
	if (c->server == sv && !c->closing) {
		bool fast = pool_pipe_fast(shape);
		server_set_head(sv, shape, fast);
		if (fast)
			pool_pipe_waiting(sv);
	}
}

/* The text of a C string field at p within end, or NULL when it is not terminated. */
static const char *field(const uint8_t *p, const uint8_t *end, size_t *len)
{
	const uint8_t *z = memchr(p, 0, (size_t)(end - p));

	if (!z)
		return NULL;
	*len = (size_t)(z - p);
	return (const char *)p;
}

/* An extended-protocol group that runs as one implicit transaction: Parse, Bind, Describe
 * and Execute messages ending with its only Sync, every statement it binds autocommit. */
static uint64_t extended_shape(struct client *c, const uint8_t *p, size_t len)
{
	const char *pname = NULL;
	uint64_t shape = 0, salt = (uint64_t)(uintptr_t)c->node.pool;
	size_t n;
	bool executed = false;

	while (len >= PG_HDR_LEN) {
		uint32_t mlen = pg_get_u32(p + 1);
		if (mlen < 4 || (size_t)mlen + 1 > len)
			return 0;
		const uint8_t *body = p + PG_HDR_LEN, *end = p + 1 + mlen;
		const char *name, *text;
		switch (p[0]) {
		case 'P': {
			size_t tl;
			if (!(name = field(body, end, &n)) ||
			    !(text = field(body + n + 1, end, &tl)) || !sp_autocommit_statement(text, tl))
				return 0;
			pname = name;
			/* every statement of the group makes its shape */
			shape = shape * 0x9e3779b97f4a7c15ULL + pl_shape(text, tl, salt);
			break;
		}
		case 'B': {
			const char *portal = field(body, end, &n), *stmt;
			size_t sl;
			if (!portal || !(stmt = field(body + n + 1, end, &sl)))
				return 0;
			if (!pname || strcmp(stmt, pname) != 0) {
				/* a statement prepared before: its text from the client's names */
				size_t bl;
				struct ps_stmt *st = sl ? ps_map_get(c->rl.names, stmt) : NULL;
				const uint8_t *b = st ? ps_body(st, &bl) : NULL;
				if (!b || !(text = field(b, b + bl, &n)) || !sp_autocommit_statement(text, n))
					return 0;
				shape = shape * 0x9e3779b97f4a7c15ULL + pl_shape(text, n, salt);
			}
			break;
		}
		case 'D':
			/* as the relay checks it: a kind byte and a name ending the message */
			if (mlen - 4 < 2 || memchr(body + 1, 0, mlen - 5) != end - 1)
				return 0;
			break;
		case 'E':
			if (!field(body, end, &n))
				return 0;
			executed = true;
			break;
		case 'S':
			if ((size_t)mlen + 1 != len || !executed || !shape)
				return 0;
			return shape;
		default:
			return 0;	/* Close, Flush, ...: not pipelined */
		}
		p += mlen + 1;
		len -= mlen + 1;
	}
	return 0;
}

uint64_t client_pipe_shape(struct client *c)
{
	struct evbuffer *in = sio_input(c->bev);
	size_t len = evbuffer_get_length(in);
	uint8_t hdr[PG_HDR_LEN];

	if (len < PG_HDR_LEN + 1 || len > PIPE_QUERY_MAX || c->rl.pass ||
	    evbuffer_copyout(in, hdr, PG_HDR_LEN) != PG_HDR_LEN)
		return 0;
	const uint8_t *msg = evbuffer_pullup(in, -1);
	if (!msg)
		return 0;
	if (hdr[0] != 'Q')
		return c->node.pool->rl.rename ? extended_shape(c, msg, len) : 0;
	if ((size_t)pg_get_u32(hdr + 1) + 1 != len || msg[len - 1] != 0 ||
	    !sp_autocommit_statement((const char *)msg + PG_HDR_LEN, len - PG_HDR_LEN - 1))
		return 0;
	return pl_shape((const char *)msg + PG_HDR_LEN, len - PG_HDR_LEN - 1,
			(uint64_t)(uintptr_t)c->node.pool);
}

bool client_piped(struct client *c, struct server *sv, uint64_t shape)
{
	c->server = sv;
	if (!server_pipe_add(sv, c, shape)) {
		c->server = NULL;
		return false;
	}
	pool_client_move(&c->node, CL_ACTIVE);
	return true;
}

struct evbuffer *client_input(struct client *c)
{
	return sio_input(c->bev);
}

void client_welcome(struct client *c, const uint8_t *params, size_t len)
{
	struct evbuffer *out = sio_output(c->bev);
	const uint8_t *p = params;

	if (rl_client_startup(&c->rl, c->params, &c->node.pool->rl) < 0) {
		client_fail(c, "53200", "out of memory");
		return;
	}
	pg_put_auth(out, PG_AUTH_OK, NULL, 0);
	/* the upstream's ParameterStatus set, with the values this client asked for */
	const uint8_t *msg = p, *body;
	uint8_t type;
	size_t blen, mlen;
	char *datestyle = NULL;	/* CrateDB's lower-case "datestyle", if no "DateStyle" */
	bool has_datestyle = false;

	while (pg_next_msg(&p, &len, &type, &body, &blen, &mlen)) {
		const char *name, *value, *mine = NULL;
		int i = -1;
		if (type == 'S' && pg_parse_param_status(body, blen, &name, &value) == 0) {
			i = sp_index(name, strlen(name));
			if ((mine = i >= 0 ? sp_get(&c->rl.params, i, NULL) : NULL))
				value = mine;
			if (strcmp(name, "DateStyle") == 0)
				has_datestyle = true;
			else if (strcmp(name, "datestyle") == 0 && !datestyle)
				datestyle = strdup(value);
		}
		if (i >= 0 && mine)
			pg_put_param_status(out, name, mine);
		else
			evbuffer_add(out, msg, mlen);
		msg = p;
	}
	/* libpq's parameter names are case-sensitive: psycopg2 (and aiopg) look for DateStyle
	 * and, not finding it, send SET DATESTYLE TO 'ISO' before their first query, a round
	 * trip to the upstream per client. CrateDB's key is lower-case; report it under
	 * PostgreSQL's name too, as PgBouncer's welcome does. */
	if (datestyle && !has_datestyle)
		pg_put_param_status(out, "DateStyle", datestyle);
	free(datestyle);
	pg_put_backend_key(out, c->cancel_pid, c->cancel_key);
	pg_put_ready(out, 'I');
	pool_client_move(&c->node, CL_IDLE);
	sio_enable(c->bev, EV_READ);
	if (evbuffer_get_length(sio_input(c->bev)) > 0)
		read_cb(c->bev, c);
}

/* Authentication passed: the login state goes, the client gets its cancel key. -1 after
 * failing the client. */
static int finish_login(struct client *c, const char *what)
{
	scram_server_free(c->auth->scram);
	if (c->auth->secret)
		explicit_bzero(c->auth->secret, strlen(c->auth->secret));
	free(c->auth->secret);
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
	if (rt_cfg()->log_connections) {
		char buf[PEER_LEN];
		log_info("C-%p %s: login db=%s user=%s%s", (void *)c, peer(c, buf, sizeof(buf)),
			 db_of(c), user_of(c), what);
	}
	return 0;
}

/* A console client: no pool, no server; admin.c answers its queries. */
static void admin_login(struct client *c)
{
	if (finish_login(c, " (admin console)") < 0)
		return;
	c->node.state = CL_IDLE;
	admin_welcome(sio_output(c->bev), c->cancel_pid, c->cancel_key);
	sio_enable(c->bev, EV_READ);
	if (evbuffer_get_length(sio_input(c->bev)) > 0)
		read_cb(c->bev, c);
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
		log_warn("peer authentication: the client's uid is not visible (user namespace, e.g. "
			 "PrivateUsers=yes); refusing \"%s\"", user_of(c));
		return false;
	}
	if (getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return false;
	return strcmp(res->pw_name, user_of(c)) == 0;
}

/* The startup packet named a database and user: pick the entry, start auth. */
static void start_auth(struct client *c)
{
	const struct cfg *cfg = rt_cfg();
	struct evbuffer *out = sio_output(c->bev);
	struct client_auth *a = c->auth;
	const char *secret;

	if (admin_is_console_db(db_of(c))) {
		c->admin = (uint8_t)admin_role_for(cfg, user_of(c));
		if (c->admin == ADMIN_NONE) {
			client_fail(c, "28000", "not allowed to use the admin console: user \"%s\" is in "
				    "neither admin_users nor stats_users", user_of(c));
			return;
		}
	} else if (!cfg_find_db(cfg, db_of(c))) {
		client_fail(c, "3D000", "no such database: %s", db_of(c));
		return;
	} else if (pools_is_disabled(db_of(c))) {
		client_fail(c, "08P01", "database \"%s\" is disabled (DISABLE from the admin console)",
			    db_of(c));
		return;
	}
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
			client_fail(c, "28000", "peer authentication failed for user \"%s\": "
				    "peer authentication works only on the Unix socket", user_of(c));
			return;
		}
		if (!peer_ok(c)) {
			client_fail(c, "28000", "peer authentication failed for user \"%s\"", user_of(c));
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
	case AUTH_SCRAM: {
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
					 "scram-sha-256", user_of(c));
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
		pg_put_auth(out, PG_AUTH_SASL, "SCRAM-SHA-256\0", sizeof("SCRAM-SHA-256\0"));
		return;
	}
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
		if (a->secret && (a->step == AS_PASSWORD
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
			client_fail(c, "28000", "unsupported SASL mechanism \"%s\"", (const char *)body);
			return;
		}
		uint32_t dlen = pg_get_u32(body + n + 1);
		if (dlen != len - n - 5) {
			client_fail(c, "08P01", "invalid SASLInitialResponse length");
			return;
		}
		if (scram_server_first(a->scram, (const char *)body + n + 5, dlen, &msg, &mlen, &err) < 0) {
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
			log_debug("C-%p: cancel request for %u matches no running query", (void *)c,
				  st.cancel_pid);
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
		log_debug("C-%p: asked for protocol 3.%u or options, offered 3.0", (void *)c,
			  st.version & 0xffff);
	start_auth(c);
}

static void login_read(struct client *c)
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
				client_fail(c, "08P01", "startup packet too large (%u bytes, limit %d)",
					    plen, PG_STARTUP_MAX);
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
			client_fail(c, "08P01", "expected a password message during authentication");
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
