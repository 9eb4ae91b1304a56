// The model's DevX commands (provider.h): CREATE_CQ and CREATE_QP create objects, the QP transitions
// (RST2INIT, INIT2RTR, RTR2RTS) modify them, QUERY_HCA_CAP answers as a general command. The raw PRM command
// bytes are read through this file's own field table and bit reader, independent of
// transport/ibgda/prm_cmd.h, so an encoder mistake cannot hide behind a decoder that shares it.
#include "transport/ibgda/model/provider_internal.h"

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "transport/ibgda/model/prm.h"

namespace llnic {
namespace provider_detail {
namespace {

// ---- PRM command layouts, as the decoder reads them -------------------------------------------------------
// A field is (first bit, width) from the start of the command's input or output, counting bit 0 as the most
// significant bit of byte 0 (the PRM's numbering). Offsets are absolute (a CQ/QP context field's offset
// already includes where the context sits), transcribed from the mlx5 PRM structures create_cq_in (cq_context
// at 0x80), create_qp_in and rst2init/init2rtr/rtr2rts_qp_in (qpc at 0xc0, its primary_address_path at 0xc0 +
// 0xc0), query_hca_cap_out (capability at 0x80).
struct Bits {
  uint32_t at;
  uint32_t width;
};

// One bit at a time, most significant first: slow and plain, so it shares nothing with prm_cmd.cc.
uint64_t getBits(const uint8_t* buf, Bits f) {
  uint64_t v = 0;
  for (uint32_t b = f.at; b < f.at + f.width; b++) v = (v << 1) | ((buf[b / 8] >> (7 - b % 8)) & 1u);
  return v;
}

void putBits(uint8_t* buf, Bits f, uint64_t v) {
  for (uint32_t i = 0; i < f.width; i++) {
    uint32_t b = f.at + f.width - 1 - i;  // the field's least significant bit is its last
    uint8_t mask = (uint8_t)(0x80u >> (b % 8));
    buf[b / 8] = (v >> i) & 1 ? (uint8_t)(buf[b / 8] | mask) : (uint8_t)(buf[b / 8] & ~mask);
  }
}

namespace cmd {
constexpr uint32_t kOpQueryHcaCap = 0x100, kOpCreateCq = 0x400, kOpCreateQp = 0x500, kOpRst2Init = 0x502,
                   kOpInit2Rtr = 0x503, kOpRtr2Rts = 0x504;
constexpr Bits kOpcode{0x00, 16}, kOpMod{0x30, 16};
constexpr Bits kStatus{0x00, 8}, kSyndrome{0x20, 32};
constexpr size_t kOutHeaderBytes = 16;  // every output used here: status, syndrome, one dword, reserved

// create_cq_in / create_cq_out
constexpr size_t kCreateCqInBytes = 0x880 / 8;
constexpr Bits kCqDbrUmemValid{0x86, 1}, kCqCqeSz{0x88, 3}, kCqOi{0x8e, 1}, kCqDbrUmemId{0xa0, 32},
    kCqLogSize{0xe3, 5}, kCqUarPage{0xe8, 24}, kCqCEqn{0x138, 8}, kCqDbrAddr{0x240, 64},
    kCqUmemOffset{0x280, 64}, kCqUmemId{0x2c0, 32}, kCqUmemValid{0x2e0, 1};
constexpr Bits kOutCqn{0x48, 24};

// create_qp_in / create_qp_out; the qpc fields have the same offsets in the modify commands.
constexpr size_t kQpInBytes = 0x880 / 8;
constexpr Bits kQpSt{0xc8, 8}, kQpPd{0xe8, 24}, kQpMtu{0x100, 3}, kQpLogRqSize{0x109, 4}, kQpNoSq{0x110, 1},
    kQpLogSqSize{0x111, 4}, kQpUarPage{0x128, 24}, kQpRemoteQpn{0x168, 24}, kQpFl{0x180, 1},
    kQpRlid{0x1b0, 16}, kQpVhcaPortNum{0x2a8, 8}, kQpNextSendPsn{0x488, 24}, kQpCqnSnd{0x4a8, 24},
    kQpAtomicMode{0x54c, 4}, kQpRre{0x550, 1}, kQpRwe{0x551, 1}, kQpRae{0x552, 1}, kQpCqnRcv{0x5a8, 24},
    kQpDbrAddr{0x5c0, 64}, kQpRqType{0x625, 3}, kQpDbrUmemValid{0x743, 1}, kQpDbrUmemId{0x7e0, 32},
    kQpWqUmemOffset{0x800, 64}, kQpWqUmemId{0x840, 32}, kQpWqUmemValid{0x860, 1};
constexpr Bits kOutQpn{0x48, 24};
constexpr Bits kModifyQpn{0x48, 24};
// The primary address path's RoCE fields (ads at 0x180): grh (ads 0x28), src_addr_index (0x48), hop_limit
// (0x58), tclass (0x64), rgid_rip (0x80, 16 bytes), dscp (0x10a), udp_sport (0x110), rmac_47_32 and rmac_31_0
// (0x130, together the MAC's 6 bytes in wire order).
constexpr Bits kQpGrh{0x1a8, 1}, kQpSrcAddrIndex{0x1c8, 8}, kQpHopLimit{0x1d8, 8}, kQpTclass{0x1e4, 8},
    kQpDscp{0x28a, 6}, kQpUdpSport{0x290, 16};
constexpr size_t kQpRgidByte = 0x200 / 8, kQpRmacByte = 0x2b0 / 8;
constexpr uint32_t kStRc = 0x0, kRqTypeZeroSize = 0x3;

// query_hca_cap: op_mod = capability type << 1 | current; general caps are type 0, atomic caps type 3.
constexpr size_t kQueryHcaCapInBytes = 0x80 / 8, kQueryHcaCapOutBytes = (0x80 + 0x8000) / 8;
constexpr uint32_t kCap = 0x80;
constexpr Bits kCapLogMaxQpSz{kCap + 0x88, 8}, kCapLogMaxQp{kCap + 0x9b, 5}, kCapLogMaxCqSz{kCap + 0xc8, 8},
    kCapLogMaxCq{kCap + 0xdb, 5}, kCapLogMaxRaReqQp{kCap + 0x14a, 6}, kCapLogMaxRaResQp{kCap + 0x15a, 6},
    kCapPortType{kCap + 0x1b6, 2}, kCapLogMaxMsg{kCap + 0x1c3, 5}, kCapRoce{kCap + 0x21d, 1},
    kCapAtomic{kCap + 0x21e, 1};
constexpr Bits kAtomicEndianness{kCap + 0x40, 2}, kAtomicOperations{kCap + 0x90, 16},
    kAtomicSizeQp{kCap + 0xb0, 16};

// Command status (PRM "Return Status Summary").
constexpr uint8_t kStatOk = 0x00, kStatBadOp = 0x02, kStatBadParam = 0x03, kStatBadQpState = 0x10,
                  kStatBadInputLen = 0x50, kStatBadOutputLen = 0x51;
// Syndromes are firmware-internal numbers that the PRM does not list; the model's own carry "LL" in their top
// bytes so a log shows at once that the model, not a device, refused the command.
enum Syndrome : uint32_t {
  kSynUnknownOpcode = 0x4c4c0001,
  kSynShortInput,
  kSynShortOutput,
  kSynUmemRequired,   // rings and doorbell records must be in UMEM (no PAS lists)
  kSynBadUmem,        // no such UMEM, or the object does not fit inside it
  kSynBadUar,         // uar_page is not a UAR of this context
  kSynBadEqn,         // the only EQ is 0
  kSynCqeSize,        // 64-byte CQEs only
  kSynQpType,         // RC only
  kSynRqUnsupported,  // send-only QPs: zero-size RQ, SQ present
  kSynBadPd,
  kSynBadCqn,
  kSynRejected,  // the model refused the sizes or alignment (NicModel::createCq/createQp)
  kSynQpnMismatch,
  kSynBadPort,
  kSynBadMtu,
  kSynBadRlid,
  kSynQpState,
  kSynCapType,
  kSynGrhRequired,   // Ethernet: llep's RoCE paths say grh (firmware would not insist: see provider.h)
  kSynBadSgidIndex,  // Ethernet: src_addr_index is not a set entry of the GID table
};
}  // namespace cmd

struct CmdResult {
  uint8_t status;
  uint32_t syndrome;
};
constexpr CmdResult kCmdOk{cmd::kStatOk, 0};
CmdResult badParam(uint32_t syndrome) { return {cmd::kStatBadParam, syndrome}; }

constexpr uint32_t kCqDbrecBytes = 8;  // consumer index and arm words
constexpr uint32_t kQpDbrecBytes = 8;  // receive and send counters

// ---- DevX commands ----------------------------------------------------------------------------------------

CmdResult createCq(Context& c, const uint8_t* in, size_t inlen, uint8_t* out, size_t outlen, uint32_t* cqn) {
  using namespace cmd;
  if (inlen < kCreateCqInBytes) return {kStatBadInputLen, kSynShortInput};
  if (outlen < kOutHeaderBytes) return {kStatBadOutputLen, kSynShortOutput};
  if (!getBits(in, kCqUmemValid) || !getBits(in, kCqDbrUmemValid)) return badParam(kSynUmemRequired);
  if (getBits(in, kCqCqeSz) != 0) return badParam(kSynCqeSize);
  if (getBits(in, kCqCEqn) != 0) return badParam(kSynBadEqn);
  ModelCqView v;
  v.logSize = (uint32_t)getBits(in, kCqLogSize);
  v.uarPage = (uint32_t)getBits(in, kCqUarPage);
  v.overrunIgnore = getBits(in, kCqOi);
  std::lock_guard<std::mutex> lock(c.mutex);
  if (!c.uars.count(v.uarPage)) return badParam(kSynBadUar);
  v.ringAddr =
      c.span((uint32_t)getBits(in, kCqUmemId), getBits(in, kCqUmemOffset), prm::kCqeBytes << v.logSize);
  v.dbrecAddr = c.span((uint32_t)getBits(in, kCqDbrUmemId), getBits(in, kCqDbrAddr), kCqDbrecBytes);
  if (!v.ringAddr || !v.dbrecAddr) return badParam(kSynBadUmem);
  CqConfig config;
  config.ringAddr = v.ringAddr;
  config.logSize = v.logSize;
  config.dbrecAddr = v.dbrecAddr;
  config.ignoreOverrun = v.overrunIgnore;
  if (c.nic.createCq(config, cqn) != Status::kOk) return badParam(kSynRejected);
  c.cqs[*cqn] = v;
  putBits(out, kOutCqn, *cqn);
  return kCmdOk;
}

CmdResult createQp(Context& c, const uint8_t* in, size_t inlen, uint8_t* out, size_t outlen, uint32_t* qpn) {
  using namespace cmd;
  if (inlen < kQpInBytes) return {kStatBadInputLen, kSynShortInput};
  if (outlen < kOutHeaderBytes) return {kStatBadOutputLen, kSynShortOutput};
  if (!getBits(in, kQpWqUmemValid) || !getBits(in, kQpDbrUmemValid)) return badParam(kSynUmemRequired);
  if (getBits(in, kQpSt) != kStRc) return badParam(kSynQpType);
  if (getBits(in, kQpRqType) != kRqTypeZeroSize || getBits(in, kQpLogRqSize) != 0 || getBits(in, kQpNoSq))
    return badParam(kSynRqUnsupported);
  ModelQpView v;
  v.logSqBbs = (uint32_t)getBits(in, kQpLogSqSize);
  v.cqnSnd = (uint32_t)getBits(in, kQpCqnSnd);
  v.pd = (uint32_t)getBits(in, kQpPd);
  v.uarPage = (uint32_t)getBits(in, kQpUarPage);
  std::lock_guard<std::mutex> lock(c.mutex);
  if (!c.pds.count(v.pd)) return badParam(kSynBadPd);
  if (!c.uars.count(v.uarPage)) return badParam(kSynBadUar);
  if (!c.cqs.count(v.cqnSnd) || !c.cqs.count((uint32_t)getBits(in, kQpCqnRcv))) return badParam(kSynBadCqn);
  v.sqAddr = c.span((uint32_t)getBits(in, kQpWqUmemId), getBits(in, kQpWqUmemOffset),
                    (uint64_t)prm::kWqeBbBytes << v.logSqBbs);
  v.dbrecAddr = c.span((uint32_t)getBits(in, kQpDbrUmemId), getBits(in, kQpDbrAddr), kQpDbrecBytes);
  if (!v.sqAddr || !v.dbrecAddr) return badParam(kSynBadUmem);
  QpConfig config;
  config.sqAddr = v.sqAddr;
  config.logSqBbs = v.logSqBbs;
  config.dbrecAddr = v.dbrecAddr;
  config.cqn = v.cqnSnd;
  if (c.nic.createQp(config, qpn) != Status::kOk) return badParam(kSynRejected);
  c.qps[*qpn] = v;
  putBits(out, kOutQpn, *qpn);
  return kCmdOk;
}

// INIT2RTR's address path on an Ethernet port. Packets go to the MAC in rmac, and the context there takes them
// only when rgid is one of its addresses; otherwise they are lost (destLid kNoContext), which RTR cannot see.
CmdResult decodeRocePath(const Context& c, const uint8_t* in, ModelQpView* v) {
  using namespace cmd;
  v->grh = getBits(in, kQpGrh);
  v->srcAddrIndex = (uint32_t)getBits(in, kQpSrcAddrIndex);
  v->hopLimit = (uint32_t)getBits(in, kQpHopLimit);
  v->tclass = (uint32_t)getBits(in, kQpTclass);
  v->dscp = (uint32_t)getBits(in, kQpDscp);
  v->udpSport = (uint32_t)getBits(in, kQpUdpSport);
  std::memcpy(v->rgid, in + kQpRgidByte, 16);
  std::memcpy(v->rmac, in + kQpRmacByte, 6);
  if (!v->grh) return badParam(kSynGrhRequired);
  ibv_gid_entry source;
  if (!gidEntry(c, v->srcAddrIndex, &source)) return badParam(kSynBadSgidIndex);
  if (getBits(in, kQpFl)) {
    v->destLid = c.lid;
    return kCmdOk;
  }
  const PeerId named = gidLid(v->rgid);
  uint8_t mac[6];
  modelMac((uint16_t)named, mac);
  v->destLid = named != kNoContext && std::memcmp(mac, v->rmac, 6) == 0 ? (uint32_t)named : kNoContext;
  return kCmdOk;
}

// Reads what one transition sets into *v and says where the QP goes (and, for RTR, its remote).
CmdResult decodeTransition(const Context& c, uint32_t opcode, const uint8_t* in, ModelQpView* v, QpState* to,
                           RemoteQp* remote) {
  using namespace cmd;
  switch (opcode) {
    case kOpRst2Init:
      v->port = (uint32_t)getBits(in, kQpVhcaPortNum);
      if (v->port != kPort) return badParam(kSynBadPort);
      v->remoteRead = getBits(in, kQpRre);
      v->remoteWrite = getBits(in, kQpRwe);
      v->remoteAtomic = getBits(in, kQpRae);
      v->atomicMode = (uint32_t)getBits(in, kQpAtomicMode);
      *to = QpState::kInit;
      return kCmdOk;
    case kOpInit2Rtr:
      v->mtu = (uint32_t)getBits(in, kQpMtu);
      if (v->mtu < IBV_MTU_256 || v->mtu > IBV_MTU_4096) return badParam(kSynBadMtu);
      v->remoteQpn = (uint32_t)getBits(in, kQpRemoteQpn);
      if (c.eth) {
        v->rlid = (uint32_t)getBits(in, kQpRlid);
        CmdResult r = decodeRocePath(c, in, v);
        if (r.status != kStatOk) return r;
      } else {
        v->rlid = getBits(in, kQpFl) ? c.lid : (uint32_t)getBits(in, kQpRlid);
        if (v->rlid == 0) return badParam(kSynBadRlid);
        v->destLid = v->rlid;
      }
      *remote = RemoteQp{(PeerId)v->destLid, v->remoteQpn};
      *to = QpState::kRtr;
      return kCmdOk;
    case kOpRtr2Rts:
      v->nextSendPsn = (uint32_t)getBits(in, kQpNextSendPsn);
      *to = QpState::kRts;
      return kCmdOk;
    default: return {kStatBadOp, kSynUnknownOpcode};
  }
}

CmdResult modifyQp(Context& c, uint32_t qpn, const uint8_t* in, size_t inlen, size_t outlen) {
  using namespace cmd;
  if (inlen < kQpInBytes) return {kStatBadInputLen, kSynShortInput};
  if (outlen < kOutHeaderBytes) return {kStatBadOutputLen, kSynShortOutput};
  if (getBits(in, kModifyQpn) != qpn) return badParam(kSynQpnMismatch);
  std::lock_guard<std::mutex> lock(c.mutex);
  ModelQpView v = c.qps.at(qpn);
  QpState to = QpState::kReset;
  RemoteQp remote;
  CmdResult r = decodeTransition(c, (uint32_t)getBits(in, kOpcode), in, &v, &to, &remote);
  if (r.status != kStatOk) return r;
  if (c.nic.modifyQp(qpn, to, &remote) != Status::kOk) return {kStatBadQpState, kSynQpState};
  c.qps[qpn] = v;
  return kCmdOk;
}

// Plausible ConnectX-class answers: the ring limits NicModel enforces, the port type of the link layer (RoCE
// with Ethernet), host-endian 8-byte atomics with fetch-add and masked fetch-add on 4- and 8-byte operands.
CmdResult queryHcaCap(const Context& c, const uint8_t* in, size_t inlen, uint8_t* out, size_t outlen) {
  using namespace cmd;
  if (inlen < kQueryHcaCapInBytes) return {kStatBadInputLen, kSynShortInput};
  if (outlen < kQueryHcaCapOutBytes) return {kStatBadOutputLen, kSynShortOutput};
  switch (getBits(in, kOpMod) >> 1) {
    case 0x0:
      putBits(out, kCapLogMaxQpSz, 15);
      putBits(out, kCapLogMaxQp, 17);
      putBits(out, kCapLogMaxCqSz, 22);
      putBits(out, kCapLogMaxCq, 16);
      putBits(out, kCapLogMaxRaReqQp, 4);
      putBits(out, kCapLogMaxRaResQp, 4);
      putBits(out, kCapPortType, c.eth ? 1 : 0);  // 0 IB, 1 Ethernet
      putBits(out, kCapLogMaxMsg, 30);
      putBits(out, kCapRoce, c.eth ? 1 : 0);
      putBits(out, kCapAtomic, 1);
      return kCmdOk;
    case 0x3:
      putBits(out, kAtomicEndianness, 1);  // host endianness, as memory.h assumes
      putBits(out, kAtomicOperations,
              1u << 1 | 1u << 3);                      // fetch-add, masked fetch-add
      putBits(out, kAtomicSizeQp, 1u << 2 | 1u << 3);  // 4- and 8-byte operands
      return kCmdOk;
    default: return badParam(kSynCapType);
  }
}

// A failed command leaves its status and syndrome in the output and fails with EINVAL, as mlx5 DevX does for
// firmware errors. Outputs too short for even the status fail without one.
int finish(CmdResult r, void* out, size_t outlen) {
  if (r.status == cmd::kStatOk) return 0;
  if (outlen >= cmd::kOutHeaderBytes) {
    putBits(static_cast<uint8_t*>(out), cmd::kStatus, r.status);
    putBits(static_cast<uint8_t*>(out), cmd::kSyndrome, r.syndrome);
  }
  return failCode(EINVAL);
}

bool usable(const void* in, size_t inlen, void* out, size_t outlen) {
  if (!in || !out || inlen < cmd::kOutHeaderBytes || outlen < cmd::kOutHeaderBytes) return false;
  std::memset(out, 0, outlen);
  return true;
}

}  // namespace

mlx5dv_devx_obj* objCreate(ibv_context* c, const void* inv, size_t inlen, void* outv, size_t outlen) {
  Context* ctx = contextOf(c);
  if (!ctx || !usable(inv, inlen, outv, outlen)) return failWith<mlx5dv_devx_obj>(EINVAL);
  auto in = static_cast<const uint8_t*>(inv);
  auto out = static_cast<uint8_t*>(outv);
  uint32_t opcode = (uint32_t)getBits(in, cmd::kOpcode), number = 0;
  CmdResult r{cmd::kStatBadOp, cmd::kSynUnknownOpcode};
  if (opcode == cmd::kOpCreateCq) r = createCq(*ctx, in, inlen, out, outlen, &number);
  if (opcode == cmd::kOpCreateQp) r = createQp(*ctx, in, inlen, out, outlen, &number);
  if (finish(r, out, outlen)) return nullptr;
  auto obj = std::make_unique<Obj>(Obj{ctx, opcode == cmd::kOpCreateQp, number});
  std::lock_guard<std::mutex> lock(ctx->mutex);
  Obj* raw = obj.get();
  ctx->objs[raw] = std::move(obj);
  return reinterpret_cast<mlx5dv_devx_obj*>(raw);
}

int objModify(mlx5dv_devx_obj* handle, const void* in, size_t inlen, void* out, size_t outlen) {
  Obj* obj = reinterpret_cast<Obj*>(handle);
  if (!obj || !usable(in, inlen, out, outlen)) return failCode(EINVAL);
  CmdResult r = obj->isQp ? modifyQp(*obj->ctx, obj->number, static_cast<const uint8_t*>(in), inlen, outlen)
                          : CmdResult{cmd::kStatBadOp, cmd::kSynUnknownOpcode};
  return finish(r, out, outlen);
}

// The model answers no object queries.
int objQuery(mlx5dv_devx_obj* handle, const void* in, size_t inlen, void* out, size_t outlen) {
  if (!handle || !usable(in, inlen, out, outlen)) return failCode(EINVAL);
  return finish({cmd::kStatBadOp, cmd::kSynUnknownOpcode}, out, outlen);
}

// A destroyed QP goes back to RST (so peers' packets find no responder) and its doorbells are no longer
// watched; a CQ that a QP still uses is busy, as on a device.
int objDestroy(mlx5dv_devx_obj* handle) {
  Obj* obj = reinterpret_cast<Obj*>(handle);
  if (!obj) return failCode(EINVAL);
  Context& c = *obj->ctx;
  std::lock_guard<std::mutex> lock(c.mutex);
  if (obj->isQp) {
    c.nic.modifyQp(obj->number, QpState::kReset);
    c.qps.erase(obj->number);
  } else {
    for (auto& [qpn, view] : c.qps)
      if (view.cqnSnd == obj->number) return failCode(EBUSY);
    c.cqs.erase(obj->number);
  }
  c.objs.erase(obj);
  return 0;
}

int generalCmd(ibv_context* c, const void* inv, size_t inlen, void* outv, size_t outlen) {
  Context* ctx = contextOf(c);
  if (!ctx || !usable(inv, inlen, outv, outlen)) return failCode(EINVAL);
  auto in = static_cast<const uint8_t*>(inv);
  CmdResult r = getBits(in, cmd::kOpcode) == cmd::kOpQueryHcaCap
                    ? queryHcaCap(*ctx, in, inlen, static_cast<uint8_t*>(outv), outlen)
                    : CmdResult{cmd::kStatBadOp, cmd::kSynUnknownOpcode};
  return finish(r, outv, outlen);
}

}  // namespace provider_detail

using provider_detail::Context;
using provider_detail::contextOf;

bool modelCqView(ibv_context* context, uint32_t cqn, ModelCqView* view) {
  Context* ctx = contextOf(context);
  if (!ctx) return false;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  auto it = ctx->cqs.find(cqn);
  if (it == ctx->cqs.end()) return false;
  *view = it->second;
  return true;
}

bool modelQpView(ibv_context* context, uint32_t qpn, ModelQpView* view) {
  Context* ctx = contextOf(context);
  if (!ctx) return false;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  auto it = ctx->qps.find(qpn);
  if (it == ctx->qps.end()) return false;
  *view = it->second;
  return true;
}

}  // namespace llnic
