// The process-wide wire of the model's contexts (provider_internal.h): direct calls between the contexts of
// this process, and the SocketWire (LLEP_MODEL_JOB) to the processes of other ranks.
#include "transport/ibgda/model/provider_internal.h"

#include <memory>
#include <mutex>
#include <string>

#include "param.h"
#include "transport/ibgda/model/socket_wire.h"

namespace llnic {
namespace provider_detail {

void ProcessWire::attach(PeerId lid, Responder* responder) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (responder) local_[lid] = responder;
  else local_.erase(lid);
}

void ProcessWire::setSocket(std::shared_ptr<SocketWire> socket) {
  std::lock_guard<std::mutex> lock(mutex_);
  socket_ = std::move(socket);
}

bool ProcessWire::hasSocket() {
  std::lock_guard<std::mutex> lock(mutex_);
  return socket_ != nullptr;
}

WireStatus ProcessWire::write(PeerId lid, const WriteMsg& msg) {
  Responder* r = nullptr;
  std::shared_ptr<SocketWire> s = route(lid, &r);
  if (r) return r->onWrite(msg);
  return s ? s->write((PeerId)lidRank(lid), msg) : WireStatus::kNoResponder;
}

AtomicReply ProcessWire::atomic(PeerId lid, const AtomicMsg& msg) {
  Responder* r = nullptr;
  std::shared_ptr<SocketWire> s = route(lid, &r);
  if (r) return r->onAtomic(msg);
  return s ? s->atomic((PeerId)lidRank(lid), msg) : AtomicReply{WireStatus::kNoResponder, 0};
}

std::shared_ptr<SocketWire> ProcessWire::route(PeerId lid, Responder** local) {
  if (lid == kNoContext) return nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = local_.find(lid);
  if (it != local_.end()) {
    *local = it->second;
    return nullptr;
  }
  return lidRank(lid) != envRank() ? socket_ : nullptr;
}

ProcessWire& processWire() {
  static ProcessWire wire;
  return wire;
}

std::string modelJobDir() {
  const char* job = llParamModelJob();
  if (!*job) return std::string();
  return job[0] == '/' ? std::string(job) : SocketWire::jobDir(job);
}

}  // namespace provider_detail
}  // namespace llnic
