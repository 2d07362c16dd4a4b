/* Prepared statement bookkeeping: the interned statements (a hash table keyed by
 * content), each client's names for them and each server's prepared set with its LRU
 * order (glibc's tsearch trees). No I/O here: relay.c decides what goes on the wire. */
#include "prepared.h"

#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define NAME_LEN 32

struct ps_stmt {
	struct ps_stmt *next; /* hash chain */
	uint64_t hash;
	uint64_t id;
	uint32_t refs;
	bool ok;
	size_t len;
	size_t ctxlen; /* the context after the body (CrateDB: search_path) */
	char name[NAME_LEN];
	uint8_t body[];
};

struct map_entry {
	struct ps_stmt *st;
	char name[];
};

struct ps_map {
	void *root;
	size_t n;
};

struct set_entry {
	TAILQ_ENTRY(set_entry) lru; /* most recently used first */
	struct ps_stmt *st;
};

struct ps_set {
	void *root;
	TAILQ_HEAD(ps_set_lru, set_entry) lru;
	size_t n;
};

static struct ps_stmt **buckets;
static size_t nbuckets, nstmts;
static uint64_t next_id;

static uint64_t fnv1a_from(uint64_t h, const uint8_t *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t key_hash(const uint8_t *body, size_t len, const char *ctx, size_t ctxlen)
{
	uint64_t h = fnv1a_from(1469598103934665603ull, body, len);

	return ctxlen ? fnv1a_from(h ^ 0x9e3779b97f4a7c15ull, (const uint8_t *)ctx, ctxlen) : h;
}

static int grow(void)
{
	size_t n = nbuckets ? nbuckets * 2 : 256;
	struct ps_stmt **b = calloc(n, sizeof(*b));

	if (!b)
		return -1;
	for (size_t i = 0; i < nbuckets; i++) {
		struct ps_stmt *st, *next;
		for (st = buckets[i]; st; st = next) {
			next = st->next;
			st->next = b[st->hash & (n - 1)];
			b[st->hash & (n - 1)] = st;
		}
	}
	free(buckets);
	buckets = b;
	nbuckets = n;
	return 0;
}

static struct ps_stmt *lookup(const uint8_t *body, size_t len, const char *ctx, size_t ctxlen,
			      uint64_t h)
{
	struct ps_stmt *st;

	if (nbuckets)
		for (st = buckets[h & (nbuckets - 1)]; st; st = st->next)
			if (st->hash == h && st->len == len && st->ctxlen == ctxlen &&
			    memcmp(st->body, body, len) == 0 &&
			    (!ctxlen || memcmp(st->body + len, ctx, ctxlen) == 0)) {
				st->refs++;
				return st;
			}
	return NULL;
}

struct ps_stmt *ps_find(const uint8_t *body, size_t len, const char *ctx)
{
	size_t cl = ctx ? strlen(ctx) : 0;

	return lookup(body, len, ctx, cl, key_hash(body, len, ctx, cl));
}

void ps_set_ok(struct ps_stmt *st)
{
	st->ok = true;
}

bool ps_is_ok(const struct ps_stmt *st)
{
	return st->ok;
}

struct ps_stmt *ps_intern(const uint8_t *body, size_t len, const char *ctx)
{
	size_t cl = ctx ? strlen(ctx) : 0;
	uint64_t h = key_hash(body, len, ctx, cl);
	struct ps_stmt *st = lookup(body, len, ctx, cl, h);

	if (st)
		return st;
	if (nstmts + 1 > nbuckets && grow() < 0 && !nbuckets)
		return NULL;
	st = malloc(sizeof(*st) + len + cl);
	if (!st)
		return NULL;
	st->ctxlen = cl;
	if (cl)
		memcpy(st->body + len, ctx, cl);
	st->hash = h;
	st->id = ++next_id;
	st->refs = 1;
	st->ok = false;
	st->len = len;
	memcpy(st->body, body, len);
	snprintf(st->name, sizeof(st->name), "cratebouncer_%llu", (unsigned long long)st->id);
	st->next = buckets[h & (nbuckets - 1)];
	buckets[h & (nbuckets - 1)] = st;
	nstmts++;
	return st;
}

void ps_ref(struct ps_stmt *st)
{
	st->refs++;
}

void ps_unref(struct ps_stmt *st)
{
	struct ps_stmt **pp;

	if (!st || --st->refs > 0)
		return;
	for (pp = &buckets[st->hash & (nbuckets - 1)]; *pp; pp = &(*pp)->next)
		if (*pp == st) {
			*pp = st->next;
			break;
		}
	nstmts--;
	free(st);
	if (nstmts == 0) {
		free(buckets);
		buckets = NULL;
		nbuckets = 0;
	}
}

const char *ps_server_name(const struct ps_stmt *st)
{
	return st->name;
}

const uint8_t *ps_body(const struct ps_stmt *st, size_t *len)
{
	*len = st->len;
	return st->body;
}

size_t ps_count(void)
{
	return nstmts;
}

/* client maps */

static int map_cmp(const void *a, const void *b)
{
	return strcmp(((const struct map_entry *)a)->name, ((const struct map_entry *)b)->name);
}

static struct map_entry *map_find(const struct ps_map *m, const char *name)
{
	size_t n = strlen(name);
	char buf[sizeof(struct map_entry) + 128];
	struct map_entry *key = (struct map_entry *)buf, **found;

	if (!m)
		return NULL;
	if (n >= 128) {
		key = malloc(sizeof(*key) + n + 1);
		if (!key)
			return NULL;
	}
	memcpy(key->name, name, n + 1);
	found = tfind(key, &m->root, map_cmp);
	if (key != (struct map_entry *)buf)
		free(key);
	return found ? *found : NULL;
}

int ps_map_put(struct ps_map **m, const char *name, struct ps_stmt *st)
{
	struct map_entry *e = map_find(*m, name);

	if (e) {
		st->refs++;
		ps_unref(e->st);
		e->st = st;
		return 0;
	}
	if (!*m && !(*m = calloc(1, sizeof(**m))))
		return -1;
	e = malloc(sizeof(*e) + strlen(name) + 1);
	if (!e)
		return -1;
	strcpy(e->name, name);
	e->st = st;
	if (!tsearch(e, &(*m)->root, map_cmp)) {
		free(e);
		return -1;
	}
	st->refs++;
	(*m)->n++;
	return 0;
}

struct ps_stmt *ps_map_get(const struct ps_map *m, const char *name)
{
	struct map_entry *e = map_find(m, name);

	return e ? e->st : NULL;
}

bool ps_map_del(struct ps_map **m, const char *name)
{
	struct map_entry *e = map_find(*m, name);

	if (!e)
		return false;
	tdelete(e, &(*m)->root, map_cmp);
	(*m)->n--;
	ps_unref(e->st);
	free(e);
	return true;
}

static void map_entry_free(void *p)
{
	struct map_entry *e = p;

	ps_unref(e->st);
	free(e);
}

void ps_map_free(struct ps_map **m)
{
	if (!*m)
		return;
	tdestroy((*m)->root, map_entry_free);
	free(*m);
	*m = NULL;
}

size_t ps_map_count(const struct ps_map *m)
{
	return m ? m->n : 0;
}

/* server sets */

static int set_cmp(const void *a, const void *b)
{
	const struct ps_stmt *x = ((const struct set_entry *)a)->st,
			     *y = ((const struct set_entry *)b)->st;

	return x->id < y->id ? -1 : x->id > y->id;
}

static struct set_entry *set_find(const struct ps_set *s, struct ps_stmt *st)
{
	struct set_entry key = { .st = st }, **found;

	if (!s)
		return NULL;
	found = tfind(&key, &s->root, set_cmp);
	return found ? *found : NULL;
}

bool ps_set_has(struct ps_set **s, struct ps_stmt *st)
{
	struct set_entry *e = set_find(*s, st);

	if (!e)
		return false;
	if (e != TAILQ_FIRST(&(*s)->lru)) {
		TAILQ_REMOVE(&(*s)->lru, e, lru);
		TAILQ_INSERT_HEAD(&(*s)->lru, e, lru);
	}
	return true;
}

int ps_set_add(struct ps_set **s, struct ps_stmt *st, int max, struct ps_stmt **evicted)
{
	struct set_entry *e;

	*evicted = NULL;
	if (ps_set_has(s, st))
		return 0;
	if (!*s) {
		if (!(*s = calloc(1, sizeof(**s))))
			return -1;
		TAILQ_INIT(&(*s)->lru);
	}
	e = malloc(sizeof(*e));
	if (!e)
		return -1;
	e->st = st;
	if (!tsearch(e, &(*s)->root, set_cmp)) {
		free(e);
		return -1;
	}
	st->refs++;
	TAILQ_INSERT_HEAD(&(*s)->lru, e, lru);
	(*s)->n++;
	if (max > 0 && (*s)->n > (size_t)max) {
		struct set_entry *victim = TAILQ_LAST(&(*s)->lru, ps_set_lru);
		TAILQ_REMOVE(&(*s)->lru, victim, lru);
		tdelete(victim, &(*s)->root, set_cmp);
		(*s)->n--;
		*evicted = victim->st; /* the set's reference passes to the caller */
		free(victim);
	}
	return 0;
}

void ps_set_del(struct ps_set **s, struct ps_stmt *st)
{
	struct set_entry *e = set_find(*s, st);

	if (!e)
		return;
	TAILQ_REMOVE(&(*s)->lru, e, lru);
	tdelete(e, &(*s)->root, set_cmp);
	(*s)->n--;
	ps_unref(e->st);
	free(e);
}

static void set_entry_free(void *p)
{
	struct set_entry *e = p;

	ps_unref(e->st);
	free(e);
}

void ps_set_free(struct ps_set **s)
{
	if (!*s)
		return;
	tdestroy((*s)->root, set_entry_free);
	free(*s);
	*s = NULL;
}

size_t ps_set_count(const struct ps_set *s)
{
	return s ? s->n : 0;
}
