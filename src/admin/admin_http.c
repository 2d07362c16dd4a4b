/* The admin HTTP port on libevent's evhttp: routing, the bearer-token check for peers that
 * are not loopback, /history and the probes; the Prometheus text format 0.0.4 (/metrics)
 * and the pools' JSON (/stats) are written by metrics.c. The dashboard,
 * src/admin/dashboard.html, is compiled in. */
#include "config.h"

#include "admin_http.h"
#include "metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/cfg.h"
#include "pgwire/client.h"
#include "core/listener.h"
#include "http/http_proxy.h"
#include "core/log.h"
#include "core/runtime.h"
#include "pgwire/pool.h"
#include "core/stats.h"
#include "core/util.h"

#define HTTP_TIMEOUT_SECS 30
#define HTTP_MAX_HEADERS (16 * 1024)
#define HTTP_MAX_BODY 4096
#define DIGEST_LEN 32
#define HISTORY_LEN 121 /* one sample a second: two minutes of differences */

/* Generated from src/admin/dashboard.html by the Makefile: C string literal lines. */
static const char dashboard_html[] =
#include "src/admin/dashboard.inc"
	;

/* Totals over every pool, taken once a second, so that the dashboard opens with charts of
 * the last two minutes instead of empty ones. */
struct sample {
	double t; /* uptime, seconds */
	uint64_t xact_count, query_count, xact_time_us, query_time_us;
	int cl_active, cl_waiting, sv_active, sv_idle;
};

static struct {
	struct evhttp *http;
	struct event *history_timer;
	struct sample history[HISTORY_LEN]; /* a ring; next is the oldest once full */
	size_t nhistory, history_next;
	bool token_set;                         /* access_token_file names a token */
	unsigned char token_digest[DIGEST_LEN]; /* SHA-256; the token itself is not kept */
	bool stopping;                          /* the client listeners are closed */
	uint64_t start_usec;                    /* monotonic */
	double start_time;                      /* seconds since the epoch */
} h;

struct route {
	const char *path;
	void (*handle)(struct evhttp_request *req);
};

static bool digest(const char *s, size_t n, unsigned char out[DIGEST_LEN]);
static char *token_read(const struct cfg *cfg, char **path, char **why);
static int token_load(const struct cfg *cfg, bool *set, unsigned char out[DIGEST_LEN]);
static bool exposed(const struct cfg *cfg);
static bool sockaddr_loopback(const struct sockaddr *sa);
static bool peer_loopback(struct evhttp_request *req);
static bool bearer_ok(struct evhttp_request *req);
static void reply(struct evhttp_request *req, int code, const char *type);
static void reply_json(struct evhttp_request *req, int code);
static void reply_error(struct evhttp_request *req, int code, const char *msg);
static double uptime(void);
static void handle_metrics(struct evhttp_request *req);
static void handle_stats(struct evhttp_request *req);
static void history_add(const struct pool_info *pi, void *arg);
static void history_cb(evutil_socket_t fd, short what, void *arg);
static void handle_history(struct evhttp_request *req);
static void handle_health(struct evhttp_request *req);
static void handle_ready(struct evhttp_request *req);
static void handle_dashboard(struct evhttp_request *req);
static void request_cb(struct evhttp_request *req, void *arg);
static int bind_all(const char *addr, int port);

static const struct route routes[] = {
	{ "/metrics", handle_metrics }, { "/stats", handle_stats }, { "/history", handle_history },
	{ "/health", handle_health },   { "/ready", handle_ready }, { "/", handle_dashboard },
};

static bool digest(const char *s, size_t n, unsigned char out[DIGEST_LEN])
{
	unsigned int len = DIGEST_LEN;

	return EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 && len == DIGEST_LEN;
}

/* The token of access_token_file (non-empty) with the file's resolved *path; NULL with *why
 * (malloc'd), *path then NULL or the path that failed. */
static char *token_read(const struct cfg *cfg, char **path, char **why)
{
	*path = cfg_expand_path(cfg->admin_access_token_file, cfg->dir, why);
	return *path ? read_secret_file(*path, why) : NULL;
}

/* Reads access_token_file into its digest and wipes the token. *set is false when the
 * option is empty; -1 after logging why the file cannot serve. */
