/* Inside the HTTP side: its two connection kinds and the state they share. Only src/http
 * includes this.
 *
 *   http_proxy.c    start, stop, listeners, the timeout tick, freeing, statistics
 *   http_client.c   a client connection (struct hc): request heads, bodies, what it is told
 *   http_upstream.c the pool of upstream connections (struct hu): connect, hand out, send a
 *                   request, stream its response back, follow a blob redirect
 *   http_cred.c     the Authorization value injected, and the file it is read again from
 *   http_msg.c      heads, framing checks and JSON errors (pure, unit-tested)
 *
 * A request: accept_cb (http_proxy.c) -> hc_accept, parse_head, handle_request
 * (http_client.c) -> hu_acquire, attach (http_upstream.c: the head goes upstream) ->
 * hc_send_body, hc_forward_body -> hu_read_cb: response_head, then the body ->
 * response_done -> hc_request_done (the next request, or close). */
#ifndef CB_HTTP_INT_H
#define CB_HTTP_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <http_parser.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <zlib.h>

#include "http_msg.h"
#include "http_proxy.h"

struct sio;
struct upconn;
struct evbuffer;
struct listen_set;
struct event;
struct event_base;
struct evdns_base;

#define HIGH_WATER (256 * 1024)
#define MAX_HEAD 8192      /* as CrateDB: 8 kB of headers */
#define MAX_URL 4096       /* and a 4 kB initial line */
#define SQL_PEEK_MAX 65536 /* how much of a /_sql body is looked at for SET & co */
#define TICK_USEC 250000

enum hc_state { HC_HEAD, HC_WAIT, HC_BODY, HC_RESPONSE, HC_CLOSING };
enum hu_state { HU_CONNECTING, HU_IDLE, HU_BUSY, HU_CLOSING };

struct hc;

/* An upstream connection. */
struct hu {
	TAILQ_ENTRY(hu) entry;
	struct sio *io;
	struct upconn *uc; /* connecting (TLS included) */
	struct hc *client; /* the request it serves now */
	struct hc *pinned; /* its session belongs to this client */
	char *key;         /* Default-Schema of its session ("" none) */
	char *host;        /* where it connects: the upstream, or a redirect's node */
	char *tls_name;    /* the name its certificate must carry (NULL: host) */
	int port;
	bool tls;
	char host_header[300];
	struct hc *for_client; /* a redirect's connection: made for this request only */
	bool oneoff;           /* ... and closed after it */
	bool close_after;      /* the request was not sent whole: not reusable */
	http_parser parser;
	struct http_head head;
	enum hu_state state;
	uint64_t since;
	int requests;
	bool head_done, response_started, buried;
	bool head_lf, folded; /* obs-fold in the response head, as it is scanned */
};

/* A client connection. */
struct hc {
	TAILQ_ENTRY(hc) entry;
	TAILQ_ENTRY(hc) wait;
	struct sio *io;
	http_parser parser;
	struct http_head head;
	enum hc_state state;
	struct hu *up, *pinned;
	char *key;
	uint64_t since, req_start;
	z_stream *z;     /* inflating a compressed /_sql body */
	bool z_done;     /* ... to its end (or to an error) */
	bool z_count;    /* its inflated size could pass the limit: counted */
	size_t inflated; /* its size inflated so far, as CrateDB limits it */
	struct evbuffer *sql_peek;
	size_t sql_scanned; /* how much of sql_peek was looked at */
	size_t body_bytes;
	int method;
	bool waiting, head_started, has_body, body_done, keep_alive, is_sql, pin, sql_known;
	bool close_after, buried, paused;
	bool lf_fed;       /* the parser has seen the head's LF again (body parsing) */
	bool head_lf;      /* the head so far ends with an LF (obs-fold check) */
	bool folded;       /* a head line starts with white space (obs-fold) */
	bool own_expect;   /* the client asked for 100-continue */
	bool body_sent;    /* some of the body went upstream: no redirect now */
	uint64_t progress; /* last byte moved for this client (stall timeout) */
	int redirects;
};

