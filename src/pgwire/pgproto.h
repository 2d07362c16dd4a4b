/* PostgreSQL wire protocol v3: parsers are pure functions over bytes, builders append
 * complete messages to an evbuffer. No sockets, no global state. */
#ifndef CB_PGPROTO_H
#define CB_PGPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define PG_HDR_LEN 5
#define PG_STARTUP_MAX 10000
#define PG_PROTO_V3 196608u
#define PG_SSL_REQUEST 80877103u
#define PG_GSSENC_REQUEST 80877104u
#define PG_CANCEL_REQUEST 80877102u

/* Authentication request codes ('R'). */
enum {
	PG_AUTH_OK = 0,
	PG_AUTH_CLEARTEXT = 3,
	PG_AUTH_MD5 = 5,
	PG_AUTH_SASL = 10,
	PG_AUTH_SASL_CONTINUE = 11,
	PG_AUTH_SASL_FINAL = 12
};

enum pg_startup_kind { PG_STARTUP_NORMAL, PG_STARTUP_SSL, PG_STARTUP_GSSENC, PG_STARTUP_CANCEL };

struct pg_startup {
	enum pg_startup_kind kind;
	uint32_t version;
	uint32_t cancel_pid, cancel_key; /* PG_STARTUP_CANCEL */
	const char *user, *database;     /* point into the packet; database defaults to user */
	const char *params;              /* "k\0v\0k\0v\0", inside the packet */
	size_t params_len;
};

/* Length of a startup-class packet from its first 4 bytes. */
uint32_t pg_get_u32(const uint8_t *p);
/* pkt is the whole packet, length word included. 0, or -1 with *err a static message. */
int pg_parse_startup(const uint8_t *pkt, size_t len, struct pg_startup *out, const char **err)
	__attribute__((warn_unused_result));
/* Value of key in a params block, or NULL. */
const char *pg_startup_param(const struct pg_startup *st, const char *key);

struct pg_error {
	const char *severity, *code, *message, *detail, *hint;
};
/* body is an ErrorResponse/NoticeResponse body (after the 5-byte header). Fields point
 * into body; missing ones are "". -1 if the fields are not NUL-terminated. */
int pg_parse_error(const uint8_t *body, size_t len, struct pg_error *out);
/* 'R' body: code, and the rest as data. */
int pg_parse_auth(const uint8_t *body, size_t len, uint32_t *code, const uint8_t **data,
		  size_t *dlen);
/* 'S' body: name and value, both NUL-terminated inside body. */
int pg_parse_param_status(const uint8_t *body, size_t len, const char **name, const char **value);

/* Walks a block of whole messages (the welcome's ParameterStatus set): the next one's
 * type, body and total length; false at the end or at a malformed length. */
bool pg_next_msg(const uint8_t **p, size_t *len, uint8_t *type, const uint8_t **body, size_t *blen,
		 size_t *mlen);
/* The value of ParameterStatus name in such a block, or NULL. */
const char *pg_find_param_status(const uint8_t *p, size_t len, const char *name);

/* Builders. Each appends one complete message. */
void pg_put_error(struct evbuffer *out, const char *severity, const char *sqlstate, const char *fmt,
		  ...) __attribute__((format(printf, 4, 5)));
void pg_put_auth(struct evbuffer *out, uint32_t code, const void *data, size_t len);
void pg_put_param_status(struct evbuffer *out, const char *name, const char *value);
void pg_put_backend_key(struct evbuffer *out, uint32_t pid, uint32_t key);
/* NegotiateProtocolVersion, as PostgreSQL sends it, when the client asked for a newer
 * 3.x than 3.0 or for protocol options (_pq_.*), which are all unrecognised. False: no
 * need, nothing written. */
bool pg_put_negotiate(struct evbuffer *out, const struct pg_startup *st);
void pg_put_ready(struct evbuffer *out, char status);
void pg_put_query(struct evbuffer *out, const char *sql);
void pg_put_terminate(struct evbuffer *out);
/* params: NULL-terminated key, value, key, value ... */
void pg_put_startup(struct evbuffer *out, const char *const *params);
void pg_put_ssl_request(struct evbuffer *out);
void pg_put_cancel(struct evbuffer *out, uint32_t pid, uint32_t key);
/* The same two as raw bytes, for a plain socket before any buffer exists. */
void pg_ssl_request_bytes(uint8_t out[8]);
void pg_cancel_bytes(uint8_t out[16], uint32_t pid, uint32_t key);
void pg_put_password(struct evbuffer *out, const char *password);
void pg_put_sasl_initial(struct evbuffer *out, const char *mech, const void *data, size_t len);
void pg_put_sasl_response(struct evbuffer *out, const void *data, size_t len);
/* A message with a raw body. */
void pg_put_msg(struct evbuffer *out, char type, const void *body, size_t len);

#endif
