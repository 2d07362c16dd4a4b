/* Buffered socket I/O for clients and servers, plain or TLS behind one ops table. It
 * replaces libevent's bufferevents on the data path: one recv (or one read of a TLS
 * record batch, OpenSSL read-ahead on) per readable event and no FIONREAD probe, output
 * written at once when the socket takes it (an EV_WRITE event only when it does not),
 * and the read event left alone between messages, so a transaction costs no epoll_ctl. */
#ifndef CB_SOCKIO_H
#define CB_SOCKIO_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

struct event_base;
struct evbuffer;
struct sio;

/* Event flags, as libevent's BEV_EVENT_* (reading/writing tell which side). */
#define SIO_READING 0x01
#define SIO_WRITING 0x02
#define SIO_EOF 0x10
#define SIO_ERROR 0x20
#define SIO_TIMEOUT 0x40
#define SIO_CONNECTED 0x80

typedef void (*sio_data_cb)(struct sio *io, void *arg);
typedef void (*sio_event_cb)(struct sio *io, short what, void *arg);

/* A connected socket (plain); ssl: a client-side TLS session to run the handshake on
 * first (SIO_CONNECTED when done). The sio owns fd and ssl. NULL: out of memory. */
struct sio *sio_new(struct event_base *base, int fd, SSL *ssl);
void sio_free(struct sio *io);
void sio_setcb(struct sio *io, sio_data_cb read_cb, sio_data_cb write_cb, sio_event_cb event_cb,
	       void *arg);
/* The buffers, made when first asked for. A pointer to one is good until the event
 * loop goes on: the end of a loop pass frees those the pass wrote empty. */
struct evbuffer *sio_input(struct sio *io);
struct evbuffer *sio_output(struct sio *io);
/* Frees the buffers that are empty; from a timer of the owner's, with no pointer to
 * them kept (an idle connection then holds none). */
void sio_trim(struct sio *io);
/* EV_READ / EV_WRITE: reading on or off; writing off keeps output queued. */
void sio_enable(struct sio *io, short what);
void sio_disable(struct sio *io, short what);
/* One deadline for reading and one for writing (NULL: none), from now. */
void sio_set_timeouts(struct sio *io, const struct timeval *rd, const struct timeval *wr);
int sio_fd(const struct sio *io);
SSL *sio_ssl(const struct sio *io);
/* The OpenSSL error code of the last failure (as bufferevent_get_openssl_error). */
unsigned long sio_ssl_error(struct sio *io);
/* Writes what is queued now, as far as the socket takes it; the rest goes when it can.
 * Called by the data path after adding to the output. */
void sio_flush(struct sio *io);
/* The batch writer; the base must have three priorities. -1: no memory. */
int sio_init(struct event_base *base);
/* Moves n bytes of src to the output, written at the end of this event loop pass (the
 * data path's send). */
void sio_write_buffer(struct sio *io, struct evbuffer *src, size_t n);
size_t sio_struct_size(void);
/* What it holds besides itself, SIO_HOLDS_* bits (tests, memory accounting). */
#define SIO_HOLDS_INPUT 0x1
#define SIO_HOLDS_OUTPUT 0x2
#define SIO_HOLDS_WRITE_EVENT 0x4
#define SIO_HOLDS_TIMER 0x8
unsigned sio_holds(const struct sio *io);

#endif
