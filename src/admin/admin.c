/* The admin console. Queries arrive as simple-protocol Query messages from clients of
 * the virtual database "cratebouncer" (or "pgbouncer"); answers are result sets with
 * PgBouncer's column names and order (show.c), so that its tools work unchanged.
 * stats_users may run SHOW; admin_users may run everything. This file: the console's
 * login, the commands and SHOW as tables, the message loop. */
#include "config.h"

#include "admin_int.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cfg.h"
#include "pgwire/client.h"
#include "core/log.h"
#include "core/runtime.h"
#include "pgwire/pgproto.h"
#include "pgwire/pool.h"

#define QUERY_MAX (64 * 1024)

static struct admin_hooks hooks;

/* WAIT_CLOSE waiters: console clients by id, polled until the old servers are gone. */
struct waiter {
	struct waiter *next;
	uint32_t client;
	char db[64];
};
static struct waiter *waiters;
static struct event *wait_timer;

void admin_set_hooks(const struct admin_hooks *h)
{
	hooks = *h;
}

bool admin_is_console_db(const char *database)
{
	return strcmp(database, "cratebouncer") == 0 || strcmp(database, "pgbouncer") == 0;
}

enum admin_role admin_role_for(const struct cfg *cfg, const char *user)
{
	if (cfg_list_has(cfg->admin_users, user))
		return ADMIN_FULL;
	if (cfg_list_has(cfg->stats_users, user))
		return ADMIN_STATS;
	return ADMIN_NONE;
}

void admin_welcome(struct evbuffer *out, uint32_t pid, uint32_t key)
{
	pg_put_auth(out, PG_AUTH_OK, NULL, 0);
	pg_put_param_status(out, "server_version", "15.0 (" PACKAGE_NAME " " PACKAGE_VERSION ")");
	pg_put_param_status(out, "server_encoding", "UTF8");
	pg_put_param_status(out, "client_encoding", "UTF8");
	pg_put_param_status(out, "DateStyle", "ISO");
	pg_put_param_status(out, "TimeZone", "UTC");
	pg_put_param_status(out, "integer_datetimes", "on");
	pg_put_param_status(out, "standard_conforming_strings", "on");
	pg_put_param_status(out, "application_name", "");
	pg_put_backend_key(out, pid, key);
	pg_put_ready(out, 'I');
}

static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct waiter **pp = &waiters;
	struct timeval tv = { 0, 100000 };

	while (*pp) {
		struct waiter *w = *pp;
		struct client *c = client_by_id(w->client);
		if (!c) {
			*pp = w->next;
			free(w);
			continue;
		}
		if (pools_old_servers(*w->db ? w->db : NULL) == 0) {
			struct evbuffer *out = client_output(c);
			adm_complete(out, "WAIT_CLOSE");
			pg_put_ready(out, 'I');
			*pp = w->next;
			free(w);
			continue;
		}
		pp = &w->next;
	}
	if (waiters)
		evtimer_add(wait_timer, &tv);
}

/* WAIT_CLOSE answers later: -1 tells the caller not to send ReadyForQuery now. */
static int wait_close(struct client *c, const char *db)
{
	struct waiter *w;
	struct timeval tv = { 0, 100000 };

	if (pools_old_servers(db) == 0)
		return 0;
	if (!wait_timer)
		wait_timer = evtimer_new(rt_base(), wait_cb, NULL);
	w = calloc(1, sizeof(*w));
	if (!wait_timer || !w) {
		free(w);
		return 0;
	}
	w->client = client_id(c);
	snprintf(w->db, sizeof(w->db), "%s", db ? db : "");
	w->next = waiters;
	waiters = w;
	evtimer_add(wait_timer, &tv);
	return -1;
}

