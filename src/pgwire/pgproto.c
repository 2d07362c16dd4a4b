/* PostgreSQL v3 message parsing and building. Startup packets are checked strictly
 * (length bounds, NUL-terminated pairs, a user), since they come from untrusted peers
 * before any authentication. */
#include "pgproto.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

uint32_t pg_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int pg_parse_startup(const uint8_t *pkt, size_t len, struct pg_startup *out, const char **err)
{
	uint32_t plen;
	const char *p, *end;

	memset(out, 0, sizeof(*out));
	if (len < 8) {
		*err = "startup packet too short";
		return -1;
	}
	plen = pg_get_u32(pkt);
	if (plen != len || plen > PG_STARTUP_MAX) {
		*err = "invalid startup packet length";
		return -1;
	}
	out->version = pg_get_u32(pkt + 4);
	switch (out->version) {
	case PG_SSL_REQUEST:
	case PG_GSSENC_REQUEST:
		if (len != 8) {
			*err = "invalid SSLRequest/GSSENCRequest length";
			return -1;
		}
		out->kind = out->version == PG_SSL_REQUEST ? PG_STARTUP_SSL : PG_STARTUP_GSSENC;
		return 0;
	case PG_CANCEL_REQUEST:
		if (len != 16) {
			*err = "invalid CancelRequest length";
			return -1;
		}
		out->kind = PG_STARTUP_CANCEL;
		out->cancel_pid = pg_get_u32(pkt + 8);
		out->cancel_key = pg_get_u32(pkt + 12);
		return 0;
	}
	if (out->version >> 16 != 3) {
		*err = "unsupported frontend protocol (only 3.x is supported)";
		return -1;
	}
	out->kind = PG_STARTUP_NORMAL;
	p = (const char *)pkt + 8;
	end = (const char *)pkt + len;
	/* pairs of NUL-terminated strings, ended by an empty name */
	if (p == end || end[-1] != '\0') {
		*err = "startup packet is not NUL-terminated";
		return -1;
	}
	out->params = p;
	while (p < end && *p) {
		const char *key = p, *val;
		p += strlen(p) + 1;
		if (p >= end) {
			*err = "startup parameter without a value";
			return -1;
		}
		val = p;
		p += strlen(p) + 1;
		if (p > end) {
			*err = "startup packet is truncated";
			return -1;
		}
		if (strcmp(key, "user") == 0)
			out->user = val;
		else if (strcmp(key, "database") == 0)
			out->database = val;
	}
	if (p != end - 1) {
		*err = "startup packet has data after its terminator";
		return -1;
	}
	out->params_len = (size_t)(p - out->params);
	if (!out->user || !*out->user) {
		*err = "no user name in the startup packet";
		return -1;
	}
	if (!out->database || !*out->database)
		out->database = out->user;
	return 0;
}

const char *pg_startup_param(const struct pg_startup *st, const char *key)
{
	const char *p = st->params, *end;

	if (!p)
		return NULL;
	end = p + st->params_len;
	while (p < end) {
		const char *k = p;
		p += strlen(p) + 1;
		if (strcmp(k, key) == 0)
			return p;
		p += strlen(p) + 1;
	}
	return NULL;
}

int pg_parse_error(const uint8_t *body, size_t len, struct pg_error *out)
{
	const char *p = (const char *)body, *end = p + len;

	out->severity = out->code = out->message = out->detail = out->hint = "";
	if (len == 0 || body[len - 1] != '\0')
		return -1;
	while (p < end && *p) {
		char field = *p++;
		const char *val = p;
		p += strlen(p) + 1;
		if (p > end)
			return -1;
		switch (field) {
		case 'V':
			out->severity = val;
			break;
		case 'S':
			if (!*out->severity)
				out->severity = val;
			break;
		case 'C':
			out->code = val;
			break;
		case 'M':
			out->message = val;
			break;
		case 'D':
			out->detail = val;
			break;
		case 'H':
			out->hint = val;
			break;
		}
	}
	return 0;
}

int pg_parse_auth(const uint8_t *body, size_t len, uint32_t *code, const uint8_t **data,
		  size_t *dlen)
{
	if (len < 4)
		return -1;
	*code = pg_get_u32(body);
	*data = body + 4;
	*dlen = len - 4;
	return 0;
}

int pg_parse_param_status(const uint8_t *body, size_t len, const char **name, const char **value)
{
	const char *p = (const char *)body;
	size_t n1;

	if (len < 2 || body[len - 1] != '\0')
		return -1;
	n1 = strnlen(p, len);
	if (n1 + 1 >= len)
		return -1;
	*name = p;
	*value = p + n1 + 1;
	if (n1 + 1 + strlen(*value) + 1 != len)
		return -1;
	return 0;
}

static void put_u32(struct evbuffer *out, uint32_t v)
{
	uint32_t n = htonl(v);
	evbuffer_add(out, &n, 4);
}

static void put_hdr(struct evbuffer *out, char type, size_t body_len)
{
	evbuffer_add(out, &type, 1);
	put_u32(out, (uint32_t)(body_len + 4));
}

void pg_put_msg(struct evbuffer *out, char type, const void *body, size_t len)
{
	put_hdr(out, type, len);
	if (len)
		evbuffer_add(out, body, len);
}

