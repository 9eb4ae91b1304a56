#include "transport/ibgda/model/socket_wire.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace llnic {

namespace {

// ---- framing ---------------------------------------------------------------------------------------
// Every message is a Header and `length` bytes of body. Both ends run on one host, so fields travel
// in host order.

enum MsgType : uint32_t { kWriteRequest = 1, kAtomicRequest = 2, kReplyMsg = 3 };

struct Header {
  uint32_t type;
  uint32_t length;
  uint64_t seq;  // a reply repeats its request's; anything else means the stream is out of step
};

struct WriteFields {  // followed by the payload
  uint32_t dstQpn, rkey;
  uint64_t raddr;
};

struct AtomicFields {
  uint32_t dstQpn, kind, rkey, pad;
  uint64_t raddr, add, boundary;
};

struct ReplyFields {  // the answer to both requests; `old` is 0 for a write
  uint32_t status, pad;
  uint64_t old;
};

static_assert(sizeof(Header) == 16 && sizeof(WriteFields) == 16 && sizeof(AtomicFields) == 40 &&
                  sizeof(ReplyFields) == 16,
              "framing structs must have no implicit padding");

// The largest RDMA write accepted: 1 GiB, the max_msg_sz ConnectX ports report.
constexpr uint32_t kMaxPayload = 1u << 30;
// How long a connect is retried while the peer's socket is missing or refusing: the peer may be
// starting. Each pause is short so a peer that appears is found quickly.
constexpr int kConnectPauseMs = 5;

// ---- bounded socket I/O ------------------------------------------------------------------------------

// Waits until `fd` is ready for `events`, at most `timeoutMs`. Ready includes hang-up and error, which
// the following send or recv reports.
bool waitFor(int fd, short events, int timeoutMs) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point end = Clock::now() + std::chrono::milliseconds(timeoutMs);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, left > 0 ? (int)left : 0);
    if (n > 0) return true;
    if (n == 0 || errno != EINTR) return false;
  }
}

// Sends all `len` bytes; a wait without progress is bounded by `timeoutMs`. MSG_NOSIGNAL: a peer
// that closed gives EPIPE here instead of killing the process with SIGPIPE.
bool sendAll(int fd, const void* buf, size_t len, int timeoutMs) {
  const uint8_t* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    const ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waitFor(fd, POLLOUT, timeoutMs)) return false;
    } else {
      return false;
    }
  }
  return true;
}

// Receives exactly `len` bytes; false on end of stream, error, or a wait without progress too long.
bool recvAll(int fd, void* buf, size_t len, int timeoutMs) {
  uint8_t* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    const ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waitFor(fd, POLLIN, timeoutMs)) return false;
    } else {
      return false;
    }
  }
  return true;
}

void closeFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

bool fillAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr->sun_path)) return false;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

int newSocket() { return socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); }

// One attempt; on failure returns -1 with errno from connect(). A nonblocking AF_UNIX connect either
// completes at once or fails (EAGAIN when the listener's backlog is full), so nothing is left pending.
int connectOnce(const sockaddr_un& addr) {
  const int fd = newSocket();
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
  const int err = errno;
  close(fd);
  errno = err;
  return -1;
}

// A listening socket bound to `addr`, or -1 with errno from socket() or bind().
int bindTo(const sockaddr_un& addr) {
  const int fd = newSocket();
  if (fd < 0) return -1;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
  const int err = errno;
  close(fd);
  errno = err;
  return -1;
}

// Conditions under which the peer may simply not be listening yet.
bool worthRetrying(int err) { return err == ENOENT || err == ECONNREFUSED || err == EAGAIN || err == EINTR; }

WireStatus toStatus(uint32_t s) {
  return s <= (uint32_t)WireStatus::kNoResponder ? (WireStatus)s : WireStatus::kNoResponder;
}

}  // namespace

// ---- requester ---------------------------------------------------------------------------------------

struct SocketWire::Link {
  std::mutex mutex;  // one request in flight per peer: the peer executes them in sending order
  int fd = -1;
  uint64_t seq = 0;
  bool closed = false;  // set by stop(): the device is off
};

struct SocketWire::Request {
  Header header;
  uint8_t fields[sizeof(AtomicFields)];  // WriteFields or AtomicFields, header.length - dataLen bytes
  const uint8_t* data = nullptr;         // a write's payload
  uint32_t dataLen = 0;
};

