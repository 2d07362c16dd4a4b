/* Unit tests for upconn.c against a peer on 127.0.0.1 run by the same event loop: a plain
 * connection comes connected with nothing sent; an SSLRequest goes first when TLS is
 * wanted, and each answer short of 'S' is its own failure ('N', more than one byte, a
 * close); a port nobody listens on fails to connect with the system's reason, by a name
 * resolved or by an address given, and so does a failure inside the resolver's own call;
 * done never runs inside upconn_start, and not at all
 * after upconn_abort. TLS itself is the integration suite's (it needs certificates). */
#include <arpa/inet.h>
#include <check.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/cfg.h"
#include "core/sockio.h"
#include "core/upconn.h"

/* What the peer does once it has read the 8 bytes of an SSLRequest (or at once). */
enum peer_does { PEER_NOTHING, PEER_ANSWER, PEER_CLOSE };

struct fixture {
	struct event_base *base;
	struct evdns_base *dns;
	int lfd, conn;
	struct event *accept_ev, *read_ev;
	enum peer_does does;
	const char *answer;
	unsigned char got[64];
	size_t ngot;
	/* what done was given */
	int calls;
	struct sio *io;
	enum upconn_failure why;
	char detail[256];
};

static void peer_read(evutil_socket_t fd, short what, void *arg)
{
	struct fixture *f = arg;
	ssize_t n = recv(fd, f->got + f->ngot, sizeof(f->got) - f->ngot, 0);

	(void)what;
	if (n > 0)
		f->ngot += (size_t)n;
	if (f->ngot < 8)
		return;
	if (f->does == PEER_ANSWER)
		ck_assert_int_eq(send(fd, f->answer, strlen(f->answer), MSG_NOSIGNAL),
				 (ssize_t)strlen(f->answer));
	else if (f->does == PEER_CLOSE) {
		event_del(f->read_ev);
		close(f->conn);
		f->conn = -1;
	}
}

static void peer_accept(evutil_socket_t fd, short what, void *arg)
{
	struct fixture *f = arg;

	(void)what;
	f->conn = accept(fd, NULL, NULL);
	ck_assert_int_ge(f->conn, 0);
	f->read_ev = event_new(f->base, f->conn, EV_READ | EV_PERSIST, peer_read, f);
	event_add(f->read_ev, NULL);
}

static void on_done(struct sio *io, enum upconn_failure why, const char *detail, void *arg)
{
	struct fixture *f = arg;

	f->calls++;
	f->io = io;
	f->why = why;
	snprintf(f->detail, sizeof(f->detail), "%s", detail);
	event_base_loopbreak(f->base);
}

static int listening_port(struct fixture *f)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(f->lfd, 0);
	ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(f->lfd, 4), 0);
	ck_assert_int_eq(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
	f->accept_ev = event_new(f->base, f->lfd, EV_READ | EV_PERSIST, peer_accept, f);
	event_add(f->accept_ev, NULL);
	return ntohs(a.sin_port);
}

/* A port on 127.0.0.1 nobody listens on (bound, then closed). */
static int closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static struct fixture *setup(void)
{
	struct fixture *f = calloc(1, sizeof(*f));

	ck_assert_ptr_nonnull(f);
	f->base = event_base_new();
	ck_assert_int_eq(event_base_priority_init(f->base, 3), 0);
	ck_assert_int_eq(sio_init(f->base), 0);
	f->dns = evdns_base_new(f->base, 0); /* no name servers: numeric hosts only */
	ck_assert_ptr_nonnull(f->dns);
	f->lfd = f->conn = -1;
	return f;
}

static void run(struct fixture *f)
{
	struct timeval tv = { 5, 0 };

	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
	ck_assert_int_eq(f->calls, 1);
}

static void teardown(struct fixture *f)
{
	if (f->io)
		sio_free(f->io);
	if (f->read_ev)
		event_free(f->read_ev);
	if (f->accept_ev)
		event_free(f->accept_ev);
	if (f->conn >= 0)
		close(f->conn);
	if (f->lfd >= 0)
		close(f->lfd);
	evdns_base_free(f->dns, 0);
	event_base_free(f->base);
	free(f);
}

static struct upconn *start(struct fixture *f, int port, int sslmode)
{
	struct upconn_opts o = { .host = "127.0.0.1",
				 .port = port,
				 .tls = sslmode != SSLMODE_DISABLE,
				 .sslmode = sslmode,
				 .ssl_request = true };
	struct upconn *uc = upconn_start(f->base, f->dns, &o, on_done, f);

	ck_assert_ptr_nonnull(uc);
	ck_assert_int_eq(f->calls, 0); /* never from inside upconn_start */
	return uc;
}

