/* HTTP heads, framing checks, JSON errors and the /_sql session recogniser. */
#include "http_msg.h"

#include <ctype.h>
#include <http_parser.h>
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void http_head_clear(struct http_head *hd)
{
	for (int i = 0; i < hd->n; i++) {
		free(hd->h[i].name);
		free(hd->h[i].value);
	}
	free(hd->url);
	free(hd->reason);
	memset(hd, 0, sizeof(*hd));
}

int http_head_append(char **s, const char *at, size_t len)
{
	size_t old = *s ? strlen(*s) : 0;
	char *n;

	/* a NUL (http-parser lets one through in a reason phrase) would cut the string where
	 * this piece ends, and the next piece would be appended there: refused */
	if (memchr(at, '\0', len))
		return -1;
	n = realloc(*s, old + len + 1);
	if (!n)
		return -1;
	memcpy(n + old, at, len);
	n[old + len] = '\0';
	*s = n;
	return 0;
}

int http_head_field(struct http_head *hd, const char *at, size_t len)
{
	hd->bytes += len;
	if (hd->n > 0 && !hd->in_value)
		return http_head_append(&hd->h[hd->n - 1].name, at, len);
	if (hd->n == HTTP_MAX_HEADERS)
		return -1;
	hd->in_value = false;
	hd->h[hd->n].name = NULL;
	hd->h[hd->n].value = NULL;
	hd->n++;
	return http_head_append(&hd->h[hd->n - 1].name, at, len);
}

int http_head_value(struct http_head *hd, const char *at, size_t len)
{
	hd->bytes += len;
	if (hd->n == 0)
		return -1;
	hd->in_value = true;
	return http_head_append(&hd->h[hd->n - 1].value, at, len);
}

const char *http_head_get(const struct http_head *hd, const char *name)
{
	for (int i = 0; i < hd->n; i++)
		if (hd->h[i].name && strcasecmp(hd->h[i].name, name) == 0)
			return hd->h[i].value ? hd->h[i].value : "";
	return NULL;
}

int http_head_count(const struct http_head *hd, const char *name)
{
	int n = 0;

	for (int i = 0; i < hd->n; i++)
		if (hd->h[i].name && strcasecmp(hd->h[i].name, name) == 0)
			n++;
	return n;
}

/* White space around a framing value as http-parser skips it: a tab after "chunked" makes
 * it another coding there (no chunked body), so it is not trimmed here either. */
static const char *trim(const char *s, size_t *len)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && s[n - 1] == ' ')
		n--;
	*len = n;
	return s;
}

bool http_head_folded(const char *b, size_t n, bool *lf)
{
	bool folded = false;

	for (size_t i = 0; i < n; i++) {
		if (*lf && (b[i] == ' ' || b[i] == '\t'))
			folded = true;
		*lf = b[i] == '\n';
	}
	return folded;
}

const char *http_method_error(unsigned method, unsigned upgrade)
{
	if (method == HTTP_CONNECT)
		return "CONNECT is not proxied";
	if (upgrade)
		return "protocol upgrades (Upgrade) are not proxied";
	return NULL;
}

const char *http_te_lookalike(const struct http_head *hd)
{
	static const char te[] = "Transfer-Encoding";

	for (int i = 0; i < hd->n; i++) {
		const char *name = hd->h[i].name ? hd->h[i].name : "";
		if (strncasecmp(name, te, sizeof(te) - 1) == 0 && name[sizeof(te) - 1])
			return "a header whose name begins with Transfer-Encoding";
	}
	return NULL;
}

const char *http_framing_error(const struct http_head *hd)
{
	int cl = http_head_count(hd, "Content-Length"),
	    te = http_head_count(hd, "Transfer-Encoding");
	size_t n;

	if (cl && te)
		return "both Content-Length and Transfer-Encoding";
	if (cl > 1)
		return "more than one Content-Length";
	if (te > 1)
		return "more than one Transfer-Encoding";
	if (http_te_lookalike(hd))
		return http_te_lookalike(hd);
	if (te) {
		const char *v = trim(http_head_get(hd, "Transfer-Encoding"), &n);
		if (n != 7 || strncasecmp(v, "chunked", 7) != 0)
			return "a Transfer-Encoding other than chunked";
	}
	if (cl) {
		const char *v = trim(http_head_get(hd, "Content-Length"), &n);
		if (n == 0 || n > 18)
			return "an invalid Content-Length";
		for (size_t i = 0; i < n; i++)
			if (!isdigit((unsigned char)v[i]))
				return "an invalid Content-Length";
	}
	for (int i = 0; i < hd->n; i++) {
		const char *v = hd->h[i].value ? hd->h[i].value : "";
		const char *name = hd->h[i].name ? hd->h[i].name : "";
		if (strpbrk(v, "\r\n"))
			return "a header value spanning lines";
		for (const char *q = v; *q; q++)
			if (((unsigned char)*q < 0x20 && *q != '\t') || (unsigned char)*q == 0x7f)
				return "a header value with control characters";
		/* RFC 9112 5.1: no white space between a field name and its colon */
		if (!*name || strpbrk(name, " \t\r\n"))
			return "white space in a header name";
		for (const char *q = name; *q; q++)
			if ((unsigned char)*q < 0x21 || (unsigned char)*q > 0x7e)
				return "a header name with control or non-ASCII characters";
	}
	return NULL;
}

