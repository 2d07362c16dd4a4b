/* Logging backend: timestamped lines, level names as PgBouncer prints them, written to
 * stderr (unless quiet), the logfile and syslog as configured. Under systemd (stderr is
 * the journal stream) lines carry a <priority> prefix and no timestamp. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static FILE *log_file;
static int log_verbose;
static bool log_quiet;
static bool log_journal;
static bool log_syslog;

static const int syslog_prio[] = { LOG_CRIT, LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_DEBUG };

static const char *const level_names[] = { "FATAL", "ERROR", "WARNING", "LOG", "DEBUG", "NOISE" };

int log_open(const char *path, int verbose, bool quiet)
{
	log_verbose = verbose;
	log_quiet = quiet;
	if (!path || !*path) {
		if (log_file)
			fclose(log_file);
		log_file = NULL;
	} else {
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

void log_detect_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	log_journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
		      (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int log_set_syslog(bool on, const char *ident, const char *facility)
{
	static const struct {
		const char *name;
		int fac;
	} facs[] = {
		{ "daemon", LOG_DAEMON }, { "user", LOG_USER },     { "local0", LOG_LOCAL0 },
		{ "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
		{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },
		{ "local7", LOG_LOCAL7 },
	};
	int fac = -1;

	if (log_syslog)
		closelog();
	log_syslog = false;
	if (!on)
		return 0;
	for (size_t i = 0; i < sizeof(facs) / sizeof(facs[0]); i++)
		if (strcasecmp(facs[i].name, facility) == 0)
			fac = facs[i].fac;
	if (fac < 0)
		return -1;
	/* the ident string must outlive openlog: keep a copy */
	static char ident_buf[64];
	snprintf(ident_buf, sizeof(ident_buf), "%s", ident);
	openlog(ident_buf, LOG_PID | LOG_NDELAY, fac);
	log_syslog = true;
	return 0;
}

void log_set_verbose(int verbose)
{
	log_verbose = verbose;
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
	char msg[1800], stamp[64];
	struct timeval tv;
	struct tm tm;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - n, ".%03d UTC [%d]", (int)(tv.tv_usec / 1000),
		 (int)getpid());
	if (!log_quiet) {
		if (log_journal)
			fprintf(stderr, "<%d>%s %s\n", syslog_prio[lvl], level_names[lvl], msg);
		else
			fprintf(stderr, "%s %s %s\n", stamp, level_names[lvl], msg);
	}
	if (log_file)
		fprintf(log_file, "%s %s %s\n", stamp, level_names[lvl], msg);
	if (log_syslog)
		syslog(syslog_prio[lvl], "%s %s", level_names[lvl], msg);
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
