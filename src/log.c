/* Logging backend: timestamped lines, level names as PgBouncer prints them, written to
 * stderr (unless quiet) and to the logfile when one is configured. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static FILE *log_file;
static int log_verbose;
static bool log_quiet;

static const char *const level_names[] = { "FATAL", "ERROR", "WARNING", "LOG", "DEBUG", "NOISE" };

int log_open(const char *path, int verbose, bool quiet)
{
	log_verbose = verbose;
	log_quiet = quiet;
	if (path && *path) {
		FILE *f = fopen(path, "a");
		if (!f)
			return -1;
		setvbuf(f, NULL, _IOLBF, 0);
		if (log_file)
			fclose(log_file);
		log_file = f;
	}
	return 0;
}

void log_close(void)
{
	if (log_file)
		fclose(log_file);
	log_file = NULL;
}

bool log_enabled(enum log_level lvl)
{
	return (int)lvl <= (int)LOG_LVL_INFO + log_verbose;
}

static void log_write(enum log_level lvl, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	int n, m;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = (int)strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03d UTC [%d] %s ",
		      (int)(tv.tv_usec / 1000), (int)getpid(), level_names[lvl]);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	line[n] = '\0';
	if (!log_quiet)
		fputs(line, stderr);
	if (log_file)
		fputs(line, log_file);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	log_write(lvl, fmt, ap);
	va_end(ap);
	errno = saved;
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write(LOG_LVL_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}
