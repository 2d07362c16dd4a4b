/* An upstream connection: DNS, non-blocking connect, SSLRequest and TLS, login with the
 * injected credentials (cleartext, MD5, SCRAM-SHA-256), then message forwarding to the
 * linked client, and the reset query when the client leaves. */
#ifndef CB_SERVER_H
#define CB_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "relay.h"

struct server;
struct client;
struct evbuffer;
struct pool;
struct pool_node;

/* A server's life, as its pool lists it: logging in, idle in the pool, linked to a client,
 * running the reset query (or parked while a cancel for its session is in flight),
 * running server_check_query, closing. */
enum server_state { SV_LOGIN, SV_IDLE, SV_ACTIVE, SV_RESET, SV_TESTED, SV_CLOSING };

/* Starts connecting to the pool's host number host (-1: the pool picks); the pool hears
 * back through pool_server_login_ok/failed. */
void server_launch(struct pool *pool, int host);
int server_host_index(const struct server *sv);
/* Older than its server_lifetime (which has jitter). */
bool server_expired(const struct server *sv);
/* query_timeout and idle_transaction_timeout of a linked server; the client fails. */
void server_check_timeouts(struct server *sv, uint64_t now);
/* Give the server to a client: messages flow both ways from now on. */
void server_link(struct server *sv, struct client *c);
/* Nobody linked: back to the pool (pool_server_idle), unless it has lived long enough,
 * was made under settings a reload changed, or a cancel for its session is in flight. */
void server_return(struct server *sv);
/* The client left (mid_message: in the middle of sending a message): reset and return
 * to the pool, or close when the session is not in a reusable state. */
void server_release(struct server *sv, bool mid_message);
/* Idle longer than server_check_delay: validate before use. */
bool server_needs_check(const struct server *sv);
/* Runs server_check_query; the server is idle again (pool_server_idle) when it passes. */
void server_check(struct server *sv);
/* The client's messages through the relay to the server; *waits (nothing taken) while c's
 * turn has not come: its query is pipelined behind another's, or others' are behind its
 * own. */
enum rl_result server_forward(struct server *sv, struct client *c, struct evbuffer *in,
			      const char **err, bool *waits);
void server_close(struct server *sv, const char *reason);

/* Pipelining (transaction mode): a client's autocommit Query of a shape known to be fast
 * goes out behind the linked client's on a busy server instead of waiting for a free one
 * (see struct server in server.c). */
#define PIPE_MAX 16
#define HOLD_MAX (1 << 20)       /* an exposed answer held up to this, then passed */
#define CANCEL_GRACE_USEC 100000 /* after a cancel, pipelined queries are exposed */
#define PIPE_RETRIES \
	2                             /* a query a late cancel hit goes again at most so often
					 * (PostgreSQL's one cancel may end two queries) */
#define PIPE_HEAD_BYTES 65536         /* not behind an answer already this long */
#define PIPE_GONE_CANCEL_USEC 1000000 /* a departed client's query holding others: cancelled */
#define PIPE_STUCK_USEC \
	10000000 /* a client not reading its answer while others wait
					 * behind it is disconnected after this */
/* sv's linked client runs such a query and pipeline_depth is not reached. */
bool server_pipe_accepts(const struct server *sv, uint64_t now);
int server_pipe_depth(const struct server *sv);
/* Sends c's Query (its whole input) behind the others; false when c's session settings
 * differ from the server's (it takes the usual way then). */
bool server_pipe_add(struct server *sv, struct client *c, uint64_t shape);
/* c left while its query waits in the pipeline: its answer will be dropped. False when c
 * is not in the pipeline. */
bool server_pipe_forget(struct server *sv, struct client *c);
/* The linked client left with queries of others pipelined behind its own: its answer is
 * dropped, the server goes on. False (nothing done) when nothing is behind. */
bool server_head_left(struct server *sv);
/* c is the client whose answer the server is sending now. */
bool server_is_head(const struct server *sv, const struct client *c);
/* The linked client's transaction starts with one autocommit Query of this shape (0:
 * another kind); pipe_ok: others may be pipelined behind it. */
void server_set_head(struct server *sv, uint64_t shape, bool pipe_ok);
/* c's CancelRequest: its query is cancelled now, or once it runs when it waits behind
 * others' (a cancel must never hit another client's query). */
void server_cancel_client(struct server *sv, struct client *c);
/* CancelRequests for its session not yet processed by the upstream. */
int server_cancels_in_flight(const struct server *sv);
/* Cancels what the upstream session is running (a client's CancelRequest). */
void server_cancel(struct server *sv);
/* Client side of forwarding. */
/* Moves n bytes from src to the server. */
void server_send(struct server *sv, struct evbuffer *src, size_t n);
void server_note_sent(struct server *sv);
void server_pause_read(struct server *sv, bool pause);
bool server_output_full(struct server *sv);
enum server_state server_state(const struct server *sv);
struct pool *server_pool(const struct server *sv);
/* Frees its empty buffers (an idle server); from a timer. */
void server_trim(struct server *sv);
uint64_t server_idle_since(const struct server *sv);
uint64_t server_connect_time(const struct server *sv);

/* One server as SHOW SERVERS lists it. */
struct server_info {
	const char *state;
	char addr[64], local_addr[64];
	int port, local_port;
	uint64_t connect_usec, request_usec;
	const void *ptr, *link;
	char tls[80]; /* "" plaintext, "TLS" in the handshake, else tls_describe's */
	uint32_t remote_pid;
	uint64_t prepared; /* statements prepared on it */
};
void server_describe(struct server *sv, struct server_info *si);
unsigned server_gen(const struct server *sv);
size_t server_struct_size(void);

struct pool_node *server_node(struct server *x);
void server_free(struct server *x);

#endif
