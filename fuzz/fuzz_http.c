/* HTTP heads and bodies as the HTTP side (src/http) reads them: http-parser with the project's head
 * collection (http_head_field/value/append), the framing checks (http_framing_error), the
 * heads written upstream and to the client (http_put_request, http_put_response) and the
 * /_sql session recogniser (http_sql_changes_session). The proxy's parser callbacks are
 * static and bound to its connections, so this harness has its own, doing what they do.
 * Input: byte 0 (bit 0: a response, else a request), byte 1 the seed of the piece sizes,
 * then the message. Checked:
 *  - the head collected from pieces is the head collected in one go;
 *  - a request that passes http_framing_error and has no folded line (refused, as the
 *    proxy does, by http_head_folded) frames its body as http-parser does (one
 *    Content-Length with its value, or chunked and no length);
 *  - a folded head (a request's is refused with 400, a response's with 502) is found
 *    folded whatever the pieces;
 *  - the head written upstream (a request) or to the client (a response) parses again,
 *    with the same framing (the proxy forwards the body bytes as they came: a dropped or
 *    added Content-Length or Transfer-Encoding would desynchronise the next hop), the
 *    same method, URL, status and version, no hop-by-hop header, Host and Authorization
 *    once and as injected, every other header kept in order with its value, nothing added;
 *  - a Content-Length body is as long as it says;
 *  - the recogniser's answer on a whole body is 0 or 1, and on any start of it (more to
 *    come) either -1 or that answer: it does not depend on how the body arrives; for a
 *    body {"stmt": "..."} it is 1 whenever CrateDB's lexer would see SET, RESET, DECLARE
 *    or DISCARD first (comments and escapes as CrateDB reads them). A gzip or
 *    deflate body (Content-Encoding) is inflated here first, as the proxy would (its
 *    inflation is static in http_client.c), and the same holds for the inflated text. */
#include "fuzz_common.h"

#include <ctype.h>
#include <http_parser.h>
#include <strings.h>
#include <zlib.h>

#include "http/http_msg.h"

#define MAX_HEAD 8192	/* as http_int.h */
#define MAX_URL 4096
#define MAX_BODY 65536	/* SQL_PEEK_MAX */

struct msg {
	struct http_head head;
	bool head_done, complete;
	uint8_t *body;
	size_t blen;
	bool body_cut;
	bool folded, lf;	/* obs-fold in the head (refused by the proxy), as it scans it */
};

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct msg *m = p->data;

	m->head.bytes += len;
	if (m->head.bytes > MAX_URL && !m->head.n)
		return -1;
	return http_head_append(&m->head.url, at, len);
}

static int on_status(http_parser *p, const char *at, size_t len)
{
	struct msg *m = p->data;

	m->head.bytes += len;
	return http_head_append(&m->head.reason, at, len);
}

static int on_field(http_parser *p, const char *at, size_t len)
{
	struct msg *m = p->data;

	return http_head_field(&m->head, at, len) < 0 || m->head.bytes > MAX_HEAD ? -1 : 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
	struct msg *m = p->data;

	return http_head_value(&m->head, at, len) < 0 || m->head.bytes > MAX_HEAD ? -1 : 0;
}

static int on_headers(http_parser *p)
{
	struct msg *m = p->data;

	m->head_done = true;
	http_parser_pause(p, 1);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct msg *m = p->data;

	if (m->blen + len > MAX_BODY) {
		m->body_cut = true;
		len = MAX_BODY - m->blen;
	}
	memcpy(m->body + m->blen, at, len);
	m->blen += len;
	return 0;
}

static int on_complete(http_parser *p)
{
	struct msg *m = p->data;

	m->complete = true;
	http_parser_pause(p, 1);
	return 0;
}

static http_parser_settings settings;

static void msg_init(struct msg *m, http_parser *p, enum http_parser_type type)
{
	memset(m, 0, sizeof(*m));
	m->body = malloc(MAX_BODY);
	CHECK(m->body != NULL);
	http_parser_init(p, type);
	p->data = m;
}

