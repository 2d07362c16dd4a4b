/* The admin console's SHOW result sets: RowDescription, DataRows and CommandComplete with
 * PgBouncer's column names and order (so that its tools read them), from pools_foreach,
 * clients_foreach, pools_foreach_server, the config and the HTTP side's counters. */
#include "config.h"

#include "admin_int.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "core/cfg.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/util.h"
#include "http/http_proxy.h"
#include "pgwire/client.h"
#include "pgwire/pgproto.h"
#include "pgwire/pool.h"
#include "pgwire/server.h"

#define TYPE_TEXT 25
#define TYPE_INT8 20
#define TYPE_NUMERIC 1700

/* A result set being written: RowDescription, DataRows, CommandComplete. */
struct rs {
	struct evbuffer *out;
	int ncols;
	int nrows;
};

/* cols: "name:t" (text) or "name:i" (int8) or "name:n" (numeric). */
static void rs_begin(struct rs *r, struct evbuffer *out, const char *const *cols)
{
	struct evbuffer *b = evbuffer_new();
	uint16_t n = 0;

	r->out = out;
	r->nrows = 0;
	for (const char *const *c = cols; *c; c++)
		n++;
	r->ncols = n;
	if (!b)
		return;
	uint16_t nn = htons(n);
	evbuffer_add(b, &nn, 2);
	for (const char *const *c = cols; *c; c++) {
		const char *colon = strchr(*c, ':');
		size_t len = colon ? (size_t)(colon - *c) : strlen(*c);
		char t = colon ? colon[1] : 't';
		uint32_t oid = htonl(t == 'i' ? TYPE_INT8 : t == 'n' ? TYPE_NUMERIC : TYPE_TEXT);
		int16_t typlen = (int16_t)htons((uint16_t)(t == 'i' ? 8 : -1));
		uint32_t zero4 = 0, typmod = htonl(0xffffffffu);
		uint16_t zero2 = 0;
		evbuffer_add(b, *c, len);
		evbuffer_add(b, "", 1);
		evbuffer_add(b, &zero4, 4); /* table oid */
		evbuffer_add(b, &zero2, 2); /* column number */
		evbuffer_add(b, &oid, 4);
		evbuffer_add(b, &typlen, 2);
		evbuffer_add(b, &typmod, 4);
		evbuffer_add(b, &zero2, 2); /* text format */
	}
	pg_put_msg(out, 'T', evbuffer_pullup(b, -1), evbuffer_get_length(b));
	evbuffer_free(b);
}

/* One row; vals[i] NULL is SQL NULL. */
static void rs_row(struct rs *r, const char *const *vals)
{
	struct evbuffer *b = evbuffer_new();
	uint16_t n = htons((uint16_t)r->ncols);

	if (!b)
		return;
	evbuffer_add(b, &n, 2);
	for (int i = 0; i < r->ncols; i++) {
		uint32_t len = vals[i] ? htonl((uint32_t)strlen(vals[i])) : htonl(0xffffffffu);
		evbuffer_add(b, &len, 4);
		if (vals[i])
			evbuffer_add(b, vals[i], strlen(vals[i]));
	}
	pg_put_msg(r->out, 'D', evbuffer_pullup(b, -1), evbuffer_get_length(b));
	evbuffer_free(b);
	r->nrows++;
}

static void rs_end(struct rs *r, const char *tag)
{
	pg_put_msg(r->out, 'C', tag, strlen(tag) + 1);
}

void adm_complete(struct evbuffer *out, const char *tag)
{
	pg_put_msg(out, 'C', tag, strlen(tag) + 1);
}

void adm_notice(struct evbuffer *out, const char *msg)
{
	char body[512];
	int n = snprintf(body, sizeof(body), "SNOTICE%cVNOTICE%cC00000%cM%s%c", 0, 0, 0, msg, 0);

	if (n < 0 || (size_t)n >= sizeof(body) - 1)
		return;
	body[n++] = '\0';
	pg_put_msg(out, 'N', body, (size_t)n);
}

