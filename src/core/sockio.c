/* Buffered socket I/O, plain or TLS behind one ops table (the idea of PgBouncer's
 * sbufio ops). Reading: one recv per readable event, or SSL_read with read-ahead until
 * OpenSSL holds nothing more, into the input evbuffer, then the read callback. Writing:
 * straight from the output evbuffer while the socket takes it; an EV_WRITE event is added
 * only when it does not. Data added to the output by anyone is written at the end of the
 * event loop pass (the connection is queued; that costs no syscall). The read event stays
 * added while reading is enabled. Level-triggered: what one event leaves unread fires
 * the next. */
#include "sockio.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "tlsctx.h"
#include "util.h"

#define READ_CHUNK 16384
#define WRITE_CHUNK 16384

struct sio;

/* >0 bytes, 0 would block, -1 EOF, -2 error. */
struct sio_ops {
	int (*read)(struct sio *io);
	int (*write)(struct sio *io);
};

/* The deadlines and their timer, allocated only while one is set. */
struct deadline {
	struct event ev;
	uint64_t rd, wr; /* usec, 0: none */
};

/* An idle connection holds this alone (and its event in libevent's fd map): the
 * buffers, the write event and the timer exist only while they are needed, and the
 * flags are bits, so that 100,000 idle clients cost little. */
struct sio {
	struct event rev;
	struct event *wev;      /* only once a write had to wait: most never do */
	struct deadline *timer; /* only while a deadline is set: most connections have none */
	struct evbuffer *in, *out;
	struct sio **out_owner; /* out's callback argument: names this connection */
	const struct sio_ops *ops;
	SSL *ssl;
	int fd;
	bool reading : 1, writing : 1, rev_added : 1, wev_added : 1, suppress : 1;
	bool pending_read : 1, handshaking : 1, read_wants_write : 1, write_wants_read : 1;
	bool dead : 1, queued : 1;
	bool broken : 1; /* something could not be allocated: SIO_ERROR from the loop */
	sio_data_cb rcb, wcb;
	sio_event_cb ecb;
	void *arg;
	unsigned long ssl_err;
	TAILQ_ENTRY(sio) flushq; /* on the list written at the end of the loop pass */
};

/* Output of the data path is written once per event loop pass, after every ready event
 * has been handled: the peers are woken once for a batch, not once per message. */
static TAILQ_HEAD(, sio) flush_list = TAILQ_HEAD_INITIALIZER(flush_list);
static struct event *flush_ev;

static void update_events(struct sio *io);
static void arm_timer(struct sio *io);
static void kick(struct sio *io);
static void out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

/* A connection's buffers exist while they hold something: they are taken when first
 * needed and sio_trim gives them back when empty (the end of a loop pass does, for what
 * it wrote), so an idle client holds none. When one cannot be made, the caller gets
 * this one, which drops whatever is added to it at once (the callers, which could count
 * on adding to a buffer, go on as usual; nothing meant for one connection stays there
 * for another), and the connection fails with SIO_ERROR from the event loop. */
static struct evbuffer *null_buf;

static void discard_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)arg;
	if (info->n_added)
		evbuffer_drain(buf, evbuffer_get_length(buf));
}

/* Out of memory for this connection: it fails from the event loop, not under its owner. */
static void broken(struct sio *io, const char *what)
{
	if (io->broken)
		return;
	log_error("out of memory: a connection's %s cannot be allocated", what);
	io->broken = true;
	kick(io);
}

static struct evbuffer *no_buffer(struct sio *io)
{
	broken(io, "buffer");
	return null_buf;
}

/* Spare empty buffers: what a loop pass wrote empty is given back here and the next
 * connection that needs a buffer takes it, so that the busy path allocates nothing. Only
 * an empty buffer is kept. An output buffer keeps its callback, whose argument is a
 * cell naming the connection it is lent to. Bounded: beyond SPARES they are freed. */
#define SPARES 256
static struct evbuffer *spare_in[SPARES];
static struct spare_out {
	struct evbuffer *buf;
	struct sio **owner;
} spare_out[SPARES];
static int nspare_in, nspare_out;

static struct evbuffer *in_buf(struct sio *io)
{
	if (!io->in) {
		io->in = nspare_in ? spare_in[--nspare_in] : evbuffer_new();
		if (!io->in)
			return no_buffer(io);
	}
	return io->in;
}

