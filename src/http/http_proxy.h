/* The HTTP side: plaintext HTTP/1.1 from local clients ([http] listen_addr/listen_port
 * and unix_socket) onto a keep-alive pool of verified TLS connections to CrateDB's HTTP
 * endpoint, with the credentials from the config injected. Bodies stream both ways. */
#ifndef CB_HTTP_PROXY_H
#define CB_HTTP_PROXY_H

#include <stdbool.h>
#include <stdint.h>

struct cfg;
struct event_base;
struct evdns_base;

/* For -t and start-up: the [http] settings make sense (upstream URL, credentials, not
 * reachable from other hosts unless allowed). 0, or -1 with *err (malloc'd). */
int http_proxy_check(const struct cfg *cfg, char **err);
/* Binds and serves when [http] listen_port or unix_socket is set; -1 after logging. */
int http_proxy_start(struct event_base *base, struct evdns_base *dns, const struct cfg *cfg)
	__attribute__((warn_unused_result));
void http_proxy_stop(void);
/* Stop accepting; connections finish their request. */
void http_proxy_stopping(void);
bool http_proxy_enabled(void);

/* What the admin console and /metrics show. */
struct http_stats {
	uint64_t requests, responses[6]; /* by status class: [1] 1xx ... [5] 5xx */
	uint64_t errors_upstream, retries, bytes_in, bytes_out, request_time_us;
	uint64_t tls_handshakes, tls_resumed; /* upstream TLS handshakes, and how many resumed */
	int clients, upstream_total, upstream_idle, upstream_busy, upstream_pinned, waiting;
	const char *upstream; /* host:port */
	const char *last_error;
};
void http_proxy_stats(struct http_stats *st);

#endif