/* SET key = value: reloadable options of the running config. */
static void set_option(struct evbuffer *out, char *args)
{
	char *eq = strchr(args, '=');
	char *key = args, *val;

	if (!eq) {
		adm_error(out, "42601", "syntax: SET key = value");
		return;
	}
	*eq = '\0';
	val = eq + 1;
	while (isspace((unsigned char)*val))
		val++;
	for (char *e = key + strlen(key); e > key && isspace((unsigned char)e[-1]);)
		*--e = '\0';
	size_t vl = strlen(val);
	if (vl >= 2 && val[0] == '\'' && val[vl - 1] == '\'') {
		val[vl - 1] = '\0';
		val++;
	}
	char *err = NULL;
	if (!hooks.set || hooks.set(key, val, &err) < 0) {
		adm_error(out, "22023", "%s", err ? err : "SET is not available");
		free(err);
		return;
	}
	log_info("SET %s from the admin console", key);
	adm_complete(out, "SET");
}

/* Splits "VERB arg" in place; upper-cases VERB. */
static char *split(char *q, char **arg)
{
	char *p;

	while (isspace((unsigned char)*q))
		q++;
	for (p = q + strlen(q); p > q && (isspace((unsigned char)p[-1]) || p[-1] == ';');)
		*--p = '\0';
	for (p = q; *p && !isspace((unsigned char)*p); p++)
		*p = (char)toupper((unsigned char)*p);
	if (*p) {
		*p++ = '\0';
		while (isspace((unsigned char)*p))
			p++;
	}
	*arg = *p ? p : NULL;
	return q;
}

static void show_stats_all(struct evbuffer *out)
{
	show_stats(out, true, true);
}

static void show_stats_totals(struct evbuffer *out)
{
	show_stats(out, true, false);
}

static void show_stats_averages(struct evbuffer *out)
{
	show_stats(out, false, true);
}

static void show_http_side(struct evbuffer *out)
{
	show_http(out, false);
}

static void show_http_pools(struct evbuffer *out)
{
	show_http(out, true);
}

static void show_help(struct evbuffer *out);

/* SHOW's subcommands, in the order SHOW HELP lists them. */
static const struct {
	const char *name;
	void (*show)(struct evbuffer *out);
} shows[] = {
	{ "HELP", show_help },
	{ "CONFIG", show_config },
	{ "USERS", show_users },
	{ "DATABASES", show_databases },
	{ "POOLS", show_pools },
	{ "CLIENTS", show_clients },
	{ "SERVERS", show_servers },
	{ "STATS", show_stats_all },
	{ "STATS_TOTALS", show_stats_totals },
	{ "STATS_AVERAGES", show_stats_averages },
	{ "LISTS", show_lists },
	{ "MEM", show_mem },
	{ "STATE", show_state },
	{ "VERSION", show_version },
	{ "HTTP", show_http_side },
	{ "HTTP_POOLS", show_http_pools },
};

/* The commands other than SHOW (admin_users only). arg is NULL when none was given; -1
 * defers the answer (WAIT_CLOSE). */
struct command {
	const char *verb, *usage; /* usage: what SHOW HELP shows */
	int (*run)(struct client *c, const char *verb, char *arg, struct evbuffer *out);
};

static int cmd_set(struct client *c, const char *verb, char *arg, struct evbuffer *out)
{
	(void)c;
	(void)verb;
	if (!arg)
		adm_error(out, "42601", "syntax: SET key = value");
	else
		set_option(out, arg);
	return 0;
}

static int cmd_reload(struct client *c, const char *verb, char *arg, struct evbuffer *out)
{
	(void)c;
	(void)verb;
	(void)arg;
	if (hooks.reload)
		hooks.reload();
	adm_complete(out, "RELOAD");
	return 0;
}

static int cmd_pause(struct client *c, const char *verb, char *arg, struct evbuffer *out)
{
	(void)c;
	if (pools_pause(arg, verb[0] == 'P') < 0)
		adm_error(out, "3D000", "no such database: %s", arg);
	else
		adm_complete(out, verb);
	return 0;
}

