/* Upstream connections. A server's life: connected and logged in (server_login.c), then
 * idle / linked to a client / being reset, until closed. This file: a logged-in server,
 * the relay both ways, pipelining, resets and checks, release, timeouts, close. */
#include "server_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cancel.h"
#include "core/cfg.h"
#include "client.h"
#include "core/log.h"
#include "core/runtime.h"
#include "pgproto.h"
#include "pipeline.h"
#include "relay.h"
#include "scram.h"
#include "core/sockio.h"
#include "core/tlsctx.h"
#include "core/upconn.h"
#include "core/util.h"

static void fwd_read_cb(struct sio *bev, void *arg);
static void after_input(struct server *sv);
static void note_time(struct server *sv);
static void drop_pipe(struct server *sv, const char *reason);

/* Scratch buffer between the relay and the sockets; empty between calls. */
static struct evbuffer *relay_buf;

void server_log(const struct server *sv, enum log_level lvl, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_msg(lvl, "S-%p: %s", (const void *)sv, msg);
}

struct evbuffer *server_scratch(void)
{
	if (!relay_buf && !(relay_buf = evbuffer_new()))
		fatal("out of memory");
	return relay_buf;
}

int server_host_index(const struct server *sv)
{
	return sv->host_idx;
}

bool server_expired(const struct server *sv)
{
	return sv->lifetime && now_usec() - sv->connect_time > sv->lifetime;
}

static void cancel_done(uint64_t id);

struct pool_node *server_node(struct server *sv)
{
	return &sv->node;
}

void server_cancel(struct server *sv)
{
	const struct cfg *cfg = rt_cfg();
	const struct cfg_db *db = sv->node.pool->db;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (!sv->bev || !sv->be_pid ||
	    getpeername(sio_fd(sv->bev), (struct sockaddr *)&ss, &sl) < 0)
		return;
	/* the server is not handed to anyone else until the cancel has been processed, so
	 * that a late cancel never hits another client's query */
	if (sv->cancels == UINT8_MAX)
		return;
	sv->cancels++;
	sv->pl.cancel_time = now_usec();
	cancel_forward((struct sockaddr *)&ss, sl, sv->host, cfg_db_sslmode(cfg, db),
		       cfg_db_ca_file(cfg, db), sv->be_pid, sv->be_key, cancel_done, sv->id);
}

int server_cancels_in_flight(const struct server *sv)
{
	return sv->cancels;
}

unsigned server_gen(const struct server *sv)
{
	return sv->gen;
}

size_t server_struct_size(void)
{
	return sizeof(struct server);
}

void server_describe(struct server *sv, struct server_info *si)
{
	static const char *const names[] = {
		"login", "idle", "active", "used", "tested", "closing"
	};
	int fd = sv->bev ? sio_fd(sv->bev) : upconn_fd(sv->uc);

	memset(si, 0, sizeof(*si));
	si->state = names[sv->node.state];
	if (fd >= 0) {
		sock_addr_text(fd, 1, si->addr, sizeof(si->addr), &si->port, "");
		sock_addr_text(fd, 0, si->local_addr, sizeof(si->local_addr), &si->local_port, "");
	}
	si->connect_usec = sv->connect_time;
	si->request_usec = sv->query_start ? sv->query_start : sv->connect_time;
	si->ptr = sv;
	si->link = sv->client;
	if (sv->bev && sio_ssl(sv->bev))
		tls_describe(sio_ssl(sv->bev), si->tls, sizeof(si->tls));
	si->remote_pid = sv->be_pid;
	si->prepared = rl_server_prepared(&sv->rl);
}

enum server_state server_state(const struct server *sv)
{
	return sv->node.state;
}

struct pool *server_pool(const struct server *sv)
{
	return sv->node.pool;
}

void server_trim(struct server *sv)
{
	sio_trim(sv->bev);
}

uint64_t server_idle_since(const struct server *sv)
{
	return sv->idle_since;
}

