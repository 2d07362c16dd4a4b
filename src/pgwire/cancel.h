/* Forwarding a client's CancelRequest to the upstream session running its query. */
#ifndef CB_CANCEL_H
#define CB_CANCEL_H

#include <stdint.h>
#include <sys/socket.h>

/* Connects to sa (the upstream address of the session), TLS per sslmode with host for
 * SNI and verification, and sends CancelRequest(pid, key). done(id) runs once the
 * upstream has closed the connection (it has processed the request) or it gave up. */
void cancel_forward(const struct sockaddr *sa, socklen_t salen, const char *host, int sslmode,
		    const char *ca_file, uint32_t pid, uint32_t key, void (*done)(uint64_t id),
		    uint64_t id);

#endif
