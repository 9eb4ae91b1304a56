// Bit-field access and the DevX command encoders/decoders declared in prm_cmd.h.
#include "transport/ibgda/prm_cmd.h"

#include <algorithm>
#include <cstring>

// Both walk the field from its last (least significant) bit towards its first, one byte's worth at a time,
// so a field may start and end anywhere: within a byte, across bytes, across dwords.
void llPrmSet(uint8_t* buf, LlPrmField f, uint64_t value) {
  uint32_t end = f.bitOffset + f.bitWidth;  // one past the field's last bit
  for (uint32_t left = f.bitWidth; left > 0;) {
    uint32_t last = end - 1;
    uint32_t shift = 7 - last % 8;  // the bit's position in its byte, 0 = least significant
    uint32_t n = std::min(left, 8 - shift);
    uint8_t mask = static_cast<uint8_t>(((1u << n) - 1) << shift);
    uint8_t& b = buf[last / 8];
    b = static_cast<uint8_t>((b & ~mask) | ((value << shift) & mask));
    value >>= n;
    left -= n;
    end -= n;
  }
}

uint64_t llPrmGet(const uint8_t* buf, LlPrmField f) {
  uint64_t value = 0;
  uint32_t end = f.bitOffset + f.bitWidth;
  for (uint32_t left = f.bitWidth, got = 0; left > 0;) {
    uint32_t last = end - 1;
    uint32_t shift = 7 - last % 8;
    uint32_t n = std::min(left, 8 - shift);
    uint64_t part = (buf[last / 8] >> shift) & ((1u << n) - 1);
    value |= part << got;
    got += n;
    left -= n;
    end -= n;
  }
  return value;
}

const char* llPrmStatusName(uint8_t status) {
  switch (status) {
    case 0x00: return "ok";
    case 0x01: return "internal error";
    case 0x02: return "bad operation";
    case 0x03: return "bad parameter";
    case 0x04: return "bad system state";
    case 0x05: return "bad resource";
    case 0x06: return "resource busy";
    case 0x08: return "limits exceeded";
    case 0x09: return "bad resource state";
    case 0x0a: return "bad index";
    case 0x0f: return "no resources";
    case 0x10: return "bad QP state";
    case 0x30: return "bad packet";
    case 0x40: return "bad size (too many outstanding CQEs)";
    case 0x50: return "bad input length";
    case 0x51: return "bad output length";
    default: return "unknown status";
  }
}

namespace {

// Writes fields into one command buffer, remembering the first value that does not fit its field instead of
// truncating it (a truncated queue size or QP number would configure a different object).
class Writer {
 public:
  Writer(std::vector<uint8_t>* in, size_t bytes, uint16_t opcode) : buf_(in) {
    buf_->assign(bytes, 0);
    set(kLlPrmCmdInOpcode, opcode);
  }
  void set(LlPrmField f, uint64_t value) {
    if (!llPrmFits(f, value)) {
      if (bad_ == nullptr) bad_ = f.name;
      return;
    }
    llPrmSet(buf_->data(), f, value);
  }
  // A byte-aligned array field (rgid_rip), copied in wire order.
  void setBytes(LlPrmField f, const uint8_t* src) {
    std::memcpy(buf_->data() + f.bitOffset / 8, src, f.bitWidth / 8);
  }
  const char* bad() const { return bad_; }

 private:
  std::vector<uint8_t>* buf_;
  const char* bad_ = nullptr;
};

constexpr LlPrmField cqc(LlPrmField f) { return llPrmIn(kLlPrmCreateCqInCqContext, f); }
constexpr LlPrmField createQpc(LlPrmField f) { return llPrmIn(kLlPrmCreateQpInQpc, f); }
constexpr LlPrmField modifyQpc(LlPrmField f) { return llPrmIn(kLlPrmModifyQpInQpc, f); }
constexpr LlPrmField modifyAds(LlPrmField f) { return modifyQpc(llPrmIn(kLlPrmQpcPrimaryAddressPath, f)); }

// Starts one of the three QP transitions: its opcode, the QP it applies to.
Writer modifyQp(uint16_t opcode, uint32_t qpn, std::vector<uint8_t>* in, size_t* outSize) {
  Writer w(in, kLlPrmModifyQpInBytes, opcode);
  w.set(kLlPrmModifyQpInQpn, qpn);
  *outSize = kLlPrmModifyQpOutBytes;
  return w;
}

uint32_t get32(const uint8_t* buf, LlPrmField f) { return static_cast<uint32_t>(llPrmGet(buf, f)); }
uint32_t cap(const uint8_t* out, LlPrmField f) {
  return get32(out, llPrmIn(kLlPrmQueryHcaCapOutCapability, f));
}

}  // namespace

