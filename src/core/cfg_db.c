/* The [databases] and [users] sections: libpq-style "key=value" entries parsed into
 * struct cfg_db by the table db_keys[], and what the rest asks of an entry (its pool
 * size, sslmode, CA file; whether two entries reach the same upstream). */
#include "cfg_int.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* libpq-style "key=value key='quoted value'" into the next token; NULL at the end. */
static const char *next_kv(const char *p, char *key, size_t keysz, char *val, size_t valsz,
			   const char **err)
{
	size_t n = 0;

	while (isspace((unsigned char)*p))
		p++;
	if (!*p)
		return NULL;
	while (*p && *p != '=' && !isspace((unsigned char)*p)) {
		if (n + 1 < keysz)
			key[n++] = *p;
		p++;
	}
	key[n] = '\0';
	while (isspace((unsigned char)*p))
		p++;
	if (*p != '=') {
		*err = "expected key=value";
		return NULL;
	}
	p++;
	while (isspace((unsigned char)*p))
		p++;
	n = 0;
	if (*p == '\'') {
		p++;
		for (;;) {
			if (!*p) {
				*err = "unterminated quoted value";
				return NULL;
			}
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '\'') {
				p++;
				break;
			}
			if (n + 1 >= valsz) {
				*err = "value is too long";
				return NULL;
			}
			val[n++] = *p;
			p++;
		}
	} else {
		while (*p && !isspace((unsigned char)*p)) {
			if (n + 1 >= valsz) {
				*err = "value is too long";
				return NULL;
			}
			val[n++] = *p;
			p++;
		}
	}
	val[n] = '\0';
	return p;
}

/* A [databases] entry being parsed: the entry, and its password_file until it is read. */
struct db_parse {
	struct cfg_db db;
	char *password_file;
};

/* The keys of a [databases] entry (check_docs reads this table): a string, an integer
 * from lo to hi, or one of names. */
static const struct db_key {
	const char *key;
	enum { DK_STR, DK_INT, DK_ENUM } kind;
	size_t off; /* into struct db_parse: char * or int */
	long lo, hi;
	const char *const *names;
} db_keys[] = {
	{ "host", DK_STR, offsetof(struct db_parse, db.host), 0, 0, NULL },
	{ "port", DK_INT, offsetof(struct db_parse, db.port), 1, 65535, NULL },
	{ "dbname", DK_STR, offsetof(struct db_parse, db.dbname), 0, 0, NULL },
	{ "user", DK_STR, offsetof(struct db_parse, db.user), 0, 0, NULL },
	{ "password", DK_STR, offsetof(struct db_parse, db.password), 0, 0, NULL },
	{ "password_file", DK_STR, offsetof(struct db_parse, password_file), 0, 0, NULL },
	{ "pool_size", DK_INT, offsetof(struct db_parse, db.pool_size), 0, 10000, NULL },
	{ "min_pool_size", DK_INT, offsetof(struct db_parse, db.min_pool_size), 0, 10000, NULL },
	{ "pool_mode", DK_ENUM, offsetof(struct db_parse, db.pool_mode), 0, 0, pool_mode_names },
	{ "sslmode", DK_ENUM, offsetof(struct db_parse, db.sslmode), 0, 0, sslmode_names },
	{ "sslrootcert", DK_STR, offsetof(struct db_parse, db.sslrootcert), 0, 0, NULL },
	{ "server_kind", DK_ENUM, offsetof(struct db_parse, db.server_kind), 0, 0,
	  server_kind_names },
};

const char *cfg_db_key(size_t i)
{
	return i < sizeof(db_keys) / sizeof(db_keys[0]) ? db_keys[i].key : NULL;
}

size_t cfg_db_nkeys(void)
{
	return sizeof(db_keys) / sizeof(db_keys[0]);
}

