/* Tracked session parameters: the name table, packed value sets with fingerprints, the
 * SET/RESET text that reconciles a server with a client, and a recogniser for a
 * client's own SET of a parameter the upstream does not report. */
#include "sessparam.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* PostgreSQL's reported and commonly set parameters, then CrateDB's session settings
 * (SessionSettingRegistry) that PostgreSQL does not report: a client's SET of one of
 * those must not stay on a shared server either. */
static const char *const builtin[] = { "client_encoding",
				       "DateStyle",
				       "TimeZone",
				       "application_name",
				       "search_path",
				       "standard_conforming_strings",
				       "IntervalStyle",
				       "extra_float_digits",
				       "statement_timeout",
				       "enable_hashjoin",
				       "error_on_unknown_object_key",
				       "memory.operation_limit",
				       "insert_select_fail_fast",
				       "role",
				       NULL };
static char *names[SP_MAX];
static int nnames;

int sp_init(const char *extra)
{
	const char *p = extra ? extra : "";

	for (int i = 0; i < nnames; i++)
		free(names[i]);
	nnames = 0;
	for (int i = 0; builtin[i]; i++)
		names[nnames++] = strdup(builtin[i]);
	while (*p) {
		size_t n;
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		n = strcspn(p, ", \t");
		if (n == 0)
			break;
		for (size_t k = 0; k < n; k++)
			if (!isalnum((unsigned char)p[k]) && p[k] != '_' && p[k] != '.')
				return -1;
		if (sp_index(p, n) < 0) {
			if (nnames == SP_MAX)
				return -1;
			names[nnames] = strndup(p, n);
			if (!names[nnames])
				return -1;
			nnames++;
		}
		p += n;
	}
	for (int i = 0; i < nnames; i++)
		if (!names[i])
			return -1;
	return 0;
}

bool sp_reset_all_keeps(int i)
{
	return i >= 0 && i < nnames && strcasecmp(names[i], "role") == 0;
}

int sp_count(void)
{
	return nnames;
}

int sp_index(const char *name, size_t len)
{
	for (int i = 0; i < nnames; i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
			return i;
	return -1;
}

const char *sp_name(int i)
{
	return names[i];
}

static uint64_t entry_hash(int i, const char *v, bool raw)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(i * 2 + raw);

	for (; *v; v++) {
		h ^= (unsigned char)*v;
		h *= 1099511628211ull;
	}
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ (h >> 32);
}

/* Offset of entry i in the block, or -1. */
static long find(const struct sp_set *s, int i)
{
	uint32_t off = 0;

	while (off < s->len) {
		if (s->blk[off] == i)
			return off;
		off += 2 + (uint32_t)strlen((const char *)s->blk + off + 2) + 1;
	}
	return -1;
}

const char *sp_get(const struct sp_set *s, int i, bool *raw)
{
	long off = find(s, i);

	if (off < 0)
		return NULL;
	if (raw)
		*raw = s->blk[off + 1];
	return (const char *)s->blk + off + 2;
}

int sp_put(struct sp_set *s, int i, const char *value, bool raw)
{
	long off = find(s, i);
	uint32_t old_len = 0;
	uint8_t *blk;
	size_t vlen = value ? strlen(value) : 0;

	if (off >= 0) {
		const char *old = (const char *)s->blk + off + 2;
		if (value && raw == s->blk[off + 1] && strcmp(old, value) == 0)
			return 0;
		old_len = 2 + (uint32_t)strlen(old) + 1;
	}
	if (!value && off < 0)
		return 0;
	size_t len = s->len - old_len + (value ? 2 + vlen + 1 : 0);
	blk = len ? malloc(len) : NULL;
	if (len && !blk)
		return -1;
	size_t w = 0;
	if (off >= 0) {
		s->fp -= entry_hash(i, (const char *)s->blk + off + 2, s->blk[off + 1]);
		size_t rest = s->len - (size_t)off - old_len;
		if (off)
			memcpy(blk, s->blk, (size_t)off);
		w = (size_t)off;
		if (rest)
			memcpy(blk + w, s->blk + off + old_len, rest);
		w += rest;
	} else if (s->len) {
		memcpy(blk, s->blk, s->len);
		w = s->len;
	}
	if (value) {
		blk[w] = (uint8_t)i;
		blk[w + 1] = raw;
		memcpy(blk + w + 2, value, vlen + 1);
		s->fp += entry_hash(i, value, raw);
	}
	free(s->blk);
	s->blk = blk;
	s->len = (uint32_t)len;
	return 0;
}