uint64_t server_connect_time(const struct server *sv)
{
	return sv->connect_time;
}

void server_send(struct server *sv, struct evbuffer *src, size_t n)
{
	sio_write_buffer(sv->bev, src, n);
}

bool server_output_full(struct server *sv)
{
	return evbuffer_get_length(sio_output(sv->bev)) > OUT_HIGH_WATER;
}

void server_note_sent(struct server *sv)
{
	if (sv->ready) {
		sv->query_start = now_usec();
		if (sv->rl.status == 'I')
			sv->xact_start = sv->query_start;
	}
	sv->ready = false;
}

/* A ReadyForQuery went to the client: one query done, and a transaction when idle. */
static void count_ready(struct server *sv, char status)
{
	struct stats *st = &sv->node.pool->stats;
	uint64_t now = now_usec();

	st->query_count++;
	st->query_time_us += now - sv->query_start;
	stats_hist_add(&st->query, now - sv->query_start);
	if (status == 'I') {
		st->xact_count++;
		st->xact_time_us += now - sv->xact_start;
		stats_hist_add(&st->xact, now - sv->xact_start);
	}
	sv->query_start = now;
}

void server_pause_read(struct server *sv, bool pause)
{
	if (!sv->bev || sv->paused == pause)
		return;
	sv->paused = pause;
	if (pause) {
		sv->paused_since = now_usec();
		sio_disable(sv->bev, EV_READ);
	} else {
		sio_enable(sv->bev, EV_READ);
	}
}

void server_event_cb(struct sio *bev, short what, void *arg)
{
	struct server *sv = arg;

	(void)bev;
	if (sv->login == SVL_DONE) {
		server_close(sv, what & SIO_EOF ? "upstream closed the connection"
						: "upstream connection failed");
		return;
	}
	server_fail(sv, "08006", "upstream %s:%d closed the connection during login%s%s",
		    sv_host(sv), sv_port(sv), (what & SIO_ERROR) && errno ? ": " : "",
		    (what & SIO_ERROR) && errno ? strerror(errno) : "");
	ERR_clear_error();
}

static void ready_cb(void *arg, char status)
{
	struct server *sv = arg;

	sv->ready = true;
	sv->ready_time = now_usec();
	if (sv->node.state == SV_ACTIVE) {
		note_time(sv); /* before count_ready restarts the clock */
		count_ready(sv, status);
	}
}

/* The relay's counters go to the pool's statistics. */
static void take_counts(struct server *sv)
{
	struct stats *st = &sv->node.pool->stats;

	st->client_parse_count += sv->rl.client_parses;
	st->server_parse_count += sv->rl.server_parses;
	st->bind_count += sv->rl.binds;
	sv->rl.client_parses = sv->rl.server_parses = sv->rl.binds = 0;
}

/* Upstream messages through the relay to the linked client (or dropped: a reset or a
 * check query, or nobody linked). */
static void fwd_read_cb(struct sio *bev, void *arg)
{
	struct server *sv = arg;
	struct evbuffer *in = sio_input(bev), *out = server_scratch();
	const char *err = NULL;
	int r;

	do {
		struct client *c = sv->node.state == SV_ACTIVE ? sv->client : NULL;
		/* with queries pipelined behind, each answer ends at its ReadyForQuery */
		sv->rl.stop_after_ready = sv->pl.n > 0;
		uint64_t fp = sv->rl.params.fp;
		r = rl_from_server(&sv->rl, c ? sv->crl : NULL, &sv->node.pool->rl, in, out,
				   ready_cb, sv, &err);
		if (r < 0) {
			evbuffer_drain(out, evbuffer_get_length(out));
			server_close(sv, err);
			return;
		}
		if (sv->pl.n && fp != sv->rl.params.fp && !sv->rl.replay_mask) {
			/* a query changed a setting (a function did) while others' queries wait
			 * behind it: they would run with it; the server goes, they are told */
			sv->pl.changed = true;
		}
		size_t n = evbuffer_get_length(out);
		sv->pl.head_bytes += n;
		if (c && n && sv->pl.held) {
			/* exposed to a late cancel: passed once it is known not to be hit */
			evbuffer_remove_buffer(out, sv->pl.hold, n);
			if (evbuffer_get_length(sv->pl.hold) > HOLD_MAX) {
				sv->pl.held = false;
				n = evbuffer_get_length(sv->pl.hold);
				sv->node.pool->stats.bytes_sent += n;
				client_send(c, sv->pl.hold, n);
			}
		} else if (c && n) {
			sv->node.pool->stats.bytes_sent += n;
			client_send(c, out, n);
		} else if (n) {
			evbuffer_drain(out, n);
		}
		after_input(sv);
	} while (r == 1 && sv->node.state == SV_ACTIVE && evbuffer_get_length(in) > 0);
}