static int token_load(const struct cfg *cfg, bool *set, unsigned char out[DIGEST_LEN])
{
	char *why = NULL, *path, *token;
	struct stat st;
	bool ok;

	*set = false;
	if (!*cfg->admin_access_token_file)
		return 0;
	token = token_read(cfg, &path, &why);
	if (!token) {
		log_error("[admin] access_token_file %s: %s",
			  path ? path : cfg->admin_access_token_file, why);
		free(why);
		free(path);
		return -1;
	}
	if (stat(path, &st) == 0 && (st.st_mode & S_IROTH))
		log_warn("[admin] access_token_file %s is readable by every user on this host; "
			 "chmod o-r it",
			 path);
	ok = digest(token, strlen(token), out);
	free_secret(token);
	free(path);
	if (!ok) {
		log_error("[admin] access_token_file: cannot hash the token");
		return -1;
	}
	*set = true;
	return 0;
}

/* The port would answer other hosts without a token to ask them for. */
static bool exposed(const struct cfg *cfg)
{
	return cfg->admin_listen_port != 0 && !*cfg->admin_access_token_file &&
	       listen_addrs_remote(cfg->admin_listen_addr, cfg->admin_listen_port);
}

static const char exposed_msg[] =
	"the admin HTTP port [admin] listen_addr is reachable from other hosts and [admin] "
	"access_token_file is not set: whoever connects would read the pools' statistics. Bind "
	"listen_addr to a loopback address or set access_token_file";

static bool sockaddr_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* An unknown peer address counts as remote. */
static bool peer_loopback(struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;

	return sa && sockaddr_loopback(sa);
}

/* "Authorization: Bearer <token>"; digests are compared, so the time taken tells nothing
 * about the token, its length included. */
static bool bearer_ok(struct evhttp_request *req)
{
	const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	unsigned char got[DIGEST_LEN];
	size_t n;

	if (!h.token_set || !a || strncasecmp(a, "Bearer ", 7) != 0)
		return false;
	for (a += 7; *a == ' ' || *a == '\t'; a++)
		;
	n = strlen(a);
	while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t'))
		n--;
	return digest(a, n, got) && CRYPTO_memcmp(got, h.token_digest, DIGEST_LEN) == 0;
}


static void reply(struct evhttp_request *req, int code, const char *type)
{
	static const struct {
		int code;
		const char *reason;
	} reasons[] = {
		{ 200, "OK" },
		{ 401, "Unauthorized" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" },
		{ 500, "Internal Server Error" },
		{ 503, "Service Unavailable" },
	};
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evhttp_request_get_output_buffer(req);
	const char *reason = "";

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].code == code)
			reason = reasons[i].reason;
	evhttp_add_header(oh, "Content-Type", type);
	/* libevent 2.1 sends a HEAD response's body, without Content-Length: say how long the
	 * GET answer is and send nothing */
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char len[24];
		snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
		evhttp_add_header(oh, "Content-Length", len);
		evbuffer_drain(body, evbuffer_get_length(body));
	}
	evhttp_send_reply(req, code, reason, NULL);
	log_debug("admin http: %s -> %d", evhttp_request_get_uri(req), code);
}

static void reply_json(struct evhttp_request *req, int code)
{
	reply(req, code, "application/json");
}

/* {"error": msg}; the body is built in the request's own output buffer. */
static void reply_error(struct evhttp_request *req, int code, const char *msg)
{
	struct evbuffer *o = evhttp_request_get_output_buffer(req);

	evbuffer_add(o, "{\"error\":", 9);
	put_json_str(o, msg);
	evbuffer_add(o, "}\n", 2);
	reply_json(req, code);
}


static double uptime(void)
{
	return (double)(now_usec() - h.start_usec) / 1e6;
}


static void handle_metrics(struct evhttp_request *req)
{
	struct snapshot s;

	if (!snapshot_take(&s)) {
		reply_error(req, 500, "out of memory");
		return;
	}
	metrics_write(evhttp_request_get_output_buffer(req), &s, h.start_time);
	free(s.pools);
	reply(req, 200, "text/plain; version=0.0.4; charset=utf-8");
}


