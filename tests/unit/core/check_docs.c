/* Unit tests that keep the documentation in step with the option table: every entry of
 * cfg_options[] must be documented in docs/cratebouncer.ini.5 (a ".TP" entry whose tag line
 * is ".B name", saying "Default: value." and "Reload: yes" or "Reload: restart needed"), and
 * be present, uncommented and with its default, in its section of conf/cratebouncer.ini
 * ([cratebouncer], [admin] or [http]); an option of a section other than the global one is
 * documented in the man page's .SH section naming it ([ADMIN], [HTTP]); every [databases]
 * key must be documented in the man page's [DATABASES] section.
 * The source tree is $CB_SRCDIR (set by make check), else TOP_SRCDIR, else ".". */
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cfg.h"

#define MAN_PAGE "docs/cratebouncer.ini.5"
#define SAMPLE_CONF "conf/cratebouncer.ini"

/* A line of a text: [start, start + len), without the line end. */
struct line {
	const char *start;
	size_t len;
};

static const char *srcdir(void);
static char *read_doc(const char *rel);
static bool next_line(const char **pos, const char *end, struct line *l);
static bool line_is(const struct line *l, const char *text);
static bool find_tag(const char *from, const char *to, const char *name, const char **after);
static void man_db_section(const char *man, const char **start, const char **end);
static void man_section(const char *man, const char *title, const char **start, const char **end);
static bool find_opt_tag(const char *man, const struct cfg_opt *o, const char **after);
static const char *entry_end(const char *from, const char *to);
static bool contains(const char *from, const char *to, const char *needle);
static bool conf_value(const char *conf, const char *section, const char *name, bool *commented,
		       char *value, size_t valsz);

static const char *srcdir(void)
{
	const char *d = getenv("CB_SRCDIR");

	if (d && *d)
		return d;
#ifdef TOP_SRCDIR
	return TOP_SRCDIR;
#else
	return ".";
#endif
}

