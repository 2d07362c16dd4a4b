/* Configuration parsing with inih. The global section is described by cfg_options[]
 * (name, type, default, reloadable, bounds); the inih handler only looks keys up there.
 * A custom line reader counts lines so that every error names FILE:LINE. */
#include "cfg_int.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "util.h"

static int cfg_ini_handler(void *user, const char *section, const char *key, const char *value);
static char *cfg_ini_reader(char *str, int num, void *stream);
static int set_option(struct parse_ctx *ctx, const struct cfg_opt *opt, const char *value);
static void apply_defaults(struct cfg *cfg);

const char *const pool_mode_names[] = { "session", "transaction", "statement", NULL };
const char *const auth_type_names[] = { "trust", "plain", "md5", "scram-sha-256", "peer", NULL };
const char *const sslmode_names[] = { "disable", "require", "verify-ca", "verify-full", NULL };
const char *const server_kind_names[] = { "auto", "cratedb", "postgresql", NULL };

/* One line per macro, like the table they make. */
/* clang-format off */
#define OPT(n, t, d, r, lo, hi, nm) { NULL, #n, t, d, r, lo, hi, nm, offsetof(struct cfg, n) }
#define ADMIN_OPT(n, t, d, r, lo, hi) \
	{ "admin", #n, t, d, r, lo, hi, NULL, offsetof(struct cfg, admin_##n) }
#define HTTP_OPT(n, t, d, r, lo, hi, nm) \
	{ "http", #n, t, d, r, lo, hi, nm, offsetof(struct cfg, http_##n) }
/* clang-format on */
const struct cfg_opt cfg_options[] = {
	OPT(listen_addr, CFG_STR, "127.0.0.1", false, 0, 0, NULL),
	OPT(listen_port, CFG_INT, "6432", false, 1, 65535, NULL),
	OPT(unix_socket_dir, CFG_STR, "/tmp", false, 0, 0, NULL),
	OPT(unix_socket_mode, CFG_INT, "0777", false, 0, 0777, NULL),
	OPT(auth_type, CFG_ENUM, "md5", true, 0, 0, auth_type_names),
	OPT(auth_file, CFG_STR, "", true, 0, 0, NULL),
	OPT(admin_users, CFG_STR, "", true, 0, 0, NULL),
	OPT(stats_users, CFG_STR, "", true, 0, 0, NULL),
	OPT(pool_mode, CFG_ENUM, "session", true, 0, 0, pool_mode_names),
	OPT(default_pool_size, CFG_INT, "20", true, 1, 10000, NULL),
	OPT(min_pool_size, CFG_INT, "0", true, 0, 10000, NULL),
	OPT(max_client_conn, CFG_INT, "100", true, 1, 1000000, NULL),
	OPT(server_tls_sslmode, CFG_ENUM, "verify-full", true, 0, 0, sslmode_names),
	OPT(server_tls_ca_file, CFG_STR, "", true, 0, 0, NULL),
	OPT(server_tls_session_reuse, CFG_BOOL, "1", true, 0, 0, NULL),
	OPT(server_reset_query, CFG_STR, "DISCARD ALL", true, 0, 0, NULL),
	OPT(server_connect_timeout, CFG_TIME, "15", true, 0.01, 3600, NULL),
	OPT(server_login_retry, CFG_TIME, "15", true, 0, 3600, NULL),
	OPT(query_wait_timeout, CFG_TIME, "120", true, 0, 86400, NULL),
	OPT(server_idle_timeout, CFG_TIME, "600", true, 0, 86400 * 365, NULL),
	OPT(server_lifetime, CFG_TIME, "3600", true, 0, 86400 * 365, NULL),
	OPT(client_login_timeout, CFG_TIME, "60", true, 0, 86400, NULL),
	OPT(tcp_keepalive, CFG_BOOL, "1", true, 0, 0, NULL),
	OPT(allow_unauthenticated_remote, CFG_BOOL, "0", true, 0, 0, NULL),
	OPT(shutdown_timeout, CFG_TIME, "30", true, 0, 86400, NULL),
	OPT(logfile, CFG_STR, "", true, 0, 0, NULL),
	OPT(pidfile, CFG_STR, "", false, 0, 0, NULL),
	OPT(syslog, CFG_BOOL, "0", true, 0, 0, NULL),
	OPT(syslog_ident, CFG_STR, "cratebouncer", true, 0, 0, NULL),
	OPT(syslog_facility, CFG_STR, "daemon", true, 0, 0, NULL),
	OPT(log_connections, CFG_BOOL, "1", true, 0, 0, NULL),
	OPT(log_disconnections, CFG_BOOL, "1", true, 0, 0, NULL),
	OPT(log_pooler_errors, CFG_BOOL, "1", true, 0, 0, NULL),
	OPT(verbose, CFG_INT, "0", true, 0, 5, NULL),
	OPT(stats_period, CFG_TIME, "60", true, 1, 86400, NULL),
	OPT(log_stats, CFG_BOOL, "1", true, 0, 0, NULL),
	OPT(max_prepared_statements, CFG_INT, "200", true, 0, 100000, NULL),
	/* at least PIPE_QUERY_MAX: no message of a pipelined group is over it */
	OPT(max_packet_size, CFG_INT, "104857600", true, 8192, 1073741823, NULL),
	OPT(track_extra_parameters, CFG_STR, "", false, 0, 0, NULL),
	OPT(reserve_pool_size, CFG_INT, "0", true, 0, 10000, NULL),
	OPT(reserve_pool_timeout, CFG_TIME, "5", true, 0, 86400, NULL),
	OPT(max_db_connections, CFG_INT, "0", true, 0, 100000, NULL),
	OPT(query_timeout, CFG_TIME, "0", true, 0, 86400 * 365, NULL),
	OPT(client_idle_timeout, CFG_TIME, "0", true, 0, 86400 * 365, NULL),
	OPT(idle_transaction_timeout, CFG_TIME, "0", true, 0, 86400 * 365, NULL),
	OPT(server_check_query, CFG_STR, "select 1", true, 0, 0, NULL),
	OPT(server_check_delay, CFG_TIME, "30", true, 0, 86400, NULL),
	OPT(pipeline_depth, CFG_INT, "8", true, 0, 16, NULL),
	OPT(pipeline_max_query_time, CFG_TIME, "0.001", true, 0, 60, NULL),
	ADMIN_OPT(listen_addr, CFG_STR, "127.0.0.1", false, 0, 0),
	ADMIN_OPT(listen_port, CFG_INT, "0", false, 0, 65535),
	ADMIN_OPT(access_token_file, CFG_STR, "", true, 0, 0),
	HTTP_OPT(listen_addr, CFG_STR, "127.0.0.1", false, 0, 0, NULL),
	HTTP_OPT(listen_port, CFG_INT, "0", false, 0, 65535, NULL),
	HTTP_OPT(unix_socket, CFG_STR, "", false, 0, 0, NULL),
	HTTP_OPT(upstream, CFG_STR, "", false, 0, 0, NULL),
	HTTP_OPT(user, CFG_STR, "", false, 0, 0, NULL),
	HTTP_OPT(password, CFG_STR, "", false, 0, 0, NULL),
	HTTP_OPT(password_file, CFG_STR, "", false, 0, 0, NULL),
	HTTP_OPT(bearer_token_file, CFG_STR, "", false, 0, 0, NULL),
	HTTP_OPT(pool_size, CFG_INT, "16", false, 1, 10000, NULL),
	HTTP_OPT(tls_sslmode, CFG_ENUM, "verify-full", false, 0, 0, sslmode_names),
	HTTP_OPT(tls_ca_file, CFG_STR, "", false, 0, 0, NULL),
	HTTP_OPT(max_client_conn, CFG_INT, "1000", false, 1, 1000000, NULL),
	HTTP_OPT(connect_timeout, CFG_TIME, "10", false, 0.01, 3600, NULL),
	HTTP_OPT(header_timeout, CFG_TIME, "10", false, 0.01, 3600, NULL),
	HTTP_OPT(idle_timeout, CFG_TIME, "60", false, 0.01, 86400, NULL),
	HTTP_OPT(request_timeout, CFG_TIME, "300", false, 0.01, 86400, NULL),
	HTTP_OPT(queue_timeout, CFG_TIME, "30", false, 0.01, 86400, NULL),
	HTTP_OPT(upstream_idle_timeout, CFG_TIME, "50", false, 0.01, 86400, NULL),
	HTTP_OPT(max_sql_body_mb, CFG_INT, "100", false, 1, 4096, NULL),
};
#undef OPT
const size_t cfg_noptions = sizeof(cfg_options) / sizeof(cfg_options[0]);
_Static_assert(sizeof(cfg_options) / sizeof(cfg_options[0]) <= 128,
	       "struct parse_ctx's seen[] must hold every option");

void cfg_error(struct cfg *cfg, const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cfg->errors = xrealloc(cfg->errors, (cfg->nerrors + 1) * sizeof(char *));
	cfg->errors[cfg->nerrors++] = xasprintf("%s:%d: %s", file, line, msg);
}

const struct cfg_opt *cfg_find_opt_in(const char *section, const char *name)
{
	for (size_t i = 0; i < cfg_noptions; i++) {
		const struct cfg_opt *o = &cfg_options[i];
		if ((o->section == NULL) == (section == NULL) &&
		    (!section || strcasecmp(o->section, section) == 0) &&
		    strcasecmp(o->name, name) == 0)
			return o;
	}
	return NULL;
}

const struct cfg_opt *cfg_find_opt(const char *name)
{
	return cfg_find_opt_in(NULL, name);
}

const char *cfg_enum_name(const struct cfg_opt *opt, int value)
{
	for (int i = 0; opt->names[i]; i++)
		if (i == value)
			return opt->names[i];
	return "?";
}

/* Seconds with an optional unit: 15, 0.5, 500ms, 2s, 1min, 1h, 1d. */
static int parse_time(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || !isfinite(v))
		return -1;
	while (*end == ' ')
		end++;
	if (*end == '\0' || strcmp(end, "s") == 0)
		;
	else if (strcmp(end, "ms") == 0)
		v /= 1000;
	else if (strcmp(end, "min") == 0)
		v *= 60;
	else if (strcmp(end, "h") == 0)
		v *= 3600;
	else if (strcmp(end, "d") == 0)
		v *= 86400;
	else
		return -1;
	*out = v;
	return 0;
}

/* Decimal; octal only where the option is a file mode (leading 0). */
int cfg_parse_int(const char *s, long *out, int base)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, base);
	if (end == s || *end || errno)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "1") || !strcasecmp(s, "on") || !strcasecmp(s, "yes") ||
	    !strcasecmp(s, "true"))
		*out = true;
	else if (!strcmp(s, "0") || !strcasecmp(s, "off") || !strcasecmp(s, "no") ||
		 !strcasecmp(s, "false"))
		*out = false;
	else
		return -1;
	return 0;
}