void sp_clear(struct sp_set *s)
{
	free(s->blk);
	s->blk = NULL;
	s->len = 0;
	s->fp = 0;
}

static int add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = (*len + n + 1) * 2;
		char *b = realloc(*buf, c);
		if (!b)
			return -1;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

static int add_literal(char **buf, size_t *len, size_t *cap, const char *v)
{
	if (add(buf, len, cap, "'", 1) < 0)
		return -1;
	for (; *v; v++)
		if (add(buf, len, cap, v, 1) < 0 || (*v == '\'' && add(buf, len, cap, "'", 1) < 0))
			return -1;
	return add(buf, len, cap, "'", 1);
}

bool sp_differs(const struct sp_set *cl, const struct sp_set *sv, int i)
{
	bool raw, sraw;
	const char *c = sp_get(cl, i, &raw), *s = sp_get(sv, i, &sraw);

	return !(c ? s && raw == sraw && strcmp(c, s) == 0 : !s);
}

/* Appends the statement giving parameter i cl's value (reset: its default). */
static int add_stmt(char **buf, size_t *len, size_t *cap, const struct sp_set *cl, int i,
		    bool crate, bool reset)
{
	bool raw;
	const char *c = reset ? NULL : sp_get(cl, i, &raw);
	const char *name = names[i];
	int rc = 0;

	if (c) {
		rc |= add(buf, len, cap, "SET ", 4);
		rc |= add(buf, len, cap, name, strlen(name));
		rc |= add(buf, len, cap, " TO ", 4);
		rc |= raw ? add(buf, len, cap, c, strlen(c)) : add_literal(buf, len, cap, c);
	} else if (crate) {
		/* CrateDB has no RESET name (a syntax error that fails the whole Query) */
		rc |= add(buf, len, cap, "SET ", 4);
		rc |= add(buf, len, cap, name, strlen(name));
		rc |= add(buf, len, cap, " TO DEFAULT", 11);
	} else {
		rc |= add(buf, len, cap, "RESET ", 6);
		rc |= add(buf, len, cap, name, strlen(name));
	}
	return rc ? -1 : 0;
}

char *sp_stmt(const struct sp_set *cl, int i, bool crate, bool reset)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (add_stmt(&buf, &len, &cap, cl, i, crate, reset) < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

char *sp_diff_sql(const struct sp_set *cl, const struct sp_set *sv, uint64_t *mask, bool crate)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	*mask = 0;
	if (sp_same(cl, sv))
		return NULL;
	for (int i = 0; i < nnames; i++) {
		if (!sp_differs(cl, sv, i))
			continue;
		if ((len && add(&buf, &len, &cap, "; ", 2) < 0) ||
		    add_stmt(&buf, &len, &cap, cl, i, crate, false) < 0) {
			free(buf);
			return NULL;
		}
		*mask |= 1ull << i;
	}
	return buf;
}

/* The lexing below follows PostgreSQL's scanner, or CrateDB's (its SqlBaseLexer.g4) when
 * crate is set. CrateDB differs in four ways that decide where a statement ends: block
 * comments do not nest; `name` is a quoted identifier as "name" is; a dollar quote's tag is
 * [A-Za-z_][A-Za-z0-9_@]* and may follow any token ($ is no identifier character); and in
 * E'...' a run of backslashes escapes the one character after it, so E'\\' is not closed
 * by its second quote. */

/* The end of the block comment starting at p: PostgreSQL's nest, CrateDB's do not. */
static const char *comment_end(const char *p, const char *end, bool crate)
{
	int depth = 0;

	if (crate) {
		for (p += 2; end - p >= 2; p++)
			if (p[0] == '*' && p[1] == '/')
				return p + 2;
		return end;
	}
	while (end - p >= 2) {
		if (p[0] == '/' && p[1] == '*') {
			depth++;
			p += 2;
		} else if (p[0] == '*' && p[1] == '/') {
			p += 2;
			if (--depth == 0)
				return p;
		} else {
			p++;
		}
	}
	return end;
}

