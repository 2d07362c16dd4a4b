/* Client listeners: TCP on each listen_addr and a Unix socket .s.PGSQL.<port>. */
#ifndef CB_LISTENER_H
#define CB_LISTENER_H

#include <stdbool.h>

struct cfg;
struct event_base;

/* Binds every listener; -1 after logging why. */
int listeners_start(struct event_base *base, const struct cfg *cfg)
	__attribute__((warn_unused_result));
void listeners_stop(void);
/* Is any bound or passed listener reachable from other hosts (not loopback/Unix)? */
bool listeners_remote(void);
/* Sockets systemd passed with the name "admin", for the admin HTTP port. */
int listeners_admin_fds(const int **fds);
/* ... and "http", for the HTTP side. */
int listeners_http_fds(const int **fds);
bool fd_is_loopback(int fd);
/* The same for a listen_addr list, without binding (for -t). */
bool listen_addrs_remote(const char *list, int port);

#endif
