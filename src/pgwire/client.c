/* Client connections. A client's life: startup packet and authentication (client_auth.c),
 * the welcome (ParameterStatus from the pool, BackendKeyData issued at login), then its
 * session on a server from the pool. An
 * idle logged-in client holds no I/O buffer memory: its evbuffers are empty between
 * messages. */
#include "client_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/cfg.h"
#include "core/log.h"
#include "core/runtime.h"
#include "pgproto.h"
#include "relay.h"
#include "scram.h"
#include "server.h"
#include "sessparam.h"
#include "core/sockio.h"
#include "core/util.h"

static const struct client_console *console;
static TAILQ_HEAD(, client) all_clients = TAILQ_HEAD_INITIALIZER(all_clients);
static int nclients;

static void write_cb(struct sio *bev, void *arg);
static void event_cb(struct sio *bev, short what, void *arg);
static void fail(struct client *c, bool log, const char *sqlstate, const char *msg);
static void fail_flush(struct client *c, bool log, bool flush, const char *sqlstate,
		       const char *msg);
static void forward(struct client *c);

void client_set_console(const struct client_console *cons)
{
	console = cons;
}

const struct client_console *client_console(void)
{
	return console;
}

/* A parameter of its startup packet, the last of that name as pg_parse_startup takes
 * it (NULL: none). Looked up, not kept: a few dozen bytes walked at login and by SHOW
 * CLIENTS, and an idle client is two pointers smaller. */
const char *startup_param(const struct client *c, const char *name)
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
const char *user_of(const struct client *c)
{
	return startup_param(c, "user");
}

const char *db_of(const struct client *c)
{
	const char *db = startup_param(c, "database");
	return db && *db ? db : user_of(c);
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

	TAILQ_FOREACH (c, &all_clients, all)
		if (c->cancel_pid == id && !c->closing)
			return c;
	return NULL;
}

void clients_trim(void)
{
	struct client *c;

	TAILQ_FOREACH (c, &all_clients, all)
		if (!c->closing)
			sio_trim(c->bev);
}

size_t client_struct_size(void)
{
	return sizeof(struct client);
}

void clients_foreach(void (*fn)(const struct client_info *ci, void *arg), void *arg)
{
	static const char *const names[] = { "login",   "waiting", "active",
					     "waiting", "active",  "closing" };
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
				       ? now_usec() - c->wait_since
				       : 0;
		ci.ptr = c;
		ci.link = c->server;
		ci.id = c->cancel_pid;
		ci.prepared = rl_client_prepared(&c->rl);
		ci.admin = c->admin != 0;
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
const char *client_peer(const struct client *c, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	int port;

	if (c->unix_socket)
		return "unix";
	sock_addr_text(sio_fd(c->bev), 1, host, sizeof(host), &port, "?");
	snprintf(buf, len, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	return buf;
}

void client_log(const struct client *c, enum log_level lvl, const char *fmt, ...)
{
	char msg[1024], peer[PEER_LEN];
	va_list ap;

	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_msg(lvl, "C-%p %s: %s", (const void *)c, client_peer(c, peer, sizeof(peer)), msg);
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
	sio_setcb(c->bev, client_read_cb, write_cb, event_cb, c);
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
	if (c->closing)
		return;
	if (log && rt_cfg()->log_pooler_errors)
		client_log(c, LOG_LVL_WARN, "pooler error: %s", msg);
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
void client_close(struct client *c, bool flush, const char *reason)
{
	struct timeval tv = { CLOSE_FLUSH_SECS, 0 };

	if (c->closing)
		return;
	c->closing = true;
	if (rt_cfg()->log_disconnections)
		client_log(c, LOG_LVL_INFO, "closing because: %s (age=%.3fs)", reason,
			   (double)(now_usec() - c->connect_time) / 1e6);
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
		free_secret(c->auth->secret);
		free(c->auth);
	}
	rl_client_clear(&c->rl);
	free(c->params);
	free(c);
}

void client_read_cb(struct sio *bev, void *arg)
{
	struct client *c = arg;

	if (c->closing)
		return;
	c->request_time = now_usec();
	if (c->admin && c->node.state != CL_LOGIN) {
		if (console->handle(c, c->admin, &c->admin_skip, sio_input(bev), sio_output(bev)) <
		    0)
			client_close(c, true, "client close request");
		return;
	}
	switch (c->node.state) {
	case CL_LOGIN:
		client_login_read(c);
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
	bool waits = false;

	switch (server_forward(c->server, c, sio_input(c->bev), &err, &waits)) {
	case RL_OK:
		break;
	case RL_TERMINATE:
		client_close(c, false, "client close request");
		return;
	case RL_ERROR:
		client_fail(c, "08P01", "%s", err);
		return;
	}
	if (waits) {
		/* its query is pipelined (or others' are behind it): what it sends next
		 * waits for that answer */
		if (evbuffer_get_length(sio_input(c->bev)) > WAIT_BUFFER_MAX)
			client_pause_read(c, true); /* client_unlinked resumes it */
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
	if (!c->closing && c->node.state == CL_IDLE && evbuffer_get_length(sio_input(c->bev)) > 0)
		client_read_cb(c->bev, c);
}

bool client_linked(struct client *c, struct server *sv)
{
	c->server = sv;
	pool_client_move(&c->node, CL_ACTIVE);
	sio_enable(c->bev, EV_READ);
	if (evbuffer_get_length(sio_input(c->bev)) > 0)
		forward(c);
	return c->server == sv;
}

void client_queued(struct client *c, struct server *sv)
{
	c->server = sv;
	pool_client_move(&c->node, CL_ACTIVE);
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
	char *datestyle = NULL; /* CrateDB's lower-case "datestyle", if no "DateStyle" */
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
		client_read_cb(c->bev, c);
}