/* One key=value of entry name into dp; false after reporting why not. */
static bool set_db_key(struct parse_ctx *ctx, const char *name, struct db_parse *dp,
		       const char *key, const char *val)
{
	struct cfg *cfg = ctx->cfg;
	const struct db_key *k = NULL;
	long iv;

	for (size_t i = 0; i < sizeof(db_keys) / sizeof(db_keys[0]) && !k; i++)
		if (strcmp(key, db_keys[i].key) == 0)
			k = &db_keys[i];
	if (!k) {
		cfg_error(cfg, ctx->name, ctx->lineno, "database \"%s\": unknown parameter \"%s\"",
			  name, key);
		return false;
	}
	void *field = (char *)dp + k->off;
	switch (k->kind) {
	case DK_STR:
		free(*(char **)field);
		*(char **)field = xstrdup(val);
		return true;
	case DK_INT:
		if (cfg_parse_int(val, &iv, 10) < 0 || iv < k->lo || iv > k->hi) {
			cfg_error(cfg, ctx->name, ctx->lineno,
				  "database \"%s\": %s: \"%s\" must be an integer from %ld to %ld",
				  name, key, val, k->lo, k->hi);
			return false;
		}
		*(int *)field = (int)iv;
		return true;
	case DK_ENUM: {
		int ev = cfg_parse_enum(k->names, val);
		if (ev < 0) {
			char *l = cfg_enum_list(k->names);
			cfg_error(cfg, ctx->name, ctx->lineno,
				  "database \"%s\": %s: \"%s\" is not one of: %s", name, key, val,
				  l);
			free(l);
			return false;
		}
		*(int *)field = ev;
		return true;
	}
	}
	return false;
}

/* The entry's keys are in: the checks across keys, and password_file read. */
static bool finish_db(struct parse_ctx *ctx, const char *name, struct db_parse *dp)
{
	struct cfg *cfg = ctx->cfg;
	struct cfg_db *db = &dp->db;

	if (!db->host) {
		cfg_error(cfg, ctx->name, ctx->lineno, "database \"%s\": host= is required", name);
		return false;
	}
	if (db->password && dp->password_file) {
		cfg_error(cfg, ctx->name, ctx->lineno,
			  "database \"%s\": give password= or password_file=, not both", name);
		return false;
	}
	if (!dp->password_file)
		return true;
	char *why = NULL, *path = cfg_expand_path(dp->password_file, ctx->dir, &why);
	db->password = path ? read_secret_file(path, &why) : NULL;
	if (!db->password)
		cfg_error(cfg, ctx->name, ctx->lineno, "database \"%s\": password_file %s: %s",
			  name, path ? path : dp->password_file, why);
	else
		cfg_check_secret_file(cfg, path, "password_file");
	free(why);
	free(path);
	return db->password != NULL;
}

void cfg_parse_db(struct parse_ctx *ctx, const char *name, const char *value)
{
	struct cfg *cfg = ctx->cfg;
	struct db_parse dp = { .db = { .port = 5432,
				       .pool_size = -1,
				       .min_pool_size = -1,
				       .pool_mode = -1,
				       .sslmode = -1,
				       .server_kind = SERVER_KIND_AUTO } };
	char key[64], val[1024];
	const char *p = value, *err = NULL;
	bool ok = true;

	for (size_t i = 0; i < cfg->ndbs; i++)
		if (strcmp(cfg->dbs[i].name, name) == 0) {
			cfg_error(cfg, ctx->name, ctx->lineno, "database \"%s\" is defined twice",
				  name);
			return;
		}
	while (ok && (p = next_kv(p, key, sizeof(key), val, sizeof(val), &err)))
		ok = set_db_key(ctx, name, &dp, key, val);
	if (ok && err) {
		cfg_error(cfg, ctx->name, ctx->lineno, "database \"%s\": %s", name, err);
		ok = false;
	}
	if (dp.db.password && !dp.password_file)
		ctx->inline_password = true;
	ok = ok && finish_db(ctx, name, &dp);
	free(dp.password_file);
	if (!ok) {
		free(dp.db.host);
		free(dp.db.dbname);
		free(dp.db.user);
		free(dp.db.password);
		free(dp.db.sslrootcert);
		return;
	}
	dp.db.name = xstrdup(name);
	cfg->dbs = xrealloc(cfg->dbs, (cfg->ndbs + 1) * sizeof(*cfg->dbs));
	cfg->dbs[cfg->ndbs++] = dp.db;
}

