/* The relay set up as a pool would set it up, from the input's first byte:
 *   bits 0-1  pool mode rules: 0 session (nothing renamed), 1 transaction, 2 statement
 *             (transaction blocks are violations), 3 transaction with max_prepared 1
 *   bit 2     the upstream is CrateDB
 *   bits 3-7  harness-specific
 * Shared by fuzz_relay_client.c and fuzz_relay_server.c. */
#ifndef CB_FUZZ_RELAY_H
#define CB_FUZZ_RELAY_H

#include "fuzz_common.h"

#include "pgwire/pgproto.h"
#include "pgwire/prepared.h"
#include "pgwire/relay.h"

static const char *fuzz_defaults[SP_MAX] = { "UTF8", "ISO, MDY", "UTC", NULL, "\"$user\", public" };

static inline struct rl_opts fuzz_opts(uint8_t b)
{
	struct rl_opts o = { .defaults = fuzz_defaults };

	switch (b & 3) {
	case 0:
		break;
	case 1:
		o.rename = true;
		o.max_prepared = 8;
		break;
	case 2:
		o.rename = true;
		o.max_prepared = 8;
		o.no_tx = true;
		break;
	default:
		o.rename = true;
		o.max_prepared = 1;
		break;
	}
	o.crate = b & 4;
	o.max_packet = b & 128 ? 64 : 0;	/* max_packet_size's refusal at the header, too */
	return o;
}

/* What the relay writes upstream: every message it made or renamed itself is well formed
 * where the relay vouches for it. */
static inline void fuzz_upstream_msg(void *arg, uint8_t type, const uint8_t *body, size_t len)
{
	(void)arg;
	if (!body)
		return;
	switch (type) {
	case 'P':	/* name, then the statement: both NUL-terminated */
		CHECK(memchr(body, 0, len) != NULL);
		break;
	case 'B': {	/* portal and statement names */
		const uint8_t *z = memchr(body, 0, len);
		CHECK(z && memchr(z + 1, 0, len - (size_t)(z + 1 - body)) != NULL);
		break;
	}
	case 'D':
	case 'C':	/* 'S' or 'P', then a NUL-terminated name */
		CHECK(len >= 2 && body[len - 1] == '\0');
		break;
	default:
		break;
	}
}

/* What the relay answers the client itself (rl_flush_fakes) or passes to it. */
static inline void fuzz_client_msg(void *arg, uint8_t type, const uint8_t *body, size_t len)
{
	(void)arg;
	(void)body;
	switch (type) {
	case '1':
	case '3':
		CHECK(len == 0);
		break;
	default:
		break;
	}
}

/* Bytes the stream checker is owed: the relay's pass counter when the bytes go on. */
static inline uint64_t fuzz_owed(uint32_t pass, bool drop)
{
	return pass && !drop ? pass : 0;
}

/* The end of a run: nothing of the relay's state left behind. */
static inline void fuzz_relay_done(struct rl_server *s, struct rl_client *c, struct evbuffer *in,
				   struct evbuffer *to_server, struct evbuffer *to_client)
{
	rl_client_clear(c);
	rl_server_clear(s);
	CHECK(ps_count() == 0);
	evbuffer_free(in);
	evbuffer_free(to_server);
	evbuffer_free(to_client);
}

#endif
