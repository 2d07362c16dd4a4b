/* Pool bookkeeping and decisions: which client gets which server, when to open or
 * retire server connections, and what waiting clients are told when the upstream
 * fails. Idle servers are reused most-recently-used first; waiting clients FIFO. */
#include "pool_int.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "client.h"
#include "core/log.h"
#include "core/runtime.h"
#include "pipeline.h"
#include "server.h"
#include "core/util.h"
#include "pgproto.h"

#define JANITOR_USEC 250000

struct pool_list pools = TAILQ_HEAD_INITIALIZER(pools);
static struct node_list graveyard = TAILQ_HEAD_INITIALIZER(graveyard);
static struct event *reaper, *janitor, *stats_timer;
static unsigned janitor_ticks;
static uint64_t period_started;

static void reap_cb(evutil_socket_t fd, short what, void *arg);
static void janitor_cb(evutil_socket_t fd, short what, void *arg);
static void stats_cb(evutil_socket_t fd, short what, void *arg);

/* At start, after rt_init and rt_set_cfg: the pools' timers (the janitor, the reaper,
 * the end of each stats_period) and the tracked session parameters. */
void pools_init(void)
{
	struct timeval tv = { 0, JANITOR_USEC };
	struct timeval period = { (time_t)rt_cfg()->stats_period, 0 };
	struct event_base *base = rt_base();

	if (sp_init(rt_cfg()->track_extra_parameters) < 0)
		fatal("track_extra_parameters: too many or invalid names");
	reaper = event_new(base, -1, 0, reap_cb, NULL);
	janitor = event_new(base, -1, EV_PERSIST, janitor_cb, NULL);
	stats_timer = evtimer_new(base, stats_cb, NULL);
	if (!reaper || !janitor || !stats_timer)
		fatal("cannot create pool timers");
	event_add(janitor, &tv);
	evtimer_add(stats_timer, &period);
	period_started = now_usec();
}

/* End of a stats_period: averages for SHOW STATS and /stats, and a log line per pool. */
static void stats_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = now_usec();
	double secs = (double)(now - period_started) / 1e6;
	struct timeval tv = { (time_t)rt_cfg()->stats_period, 0 };

	pools_average(secs);
	period_started = now;
	evtimer_add(stats_timer, &tv);
}

int pool_size(const struct pool *pool)
{
	return cfg_db_pool_size(rt_cfg(), pool->db);
}

int pool_total_servers(const struct pool *pool)
{
	return pool->nservers[SV_LOGIN] + pool->nservers[SV_IDLE] + pool->nservers[SV_ACTIVE] +
	       pool->nservers[SV_RESET] + pool->nservers[SV_TESTED];
}

/* The settings a pool takes from the config (at creation and on reload). */
/* host=a,b,c: the pool's hosts; a host that stays keeps its state. */
static void set_hosts(struct pool *pool)
{
	struct pool_host old[POOL_MAX_HOSTS];
	int nold = pool->nhosts;
	const char *p = pool->db->host;

	memcpy(old, pool->hosts, sizeof(old));
	pool->nhosts = 0;
	while (*p && pool->nhosts < POOL_MAX_HOSTS) {
		while (*p == ',' || *p == ' ')
			p++;
		size_t n = strcspn(p, ", ");
		if (!n)
			break;
		struct pool_host *h = &pool->hosts[pool->nhosts++];
		memset(h, 0, sizeof(*h));
		h->name = xasprintf("%.*s", (int)n, p);
		for (int i = 0; i < nold; i++)
			if (old[i].name && strcmp(old[i].name, h->name) == 0) {
				h->down = old[i].down;
				h->retry_at = old[i].retry_at;
			}
		p += n;
	}
	for (int i = 0; i < nold; i++)
		free(old[i].name);
	if (pool->nhosts == 0) {
		pool->hosts[0].name = xstrdup(pool->db->host);
		pool->nhosts = 1;
	}
}