void adm_error(struct evbuffer *out, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pg_put_error(out, "ERROR", sqlstate, "%s", msg);
}

/* Numbers as text, from a ring of buffers so that a row can hold many. */
static const char *num(uint64_t v)
{
	static char ring[48][24];
	static int next;
	char *b = ring[next++ % 48];

	snprintf(b, 24, "%llu", (unsigned long long)v);
	return b;
}

static const char *inum(long long v)
{
	static char ring[16][24];
	static int next;
	char *b = ring[next++ % 16];

	snprintf(b, 24, "%lld", v);
	return b;
}

static const char *ptr_str(const void *p)
{
	static char ring[8][24];
	static int next;
	char *b = ring[next++ % 8];

	if (!p)
		return NULL;
	snprintf(b, 24, "%p", p);
	return b;
}

/* A monotonic time as wall-clock text, as PgBouncer shows connect_time. The offset between
 * the two clocks is taken once, so that the same connection shows the same second every
 * time (taking it per call made the second flip when the two fractions differed). */
static const char *when(uint64_t mono_usec)
{
	static char ring[8][32];
	static int next;
	static int64_t offset_usec; /* wall clock minus monotonic clock */
	char *b = ring[next++ % 8];
	struct tm tm;

	if (!offset_usec) {
		struct timeval tv;
		gettimeofday(&tv, NULL);
		offset_usec = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec - (int64_t)now_usec();
	}
	time_t t = (time_t)(((int64_t)mono_usec + offset_usec) / 1000000);
	gmtime_r(&t, &tm);
	strftime(b, 32, "%Y-%m-%d %H:%M:%S UTC", &tm);
	return b;
}

/* Per-database aggregation of pool statistics (PgBouncer reports by database). */
struct db_stats {
	char name[64];
	struct stats totals;
	struct stats_avg avg;
};

struct db_stats_acc {
	struct db_stats *v;
	size_t n;
};

static void add_db_stats(const struct pool_info *pi, void *arg)
{
	struct db_stats_acc *acc = arg;
	struct db_stats *d = NULL;

	for (size_t i = 0; i < acc->n; i++)
		if (strcmp(acc->v[i].name, pi->database) == 0)
			d = &acc->v[i];
	if (!d) {
		acc->v = xrealloc(acc->v, (acc->n + 1) * sizeof(*acc->v));
		d = &acc->v[acc->n++];
		memset(d, 0, sizeof(*d));
		snprintf(d->name, sizeof(d->name), "%s", pi->database);
	}
	const struct stats *t = pi->totals;
	d->totals.xact_count += t->xact_count;
	d->totals.query_count += t->query_count;
	d->totals.server_assignment_count += t->server_assignment_count;
	d->totals.bytes_received += t->bytes_received;
	d->totals.bytes_sent += t->bytes_sent;
	d->totals.xact_time_us += t->xact_time_us;
	d->totals.query_time_us += t->query_time_us;
	d->totals.wait_time_us += t->wait_time_us;
	d->totals.client_parse_count += t->client_parse_count;
	d->totals.server_parse_count += t->server_parse_count;
	d->totals.bind_count += t->bind_count;
	const struct stats_avg *a = pi->avg;
	d->avg.xact_count += a->xact_count;
	d->avg.query_count += a->query_count;
	d->avg.server_assignment_count += a->server_assignment_count;
	d->avg.recv += a->recv;
	d->avg.sent += a->sent;
	d->avg.xact_time_us += a->xact_time_us;
	d->avg.query_time_us += a->query_time_us;
	d->avg.wait_time_us += a->wait_time_us;
	d->avg.client_parse_count += a->client_parse_count;
	d->avg.server_parse_count += a->server_parse_count;
	d->avg.bind_count += a->bind_count;
}

