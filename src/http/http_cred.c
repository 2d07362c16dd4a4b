/* The credentials the HTTP side injects: an Authorization value made from [http] user and
 * password (or password_file), or a bearer token file; the file is read again when it
 * changes (a JWT expires and is replaced). The value is never logged. */
#include "http_int.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/cfg.h"
#include "core/log.h"
#include "core/util.h"

/* The Authorization value for a bearer token or a user's password. */
static char *auth_value(bool token, const char *user, const char *secret)
{
	if (token)
		return xasprintf("Bearer %s", secret);
	char *plain = xasprintf("%s:%s", user, secret);
	size_t n = strlen(plain);
	char *v = xmalloc(6 + 4 * ((n + 2) / 3) + 1);
	memcpy(v, "Basic ", 6);
	EVP_EncodeBlock((unsigned char *)v + 6, (const unsigned char *)plain, (int)n);
	OPENSSL_cleanse(plain, n);
	free(plain);
	return v;
}

char *cred_make(const struct cfg *cfg, bool remember, char **err)
{
	const char *file = *cfg->http_bearer_token_file ? cfg->http_bearer_token_file
			   : *cfg->http_user && *cfg->http_password_file ? cfg->http_password_file
									 : NULL;
	bool token = *cfg->http_bearer_token_file != '\0';
	char *secret = NULL, *why = NULL;
	struct stat st;

	*err = NULL;
	if (!token && !*cfg->http_user)
		return xstrdup("");
	if (!file)
		return auth_value(false, cfg->http_user, cfg->http_password);
	char *path = cfg_expand_path(file, cfg->dir, &why);
	if (!path || stat(path, &st) < 0 || !(secret = read_secret_file(path, &why))) {
		*err = xasprintf("%s: %s", path ? path : file, why ? why : strerror(errno));
		free(why);
		free(path);
		return NULL;
	}
	char *v = auth_value(token, cfg->http_user, secret);
	free_secret(secret);
	if (remember) {
		free(hp.cred_path);
		hp.cred_path = path;
		hp.cred_token = token;
		hp.cred_st = st;
	} else {
		free(path);
	}
	return v;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The token (or password) file is read again when it changes: a JWT expires and is
 * replaced, in place or by a rename. Checked every tick and at once when CrateDB refuses a
 * login. One that cannot be read keeps the credential in use, logged once. */
void cred_refresh(void)
{
	struct stat st;
	char *why = NULL, *secret;

	if (!hp.cred_path || (stat(hp.cred_path, &st) == 0 && same_file(&st, &hp.cred_st)))
		return;
	if (stat(hp.cred_path, &st) < 0 || !(secret = read_secret_file(hp.cred_path, &why))) {
		if (!hp.cred_warned)
			log_error(
				"http: %s changed but cannot be read (%s); still injecting the %s "
				"read before",
				hp.cred_path, why ? why : strerror(errno),
				hp.cred_token ? "token" : "password");
		hp.cred_warned = true;
		free(why);
		return;
	}
	free_secret(hp.auth);
	hp.auth = auth_value(hp.cred_token, hp.cfg->user, secret);
	free_secret(secret);
	hp.cred_st = st;
	hp.cred_warned = false;
	hp.warned_401 = false;
	log_info("http: %s changed: the new %s is injected from now on", hp.cred_path,
		 hp.cred_token ? "token" : "password");
}
