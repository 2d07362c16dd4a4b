/* Outbound connections to an upstream, the one place they are made: the host resolved
 * (evdns) unless an address is given, each address tried in turn (non-blocking connect),
 * for pgwire an SSLRequest and its one-byte answer, then TLS with tlsctx's checks (SNI,
 * verify-full, a cached session offered). pgwire servers, cancel requests and the HTTP
 * side's upstream connections all start here; what they do on the connection is theirs. */
#ifndef CB_UPCONN_H
#define CB_UPCONN_H

#include <stdbool.h>
#include <sys/socket.h>

struct event_base;
struct evdns_base;
struct sio;
struct upconn;

enum upconn_failure {
	UC_OK,
	UC_RESOLVE,       /* detail: the resolver's error */
	UC_CONNECT,       /* detail: strerror of the last address's error */
	UC_SSL_CLOSED,    /* closed after SSLRequest; detail: strerror, or "" at EOF */
	UC_SSL_REFUSED,   /* SSLRequest answered 'N' */
	UC_SSL_INVALID,   /* another answer, or more than its one byte (CVE-2021-23222) */
	UC_TLS_SETUP,     /* detail: why (the CA file, no memory) */
	UC_TLS_HANDSHAKE, /* detail: tls_failure's description */
	UC_NO_MEMORY,
};

struct upconn_opts {
	const char *host; /* resolved and connected to, unless addr is given */
	int port;
	const char *tls_name;        /* sent as SNI and verified; NULL: host */
	const struct sockaddr *addr; /* this address only, no resolving (a cancel) */
	socklen_t addrlen;
	bool tls; /* TLS, checked as sslmode says (SSLMODE_DISABLE: no check) */
	int sslmode;
	const char *ca_file; /* NULL: the system's CAs */
	bool ssl_request;    /* pgwire: SSLRequest before TLS */
	bool keepalive;      /* SO_KEEPALIVE */
};

/* done: the connection, TLS established when asked for, its callbacks unset and reading
 * and writing enabled (the caller sets its own); or NULL, why and a detail (valid during
 * the call). Called once, never from upconn_start; the upconn is gone after it. */
typedef void (*upconn_cb)(struct sio *io, enum upconn_failure why, const char *detail, void *arg);

/* Strings in o are copied. NULL: out of memory. */
struct upconn *upconn_start(struct event_base *base, struct evdns_base *dns,
			    const struct upconn_opts *o, upconn_cb done, void *arg);
/* Gives up (before done): done is not called. NULL is fine. */
void upconn_abort(struct upconn *uc);
/* The socket being connected, or -1 (SHOW SERVERS' addresses during login). */
int upconn_fd(const struct upconn *uc);

#endif