static void msg_clear(struct msg *m)
{
	http_head_clear(&m->head);
	free(m->body);
}

/* Feeds data in pieces (seed 0: at once) until the head is in; the bytes it took (the
 * head's final LF included, as the proxy drains it: the parser pauses on it, uncounted),
 * or 0 on an error or no head yet. */
static size_t parse_head(http_parser *p, struct msg *m, const uint8_t *data, size_t size,
			 uint32_t seed)
{
	size_t off = 0;

	while (off < size) {
		size_t n = seed ? 1 + fuzz_rand(&seed) % 97 : size - off;
		if (n > size - off)
			n = size - off;
		size_t k = http_parser_execute(p, &settings, (const char *)data + off, n);
		enum http_errno e = HTTP_PARSER_ERRNO(p);
		if (http_head_folded((const char *)data + off, k < n ? k : n, &m->lf))
			m->folded = true;
		if (e == HPE_PAUSED) {
			CHECK(m->head_done);
			/* http-parser (not strict) takes any byte after the final CR as the LF */
			CHECK(off + k < size);
			return off + k + 1;
		}
		if (e != HPE_OK)
			return 0;
		CHECK(k == n);
		off += n;
	}
	return 0;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_head(const struct http_head *a, const struct http_head *b)
{
	if (a->n != b->n || !same_str(a->url, b->url) || !same_str(a->reason, b->reason))
		return false;
	for (int i = 0; i < a->n; i++)
		if (!same_str(a->h[i].name, b->h[i].name) || !same_str(a->h[i].value, b->h[i].value))
			return false;
	return true;
}

static bool listed(const char *list, const char *name)
{
	size_t nl = strlen(name);

	for (const char *p = list; *p;) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		size_t n = strcspn(p, ", \t");
		if (n == nl && strncasecmp(p, name, n) == 0)
			return true;
		p += n;
	}
	return false;
}

/* RFC 9110 7.6.1 as http_msg.h describes it. */
static bool hop_by_hop(const struct http_head *hd, const char *name)
{
	static const char *const hop[] = { "Connection", "Keep-Alive", "Proxy-Connection", "TE",
					   "Trailer", "Upgrade", NULL };

	for (int i = 0; hop[i]; i++)
		if (strcasecmp(name, hop[i]) == 0)
			return true;
	/* the framing goes with the body, whatever Connection names */
	if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0)
		return false;
	for (int i = 0; i < hd->n; i++)
		if (hd->h[i].name && strcasecmp(hd->h[i].name, "Connection") == 0 && hd->h[i].value &&
		    listed(hd->h[i].value, name))
			return true;
	return false;
}

/* out's headers against in's: in order, nothing added but the injected ones; dropped only
 * what the proxy drops (hop-by-hop, and for requests Host and the credentials). */
static void check_forwarded(const struct http_head *in, const struct http_head *out,
			    bool request, bool close)
{
	int j = 0;

	for (int i = 0; i < in->n; i++) {
		const char *name = in->h[i].name;
		bool dropped = !name || hop_by_hop(in, name) ||
			       (request && (strcasecmp(name, "Host") == 0 ||
					    strcasecmp(name, "Authorization") == 0 ||
					    strcasecmp(name, "X-User") == 0 ||
					    strcasecmp(name, "Proxy-Authorization") == 0));
		if (dropped)
			continue;
		CHECK(j < out->n);
		CHECK(strcmp(out->h[j].name, name) == 0);
		CHECK(same_str(out->h[j].value ? out->h[j].value : "",
			       in->h[i].value ? in->h[i].value : ""));
		j++;
	}
	if (request) {
		CHECK(j + 2 == out->n);
		CHECK(strcmp(out->h[j].name, "Host") == 0 && strcmp(out->h[j].value, "crate:4200") == 0);
		CHECK(strcmp(out->h[j + 1].name, "Authorization") == 0 &&
		      strcmp(out->h[j + 1].value, "Basic Y3JhdGU6") == 0);
	} else {
		CHECK(j + close == out->n);
		if (close)
			CHECK(strcmp(out->h[j].name, "Connection") == 0 &&
			      strcmp(out->h[j].value, "close") == 0);
	}
}

