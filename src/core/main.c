/* cratebouncer: a local pgwire pooler that carries plaintext clients to a TLS upstream
 * with injected credentials. This file is the command line, start-up, signals (reload,
 * graceful and immediate stop), systemd notification and the event loop; the work
 * happens in client.c, server.c and pool.c. */
#include "config.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "admin/admin.h"
#include "admin/admin_http.h"
#include "pgwire/authfile.h"
#include "cfg.h"
#include "pgwire/client.h"
#include "listener.h"
#include "log.h"
#include "runtime.h"
#include "pgwire/pool.h"
#include "tlsctx.h"
#include "http/http_proxy.h"
#include "sockio.h"
#include "util.h"

enum run_state { RUNNING, STOP_WAIT_CLIENTS, STOP_WAIT_TRANSACTIONS };

static struct {
	const char *cfg_path;
	struct cfg *cfg;
	struct authfile *users;
	struct event_base *base;
	struct event *status_timer, *watchdog_timer, *stop_timer;
	enum run_state state;
	uint64_t stop_deadline;
	bool quiet;
	int cli_verbose;
	char last_status[128];
} d;

static void notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void notify(const char *fmt, ...)
{
#ifdef HAVE_SYSTEMD
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sd_notify(0, msg);
#else
	(void)fmt;
#endif
}

/* libevent's own messages go to our log. */
static void libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_ERR)
		log_error("libevent: %s", msg);
	else if (severity == EVENT_LOG_WARN)
		log_warn("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

static void usage(FILE *out)
{
	fprintf(out, "usage: cratebouncer [-d] [-q] [-v]... [-t] [-V] [-h] CONFIG\n"
		     "  -d  run in the background (default: foreground, as systemd wants)\n"
		     "  -q  no log output on stderr\n"
		     "  -v  more log output (repeat for more)\n"
		     "  -t  check the configuration and exit: 0 if valid, 1 with every error\n"
		     "  -V  print the version\n"
		     "  -h  this help\n");
}

/* Whoever reaches a listener acts as the cluster user: with trust, only loopback. */
static bool exposure_refused(const struct cfg *cfg, bool remote)
{
	return remote && cfg->auth_type == AUTH_TRUST && !cfg->allow_unauthenticated_remote;
}

static const char exposure_msg[] =
	"a client listener is reachable from other hosts while auth_type = trust: whoever "
	"connects would act as the cluster user with the injected credentials. Bind listen_addr "
	"to a loopback address, use an auth_type that checks passwords, or set "
	"allow_unauthenticated_remote = 1 if this is intended";

/* Loads the config and the auth_file; NULL after printing or logging every error. */
static struct cfg *load_config(struct authfile **users, bool to_log)
{
	struct cfg *cfg = cfg_load(d.cfg_path);
	char *err = NULL, *path = NULL;

	*users = NULL;
	if (cfg->nerrors == 0 && *cfg->auth_file) {
		path = cfg_expand_path(cfg->auth_file, cfg->dir, &err);
		if (path) {
			*users = authfile_load(path, &err);
			if (*users)
				cfg_check_secret_file(cfg, path, "auth_file");
		}
		if (!*users) {
			if (to_log)
				log_error("auth_file %s: %s", cfg->auth_file, err);
			else
				fprintf(stderr, "%s: auth_file: %s\n", d.cfg_path, err);
			free(err);
			free(path);
			cfg_free(cfg);
			return NULL;
		}
		free(path);
	}
	for (size_t i = 0; i < cfg->nerrors; i++) {
		if (to_log)
			log_error("%s", cfg->errors[i]);
		else
			fprintf(stderr, "%s\n", cfg->errors[i]);
	}
	if (cfg->nerrors) {
		authfile_free(*users);
		*users = NULL;
		cfg_free(cfg);
		return NULL;
	}
	return cfg;
}

static void report_warnings(const struct cfg *cfg, bool to_log)
{
	for (size_t i = 0; i < cfg->nwarnings; i++) {
		if (to_log)
			log_warn("%s", cfg->warnings[i]);
		else
			fprintf(stderr, "warning: %s\n", cfg->warnings[i]);
	}
}

static void apply_logging(const struct cfg *cfg)
{
	if (log_open(*cfg->logfile ? cfg->logfile : NULL, d.cli_verbose + cfg->verbose, d.quiet) <
	    0)
		log_error("cannot open logfile %s: %s", cfg->logfile, strerror(errno));
	if (log_set_syslog(cfg->syslog, cfg->syslog_ident, cfg->syslog_facility) < 0)
		log_error("syslog_facility %s is not a known facility", cfg->syslog_facility);
}

static void warn_not_reloadable(const struct cfg *old, const struct cfg *new)
{
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		const char *a = (const char *)old + o->offset, *b = (const char *)new + o->offset;
		bool same = o->type == CFG_STR ? strcmp(*(char *const *)a, *(char *const *)b) == 0
			    : o->type == CFG_TIME ? *(const double *)a == *(const double *)b
			    : o->type == CFG_BOOL ? *(const bool *)a == *(const bool *)b
						  : *(const int *)a == *(const int *)b;
		if (!same && !o->reloadable)
			log_warn("reload: %s changed; it takes effect after a restart", o->name);
	}
}

