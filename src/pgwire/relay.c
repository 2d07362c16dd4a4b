/* The message relay. Client messages whose names matter (Parse, Bind, Describe, Close,
 * Query) are handled whole; everything else streams. Each forwarded request that gets an
 * answer pushes one item on the server's queue, and each answer pops it in order:
 *
 *   Parse -> ParseComplete      Bind -> BindComplete     Close -> CloseComplete
 *   Describe -> RowDescription/NoData (after ParameterDescription for a statement)
 *   Execute -> CommandComplete/EmptyQuery/PortalSuspended (or an error)
 *   Sync, Query, FunctionCall -> ReadyForQuery
 *
 * After an ErrorResponse in the extended protocol the server skips everything up to the
 * next Sync; the items up to it go unanswered. Items the relay answers itself sit in the
 * queue at their place and are emitted when they reach the head. */
#include "relay_int.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "pgproto.h"
#include "prepared.h"

static bool is_fake(int kind)
{
	return kind >= RQ_FAKE_PARSE;
}

void rl_client_init(struct rl_client *c)
{
	memset(c, 0, sizeof(*c));
}

void rl_client_clear(struct rl_client *c)
{
	ps_map_free(&c->names);
	sp_clear(&c->params);
	free(c->unnamed);
	c->unnamed = NULL;
	c->unnamed_len = 0;
	c->pass = 0;
}

void rl_server_init(struct rl_server *s)
{
	memset(s, 0, sizeof(*s));
	s->status = 'I';
}

static struct rl_item *head(const struct rl_server *s)
{
	return s->qlen ? &s->q[s->qhead] : NULL;
}

static void pop(struct rl_server *s)
{
	struct rl_item *it = &s->q[s->qhead];

	if ((it->kind == RQ_PARSE || it->kind == RQ_PARSE_DROP) && it->st)
		s->parses--;
	s->tx_noted |= it->noted; /* answered: its transaction is the current one */
	ps_unref(it->st);
	it->st = NULL;
	free(it->fx);
	it->fx = NULL;
	s->qhead = (s->qhead + 1) % s->qcap;
	s->qlen--;
}

/* The item last pushed (the queue is not empty). */
struct rl_item *rl_tail(struct rl_server *s)
{
	return &s->q[(s->qhead + s->qlen - 1) % s->qcap];
}

/* One DISCARD ALL and nothing else. */
static bool discard_all(const uint8_t *sql, size_t len)
{
	const char *p = (const char *)sql, *end = p + len;
	char name[8];

	while (end > p && end[-1] == '\0')
		end--;
	const char *next = sp_next_statement(p, end, true);
	if (sp_tx_statement(p, (size_t)(next - p), name, sizeof(name)) != SP_TX_DISCARD_ALL)
		return false;
	for (; next < end; next++)
		if (*next != ';' && *next != ' ' && *next != '\t' && *next != '\n' && *next != '\r')
			return false;
	return true;
}

void rl_server_clear(struct rl_server *s)
{
	while (s->qlen)
		pop(s);
	free(s->q);
	s->q = NULL;
	s->qcap = s->qhead = 0;
	ps_set_free(&s->prepared);
	sp_clear(&s->params);
	for (uint32_t i = 0; i < s->ncursors; i++)
		free(s->cursors[i]);
	free(s->cursors);
	s->cursors = NULL;
	s->ncursors = 0;
	free(s->fx);
	s->fx = NULL;
	s->fxlen = 0;
}

size_t rl_client_prepared(const struct rl_client *c)
{
	return ps_map_count(c->names);
}

size_t rl_server_prepared(const struct rl_server *s)
{
	return ps_set_count(s->prepared);
}

size_t rl_pending(const struct rl_server *s)
{
	return s->qlen;
}

size_t rl_parses_pending(const struct rl_server *s)
{
	return s->parses;
}

bool rl_quiet(const struct rl_server *s, const struct rl_client *c)
{
	return s->qlen == 0 && s->pass == 0 && !s->unsynced && (!c || c->pass == 0);
}

bool rl_idle(const struct rl_server *s, const struct rl_client *c)
{
	return rl_quiet(s, c) && s->status == 'I';
}

bool rl_idle_ahead(const struct rl_server *s, const struct rl_client *c, size_t n)
{
	return s->qlen == n && s->pass == 0 && !s->unsynced && (!c || c->pass == 0) &&
	       s->status == 'I';
}

