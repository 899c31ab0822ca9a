// Linux event-loop system calls the Glibc module does not export (epoll, eventfd,
// accept4, thread names). Empty elsewhere: kqueue comes with Darwin.
#ifndef CKILNPOLL_H
#define CKILNPOLL_H

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC: the accepted socket is ready for the loop.
int kiln_accept_nonblocking(int listener, struct sockaddr *address, socklen_t *length);

/// pthread_setname_np for the calling thread (at most 15 characters are kept).
void kiln_name_thread(const char *name);
#endif

#endif