/* Skips white space and SQL comments. */
static const char *skip_ws(const char *p, const char *end, bool crate)
{
	for (;;) {
		while (p < end && isspace((unsigned char)*p))
			p++;
		if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
			/* both end a -- comment at CR as well as at LF */
			while (p < end && *p != '\n' && *p != '\r')
				p++;
		} else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
			p = comment_end(p, end, crate);
		} else {
			return p;
		}
	}
}

static bool word(const char **pp, const char *end, const char *w)
{
	size_t n = strlen(w);
	const char *p = *pp;

	if ((size_t)(end - p) < n || strncasecmp(p, w, n) != 0)
		return false;
	/* a keyword is not the start of a longer or qualified name (schema.x, role$1) */
	if (p + n < end && (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '.' ||
			    p[n] == '$' || (unsigned char)p[n] >= 0x80))
		return false;
	*pp = p + n;
	return true;
}

static size_t ident_len(const char *p, const char *end)
{
	size_t n = 0;

	while (p + n < end && (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '.'))
		n++;
	return n;
}

static bool ident_char(char c, bool crate)
{
	if (crate)
		return isalnum((unsigned char)c) || c == '_' || c == '@';
	return isalnum((unsigned char)c) || c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

static bool quote_char(char c, bool crate)
{
	return c == '\'' || c == '"' || (crate && c == '`');
}

/* CrateDB's E'...' opening at p: the longest match of its ESCAPED_STRING, whose body is
 * characters but quote and backslash, '' pairs, and backslash runs with the character
 * after them. NULL when it has no end: CrateDB then reads E as a name and a plain string. */
static const char *crate_escape_end(const char *p, const char *end)
{
	const char *q = p + 1, *last = NULL;

	while (q < end) {
		if (*q == '\\') {
			while (q < end && *q == '\\')
				q++;
			if (q == end)
				break;
			q++;
		} else if (*q == '\'') {
			last = q;
			if (q + 1 < end && q[1] == '\'') {
				q += 2;
				continue;
			}
			break;
		} else {
			q++;
		}
	}
	return last;
}

/* PostgreSQL's string continuation: after a string's closing quote, white space with a
 * newline in it (-- comments count as white space) and a quote go on with the same
 * string, an E'...' one with its escapes (scan.l, quotecontinue). That quote, or NULL. */
static const char *pg_continuation(const char *p, const char *end)
{
	bool newline = false;

	while (p < end) {
		if (*p == '\n' || *p == '\r') {
			newline = true;
			p++;
		} else if (*p == ' ' || *p == '\t' || *p == '\f' || (newline && *p == '\v')) {
			p++;
		} else if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
			while (p < end && *p != '\n' && *p != '\r')
				p++;
			if (p == end)
				return NULL; /* a comment must end with a newline */
		} else {
			break;
		}
	}
	return newline && p < end && *p == '\'' ? p : NULL;
}

/* The closing quote of the string or quoted name whose opening quote is at p (NULL: none
 * before end). An escape string, E'...', where a token starts: in PostgreSQL a backslash
 * escapes the next character (a quote too), '' is a quote, and a continuation keeps the
 * escapes; CrateDB's is crate_escape_end(). */
static const char *close_quote(const char *start, const char *p, const char *end, bool crate)
{
	if (*p == '\'' && p > start && (p[-1] == 'E' || p[-1] == 'e') &&
	    (p - 1 == start || !ident_char(p[-2], crate))) {
		const char *q = p + 1, *more;
		if (!crate) {
			for (;;) {
				while (q < end && *q != '\'')
					q += *q == '\\' && q + 1 < end ? 2 : 1;
				if (q < end && q + 1 < end && q[1] == '\'') {
					q += 2;
					continue;
				}
				if (q >= end || !(more = pg_continuation(q + 1, end)))
					return q < end ? q : NULL;
				q = more + 1;
			}
		}
		if ((q = crate_escape_end(p, end)))
			return q;
		/* no end: CrateDB reads a name E and a plain string */
	}
	return memchr(p + 1, *p, (size_t)(end - p - 1));
}

