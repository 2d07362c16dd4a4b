/* Named prepared statements across server connections. A statement is interned by its
 * content (query text and parameter types), gets one server-side name for its life, and
 * is referenced by the clients that prepared it (by their own names) and by the server
 * connections it is prepared on (bounded per server, least recently used goes first). */
#ifndef CB_PREPARED_H
#define CB_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ps_stmt;
struct ps_map; /* a client's names */
struct ps_set; /* what one server connection has prepared */

/* body: a Parse body after the statement name (query\0, int16 count, oids). ctx (NULL:
 * none) is part of the key: on CrateDB, which analyses a statement at Parse against the
 * session's search_path and never again, the search_path it was parsed under. A new
 * reference, NULL when out of memory. */
struct ps_stmt *ps_intern(const uint8_t *body, size_t len, const char *ctx)
	__attribute__((warn_unused_result));
/* The interned statement with this body and ctx (a new reference), or NULL. */
struct ps_stmt *ps_find(const uint8_t *body, size_t len, const char *ctx);
/* A server accepted it once (ParseComplete): a client may be told so without asking. */
void ps_set_ok(struct ps_stmt *st);
bool ps_is_ok(const struct ps_stmt *st);
void ps_ref(struct ps_stmt *st);
void ps_unref(struct ps_stmt *st);
/* "cratebouncer_<id>": unique for the daemon's life. */
const char *ps_server_name(const struct ps_stmt *st);
const uint8_t *ps_body(const struct ps_stmt *st, size_t *len);
size_t ps_count(void);

/* Client names. put takes a new reference and replaces an existing name's. -1: no memory. */
int ps_map_put(struct ps_map **m, const char *name, struct ps_stmt *st)
	__attribute__((warn_unused_result));
struct ps_stmt *ps_map_get(const struct ps_map *m, const char *name);
bool ps_map_del(struct ps_map **m, const char *name);
void ps_map_free(struct ps_map **m);
size_t ps_map_count(const struct ps_map *m);

/* Server sets. has() marks the statement as just used. add() may evict the least
 * recently used statement beyond max: *evicted is then a reference the caller closes
 * on the server and unrefs. -1: no memory. */
bool ps_set_has(struct ps_set **s, struct ps_stmt *st);
int ps_set_add(struct ps_set **s, struct ps_stmt *st, int max, struct ps_stmt **evicted)
	__attribute__((warn_unused_result));
void ps_set_del(struct ps_set **s, struct ps_stmt *st);
void ps_set_free(struct ps_set **s);
size_t ps_set_count(const struct ps_set *s);

#endif
