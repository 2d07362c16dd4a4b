/* auth_file in PgBouncer's userlist format: one `"user" "secret"` per line, a doubled
 * quote escapes a quote, lines starting with ';' or '#' and blank lines are skipped. */
#ifndef CB_AUTHFILE_H
#define CB_AUTHFILE_H

struct authfile;

/* On error returns NULL and *err = malloc'd "NAME:LINE: message" (err may be NULL).
 * A later line for the same user replaces an earlier one; an empty user name is an error. */
struct authfile *authfile_parse(const char *text, const char *name, char **err);
struct authfile *authfile_load(const char *path, char **err);
/* The stored secret (plain, "md5..." or "SCRAM-SHA-256$..."), or NULL. */
const char *authfile_lookup(const struct authfile *af, const char *user);
void authfile_free(struct authfile *af);

#endif
