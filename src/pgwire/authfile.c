/* auth_file loading in PgBouncer's userlist format into a sorted array for lookups.
 * Errors name the file and line but never echo a secret; secret memory is wiped
 * when freed. */
#include "authfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct entry {
	char *user;
	char *secret;
	size_t seq; /* file order, so that a later duplicate wins */
};

struct authfile {
	struct entry *entries;
	size_t n, cap;
};

static const char *skip_blank(const char *p);
static int read_quoted(const char **p, char **out);
static int add_entry(struct authfile *af, char *user, char *secret);
static int entry_cmp(const void *a, const void *b);
static void set_error(char **err, const char *name, size_t line, const char *msg);

static const char *skip_blank(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

/* Reads the quoted field at *p ('"' already checked), "" meaning a literal quote, and
 * moves *p past the closing quote. -1: the line ends first, -2: out of memory. */
static int read_quoted(const char **p, char **out)
{
	const char *s;
	size_t len = 0;
	char *o;

	for (s = *p + 1; *s != '"' || s[1] == '"'; s++, len++) {
		if (*s == '\0' || *s == '\n')
			return -1;
		if (*s == '"')
			s++;
	}
	if (!(*out = o = malloc(len + 1)))
		return -2;
	for (s = *p + 1; *s != '"' || s[1] == '"'; s++) {
		if (*s == '"')
			s++;
		*o++ = *s;
	}
	*o = '\0';
	*p = s + 1;
	return 0;
}

static int add_entry(struct authfile *af, char *user, char *secret)
{
	if (af->n == af->cap) {
		size_t cap = af->cap ? af->cap * 2 : 16;
		struct entry *e = realloc(af->entries, cap * sizeof(*e));
		if (!e)
			return -1;
		af->entries = e;
		af->cap = cap;
	}
	af->entries[af->n] = (struct entry){ user, secret, af->n };
	af->n++;
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->user, y->user);

	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void set_error(char **err, const char *name, size_t line, const char *msg)
{
	if (!err)
		return;
	if (asprintf(err, "%s:%zu: %s", name ? name : "auth_file", line, msg) < 0)
		*err = NULL;
}


struct authfile *authfile_parse(const char *text, const char *name, char **err)
{
	struct authfile *af = calloc(1, sizeof(*af));
	const char *p = text, *msg = NULL;
	size_t line = 1, out;

	if (err)
		*err = NULL;
	if (!af) {
		set_error(err, name, 0, "out of memory");
		return NULL;
	}
	for (; *p; line++) {
		char *user = NULL, *secret = NULL;
		const char *q = skip_blank(p);

		if (*q == '"') {
			int rc = read_quoted(&q, &user);

			if (rc == 0 && !*user)
				msg = "empty user name";
			else if (rc == 0 && *(q = skip_blank(q)) != '"')
				msg = "missing secret: expected a quoted secret after the user name";
			else if (rc == 0 && (rc = read_quoted(&q, &secret)) == -1)
				msg = "unterminated quoted secret";
			else if (rc == -1)
				msg = "unterminated quoted user name";
			else if (rc < 0 || add_entry(af, user, secret) < 0)
				msg = "out of memory";
			if (msg) {
				free(user);
				free_secret(secret);
				break;
			}
		} else if (*q != '\n' && *q != '\0' && *q != ';' && *q != '#') {
			msg = "expected a quoted user name";
			break;
		}
		/* Further fields and comment lines are skipped to the end of the line. */
		p = q + strcspn(q, "\n");
		if (*p == '\n')
			p++;
	}
	if (msg) {
		set_error(err, name, line, msg);
		authfile_free(af);
		return NULL;
	}
	if (af->n)
		qsort(af->entries, af->n, sizeof(*af->entries), entry_cmp);
	/* Keep the last of each run of equal user names. */
	out = 0;
	for (size_t i = 0; i < af->n; i++) {
		if (i + 1 < af->n && strcmp(af->entries[i].user, af->entries[i + 1].user) == 0) {
			free(af->entries[i].user);
			free_secret(af->entries[i].secret);
			continue;
		}
		af->entries[out++] = af->entries[i];
	}
	af->n = out;
	return af;
}

struct authfile *authfile_load(const char *path, char **err)
{
	struct authfile *af = NULL;
	char *text = NULL, *grown;
	size_t len = 0, cap = 0;
	FILE *f = fopen(path, "re");

	if (err)
		*err = NULL;
	if (!f)
		goto sys_err;
	for (;;) {
		if (cap - len < 2) {
			cap = cap ? cap * 2 : 4096;
			if (!(grown = malloc(cap))) {
				errno = ENOMEM;
				goto sys_err;
			}
			/* Copy rather than realloc so that no stray copy of a secret is left behind. */
			if (text) {
				memcpy(grown, text, len);
				explicit_bzero(text, len);
				free(text);
			}
			text = grown;
		}
		len += fread(text + len, 1, cap - len - 1, f);
		if (ferror(f))
			goto sys_err;
		if (feof(f))
			break;
	}
	fclose(f);
	text[len] = '\0';
	if (memchr(text, '\0', len)) {
		if (err && asprintf(err, "%s: file contains a NUL byte", path) < 0)
			*err = NULL;
	} else {
		af = authfile_parse(text, path, err);
	}
	explicit_bzero(text, len);
	free(text);
	return af;
sys_err:
	if (err && asprintf(err, "%s: %s", path, strerror(errno)) < 0)
		*err = NULL;
	if (f)
		fclose(f);
	if (text) {
		explicit_bzero(text, len);
		free(text);
	}
	return NULL;
}

const char *authfile_lookup(const struct authfile *af, const char *user)
{
	size_t lo = 0, hi;

	if (!af || !user)
		return NULL;
	for (hi = af->n; lo < hi;) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(user, af->entries[mid].user);

		if (c == 0)
			return af->entries[mid].secret;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void authfile_free(struct authfile *af)
{
	if (!af)
		return;
	for (size_t i = 0; i < af->n; i++) {
		free(af->entries[i].user);
		free_secret(af->entries[i].secret);
	}
	free(af->entries);
	free(af);
}