const char *http_host_error(const struct http_head *hd, int major, int minor)
{
	int n = http_head_count(hd, "Host");

	/* RFC 9112 3.2: a server must answer 400 to an HTTP/1.1 request without exactly one */
	if (n > 1)
		return "more than one Host header";
	if (n == 0 && (major > 1 || (major == 1 && minor >= 1)))
		return "an HTTP/1.1 request without a Host header";
	return NULL;
}

/* Is name listed in a Connection header's value? */
static bool named_by_connection(const struct http_head *hd, const char *name)
{
	for (int i = 0; i < hd->n; i++) {
		if (!hd->h[i].name || strcasecmp(hd->h[i].name, "Connection") != 0 ||
		    !hd->h[i].value)
			continue;
		const char *p = hd->h[i].value;
		size_t nl = strlen(name);
		while (*p) {
			while (*p == ' ' || *p == ',' || *p == '\t')
				p++;
			size_t n = strcspn(p, ", \t");
			if (n == nl && strncasecmp(p, name, n) == 0)
				return true;
			p += n;
		}
	}
	return false;
}

static bool hop_by_hop(const struct http_head *hd, const char *name, bool has_connection)
{
	static const char *const hop[] = { "Connection", "Keep-Alive", "Proxy-Connection",
					   "TE",         "Trailer",    "Upgrade",
					   NULL };

	for (int i = 0; hop[i]; i++)
		if (strcasecmp(name, hop[i]) == 0)
			return true;
	/* the body passes as it came: its framing goes with it, whatever Connection names
	 * (dropping it would let the next hop read the body as another message) */
	if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0)
		return false;
	return has_connection && named_by_connection(hd, name);
}

/* A head is put together here and added to the evbuffer in one piece (or a few). */
struct hbuf {
	struct evbuffer *out;
	size_t n;
	char b[4096];
};

static void hb_put(struct hbuf *h, const char *s, size_t len)
{
	if (h->n + len > sizeof(h->b)) {
		evbuffer_add(h->out, h->b, h->n);
		h->n = 0;
		if (len > sizeof(h->b)) {
			evbuffer_add(h->out, s, len);
			return;
		}
	}
	memcpy(h->b + h->n, s, len);
	h->n += len;
}

static void hb_str(struct hbuf *h, const char *s)
{
	hb_put(h, s, strlen(s));
}

static void hb_header(struct hbuf *h, const char *name, const char *value)
{
	hb_str(h, name);
	hb_put(h, ": ", 2);
	hb_str(h, value ? value : "");
	hb_put(h, "\r\n", 2);
}

static void hb_end(struct hbuf *h)
{
	hb_put(h, "\r\n", 2);
	evbuffer_add(h->out, h->b, h->n);
	h->n = 0;
}

void http_put_request(struct evbuffer *out, const char *method, const struct http_head *hd,
		      const char *host_header, const char *authorization)
{
	struct hbuf h;
	bool conn = http_head_get(hd, "Connection") != NULL;

	h.out = out;
	h.n = 0;
	hb_str(&h, method);
	hb_put(&h, " ", 1);
	hb_str(&h, hd->url ? hd->url : "/");
	hb_put(&h, " HTTP/1.1\r\n", 11);
	for (int i = 0; i < hd->n; i++) {
		const char *name = hd->h[i].name;
		if (!name || hop_by_hop(hd, name, conn) || strcasecmp(name, "Host") == 0 ||
		    strcasecmp(name, "Authorization") == 0 || strcasecmp(name, "X-User") == 0 ||
		    strcasecmp(name, "Proxy-Authorization") == 0)
			continue;
		hb_header(&h, name, hd->h[i].value);
	}
	hb_header(&h, "Host", host_header);
	if (authorization && *authorization)
		hb_header(&h, "Authorization", authorization);
	hb_end(&h);
}

const char *http_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 307:
		return "Temporary Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Unknown";
	}
}

