/* Tracked session parameters: the settings that must follow a client from one server
 * connection to the next in transaction pooling (client_encoding, DateStyle, TimeZone,
 * application_name, search_path, ... plus track_extra_parameters). A client and a server
 * each keep only the values that differ from the pool's defaults (the upstream's login
 * values), packed in one small block, with an order-independent fingerprint so that
 * equal sets are recognised without walking them. No I/O. */
#ifndef CB_SESSPARAM_H
#define CB_SESSPARAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_MAX 64

/* The tracked names: the built-in list plus extra (comma or space separated). -1 when
 * extra names something that is not a parameter name, or too many. */
int sp_init(const char *extra);
int sp_count(void);
/* Index of a tracked parameter (case-insensitive), or -1. */
int sp_index(const char *name, size_t len);
const char *sp_name(int i);
/* Whether RESET ALL leaves parameter i as it is (PostgreSQL's role: GUC_NO_RESET_ALL);
 * DISCARD ALL resets it all the same. */
bool sp_reset_all_keeps(int i);

/* Values that differ from the defaults: entries [idx][raw][value\0]. */
struct sp_set {
	uint8_t *blk;
	uint32_t len;
	uint64_t fp;
};

/* raw: value is SQL text from a client's SET, not a plain value. */
const char *sp_get(const struct sp_set *s, int i, bool *raw);
/* value NULL: back to the default. -1: no memory (the set is unchanged). */
int sp_put(struct sp_set *s, int i, const char *value, bool raw)
	__attribute__((warn_unused_result));
void sp_clear(struct sp_set *s);
static inline bool sp_same(const struct sp_set *a, const struct sp_set *b)
{
	return a->fp == b->fp && a->len == b->len;
}

/* The statements that take a server from sv to cl ("SET a TO 'x'; RESET b"; for CrateDB,
 * which has no RESET name, "SET b TO DEFAULT"), malloc'd; NULL when nothing differs.
 * *mask: the indexes touched. */
char *sp_diff_sql(const struct sp_set *cl, const struct sp_set *sv, uint64_t *mask, bool crate);
/* Whether parameter i differs between cl and sv. */
bool sp_differs(const struct sp_set *cl, const struct sp_set *sv, int i);
/* The one statement of sp_diff_sql for parameter i (reset: the reset whatever cl has),
 * malloc'd; NULL: no memory. */
char *sp_stmt(const struct sp_set *cl, int i, bool crate, bool reset);

/* Recognises "SET [SESSION] name {TO|=} value" and "RESET name" for a tracked name in a
 * statement's text (PostgreSQL's SET SCHEMA and SET ROLE too). 1 with *idx and *value
 * (malloc'd SQL text; NULL for RESET); 2 for RESET ALL, 4 for DISCARD ALL; 3 for a change
 * that cannot be tracked: a SET or RESET of a tracked name whose text cannot be read, SET
 * or RESET SESSION AUTHORIZATION; 0 when the text is none of these; -1: no memory. crate:
 * read the text as CrateDB's lexer does (see sessparam.c). */
int sp_parse_set(const char *sql, size_t len, bool crate, int *idx, char **value);
/* The end of the statement starting at p (after its ';', or end): quotes, dollar quotes
 * and comments are skipped, as PostgreSQL's or (crate) CrateDB's lexer reads them. */
const char *sp_next_statement(const char *p, const char *end, bool crate);
/* One statement that cannot leave a transaction or session setting behind when run by
 * itself from idle: SELECT, INSERT, UPDATE, DELETE, VALUES, TABLE or WITH, nothing after
 * it but comments, no backslash anywhere (escape strings could hide a second statement),
 * no set_config().
 * Such Queries of different clients may follow each other on one server. */
bool sp_autocommit_statement(const char *sql, size_t len);

/* What one statement does to a CrateDB session's transaction and cursors (CrateDB's
 * grammar: BEGIN/START TRANSACTION, COMMIT/END, DECLARE name ... CURSOR [WITH[OUT] HOLD],
 * CLOSE name | ALL, DISCARD ALL; there is no ROLLBACK; its lexer). name gets the cursor name as
 * CrateDB folds it (DECLARE, CLOSE; "" for a declared cursor whose name does not fit). */
enum sp_tx {
	SP_TX_NONE,
	SP_TX_BEGIN,
	SP_TX_COMMIT,
	SP_TX_DECLARE,
	SP_TX_DECLARE_HOLD,
	SP_TX_CLOSE,
	SP_TX_CLOSE_ALL,
	SP_TX_DISCARD_ALL
};
int sp_tx_statement(const char *sql, size_t len, char *name, size_t max);

#endif