/* The end of the dollar quote starting at p ($tag$ ... $tag$; end when it is not closed),
 * or NULL when p starts none: in PostgreSQL only where a token starts, not $1 (a
 * parameter: the tag does not start with a digit). */
static const char *dollar_end(const char *start, const char *p, const char *end, bool crate)
{
	const char *t = p + 1;

	if (crate) {
		if (t < end && (isalpha((unsigned char)*t) || *t == '_'))
			while (t < end && ident_char(*t, true))
				t++;
	} else {
		if ((p > start && ident_char(p[-1], false)) ||
		    (t < end && isdigit((unsigned char)*t)))
			return NULL;
		while (t < end &&
		       (isalnum((unsigned char)*t) || *t == '_' || (unsigned char)*t >= 0x80))
			t++;
	}
	if (t >= end || *t != '$')
		return NULL;
	size_t tl = (size_t)(t - p + 1);
	const char *q = t + 1;
	while (q + tl <= end && memcmp(q, p, tl) != 0)
		q++;
	return q + tl <= end ? q + tl : end;
}

const char *sp_next_statement(const char *p, const char *end, bool crate)
{
	const char *start = p, *e;

	while (p < end) {
		char c = *p;
		if (quote_char(c, crate)) {
			e = close_quote(start, p, end, crate);
			p = e ? e + 1 : end;
		} else if (c == '-' && p + 1 < end && p[1] == '-') {
			while (p < end && *p != '\n' && *p != '\r')
				p++;
		} else if (c == '/' && p + 1 < end && p[1] == '*') {
			p = comment_end(p, end, crate);
		} else if (c == '$' && (e = dollar_end(start, p, end, crate))) {
			p = e;
		} else if (c == ';') {
			return p + 1;
		} else {
			p++;
		}
	}
	return end;
}

bool sp_autocommit_statement(const char *sql, size_t len)
{
	static const char *const first[] = { "SELECT", "INSERT", "UPDATE", "DELETE",
					     "VALUES", "TABLE",  "WITH" };
	const char *end = sql + len, *p = skip_ws(sql, end, false);
	bool ok = false;

	if (memchr(sql, '\\', len))
		return false;
	/* set_config() changes the session for the queries behind it; U& identifiers could
	 * spell it with escapes */
	for (const char *q = sql; q < end; q++) {
		if ((*q == 's' || *q == 'S') && end - q >= 10 &&
		    strncasecmp(q, "set_config", 10) == 0)
			return false;
		if ((*q == 'u' || *q == 'U') && end - q >= 2 && q[1] == '&')
			return false;
	}
	for (size_t i = 0; i < sizeof(first) / sizeof(first[0]) && !ok; i++) {
		const char *q = p;
		ok = word(&q, end, first[i]);
	}
	if (!ok)
		return false;
	const char *e = sp_next_statement(p, end, false);
	return skip_ws(e, end, false) == end;
}

/* SET [SESSION] SESSION AUTHORIZATION at p, after SET and its scope: the session's user,
 * which nothing tracks and only DISCARD ALL (PostgreSQL) or RESET SESSION AUTHORIZATION
 * undoes. */
static bool sets_authorization(const char *p, const char *end, bool scoped, bool crate)
{
	bool session = false;

	if (word(&p, end, "SESSION")) {
		session = true;
		p = skip_ws(p, end, crate);
	}
	return (scoped || session) && word(&p, end, "AUTHORIZATION");
}

/* Whether nothing but white space, comments and a ';' is left at p. */
static bool at_end(const char *p, const char *end, bool crate)
{
	p = skip_ws(p, end, crate);
	if (p < end && *p == ';')
		p = skip_ws(p + 1, end, crate);
	return p == end;
}

/* A parameter's name at p as the server reads it, its parts joined with '.' into out:
 * white space or comments may stand around the dots, and a part may be quoted (CrateDB's
 * settings are lower-case, and it looks quoted names up as written: one with a capital
 * names none of them). Its length, 0 for none; *after: behind it. */