int pool_pick_host(struct pool *pool)
{
	for (int k = 0; k < pool->nhosts; k++) {
		int i = (int)((pool->host_next + (unsigned)k) % (unsigned)pool->nhosts);
		if (!pool->hosts[i].down) {
			pool->host_next = (unsigned)i + 1;
			return i;
		}
	}
	/* all down: keep trying them in turn */
	return (int)(pool->host_next++ % (unsigned)pool->nhosts);
}

static bool any_host_up(const struct pool *pool)
{
	for (int i = 0; i < pool->nhosts; i++)
		if (!pool->hosts[i].down)
			return true;
	return false;
}

/* CrateDB mode: forced by server_kind, else when the upstream's login said crate_version. */
static void set_kind(struct pool *pool)
{
	pool->rl.crate = pool->db->server_kind == SERVER_KIND_CRATEDB ||
			 (pool->db->server_kind == SERVER_KIND_AUTO && pool->crate_seen);
}

void pool_apply_cfg(struct pool *pool)
{
	set_hosts(pool);
	pool->mode = cfg_pool_mode(rt_cfg(), pool->db, pool->user);
	pool->rl.rename = pool->mode != POOL_SESSION && rt_cfg()->max_prepared_statements > 0;
	pool->rl.max_prepared = rt_cfg()->max_prepared_statements;
	pool->rl.max_packet = (uint32_t)rt_cfg()->max_packet_size;
	pool->rl.no_tx = pool->mode == POOL_STATEMENT;
	pool->rl.pooled = pool->mode != POOL_SESSION;
	pool->rl.defaults = (const char *const *)pool->defaults;
	set_kind(pool);
}

/* The tracked parameters among the upstream's login ParameterStatus messages. */
static void set_defaults(struct pool *pool, const uint8_t *p, size_t len)
{
	for (int i = 0; i < SP_MAX; i++) {
		free(pool->defaults[i]);
		pool->defaults[i] = NULL;
	}
	uint8_t type;
	const uint8_t *body;
	size_t blen, mlen;
	const char *name, *value;

	while (pg_next_msg(&p, &len, &type, &body, &blen, &mlen)) {
		if (type == 'S' && pg_parse_param_status(body, blen, &name, &value) == 0) {
			int i = sp_index(name, strlen(name));
			if (i >= 0 && !pool->defaults[i])
				pool->defaults[i] = strdup(value);
		}
	}
}

struct pool *pool_get(const struct cfg_db *db, const char *client_user, const char *client_db,
		      const char *password, char **err)
{
	const char *user = db->user ? db->user : client_user;
	const char *dbname = db->dbname ? db->dbname : client_db;
	struct pool *pool;

	TAILQ_FOREACH (pool, &pools, entry)
		if (strcmp(pool->db->name, db->name) == 0 && strcmp(pool->user, user) == 0 &&
		    strcmp(pool->dbname, dbname) == 0)
			return pool;

	pool = calloc(1, sizeof(*pool));
	if (!pool) {
		*err = strdup("out of memory");
		return NULL;
	}
	pool->db = cfg_db_dup(db);
	pool->forced_user = db->user != NULL;
	pool->user = strdup(user);
	pool->dbname = strdup(dbname);
	const char *pw = db->user ? db->password : password;
	pool->password = pw ? strdup(pw) : NULL;
	if (!pool->user || !pool->dbname || (pw && !pool->password)) {
		cfg_db_clear(pool->db);
		free(pool->db);
		free(pool->user);
		free(pool->dbname);
		free(pool->password);
		free(pool);
		*err = strdup("out of memory");
		return NULL;
	}
	pool_apply_cfg(pool);
	for (int i = 0; i < CL_CLOSING; i++)
		TAILQ_INIT(&pool->clients[i]);
	for (int i = 0; i < SV_CLOSING; i++)
		TAILQ_INIT(&pool->servers[i]);
	TAILQ_INSERT_TAIL(&pools, pool, entry);
	log_debug("pool %s/%s created (upstream %s:%d/%s)", db->name, user, db->host, db->port,
		  dbname);
	return pool;
}

/* Clients and servers share the list mechanics; a node's kind picks the lists. The
 * CLOSING states are off every list. */
