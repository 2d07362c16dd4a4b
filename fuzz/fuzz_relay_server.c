/* Server messages through the relay (rl_from_server): a client's requests first (so that
 * the relay's queue has something to answer), maybe a session replay or a reset of the
 * pooler's own, then arbitrary bytes as the server's stream, in pieces.
 * Input: byte 0 the options (fuzz_relay.h; bit 3: nobody linked, bit 4: a replay of the
 * client's session parameters (rl_link), bit 5: a reset query (rl_inject, or on CrateDB
 * rl_reset_crate), bit 6: stop after each ReadyForQuery as with pipelined clients), byte 1
 * the seed of the piece sizes, a 2-byte length and the client bytes, then the server bytes.
 * Checked after every call: what reached the client is a sequence of whole-header
 * messages whose last one lacks exactly what the relay still has to pass, its own
 * answers are well formed; what is left in the input is only what the relay needs whole
 * (less than a header, a ReadyForQuery's sixth byte, a small ParameterStatus); ready()
 * comes once per ReadyForQuery; nothing leaks. The server's messages also go through
 * pgproto's parsers (ErrorResponse, ParameterStatus, Authentication), whose fields must
 * lie inside the body. */
#include "fuzz_relay.h"

struct counts {
	uint64_t ready;
	uint64_t zs;	/* ReadyForQuery messages seen in the client's stream */
};

static void on_ready(void *arg, char status)
{
	struct counts *n = arg;

	(void)status;
	n->ready++;
}

static void to_client_msg(void *arg, uint8_t type, const uint8_t *body, size_t len)
{
	struct counts *n = arg;

	(void)body;
	(void)len;
	if (type == 'Z')
		n->zs++;
}

static bool in_body(const char *p, const uint8_t *body, size_t len)
{
	return (const uint8_t *)p >= body && (const uint8_t *)p < body + len &&
	       memchr(p, 0, (size_t)(body + len - (const uint8_t *)p));
}

/* pgproto's parsers on each whole server message. */
static void parse_server_msgs(const uint8_t *p, size_t len)
{
	uint8_t type;
	const uint8_t *body, *start = p;
	size_t blen, mlen, total = len;

	while (pg_next_msg(&p, &len, &type, &body, &blen, &mlen)) {
		CHECK(body >= start && body + blen <= start + total && mlen == blen + 5);
		if (type == 'E' || type == 'N') {
			struct pg_error e;
			if (pg_parse_error(body, blen, &e) == 0) {
				const char *f[] = { e.severity, e.code, e.message, e.detail, e.hint };
				for (size_t i = 0; i < 5; i++)
					CHECK(!*f[i] || in_body(f[i], body, blen));
			}
		} else if (type == 'S') {
			const char *name, *value;
			if (pg_parse_param_status(body, blen, &name, &value) == 0) {
				CHECK(in_body(name, body, blen) && in_body(value, body, blen));
				CHECK(name + strlen(name) + 1 == value);
				CHECK((const uint8_t *)value + strlen(value) + 1 == body + blen);
			}
		} else if (type == 'R') {
			uint32_t code;
			const uint8_t *d;
			size_t dlen;
			if (pg_parse_auth(body, blen, &code, &d, &dlen) == 0)
				CHECK(d == body + 4 && dlen + 4 == blen);
		}
	}
	(void)pg_find_param_status(start, total, "server_version");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rl_server s;
	struct rl_client c;
	struct pg_stream up = { 0 }, down = { 0 };
	struct counts counts = { 0 };
	struct evbuffer *in, *to_server, *to_client;
	const char *err = NULL;

	fuzz_init();
	if (size < 4)
		return 0;
	struct fuzz_in fi = { data, size };
	uint8_t ob = fuzz_byte(&fi);
	struct rl_opts o = fuzz_opts(ob);
	bool nobody = ob & 8;
	uint32_t seed = fuzz_byte(&fi) * 2654435761u + 1;
	size_t clen;
	const uint8_t *cbytes = fuzz_field(&fi, &clen);
	const uint8_t *sbytes = fi.p;
	size_t slen = fi.left;

	parse_server_msgs(sbytes, slen);

	rl_server_init(&s);
	rl_client_init(&c);
	in = evbuffer_new();
	to_server = evbuffer_new();
	to_client = evbuffer_new();
	CHECK(in && to_server && to_client);
	s.stop_after_ready = ob & 64;

	if (ob & 16) {
		static const char params[] = "TimeZone\0Europe/Berlin\0application_name\0fuzz\0"
					     "options\0-c statement_timeout=5s\0";
		CHECK(rl_client_startup(&c, params, &o) == 0);
		rl_link(&s, &c, &o, to_server);
	}
	if (ob & 32) {
		if (o.crate)
			rl_reset_crate(&s, &o, to_server);
		else
			rl_inject(&s, &o, "DISCARD ALL", to_server);
	}
	evbuffer_add(in, cbytes, clen);
	bool client_ok = rl_from_client(&s, &c, &o, in, to_server, &err) == RL_OK;
	pg_stream_feed(&up, to_server, fuzz_upstream_msg, NULL);
	if (client_ok)
		CHECK(up.need == fuzz_owed(c.pass, c.drop));
	evbuffer_drain(in, evbuffer_get_length(in));
	c.pass = 0;	/* the rest of a streamed client message never comes */

	struct rl_client *linked = nobody ? NULL : &c;
	size_t off = 0;
	for (;;) {
		if (off < slen) {
			size_t n = 1 + fuzz_rand(&seed) % 64;
			if (fuzz_rand(&seed) % 4 == 0)
				n = slen - off;
			if (n > slen - off)
				n = slen - off;
			evbuffer_add(in, sbytes + off, n);
			off += n;
		}
		int r;
		do {
			err = NULL;
			r = rl_from_server(&s, linked, &o, in, to_client, on_ready, &counts, &err);
			if (linked)
				pg_stream_feed(&down, to_client, to_client_msg, &counts);
			else
				evbuffer_drain(to_client, evbuffer_get_length(to_client));
		} while (r == 1 && evbuffer_get_length(in) > 0);
		if (r < 0) {
			CHECK(err && *err);
			break;
		}
		if (linked) {
			CHECK(down.need == fuzz_owed(s.pass, s.drop));
			/* ready() only for a ReadyForQuery the client got */
			CHECK(counts.ready <= counts.zs);
		}
		if (r == 0) {
			size_t left = evbuffer_get_length(in);
			if (s.pass)
				CHECK(left == 0);
			if (left >= 5) {
				uint8_t h[5];
				evbuffer_copyout(in, h, 5);
				uint32_t mlen = pg_get_u32(h + 1);
				/* a ReadyForQuery's status byte, or a message that passes whole */
				CHECK((h[0] == 'Z' && left == 5) ||
				      (h[0] != 'Z' && mlen + 1 <= RL_SERVER_WHOLE && left < (size_t)mlen + 1));
			}
		}
		if (off >= slen && r == 0)
			break;
	}

	fuzz_relay_done(&s, &c, in, to_server, to_client);
	return 0;
}
