/* What a session has set, as the relay follows it: the tracked settings (a client's SET,
 * the upstream's ParameterStatus, the replay when a client is linked to a server whose
 * settings differ), on CrateDB its transaction and cursors, read from the statements
 * (CrateDB's ReadyForQuery does not tell them), the startup packet's options, and
 * CrateDB's own reset. The queue and the message loop are relay.c's. */
#include "relay_int.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "pgproto.h"
#include "prepared.h"

/* A parameter whose changes the upstream reports by ParameterStatus. CrateDB reports its
 * values at login but never after a SET: there every setting is followed from the text. */
bool rl_reported(const struct rl_opts *o, int i)
{
	return !o->crate && o->defaults && o->defaults[i];
}

/* value is the upstream's login value of parameter i. */
static bool is_default(const struct rl_opts *o, int i, const char *value)
{
	return o->defaults && o->defaults[i] && strcmp(o->defaults[i], value) == 0;
}

/* A SET's SQL value that is the login value in plain quotes ('ISO', psycopg2's DateStyle
 * on CrateDB, whose default it is). */
static bool raw_is_default(const struct rl_opts *o, int i, const char *raw)
{
	size_t n = strlen(raw);

	if (!o->defaults || !o->defaults[i] || n < 2 || raw[0] != '\'' || raw[n - 1] != '\'' ||
	    memchr(raw + 1, '\'', n - 2))
		return false;
	return strlen(o->defaults[i]) == n - 2 && strncasecmp(o->defaults[i], raw + 1, n - 2) == 0;
}

/* ---- CrateDB's transaction and cursors --------------------------------------------- */

/* Appends an effect record (op, name, NUL) to *fx, which stays NUL-terminated. */
int fx_add(char **fx, uint32_t *len, int op, const char *name)
{
	size_t n = strlen(name);
	char *b = realloc(*fx, *len + n + 3);

	if (!b)
		return -1;
	b[*len] = (char)op;
	memcpy(b + *len + 1, name, n + 1);
	*len += (uint32_t)n + 2;
	b[*len] = '\0';
	*fx = b;
	return 0;
}

/* The effects of the statements in sql (a Query's text or a Parse's statement). */
int fx_of(const char *sql, size_t len, char **fx, uint32_t *fxlen)
{
	const char *p = sql, *end = sql + len;
	char name[128];

	while (end > p && end[-1] == '\0')
		end--;
	while (p < end) {
		const char *next = sp_next_statement(p, end, true);
		int op = sp_tx_statement(p, (size_t)(next - p), name, sizeof(name));
		bool named = op == SP_TX_DECLARE || op == SP_TX_DECLARE_HOLD || op == SP_TX_CLOSE;
		if (op != SP_TX_NONE && fx_add(fx, fxlen, op, named ? name : "") < 0)
			return -1;
		p = next;
	}
	return 0;
}

/* Closes the cursors of this kind ('H', 'W'; 0: all) or this name. */
static void cursors_close(struct rl_server *s, char kind, const char *name)
{
	uint32_t w = 0;

	for (uint32_t i = 0; i < s->ncursors; i++) {
		char *cu = s->cursors[i];
		if ((name ? strcmp(cu + 1, name) == 0 : !kind || cu[0] == kind))
			free(cu);
		else
			s->cursors[w++] = cu;
	}
	s->ncursors = w;
}

static void cursor_open(struct rl_server *s, char kind, const char *name)
{
	size_t n = strlen(name);
	char **v = realloc(s->cursors, (s->ncursors + 1) * sizeof(*v));
	char *cu = malloc(n + 2);

	if (v)
		s->cursors = v;
	if (!v || !cu) {
		free(cu);
		s->tainted = true; /* its state is not known: closed after this client */
		return;
	}
	cu[0] = kind;
	memcpy(cu + 1, name, n + 1);
	s->cursors[s->ncursors++] = cu;
}

/* A Query or Sync was answered: its statements took effect. After an error only what
 * opens a transaction or a cursor is believed (holding the server longer is safe,
 * releasing it inside a transaction is not). */
