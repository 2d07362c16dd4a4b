/* The admin HTTP port ([admin] listen_addr, listen_port): Prometheus metrics at /metrics,
 * the same figures as JSON at /stats (the last two minutes of totals at /history), /health
 * and /ready probes, and a live dashboard at /.
 * Loopback peers are always served; other peers need the bearer token of access_token_file. */
#ifndef CB_ADMIN_HTTP_H
#define CB_ADMIN_HTTP_H

struct cfg;
struct event_base;

/* Binds the port; 0 when listen_port is 0 (off), -1 after logging why it cannot serve. */
int admin_http_start(struct event_base *base, const struct cfg *cfg)
	__attribute__((warn_unused_result));
/* For -t: -1 with *err (malloc'd) when admin_http_start would refuse this config. */
int admin_http_check(const struct cfg *cfg, char **err) __attribute__((warn_unused_result));
/* After SIGHUP: reads access_token_file again (the address needs a restart). */
void admin_http_reload(const struct cfg *cfg);
/* A graceful stop began: the client listeners are closed, so /ready answers 503. */
void admin_http_stopping(void);
void admin_http_stop(void);

#endif
