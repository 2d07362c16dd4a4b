/* Statement shapes and their running times: a direct-mapped table of 4,096 slots (64 kB);
 * a shape that collides with another takes the slot over and starts unknown, which only
 * means its queries are not pipelined until it has been seen again. */
#include "pipeline.h"

#include <ctype.h>
#include <string.h>

#include "pgproto.h"
#include "prepared.h"
#include "sessparam.h"

#define SLOTS 4096
#define MIN_SEEN 3

struct slot {
	uint64_t shape;
	uint32_t avg_us; /* moving average, weight 1/8 for the newest */
	uint32_t seen;
};

static struct slot table[SLOTS];

static uint64_t mix(uint64_t h, unsigned char c)
{
	return (h ^ c) * 0x100000001b3ULL;
}

static bool ident_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

uint64_t pl_shape(const char *sql, size_t len, uint64_t salt)
{
	const unsigned char *p = (const unsigned char *)sql, *end = p + len;
	uint64_t h = 0xcbf29ce484222325ULL ^ salt;
	bool space = false;

	while (p < end) {
		unsigned char c = *p;
		if (isspace(c)) {
			space = true;
			p++;
			continue;
		}
		if (c == '-' && p + 1 < end && p[1] == '-') {
			while (p < end && *p != '\n' && *p != '\r')
				p++;
			space = true;
			continue;
		}
		if (c == '/' && p + 1 < end && p[1] == '*') {
			p += 2;
			while (p + 1 < end && !(p[0] == '*' && p[1] == '/'))
				p++;
			p = p + 1 < end ? p + 2 : end;
			space = true;
			continue;
		}
		if (space) {
			h = mix(h, ' ');
			space = false;
		}
		if (c == '\'') {
			/* a string literal ('' inside doubles the quote) */
			p++;
			while (p < end) {
				if (*p == '\'' && !(p + 1 < end && p[1] == '\''))
					break;
				p += *p == '\'' ? 2 : 1;
			}
			p = p < end ? p + 1 : end;
			h = mix(h, '?');
		} else if (isdigit(c) || (c == '.' && p + 1 < end && isdigit(p[1]))) {
			/* a number: digits, a point, an exponent */
			while (p < end &&
			       (isalnum(*p) || *p == '.' ||
				((*p == '+' || *p == '-') && (p[-1] == 'e' || p[-1] == 'E'))))
				p++;
			h = mix(h, '?');
		} else if (c == '"') {
			const unsigned char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
			const unsigned char *e = q ? q + 1 : end;
			for (; p < e; p++)
				h = mix(h, *p);
		} else if (ident_char(c)) {
			for (; p < end && ident_char(*p); p++)
				h = mix(h, (unsigned char)tolower(*p));
		} else {
			h = mix(h, c);
			p++;
		}
	}
	return h ? h : 1;
}

bool pl_fast(uint64_t shape, uint64_t limit_us)
{
	const struct slot *s = &table[shape % SLOTS];

	return s->shape == shape && s->seen >= MIN_SEEN && s->avg_us <= limit_us;
}

void pl_note(uint64_t shape, uint64_t usec)
{
	struct slot *s = &table[shape % SLOTS];
	uint32_t us = usec > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)usec;

	if (s->shape != shape) {
		s->shape = shape;
		s->avg_us = us;
		s->seen = 1;
		return;
	}
	/* a slow run counts at once: the average never hides it for long */
	s->avg_us = us > s->avg_us ? (s->avg_us + us) / 2 : s->avg_us - (s->avg_us - us) / 8;
	if (s->seen < MIN_SEEN)
		s->seen++;
}

void pl_reset(void)
{
	memset(table, 0, sizeof(table));
}

/* The text of a C string field at p within end, or NULL when it is not terminated. */
static const char *field(const uint8_t *p, const uint8_t *end, size_t *len)
{
	const uint8_t *z = memchr(p, 0, (size_t)(end - p));

	if (!z)
		return NULL;
	*len = (size_t)(z - p);
	return (const char *)p;
}

/* An extended-protocol group that runs as one implicit transaction: Parse, Bind, Describe
 * and Execute messages ending with its only Sync, every statement it binds autocommit. */
static uint64_t extended_shape(const uint8_t *p, size_t len, const struct ps_map *names,
			       uint64_t salt)
{
	const char *pname = NULL;
	uint64_t shape = 0;
	size_t n;
	bool executed = false;

	while (len >= PG_HDR_LEN) {
		uint32_t mlen = pg_get_u32(p + 1);
		if (mlen < 4 || (size_t)mlen + 1 > len)
			return 0;
		const uint8_t *body = p + PG_HDR_LEN, *end = p + 1 + mlen;
		const char *name, *text;
		switch (p[0]) {
		case 'P': {
			size_t tl;
			if (!(name = field(body, end, &n)) ||
			    !(text = field(body + n + 1, end, &tl)) ||
			    !sp_autocommit_statement(text, tl))
				return 0;
			pname = name;
			/* every statement of the group makes its shape */
			shape = shape * 0x9e3779b97f4a7c15ULL + pl_shape(text, tl, salt);
			break;
		}
		case 'B': {
			const char *portal = field(body, end, &n), *stmt;
			size_t sl;
			if (!portal || !(stmt = field(body + n + 1, end, &sl)))
				return 0;
			if (!pname || strcmp(stmt, pname) != 0) {
				/* a statement prepared before: its text from the client's names */
				size_t bl;
				struct ps_stmt *st = sl ? ps_map_get(names, stmt) : NULL;
				const uint8_t *b = st ? ps_body(st, &bl) : NULL;
				if (!b || !(text = field(b, b + bl, &n)) ||
				    !sp_autocommit_statement(text, n))
					return 0;
				shape = shape * 0x9e3779b97f4a7c15ULL + pl_shape(text, n, salt);
			}
			break;
		}
		case 'D':
			/* as the relay checks it: a kind byte and a name ending the message */
			if (mlen - 4 < 2 || memchr(body + 1, 0, mlen - 5) != end - 1)
				return 0;
			break;
		case 'E':
			if (!field(body, end, &n))
				return 0;
			executed = true;
			break;
		case 'S':
			if ((size_t)mlen + 1 != len || !executed || !shape)
				return 0;
			return shape;
		default:
			return 0; /* Close, Flush, ...: not pipelined */
		}
		p += mlen + 1;
		len -= mlen + 1;
	}
	return 0;
}

uint64_t pl_input_shape(const uint8_t *msg, size_t len, const struct ps_map *names, bool extended,
			uint64_t salt)
{
	if (len < PG_HDR_LEN + 1 || len > PIPE_QUERY_MAX)
		return 0;
	if (msg[0] != 'Q')
		return extended ? extended_shape(msg, len, names, salt) : 0;
	if ((size_t)pg_get_u32(msg + 1) + 1 != len || msg[len - 1] != 0 ||
	    !sp_autocommit_statement((const char *)msg + PG_HDR_LEN, len - PG_HDR_LEN - 1))
		return 0;
	return pl_shape((const char *)msg + PG_HDR_LEN, len - PG_HDR_LEN - 1, salt);
}
