/* The message relay between a client and the server it has been given. Messages pass
 * as a stream in both directions (a pipeline is never held back for a reply), but each
 * request that will be answered is noted in a queue, so that the relay knows when the
 * server is done with the client (transaction pooling), can rename named prepared
 * statements, prepare them on demand on whichever server the client has, answer from
 * its own state what the server was not asked (ParseComplete, CloseComplete), and drop
 * the answers to what it injected (Parse on demand, the SET replay of session state). */
#ifndef CB_RELAY_H
#define CB_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sessparam.h"

struct evbuffer;
struct ps_map;
struct ps_set;
struct rl_item;

/* A client's side: its statement names and its session parameters. */
struct rl_client {
	struct ps_map *names;
	struct sp_set params;
	uint8_t *unnamed; /* the unnamed statement's text, if running it is tracked */
	size_t unnamed_len;
	uint32_t pass; /* bytes of the current (streamed) message still to pass */
	bool drop;     /* ... and they are dropped (COPY messages to CrateDB) */
};

/* A server's side: what it was asked and has not answered yet, what it has prepared,
 * its session parameters. */
struct rl_server {
	struct rl_item *q;
	uint32_t qhead, qlen, qcap;
	uint32_t parses; /* Parse items of named statements not yet answered */
	struct ps_set *prepared;
	struct sp_set params;
	uint64_t replay_mask;     /* parameters the pending replay sets */
	uint64_t replay_failed;   /* ... those whose SET the upstream refused */
	uint32_t replay_left;     /* its Queries not answered yet */
	uint32_t pass;            /* bytes of the current server message still to handle */
	bool drop;                /* ... and they are dropped, not passed */
	bool inject_failed;       /* an injected query (replay, reset) got an ErrorResponse */
	bool violation;           /* statement mode: a ReadyForQuery T/E was held back */
	bool tainted;             /* its session state is unknown: close, do not reuse */
	uint8_t noting;           /* RL_NOTE_* changes tracked in the message being read: the
				 * next request item carries them */
	uint8_t tx_noted;         /* RL_NOTE_* of the transaction's answered requests ... */
	bool tx_rolled, tx_error; /* ... a ROLLBACK, an ErrorResponse in it: what the upstream
				   * has may differ from the tracking (closed after its client) */
	bool unsynced;            /* extended-protocol messages since the last Sync: the server
				 * is mid-way (Flush answers do not end anything) */
	bool stop_after_ready;    /* rl_from_server returns after each ReadyForQuery it passes
				 * (other clients' queries are pipelined behind this one's) */
	char status;              /* from the last ReadyForQuery; on CrateDB what the session
				 * really is: 'T' in a transaction or with a cursor open */
	uint32_t client_parses, server_parses, binds; /* for the statistics */
	/* CrateDB answers 'I' after BEGIN in the simple protocol and 'E' after an autocommit
	 * error in the extended one: its transaction and cursors are followed from the
	 * statements, applied when their ReadyForQuery comes. */
	bool crate_tx;  /* BEGIN until COMMIT/END */
	bool failed;    /* an ErrorResponse since the last ReadyForQuery */
	char **cursors; /* open cursors: 'H' (WITH HOLD) or 'W', then the name */
	uint32_t ncursors;
	char *fx; /* effects of the extended-protocol messages since the last Sync */
	uint32_t fxlen;
};

/* How the relay behaves for one pool. */
struct rl_opts {
	bool rename;                 /* named statements are tracked (transaction/statement mode) */
	int max_prepared;            /* per server */
	uint32_t max_packet;         /* the largest client message, length word included;
				 * 0: the protocol's own bound (1 GB) */
	bool no_tx;                  /* statement mode: a transaction block is a violation */
	bool pooled;                 /* transaction or statement mode: servers change hands
				      * between transactions */
	const char *const *defaults; /* per tracked parameter: the upstream's login value,
					 * NULL when the upstream does not report it */
	bool crate;                  /* the upstream is CrateDB (see docs/cratebouncer.md) */
};

enum rl_result { RL_OK, RL_TERMINATE, RL_ERROR };

/* Server messages up to this size (a row, mostly) pass to the client whole: if the server
 * fails while one is coming, the client's stream ends at a message boundary, where an
 * ErrorResponse can follow. Longer ones stream as they come. */
#define RL_SERVER_WHOLE 8192

/* Whether the linked client has been sent part of a message whose rest has not come. */
bool rl_mid_message(const struct rl_server *s);

/* Client to server: takes what it can from in (whole messages where names matter,
 * others streamed), writes to to_server. Answers the relay gives itself go to
 * to_client via rl_flush_fakes. RL_ERROR with *err for a protocol violation. */
enum rl_result rl_from_client(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
			      struct evbuffer *in, struct evbuffer *to_server, const char **err);
/* Server to client. ready() is called for every ReadyForQuery the client sees. -1: the
 * server broke the protocol (*err). c may be NULL (nobody linked: everything dropped).
 * 1: stopped after a ReadyForQuery (stop_after_ready), the rest of in not looked at. */
int rl_from_server(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
		   struct evbuffer *in, struct evbuffer *to_client,
		   void (*ready)(void *arg, char status), void *arg, const char **err);
/* Emits the answers the relay owes the client now; true when one was a ReadyForQuery. */
bool rl_flush_fakes(struct rl_server *s, const struct rl_opts *o, struct evbuffer *to_client);
/* A client was linked to the server: brings the server's session state to the client's
 * (an injected SET whose answers are dropped). */
void rl_link(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
	     struct evbuffer *to_server);
/* Sends a query of the pooler's own (server_reset_query) whose answers are dropped. */
void rl_inject(struct rl_server *s, const struct rl_opts *o, const char *sql,
	       struct evbuffer *to_server);
/* CrateDB's session reset (its DISCARD ALL keeps settings and makes the session
 * uncancellable): COMMIT; CLOSE ALL; DEALLOCATE ALL and every tracked setting back to
 * its default, answers dropped. */
void rl_reset_crate(struct rl_server *s, const struct rl_opts *o, struct evbuffer *to_server);
/* A client without a server sent Parse(name) + Sync (libpq's PQprepare) for a statement
 * a server has accepted before: answered from the tracked state, no server needed.
 * True when something was answered. */
bool rl_idle_answer(struct rl_client *c, const struct rl_opts *o, struct evbuffer *in,
		    struct evbuffer *to_client);
/* Nothing outstanding in either direction and the server is idle ('I'). */
bool rl_idle(const struct rl_server *s, const struct rl_client *c);
/* Idle but for n simple Queries pipelined behind (other clients' answers still to come). */
bool rl_idle_ahead(const struct rl_server *s, const struct rl_client *c, size_t n);
/* Nothing outstanding (status not checked). */
bool rl_quiet(const struct rl_server *s, const struct rl_client *c);
size_t rl_pending(const struct rl_server *s);
/* Statements whose Parse the server has not confirmed yet: nobody may rely on them. */
size_t rl_parses_pending(const struct rl_server *s);

void rl_client_init(struct rl_client *c);
void rl_client_clear(struct rl_client *c);
/* At login: the startup parameters ("k\0v\0...\0") the client asked for. */
int rl_client_startup(struct rl_client *c, const char *params, const struct rl_opts *o);
void rl_server_init(struct rl_server *s);
void rl_server_clear(struct rl_server *s);
size_t rl_client_prepared(const struct rl_client *c);
size_t rl_server_prepared(const struct rl_server *s);

#endif
