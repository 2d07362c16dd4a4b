/* Inside a client connection: its struct and what client.c and client_auth.c share. Only
 * those two include this.
 *
 *   client_auth.c  the startup packet, SSLRequest/GSSENCRequest/CancelRequest, the
 *                  authentication per auth_type, the admin console's login
 *   client.c       a logged-in client: the welcome, its messages to a server (the relay),
 *                  pipelining shapes, errors, close */
#ifndef CB_CLIENT_INT_H
#define CB_CLIENT_INT_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "core/log.h"
#include "pool.h"
#include "relay.h"

struct sio;
struct scram_server;

#define OUT_HIGH_WATER (256 * 1024)
#define WAIT_BUFFER_MAX (256 * 1024)
#define AUTH_MSG_MAX 8192
#define CLOSE_FLUSH_SECS 5
#define PEER_LEN (INET6_ADDRSTRLEN + 16)

enum auth_step { AS_STARTUP, AS_PASSWORD, AS_MD5, AS_SASL_INIT, AS_SASL_FINAL };

/* Only while logging in. */
struct client_auth {
	enum auth_step step;
	uint8_t salt[4];
	char *secret; /* from auth_file; NULL when the user has none */
	struct scram_server *scram;
};

struct client {
	struct pool_node node;
	TAILQ_ENTRY(client) all; /* every client, for shutdown */
	struct sio *bev;
	struct server *server;
	char *params; /* startup parameters, "k\0v\0...", user_of and db_of */
	struct client_auth *auth;
	uint64_t connect_time, wait_since;
	uint32_t cancel_pid, cancel_key;
	struct rl_client rl;   /* its prepared statement names and session settings */
	uint64_t request_time; /* last message from the client, for SHOW CLIENTS */
	uint8_t ssl_requests;
	uint8_t admin;   /* its console role (client_console), 0: not one */
	bool admin_skip; /* the console skips an extended-protocol group */
	bool unix_socket, paused, closing, buried;
	bool cut; /* its answer stops inside a message (client_cut) */
};

/* client.c */
/* The registered admin console (client_set_console), or NULL. */
const struct client_console *client_console(void);
/* A parameter of its startup packet, the last of that name (NULL: none). */
const char *startup_param(const struct client *c, const char *name);
const char *user_of(const struct client *c);
const char *db_of(const struct client *c);
/* "host:port" or "unix" for logs. */
const char *client_peer(const struct client *c, char *buf, size_t len);
void client_close(struct client *c, bool flush, const char *reason);
/* A log line about c, with PgBouncer's prefix: "C-0x... 127.0.0.1:40000: ...". */
void client_log(const struct client *c, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void client_read_cb(struct sio *bev, void *arg);

/* client_auth.c */
/* The login's messages, until the client is welcomed or failed. */
void client_login_read(struct client *c);

#endif
