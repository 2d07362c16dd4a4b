/* The admin console: virtual database "cratebouncer" (alias "pgbouncer") on the client
 * listeners, spoken over the simple query protocol, with PgBouncer's SHOW commands and
 * column names, and its control commands. */
#ifndef CB_ADMIN_H
#define CB_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

struct cfg;
struct client;
struct client_console;
struct evbuffer;

enum admin_role { ADMIN_NONE, ADMIN_STATS, ADMIN_FULL };

/* What main does for RELOAD and SHUTDOWN (0 now, 1 wait for servers, 2 wait for clients). */
struct admin_hooks {
	void (*reload)(void);
	void (*shutdown)(int mode);
	/* SET key = value on the running config; -1 with *err (malloc'd). */
	int (*set)(const char *key, const char *value, char **err);
};
void admin_set_hooks(const struct admin_hooks *hooks);

/* The console as the pgwire side calls it (client_set_console). */
extern const struct client_console admin_console;

bool admin_is_console_db(const char *database);
enum admin_role admin_role_for(const struct cfg *cfg, const char *user);
/* AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery. */
void admin_welcome(struct evbuffer *out, uint32_t pid, uint32_t key);
/* Consumes complete messages from in and answers into out. -1 when the client sent
 * Terminate or a message that ends its session (the caller closes it once out is sent).
 * *skip: the client's "skipping an extended-protocol group up to Sync". */
int admin_handle(struct client *c, enum admin_role role, bool *skip, struct evbuffer *in,
		 struct evbuffer *out);

#endif
