/* Pool bookkeeping and decisions: which client gets which server, when to open or
 * retire server connections, and what waiting clients are told when the upstream
 * fails. Idle servers are reused most-recently-used first; waiting clients FIFO. */
#include "pool.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "authfile.h"
#include "cfg.h"
#include "client.h"
#include "log.h"
#include "server.h"
#include "util.h"

#define JANITOR_USEC 250000

static TAILQ_HEAD(, pool) pools = TAILQ_HEAD_INITIALIZER(pools);
static struct node_list graveyard = TAILQ_HEAD_INITIALIZER(graveyard);
static struct event_base *ev_base;
static struct evdns_base *dns_base;
static const struct cfg *cur_cfg;
static struct event *reaper, *janitor;
static bool draining;

static void reap_cb(evutil_socket_t fd, short what, void *arg);
static void janitor_cb(evutil_socket_t fd, short what, void *arg);
static void launch_if_needed(struct pool *pool);

void pools_init(struct event_base *base, struct evdns_base *dns)
{
	struct timeval tv = { 0, JANITOR_USEC };

	ev_base = base;
	dns_base = dns;
	reaper = event_new(base, -1, 0, reap_cb, NULL);
	janitor = event_new(base, -1, EV_PERSIST, janitor_cb, NULL);
	if (!reaper || !janitor)
		fatal("cannot create pool timers");
	event_add(janitor, &tv);
}

void pools_set_cfg(const struct cfg *cfg)
{
	cur_cfg = cfg;
}

const struct cfg *pools_cfg(void)
{
	return cur_cfg;
}

struct event_base *pools_base(void)
{
	return ev_base;
}

struct evdns_base *pools_dns(void)
{
	return dns_base;
}

int pool_size(const struct pool *pool)
{
	return cfg_db_pool_size(cur_cfg, pool->db);
}

int pool_total_servers(const struct pool *pool)
{
	return pool->nservers[SV_LOGIN] + pool->nservers[SV_IDLE] + pool->nservers[SV_ACTIVE] +
	       pool->nservers[SV_RESET];
}

struct pool *pool_get(const struct cfg_db *db, const char *client_user, const char *client_db,
		      const char *password, char **err)
{
	const char *user = db->user ? db->user : client_user;
	const char *dbname = db->dbname ? db->dbname : client_db;
	struct pool *pool;

	TAILQ_FOREACH(pool, &pools, entry)
		if (strcmp(pool->db->name, db->name) == 0 && strcmp(pool->user, user) == 0 &&
		    strcmp(pool->dbname, dbname) == 0)
			return pool;

	pool = calloc(1, sizeof(*pool));
	if (!pool) {
		*err = strdup("out of memory");
		return NULL;
	}
	pool->db = cfg_db_dup(db);
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
	for (int i = 0; i < CL_CLOSING; i++)
		TAILQ_INIT(&pool->clients[i]);
	for (int i = 0; i < SV_CLOSING; i++)
		TAILQ_INIT(&pool->servers[i]);
	TAILQ_INSERT_TAIL(&pools, pool, entry);
	log_debug("pool %s/%s created (upstream %s:%d/%s)", db->name, user, db->host, db->port, dbname);
	return pool;
}

void pool_client_add(struct pool *pool, struct pool_node *n, enum client_state st)
{
	n->pool = pool;
	n->state = st;
	TAILQ_INSERT_TAIL(&pool->clients[st], n, entry);
	pool->nclients[st]++;
}

void pool_client_move(struct pool_node *n, enum client_state st)
{
	struct pool *pool = n->pool;

	TAILQ_REMOVE(&pool->clients[n->state], n, entry);
	pool->nclients[n->state]--;
	n->state = st;
	TAILQ_INSERT_TAIL(&pool->clients[st], n, entry);
	pool->nclients[st]++;
}

void pool_client_remove(struct pool_node *n)
{
	if (n->pool && n->state != CL_CLOSING) {
		TAILQ_REMOVE(&n->pool->clients[n->state], n, entry);
		n->pool->nclients[n->state]--;
	}
	n->state = CL_CLOSING;
}

