/* The client side of the HTTP proxy: one connection's requests in turn. A request head is
 * read (http-parser) and checked (framing, Host, method, size), a /_sql body is looked at
 * for statements that change the session (inflated first when compressed, and limited
 * after decompression as CrateDB does), the body streams upstream as it comes, and the
 * response streams back (http_upstream.c); then the next request. */
#include "http_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sockio.h"
#include "core/util.h"

static http_parser_settings req_settings;

static void parse_head(struct hc *c);

static const char *const hc_state_names[] = { "head", "wait", "body", "response", "closing" };

void hc_set_state(struct hc *c, enum hc_state to)
{
	/* head -> wait (a request) -> body and/or response -> head (the next one); back to
	 * wait for a retry or a redirect; closing from anywhere */
	static const unsigned moves[] = {
		[HC_HEAD] = 1u << HC_WAIT,
		[HC_WAIT] = 1u << HC_BODY | 1u << HC_RESPONSE,
		[HC_BODY] = 1u << HC_RESPONSE | 1u << HC_WAIT,
		[HC_RESPONSE] = 1u << HC_HEAD | 1u << HC_WAIT,
		[HC_CLOSING] = 0,
	};

	if (to != HC_CLOSING && !(moves[c->state] & 1u << to))
		log_error("http: client %p goes from %s to %s, a move it never makes (a bug)",
			  (void *)c, hc_state_names[c->state], hc_state_names[to]);
	log_trace("http: client %p: %s -> %s", (void *)c, hc_state_names[c->state],
		  hc_state_names[to]);
	c->state = to;
}

void hc_fail(struct hc *c, int status, int code, const char *fmt, ...)
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

/* Inflate states are taken for a compressed body and given back when it ends (or the
 * connection does): an idle keep-alive connection holds none (one that has inflated holds
 * a 32 KiB window), and the next request's body, compressed or not, never meets the last
 * one's. A few are kept, reset, for the next compressed bodies. */
#define Z_SPARES 16
static z_stream *z_spare[Z_SPARES];
static int nz_spare;

static z_stream *z_take(void)
{
	if (nz_spare)
		return z_spare[--nz_spare];
	z_stream *z = calloc(1, sizeof(*z));
	/* 32 + MAX_WBITS: zlib tells gzip from zlib framing itself */
	if (z && inflateInit2(z, 32 + MAX_WBITS) != Z_OK) {
		free(z);
		z = NULL;
	}
	return z;
}

static void z_give(struct hc *c)
{
	z_stream *z = c->z;

	if (!z)
		return;
	c->z = NULL;
	if (nz_spare < Z_SPARES && inflateReset(z) == Z_OK) {
		z_spare[nz_spare++] = z;
		return;
	}
	inflateEnd(z);
	free(z);
}