void pg_put_error(struct evbuffer *out, const char *severity, const char *sqlstate, const char *fmt,
		  ...)
{
	char msg[1024], body[1200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = snprintf(body, sizeof(body), "S%s%cV%s%cC%s%cM%s%c", severity, 0, severity, 0, sqlstate,
		     0, msg, 0);
	if (n < 0 || (size_t)n >= sizeof(body) - 1) {
		n = (int)sizeof(body) - 2;
		body[n - 1] = '\0'; /* the cut field stays NUL-terminated */
	}
	body[n++] = '\0';
	pg_put_msg(out, 'E', body, (size_t)n);
}

void pg_put_auth(struct evbuffer *out, uint32_t code, const void *data, size_t len)
{
	put_hdr(out, 'R', 4 + len);
	put_u32(out, code);
	if (len)
		evbuffer_add(out, data, len);
}

void pg_put_param_status(struct evbuffer *out, const char *name, const char *value)
{
	size_t n1 = strlen(name) + 1, n2 = strlen(value) + 1;

	put_hdr(out, 'S', n1 + n2);
	evbuffer_add(out, name, n1);
	evbuffer_add(out, value, n2);
}

void pg_put_backend_key(struct evbuffer *out, uint32_t pid, uint32_t key)
{
	put_hdr(out, 'K', 8);
	put_u32(out, pid);
	put_u32(out, key);
}

bool pg_put_negotiate(struct evbuffer *out, const struct pg_startup *st)
{
	const char *p = st->params, *end = p ? p + st->params_len : NULL;
	size_t len = 8;
	uint32_t n = 0;

	for (const char *k = p; k && k < end; k += strlen(k) + 1, k += strlen(k) + 1)
		if (strncmp(k, "_pq_.", 5) == 0) {
			len += strlen(k) + 1;
			n++;
		}
	if ((st->version & 0xffff) == 0 && n == 0)
		return false;
	put_hdr(out, 'v', len);
	put_u32(out, PG_PROTO_V3);
	put_u32(out, n);
	for (const char *k = p; k && k < end; k += strlen(k) + 1, k += strlen(k) + 1)
		if (strncmp(k, "_pq_.", 5) == 0)
			evbuffer_add(out, k, strlen(k) + 1);
	return true;
}

void pg_put_ready(struct evbuffer *out, char status)
{
	pg_put_msg(out, 'Z', &status, 1);
}

void pg_put_query(struct evbuffer *out, const char *sql)
{
	pg_put_msg(out, 'Q', sql, strlen(sql) + 1);
}

void pg_put_terminate(struct evbuffer *out)
{
	pg_put_msg(out, 'X', NULL, 0);
}

void pg_put_startup(struct evbuffer *out, const char *const *params)
{
	size_t len = 8 + 1;

	for (size_t i = 0; params[i]; i++)
		len += strlen(params[i]) + 1;
	put_u32(out, (uint32_t)len);
	put_u32(out, PG_PROTO_V3);
	for (size_t i = 0; params[i]; i++)
		evbuffer_add(out, params[i], strlen(params[i]) + 1);
	evbuffer_add(out, "", 1);
}

static void set_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void pg_ssl_request_bytes(uint8_t out[8])
{
	set_u32(out, 8);
	set_u32(out + 4, PG_SSL_REQUEST);
}

void pg_cancel_bytes(uint8_t out[16], uint32_t pid, uint32_t key)
{
	set_u32(out, 16);
	set_u32(out + 4, PG_CANCEL_REQUEST);
	set_u32(out + 8, pid);
	set_u32(out + 12, key);
}

void pg_put_ssl_request(struct evbuffer *out)
{
	uint8_t b[8];

	pg_ssl_request_bytes(b);
	evbuffer_add(out, b, sizeof(b));
}

void pg_put_cancel(struct evbuffer *out, uint32_t pid, uint32_t key)
{
	uint8_t b[16];

	pg_cancel_bytes(b, pid, key);
	evbuffer_add(out, b, sizeof(b));
}

void pg_put_password(struct evbuffer *out, const char *password)
{
	pg_put_msg(out, 'p', password, strlen(password) + 1);
}

void pg_put_sasl_initial(struct evbuffer *out, const char *mech, const void *data, size_t len)
{
	size_t mlen = strlen(mech) + 1;

	put_hdr(out, 'p', mlen + 4 + len);
	evbuffer_add(out, mech, mlen);
	put_u32(out, (uint32_t)len);
	evbuffer_add(out, data, len);
}

void pg_put_sasl_response(struct evbuffer *out, const void *data, size_t len)
{
	pg_put_msg(out, 'p', data, len);
}

bool pg_next_msg(const uint8_t **p, size_t *len, uint8_t *type, const uint8_t **body, size_t *blen,
		 size_t *mlen)
{
	if (*len < PG_HDR_LEN)
		return false;
	uint32_t n = pg_get_u32(*p + 1);
	if (n < 4 || (size_t)n + 1 > *len)
		return false;
	*type = (*p)[0];
	*body = *p + PG_HDR_LEN;
	*blen = n - 4;
	*mlen = (size_t)n + 1;
	*p += *mlen;
	*len -= *mlen;
	return true;
}

const char *pg_find_param_status(const uint8_t *p, size_t len, const char *name)
{
	uint8_t type;
	const uint8_t *body;
	size_t blen, mlen;
	const char *n, *v;

	while (pg_next_msg(&p, &len, &type, &body, &blen, &mlen))
		if (type == 'S' && pg_parse_param_status(body, blen, &n, &v) == 0 &&
		    strcmp(n, name) == 0)
			return v;
	return NULL;
}