/* SIGHUP: config, auth_file and TLS files; clients and their servers stay. */
static void reload(void)
{
	struct authfile *users;
	struct cfg *cfg;

	notify("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_usec());
	log_info("reloading %s", d.cfg_path);
	cfg = load_config(&users, true);
	if (cfg && exposure_refused(cfg, listeners_remote())) {
		log_error("reload refused: %s", exposure_msg);
		authfile_free(users);
		cfg_free(cfg);
		cfg = NULL;
	}
	if (!cfg) {
		log_error("reload failed; the running configuration stays in effect");
		apply_logging(d.cfg); /* reopen the logfile all the same */
		notify("READY=1");
		return;
	}
	warn_not_reloadable(d.cfg, cfg);
	apply_logging(cfg);
	report_warnings(cfg, true);
	rt_set_cfg(cfg);
	client_set_authfile(users);
	tls_free_all(); /* CA files are read again for new connections, sessions dropped */
	tls_set_session_reuse(cfg->server_tls_session_reuse);
	pools_reload(d.cfg, users);
	authfile_free(d.users);
	cfg_free(d.cfg);
	d.cfg = cfg;
	d.users = users;
	admin_http_reload(d.cfg);
	log_info("configuration reloaded");
	notify("READY=1");
}

static void stop_check(void)
{
	struct http_stats hs;

	http_proxy_stats(&hs);
	if (d.state != RUNNING && clients_total() == 0 && hs.clients == 0)
		event_base_loopbreak(d.base);
}

static void stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	if (now_usec() >= d.stop_deadline) {
		log_warn("shutdown_timeout reached with %d clients left; exiting", clients_total());
		event_base_loopbreak(d.base);
		return;
	}
	stop_check();
}

static void begin_stop(enum run_state st)
{
	struct timeval tv = { 0, 100000 };

	notify("STOPPING=1");
	listeners_stop();      /* new connections are refused from now on */
	admin_http_stopping(); /* /ready says so; /metrics and /health keep serving */
	http_proxy_stopping(); /* HTTP clients finish the request they are in */
	d.state = st;
	/* shutdown_timeout = 0: wait as long as it takes */
	d.stop_deadline = d.cfg->shutdown_timeout > 0
				  ? now_usec() + (uint64_t)(d.cfg->shutdown_timeout * 1e6)
				  : UINT64_MAX;
	if (st == STOP_WAIT_TRANSACTIONS)
		pools_set_draining();
	d.stop_timer = event_new(d.base, -1, EV_PERSIST, stop_timer_cb, NULL);
	if (d.stop_timer)
		event_add(d.stop_timer, &tv);
	stop_check();
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	switch (sig) {
	case SIGHUP:
		if (d.state == RUNNING)
			reload();
		break;
	case SIGTERM:
	case SIGINT:
		if (d.state != RUNNING) {
			log_info("second stop signal: exiting now");
			event_base_loopbreak(d.base);
			break;
		}
		if (sig == SIGTERM)
			log_info(
				"SIGTERM: no new connections; waiting up to %g s for %d clients to leave",
				d.cfg->shutdown_timeout, clients_total());
		else
			log_info(
				"SIGINT: no new connections; waiting up to %g s for running transactions",
				d.cfg->shutdown_timeout);
		begin_stop(sig == SIGTERM ? STOP_WAIT_CLIENTS : STOP_WAIT_TRANSACTIONS);
		break;
	default:
		log_info("SIGQUIT: exiting now");
		notify("STOPPING=1");
		event_base_loopbreak(d.base);
	}
}