/* "http": the HTTP side's listeners once it exists, each with its status classes. */
static void handle_stats(struct evhttp_request *req)
{
	struct evbuffer *o = evhttp_request_get_output_buffer(req);
	const struct cfg *cfg = rt_cfg();
	struct snapshot s;

	if (!snapshot_take(&s)) {
		reply_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(o, "{\"version\":", 11);
	put_json_str(o, PACKAGE_VERSION);
	evbuffer_add(o, ",\"uptime_seconds\":", 18);
	put_double(o, uptime());
	evbuffer_add(o, ",\"start_time_seconds\":", 22);
	put_double(o, h.start_time);
	evbuffer_add_printf(o, ",\"clients\":%d,\"servers\":%d,\"stats_period\":", clients_total(),
			    pools_server_count());
	put_double(o, cfg ? cfg->stats_period : 0);
	evbuffer_add_printf(o, ",\"stopping\":%s,\"pools\":[", h.stopping ? "true" : "false");
	for (size_t i = 0; i < s.n; i++) {
		if (i)
			evbuffer_add(o, ",", 1);
		json_pool(o, &s.pools[i]);
	}
	evbuffer_add(o, "],\"http\":[", 10);
	if (http_proxy_enabled()) {
		struct http_stats hs;
		http_proxy_stats(&hs);
		evbuffer_add(o, "{\"name\":", 8);
		put_json_str(o, hs.upstream);
		evbuffer_add_printf(
			o,
			",\"requests\":%llu,\"responses\":{\"1xx\":%llu,\"2xx\":%llu,"
			"\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu},\"clients\":%d,\"waiting\":%d,"
			"\"upstream\":{\"idle\":%d,\"busy\":%d,\"pinned\":%d},\"upstream_up\":%s,"
			"\"last_error\":",
			(unsigned long long)hs.requests, (unsigned long long)hs.responses[1],
			(unsigned long long)hs.responses[2], (unsigned long long)hs.responses[3],
			(unsigned long long)hs.responses[4], (unsigned long long)hs.responses[5],
			hs.clients, hs.waiting, hs.upstream_idle, hs.upstream_busy,
			hs.upstream_pinned, hs.last_error ? "false" : "true");
		if (hs.last_error)
			put_json_str(o, hs.last_error);
		else
			evbuffer_add(o, "null", 4);
		evbuffer_add(o, "}", 1);
	}
	evbuffer_add(o, "]}\n", 3);
	free(s.pools);
	reply_json(req, 200);
}

static void history_add(const struct pool_info *pi, void *arg)
{
	struct sample *s = arg;

	s->xact_count += pi->totals->xact_count;
	s->query_count += pi->totals->query_count;
	s->xact_time_us += pi->totals->xact_time_us;
	s->query_time_us += pi->totals->query_time_us;
	s->cl_active += pi->cl_active;
	s->cl_waiting += pi->cl_waiting;
	s->sv_active += pi->sv_active;
	s->sv_idle += pi->sv_idle;
}

static void history_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sample s = { .t = uptime() };

	pools_foreach(history_add, &s);
	h.history[h.history_next] = s;
	h.history_next = (h.history_next + 1) % HISTORY_LEN;
	if (h.nhistory < HISTORY_LEN)
		h.nhistory++;
}

/* The samples, oldest first, as rows under column names. */
static void handle_history(struct evhttp_request *req)
{
	struct evbuffer *o = evhttp_request_get_output_buffer(req);
	size_t first = (h.history_next + HISTORY_LEN - h.nhistory) % HISTORY_LEN;

	evbuffer_add_printf(o,
			    "{\"interval_seconds\":1,\"columns\":[\"t\",\"xact_count\","
			    "\"query_count\",\"xact_time_us\",\"query_time_us\",\"clients_active\","
			    "\"clients_waiting\",\"servers_active\",\"servers_idle\"],\"rows\":[");
	for (size_t i = 0; i < h.nhistory; i++) {
		const struct sample *s = &h.history[(first + i) % HISTORY_LEN];
		evbuffer_add_printf(
			o, "%s[%.3f,%llu,%llu,%llu,%llu,%d,%d,%d,%d]", i ? "," : "", s->t,
			(unsigned long long)s->xact_count, (unsigned long long)s->query_count,
			(unsigned long long)s->xact_time_us, (unsigned long long)s->query_time_us,
			s->cl_active, s->cl_waiting, s->sv_active, s->sv_idle);
	}
	evbuffer_add(o, "]}\n", 3);
	reply_json(req, 200);
}

static void handle_health(struct evhttp_request *req)
{
	evbuffer_add(evhttp_request_get_output_buffer(req), "{\"status\":\"ok\"}\n", 16);
	reply_json(req, 200);
}

