/* Configuration: one declarative option table for the global section, [databases]
 * entries in libpq's key=value form, and every error collected as "FILE:LINE: message". */
#ifndef CB_CFG_H
#define CB_CFG_H

#include <stdbool.h>
#include <stddef.h>

enum pool_mode { POOL_SESSION, POOL_TRANSACTION, POOL_STATEMENT };
enum auth_type { AUTH_TRUST, AUTH_PLAIN, AUTH_MD5, AUTH_SCRAM, AUTH_PEER };
enum sslmode { SSLMODE_DISABLE, SSLMODE_REQUIRE, SSLMODE_VERIFY_CA, SSLMODE_VERIFY_FULL };
/* What the upstream is; auto: CrateDB when its login reports crate_version. */
enum server_kind { SERVER_KIND_AUTO, SERVER_KIND_CRATEDB, SERVER_KIND_POSTGRESQL };

/* One [databases] entry; -1 / NULL fields fall back to the global setting. */
struct cfg_db {
	char *name;
	char *host;
	int port;
	char *dbname;   /* NULL: the client's database name */
	char *user;     /* NULL: the client's user, password from auth_file */
	char *password; /* from password= or password_file= */
	int pool_size;
	int min_pool_size;
	int pool_mode;
	int sslmode;
	char *sslrootcert;
	int server_kind; /* enum server_kind */
};

/* One [users] entry: settings for the pools of an upstream user. */
struct cfg_user {
	char *name;
	int pool_mode; /* -1: the database's or the global one */
};

struct cfg {
	/* global options, filled from the option table */
	char *listen_addr;
	int listen_port;
	char *unix_socket_dir;
	int unix_socket_mode;
	int auth_type;
	char *auth_file;
	char *admin_users;
	char *stats_users;
	int pool_mode;
	int default_pool_size;
	int min_pool_size;
	int max_client_conn;
	int server_tls_sslmode;
	char *server_tls_ca_file;
	bool server_tls_session_reuse;
	char *server_reset_query;
	double server_connect_timeout;
	double server_login_retry;
	double query_wait_timeout;
	double server_idle_timeout;
	double server_lifetime;
	double client_login_timeout;
	bool tcp_keepalive;
	bool allow_unauthenticated_remote;
	double shutdown_timeout;
	char *logfile;
	char *pidfile;
	bool syslog;
	char *syslog_ident;
	char *syslog_facility;
	bool log_connections;
	bool log_disconnections;
	bool log_pooler_errors;
	int verbose;
	double stats_period;
	bool log_stats;
	int max_prepared_statements;
	int max_packet_size;
	char *track_extra_parameters;
	int reserve_pool_size;
	double reserve_pool_timeout;
	int max_db_connections;
	double query_timeout;
	double client_idle_timeout;
	double idle_transaction_timeout;
	char *server_check_query;
	double server_check_delay;
	int pipeline_depth;
	double pipeline_max_query_time;

	/* [admin]: the HTTP admin port (metrics, stats, health, dashboard) */
	char *admin_listen_addr;
	int admin_listen_port; /* 0: off */
	char *admin_access_token_file;

	/* [http]: plaintext HTTP on localhost onto CrateDB's HTTPS endpoint */
	char *http_listen_addr;
	int http_listen_port; /* 0: off */
	char *http_unix_socket;
	char *http_upstream; /* https://host:port */
	char *http_user;
	char *http_password;
	char *http_password_file;
	char *http_bearer_token_file;
	int http_pool_size;
	int http_tls_sslmode;
	char *http_tls_ca_file;
	int http_max_client_conn;
	double http_connect_timeout;
	double http_header_timeout;
	double http_idle_timeout;
	double http_request_timeout;
	double http_queue_timeout;
	double http_upstream_idle_timeout;
	int http_max_sql_body_mb;

	struct cfg_db *dbs;
	size_t ndbs;
	struct cfg_user *users; /* [users] */
	size_t nusers;

	char **errors; /* "FILE:LINE: message" */
	size_t nerrors;
	char **warnings; /* worth logging, not fatal */
	size_t nwarnings;
	bool has_inline_password;
	char *dir; /* the config file's directory, for relative paths */
};

enum cfg_type { CFG_STR, CFG_INT, CFG_TIME, CFG_BOOL, CFG_ENUM };

struct cfg_opt {
	const char *section; /* NULL: [cratebouncer]; else e.g. "admin" */
	const char *name;
	enum cfg_type type;
	const char *def;
	bool reloadable;
	double min, max;          /* CFG_INT and CFG_TIME */
	const char *const *names; /* CFG_ENUM */
	size_t offset;
};

extern const struct cfg_opt cfg_options[];
extern const size_t cfg_noptions;

/* Never NULL (exits on out-of-memory); check ->nerrors. name is used in messages. */
struct cfg *cfg_parse_string(const char *text, const char *name);
struct cfg *cfg_load(const char *path);
void cfg_free(struct cfg *cfg);

const struct cfg_db *cfg_find_db(const struct cfg *cfg, const char *name);
const char *cfg_enum_name(const struct cfg_opt *opt, int value);
/* An option of the global section; cfg_find_opt_in for another section (NULL: global). */
const struct cfg_opt *cfg_find_opt(const char *name);
const struct cfg_opt *cfg_find_opt_in(const char *section, const char *name);
/* Effective per-database values. */
int cfg_db_pool_size(const struct cfg *cfg, const struct cfg_db *db);
int cfg_db_min_pool_size(const struct cfg *cfg, const struct cfg_db *db);
/* The pool mode for a database entry and upstream user: [users], then the entry, then
 * the global pool_mode. */
int cfg_pool_mode(const struct cfg *cfg, const struct cfg_db *db, const char *user);
int cfg_db_sslmode(const struct cfg *cfg, const struct cfg_db *db);
const char *cfg_db_ca_file(const struct cfg *cfg, const struct cfg_db *db);
/* The keys a [databases] entry takes, i from 0 (NULL past the last): the man page's list
 * is checked against them (check_docs). */
const char *cfg_db_key(size_t i);
size_t cfg_db_nkeys(void);
/* [databases] entries outlive a reload inside their pools: deep copies. */
struct cfg_db *cfg_db_dup(const struct cfg_db *db);
void cfg_db_clear(struct cfg_db *db);
/* Would a server connection made under (ca, a) differ from one made under (cb, b)? */
bool cfg_db_same_upstream(const struct cfg *ca, const struct cfg_db *a, const struct cfg *cb,
			  const struct cfg_db *b);
/* A path from the config: "$CREDENTIALS_DIRECTORY/x" is resolved in systemd's credentials
 * directory, a relative path against dir (the config file's directory; NULL: as is). */
char *cfg_expand_path(const char *path, const char *dir, char **err);
/* Adds a warning when a file holding secrets is readable by others. */
void cfg_check_secret_file(struct cfg *cfg, const char *path, const char *what);
/* SET from the admin console: a reloadable global option; -1 with *err (malloc'd). */
int cfg_set(struct cfg *cfg, const char *key, const char *value, char **err);
/* Is name in a comma/space separated list (admin_users, ...)? */
bool cfg_list_has(const char *list, const char *name);

#endif