void show_stats(struct evbuffer *out, bool totals, bool avgs)
{
	static const char *const stats_cols[] = { "database",
						  "total_xact_count:i",
						  "total_query_count:i",
						  "total_server_assignment_count:i",
						  "total_received:i",
						  "total_sent:i",
						  "total_xact_time:i",
						  "total_query_time:i",
						  "total_wait_time:i",
						  "total_client_parse_count:i",
						  "total_server_parse_count:i",
						  "total_bind_count:i",
						  "avg_xact_count:i",
						  "avg_query_count:i",
						  "avg_server_assignment_count:i",
						  "avg_recv:i",
						  "avg_sent:i",
						  "avg_xact_time:i",
						  "avg_query_time:i",
						  "avg_wait_time:i",
						  "avg_client_parse_count:i",
						  "avg_server_parse_count:i",
						  "avg_bind_count:i",
						  NULL };
	static const char *const part_cols[] = { "database",
						 "xact_count:i",
						 "query_count:i",
						 "server_assignment_count:i",
						 "bytes_received:i",
						 "bytes_sent:i",
						 "xact_time:i",
						 "query_time:i",
						 "wait_time:i",
						 "client_parse_count:i",
						 "server_parse_count:i",
						 "bind_count:i",
						 NULL };
	struct db_stats_acc acc = { 0 };
	struct rs r;

	pools_foreach(add_db_stats, &acc);
	rs_begin(&r, out, totals && avgs ? stats_cols : part_cols);
	for (size_t i = 0; i < acc.n; i++) {
		const struct stats *t = &acc.v[i].totals;
		const struct stats_avg *a = &acc.v[i].avg;
		const char *tv[] = { num(t->xact_count),
				     num(t->query_count),
				     num(t->server_assignment_count),
				     num(t->bytes_received),
				     num(t->bytes_sent),
				     num(t->xact_time_us),
				     num(t->query_time_us),
				     num(t->wait_time_us),
				     num(t->client_parse_count),
				     num(t->server_parse_count),
				     num(t->bind_count) };
		const char *av[] = { num((uint64_t)a->xact_count),
				     num((uint64_t)a->query_count),
				     num((uint64_t)a->server_assignment_count),
				     num((uint64_t)a->recv),
				     num((uint64_t)a->sent),
				     num((uint64_t)a->xact_time_us),
				     num((uint64_t)a->query_time_us),
				     num((uint64_t)a->wait_time_us),
				     num((uint64_t)a->client_parse_count),
				     num((uint64_t)a->server_parse_count),
				     num((uint64_t)a->bind_count) };
		const char *row[23];
		int k = 0;
		row[k++] = acc.v[i].name;
		if (totals)
			for (int j = 0; j < 11; j++)
				row[k++] = tv[j];
		if (avgs)
			for (int j = 0; j < 11; j++)
				row[k++] = av[j];
		rs_row(&r, row);
	}
	free(acc.v);
	rs_end(&r, "SHOW");
}

static void pool_row(const struct pool_info *pi, void *arg)
{
	const char *row[] = { pi->database,
			      pi->user,
			      num((uint64_t)pi->cl_active),
			      num((uint64_t)pi->cl_waiting),
			      "0",
			      "0",
			      num((uint64_t)pi->sv_active),
			      "0",
			      num((uint64_t)pi->sv_being_canceled),
			      num((uint64_t)pi->sv_idle),
			      num((uint64_t)pi->sv_used),
			      num((uint64_t)pi->sv_tested),
			      num((uint64_t)pi->sv_login),
			      num(pi->maxwait_us / 1000000u),
			      num(pi->maxwait_us % 1000000u),
			      pi->pool_mode };
	rs_row(arg, row);
}

void show_pools(struct evbuffer *out)
{
	static const char *const cols[] = { "database",
					    "user",
					    "cl_active:i",
					    "cl_waiting:i",
					    "cl_active_cancel_req:i",
					    "cl_waiting_cancel_req:i",
					    "sv_active:i",
					    "sv_active_cancel:i",
					    "sv_being_canceled:i",
					    "sv_idle:i",
					    "sv_used:i",
					    "sv_tested:i",
					    "sv_login:i",
					    "maxwait:i",
					    "maxwait_us:i",
					    "pool_mode",
					    NULL };
	struct rs r;

	rs_begin(&r, out, cols);
	pools_foreach(pool_row, &r);
	rs_end(&r, "SHOW");
}