static void admin_shutdown(int mode)
{
	if (d.state != RUNNING)
		return;
	if (mode == 0) {
		log_info("SHUTDOWN from the admin console: exiting now");
		notify("STOPPING=1");
		event_base_loopbreak(d.base);
		return;
	}
	log_info("SHUTDOWN %s from the admin console",
		 mode == 1 ? "WAIT_FOR_SERVERS" : "WAIT_FOR_CLIENTS");
	begin_stop(mode == 1 ? STOP_WAIT_TRANSACTIONS : STOP_WAIT_CLIENTS);
}

static int admin_set(const char *key, const char *value, char **err)
{
	int rc = cfg_set(d.cfg, key, value, err);

	if (rc == 0 && (!strcasecmp(key, "verbose") || !strcasecmp(key, "logfile") ||
			!strncasecmp(key, "syslog", 6)))
		apply_logging(d.cfg);
	if (rc == 0 && !strcasecmp(key, "server_tls_session_reuse"))
		tls_set_session_reuse(d.cfg->server_tls_session_reuse);
	return rc;
}

static void status_cb(evutil_socket_t fd, short what, void *arg)
{
	char status[128];

	snprintf(status, sizeof(status), "clients: %d, servers: %d%s", clients_total(),
		 pools_server_count(), d.state == RUNNING ? "" : ", stopping");
	if (strcmp(status, d.last_status) != 0) {
		notify("STATUS=%s", status);
		memcpy(d.last_status, status, sizeof(status));
	}
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	notify("WATCHDOG=1");
}

static void start_timers(void)
{
	struct timeval tv = { 1, 0 };

	d.status_timer = event_new(d.base, -1, EV_PERSIST, status_cb, NULL);
	if (!d.status_timer || event_add(d.status_timer, &tv) < 0)
		fatal("cannot start the status timer");
#ifdef HAVE_SYSTEMD
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		struct timeval wtv = { (time_t)(usec / 2 / 1000000),
				       (suseconds_t)(usec / 2 % 1000000) };
		d.watchdog_timer = event_new(d.base, -1, EV_PERSIST, watchdog_cb, NULL);
		if (!d.watchdog_timer || event_add(d.watchdog_timer, &wtv) < 0)
			fatal("cannot start the watchdog timer");
		notify("WATCHDOG=1");
	}
#endif
}

static void raise_fd_limit(int want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rlim_t need = (rlim_t)want;
	if (rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < need)
		log_warn("open file limit is %llu, below max_client_conn + pools (%d)",
			 (unsigned long long)rl.rlim_cur, want);
}

static void write_pidfile(const char *path)
{
	char buf[32];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());

	if (fd < 0 || write(fd, buf, (size_t)n) != n)
		fatal("cannot write pidfile %s: %s", path, strerror(errno));
	close(fd);
}

