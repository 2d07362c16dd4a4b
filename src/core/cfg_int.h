/* What cfg.c (the option table, the INI reader) and cfg_db.c (the [databases] and [users]
 * entries) share. Only they include this. */
#ifndef CB_CFG_INT_H
#define CB_CFG_INT_H

#include <stdbool.h>

#include "cfg.h"

struct parse_ctx {
	struct cfg *cfg;
	const char *name; /* file name for messages */
	const char *dir;  /* directory of the config file, for relative paths */
	const char *pos;  /* reader position in the text */
	int lineno;
	bool seen[128];       /* options set, to report duplicates */
	char section[64];     /* current section, tracked for long lines */
	bool inline_password; /* a password= in the file itself */
};

/* The names of the enum options, NULL-terminated. */
extern const char *const pool_mode_names[],
	*const auth_type_names[], *const sslmode_names[], *const server_kind_names[];

/* Records an error "FILE:LINE: message" in cfg. */
void cfg_error(struct cfg *cfg, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Decimal (base 10) or octal (8); 0, or -1 when s is not a whole number. */
int cfg_parse_int(const char *s, long *out, int base);
/* The index of s among names (case-insensitive), or -1. */
int cfg_parse_enum(const char *const *names, const char *s);
/* "a, b, c" (malloc'd) for error messages. */
char *cfg_enum_list(const char *const *names);

/* cfg_db.c: one line of [databases] / [users]. */
void cfg_parse_db(struct parse_ctx *ctx, const char *name, const char *value);
void cfg_parse_user(struct parse_ctx *ctx, const char *name, const char *value);

#endif
