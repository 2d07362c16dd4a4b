/* HTTP message heads for the HTTP side: the header list a parse collects, the framing
 * checks that refuse request smuggling, the heads cratebouncer writes (the upstream
 * request with injected credentials, the client's response), CrateDB-shaped JSON errors,
 * and the recogniser of session-changing /_sql statements. Pure functions over bytes. */
#ifndef CB_HTTP_MSG_H
#define CB_HTTP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define HTTP_MAX_HEADERS 100

struct http_header {
	char *name, *value;
};

/* A request or response head as the parser delivered it. */
struct http_head {
	char *url;    /* requests */
	char *reason; /* responses */
	struct http_header h[HTTP_MAX_HEADERS];
	int n;
	size_t bytes;  /* header bytes seen, for the size limit */
	bool in_value; /* the parser is in a header value */
};

void http_head_clear(struct http_head *hd);
/* Parser callbacks append pieces (a field or value may come in several). -1: too many
 * headers, a NUL byte in the piece, or no memory. */
int http_head_field(struct http_head *hd, const char *at, size_t len);
int http_head_value(struct http_head *hd, const char *at, size_t len);
int http_head_append(char **s, const char *at, size_t len);
const char *http_head_get(const struct http_head *hd, const char *name);
int http_head_count(const struct http_head *hd, const char *name);

/* NULL when the request's framing is unambiguous, else why it is refused: both
 * Content-Length and Transfer-Encoding, Content-Length twice, a Transfer-Encoding other
 * than "chunked", a Transfer-Encoding look-alike (http_te_lookalike). */
const char *http_framing_error(const struct http_head *hd);
/* NULL, or why a request or response is refused: a header whose name only begins with
 * "Transfer-Encoding" ("Transfer-Encoding-X: y"). http-parser 2.9.4 takes it for
 * Transfer-Encoding: after "Transfer-Encoding: chunked" it no longer frames the body as
 * chunked, while the next hop, reading the head as written, does. */
const char *http_te_lookalike(const struct http_head *hd);
/* A request the proxy does not pass whatever its head (http-parser's method and upgrade
 * flag): CONNECT and protocol upgrades, whose bytes after the head http-parser leaves
 * unframed (a body there would reach the upstream as the next request). NULL: fine. */
const char *http_method_error(unsigned method, unsigned upgrade);
/* obs-fold: whether the n bytes of a head at b hold a line that starts with white space
 * (http-parser joins it to the header before). *lf carries "the byte before was LF" from
 * one piece of the head to the next: false at the start. */
bool http_head_folded(const char *b, size_t n, bool *lf);
/* Why a request's Host headers are refused (RFC 9112 3.2: one, and required from HTTP/1.1
 * on), or NULL. */
const char *http_host_error(const struct http_head *hd, int major, int minor);

/* The request as the upstream gets it: hop-by-hop headers (RFC 9110 7.6.1: Connection,
 * those it names but Content-Length and Transfer-Encoding, Keep-Alive, Proxy-Connection,
 * TE, Trailer, Upgrade) and the client's
 * Authorization, Proxy-Authorization and X-User removed, Host and Authorization set. */
void http_put_request(struct evbuffer *out, const char *method, const struct http_head *hd,
		      const char *host_header, const char *authorization);
/* The upstream's response head as the client gets it: hop-by-hop headers removed,
 * "Connection: close" when the client connection ends after it. */
void http_put_response(struct evbuffer *out, int major, int minor, int status,
		       const struct http_head *hd, bool close);
/* A complete response with a CrateDB-shaped body {"error":{"message":...,"code":...}}. */
void http_put_error(struct evbuffer *out, int status, int code, bool close, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
const char *http_reason(int status);

/* Does this /_sql request body (JSON, maybe only its start) run a statement that
 * changes the connection's session (SET, RESET, DECLARE, DISCARD...)? 1 yes, 0 no, -1
 * not known yet (more of the body needed). */
int http_sql_changes_session(const char *body, size_t len, bool complete);

/* "https://host:port" (port 4200 by default); host is malloc'd. -1 with *err. */
int http_parse_upstream(const char *url, bool *tls, char **host, int *port, const char **err);

#endif