void fx_apply(struct rl_server *s, const char *fx, bool failed)
{
	for (const char *p = fx; p && *p; p += strlen(p + 1) + 2) {
		const char *name = p + 1;
		switch (*p) {
		case SP_TX_BEGIN:
			s->crate_tx = true;
			break;
		case SP_TX_COMMIT:
			if (!failed) {
				s->crate_tx = false;
				cursors_close(s, 'W', NULL);
			}
			break;
		case SP_TX_DECLARE_HOLD:
			cursor_open(s, 'H', name);
			break;
		case SP_TX_DECLARE:
			/* WITHOUT HOLD needs a transaction; outside one CrateDB refuses it */
			if (s->crate_tx)
				cursor_open(s, 'W', name);
			break;
		case SP_TX_CLOSE:
			if (!failed)
				cursors_close(s, 0, name);
			break;
		case SP_TX_CLOSE_ALL:
			if (!failed)
				cursors_close(s, 0, NULL);
			break;
		case SP_TX_DISCARD_ALL:
			if (!failed) {
				cursors_close(s, 0, NULL);
				s->crate_tx = false;
			}
			break;
		default:
			break;
		}
	}
}

/* Does fx hold a record of op? (Records are op, name, NUL: strchr would stop at the
 * first one's end.) */
bool fx_has(const char *fx, int op)
{
	for (const char *p = fx; p && *p; p += strlen(p + 1) + 2)
		if (*p == op)
			return true;
	return false;
}

/* The status a CrateDB session really has. */
char crate_status(const struct rl_server *s)
{
	return s->crate_tx || s->ncursors ? 'T' : 'I';
}


/* A client's SET of a parameter the upstream does not report: both sides take it now. */
static void note_one(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
		     const char *sql, size_t len)
{
	int idx = -1;
	char *value = NULL;
	int rc = sp_parse_set(sql, len, o->crate, &idx, &value);

	if (rc == 1 || rc == 2 || rc == 4)
		s->noting |= RL_NOTE_UNDO;
	if (rc == 3 && !s->tainted) {
		/* a change the tracking cannot follow: what the server has is not known */
		s->tainted = true;
		log_debug("a session change cratebouncer cannot track (the session's user or "
			  "role, or a SET it cannot read): the server connection is closed after "
			  "this client");
	}
	if (rc == 1 && !rl_reported(o, idx)) {
		if (value && (strcasecmp(value, "DEFAULT") == 0 || raw_is_default(o, idx, value))) {
			free(value);
			value = NULL;
		}
		if (sp_put(&c->params, idx, value, true) < 0 ||
		    sp_put(&s->params, idx, value, true) < 0)
			log_warn("out of memory tracking a SET of %s", sp_name(idx));
	} else if ((rc == 2 || rc == 4) && !o->crate) {
		/* CrateDB has no RESET ALL, and its DISCARD ALL keeps the settings */
		for (int i = 0; i < sp_count(); i++)
			if (!rl_reported(o, i) && !(rc == 2 && sp_reset_all_keeps(i)) &&
			    (sp_put(&c->params, i, NULL, false) < 0 ||
			     sp_put(&s->params, i, NULL, false) < 0))
				log_warn("out of memory tracking RESET ALL");
	}
	free(value);
}

/* Every statement of a Query (or the one of a Parse) is looked at. */
void note_set(struct rl_server *s, struct rl_client *c, const struct rl_opts *o, const uint8_t *sql,
	      size_t len)
{
	const char *p = (const char *)sql, *end = p + len;

	while (end > p && end[-1] == '\0')
		end--;
	while (p < end) {
		const char *next = sp_next_statement(p, end, o->crate);
		note_one(s, c, o, p, (size_t)(next - p));
		p = next;
	}
}

/* ParameterStatus: the server's set and, unless it answers the replay, the client's. */
void param_status(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
		  const uint8_t *body, size_t len, bool replay, bool *pass)
{
	const char *name, *value;
	int i;

	*pass = !replay;
	if (pg_parse_param_status(body, len, &name, &value) < 0 ||
	    (i = sp_index(name, strlen(name))) < 0)
		return;
	const char *v = is_default(o, i, value) ? NULL : value;
	if (sp_put(&s->params, i, v, false) < 0)
		log_warn("out of memory tracking %s", name);
	if (!c)
		return;
	if (replay) {
		s->replay_mask &= ~(1ull << i);
		bool raw = false;
		const char *cv = sp_get(&c->params, i, &raw);
		if (cv && !raw && v && strcmp(cv, v) == 0)
			return;
		if (!cv && !v)
			return;
		*pass = true; /* the canonical form of what the client asked for */
	}
	if (sp_put(&c->params, i, v, false) < 0)
		log_warn("out of memory tracking %s", name);
}