const char* llPrmBuildCreateCq(const LlPrmCreateCqParams& p, std::vector<uint8_t>* in, size_t* outSize) {
  Writer w(in, kLlPrmCreateCqInBytes, kLlPrmOpCreateCq);
  w.set(cqc(kLlPrmCqcDbrUmemValid), 1);
  w.set(cqc(kLlPrmCqcCqeSz), 0);
  w.set(cqc(kLlPrmCqcOi), p.overrunIgnore ? 1 : 0);
  w.set(cqc(kLlPrmCqcDbrUmemId), p.dbrUmemId);
  w.set(cqc(kLlPrmCqcLogCqSize), p.logCqSize);
  w.set(cqc(kLlPrmCqcUarPage), p.uarPage);
  w.set(cqc(kLlPrmCqcCEqnOrApuElement), p.eqn);
  w.set(cqc(kLlPrmCqcDbrAddr), p.dbrUmemOffset);
  w.set(kLlPrmCreateCqInCqUmemOffset, p.cqUmemOffset);
  w.set(kLlPrmCreateCqInCqUmemId, p.cqUmemId);
  w.set(kLlPrmCreateCqInCqUmemValid, 1);
  *outSize = kLlPrmCreateCqOutBytes;
  return w.bad();
}

const char* llPrmBuildCreateQp(const LlPrmCreateQpParams& p, std::vector<uint8_t>* in, size_t* outSize) {
  Writer w(in, kLlPrmCreateQpInBytes, kLlPrmOpCreateQp);
  w.set(createQpc(kLlPrmQpcSt), kLlPrmQpcStRc);
  w.set(createQpc(kLlPrmQpcPmState), kLlPrmQpcPmStateMigrated);
  w.set(createQpc(kLlPrmQpcPd), p.pd);
  w.set(createQpc(kLlPrmQpcLogRqSize), 0);
  w.set(createQpc(kLlPrmQpcNoSq), 0);
  w.set(createQpc(kLlPrmQpcLogSqSize), p.logSqSize);
  w.set(createQpc(kLlPrmQpcUarPage), p.uarPage);
  w.set(createQpc(kLlPrmQpcCqnSnd), p.cqnSnd);
  w.set(createQpc(kLlPrmQpcCqnRcv), p.cqnRcv);
  w.set(createQpc(kLlPrmQpcDbrAddr), p.dbrUmemOffset);
  w.set(createQpc(kLlPrmQpcRqType), kLlPrmQpcRqTypeZeroSizeRq);
  w.set(createQpc(kLlPrmQpcDbrUmemValid), 1);
  w.set(createQpc(kLlPrmQpcDbrUmemId), p.dbrUmemId);
  w.set(kLlPrmCreateQpInWqUmemOffset, p.wqUmemOffset);
  w.set(kLlPrmCreateQpInWqUmemId, p.wqUmemId);
  w.set(kLlPrmCreateQpInWqUmemValid, 1);
  *outSize = kLlPrmCreateQpOutBytes;
  return w.bad();
}

const char* llPrmBuildRst2init(const LlPrmRst2initParams& p, std::vector<uint8_t>* in, size_t* outSize) {
  Writer w = modifyQp(kLlPrmOpRst2initQp, p.qpn, in, outSize);
  w.set(modifyQpc(kLlPrmQpcPd), p.pd);
  w.set(modifyAds(kLlPrmAdsVhcaPortNum), p.vhcaPortNum);
  w.set(modifyQpc(kLlPrmQpcRre), p.remoteRead ? 1 : 0);
  w.set(modifyQpc(kLlPrmQpcRwe), p.remoteWrite ? 1 : 0);
  w.set(modifyQpc(kLlPrmQpcRae), p.remoteAtomic ? 1 : 0);
  w.set(modifyQpc(kLlPrmQpcAtomicMode), p.atomicMode);
  return w.bad();
}

