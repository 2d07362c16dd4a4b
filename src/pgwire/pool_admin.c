/* What the admin console and the daemon's signals do to pools, and what they read of
 * them: PAUSE/RESUME, DISABLE/ENABLE, KILL, RECONNECT per database, SIGINT's draining, and
 * the SHOW POOLS / /stats view of each pool, and what a reload (SIGHUP) changes in them
 * (pool.c makes the decisions). */
#include "pool_int.h"

#include <stdlib.h>
#include <string.h>

#include "authfile.h"
#include "client.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/util.h"
#include "server.h"

/* PAUSE / DISABLE state per database name; kept across reloads. */
struct db_flags {
	struct db_flags *next;
	bool paused, disabled;
	char name[];
};
static struct db_flags *db_flags;
static bool all_paused;

void pools_foreach(void (*fn)(const struct pool_info *pi, void *arg), void *arg)
{
	static const char *const modes[] = { "session", "transaction", "statement" };
	struct pool *pool;
	uint64_t now = now_usec();

	TAILQ_FOREACH (pool, &pools, entry) {
		struct pool_node *w = TAILQ_FIRST(&pool->clients[CL_WAITING]), *n;
		int mode = pool->mode, canceled = 0;
		for (int st = 0; st < SV_CLOSING; st++)
			TAILQ_FOREACH (n, &pool->servers[st], entry)
				canceled += server_cancels_in_flight(n->obj) > 0;
		struct pool_info pi = {
			.database = pool->db->name,
			.user = pool->user,
			.dbname = pool->dbname,
			.host = pool->db->host,
			.port = pool->db->port,
			.pool_mode = modes[mode],
			.pool_size = pool_size(pool),
			.min_pool_size = cfg_db_min_pool_size(rt_cfg(), pool->db),
			.cl_active = pool->nclients[CL_IDLE] + pool->nclients[CL_ACTIVE],
			.cl_waiting = pool->nclients[CL_WAITING] + pool->nclients[CL_LOGIN_WAIT],
			.sv_active = pool->nservers[SV_ACTIVE],
			.sv_idle = pool->nservers[SV_IDLE],
			.sv_used = pool->nservers[SV_RESET],
			.sv_tested = pool->nservers[SV_TESTED],
			.sv_login = pool->nservers[SV_LOGIN],
			.sv_being_canceled = canceled,
			.maxwait_us = w ? now - client_wait_since(w->obj) : 0,
			.last_error = pool->last_error,
			.totals = &pool->stats,
			.avg = &pool->avg,
		};
		fn(&pi, arg);
	}
}


static struct db_flags *flags_for(const char *db, bool create)
{
	struct db_flags *f;

	for (f = db_flags; f; f = f->next)
		if (strcmp(f->name, db) == 0)
			return f;
	if (!create)
		return NULL;
	f = xcalloc(1, sizeof(*f) + strlen(db) + 1);
	strcpy(f->name, db);
	f->next = db_flags;
	db_flags = f;
	return f;
}

static bool db_known(const char *db)
{
	struct pool *pool;

	if (cfg_find_db(rt_cfg(), db) && strcmp(cfg_find_db(rt_cfg(), db)->name, db) == 0)
		return true;
	TAILQ_FOREACH (pool, &pools, entry)
		if (strcmp(pool->db->name, db) == 0)
			return true;
	return false;
}

bool pools_is_paused(const char *db)
{
	struct db_flags *f = flags_for(db, false);
	return all_paused || (f && f->paused);
}

bool pools_is_disabled(const char *db)
{
	struct db_flags *f = flags_for(db, false);
	return f && f->disabled;
}

int pools_pause(const char *db, bool pause)
{
	struct pool *pool;

	if (db && !db_known(db))
		return -1;
	if (!db) {
		all_paused = pause;
		for (struct db_flags *f = db_flags; f; f = f->next)
			f->paused = pause;
	} else {
		flags_for(db, true)->paused = pause;
	}
	if (pause)
		return 0;
	/* RESUME: waiting clients get servers again */
	TAILQ_FOREACH (pool, &pools, entry) {
		struct pool_node *n;
		if (pools_is_paused(pool->db->name))
			continue;
		while (TAILQ_FIRST(&pool->clients[CL_WAITING]) &&
		       (n = TAILQ_FIRST(&pool->servers[SV_IDLE])))
			pool_server_idle(n->obj);
		launch_if_needed(pool);
	}
	return 0;
}

int pools_disable(const char *db, bool disable)
{
	if (!db_known(db))
		return -1;
	flags_for(db, true)->disabled = disable;
	return 0;
}

