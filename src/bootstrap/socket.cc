#include "bootstrap/socket.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <thread>

#include "checks.h"
#include "param.h"

llSocket::llSocket(llSocket&& other) noexcept : fd(other.fd) {
  memcpy(peer, other.peer, sizeof(peer));
  other.fd = -1;
}

llSocket& llSocket::operator=(llSocket&& other) noexcept {
  if (this != &other) {
    close();
    fd = other.fd;
    memcpy(peer, other.peer, sizeof(peer));
    other.fd = -1;
  }
  return *this;
}

// Not retried on EINTR: Linux releases the descriptor even then, and a retry could close a reused one.
void llSocket::close() {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

int64_t llNowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

socklen_t llSocketAddrLen(const llSocketAddr& addr) {
  return addr.sa.sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

int llSocketAddrPort(const llSocketAddr& addr) {
  return ntohs(addr.sa.sa_family == AF_INET6 ? addr.sin6.sin6_port : addr.sin.sin_port);
}

const char* llSocketAddrToString(const llSocketAddr& addr, char* buf, size_t len) {
  char host[NI_MAXHOST];
  if (getnameinfo(&addr.sa, llSocketAddrLen(addr), host, sizeof(host), nullptr, 0, NI_NUMERICHOST) != 0)
    snprintf(host, sizeof(host), "<family %d>", (int)addr.sa.sa_family);
  const char* fmt = addr.sa.sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d";
  snprintf(buf, len, fmt, host, llSocketAddrPort(addr));
  return buf;
}

static void setPort(llSocketAddr* addr, int port) {
  if (addr->sa.sa_family == AF_INET6)
    addr->sin6.sin6_port = htons(port);
  else
    addr->sin.sin_port = htons(port);
}

llResult_t llSocketAddrResolve(const char* host, int port, llSocketAddr* out) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host, nullptr, &hints, &res);
  LL_REQUIRE(rc == 0, llInvalidArgument, "cannot resolve host '%s': %s", host, gai_strerror(rc));
  const addrinfo* ai = res;
  while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ai = ai->ai_next;
  if (ai) {
    *out = {};
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    setPort(out, port);
  }
  freeaddrinfo(res);
  LL_REQUIRE(ai != nullptr, llInvalidArgument, "host '%s' has no IPv4 or IPv6 address", host);
  return llSuccess;
}

// An interface address that matches `ifname` (exactly), or any non-loopback one when ifname is empty.
static bool ifMatches(const ifaddrs* ifa, const char* ifname, int family) {
  if (ifa->ifa_addr == nullptr || ifa->ifa_addr->sa_family != family || !(ifa->ifa_flags & IFF_UP))
    return false;
  if (*ifname) return strcmp(ifa->ifa_name, ifname) == 0;
  return !(ifa->ifa_flags & IFF_LOOPBACK);
}

