/* Pipelining (transaction mode). While the linked client's transaction is one autocommit
 * Query of a shape known to be fast (pipeline.c), other clients' such Queries may be sent
 * behind it on the same server; the server answers them in order, and each client gets
 * the link in turn (pipe_next). A cancel meant for one query may hit the next: answers
 * that could be hit are held, and a query hit that way is sent again. Off on CrateDB,
 * which runs a connection's queries at the same time. */
#include "server_int.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/sockio.h"
#include "core/util.h"
#include "pgproto.h"
#include "pipeline.h"
#include "pool.h"
#include "relay.h"

void pipe_entry_clear(struct pipe_entry *e)
{
	free(e->q);
	memset(e, 0, sizeof(*e));
}

/* Sends a client's Query or extended-protocol group (whole, in buf) through the relay:
 * the number of request items it added, or -1 if the relay failed (out of memory: the
 * request queue no longer matches, the server must go). */
static int pipe_send_query(struct server *sv, struct client *c, struct evbuffer *buf)
{
	size_t before = rl_pending(&sv->rl);
	struct evbuffer *out = server_scratch();
	const char *err = NULL;

	enum rl_result r = rl_from_client(&sv->rl, client_relay(c), &sv->node.pool->rl, buf, out,
					  &err);
	size_t n = evbuffer_get_length(out);
	sv->node.pool->stats.bytes_received += n;
	server_send(sv, out, n);
	return r == RL_OK ? (int)(rl_pending(&sv->rl) - before) : -1;
}

/* The held answer goes to its client after all. */
static void pipe_pass_held(struct server *sv, struct client *c)
{
	size_t n = evbuffer_get_length(sv->pl.hold);

	sv->node.pool->stats.bytes_sent += n;
	client_send(c, sv->pl.hold, n);
}

/* A safety close: what is still queued for the upstream (pipelined queries of clients
 * that will be told the connection failed) is dropped, not sent. */
void pipe_close_discarding(struct server *sv, const char *reason)
{
	if (sv->bev)
		evbuffer_drain(sio_output(sv->bev), evbuffer_get_length(sio_output(sv->bev)));
	server_close(sv, reason);
}

/* A cancel sent for this session may still hit the query that runs next. */
static bool pipe_exposed_now(const struct server *sv)
{
	return sv->pl.exposed > 0 || sv->cancels > 0 ||
	       (sv->pl.cancel_time && now_usec() - sv->pl.cancel_time < CANCEL_GRACE_USEC);
}

/* An ErrorResponse 57014 (query canceled; the message is translated, so any) in a held
 * answer. A statement_timeout also gives 57014: such a query runs at most once more. */
static bool pipe_held_canceled(struct server *sv)
{
	size_t len = evbuffer_get_length(sv->pl.hold);
	const uint8_t *p = evbuffer_pullup(sv->pl.hold, -1), *body;
	uint8_t type;
	size_t blen, mlen;
	struct pg_error e;

	while (p && pg_next_msg(&p, &len, &type, &body, &blen, &mlen))
		if (type == 'E' && pg_parse_error(body, blen, &e) == 0 &&
		    (strcmp(e.code, "57014") == 0 ||
		     /* CrateDB: a killed job is XX000 "Job killed" */
		     (sv->node.pool->rl.crate && strcmp(e.code, "XX000") == 0 &&
		      strstr(e.message, "killed"))))
			return true;
	return false;
}

static void pipe_append(struct server *sv, struct client *c, struct pipe_entry *e)
{
	sv->pl.items += e->items;
	sv->pl.q[sv->pl.n++] = *e;
	memset(e, 0, sizeof(*e));
	sv->pl.q[sv->pl.n - 1].c = c;
}