static struct evbuffer *out_buf(struct sio *io)
{
	if (!io->out) {
		struct spare_out o = { NULL, NULL };
		if (nspare_out) {
			o = spare_out[--nspare_out];
		} else if (!(o.owner = malloc(sizeof(*o.owner))) || !(o.buf = evbuffer_new()) ||
			   !evbuffer_add_cb(o.buf, out_cb, o.owner)) {
			if (o.buf)
				evbuffer_free(o.buf);
			free(o.owner);
			return no_buffer(io);
		}
		*o.owner = io;
		io->out = o.buf;
		io->out_owner = o.owner;
	}
	return io->out;
}

static void put_in(struct sio *io)
{
	if (nspare_in < SPARES && evbuffer_get_length(io->in) == 0)
		spare_in[nspare_in++] = io->in;
	else
		evbuffer_free(io->in);
	io->in = NULL;
}

static void put_out(struct sio *io)
{
	*io->out_owner = NULL;
	if (nspare_out < SPARES && evbuffer_get_length(io->out) == 0) {
		spare_out[nspare_out++] = (struct spare_out){ io->out, io->out_owner };
	} else {
		evbuffer_free(io->out);
		free(io->out_owner);
	}
	io->out = NULL;
	io->out_owner = NULL;
}

static size_t out_len(const struct sio *io)
{
	return io->out ? evbuffer_get_length(io->out) : 0;
}

/* Reads land here and only what arrived is copied into the input buffer: a small
 * allocation for a small message, not a 16 kB chain per read. */
static unsigned char read_buf[READ_CHUNK];

static int raw_read(struct sio *io)
{
	ssize_t n = recv(io->fd, read_buf, sizeof(read_buf), 0);

	if (n > 0)
		return evbuffer_add(in_buf(io), read_buf, (size_t)n) == 0 ? (int)n : -2;
	if (n == 0)
		return -1;
	return errno == EAGAIN || errno == EINTR ? 0 : -2;
}

static int raw_write(struct sio *io)
{
	int n = evbuffer_write_atmost(io->out, io->fd, -1);

	if (n >= 0)
		return n;
	return errno == EAGAIN || errno == EINTR ? 0 : -2;
}

/* An SSL_read/SSL_write result that is not data: 0 would block, -1 EOF, -2 error. */
static int tls_status(struct sio *io, int rc, bool reading)
{
	int err = SSL_get_error(io->ssl, rc);
	unsigned long e;

	switch (err) {
	case SSL_ERROR_WANT_READ:
		if (!reading)
			io->write_wants_read = true;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		if (reading)
			io->read_wants_write = true;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return -1;
	case SSL_ERROR_SYSCALL:
		e = ERR_get_error();
		ERR_clear_error();
		if (!e && (errno == 0 || errno == ECONNRESET || errno == EPIPE))
			return -1; /* closed without close_notify: the upstream went away */
		io->ssl_err = e;
		return -2;
	default:
		io->ssl_err = ERR_get_error();
		ERR_clear_error();
		return -2;
	}
}

static int tls_read(struct sio *io)
{
	int total = 0, n;

	do {
		errno = 0;
		ERR_clear_error(); /* SSL_get_error must not see another connection's error */
		n = SSL_read(io->ssl, read_buf, (int)sizeof(read_buf));
		if (n <= 0) {
			/* data already read is delivered; EOF or an error comes with the next event */
			int st = tls_status(io, n, true);
			return total > 0 ? total : st;
		}
		if (evbuffer_add(in_buf(io), read_buf, (size_t)n) < 0)
			return -2;
		total += n;
	} while (SSL_has_pending(io->ssl));
	return total;
}

static int tls_write(struct sio *io)
{
	int total = 0;

	while (out_len(io) > 0) {
		size_t len = evbuffer_get_length(io->out);
		int chunk = len > WRITE_CHUNK ? WRITE_CHUNK : (int)len;
		unsigned char *p = evbuffer_pullup(io->out, chunk);
		if (!p)
			return -2;
		errno = 0;
		ERR_clear_error();
		int n = SSL_write(io->ssl, p, chunk);
		if (n <= 0) {
			int st = tls_status(io, n, false);
			return st == 0 ? total : st;
		}
		evbuffer_drain(io->out, (size_t)n);
		total += n;
	}
	return total;
}