const char* llPrmBuildInit2rtr(const LlPrmInit2rtrParams& p, std::vector<uint8_t>* in, size_t* outSize) {
  Writer w = modifyQp(kLlPrmOpInit2rtrQp, p.qpn, in, outSize);
  w.set(modifyQpc(kLlPrmQpcMtu), p.mtu);
  w.set(modifyQpc(kLlPrmQpcLogMsgMax), p.logMsgMax);
  w.set(modifyQpc(kLlPrmQpcRemoteQpn), p.remoteQpn);
  w.set(modifyQpc(kLlPrmQpcNextRcvPsn), p.nextRcvPsn);
  w.set(modifyQpc(kLlPrmQpcLogRraMax), p.logRraMax);
  w.set(modifyQpc(kLlPrmQpcMinRnrNak), p.minRnrNak);
  const LlPrmAddressPath& a = p.path;
  w.set(modifyAds(kLlPrmAdsFl), a.forceLoopback ? 1 : 0);
  w.set(modifyAds(kLlPrmAdsGrh), a.grh ? 1 : 0);
  w.set(modifyAds(kLlPrmAdsRlid), a.rlid);
  w.set(modifyAds(kLlPrmAdsSrcAddrIndex), a.srcAddrIndex);
  w.set(modifyAds(kLlPrmAdsHopLimit), a.hopLimit);
  w.set(modifyAds(kLlPrmAdsTclass), a.tclass);
  w.setBytes(modifyAds(kLlPrmAdsRgidRip), a.rgid);
  w.set(modifyAds(kLlPrmAdsDscp), a.dscp);
  w.set(modifyAds(kLlPrmAdsUdpSport), a.udpSport);
  w.set(modifyAds(kLlPrmAdsVhcaPortNum), a.vhcaPortNum);
  // rmac_47_32 holds the MAC's first two bytes (the first on the wire most significant), rmac_31_0 the rest.
  w.set(modifyAds(kLlPrmAdsRmac47_32), uint32_t{a.rmac[0]} << 8 | a.rmac[1]);
  w.set(modifyAds(kLlPrmAdsRmac31_0),
        uint32_t{a.rmac[2]} << 24 | uint32_t{a.rmac[3]} << 16 | uint32_t{a.rmac[4]} << 8 | a.rmac[5]);
  return w.bad();
}

const char* llPrmBuildRtr2rts(const LlPrmRtr2rtsParams& p, std::vector<uint8_t>* in, size_t* outSize) {
  Writer w = modifyQp(kLlPrmOpRtr2rtsQp, p.qpn, in, outSize);
  w.set(modifyQpc(kLlPrmQpcNextSendPsn), p.nextSendPsn);
  w.set(modifyQpc(kLlPrmQpcLogSraMax), p.logSraMax);
  w.set(modifyQpc(kLlPrmQpcRetryCount), p.retryCount);
  w.set(modifyQpc(kLlPrmQpcRnrRetry), p.rnrRetry);
  w.set(modifyAds(kLlPrmAdsAckTimeout), p.ackTimeout);
  return w.bad();
}

void llPrmBuildQueryHcaCap(uint16_t opMod, std::vector<uint8_t>* in, size_t* outSize) {
  Writer w(in, kLlPrmQueryHcaCapInBytes, kLlPrmOpQueryHcaCap);
  w.set(kLlPrmCmdInOpMod, opMod);
  *outSize = kLlPrmQueryHcaCapOutBytes;
}

LlPrmCmdStatus llPrmDecodeStatus(const uint8_t* out) {
  return {static_cast<uint8_t>(llPrmGet(out, kLlPrmCmdOutStatus)), get32(out, kLlPrmCmdOutSyndrome)};
}

uint32_t llPrmDecodeCqn(const uint8_t* out) { return get32(out, kLlPrmCreateCqOutCqn); }

uint32_t llPrmDecodeQpn(const uint8_t* out) { return get32(out, kLlPrmCreateQpOutQpn); }

LlPrmGeneralCaps llPrmDecodeGeneralCaps(const uint8_t* out) {
  LlPrmGeneralCaps c;
  c.logMaxQpSz = cap(out, kLlPrmCmdHcaCapLogMaxQpSz);
  c.logMaxQp = cap(out, kLlPrmCmdHcaCapLogMaxQp);
  c.logMaxCqSz = cap(out, kLlPrmCmdHcaCapLogMaxCqSz);
  c.logMaxCq = cap(out, kLlPrmCmdHcaCapLogMaxCq);
  c.logMaxRaReqQp = cap(out, kLlPrmCmdHcaCapLogMaxRaReqQp);
  c.logMaxRaResQp = cap(out, kLlPrmCmdHcaCapLogMaxRaResQp);
  c.logMaxMsg = cap(out, kLlPrmCmdHcaCapLogMaxMsg);
  c.portType = cap(out, kLlPrmCmdHcaCapPortType);
  c.roce = cap(out, kLlPrmCmdHcaCapRoce) != 0;
  c.atomic = cap(out, kLlPrmCmdHcaCapAtomic) != 0;
  return c;
}

LlPrmAtomicCaps llPrmDecodeAtomicCaps(const uint8_t* out) {
  return {cap(out, kLlPrmAtomicCapsAtomicReq8BEndiannessMode), cap(out, kLlPrmAtomicCapsAtomicOperations),
          cap(out, kLlPrmAtomicCapsAtomicSizeQp)};
}
