/* Logging: one line per event to stderr or the logfile, with a level filter.
 * Connection code uses the *_c variants through a prefix such as "C-0x... 127.0.0.1:5000". */
#ifndef CB_LOG_H
#define CB_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_FATAL, LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG, LOG_LVL_TRACE };

/* path NULL: stderr only. Returns -1 (errno set) when the file cannot be opened. */
int log_open(const char *path, int verbose, bool quiet);
void log_close(void);
bool log_enabled(enum log_level lvl);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_trace(...) do { if (log_enabled(LOG_LVL_TRACE)) log_msg(LOG_LVL_TRACE, __VA_ARGS__); } while (0)

#endif