/* Ready: the client listeners accept and some upstream works (no pool yet: none failed). */
static void handle_ready(struct evhttp_request *req)
{
	struct evbuffer *o = evhttp_request_get_output_buffer(req), *why;
	struct snapshot s;
	size_t up = 0;

	if (h.stopping) {
		evbuffer_add_printf(
			o, "{\"status\":\"not ready\",\"reason\":\"shutting down: the client "
			   "listeners are closed\"}\n");
		reply_json(req, 503);
		return;
	}
	if (!snapshot_take(&s)) {
		reply_error(req, 500, "out of memory");
		return;
	}
	for (size_t i = 0; i < s.n; i++)
		if (!s.pools[i].last_error)
			up++;
	if (s.n == 0 || up > 0) {
		free(s.pools);
		evbuffer_add(o, "{\"status\":\"ready\"}\n", 19);
		reply_json(req, 200);
		return;
	}
	why = evbuffer_new();
	if (!why) {
		free(s.pools);
		reply_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add_printf(why, "no upstream is reachable:");
	for (size_t i = 0; i < s.n; i++) {
		const struct pool_info *pi = &s.pools[i];
		evbuffer_add_printf(why, "%s %s/%s at %s:%d: %s", i ? ";" : "", pi->database,
				    pi->user, pi->host ? pi->host : "", pi->port, pi->last_error);
	}
	evbuffer_add(why, "", 1);
	evbuffer_add(o, "{\"status\":\"not ready\",\"reason\":", 31);
	put_json_str(o, (const char *)evbuffer_pullup(why, -1));
	evbuffer_add(o, "}\n", 2);
	evbuffer_free(why);
	free(s.pools);
	reply_json(req, 503);
}

static void handle_dashboard(struct evhttp_request *req)
{
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);

	/* the page is self-contained: nothing but this port may be reached from it */
	evhttp_add_header(
		oh, "Content-Security-Policy",
		"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
		"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
		"frame-ancestors 'none'");
	evbuffer_add_reference(evhttp_request_get_output_buffer(req), dashboard_html,
			       sizeof(dashboard_html) - 1, NULL, NULL);
	reply(req, 200, "text/html; charset=utf-8");
}

/* What evhttp lets through and RFC 9112 refuses: header names with white space or control
 * characters, control characters in values, no Host (or two) in HTTP/1.1. */
static const char *head_error(struct evhttp_request *req)
{
	const struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
	const struct evkeyval *kv;
	int hosts = 0;

	TAILQ_FOREACH (kv, ih, next) {
		for (const unsigned char *q = (const unsigned char *)kv->key; *q; q++)
			if (*q <= 0x20 || *q >= 0x7f)
				return "a header name with white space or control characters";
		for (const unsigned char *q = (const unsigned char *)kv->value; *q; q++)
			if ((*q < 0x20 && *q != '\t') || *q == 0x7f)
				return "a header value with control characters";
		if (strcasecmp(kv->key, "Host") == 0)
			hosts++;
	}
	if (hosts > 1)
		return "more than one Host header";
	if (hosts == 0 && (req->major > 1 || (req->major == 1 && req->minor >= 1)))
		return "an HTTP/1.1 request without a Host header";
	return NULL;
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	evhttp_add_header(oh, "Cache-Control", "no-store");
	evhttp_add_header(oh, "X-Content-Type-Options", "nosniff");
	const char *bad = head_error(req);
	if (bad) {
		char msg[128];
		snprintf(msg, sizeof(msg), "request refused: %s", bad);
		reply_error(req, 400, msg);
		return;
	}
	if (!peer_loopback(req) && !bearer_ok(req)) {
		if (!h.token_set) {
			reply_error(req, 403,
				    "requests from other hosts are refused: no "
				    "[admin] access_token_file is set");
			return;
		}
		evhttp_add_header(oh, "WWW-Authenticate", "Bearer realm=\"cratebouncer\"");
		reply_error(req, 401,
			    "a valid \"Authorization: Bearer <token>\" header is required");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(oh, "Allow", "GET, HEAD");
		reply_error(req, 405, "only GET and HEAD are served");
		return;
	}
	if (!path || !*path)
		path = "/";
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(path, routes[i].path) == 0) {
			routes[i].handle(req);
			return;
		}
	}
	reply_error(req, 404, "no such page; try /, /metrics, /stats, /history, /health or /ready");
}

/* Every address of listen_addr (localhost: ::1 and 127.0.0.1; "*": all), bound as the
 * other sides bind (listener.c) and served by evhttp, which would bind only the first. */
static int bind_all(const char *addr, int port)
{
	int fds[LISTEN_MAX];
	bool remote = false;
	int n = listen_bind_tcp("admin: ", addr, port, fds, LISTEN_MAX, &remote);

	for (int i = 0; i < n; i++)
		if (!evhttp_accept_socket_with_handle(h.http, fds[i])) {
			/* fds[i] itself may be closed by libevent already, depending on where it
			 * failed: only the ones it never saw are closed here (startup fails) */
			log_error("cannot serve the admin HTTP port on %s:%d", addr, port);
			while (++i < n)
				close(fds[i]);
			return -1;
		}
	return n < 0 ? -1 : 0;
}

