/* cratebouncer: a local pgwire pooler that carries plaintext clients to a TLS upstream
 * with injected credentials. This file is the command line, start-up, signals and the
 * event loop; the work happens in client.c, server.c and pool.c. */
#include "config.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "authfile.h"
#include "cfg.h"
#include "client.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "tlsctx.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: cratebouncer [-d] [-q] [-v]... [-t] [-V] [-h] CONFIG\n"
		"  -d  run in the background (default: foreground, as systemd wants)\n"
		"  -q  no log output on stderr\n"
		"  -v  more log output (repeat for more)\n"
		"  -t  check the configuration and exit: 0 if valid, 1 with every error\n"
		"  -V  print the version\n"
		"  -h  this help\n");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;

	switch (sig) {
	case SIGHUP:
		log_warn("SIGHUP: configuration reload is not supported yet; restart to apply changes");
		break;
	default:
		log_info("got signal %d, shutting down", (int)sig);
		event_base_loopbreak(base);
	}
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

int main(int argc, char **argv)
{
	bool background = false, quiet = false, check_only = false;
	int verbose = 0, opt;
	struct cfg *cfg;
	struct authfile *users = NULL;

	while ((opt = getopt(argc, argv, "dqvtVh")) != -1) {
		switch (opt) {
		case 'd': background = true; break;
		case 'q': quiet = true; break;
		case 'v': verbose++; break;
		case 't': check_only = true; break;
		case 'V': printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 1;
	}

	cfg = cfg_load(argv[optind]);
	for (size_t i = 0; i < cfg->nerrors; i++)
		fprintf(stderr, "%s\n", cfg->errors[i]);
	if (cfg->nerrors) {
		cfg_free(cfg);
		return 1;
	}
	if (*cfg->auth_file) {
		char *err = NULL;
		users = authfile_load(cfg->auth_file, &err);
		if (!users) {
			fprintf(stderr, "%s\n", err);
			free(err);
			cfg_free(cfg);
			return 1;
		}
	}
	if (check_only) {
		authfile_free(users);
		cfg_free(cfg);
		return 0;
	}

	if (log_open(*cfg->logfile ? cfg->logfile : NULL, verbose + cfg->verbose, quiet || background) < 0)
		fatal("cannot open logfile %s: %s", cfg->logfile, strerror(errno));
	if (background)
		daemonize();
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(cfg->max_client_conn + 1024);

	struct event_base *base = event_base_new();
	if (!base)
		fatal("cannot create the event loop");
	struct evdns_base *dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
						      EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!dns)
		dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!dns)
		fatal("cannot set up the DNS resolver");
	evdns_base_load_hosts(dns, NULL);

	pools_init(base, dns);
	pools_set_cfg(cfg);
	client_set_authfile(users);
	if (listeners_start(base, cfg) < 0)
		fatal("cannot start listeners");
	if (*cfg->pidfile)
		write_pidfile(cfg->pidfile);

	int sigs[] = { SIGINT, SIGTERM, SIGQUIT, SIGHUP };
	struct event *sigev[4];
	for (int i = 0; i < 4; i++) {
		sigev[i] = evsignal_new(base, sigs[i], signal_cb, base);
		if (!sigev[i] || evsignal_add(sigev[i], NULL) < 0)
			fatal("cannot install signal handlers");
	}
	log_info("cratebouncer %s started, %zu database%s", PACKAGE_VERSION, cfg->ndbs,
		 cfg->ndbs == 1 ? "" : "s");
#ifdef HAVE_SYSTEMD
	sd_notify(0, "READY=1");
#endif

	event_base_dispatch(base);

#ifdef HAVE_SYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
	listeners_stop();
	clients_shutdown();
	pools_shutdown();
	for (int i = 0; i < 4; i++)
		event_free(sigev[i]);
	evdns_base_free(dns, 0);
	event_base_free(base);
	tls_free_all();
	if (*cfg->pidfile)
		unlink(cfg->pidfile);
	authfile_free(users);
	cfg_free(cfg);
	log_info("stopped");
	log_close();
	return 0;
}