/* The replay's ReadyForQuery: what it set without a ParameterStatus kept its value. */
void replay_done(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
		 struct evbuffer *to_client)
{
	if (s->inject_failed && c) {
		/* the server's settings are not known any more: it serves this transaction and
		 * is closed after it (rl_tainted), never reused with a wrong idea of its state */
		s->tainted = true;
		log_warn("a query cratebouncer sent to restore or clear a client's session state "
			 "failed on the upstream; the server connection is closed after this "
			 "transaction");
		/* what failed was a client's own SET the upstream had refused, which was tracked
		 * from its text: that setting goes back to the default (the server has it:
		 * rl_link reset it first); the client's other settings were given */
		for (int i = 0; i < sp_count(); i++)
			if ((s->replay_failed & (1ull << i)) && !rl_reported(o, i) &&
			    sp_put(&c->params, i, NULL, false) < 0)
				log_warn("out of memory tracking %s", sp_name(i));
	}
	for (int i = 0; c && i < sp_count(); i++) {
		if (!(s->replay_mask & (1ull << i)) || !rl_reported(o, i))
			continue;
		const char *v = sp_get(&s->params, i, NULL);
		if (sp_put(&c->params, i, v, false) < 0)
			log_warn("out of memory tracking %s", sp_name(i));
		pg_put_param_status(to_client, sp_name(i), v ? v : o->defaults[i]);
	}
	s->replay_mask = s->replay_failed = 0;
	s->replay_left = 0;
}

/* One Query of a replay, for parameter param (-1: a reset before its SET). */
static int replay_one(struct rl_server *s, char *sql, int param, struct evbuffer *to_server)
{
	if (!sql || rl_push(s, RQ_QUERY_DROP, NULL) < 0) {
		free(sql);
		return -1;
	}
	rl_tail(s)->param = (int8_t)param;
	pg_put_query(to_server, sql);
	log_debug("replaying session state: %s", sql);
	free(sql);
	s->replay_left++;
	return 0;
}

/* The client's settings, given to the server it is linked to: one Query per statement, so
 * that one the upstream refuses (a client's own SET, tracked from its text, that failed
 * then too) takes no other with it, as it would in one Query's implicit transaction. An
 * unreported parameter the client has a value for is reset first: if its SET is refused,
 * the server has the default, never the previous client's value. */
void rl_link(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
	     struct evbuffer *to_server)
{
	uint64_t mask = 0;

	s->noting = 0; /* whatever an earlier client's message left (no memory for its item) */
	if (sp_same(&c->params, &s->params))
		return;
	s->inject_failed = false;
	s->replay_failed = 0;
	s->replay_left = 0;
	for (int i = 0; i < sp_count(); i++) {
		if (!sp_differs(&c->params, &s->params, i))
			continue;
		bool raw = false;
		const char *v = sp_get(&c->params, i, &raw);
		if ((v && !rl_reported(o, i) && sp_get(&s->params, i, NULL) &&
		     replay_one(s, sp_stmt(&c->params, i, o->crate, true), -1, to_server) < 0) ||
		    replay_one(s, sp_stmt(&c->params, i, o->crate, false), i, to_server) < 0) {
			log_warn("out of memory: session parameters not replayed");
			s->tainted = true; /* what the server has is not known */
			break;
		}
		mask |= 1ull << i;
	}
	s->replay_mask = mask;
	/* unreported parameters: the server has the client's values from now on */
	for (int i = 0; i < sp_count(); i++) {
		bool raw = false;
		const char *v = sp_get(&c->params, i, &raw);
		if ((mask & (1ull << i)) && !rl_reported(o, i) && sp_put(&s->params, i, v, raw) < 0)
			log_warn("out of memory tracking %s", sp_name(i));
	}
}

void rl_inject(struct rl_server *s, const struct rl_opts *o, const char *sql,
	       struct evbuffer *to_server)
{
	int idx;
	char *value = NULL;

	s->inject_failed = false;
	s->noting = 0; /* a mark an earlier message left (no memory for its item) is no reset's */
	if (rl_push(s, RQ_QUERY_DROP, NULL) < 0) {
		s->inject_failed = true;
		return;
	}
	pg_put_query(to_server, sql);
	int rc = sp_parse_set(sql, strlen(sql), o->crate, &idx, &value);
	if (rc == 2 || rc == 4) {
		for (int i = 0; i < sp_count(); i++)
			if (!rl_reported(o, i) && !(rc == 2 && sp_reset_all_keeps(i)) &&
			    sp_put(&s->params, i, NULL, false) < 0)
				log_warn("out of memory tracking RESET ALL");
		if (rc == 4)
			ps_set_free(&s->prepared);
	}
	free(value);
}