START_TEST(plain_comes_connected_with_nothing_sent)
{
	struct fixture *f = setup();

	f->does = PEER_NOTHING;
	start(f, listening_port(f), SSLMODE_DISABLE);
	run(f);
	ck_assert_int_eq(f->why, UC_OK);
	ck_assert_ptr_nonnull(f->io);
	ck_assert_ptr_null(sio_ssl(f->io));
	ck_assert_uint_eq(f->ngot, 0);
	/* and it carries what is written on it */
	evbuffer_add(sio_output(f->io), "12345678", 8);
	sio_flush(f->io);
	struct timeval tv = { 0, 200000 };
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
	ck_assert_uint_eq(f->ngot, 8);
	ck_assert_int_eq(memcmp(f->got, "12345678", 8), 0);
	teardown(f);
}
END_TEST

static const unsigned char ssl_request[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };

START_TEST(ssl_request_refused)
{
	struct fixture *f = setup();

	f->does = PEER_ANSWER;
	f->answer = "N";
	start(f, listening_port(f), SSLMODE_REQUIRE);
	run(f);
	ck_assert_int_eq(f->why, UC_SSL_REFUSED);
	ck_assert_ptr_null(f->io);
	ck_assert_uint_eq(f->ngot, 8);
	ck_assert_int_eq(memcmp(f->got, ssl_request, 8), 0);
	teardown(f);
}
END_TEST

START_TEST(ssl_answer_with_more_than_one_byte_is_invalid)
{
	struct fixture *f = setup();

	f->does = PEER_ANSWER;
	f->answer = "SX"; /* plaintext after the 'S' (CVE-2021-23222) */
	start(f, listening_port(f), SSLMODE_VERIFY_FULL);
	run(f);
	ck_assert_int_eq(f->why, UC_SSL_INVALID);
	ck_assert_ptr_null(f->io);
	teardown(f);
}
END_TEST

START_TEST(closed_after_ssl_request)
{
	struct fixture *f = setup();

	f->does = PEER_CLOSE;
	start(f, listening_port(f), SSLMODE_REQUIRE);
	run(f);
	ck_assert_int_eq(f->why, UC_SSL_CLOSED);
	ck_assert_str_eq(f->detail, "");
	teardown(f);
}
END_TEST

START_TEST(refused_by_name_and_by_address)
{
	struct fixture *f = setup();
	int port = closed_port();

	start(f, port, SSLMODE_DISABLE);
	run(f);
	ck_assert_int_eq(f->why, UC_CONNECT);
	ck_assert_str_eq(f->detail, strerror(ECONNREFUSED));

	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct upconn_opts o = { .host = "db.example",
				 .addr = (struct sockaddr *)&a,
				 .addrlen = sizeof(a),
				 .sslmode = SSLMODE_DISABLE };
	f->calls = 0;
	ck_assert_ptr_nonnull(upconn_start(f->base, NULL, &o, on_done, f));
	run(f);
	ck_assert_int_eq(f->why, UC_CONNECT);
	teardown(f);
}
END_TEST

/* A numeric host is resolved inside evdns_getaddrinfo, and a broadcast address fails at
 * connect() itself: the whole failure happens within the resolver's call, which must not
 * find the upconn freed when it returns (ASan, valgrind). */
START_TEST(failure_inside_the_resolver_call)
{
	struct fixture *f = setup();
	struct upconn_opts o = { .host = "255.255.255.255", .port = 5432 };

	ck_assert_ptr_nonnull(upconn_start(f->base, f->dns, &o, on_done, f));
	run(f);
	ck_assert_int_eq(f->why, UC_CONNECT);
	ck_assert_ptr_null(f->io);
	teardown(f);
}
END_TEST

START_TEST(aborted_is_never_done)
{
	struct fixture *f = setup();
	struct timeval tv = { 0, 200000 };
	int port = listening_port(f);

	/* before it started */
	f->does = PEER_ANSWER;
	f->answer = "N";
	struct upconn *uc = start(f, port, SSLMODE_REQUIRE);
	upconn_abort(uc);
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
	ck_assert_int_eq(f->calls, 0);
	ck_assert_int_eq(f->conn, -1);
	/* midway: connected, the SSLRequest sent, its answer not come */
	f->does = PEER_NOTHING;
	uc = start(f, port, SSLMODE_REQUIRE);
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
	ck_assert_uint_eq(f->ngot, 8);
	ck_assert_int_ge(upconn_fd(uc), 0);
	upconn_abort(uc);
	/* too late: nobody reads it (the socket may be closed already) */
	(void)send(f->conn, "N", 1, MSG_NOSIGNAL);
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
	ck_assert_int_eq(f->calls, 0);
	teardown(f);
}
END_TEST

static Suite *upconn_suite(void)
{
	Suite *s = suite_create("upconn");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, plain_comes_connected_with_nothing_sent);
	tcase_add_test(tc, ssl_request_refused);
	tcase_add_test(tc, ssl_answer_with_more_than_one_byte_is_invalid);
	tcase_add_test(tc, closed_after_ssl_request);
	tcase_add_test(tc, refused_by_name_and_by_address);
	tcase_add_test(tc, failure_inside_the_resolver_call);
	tcase_add_test(tc, aborted_is_never_done);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(upconn_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