int pools_kill(const char *db)
{
	struct pool *pool;
	struct pool_node *n;

	if (db && !db_known(db))
		return -1;
	TAILQ_FOREACH (pool, &pools, entry) {
		if (db && strcmp(pool->db->name, db) != 0)
			continue;
		for (int st = CL_LOGIN_WAIT; st < CL_CLOSING; st++)
			while ((n = TAILQ_FIRST(&pool->clients[st])))
				client_fail(n->obj, "08P01",
					    "database %s was killed from the admin console",
					    pool->db->name);
		for (int st = 0; st < SV_CLOSING; st++)
			while ((n = TAILQ_FIRST(&pool->servers[st])))
				server_close(n->obj, "killed from the admin console");
	}
	return 0;
}

int pools_reconnect(const char *db)
{
	struct pool *pool;
	struct pool_node *n, *next;

	if (db && !db_known(db))
		return -1;
	TAILQ_FOREACH (pool, &pools, entry) {
		if (db && strcmp(pool->db->name, db) != 0)
			continue;
		pool->gen++; /* busy servers close when released */
		for (n = TAILQ_FIRST(&pool->servers[SV_IDLE]); n; n = next) {
			next = TAILQ_NEXT(n, entry);
			server_close(n->obj, "RECONNECT from the admin console");
		}
	}
	return 0;
}

int pools_old_servers(const char *db)
{
	struct pool *pool;
	struct pool_node *n;
	int count = 0;

	TAILQ_FOREACH (pool, &pools, entry) {
		if (db && strcmp(pool->db->name, db) != 0)
			continue;
		for (int st = 0; st < SV_CLOSING; st++)
			TAILQ_FOREACH (n, &pool->servers[st], entry)
				if (server_gen(n->obj) != pool->gen)
					count++;
	}
	return count;
}

int pools_count(void)
{
	struct pool *pool;
	int n = 0;

	TAILQ_FOREACH (pool, &pools, entry)
		n++;
	return n;
}

void pools_foreach_server(void (*fn)(struct server *sv, struct pool *pool, void *arg), void *arg)
{
	struct pool *pool;
	struct pool_node *n;

	TAILQ_FOREACH (pool, &pools, entry)
		for (int st = 0; st < SV_CLOSING; st++)
			TAILQ_FOREACH (n, &pool->servers[st], entry)
				fn(n->obj, pool, arg);
}

void pools_set_draining(void)
{
	struct pool *pool;
	struct pool_node *n;

	rt_set_draining();
	/* clients without a server have nothing running: they go now */
	TAILQ_FOREACH (pool, &pools, entry)
		for (int st = CL_LOGIN_WAIT; st <= CL_WAITING; st++) {
			if (st == CL_ACTIVE)
				continue;
			while ((n = TAILQ_FIRST(&pool->clients[st])))
				client_fail(n->obj, "57P01", "cratebouncer is shutting down");
		}
}

int pools_server_count(void)
{
	struct pool *pool;
	int n = 0;

	TAILQ_FOREACH (pool, &pools, entry)
		n += pool_total_servers(pool);
	return n;
}

void pools_reload(const struct cfg *old, const struct authfile *users)
{
	struct pool *pool;

	TAILQ_FOREACH (pool, &pools, entry) {
		const struct cfg_db *db = current_entry(pool);
		bool changed = false;

		if (!db)
			continue;
		if (!cfg_db_same_upstream(old, pool->db, rt_cfg(), db))
			changed = true;
		if (!db->user) {
			const char *pw = users ? authfile_lookup(users, pool->user) : NULL;
			if (!(pw ? pool->password && strcmp(pw, pool->password) == 0
				 : !pool->password)) {
				changed = true;
				free_secret(pool->password);
				pool->password = pw ? strdup(pw) : NULL;
			}
		} else if (changed) {
			free_secret(pool->password);
			pool->password = db->password ? strdup(db->password) : NULL;
		}
		cfg_db_clear(pool->db);
		free(pool->db);
		pool->db = cfg_db_dup(db);
		pool_apply_cfg(pool);
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

void pools_average(double secs)
{
	struct pool *pool;

	TAILQ_FOREACH (pool, &pools, entry) {
		stats_average(&pool->period, &pool->stats, secs, &pool->avg);
		pool->period = pool->stats;
		if (rt_cfg()->log_stats)
			log_info(
				"stats: %s/%s %.0f xacts/s, %.0f queries/s, %.0f client parses/s, "
				"%.0f binds/s, in %.0f B/s, out %.0f B/s, xact %.0f us, query %.0f us, "
				"wait %.0f us",
				pool->db->name, pool->user, pool->avg.xact_count,
				pool->avg.query_count, pool->avg.client_parse_count,
				pool->avg.bind_count, pool->avg.recv, pool->avg.sent,
				pool->avg.xact_time_us, pool->avg.query_time_us,
				pool->avg.wait_time_us);
	}
}

void pools_forget_flags(void)
{
	while (db_flags) {
		struct db_flags *f = db_flags;
		db_flags = f->next;
		free(f);
	}
}
