/* Inside the admin console: what admin.c (the console: login, commands, SHOW dispatch)
 * and show.c (the SHOW result sets, in PgBouncer's columns) share. */
#ifndef CB_ADMIN_INT_H
#define CB_ADMIN_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "admin.h"

struct evbuffer;

/* CommandComplete, a NOTICE, an ERROR (the client's query fails, its session goes on). */
void adm_complete(struct evbuffer *out, const char *tag);
void adm_notice(struct evbuffer *out, const char *msg);
void adm_error(struct evbuffer *out, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* show.c: one function per SHOW subcommand; each writes a whole result set. */
void show_stats(struct evbuffer *out, bool totals, bool avgs);
void show_pools(struct evbuffer *out);
void show_clients(struct evbuffer *out);
void show_servers(struct evbuffer *out);
void show_databases(struct evbuffer *out);
void show_users(struct evbuffer *out);
void show_config(struct evbuffer *out);
void show_lists(struct evbuffer *out);
void show_mem(struct evbuffer *out);
void show_state(struct evbuffer *out);
void show_version(struct evbuffer *out);
/* SHOW HTTP, or SHOW HTTP_POOLS with pools_list. */
void show_http(struct evbuffer *out, bool pools_list);

#endif
