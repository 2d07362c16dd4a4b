/* The config (cfg.c) and the auth_file (authfile.c), from the input as their text.
 * Byte 0: bit 0 the auth_file, else the config; bit 1 through a temporary file
 * (cfg_load, authfile_load: the NUL check, relative paths), else in memory.
 * Config, checked: every error reads "NAME:LINE: ..."; a config without errors has every
 * option within its table's bounds, enums by name, [databases] and [users] entries
 * unique and in range, cfg_find_db finds each, a copy is the same upstream; written back
 * as text (where its strings survive an ini line) it parses again to the same values,
 * and SET of each reloadable option to its own value (the admin console) changes nothing.
 * auth_file, checked: an error names the line; a parsed file answers, for every
 * `"user" "secret"` line (doubled quotes unescaped), the secret of the last line for that
 * user, and a line added at the end replaces what was there. Inputs naming /dev, /proc
 * or /sys are skipped (password_file= reads the file it names). */
#include "fuzz_common.h"

#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include "pgwire/authfile.h"
#include "core/cfg.h"

#define NAME "fuzz"

static char dir[64];

static void cleanup(void)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/input", dir);
	unlink(path);
	rmdir(dir);
}

static void setup(void)
{
	if (*dir)
		return;
	unsetenv("CREDENTIALS_DIRECTORY");
	snprintf(dir, sizeof(dir), "/tmp/cb-fuzz-config.XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	atexit(cleanup);
}

/* The input as a file of its own; the path (static). */
static const char *as_file(const uint8_t *data, size_t size)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/input", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, data, size) == (ssize_t)size);
	close(fd);
	return path;
}

static size_t count_lines(const char *t)
{
	size_t n = 1;

	for (; *t; t++)
		n += *t == '\n';
	return n;
}

/* "NAME:LINE: message" with LINE within the text (0: the file as a whole). */
static void check_error(const char *e, const char *name, size_t lines)
{
	size_t n = strlen(name);

	CHECK(e && strncmp(e, name, n) == 0 && e[n] == ':');
	char *end;
	unsigned long line = strtoul(e + n + 1, &end, 10);
	CHECK(end > e + n + 1 && end[0] == ':' && end[1] == ' ' && end[2]);
	CHECK(line <= lines + 1);
}

/* ---- the config ------------------------------------------------------------------- */

static bool ini_safe(const char *s)
{
	if (!s)
		return false;
	size_t n = strlen(s);
	if (n && (isspace((unsigned char)s[0]) || isspace((unsigned char)s[n - 1])))
		return false;
	for (; *s; s++)
		if (*s == ';' || *s == '#' || *s == '\n' || *s == '\r' || *s == '\\' || *s == '\'' ||
		    (unsigned char)*s < 0x20)
			return false;
	return true;
}

static bool name_safe(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_.-*", *s))
			return false;
	return true;
}

static void put_opt(FILE *f, const struct cfg *cfg, const struct cfg_opt *o)
{
	const char *field = (const char *)cfg + o->offset;

	fprintf(f, "%s = ", o->name);
	switch (o->type) {
	case CFG_STR:
		fprintf(f, "%s\n", *(char *const *)field);
		break;
	case CFG_INT:
		fprintf(f, strstr(o->name, "_mode") ? "0%o\n" : "%d\n", *(const int *)field);
		break;
	case CFG_TIME:
		fprintf(f, "%.17g\n", *(const double *)field);
		break;
	case CFG_BOOL:
		fprintf(f, "%d\n", *(const bool *)field);
		break;
	case CFG_ENUM:
		fprintf(f, "%s\n", cfg_enum_name(o, *(const int *)field));
		break;
	}
}

static void put_val(FILE *f, const char *key, const char *v)
{
	if (v)
		fprintf(f, " %s='%s'", key, v);
}