static const struct sio_ops raw_ops = { raw_read, raw_write };
static const struct sio_ops tls_ops = { tls_read, tls_write };

static void fire_event(struct sio *io, short what)
{
	io->dead = true;
	io->reading = io->writing = false;
	update_events(io);
	if (io->ecb)
		io->ecb(io, what, io->arg);
}

/* Runs the handshake on; true when it finished (SIO_CONNECTED was fired). */
static bool handshake(struct sio *io)
{
	errno = 0;
	ERR_clear_error();
	int rc = SSL_do_handshake(io->ssl);

	if (rc == 1) {
		io->handshaking = false;
		update_events(io);
		if (io->ecb)
			io->ecb(io, SIO_CONNECTED, io->arg);
		return true;
	}
	int err = SSL_get_error(io->ssl, rc);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		io->read_wants_write = err == SSL_ERROR_WANT_WRITE;
		update_events(io);
		return false;
	}
	io->ssl_err = ERR_peek_last_error();
	ERR_clear_error();
	fire_event(io, SIO_ERROR | (err == SSL_ERROR_SYSCALL && !io->ssl_err ? SIO_EOF : 0));
	return false;
}

static void do_write(struct sio *io);
static void do_write_cb(struct sio *io, bool cb);

static void do_read(struct sio *io)
{
	int n;

	io->read_wants_write = false;
	n = io->ops->read(io);
	if (n > 0 && io->rcb && io->reading)
		io->rcb(io, io->arg);
	if (n < 0 && !io->dead)
		fire_event(io, SIO_READING | (n == -1 ? SIO_EOF : SIO_ERROR));
	else if (io->read_wants_write && !io->dead)
		update_events(io);
}

static void read_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sio *io = arg;

	(void)fd;
	(void)what;
	if (io->handshaking) {
		handshake(io);
		return;
	}
	if (io->write_wants_read) {
		io->write_wants_read = false;
		do_write(io);
		if (io->dead)
			return;
	}
	if (io->reading)
		do_read(io);
}

static void do_write_cb(struct sio *io, bool cb);

static void do_write(struct sio *io)
{
	do_write_cb(io, true);
}

static void do_write_cb(struct sio *io, bool cb)
{
	int n = 0;

	if (out_len(io) > 0)
		n = io->ops->write(io);
	if (n < 0) {
		fire_event(io, SIO_WRITING | (n == -1 ? SIO_EOF : SIO_ERROR));
		return;
	}
	update_events(io);
	if (cb && out_len(io) == 0 && io->wcb)
		io->wcb(io, io->arg);
}

static void write_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sio *io = arg;

	(void)fd;
	(void)what;
	if (io->dead)
		return;
	if (io->handshaking) {
		handshake(io);
		return;
	}
	if (io->read_wants_write) {
		io->read_wants_write = false;
		if (io->reading)
			do_read(io);
		if (io->dead)
			return;
	}
	if (io->writing)
		do_write(io);
}

static void timer_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sio *io = arg;
	uint64_t now = now_usec();

	(void)fd;
	(void)what;
	/* also when dead: the owner may be waiting for a flush that will never happen */
	if (io->timer->rd && now >= io->timer->rd) {
		io->timer->rd = 0;
		fire_event(io, SIO_READING | SIO_TIMEOUT);
		return;
	}
	if (io->timer->wr && now >= io->timer->wr) {
		io->timer->wr = 0;
		fire_event(io, SIO_WRITING | SIO_TIMEOUT);
		return;
	}
	/* libevent's coarse clock fired a little early: again for what is left */
	arm_timer(io);
}

/* Data added to the output by whoever: written from the event loop. */
static void out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct sio *io = *(struct sio **)arg;

	(void)buf;
	if (io && info->n_added && !io->suppress && !io->wev_added && !io->dead)
		kick(io);
}

