/* A TCP relay on loopback that puts a network distance between a client and a server: each
 * direction delays what it carries by a one-way delay (and, optionally, by the time a link
 * of the given bandwidth takes to send it), so that a round trip costs 2 x DELAY_MS, as it
 * would to a cluster that far away. No kernel qdisc (tc netem) is needed, so it runs
 * unprivileged and touches only the connections given to it. Bytes keep their order; the
 * end of a stream (FIN) is delayed like the bytes before it.
 *
 *   delay_relay LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS [MBIT_PER_S]
 *
 * LISTEN_PORT 0 picks a free port. It prints "port N" once listening (on 127.0.0.1) and
 * runs until SIGTERM or SIGINT. Built by the bench scripts (cc ... -levent), not part of
 * cratebouncer. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#define HIGH_WATER (4u << 20) /* bytes held in one direction before reading pauses */

struct chunk {
	STAILQ_ENTRY(chunk) next;
	uint64_t due;		/* monotonic us when it reaches the other side */
	struct evbuffer *data;	/* NULL: the end of the stream */
};

struct pair;

struct dir {			/* one direction: from src to dst */
	struct pair *p;
	struct bufferevent *src, *dst;
	STAILQ_HEAD(, chunk) q;
	size_t queued;
	uint64_t link_free;	/* when the simulated link has sent what it was given */
	struct event *timer;
	bool src_eof;		/* the source's end was read (and queued) */
	bool eof_sent;
};

struct pair {
	struct dir up, down;	/* client -> server, server -> client */
	struct bufferevent *client, *server;
	int closed;		/* directions whose end went through */
	bool connecting;	/* inside bufferevent_socket_connect: errors wait for its return */
	bool failed;
};

static struct event_base *base;
static uint64_t delay_us;
static double bytes_per_us;	/* 0: no bandwidth limit */
static struct sockaddr_in target;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void pair_free(struct pair *p)
{
	struct dir *ds[] = { &p->up, &p->down };

	for (int i = 0; i < 2; i++) {
		struct chunk *c;
		while ((c = STAILQ_FIRST(&ds[i]->q))) {
			STAILQ_REMOVE_HEAD(&ds[i]->q, next);
			if (c->data)
				evbuffer_free(c->data);
			free(c);
		}
		event_free(ds[i]->timer);
	}
	bufferevent_free(p->client);
	bufferevent_free(p->server);
	free(p);
}

static void arm(struct dir *d)
{
	struct chunk *c = STAILQ_FIRST(&d->q);

	if (!c || evtimer_pending(d->timer, NULL))
		return;
	uint64_t now = now_us(), wait = c->due > now ? c->due - now : 0;
	struct timeval tv = { (time_t)(wait / 1000000u), (suseconds_t)(wait % 1000000u) };
	evtimer_add(d->timer, &tv);
}

/* Bytes held for the destination: queued here or not yet written to it. */
static size_t held(const struct dir *d)
{
	return d->queued + evbuffer_get_length(bufferevent_get_output(d->dst));
}

/* Reading from the source goes on while little is held (a slow reader slows the writer). */
static void resume(struct dir *d)
{
	if (held(d) < HIGH_WATER && !d->src_eof)
		bufferevent_enable(d->src, EV_READ);
}

/* Delivers what is due; the end of the stream half-closes the destination. */
static void deliver(evutil_socket_t fd, short what, void *arg)
{
	struct dir *d = arg;
	struct chunk *c;
	uint64_t now = now_us();

	(void)fd;
	(void)what;
	while ((c = STAILQ_FIRST(&d->q)) && c->due <= now) {
		STAILQ_REMOVE_HEAD(&d->q, next);
		if (c->data) {
			d->queued -= evbuffer_get_length(c->data);
			bufferevent_write_buffer(d->dst, c->data);
			evbuffer_free(c->data);
		} else {
			d->eof_sent = true;
		}
		free(c);
	}
	if (d->eof_sent && evbuffer_get_length(bufferevent_get_output(d->dst)) == 0) {
		shutdown(bufferevent_getfd(d->dst), SHUT_WR);
		d->eof_sent = false;
		if (++d->p->closed == 2) {
			pair_free(d->p);
			return;
		}
	}
	resume(d);
	arm(d);
}

static void enqueue(struct dir *d, struct evbuffer *data)
{
	struct chunk *c = calloc(1, sizeof(*c));
	uint64_t now = now_us();

	if (!c) {
		perror("delay_relay: calloc");
		exit(1);
	}
	c->data = data;
	if (d->link_free < now)
		d->link_free = now;
	if (data && bytes_per_us > 0)
		d->link_free += (uint64_t)((double)evbuffer_get_length(data) / bytes_per_us);
	c->due = d->link_free + delay_us;
	STAILQ_INSERT_TAIL(&d->q, c, next);
	arm(d);
}

