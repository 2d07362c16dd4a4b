/* What every harness shares: quiet logging, the tracked parameter list set up once, and
 * CHECK(), which aborts (a crash to libFuzzer) with the broken invariant named. Each
 * harness defines LLVMFuzzerTestOneInput; libFuzzer supplies main(). */
#ifndef CB_FUZZ_COMMON_H
#define CB_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/log.h"
#include "pgwire/sessparam.h"

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, \
				#cond);                                                  \
			abort();                                                         \
		}                                                                        \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Logging off (the relay warns about what clients send), the built-in parameters plus
 * one extra tracked. */
static inline void fuzz_init(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	log_open(NULL, 0, true);
	if (sp_init("statement_timeout") < 0)
		abort();
}

/* Reads the input as a sequence of fields: take(n) hands out the next n bytes (fewer at
 * the end), byte() one byte (0 at the end). */
struct fuzz_in {
	const uint8_t *p;
	size_t left;
};

static inline uint8_t fuzz_byte(struct fuzz_in *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static inline const uint8_t *fuzz_take(struct fuzz_in *in, size_t *n)
{
	const uint8_t *p = in->p;

	if (*n > in->left)
		*n = in->left;
	in->p += *n;
	in->left -= *n;
	return p;
}

/* A field with a 2-byte big-endian length in front, as fuzz/make_corpus.py writes them. */
static inline const uint8_t *fuzz_field(struct fuzz_in *in, size_t *n)
{
	size_t len = (size_t)fuzz_byte(in) << 8;

	len |= fuzz_byte(in);
	*n = len;
	return fuzz_take(in, n);
}

/* A pgwire message stream checked as it is written: the bytes the relay put in an
 * evbuffer are taken off it here. Every message starts with a whole header (type, length
 * >= 4, never beyond 1 GB, as the relay itself limits); need is what the last one still
 * lacks. cb sees every message: whole ones of up to 64 kB with their body, others with
 * body NULL. */
struct pg_stream {
	uint64_t need;
	uint64_t msgs;
};

typedef void (*pg_stream_cb)(void *arg, uint8_t type, const uint8_t *body, size_t len);

static inline void pg_stream_feed(struct pg_stream *s, struct evbuffer *out, pg_stream_cb cb,
				  void *arg)
{
	for (;;) {
		size_t avail = evbuffer_get_length(out);
		if (!avail)
			return;
		if (s->need) {
			size_t n = avail < s->need ? avail : (size_t)s->need;
			evbuffer_drain(out, n);
			s->need -= n;
			continue;
		}
		uint8_t hdr[5];
		CHECK(avail >= 5);	/* never a header split across writes */
		evbuffer_copyout(out, hdr, 5);
		uint32_t len = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 | hdr[4];
		CHECK(len >= 4 && len <= 0x3fffffff);
		s->msgs++;
		if (avail >= (size_t)len + 1 && len <= 65536) {
			const uint8_t *m = evbuffer_pullup(out, (ev_ssize_t)len + 1);
			CHECK(m != NULL);
			if (cb)
				cb(arg, m[0], m + 5, len - 4);
			evbuffer_drain(out, (size_t)len + 1);
		} else {
			size_t n = avail < (size_t)len + 1 ? avail : (size_t)len + 1;
			if (cb)
				cb(arg, hdr[0], NULL, len - 4);
			evbuffer_drain(out, n);
			s->need = (size_t)len + 1 - n;
		}
	}
}

/* A small deterministic generator for chunk sizes (xorshift32). */
static inline uint32_t fuzz_rand(uint32_t *x)
{
	uint32_t v = *x ? *x : 0x9e3779b9u;

	v ^= v << 13;
	v ^= v >> 17;
	v ^= v << 5;
	*x = v;
	return v;
}

#endif