/* Sends the linked client's query again (a late cancel hit it); it stays linked. */
static bool pipe_resend_head(struct server *sv, struct client *c)
{
	struct evbuffer *b = evbuffer_new();
	bool ok = b && evbuffer_add(b, sv->pl.head.q, sv->pl.head.qlen) == 0;

	if (ok) {
		int items = pipe_send_query(sv, c, b);
		ok = items >= 0;
		sv->pl.head.items = (uint16_t)(ok ? items : 0);
		sv->ready = true;
		server_note_sent(sv);
	}
	if (b)
		evbuffer_free(b);
	return ok;
}

/* The linked client's answer is complete and queries are pipelined behind it: the next
 * one's client gets the link. retry: the one that just finished was hit by a cancel sent
 * for another client's query; it goes again, behind the others. */
static void pipe_next(struct server *sv, bool retry)
{
	struct client *old = sv->pl.head_gone ? NULL : sv->client;

	if (retry && old) {
		/* sent again already (after_input): it waits behind the others */
		pipe_append(sv, old, &sv->pl.head);
		old = NULL;
	}
	pipe_entry_clear(&sv->pl.head);
	sv->pl.head = sv->pl.q[0];
	sv->pl.items -= sv->pl.head.items;
	memmove(sv->pl.q, sv->pl.q + 1, (size_t)(sv->pl.n - 1) * sizeof(sv->pl.q[0]));
	memset(&sv->pl.q[--sv->pl.n], 0, sizeof(sv->pl.q[0]));
	set_client(sv, sv->pl.head.c);
	sv->pl.head_gone = sv->client == NULL;
	sv->pl.head_direct = false;
	sv->pl.head_bytes = 0;
	sv->pl.gone_cancelled = false;
	sv->pl.held = pipe_exposed_now(sv) && (sv->pl.hold || (sv->pl.hold = evbuffer_new()));
	if (sv->pl.exposed)
		sv->pl.exposed--;
	sv->pl.progress = now_usec();
	sv->ready = true; /* its query counts from now in the statistics */
	server_note_sent(sv);
	server_pause_read(sv, false); /* the old head's full output is not the new one's */
	if (old)
		pool_server_report(sv, old, SVR_NEXT);
	if (sv->pl.head.cancel && sv->client && !sv->pl.head_gone)
		server_cancel_client(sv, sv->client);
	pool_pipe_waiting(sv);
}

/* The linked client's answer is complete (c: that client, NULL when it left): what
 * pipelining does then. True when it took over: the next pipelined client is linked, the
 * query went again (a late cancel hit it), or the server closed; false when nothing is
 * pipelined and the usual end of a transaction follows. */
bool pipe_answer_done(struct server *sv, struct client *c)
{
	if (sv->pl.n && sv->pl.changed) {
		server_log(sv, LOG_LVL_WARN,
			   "a query changed a session setting with other clients' "
			   "queries pipelined behind it; closing the connection");
		if (c) {
			/* its own answer is complete: it keeps its session (unless the daemon is
			 * stopping: then it goes, as after any transaction) */
			if (sv->pl.held)
				pipe_pass_held(sv, c);
			set_client(sv, NULL);
			pool_server_report(sv, c, SVR_NEXT);
		}
		pipe_close_discarding(
			sv, "a query changed a session setting with others pipelined behind it");
		return true;
	}
	sv->pl.changed = false;
	bool retry = false;
	if (sv->pl.held) {
		sv->pl.held = false;
		if (c && !sv->pl.head.cancel && sv->pl.head.retries < PIPE_RETRIES &&
		    sv->pl.head.q && sv->pl.n < PIPE_MAX + 4 && pipe_held_canceled(sv)) {
			if (!pipe_resend_head(sv, c)) {
				/* the relay's queue may not match any more */
				pipe_pass_held(sv, c);
				pipe_close_discarding(sv, "out of memory");
				return true;
			}
			/* a cancel meant for an earlier query hit this one: it went again. The
			 * cancel may not be spent: PostgreSQL signals the backend twice (its pid,
			 * then its process group), and under load each can end a query; what runs
			 * next is held again while the cancel is recent */
			retry = true;
			sv->pl.head.retries++;
			sv->pl.exposed = 0;
			sv->node.pool->stats.pipeline_retry_count++;
			server_log(sv, LOG_LVL_DEBUG,
				   "a late cancel hit a pipelined query; sent it again");
			evbuffer_drain(sv->pl.hold, evbuffer_get_length(sv->pl.hold));
		} else if (c) {
			pipe_pass_held(sv, c);
		} else {
			evbuffer_drain(sv->pl.hold, evbuffer_get_length(sv->pl.hold));
		}
	}
	if (sv->pl.n) {
		pipe_next(sv, retry);
		return true;
	}
	if (retry) {
		/* it stays linked: its query went again, held while the cancel is recent */
		sv->pl.held = pipe_exposed_now(sv) &&
			      (sv->pl.hold || (sv->pl.hold = evbuffer_new()));
		return true;
	}
	sv->pl.exposed = 0;
	return false;
}

