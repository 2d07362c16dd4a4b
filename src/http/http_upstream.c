/* The upstream side of the HTTP proxy: a keep-alive pool of connections to CrateDB's HTTP
 * endpoint (verified TLS, upconn.c), at most [http] pool_size, each serving one request at
 * a time for the Default-Schema of its session. A connection whose session a client changed
 * (SET, RESET, DECLARE through /_sql) stays with that client ("pinned") and closes with it.
 * A request's head goes out with the credentials injected, its response comes back through
 * http-parser, and a 307 for a blob is followed to the node that holds it. */
#include "http_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/cfg.h"
#include "core/log.h"
#include "core/sockio.h"
#include "core/tlsctx.h"
#include "core/upconn.h"
#include "core/util.h"

static http_parser_settings resp_settings;

static void hu_read_cb(struct sio *io, void *arg);
static void hu_write_cb(struct sio *io, void *arg);
static void hu_event_cb(struct sio *io, short what, void *arg);
static void hu_idle(struct hu *u);
static void attach(struct hc *c, struct hu *u);

static const char *const hu_state_names[] = { "connecting", "idle", "busy", "closing" };

void hu_set_state(struct hu *u, enum hu_state to)
{
	/* connecting -> idle <-> busy (busy stays busy while pinned to a client); closing from
	 * anywhere */
	static const unsigned moves[] = {
		[HU_CONNECTING] = 1u << HU_IDLE,
		[HU_IDLE] = 1u << HU_IDLE | 1u << HU_BUSY,
		[HU_BUSY] = 1u << HU_IDLE | 1u << HU_BUSY,
		[HU_CLOSING] = 0,
	};

	if (to != HU_CLOSING && !(moves[u->state] & 1u << to))
		log_error("http: upstream connection %p goes from %s to %s, a move it never makes "
			  "(a bug)",
			  (void *)u, hu_state_names[u->state], hu_state_names[to]);
	log_trace("http: upstream connection %p: %s -> %s", (void *)u, hu_state_names[u->state],
		  hu_state_names[to]);
	u->state = to;
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

static int rs_headers_done(http_parser *p)
{
	http_parser_pause(p, 1);
	return 0;
}

void hu_init_parser(void)
{
	http_parser_settings_init(&resp_settings);
	resp_settings.on_status = rs_status;
	resp_settings.on_header_field = rs_field;
	resp_settings.on_header_value = rs_value;
	resp_settings.on_headers_complete = rs_headers_done;
	resp_settings.on_message_complete = rs_complete;
}

/* Freed by the reaper (http_proxy.c). */
void hu_free(struct hu *u)
{
	upconn_abort(u->uc);
	if (u->io)
		sio_free(u->io);
	http_head_clear(&u->head);
	free(u->key);
	free(u->host);
	free(u->tls_name);
	free(u);
}

static void refill_for_waiting(void);

void hu_close(struct hu *u, const char *why)
{
	if (u->state == HU_CLOSING)
		return;
	bool was_busy = u->state == HU_BUSY && !u->oneoff;
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
	hu_set_state(u, HU_CLOSING);
	upconn_abort(u->uc); /* its callback must not come after this */
	u->uc = NULL;
	if (u->io) {
		sio_setcb(u->io, NULL, NULL, NULL, NULL);
		sio_disable(u->io, EV_READ | EV_WRITE);
	}
	TAILQ_REMOVE(&hp.ups, u, entry);
	TAILQ_INSERT_TAIL(&hp.up_graveyard, u, entry);
	hp.nup--;
	event_active(hp.reaper, 0, 0);
	if (was_busy)
		refill_for_waiting(); /* it had a client or a session: its place is free now */
}

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
	while ((c = TAILQ_FIRST(&hp.waiting))) {
		TAILQ_REMOVE(&hp.waiting, c, wait);
		c->waiting = false;
		hc_fail(c, status, status * 10, "%s", msg);
	}
}

void hu_fail(struct hu *u, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct hc *fc = u->for_client;
	u->for_client = NULL;
	if (!fc)
		fail_waiting(msg, 502); /* first: the close must not launch a connection for them */
	hu_close(u, msg);
	if (fc)
		hc_fail(fc, 502, 5022, "following CrateDB's redirect failed: %s", msg);
}