/* The whole file under srcdir(); fails the test when it cannot be read. */
static char *read_doc(const char *rel)
{
	char path[4096];
	FILE *f;
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	snprintf(path, sizeof(path), "%s/%s", srcdir(), rel);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s: %s (set CB_SRCDIR to the source tree)", path,
		      strerror(errno));
	do {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	ck_assert_msg(!ferror(f), "cannot read %s", path);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

/* The line at *pos (before end), without "\n" or "\r\n"; false at the end. */
static bool next_line(const char **pos, const char *end, struct line *l)
{
	const char *p = *pos, *nl;

	if (p >= end || !*p)
		return false;
	nl = memchr(p, '\n', (size_t)(end - p));
	l->start = p;
	l->len = nl ? (size_t)(nl - p) : (size_t)(end - p);
	*pos = nl ? nl + 1 : end;
	while (l->len > 0 &&
	       (p[l->len - 1] == '\r' || p[l->len - 1] == ' ' || p[l->len - 1] == '\t'))
		l->len--;
	return true;
}

static bool line_is(const struct line *l, const char *text)
{
	return l->len == strlen(text) && memcmp(l->start, text, l->len) == 0;
}

/* Is there a tag line ".B name" (right after a ".TP") in [from, to)? *after: the start of
 * the line after it. A ".B name" in running text does not count. */
static bool find_tag(const char *from, const char *to, const char *name, const char **after)
{
	char want[256];
	struct line l;
	const char *p = from;
	bool after_tp = false;

	snprintf(want, sizeof(want), ".B %s", name);
	while (next_line(&p, to, &l)) {
		if (after_tp && line_is(&l, want)) {
			if (after)
				*after = p;
			return true;
		}
		after_tp = line_is(&l, ".TP");
	}
	return false;
}

/* The .SH section whose title names title (e.g. "[DATABASES]"): from its heading to the
 * next .SH. */
static void man_section(const char *man, const char *title, const char **start, const char **end)
{
	const char *p = man, *line_start;
	const char *man_end = man + strlen(man);
	size_t tl = strlen(title);
	struct line l;

	*start = *end = NULL;
	for (line_start = p; next_line(&p, man_end, &l); line_start = p) {
		bool sh = l.len >= 4 && memcmp(l.start, ".SH ", 4) == 0;
		if (!sh)
			continue;
		if (*start) {
			*end = line_start;
			return;
		}
		for (size_t i = 0; i + tl <= l.len; i++)
			if (strncasecmp(l.start + i, title, tl) == 0) {
				*start = line_start;
				break;
			}
	}
	if (*start)
		*end = man_end;
}

static void man_db_section(const char *man, const char **start, const char **end)
{
	man_section(man, "[DATABASES]", start, end);
}

/* The sections of the page that belong to one INI section each: [DATABASES] and one per
 * section of cfg_options[] ([ADMIN], [HTTP]); the global options are documented outside
 * all of them. */
static const char *const man_sections[] = { "[DATABASES]", "[ADMIN]", "[HTTP]", NULL };

/* An option's tag in the part of the man page for its section: [admin] options inside the
 * [ADMIN] section, [http] ones inside [HTTP], global ones outside all of man_sections[]. */
static bool find_opt_tag(const char *man, const struct cfg_opt *o, const char **after)
{
	const char *man_end = man + strlen(man);

	if (o->section) {
		char title[64];
		const char *s, *e;
		size_t n = strlen(o->section);
		ck_assert_msg(n + 3 <= sizeof(title), "section name %s too long", o->section);
		title[0] = '[';
		for (size_t i = 0; i < n; i++)
			title[i + 1] = (char)toupper((unsigned char)o->section[i]);
		title[n + 1] = ']';
		title[n + 2] = '\0';
		man_section(man, title, &s, &e);
		return s && find_tag(s, e, o->name, after);
	}
	/* the page minus the special sections, in page order */
	const char *cs[8], *ce[8];
	size_t nc = 0;
	for (size_t i = 0; man_sections[i] && nc < 8; i++) {
		man_section(man, man_sections[i], &cs[nc], &ce[nc]);
		if (cs[nc])
			nc++;
	}
	for (size_t i = 1; i < nc; i++)
		for (size_t j = i; j > 0 && cs[j] < cs[j - 1]; j--) {
			const char *t = cs[j];
			cs[j] = cs[j - 1];
			cs[j - 1] = t;
			t = ce[j];
			ce[j] = ce[j - 1];
			ce[j - 1] = t;
		}
	const char *from = man;
	for (size_t i = 0; i < nc; i++) {
		if (find_tag(from, cs[i], o->name, after))
			return true;
		from = ce[i];
	}
	return find_tag(from, man_end, o->name, after);
}

/* Is name an option of any section? */
static bool any_opt(const char *name)
{
	for (size_t i = 0; i < cfg_noptions; i++)
		if (strcasecmp(cfg_options[i].name, name) == 0)
			return true;
	return false;
}

/* An option's entry runs from its tag to the next section (.SH/.SS) or the next tag of
 * another option; nested lists (auth_type's values) have tags that are not options. */
static const char *entry_end(const char *from, const char *to)
{
	const char *p = from, *line_start;
	struct line l;
	bool after_tp = false;

	for (line_start = p; next_line(&p, to, &l); line_start = p) {
		if (l.len >= 4 &&
		    (memcmp(l.start, ".SH ", 4) == 0 || memcmp(l.start, ".SS ", 4) == 0))
			return line_start;
		if (after_tp && l.len > 3 && memcmp(l.start, ".B ", 3) == 0) {
			char name[128];
			size_t n = l.len - 3 < sizeof(name) - 1 ? l.len - 3 : sizeof(name) - 1;
			memcpy(name, l.start + 3, n);
			name[n] = '\0';
			if (any_opt(name))
				return line_start;
		}
		after_tp = line_is(&l, ".TP");
	}
	return to;
}

static bool contains(const char *from, const char *to, const char *needle)
{
	size_t n = strlen(needle);

	for (const char *p = from; p + n <= to; p++)
		if (memcmp(p, needle, n) == 0)
			return true;
	return false;
}

/* Finds "name = value" at the start of a line in the section (NULL: [cratebouncer] or
 * [pgbouncer]) and copies the trimmed value. *commented: a ";name =" or "#name =" was seen. */
static bool in_section(const struct line *l, const char *section)
{
	if (!section)
		return (l->len == 14 && strncasecmp(l->start, "[cratebouncer]", 14) == 0) ||
		       (l->len == 11 && strncasecmp(l->start, "[pgbouncer]", 11) == 0);
	size_t n = strlen(section);
	return l->len == n + 2 && l->start[0] == '[' &&
	       strncasecmp(l->start + 1, section, n) == 0 && l->start[n + 1] == ']';
}

static bool conf_value(const char *conf, const char *section, const char *name, bool *commented,
		       char *value, size_t valsz)
{
	const char *p = conf, *end = conf + strlen(conf);
	size_t n = strlen(name);
	bool global = false;
	struct line l;

	*commented = false;
	while (next_line(&p, end, &l)) {
		if (l.len > 0 && l.start[0] == '[') {
			global = in_section(&l, section);
			continue;
		}
		if (!global)
			continue;
		const char *s = l.start, *e = l.start + l.len;
		bool comment = false;
		if (s < e && (*s == ';' || *s == '#')) {
			comment = true;
			s++;
			while (s < e && isspace((unsigned char)*s))
				s++;
		}
		if ((size_t)(e - s) < n || memcmp(s, name, n) != 0)
			continue;
		s += n;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		if (s == e || *s != '=')
			continue; /* a longer name, or prose */
		if (comment) {
			*commented = true;
			continue;
		}
		s++;
		while (s < e && isspace((unsigned char)*s))
			s++;
		snprintf(value, valsz, "%.*s", (int)(e - s), s);
		return true;
	}
	return false;
}

START_TEST(test_man_options)
{
	char *man = read_doc(MAN_PAGE);
	const char *db_start, *db_end, *man_end = man + strlen(man);

	man_db_section(man, &db_start, &db_end);
	ck_assert_msg(db_start != NULL, "%s has no .SH section naming [DATABASES]", MAN_PAGE);
	(void)man_end;
	for (size_t i = 0; i < cfg_noptions; i++) {
		const char *name = cfg_options[i].name;
		bool found = find_opt_tag(man, &cfg_options[i], NULL);
		ck_assert_msg(
			found,
			"option %s%s%s is not documented in %s: no \".TP\" entry with the tag "
			"line \".B %s\" in the part of the page for its section",
			cfg_options[i].section ? cfg_options[i].section : "",
			cfg_options[i].section ? "." : "", name, MAN_PAGE, name);
	}
	free(man);
}
END_TEST

START_TEST(test_man_defaults)
{
	char *man = read_doc(MAN_PAGE);
	const char *db_start, *db_end, *man_end = man + strlen(man);

	man_db_section(man, &db_start, &db_end);
	ck_assert_ptr_nonnull(db_start);
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		const char *body = NULL, *stop;
		char want[256];

		if (!find_opt_tag(man, o, &body))
			continue; /* reported by test_man_options */
		stop = entry_end(body, man_end);
		snprintf(want, sizeof(want), "Default: %s.", *o->def ? o->def : "empty");
		ck_assert_msg(
			contains(body, stop, want),
			"option %s in %s: its entry does not say \"%s\" (the default in cfg_options[])",
			o->name, MAN_PAGE, want);
		snprintf(want, sizeof(want), "Reload: %s",
			 o->reloadable ? "yes" : "restart needed");
		ck_assert_msg(
			contains(body, stop, want),
			"option %s in %s: its entry does not say \"%s\" (reloadable is %s in cfg_options[])",
			o->name, MAN_PAGE, want, o->reloadable ? "true" : "false");
	}
	free(man);
}
END_TEST

