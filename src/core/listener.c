/* Listening sockets for all three sides (listener.h). */
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
#include "log.h"
#include "util.h"

struct listen_set {
	struct event_base *base;
	const char *side;
	listen_accept_fn fn;
	void *arg;
	struct evconnlistener *l[LISTEN_MAX];
	int n;
	char *unix_path;
	bool remote;
	bool off;            /* lset_enable(false): stays off */
	struct event *pause; /* after an accept error: on again in 100 ms */
};

static struct listen_set *pgwire;
static int admin_fds[LISTEN_MAX]; /* passed by systemd, named "admin" */
static int nadmin_fds;
static int http_fds[LISTEN_MAX]; /* named "http" */
static int nhttp_fds;

int listeners_passed(const char *name, const int **fds)
{
	bool admin = strcmp(name, "admin") == 0;

	*fds = admin ? admin_fds : http_fds;
	return admin ? nadmin_fds : nhttp_fds;
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

/* One address: bound and listening, or -1 with errno. */
static int bind_one(const struct addrinfo *ai)
{
	int one = 1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	/* IPv6-only, so that "*" (0.0.0.0 and ::) binds both, as PgBouncer and nginx do */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ai->ai_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int listen_bind_tcp(const char *side, const char *list, int port, int *fds, int max, bool *remote)
{
	char *addrs = xstrdup(list), *save = NULL;
	int n = 0;

	for (char *a = strtok_r(addrs, ", \t", &save); a; a = strtok_r(NULL, ", \t", &save)) {
		struct addrinfo hints = { .ai_family = AF_UNSPEC,
					  .ai_socktype = SOCK_STREAM,
					  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
		struct addrinfo *res;
		char portstr[8];
		int rc;

		snprintf(portstr, sizeof(portstr), "%d", port);
		rc = getaddrinfo(strcmp(a, "*") == 0 ? NULL : a, portstr, &hints, &res);
		if (rc != 0) {
			log_error("%slisten_addr %s: %s", side, a, gai_strerror(rc));
			goto fail;
		}
		int before = n;
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
			int fd = n < max ? bind_one(ai) : -1;
			/* "*" on a host without IPv6 (or IPv4): the family it has is enough */
			if (fd < 0 && n < max && strcmp(a, "*") == 0 && errno == EAFNOSUPPORT &&
			    (ai->ai_next || n > before))
				continue;
			if (fd < 0) {
				log_error("%scannot listen on %s:%d: %s", side, a, port,
					  n < max ? strerror(errno) : "too many addresses");
				freeaddrinfo(res);
				goto fail;
			}
			fds[n++] = fd;
			if (!sockaddr_is_loopback(ai->ai_addr))
				*remote = true;
		}
		freeaddrinfo(res);
	}
	free(addrs);
	return n;
fail:
	while (n > 0)
		close(fds[--n]);
	free(addrs);
	return -1;
}

int listen_bind_unix(const char *side, const char *path, int mode)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_error("%sunix socket path too long: %s", side, path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	/* a live socket means another instance: do not steal it */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(fd);
		log_error("%s%s is in use by another process", side, path);
		return -1;
	}
	if (fd >= 0)
		close(fd);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(path, (mode_t)mode) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		log_error("%scannot listen on %s: %s", side, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct listen_set *ls = arg;

	(void)l;
	ls->fn(fd, sa, salen, sa->sa_family == AF_UNIX, ls->arg);
}

static void reenable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listen_set *ls = arg;

	(void)fd;
	(void)what;
	if (!ls->off)
		lset_enable(ls, true);
}

static void error_cb(struct evconnlistener *l, void *arg)
{
	struct listen_set *ls = arg;
	int err = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: pause briefly instead of spinning; the timer is the set's, so
	 * that lset_enable(false) and lset_free cancel it */
	log_error("%saccept failed: %s", ls->side, evutil_socket_error_to_string(err));
	evconnlistener_disable(l);
	struct timeval tv = { 0, 100000 };
	if (!evtimer_pending(ls->pause, NULL))
		evtimer_add(ls->pause, &tv);
}

struct listen_set *lset_new(struct event_base *base, const char *side, listen_accept_fn fn,
			    void *arg)
{
	struct listen_set *ls = xcalloc(1, sizeof(*ls));

	ls->pause = evtimer_new(base, reenable_cb, ls);
	if (!ls->pause)
		fatal("out of memory");
	ls->base = base;
	ls->side = side;
	ls->fn = fn;
	ls->arg = arg;
	return ls;
}

int lset_adopt(struct listen_set *ls, int fd)
{
	struct evconnlistener *l;

	if (ls->n == LISTEN_MAX) {
		log_error("%stoo many listeners (at most %d)", ls->side, LISTEN_MAX);
		close(fd);
		return -1;
	}
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	l = evconnlistener_new(ls->base, accept_cb, ls, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!l) {
		log_error("%scannot serve a listening socket: out of memory", ls->side);
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(l, error_cb);
	ls->l[ls->n++] = l;
	if (!fd_is_loopback(fd))
		ls->remote = true;
	return 0;
}

int lset_tcp(struct listen_set *ls, const char *list, int port)
{
	char *addrs = xstrdup(list), *save = NULL;
	int rc = 0;

	for (char *a = strtok_r(addrs, ", \t", &save); a && rc == 0;
	     a = strtok_r(NULL, ", \t", &save)) {
		int fds[LISTEN_MAX];
		bool remote = false;
		int n = listen_bind_tcp(ls->side, a, port, fds, LISTEN_MAX - ls->n, &remote);

		if (n < 0) {
			rc = -1;
			break;
		}
		for (int i = 0; i < n; i++)
			if (lset_adopt(ls, fds[i]) < 0) {
				while (++i < n)
					close(fds[i]);
				rc = -1;
				break;
			}
		if (rc == 0)
			log_info("%slistening on %s:%d", ls->side, a, port);
	}
	free(addrs);
	return rc;
}

int lset_unix(struct listen_set *ls, const char *path, int mode)
{
	int fd = listen_bind_unix(ls->side, path, mode);

	if (fd < 0 || lset_adopt(ls, fd) < 0)
		return -1;
	free(ls->unix_path);
	ls->unix_path = xstrdup(path);
	return 0;
}

int lset_count(const struct listen_set *ls)
{
	return ls ? ls->n : 0;
}

bool lset_remote(const struct listen_set *ls)
{
	return ls && ls->remote;
}

void lset_enable(struct listen_set *ls, bool on)
{
	if (!ls)
		return;
	ls->off = !on;
	if (!on)
		evtimer_del(ls->pause);
	for (int i = 0; i < ls->n; i++) {
		if (on)
			evconnlistener_enable(ls->l[i]);
		else
			evconnlistener_disable(ls->l[i]);
	}
}

void lset_free(struct listen_set *ls)
{
	if (!ls)
		return;
	event_free(ls->pause);
	for (int i = 0; i < ls->n; i++)
		evconnlistener_free(ls->l[i]);
	if (ls->unix_path) {
		unlink(ls->unix_path);
		free(ls->unix_path);
	}
	free(ls);
}

/* Sockets passed by systemd (cratebouncer.socket): those named "pgwire" serve clients,
 * "http" and "admin" are kept for those sides. */
static int adopt_systemd_sockets(struct listen_set *ls)
{
	int n = 0;
#ifdef HAVE_SYSTEMD
	char **names = NULL;

	n = sd_listen_fds_with_names(1, &names);
	if (n <= 0)
		return 0;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "unknown";
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (strcmp(name, "admin") == 0 && nadmin_fds < LISTEN_MAX) {
			admin_fds[nadmin_fds++] = fd; /* served by admin_http.c */
			continue;
		}
		if (strcmp(name, "http") == 0 && nhttp_fds < LISTEN_MAX) {
			http_fds[nhttp_fds++] = fd; /* served by http_proxy.c */
			continue;
		}
		if (strcmp(name, "pgwire") != 0) {
			log_warn(
				"socket activation: fd %d is named \"%s\"; this version serves \"pgwire\", "
				"\"http\" and \"admin\", closing it",
				fd, name);
			close(fd);
			continue;
		}
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
			log_error("socket activation: fd %d: %s", fd, strerror(errno));
			close(fd);
			continue;
		}
		if (lset_adopt(ls, fd) < 0)
			continue;
		log_info("listening on a socket passed by systemd (fd %d, %s)", fd,
			 ss.ss_family == AF_UNIX ? "unix" : "tcp");
	}
	for (int i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
#else
	(void)ls;
#endif
	return n;
}

int listeners_start(struct event_base *base, const struct cfg *cfg, listen_accept_fn fn)
{
	pgwire = lset_new(base, "", fn, NULL);
	if (adopt_systemd_sockets(pgwire) > 0) {
		if (lset_count(pgwire) == 0) {
			log_error("socket activation: no socket named \"pgwire\" was passed");
			return -1;
		}
		return 0; /* listen_addr, listen_port and unix_socket_dir are not used */
	}
	if (lset_tcp(pgwire, cfg->listen_addr, cfg->listen_port) < 0)
		return -1;
	if (cfg->unix_socket_dir && *cfg->unix_socket_dir) {
		char *path = xasprintf("%s/.s.PGSQL.%d", cfg->unix_socket_dir, cfg->listen_port);
		int rc = lset_unix(pgwire, path, cfg->unix_socket_mode);
		if (rc == 0)
			log_info("listening on %s", path);
		free(path);
		return rc;
	}
	return 0;
}

void listeners_stop(void)
{
	lset_free(pgwire);
	pgwire = NULL;
}

bool listeners_remote(void)
{
	return lset_remote(pgwire);
}
