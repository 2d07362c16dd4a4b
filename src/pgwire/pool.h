/* Pools: one per (database entry, upstream user). A pool owns the lists of its clients
 * and servers by state, hands idle servers to waiting clients, launches and retires
 * server connections within the limits, and remembers why the upstream last failed. */
#ifndef CB_POOL_H
#define CB_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "client.h" /* enum client_state */
#include "relay.h"
#include "server.h" /* enum server_state */
#include "sessparam.h"
#include "core/stats.h"

struct cfg;
struct cfg_db;
struct client;
struct server;
struct event_base;
struct evdns_base;

/* Embedded in every client and server: which pool list it is on. */
struct pool_node {
	TAILQ_ENTRY(pool_node) entry;
	void *obj; /* the struct client or struct server */
	struct pool *pool;
	int state; /* enum client_state or enum server_state */
	bool is_server;
};
TAILQ_HEAD(node_list, pool_node);

#define POOL_MAX_HOSTS 16

/* One of an entry's upstream hosts. A host whose connection failed is skipped until a
 * background retry (every server_login_retry) logs in again. */
struct pool_host {
	char *name;
	bool down;
	uint64_t retry_at;
};

struct pool {
	TAILQ_ENTRY(pool) entry;
	struct cfg_db *db; /* own copy: survives reloads */
	unsigned gen;      /* bumped when a reload changes how servers connect */
	char *user;        /* upstream login */
	char *password;    /* upstream password, never logged */
	char *dbname;      /* upstream database */
	bool forced_user;  /* the entry's user=, not the client's */
	struct node_list clients[CL_CLOSING];
	int nclients[CL_CLOSING];
	struct node_list servers[SV_CLOSING];
	int nservers[SV_CLOSING];
	uint8_t *welcome; /* the upstream's ParameterStatus messages, verbatim */
	size_t welcome_len;
	char *defaults[SP_MAX]; /* tracked parameters as the upstream reports them at login */
	bool crate_seen;        /* its login reported crate_version */
	int mode;               /* enum pool_mode */
	struct rl_opts rl;      /* how the relay treats this pool's sessions */
	struct pool_host hosts[POOL_MAX_HOSTS]; /* host=a,b,c */
	int nhosts;
	unsigned host_next; /* round robin over the hosts */
	char *last_error;   /* why the last connect or login failed; NULL once one works */
	char last_sqlstate[6];
	uint64_t retry_at;    /* no new connection before this (server_login_retry) */
	struct stats stats;   /* totals since start */
	struct stats period;  /* totals at the start of the current stats_period */
	struct stats_avg avg; /* over the last complete stats_period */
};

/* What the admin console and the admin HTTP port show of a pool. */
struct pool_info {
	const char *database; /* the [databases] entry */
	const char *user;     /* upstream user */
	const char *dbname;   /* upstream database */
	const char *host;
	int port;
	const char *pool_mode;
	int pool_size, min_pool_size;
	int cl_active, cl_waiting, sv_active, sv_idle, sv_used, sv_tested, sv_login;
	int sv_being_canceled;  /* with a CancelRequest for their session in flight */
	uint64_t maxwait_us;    /* of the longest-waiting client */
	const char *last_error; /* why the upstream last failed; NULL when it works */
	const struct stats *totals;
	const struct stats_avg *avg;
};
void pools_foreach(void (*fn)(const struct pool_info *pi, void *arg), void *arg);
void pools_foreach_server(void (*fn)(struct server *sv, struct pool *pool, void *arg), void *arg);
int pools_count(void);

/* Admin console controls; db NULL: every database. -1 when db names no known database. */
int pools_pause(const char *db, bool pause);
int pools_disable(const char *db, bool disable);
bool pools_is_paused(const char *db);
bool pools_is_disabled(const char *db);
int pools_kill(const char *db);
int pools_reconnect(const char *db);
/* Servers made before the last RECONNECT that are still open. */
int pools_old_servers(const char *db);

void pools_init(void);
void pools_shutdown(void);
struct authfile;
/* After SIGHUP: the new config is current (rt_set_cfg was called with it); pools
 * take their entries' new settings, and servers made under changed ones are retired. */
void pools_reload(const struct cfg *old, const struct authfile *users);
/* SIGINT: clients leave as soon as their server is idle. */
void pools_set_draining(void);
int pools_server_count(void);
/* Closed clients and servers are freed here from the event loop, never inside their
 * own callbacks. The node must already be off its pool list. */
void pool_bury(struct pool_node *n);

/* The pool for a database entry and user, created on first use. NULL when the pool
 * cannot serve (no password for the user); *err says why (malloc'd). */
struct pool *pool_get(const struct cfg_db *db, const char *client_user, const char *client_db,
		      const char *password, char **err);
int pool_size(const struct pool *pool);
int pool_total_servers(const struct pool *pool);

/* List membership; the node's state field is kept in step with its list. */
void pool_client_add(struct pool *pool, struct pool_node *n, enum client_state st);
void pool_client_move(struct pool_node *n, enum client_state st);
void pool_client_remove(struct pool_node *n);
void pool_server_add(struct pool *pool, struct pool_node *n, enum server_state st);
void pool_server_move(struct pool_node *n, enum server_state st);
void pool_server_remove(struct pool_node *n);

/* Client events. */
/* A logged-in client wants the welcome (ParameterStatus set). */
void pool_client_login(struct pool *pool, struct client *c);
/* A client sent a query and has no server. */
void pool_client_want_server(struct pool *pool, struct client *c);

/* The host a new connection should go to (round robin over the hosts that are up). */
int pool_pick_host(struct pool *pool);
/* Server events. */
void pool_server_login_ok(struct server *sv, const uint8_t *params, size_t len);
void pool_server_failed(struct server *sv, const char *sqlstate, const char *msg);
/* A server became idle (after login or reset): give it to a waiting client. */
void pool_server_idle(struct server *sv);
/* What a linked server tells the pool about its client c (the pool unlinks them). */
enum sv_report {
	SVR_DONE, /* c's transaction is over (transaction pooling): c keeps its session,
			 * the server goes back to the pool */
	SVR_NEXT, /* c's answer is complete, the server goes on (the next pipelined
			 * client's answer follows, or it closes) */
};
void pool_server_report(struct server *sv, struct client *c, enum sv_report what);
/* sv runs a query others may be pipelined behind: waiting clients whose queries qualify
 * go there, in their order, until one does not. */
void pool_pipe_waiting(struct server *sv);
/* Pipelining applies to this pool (transaction or statement mode, pipeline_depth > 0). */
bool pool_pipelining(const struct pool *pool);
/* A shape (not 0) whose queries usually take at most pipeline_max_query_time. */
bool pool_pipe_fast(uint64_t shape);

#endif