void http_put_response(struct evbuffer *out, int major, int minor, int status,
		       const struct http_head *hd, bool close)
{
	struct hbuf h;
	bool conn = http_head_get(hd, "Connection") != NULL;
	char line[32];

	h.out = out;
	h.n = 0;
	hb_put(&h, line,
	       (size_t)snprintf(line, sizeof(line), "HTTP/%d.%d %d ", major, minor, status));
	hb_str(&h, hd->reason && *hd->reason ? hd->reason : http_reason(status));
	hb_put(&h, "\r\n", 2);
	for (int i = 0; i < hd->n; i++) {
		const char *name = hd->h[i].name;
		if (!name || hop_by_hop(hd, name, conn))
			continue;
		hb_header(&h, name, hd->h[i].value);
	}
	if (close)
		hb_put(&h, "Connection: close\r\n", 19);
	hb_end(&h);
}

static void put_json_string(struct evbuffer *out, const char *s)
{
	evbuffer_add(out, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			evbuffer_add_printf(out, "\\%c", c);
		else if (c < 0x20)
			evbuffer_add_printf(out, "\\u%04x", c);
		else
			evbuffer_add(out, s, 1);
	}
	evbuffer_add(out, "\"", 1);
}

void http_put_error(struct evbuffer *out, int status, int code, bool close, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	struct evbuffer *body = evbuffer_new();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!body)
		return;
	evbuffer_add_printf(body, "{\"error\":{\"message\":");
	put_json_string(body, msg);
	evbuffer_add_printf(body, ",\"code\":%d}}", code);
	evbuffer_add_printf(out,
			    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			    "Content-Length: %zu\r\n%s\r\n",
			    status, http_reason(status), evbuffer_get_length(body),
			    close ? "Connection: close\r\n" : "");
	evbuffer_add_buffer(out, body);
	evbuffer_free(body);
}

/* JSON scanning for the "stmt" member: positions are offsets into body. -1: not there yet. */
static long skip_ws(const char *b, size_t len, size_t i)
{
	while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
		i++;
	return i < len ? (long)i : -1;
}

/* After a string starting at b[i] == '"': the index after its closing quote. */
static long skip_string(const char *b, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (b[i] == '\\')
			i++;
		else if (b[i] == '"')
			return (long)i + 1;
	}
	return -1;
}

static long skip_value(const char *b, size_t len, size_t i)
{
	int depth = 0;

	for (; i < len; i++) {
		char c = b[i];
		if (c == '"') {
			long e = skip_string(b, len, i);
			if (e < 0)
				return -1;
			i = (size_t)e - 1;
			if (depth == 0)
				return e;
		} else if (c == '[' || c == '{') {
			depth++;
		} else if (c == ']' || c == '}') {
			if (depth == 0)
				return (long)i;
			if (--depth == 0)
				return (long)i + 1;
		} else if ((c == ',') && depth == 0) {
			return (long)i;
		}
	}
	return -1;
}

/* The next character of the JSON string whose next byte is b[*i]: 1 with *c (escapes
 * decoded, \uXXXX beyond ASCII as a space), 0 at its closing quote, -1 when it goes on
 * beyond what is here. */
static int json_char(const char *b, size_t len, size_t *i, char *c)
{
	if (*i >= len)
		return -1;
	if (b[*i] == '"')
		return 0;
	if (b[*i] != '\\') {
		*c = b[(*i)++];
		return 1;
	}
	if (*i + 1 >= len)
		return -1;
	char e = b[*i + 1];
	if (e != 'u') {
		*c = e == 'n'   ? '\n'
		     : e == 't' ? '\t'
		     : e == 'r' ? '\r'
		     : e == 'b' ? '\b'
		     : e == 'f' ? '\f'
				: e;
		*i += 2;
		return 1;
	}
	/* \uXXXX: an ASCII letter counts as that letter (\u0053ET is SET) */
	if (*i + 5 >= len)
		return -1;
	unsigned v = 0;
	for (size_t k = *i + 2; k <= *i + 5; k++) {
		char h = b[k];
		v = v * 16 + (unsigned)(isdigit((unsigned char)h)    ? h - '0'
					: isxdigit((unsigned char)h) ? (tolower(h) - 'a' + 10)
								     : 0);
	}
	*c = v < 0x80 ? (char)v : ' ';
	*i += 6;
	return 1;
}

/* The statement's first word, from the JSON string at b[i] == '"'. Comments are skipped
 * as CrateDB's lexer does, on the decoded text (an escaped "*\/" ends a comment, "\r"
 * ends a "--" one): "--" to \r or \n, a block comment to the first star-slash after its
 * opening two characters, not nested. */
