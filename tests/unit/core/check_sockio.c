/* Unit tests for sockio.c over a socketpair: an idle connection holds no buffer, write
 * event or timer; what the loop pass wrote empty is freed at its end and made again when
 * needed, with every byte intact; output the socket cannot take waits on a write event
 * that goes once written; a deadline fires and its timer goes; a buffer that cannot be
 * allocated drops what is added and fails the connection. */
#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/sockio.h"

/* libevent's allocations fail while this is set (event_set_mem_functions in main). */
static int fail_alloc;

static void *test_malloc(size_t n)
{
	return fail_alloc ? NULL : malloc(n);
}

static void *test_realloc(void *p, size_t n)
{
	return fail_alloc ? NULL : realloc(p, n);
}

struct fixture {
	struct event_base *base;
	struct sio *io;
	int peer;
	size_t got; /* bytes the read callback took */
	unsigned char seen[1 << 20];
	short event; /* the last event callback's flags */
};

static void on_read(struct sio *io, void *arg)
{
	struct fixture *f = arg;
	struct evbuffer *in = sio_input(io);
	size_t n = evbuffer_get_length(in);

	ck_assert_uint_le(f->got + n, sizeof(f->seen));
	evbuffer_remove(in, f->seen + f->got, n);
	f->got += n;
}

static void on_event(struct sio *io, short what, void *arg)
{
	(void)io;
	((struct fixture *)arg)->event = what;
}

static struct fixture *setup(void)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int sv[2];

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	f->base = event_base_new();
	ck_assert_int_eq(event_base_priority_init(f->base, 3), 0);
	ck_assert_int_eq(sio_init(f->base), 0);
	f->io = sio_new(f->base, sv[0], NULL);
	ck_assert_ptr_nonnull(f->io);
	f->peer = sv[1];
	sio_setcb(f->io, on_read, NULL, on_event, f);
	sio_enable(f->io, EV_READ | EV_WRITE);
	return f;
}

static void teardown(struct fixture *f)
{
	sio_free(f->io);
	close(f->peer);
	event_base_free(f->base);
	free(f);
}

static void loop_once(struct fixture *f)
{
	event_base_loop(f->base, EVLOOP_NONBLOCK);
}

START_TEST(idle_holds_nothing)
{
	struct fixture *f = setup();

	ck_assert_uint_eq(sio_holds(f->io), 0);
	loop_once(f);
	ck_assert_uint_eq(sio_holds(f->io), 0);
	teardown(f);
}
END_TEST

START_TEST(input_made_when_data_comes_and_trimmed_when_empty)
{
	struct fixture *f = setup();

	ck_assert_int_eq(write(f->peer, "hello", 5), 5);
	loop_once(f);
	ck_assert_uint_eq(f->got, 5);
	ck_assert_uint_eq(sio_holds(f->io) & SIO_HOLDS_INPUT, SIO_HOLDS_INPUT);
	sio_trim(f->io);
	ck_assert_uint_eq(sio_holds(f->io), 0);
	ck_assert_int_eq(write(f->peer, " world", 6), 6);
	loop_once(f);
	ck_assert_uint_eq(f->got, 11);
	ck_assert_mem_eq(f->seen, "hello world", 11);
	teardown(f);
}
END_TEST

START_TEST(partial_input_is_kept_by_trim)
{
	struct fixture *f = setup();
	char buf[8];

	sio_setcb(f->io, NULL, NULL, on_event, f); /* nobody takes the input */
	ck_assert_int_eq(write(f->peer, "keep", 4), 4);
	loop_once(f);
	sio_trim(f->io);
	ck_assert_uint_eq(evbuffer_get_length(sio_input(f->io)), 4);
	evbuffer_remove(sio_input(f->io), buf, 4);
	ck_assert_mem_eq(buf, "keep", 4);
	teardown(f);
}
END_TEST

START_TEST(output_written_empty_is_freed_at_the_end_of_the_pass)
{
	struct fixture *f = setup();
	char buf[16];

	evbuffer_add(sio_output(f->io), "abc", 3);
	ck_assert_uint_eq(sio_holds(f->io) & SIO_HOLDS_OUTPUT, SIO_HOLDS_OUTPUT);
	loop_once(f);
	ck_assert_int_eq(read(f->peer, buf, sizeof(buf)), 3);
	ck_assert_mem_eq(buf, "abc", 3);
	ck_assert_uint_eq(sio_holds(f->io), 0);
	teardown(f);
}
END_TEST