static void node_link(struct pool *pool, struct pool_node *n, int st)
{
	struct node_list *list = n->is_server ? &pool->servers[st] : &pool->clients[st];

	n->pool = pool;
	n->state = st;
	/* idle servers: most recently used first, so the rest can time out */
	if (n->is_server && st == SV_IDLE)
		TAILQ_INSERT_HEAD(list, n, entry);
	else
		TAILQ_INSERT_TAIL(list, n, entry);
	(n->is_server ? pool->nservers : pool->nclients)[st]++;
}

static void node_unlink(struct pool_node *n)
{
	struct pool *pool = n->pool;
	int closing = n->is_server ? SV_CLOSING : CL_CLOSING;

	if (pool && n->state != closing) {
		TAILQ_REMOVE(n->is_server ? &pool->servers[n->state] : &pool->clients[n->state], n,
			     entry);
		(n->is_server ? pool->nservers : pool->nclients)[n->state]--;
	}
	n->state = closing;
}

void pool_client_add(struct pool *pool, struct pool_node *n, enum client_state st)
{
	node_link(pool, n, st);
}

/* The moves a client and a server make, by the state they go to: a bit per state they may
 * come from. A closing one is off every list: moving it back on would keep a freed object
 * there, so such a move, like any other not listed, is refused and logged as a bug (the
 * tests fail on that line). */
#define FROM(s) (1u << (s))
static const unsigned client_moves[CL_CLOSING] = {
	[CL_LOGIN_WAIT] = FROM(CL_LOGIN),
	[CL_IDLE] = FROM(CL_LOGIN_WAIT) | FROM(CL_ACTIVE),
	[CL_WAITING] = FROM(CL_IDLE),
	[CL_ACTIVE] = FROM(CL_IDLE) | FROM(CL_WAITING),
};
static const unsigned server_moves[SV_CLOSING] = {
	[SV_IDLE] = FROM(SV_LOGIN) | FROM(SV_ACTIVE) | FROM(SV_RESET) | FROM(SV_TESTED),
	/* a server that becomes idle goes straight to a waiting client */
	[SV_ACTIVE] = FROM(SV_LOGIN) | FROM(SV_IDLE) | FROM(SV_ACTIVE) | FROM(SV_RESET) |
		      FROM(SV_TESTED),
	/* reset after a session; parked while a cancel for it is in flight */
	[SV_RESET] = FROM(SV_ACTIVE) | FROM(SV_RESET) | FROM(SV_TESTED),
	[SV_TESTED] = FROM(SV_IDLE),
};
static const char *const client_states[] = { "CL_LOGIN",   "CL_LOGIN_WAIT", "CL_IDLE",
					     "CL_WAITING", "CL_ACTIVE",     "CL_CLOSING" };
static const char *const server_states[] = { "SV_LOGIN", "SV_IDLE",   "SV_ACTIVE",
					     "SV_RESET", "SV_TESTED", "SV_CLOSING" };

/* A move of n to st: checked against the tables, trace-logged; false when refused. */
static bool move_ok(const struct pool_node *n, int st)
{
	const char *const *names = n->is_server ? server_states : client_states;
	unsigned allowed = n->is_server ? server_moves[st] : client_moves[st];

	if (!(allowed & FROM(n->state))) {
		log_error("%c-%p: state %s -> %s refused (a bug)", n->is_server ? 'S' : 'C', n->obj,
			  names[n->state], names[st]);
		return false;
	}
	log_trace("%c-%p: %s -> %s", n->is_server ? 'S' : 'C', n->obj, names[n->state], names[st]);
	return true;
}

void pool_client_move(struct pool_node *n, enum client_state st)
{
	if (!move_ok(n, st))
		return;
	node_unlink(n);
	node_link(n->pool, n, st);
}

void pool_client_remove(struct pool_node *n)
{
	node_unlink(n);
}

void pool_server_add(struct pool *pool, struct pool_node *n, enum server_state st)
{
	node_link(pool, n, st);
}

void pool_server_move(struct pool_node *n, enum server_state st)
{
	if (!move_ok(n, st))
		return;
	node_unlink(n);
	node_link(n->pool, n, st);
}