/* -1: no memory. st gets a new reference. */
int rl_push(struct rl_server *s, int kind, struct ps_stmt *st)
{
	if (s->qlen == s->qcap) {
		uint32_t cap = s->qcap ? s->qcap * 2 : 16;
		struct rl_item *q = malloc(cap * sizeof(*q));
		if (!q)
			return -1;
		for (uint32_t i = 0; i < s->qlen; i++)
			q[i] = s->q[(s->qhead + i) % s->qcap];
		free(s->q);
		s->q = q;
		s->qhead = 0;
		s->qcap = cap;
	}
	struct rl_item *it = &s->q[(s->qhead + s->qlen) % s->qcap];
	if ((kind == RQ_PARSE || kind == RQ_PARSE_DROP) && st)
		s->parses++; /* a named statement others may come to rely on */
	it->kind = (uint8_t)kind;
	it->param = -1;
	it->noted = s->noting;
	s->noting = false;
	it->st = st;
	it->fx = NULL;
	if (st)
		ps_ref(st);
	s->qlen++;
	return 0;
}

static void put_hdr(struct evbuffer *out, char type, size_t body_len)
{
	uint8_t h[PG_HDR_LEN];
	uint32_t n = (uint32_t)body_len + 4;

	h[0] = (uint8_t)type;
	h[1] = (uint8_t)(n >> 24);
	h[2] = (uint8_t)(n >> 16);
	h[3] = (uint8_t)(n >> 8);
	h[4] = (uint8_t)n;
	evbuffer_add(out, h, sizeof(h));
}

/* Puts Parse(server name, body) on the wire, evicting beyond max_prepared; -1: no memory. */
static int prepare_on(struct rl_server *s, const struct rl_opts *o, struct ps_stmt *st,
		      struct evbuffer *out, int kind)
{
	struct ps_stmt *ev = NULL;
	size_t blen;
	const uint8_t *body = ps_body(st, &blen);
	const char *name = ps_server_name(st);
	size_t nlen = strlen(name) + 1;

	if (ps_set_add(&s->prepared, st, o->max_prepared, &ev) < 0)
		return -1;
	if (ev) {
		const char *en = ps_server_name(ev);
		put_hdr(out, 'C', 1 + strlen(en) + 1);
		evbuffer_add(out, "S", 1);
		evbuffer_add(out, en, strlen(en) + 1);
		int rc = rl_push(s, RQ_CLOSE_DROP, ev); /* skipped after an error: it stays */
		ps_unref(ev);
		if (rc < 0)
			return -1;
	}
	put_hdr(out, 'P', nlen + blen);
	s->server_parses++;
	evbuffer_add(out, name, nlen);
	evbuffer_add(out, body, blen);
	if (rl_push(s, kind, st) < 0) {
		ps_set_del(&s->prepared, st);
		return -1;
	}
	return 0;
}

/* The statement is on the server, or a Parse for it goes first. */
static int ensure(struct rl_server *s, const struct rl_opts *o, struct ps_stmt *st,
		  struct evbuffer *out)
{
	if (ps_set_has(&s->prepared, st))
		return 0;
	return prepare_on(s, o, st, out, RQ_PARSE_DROP);
}

/* A message with its name field at name_off replaced by the statement's server name. */
static void put_renamed(struct evbuffer *out, char type, const uint8_t *body, size_t len,
			size_t name_off, size_t name_len, const struct ps_stmt *st)
{
	const char *sn = ps_server_name(st);
	size_t snlen = strlen(sn) + 1;

	put_hdr(out, type, len - name_len + snlen);
	if (name_off)
		evbuffer_add(out, body, name_off);
	evbuffer_add(out, sn, snlen);
	evbuffer_add(out, body + name_off + name_len, len - name_off - name_len);
}

static size_t field_len(const uint8_t *p, size_t len)
{
	const uint8_t *z = memchr(p, 0, len);

	return z ? (size_t)(z - p) + 1 : 0;
}