static void daemonize(void)
{
	pid_t pid = fork();

	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		fatal("setsid: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

/* A pgwire connection from the listeners. */
static void pgwire_accept(int fd, const struct sockaddr *sa, int salen, bool unix_socket, void *arg)
{
	(void)arg;
	client_accept(fd, sa, salen, unix_socket);
}

/* -t: the config, the exposure guard, the admin and HTTP sides' settings; the exit code. */
static int check_config(void)
{
	bool bad = exposure_refused(d.cfg,
				    listen_addrs_remote(d.cfg->listen_addr, d.cfg->listen_port));
	char *err = NULL;

	report_warnings(d.cfg, false);
	if (bad)
		fprintf(stderr, "%s:0: %s\n", d.cfg_path, exposure_msg);
	if (admin_http_check(d.cfg, &err) < 0) {
		fprintf(stderr, "%s:0: %s\n", d.cfg_path, err);
		free(err);
		bad = true;
	}
	if (http_proxy_check(d.cfg, &err) < 0) {
		fprintf(stderr, "%s:0: %s\n", d.cfg_path, err);
		free(err);
		bad = true;
	}
	authfile_free(d.users);
	cfg_free(d.cfg);
	return bad ? 1 : 0;
}

/* The event loop and the DNS resolver (/etc/resolv.conf and /etc/hosts), into d and rt. */
static struct evdns_base *start_loop(void)
{
	event_set_log_callback(libevent_log);
	d.base = event_base_new();
	if (!d.base || event_base_priority_init(d.base, 3) < 0 || sio_init(d.base) < 0)
		fatal("cannot create the event loop");
	struct evdns_base *dns = evdns_base_new(d.base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
								EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!dns)
		dns = evdns_base_new(d.base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!dns)
		fatal("cannot set up the DNS resolver");
	evdns_base_load_hosts(dns, NULL);
	rt_init(d.base, dns);
	rt_set_cfg(d.cfg);
	return dns;
}

/* The three sides: pools and pgwire listeners, the admin HTTP port, the HTTP side. */
static void start_sides(struct evdns_base *dns)
{
	static const struct admin_hooks hooks = { reload, admin_shutdown, admin_set };

	admin_set_hooks(&hooks);
	client_set_console(&admin_console);
	pools_init();
	tls_set_session_reuse(d.cfg->server_tls_session_reuse);
	client_set_authfile(d.users);
	if (listeners_start(d.base, d.cfg, pgwire_accept) < 0)
		fatal("cannot start listeners");
	if (exposure_refused(d.cfg, listeners_remote())) {
		listeners_stop();
		fatal("refusing to start: %s", exposure_msg);
	}
	if (admin_http_start(d.base, d.cfg) < 0) {
		listeners_stop();
		fatal("cannot start the admin HTTP port");
	}
	if (http_proxy_start(d.base, dns, d.cfg) < 0) {
		listeners_stop();
		admin_http_stop();
		fatal("cannot start the HTTP side");
	}
}

/* After the loop ended: everything closed and freed, in the order it was made. */
static void stop_all(struct evdns_base *dns, struct event **sigev, int nsig)
{
	notify("STOPPING=1");
	listeners_stop();
	admin_http_stop();
	http_proxy_stop();
	clients_shutdown();
	pools_shutdown();
	/* libevent may still hold deferred callbacks (evdns cancellations, active events of
	 * connections just freed): let them run, so that everything is released */
	for (int i = 0; i < 4; i++)
		event_base_loop(d.base, EVLOOP_NONBLOCK);
	for (int i = 0; i < nsig; i++)
		event_free(sigev[i]);
	event_free(d.status_timer);
	if (d.watchdog_timer)
		event_free(d.watchdog_timer);
	if (d.stop_timer)
		event_free(d.stop_timer);
	evdns_base_free(dns, 0);
	event_base_free(d.base);
	tls_free_all();
	if (*d.cfg->pidfile)
		unlink(d.cfg->pidfile);
	authfile_free(d.users);
	cfg_free(d.cfg);
	log_info("stopped");
	log_set_syslog(false, "", "");
	log_close();
}

int main(int argc, char **argv)
{
	bool background = false, check_only = false;
	int opt;

	while ((opt = getopt(argc, argv, "dqvtVh")) != -1) {
		switch (opt) {
		case 'd':
			background = true;
			break;
		case 'q':
			d.quiet = true;
			break;
		case 'v':
			d.cli_verbose++;
			break;
		case 't':
			check_only = true;
			break;
		case 'V':
			printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 1;
	}
	d.cfg_path = argv[optind];

	d.cfg = load_config(&d.users, false);
	if (!d.cfg)
		return 1;
	if (check_only)
		return check_config();

	d.quiet = d.quiet || background;
	log_detect_journal();
	apply_logging(d.cfg);
	report_warnings(d.cfg, true);
	/* before binding, so that nothing listens on a network address even briefly; sockets
	 * passed by systemd are checked once adopted */
	if (!getenv("LISTEN_FDS") &&
	    exposure_refused(d.cfg, listen_addrs_remote(d.cfg->listen_addr, d.cfg->listen_port)))
		fatal("refusing to start: %s", exposure_msg);
	if (background)
		daemonize();
	signal(SIGPIPE, SIG_IGN);
	/* PgBouncer's pause/resume signals: not implemented, and must not kill us */
	signal(SIGUSR1, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	raise_fd_limit(d.cfg->max_client_conn + 1024);

	struct evdns_base *dns = start_loop();
	start_sides(dns);
	if (*d.cfg->pidfile)
		write_pidfile(d.cfg->pidfile);

	int sigs[] = { SIGINT, SIGTERM, SIGQUIT, SIGHUP };
	struct event *sigev[4];
	for (int i = 0; i < 4; i++) {
		sigev[i] = evsignal_new(d.base, sigs[i], signal_cb, NULL);
		if (!sigev[i] || evsignal_add(sigev[i], NULL) < 0)
			fatal("cannot install signal handlers");
	}
	start_timers();
	log_info("cratebouncer %s started, %zu database%s", PACKAGE_VERSION, d.cfg->ndbs,
		 d.cfg->ndbs == 1 ? "" : "s");
	notify("READY=1\nSTATUS=clients: 0, servers: 0");

	event_base_dispatch(d.base);
	stop_all(dns, sigev, 4);
	return 0;
}