static int cmd_disable(struct client *c, const char *verb, char *arg, struct evbuffer *out)
{
	(void)c;
	if (!arg)
		adm_error(out, "42601", "%s needs a database name", verb);
	else if (pools_disable(arg, verb[0] == 'D') < 0)
		adm_error(out, "3D000", "no such database: %s", arg);
	else
		adm_complete(out, verb);
	return 0;
}

static int cmd_reconnect(struct client *c, const char *verb, char *arg, struct evbuffer *out)
{
	(void)c;
	(void)verb;
	if (pools_reconnect(arg) < 0)
		adm_error(out, "3D000", "no such database: %s", arg);
	else
		adm_complete(out, "RECONNECT");
	return 0;
}

static int cmd_kill(struct client *c, const char *verb, char *arg, struct evbuffer *out)
{
	(void)c;
	(void)verb;
	if (!arg)
		adm_error(out, "42601", "KILL needs a database name");
	else if (pools_kill(arg) < 0)
		adm_error(out, "3D000", "no such database: %s", arg);
	else
		adm_complete(out, "KILL");
	return 0;
}

static int cmd_wait_close(struct client *c, const char *verb, char *arg, struct evbuffer *out)
{
	(void)verb;
	int rc = wait_close(c, arg);
	if (rc == 0)
		adm_complete(out, "WAIT_CLOSE");
	return rc;
}

static int cmd_shutdown(struct client *c, const char *verb, char *arg, struct evbuffer *out)
{
	int mode = 0;

	(void)c;
	(void)verb;
	if (arg && !strcasecmp(arg, "WAIT_FOR_SERVERS"))
		mode = 1;
	else if (arg && !strcasecmp(arg, "WAIT_FOR_CLIENTS"))
		mode = 2;
	else if (arg) {
		adm_error(out, "42601", "SHUTDOWN takes WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS");
		return 0;
	}
	adm_complete(out, "SHUTDOWN");
	if (hooks.shutdown)
		hooks.shutdown(mode);
	return 0;
}

static const struct command commands[] = {
	{ "SET", "SET key = arg", cmd_set },
	{ "RELOAD", "RELOAD", cmd_reload },
	{ "PAUSE", "PAUSE [<db>]", cmd_pause },
	{ "RESUME", "RESUME [<db>]", cmd_pause },
	{ "DISABLE", "DISABLE <db>", cmd_disable },
	{ "ENABLE", "ENABLE <db>", cmd_disable },
	{ "RECONNECT", "RECONNECT [<db>]", cmd_reconnect },
	{ "KILL", "KILL <db>", cmd_kill },
	{ "WAIT_CLOSE", "WAIT_CLOSE [<db>]", cmd_wait_close },
	{ "SHUTDOWN", "SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]", cmd_shutdown },
};

/* SHOW HELP: made from the two tables, so that it lists what there is. */
static void show_help(struct evbuffer *out)
{
	char help[1024];
	size_t n = (size_t)snprintf(help, sizeof(help), "SHOW ");

	for (size_t i = 0; i < sizeof(shows) / sizeof(shows[0]) && n < sizeof(help); i++)
		n += (size_t)snprintf(help + n, sizeof(help) - n, "%s%s", i ? "|" : "",
				      shows[i].name);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]) && n < sizeof(help); i++)
		n += (size_t)snprintf(help + n, sizeof(help) - n, "; %s", commands[i].usage);
	adm_notice(out, help);
	adm_complete(out, "SHOW");
}