void pool_server_add(struct pool *pool, struct pool_node *n, enum server_state st)
{
	n->pool = pool;
	n->state = st;
	TAILQ_INSERT_TAIL(&pool->servers[st], n, entry);
	pool->nservers[st]++;
}

void pool_server_move(struct pool_node *n, enum server_state st)
{
	struct pool *pool = n->pool;

	TAILQ_REMOVE(&pool->servers[n->state], n, entry);
	pool->nservers[n->state]--;
	n->state = st;
	/* idle servers: most recently used first, so the rest can time out */
	if (st == SV_IDLE)
		TAILQ_INSERT_HEAD(&pool->servers[st], n, entry);
	else
		TAILQ_INSERT_TAIL(&pool->servers[st], n, entry);
	pool->nservers[st]++;
}

void pool_server_remove(struct pool_node *n)
{
	if (n->state != SV_CLOSING) {
		TAILQ_REMOVE(&n->pool->servers[n->state], n, entry);
		n->pool->nservers[n->state]--;
	}
	n->state = SV_CLOSING;
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

void pool_client_want_server(struct pool *pool, struct client *c)
{
	struct pool_node *n = TAILQ_FIRST(&pool->servers[SV_IDLE]);

	if (n) {
		server_link(n->obj, c);
		client_linked(c, n->obj);
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
	uint8_t *copy = malloc(len ? len : 1);

	if (copy) {
		memcpy(copy, params, len);
		free(pool->welcome);
		pool->welcome = copy;
		pool->welcome_len = len;
	}
	if (pool->last_error) {
		log_info("upstream %s:%d for pool %s/%s works again", pool->db->host, pool->db->port,
			 pool->db->name, pool->user);
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

	/* the log names each cause once, not once per attempt or client */
	if (!pool->last_error || strcmp(pool->last_error, msg) != 0)
		log_error("pool %s/%s: %s (retrying every %g s)", pool->db->name, pool->user, msg,
			  cur_cfg->server_login_retry);
	else
		log_debug("pool %s/%s: %s", pool->db->name, pool->user, msg);
	free(pool->last_error);
	pool->last_error = strdup(msg);
	snprintf(pool->last_sqlstate, sizeof(pool->last_sqlstate), "%s", sqlstate);
	pool->retry_at = now_usec() + (uint64_t)(cur_cfg->server_login_retry * 1e6);
	/* sv is still counted; clients wait on only if another connection may serve them */
	if (pool_total_servers(pool) <= 1)
		fail_waiting(pool, sqlstate, msg);
}

void pool_server_idle(struct server *sv)
{
	struct pool_node *sn = server_node(sv);
	struct pool *pool = sn->pool;
	struct pool_node *cn = TAILQ_FIRST(&pool->clients[CL_WAITING]);

	if (cn) {
		server_link(sv, cn->obj);
		client_linked(cn->obj, sv);
		return;
	}
	if (sn->state != SV_IDLE)
		pool_server_move(sn, SV_IDLE);
}

/* Opens connections for waiting clients and min_pool_size, within pool_size and
 * outside the server_login_retry window. */
static void launch_if_needed(struct pool *pool)
{
	int want, total = pool_total_servers(pool), max = pool_size(pool);

	if (pool->last_error && now_usec() < pool->retry_at)
		return;
	want = pool->nclients[CL_WAITING];
	if (!pool->welcome && pool->nclients[CL_LOGIN_WAIT] > 0 && want == 0)
		want = 1;
	want -= pool->nservers[SV_LOGIN];
	int min = cfg_db_min_pool_size(cur_cfg, pool->db);
	if (total < min && min - total > want)
		want = min - total;
	while (want-- > 0 && total++ < max) {
		server_launch(pool);
		/* a synchronous failure opened the retry window */
		if (pool->last_error && now_usec() < pool->retry_at)
			return;
	}
}

static void janitor_pool(struct pool *pool, uint64_t now)
{
	struct pool_node *n, *next;
	uint64_t wait_limit = (uint64_t)(cur_cfg->query_wait_timeout * 1e6);
	uint64_t idle_limit = (uint64_t)(cur_cfg->server_idle_timeout * 1e6);
	uint64_t life_limit = (uint64_t)(cur_cfg->server_lifetime * 1e6);
	int min = cfg_db_min_pool_size(cur_cfg, pool->db);

	if (wait_limit) {
		for (int st = CL_LOGIN_WAIT; st <= CL_WAITING; st += CL_WAITING - CL_LOGIN_WAIT) {
			while ((n = TAILQ_FIRST(&pool->clients[st])) &&
			       now - client_wait_since(n->obj) > wait_limit)
				client_fail(n->obj, "08P01",
					    "query_wait_timeout: no upstream connection became free in %g s",
					    cur_cfg->query_wait_timeout);
		}
	}
	for (n = TAILQ_FIRST(&pool->servers[SV_IDLE]); n; n = next) {
		next = TAILQ_NEXT(n, entry);
		if (life_limit && now - server_connect_time(n->obj) > life_limit)
			server_close(n->obj, "server_lifetime reached");
		else if (idle_limit && now - server_idle_since(n->obj) > idle_limit &&
			 pool_total_servers(pool) > min)
			server_close(n->obj, "server_idle_timeout reached");
	}
	launch_if_needed(pool);
}

static void janitor_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *pool;
	uint64_t now = now_usec();

	TAILQ_FOREACH(pool, &pools, entry)
		janitor_pool(pool, now);
}

void pools_set_draining(void)
{
	struct pool *pool;
	struct pool_node *n;

	draining = true;
	/* clients without a server have nothing running: they go now */
	TAILQ_FOREACH(pool, &pools, entry)
		for (int st = CL_LOGIN_WAIT; st <= CL_WAITING; st++) {
			if (st == CL_ACTIVE)
				continue;
			while ((n = TAILQ_FIRST(&pool->clients[st])))
				client_fail(n->obj, "57P01", "cratebouncer is shutting down");
		}
}

bool pools_draining(void)
{
	return draining;
}

int pools_server_count(void)
{
	struct pool *pool;
	int n = 0;

	TAILQ_FOREACH(pool, &pools, entry)
		n += pool_total_servers(pool);
	return n;
}

void pools_reload(const struct cfg *old, const struct authfile *users)
{
	struct pool *pool;

	TAILQ_FOREACH(pool, &pools, entry) {
		const struct cfg_db *db = cfg_find_db(cur_cfg, pool->db->name);
		bool changed = false;

		if (!db || strcmp(db->name, pool->db->name) != 0 ||
		    (db->user && strcmp(db->user, pool->user) != 0)) {
			/* removed, or now another user's: existing clients finish, new ones
			 * do not find it */
			continue;
		}
		if (!cfg_db_same_upstream(old, pool->db, cur_cfg, db))
			changed = true;
		if (!db->user) {
			const char *pw = users ? authfile_lookup(users, pool->user) : NULL;
			if (!(pw ? pool->password && strcmp(pw, pool->password) == 0 : !pool->password)) {
				changed = true;
				if (pool->password)
					explicit_bzero(pool->password, strlen(pool->password));
				free(pool->password);
				pool->password = pw ? strdup(pw) : NULL;
			}
		} else if (changed) {
			if (pool->password)
				explicit_bzero(pool->password, strlen(pool->password));
			free(pool->password);
			pool->password = db->password ? strdup(db->password) : NULL;
		}
		cfg_db_clear(pool->db);
		free(pool->db);
		pool->db = cfg_db_dup(db);
		if (changed) {
			pool->gen++;
			free(pool->last_error);
			pool->last_error = NULL;
			pool->retry_at = 0;
			free(pool->welcome);
			pool->welcome = NULL;
			log_info("pool %s/%s: upstream settings changed; new connections use them",
				 pool->db->name, pool->user);
			struct pool_node *n, *next;
			for (n = TAILQ_FIRST(&pool->servers[SV_IDLE]); n; n = next) {
				next = TAILQ_NEXT(n, entry);
				server_close(n->obj, "upstream settings changed by reload");
			}
		}
	}
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
		if (pool->password)
			explicit_bzero(pool->password, strlen(pool->password));
		free(pool->password);
		free(pool->welcome);
		free(pool->last_error);
		free(pool);
	}
	reap_cb(-1, 0, NULL);
	if (janitor)
		event_free(janitor);
	if (reaper)
		event_free(reaper);
	janitor = reaper = NULL;
}