/* Its transaction is over: nobody is linked, it reads again. */
static void unlink_head(struct server *sv)
{
	set_client(sv, NULL);
	sv->pl.ok = false;
	pipe_entry_clear(&sv->pl.head);
	server_pause_read(sv, false);
}

void server_set_head(struct server *sv, uint64_t shape, bool pipe_ok)
{
	pipe_entry_clear(&sv->pl.head);
	sv->pl.head.c = sv->client;
	sv->pl.head.shape = shape;
	sv->pl.head_direct = true;
	sv->pl.head_bytes = 0;
	sv->pl.ok = pipe_ok;
	sv->pl.progress = now_usec();
}

void server_cancel_client(struct server *sv, struct client *c)
{
	if (sv->client != c || sv->pl.head_gone) {
		/* its query waits behind others': cancelled once it is the one running */
		for (int i = 0; i < sv->pl.n; i++)
			if (sv->pl.q[i].c == c)
				sv->pl.q[i].cancel = true;
		return;
	}
	/* its own cancel: its 57014 is its own, never sent again */
	sv->pl.head.cancel = true;
	/* the queries behind it may be hit if the cancel comes late */
	if (sv->pl.n > sv->pl.exposed)
		sv->pl.exposed = sv->pl.n;
	server_cancel(sv);
}

/* The linked client's query answered: what its time says about its shape. */
static void note_time(struct server *sv)
{
	uint64_t t = now_usec() - sv->query_start;

	if (!sv->pl.head.shape)
		return;
	if (sv->pl.head_direct) {
		/* sent when the server was idle: the time includes a round trip */
		if (!sv->pl.rtt_min || t < sv->pl.rtt_min)
			sv->pl.rtt_min = t;
		t -= sv->pl.rtt_min;
	}
	pl_note(sv->pl.head.shape, t);
	sv->pl.head.shape = 0;
}

/* The head client c is about to be failed: told first when its answer stops mid-message. */
static void mark_cut(struct server *sv, struct client *c)
{
	if (c && sv->client == c && rl_mid_message(&sv->rl))
		client_cut(c);
}

static void drop_pipe(struct server *sv, const char *reason)
{
	if (sv->client && !sv->pl.head_gone) {
		struct client *c = sv->client;
		mark_cut(sv, c);
		set_client(sv, NULL);
		client_server_lost(c, "08006", reason);
	}
	set_client(sv, NULL);
	sv->pl.head_gone = false;
	sv->pl.items = 0;
	while (sv->pl.n > 0) {
		struct pipe_entry *e = &sv->pl.q[--sv->pl.n];
		struct client *c = e->c;
		pipe_entry_clear(e);
		if (c)
			client_server_lost(c, "08006", reason);
	}
	pipe_entry_clear(&sv->pl.head);
	if (sv->pl.hold)
		evbuffer_drain(sv->pl.hold, evbuffer_get_length(sv->pl.hold));
	sv->pl.held = false;
}


