/* A client connection: startup packet, authentication, the welcome from the pool,
 * then message forwarding to the server the pool links it to. */
#ifndef CB_CLIENT_H
#define CB_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

struct client;
struct evbuffer;
struct pool;
struct pool_node;
struct server;

/* A client's life, as its pool lists it: logging in (LOGIN_WAIT: for the pool's first
 * server to report the upstream's parameters), idle between transactions, waiting for a
 * server, linked to one, closing. */
enum client_state { CL_LOGIN, CL_LOGIN_WAIT, CL_IDLE, CL_WAITING, CL_ACTIVE, CL_CLOSING };

struct cfg;
/* The admin console: a virtual database on the client listeners. admin.c provides it and
 * main registers it, so that the pgwire side does not depend on the console. A role is 0
 * for a user who may not use it. Without one, no database is the console. */
struct client_console {
	bool (*is_console_db)(const char *database);
	int (*role_for)(const struct cfg *cfg, const char *user);
	/* AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery. */
	void (*welcome)(struct evbuffer *out, uint32_t pid, uint32_t key);
	/* Its messages from in, answers into out; -1 ends the session once out is sent.
	 * *skip: skipping an extended-protocol group up to Sync. */
	int (*handle)(struct client *c, int role, bool *skip, struct evbuffer *in,
		      struct evbuffer *out);
};
void client_set_console(const struct client_console *console);

struct authfile;
/* Users and secrets for plain/md5/scram-sha-256 (not owned). */
void client_set_authfile(const struct authfile *af);
/* A new accepted socket; unix is true for the Unix-socket listener. */
void client_accept(int fd, const struct sockaddr *sa, int salen, bool unix_socket);
/* From the pool. */
void client_welcome(struct client *c, const uint8_t *params, size_t len);
/* Linked to sv (by the pool): what it sent meanwhile goes there now. False when that
 * ended the link (it failed or left, or its transaction is over already). */
bool client_linked(struct client *c, struct server *sv);
/* Its query went behind another client's on sv (pipelining, by the pool): it is active,
 * its answer comes when its turn comes. */
void client_queued(struct client *c, struct server *sv);
/* Send an ErrorResponse (FATAL) and close after it is written. */
void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same for a client that does not read what it is sent: it is logged, nothing more is
 * queued, and the connection closes at once instead of after a flush wait. */
void client_fail_stalled(struct client *c, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* What it was sent stops inside a message (a server failed mid-answer): a later
 * client_fail closes the connection without an ErrorResponse. */
void client_cut(struct client *c);
/* The same for an upstream failure the pool has logged already (no log line per client). */
void client_refuse_upstream(struct client *c, const char *sqlstate, const char *msg);
/* The server is gone or was given up while linked. */
void client_server_lost(struct client *c, const char *sqlstate, const char *msg);
/* Transaction pooling: the server went back to the pool; the client is idle. */
void client_unlinked(struct client *c);
struct evbuffer *client_input(struct client *c);
/* Handles what the client sent meanwhile (asks for a server again). */
void client_resume(struct client *c);
struct rl_client;
struct rl_client *client_relay(struct client *c);
/* From the server, for forwarding. */
/* Moves n bytes from src to the client. */
void client_send(struct client *c, struct evbuffer *src, size_t n);
void client_pause_read(struct client *c, bool pause);
bool client_output_full(struct client *c);
enum client_state client_state(const struct client *c);
struct pool *client_pool(const struct client *c);
struct server *client_server(const struct client *c);
uint64_t client_wait_since(const struct client *c);
uint64_t client_request_time(const struct client *c);
int clients_total(void);
/* Tells every client the daemon stops and schedules it for freeing. */
void clients_shutdown(void);

/* One client as SHOW CLIENTS lists it. */
struct client_info {
	const char *user, *database, *state, *application_name;
	char addr[64], local_addr[64];
	int port, local_port;
	uint64_t connect_usec, request_usec, wait_usec; /* monotonic; wait: so far */
	const void *ptr, *link;
	uint32_t id;
	uint64_t prepared; /* named statements it has */
	bool admin;
};
void clients_foreach(void (*fn)(const struct client_info *ci, void *arg), void *arg);
/* The admin console writes to the client directly. */
struct evbuffer *client_output(struct client *c);
struct client *client_by_id(uint32_t id);
uint32_t client_id(const struct client *c);
size_t client_struct_size(void);

struct pool_node *client_node(struct client *x);
void client_free(struct client *x);
/* Frees the empty buffers of every client (an idle one then holds none); from a timer. */
void clients_trim(void);

#endif