TAILQ_HEAD(hu_list, hu);
TAILQ_HEAD(hc_list, hc);

/* The [http] settings, copied at start: they need a restart, and a reload frees the
 * config they came from. */
struct http_conf {
	int pool_size, max_client_conn, max_sql_body_mb;
	double connect_timeout, header_timeout, idle_timeout, request_timeout, queue_timeout;
	double upstream_idle_timeout;
	char user[256];
};

/* The HTTP side's state: one per process (http_proxy.c defines it). */
struct http_side {
	struct event_base *base;
	struct evdns_base *dns;
	const struct http_conf *cfg;
	struct http_conf conf;
	struct hu_list ups;     /* every upstream connection */
	struct hc_list clients; /* every client connection */
	struct hc_list waiting; /* clients waiting for an upstream connection */
	char *host;
	int port;
	bool tls;
	int sslmode;
	char *ca_file;
	char host_header[300];
	char upstream_name[300];
	char *auth;      /* the Authorization value injected, never logged */
	char *cred_path; /* the file it comes from, read again when it changes */
	bool cred_token; /* ... a bearer token (else a password) */
	struct stat cred_st;
	bool cred_warned;
	struct listen_set *listeners;
	struct event *tick, *reaper;
	struct hu_list up_graveyard;
	struct hc_list hc_graveyard;
	int nclients, nup;
	bool stopping, warned_401, enabled;
	char *last_error;
	struct http_stats st;
};
extern struct http_side hp;

/* microseconds of a [http] timeout in seconds */
static inline double cfgd(double v)
{
	return v * 1e6;
}

/* The parser paused on the head's final LF and wants to see it again. */
static inline void resume_after_head(http_parser *p, const http_parser_settings *s)
{
	http_parser_pause(p, 0);
	http_parser_execute(p, s, "\n", 1);
}

/* http_client.c */
/* Every change of a client connection's state goes through here: checked against the
 * moves it makes (one it does not make is logged as a bug) and trace-logged. */
void hc_set_state(struct hc *c, enum hc_state to);
void hc_init_parser(void);
void hc_accept(int fd, bool unix_socket);
/* Answers the request with a CrateDB-shaped error and closes the connection. */
void hc_fail(struct hc *c, int status, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Closes after what is queued for the client has been written. */
void hc_close(struct hc *c, const char *why);
/* Off every list, to be freed by the reaper (never inside its own callbacks). */
void hc_bury(struct hc *c);
void hc_free(struct hc *c);
/* The spare inflate states freed (at shutdown). */
void hc_free_spares(void);
/* Attached: the body (if any, and not all read yet) follows the head upstream. */
void hc_send_body(struct hc *c);
/* The response is complete: the client reads its next request, or closes. */
void hc_request_done(struct hc *c);
/* Moves what body the client sent on to its upstream connection, within HIGH_WATER. */
void hc_forward_body(struct hc *c);

/* http_upstream.c */
/* The same for an upstream connection. */
void hu_set_state(struct hu *u, enum hu_state to);
void hu_init_parser(void);
/* An upstream connection for the client: its own, an idle one, or a new one (it waits). */
void hu_acquire(struct hc *c);
/* Closes and buries it; its client (if in a request) is closed too. */
void hu_close(struct hu *u, const char *why);
/* It failed while connecting: its redirected client, or every waiting one, is told. */
void hu_fail(struct hu *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hu_free(struct hu *u);

/* http_cred.c */
/* The Authorization value to inject ("" none); NULL with *err (malloc'd). With remember,
 * the file it came from is watched (cred_refresh). */
char *cred_make(const struct cfg *cfg, bool remember, char **err);
/* The token or password file is read again if it changed. */
void cred_refresh(void);

#endif