/* One query; returns -1 when the answer is deferred (WAIT_CLOSE). */
static int query(struct client *c, enum admin_role role, char *q, struct evbuffer *out)
{
	char *arg, *verb = split(q, &arg);

	if (!*verb) {
		pg_put_msg(out, 'I', NULL, 0); /* EmptyQueryResponse */
		return 0;
	}
	if (strcmp(verb, "SHOW") == 0) {
		char *sub = arg ? arg : (char *)"";
		for (char *p = sub; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		for (size_t i = 0; i < sizeof(shows) / sizeof(shows[0]); i++)
			if (strcmp(sub, shows[i].name) == 0) {
				shows[i].show(out);
				return 0;
			}
		adm_error(out, "42601", "unknown SHOW subcommand \"%s\"; try SHOW HELP", sub);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(verb, commands[i].verb) != 0)
			continue;
		if (role != ADMIN_FULL) {
			adm_error(out, "42501",
				  "%s needs admin_users; stats_users may only run SHOW", verb);
			return 0;
		}
		return commands[i].run(c, verb, arg, out);
	}
	if (role != ADMIN_FULL)
		adm_error(out, "42501", "%s needs admin_users; stats_users may only run SHOW",
			  verb);
	else
		adm_error(out, "42601", "unknown command \"%s\"; try SHOW HELP", verb);
	return 0;
}

int admin_handle(struct client *c, enum admin_role role, bool *skip, struct evbuffer *in,
		 struct evbuffer *out)
{
	uint8_t hdr[PG_HDR_LEN];

	while (evbuffer_get_length(in) >= PG_HDR_LEN) {
		evbuffer_copyout(in, hdr, PG_HDR_LEN);
		uint32_t len = pg_get_u32(hdr + 1);
		if (len < 4 || len > QUERY_MAX) {
			pg_put_error(out, "FATAL", "08P01", "invalid message length");
			return -1;
		}
		if (hdr[0] == 0 || !strchr("QXSPBEDCHFdcf", hdr[0])) {
			pg_put_error(out, "FATAL", "08P01", "invalid frontend message type %u",
				     hdr[0]);
			return -1;
		}
		if (evbuffer_get_length(in) < (size_t)len + 1)
			return 0;
		/* after an extended-protocol message, the rest of its group up to Sync is
		 * skipped (as PostgreSQL skips after an error) */
		if (*skip && hdr[0] != 'S' && hdr[0] != 'X') {
			evbuffer_drain(in, len + 1);
			continue;
		}
		switch (hdr[0]) {
		case 'X':
			evbuffer_drain(in, len + 1);
			return -1;
		case 'Q': {
			char *q = malloc(len - 4 + 1);
			if (!q)
				return -1;
			evbuffer_drain(in, PG_HDR_LEN);
			evbuffer_remove(in, q, len - 4);
			q[len - 4] = '\0';
			int deferred = query(c, role, q, out);
			free(q);
			if (deferred == 0)
				pg_put_ready(out, 'I');
			break;
		}
		case 'S': /* Sync ends an extended-protocol attempt */
			evbuffer_drain(in, len + 1);
			*skip = false;
			pg_put_ready(out, 'I');
			break;
		case 'P':
		case 'B':
		case 'E':
		case 'D':
		case 'C':
		case 'H':
			evbuffer_drain(in, len + 1);
			adm_error(out, "0A000",
				  "the admin console speaks only the simple query protocol "
				  "(psql, or psycopg with a ClientCursor)");
			*skip = true;
			break;
		case 'F':
			evbuffer_drain(in, len + 1);
			adm_error(out, "0A000", "the admin console does not take function calls");
			pg_put_ready(out, 'I');
			break;
		case 'd':
		case 'c':
		case 'f': /* COPY messages outside COPY: ignored */
			evbuffer_drain(in, len + 1);
			break;
		}
	}
	return 0;
}

_Static_assert(ADMIN_NONE == 0, "role 0 is no role to client_console");

static int role_for(const struct cfg *cfg, const char *user)
{
	return (int)admin_role_for(cfg, user);
}

static int handle(struct client *c, int role, bool *skip, struct evbuffer *in, struct evbuffer *out)
{
	return admin_handle(c, (enum admin_role)role, skip, in, out);
}

const struct client_console admin_console = {
	.is_console_db = admin_is_console_db,
	.role_for = role_for,
	.welcome = admin_welcome,
	.handle = handle,
};
