// TCP helpers for the bootstrap: every socket is non-blocking and close-on-exec, and every wait is
// bounded by an absolute deadline (llNowMs() clock), so no rendezvous step can hang.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "llep.h"

// An IPv4 or IPv6 address; small enough to travel inside a unique id (sockaddr_storage is not).
union llSocketAddr {
  sockaddr sa;
  sockaddr_in sin;
  sockaddr_in6 sin6;
};

// Enough for "[ipv6%scope]:port".
#define LL_SOCKET_ADDR_STRLEN 80

// A socket descriptor and the name of its other end, used in every message about it
// ("rank 3 at 10.0.0.2:41000"). Closes the descriptor when destroyed; movable, not copyable.
struct llSocket {
  int fd = -1;
  char peer[128] = "";

  llSocket() = default;
  llSocket(llSocket&& other) noexcept;
  llSocket& operator=(llSocket&& other) noexcept;
  llSocket(const llSocket&) = delete;
  llSocket& operator=(const llSocket&) = delete;
  ~llSocket() { close(); }
  void close();
};

// Monotonic milliseconds, the clock of every deadline.
int64_t llNowMs();

socklen_t llSocketAddrLen(const llSocketAddr& addr);
int llSocketAddrPort(const llSocketAddr& addr);
// "1.2.3.4:5" or "[::1]:5"; returns buf.
const char* llSocketAddrToString(const llSocketAddr& addr, char* buf, size_t len);

// Resolves host (name or numeric, IPv4 or IPv6) and sets the port.
llResult_t llSocketAddrResolve(const char* host, int port, llSocketAddr* out);

// The address this host listens on (port 0): the interface LLEP_SOCKET_IFNAME names (exactly) if set,
// else the first non-loopback interface that is up with an IPv4 address, else 127.0.0.1.
llResult_t llSocketFindIfAddr(llSocketAddr* out);

// Listens on addr (port 0: an ephemeral port) with SO_REUSEADDR; a port still in use is retried until
// deadlineMs, so that a communicator can follow another on the same port. bound gets the real address.
llResult_t llSocketListen(const llSocketAddr& addr, int64_t deadlineMs, llSocket* out, llSocketAddr* bound);

// Accepts one pending connection; out->fd stays -1 when none is pending.
llResult_t llSocketAccept(const llSocket& listener, llSocket* out);

// Connects to addr, retrying refused or unreachable attempts every LLEP_CONNECT_RETRY_MS until
// deadlineMs (the listener may not be up yet): llTimeout then. peerName names addr in messages.
llResult_t llSocketConnect(const llSocketAddr& addr, const char* peerName, int64_t deadlineMs, llSocket* out);

// Exactly n bytes, or an error: llTimeout past deadlineMs, llRemoteError if the peer closed or reset.
llResult_t llSocketSend(llSocket& sock, const void* buf, size_t n, int64_t deadlineMs);
llResult_t llSocketRecv(llSocket& sock, void* buf, size_t n, int64_t deadlineMs);