void pool_server_remove(struct pool_node *n)
{
	struct pool *pool = n->pool;

	node_unlink(n);
	/* clients may have waited for it (a failed server_check_query, a reset): another
	 * server for them now, not at the janitor's next tick */
	if (pool && pool->nclients[CL_WAITING] > 0)
		event_active(janitor, 0, 0);
}

void pool_bury(struct pool_node *n)
{
	TAILQ_INSERT_TAIL(&graveyard, n, entry);
	event_active(reaper, 0, 0);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_node *n;

	while ((n = TAILQ_FIRST(&graveyard))) {
		TAILQ_REMOVE(&graveyard, n, entry);
		if (n->is_server)
			server_free(n->obj);
		else
			client_free(n->obj);
	}
}

/* Fails every client that waits for this pool. */
static void fail_waiting(struct pool *pool, const char *sqlstate, const char *msg)
{
	struct pool_node *n;

	while ((n = TAILQ_FIRST(&pool->clients[CL_LOGIN_WAIT])))
		client_refuse_upstream(n->obj, sqlstate, msg);
	while ((n = TAILQ_FIRST(&pool->clients[CL_WAITING])))
		client_refuse_upstream(n->obj, sqlstate, msg);
}

void pool_client_login(struct pool *pool, struct client *c)
{
	if (pool->welcome) {
		client_welcome(c, pool->welcome, pool->welcome_len);
		return;
	}
	if (pool->last_error && now_usec() < pool->retry_at && pool_total_servers(pool) == 0) {
		client_refuse_upstream(c, pool->last_sqlstate, pool->last_error);
		return;
	}
	launch_if_needed(pool);
}

bool pool_pipelining(const struct pool *pool)
{
	/* CrateDB runs a query that arrives while another runs at once, and their rows
	 * interleave: never two clients' queries in flight on one CrateDB connection */
	return pool->mode != POOL_SESSION && rt_cfg()->pipeline_depth > 0 && !pool->rl.crate;
}

bool pool_pipe_fast(uint64_t shape)
{
	return shape && pl_fast(shape, (uint64_t)(rt_cfg()->pipeline_max_query_time * 1e6));
}

/* The pipelining shape of what c sent (pl_input_shape); 0 when the pool does not pipeline. */
static uint64_t input_shape(struct pool *pool, struct client *c)
{
	struct evbuffer *in = client_input(c);
	size_t len = evbuffer_get_length(in);
	const struct rl_client *rl = client_relay(c);

	if (!pool_pipelining(pool) || rl->pass || len > PIPE_QUERY_MAX)
		return 0;
	const uint8_t *msg = evbuffer_pullup(in, -1);
	return msg ? pl_input_shape(msg, len, rl->names, pool->rl.rename, (uint64_t)(uintptr_t)pool)
		   : 0;
}

/* Linking a client to a server happens here and nowhere else. Both learn it, what the
 * client sent meanwhile goes to the server, and its query becomes the server's head: one
 * whose shape is known to be fast lets waiting clients' queries go behind it. */
static void link(struct server *sv, struct client *c, uint64_t shape)
{
	server_link(sv, c);
	if (!client_linked(c, sv))
		return; /* it failed or left meanwhile */
	bool fast = pool_pipe_fast(shape);
	server_set_head(sv, shape, fast);
	if (fast)
		pool_pipe_waiting(sv);
}

/* The other way to link: c's query goes behind the linked client's on busy sv. */
static bool link_behind(struct server *sv, struct client *c, uint64_t shape)
{
	if (!server_pipe_add(sv, c, shape))
		return false;
	if (client_state(c) != CL_CLOSING) /* not failed by a server that went meanwhile */
		client_queued(c, sv);
	return true;
}

void pool_server_report(struct server *sv, struct client *c, enum sv_report what)
{
	client_unlinked(c);
	if (what == SVR_DONE)
		server_return(sv);
	if (what == SVR_NEXT && rt_draining())
		client_fail(c, "57P01", "cratebouncer is shutting down");
	else
		client_resume(c);
}