static size_t qualified_name(const char *p, const char *end, bool crate, char *out, size_t max,
			     const char **after)
{
	size_t n = 0;

	for (;;) {
		const char *part = p;
		size_t len;
		if (p < end && (*p == '"' || (crate && *p == '`'))) {
			const char *q = memchr(p + 1, *p, (size_t)(end - p - 1));
			if (!q)
				return 0;
			part = p + 1;
			len = (size_t)(q - part);
			p = q + 1;
			for (size_t k = 0; crate && k < len; k++)
				if (isupper((unsigned char)part[k]))
					return 0;
		} else {
			while (p < end && (isalnum((unsigned char)*p) || *p == '_'))
				p++;
			len = (size_t)(p - part);
		}
		if (len == 0 || n + len + 1 >= max)
			return 0;
		memcpy(out + n, part, len);
		n += len;
		const char *q = skip_ws(p, end, crate);
		if (q < end && *q == '.') {
			out[n++] = '.';
			p = skip_ws(q + 1, end, crate);
			continue;
		}
		out[n] = '\0';
		*after = p;
		return n;
	}
}

int sp_parse_set(const char *sql, size_t len, bool crate, int *idx, char **value)
{
	const char *p = sql, *end = sql + len;
	bool reset;

	/* the query text of a Query or Parse message ends with its NUL */
	while (end > p && end[-1] == '\0')
		end--;
	p = skip_ws(p, end, crate);
	if (word(&p, end, "DISCARD")) {
		p = skip_ws(p, end, crate);
		return word(&p, end, "ALL") ? 4 : 0;
	}
	if (word(&p, end, "RESET"))
		reset = true;
	else if (word(&p, end, "SET"))
		reset = false;
	else
		return 0;
	p = skip_ws(p, end, crate);
	if (reset && word(&p, end, "ALL"))
		return 2;
	if (!reset && word(&p, end, "LOCAL"))
		return 0; /* ends with the transaction (CrateDB ignores it) */
	bool scoped = !reset && word(&p, end, "SESSION");
	p = skip_ws(p, end, crate);
	if (scoped && word(&p, end, "CHARACTERISTICS"))
		return 0;
	if (sets_authorization(p, end, scoped || reset, crate))
		return 3; /* RESET SESSION AUTHORIZATION ends a SET ROLE too */
	int i = -1;
	const char *after, *kw = p;
	char name[128];
	size_t n;
	if (!reset && !crate && word(&kw, end, "SCHEMA")) {
		/* PostgreSQL's SET SCHEMA 'x' is SET search_path TO 'x' */
		i = sp_index("search_path", 11);
		p = skip_ws(kw, end, crate);
		goto value;
	}
	kw = p;
	if (!reset && word(&kw, end, "ROLE")) {
		/* SET ROLE x is SET role TO x (NONE too: the login user's role, which need not
		 * be the default a RESET gives, set by ALTER ROLE ... SET role) */
		const char *r = skip_ws(kw, end, crate), *to = r;
		if (r < end && *r != '=' && !word(&to, end, "TO")) {
			i = sp_index("role", 4);
			p = r;
			goto value;
		}
	}
	n = qualified_name(p, end, crate, name, sizeof(name), &after);
	if (n == 0)
		return 0;
	if ((i = sp_index(name, n)) < 0)
		/* PostgreSQL's SET session_authorization = 'x' */
		return !reset && strcasecmp(name, "session_authorization") == 0 ? 3 : 0;
	/* from here on a tracked parameter changes: text that cannot be read is 3 */
	p = skip_ws(after, end, crate);
	if (reset) {
		/* RESET name [;] and nothing else */
		if (!at_end(p, end, crate))
			return 3;
		*idx = i;
		*value = NULL;
		return 1;
	}
	if (p < end && *p == '=')
		p++;
	else if (!word(&p, end, "TO"))
		return 3;
	p = skip_ws(p, end, crate);
value:;
	const char *v = p, *ve = end;
	/* one statement (sp_next_statement splits a Query): the value ends at its end or at
	 * a comment; a value with a comment or a ';' inside is not taken */
	ve = sp_next_statement(v, end, crate);
	if (ve > v && ve[-1] == ';')
		ve--;
	for (const char *s = v; s < ve; s++) {
		if (quote_char(*s, crate)) {
			const char *e = close_quote(v, s, ve, crate);
			if (!e)
				return 3;
			s = e;
		} else if ((*s == '-' && s + 1 < ve && s[1] == '-') ||
			   (*s == '/' && s + 1 < ve && s[1] == '*')) {
			if (skip_ws(s, ve, crate) != ve)
				return 3; /* something after the comment */
			ve = s;
			break;
		}
	}
	const char *rest = skip_ws(ve, end, crate);
	if (rest != end && !(*rest == ';' && skip_ws(rest + 1, end, crate) == end))
		return 3;
	while (ve > v && isspace((unsigned char)ve[-1]))
		ve--;
	if (ve == v)
		return 3;
	*value = strndup(v, (size_t)(ve - v));
	if (!*value)
		return -1;
	*idx = i;
	return 1;
}

