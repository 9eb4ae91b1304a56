#include "transport/ibgda/model/wire.h"

namespace llnic {

void LoopbackWire::attach(PeerId peer, Responder* responder) {
  std::lock_guard<std::mutex> lock(mutex_);
  peers_[peer] = responder;
}

Responder* LoopbackWire::find(PeerId peer) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = peers_.find(peer);
  return it == peers_.end() ? nullptr : it->second;
}

// An unknown peer behaves like an unreachable port: nothing answers.
WireStatus LoopbackWire::write(PeerId peer, const WriteMsg& msg) {
  Responder* r = find(peer);
  return r ? r->onWrite(msg) : WireStatus::kNoResponder;
}

AtomicReply LoopbackWire::atomic(PeerId peer, const AtomicMsg& msg) {
  Responder* r = find(peer);
  return r ? r->onAtomic(msg) : AtomicReply{WireStatus::kNoResponder, 0};
}

}  // namespace llnic
