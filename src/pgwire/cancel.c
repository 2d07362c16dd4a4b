/* CancelRequest forwarding. A client's cancel names the key cratebouncer issued; the
 * session running its query upstream is cancelled over a new connection to the same
 * upstream address (upconn), with TLS as configured, carrying that session's own key.
 * The connection closes once the upstream has read the request, as the protocol has no
 * answer. */
#include "cancel.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "core/log.h"
#include "core/runtime.h"
#include "pgproto.h"
#include "core/sockio.h"
#include "core/upconn.h"

#define CANCEL_TIMEOUT_SECS 10

struct canceller {
	struct upconn *uc;
	struct sio *io;
	struct event timer; /* CANCEL_TIMEOUT_SECS, or the end once it came */
	bool ended;         /* the connection ended: finish from the timer */
	const char *why;
	char host[256];
	uint32_t pid, key;
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
	upconn_abort(k->uc);
	if (k->io)
		sio_free(k->io); /* close_notify first (tls_close_notify) */
	free(k);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct canceller *k = arg;

	(void)fd;
	(void)what;
	finish(k, k->ended ? k->why : "timed out");
}

static void read_cb(struct sio *io, void *arg)
{
	(void)arg;
	evbuffer_drain(sio_input(io), evbuffer_get_length(sio_input(io)));
}

/* The upstream closes the connection once it has processed the request. The sio is
 * freed from the timer: sockio may look at it again after this callback. */
static void event_cb(struct sio *io, short what, void *arg)
{
	struct canceller *k = arg;
	struct timeval now = { 0, 0 };

	sio_setcb(io, NULL, NULL, NULL, NULL);
	sio_disable(io, EV_READ | EV_WRITE);
	k->ended = true;
	k->why = (what & SIO_EOF) ? NULL : "the connection failed";
	evtimer_add(&k->timer, &now);
}

static void connected(struct sio *io, enum upconn_failure why, const char *detail, void *arg)
{
	struct canceller *k = arg;
	static const char *const reasons[] = {
		[UC_RESOLVE] = "cannot resolve",
		[UC_CONNECT] = "cannot connect",
		[UC_SSL_CLOSED] = "closed after SSLRequest",
		[UC_SSL_REFUSED] = "upstream refused TLS",
		[UC_SSL_INVALID] = "an invalid answer to SSLRequest",
		[UC_TLS_SETUP] = "cannot set up TLS",
		[UC_TLS_HANDSHAKE] = "TLS handshake failed",
		[UC_NO_MEMORY] = "out of memory",
	};

	k->uc = NULL;
	if (!io) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s%s%s", reasons[why], *detail ? ": " : "", detail);
		finish(k, msg);
		return;
	}
	k->io = io;
	sio_setcb(io, read_cb, NULL, event_cb, k);
	pg_put_cancel(sio_output(io), k->pid, k->key);
	sio_flush(io);
}

void cancel_forward(const struct sockaddr *sa, socklen_t salen, const char *host, int sslmode,
		    const char *ca_file, uint32_t pid, uint32_t key, void (*done)(uint64_t id),
		    uint64_t id)
{
	struct canceller *k = calloc(1, sizeof(*k));
	struct timeval tv = { CANCEL_TIMEOUT_SECS, 0 };
	struct upconn_opts o = { .host = host,
				 .addr = sa,
				 .addrlen = salen,
				 .tls = sslmode != SSLMODE_DISABLE,
				 .sslmode = sslmode,
				 .ca_file = ca_file,
				 .ssl_request = true };

	if (!k) {
		if (done)
			done(id);
		return;
	}
	k->done = done;
	k->id = id;
	k->pid = pid;
	k->key = key;
	snprintf(k->host, sizeof(k->host), "%s", host);
	/* the port, for the TLS session cache it shares with the pool's connections */
	if (sa->sa_family == AF_INET)
		o.port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	else if (sa->sa_family == AF_INET6)
		o.port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	evtimer_assign(&k->timer, rt_base(), timeout_cb, k);
	evtimer_add(&k->timer, &tv);
	k->uc = upconn_start(rt_base(), NULL, &o, connected, k);
	if (!k->uc)
		finish(k, "out of memory");
}
