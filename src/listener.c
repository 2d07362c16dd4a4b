/* Listening sockets for pgwire clients. TCP listeners bind each address in
 * listen_addr (host names resolved once at start); the Unix socket refuses to replace
 * a socket another process still answers on. */
#include "listener.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cfg.h"
#include "client.h"
#include "log.h"
#include "util.h"

#define MAX_LISTENERS 16

static struct evconnlistener *listeners[MAX_LISTENERS];
static int nlisteners;
static char *unix_path;

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	client_accept(fd, sa, salen, arg != NULL);
}

static void reenable_cb(evutil_socket_t fd, short what, void *arg)
{
	evconnlistener_enable(arg);
}

static void error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: pause briefly instead of spinning */
	log_error("accept failed: %s", evutil_socket_error_to_string(err));
	evconnlistener_disable(l);
	struct timeval tv = { 0, 100000 };
	event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, reenable_cb, l, &tv);
}

static int add_listener(struct evconnlistener *l)
{
	if (nlisteners == MAX_LISTENERS) {
		evconnlistener_free(l);
		log_error("too many listeners (at most %d)", MAX_LISTENERS);
		return -1;
	}
	evconnlistener_set_error_cb(l, error_cb);
	listeners[nlisteners++] = l;
	return 0;
}

static int listen_tcp(struct event_base *base, const char *host, int port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	char portstr[8];
	int rc, bound = 0;

	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, portstr, &hints, &res);
	if (rc != 0) {
		log_error("listen_addr %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		struct evconnlistener *l = evconnlistener_new_bind(
			base, accept_cb, NULL,
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 1024,
			ai->ai_addr, (int)ai->ai_addrlen);
		if (!l) {
			log_error("cannot listen on %s:%d: %s", host, port, strerror(errno));
			freeaddrinfo(res);
			return -1;
		}
		if (add_listener(l) < 0) {
			freeaddrinfo(res);
			return -1;
		}
		bound++;
	}
	freeaddrinfo(res);
	log_info("listening on %s:%d", host, port);
	return bound ? 0 : -1;
}

static int listen_unix(struct event_base *base, const char *dir, int port, int mode)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct evconnlistener *l;
	int fd;

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", dir, port) >=
	    sizeof(sun.sun_path)) {
		log_error("unix_socket_dir %s: path too long", dir);
		return -1;
	}
	/* a live socket means another instance: do not steal it */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(fd);
		log_error("%s is in use by another process", sun.sun_path);
		return -1;
	}
	if (fd >= 0)
		close(fd);
	unlink(sun.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(sun.sun_path, (mode_t)mode) < 0 || listen(fd, 1024) < 0) {
		log_error("cannot listen on %s: %s", sun.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	l = evconnlistener_new(base, accept_cb, (void *)1, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!l) {
		close(fd);
		return -1;
	}
	if (add_listener(l) < 0)
		return -1;
	unix_path = xstrdup(sun.sun_path);
	log_info("listening on %s", sun.sun_path);
	return 0;
}

int listeners_start(struct event_base *base, const struct cfg *cfg)
{
	char *addrs = xstrdup(cfg->listen_addr), *save = NULL;

	for (char *a = strtok_r(addrs, ", \t", &save); a; a = strtok_r(NULL, ", \t", &save)) {
		if (listen_tcp(base, a, cfg->listen_port) < 0) {
			free(addrs);
			return -1;
		}
	}
	free(addrs);
	if (cfg->unix_socket_dir && *cfg->unix_socket_dir &&
	    listen_unix(base, cfg->unix_socket_dir, cfg->listen_port, cfg->unix_socket_mode) < 0)
		return -1;
	return 0;
}

void listeners_stop(void)
{
	for (int i = 0; i < nlisteners; i++)
		evconnlistener_free(listeners[i]);
	nlisteners = 0;
	if (unix_path) {
		unlink(unix_path);
		free(unix_path);
		unix_path = NULL;
	}
}