START_TEST(test_man_db_keys)
{
	char *man = read_doc(MAN_PAGE);
	const char *db_start, *db_end;

	man_db_section(man, &db_start, &db_end);
	ck_assert_msg(db_start != NULL, "%s has no .SH section naming [DATABASES]", MAN_PAGE);
	/* the keys cfg_db.c accepts, then "*": the entry serving every database not listed */
	for (size_t i = 0; i <= cfg_db_nkeys(); i++) {
		const char *key = i < cfg_db_nkeys() ? cfg_db_key(i) : "*";
		ck_assert_msg(find_tag(db_start, db_end, key, NULL),
			      "[databases] key %s is not documented in %s: no \".TP\" entry with "
			      "the tag line \".B %s\" in the [DATABASES] section",
			      key, MAN_PAGE, key);
	}
	ck_assert_uint_ge(cfg_db_nkeys(), 12);
	free(man);
}
END_TEST

START_TEST(test_sample_conf_options)
{
	char *conf = read_doc(SAMPLE_CONF);
	char value[1024];
	bool commented;

	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		bool found = conf_value(conf, o->section, o->name, &commented, value,
					sizeof(value));

		ck_assert_msg(
			found || !commented,
			"option %s is commented out in %s: every option must be set, to its default",
			o->name, SAMPLE_CONF);
		ck_assert_msg(found, "option %s is missing from %s: no line \"%s = %s\" in [%s]",
			      o->name, SAMPLE_CONF, o->name, o->def,
			      o->section ? o->section : "cratebouncer");
		ck_assert_msg(strcmp(value, o->def) == 0,
			      "option %s in %s is \"%s\", not its default \"%s\"", o->name,
			      SAMPLE_CONF, value, o->def);
	}
	free(conf);
}
END_TEST

/* The sample names no option the parser would reject (a renamed or removed option). */
START_TEST(test_sample_conf_known)
{
	char *conf = read_doc(SAMPLE_CONF);
	const char *p = conf, *end = conf + strlen(conf);
	bool global = false;
	const char *section = NULL; /* "admin" or "http" in those sections */
	struct line l;

	while (next_line(&p, end, &l)) {
		if (l.len > 0 && l.start[0] == '[') {
			global = in_section(&l, NULL);
			section = in_section(&l, "admin")  ? "admin"
				  : in_section(&l, "http") ? "http"
							   : NULL;
			continue;
		}
		if ((!global && !section) || l.len == 0 || l.start[0] == ';' || l.start[0] == '#')
			continue;
		const char *eq = memchr(l.start, '=', l.len);
		if (!eq)
			continue;
		char name[128];
		size_t n = (size_t)(eq - l.start);
		while (n > 0 && isspace((unsigned char)l.start[n - 1]))
			n--;
		snprintf(name, sizeof(name), "%.*s", (int)n, l.start);
		ck_assert_msg(cfg_find_opt_in(section, name) != NULL,
			      "%s sets \"%s\", which is not in cfg_options[]", SAMPLE_CONF, name);
	}
	free(conf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("docs");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_man_options);
	tcase_add_test(tc, test_man_defaults);
	tcase_add_test(tc, test_man_db_keys);
	tcase_add_test(tc, test_sample_conf_options);
	tcase_add_test(tc, test_sample_conf_known);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
