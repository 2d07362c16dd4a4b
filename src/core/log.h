/* Logging: one line per event to stderr or the logfile, with a level filter.
 * Lines about one pgwire connection carry PgBouncer's prefix, "C-0x... 127.0.0.1:5000: "
 * or "S-0x...: " (client_log, server_log). */
#ifndef CB_LOG_H
#define CB_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LVL_FATAL,
	LOG_LVL_ERROR,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
	LOG_LVL_TRACE
};

/* path NULL: stderr only; called again (SIGHUP) it reopens the file for logrotate.
 * Returns -1 (errno set) when the file cannot be opened; the old one stays in use. */
int log_open(const char *path, int verbose, bool quiet);
/* stderr is systemd's journal stream: priority prefixes instead of timestamps. */
void log_detect_journal(void);
/* -1 for an unknown facility. */
int log_set_syslog(bool on, const char *ident, const char *facility);
void log_set_verbose(int verbose);
void log_close(void);
bool log_enabled(enum log_level lvl);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                       \
	do {                                                 \
		if (log_enabled(LOG_LVL_DEBUG))              \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__); \
	} while (0)
#define log_trace(...)                                       \
	do {                                                 \
		if (log_enabled(LOG_LVL_TRACE))              \
			log_msg(LOG_LVL_TRACE, __VA_ARGS__); \
	} while (0)

#endif