/* The read and write events as the state asks; epoll_ctl only on a change. */
static void update_events(struct sio *io)
{
	bool want_r = !io->dead && (io->handshaking ? !io->read_wants_write
						    : io->reading || io->write_wants_read);
	bool want_w = !io->dead &&
		      (io->handshaking ? io->read_wants_write
				       : io->read_wants_write || (io->writing && out_len(io) > 0 &&
								  !io->write_wants_read));

	if (want_r != io->rev_added) {
		if (want_r)
			event_add(&io->rev, NULL);
		else
			event_del(&io->rev);
		io->rev_added = want_r;
	}
	if (want_w != io->wev_added) {
		if (want_w && !io->wev &&
		    !(io->wev = event_new(event_get_base(&io->rev), io->fd, EV_WRITE | EV_PERSIST,
					  write_ev, io))) {
			broken(io, "write event");
			return;
		}
		if (want_w)
			event_add(io->wev, NULL);
		else
			event_del(io->wev);
		io->wev_added = want_w;
	}
}

struct sio *sio_new(struct event_base *base, int fd, SSL *ssl)
{
	struct sio *io;

	if (!null_buf) {
		if (!(null_buf = evbuffer_new()))
			return NULL;
		if (!evbuffer_add_cb(null_buf, discard_cb, NULL)) {
			evbuffer_free(null_buf);
			null_buf = NULL;
			return NULL;
		}
	}
	if (!(io = calloc(1, sizeof(*io))))
		return NULL;
	io->fd = fd;
	io->ssl = ssl;
	io->ops = ssl ? &tls_ops : &raw_ops;
	event_assign(&io->rev, base, fd, EV_READ | EV_PERSIST, read_ev, io);
	if (ssl) {
		SSL_set_mode(ssl,
			     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		SSL_set_read_ahead(ssl, 1);
		SSL_set_fd(ssl, fd);
		SSL_set_connect_state(ssl);
		io->handshaking = true;
		kick(io); /* the ClientHello goes from the loop */
	}
	return io;
}

void sio_free(struct sio *io)
{
	if (!io)
		return;
	event_del(&io->rev);
	if (io->wev)
		event_free(io->wev);
	if (io->timer) {
		event_del(&io->timer->ev);
		free(io->timer);
	}
	if (io->queued)
		TAILQ_REMOVE(&flush_list, io, flushq);
	if (io->in)
		put_in(io);
	if (io->out)
		put_out(io);
	if (io->ssl) {
		if (!io->handshaking)
			tls_close_notify(io->ssl);
		SSL_free(io->ssl);
	}
	if (io->fd >= 0)
		close(io->fd);
	free(io);
}

void sio_setcb(struct sio *io, sio_data_cb read_cb, sio_data_cb write_cb, sio_event_cb event_cb,
	       void *arg)
{
	io->rcb = read_cb;
	io->wcb = write_cb;
	io->ecb = event_cb;
	io->arg = arg;
}

struct evbuffer *sio_input(struct sio *io)
{
	return in_buf(io);
}

struct evbuffer *sio_output(struct sio *io)
{
	return out_buf(io);
}

void sio_trim(struct sio *io)
{
	if (io->in && evbuffer_get_length(io->in) == 0)
		put_in(io);
	if (io->out && evbuffer_get_length(io->out) == 0)
		put_out(io);
	if (io->wev && !io->wev_added) {
		event_free(io->wev);
		io->wev = NULL;
	}
}

void sio_enable(struct sio *io, short what)
{
	if (io->dead)
		return;
	if (what & EV_READ)
		io->reading = true;
	if (what & EV_WRITE)
		io->writing = true;
	update_events(io);
	/* data may have arrived while reading was off and still sit in OpenSSL */
	if ((what & EV_READ) && io->ssl && !io->handshaking && SSL_has_pending(io->ssl)) {
		io->pending_read = true;
		kick(io);
	}
}

void sio_disable(struct sio *io, short what)
{
	if (what & EV_READ)
		io->reading = false;
	if (what & EV_WRITE)
		io->writing = false;
	update_events(io);
}

static void arm_timer(struct sio *io)
{
	struct deadline *t = io->timer;
	uint64_t next = t->rd;

	if (t->wr && (!next || t->wr < next))
		next = t->wr;
	if (!next) {
		/* freed, also from inside its own callback (libevent does not touch a
		 * non-persistent event after calling it): an idle connection carries no timer */
		event_del(&t->ev);
		free(t);
		io->timer = NULL;
		return;
	}
	uint64_t now = now_usec(), d = next > now ? next - now : 0;
	struct timeval tv = { (time_t)(d / 1000000), (suseconds_t)(d % 1000000) };
	event_add(&t->ev, &tv);
}

void sio_set_timeouts(struct sio *io, const struct timeval *rd, const struct timeval *wr)
{
	uint64_t now = now_usec();

	if (!rd && !wr && !io->timer)
		return;
	if (!io->timer) {
		if (!(io->timer = calloc(1, sizeof(*io->timer)))) {
			/* a deadline it needs cannot be kept: the connection fails */
			broken(io, "timer");
			return;
		}
		evtimer_assign(&io->timer->ev, event_get_base(&io->rev), timer_ev, io);
	}
	io->timer->rd = rd ? now + (uint64_t)rd->tv_sec * 1000000 + (uint64_t)rd->tv_usec : 0;
	io->timer->wr = wr ? now + (uint64_t)wr->tv_sec * 1000000 + (uint64_t)wr->tv_usec : 0;
	arm_timer(io);
}

int sio_fd(const struct sio *io)
{
	return io->fd;
}

SSL *sio_ssl(const struct sio *io)
{
	return io->ssl;
}

unsigned long sio_ssl_error(struct sio *io)
{
	return io->ssl_err;
}

void sio_flush(struct sio *io)
{
	if (io->dead || io->handshaking || !io->writing || io->write_wants_read)
		return;
	do_write_cb(io, false);
}

static void flush_all(evutil_socket_t fd, short what, void *arg)
{
	struct sio *io;

	(void)fd;
	(void)what;
	(void)arg;
	while ((io = TAILQ_FIRST(&flush_list))) {
		TAILQ_REMOVE(&flush_list, io, flushq);
		io->queued = false;
		if (io->dead)
			continue;
		if (io->broken) {
			fire_event(io, SIO_ERROR);
			continue;
		}
		if (io->handshaking) {
			handshake(io);
			continue;
		}
		if (io->pending_read) {
			io->pending_read = false;
			if (io->reading)
				do_read(io);
			if (io->dead)
				continue;
		}
		if (!io->writing || io->write_wants_read)
			update_events(io);
		else
			do_write(io);
		/* nothing of this pass holds a buffer now: one written empty goes, and the
		 * next connection's gets its memory (a burst of logins leaves no high water) */
		if (!io->dead && !io->handshaking)
			sio_trim(io);
	}
}

/* Queues the connection for the end of this loop pass: its output is written (and a
 * handshake or buffered read carried on) then. The write event itself is only ever
 * added or deleted, never activated by hand, so that libevent and wev_added agree. */
static void kick(struct sio *io)
{
	if (io->queued || io->dead)
		return;
	if (!flush_ev) {
		/* no batch writer (sio_init not called): at once */
		if (io->handshaking)
			handshake(io);
		else if (io->writing)
			do_write(io);
		return;
	}
	if (TAILQ_EMPTY(&flush_list))
		event_active(flush_ev, 0, 0);
	TAILQ_INSERT_TAIL(&flush_list, io, flushq);
	io->queued = true;
}

int sio_init(struct event_base *base)
{
	/* The priority of the I/O events (the default of three, 1): when the first callback of
	 * a pass queues a connection, flush_ev joins the tail of the queue that pass is running
	 * (libevent collects every ready event before it runs any), so it runs after the I/O
	 * events of the pass and in the same pass. At a lower priority it would run only in
	 * the next one, after one more epoll_wait: two more syscalls per query (strace -c). */
	flush_ev = event_new(base, -1, 0, flush_all, NULL);
	if (!flush_ev || event_priority_set(flush_ev, 1) < 0)
		return -1;
	return 0;
}

void sio_write_buffer(struct sio *io, struct evbuffer *src, size_t n)
{
	struct evbuffer *out = out_buf(io);

	if (out == null_buf) {
		evbuffer_drain(src, n); /* what was meant for this one goes */
		return;
	}
	io->suppress = true;
	evbuffer_remove_buffer(src, out, n);
	io->suppress = false;
	kick(io);
}

size_t sio_struct_size(void)
{
	return sizeof(struct sio);
}

unsigned sio_holds(const struct sio *io)
{
	return (io->in ? SIO_HOLDS_INPUT : 0) | (io->out ? SIO_HOLDS_OUTPUT : 0) |
	       (io->wev ? SIO_HOLDS_WRITE_EVENT : 0) | (io->timer ? SIO_HOLDS_TIMER : 0);
}
