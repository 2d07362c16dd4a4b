/* Listening sockets, for all three sides: pgwire clients, the HTTP side and the admin
 * HTTP port. Binding is done one way for all (each address of a listen_addr list, "*"
 * for every address, IPv6 sockets IPv6-only so that 0.0.0.0 and :: coexist; a Unix
 * socket that refuses to replace one another process still answers on); sockets passed
 * by systemd are sorted by name once at start. */
#ifndef CB_LISTENER_H
#define CB_LISTENER_H

#include <stdbool.h>

struct cfg;
struct event_base;
struct sockaddr;

#define LISTEN_BACKLOG 1024
#define LISTEN_MAX 16 /* listening sockets per side */

/* Binds and listens on every address of a comma or space separated list ("*": all), at
 * port; the fds (non-blocking, close-on-exec) go to fds[]. The count, or -1 after logging
 * (side names the side in the log: "", "http: ", "admin: "). *remote is set when one of
 * them is reachable from other hosts. */
int listen_bind_tcp(const char *side, const char *addrs, int port, int *fds, int max, bool *remote);
/* A Unix socket at path with the given mode; its fd, or -1 after logging. */
int listen_bind_unix(const char *side, const char *path, int mode);

/* A side's listeners on the event loop: each connection accepted goes to fn, with its
 * address and whether it came over a Unix socket. accept() failing (EMFILE and the like)
 * pauses the listener for 100 ms instead of spinning. */
typedef void (*listen_accept_fn)(int fd, const struct sockaddr *sa, int salen, bool unix_socket,
				 void *arg);
struct listen_set;
struct listen_set *lset_new(struct event_base *base, const char *side, listen_accept_fn fn,
			    void *arg);
/* listen_bind_tcp, served by the set; 0 or -1 after logging. */
int lset_tcp(struct listen_set *ls, const char *addrs, int port);
/* listen_bind_unix, served by the set; the socket file is removed by lset_free. */
int lset_unix(struct listen_set *ls, const char *path, int mode);
/* A listening socket systemd passed. */
int lset_adopt(struct listen_set *ls, int fd);
int lset_count(const struct listen_set *ls);
/* Is any of them reachable from other hosts (not loopback, not Unix)? */
bool lset_remote(const struct listen_set *ls);
void lset_enable(struct listen_set *ls, bool on);
/* Closes them (and removes the Unix socket); NULL is fine. */
void lset_free(struct listen_set *ls);

/* The pgwire listeners (listen_addr, listen_port, unix_socket_dir, or the sockets systemd
 * passed named "pgwire"), each connection to fn; -1 after logging why. Sockets named
 * "http" and "admin" are kept for those sides (listeners_passed). */
int listeners_start(struct event_base *base, const struct cfg *cfg, listen_accept_fn fn)
	__attribute__((warn_unused_result));
void listeners_stop(void);
bool listeners_remote(void);
/* The sockets systemd passed with that name ("http", "admin"). */
int listeners_passed(const char *name, const int **fds);

bool fd_is_loopback(int fd);
/* Would a listen_addr list be reachable from other hosts? Without binding (for -t). */
bool listen_addrs_remote(const char *list, int port);

#endif