int cfg_parse_enum(const char *const *names, const char *s)
{
	for (int i = 0; names[i]; i++)
		if (strcasecmp(names[i], s) == 0)
			return i;
	return -1;
}

char *cfg_enum_list(const char *const *names)
{
	char buf[256] = "";

	for (int i = 0; names[i]; i++) {
		if (i)
			strncat(buf, ", ", sizeof(buf) - strlen(buf) - 1);
		strncat(buf, names[i], sizeof(buf) - strlen(buf) - 1);
	}
	return xstrdup(buf);
}

/* Stores value into the cfg field; 0, or -1 after recording an error. */
static int set_option(struct parse_ctx *ctx, const struct cfg_opt *opt, const char *value)
{
	char *field = (char *)ctx->cfg + opt->offset;
	long iv;
	double tv;
	bool bv;
	int ev;

	switch (opt->type) {
	case CFG_STR:
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case CFG_INT:
		if (cfg_parse_int(value, &iv, strstr(opt->name, "_mode") ? 8 : 10) < 0) {
			cfg_error(ctx->cfg, ctx->name, ctx->lineno, "%s: \"%s\" is not an integer",
				  opt->name, value);
			return -1;
		}
		if (iv < opt->min || iv > opt->max) {
			cfg_error(ctx->cfg, ctx->name, ctx->lineno,
				  "%s: %ld is out of range (%.0f to %.0f)", opt->name, iv, opt->min,
				  opt->max);
			return -1;
		}
		*(int *)field = (int)iv;
		return 0;
	case CFG_TIME:
		if (parse_time(value, &tv) < 0) {
			cfg_error(
				ctx->cfg, ctx->name, ctx->lineno,
				"%s: \"%s\" is not a duration (seconds, or a number with ms, s, min, h, d)",
				opt->name, value);
			return -1;
		}
		if (tv < opt->min || tv > opt->max) {
			cfg_error(ctx->cfg, ctx->name, ctx->lineno,
				  "%s: %g s is out of range (%g to %g s)", opt->name, tv, opt->min,
				  opt->max);
			return -1;
		}
		*(double *)field = tv;
		return 0;
	case CFG_BOOL:
		if (parse_bool(value, &bv) < 0) {
			cfg_error(ctx->cfg, ctx->name, ctx->lineno,
				  "%s: \"%s\" is not a boolean (0/1, on/off)", opt->name, value);
			return -1;
		}
		*(bool *)field = bv;
		return 0;
	case CFG_ENUM:
		ev = cfg_parse_enum(opt->names, value);
		if (ev < 0) {
			char *l = cfg_enum_list(opt->names);
			cfg_error(ctx->cfg, ctx->name, ctx->lineno, "%s: \"%s\" is not one of: %s",
				  opt->name, value, l);
			free(l);
			return -1;
		}
		*(int *)field = ev;
		return 0;
	}
	return -1;
}