/* c's input is one autocommit Query (of this shape) known to be fast: it goes behind
 * another such query on the busy server with the most already queued (a server answering
 * a pipeline works for several clients per wake-up; the others stay free), before an idle
 * server is taken. */
static bool try_pipeline(struct pool *pool, struct client *c, uint64_t shape)
{
	struct pool_node *n;
	struct server *best = NULL;
	uint64_t now;

	/* clients already waiting go first: servers must drain back to the pool */
	if (pool->nclients[CL_WAITING] > 0 || TAILQ_EMPTY(&pool->servers[SV_ACTIVE]) ||
	    !pool_pipe_fast(shape))
		return false;
	now = now_usec();
	TAILQ_FOREACH (n, &pool->servers[SV_ACTIVE], entry) {
		struct server *sv = n->obj;
		if (server_pipe_accepts(sv, now) &&
		    (!best || server_pipe_depth(sv) > server_pipe_depth(best)))
			best = sv;
	}
	if (!best || !link_behind(best, c, shape))
		return false;
	pool->stats.server_assignment_count++;
	stats_hist_add(&pool->stats.wait, 0);
	return true;
}

void pool_pipe_waiting(struct server *sv)
{
	struct pool *pool = server_node(sv)->pool;
	uint64_t now = now_usec();
	struct pool_node *cn;

	if (pools_is_paused(pool->db->name))
		return;
	while ((cn = TAILQ_FIRST(&pool->clients[CL_WAITING])) && server_pipe_accepts(sv, now)) {
		struct client *c = cn->obj;
		uint64_t shape = input_shape(pool, c), waited = now - client_wait_since(c);
		if (!pool_pipe_fast(shape) || !link_behind(sv, c, shape))
			break; /* first come, first served: it waits for a server of its own */
		pool->stats.server_assignment_count++;
		pool->stats.wait_time_us += waited;
		stats_hist_add(&pool->stats.wait, waited);
	}
}

void pool_client_want_server(struct pool *pool, struct client *c)
{
	struct pool_node *n = TAILQ_FIRST(&pool->servers[SV_IDLE]);
	uint64_t shape;

	if (pools_is_paused(pool->db->name)) {
		pool_client_move(client_node(c), CL_WAITING);
		return;
	}
	/* computed once: for a pipeline, or for the server it is linked to below */
	shape = input_shape(pool, c);
	if (try_pipeline(pool, c, shape))
		return;
	/* idle longer than server_check_delay: validated first (load balancers drop idle
	 * connections); the client waits for it */
	while (n && server_needs_check(n->obj)) {
		struct pool_node *next = TAILQ_NEXT(n, entry);
		server_check(n->obj);
		n = next;
	}
	if (n) {
		pool->stats.server_assignment_count++;
		stats_hist_add(&pool->stats.wait, 0);
		link(n->obj, c, shape);
		return;
	}
	if (pool->nservers[SV_TESTED] > 0) {
		pool_client_move(client_node(c), CL_WAITING);
		return;
	}
	if (pool->last_error && now_usec() < pool->retry_at && pool_total_servers(pool) == 0) {
		client_refuse_upstream(c, pool->last_sqlstate, pool->last_error);
		return;
	}
	pool_client_move(client_node(c), CL_WAITING);
	launch_if_needed(pool);
}

