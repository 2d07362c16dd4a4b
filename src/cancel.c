/* CancelRequest forwarding. A client's cancel names the key cratebouncer issued; the
 * session running its query upstream is cancelled over a new connection to the same
 * upstream address, with TLS as configured, carrying that session's own key. The
 * connection closes once the request is written, as the protocol has no answer. */
#include "cancel.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "pgproto.h"
#include "pool.h"
#include "tlsctx.h"

#define CANCEL_TIMEOUT_SECS 10

struct canceller {
	int fd;
	struct event io, timer;
	struct bufferevent *bev;
	int sslmode;
	uint32_t pid, key;
	char host[256];
	int port;
	char ca_file[512];
	bool has_ca;
	void (*done)(uint64_t id);
	uint64_t id;
};

static void finish(struct canceller *k, const char *why)
{
	if (why)
		log_debug("cancel request to %s not delivered: %s", k->host, why);
	if (k->done)
		k->done(k->id);
	event_del(&k->timer);
	if (event_initialized(&k->io))
		event_del(&k->io);
	if (k->bev) {
		SSL *ssl = bufferevent_openssl_get_ssl(k->bev);
		tls_close_notify(ssl); /* before libevent's SSL_free */
		bufferevent_setcb(k->bev, NULL, NULL, NULL, NULL);
		bufferevent_free(k->bev); /* closes the socket; safe inside its callbacks */
	} else if (k->fd >= 0) {
		close(k->fd);
	}
	free(k);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	finish(arg, "timed out");
}

/* The request is written; the upstream closes the connection once it has processed it. */
static void tls_write_cb(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_enable(bev, EV_READ);
}

static void tls_read_cb(struct bufferevent *bev, void *arg)
{
	(void)arg;
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct canceller *k = arg;

	if (what & BEV_EVENT_CONNECTED) {
		pg_put_cancel(bufferevent_get_output(bev), k->pid, k->key);
		return;
	}
	ERR_clear_error();
	finish(k, (what & BEV_EVENT_EOF) ? NULL : "TLS handshake failed");
}

static void ssl_answer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct canceller *k = arg;
	char c;
	char *err = NULL;

	if (recv(fd, &c, 1, 0) != 1 || c != 'S') {
		finish(k, "upstream refused TLS");
		return;
	}
	SSL_CTX *ctx = tls_client_ctx(k->sslmode, k->has_ca ? k->ca_file : NULL, &err);
	SSL *ssl = ctx ? tls_client_ssl(ctx, k->sslmode, k->host, k->host, k->port) : NULL;
	free(err);
	if (!ssl) {
		finish(k, "cannot set up TLS");
		return;
	}
	k->bev = bufferevent_openssl_socket_new(pools_base(), fd, ssl, BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (!k->bev) {
		SSL_free(ssl);
		finish(k, "out of memory");
		return;
	}
	k->fd = -1;
	bufferevent_setcb(k->bev, tls_read_cb, tls_write_cb, tls_event_cb, k);
	bufferevent_enable(k->bev, EV_READ | EV_WRITE);
}

static void eof_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[64];

	(void)what;
	if (recv(fd, buf, sizeof(buf), 0) > 0) {
		event_add(&((struct canceller *)arg)->io, NULL);
		return;
	}
	finish(arg, NULL);
}

static void connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct canceller *k = arg;
	uint8_t ssl_request[8];
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		finish(k, "cannot connect");
		return;
	}
	if (k->sslmode == SSLMODE_DISABLE) {
		uint8_t pkt[16];
		pg_cancel_bytes(pkt, k->pid, k->key);
		if (send(fd, pkt, sizeof(pkt), MSG_NOSIGNAL) != (ssize_t)sizeof(pkt)) {
			finish(k, strerror(errno));
			return;
		}
		/* done when the upstream closes the connection */
		event_del(&k->io);
		event_assign(&k->io, pools_base(), fd, EV_READ, eof_cb, k);
		event_add(&k->io, NULL);
		return;
	}
	pg_ssl_request_bytes(ssl_request);
	if (send(fd, ssl_request, sizeof(ssl_request), MSG_NOSIGNAL) != (ssize_t)sizeof(ssl_request)) {
		finish(k, "cannot send SSLRequest");
		return;
	}
	event_assign(&k->io, pools_base(), fd, EV_READ, ssl_answer_cb, k);
	event_add(&k->io, NULL);
}

void cancel_forward(const struct sockaddr *sa, socklen_t salen, const char *host, int sslmode,
		    const char *ca_file, uint32_t pid, uint32_t key, void (*done)(uint64_t id),
		    uint64_t id)
{
	struct canceller *k = calloc(1, sizeof(*k));
	struct timeval tv = { CANCEL_TIMEOUT_SECS, 0 };

	if (!k) {
		if (done)
			done(id);
		return;
	}
	k->done = done;
	k->id = id;
	k->sslmode = sslmode;
	k->pid = pid;
	k->key = key;
	snprintf(k->host, sizeof(k->host), "%s", host);
	/* the port, for the TLS session cache it shares with the pool's connections */
	if (sa->sa_family == AF_INET)
		k->port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	else if (sa->sa_family == AF_INET6)
		k->port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	if (ca_file) {
		snprintf(k->ca_file, sizeof(k->ca_file), "%s", ca_file);
		k->has_ca = true;
	}
	evtimer_assign(&k->timer, pools_base(), timeout_cb, k);
	evtimer_add(&k->timer, &tv);
	k->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (k->fd < 0 || (connect(k->fd, sa, salen) < 0 && errno != EINPROGRESS)) {
		finish(k, "cannot connect");
		return;
	}
	event_assign(&k->io, pools_base(), k->fd, EV_WRITE, connect_cb, k);
	event_add(&k->io, NULL);
}
