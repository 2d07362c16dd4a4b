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
int pipe_send_query(struct server *sv, struct client *c, struct evbuffer *buf)
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
void pipe_pass_held(struct server *sv, struct client *c)
{
	size_t n = evbuffer_get_length(sv->hold);

	sv->node.pool->stats.bytes_sent += n;
	client_send(c, sv->hold, n);
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
bool pipe_exposed_now(const struct server *sv)
{
	return sv->exposed > 0 || sv->cancels > 0 ||
	       (sv->cancel_time && now_usec() - sv->cancel_time < CANCEL_GRACE_USEC);
}

/* An ErrorResponse 57014 (query canceled; the message is translated, so any) in a held
 * answer. A statement_timeout also gives 57014: such a query runs at most once more. */
bool pipe_held_canceled(struct server *sv)
{
	size_t len = evbuffer_get_length(sv->hold);
	const uint8_t *p = evbuffer_pullup(sv->hold, -1), *body;
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
	sv->pipe_items += e->items;
	sv->pipe[sv->npipe++] = *e;
	memset(e, 0, sizeof(*e));
	sv->pipe[sv->npipe - 1].c = c;
}

/* Sends the linked client's query again (a late cancel hit it); it stays linked. */
bool pipe_resend_head(struct server *sv, struct client *c)
{
	struct evbuffer *b = evbuffer_new();
	bool ok = b && evbuffer_add(b, sv->head.q, sv->head.qlen) == 0;

	if (ok) {
		int items = pipe_send_query(sv, c, b);
		ok = items >= 0;
		sv->head.items = (uint16_t)(ok ? items : 0);
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
void pipe_next(struct server *sv, bool retry)
{
	struct client *old = sv->head_gone ? NULL : sv->client;

	if (retry && old) {
		/* sent again already (after_input): it waits behind the others */
		pipe_append(sv, old, &sv->head);
		old = NULL;
	}
	pipe_entry_clear(&sv->head);
	sv->head = sv->pipe[0];
	sv->pipe_items -= sv->head.items;
	memmove(sv->pipe, sv->pipe + 1, (size_t)(sv->npipe - 1) * sizeof(sv->pipe[0]));
	memset(&sv->pipe[--sv->npipe], 0, sizeof(sv->pipe[0]));
	sv->client = sv->head.c;
	sv->head_gone = sv->client == NULL;
	sv->head_direct = false;
	sv->head_bytes = 0;
	sv->gone_cancelled = false;
	sv->held = pipe_exposed_now(sv) && (sv->hold || (sv->hold = evbuffer_new()));
	if (sv->exposed)
		sv->exposed--;
	sv->progress = now_usec();
	sv->ready = true;	/* its query counts from now in the statistics */
	server_note_sent(sv);
	server_pause_read(sv, false);	/* the old head's full output is not the new one's */
	if (old) {
		client_unlinked(old);
		if (rt_draining())
			client_fail(old, "57P01", "cratebouncer is shutting down");
		else
			client_resume(old);
	}
	if (sv->head.cancel && sv->client && !sv->head_gone)
		server_cancel_client(sv, sv->client);
	pool_pipe_waiting(sv);
}

bool server_pipe_accepts(const struct server *sv, uint64_t now)
{
	const struct cfg *cfg = rt_cfg();

	/* not while a session-state replay is on its way: the tracked values are the
	 * server's old ones until its answers come */
	return sv->node.state == SV_ACTIVE && sv->pipe_ok && sv->npipe < cfg->pipeline_depth &&
	       !sv->cancels && !sv->park && !sv->paused && !sv->exposed && !sv->rl.replay_mask &&
	       sv->rl.status == 'I' && rl_pending(&sv->rl) > sv->pipe_items && !sv->rl.tainted &&
	       rl_parses_pending(&sv->rl) == 0 &&
	       sv->head_bytes < PIPE_HEAD_BYTES &&
	       now - sv->progress <= (uint64_t)(cfg->pipeline_max_query_time * 1e6) &&
	       sv->gen == sv->node.pool->gen && !server_expired(sv);
}

int server_pipe_depth(const struct server *sv)
{
	return sv->npipe;
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
		return true;	/* c has been told (server_close fails every pipelined client) */
	}
	/* the upstream may not have acted on a cancel yet even though it closed the cancel
	 * connection: queries sent soon after are exposed too */
	if (sv->cancel_time && now_usec() - sv->cancel_time < CANCEL_GRACE_USEC)
		sv->exposed = sv->npipe;
	sv->node.pool->stats.pipelined_count++;
	return true;
}

bool server_pipe_forget(struct server *sv, struct client *c)
{
	for (int i = 0; i < sv->npipe; i++)
		if (sv->pipe[i].c == c) {
			sv->pipe[i].c = NULL;
			return true;
		}
	return false;
}

bool server_head_left(struct server *sv)
{
	if (sv->npipe == 0)
		return false;
	sv->client = NULL;
	sv->head_gone = true;
	/* its answer is dropped from now on: paused for its full output, reading resumes */
	server_pause_read(sv, false);
	return true;
}

bool server_is_head(const struct server *sv, const struct client *c)
{
	return sv->client == c && !sv->head_gone;
}

bool server_pipe_busy(const struct server *sv)
{
	return sv->npipe > 0;
}

void server_head_more(struct server *sv)
{
	if (!sv->pipe_ok && !sv->head.shape && !sv->head.q && !sv->head.cancel && !sv->head.retries)
		return;	/* the common case: nothing to forget, no clock read */
	pipe_entry_clear(&sv->head);
	sv->pipe_ok = false;
}