static bool findIf(const ifaddrs* list, const char* ifname, int family, llSocketAddr* out) {
  for (const ifaddrs* ifa = list; ifa; ifa = ifa->ifa_next) {
    if (!ifMatches(ifa, ifname, family)) continue;
    *out = {};
    memcpy(out, ifa->ifa_addr, family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
    return true;
  }
  return false;
}

llResult_t llSocketFindIfAddr(llSocketAddr* out) {
  const char* ifname = llParamSocketIfname();
  ifaddrs* list = nullptr;
  SYSCHECK(getifaddrs(&list), "getifaddrs");
  // A named interface may be IPv6-only; without a name, IPv4 is what other hosts most likely reach.
  bool found = findIf(list, ifname, AF_INET, out) || (*ifname && findIf(list, ifname, AF_INET6, out));
  freeifaddrs(list);
  LL_REQUIRE(found || !*ifname, llInvalidUsage,
             "LLEP_SOCKET_IFNAME=%s: no interface of that name is up with an IPv4 or IPv6 address", ifname);
  if (!found) {
    *out = {};
    out->sin.sin_family = AF_INET;
    out->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  char str[LL_SOCKET_ADDR_STRLEN];
  LL_INFO(LL_BOOTSTRAP, "bootstrap address %s (%s)", llSocketAddrToString(*out, str, sizeof(str)),
          *ifname ? ifname
          : found ? "first non-loopback interface"
                  : "no interface up, loopback");
  return llSuccess;
}

static void pauseMs(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

static int64_t retryPauseMs(int64_t deadlineMs) {
  return std::max<int64_t>(
      0, std::min<int64_t>(std::max<int64_t>(1, llParamConnectRetryMs()), deadlineMs - llNowMs()));
}

static llResult_t newSocket(int family, llSocket* s) {
  SYSCHECKVAL(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket", s->fd);
  return llSuccess;
}

// Setup messages are small and answered at once: Nagle's delay would only add latency.
static llResult_t setNoDelay(const llSocket& s) {
  int one = 1;
  SYSCHECK(setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), "setsockopt(TCP_NODELAY)");
  return llSuccess;
}

llResult_t llSocketListen(const llSocketAddr& addr, int64_t deadlineMs, llSocket* out, llSocketAddr* bound) {
  char str[LL_SOCKET_ADDR_STRLEN];
  llSocketAddrToString(addr, str, sizeof(str));
  llSocket s;
  LLCHECK(newSocket(addr.sa.sa_family, &s));
  int one = 1;
  SYSCHECK(setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), "setsockopt(SO_REUSEADDR)");
  while (bind(s.fd, &addr.sa, llSocketAddrLen(addr)) != 0) {
    if (errno == EINTR) continue;
    if (errno != EADDRINUSE || llNowMs() >= deadlineMs) {
      LL_WARN("cannot listen on %s: bind: %s", str, strerror(errno));
      return llSystemError;
    }
    pauseMs(retryPauseMs(deadlineMs));
  }
  SYSCHECK(listen(s.fd, SOMAXCONN), "listen");
  socklen_t len = sizeof(*bound);
  SYSCHECK(getsockname(s.fd, &bound->sa, &len), "getsockname");
  snprintf(s.peer, sizeof(s.peer), "listener at %s", llSocketAddrToString(*bound, str, sizeof(str)));
  *out = std::move(s);
  return llSuccess;
}

llResult_t llSocketAccept(const llSocket& listener, llSocket* out) {
  llSocketAddr peer = {};
  socklen_t len = sizeof(peer);
  int fd;
  do {
    fd = accept4(listener.fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
  if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return llSuccess;
  if (fd < 0) {
    LL_WARN("accept on %s failed: %s", listener.peer, strerror(errno));
    return llSystemError;
  }
  llSocket s;
  s.fd = fd;
  llSocketAddrToString(peer, s.peer, sizeof(s.peer));
  LLCHECK(setNoDelay(s));
  *out = std::move(s);
  return llSuccess;
}

// Linux may connect a socket to itself when the target port is a free ephemeral one (TCP simultaneous
// open); that is nobody listening, so it counts as refused.
static bool connectedToSelf(const llSocket& s) {
  llSocketAddr local = {}, remote = {};
  socklen_t llen = sizeof(local), rlen = sizeof(remote);
  if (getsockname(s.fd, &local.sa, &llen) != 0 || getpeername(s.fd, &remote.sa, &rlen) != 0) return false;
  return llen == rlen && memcmp(&local, &remote, llen) == 0;
}

// One attempt; *err gets 0 when connected, else the errno of the failed attempt.
static llResult_t connectOnce(const llSocketAddr& addr, int64_t deadlineMs, llSocket* s, int* err) {
  LLCHECK(newSocket(addr.sa.sa_family, s));
  int rc;
  do {
    rc = connect(s->fd, &addr.sa, llSocketAddrLen(addr));
  } while (rc != 0 && errno == EINTR);
  *err = rc == 0 ? 0 : errno;
  if (*err == EINPROGRESS) {
    pollfd p = {s->fd, POLLOUT, 0};
    int64_t left = std::max<int64_t>(0, deadlineMs - llNowMs());
    SYSCHECKVAL(poll(&p, 1, (int)std::min<int64_t>(left, INT_MAX)), "poll", rc);
    socklen_t len = sizeof(*err);
    if (rc == 0)
      *err = ETIMEDOUT;
    else
      SYSCHECK(getsockopt(s->fd, SOL_SOCKET, SO_ERROR, err, &len), "getsockopt(SO_ERROR)");
  }
  if (*err == 0 && connectedToSelf(*s)) *err = ECONNREFUSED;
  if (*err != 0) s->close();
  return llSuccess;
}

// Failures that mean "not listening yet" or a transient network state, worth another attempt.
static bool retryable(int err) {
  return err == ECONNREFUSED || err == ETIMEDOUT || err == ENETUNREACH || err == EHOSTUNREACH ||
         err == ECONNRESET || err == EAGAIN || err == ECONNABORTED;
}

llResult_t llSocketConnect(const llSocketAddr& addr, const char* peerName, int64_t deadlineMs,
                           llSocket* out) {
  char str[LL_SOCKET_ADDR_STRLEN];
  llSocketAddrToString(addr, str, sizeof(str));
  int64_t start = llNowMs();
  for (int attempt = 1;; attempt++) {
    llSocket s;
    int err;
    LLCHECK(connectOnce(addr, deadlineMs, &s, &err));
    if (err == 0) {
      LLCHECK(setNoDelay(s));
      snprintf(s.peer, sizeof(s.peer), "%s at %s", peerName, str);
      *out = std::move(s);
      return llSuccess;
    }
    LL_REQUIRE(retryable(err), llSystemError, "cannot connect to %s at %s: %s", peerName, str, strerror(err));
    if (llNowMs() >= deadlineMs) {
      LL_WARN("could not connect to %s at %s within %lld ms (%d attempts, last: %s)", peerName, str,
              (long long)(llNowMs() - start), attempt, strerror(err));
      return llTimeout;
    }
    pauseMs(retryPauseMs(deadlineMs));
  }
}

// Waits until the socket is ready for `events` or deadlineMs passes.
static llResult_t waitReady(const llSocket& s, short events, int64_t deadlineMs, size_t done, size_t n) {
  for (;;) {
    int64_t left = deadlineMs - llNowMs();
    if (left <= 0) {
      LL_WARN("timed out %s %s (%zu of %zu bytes)", events == POLLIN ? "receiving from" : "sending to",
              s.peer, done, n);
      return llTimeout;
    }
    pollfd p = {s.fd, events, 0};
    int rc;
    SYSCHECKVAL(poll(&p, 1, (int)std::min<int64_t>(left, INT_MAX)), "poll", rc);
    if (rc > 0) return llSuccess;
  }
}

// The errno of a failed send/recv as a result: a vanished peer is the peer's failure, not ours.
static llResult_t transferError(const llSocket& s, bool sending, size_t done, size_t n) {
  if (errno == ECONNRESET || errno == EPIPE) {
    LL_WARN("connection to %s was reset while %s (%zu of %zu bytes)", s.peer,
            sending ? "sending" : "receiving", done, n);
    return llRemoteError;
  }
  LL_WARN("%s %s failed: %s (%zu of %zu bytes)", sending ? "sending to" : "receiving from", s.peer,
          strerror(errno), done, n);
  return llSystemError;
}

llResult_t llSocketSend(llSocket& s, const void* buf, size_t n, int64_t deadlineMs) {
  const char* p = static_cast<const char*>(buf);
  for (size_t done = 0; done < n;) {
    ssize_t r = send(s.fd, p + done, n - done, MSG_NOSIGNAL);
    if (r >= 0)
      done += r;
    else if (errno == EAGAIN || errno == EWOULDBLOCK)
      LLCHECK(waitReady(s, POLLOUT, deadlineMs, done, n));
    else if (errno != EINTR)
      return transferError(s, true, done, n);
  }
  return llSuccess;
}

llResult_t llSocketRecv(llSocket& s, void* buf, size_t n, int64_t deadlineMs) {
  char* p = static_cast<char*>(buf);
  for (size_t done = 0; done < n;) {
    ssize_t r = recv(s.fd, p + done, n - done, 0);
    if (r > 0) {
      done += r;
    } else if (r == 0) {
      LL_WARN("%s closed the connection (%zu of %zu bytes received)", s.peer, done, n);
      return llRemoteError;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      LLCHECK(waitReady(s, POLLIN, deadlineMs, done, n));
    } else if (errno != EINTR) {
      return transferError(s, false, done, n);
    }
  }
  return llSuccess;
}
