/* Outbound connections: resolve, connect to each address in turn, SSLRequest, TLS. */
#include "upconn.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cfg.h"
#include "pgwire/pgproto.h"
#include "sockio.h"
#include "tlsctx.h"
#include "util.h"

struct upconn {
	struct event_base *base;
	struct evdns_base *dns;
	struct event ev; /* the start, then connect and SSLRequest answer */
	struct evdns_getaddrinfo_request *dns_req;
	struct evutil_addrinfo *addrs, *next;
	struct evutil_addrinfo given; /* opts.addr as a one-address list */
	struct sockaddr_storage given_sa;
	int fd, last_errno;
	struct sio *io; /* during the TLS handshake */
	char *host, *tls_name, *ca_file;
	int port, sslmode;
	bool tls, ssl_request, keepalive;
	bool resolving; /* inside evdns_getaddrinfo, which may answer at once */
	bool answered;  /* ... and did, with dns_err */
	int dns_err;
	upconn_cb done;
	void *arg;
};

int upconn_fd(const struct upconn *uc)
{
	return uc ? (uc->io ? sio_fd(uc->io) : uc->fd) : -1;
}

void upconn_abort(struct upconn *uc)
{
	if (!uc)
		return;
	if (uc->dns_req)
		evdns_getaddrinfo_cancel(uc->dns_req); /* its callback runs with EAI_CANCEL */
	if (event_initialized(&uc->ev))
		event_del(&uc->ev);
	if (uc->io)
		sio_free(uc->io);
	else if (uc->fd >= 0)
		close(uc->fd);
	if (uc->addrs)
		evutil_freeaddrinfo(uc->addrs);
	free(uc->host);
	free(uc->tls_name);
	free(uc->ca_file);
	free(uc);
}

/* The end: done gets the connection or the failure, and the upconn is freed. */
static void finish(struct upconn *uc, struct sio *io, enum upconn_failure why, const char *detail)
{
	upconn_cb done = uc->done;
	void *arg = uc->arg;

	if (io == uc->io)
		uc->io = NULL;
	upconn_abort(uc);
	done(io, why, detail ? detail : "", arg);
}

static void handshake_cb(struct sio *io, short what, void *arg)
{
	struct upconn *uc = arg;

	if (what & SIO_CONNECTED) {
		sio_setcb(io, NULL, NULL, NULL, NULL);
		finish(uc, io, UC_OK, NULL);
		return;
	}
	char *why = tls_failure(sio_ssl(io), uc->tls_name ? uc->tls_name : uc->host,
				sio_ssl_error(io));
	ERR_clear_error();
	finish(uc, NULL, why ? UC_TLS_HANDSHAKE : UC_NO_MEMORY, why);
	free(why);
}

/* Connected, and past SSLRequest when there was one: the sio, with TLS unless disabled. */
static void start_io(struct upconn *uc)
{
	SSL *ssl = NULL;
	char *err = NULL;

	if (uc->tls) {
		SSL_CTX *ctx = tls_client_ctx(uc->sslmode, uc->ca_file, &err);
		if (!ctx) {
			finish(uc, NULL, UC_TLS_SETUP, err);
			free(err);
			return;
		}
		ssl = tls_client_ssl(ctx, uc->sslmode, uc->tls_name ? uc->tls_name : uc->host,
				     uc->host, uc->port);
		if (!ssl) {
			char msg[300];
			snprintf(msg, sizeof(msg), "cannot set up TLS for \"%s\"",
				 uc->tls_name ? uc->tls_name : uc->host);
			finish(uc, NULL, UC_TLS_SETUP, msg);
			return;
		}
	}
	struct sio *io = sio_new(uc->base, uc->fd, ssl);
	if (!io) {
		if (ssl)
			SSL_free(ssl);
		finish(uc, NULL, UC_NO_MEMORY, NULL);
		return;
	}
	uc->fd = -1; /* the sio's now */
	if (ssl) {
		uc->io = io;
		sio_setcb(io, NULL, NULL, handshake_cb, uc);
	}
	sio_enable(io, EV_READ | EV_WRITE);
	if (!ssl)
		finish(uc, io, UC_OK, NULL);
}

static void ssl_answer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn *uc = arg;
	char buf[2];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);

	(void)what;
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		event_add(&uc->ev, NULL);
		return;
	}
	if (n <= 0)
		finish(uc, NULL, UC_SSL_CLOSED, n < 0 ? strerror(errno) : "");
	else if (n == 1 && buf[0] == 'S')
		start_io(uc);
	else if (n == 1 && buf[0] == 'N')
		finish(uc, NULL, UC_SSL_REFUSED, NULL);
	else
		finish(uc, NULL, UC_SSL_INVALID, NULL);
}