/* ---- a second opinion on the recogniser: CrateDB's own reading of a body that is
 * exactly {"stmt": "<string>"}. Its lexer (an adaptation of Presto's) skips [ \t\r\n],
 * "--" comments to \r or \n, and "/" "*" comments to the first "*" "/" (not nested). */

/* A JSON string at b[*i] == '"', decoded into out (NUL-free: non-ASCII and \u0000 become
 * 0x80); false if it is not a valid JSON string. *i ends after the closing quote. */
static bool json_string(const uint8_t *b, size_t len, size_t *i, char *out, size_t *n)
{
	size_t k = *i + 1, m = 0;

	while (k < len && b[k] != '"') {
		unsigned c = b[k];
		if (c < 0x20)
			return false;
		if (c != '\\') {
			out[m++] = c < 0x80 ? (char)c : (char)0x80;
			k++;
			continue;
		}
		if (k + 1 >= len)
			return false;
		char e = (char)b[k + 1];
		static const char enc[] = "\"\\/bfnrt", dec[] = "\"\\/\b\f\n\r\t";
		const char *esc = strchr(enc, e);
		if (e && esc) {
			out[m++] = dec[esc - enc];
			k += 2;
			continue;
		}
		if (e != 'u' || k + 5 >= len)
			return false;
		unsigned v = 0;
		for (int d = 2; d <= 5; d++) {
			char h = (char)b[k + d];
			if (!isxdigit((unsigned char)h))
				return false;
			v = v * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : tolower(h) - 'a' + 10);
		}
		out[m++] = v && v < 0x80 ? (char)v : (char)0x80;
		k += 6;
	}
	if (k >= len)
		return false;
	out[m] = '\0';
	*n = m;
	*i = k + 1;
	return true;
}

static size_t skip_json_ws(const uint8_t *b, size_t len, size_t i)
{
	while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
		i++;
	return i;
}

/* 1: CrateDB runs a SET, RESET, DECLARE or DISCARD; 0: something else; -1: not such a
 * body, or SQL that does not lex (an open comment): no opinion. */
static int crate_opinion(const uint8_t *b, size_t len)
{
	static char key[MAX_BODY], sql[MAX_BODY];
	size_t i = skip_json_ws(b, len, 0), n;

	if (i >= len || b[i] != '{')
		return -1;
	i = skip_json_ws(b, len, i + 1);
	if (i >= len || b[i] != '"' || !json_string(b, len, &i, key, &n) || strcmp(key, "stmt") != 0)
		return -1;
	i = skip_json_ws(b, len, i);
	if (i >= len || b[i] != ':')
		return -1;
	i = skip_json_ws(b, len, i + 1);
	if (i >= len || b[i] != '"' || !json_string(b, len, &i, sql, &n))
		return -1;
	i = skip_json_ws(b, len, i);
	if (i >= len || b[i] != '}' || skip_json_ws(b, len, i + 1) != len)
		return -1;

	const char *p = sql;
	for (;;) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			p++;
		} else if (p[0] == '-' && p[1] == '-') {
			p += 2 + strcspn(p + 2, "\r\n");
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			if (!e)
				return -1;
			p = e + 2;
		} else {
			break;
		}
	}
	size_t w = 0;
	while (isalpha((unsigned char)p[w]))
		w++;
	/* a keyword: what follows cannot continue an identifier */
	char after = p[w];
	if (!(after == '\0' || after == ' ' || after == '\t' || after == '\r' || after == '\n' ||
	      (after == '-' && p[w + 1] == '-') || (after == '/' && p[w + 1] == '*')))
		return 0;
	static const char *const changing[] = { "SET", "RESET", "DECLARE", "DISCARD", NULL };
	for (int k = 0; changing[k]; k++)
		if (strlen(changing[k]) == w && strncasecmp(p, changing[k], w) == 0)
			return 1;
	return 0;
}

