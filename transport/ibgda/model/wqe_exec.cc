#include "transport/ibgda/model/wqe_exec.h"

#include <vector>

namespace llnic {

namespace {

using prm::Syndrome;

// What the requester reports for each answer of the responder (mlx5_err_cqe syndromes).
Syndrome requesterSyndrome(WireStatus s) {
  switch (s) {
    case WireStatus::kOk: return Syndrome::kNone;
    case WireStatus::kRemoteAccess: return Syndrome::kRemoteAccessErr;
    case WireStatus::kInvalidRequest: return Syndrome::kRemoteInvalReqErr;
    case WireStatus::kNoResponder: return Syndrome::kTransportRetryExcErr;
  }
  return Syndrome::kLocalQpOpErr;
}

}  // namespace

Completion WqeExecutor::execute(const Wqe& wqe, const uint8_t* wqeBytes, const RemoteQp& remote) {
  switch (wqe.kind) {
    case WqeKind::kNop: return Completion{};
    case WqeKind::kRdmaWrite: return rdmaWrite(wqe, wqeBytes, remote);
    case WqeKind::kAtomic: return atomic(wqe, remote);
  }
  return Completion{Syndrome::kLocalQpOpErr, 0};
}

// The payload is gathered before anything is sent, so a bad local key fails the WQE with
// LOCAL_PROT_ERR and leaves the remote untouched. Local reads need no right beyond the key itself.
Completion WqeExecutor::rdmaWrite(const Wqe& wqe, const uint8_t* wqeBytes, const RemoteQp& remote) {
  std::vector<uint8_t> payload;
  for (const GatherPiece& piece : wqe.gather) {
    const uint32_t len = piece.seg.byteCount;
    const size_t at = payload.size();
    if (piece.isInline) {
      payload.insert(payload.end(), wqeBytes + piece.inlineOffset, wqeBytes + piece.inlineOffset + len);
      continue;
    }
    if (pd_.check(piece.seg.lkey, piece.seg.addr, len, 0) != KeyCheck::kOk)
      return Completion{Syndrome::kLocalProtErr, 0};
    payload.resize(at + len);
    memory_.read(piece.seg.addr, payload.data() + at, len);
  }
  WriteMsg msg;
  msg.dstQpn = remote.qpn;
  msg.rkey = wqe.rkey;
  msg.raddr = wqe.raddr;
  msg.data = payload.data();
  msg.len = (uint32_t)payload.size();
  return Completion{requesterSyndrome(wire_.write(remote.peer, msg)), msg.len};
}

// The old value lands in the data segment in host byte order (the host-endianness atomic mode, see
// Memory). The segment must have exactly the operand's size and allow local writes; it is checked
// before the operation is sent, so a bad segment leaves the remote word unchanged.
Completion WqeExecutor::atomic(const Wqe& wqe, const RemoteQp& remote) {
  const uint32_t bytes = atomicBytes(wqe.atomicKind);
  if (wqe.result.byteCount != bytes) return Completion{Syndrome::kLocalLengthErr, 0};
  if (pd_.check(wqe.result.lkey, wqe.result.addr, bytes, kAccessLocalWrite) != KeyCheck::kOk)
    return Completion{Syndrome::kLocalProtErr, 0};
  AtomicMsg msg;
  msg.dstQpn = remote.qpn;
  msg.kind = wqe.atomicKind;
  msg.rkey = wqe.rkey;
  msg.raddr = wqe.raddr;
  msg.add = wqe.add;
  msg.boundary = wqe.boundary;
  AtomicReply reply = wire_.atomic(remote.peer, msg);
  if (reply.status != WireStatus::kOk) return Completion{requesterSyndrome(reply.status), 0};
  if (bytes == 4) {
    uint32_t old32 = (uint32_t)reply.old;
    memory_.write(wqe.result.addr, &old32, sizeof(old32));
  } else {
    memory_.write(wqe.result.addr, &reply.old, sizeof(reply.old));
  }
  return Completion{Syndrome::kNone, bytes};
}

}  // namespace llnic