static int cfg_ini_handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse_ctx *ctx = user;
	bool global = strcasecmp(section, "cratebouncer") == 0 ||
		      strcasecmp(section, "pgbouncer") == 0;

	if (global || strcasecmp(section, "admin") == 0 || strcasecmp(section, "http") == 0) {
		const struct cfg_opt *opt = cfg_find_opt_in(global ? NULL : section, key);
		if (!opt) {
			cfg_error(ctx->cfg, ctx->name, ctx->lineno, "unknown option \"%s\" in [%s]",
				  key, section);
			return 1;
		}
		size_t idx = (size_t)(opt - cfg_options);
		if (ctx->seen[idx])
			cfg_error(ctx->cfg, ctx->name, ctx->lineno, "%s is set twice", opt->name);
		ctx->seen[idx] = true;
		set_option(ctx, opt, value);
	} else if (strcasecmp(section, "databases") == 0) {
		cfg_parse_db(ctx, key, value);
	} else if (strcasecmp(section, "users") == 0) {
		cfg_parse_user(ctx, key, value);
	} else {
		cfg_error(ctx->cfg, ctx->name, ctx->lineno, "unknown section [%s]", section);
	}
	return 1;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static void handle_long_line(struct parse_ctx *ctx, const char *line, size_t len)
{
	char *copy = xmalloc(len + 1), *eq;

	memcpy(copy, line, len);
	copy[len] = '\0';
	{
		const char *s = copy;
		while (isspace((unsigned char)*s))
			s++;
		if (!*s || *s == ';' || *s == '#') { /* blank or comment */
			free(copy);
			return;
		}
	}
	for (char *c = copy + 1; *c; c++) /* inline comment, as inih does */
		if (*c == ';' && isspace((unsigned char)c[-1])) {
			*c = '\0';
			break;
		}
	eq = strchr(copy, '=');
	if (!eq || copy[0] == '[' || isspace((unsigned char)copy[0]))
		cfg_error(ctx->cfg, ctx->name, ctx->lineno,
			  "syntax error: expected \"key = value\"");
	else if (copy[0] != ';' && copy[0] != '#') {
		*eq = '\0';
		cfg_ini_handler(ctx, ctx->section, trim(copy), trim(eq + 1));
	}
	free(copy);
}