/* Invariance of the recogniser over how the body arrives. */
static void check_recogniser(const uint8_t *b, size_t len)
{
	int whole = http_sql_changes_session((const char *)b, len, true);

	CHECK(whole == 0 || whole == 1);
	/* never a session change CrateDB would run and the recogniser not see (the other
	 * way round only pins a connection that need not be) */
	if (crate_opinion(b, len) == 1 && whole == 0) {
		fprintf(stderr, "recogniser missed a session statement: %.*s\n", (int)len, (const char *)b);
		CHECK(!"a session-changing statement not recognised");
	}
	size_t step = len <= 128 ? 1 : len / 97 + 1;
	for (size_t n = 0; n <= len; n += step) {
		int r = http_sql_changes_session((const char *)b, n, false);
		CHECK(r == -1 || r == whole);
	}
	CHECK(http_sql_changes_session((const char *)b, len, false) == -1 ||
	      http_sql_changes_session((const char *)b, len, false) == whole);
}

/* The body as the recogniser would see it after the proxy's inflation. */
static void check_inflated(const uint8_t *b, size_t len)
{
	z_stream z;
	uint8_t *out = malloc(MAX_BODY);

	CHECK(out != NULL);
	memset(&z, 0, sizeof(z));
	CHECK(inflateInit2(&z, 32 + MAX_WBITS) == Z_OK);
	z.next_in = (unsigned char *)(uintptr_t)b;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = MAX_BODY;
	int rc = inflate(&z, Z_NO_FLUSH);
	size_t n = MAX_BODY - z.avail_out;
	inflateEnd(&z);
	if (rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR)
		check_recogniser(out, n);
	free(out);
}

static void check_request(const uint8_t *data, size_t size, uint32_t seed)
{
	http_parser p, q, r;
	struct msg m, whole, again;

	memset(&again, 0, sizeof(again));
	msg_init(&m, &p, HTTP_REQUEST);
	msg_init(&whole, &q, HTTP_REQUEST);
	size_t used = parse_head(&p, &m, data, size, seed);
	size_t used1 = parse_head(&q, &whole, data, size, 0);
	CHECK(used == used1);
	if (!used)
		goto out;
	CHECK(same_head(&m.head, &whole.head));
	CHECK(p.method == q.method && p.flags == q.flags && p.content_length == q.content_length);

	CHECK(m.folded == whole.folded);
	const char *why = http_framing_error(&m.head);
	if (why || m.folded || http_method_error(p.method, p.upgrade))
		goto out;
	/* the framing the proxy believes is the parser's */
	const char *cl = http_head_get(&m.head, "Content-Length");
	const char *te = http_head_get(&m.head, "Transfer-Encoding");
	CHECK(!(cl && te));
	CHECK(!!(p.flags & F_CHUNKED) == !!te);
	if (cl)
		CHECK(p.content_length == strtoull(cl, NULL, 10));
	else
		CHECK(p.content_length == 0 || p.content_length == ULLONG_MAX);

	/* what goes upstream */
	struct evbuffer *b = evbuffer_new();
	CHECK(b != NULL);
	const char *method = http_method_str((enum http_method)p.method);
	http_put_request(b, method, &m.head, "crate:4200", "Basic Y3JhdGU6");
	size_t n = evbuffer_get_length(b);
	const uint8_t *text = evbuffer_pullup(b, -1);
	msg_init(&again, &r, HTTP_REQUEST);
	size_t used2 = parse_head(&r, &again, text, n, 0);
	CHECK(used2 == n);
	CHECK(r.method == p.method);
	CHECK(same_str(again.head.url, m.head.url ? m.head.url : "/"));
	CHECK(http_framing_error(&again.head) == NULL);
	CHECK((r.flags & F_CHUNKED) == (p.flags & F_CHUNKED));
	CHECK(r.content_length == p.content_length);
	check_forwarded(&m.head, &again.head, true, false);
	evbuffer_free(b);

	/* the body, as forward_body feeds it after the head */
	if (!(p.flags & F_CHUNKED) && (p.content_length == 0 || p.content_length == ULLONG_MAX))
		goto out;
	http_parser_pause(&p, 0);
	(void)http_parser_execute(&p, &settings, "\n", 1);
	size_t off = used;
	while (off < size && !m.complete) {
		size_t k = 1 + fuzz_rand(&seed) % 97;
		if (k > size - off)
			k = size - off;
		size_t got = http_parser_execute(&p, &settings, (const char *)data + off, k);
		enum http_errno e = HTTP_PARSER_ERRNO(&p);
		if (e != HPE_OK && e != HPE_PAUSED)
			break;
		off += got;
		if (e != HPE_PAUSED)
			CHECK(got == k);
	}
	if (!m.complete || m.body_cut)
		goto out;
	if (cl)
		CHECK(m.blen == strtoull(cl, NULL, 10));
	const char *ce = http_head_get(&m.head, "Content-Encoding");
	if (ce && (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "deflate") == 0))
		check_inflated(m.body, m.blen);
	else
		check_recogniser(m.body, m.blen);
	msg_clear(&again);
	msg_clear(&whole);
	msg_clear(&m);
	return;