static int first_word(const char *b, size_t len, size_t i, char *w, size_t wmax)
{
	enum { CODE, LINE, BLOCK } st = CODE;
	bool star = false; /* in a block comment, the last character was '*' */
	size_t n = 0;
	char c, d;

	for (i++;;) {
		int r = json_char(b, len, &i, &c);
		if (r < 0)
			return -1; /* the string goes on beyond what is here */
		if (r == 0)
			break;
		if (st == LINE) {
			if (c == '\n' || c == '\r')
				st = CODE;
			continue;
		}
		if (st == BLOCK) {
			if (star && c == '/')
				st = CODE;
			star = c == '*';
			continue;
		}
		if (n == 0 && (c == '-' || c == '/')) {
			size_t j = i;
			int rn = json_char(b, len, &j, &d);
			if (rn < 0)
				return -1;
			if (rn == 1 && d == (c == '-' ? '-' : '*')) {
				st = c == '-' ? LINE : BLOCK;
				star = false;
				i = j;
				continue;
			}
		}
		if (isalpha((unsigned char)c)) {
			if (n + 1 < wmax)
				w[n++] = (char)toupper((unsigned char)c);
			continue;
		}
		if (n > 0)
			break;
	}
	w[n] = '\0';
	return 0;
}

/* A JSON key's raw text (between the quotes): "stmt", escapes decoded. */
static bool key_is_stmt(const char *k, size_t n)
{
	char d[8];
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		char c = k[i];
		if (c == '\\' && i + 1 < n) {
			char e = k[++i];
			if (e == 'u' && i + 4 < n) {
				unsigned v = (unsigned)strtoul(
					(char[5]){ k[i + 1], k[i + 2], k[i + 3], k[i + 4], 0 },
					NULL, 16);
				i += 4;
				c = v < 0x80 ? (char)v : '?';
			} else {
				c = e;
			}
		}
		if (m == sizeof(d) - 1)
			return false;
		d[m++] = c;
	}
	d[m] = '\0';
	return strcmp(d, "stmt") == 0;
}

int http_sql_changes_session(const char *b, size_t len, bool complete)
{
	static const char *const changing[] = { "SET", "RESET", "DECLARE", "DISCARD", NULL };
	long i = skip_ws(b, len, 0);

	if (i < 0)
		return complete ? 0 : -1;
	if (b[i] != '{')
		return 0;
	i++;
	for (;;) {
		i = skip_ws(b, len, (size_t)i);
		if (i < 0)
			return complete ? 0 : -1;
		if (b[i] == '}')
			return 0;
		if (b[i] == ',') {
			i++;
			continue;
		}
		if (b[i] != '"')
			return 0;
		long ke = skip_string(b, len, (size_t)i);
		if (ke < 0)
			return complete ? 0 : -1;
		bool is_stmt = key_is_stmt(b + i + 1, (size_t)(ke - i - 2));
		i = skip_ws(b, len, (size_t)ke);
		if (i < 0 || b[i] != ':')
			return i < 0 && !complete ? -1 : 0;
		i = skip_ws(b, len, (size_t)i + 1);
		if (i < 0)
			return complete ? 0 : -1;
		if (is_stmt && b[i] == '"') {
			/* the first "stmt" member decides: CrateDB refuses a body with two
			 * (es.xcontent.strict_duplicate_detection, on by default) */
			char w[16];
			if (first_word(b, len, (size_t)i, w, sizeof(w)) < 0)
				return complete ? 0 : -1;
			for (int k = 0; changing[k]; k++)
				if (strcmp(w, changing[k]) == 0)
					return 1;
			return 0;
		}
		i = skip_value(b, len, (size_t)i);
		if (i < 0)
			return complete ? 0 : -1;
	}
}

int http_parse_upstream(const char *url, bool *tls, char **host, int *port, const char **err)
{
	const char *p;

	if (strncasecmp(url, "https://", 8) == 0) {
		*tls = true;
		p = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		*tls = false;
		p = url + 7;
	} else {
		*err = "must start with https:// (or http:// with tls_sslmode = disable)";
		return -1;
	}
	size_t n = strcspn(p, ":/");
	if (n == 0) {
		*err = "has no host";
		return -1;
	}
	*port = 4200;
	if (p[n] == ':') {
		char *end;
		long v = strtol(p + n + 1, &end, 10);
		if (end == p + n + 1 || v < 1 || v > 65535 || (*end && strcmp(end, "/") != 0)) {
			*err = "has an invalid port";
			return -1;
		}
		*port = (int)v;
	} else if (p[n] == '/' && p[n + 1]) {
		*err = "must not have a path";
		return -1;
	}
	*host = strndup(p, n);
	if (!*host) {
		*err = "out of memory";
		return -1;
	}
	return 0;
}
