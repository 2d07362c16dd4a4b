/* Small helpers: allocation that exits on failure (start-up and config paths only;
 * per-connection code uses malloc and fails soft), file reading, clocks. */
#ifndef CB_UTIL_H
#define CB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <event2/util.h>

void *xmalloc(size_t n) __attribute__((malloc, returns_nonnull));
void *xcalloc(size_t n, size_t size) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *p, size_t n) __attribute__((returns_nonnull));
char *xstrdup(const char *s) __attribute__((malloc, returns_nonnull));
char *xasprintf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), malloc, returns_nonnull));

/* Whole file, NUL-terminated; NULL with *why = malloc'd reason. */
char *read_file(const char *path, size_t max, char **why);
/* A secret file: first line, trailing newline/CR stripped; empty is an error. */
char *read_secret_file(const char *path, char **why);
/* Overwrite a NUL-terminated secret (a password, a token) and free it; NULL is fine. */
void free_secret(char *s);

/* A socket's peer (peer true) or local address as text and port; for a Unix socket or on
 * error, addr is unix_text and port 0. */
void sock_addr_text(int fd, int peer, char *addr, size_t len, int *port, const char *unix_text);

/* A non-blocking connect to the next address of *next (advanced past it), TCP_NODELAY and,
 * with keepalive, SO_KEEPALIVE set: the socket (connected or in progress), or -1 when no
 * address is left, *last_errno the last failure. */
int sock_connect_next(struct evutil_addrinfo **next, int *last_errno, int keepalive);

/* Monotonic clock in microseconds. */
uint64_t now_usec(void);

#endif