static const char *const conn_cols[] = { "type",
					 "user",
					 "database",
					 "state",
					 "addr",
					 "port:i",
					 "local_addr",
					 "local_port:i",
					 "connect_time",
					 "request_time",
					 "wait:i",
					 "wait_us:i",
					 "close_needed:i",
					 "ptr",
					 "link",
					 "remote_pid:i",
					 "tls",
					 "application_name",
					 "prepared_statements:i",
					 "id:i",
					 NULL };

static void client_row(const struct client_info *ci, void *arg)
{
	const char *row[] = { "C",
			      ci->user,
			      ci->database,
			      ci->state,
			      ci->addr,
			      inum(ci->port),
			      ci->local_addr,
			      inum(ci->local_port),
			      when(ci->connect_usec),
			      when(ci->request_usec),
			      num(ci->wait_usec / 1000000u),
			      num(ci->wait_usec % 1000000u),
			      "0",
			      ptr_str(ci->ptr),
			      ptr_str(ci->link),
			      "0",
			      "",
			      ci->application_name,
			      num(ci->prepared),
			      num(ci->id) };
	rs_row(arg, row);
}

static void server_row(struct server *sv, struct pool *pool, void *arg)
{
	struct server_info si;

	server_describe(sv, &si);
	const char *row[] = { "S",
			      pool->user,
			      pool->db->name,
			      si.state,
			      si.addr,
			      inum(si.port),
			      si.local_addr,
			      inum(si.local_port),
			      when(si.connect_usec),
			      when(si.request_usec),
			      "0",
			      "0",
			      num(server_gen(sv) != pool->gen),
			      ptr_str(si.ptr),
			      ptr_str(si.link),
			      num(si.remote_pid),
			      si.tls,
			      "",
			      num(si.prepared),
			      num((uint64_t)(uintptr_t)sv & 0xffffff) };
	rs_row(arg, row);
}

void show_clients(struct evbuffer *out)
{
	struct rs r;

	rs_begin(&r, out, conn_cols);
	clients_foreach(client_row, &r);
	rs_end(&r, "SHOW");
}

void show_servers(struct evbuffer *out)
{
	struct rs r;

	rs_begin(&r, out, conn_cols);
	pools_foreach_server(server_row, &r);
	rs_end(&r, "SHOW");
}

struct conn_count {
	const char *db;
	int n;
};

static void count_conns(const struct pool_info *pi, void *arg)
{
	struct conn_count *cc = arg;

	if (strcmp(pi->database, cc->db) == 0)
		cc->n += pi->sv_active + pi->sv_idle + pi->sv_used + pi->sv_tested + pi->sv_login;
}

void show_databases(struct evbuffer *out)
{
	static const char *const cols[] = { "name",
					    "host",
					    "port:i",
					    "database",
					    "force_user",
					    "pool_size:i",
					    "min_pool_size:i",
					    "reserve_pool_size:i",
					    "server_lifetime:i",
					    "pool_mode",
					    "max_connections:i",
					    "current_connections:i",
					    "paused:i",
					    "disabled:i",
					    NULL };
	static const char *const modes[] = { "session", "transaction", "statement" };
	const struct cfg *cfg = rt_cfg();
	struct rs r;

	rs_begin(&r, out, cols);
	for (size_t i = 0; i < cfg->ndbs; i++) {
		const struct cfg_db *db = &cfg->dbs[i];
		struct conn_count cc = { db->name, 0 };
		pools_foreach(count_conns, &cc);
		const char *row[] = { db->name,
				      db->host,
				      inum(db->port),
				      db->dbname ? db->dbname : db->name,
				      db->user,
				      inum(cfg_db_pool_size(cfg, db)),
				      inum(cfg_db_min_pool_size(cfg, db)),
				      inum(cfg->reserve_pool_size),
				      num((uint64_t)cfg->server_lifetime),
				      db->pool_mode >= 0 ? modes[db->pool_mode] : NULL,
				      inum(cfg->max_db_connections),
				      inum(cc.n),
				      pools_is_paused(db->name) ? "1" : "0",
				      pools_is_disabled(db->name) ? "1" : "0" };
		rs_row(&r, row);
	}
	rs_end(&r, "SHOW");
}