/* Does running sql change what is tracked of a session: a setting, or (CrateDB) its
 * transaction or cursors? */
static bool tracked_effect(const struct rl_opts *o, const char *p, const char *end)
{
	char name[128];

	while (p < end) {
		const char *next = sp_next_statement(p, end, o->crate);
		int idx;
		char *value = NULL;
		int rc = sp_parse_set(p, (size_t)(next - p), o->crate, &idx, &value);
		free(value);
		if (rc != 0 || (o->crate && sp_tx_statement(p, (size_t)(next - p), name,
							    sizeof(name)) != SP_TX_NONE))
			return true;
		p = next;
	}
	return false;
}

/* The unnamed statement's text, kept from its Parse to its Bind when running it changes
 * what is tracked (only then: the hot path copies nothing). */
int keep_unnamed(struct rl_client *c, const struct rl_opts *o, const uint8_t *sql, size_t len)
{
	size_t n = rl_text_len(sql, len);

	free(c->unnamed);
	c->unnamed = NULL;
	c->unnamed_len = 0;
	if (!tracked_effect(o, (const char *)sql, (const char *)sql + n))
		return 0;
	if (!(c->unnamed = malloc(n ? n : 1)))
		return -1;
	memcpy(c->unnamed, sql, n);
	c->unnamed_len = n;
	return 0;
}


static int startup_options(struct rl_client *c, const struct rl_opts *o, const char *opts)
{
	const char *p = opts;
	char tok[1024];
	bool want_c = false;

	while (*p) {
		size_t n = 0;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		while (*p && *p != ' ' && *p != '\t' && n + 1 < sizeof(tok)) {
			if (*p == '\\' && p[1])
				p++;
			tok[n++] = *p++;
		}
		tok[n] = '\0';
		const char *kv = NULL;
		if (want_c)
			kv = tok;
		else if (strcmp(tok, "-c") == 0)
			want_c = true;
		else if (strncmp(tok, "-c", 2) == 0)
			kv = tok + 2;
		else if (strncmp(tok, "--", 2) == 0)
			kv = tok + 2;
		if (!kv)
			continue;
		want_c = false;
		const char *eq = strchr(kv, '=');
		int i = eq ? sp_index(kv, (size_t)(eq - kv)) : -1;
		if (i < 0) {
			log_warn("startup option \"%s\" ignored: not a tracked parameter (see "
				 "track_extra_parameters)",
				 kv);
			continue;
		}
		if (is_default(o, i, eq + 1))
			continue;
		if (sp_put(&c->params, i, eq + 1, false) < 0)
			return -1;
	}
	return 0;
}

int rl_client_startup(struct rl_client *c, const char *params, const struct rl_opts *o)
{
	const char *p = params;

	while (p && *p) {
		const char *k = p, *v = p + strlen(p) + 1;
		p = v + strlen(v) + 1;
		if (strcmp(k, "options") == 0) {
			if (startup_options(c, o, v) < 0)
				return -1;
			continue;
		}
		int i = sp_index(k, strlen(k));
		if (i < 0)
			continue;
		if (is_default(o, i, v))
			continue;
		if (sp_put(&c->params, i, v, false) < 0)
			return -1;
	}
	return 0;
}

void rl_reset_crate(struct rl_server *s, const struct rl_opts *o, struct evbuffer *to_server)
{
	struct sp_set none = { 0 };
	uint64_t mask;
	char *set = sp_diff_sql(&none, &s->params, &mask, true);
	size_t n = strlen(CRATE_RESET) + (set ? strlen(set) + 2 : 0) + 1;
	char *sql = malloc(n);
	uint32_t fl = 0;

	(void)o;
	s->inject_failed = false;
	s->noting = 0;
	if (!sql || rl_push(s, RQ_QUERY_DROP, NULL) < 0 ||
	    fx_add(&rl_tail(s)->fx, &fl, SP_TX_DISCARD_ALL, "") < 0) {
		free(sql);
		free(set);
		s->inject_failed = true;
		s->tainted = true;
		return;
	}
	snprintf(sql, n, "%s%s%s", CRATE_RESET, set ? "; " : "", set ? set : "");
	pg_put_query(to_server, sql);
	log_debug("resetting a CrateDB session: %s", sql);
	free(sql);
	free(set);
	sp_clear(&s->params);
	ps_set_free(&s->prepared);
}