/* A [users] entry: "name = pool_mode=transaction". */
void cfg_parse_user(struct parse_ctx *ctx, const char *name, const char *value)
{
	struct cfg *cfg = ctx->cfg;
	struct cfg_user u = { .pool_mode = -1 };
	char key[64], val[1024];
	const char *p = value, *err = NULL;

	for (size_t i = 0; i < cfg->nusers; i++)
		if (strcmp(cfg->users[i].name, name) == 0) {
			cfg_error(cfg, ctx->name, ctx->lineno, "user \"%s\" is defined twice",
				  name);
			return;
		}
	while ((p = next_kv(p, key, sizeof(key), val, sizeof(val), &err))) {
		if (strcmp(key, "pool_mode") == 0) {
			u.pool_mode = cfg_parse_enum(pool_mode_names, val);
			if (u.pool_mode < 0) {
				char *l = cfg_enum_list(pool_mode_names);
				cfg_error(cfg, ctx->name, ctx->lineno,
					  "user \"%s\": pool_mode: \"%s\" is not one of: %s", name,
					  val, l);
				free(l);
				return;
			}
		} else {
			cfg_error(cfg, ctx->name, ctx->lineno,
				  "user \"%s\": unknown parameter \"%s\"", name, key);
			return;
		}
	}
	if (err) {
		cfg_error(cfg, ctx->name, ctx->lineno, "user \"%s\": %s", name, err);
		return;
	}
	u.name = xstrdup(name);
	cfg->users = xrealloc(cfg->users, (cfg->nusers + 1) * sizeof(*cfg->users));
	cfg->users[cfg->nusers++] = u;
}

int cfg_pool_mode(const struct cfg *cfg, const struct cfg_db *db, const char *user)
{
	for (size_t i = 0; user && i < cfg->nusers; i++)
		if (strcmp(cfg->users[i].name, user) == 0 && cfg->users[i].pool_mode >= 0)
			return cfg->users[i].pool_mode;
	if (db && db->pool_mode >= 0)
		return db->pool_mode;
	return cfg->pool_mode;
}

void cfg_db_clear(struct cfg_db *db)
{
	free(db->name);
	free(db->host);
	free(db->dbname);
	free(db->user);
	free_secret(db->password);
	free(db->sslrootcert);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct cfg_db *cfg_db_dup(const struct cfg_db *db)
{
	struct cfg_db *d = xmalloc(sizeof(*d));

	*d = *db;
	d->name = xstrdup(db->name);
	d->host = xstrdup(db->host);
	d->dbname = dup_or_null(db->dbname);
	d->user = dup_or_null(db->user);
	d->password = dup_or_null(db->password);
	d->sslrootcert = dup_or_null(db->sslrootcert);
	return d;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool cfg_db_same_upstream(const struct cfg *ca, const struct cfg_db *a, const struct cfg *cb,
			  const struct cfg_db *b)
{
	return same_str(a->host, b->host) && a->port == b->port && same_str(a->dbname, b->dbname) &&
	       same_str(a->user, b->user) && same_str(a->password, b->password) &&
	       cfg_db_sslmode(ca, a) == cfg_db_sslmode(cb, b) &&
	       same_str(cfg_db_ca_file(ca, a), cfg_db_ca_file(cb, b));
}

const struct cfg_db *cfg_find_db(const struct cfg *cfg, const char *name)
{
	const struct cfg_db *fallback = NULL;

	for (size_t i = 0; i < cfg->ndbs; i++) {
		if (strcmp(cfg->dbs[i].name, name) == 0)
			return &cfg->dbs[i];
		if (strcmp(cfg->dbs[i].name, "*") == 0)
			fallback = &cfg->dbs[i];
	}
	return fallback;
}

int cfg_db_pool_size(const struct cfg *cfg, const struct cfg_db *db)
{
	return db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size;
}

int cfg_db_min_pool_size(const struct cfg *cfg, const struct cfg_db *db)
{
	return db->min_pool_size >= 0 ? db->min_pool_size : cfg->min_pool_size;
}

int cfg_db_sslmode(const struct cfg *cfg, const struct cfg_db *db)
{
	return db->sslmode >= 0 ? db->sslmode : cfg->server_tls_sslmode;
}

const char *cfg_db_ca_file(const struct cfg *cfg, const struct cfg_db *db)
{
	if (db->sslrootcert && *db->sslrootcert)
		return db->sslrootcert;
	return cfg->server_tls_ca_file && *cfg->server_tls_ca_file ? cfg->server_tls_ca_file : NULL;
}