START_TEST(blocked_output_waits_on_a_write_event_then_lets_it_go)
{
	struct fixture *f = setup();
	size_t total = 1 << 20, sent = 0, rcvd = 0;
	unsigned char *data = malloc(total), *back = malloc(total);

	for (size_t i = 0; i < total; i++)
		data[i] = (unsigned char)(i * 7 + i / 251);
	fcntl(f->peer, F_SETFL, O_NONBLOCK);
	evbuffer_add(sio_output(f->io), data, total);
	loop_once(f);
	/* more than the socket takes: the rest waits on a write event */
	ck_assert_uint_eq(sio_holds(f->io) & (SIO_HOLDS_OUTPUT | SIO_HOLDS_WRITE_EVENT),
			  SIO_HOLDS_OUTPUT | SIO_HOLDS_WRITE_EVENT);
	while (rcvd < total) {
		ssize_t n = read(f->peer, back + rcvd, total - rcvd);
		if (n > 0)
			rcvd += (size_t)n;
		loop_once(f);
		ck_assert_int_lt(sent++, 100000);
	}
	ck_assert_mem_eq(back, data, total);
	loop_once(f);
	sio_trim(f->io);
	ck_assert_uint_eq(sio_holds(f->io), 0);
	free(data);
	free(back);
	teardown(f);
}
END_TEST

START_TEST(deadline_fires_and_its_timer_goes)
{
	struct fixture *f = setup();
	struct timeval tv = { 0, 20000 };

	sio_set_timeouts(f->io, &tv, NULL);
	ck_assert_uint_eq(sio_holds(f->io), SIO_HOLDS_TIMER);
	sio_set_timeouts(f->io, NULL, NULL);
	ck_assert_uint_eq(sio_holds(f->io), 0);
	sio_set_timeouts(f->io, &tv, NULL);
	event_base_loop(f->base, EVLOOP_ONCE);
	ck_assert_int_eq(f->event, SIO_READING | SIO_TIMEOUT);
	teardown(f);
}
END_TEST

START_TEST(no_memory_for_a_buffer_drops_the_output_and_fails_the_connection)
{
	struct fixture *f = setup();
	struct evbuffer *src = evbuffer_new(), *src2 = evbuffer_new();
	char buf[16];

	evbuffer_add(src, "secret", 6);
	evbuffer_add(src2, "more", 4);
	fail_alloc = 1;
	struct evbuffer *out = sio_output(f->io);
	/* whole chains move without allocating: taken, and dropped at once */
	ck_assert_int_eq(evbuffer_remove_buffer(src, out, 6), 6);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	ck_assert_uint_eq(evbuffer_get_length(src), 0);
	sio_write_buffer(f->io, src2, 4);
	ck_assert_uint_eq(evbuffer_get_length(src2), 0); /* not left for anyone else */
	fail_alloc = 0;
	loop_once(f);
	ck_assert_int_eq(f->event, SIO_ERROR);
	fcntl(f->peer, F_SETFL, O_NONBLOCK);
	ck_assert_int_lt(read(f->peer, buf, sizeof(buf)), 0); /* nothing was written */
	/* the next connection gets a buffer of its own, empty */
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct sio *next = sio_new(f->base, sv[0], NULL);
	ck_assert_ptr_nonnull(next);
	ck_assert_uint_eq(evbuffer_get_length(sio_output(next)), 0);
	ck_assert_ptr_ne(sio_output(next), out);
	sio_free(next);
	close(sv[1]);
	evbuffer_free(src);
	evbuffer_free(src2);
	teardown(f);
}
END_TEST

static Suite *sockio_suite(void)
{
	Suite *s = suite_create("sockio");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, idle_holds_nothing);
	tcase_add_test(tc, input_made_when_data_comes_and_trimmed_when_empty);
	tcase_add_test(tc, partial_input_is_kept_by_trim);
	tcase_add_test(tc, output_written_empty_is_freed_at_the_end_of_the_pass);
	tcase_add_test(tc, blocked_output_waits_on_a_write_event_then_lets_it_go);
	tcase_add_test(tc, deadline_fires_and_its_timer_goes);
	suite_add_tcase(s, tc);
	/* its own case: run first in a process of its own, with no spare buffers yet */
	tc = tcase_create("no_memory");
	tcase_add_test(tc, no_memory_for_a_buffer_drops_the_output_and_fails_the_connection);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	event_set_mem_functions(test_malloc, test_realloc, free);
	sr = srunner_create(sockio_suite());

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