void pool_server_login_ok(struct server *sv, const uint8_t *params, size_t len)
{
	struct pool *pool = server_node(sv)->pool;
	int hi = server_host_index(sv);

	if (hi >= 0 && hi < pool->nhosts && pool->hosts[hi].down) {
		log_info("pool %s/%s: host %s is up again", pool->db->name, pool->user,
			 pool->hosts[hi].name);
		pool->hosts[hi].down = false;
	}
	uint8_t *copy = malloc(len ? len : 1);

	if (copy) {
		memcpy(copy, params, len);
		bool was = pool->welcome && pool->rl.crate;
		free(pool->welcome);
		pool->welcome = copy;
		pool->welcome_len = len;
		set_defaults(pool, copy, len);
		const char *cv = pg_find_param_status(copy, len, "crate_version");
		pool->crate_seen = cv != NULL;
		set_kind(pool);
		if (pool->rl.crate && !was)
			log_info(
				"pool %s/%s: the upstream is CrateDB (%s); no pipelining, CrateDB's "
				"transactions, settings and reset",
				pool->db->name, pool->user, cv ? cv : "server_kind=cratedb");
	}
	if (pool->last_error) {
		log_info("upstream %s:%d for pool %s/%s works again", pool->db->host,
			 pool->db->port, pool->db->name, pool->user);
		free(pool->last_error);
		pool->last_error = NULL;
	}
	if (!pool->welcome)
		return;
	struct pool_node *n;
	while ((n = TAILQ_FIRST(&pool->clients[CL_LOGIN_WAIT])))
		client_welcome(n->obj, pool->welcome, pool->welcome_len);
}

void pool_server_failed(struct server *sv, const char *sqlstate, const char *msg)
{
	struct pool *pool = server_node(sv)->pool;
	int hi = server_host_index(sv);

	if (pool->nhosts > 1 && hi >= 0 && hi < pool->nhosts) {
		struct pool_host *h = &pool->hosts[hi];
		if (!h->down)
			log_error("pool %s/%s: host %s is down, skipped until a retry succeeds: %s",
				  pool->db->name, pool->user, h->name, msg);
		h->down = true;
		h->retry_at = now_usec() + (uint64_t)(rt_cfg()->server_login_retry * 1e6);
		if (any_host_up(pool)) {
			/* the others serve: a connection to the next one, nobody is refused */
			event_active(janitor, 0, 0);
			return;
		}
	}

	/* the log names each cause once, not once per attempt or client */
	if (!pool->last_error || strcmp(pool->last_error, msg) != 0)
		log_error("pool %s/%s: %s (retrying every %g s)", pool->db->name, pool->user, msg,
			  rt_cfg()->server_login_retry);
	else
		log_debug("pool %s/%s: %s", pool->db->name, pool->user, msg);
	free(pool->last_error);
	pool->last_error = strdup(msg);
	snprintf(pool->last_sqlstate, sizeof(pool->last_sqlstate), "%s", sqlstate);
	pool->retry_at = now_usec() + (uint64_t)(rt_cfg()->server_login_retry * 1e6);
	/* sv is still counted; clients wait on only if another connection may serve them */
	if (pool_total_servers(pool) <= 1)
		fail_waiting(pool, sqlstate, msg);
}

void pool_server_idle(struct server *sv)
{
	struct pool_node *sn = server_node(sv);
	struct pool *pool = sn->pool;
	struct pool_node *cn = TAILQ_FIRST(&pool->clients[CL_WAITING]);

	if (cn && !pools_is_paused(pool->db->name)) {
		uint64_t waited = now_usec() - client_wait_since(cn->obj);
		pool->stats.server_assignment_count++;
		pool->stats.wait_time_us += waited;
		stats_hist_add(&pool->stats.wait, waited);
		link(sv, cn->obj, input_shape(pool, cn->obj));
		return;
	}
	if (sn->state != SV_IDLE)
		pool_server_move(sn, SV_IDLE);
}

/* Opens connections for waiting clients and min_pool_size, within pool_size and
 * outside the server_login_retry window. */
/* Servers of every pool of this database entry (max_db_connections). */
static int db_servers(const struct pool *of)
{
	struct pool *pool;
	int n = 0;

	TAILQ_FOREACH (pool, &pools, entry)
		if (strcmp(pool->db->name, of->db->name) == 0)
			n += pool_total_servers(pool);
	return n;
}

/* max_db_connections reached while this pool needs a server: an idle server of another
 * pool of the same entry makes room (its pool can open one again when it needs it). */
static void evict_idle_elsewhere(struct pool *of)
{
	struct pool *pool;

	TAILQ_FOREACH (pool, &pools, entry) {
		struct pool_node *n = TAILQ_LAST(&pool->servers[SV_IDLE], node_list);
		if (pool != of && n && strcmp(pool->db->name, of->db->name) == 0) {
			server_close(n->obj, "max_db_connections: room for another pool");
			return;
		}
	}
}