int admin_http_check(const struct cfg *cfg, char **err)
{
	char *path, *why = NULL, *token;

	*err = NULL;
	if (cfg->admin_listen_port == 0)
		return 0;
	if (exposed(cfg)) {
		*err = xstrdup(exposed_msg);
		return -1;
	}
	if (!*cfg->admin_access_token_file)
		return 0;
	token = token_read(cfg, &path, &why);
	if (!token) {
		*err = xasprintf("[admin] access_token_file %s: %s",
				 path ? path : cfg->admin_access_token_file, why);
		free(why);
		free(path);
		return -1;
	}
	free_secret(token);
	free(path);
	return 0;
}

int admin_http_start(struct event_base *base, const struct cfg *cfg)
{
	const char *addr = cfg->admin_listen_addr;
	int port = cfg->admin_listen_port;
	struct timeval tv;

	const int *fds;
	int nfds = listeners_passed("admin", &fds);

	if (port == 0 && nfds == 0)
		return 0;
	h.start_usec = now_usec();
	gettimeofday(&tv, NULL);
	h.start_time = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
	if (token_load(cfg, &h.token_set, h.token_digest) < 0) {
		log_error("cannot start the admin HTTP port without its access token");
		return -1;
	}
	/* checked before binding, so that nothing answers other hosts even briefly */
	if (nfds == 0 && exposed(cfg)) {
		log_error("refusing to start on %s:%d: %s", addr, port, exposed_msg);
		return -1;
	}
	for (int i = 0; i < nfds; i++)
		if (!fd_is_loopback(fds[i]) && !h.token_set) {
			log_error("refusing to serve the admin socket passed by systemd: %s",
				  exposed_msg);
			return -1;
		}
	h.http = evhttp_new(base);
	if (!h.http) {
		log_error("cannot create the admin HTTP server");
		return -1;
	}
	/* every method reaches request_cb, which answers 405 (evhttp would say 501) */
	evhttp_set_allowed_methods(h.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						   EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						   EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(h.http, HTTP_TIMEOUT_SECS);
	evhttp_set_max_headers_size(h.http, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(h.http, HTTP_MAX_BODY);
	evhttp_set_gencb(h.http, request_cb, NULL);
	h.history_timer = event_new(base, -1, EV_PERSIST, history_cb, NULL);
	if (!h.history_timer || event_add(h.history_timer, &(struct timeval){ 1, 0 }) < 0) {
		log_error("cannot start the admin HTTP history timer");
		admin_http_stop();
		return -1;
	}
	history_cb(-1, 0, NULL);
	if (nfds > 0) {
		/* socket activation (FileDescriptorName=admin): listen_addr/listen_port unused */
		for (int i = 0; i < nfds; i++) {
			evutil_make_socket_nonblocking(fds[i]);
			if (!evhttp_accept_socket_with_handle(h.http, fds[i])) {
				log_error("cannot serve the admin socket passed by systemd (fd %d)",
					  fds[i]);
				admin_http_stop();
				return -1;
			}
		}
		log_info("admin HTTP port on %d socket%s passed by systemd", nfds,
			 nfds == 1 ? "" : "s");
		return 0;
	}
	if (bind_all(addr, port) < 0) {
		admin_http_stop();
		return -1;
	}
	log_info("admin HTTP port on %s:%d (/metrics, /stats, /health, /ready, dashboard at /)%s",
		 addr, port, h.token_set ? "; other hosts need the access token" : "");
	return 0;
}

void admin_http_reload(const struct cfg *cfg)
{
	unsigned char d[DIGEST_LEN];
	bool set;

	if (!h.http)
		return;
	if (token_load(cfg, &set, d) < 0) {
		log_error("[admin] the access token stays as it was");
		return;
	}
	if (h.token_set && !set)
		log_warn(
			"[admin] access_token_file is no longer set: requests from other hosts are "
			"refused");
	h.token_set = set;
	memcpy(h.token_digest, d, sizeof(d));
	OPENSSL_cleanse(d, sizeof(d));
}

void admin_http_stopping(void)
{
	h.stopping = true;
}

void admin_http_stop(void)
{
	if (h.history_timer)
		event_free(h.history_timer);
	h.history_timer = NULL;
	if (h.http)
		evhttp_free(h.http);
	h.http = NULL;
	h.token_set = false;
	OPENSSL_cleanse(h.token_digest, sizeof(h.token_digest));
}
