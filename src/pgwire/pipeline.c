/* Statement shapes and their running times: a direct-mapped table of 4,096 slots (64 kB);
 * a shape that collides with another takes the slot over and starts unknown, which only
 * means its queries are not pipelined until it has been seen again. */
#include "pipeline.h"

#include <ctype.h>
#include <string.h>

#define SLOTS 4096
#define MIN_SEEN 3

struct slot {
	uint64_t shape;
	uint32_t avg_us;	/* moving average, weight 1/8 for the newest */
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
			while (p < end && (isalnum(*p) || *p == '.' ||
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