/* The config as text, or NULL when a value would not survive being written. */
static char *write_back(const struct cfg *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	static const char *const sections[] = { NULL, "admin", "http" };
	static const char *const mode[] = { "session", "transaction", "statement" };
	static const char *const ssl[] = { "disable", "require", "verify-ca", "verify-full" };
	static const char *const kind[] = { "auto", "cratedb", "postgresql" };
	bool ok = true;

	CHECK(f != NULL);
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		if (o->type == CFG_STR && !ini_safe(*(char *const *)((const char *)cfg + o->offset)))
			ok = false;
		if (o->type == CFG_TIME) {
			double v = *(const double *)((const char *)cfg + o->offset);
			if (v != 0 && fabs(v) < 1e-300)
				ok = false;	/* subnormal: strtod says ERANGE */
		}
	}
	for (size_t s = 0; s < 3; s++) {
		fprintf(f, "[%s]\n", sections[s] ? sections[s] : "cratebouncer");
		for (size_t i = 0; i < cfg_noptions; i++) {
			const struct cfg_opt *o = &cfg_options[i];
			if ((o->section == NULL) == (sections[s] == NULL) &&
			    (!o->section || strcmp(o->section, sections[s]) == 0))
				put_opt(f, cfg, o);
		}
	}
	fprintf(f, "[databases]\n");
	for (size_t i = 0; i < cfg->ndbs; i++) {
		const struct cfg_db *d = &cfg->dbs[i];
		const char *strs[] = { d->host, d->dbname, d->user, d->password, d->sslrootcert };
		if (!name_safe(d->name))
			ok = false;
		for (size_t k = 0; k < 5; k++)
			if (strs[k] && (!ini_safe(strs[k]) || !*strs[k] || strchr(strs[k], ' ')))
				ok = false;
		fprintf(f, "%s =", d->name);
		put_val(f, "host", d->host);
		fprintf(f, " port=%d", d->port);
		put_val(f, "dbname", d->dbname);
		put_val(f, "user", d->user);
		put_val(f, "password", d->password);
		put_val(f, "sslrootcert", d->sslrootcert);
		if (d->pool_size >= 0)
			fprintf(f, " pool_size=%d", d->pool_size);
		if (d->min_pool_size >= 0)
			fprintf(f, " min_pool_size=%d", d->min_pool_size);
		if (d->pool_mode >= 0)
			fprintf(f, " pool_mode=%s", mode[d->pool_mode]);
		if (d->sslmode >= 0)
			fprintf(f, " sslmode=%s", ssl[d->sslmode]);
		fprintf(f, " server_kind=%s\n", kind[d->server_kind]);
	}
	fprintf(f, "[users]\n");
	for (size_t i = 0; i < cfg->nusers; i++) {
		if (!name_safe(cfg->users[i].name))
			ok = false;
		if (cfg->users[i].pool_mode >= 0)
			fprintf(f, "%s = pool_mode=%s\n", cfg->users[i].name, mode[cfg->users[i].pool_mode]);
		else
			fprintf(f, "%s =\n", cfg->users[i].name);
	}
	fclose(f);
	if (!ok) {
		free(text);
		return NULL;
	}
	return text;
}

static bool same_s(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const struct cfg *a, const struct cfg *b)
{
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		const char *fa = (const char *)a + o->offset, *fb = (const char *)b + o->offset;
		switch (o->type) {
		case CFG_STR:
			CHECK(strcmp(*(char *const *)fa, *(char *const *)fb) == 0);
			break;
		case CFG_INT:
		case CFG_ENUM:
			CHECK(*(const int *)fa == *(const int *)fb);
			break;
		case CFG_TIME:
			CHECK(*(const double *)fa == *(const double *)fb);
			break;
		case CFG_BOOL:
			CHECK(*(const bool *)fa == *(const bool *)fb);
			break;
		}
	}
	CHECK(a->ndbs == b->ndbs && a->nusers == b->nusers);
	for (size_t i = 0; i < a->ndbs; i++) {
		const struct cfg_db *x = &a->dbs[i], *y = &b->dbs[i];
		CHECK(strcmp(x->name, y->name) == 0);
		CHECK(cfg_db_same_upstream(a, x, b, y));
		CHECK(x->pool_size == y->pool_size && x->min_pool_size == y->min_pool_size &&
		      x->pool_mode == y->pool_mode && x->server_kind == y->server_kind &&
		      same_s(x->sslrootcert, y->sslrootcert));
	}
	for (size_t i = 0; i < a->nusers; i++)
		CHECK(strcmp(a->users[i].name, b->users[i].name) == 0 &&
		      a->users[i].pool_mode == b->users[i].pool_mode);
}