bool server_pipe_accepts(const struct server *sv, uint64_t now)
{
	const struct cfg *cfg = rt_cfg();

	/* not while a session-state replay is on its way: the tracked values are the
	 * server's old ones until its answers come */
	return sv->node.state == SV_ACTIVE && sv->pl.ok && sv->pl.n < cfg->pipeline_depth &&
	       !sv->cancels && !sv->park && !sv->paused && !sv->pl.exposed && !sv->rl.replay_mask &&
	       sv->rl.status == 'I' && rl_pending(&sv->rl) > sv->pl.items && !sv->rl.tainted &&
	       rl_parses_pending(&sv->rl) == 0 && sv->pl.head_bytes < PIPE_HEAD_BYTES &&
	       now - sv->pl.progress <= (uint64_t)(cfg->pipeline_max_query_time * 1e6) &&
	       sv->gen == sv->node.pool->gen && !server_expired(sv);
}

int server_pipe_depth(const struct server *sv)
{
	return sv->pl.n;
}

bool server_pipe_add(struct server *sv, struct client *c, uint64_t shape)
{
	struct evbuffer *in = client_input(c);
	size_t len = evbuffer_get_length(in);
	struct pipe_entry e = { NULL, shape, malloc(len), (uint32_t)len, 0, false, false };

	if (!e.q || !sp_same(&sv->rl.params, &client_relay(c)->params)) {
		free(e.q);
		return false;
	}
	evbuffer_copyout(in, e.q, len);
	int items = pipe_send_query(sv, c, in);
	e.items = (uint16_t)(items > 0 ? items : 0);
	pipe_append(sv, c, &e);
	if (items < 0) {
		pipe_close_discarding(sv, "out of memory");
		return true; /* c has been told (server_close fails every pipelined client) */
	}
	/* the upstream may not have acted on a cancel yet even though it closed the cancel
	 * connection: queries sent soon after are exposed too */
	if (sv->pl.cancel_time && now_usec() - sv->pl.cancel_time < CANCEL_GRACE_USEC)
		sv->pl.exposed = sv->pl.n;
	sv->node.pool->stats.pipelined_count++;
	return true;
}

bool server_pipe_forget(struct server *sv, struct client *c)
{
	for (int i = 0; i < sv->pl.n; i++)
		if (sv->pl.q[i].c == c) {
			sv->pl.q[i].c = NULL;
			return true;
		}
	return false;
}

bool server_head_left(struct server *sv)
{
	if (sv->pl.n == 0)
		return false;
	set_client(sv, NULL);
	sv->pl.head_gone = true;
	/* its answer is dropped from now on: paused for its full output, reading resumes */
	server_pause_read(sv, false);
	return true;
}

bool server_is_head(const struct server *sv, const struct client *c)
{
	return sv->client == c && !sv->pl.head_gone;
}

void server_head_more(struct server *sv)
{
	if (!sv->pl.ok && !sv->pl.head.shape && !sv->pl.head.q && !sv->pl.head.cancel &&
	    !sv->pl.head.retries)
		return; /* the common case: nothing to forget, no clock read */
	pipe_entry_clear(&sv->pl.head);
	sv->pl.ok = false;
}