void hc_free_spares(void)
{
	while (nz_spare) {
		z_stream *z = z_spare[--nz_spare];
		inflateEnd(z);
		free(z);
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
	z_give(c);
	c->body_done = true;
	http_parser_pause(p, 1);
	return 0;
}

void hc_init_parser(void)
{
	http_parser_settings_init(&req_settings);
	req_settings.on_message_begin = rq_begin;
	req_settings.on_url = rq_url;
	req_settings.on_header_field = rq_field;
	req_settings.on_header_value = rq_value;
	req_settings.on_headers_complete = rq_headers_done;
	req_settings.on_body = rq_body;
	req_settings.on_message_complete = rq_complete;
}

/* Freed by the reaper (http_proxy.c). */
void hc_free(struct hc *c)
{
	sio_free(c->io);
	http_head_clear(&c->head);
	z_give(c);
	if (c->sql_peek)
		evbuffer_free(c->sql_peek);
	free(c->key);
	free(c);
}

void hc_bury(struct hc *c)
{
	if (c->buried)
		return;
	c->buried = true;
	if (c->waiting) {
		TAILQ_REMOVE(&hp.waiting, c, wait);
		c->waiting = false;
	}
	sio_setcb(c->io, NULL, NULL, NULL, NULL);
	sio_disable(c->io, EV_READ | EV_WRITE);
	TAILQ_REMOVE(&hp.clients, c, entry);
	TAILQ_INSERT_TAIL(&hp.hc_graveyard, c, entry);
	hp.nclients--;
	event_active(hp.reaper, 0, 0);
}

/* Closes after what is queued for the client has been written. */
void hc_close(struct hc *c, const char *why)
{
	struct timeval tv = { 5, 0 };

	if (c->state == HC_CLOSING)
		return;
	log_debug("http: client %p closes: %s", (void *)c, why);
	hc_set_state(c, HC_CLOSING);
	if (c->waiting) {
		TAILQ_REMOVE(&hp.waiting, c, wait);
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
	for (u = TAILQ_FIRST(&hp.ups); u; u = un) {
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

/* Request head complete: checks, then an upstream connection. */
static void handle_request(struct hc *c)
{
	http_parser *p = &c->parser;
	const char *why = http_framing_error(&c->head);
	unsigned long long max = (unsigned long long)hp.cfg->max_sql_body_mb << 20;

	if (why) {
		hc_fail(c, 400, 4000, "request refused: %s (ambiguous framing)", why);
		return;
	}
	if (c->folded) {
		hc_fail(c, 400, 4000, "%s",
			"request refused: a header line folded onto the "
			"next (obs-fold)");
		return;
	}
	if ((why = http_host_error(&c->head, p->http_major, p->http_minor)) ||
	    (why = http_method_error(p->method, p->upgrade))) {
		hc_fail(c, 400, 4000, "request refused: %s", why);
		return;
	}
	c->method = p->method;
	c->keep_alive = http_should_keep_alive(p) && !hp.stopping;
	c->has_body = (p->flags & F_CHUNKED) ||
		      (p->content_length > 0 && p->content_length != ULLONG_MAX);
	c->body_done = !c->has_body;
	c->body_bytes = 0;
	c->pin = false;
	c->sql_known = true;
	/* CrateDB's SqlHttpHandler runs any URI that starts with /_sql (/_sqlx, /_sql.json) */
	c->is_sql = c->head.url && strncmp(c->head.url, "/_sql", 5) == 0;
	const char *ce = http_head_get(&c->head, "Content-Encoding");
	bool compressed = ce && *ce && strcasecmp(ce, "identity") != 0;
	/* a compressed body is limited after decompression (inflate_body), as CrateDB does */
	if (c->is_sql && c->has_body && !compressed && p->content_length != ULLONG_MAX &&
	    p->content_length > max) {
		hc_fail(c, 413, 4130, "a /_sql body of more than %d MB is refused (as CrateDB)",
			hp.cfg->max_sql_body_mb);
		return;
	}
	c->inflated = 0;
	c->z_done = false;
	c->z_count = p->content_length == ULLONG_MAX || p->content_length > max / 1032;
	z_give(c); /* none is left from the last request; one is taken below if this needs it */
	if (c->is_sql && c->has_body) {
		c->sql_known = false;
		if (!c->sql_peek && !(c->sql_peek = evbuffer_new())) {
			hc_fail(c, 503, 5030, "%s", "out of memory");
			return;
		}
		evbuffer_drain(c->sql_peek, evbuffer_get_length(c->sql_peek));
		c->sql_scanned = 0;
		if (ce && (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "x-gzip") == 0 ||
			   strcasecmp(ce, "deflate") == 0 || strcasecmp(ce, "x-deflate") == 0)) {
			if (!(c->z = z_take())) {
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
		hc_fail(c, 503, 5030, "%s", "out of memory");
		return;
	}
	hc_set_state(c, HC_WAIT);
	hu_acquire(c);
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
				hc_fail(c, 431, 4310, "request headers larger than %s are refused",
					"8 kB");
			else if (c->head.bytes > MAX_URL)
				hc_fail(c, 414, 4140, "a request line longer than %s is refused",
					"4 kB");
			else
				hc_fail(c, 400, 4000, "malformed HTTP request: %s",
					http_errno_description(e));
			return;
		}
	}
}

void hc_send_body(struct hc *c)
{
	if (c->has_body && !c->body_done) {
		hc_set_state(c, HC_BODY);
		if (!c->lf_fed) {
			resume_after_head(&c->parser, &req_settings);
			c->lf_fed = true;
		}
		hc_forward_body(c);
	} else {
		hc_set_state(c, HC_RESPONSE);
		sio_flush(c->up->io);
	}
}

void hc_forward_body(struct hc *c)
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
				hc_fail(c, 400, 4000, "malformed request body: %s",
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
			if (u->response_started) {
				/* CrateDB answered early: a 413 now would land inside its answer */
				log_info("http: client %p: /_sql body over the limit after the "
					 "response started; closed",
					 (void *)c);
				hc_close(c, "request body over the limit");
				return;
			}
			hc_fail(c, 413, 4130,
				"a /_sql body of more than %d MB%s is refused "
				"(as CrateDB)",
				hp.cfg->max_sql_body_mb,
				c->inflated > max ? " after decompression" : "");
			return;
		}
		if (c->body_done) {
			hc_set_state(c, HC_RESPONSE);
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
void hc_request_done(struct hc *c)
{
	hp.st.request_time_us += now_usec() - c->req_start;
	if (c->close_after || hp.stopping) {
		hc_close(c, "response done, connection: close");
		return;
	}
	hc_set_state(c, HC_HEAD);
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

static void hc_read_cb(struct sio *io, void *arg)
{
	struct hc *c = arg;

	switch (c->state) {
	case HC_HEAD:
		parse_head(c);
		break;
	case HC_BODY:
		hc_forward_body(c);
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

/* A new client connection (accepted by http_proxy.c under max_client_conn). */
void hc_accept(int fd, bool unix_socket)
{
	struct hc *c = calloc(1, sizeof(*c));
	int one = 1;

	if (c)
		c->io = sio_new(hp.base, fd, NULL);
	if (!c || !c->io) {
		free(c);
		close(fd);
		return;
	}
	if (!unix_socket)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->state = HC_HEAD; /* a new connection */
	c->since = now_usec();
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	TAILQ_INSERT_TAIL(&hp.clients, c, entry);
	hp.nclients++;
	sio_setcb(c->io, hc_read_cb, hc_write_cb, hc_event_cb, c);
	sio_enable(c->io, EV_READ | EV_WRITE);
}