static int enum_count(const struct cfg_opt *o)
{
	int n = 0;

	while (o->names[n])
		n++;
	return n;
}

static void check_config(struct cfg *cfg, const char *name, size_t lines)
{
	for (size_t i = 0; i < cfg->nerrors; i++)
		check_error(cfg->errors[i], name, lines);
	if (cfg->nerrors)
		return;
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		const char *field = (const char *)cfg + o->offset;
		switch (o->type) {
		case CFG_STR:
			CHECK(*(char *const *)field != NULL);
			break;
		case CFG_INT:
			CHECK(*(const int *)field >= o->min && *(const int *)field <= o->max);
			break;
		case CFG_TIME: {
			double v = *(const double *)field;
			CHECK(isfinite(v) && v >= o->min && v <= o->max);
			break;
		}
		case CFG_BOOL:
			break;
		case CFG_ENUM:
			CHECK(*(const int *)field >= 0 && *(const int *)field < enum_count(o));
			break;
		}
		CHECK(cfg_find_opt_in(o->section, o->name) == o);
	}
	for (size_t i = 0; i < cfg->ndbs; i++) {
		const struct cfg_db *d = &cfg->dbs[i];
		CHECK(d->name && d->host);
		CHECK(d->port >= 1 && d->port <= 65535);
		CHECK(d->pool_size >= -1 && d->pool_size <= 10000);
		CHECK(d->min_pool_size >= -1 && d->min_pool_size <= 10000);
		CHECK(d->pool_mode >= -1 && d->pool_mode <= POOL_STATEMENT);
		CHECK(d->sslmode >= -1 && d->sslmode <= SSLMODE_VERIFY_FULL);
		CHECK(d->server_kind >= SERVER_KIND_AUTO && d->server_kind <= SERVER_KIND_POSTGRESQL);
		CHECK(cfg_find_db(cfg, d->name) == d);
		int m = cfg_pool_mode(cfg, d, NULL);
		CHECK(m >= POOL_SESSION && m <= POOL_STATEMENT);
		CHECK(cfg_db_pool_size(cfg, d) >= 0);
		struct cfg_db *dup = cfg_db_dup(d);
		CHECK(cfg_db_same_upstream(cfg, d, cfg, dup));
		cfg_db_clear(dup);
		free(dup);
	}
	for (size_t i = 0; i < cfg->nusers; i++) {
		CHECK(cfg->users[i].pool_mode >= -1 && cfg->users[i].pool_mode <= POOL_STATEMENT);
		for (size_t k = 0; k < i; k++)
			CHECK(strcmp(cfg->users[i].name, cfg->users[k].name) != 0);
		int m = cfg_pool_mode(cfg, NULL, cfg->users[i].name);
		CHECK(m >= POOL_SESSION && m <= POOL_STATEMENT);
	}

	char *text = write_back(cfg);
	if (text) {
		struct cfg *again = cfg_parse_string(text, "again");
		if (again->nerrors)
			fprintf(stderr, "written back:\n%s\nerror: %s\n", text, again->errors[0]);
		CHECK(again->nerrors == 0);
		check_same(cfg, again);
		cfg_free(again);
		free(text);
	}

	/* SET of a reloadable option to the value it has */
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		if (!o->reloadable || o->section)
			continue;
		char *val = NULL, *err = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&val, &len);
		CHECK(f != NULL);
		put_opt(f, cfg, o);
		fclose(f);
		char *v = val + strlen(o->name) + 3;
		v[strcspn(v, "\n")] = '\0';
		if (o->type == CFG_TIME) {
			double before = *(const double *)((const char *)cfg + o->offset);
			if (before != 0 && fabs(before) < 1e-300) {
				free(val);
				continue;
			}
		}
		int rc = cfg_set(cfg, o->name, v, &err);
		if (rc != 0)
			fprintf(stderr, "SET %s = '%s': %s\n", o->name, v, err);
		CHECK(rc == 0);
		free(val);
	}
}