/* Feeds inih one line at a time so that ctx->lineno is the line being handled.
 * Lines inih would reject silently are reported here. */
static char *cfg_ini_reader(char *str, int num, void *stream)
{
	struct parse_ctx *ctx = stream;
	const char *p = ctx->pos, *nl;
	size_t len;

	if (!p || !*p)
		return NULL;
	if (ctx->lineno == 0 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	nl = strchr(p, '\n');
	len = nl ? (size_t)(nl - p + 1) : strlen(p);
	ctx->pos = p + len;
	ctx->lineno++;
	if (len >= (size_t)num) {
		/* inih's line buffer is fixed (200 bytes in Debian's build): long key=value
		 * lines, such as a [databases] entry with paths, are handed over here. */
		handle_long_line(ctx, p, len);
		strcpy(str, ";\n");
		return str;
	}
	memcpy(str, p, len);
	str[len] = '\0';
	if (str[0] == '[') {
		size_t n = strcspn(str + 1, "]\r\n");
		snprintf(ctx->section, sizeof(ctx->section), "%.*s", (int)n, str + 1);
	}

	/* a non-empty line that is neither comment, section, continuation nor key=value */
	const char *s = str;
	while (*s == ' ' || *s == '\t')
		s++;
	bool blank = *s == '\0' || *s == '\n' || *s == '\r';
	if (s == str && *s == '[' && !strchr(s, ']')) {
		cfg_error(ctx->cfg, ctx->name, ctx->lineno, "syntax error: expected \"[section]\"");
		strcpy(str, ";\n");
		return str;
	}
	if (!blank && s == str && *s != ';' && *s != '#' && *s != '[' && !strchr(s, '=')) {
		cfg_error(ctx->cfg, ctx->name, ctx->lineno,
			  "syntax error: expected \"key = value\"");
		strcpy(str, ";\n");
	}
	return str;
}

char *cfg_expand_path(const char *path, const char *dir, char **err)
{
	static const char *const prefixes[] = { "$CREDENTIALS_DIRECTORY/",
						"${CREDENTIALS_DIRECTORY}/" };

	for (size_t i = 0; i < 2; i++) {
		size_t n = strlen(prefixes[i]);
		if (strncmp(path, prefixes[i], n) == 0) {
			const char *cred = getenv("CREDENTIALS_DIRECTORY");
			if (!cred || !*cred) {
				*err = xstrdup(
					"CREDENTIALS_DIRECTORY is not set (systemd sets it for "
					"LoadCredential=)");
				return NULL;
			}
			return xasprintf("%s/%s", cred, path + n);
		}
	}
	if (path[0] == '/' || !dir)
		return xstrdup(path);
	return xasprintf("%s/%s", dir, path);
}

static void cfg_warn(struct cfg *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cfg_warn(struct cfg *cfg, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cfg->warnings = xrealloc(cfg->warnings, (cfg->nwarnings + 1) * sizeof(char *));
	cfg->warnings[cfg->nwarnings++] = xstrdup(msg);
}

void cfg_check_secret_file(struct cfg *cfg, const char *path, const char *what)
{
	struct stat st;

	if (stat(path, &st) == 0 && (st.st_mode & S_IROTH))
		cfg_warn(cfg, "%s %s is readable by every user on this host; chmod o-r it", what,
			 path);
}

static void apply_defaults(struct cfg *cfg)
{
	struct parse_ctx ctx = { .cfg = cfg, .name = "(default)" };

	for (size_t i = 0; i < cfg_noptions; i++)
		if (set_option(&ctx, &cfg_options[i], cfg_options[i].def) < 0)
			fatal("bad built-in default for %s", cfg_options[i].name);
}

static struct cfg *parse_with_dir(const char *text, const char *name, const char *dir)
{
	struct cfg *cfg = xcalloc(1, sizeof(*cfg));
	struct parse_ctx ctx = { .cfg = cfg, .name = name, .dir = dir, .pos = text };
	int rc;

	apply_defaults(cfg);
	rc = ini_parse_stream(cfg_ini_reader, &ctx, cfg_ini_handler, &ctx);
	cfg->has_inline_password = ctx.inline_password;
	if (rc > 0)
		cfg_error(cfg, name, rc, "syntax error");
	if ((cfg->auth_type == AUTH_PLAIN || cfg->auth_type == AUTH_MD5 ||
	     cfg->auth_type == AUTH_SCRAM) &&
	    !*cfg->auth_file)
		cfg_error(cfg, name, 0, "auth_type %s needs auth_file",
			  auth_type_names[cfg->auth_type]);
	static const char *const facilities[] = { "daemon", "user",   "local0", "local1",
						  "local2", "local3", "local4", "local5",
						  "local6", "local7", NULL };
	if (cfg_parse_enum(facilities, cfg->syslog_facility) < 0) {
		char *l = cfg_enum_list(facilities);
		cfg_error(cfg, name, 0, "syslog_facility: \"%s\" is not one of: %s",
			  cfg->syslog_facility, l);
		free(l);
	}
	for (const char *p = cfg->track_extra_parameters; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_., \t", *p)) {
			cfg_error(cfg, name, 0,
				  "track_extra_parameters: \"%s\" is not a list of parameter names",
				  cfg->track_extra_parameters);
			break;
		}
	return cfg;
}

struct cfg *cfg_parse_string(const char *text, const char *name)
{
	return parse_with_dir(text, name, NULL);
}

struct cfg *cfg_load(const char *path)
{
	char *why = NULL, *text = read_file(path, 1 << 20, &why);
	struct cfg *cfg;

	if (!text) {
		cfg = xcalloc(1, sizeof(*cfg));
		apply_defaults(cfg);
		cfg_error(cfg, path, 0, "cannot read config: %s", why);
		free(why);
		return cfg;
	}
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	cfg = parse_with_dir(text, path, dir);
	cfg->dir = dir;
	free(text);
	if (cfg->has_inline_password)
		cfg_check_secret_file(cfg, path, "config file (it holds a password)");
	return cfg;
}

void cfg_free(struct cfg *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg_noptions; i++)
		if (cfg_options[i].type == CFG_STR)
			free(*(char **)((char *)cfg + cfg_options[i].offset));
	for (size_t i = 0; i < cfg->ndbs; i++)
		cfg_db_clear(&cfg->dbs[i]);
	free(cfg->dbs);
	for (size_t i = 0; i < cfg->nusers; i++)
		free(cfg->users[i].name);
	free(cfg->users);
	for (size_t i = 0; i < cfg->nerrors; i++)
		free(cfg->errors[i]);
	free(cfg->errors);
	for (size_t i = 0; i < cfg->nwarnings; i++)
		free(cfg->warnings[i]);
	free(cfg->warnings);
	free(cfg->dir);
	free(cfg);
}

int cfg_set(struct cfg *cfg, const char *key, const char *value, char **err)
{
	const struct cfg_opt *opt = cfg_find_opt(key);
	struct parse_ctx ctx = { .cfg = cfg, .name = "SET" };
	size_t before = cfg->nerrors;

	if (!opt) {
		*err = xasprintf("unknown option \"%s\"", key);
		return -1;
	}
	if (!opt->reloadable) {
		*err = xasprintf("%s cannot be changed while running; change the config file and "
				 "restart",
				 opt->name);
		return -1;
	}
	if (set_option(&ctx, opt, value) < 0 || cfg->nerrors > before) {
		/* the message is "SET:0: ..."; hand it over without the prefix */
		char *m = cfg->errors[--cfg->nerrors];
		*err = xstrdup(m + strlen("SET:0: "));
		free(m);
		return -1;
	}
	return 0;
}

bool cfg_list_has(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p = list;

	while (p && *p) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		const char *e = p;
		while (*e && *e != ',' && *e != ' ' && *e != '\t')
			e++;
		if ((size_t)(e - p) == n && strncmp(p, name, n) == 0)
			return true;
		p = e;
	}
	return false;
}