static struct dir *dir_of(struct pair *p, struct bufferevent *bev)
{
	return bev == p->client ? &p->up : &p->down;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct dir *d = dir_of(arg, bev);
	struct evbuffer *data = evbuffer_new();

	if (!data) {
		perror("delay_relay: evbuffer_new");
		exit(1);
	}
	d->queued += evbuffer_get_length(bufferevent_get_input(bev));
	bufferevent_read_buffer(bev, data);
	enqueue(d, data);
	if (held(d) >= HIGH_WATER)
		bufferevent_disable(bev, EV_READ);
}

/* Output drained: a pending end of the stream can go. */
static void write_cb(struct bufferevent *bev, void *arg)
{
	struct pair *p = arg;
	struct dir *d = bev == p->server ? &p->up : &p->down;

	if (d->eof_sent)
		deliver(-1, 0, d);	/* may free the pair */
	else
		resume(d);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct pair *p = arg;

	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		bufferevent_enable(p->server, EV_READ);
		bufferevent_enable(p->client, EV_READ);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		if (p->connecting) {	/* reported synchronously (libevent 2.2): freed by the caller */
			p->failed = true;
			return;
		}
		/* a reset or a refused connect: both ends go at once, as a broken path would */
		if (bev == p->server && !(what & BEV_EVENT_READING) && !(what & BEV_EVENT_WRITING))
			fprintf(stderr, "delay_relay: cannot connect to the target: %s\n",
				evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		pair_free(p);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		struct dir *d = dir_of(p, bev);
		bufferevent_disable(bev, EV_READ);
		if (!d->src_eof) {
			d->src_eof = true;
			enqueue(d, NULL);
		}
	}
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct pair *p = calloc(1, sizeof(*p));
	int one = 1;

	(void)l;
	(void)sa;
	(void)len;
	(void)arg;
	if (!p) {
		evutil_closesocket(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	p->client = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	p->server = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	struct dir *ds[] = { &p->up, &p->down };
	for (int i = 0; i < 2; i++) {
		ds[i]->p = p;
		STAILQ_INIT(&ds[i]->q);
		ds[i]->timer = evtimer_new(base, deliver, ds[i]);
	}
	p->up.src = p->down.dst = p->client;
	p->up.dst = p->down.src = p->server;
	bufferevent_setcb(p->client, read_cb, write_cb, event_cb, p);
	bufferevent_setcb(p->server, read_cb, write_cb, event_cb, p);
	p->connecting = true;
	int rc = bufferevent_socket_connect(p->server, (struct sockaddr *)&target, sizeof(target));
	p->connecting = false;
	if (rc < 0 || p->failed) {
		fprintf(stderr, "delay_relay: cannot connect to the target: %s\n", strerror(errno));
		pair_free(p);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopexit(base, NULL);
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: delay_relay LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS "
			"[MBIT_PER_S]\n");
		return 2;
	}
	delay_us = (uint64_t)(atof(argv[4]) * 1000.0);
	if (argc == 6)
		bytes_per_us = atof(argv[5]) / 8.0; /* Mbit/s = bits per us */
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)atoi(argv[3]));
	if (inet_pton(AF_INET, strcmp(argv[2], "localhost") == 0 ? "127.0.0.1" : argv[2],
		      &target.sin_addr) != 1) {
		fprintf(stderr, "delay_relay: TARGET_HOST must be an IPv4 address or localhost\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* timers to the microsecond (timerfd), not epoll's milliseconds */
	struct event_config *ec = event_config_new();
	event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct evconnlistener *l = evconnlistener_new_bind(
		base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
		(struct sockaddr *)&sin, sizeof(sin));
	if (!l) {
		fprintf(stderr, "delay_relay: cannot listen on 127.0.0.1:%s: %s\n", argv[1],
			strerror(errno));
		return 1;
	}
	struct sockaddr_in got;
	socklen_t glen = sizeof(got);
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&got, &glen);
	printf("port %d\n", ntohs(got.sin_port));
	fflush(stdout);
	struct event *t = evsignal_new(base, SIGTERM, on_signal, NULL);
	struct event *i = evsignal_new(base, SIGINT, on_signal, NULL);
	evsignal_add(t, NULL);
	evsignal_add(i, NULL);
	event_base_dispatch(base);
	evconnlistener_free(l);
	event_free(t);
	event_free(i);
	event_base_free(base);
	return 0;
}