struct SocketWire::Reply {
  ReplyFields fields;
};

std::string SocketWire::jobDir(const std::string& job) { return "/tmp/llep-nic-" + job; }

std::string SocketWire::socketPath(const std::string& dir, PeerId rank) {
  return dir + "/rank" + std::to_string(rank) + ".sock";
}

SocketWire::SocketWire(SocketWireOptions options)
    : options_(std::move(options)), path_(socketPath(options_.dir, options_.self)) {}

SocketWire::~SocketWire() { stop(); }

// Links live as long as the wire, so a request that raced with stop() never holds a dangling one.
SocketWire::Link* SocketWire::link(PeerId peer) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopped_) return nullptr;
  std::unique_ptr<Link>& l = links_[peer];
  if (!l) l = std::make_unique<Link>();
  return l.get();
}

// Connects if needed (retrying a peer that is not listening yet, within the timeout), sends the
// request and waits for the reply. Any failure closes the connection: the stream may be out of step.
bool SocketWire::exchange(PeerId peer, const Request& request, Reply* reply) {
  Link* l = link(peer);
  if (!l) return false;
  std::lock_guard<std::mutex> lock(l->mutex);
  if (l->closed) return false;
  if (l->fd < 0) {
    sockaddr_un addr;
    if (!fillAddress(socketPath(options_.dir, peer), &addr)) return false;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.timeoutMs);
    while ((l->fd = connectOnce(addr)) < 0 && worthRetrying(errno) && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(kConnectPauseMs));
    if (l->fd < 0) return false;
  }
  Header h = request.header;
  h.seq = ++l->seq;
  const int t = options_.timeoutMs;
  Header rh;
  const bool ok = sendAll(l->fd, &h, sizeof(h), t) &&
                  sendAll(l->fd, request.fields, h.length - request.dataLen, t) &&
                  sendAll(l->fd, request.data, request.dataLen, t) && recvAll(l->fd, &rh, sizeof(rh), t) &&
                  rh.type == kReplyMsg && rh.seq == h.seq && rh.length == sizeof(ReplyFields) &&
                  recvAll(l->fd, &reply->fields, sizeof(ReplyFields), t);
  if (!ok) closeFd(&l->fd);
  return ok;
}

WireStatus SocketWire::write(PeerId peer, const WriteMsg& msg) {
  if (msg.len > kMaxPayload) return WireStatus::kInvalidRequest;
  Request r;
  WriteFields f{msg.dstQpn, msg.rkey, msg.raddr};
  std::memcpy(r.fields, &f, sizeof(f));
  r.header = Header{kWriteRequest, (uint32_t)sizeof(f) + msg.len, 0};
  r.data = msg.data;
  r.dataLen = msg.len;
  Reply reply;
  return exchange(peer, r, &reply) ? toStatus(reply.fields.status) : WireStatus::kNoResponder;
}

AtomicReply SocketWire::atomic(PeerId peer, const AtomicMsg& msg) {
  Request r;
  AtomicFields f{msg.dstQpn, (uint32_t)msg.kind, msg.rkey, 0, msg.raddr, msg.add, msg.boundary};
  std::memcpy(r.fields, &f, sizeof(f));
  r.header = Header{kAtomicRequest, (uint32_t)sizeof(f), 0};
  Reply reply;
  if (!exchange(peer, r, &reply)) return AtomicReply{WireStatus::kNoResponder, 0};
  return AtomicReply{toStatus(reply.fields.status), reply.fields.old};
}

// ---- responder ---------------------------------------------------------------------------------------

// Binds and listens on path_. A socket file that refuses connections is left over from a rank that
// died without stop(): it is replaced.
bool SocketWire::listen() {
  sockaddr_un addr;
  if (!fillAddress(path_, &addr)) {
    error_ = "socket path too long: " + path_;
    return false;
  }
  int fd = bindTo(addr);
  if (fd < 0 && errno == EADDRINUSE) {
    const int probe = connectOnce(addr);
    if (probe >= 0 || errno != ECONNREFUSED) {
      if (probe >= 0) close(probe);
      error_ = "another process listens on " + path_;
      return false;
    }
    unlink(path_.c_str());
    fd = bindTo(addr);
  }
  if (fd < 0) {
    error_ = "bind " + path_ + ": " + strerror(errno);
    return false;
  }
  if (::listen(fd, SOMAXCONN) != 0) {
    error_ = "listen " + path_ + ": " + strerror(errno);
    close(fd);
    unlink(path_.c_str());
    return false;
  }
  listenFd_ = fd;
  return true;
}

