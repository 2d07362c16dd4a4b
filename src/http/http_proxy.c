/* The HTTP side. A client connection's life: read a request head (http-parser), take an
 * upstream connection (same Default-Schema session, idle, not stale) or wait for one,
 * write the rewritten head (credentials injected), stream the body, stream the response
 * back, then the next request. An upstream connection whose session a client changed
 * (SET, RESET, DECLARE ... through /_sql) stays with that client and closes with it.
 *
 * Bodies are never held whole: bytes move as they come, the parser only finds where a
 * message ends, and either side stops reading while the other side's output is above
 * HIGH_WATER. Requests are not pipelined to the upstream: one at a time per connection. */
#include "http_proxy.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zlib.h>

#include "core/cfg.h"
#include "http_msg.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/sockio.h"
#include "core/tlsctx.h"
#include "core/upconn.h"
#include "core/util.h"

#define HIGH_WATER (256 * 1024)
#define MAX_HEAD 8192		/* as CrateDB: 8 kB of headers */
#define MAX_URL 4096		/* and a 4 kB initial line */
#define SQL_PEEK_MAX 65536	/* how much of a /_sql body is looked at for SET & co */
#define TICK_USEC 250000
#define MAX_LISTENERS 8

enum hc_state { HC_HEAD, HC_WAIT, HC_BODY, HC_RESPONSE, HC_CLOSING };
enum hu_state { HU_CONNECTING, HU_IDLE, HU_BUSY, HU_CLOSING };

struct hc;

/* An upstream connection. */
struct hu {
	TAILQ_ENTRY(hu) entry;
	struct sio *io;
	struct upconn *uc;		/* connecting (TLS included) */
	struct hc *client;		/* the request it serves now */
	struct hc *pinned;		/* its session belongs to this client */
	char *key;			/* Default-Schema of its session ("" none) */
	char *host;			/* where it connects: the upstream, or a redirect's node */
	char *tls_name;			/* the name its certificate must carry (NULL: host) */
	int port;
	bool tls;
	char host_header[300];
	struct hc *for_client;		/* a redirect's connection: made for this request only */
	bool oneoff;			/* ... and closed after it */
	bool close_after;		/* the request was not sent whole: not reusable */
	http_parser parser;
	struct http_head head;
	enum hu_state state;
	uint64_t since;
	int requests;
	bool head_done, response_started, buried;
	bool head_lf, folded;		/* obs-fold in the response head, as it is scanned */
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
	z_stream *z;			/* inflating a compressed /_sql body */
	bool z_done;			/* ... to its end (or to an error) */
	bool z_count;			/* its inflated size could pass the limit: counted */
	size_t inflated;		/* its size inflated so far, as CrateDB limits it */
	struct evbuffer *sql_peek;
	size_t sql_scanned;		/* how much of sql_peek was looked at */
	size_t body_bytes;
	int method;
	bool waiting, head_started, has_body, body_done, keep_alive, is_sql, pin, sql_known;
	bool close_after, buried, paused;
	bool lf_fed;			/* the parser has seen the head's LF again (body parsing) */
	bool head_lf;			/* the head so far ends with an LF (obs-fold check) */
	bool folded;			/* a head line starts with white space (obs-fold) */
	bool own_expect;		/* the client asked for 100-continue */
	bool body_sent;			/* some of the body went upstream: no redirect now */
	uint64_t progress;		/* last byte moved for this client (stall timeout) */
	int redirects;
};

static TAILQ_HEAD(hu_list, hu) ups = TAILQ_HEAD_INITIALIZER(ups);
static TAILQ_HEAD(hc_list, hc) clients = TAILQ_HEAD_INITIALIZER(clients);
static struct hc_list waiting = TAILQ_HEAD_INITIALIZER(waiting);

/* The [http] settings, copied at start: they need a restart, and a reload frees the
 * config they came from. */
struct http_conf {
	int pool_size, max_client_conn, max_sql_body_mb;
	double connect_timeout, header_timeout, idle_timeout, request_timeout, queue_timeout;
	double upstream_idle_timeout;
	char user[256];
};

static struct {
	struct event_base *base;
	struct evdns_base *dns;
	const struct http_conf *cfg;
	struct http_conf conf;
	char *host;
	int port;
	bool tls;
	int sslmode;
	char *ca_file;
	char host_header[300];
	char upstream_name[300];
	char *auth;			/* the Authorization value injected, never logged */
	char *cred_path;		/* the file it comes from, read again when it changes */
	bool cred_token;		/* ... a bearer token (else a password) */
	struct stat cred_st;
	bool cred_warned;
	struct evconnlistener *l[MAX_LISTENERS];
	int nl;
	char *unix_path;
	struct event *tick, *reaper;
	struct hu_list up_graveyard;
	struct hc_list hc_graveyard;
	int nclients, nup;
	bool stopping, warned_401, enabled;
	char *last_error;
	struct http_stats st;
} hp;

static http_parser_settings req_settings, resp_settings;

static void hc_close(struct hc *c, const char *why);
static void hc_read_cb(struct sio *io, void *arg);
static void hc_write_cb(struct sio *io, void *arg);
static void hc_event_cb(struct sio *io, short what, void *arg);
static void hu_read_cb(struct sio *io, void *arg);
static void hu_write_cb(struct sio *io, void *arg);
static void hu_event_cb(struct sio *io, short what, void *arg);
static void hu_close(struct hu *u, const char *why);
static void hu_launch(const char *key);
static struct hu *hu_launch_to(const char *key, const char *host, const char *tls_name, int port,
			       bool tls, struct hc *for_client);
static void acquire(struct hc *c);
static void attach(struct hc *c, struct hu *u);
static void parse_head(struct hc *c);
static void forward_body(struct hc *c);
static void request_done(struct hc *c);
static void hu_idle(struct hu *u);
static void cred_refresh(void);
static void resume_after_head(http_parser *p, const http_parser_settings *s);

/* --------------------------------------------------------------------------------------
 * small helpers */

static double cfgd(double v)
{
	return v * 1e6;
}

