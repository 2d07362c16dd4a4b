/* Password checks for client authentication against auth_file secrets, and the MD5
 * computations PostgreSQL's md5 method needs on both sides. Pure functions. */
#ifndef CB_AUTH_H
#define CB_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#define PG_MD5_LEN 35 /* "md5" + 32 hex digits */

enum secret_kind { SECRET_PLAIN, SECRET_MD5, SECRET_SCRAM };

/* What an auth_file password field holds. */
enum secret_kind secret_kind(const char *stored);
/* out = "md5" + md5hex(password + user), NUL-terminated. */
void pg_md5_encrypt(const char *password, const char *user, char out[PG_MD5_LEN + 1]);
/* out = "md5" + md5hex(md5hex_part_of(stored_md5) + salt): the answer to an MD5 challenge,
 * computed from an "md5..." secret. */
void pg_md5_salted(const char *stored_md5, const uint8_t salt[4], char out[PG_MD5_LEN + 1]);
/* A cleartext password against a stored secret of any kind (constant-time compare).
 * An empty password or an empty stored secret never matches, here or in auth_check_md5. */
bool auth_check_plain(const char *stored, const char *user, const char *given);
/* An MD5 challenge response against a stored plain or md5 secret (false for SCRAM). */
bool auth_check_md5(const char *stored, const char *user, const uint8_t salt[4],
		    const char *response);

#endif