struct user_acc {
	struct rs *r;
	char seen[64][64];
	int n;
};

static void user_row(const struct pool_info *pi, void *arg)
{
	struct user_acc *u = arg;

	for (int i = 0; i < u->n; i++)
		if (strcmp(u->seen[i], pi->user) == 0)
			return;
	if (u->n < 64)
		snprintf(u->seen[u->n++], 64, "%s", pi->user);
	const char *row[] = { pi->user, NULL, "0",
			      num((uint64_t)(pi->cl_active + pi->cl_waiting)) };
	rs_row(u->r, row);
}

void show_users(struct evbuffer *out)
{
	static const char *const cols[] = { "name", "pool_mode", "max_user_connections:i",
					    "current_connections:i", NULL };
	struct rs r;
	struct user_acc u = { .r = &r };

	rs_begin(&r, out, cols);
	pools_foreach(user_row, &u);
	rs_end(&r, "SHOW");
}

static bool secret_option(const char *name)
{
	return strstr(name, "password") || strstr(name, "token") || strstr(name, "secret");
}

static void opt_value(const struct cfg_opt *o, const struct cfg *cfg, char *buf, size_t len)
{
	const char *field = (const char *)cfg + o->offset;

	switch (o->type) {
	case CFG_STR:
		snprintf(buf, len, "%s", *(char *const *)field);
		break;
	case CFG_INT:
		snprintf(buf, len, "%d", *(const int *)field);
		break;
	case CFG_TIME:
		snprintf(buf, len, "%g", *(const double *)field);
		break;
	case CFG_BOOL:
		snprintf(buf, len, "%d", *(const bool *)field ? 1 : 0);
		break;
	case CFG_ENUM:
		snprintf(buf, len, "%s", cfg_enum_name(o, *(const int *)field));
		break;
	}
}

void show_config(struct evbuffer *out)
{
	static const char *const cols[] = { "key", "value", "default", "changeable", NULL };
	const struct cfg *cfg = rt_cfg();
	struct rs r;

	rs_begin(&r, out, cols);
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		char key[96], val[512];
		snprintf(key, sizeof(key), "%s%s%s", o->section ? o->section : "",
			 o->section ? "." : "", o->name);
		opt_value(o, cfg, val, sizeof(val));
		if (secret_option(o->name) && *val)
			snprintf(val, sizeof(val), "%s", "********");
		const char *row[] = { key, val, o->def, o->reloadable ? "yes" : "no" };
		rs_row(&r, row);
	}
	rs_end(&r, "SHOW");
}

struct list_acc {
	int pools, used_servers, free_servers, login_clients;
};

static void count_pool(const struct pool_info *pi, void *arg)
{
	struct list_acc *a = arg;

	a->pools++;
	a->used_servers += pi->sv_active + pi->sv_used + pi->sv_login;
	a->free_servers += pi->sv_idle;
}