static void hu_ready(struct hu *u)
{
	hu_set_state(u, HU_IDLE);
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
			hc_set_state(c, HC_WAIT);
			hu_acquire(c);
		} else {
			hc_fail(c, 502, 5020, "%s",
				"the CrateDB connection closed before answering; "
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
		hc_request_done(c);
		return;
	}
	hu_close(u,
		 what & SIO_EOF ? "upstream closed the connection" : "upstream connection error");
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
	u->state = HU_CONNECTING; /* a new connection */
	u->since = now_usec();
	struct upconn_opts o = { .host = host,
				 .port = port,
				 .tls_name = tls_name,
				 .tls = tls,
				 .sslmode = hp.sslmode,
				 .ca_file = hp.ca_file,
				 .keepalive = true };
	if (!(u->uc = upconn_start(hp.base, hp.dns, &o, hu_connected, u))) {
		free(u->key);
		free(u->host);
		free(u->tls_name);
		free(u);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&hp.ups, u, entry);
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
	hu_set_state(u, HU_IDLE);
	u->since = now_usec();
	/* a client waiting is served even while stopping: its request came before the stop */
	TAILQ_FOREACH (c, &hp.waiting, wait)
		if (strcmp(c->key, u->key) == 0) {
			TAILQ_REMOVE(&hp.waiting, c, wait);
			c->waiting = false;
			attach(c, u);
			return;
		}
	c = TAILQ_FIRST(&hp.waiting);
	if (c) {
		char *key = strdup(c->key);
		hu_close(u, "making room for a connection with another Default-Schema");
		if (key)
			hu_launch(key);
		free(key);
	} else if (hp.stopping) {
		hu_close(u, "shutting down");
	}
}

/* Connections that belong to a client's session are not the pool's: they do not count
 * against pool_size (one per client at most, so max_client_conn bounds them). */
static int pinned_count(void)
{
	struct hu *u;
	int n = 0;

	TAILQ_FOREACH (u, &hp.ups, entry)
		if (u->pinned)
			n++;
	return n;
}

void hu_acquire(struct hc *c)
{
	struct hu *u, *next;
	int busy_or_connecting = 0;

	if (c->pinned) {
		attach(c, c->pinned);
		return;
	}
	for (u = TAILQ_FIRST(&hp.ups); u; u = next) {
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
	TAILQ_INSERT_TAIL(&hp.waiting, c, wait);
	if (hp.nup - pinned_count() < hp.cfg->pool_size) {
		/* one connection on the way per waiting client at most */
		int waiters = 0;
		struct hc *w;
		TAILQ_FOREACH (w, &hp.waiting, wait)
			if (strcmp(w->key, c->key) == 0)
				waiters++;
		if (waiters > busy_or_connecting || busy_or_connecting == 0)
			hu_launch(c->key);
		return;
	}
	/* full: an idle connection of another session makes room */
	TAILQ_FOREACH (u, &hp.ups, entry)
		if (u->state == HU_IDLE && !u->pinned) {
			hu_close(u, "making room for a connection with another Default-Schema");
			hu_launch(c->key);
			return;
		}
}

/* A connection left the pool's count (closed after serving, or kept by a client whose
 * session changed): the first waiting client gets a new one when there is room and none is
 * on the way for its session, as hu_acquire would have launched (without this it waited
 * for the next client to arrive, or its queue_timeout). */
static void refill_for_waiting(void)
{
	struct hc *c = TAILQ_FIRST(&hp.waiting), *w;
	struct hu *u;
	int connecting = 0, waiters = 0;

	if (!c || hp.nup - pinned_count() >= hp.cfg->pool_size)
		return;
	TAILQ_FOREACH (u, &hp.ups, entry)
		if (u->state == HU_CONNECTING && !u->oneoff && strcmp(u->key, c->key) == 0)
			connecting++;
	TAILQ_FOREACH (w, &hp.waiting, wait)
		if (strcmp(w->key, c->key) == 0)
			waiters++;
	if (waiters > connecting)
		hu_launch(c->key);
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
	hu_set_state(u, HU_BUSY);
	u->since = now_usec();
	u->requests++;
	u->head_done = false;
	new_response(u);
	c->up = u;
	http_put_request(out, methods[c->method], &c->head, u->host_header, hp.auth);
	hp.st.requests++;
	c->req_start = now_usec();
	hc_send_body(c);
}

/* keep: http_should_keep_alive of the response's parser, asked before anything resets it */
static void response_done(struct hu *u, bool keep)
{
	struct hc *c = u->client;

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
		hu_set_state(u, HU_BUSY);
		log_debug("http: upstream connection %p stays with client %p (session changed)",
			  (void *)u, (void *)c);
		refill_for_waiting();
	} else if (u->pinned && keep) {
		hu_set_state(u, HU_BUSY);
	} else if (keep) {
		hu_idle(u);
	} else {
		hu_close(u, "the upstream ends the connection");
	}
	if (c)
		hc_request_done(c);
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
		hc_fail(c, 502, 5023,
			"CrateDB redirected %s to %s, which cratebouncer cannot "
			"follow: %s",
			c->head.url, loc ? loc : "(none)", why);
		return -1;
	}
	/* an IP literal: the node's certificate is the cluster's */
	const char *tls_name = tls && is_ip_literal(host) && !is_ip_literal(hp.host) ? hp.host
										     : NULL;
	log_debug("http: following CrateDB's redirect of %s to %s%s%s", c->head.url, loc,
		  tls_name ? ", certificate checked for " : "", tls_name ? tls_name : "");
	free(c->head.url);
	c->head.url = url;
	c->redirects++;
	u->client = NULL;
	c->up = NULL;
	hu_close(u, "redirected");
	hc_set_state(c, HC_WAIT);
	if (!hu_launch_to(c->key, host, tls_name, port, tls, c))
		hc_fail(c, 503, 5030, "%s", "out of memory");
	free(host);
	return 1;
}