/* Answers the request with a CrateDB-shaped error and closes the connection. */
static void fail_request(struct hc *c, int status, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fail_request(struct hc *c, int status, int code, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	if (c->state == HC_CLOSING)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hp.st.responses[status / 100]++;
	http_put_error(sio_output(c->io), status, code, true, "%s", msg);
	hc_close(c, "error answered");
}

/* A response whose body ends with the connection (no length, not chunked). */
static bool needs_eof(const http_parser *p, int method)
{
	int st = p->status_code;

	return method != HTTP_HEAD && st >= 200 && st != 204 && st != 304 &&
	       !(p->flags & F_CHUNKED) && p->content_length == ULLONG_MAX;
}

static void set_last_error(const char *msg)
{
	if (!hp.last_error || strcmp(hp.last_error, msg) != 0)
		log_error("http: upstream %s: %s", hp.upstream_name, msg);
	free(hp.last_error);
	hp.last_error = strdup(msg);
}

static bool idempotent(int method)
{
	return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS ||
	       method == HTTP_DELETE || method == HTTP_PUT;
}

/* --------------------------------------------------------------------------------------
 * parser callbacks (requests) */

static int rq_begin(http_parser *p)
{
	struct hc *c = p->data;

	c->head_started = true;
	c->since = now_usec();
	return 0;
}

static int rq_url(http_parser *p, const char *at, size_t len)
{
	struct hc *c = p->data;

	c->head.bytes += len;
	if (c->head.bytes > MAX_URL && !c->head.n)
		return -1;
	return http_head_append(&c->head.url, at, len);
}

static int rq_field(http_parser *p, const char *at, size_t len)
{
	struct hc *c = p->data;

	return http_head_field(&c->head, at, len) < 0 || c->head.bytes > MAX_HEAD ? -1 : 0;
}

static int rq_value(http_parser *p, const char *at, size_t len)
{
	struct hc *c = p->data;

	return http_head_value(&c->head, at, len) < 0 || c->head.bytes > MAX_HEAD ? -1 : 0;
}

static int rq_headers_done(http_parser *p)
{
	http_parser_pause(p, 1);
	return 0;
}

/* The session recogniser on what sql_peek holds, once 1 kB more has come (a body in tiny
 * chunks costs no more), or at the end. */
static void sql_check(struct hc *c, bool complete)
{
	size_t n = evbuffer_get_length(c->sql_peek);

	if (!complete && n < SQL_PEEK_MAX && n - c->sql_scanned < 1024)
		return;
	c->sql_scanned = n;
	int r = http_sql_changes_session((const char *)evbuffer_pullup(c->sql_peek, -1), n,
					 complete || n >= SQL_PEEK_MAX);
	if (r >= 0) {
		c->sql_known = true;
		c->pin = r == 1;
	}
}

/* A compressed /_sql body is inflated on the side: its start for the recogniser, and all of
 * it when its inflated size could pass the limit (CrateDB limits it after decompression).
 * Deflate expands at most 1032:1, so a body whose Content-Length times 1032 is within the
 * limit is inflated only until the recogniser knows. */
static void inflate_body(struct hc *c, const char *at, size_t len)
{
	unsigned char out[16384];
	size_t max = (size_t)hp.cfg->max_sql_body_mb << 20;

	c->z->next_in = (unsigned char *)(uintptr_t)at;
	c->z->avail_in = (uInt)len;
	while (c->z->avail_in && !c->z_done) {
		/* small steps while the recogniser looks: it usually knows after the first */
		size_t room = c->sql_known ? sizeof(out) : 1024;
		c->z->next_out = out;
		c->z->avail_out = (uInt)room;
		int rc = inflate(c->z, Z_NO_FLUSH);
		size_t n = room - c->z->avail_out;
		c->inflated += n;
		if (!c->sql_known && evbuffer_get_length(c->sql_peek) < SQL_PEEK_MAX) {
			evbuffer_add(c->sql_peek, out, n);
			sql_check(c, false);
		}
		/* the end, an error (CrateDB will say), or over the limit (forward_body says) */
		if (rc != Z_OK || c->inflated > max || (c->sql_known && !c->z_count))
			c->z_done = true;
	}
}

/* The decoded body: a /_sql body's start is looked at, for session statements. */
static int rq_body(http_parser *p, const char *at, size_t len)
{
	struct hc *c = p->data;

	c->body_bytes += len;
	if (!c->is_sql)
		return 0;
	if (c->z) {
		inflate_body(c, at, len);
		return 0;
	}
	if (c->sql_known)
		return 0;
	evbuffer_add(c->sql_peek, at, len);
	sql_check(c, false);
	return 0;
}

static int rq_complete(http_parser *p)
{
	struct hc *c = p->data;

	if (c->is_sql && !c->sql_known && c->sql_peek) {
		size_t n = evbuffer_get_length(c->sql_peek);
		c->pin = http_sql_changes_session((const char *)evbuffer_pullup(c->sql_peek, -1), n,
						  true) == 1;
		c->sql_known = true;
	}
	c->body_done = true;
	http_parser_pause(p, 1);
	return 0;
}

/* responses */

static int rs_status(http_parser *p, const char *at, size_t len)
{
	struct hu *u = p->data;

	u->head.bytes += len;
	return http_head_append(&u->head.reason, at, len);
}

static int rs_field(http_parser *p, const char *at, size_t len)
{
	struct hu *u = p->data;

	return http_head_field(&u->head, at, len) < 0 || u->head.bytes > 65536 ? -1 : 0;
}

static int rs_value(http_parser *p, const char *at, size_t len)
{
	struct hu *u = p->data;

	return http_head_value(&u->head, at, len) < 0 || u->head.bytes > 65536 ? -1 : 0;
}

static int rs_complete(http_parser *p)
{
	struct hu *u = p->data;

	u->head_done = true; /* a body-less message: the head is the whole of it */
	http_parser_pause(p, 1);
	return 0;
}

static void init_parsers(void)
{
	http_parser_settings_init(&req_settings);
	req_settings.on_message_begin = rq_begin;
	req_settings.on_url = rq_url;
	req_settings.on_header_field = rq_field;
	req_settings.on_header_value = rq_value;
	req_settings.on_headers_complete = rq_headers_done;
	req_settings.on_body = rq_body;
	req_settings.on_message_complete = rq_complete;
	http_parser_settings_init(&resp_settings);
	resp_settings.on_status = rs_status;
	resp_settings.on_header_field = rs_field;
	resp_settings.on_header_value = rs_value;
	resp_settings.on_headers_complete = rq_headers_done;
	resp_settings.on_message_complete = rs_complete;
}

/* --------------------------------------------------------------------------------------
 * freeing, never inside a connection's own callbacks */

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hu *u;
	struct hc *c;

	(void)fd;
	(void)what;
	(void)arg;
	while ((u = TAILQ_FIRST(&hp.up_graveyard))) {
		TAILQ_REMOVE(&hp.up_graveyard, u, entry);
		upconn_abort(u->uc);
		if (u->io)
			sio_free(u->io);
		http_head_clear(&u->head);
		free(u->key);
		free(u->host);
		free(u->tls_name);
		free(u);
	}
	while ((c = TAILQ_FIRST(&hp.hc_graveyard))) {
		TAILQ_REMOVE(&hp.hc_graveyard, c, entry);
		sio_free(c->io);
		http_head_clear(&c->head);
		if (c->z) {
			inflateEnd(c->z);
			free(c->z);
		}
		if (c->sql_peek)
			evbuffer_free(c->sql_peek);
		free(c->key);
		free(c);
	}
}

static void hc_bury(struct hc *c)
{
	if (c->buried)
		return;
	c->buried = true;
	if (c->waiting) {
		TAILQ_REMOVE(&waiting, c, wait);
		c->waiting = false;
	}
	sio_setcb(c->io, NULL, NULL, NULL, NULL);
	sio_disable(c->io, EV_READ | EV_WRITE);
	TAILQ_REMOVE(&clients, c, entry);
	TAILQ_INSERT_TAIL(&hp.hc_graveyard, c, entry);
	hp.nclients--;
	event_active(hp.reaper, 0, 0);
}

/* Closes after what is queued for the client has been written. */
static void hc_close(struct hc *c, const char *why)
{
	struct timeval tv = { 5, 0 };

	if (c->state == HC_CLOSING)
		return;
	log_debug("http: client %p closes: %s", (void *)c, why);
	c->state = HC_CLOSING;
	if (c->waiting) {
		TAILQ_REMOVE(&waiting, c, wait);
		c->waiting = false;
	}
	if (c->up) {
		struct hu *u = c->up;
		c->up = NULL;
		u->client = NULL;
		hu_close(u, "its client went away during the request");
	}
	if (c->pinned) {
		struct hu *u = c->pinned;
		c->pinned = NULL;
		u->pinned = NULL;
		hu_close(u, "the client that changed its session left");
	}
	struct hu *u, *un;
	for (u = TAILQ_FIRST(&ups); u; u = un) {
		un = TAILQ_NEXT(u, entry);
		if (u->for_client == c) {
			u->for_client = NULL;
			hu_close(u, "its client went away before the redirect was followed");
		}
	}
	if (evbuffer_get_length(sio_output(c->io)) > 0) {
		sio_disable(c->io, EV_READ);
		sio_set_timeouts(c->io, NULL, &tv);
		return; /* hc_write_cb buries it once drained */
	}
	hc_bury(c);
}

