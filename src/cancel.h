/* Forwarding a client's CancelRequest to the upstream session running its query. */
#ifndef CB_CANCEL_H
#define CB_CANCEL_H

#include <stdint.h>
#include <sys/socket.h>

/* Connects to sa (the upstream address of the session), TLS per sslmode with host for
 * SNI and verification, and sends CancelRequest(pid, key). Fire and forget. */
void cancel_forward(const struct sockaddr *sa, socklen_t salen, const char *host, int sslmode,
		    const char *ca_file, uint32_t pid, uint32_t key);

#endif