/* A plain 401 with WWW-Authenticate: the upstream refused the injected credentials. The
 * client gets cratebouncer's own 401 (the config needs fixing, not the client), the log
 * one line until a response works again. */
static void login_refused(struct hu *u, struct hc *c)
{
	struct evbuffer *out = sio_output(c->io);

	cred_refresh();
	if (!hp.warned_401)
		log_error("http: CrateDB at %s refused the credentials cratebouncer injects "
			  "(user \"%s\"): check [http] user/password/bearer_token_file",
			  hp.upstream_name, *hp.cfg->user ? hp.cfg->user : "(token)");
	hp.warned_401 = true;
	hp.st.responses[4]++;
	http_put_error(out, 401, 4010, !c->keep_alive,
		       "CrateDB refused the credentials cratebouncer injects for %s; "
		       "the cratebouncer config needs fixing, not this client",
		       hp.upstream_name);
	u->client = NULL;
	c->up = NULL;
	hu_close(u, "401 from the upstream");
	if (!c->keep_alive)
		c->close_after = true; /* as the Connection: close just sent says */
	if (c->body_done) {
		hc_request_done(c);
	} else {
		c->close_after = true;
		hc_close(c, "request body not sent after a 401");
	}
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
		hc_fail(c, 502, 5021,
			"CrateDB sent an invalid HTTP response: "
			"a folded header line (obs-fold)");
		hu_close(u, "invalid response");
		return -1;
	}
	if (http_te_lookalike(&u->head)) {
		hc_fail(c, 502, 5021, "CrateDB sent an invalid HTTP response: %s",
			http_te_lookalike(&u->head));
		hu_close(u, "invalid response");
		return -1;
	}
	/* A failed login is a plain 401 with WWW-Authenticate; a 401 with CrateDB's JSON (4010,
	 * 4011: a missing privilege) is an answer to the query, passed on as it is. */
	if (status == 401 && http_head_get(&u->head, "WWW-Authenticate")) {
		login_refused(u, c);
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
	if (until_eof || !c->keep_alive || hp.stopping)
		c->close_after = true; /* said in the head: Connection: close */
	http_put_response(out, u->parser.http_major, u->parser.http_minor, status, &u->head,
			  c->close_after);
	u->head_done = true;
	if (no_body) {
		sio_flush(c->io);
		/* asked before the reset below, which leaves a parser that knows no version
		 * (as HTTP/1.0: every response without a body closed its connection) */
		bool keep = http_should_keep_alive(&u->parser);
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
			hc_request_done(c);
			return -1;
		}
		response_done(u, keep);
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
				hc_fail(c, 502, 5021, "CrateDB sent an invalid HTTP response: %s",
					http_errno_description(e));
			else
				hc_close(c, "invalid response body from the upstream");
			hu_close(u, "invalid response");
			return;
		}
		if (in_head) {
			if (http_head_folded(v.iov_base, n < v.iov_len ? n : v.iov_len,
					     &u->head_lf))
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
			response_done(u, http_should_keep_alive(&u->parser));
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
		hc_forward_body(c);
	}
}
