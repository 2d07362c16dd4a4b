/* Startup packets (pg_parse_startup): the first bytes any client sends, before it is
 * authenticated. The input is one whole packet. Checked on success: the kind matches the
 * version and length, user/database/params lie inside the packet (client.c copies the
 * block params_len + 1 bytes long and rebases the pointers), rebuilding a normal packet
 * from its parameters with pg_put_startup gives the same bytes and parses to the same
 * user and database, pg_startup_param finds each key, and the parameters go through the
 * relay's session tracking (rl_client_startup) as at login. */
#include "fuzz_common.h"

#include "pgwire/pgproto.h"
#include "pgwire/relay.h"

#define MAX_PARAMS 512

static bool inside(const char *p, const uint8_t *b, size_t n)
{
	return (const uint8_t *)p >= b && (const uint8_t *)p < b + n;
}

static void check_normal(const uint8_t *data, size_t size, const struct pg_startup *st)
{
	const char *params[MAX_PARAMS * 2 + 1];
	size_t np = 0;

	CHECK(st->version >> 16 == 3);
	CHECK(st->params == (const char *)data + 8);
	CHECK(8 + st->params_len + 1 == size);
	CHECK(st->params[st->params_len] == '\0');
	CHECK(st->user && *st->user && inside(st->user, data, size));
	CHECK(st->user >= st->params && st->user < st->params + st->params_len);
	CHECK(st->database && *st->database && inside(st->database, data, size));
	CHECK(memchr(st->user, 0, (size_t)((const char *)data + size - st->user)) != NULL);

	/* walk the pairs as client.c does, to the empty name */
	const char *p = st->params, *end = st->params + st->params_len;
	while (p < end) {
		const char *k = p, *v = k + strlen(k) + 1;
		CHECK(*k && v < end);
		p = v + strlen(v) + 1;
		CHECK(p <= end);
		CHECK(pg_startup_param(st, k) != NULL);
		if (np < MAX_PARAMS * 2) {
			params[np++] = k;
			params[np++] = v;
		}
	}
	CHECK(p == end);
	params[np] = NULL;

	if (np < MAX_PARAMS * 2) {
		struct evbuffer *b = evbuffer_new();
		CHECK(b != NULL);
		pg_put_startup(b, params);
		size_t n = evbuffer_get_length(b);
		const uint8_t *r = evbuffer_pullup(b, -1);
		CHECK(n == size);
		CHECK(memcmp(r, data, 4) == 0 && memcmp(r + 8, data + 8, size - 8) == 0);
		struct pg_startup again;
		const char *err = NULL;
		CHECK(pg_parse_startup(r, n, &again, &err) == 0);
		CHECK(again.kind == PG_STARTUP_NORMAL && again.params_len == st->params_len);
		CHECK(strcmp(again.user, st->user) == 0);
		CHECK(strcmp(again.database, st->database) == 0);
		evbuffer_free(b);
	}

	/* login: the tracked parameters the client asked for */
	static const char *defaults[SP_MAX] = { "UTF8", "ISO, MDY", "UTC" };
	const struct rl_opts o = { .rename = true, .max_prepared = 8, .defaults = defaults };
	struct rl_client c;
	rl_client_init(&c);
	CHECK(rl_client_startup(&c, st->params, &o) == 0);
	for (int i = 0; i < sp_count(); i++) {
		bool raw = true;
		const char *v = sp_get(&c.params, i, &raw);
		CHECK(!v || !raw);
	}
	rl_client_clear(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_startup st;
	const char *err = NULL;

	fuzz_init();
	if (pg_parse_startup(data, size, &st, &err) < 0) {
		CHECK(err && *err);
		return 0;
	}
	CHECK(size >= 8 && size <= PG_STARTUP_MAX && pg_get_u32(data) == size);
	CHECK(st.version == pg_get_u32(data + 4));
	switch (st.kind) {
	case PG_STARTUP_SSL:
	case PG_STARTUP_GSSENC:
		CHECK(size == 8);
		CHECK(st.version == (st.kind == PG_STARTUP_SSL ? PG_SSL_REQUEST : PG_GSSENC_REQUEST));
		break;
	case PG_STARTUP_CANCEL:
		CHECK(size == 16 && st.version == PG_CANCEL_REQUEST);
		CHECK(st.cancel_pid == pg_get_u32(data + 8) && st.cancel_key == pg_get_u32(data + 12));
		break;
	case PG_STARTUP_NORMAL:
		check_normal(data, size, &st);
		break;
	default:
		CHECK(!"unknown startup kind");
	}
	return 0;
}