/* pool_size, plus reserve_pool_size once a client has waited reserve_pool_timeout. */
static int pool_limit(const struct pool *pool)
{
	int max = pool_size(pool);
	struct pool_node *w = TAILQ_FIRST(&pool->clients[CL_WAITING]);

	if (rt_cfg()->reserve_pool_size > 0 && w &&
	    now_usec() - client_wait_since(w->obj) >
		    (uint64_t)(rt_cfg()->reserve_pool_timeout * 1e6))
		max += rt_cfg()->reserve_pool_size;
	return max;
}

/* The pool's [databases] entry in the current config, or NULL when a reload removed it or
 * gave it to another user=: existing clients finish, new ones do not find the pool. */
const struct cfg_db *current_entry(const struct pool *pool)
{
	const struct cfg_db *db = cfg_find_db(rt_cfg(), pool->db->name);

	if (!db || strcmp(db->name, pool->db->name) != 0 ||
	    (db->user && strcmp(db->user, pool->user) != 0))
		return NULL;
	return db;
}

/* min_pool_size of the pool's entry; 0 once the entry is not current, took its user= away
 * or has another upstream database (dbname=, else the entry's name; a "*" entry's is the
 * client's), while the database is disabled, and while draining: such a pool only serves
 * the clients it has, nobody new finds it. */
static int pool_min(const struct pool *pool)
{
	const struct cfg_db *db = current_entry(pool);
	const char *dbname;

	if (!db)
		return 0;
	if (db->dbname)
		dbname = db->dbname;
	else
		dbname = strcmp(db->name, "*") == 0 ? pool->dbname : db->name;
	if (pool->forced_user != (db->user != NULL) || strcmp(dbname, pool->dbname) != 0 ||
	    pools_is_disabled(pool->db->name) || rt_draining())
		return 0;
	return cfg_db_min_pool_size(rt_cfg(), pool->db);
}

void launch_if_needed(struct pool *pool)
{
	int want, total = pool_total_servers(pool), max = pool_limit(pool);
	int dbmax = rt_cfg()->max_db_connections;

	if ((pool->last_error && now_usec() < pool->retry_at) || pools_is_paused(pool->db->name))
		return;
	want = pool->nclients[CL_WAITING];
	if (!pool->welcome && pool->nclients[CL_LOGIN_WAIT] > 0 && want == 0)
		want = 1;
	want -= pool->nservers[SV_LOGIN];
	int min = pool_min(pool);
	if (total < min && min - total > want)
		want = min - total;
	if (dbmax > 0 && want > 0 && total < max && db_servers(pool) >= dbmax)
		evict_idle_elsewhere(pool);
	if (dbmax > 0 && max - total > dbmax - db_servers(pool))
		max = total + dbmax - db_servers(pool);
	while (want-- > 0 && total++ < max) {
		server_launch(pool, -1);
		/* a synchronous failure opened the retry window */
		if (pool->last_error && now_usec() < pool->retry_at)
			return;
	}
}

