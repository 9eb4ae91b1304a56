// The wire between model devices in different processes (ranks) of one host: Unix domain stream sockets,
// one socket file per rank under the job's directory (<dir>/rank<r>.sock).
//
// Requester side: write() and atomic() send one request and wait for its answer. Each peer has one
// connection, used by one request at a time, and the peer's responder handles a connection's
// requests one after another; so the operations of one QP (indeed of all QPs of this device) towards a
// peer are executed there in posting order, which is RC order.
// Responder side: a thread accepts connections and hands each request to the local Responder (the
// NicModel), then sends back its WireStatus or AtomicReply.
//
// Every wait is bounded by the timeout given at construction (a wait without progress, so a large
// write is not cut short while bytes still flow). A peer that is gone, never listened, or does not
// answer in time yields WireStatus::kNoResponder, which the requester reports as "transport retries
// exceeded". A request is never resent once any of it was sent: the peer may have executed it, and a
// second fetch-add would count twice (real RC detects duplicates by PSN; this wire has none).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/ibgda/model/wire.h"

namespace llnic {

struct SocketWireOptions {
  std::string dir;       // the job's directory, shared by its ranks; created if missing
  PeerId self = 0;       // this device's rank: it listens on <dir>/rank<self>.sock
  int timeoutMs = 5000;  // the longest any single wait may last: connect, send, receive
};

class SocketWire final : public Wire {
 public:
  // "/tmp/llep-nic-<job>": where the ranks of job `job` meet.
  static std::string jobDir(const std::string& job);
  static std::string socketPath(const std::string& dir, PeerId rank);

  explicit SocketWire(SocketWireOptions options);
  ~SocketWire() override;  // stop()
  SocketWire(const SocketWire&) = delete;
  SocketWire& operator=(const SocketWire&) = delete;

  // Listens on this rank's socket and starts the responder thread, which executes incoming operations
  // on `local`. A stale socket file left by a crashed rank is replaced; a live one is an error.
  // False, with error() saying why, when any step fails. `local` must outlive stop().
  bool start(Responder& local);
  // Ends the responder thread, closes every connection and removes this rank's socket file. After it,
  // write() and atomic() answer kNoResponder. Idempotent. The directory stays: it belongs to the job.
  void stop();
  const std::string& error() const { return error_; }

  WireStatus write(PeerId peer, const WriteMsg& msg) override;
  AtomicReply atomic(PeerId peer, const AtomicMsg& msg) override;

 private:
  struct Link;     // the connection to one peer
  struct Request;  // an operation as it travels
  struct Reply;

  bool listen();
  Link* link(PeerId peer);
  bool exchange(PeerId peer, const Request& request, Reply* reply);
  void serve();
  void acceptAll(std::vector<int>* conns);
  bool serveOne(int fd);
  void closeLinks();

  const SocketWireOptions options_;
  const std::string path_;
  Responder* local_ = nullptr;
  int listenFd_ = -1;
  int wakeFd_ = -1;  // an eventfd: stop() wakes the responder thread through it
  std::thread thread_;
  std::vector<uint8_t> inbox_;  // the responder thread's receive buffer, kept between requests
  std::string error_;
  std::mutex mutex_;  // guards links_ and stopped_
  bool stopped_ = false;
  std::map<PeerId, std::unique_ptr<Link>> links_;
};

}  // namespace llnic
