/* What pool.c (the decisions) and pool_admin.c (the admin console's controls and view)
 * share. Only they include this. */
#ifndef CB_POOL_INT_H
#define CB_POOL_INT_H

#include "pool.h"

TAILQ_HEAD(pool_list, pool);
/* Every pool, in the order they were made. */
extern struct pool_list pools;

/* Opens connections for waiting clients and min_pool_size, within the limits. */
void launch_if_needed(struct pool *pool);

/* The settings a pool takes from its config entry (at creation and on reload). */
void pool_apply_cfg(struct pool *pool);
/* The pool's [databases] entry in the current config, or NULL when a reload removed it or
 * gave it to another user=: existing clients finish, new ones do not find the pool. */
const struct cfg_db *current_entry(const struct pool *pool);

/* pool_admin.c: the end of a stats_period, secs long: each pool's averages (SHOW STATS,
 * /stats), and a log line per pool with log_stats. */
void pools_average(double secs);
/* pool_admin.c: PAUSE/DISABLE state of every database forgotten (shutdown). */
void pools_forget_flags(void);

#endif