void show_lists(struct evbuffer *out)
{
	static const char *const cols[] = { "list", "items:i", NULL };
	struct list_acc a = { 0 };
	struct rs r;
	const struct cfg *cfg = rt_cfg();

	pools_foreach(count_pool, &a);
	rs_begin(&r, out, cols);
	const char *rows[][2] = {
		{ "databases", num(cfg->ndbs) },
		{ "users", num((uint64_t)a.pools) },
		{ "pools", num((uint64_t)a.pools) },
		{ "free_clients", "0" },
		{ "used_clients", num((uint64_t)clients_total()) },
		{ "login_clients", "0" },
		{ "free_servers", num((uint64_t)a.free_servers) },
		{ "used_servers", num((uint64_t)a.used_servers) },
		{ "dns_names", "0" },
		{ "dns_zones", "0" },
		{ "dns_queries", "0" },
		{ "dns_pending", "0" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		rs_row(&r, rows[i]);
	rs_end(&r, "SHOW");
}

void show_mem(struct evbuffer *out)
{
	static const char *const cols[] = {
		"name", "size:i", "used:i", "free:i", "memtotal:i", NULL
	};
	struct rs r;
	uint64_t nc = (uint64_t)clients_total(), ns = (uint64_t)pools_server_count();
	uint64_t np = (uint64_t)pools_count();

	rs_begin(&r, out, cols);
	const char *rows[][5] = {
		{ "client", num(client_struct_size()), num(nc), "0",
		  num(nc * client_struct_size()) },
		{ "server", num(server_struct_size()), num(ns), "0",
		  num(ns * server_struct_size()) },
		{ "pool", num(sizeof(struct pool)), num(np), "0", num(np * sizeof(struct pool)) },
	};
	for (size_t i = 0; i < 3; i++)
		rs_row(&r, rows[i]);
	rs_end(&r, "SHOW");
}

void show_state(struct evbuffer *out)
{
	static const char *const cols[] = { "key", "value", NULL };
	struct rs r;
	bool paused = pools_is_paused("");

	rs_begin(&r, out, cols);
	const char *rows[][2] = { { "active", paused ? "no" : "yes" },
				  { "paused", paused ? "yes" : "no" },
				  { "suspended", "no" } };
	for (size_t i = 0; i < 3; i++)
		rs_row(&r, rows[i]);
	rs_end(&r, "SHOW");
}

void show_version(struct evbuffer *out)
{
	static const char *const cols[] = { "version", NULL };
	const char *row[] = { PACKAGE_NAME " " PACKAGE_VERSION };
	struct rs r;

	rs_begin(&r, out, cols);
	rs_row(&r, row);
	rs_end(&r, "SHOW");
}

void show_http(struct evbuffer *out, bool pools_list)
{
	static const char *const http_cols[] = { "listen",
						 "clients:i",
						 "requests:i",
						 "2xx:i",
						 "3xx:i",
						 "4xx:i",
						 "5xx:i",
						 "retries:i",
						 "upstream_errors:i",
						 "last_error",
						 "tls_handshakes:i",
						 "tls_resumed:i",
						 NULL };
	static const char *const pool_cols[] = { "upstream",     "user",        "cl_active:i",
						 "cl_waiting:i", "sv_active:i", "sv_idle:i",
						 "sv_pinned:i",  "requests:i",  NULL };
	const struct cfg *cfg = rt_cfg();
	struct http_stats st;
	struct rs r;

	if (!http_proxy_enabled()) {
		adm_notice(out, "the HTTP side is off ([http] listen_port = 0)");
		rs_begin(&r, out, pools_list ? pool_cols : http_cols);
		rs_end(&r, "SHOW");
		return;
	}
	http_proxy_stats(&st);
	rs_begin(&r, out, pools_list ? pool_cols : http_cols);
	if (pools_list) {
		const char *row[] = { st.upstream,
				      *cfg->http_user ? cfg->http_user : "(token)",
				      inum(st.clients - st.waiting),
				      inum(st.waiting),
				      inum(st.upstream_busy),
				      inum(st.upstream_idle),
				      inum(st.upstream_pinned),
				      num(st.requests) };
		rs_row(&r, row);
	} else {
		char listen[96];
		snprintf(listen, sizeof(listen), "%s:%d", cfg->http_listen_addr,
			 cfg->http_listen_port);
		const char *row[] = { listen,
				      inum(st.clients),
				      num(st.requests),
				      num(st.responses[2]),
				      num(st.responses[3]),
				      num(st.responses[4]),
				      num(st.responses[5]),
				      num(st.retries),
				      num(st.errors_upstream),
				      st.last_error,
				      num(st.tls_handshakes),
				      num(st.tls_resumed) };
		rs_row(&r, row);
	}
	rs_end(&r, "SHOW");
}
