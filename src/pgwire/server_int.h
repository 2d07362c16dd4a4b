/* Inside a server (an upstream pgwire connection): its struct and what its three files
 * share. Only they include this.
 *
 *   server_login.c  a new server: connect (upconn), StartupMessage, authentication,
 *                   ParameterStatus and BackendKeyData, then forwarding
 *   server.c        a logged-in server: linked to clients, the relay both ways, reset and
 *                   check queries, release, timeouts, close
 *   server_pipe.c   pipelining: queries sent behind the linked client's, held answers,
 *                   resends, the link handed on */
#ifndef CB_SERVER_INT_H
#define CB_SERVER_INT_H

#include <event2/event_struct.h>

#include "core/cfg.h"
#include "core/log.h"
#include "client.h"
#include "pool.h"
#include "server.h"

struct sio;
struct scram_client;
struct upconn;

#define OUT_HIGH_WATER (256 * 1024)

/* A query pipelined behind another client's (see struct server). */
struct pipe_entry {
	struct client *c; /* NULL: that client left, its answer is dropped */
	uint64_t shape;   /* pl_shape of its text */
	uint8_t *q;       /* a copy of its Query message: sent again if a cancel meant
				 * for another query hits it */
	uint32_t qlen;
	uint16_t items;  /* the relay's request items it added (answers to come) */
	bool cancel;     /* its client asked to cancel it before it ran */
	uint8_t retries; /* times sent again */
};

/* Pipelining (transaction mode): while the linked client's transaction is one autocommit
 * Query of a shape known to be fast, other clients' such Queries may be sent behind it; the
 * server answers them in order and each client gets the link in turn (pipe_next). A cancel
 * meant for one query may hit the next: answers that may be hit are held until it is known
 * they were not (server_pipe.c). */
struct pipeline {
	struct pipe_entry head;            /* the linked client's query: shape and copy */
	struct pipe_entry q[PIPE_MAX + 4]; /* the ones behind, in order; + room for ones
						 * sent again */
	uint8_t n;
	unsigned items;        /* the relay's request items of the entries in q[] */
	uint8_t exposed;       /* queries from the next head on that a cancel sent
					 * for an earlier one may hit: their answers are held */
	bool ok;               /* others may be pipelined behind the linked client */
	bool head_gone;        /* the linked client left; its answer is dropped */
	bool held;             /* the linked client's answer is held (exposed) */
	bool head_direct;      /* linked the usual way: its time includes a round trip */
	bool changed;          /* a setting changed with queries pipelined behind */
	bool gone_cancelled;   /* the departed head's query was cancelled */
	struct evbuffer *hold; /* the held answer */
	uint64_t head_bytes;   /* of the linked client's answer so far */
	uint64_t progress;     /* last link or ReadyForQuery */
	uint64_t rtt_min;      /* the shortest round trip seen: taken off head_direct times */
	uint64_t cancel_time;  /* of the last CancelRequest sent for its session */
};

/* A server's login, step by step (server_login.c); SVL_DONE from its first ReadyForQuery. */
enum sv_login {
	SVL_CONNECTING,     /* upconn: resolve, connect, SSLRequest, TLS */
	SVL_STARTUP,        /* StartupMessage sent, waiting for the authentication request */
	SVL_AUTHENTICATING, /* answering it (cleartext, MD5, SCRAM round trips) */
	SVL_PARAMETERS,     /* AuthenticationOk: ParameterStatus, BackendKeyData until 'Z' */
	SVL_DONE,
};

struct server {
	struct pool_node node;
	struct sio *bev;
	struct upconn *uc;  /* until connected (TLS included) */
	struct event timer; /* server_connect_timeout during login */
	struct scram_client *scram;
	struct evbuffer *params; /* ParameterStatus messages seen at login */
	struct client *client;   /* linked (set_client) */
	struct rl_client *crl;   /* its relay state */
	uint64_t connect_time, idle_since;
	uint64_t query_start, xact_start; /* for the statistics */
	struct rl_server rl;              /* what it was asked, has prepared, its settings */
	char *host;                       /* the one of the entry's hosts it connects to */
	int host_idx;
	uint64_t id;             /* never reused: cancel completions find it by this */
	uint64_t ready_time;     /* of the last ReadyForQuery: idle_transaction_timeout */
	uint8_t cancels;         /* CancelRequests in flight for its session */
	bool park;               /* returned while a cancel was in flight: held back */
	uint64_t lifetime;       /* server_lifetime with jitter, microseconds; 0: none */
	uint32_t be_pid, be_key; /* the upstream's BackendKeyData: SHOW SERVERS, cancel */
	unsigned gen;            /* pool->gen when launched */
	bool ready;              /* ReadyForQuery seen since the client last sent */
	struct pipeline pl;      /* the queries of others sent behind the linked client's */
	uint64_t paused_since;   /* reading paused for the linked client's full output */
	bool paused;
	enum sv_login login; /* how far its login is */
};

static inline const char *sv_host(const struct server *sv)
{
	return sv->host;
}

static inline int sv_port(const struct server *sv)
{
	return sv->node.pool->db->port;
}

/* The linked client from now on (NULL: none), with its relay state. */
static inline void set_client(struct server *sv, struct client *c)
{
	sv->client = c;
	sv->crl = c ? client_relay(c) : NULL;
}

/* server.c */
/* A log line about sv, with PgBouncer's prefix: "S-0x...: ...". */
void server_log(const struct server *sv, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Fails the login (every client waiting for it is told) and closes it. */
void server_fail(struct server *sv, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void server_write_cb(struct sio *bev, void *arg);
void server_event_cb(struct sio *bev, short what, void *arg);
/* Logged in: upstream messages go through the relay from now on. */
void server_forwarding(struct server *sv);
/* Scratch buffer between the relay and the sockets; empty between calls. */
struct evbuffer *server_scratch(void);

/* server_pipe.c: pipelining (transaction mode), the queries sent behind the linked
 * client's and the link handed from one to the next */
void pipe_entry_clear(struct pipe_entry *e);
/* Closes it; the clients pipelined behind are told, their answers dropped. */
void pipe_close_discarding(struct server *sv, const char *reason);
/* The linked client sent more than its first query: nothing goes behind it, and its time
 * says nothing about a shape. */
void server_head_more(struct server *sv);
/* The linked client's answer (c; NULL when it left) is complete: true when pipelining
 * took over (the next one linked, the query sent again, the server closed). */
bool pipe_answer_done(struct server *sv, struct client *c);

#endif