static void hu_close(struct hu *u, const char *why)
{
	if (u->state == HU_CLOSING)
		return;
	log_debug("http: upstream connection %p closes: %s", (void *)u, why);
	if (u->client) {
		struct hc *c = u->client;
		u->client = NULL;
		c->up = NULL;
		if (c->state != HC_CLOSING)
			hc_close(c, "upstream connection lost");
	}
	if (u->pinned) {
		u->pinned->pinned = NULL;
		u->pinned = NULL;
	}
	u->state = HU_CLOSING;
	upconn_abort(u->uc); /* its callback must not come after this */
	u->uc = NULL;
	if (u->io) {
		sio_setcb(u->io, NULL, NULL, NULL, NULL);
		sio_disable(u->io, EV_READ | EV_WRITE);
	}
	TAILQ_REMOVE(&ups, u, entry);
	TAILQ_INSERT_TAIL(&hp.up_graveyard, u, entry);
	hp.nup--;
	event_active(hp.reaper, 0, 0);
}

/* --------------------------------------------------------------------------------------
 * upstream connections */

/* Nothing may arrive on an idle connection: readable means closed (or garbage). */
static bool stale(struct hu *u)
{
	char b;
	ssize_t n = recv(sio_fd(u->io), &b, 1, MSG_PEEK | MSG_DONTWAIT);

	return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Every waiting client gets the error (nothing else would serve them sooner). */
static void fail_waiting(const char *msg, int status)
{
	struct hc *c;

	set_last_error(msg);
	hp.st.errors_upstream++;
	while ((c = TAILQ_FIRST(&waiting))) {
		TAILQ_REMOVE(&waiting, c, wait);
		c->waiting = false;
		fail_request(c, status, status * 10, "%s", msg);
	}
}

static void hu_fail(struct hu *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hu_fail(struct hu *u, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct hc *fc = u->for_client;
	u->for_client = NULL;
	hu_close(u, msg);
	if (fc) {
		fail_request(fc, 502, 5022, "following CrateDB's redirect failed: %s", msg);
		return;
	}
	fail_waiting(msg, 502);
}

static void hu_ready(struct hu *u)
{
	u->state = HU_IDLE;
	u->since = now_usec();
	if (hp.last_error) {
		log_info("http: upstream %s works again", hp.upstream_name);
		free(hp.last_error);
		hp.last_error = NULL;
	}
	if (u->for_client) {
		struct hc *c = u->for_client;
		u->for_client = NULL;
		attach(c, u);
		return;
	}
	hu_idle(u);
}

static void hu_event_cb(struct sio *io, short what, void *arg)
{
	struct hu *u = arg;
	struct hc *c = u->client;

	(void)io;
	if (c && !u->response_started) {
		/* closed before any byte of the answer: a reused connection the upstream had
		 * dropped; ask again on a fresh one when that cannot run the request twice */
		bool retry = u->requests > 1 && idempotent(c->method) && !c->has_body;
		u->client = NULL;
		c->up = NULL;
		hu_close(u, "closed before answering");
		if (retry) {
			hp.st.retries++;
			c->state = HC_WAIT;
			acquire(c);
		} else {
			fail_request(c, 502, 5020, "%s", "the CrateDB connection closed before answering; "
				     "the request was not retried (it may have run)");
		}
		return;
	}
	if (c && u->head_done && needs_eof(&u->parser, c->method)) {
		/* a body delimited by the end of the connection: this is its end */
		u->client = NULL;
		c->up = NULL;
		c->close_after = true;
		hu_close(u, "end of a close-delimited response");
		request_done(c);
		return;
	}
	hu_close(u, what & SIO_EOF ? "upstream closed the connection" : "upstream connection error");
}

/* Connected, TLS included (upconn), or failed on the way. */
static void hu_connected(struct sio *io, enum upconn_failure why, const char *detail, void *arg)
{
	struct hu *u = arg;

	u->uc = NULL;
	switch (why) {
	case UC_OK:
		break;
	case UC_RESOLVE:
		hu_fail(u, "cannot resolve \"%s\": %s", u->host, detail);
		return;
	case UC_CONNECT:
		hu_fail(u, "cannot connect to %s: %s", u->host_header, detail);
		return;
	case UC_NO_MEMORY:
		hu_fail(u, "out of memory");
		return;
	default: /* TLS; no SSLRequest here */
		hu_fail(u, "%s", *detail ? detail : "TLS handshake failed");
		return;
	}
	u->io = io;
	SSL *ssl = sio_ssl(io);
	if (ssl) {
		hp.st.tls_handshakes++;
		hp.st.tls_resumed += SSL_session_reused(ssl) == 1;
	}
	sio_setcb(u->io, hu_read_cb, hu_write_cb, hu_event_cb, u);
	hu_ready(u);
}

static struct hu *hu_launch_to(const char *key, const char *host, const char *tls_name, int port,
			       bool tls, struct hc *for_client)
{
	struct hu *u = calloc(1, sizeof(*u));

	if (!u || !(u->key = strdup(key)) || !(u->host = strdup(host)) ||
	    (tls_name && !(u->tls_name = strdup(tls_name)))) {
		if (u) {
			free(u->key);
			free(u->host);
		}
		free(u);
		return NULL;
	}
	u->port = port;
	u->tls = tls;
	u->for_client = for_client;
	u->oneoff = for_client != NULL;
	snprintf(u->host_header, sizeof(u->host_header), strchr(host, ':') ? "[%s]:%d" : "%s:%d",
		 host, port);
	u->state = HU_CONNECTING;
	u->since = now_usec();
	struct upconn_opts o = { .host = host, .port = port, .tls_name = tls_name,
				 .tls = tls, .sslmode = hp.sslmode, .ca_file = hp.ca_file,
				 .keepalive = true };
	if (!(u->uc = upconn_start(hp.base, hp.dns, &o, hu_connected, u))) {
		free(u->key);
		free(u->host);
		free(u->tls_name);
		free(u);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&ups, u, entry);
	hp.nup++;
	return u;
}

static void hu_launch(const char *key)
{
	if (!hu_launch_to(key, hp.host, NULL, hp.port, hp.tls, NULL))
		fail_waiting("out of memory", 503);
}

/* An upstream connection is free: the first client waiting for its session gets it; a
 * client waiting for another session gets a new connection in its place. */
static void hu_idle(struct hu *u)
{
	struct hc *c;

	u->client = NULL;
	u->state = HU_IDLE;
	u->since = now_usec();
	if (hp.stopping) {
		hu_close(u, "shutting down");
		return;
	}
	TAILQ_FOREACH(c, &waiting, wait)
		if (strcmp(c->key, u->key) == 0) {
			TAILQ_REMOVE(&waiting, c, wait);
			c->waiting = false;
			attach(c, u);
			return;
		}
	c = TAILQ_FIRST(&waiting);
	if (c) {
		char *key = strdup(c->key);
		hu_close(u, "making room for a connection with another Default-Schema");
		if (key)
			hu_launch(key);
		free(key);
	}
}

/* --------------------------------------------------------------------------------------
 * requests */

/* Connections that belong to a client's session are not the pool's: they do not count
 * against pool_size (one per client at most, so max_client_conn bounds them). */
static int pinned_count(void)
{
	struct hu *u;
	int n = 0;

	TAILQ_FOREACH(u, &ups, entry)
		if (u->pinned)
			n++;
	return n;
}

static void acquire(struct hc *c)
{
	struct hu *u, *next;
	int busy_or_connecting = 0;

	if (c->pinned) {
		attach(c, c->pinned);
		return;
	}
	for (u = TAILQ_FIRST(&ups); u; u = next) {
		next = TAILQ_NEXT(u, entry);
		if (u->state != HU_IDLE || u->pinned) {
			if (u->state == HU_CONNECTING)
				busy_or_connecting++;
			continue;
		}
		if (strcmp(u->key, c->key) != 0)
			continue;
		if (stale(u)) {
			hu_close(u, "closed by the upstream while idle");
			continue;
		}
		attach(c, u);
		return;
	}
	c->waiting = true;
	c->since = now_usec();
	TAILQ_INSERT_TAIL(&waiting, c, wait);
	if (hp.nup - pinned_count() < hp.cfg->pool_size) {
		/* one connection on the way per waiting client at most */
		int waiters = 0;
		struct hc *w;
		TAILQ_FOREACH(w, &waiting, wait)
			if (strcmp(w->key, c->key) == 0)
				waiters++;
		if (waiters > busy_or_connecting || busy_or_connecting == 0)
			hu_launch(c->key);
		return;
	}
	/* full: an idle connection of another session makes room */
	TAILQ_FOREACH(u, &ups, entry)
		if (u->state == HU_IDLE && !u->pinned) {
			hu_close(u, "making room for a connection with another Default-Schema");
			hu_launch(c->key);
			return;
		}
}

/* Ready to read a response head: the first one to a request, or the one after a 1xx. */
static void new_response(struct hu *u)
{
	u->response_started = false;
	u->head_lf = u->folded = false;
	http_head_clear(&u->head);
	http_parser_init(&u->parser, HTTP_RESPONSE);
	u->parser.data = u;
}

static void attach(struct hc *c, struct hu *u)
{
	static const char *const methods[] = {
#define XX(num, name, string) #string,
		HTTP_METHOD_MAP(XX)
#undef XX
	};
	struct evbuffer *out = sio_output(u->io);

	u->client = c;
	u->state = HU_BUSY;
	u->since = now_usec();
	u->requests++;
	u->head_done = false;
	new_response(u);
	c->up = u;
	http_put_request(out, methods[c->method], &c->head, u->host_header, hp.auth);
	hp.st.requests++;
	c->req_start = now_usec();
	if (c->has_body && !c->body_done) {
		c->state = HC_BODY;
		if (!c->lf_fed) {
			resume_after_head(&c->parser, &req_settings);
			c->lf_fed = true;
		}
		forward_body(c);
	} else {
		c->state = HC_RESPONSE;
		sio_flush(u->io);
	}
}

/* Request head complete: checks, then an upstream connection. */
static void handle_request(struct hc *c)
{
	http_parser *p = &c->parser;
	const char *why = http_framing_error(&c->head);
	unsigned long long max = (unsigned long long)hp.cfg->max_sql_body_mb << 20;

	if (why) {
		fail_request(c, 400, 4000, "request refused: %s (ambiguous framing)", why);
		return;
	}
	if (c->folded) {
		fail_request(c, 400, 4000, "%s", "request refused: a header line folded onto the "
			     "next (obs-fold)");
		return;
	}
	if ((why = http_host_error(&c->head, p->http_major, p->http_minor)) ||
	    (why = http_method_error(p->method, p->upgrade))) {
		fail_request(c, 400, 4000, "request refused: %s", why);
		return;
	}
	c->method = p->method;
	c->keep_alive = http_should_keep_alive(p) && !hp.stopping;
	c->has_body = (p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX);
	c->body_done = !c->has_body;
	c->body_bytes = 0;
	c->pin = false;
	c->sql_known = true;
	c->is_sql = c->head.url && strncmp(c->head.url, "/_sql", 5) == 0 &&
		    (c->head.url[5] == '\0' || c->head.url[5] == '?' || c->head.url[5] == '/');
	const char *ce = http_head_get(&c->head, "Content-Encoding");
	bool compressed = ce && *ce && strcasecmp(ce, "identity") != 0;
	/* a compressed body is limited after decompression (inflate_body), as CrateDB does */
	if (c->is_sql && c->has_body && !compressed && p->content_length != ULLONG_MAX &&
	    p->content_length > max) {
		fail_request(c, 413, 4130, "a /_sql body of more than %d MB is refused (as CrateDB)",
			     hp.cfg->max_sql_body_mb);
		return;
	}
	c->inflated = 0;
	c->z_done = false;
	c->z_count = p->content_length == ULLONG_MAX || p->content_length > max / 1032;
	if (c->is_sql && c->has_body) {
		c->sql_known = false;
		if (!c->sql_peek && !(c->sql_peek = evbuffer_new())) {
			fail_request(c, 503, 5030, "%s", "out of memory");
			return;
		}
		evbuffer_drain(c->sql_peek, evbuffer_get_length(c->sql_peek));
		c->sql_scanned = 0;
		if (ce && (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "x-gzip") == 0 ||
			   strcasecmp(ce, "deflate") == 0 || strcasecmp(ce, "x-deflate") == 0)) {
			if (c->z) {
				inflateEnd(c->z);
				free(c->z);
			}
			c->z = calloc(1, sizeof(*c->z));
			/* 32 + MAX_WBITS: zlib tells gzip from zlib framing itself */
			if (!c->z || inflateInit2(c->z, 32 + MAX_WBITS) != Z_OK) {
				free(c->z);
				c->z = NULL;
				c->sql_known = true;
				c->pin = true; /* cannot be looked at: kept with this client */
			}
		} else if (ce && *ce && strcasecmp(ce, "identity") != 0) {
			/* an encoding cratebouncer cannot read: the session may change unseen */
			c->sql_known = true;
			c->pin = true;
		}
	}
	/* A blob PUT goes as the client sent it: without Expect, CrateDB stores it on the node
	 * it reaches; with Expect: 100-continue it may redirect it first (follow_redirect). */
	c->own_expect = http_head_get(&c->head, "Expect") != NULL;
	c->lf_fed = false;
	c->body_sent = false;
	c->progress = now_usec();
	c->redirects = 0;
	const char *schema = http_head_get(&c->head, "Default-Schema");
	free(c->key);
	c->key = strdup(schema ? schema : "");
	if (!c->key) {
		fail_request(c, 503, 5030, "%s", "out of memory");
		return;
	}
	c->state = HC_WAIT;
	acquire(c);
}

static void parse_head(struct hc *c)
{
	struct evbuffer *in = sio_input(c->io);

	while (c->state == HC_HEAD && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return;
		size_t n = http_parser_execute(&c->parser, &req_settings, v.iov_base, v.iov_len);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
		/* obs-fold (a line of the head starting with white space): http-parser joins it
		 * to the header before; refused instead (RFC 9112 5.2 allows either), as nginx
		 * and HAProxy do, so that no hop reads the header differently */
		if (http_head_folded(v.iov_base, n < v.iov_len ? n : v.iov_len, &c->head_lf))
			c->folded = true;
		/* paused at the head's final LF, which it did not count: the head includes it,
		 * and the parser is given it again when the body follows (resume_after_head) */
		evbuffer_drain(in, e == HPE_PAUSED ? n + 1 : n);
		if (e == HPE_PAUSED) {
			handle_request(c);
			return;
		}
		if (e != HPE_OK) {
			if (c->head.bytes > MAX_HEAD && c->head.n)
				fail_request(c, 431, 4310, "request headers larger than %s are refused", "8 kB");
			else if (c->head.bytes > MAX_URL)
				fail_request(c, 414, 4140, "a request line longer than %s is refused", "4 kB");
			else
				fail_request(c, 400, 4000, "malformed HTTP request: %s",
					     http_errno_description(e));
			return;
		}
	}
}

/* The parser paused on the head's final LF and wants to see it again. */
static void resume_after_head(http_parser *p, const http_parser_settings *s)
{
	http_parser_pause(p, 0);
	http_parser_execute(p, s, "\n", 1);
}

static void forward_body(struct hc *c)
{
	struct evbuffer *in = sio_input(c->io);
	struct hu *u = c->up;
	unsigned long long max = (unsigned long long)hp.cfg->max_sql_body_mb << 20;

	while (u && c->state == HC_BODY && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t n = http_parser_execute(&c->parser, &req_settings, v.iov_base, v.iov_len);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
		if (e != HPE_OK && e != HPE_PAUSED) {
			if (!u->response_started)
				fail_request(c, 400, 4000, "malformed request body: %s",
					     http_errno_description(e));
			else
				hc_close(c, "malformed request body");
			return;
		}
		hp.st.bytes_in += n;
		if (n) {
			c->body_sent = true;
			c->progress = now_usec();
		}
		evbuffer_remove_buffer(in, sio_output(u->io), n);
		if (c->is_sql && (c->body_bytes > max || c->inflated > max)) {
			fail_request(c, 413, 4130, "a /_sql body of more than %d MB%s is refused "
				     "(as CrateDB)", hp.cfg->max_sql_body_mb,
				     c->inflated > max ? " after decompression" : "");
			return;
		}
		if (c->body_done) {
			c->state = HC_RESPONSE;
			u->since = now_usec(); /* request_timeout counts from here */
		}
	}
	if (u) {
		sio_flush(u->io);
		/* stop reading while the upstream has not taken what it got (its write event
		 * resumes us, hu_write_cb); read on when it has */
		bool full = evbuffer_get_length(sio_output(u->io)) > HIGH_WATER;
		if (full != c->paused) {
			c->paused = full;
			if (full)
				sio_disable(c->io, EV_READ);
			else
				sio_enable(c->io, EV_READ);
		}
	}
}

/* The response is complete: the upstream connection goes back (or stays pinned), the
 * client reads its next request. */
static void request_done(struct hc *c)
{
	hp.st.request_time_us += now_usec() - c->req_start;
	if (c->close_after || hp.stopping) {
		hc_close(c, "response done, connection: close");
		return;
	}
	c->state = HC_HEAD;
	c->head_started = false;
	c->head_lf = c->folded = false;
	c->since = now_usec();
	http_head_clear(&c->head);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	if (c->paused) {
		c->paused = false;
		sio_enable(c->io, EV_READ);
	}
	if (evbuffer_get_length(sio_input(c->io)) > 0)
		parse_head(c);
}

static void response_done(struct hu *u)
{
	struct hc *c = u->client;
	bool keep = http_should_keep_alive(&u->parser);

	u->client = NULL;
	if (c)
		c->up = NULL;
	if (u->oneoff || u->close_after || evbuffer_get_length(sio_input(u->io)) > 0 ||
	    (sio_ssl(u->io) && SSL_has_pending(sio_ssl(u->io))))
		keep = false; /* more than one answer, or not a fresh session: never handed on */
	if (c && c->pin && keep) {
		/* its session is this client's now */
		u->pinned = c;
		c->pinned = u;
		u->state = HU_BUSY;
		log_debug("http: upstream connection %p stays with client %p (session changed)",
			  (void *)u, (void *)c);
	} else if (u->pinned && keep) {
		u->state = HU_BUSY;
	} else if (keep) {
		hu_idle(u);
	} else {
		hu_close(u, "the upstream ends the connection");
	}
	if (c)
		request_done(c);
}

/* A 307 for a blob points at the node that holds it: CrateDB redirects GET, HEAD and a PUT
 * that asked for 100-continue to https://<the node's publish IP>:<port>/_blobs/..., which
 * the local client could not use. cratebouncer goes there itself, with the upstream's TLS
 * settings and credentials; a node addressed by an IP literal must show a certificate for
 * the configured cluster host name (the nodes share the cluster's certificate), which is
 * also the SNI. 1: followed; 0: not a blob redirect, passed on as it is; -1: it cannot be
 * followed, and the client was told why. */
static int follow_redirect(struct hu *u, struct hc *c)
{
	const char *loc = http_head_get(&u->head, "Location");
	const char *why = NULL;
	char *host = NULL, *url = NULL;
	bool tls = false;
	int port = 0;

	if (!c->head.url || strncmp(c->head.url, "/_blobs/", 8) != 0)
		return 0;
	const char *path = loc ? strstr(loc, "://") : NULL;
	path = path ? strchr(path + 3, '/') : NULL;
	char *base = path ? strndup(loc, (size_t)(path - loc)) : NULL;
	const char *perr;
	if (!loc)
		why = "the redirect has no Location";
	else if (c->body_sent)
		why = "the request body had gone to the first node already (send a blob PUT with "
		      "Expect: 100-continue, or without Expect, which CrateDB stores on any node)";
	else if (c->redirects >= 3)
		why = "more than 3 redirects";
	else if (!base || http_parse_upstream(base, &tls, &host, &port, &perr) < 0)
		why = "the Location is not an http(s) URL";
	else if (!tls && hp.sslmode != SSLMODE_DISABLE)
		why = "the Location is plain http://, and the injected credentials go only over TLS";
	else if (!(url = strdup(path)))
		why = "out of memory";
	free(base);
	if (why) {
		free(host);
		fail_request(c, 502, 5023, "CrateDB redirected %s to %s, which cratebouncer cannot "
			     "follow: %s", c->head.url, loc ? loc : "(none)", why);
		return -1;
	}
	/* an IP literal: the node's certificate is the cluster's */
	const char *tls_name = tls && is_ip_literal(host) && !is_ip_literal(hp.host) ? hp.host : NULL;
	log_debug("http: following CrateDB's redirect of %s to %s%s%s", c->head.url, loc,
		  tls_name ? ", certificate checked for " : "", tls_name ? tls_name : "");
	free(c->head.url);
	c->head.url = url;
	c->redirects++;
	u->client = NULL;
	c->up = NULL;
	hu_close(u, "redirected");
	c->state = HC_WAIT;
	if (!hu_launch_to(c->key, host, tls_name, port, tls, c))
		fail_request(c, 503, 5030, "%s", "out of memory");
	free(host);
	return 1;
}

/* The response head is in: what the client gets of it. */
static int response_head(struct hu *u)
{
	struct hc *c = u->client;
	int status = u->parser.status_code;
	struct evbuffer *out = sio_output(c->io);

	/* obs-fold: http-parser joins the line to the header before, and the client, reading
	 * the head as it is written again, could frame the body otherwise (a folded
	 * Transfer-Encoding): refused, as for requests */
	if (u->folded) {
		fail_request(c, 502, 5021, "CrateDB sent an invalid HTTP response: "
			     "a folded header line (obs-fold)");
		hu_close(u, "invalid response");
		return -1;
	}
	if (http_te_lookalike(&u->head)) {
		fail_request(c, 502, 5021, "CrateDB sent an invalid HTTP response: %s",
			     http_te_lookalike(&u->head));
		hu_close(u, "invalid response");
		return -1;
	}
	/* A failed login is a plain 401 with WWW-Authenticate; a 401 with CrateDB's JSON (4010,
	 * 4011: a missing privilege) is an answer to the query, passed on as it is. */
	if (status == 401 && http_head_get(&u->head, "WWW-Authenticate")) {
		cred_refresh();
		if (!hp.warned_401)
			log_error("http: CrateDB at %s refused the credentials cratebouncer injects "
				  "(user \"%s\"): check [http] user/password/bearer_token_file",
				  hp.upstream_name, *hp.cfg->user ? hp.cfg->user : "(token)");
		hp.warned_401 = true;
		hp.st.responses[4]++;
		http_put_error(out, 401, 4010, !c->keep_alive,
			       "CrateDB refused the credentials cratebouncer injects for %s; "
			       "the cratebouncer config needs fixing, not this client", hp.upstream_name);
		u->client = NULL;
		c->up = NULL;
		hu_close(u, "401 from the upstream");
		if (c->body_done) {
			request_done(c);
		} else {
			c->close_after = true;
			hc_close(c, "request body not sent after a 401");
		}
		return -1;
	}
	if (status >= 200)
		hp.warned_401 = false;
	u->response_started = true;
	if (status == 307 && follow_redirect(u, c) != 0)
		return -1;
	if (status < 200) {
		/* 100 Continue and the like: passed on (unless cratebouncer asked for it), the
		 * real answer follows */
		if (c->own_expect || status != 100) {
			http_put_response(out, u->parser.http_major, u->parser.http_minor, status,
					  &u->head, false);
		}
		new_response(u);
		sio_flush(c->io);
		return 0;
	}
	hp.st.responses[status / 100 < 6 ? status / 100 : 5]++;
	if (c->has_body && !c->body_done) {
		/* answered before (all of) the body went: neither connection can go on */
		c->close_after = true;
		u->close_after = true;
	}
	bool no_body = c->method == HTTP_HEAD || status == 204 || status == 304 ||
		       (!(u->parser.flags & F_CHUNKED) && u->parser.content_length == 0);
	bool until_eof = !no_body && needs_eof(&u->parser, c->method);
	if (until_eof || !c->keep_alive)
		c->close_after = true;
	http_put_response(out, u->parser.http_major, u->parser.http_minor, status, &u->head,
			  c->close_after);
	u->head_done = true;
	if (no_body) {
		sio_flush(c->io);
		/* the parser may hold on to a HEAD response's announced length: a new one */
		http_parser_init(&u->parser, HTTP_RESPONSE);
		u->parser.data = u;
		u->parser.flags = 0;
		if (!c->body_done) {
			/* answered before the body was sent (e.g. 4xx to Expect): close */
			c->close_after = true;
			u->client = NULL;
			c->up = NULL;
			hu_close(u, "answered before the request body was sent");
			request_done(c);
			return -1;
		}
		response_done(u);
		return -1;
	}
	resume_after_head(&u->parser, &resp_settings);
	return 0;
}

static void hu_read_cb(struct sio *io, void *arg)
{
	struct hu *u = arg;
	struct evbuffer *in = sio_input(io);

	while (evbuffer_get_length(in) > 0) {
		struct hc *c = u->client;
		if (!c) {
			hu_close(u, "unexpected data from the upstream");
			return;
		}
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return;
		bool in_head = !u->head_done;
		size_t n = http_parser_execute(&u->parser, &resp_settings, v.iov_base, v.iov_len);
		enum http_errno e = HTTP_PARSER_ERRNO(&u->parser);
		if (e != HPE_OK && e != HPE_PAUSED) {
			if (!u->response_started)
				fail_request(c, 502, 5021, "CrateDB sent an invalid HTTP response: %s",
					     http_errno_description(e));
			else
				hc_close(c, "invalid response body from the upstream");
			hu_close(u, "invalid response");
			return;
		}
		if (in_head) {
			if (http_head_folded(v.iov_base, n < v.iov_len ? n : v.iov_len, &u->head_lf))
				u->folded = true;
			evbuffer_drain(in, e == HPE_PAUSED ? n + 1 : n);
			if (e == HPE_PAUSED && response_head(u) < 0)
				return;
			continue;
		}
		hp.st.bytes_out += n;
		evbuffer_remove_buffer(in, sio_output(c->io), n);
		c->progress = now_usec();
		if (e == HPE_PAUSED) {
			/* message complete */
			sio_flush(c->io);
			response_done(u);
			return;
		}
	}
	struct hc *c = u->client;
	if (c) {
		sio_flush(c->io);
		if (evbuffer_get_length(sio_output(c->io)) > HIGH_WATER)
			sio_disable(u->io, EV_READ);
	}
}

static void hu_write_cb(struct sio *io, void *arg)
{
	struct hu *u = arg;
	struct hc *c = u->client;

	(void)io;
	/* the body went out: read more of it */
	if (c && c->paused && c->state == HC_BODY) {
		c->paused = false;
		sio_enable(c->io, EV_READ);
		forward_body(c);
	}
}

/* --------------------------------------------------------------------------------------
 * clients */

static void hc_read_cb(struct sio *io, void *arg)
{
	struct hc *c = arg;

	switch (c->state) {
	case HC_HEAD:
		parse_head(c);
		break;
	case HC_BODY:
		forward_body(c);
		break;
	default:
		/* a pipelined next request waits, within bounds */
		if (evbuffer_get_length(sio_input(io)) > HIGH_WATER) {
			c->paused = true;
			sio_disable(io, EV_READ);
		}
		break;
	}
}

static void hc_write_cb(struct sio *io, void *arg)
{
	struct hc *c = arg;

	(void)io;
	if (c->state == HC_CLOSING) {
		hc_bury(c);
		return;
	}
	c->progress = now_usec();
	if (c->up && c->up->io)
		sio_enable(c->up->io, EV_READ);
}

static void hc_event_cb(struct sio *io, short what, void *arg)
{
	struct hc *c = arg;

	(void)io;
	if (c->state == HC_CLOSING) {
		hc_bury(c);
		return;
	}
	(void)what;
	/* nothing more can be written to it: drop what is queued, so that it goes at once */
	evbuffer_drain(sio_output(c->io), evbuffer_get_length(sio_output(c->io)));
	hc_close(c, "client disconnected");
	hc_bury(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct hc *c;
	int one = 1;

	(void)l;
	(void)sa;
	(void)salen;
	if (hp.stopping || hp.nclients >= hp.cfg->max_client_conn) {
#define BUSY_BODY "{\"error\":{\"message\":\"too many client connections ([http] max_client_conn)\"," \
		  "\"code\":5030}}"
		char busy[256];
		int n = snprintf(busy, sizeof(busy), "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
				 "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
				 sizeof(BUSY_BODY) - 1, BUSY_BODY);
#undef BUSY_BODY
		if (send(fd, busy, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("http: cannot send the refusal: %s", strerror(errno));
		close(fd);
		if (!hp.stopping)
			log_warn("http: refusing a client: max_client_conn (%d) reached",
				 hp.cfg->max_client_conn);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->io = sio_new(hp.base, fd, NULL);
	if (!c || !c->io) {
		free(c);
		close(fd);
		return;
	}
	if (arg == NULL)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->state = HC_HEAD;
	c->since = now_usec();
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	TAILQ_INSERT_TAIL(&clients, c, entry);
	hp.nclients++;
	sio_setcb(c->io, hc_read_cb, hc_write_cb, hc_event_cb, c);
	sio_enable(c->io, EV_READ | EV_WRITE);
}

/* --------------------------------------------------------------------------------------
 * timeouts */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	const struct http_conf *cfg = hp.cfg;
	uint64_t now = now_usec();
	struct hc *c, *cn;
	struct hu *u, *un;

	(void)fd;
	(void)what;
	(void)arg;
	for (c = TAILQ_FIRST(&clients); c; c = cn) {
		cn = TAILQ_NEXT(c, entry);
		if (c->state == HC_HEAD && c->head_started && now - c->since > cfgd(cfg->header_timeout))
			fail_request(c, 408, 4080, "request head not received within %s",
				     "[http] header_timeout");
		else if (c->state == HC_HEAD && !c->head_started &&
			 now - c->since > cfgd(cfg->idle_timeout))
			hc_close(c, "idle_timeout");
		else if ((c->state == HC_BODY || (c->state == HC_RESPONSE && c->up &&
						     c->up->response_started)) &&
			   now - c->progress > cfgd(cfg->idle_timeout)) {
			/* a client that stopped sending its body or reading its answer must not hold
			 * an upstream connection for ever */
			hc_close(c, "stalled for idle_timeout in the middle of a request");
		} else if (c->state == HC_WAIT && c->waiting && now - c->since > cfgd(cfg->queue_timeout))
			fail_request(c, 503, 5031, "no CrateDB connection became free within %s "
				     "([http] queue_timeout; pool_size connections are busy)",
				     "queue_timeout");
	}
	for (u = TAILQ_FIRST(&ups); u; u = un) {
		un = TAILQ_NEXT(u, entry);
		if (u->state == HU_CONNECTING &&
		    now - u->since > cfgd(cfg->connect_timeout)) {
			hu_fail(u, "timed out connecting to %s ([http] connect_timeout)", hp.upstream_name);
		} else if (u->state == HU_BUSY && u->client && !u->response_started &&
			   (!u->client->has_body || u->client->body_done) &&
			   now - u->since > cfgd(cfg->request_timeout)) {
			struct hc *cl = u->client;
			u->client = NULL;
			cl->up = NULL;
			hu_close(u, "request_timeout");
			fail_request(cl, 504, 5040, "CrateDB did not answer within %s",
				     "[http] request_timeout");
		} else if (u->state == HU_IDLE && now - u->since > cfgd(cfg->upstream_idle_timeout)) {
			hu_close(u, "upstream_idle_timeout");
		}
	}
	cred_refresh();
}

/* --------------------------------------------------------------------------------------
 * start and stop */

/* The Authorization value for a bearer token or a user's password. */
static char *auth_value(bool token, const char *user, const char *secret)
{
	if (token)
		return xasprintf("Bearer %s", secret);
	char *plain = xasprintf("%s:%s", user, secret);
	size_t n = strlen(plain);
	char *v = xmalloc(6 + 4 * ((n + 2) / 3) + 1);
	memcpy(v, "Basic ", 6);
	EVP_EncodeBlock((unsigned char *)v + 6, (const unsigned char *)plain, (int)n);
	OPENSSL_cleanse(plain, n);
	free(plain);
	return v;
}

static void free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* The Authorization value to inject; NULL with *err. With remember, the file it came from
 * is watched (cred_refresh). */
static char *make_auth(const struct cfg *cfg, bool remember, char **err)
{
	const char *file = *cfg->http_bearer_token_file ? cfg->http_bearer_token_file
			 : *cfg->http_user && *cfg->http_password_file ? cfg->http_password_file : NULL;
	bool token = *cfg->http_bearer_token_file != '\0';
	char *secret = NULL, *why = NULL;
	struct stat st;

	*err = NULL;
	if (!token && !*cfg->http_user)
		return xstrdup("");
	if (!file)
		return auth_value(false, cfg->http_user, cfg->http_password);
	char *path = cfg_expand_path(file, cfg->dir, &why);
	if (!path || stat(path, &st) < 0 || !(secret = read_secret_file(path, &why))) {
		*err = xasprintf("%s: %s", path ? path : file, why ? why : strerror(errno));
		free(why);
		free(path);
		return NULL;
	}
	char *v = auth_value(token, cfg->http_user, secret);
	free_secret(secret);
	if (remember) {
		free(hp.cred_path);
		hp.cred_path = path;
		hp.cred_token = token;
		hp.cred_st = st;
	} else {
		free(path);
	}
	return v;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The token (or password) file is read again when it changes: a JWT expires and is
 * replaced, in place or by a rename. Checked every tick and at once when CrateDB refuses a
 * login. One that cannot be read keeps the credential in use, logged once. */
static void cred_refresh(void)
{
	struct stat st;
	char *why = NULL, *secret;

	if (!hp.cred_path || (stat(hp.cred_path, &st) == 0 && same_file(&st, &hp.cred_st)))
		return;
	if (stat(hp.cred_path, &st) < 0 || !(secret = read_secret_file(hp.cred_path, &why))) {
		if (!hp.cred_warned)
			log_error("http: %s changed but cannot be read (%s); still injecting the %s "
				  "read before", hp.cred_path, why ? why : strerror(errno),
				  hp.cred_token ? "token" : "password");
		hp.cred_warned = true;
		free(why);
		return;
	}
	free_secret(hp.auth);
	hp.auth = auth_value(hp.cred_token, hp.cfg->user, secret);
	free_secret(secret);
	hp.cred_st = st;
	hp.cred_warned = false;
	hp.warned_401 = false;
	log_info("http: %s changed: the new %s is injected from now on", hp.cred_path,
		 hp.cred_token ? "token" : "password");
}

int http_proxy_check(const struct cfg *cfg, char **err)
{
	bool tls;
	char *host = NULL;
	int port;
	const char *why;

	*err = NULL;
	if (cfg->http_listen_port == 0 && !*cfg->http_unix_socket)
		return 0;
	if (!*cfg->http_upstream) {
		*err = xstrdup("[http] upstream is required (https://host:4200)");
		return -1;
	}
	if (http_parse_upstream(cfg->http_upstream, &tls, &host, &port, &why) < 0) {
		*err = xasprintf("[http] upstream \"%s\" %s", cfg->http_upstream, why);
		return -1;
	}
	free(host);
	if (!tls && cfg->http_tls_sslmode != SSLMODE_DISABLE) {
		*err = xasprintf("[http] upstream \"%s\" is plain http, but tls_sslmode requires TLS "
				 "(the injected password would cross the network in the clear)",
				 cfg->http_upstream);
		return -1;
	}
	if (*cfg->http_password && *cfg->http_password_file) {
		*err = xstrdup("[http] give password or password_file, not both");
		return -1;
	}
	if (*cfg->http_user && !*cfg->http_password && !*cfg->http_password_file &&
	    !*cfg->http_bearer_token_file) {
		*err = xstrdup("[http] user is set but neither password, password_file nor "
			       "bearer_token_file");
		return -1;
	}
	char *auth = make_auth(cfg, false, err);
	if (!auth)
		return -1;
	OPENSSL_cleanse(auth, strlen(auth));
	free(auth);
	if (cfg->http_listen_port && !cfg->allow_unauthenticated_remote &&
	    listen_addrs_remote(cfg->http_listen_addr, cfg->http_listen_port)) {
		*err = xasprintf("[http] listen_addr %s is reachable from other hosts, and the HTTP side "
				 "hands out the injected credentials to whoever connects; bind it to "
				 "loopback or set allow_unauthenticated_remote = 1",
				 cfg->http_listen_addr);
		return -1;
	}
	return 0;
}

static int listen_unix_http(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_error("http: unix_socket path too long: %s", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		log_error("http: %s is in use by another process", path);
		close(fd);
		return -1;
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, 0777) < 0) {
		log_error("http: cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	struct evconnlistener *l = evconnlistener_new(hp.base, accept_cb, (void *)1,
						      LEV_OPT_CLOSE_ON_FREE, 128, fd);
	if (!l) {
		close(fd);
		return -1;
	}
	hp.l[hp.nl++] = l;
	hp.unix_path = xstrdup(path);
	log_info("http: listening on %s", path);
	return 0;
}

static int listen_tcp_http(const char *addr, int port)
{
	struct evutil_addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					 .ai_flags = EVUTIL_AI_PASSIVE }, *res, *ai;
	char ps[8];

	snprintf(ps, sizeof(ps), "%d", port);
	if (evutil_getaddrinfo(addr, ps, &hints, &res) != 0) {
		log_error("http: cannot resolve listen_addr %s", addr);
		return -1;
	}
	for (ai = res; ai && hp.nl < MAX_LISTENERS; ai = ai->ai_next) {
		struct evconnlistener *l = evconnlistener_new_bind(
			hp.base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
			ai->ai_addr, (int)ai->ai_addrlen);
		if (!l) {
			log_error("http: cannot listen on %s:%d: %s", addr, port, strerror(errno));
			evutil_freeaddrinfo(res);
			return -1;
		}
		hp.l[hp.nl++] = l;
		log_info("http: listening on %s:%d, upstream %s", addr, port, hp.upstream_name);
	}
	evutil_freeaddrinfo(res);
	return 0;
}

int http_proxy_start(struct event_base *base, struct evdns_base *dns, const struct cfg *cfg)
{
	char *err = NULL;
	const char *why;
	struct timeval tv = { 0, TICK_USEC };

	const int *fds;
	int nfds = listeners_http_fds(&fds);

	if (cfg->http_listen_port == 0 && !*cfg->http_unix_socket && nfds == 0)
		return 0;
	if (nfds > 0 && !*cfg->http_upstream) {
		log_error("socket activation passed an \"http\" socket, but [http] upstream is not set");
		return -1;
	}
	if (http_proxy_check(cfg, &err) < 0) {
		log_error("%s", err);
		free(err);
		return -1;
	}
	init_parsers();
	hp.base = base;
	hp.dns = dns;
	hp.conf = (struct http_conf){
		.pool_size = cfg->http_pool_size, .max_client_conn = cfg->http_max_client_conn,
		.max_sql_body_mb = cfg->http_max_sql_body_mb,
		.connect_timeout = cfg->http_connect_timeout, .header_timeout = cfg->http_header_timeout,
		.idle_timeout = cfg->http_idle_timeout, .request_timeout = cfg->http_request_timeout,
		.queue_timeout = cfg->http_queue_timeout,
		.upstream_idle_timeout = cfg->http_upstream_idle_timeout,
	};
	snprintf(hp.conf.user, sizeof(hp.conf.user), "%s", cfg->http_user);
	hp.cfg = &hp.conf;
	TAILQ_INIT(&hp.up_graveyard);
	TAILQ_INIT(&hp.hc_graveyard);
	if (http_parse_upstream(cfg->http_upstream, &hp.tls, &hp.host, &hp.port, &why) < 0)
		return -1;
	hp.sslmode = hp.tls ? cfg->http_tls_sslmode : SSLMODE_DISABLE;
	const char *ca = *cfg->http_tls_ca_file ? cfg->http_tls_ca_file
						: *cfg->server_tls_ca_file ? cfg->server_tls_ca_file : NULL;
	hp.ca_file = ca ? xstrdup(ca) : NULL;
	snprintf(hp.host_header, sizeof(hp.host_header), strchr(hp.host, ':') ? "[%s]:%d" : "%s:%d",
		 hp.host, hp.port);
	snprintf(hp.upstream_name, sizeof(hp.upstream_name), "%s", hp.host_header);
	hp.auth = make_auth(cfg, true, &err);
	if (!hp.auth) {
		log_error("[http] %s", err);
		free(err);
		return -1;
	}
	hp.tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	hp.reaper = event_new(base, -1, 0, reap_cb, NULL);
	if (!hp.tick || !hp.reaper || event_add(hp.tick, &tv) < 0)
		fatal("cannot create the HTTP side's timers");
	if (nfds > 0) {
		/* socket activation (FileDescriptorName=http): listen_addr/port/unix_socket unused */
		for (int i = 0; i < nfds && hp.nl < MAX_LISTENERS; i++) {
			if (!fd_is_loopback(fds[i]) && !cfg->allow_unauthenticated_remote) {
				log_error("refusing the HTTP socket passed by systemd (fd %d): it is reachable "
					  "from other hosts and hands out the injected credentials", fds[i]);
				return -1;
			}
			evutil_make_socket_nonblocking(fds[i]);
			struct evconnlistener *l = evconnlistener_new(hp.base, accept_cb, NULL,
								      LEV_OPT_CLOSE_ON_FREE, -1, fds[i]);
			if (!l)
				return -1;
			hp.l[hp.nl++] = l;
		}
		hp.enabled = true;
		log_info("http: serving %d socket%s passed by systemd, upstream %s", nfds,
			 nfds == 1 ? "" : "s", hp.upstream_name);
		return 0;
	}
	if (cfg->http_listen_port) {
		char *addrs = xstrdup(cfg->http_listen_addr), *save = NULL;
		for (char *a = strtok_r(addrs, ", \t", &save); a; a = strtok_r(NULL, ", \t", &save))
			if (listen_tcp_http(a, cfg->http_listen_port) < 0) {
				free(addrs);
				return -1;
			}
		free(addrs);
	}
	if (*cfg->http_unix_socket && listen_unix_http(cfg->http_unix_socket) < 0)
		return -1;
	hp.enabled = true;
	return 0;
}

bool http_proxy_enabled(void)
{
	return hp.enabled;
}

void http_proxy_stopping(void)
{
	struct hc *c, *cn;

	hp.stopping = true;
	for (int i = 0; i < hp.nl; i++)
		evconnlistener_disable(hp.l[i]);
	for (c = TAILQ_FIRST(&clients); c; c = cn) {
		cn = TAILQ_NEXT(c, entry);
		if (c->state == HC_HEAD && !c->head_started)
			hc_close(c, "shutting down");
	}
}

void http_proxy_stop(void)
{
	struct hc *c;
	struct hu *u;

	if (!hp.enabled)
		return;
	for (int i = 0; i < hp.nl; i++)
		evconnlistener_free(hp.l[i]);
	hp.nl = 0;
	if (hp.unix_path) {
		unlink(hp.unix_path);
		free(hp.unix_path);
		hp.unix_path = NULL;
	}
	while ((c = TAILQ_FIRST(&clients))) {
		c->state = HC_CLOSING;
		if (c->up) {
			c->up->client = NULL;
			c->up = NULL;
		}
		if (c->pinned) {
			c->pinned->pinned = NULL;
			c->pinned = NULL;
		}
		hc_bury(c);
	}
	while ((u = TAILQ_FIRST(&ups)))
		hu_close(u, "shutting down");
	reap_cb(-1, 0, NULL);
	event_free(hp.tick);
	event_free(hp.reaper);
	hp.tick = hp.reaper = NULL;
	if (hp.auth)
		OPENSSL_cleanse(hp.auth, strlen(hp.auth));
	free(hp.auth);
	free(hp.host);
	free(hp.ca_file);
	free(hp.last_error);
	free(hp.cred_path);
	hp.auth = hp.host = hp.ca_file = hp.last_error = hp.cred_path = NULL;
	hp.enabled = false;
}

void http_proxy_stats(struct http_stats *st)
{
	struct hu *u;
	struct hc *c;

	*st = hp.st;
	st->clients = hp.nclients;
	st->upstream_total = hp.nup;
	TAILQ_FOREACH(u, &ups, entry) {
		if (u->state == HU_IDLE)
			st->upstream_idle++;
		else if (u->pinned)
			st->upstream_pinned++;
		else if (u->state == HU_BUSY)
			st->upstream_busy++;
	}
	TAILQ_FOREACH(c, &waiting, wait)
		st->waiting++;
	st->upstream = hp.upstream_name;
	st->last_error = hp.last_error;
}
