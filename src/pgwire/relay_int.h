/* What relay.c (the queue and the message loops) and relay_session.c (what a session has
 * set) share. Only they include this. */
#ifndef CB_RELAY_INT_H
#define CB_RELAY_INT_H

#include "relay.h"

#define SMALL_MSG 4096

enum rq_kind {
	RQ_PARSE,      /* answer passes */
	RQ_PARSE_DROP, /* injected: answer dropped */
	RQ_BIND,
	RQ_DESCRIBE,
	RQ_EXECUTE,
	RQ_CLOSE,
	RQ_CLOSE_DROP,
	RQ_SYNC,
	RQ_QUERY,
	RQ_QUERY_DROP, /* the session state replay */
	RQ_FAKE_PARSE, /* answered by the relay */
	RQ_FAKE_CLOSE,
	RQ_FAKE_DEALLOCATE, /* CommandComplete DEALLOCATE + ReadyForQuery */
	RQ_FAKE_FUNCCALL,   /* CrateDB: ErrorResponse + ReadyForQuery for a FunctionCall */
	RQ_FAKE_DISCARD,    /* CrateDB: CommandComplete DISCARD ALL + ReadyForQuery */
};

struct rl_item {
	uint8_t kind;
	int8_t param;       /* QUERY_DROP of a replay: the parameter its SET gives the client's
			     * value (-1: none) */
	uint8_t noted;      /* RL_NOTE_*: its statements changed what is tracked */
	struct ps_stmt *st; /* PARSE, PARSE_DROP: a reference, to undo on error */
	char *fx;           /* QUERY, SYNC on CrateDB: what its statements do to the
				 * transaction and cursors (records: op, name, NUL) */
};

/* What a tracked change becomes unknown by: a SET or RESET (RESET ALL, DISCARD ALL) is
 * undone by a ROLLBACK or an error of its transaction; a DEALLOCATE is refused in a
 * failed transaction (an error) but not undone by a ROLLBACK. */
#define RL_NOTE_UNDO 1
#define RL_NOTE_REFUSE 2

/* relay.c */
/* CrateDB's reset (its DISCARD ALL keeps the settings and drops the session from the
 * cancel map). */
#define CRATE_RESET "COMMIT; CLOSE ALL; DEALLOCATE ALL"
/* The item last pushed (the queue is not empty). */
struct rl_item *rl_tail(struct rl_server *s);
/* A request that gets an answer: its item at the tail of the queue; -1: no memory. */
int rl_push(struct rl_server *s, int kind, struct ps_stmt *st);

/* A Parse's query text without its terminator and parameter types. */
size_t rl_text_len(const uint8_t *p, size_t len);

/* relay_session.c */
/* The unnamed statement's text, kept from its Parse to its Bind when running it changes
 * what is tracked (only then: the hot path copies nothing). */
int keep_unnamed(struct rl_client *c, const struct rl_opts *o, const uint8_t *sql, size_t len);

/* The status a CrateDB session really has. */
char crate_status(const struct rl_server *s);

/* Appends an effect record (op, name, NUL) to *fx, which stays NUL-terminated. */
int fx_add(char **fx, uint32_t *len, int op, const char *name);

/* A Query or Sync was answered: its statements took effect. After an error only what
 * opens a transaction or a cursor is believed (holding the server longer is safe,
 * releasing it inside a transaction is not). */
void fx_apply(struct rl_server *s, const char *fx, bool failed);

/* Does fx hold a record of op? (Records are op, name, NUL: strchr would stop at the
 * first one's end.) */
bool fx_has(const char *fx, int op);

/* The effects of the statements in sql (a Query's text or a Parse's statement). */
int fx_of(const char *sql, size_t len, char **fx, uint32_t *fxlen);

/* Every statement of a Query (or the one of a Parse) is looked at. */
void note_set(struct rl_server *s, struct rl_client *c, const struct rl_opts *o, const uint8_t *sql,
	      size_t len);

/* ParameterStatus: the server's set and, unless it answers the replay, the client's. */
void param_status(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
		  const uint8_t *body, size_t len, bool replay, bool *pass);

/* The replay's ReadyForQuery: what it set without a ParameterStatus kept its value. */
void replay_done(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
		 struct evbuffer *to_client);

/* A parameter whose changes the upstream reports by ParameterStatus. CrateDB reports its
 * values at login but never after a SET: there every setting is followed from the text. */
bool rl_reported(const struct rl_opts *o, int i);

#endif