/* A reset or check query's answer came: back to the pool once it is complete and worked. */
static void reset_or_check_done(struct server *sv)
{
	if (sv->park || !rl_quiet(&sv->rl, NULL))
		return;
	if (sv->rl.inject_failed || sv->rl.status != 'I') {
		server_close(sv, sv->node.state == SV_RESET ? "server_reset_query failed"
							    : "server_check_query failed");
		return;
	}
	/* a RECONNECT, a reload or server_lifetime may have come meanwhile */
	server_return(sv);
}

/* After the relay moved messages: a reset or check that finished, a transaction that
 * ended (the server goes back to the pool), a statement-mode violation, SIGINT. */
static void after_input(struct server *sv)
{
	struct client *c = sv->pl.head_gone ? NULL : sv->client;

	if (sv->node.state == SV_RESET || sv->node.state == SV_TESTED) {
		reset_or_check_done(sv);
		return;
	}
	if (sv->node.state != SV_ACTIVE)
		return;
	if (c) {
		take_counts(sv);
		if (sv->rl.violation) {
			sv->rl.violation = false;
			client_fail(c, "25000",
				    "transaction blocks not allowed in statement pooling mode");
			return;
		}
	}
	size_t behind = sv->pl.items;
	if (!rl_idle_ahead(&sv->rl, c ? sv->crl : NULL, behind)) {
		if (behind && sv->rl.status != 'I' && rl_pending(&sv->rl) <= behind) {
			/* cannot happen with the queries let in; the next client's query must
			 * never run inside this transaction */
			server_log(sv, LOG_LVL_ERROR, "a pipelined query left a transaction open");
			pipe_close_discarding(sv, "a pipelined query left a transaction open");
			return;
		}
		if (c && client_output_full(c))
			server_pause_read(sv, true);
		return;
	}
	/* the linked client's answer is complete */
	if (pipe_answer_done(sv, c))
		return;
	if (!c) {
		/* the linked client left and nothing is behind: back to the pool */
		sv->pl.head_gone = false;
		unlink_head(sv);
		server_return(sv);
		return;
	}
	if (rt_draining()) {
		/* SIGINT: its transaction is over, the client goes */
		client_fail(c, "57P01", "cratebouncer is shutting down");
		return;
	}
	if (sv->node.pool->mode != POOL_SESSION) {
		/* transaction pooling: the server goes back, the client keeps its session */
		unlink_head(sv);
		pool_server_report(sv, c, SVR_DONE);
		return;
	}
	if (client_output_full(c))
		server_pause_read(sv, true);
}

enum rl_result server_forward(struct server *sv, struct client *c, struct evbuffer *in,
			      const char **err, bool *waits)
{
	if (c != sv->client || sv->pl.head_gone || sv->pl.n) {
		/* c's query is pipelined behind another's, or others' are behind its own */
		*waits = true;
		return RL_OK;
	}
	server_head_more(sv);

	struct evbuffer *out = server_scratch();
	enum rl_result r = rl_from_client(&sv->rl, sv->crl, &sv->node.pool->rl, in, out, err);
	size_t n = evbuffer_get_length(out);

	if (n) {
		sv->node.pool->stats.bytes_received += n;
		server_send(sv, out, n);
		server_note_sent(sv);
	}
	if (r != RL_OK)
		return r;
	/* answers the relay gives itself, when nothing is ahead of them */
	if (rl_flush_fakes(&sv->rl, &sv->node.pool->rl, out))
		ready_cb(sv, sv->rl.status);
	n = evbuffer_get_length(out);
	if (n) {
		sv->node.pool->stats.bytes_sent += n;
		client_send(c, out, n);
		after_input(sv);
	}
	return RL_OK;
}

void server_write_cb(struct sio *bev, void *arg)
{
	struct server *sv = arg;

	/* Our output drained: let the client send more. */
	if (sv->client)
		client_pause_read(sv->client, false);
}

void server_forwarding(struct server *sv)
{
	sio_setcb(sv->bev, fwd_read_cb, server_write_cb, server_event_cb, sv);
}