/* An identifier as CrateDB folds it: unquoted lower-cased, "quoted" as is. Its length
 * in the text, 0 when there is none (or it does not fit). */
static size_t ident_folded(const char *p, const char *end, char *out, size_t max)
{
	size_t n = 0, i = 0;

	if (p < end && (*p == '"' || *p == '`')) {
		for (i = 1; p + i < end && p[i] != *p; i++) {
			if (n + 1 >= max)
				return 0;
			out[n++] = p[i];
		}
		if (p + i >= end || n == 0)
			return 0;
		out[n] = '\0';
		return i + 1;
	}
	while (p + i < end && ident_char(p[i], true)) {
		if (n + 1 >= max)
			return 0;
		out[n++] = (char)tolower((unsigned char)p[i]);
		i++;
	}
	out[n] = '\0';
	return i;
}

int sp_tx_statement(const char *sql, size_t len, char *name, size_t max)
{
	const char *p = sql, *end = sql + len;

	while (end > p && end[-1] == '\0')
		end--;
	p = skip_ws(p, end, true);
	if (word(&p, end, "BEGIN"))
		return SP_TX_BEGIN;
	if (word(&p, end, "START")) {
		p = skip_ws(p, end, true);
		return word(&p, end, "TRANSACTION") ? SP_TX_BEGIN : SP_TX_NONE;
	}
	if (word(&p, end, "COMMIT") || word(&p, end, "END"))
		return SP_TX_COMMIT;
	if (word(&p, end, "DISCARD")) {
		p = skip_ws(p, end, true);
		return word(&p, end, "ALL") ? SP_TX_DISCARD_ALL : SP_TX_NONE;
	}
	if (word(&p, end, "CLOSE")) {
		p = skip_ws(p, end, true);
		const char *q = p;
		if (word(&q, end, "ALL"))
			return SP_TX_CLOSE_ALL;
		/* a name that does not fit: as if every cursor were closed would be wrong, so
		 * nothing is known to close */
		return ident_folded(p, end, name, max) ? SP_TX_CLOSE : SP_TX_NONE;
	}
	if (!word(&p, end, "DECLARE"))
		return SP_TX_NONE;
	p = skip_ws(p, end, true);
	size_t n = ident_folded(p, end, name, max);
	if (n == 0) {
		/* an open cursor whose name cannot be tracked: it is never seen closed but by
		 * CLOSE ALL or the session's end (the server stays with its client) */
		snprintf(name, max, "%s", "");
		return SP_TX_DECLARE_HOLD;
	}
	p += n;
	/* declareCursorParams, then CURSOR [{WITH | WITHOUT} HOLD] FOR */
	while (p < end) {
		p = skip_ws(p, end, true);
		/* at the end (only white space or a comment was left): no step past it */
		if (p == end || word(&p, end, "CURSOR"))
			break;
		size_t w = ident_len(p, end);
		p += w ? w : 1;
	}
	p = skip_ws(p, end, true);
	if (word(&p, end, "WITH")) {
		p = skip_ws(p, end, true);
		if (word(&p, end, "HOLD"))
			return SP_TX_DECLARE_HOLD;
	}
	return SP_TX_DECLARE;
}