/* DEALLOCATE [PREPARE] name | ALL, as one statement: 1 name, 2 ALL, 0 other. */
static int parse_deallocate(const char *sql, size_t len, char *name, size_t name_max)
{
	const char *p = sql, *end = sql + len;

	while (end > p && (end[-1] == '\0' || end[-1] == ';' || end[-1] == ' ' || end[-1] == '\n'))
		end--;
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\t'))
		p++;
	if (end - p < 11 || strncasecmp(p, "DEALLOCATE", 10) != 0 ||
	    (p[10] != ' ' && p[10] != '\t'))
		return 0;
	p += 11;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p > 8 && strncasecmp(p, "PREPARE", 7) == 0 && (p[7] == ' ' || p[7] == '\t')) {
		p += 8;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
	}
	if (end - p == 3 && strncasecmp(p, "ALL", 3) == 0)
		return 2;
	size_t n = 0;
	bool quoted = p < end && *p == '"';
	if (quoted)
		p++;
	while (p + n < end && n + 1 < name_max) {
		char ch = p[n];
		if (quoted ? ch == '"'
			   : !(ch == '_' || ch == '$' || (ch >= '0' && ch <= '9') ||
			       (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
			break;
		name[n] = quoted ? ch : (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
		n++;
	}
	if (n == 0 || p + n + quoted != end)
		return 0;
	name[n] = '\0';
	return 1;
}

/* DEALLOCATE of a client's name, in a Query (off 0) or an unnamed Parse (off: after the
 * name): the statement goes from the client and from this server, by its server name
 * (prepared here first, so that the command succeeds as it would have); DEALLOCATE ALL
 * passes and this server's set is forgotten. 1: rewritten into to_server, 0: pass the
 * message as is, -1: no memory. */
static int deallocate(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
		      const uint8_t *body, size_t blen, size_t off, struct evbuffer *to_server)
{
	char name[128];
	const uint8_t *sql = body + off;
	size_t qlen = field_len(sql, blen - off);
	int d = o->rename && qlen ? parse_deallocate((const char *)sql, qlen, name, sizeof(name))
				  : 0;
	struct ps_stmt *st;

	if (d == 2) {
		ps_map_free(&c->names);
		ps_set_free(&s->prepared);
		s->noting |= RL_NOTE_REFUSE;
		return 0;
	}
	if (d != 1 || !(st = ps_map_get(c->names, name)))
		return 0;
	if (!off && !ps_set_has(&s->prepared, st)) {
		/* a Query, and this server never had it: nothing to do upstream (preparing it
		 * first could fail and take the Query with it) */
		ps_map_del(&c->names, name);
		return 2;
	}
	if (ensure(s, o, st, to_server) < 0)
		return -1;
	char text[64];
	int n = snprintf(text, sizeof(text), "DEALLOCATE %s", ps_server_name(st));
	size_t rest = blen - off - qlen; /* a Parse's parameter types */
	put_hdr(to_server, off ? 'P' : 'Q', off + (size_t)n + 1 + rest);
	if (off)
		evbuffer_add(to_server, body, off);
	evbuffer_add(to_server, text, (size_t)n + 1);
	if (rest)
		evbuffer_add(to_server, sql + qlen, rest);
	ps_set_del(&s->prepared, st);
	ps_map_del(&c->names, name);
	s->noting |= RL_NOTE_REFUSE;
	return 1;
}


/* What a shared statement is keyed by besides its text: on CrateDB the search_path it is
 * analysed under (at Parse, never again), so that clients with different search_paths
 * never run each other's. */
static const char *stmt_ctx(const struct rl_client *c, const struct rl_opts *o)
{
	static int sp = -2;

	if (!o->crate)
		return NULL;
	if (sp == -2)
		sp = sp_index("search_path", 11);
	const char *v = sp >= 0 ? sp_get(&c->params, sp, NULL) : NULL;
	return v ? v : "";
}

/* A Parse's query text without its terminator and parameter types. */
size_t rl_text_len(const uint8_t *p, size_t len)
{
	const uint8_t *z = memchr(p, 0, len);

	return z ? (size_t)(z - p) : len;
}


/* Messages handled whole. */
static bool whole(uint8_t type)
{
	return type == 'P' || type == 'B' || type == 'D' || type == 'C' || type == 'Q';
}

enum rl_result rl_from_client(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
			      struct evbuffer *in, struct evbuffer *to_server, const char **err)
{
	uint8_t hdr[PG_HDR_LEN];

	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (c->pass) {
			size_t n = avail < c->pass ? avail : c->pass;
			if (n == 0)
				return RL_OK;
			if (c->drop)
				evbuffer_drain(in, n);
			else
				evbuffer_remove_buffer(in, to_server, n);
			c->pass -= (uint32_t)n;
			c->drop = c->drop && c->pass;
			continue;
		}
		if (avail < PG_HDR_LEN)
			return RL_OK;
		evbuffer_copyout(in, hdr, PG_HDR_LEN);
		uint32_t mlen = pg_get_u32(hdr + 1);
		uint8_t type = hdr[0];
		if (mlen < 4 || mlen > 0x3fffffff) {
			*err = "invalid message length from client";
			return RL_ERROR;
		}
		if (o->max_packet && mlen > o->max_packet) {
			/* refused at its header: a Query, Parse or Bind is held whole until its
			 * last byte, and one client must not make the daemon hold a gigabyte */
			static char why[96];
			snprintf(why, sizeof(why),
				 "message of %u bytes from client is over max_packet_size (%u)",
				 mlen, o->max_packet);
			*err = why;
			return RL_ERROR;
		}
		if (type == 'X') {
			evbuffer_drain(in, avail);
			return RL_TERMINATE;
		}
		if (type == 0 || !strchr("QFBCDEHPSdcf", type)) {
			/* PostgreSQL ends the session of a client that sends any other type (FATAL
			 * 08P01), and with it the queries of other clients pipelined behind: the
			 * client is refused here, the server is not touched */
			static char why[64];
			snprintf(why, sizeof(why), "invalid frontend message type %u", type);
			*err = why;
			return RL_ERROR;
		}
		if (o->crate && (type == 'F' || type == 'd' || type == 'c' || type == 'f')) {
			/* CrateDB answers a FunctionCall with an ErrorResponse and no ReadyForQuery
			 * (the client would hang): cratebouncer answers it. It has no COPY FROM
			 * STDIN, so COPY messages can only come outside COPY mode, where
			 * PostgreSQL ignores them: so does cratebouncer. */
			if (type == 'F' && rl_push(s, RQ_FAKE_FUNCCALL, NULL) < 0)
				goto nomem;
			c->pass = mlen + 1;
			c->drop = true;
			continue;
		}
		int kind = -1;
		switch (type) {
		case 'E':
			kind = RQ_EXECUTE;
			break;
		case 'S':
			kind = RQ_SYNC;
			break;
		case 'F':
			kind = RQ_QUERY;
			break;
		default:
			break;
		}
		if (type == 'S')
			s->unsynced = false;
		else if (type == 'P' || type == 'B' || type == 'D' || type == 'E' || type == 'C' ||
			 type == 'H')
			s->unsynced = true;
		if (!whole(type)) {
			if (kind >= 0 && rl_push(s, kind, NULL) < 0)
				goto nomem;
			if (type == 'S' && o->crate && s->fx) {
				/* what the group's statements do, applied at its ReadyForQuery */
				rl_tail(s)->fx = s->fx;
				s->fx = NULL;
				s->fxlen = 0;
			}
			c->pass = mlen + 1;
			continue;
		}
		if (avail < (size_t)mlen + 1)
			return RL_OK;
		uint8_t *msg = evbuffer_pullup(in, (ev_ssize_t)mlen + 1);
		if (!msg)
			goto nomem;
		const uint8_t *body = msg + PG_HDR_LEN;
		size_t blen = mlen - 4;
		size_t n1 = field_len(body, blen);
		if (n1 == 0 && blen > 0) {
			*err = "malformed message from client (unterminated name)";
			return RL_ERROR;
		}
		bool done = false; /* consumed here, not passed as is */
		switch (type) {
		case 'Q': {
			/* the server reads the text up to its first NUL, and so does the tracking */
			size_t qlen = rl_text_len(body, blen);
			if (o->crate && discard_all(body, qlen)) {
				/* CrateDB's DISCARD ALL would make the session uncancellable (it leaves
				 * the cancel map): what it clears is cleared this way instead */
				if (o->rename)
					ps_map_free(&c->names);
				ps_set_free(&s->prepared);
				if (rl_push(s, RQ_QUERY_DROP, NULL) < 0 ||
				    fx_add(&rl_tail(s)->fx, &(uint32_t){ 0 }, SP_TX_DISCARD_ALL,
					   "") < 0 ||
				    rl_push(s, RQ_FAKE_DISCARD, NULL) < 0)
					goto nomem;
				s->inject_failed = false;
				pg_put_query(to_server, CRATE_RESET);
				evbuffer_drain(in, mlen + 1);
				continue;
			}
			int d = deallocate(s, c, o, body, blen, 0, to_server);
			if (d < 0)
				goto nomem;
			if (d == 2) {
				if (rl_push(s, RQ_FAKE_DEALLOCATE, NULL) < 0)
					goto nomem;
				evbuffer_drain(in, mlen + 1);
				continue;
			}
			done = d == 1;
			if (!done) {
				note_set(s, c, o, body, qlen);
				if (o->rename && qlen >= 11 &&
				    strncasecmp((const char *)body, "DISCARD ALL", 11) == 0) {
					/* the server forgets every statement; so does this client */
					ps_map_free(&c->names);
					ps_set_free(&s->prepared);
					s->noting |= RL_NOTE_REFUSE;
				}
			}
			if (rl_push(s, RQ_QUERY, NULL) < 0)
				goto nomem;
			if (o->crate) {
				uint32_t n = 0;
				if (fx_of((const char *)body, qlen, &rl_tail(s)->fx, &n) < 0)
					goto nomem;
			}
			break;
		}
		case 'P': {
			if (n1 == 0 || n1 > blen) {
				*err = "malformed Parse message";
				return RL_ERROR;
			}
			/* what a statement does (a SET, BEGIN, DECLARE) is noted when it is bound,
			 * not here: a client may prepare in one transaction and run it in another,
			 * and until then the server's settings are what they were */
			if (n1 == 1 && keep_unnamed(c, o, body + n1, blen - n1) < 0)
				goto nomem;
			if (n1 > 1 && !o->rename)
				note_set(s, c, o, body + n1, rl_text_len(body + n1, blen - n1));
			s->client_parses++;
			if (!o->rename || n1 == 1) {
				int d = o->rename ? deallocate(s, c, o, body, blen, n1, to_server)
						  : 0;
				if (d < 0)
					goto nomem;
				done = d == 1;
				s->server_parses++;
				if (rl_push(s, RQ_PARSE, NULL) < 0)
					goto nomem;
				break;
			}
			struct ps_stmt *st = ps_intern(body + n1, blen - n1, stmt_ctx(c, o));
			if (!st || ps_map_put(&c->names, (const char *)body, st) < 0) {
				ps_unref(st);
				goto nomem;
			}
			int rc = ps_set_has(&s->prepared, st)
					 ? rl_push(s, RQ_FAKE_PARSE, NULL)
					 : prepare_on(s, o, st, to_server, RQ_PARSE);
			ps_unref(st);
			if (rc < 0)
				goto nomem;
			done = true;
			break;
		}
		case 'B': {
			size_t n2 = n1 && n1 < blen ? field_len(body + n1, blen - n1) : 0;
			if (n2 == 0) {
				*err = "malformed Bind message";
				return RL_ERROR;
			}
			s->binds++;
			struct ps_stmt *st = o->rename && n2 > 1
						     ? ps_map_get(c->names, (const char *)body + n1)
						     : NULL;
			size_t bl = 0;
			const uint8_t *b = st ? ps_body(st, &bl) : n2 == 1 ? c->unnamed : NULL;
			if (b) {
				bl = st ? rl_text_len(b, bl) : c->unnamed_len;
				note_set(s, c, o, b, bl);
				if (o->crate && fx_of((const char *)b, bl, &s->fx, &s->fxlen) < 0)
					goto nomem;
			}
			if (st) {
				/* what ensure queues (a Parse, an eviction's Close) is not what
				 * made the change: the Bind's item carries it */
				uint8_t nt = s->noting;
				s->noting = 0;
				if (ensure(s, o, st, to_server) < 0)
					goto nomem;
				s->noting = nt;
				put_renamed(to_server, 'B', body, blen, n1, n2, st);
				done = true;
			}
			if (rl_push(s, RQ_BIND, NULL) < 0)
				goto nomem;
			break;
		}
		case 'D':
		case 'C': {
			if (blen < 2 || field_len(body + 1, blen - 1) != blen - 1) {
				*err = type == 'D' ? "malformed Describe message"
						   : "malformed Close message";
				return RL_ERROR;
			}
			bool stmt = body[0] == 'S' && blen > 2 && o->rename;
			if (type == 'C' && stmt) {
				/* the server keeps it for others; the client's name goes */
				ps_map_del(&c->names, (const char *)body + 1);
				if (rl_push(s, RQ_FAKE_CLOSE, NULL) < 0)
					goto nomem;
				done = true;
				break;
			}
			struct ps_stmt *st = stmt ? ps_map_get(c->names, (const char *)body + 1)
						  : NULL;
			if (st) {
				if (ensure(s, o, st, to_server) < 0)
					goto nomem;
				put_renamed(to_server, 'D', body, blen, 1, blen - 1, st);
				done = true;
			}
			if (rl_push(s, type == 'D' ? RQ_DESCRIBE : RQ_CLOSE, NULL) < 0)
				goto nomem;
			break;
		}
		}
		if (done)
			evbuffer_drain(in, mlen + 1);
		else
			evbuffer_remove_buffer(in, to_server, mlen + 1);
	}
nomem:
	*err = "out of memory";
	return RL_ERROR;
}

bool rl_flush_fakes(struct rl_server *s, const struct rl_opts *o, struct evbuffer *to_client)
{
	struct rl_item *it;
	bool ready = false;

	if (s->pass)
		return false; /* never inside a message being passed */
	while ((it = head(s)) && is_fake(it->kind)) {
		switch (it->kind) {
		case RQ_FAKE_PARSE:
			put_hdr(to_client, '1', 0);
			break;
		case RQ_FAKE_CLOSE:
			put_hdr(to_client, '3', 0);
			break;
		case RQ_FAKE_FUNCCALL:
			pg_put_error(to_client, "ERROR", "0A000", "%s",
				     "FunctionCall messages are not supported by CrateDB");
			pg_put_ready(to_client, s->status);
			ready = true;
			break;
		case RQ_FAKE_DISCARD:
			if (s->inject_failed)
				pg_put_error(to_client, "ERROR", "XX000", "%s",
					     "DISCARD ALL failed on the upstream");
			else
				pg_put_msg(to_client, 'C', "DISCARD ALL", 12);
			pg_put_ready(to_client, 'I'); /* CrateDB after any simple Query */
			ready = true;
			break;
		default:
			pg_put_msg(to_client, 'C', "DEALLOCATE", 11);
			pg_put_ready(to_client, o->crate ? 'I' : s->status);
			ready = true;
			break;
		}
		pop(s);
	}
	return ready;
}


/* An error in the extended protocol: the server skips to the next Sync. */
static void skip_to_sync(struct rl_server *s)
{
	struct rl_item *it;

	while ((it = head(s)) && it->kind != RQ_SYNC) {
		struct ps_stmt *ev = NULL;
		if ((it->kind == RQ_PARSE || it->kind == RQ_PARSE_DROP) && it->st)
			ps_set_del(&s->prepared, it->st);
		/* the server skipped the Close of an evicted statement: it still has it */
		if (it->kind == RQ_CLOSE_DROP && it->st &&
		    ps_set_add(&s->prepared, it->st, 0, &ev) < 0)
			s->tainted = true;
		if (it->noted)
			s->tx_error = true; /* a change tracked from a request that never ran */
		pop(s);
	}
}

bool rl_mid_message(const struct rl_server *s)
{
	return s->pass && !s->drop;
}

/* Moves the bytes decided to pass (dropped when nobody is linked). */
static void flush(struct evbuffer *in, struct evbuffer *to, size_t *acc)
{
	if (!*acc)
		return;
	if (to)
		evbuffer_remove_buffer(in, to, *acc);
	else
		evbuffer_drain(in, *acc);
	*acc = 0;
}

int rl_from_server(struct rl_server *s, struct rl_client *c, const struct rl_opts *o,
		   struct evbuffer *in, struct evbuffer *to_client,
		   void (*ready)(void *arg, char status), void *arg, const char **err)
{
	size_t acc = 0; /* bytes at the front of in that pass, not yet moved */
	uint8_t small[SMALL_MSG];
	struct evbuffer_ptr pos;

	for (;;) {
		size_t avail = evbuffer_get_length(in) - acc;
		if (s->pass) {
			size_t n = avail < s->pass ? avail : s->pass;
			if (n == 0)
				break;
			if (s->drop) {
				flush(in, c ? to_client : NULL, &acc);
				evbuffer_drain(in, n);
			} else {
				acc += n;
			}
			s->pass -= (uint32_t)n;
			continue;
		}
		if (s->qlen && is_fake(head(s)->kind)) {
			/* the relay's own answers, in their place (dropped with the rest when
			 * nobody is linked: a pipelined client that left) */
			flush(in, c ? to_client : NULL, &acc);
			if (rl_flush_fakes(s, o, to_client) && ready && c)
				ready(arg, s->status);
			continue;
		}
		if (avail < PG_HDR_LEN)
			break;
		uint8_t hdr[PG_HDR_LEN + 1];
		evbuffer_ptr_set(in, &pos, acc, EVBUFFER_PTR_SET);
		evbuffer_copyout_from(in, &pos, hdr,
				      avail > PG_HDR_LEN ? PG_HDR_LEN + 1 : PG_HDR_LEN);
		uint32_t mlen = pg_get_u32(hdr + 1);
		uint8_t type = hdr[0];
		if (mlen < 4 || mlen > 0x3fffffff) {
			*err = "upstream sent an invalid message length";
			return -1;
		}
		if (type != 'Z' && avail < (size_t)mlen + 1 && mlen + 1 <= RL_SERVER_WHOLE)
			goto out; /* a small message passes whole, or not yet (a ReadyForQuery
					 * is checked first, below) */
		struct rl_item *it = head(s);
		int kind = it ? it->kind : -1;
		bool replay = kind == RQ_QUERY_DROP;
		bool pass = !replay;
		bool restatus = false; /* a ReadyForQuery passed with the session's real status */
		switch (type) {
		case '1':
			if (kind == RQ_PARSE || kind == RQ_PARSE_DROP) {
				pass = kind == RQ_PARSE;
				if (it->st)
					ps_set_ok(it->st);
				pop(s);
			}
			break;
		case '2':
			if (kind == RQ_BIND)
				pop(s);
			break;
		case '3':
			if (kind == RQ_CLOSE || kind == RQ_CLOSE_DROP) {
				pass = kind == RQ_CLOSE;
				pop(s);
			}
			break;
		case 'T':
		case 'n':
			if (kind == RQ_DESCRIBE)
				pop(s);
			break;
		case 'C':
			if (((s->tx_noted | (it ? it->noted : 0)) & RL_NOTE_UNDO) && !replay &&
			    !o->crate && mlen >= 4 + 8) {
				/* ROLLBACK, ROLLBACK TO: what was noted may be undone */
				char tag[8];
				struct evbuffer_ptr at = pos;
				if (evbuffer_ptr_set(in, &at, PG_HDR_LEN, EVBUFFER_PTR_ADD) == 0 &&
				    evbuffer_copyout_from(in, &at, tag, sizeof(tag)) ==
					    sizeof(tag) &&
				    memcmp(tag, "ROLLBACK", 8) == 0)
					s->tx_rolled = true;
			}
			/* fall through */
		case 'I':
		case 's':
			if (kind == RQ_EXECUTE)
				pop(s);
			break;
		case 'E':
			if (replay) {
				s->inject_failed = true;
				if (it->param >= 0)
					s->replay_failed |= 1ull << it->param;
			} else {
				s->failed = true;
				/* CrateDB undoes nothing: only a failure of the requests that
				 * made the change leaves its effect unknown */
				if (!o->crate || s->tx_noted || (it && it->noted))
					s->tx_error = true;
			}
			if (!replay && kind >= 0 && kind != RQ_QUERY)
				skip_to_sync(s);
			break;
		case 'Z': {
			/* its status byte is read here and the message may be replaced whole: any
			 * other length would pass the rest, or read the next message's type */
			if (mlen != 5) {
				*err = "upstream sent a malformed ReadyForQuery";
				return -1;
			}
			if (avail < PG_HDR_LEN + 1)
				goto out;
			char raw = (char)hdr[5];
			bool done = false;
			while (!done && (it = head(s))) {
				done = it->kind == RQ_SYNC || it->kind == RQ_QUERY ||
				       it->kind == RQ_QUERY_DROP;
				if (done && o->crate) {
					fx_apply(s, it->fx,
						 s->failed || (replay && s->inject_failed));
					/* CrateDB's Sync reads the state before the group's deferred
					 * executions run (it can be stale): only a 'T' nothing here
					 * explains is news (a transaction opened in a way not seen),
					 * never an 'I' */
					if (it->kind == RQ_SYNC && raw == 'T' &&
					    !fx_has(it->fx, SP_TX_COMMIT) &&
					    !fx_has(it->fx, SP_TX_DISCARD_ALL))
						s->crate_tx = true;
				}
				pop(s);
			}
			s->failed = false;
			/* CrateDB: 'I' after BEGIN (simple protocol), 'E' after an autocommit
			 * error (extended): neither says what the session is */
			s->status = o->crate ? crate_status(s) : raw;
			/* at every 'I', a reset's too (on CrateDB a session left in a transaction
			 * comes back to 'I' by the reset): the marks never reach another client */
			if (s->status == 'I') {
				bool unknown = ((s->tx_noted & RL_NOTE_UNDO) &&
						(s->tx_rolled || s->tx_error)) ||
					       ((s->tx_noted & RL_NOTE_REFUSE) && s->tx_error);
				if (unknown && !s->tainted && o->pooled) {
					/* The tracking took the change from its text when it was sent,
					 * but PostgreSQL undoes the SETs and RESETs of a transaction that
					 * failed or was rolled back, and refuses a DISCARD ALL or
					 * DEALLOCATE in a failed one: what the server has is not known,
					 * so it is closed after this client, never handed on
					 * (transaction and statement mode; a session's is reset) */
					s->tainted = true;
					log_debug(
						"a session change was undone with its transaction: "
						"the server connection is closed after this client");
				}
				s->tx_noted = 0;
				s->tx_rolled = s->tx_error = false;
			}
			/* CrateDB's 'E' after an error is no failed transaction (there is none: the
			 * next statement runs); told 'E', libpq clients (asyncpg's pool) send a
			 * ROLLBACK, which CrateDB does not have: the client gets the real status */
			restatus = o->crate && raw == 'E' && s->status != raw;
			if (o->no_tx && !replay && s->status != 'I' && c) {
				/* statement mode: the client gets an error instead */
				s->violation = true;
				pass = false;
			}
			if (replay) {
				flush(in, c ? to_client : NULL, &acc);
				/* a replay is one Query per statement: done with its last answer */
				if (!s->replay_left || --s->replay_left == 0)
					replay_done(s, c, o, to_client);
			}
			break;
		}
		case 'S':
			if (mlen + 1 <= sizeof(small)) {
				if (avail < (size_t)mlen + 1)
					goto out;
				evbuffer_copyout_from(in, &pos, small, mlen + 1);
				param_status(s, c, o, small + PG_HDR_LEN, mlen - 4, replay, &pass);
			}
			break;
		default:
			break;
		}
		size_t n = avail < (size_t)mlen + 1 ? avail : (size_t)mlen + 1;
		if (pass && c && restatus) {
			flush(in, to_client, &acc);
			evbuffer_drain(in, n);
			pg_put_ready(to_client, s->status);
		} else if (pass && c) {
			acc += n;
		} else {
			flush(in, c ? to_client : NULL, &acc);
			evbuffer_drain(in, n);
		}
		if (n < (size_t)mlen + 1) {
			s->pass = (uint32_t)(mlen + 1 - n);
			s->drop = !(pass && c);
		}
		if (type == 'Z' && pass && c && ready) {
			flush(in, c ? to_client : NULL, &acc);
			ready(arg, s->status);
		}
		if (type == 'Z' && s->stop_after_ready) {
			flush(in, c ? to_client : NULL, &acc);
			return 1;
		}
	}
out:
	flush(in, c ? to_client : NULL, &acc);
	return 0;
}

bool rl_idle_answer(struct rl_client *c, const struct rl_opts *o, struct evbuffer *in,
		    struct evbuffer *to_client)
{
	bool answered = false;
	uint8_t hdr[PG_HDR_LEN];

	while (o->rename && evbuffer_get_length(in) >= PG_HDR_LEN) {
		evbuffer_copyout(in, hdr, PG_HDR_LEN);
		uint32_t mlen = pg_get_u32(hdr + 1);
		size_t total = (size_t)mlen + 1 + PG_HDR_LEN;
		if (hdr[0] != 'P' || mlen < 4 || mlen > SMALL_MSG * 16 ||
		    evbuffer_get_length(in) < total)
			break;
		uint8_t *msg = evbuffer_pullup(in, (ev_ssize_t)total);
		if (!msg || msg[mlen + 1] != 'S' || pg_get_u32(msg + mlen + 2) != 4)
			break;
		const uint8_t *body = msg + PG_HDR_LEN;
		size_t blen = mlen - 4, n1 = field_len(body, blen);
		if (n1 <= 1 || n1 >= blen)
			break;
		struct ps_stmt *st = ps_find(body + n1, blen - n1, stmt_ctx(c, o));
		if (!st || !ps_is_ok(st) || ps_map_put(&c->names, (const char *)body, st) < 0) {
			ps_unref(st);
			break;
		}
		ps_unref(st);
		evbuffer_drain(in, total);
		put_hdr(to_client, '1', 0);
		pg_put_ready(to_client, 'I');
		answered = true;
	}
	return answered;
}

/* "options" in the startup packet: -c name=value and --name=value, backslash escapes. */
