/* Listening sockets for pgwire clients. TCP listeners bind each address in
 * listen_addr (host names resolved once at start); the Unix socket refuses to replace
 * a socket another process still answers on. */
#include "config.h"

#include "listener.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "cfg.h"
#include "pgwire/client.h"
#include "log.h"
#include "util.h"

#define MAX_LISTENERS 16

static struct evconnlistener *listeners[MAX_LISTENERS];
static int nlisteners;
static char *unix_path;
static bool remote;		/* a listener reachable from other hosts */
static int admin_fds[MAX_LISTENERS];	/* passed by systemd, named "admin" */
static int nadmin_fds;
static int http_fds[MAX_LISTENERS];	/* named "http" */
static int nhttp_fds;

int listeners_admin_fds(const int **fds)
{
	*fds = admin_fds;
	return nadmin_fds;
}

int listeners_http_fds(const int **fds)
{
	*fds = http_fds;
	return nhttp_fds;
}


static bool sockaddr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_UNIX)
		return true;
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

bool fd_is_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	return getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	       sockaddr_is_loopback((struct sockaddr *)&ss);
}

bool listen_addrs_remote(const char *list, int port)
{
	char *addrs = xstrdup(list), *save = NULL;
	bool any = false;

	for (char *a = strtok_r(addrs, ", \t", &save); a; a = strtok_r(NULL, ", \t", &save)) {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
		struct addrinfo *res;
		char portstr[8];
		snprintf(portstr, sizeof(portstr), "%d", port);
		if (getaddrinfo(strcmp(a, "*") == 0 ? NULL : a, portstr, &hints, &res) != 0) {
			any = true; /* cannot tell: assume the worst */
			continue;
		}
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
			if (!sockaddr_is_loopback(ai->ai_addr))
				any = true;
		freeaddrinfo(res);
	}
	free(addrs);
	return any;
}

bool listeners_remote(void)
{
	return remote;
}

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
		if (!sockaddr_is_loopback(ai->ai_addr))
			remote = true;
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

/* Sockets passed by systemd (cratebouncer.socket): those named "pgwire" serve clients. */
static int adopt_systemd_sockets(struct event_base *base)
{
	int n = 0;
#ifdef HAVE_SYSTEMD
	char **names = NULL;

	n = sd_listen_fds_with_names(1, &names);
	if (n <= 0)
		return n < 0 ? 0 : 0;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "unknown";
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (strcmp(name, "admin") == 0 && nadmin_fds < MAX_LISTENERS) {
			admin_fds[nadmin_fds++] = fd; /* served by admin_http.c */
			continue;
		}
		if (strcmp(name, "http") == 0 && nhttp_fds < MAX_LISTENERS) {
			http_fds[nhttp_fds++] = fd; /* served by http_proxy.c */
			continue;
		}
		if (strcmp(name, "pgwire") != 0) {
			log_warn("socket activation: fd %d is named \"%s\"; this version serves \"pgwire\", "
				 "\"http\" and \"admin\", closing it", fd, name);
			close(fd);
			continue;
		}
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
			log_error("socket activation: fd %d: %s", fd, strerror(errno));
			close(fd);
			continue;
		}
		evutil_make_socket_nonblocking(fd);
		evutil_make_socket_closeonexec(fd);
		bool is_unix = ss.ss_family == AF_UNIX;
		struct evconnlistener *l = evconnlistener_new(base, accept_cb, is_unix ? (void *)1 : NULL,
							      LEV_OPT_CLOSE_ON_FREE, -1, fd);
		if (!l || add_listener(l) < 0) {
			close(fd);
			continue;
		}
		if (!sockaddr_is_loopback((struct sockaddr *)&ss))
			remote = true;
		log_info("listening on a socket passed by systemd (fd %d, %s)", fd,
			 is_unix ? "unix" : "tcp");
	}
	for (int i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
#else
	(void)base;
#endif
	return n;
}

int listeners_start(struct event_base *base, const struct cfg *cfg)
{
	if (adopt_systemd_sockets(base) > 0) {
		if (nlisteners == 0) {
			log_error("socket activation: no socket named \"pgwire\" was passed");
			return -1;
		}
		return 0; /* listen_addr, listen_port and unix_socket_dir are not used */
	}

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