out:
	if (again.body)
		msg_clear(&again);
	msg_clear(&whole);
	msg_clear(&m);
}

static void check_response(const uint8_t *data, size_t size, uint32_t seed)
{
	http_parser p, q, r;
	struct msg m, whole, again;

	memset(&again, 0, sizeof(again));
	msg_init(&m, &p, HTTP_RESPONSE);
	msg_init(&whole, &q, HTTP_RESPONSE);
	size_t used = parse_head(&p, &m, data, size, seed);
	CHECK(used == parse_head(&q, &whole, data, size, 0));
	if (!used)
		goto out;
	/* a folded head or a Transfer-Encoding look-alike is refused by the proxy (502), as a
	 * request's is (400) */
	CHECK(m.folded == whole.folded);
	if (m.folded || http_te_lookalike(&m.head))
		goto out;
	CHECK(same_head(&m.head, &whole.head));
	CHECK(p.status_code == q.status_code && p.flags == q.flags &&
	      p.content_length == q.content_length);

	bool close = seed & 1;
	struct evbuffer *b = evbuffer_new();
	CHECK(b != NULL);
	http_put_response(b, p.http_major, p.http_minor, p.status_code, &m.head, close);
	size_t n = evbuffer_get_length(b);
	const uint8_t *text = evbuffer_pullup(b, -1);
	msg_init(&again, &r, HTTP_RESPONSE);
	CHECK(parse_head(&r, &again, text, n, 0) == n);
	CHECK(r.status_code == p.status_code && r.http_major == p.http_major &&
	      r.http_minor == p.http_minor);
	CHECK((r.flags & F_CHUNKED) == (p.flags & F_CHUNKED));
	CHECK(r.content_length == p.content_length);
	CHECK(same_str(again.head.reason, m.head.reason && *m.head.reason
						  ? m.head.reason : http_reason(p.status_code)));
	check_forwarded(&m.head, &again.head, false, close);
	evbuffer_free(b);
out:
	if (again.body)
		msg_clear(&again);
	msg_clear(&whole);
	msg_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_init();
	if (size < 2)
		return 0;
	if (!settings.on_url) {
		http_parser_settings_init(&settings);
		settings.on_url = on_url;
		settings.on_status = on_status;
		settings.on_header_field = on_field;
		settings.on_header_value = on_value;
		settings.on_headers_complete = on_headers;
		settings.on_body = on_body;
		settings.on_message_complete = on_complete;
	}
	uint32_t seed = data[1] * 2654435761u + 1;
	if (data[0] & 1)
		check_response(data + 2, size - 2, seed);
	else
		check_request(data + 2, size - 2, seed);
	/* the raw bytes as a /_sql body too */
	if (data[0] & 2)
		check_recogniser(data + 2, size - 2 < MAX_BODY ? size - 2 : MAX_BODY);
	return 0;
}
