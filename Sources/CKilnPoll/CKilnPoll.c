#define _GNU_SOURCE
#include "CKilnPoll.h"

#ifdef __linux__
int kiln_accept_nonblocking(int listener, struct sockaddr *address, socklen_t *length) {
    return accept4(listener, address, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
#endif