static void janitor_pool(struct pool *pool, uint64_t now, bool trim)
{
	struct pool_node *n, *next;
	uint64_t wait_limit = (uint64_t)(rt_cfg()->query_wait_timeout * 1e6);
	uint64_t idle_limit = (uint64_t)(rt_cfg()->server_idle_timeout * 1e6);
	uint64_t life_limit = (uint64_t)(rt_cfg()->server_lifetime * 1e6);
	int min = pool_min(pool);

	if (wait_limit && !pools_is_paused(pool->db->name)) {
		for (int st = CL_LOGIN_WAIT; st <= CL_WAITING; st += CL_WAITING - CL_LOGIN_WAIT) {
			while ((n = TAILQ_FIRST(&pool->clients[st])) &&
			       now - client_wait_since(n->obj) > wait_limit)
				client_fail(
					n->obj, "08P01",
					"query_wait_timeout: no upstream connection became free in %g s",
					rt_cfg()->query_wait_timeout);
		}
	}
	if (rt_cfg()->client_idle_timeout > 0) {
		uint64_t lim = (uint64_t)(rt_cfg()->client_idle_timeout * 1e6);
		for (n = TAILQ_FIRST(&pool->clients[CL_IDLE]); n; n = next) {
			next = TAILQ_NEXT(n, entry);
			if (now - client_request_time(n->obj) > lim)
				client_fail(n->obj, "08P01",
					    "client_idle_timeout: idle for more than %g s",
					    rt_cfg()->client_idle_timeout);
		}
	}
	for (n = TAILQ_FIRST(&pool->servers[SV_ACTIVE]); n; n = next) {
		next = TAILQ_NEXT(n, entry);
		server_check_timeouts(n->obj, now);
	}
	for (int i = 0; i < pool->nhosts; i++) {
		struct pool_host *h = &pool->hosts[i];
		/* the background retry of a host that is down */
		if (pool->nhosts > 1 && h->down && now >= h->retry_at &&
		    pool_total_servers(pool) < pool_size(pool) && pool->nservers[SV_LOGIN] == 0) {
			h->retry_at = now + (uint64_t)(rt_cfg()->server_login_retry * 1e6);
			server_launch(pool, i);
		}
	}
	for (n = TAILQ_FIRST(&pool->servers[SV_IDLE]); n; n = next) {
		next = TAILQ_NEXT(n, entry);
		if (life_limit && server_expired(n->obj))
			server_close(n->obj, "server_lifetime reached");
		else if (idle_limit && now - server_idle_since(n->obj) > idle_limit &&
			 pool_total_servers(pool) > min)
			server_close(n->obj, "server_idle_timeout reached");
		else if (trim)
			server_trim(n->obj);
	}
	launch_if_needed(pool);
}

/* Warm pools: a [databases] entry with its own user= (the credentials are in the config)
 * and a min_pool_size gets its pool from the start, so that the first clients find
 * connections open instead of waiting for logins to a distant upstream; janitor_pool
 * keeps it at min_pool_size from then on. Other pools exist from their first client. */
static void warm_pools(void)
{
	for (size_t i = 0; i < rt_cfg()->ndbs; i++) {
		const struct cfg_db *db = &rt_cfg()->dbs[i];
		char *err = NULL;

		if (!db->user || strcmp(db->name, "*") == 0 ||
		    cfg_db_min_pool_size(rt_cfg(), db) <= 0 || pools_is_disabled(db->name))
			continue;
		if (!pool_get(db, db->user, db->name, NULL, &err)) {
			log_error("pool %s/%s: %s", db->name, db->user, err);
			free(err);
		}
	}
}

static void janitor_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *pool;
	uint64_t now = now_usec();
	/* once a second, idle connections give their empty buffers back */
	bool trim = ++janitor_ticks % (1000000 / JANITOR_USEC) == 0;

	warm_pools();
	TAILQ_FOREACH (pool, &pools, entry)
		janitor_pool(pool, now, trim);
	if (trim)
		clients_trim();
}

void pools_shutdown(void)
{
	struct pool *pool;

	while ((pool = TAILQ_FIRST(&pools))) {
		struct pool_node *n;
		for (int st = 0; st < SV_CLOSING; st++)
			while ((n = TAILQ_FIRST(&pool->servers[st])))
				server_close(n->obj, "shutting down");
		TAILQ_REMOVE(&pools, pool, entry);
		cfg_db_clear(pool->db);
		free(pool->db);
		free(pool->user);
		free(pool->dbname);
		free_secret(pool->password);
		free(pool->welcome);
		for (int i = 0; i < SP_MAX; i++)
			free(pool->defaults[i]);
		free(pool->last_error);
		for (int i = 0; i < pool->nhosts; i++)
			free(pool->hosts[i].name);
		free(pool);
	}
	reap_cb(-1, 0, NULL);
	pools_forget_flags();
	if (janitor)
		event_free(janitor);
	if (stats_timer)
		event_free(stats_timer);
	stats_timer = NULL;
	if (reaper)
		event_free(reaper);
	janitor = reaper = NULL;
}
