/* The HTTP side. A client connection's life: read a request head (http-parser), take an
 * upstream connection (same Default-Schema session, idle, not stale) or wait for one,
 * write the rewritten head (credentials injected), stream the body, stream the response
 * back, then the next request. An upstream connection whose session a client changed
 * (SET, RESET, DECLARE ... through /_sql) stays with that client and closes with it.
 *
 * Bodies are never held whole: bytes move as they come, the parser only finds where a
 * message ends, and either side stops reading while the other side's output is above
 * HIGH_WATER. Requests are not pipelined to the upstream: one at a time per connection.
 *
 * This file: start and stop, the listeners, the timeout tick and the reaper, statistics.
 * The connections are in http_client.c and http_upstream.c; http_int.h says what is where. */
#include "http_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/cfg.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/util.h"

struct http_side hp = {
	.ups = TAILQ_HEAD_INITIALIZER(hp.ups),
	.clients = TAILQ_HEAD_INITIALIZER(hp.clients),
	.waiting = TAILQ_HEAD_INITIALIZER(hp.waiting),
};

/* Freeing, never inside a connection's own callbacks. */
static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hu *u;
	struct hc *c;

	(void)fd;
	(void)what;
	(void)arg;
	while ((u = TAILQ_FIRST(&hp.up_graveyard))) {
		TAILQ_REMOVE(&hp.up_graveyard, u, entry);
		hu_free(u);
	}
	while ((c = TAILQ_FIRST(&hp.hc_graveyard))) {
		TAILQ_REMOVE(&hp.hc_graveyard, c, entry);
		hc_free(c);
	}
}