/* ---- auth_file ---------------------------------------------------------------------- */

/* One quoted field as authfile.c reads it (greedy about doubled quotes); NULL if the line
 * ends first. */
static char *quoted(const char **p)
{
	const char *s = *p + 1;
	char *out = malloc(strlen(s) + 1), *o = out;

	CHECK(out != NULL);
	for (; *s != '"' || s[1] == '"'; s++) {
		if (*s == '\0' || *s == '\n') {
			free(out);
			return NULL;
		}
		if (*s == '"')
			s++;
		*o++ = *s;
	}
	*o = '\0';
	*p = s + 1;
	return out;
}

static const char *blank(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static void check_authfile(const char *text, const char *name, struct authfile *af, char *err)
{
	if (!af) {
		CHECK(err != NULL);
		check_error(err, name, count_lines(text));
		free(err);
		return;
	}
	CHECK(err == NULL);
	/* every line's user has the secret of its last line */
	char **users = NULL, **secrets = NULL;
	size_t n = 0;
	for (const char *p = text; *p;) {
		const char *q = blank(p);
		if (*q == '"') {
			char *user = quoted(&q);
			CHECK(user && *user);
			q = blank(q);
			CHECK(*q == '"');
			char *secret = quoted(&q);
			CHECK(secret != NULL);
			users = realloc(users, (n + 1) * sizeof(*users));
			secrets = realloc(secrets, (n + 1) * sizeof(*secrets));
			CHECK(users && secrets);
			users[n] = user;
			secrets[n++] = secret;
		} else {
			CHECK(*q == '\n' || *q == '\0' || *q == ';' || *q == '#');
		}
		p = q + strcspn(q, "\n");
		if (*p == '\n')
			p++;
	}
	for (size_t i = 0; i < n; i++) {
		bool last = true;
		for (size_t k = i + 1; k < n && last; k++)
			last = strcmp(users[k], users[i]) != 0;
		const char *found = authfile_lookup(af, users[i]);
		CHECK(found != NULL);
		if (last)
			CHECK(strcmp(found, secrets[i]) == 0);
	}
	for (size_t i = 0; i < n; i++) {
		free(users[i]);
		free(secrets[i]);
	}
	free(users);
	free(secrets);
	/* a line at the end replaces an entry */
	size_t tl = strlen(text);
	char *more = malloc(tl + 64);
	CHECK(more != NULL);
	snprintf(more, tl + 64, "%s\n\"fuzz\"\"user\" \"sec\"\"ret\"\n", text);
	char *err2 = NULL;
	struct authfile *af2 = authfile_parse(more, name, &err2);
	if (af2) {
		const char *s = authfile_lookup(af2, "fuzz\"user");
		CHECK(s && strcmp(s, "sec\"ret") == 0);
	} else {
		CHECK(!"a valid file with a valid line added failed");
	}
	authfile_free(af2);
	free(err2);
	free(more);
	authfile_free(af);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_init();
	setup();
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	if (memmem(data, size, "/dev", 4) || memmem(data, size, "/proc", 5) ||
	    memmem(data, size, "/sys", 4))
		return 0;
	char *text = malloc(size + 1);
	CHECK(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	bool has_nul = strlen(text) != size;

	if (mode & 1) {
		char *err = NULL;
		struct authfile *af;
		const char *name = NAME;
		if (mode & 2) {
			name = as_file(data, size);
			af = authfile_load(name, &err);
			if (has_nul) {
				CHECK(!af && err && strstr(err, "NUL"));
				free(err);
				free(text);
				return 0;
			}
		} else {
			af = authfile_parse(text, name, &err);
		}
		check_authfile(text, name, af, err);
	} else {
		struct cfg *cfg;
		const char *name = NAME;
		if (mode & 2) {
			name = as_file(data, size);
			cfg = cfg_load(name);
		} else {
			cfg = cfg_parse_string(text, name);
		}
		CHECK(cfg != NULL);
		if (!has_nul)
			check_config(cfg, name, count_lines(text));
		cfg_free(cfg);
	}
	free(text);
	return 0;
}