bool SocketWire::start(Responder& local) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (listenFd_ >= 0 || stopped_) {
      error_ = "start() may be called once, and not after stop()";
      return false;
    }
  }
  if (mkdir(options_.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    error_ = "mkdir " + options_.dir + ": " + strerror(errno);
    return false;
  }
  if (!listen()) return false;
  wakeFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakeFd_ < 0) {
    error_ = "eventfd: " + std::string(strerror(errno));
    closeFd(&listenFd_);
    unlink(path_.c_str());
    return false;
  }
  local_ = &local;
  thread_ = std::thread([this] { serve(); });
  return true;
}

void SocketWire::acceptAll(std::vector<int>* conns) {
  for (;;) {
    const int fd = accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) conns->push_back(fd);
    else if (errno != EINTR) return;  // EAGAIN: none left; anything else: try at the next wake-up
  }
}

// Waits for work; the poll is bounded only so that every wait is, stop() wakes it through wakeFd_.
// Connections are served one request at a time, so each peer's requests run in their sending order.
void SocketWire::serve() {
  std::vector<int> conns;
  std::vector<pollfd> fds;
  for (;;) {
    fds.assign({{wakeFd_, POLLIN, 0}, {listenFd_, POLLIN, 0}});
    for (int fd : conns) fds.push_back({fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), options_.timeoutMs) < 0 && errno != EINTR) break;
    if (fds[0].revents) break;
    if (fds[1].revents) acceptAll(&conns);
    for (size_t i = 2; i < fds.size(); i++) {
      if (!fds[i].revents || serveOne(fds[i].fd)) continue;
      close(fds[i].fd);
      conns.erase(std::find(conns.begin(), conns.end(), fds[i].fd));
    }
  }
  for (int fd : conns) close(fd);
}

// Reads one request, executes it and answers. False when the connection is finished: the peer closed
// it, sent something malformed, or stalled past the timeout.
bool SocketWire::serveOne(int fd) {
  const int t = options_.timeoutMs;
  Header h;
  if (!recvAll(fd, &h, sizeof(h), t)) return false;
  const bool isWrite = h.type == kWriteRequest && h.length >= sizeof(WriteFields) &&
                       h.length - sizeof(WriteFields) <= kMaxPayload;
  const bool isAtomic = h.type == kAtomicRequest && h.length == sizeof(AtomicFields);
  if (!isWrite && !isAtomic) return false;
  inbox_.resize(h.length);
  if (!recvAll(fd, inbox_.data(), h.length, t)) return false;
  ReplyFields reply{};
  if (isWrite) {
    WriteFields f;
    std::memcpy(&f, inbox_.data(), sizeof(f));
    const WriteMsg msg{f.dstQpn, f.rkey, f.raddr, inbox_.data() + sizeof(f), h.length - (uint32_t)sizeof(f)};
    reply.status = (uint32_t)local_->onWrite(msg);
  } else {
    AtomicFields f;
    std::memcpy(&f, inbox_.data(), sizeof(f));
    if (f.kind > (uint32_t)AtomicKind::kMaskedFetchAdd64) return false;
    const AtomicReply r = local_->onAtomic(AtomicMsg{f.dstQpn, (AtomicKind)f.kind, f.rkey, f.raddr, f.add,
                                                     f.boundary});
    reply.status = (uint32_t)r.status;
    reply.old = r.old;
  }
  const Header rh{kReplyMsg, (uint32_t)sizeof(reply), h.seq};
  return sendAll(fd, &rh, sizeof(rh), t) && sendAll(fd, &reply, sizeof(reply), t);
}

// ---- shutdown ----------------------------------------------------------------------------------------

// A request in flight finishes (or times out) first: it holds its link's lock.
void SocketWire::closeLinks() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopped_ = true;
  for (auto& entry : links_) {
    std::lock_guard<std::mutex> linkLock(entry.second->mutex);
    entry.second->closed = true;
    closeFd(&entry.second->fd);
  }
}

void SocketWire::stop() {
  closeLinks();
  if (thread_.joinable()) {
    const uint64_t one = 1;
    while (::write(wakeFd_, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  closeFd(&wakeFd_);
  if (listenFd_ >= 0) {
    closeFd(&listenFd_);
    unlink(path_.c_str());
  }
}

}  // namespace llnic