void server_link(struct server *sv, struct client *c)
{
	set_client(sv, c);
	pool_server_move(&sv->node, SV_ACTIVE);
	rl_link(&sv->rl, sv->crl, &sv->node.pool->rl, sio_output(sv->bev));
}

void server_return(struct server *sv)
{
	if (sv->rl.tainted) {
		server_close(sv, "session state unknown (a failed replay, a change its "
				 "transaction undid, or one the tracking cannot follow)");
		return;
	}
	if (sv->cancels) {
		sv->park = true;
		pool_server_move(&sv->node, SV_RESET);
		return;
	}
	sv->park = false;
	sv->ready = true; /* a dropped answer's ReadyForQuery counted too: the next
				 * client's query times from its own start */
	if (server_expired(sv)) {
		server_close(sv, "server_lifetime reached");
		return;
	}
	if (sv->gen != sv->node.pool->gen) {
		server_close(sv, "renewed by RECONNECT or a reload");
		return;
	}
	sv->idle_since = now_usec();
	pool_server_idle(sv);
}

void server_release(struct server *sv, bool mid_message)
{
	const struct cfg *cfg = rt_cfg();
	const char *reset = cfg->server_reset_query;

	bool crate = sv->node.pool->rl.crate;

	set_client(sv, NULL);
	server_pause_read(sv, false);
	/* On CrateDB a transaction is only a name for cursors WITHOUT HOLD (its BEGIN opens
	 * nothing, every write is already committed): a client that leaves inside one, as
	 * psycopg2 does in its implicit BEGIN, leaves nothing its reset does not end. On
	 * PostgreSQL the server is closed, as PgBouncer does. */
	bool crate_tx = crate && !mid_message && rl_quiet(&sv->rl, NULL);
	if (mid_message || (!rl_idle(&sv->rl, NULL) && !crate_tx)) {
		server_close(sv, "client left in the middle of a transaction or query");
		return;
	}
	crate_tx = crate_tx && !rl_idle(&sv->rl, NULL);
	if (server_expired(sv) || sv->gen != sv->node.pool->gen ||
	    (!crate_tx && (sv->node.pool->mode != POOL_SESSION || !reset || !*reset))) {
		server_return(sv); /* closes it when expired or renewed */
		return;
	}
	sv->ready = false;
	pool_server_move(&sv->node, SV_RESET);
	/* CrateDB's DISCARD ALL does not reset settings and drops the session from the
	 * cancel map: its own reset clears cursors, statements, the transaction and the
	 * settings instead */
	if (crate_tx || (crate && strcasecmp(reset, "DISCARD ALL") == 0))
		rl_reset_crate(&sv->rl, &sv->node.pool->rl, sio_output(sv->bev));
	else
		rl_inject(&sv->rl, &sv->node.pool->rl, reset, sio_output(sv->bev));
}

/* A cancel connection for this server's session finished (or gave up). */
struct find_id {
	uint64_t id;
	struct server *found;
};

static void find_id(struct server *x, struct pool *p, void *arg)
{
	struct find_id *f = arg;

	(void)p;
	if (x->id == f->id)
		f->found = x;
}

static void cancel_done(uint64_t id)
{
	struct find_id f = { id, NULL };
	struct server *sv;

	pools_foreach_server(find_id, &f);
	sv = f.found;
	if (!sv || !sv->cancels)
		return;
	if (--sv->cancels == 0 && sv->park && sv->node.state == SV_RESET && !sv->client)
		server_return(sv);
}