static void accept_cb(int fd, const struct sockaddr *sa, int salen, bool unix_socket, void *arg)
{
	(void)sa;
	(void)salen;
	(void)arg;
	if (hp.stopping || hp.nclients >= hp.cfg->max_client_conn) {
#define BUSY_BODY                                                                           \
	"{\"error\":{\"message\":\"too many client connections ([http] max_client_conn)\"," \
	"\"code\":5030}}"
		char busy[256];
		int n = snprintf(
			busy, sizeof(busy),
			"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
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
	hc_accept(fd, unix_socket);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	const struct http_conf *cfg = hp.cfg;
	uint64_t now = now_usec();
	struct hc *c, *cn;
	struct hu *u, *un;

	(void)fd;
	(void)what;
	(void)arg;
	for (c = TAILQ_FIRST(&hp.clients); c; c = cn) {
		cn = TAILQ_NEXT(c, entry);
		if (c->state == HC_HEAD && c->head_started &&
		    now - c->since > cfgd(cfg->header_timeout))
			hc_fail(c, 408, 4080, "request head not received within %s",
				"[http] header_timeout");
		else if (c->state == HC_HEAD && !c->head_started &&
			 now - c->since > cfgd(cfg->idle_timeout))
			hc_close(c, "idle_timeout");
		else if ((c->state == HC_BODY ||
			  (c->state == HC_RESPONSE && c->up && c->up->response_started)) &&
			 now - c->progress > cfgd(cfg->idle_timeout)) {
			/* a client that stopped sending its body or reading its answer must not hold
			 * an upstream connection for ever */
			hc_close(c, "stalled for idle_timeout in the middle of a request");
		} else if (c->state == HC_WAIT && c->waiting &&
			   now - c->since > cfgd(cfg->queue_timeout))
			hc_fail(c, 503, 5031,
				"no CrateDB connection became free within %s "
				"([http] queue_timeout; pool_size connections are busy)",
				"queue_timeout");
	}
	for (u = TAILQ_FIRST(&hp.ups); u; u = un) {
		un = TAILQ_NEXT(u, entry);
		if (u->state == HU_CONNECTING && now - u->since > cfgd(cfg->connect_timeout)) {
			hu_fail(u, "timed out connecting to %s ([http] connect_timeout)",
				hp.upstream_name);
		} else if (u->state == HU_BUSY && u->client && !u->response_started &&
			   (!u->client->has_body || u->client->body_done) &&
			   now - u->since > cfgd(cfg->request_timeout)) {
			struct hc *cl = u->client;
			u->client = NULL;
			cl->up = NULL;
			hu_close(u, "request_timeout");
			hc_fail(cl, 504, 5040, "CrateDB did not answer within %s",
				"[http] request_timeout");
		} else if (u->state == HU_IDLE &&
			   now - u->since > cfgd(cfg->upstream_idle_timeout)) {
			hu_close(u, "upstream_idle_timeout");
		}
	}
	cred_refresh();
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
		*err = xasprintf(
			"[http] upstream \"%s\" is plain http, but tls_sslmode requires TLS "
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
	char *auth = cred_make(cfg, false, err);
	if (!auth)
		return -1;
	free_secret(auth);
	if (cfg->http_listen_port && !cfg->allow_unauthenticated_remote &&
	    listen_addrs_remote(cfg->http_listen_addr, cfg->http_listen_port)) {
		*err = xasprintf(
			"[http] listen_addr %s is reachable from other hosts, and the HTTP side "
			"hands out the injected credentials to whoever connects; bind it to "
			"loopback or set allow_unauthenticated_remote = 1",
			cfg->http_listen_addr);
		return -1;
	}
	return 0;
}

/* The [http] settings and the upstream, copied: a reload frees the config. -1 when the
 * upstream URL cannot be read (http_proxy_check said why already). */
static int copy_conf(const struct cfg *cfg)
{
	const char *why;

	hp.conf = (struct http_conf){
		.pool_size = cfg->http_pool_size,
		.max_client_conn = cfg->http_max_client_conn,
		.max_sql_body_mb = cfg->http_max_sql_body_mb,
		.connect_timeout = cfg->http_connect_timeout,
		.header_timeout = cfg->http_header_timeout,
		.idle_timeout = cfg->http_idle_timeout,
		.request_timeout = cfg->http_request_timeout,
		.queue_timeout = cfg->http_queue_timeout,
		.upstream_idle_timeout = cfg->http_upstream_idle_timeout,
	};
	snprintf(hp.conf.user, sizeof(hp.conf.user), "%s", cfg->http_user);
	hp.cfg = &hp.conf;
	if (http_parse_upstream(cfg->http_upstream, &hp.tls, &hp.host, &hp.port, &why) < 0)
		return -1;
	hp.sslmode = hp.tls ? cfg->http_tls_sslmode : SSLMODE_DISABLE;
	const char *ca = *cfg->http_tls_ca_file     ? cfg->http_tls_ca_file
			 : *cfg->server_tls_ca_file ? cfg->server_tls_ca_file
						    : NULL;
	hp.ca_file = ca ? xstrdup(ca) : NULL;
	snprintf(hp.host_header, sizeof(hp.host_header), strchr(hp.host, ':') ? "[%s]:%d" : "%s:%d",
		 hp.host, hp.port);
	snprintf(hp.upstream_name, sizeof(hp.upstream_name), "%s", hp.host_header);
	return 0;
}

/* The listeners: the sockets systemd passed (named "http"), else listen_addr/listen_port
 * and unix_socket. -1 after logging. */
static int start_listeners(const struct cfg *cfg, const int *fds, int nfds)
{
	hp.listeners = lset_new(hp.base, "http: ", accept_cb, NULL);
	if (nfds > 0) {
		/* socket activation (FileDescriptorName=http): listen_addr/port/unix_socket unused */
		for (int i = 0; i < nfds; i++) {
			if (!fd_is_loopback(fds[i]) && !cfg->allow_unauthenticated_remote) {
				log_error(
					"refusing the HTTP socket passed by systemd (fd %d): it is reachable "
					"from other hosts and hands out the injected credentials",
					fds[i]);
				return -1;
			}
			if (lset_adopt(hp.listeners, fds[i]) < 0)
				return -1;
		}
		log_info("http: serving %d socket%s passed by systemd, upstream %s", nfds,
			 nfds == 1 ? "" : "s", hp.upstream_name);
		return 0;
	}
	if (cfg->http_listen_port &&
	    lset_tcp(hp.listeners, cfg->http_listen_addr, cfg->http_listen_port) < 0)
		return -1;
	if (*cfg->http_unix_socket) {
		if (lset_unix(hp.listeners, cfg->http_unix_socket, 0777) < 0)
			return -1;
		log_info("http: listening on %s", cfg->http_unix_socket);
	}
	log_info("http: upstream %s", hp.upstream_name);
	return 0;
}

int http_proxy_start(struct event_base *base, struct evdns_base *dns, const struct cfg *cfg)
{
	char *err = NULL;
	struct timeval tv = { 0, TICK_USEC };
	const int *fds;
	int nfds = listeners_passed("http", &fds);

	if (cfg->http_listen_port == 0 && !*cfg->http_unix_socket && nfds == 0)
		return 0;
	if (nfds > 0 && !*cfg->http_upstream) {
		log_error(
			"socket activation passed an \"http\" socket, but [http] upstream is not set");
		return -1;
	}
	if (http_proxy_check(cfg, &err) < 0) {
		log_error("%s", err);
		free(err);
		return -1;
	}
	hc_init_parser();
	hu_init_parser();
	hp.base = base;
	hp.dns = dns;
	TAILQ_INIT(&hp.up_graveyard);
	TAILQ_INIT(&hp.hc_graveyard);
	if (copy_conf(cfg) < 0)
		return -1;
	hp.auth = cred_make(cfg, true, &err);
	if (!hp.auth) {
		log_error("[http] %s", err);
		free(err);
		return -1;
	}
	hp.tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	hp.reaper = event_new(base, -1, 0, reap_cb, NULL);
	if (!hp.tick || !hp.reaper || event_add(hp.tick, &tv) < 0)
		fatal("cannot create the HTTP side's timers");
	if (start_listeners(cfg, fds, nfds) < 0)
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
	lset_enable(hp.listeners, false);
	for (c = TAILQ_FIRST(&hp.clients); c; c = cn) {
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
	lset_free(hp.listeners);
	hp.listeners = NULL;
	while ((c = TAILQ_FIRST(&hp.clients))) {
		hc_set_state(c, HC_CLOSING);
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
	while ((u = TAILQ_FIRST(&hp.ups)))
		hu_close(u, "shutting down");
	reap_cb(-1, 0, NULL);
	hc_free_spares();
	event_free(hp.tick);
	event_free(hp.reaper);
	hp.tick = hp.reaper = NULL;
	free_secret(hp.auth);
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
	TAILQ_FOREACH (u, &hp.ups, entry) {
		if (u->state == HU_IDLE)
			st->upstream_idle++;
		else if (u->pinned)
			st->upstream_pinned++;
		else if (u->state == HU_BUSY)
			st->upstream_busy++;
	}
	TAILQ_FOREACH (c, &hp.waiting, wait)
		st->waiting++;
	st->upstream = hp.upstream_name;
	st->last_error = hp.last_error;
}