static void try_connect(struct upconn *uc);

static void connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn *uc = arg;
	int err = 0;
	socklen_t len = sizeof(err);
	uint8_t ssl_request[8];

	(void)what;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		uc->last_errno = err;
		close(uc->fd);
		uc->fd = -1;
		try_connect(uc);
		return;
	}
	if (!uc->ssl_request || !uc->tls) {
		start_io(uc);
		return;
	}
	/* a fresh socket always takes 8 bytes */
	pg_ssl_request_bytes(ssl_request);
	if (send(fd, ssl_request, sizeof(ssl_request), MSG_NOSIGNAL) !=
	    (ssize_t)sizeof(ssl_request)) {
		uc->last_errno = errno;
		finish(uc, NULL, UC_CONNECT, strerror(errno));
		return;
	}
	event_assign(&uc->ev, uc->base, fd, EV_READ, ssl_answer_cb, uc);
	event_add(&uc->ev, NULL);
}

/* The next address; when none is left, the failure is the last address's error. */
static void try_connect(struct upconn *uc)
{
	uc->fd = sock_connect_next(&uc->next, &uc->last_errno, uc->keepalive);
	if (uc->fd >= 0) {
		event_assign(&uc->ev, uc->base, uc->fd, EV_WRITE, connect_cb, uc);
		event_add(&uc->ev, NULL);
		return;
	}
	finish(uc, NULL, UC_CONNECT, strerror(uc->last_errno ? uc->last_errno : ECONNREFUSED));
}

static void resolved(struct upconn *uc, int err)
{
	if (err) {
		finish(uc, NULL, UC_RESOLVE, evutil_gai_strerror(err));
		return;
	}
	uc->next = uc->addrs;
	try_connect(uc);
}

static void dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct upconn *uc = arg;

	/* after upconn_abort, libevent calls back later with EAI_CANCEL (and frees ai) */
	if (err == EVUTIL_EAI_CANCEL)
		return;
	uc->dns_req = NULL;
	uc->addrs = ai;
	if (uc->resolving) {
		/* answered inside evdns_getaddrinfo: carried on once it has returned, which
		 * must not find the upconn freed */
		uc->answered = true;
		uc->dns_err = err;
		return;
	}
	resolved(uc, err);
}

static void start_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn *uc = arg;
	struct evutil_addrinfo hints = { .ai_family = AF_UNSPEC,
					 .ai_socktype = SOCK_STREAM,
					 .ai_protocol = IPPROTO_TCP };
	char port[8];

	(void)fd;
	(void)what;
	if (uc->given.ai_addr) {
		uc->next = &uc->given;
		try_connect(uc);
		return;
	}
	snprintf(port, sizeof(port), "%d", uc->port);
	uc->resolving = true;
	struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(uc->dns, uc->host, port, &hints,
								  dns_cb, uc);
	uc->resolving = false;
	if (uc->answered)
		resolved(uc, uc->dns_err);
	else
		uc->dns_req = req;
}

struct upconn *upconn_start(struct event_base *base, struct evdns_base *dns,
			    const struct upconn_opts *o, upconn_cb done, void *arg)
{
	struct upconn *uc = calloc(1, sizeof(*uc));

	if (!uc)
		return NULL;
	uc->fd = -1;
	uc->base = base;
	uc->dns = dns;
	uc->port = o->port;
	uc->tls = o->tls;
	uc->sslmode = o->sslmode;
	uc->ssl_request = o->ssl_request;
	uc->keepalive = o->keepalive;
	uc->done = done;
	uc->arg = arg;
	if (!(uc->host = strdup(o->host)) ||
	    (o->tls_name && !(uc->tls_name = strdup(o->tls_name))) ||
	    (o->ca_file && !(uc->ca_file = strdup(o->ca_file))) ||
	    (o->addr && o->addrlen > sizeof(uc->given_sa))) {
		upconn_abort(uc);
		return NULL;
	}
	if (o->addr) {
		memcpy(&uc->given_sa, o->addr, o->addrlen);
		uc->given.ai_family = o->addr->sa_family;
		uc->given.ai_socktype = SOCK_STREAM;
		uc->given.ai_protocol = IPPROTO_TCP;
		uc->given.ai_addr = (struct sockaddr *)&uc->given_sa;
		uc->given.ai_addrlen = o->addrlen;
	}
	/* started from the loop, so that done never runs inside upconn_start */
	event_assign(&uc->ev, base, -1, 0, start_cb, uc);
	event_active(&uc->ev, EV_TIMEOUT, 1);
	return uc;
}