void server_check_timeouts(struct server *sv, uint64_t now)
{
	const struct cfg *cfg = rt_cfg();
	struct client *c = sv->client;

	if (!c) {
		if (!sv->pl.head_gone || sv->ready)
			return;
		/* the query of a client that left holds the server (and maybe others' queries):
		 * cancelled once it has run for a second (a short write finishes by itself) */
		if (!sv->pl.gone_cancelled && !sv->pl.head.cancel && !sv->cancels &&
		    now - sv->query_start > PIPE_GONE_CANCEL_USEC) {
			sv->pl.gone_cancelled = true;
			if (sv->pl.n > sv->pl.exposed)
				sv->pl.exposed = sv->pl.n;
			sv->pl.head.cancel = true;
			server_cancel(sv);
		}
		/* if the cancel did not end it, the clients behind are not left waiting */
		if (now - sv->query_start > PIPE_GONE_CANCEL_USEC + PIPE_STUCK_USEC)
			server_close(sv, "a cancelled query of a departed client did not end");
		return;
	}
	if (sv->pl.n && sv->paused && now - sv->paused_since > PIPE_STUCK_USEC) {
		/* it does not read its answer while other clients' queries wait behind it */
		client_fail_stalled(c, "08006",
				    "the client did not read its answer for %d s while other "
				    "clients' queries waited behind it",
				    (int)(PIPE_STUCK_USEC / 1000000));
		return;
	}
	if (cfg->query_timeout > 0 && !sv->ready &&
	    now - sv->query_start > (uint64_t)(cfg->query_timeout * 1e6)) {
		/* others' queries wait behind it: the query is cancelled, the server stays */
		if (sv->pl.n)
			server_cancel_client(sv, c);
		mark_cut(sv, c);
		client_fail(c, "57014", "query_timeout: the query ran longer than %g s",
			    cfg->query_timeout);
		return;
	}
	if (cfg->idle_transaction_timeout > 0 && sv->ready && sv->rl.status != 'I' &&
	    rl_quiet(&sv->rl, sv->crl) &&
	    now - sv->ready_time > (uint64_t)(cfg->idle_transaction_timeout * 1e6))
		client_fail(c, "25P03",
			    "idle_transaction_timeout: idle in a transaction for more "
			    "than %g s",
			    cfg->idle_transaction_timeout);
}

bool server_needs_check(const struct server *sv)
{
	const struct cfg *cfg = rt_cfg();

	return cfg->server_check_delay > 0 && cfg->server_check_query && *cfg->server_check_query &&
	       now_usec() - sv->idle_since > (uint64_t)(cfg->server_check_delay * 1e6);
}

void server_check(struct server *sv)
{
	pool_server_move(&sv->node, SV_TESTED);
	rl_inject(&sv->rl, &sv->node.pool->rl, rt_cfg()->server_check_query, sio_output(sv->bev));
}

void server_fail(struct server *sv, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pool_server_failed(sv, sqlstate, msg);
	server_close(sv, msg);
}

void server_close(struct server *sv, const char *reason)
{
	if (sv->node.state == SV_CLOSING)
		return;
	server_log(sv, LOG_LVL_DEBUG, "closing: %s", reason);
	drop_pipe(sv, reason);
	upconn_abort(sv->uc);
	sv->uc = NULL;
	evtimer_del(&sv->timer);
	if (sv->bev) {
		/* what a client sent before it left (a Query pipelined with Terminate) goes out */
		sio_flush(sv->bev);
		sio_setcb(sv->bev, NULL, NULL, NULL, NULL);
		sio_disable(sv->bev, EV_READ | EV_WRITE);
	}
	pool_server_remove(&sv->node);
	pool_bury(&sv->node);
}

void server_free(struct server *sv)
{
	upconn_abort(sv->uc);
	if (sv->bev)
		sio_free(sv->bev); /* frees the SSL and closes the socket */
	scram_client_free(sv->scram);
	if (sv->params)
		evbuffer_free(sv->params);
	rl_server_clear(&sv->rl);
	for (int i = 0; i < sv->pl.n; i++)
		pipe_entry_clear(&sv->pl.q[i]);
	pipe_entry_clear(&sv->pl.head);
	if (sv->pl.hold)
		evbuffer_free(sv->pl.hold);
	free(sv->host);
	free(sv);
}
