/* Client messages through the relay (rl_from_client): arbitrary bytes as a client's
 * stream, fed in pieces of pseudo-random sizes, under the rules of each pool mode.
 * Input: byte 0 the options (fuzz_relay.h; bit 3: rl_idle_answer is tried first, as for a
 * client without a server), byte 1 the seed of the piece sizes, then the client bytes.
 * Checked after every call: what went upstream is a sequence of whole-header messages
 * whose last one lacks exactly what the relay still has to pass (nothing split, nothing
 * invented), the relay's own messages are well formed, its answers to the client too,
 * what is left in the input is less than one message the relay needs whole, and when all
 * is cleared no statement is left interned (no reference leaked). */
#include "fuzz_relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rl_server s;
	struct rl_client c;
	struct pg_stream up = { 0 }, down = { 0 };
	struct evbuffer *in, *to_server, *to_client;

	fuzz_init();
	if (size < 2)
		return 0;
	struct rl_opts o = fuzz_opts(data[0]);
	bool idle_first = data[0] & 8;
	uint32_t seed = data[1] * 2654435761u + 1;
	data += 2;
	size -= 2;

	rl_server_init(&s);
	rl_client_init(&c);
	in = evbuffer_new();
	to_server = evbuffer_new();
	to_client = evbuffer_new();
	CHECK(in && to_server && to_client);

	size_t off = 0;
	bool stop = false;
	while (!stop && off < size) {
		size_t n = 1 + fuzz_rand(&seed) % 64;
		if (fuzz_rand(&seed) % 4 == 0)
			n = size - off;	/* the rest in one go */
		if (n > size - off)
			n = size - off;
		evbuffer_add(in, data + off, n);
		off += n;
		/* as client.c does for a client without a server: nothing outstanding */
		if (idle_first && rl_quiet(&s, &c) && rl_idle_answer(&c, &o, in, to_client))
			pg_stream_feed(&down, to_client, fuzz_client_msg, NULL);
		const char *err = NULL;
		enum rl_result r = rl_from_client(&s, &c, &o, in, to_server, &err);
		pg_stream_feed(&up, to_server, fuzz_upstream_msg, NULL);
		if (r == RL_ERROR) {
			CHECK(err && *err);
			stop = true;
		} else if (r == RL_TERMINATE) {
			CHECK(evbuffer_get_length(in) == 0);
			stop = true;
		} else {
			/* what it left: a piece of one message it needs whole, or less than a header */
			size_t left = evbuffer_get_length(in);
			CHECK(up.need == fuzz_owed(c.pass, c.drop));
			if (left >= 5) {
				uint8_t h[5];
				evbuffer_copyout(in, h, 5);
				CHECK(c.pass == 0);
				CHECK(strchr("PBDCQ", h[0]) && h[0]);
				CHECK(left < (size_t)pg_get_u32(h + 1) + 1);
			}
			if (rl_flush_fakes(&s, &o, to_client))
				CHECK(evbuffer_get_length(to_client) > 0);
			pg_stream_feed(&down, to_client, fuzz_client_msg, NULL);
			CHECK(down.need == 0);
		}
		CHECK(rl_parses_pending(&s) <= rl_pending(&s));
		CHECK(o.max_prepared <= 0 || rl_server_prepared(&s) <= (size_t)o.max_prepared);
	}

	fuzz_relay_done(&s, &c, in, to_server, to_client);
	return 0;
}
