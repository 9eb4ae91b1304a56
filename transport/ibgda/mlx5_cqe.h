// Parsing of 64-byte mlx5 completion queue entries (CQEs) and the CQ doorbell record, callable from CUDA
// kernels and host code. Layout: the PRM's "Completion Queue Entry Format" (struct mlx5_cqe64, and
// struct mlx5_err_cqe for error completions, in <infiniband/mlx5dv.h>; checked in test/cpu/test_mlx5_wqe.cc).
//
// Byte map of the fields read here (offsets within the CQE, "be" = big-endian):
//   44..47  byte_cnt          be32: bytes transferred (RDMA read and atomic results, receives)
//   54      vendor_err_synd   error CQEs: the device-specific syndrome
//   55      syndrome          error CQEs: kLlMlx5Synd*
//   56..59  sop_drop_qpn      be32: [31:24] the completed WQE's opcode (requester and error CQEs),
//                             [23:0] the QP number
//   60..61  wqe_counter       be16: for the requester, the wqe_index of the completed WQE
//   63      op_own            [7:4] CQE opcode (kLlMlx5Cqe*), [3:2] CQE format, [1] solicited event,
//                             [0] owner
//
// Ownership: the NIC writes its n-th CQE into slot n mod 2^log with owner bit (n >> log) & 1, so the entry
// for consumer index ci is ready once its owner bit equals the parity of ci's pass over the ring. Slots never
// written hold opcode kLlMlx5CqeInvalid (the host initialises the ring so), which a ready entry never has.
// A poller reads op_own (volatile), tests llMlx5CqeSwOwned, orders its later reads after that one (acquire
// fence), then parses.
#pragma once

#include <stdint.h>
#include <string.h>

#include "transport/ibgda/mlx5_wqe.h"

constexpr uint32_t kLlMlx5CqeBytes = 64;
constexpr uint32_t kLlMlx5CqeByteCntOffset = 44;
constexpr uint32_t kLlMlx5CqeVendorSyndOffset = 54;
constexpr uint32_t kLlMlx5CqeSyndromeOffset = 55;
constexpr uint32_t kLlMlx5CqeQpnOffset = 56;
constexpr uint32_t kLlMlx5CqeWqeCounterOffset = 60;
constexpr uint32_t kLlMlx5CqeOpOwnOffset = 63;

// CQE opcodes, op_own[7:4] (MLX5_CQE_* in mlx5dv.h).
constexpr uint8_t kLlMlx5CqeReq = 0x0;
constexpr uint8_t kLlMlx5CqeRespWrImm = 0x1;
constexpr uint8_t kLlMlx5CqeRespSend = 0x2;
constexpr uint8_t kLlMlx5CqeRespSendImm = 0x3;
constexpr uint8_t kLlMlx5CqeRespSendInv = 0x4;
constexpr uint8_t kLlMlx5CqeReqErr = 0xd;
constexpr uint8_t kLlMlx5CqeRespErr = 0xe;
constexpr uint8_t kLlMlx5CqeInvalid = 0xf;

// Error CQE syndromes (MLX5_CQE_SYNDROME_* in mlx5dv.h).
constexpr uint8_t kLlMlx5SyndLocalLengthErr = 0x01;
constexpr uint8_t kLlMlx5SyndLocalQpOpErr = 0x02;
constexpr uint8_t kLlMlx5SyndLocalProtErr = 0x04;
constexpr uint8_t kLlMlx5SyndWrFlushErr = 0x05;
constexpr uint8_t kLlMlx5SyndMwBindErr = 0x06;
constexpr uint8_t kLlMlx5SyndBadRespErr = 0x10;
constexpr uint8_t kLlMlx5SyndLocalAccessErr = 0x11;
constexpr uint8_t kLlMlx5SyndRemoteInvalReqErr = 0x12;
constexpr uint8_t kLlMlx5SyndRemoteAccessErr = 0x13;
constexpr uint8_t kLlMlx5SyndRemoteOpErr = 0x14;
constexpr uint8_t kLlMlx5SyndTransportRetryExcErr = 0x15;
constexpr uint8_t kLlMlx5SyndRnrRetryExcErr = 0x16;
constexpr uint8_t kLlMlx5SyndRemoteAbortedErr = 0x22;

constexpr uint32_t kLlMlx5CqDbrSetCiIndex = 0;  // word 0 of the CQ doorbell record: the consumer index
constexpr uint32_t kLlMlx5CqCiMask = 0xffffffu; // the record holds 24 bits of it

// The fields of one CQE, in host order. syndrome and vendorSyndrome are meaningful in error CQEs only.
struct LlMlx5Cqe {
  uint8_t opcode;      // kLlMlx5Cqe*
  uint8_t owner;       // 0 or 1
  uint8_t wqeOpcode;   // opcode of the completed WQE (kLlMlx5Op*)
  uint32_t qpn;
  uint16_t wqeCounter;
  uint32_t byteCount;
  uint8_t syndrome;
  uint8_t vendorSyndrome;
};

LL_HD constexpr uint8_t llMlx5CqeOpcode(uint8_t opOwn) { return opOwn >> 4; }
LL_HD constexpr uint8_t llMlx5CqeOwner(uint8_t opOwn) { return opOwn & 1; }
LL_HD constexpr bool llMlx5CqeIsError(uint8_t opcode) {
  return opcode == kLlMlx5CqeReqErr || opcode == kLlMlx5CqeRespErr;
}

// Whether the CQE for consumer index ci (its op_own byte) is ready, in a CQ of 2^logCqSize entries.
LL_HD constexpr bool llMlx5CqeSwOwned(uint8_t opOwn, uint32_t ci, uint32_t logCqSize) {
  return llMlx5CqeOpcode(opOwn) != kLlMlx5CqeInvalid && llMlx5CqeOwner(opOwn) == ((ci >> logCqSize) & 1);
}

// The CQE slot of consumer index ci in a CQ of 2^logCqSize entries at `cq`.
LL_HD inline const void* llMlx5CqeAt(const void* cq, uint32_t logCqSize, uint32_t ci) {
  return static_cast<const uint8_t*>(cq) + (ci & ((1u << logCqSize) - 1)) * kLlMlx5CqeBytes;
}

// Big-endian fields at their (naturally aligned) offsets in the CQE.
LL_HD inline uint32_t llMlx5LoadBe32(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  return llMlx5Be32(*reinterpret_cast<const uint32_t*>(p));
#else
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return llMlx5Be32(v);
#endif
}

LL_HD inline uint16_t llMlx5LoadBe16(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  return llMlx5Be16(*reinterpret_cast<const uint16_t*>(p));
#else
  uint16_t v;
  memcpy(&v, p, sizeof(v));
  return llMlx5Be16(v);
#endif
}

LL_HD inline LlMlx5Cqe llMlx5ParseCqe(const void* cqe) {
  const uint8_t* c = static_cast<const uint8_t*>(cqe);
  const uint32_t opQpn = llMlx5LoadBe32(c + kLlMlx5CqeQpnOffset);
  LlMlx5Cqe r;
  r.opcode = llMlx5CqeOpcode(c[kLlMlx5CqeOpOwnOffset]);
  r.owner = llMlx5CqeOwner(c[kLlMlx5CqeOpOwnOffset]);
  r.wqeOpcode = static_cast<uint8_t>(opQpn >> 24);
  r.qpn = opQpn & kLlMlx5QpnMask;
  r.wqeCounter = llMlx5LoadBe16(c + kLlMlx5CqeWqeCounterOffset);
  r.byteCount = llMlx5LoadBe32(c + kLlMlx5CqeByteCntOffset);
  r.syndrome = c[kLlMlx5CqeSyndromeOffset];
  r.vendorSyndrome = c[kLlMlx5CqeVendorSyndOffset];
  return r;
}

// The CQ doorbell record (word kLlMlx5CqDbrSetCiIndex) after consuming every CQE before ci: be32 of its low
// 24 bits, as a word to store natively.
LL_HD inline uint32_t llMlx5CqDbrValue(uint32_t ci) { return llMlx5Be32(ci & kLlMlx5CqCiMask); }

// The name of an error CQE's syndrome, for messages.
LL_HD inline const char* llMlx5SyndromeName(uint8_t syndrome) {
  switch (syndrome) {
    case kLlMlx5SyndLocalLengthErr: return "LOCAL_LENGTH_ERR";
    case kLlMlx5SyndLocalQpOpErr: return "LOCAL_QP_OP_ERR";
    case kLlMlx5SyndLocalProtErr: return "LOCAL_PROT_ERR";
    case kLlMlx5SyndWrFlushErr: return "WR_FLUSH_ERR";
    case kLlMlx5SyndMwBindErr: return "MW_BIND_ERR";
    case kLlMlx5SyndBadRespErr: return "BAD_RESP_ERR";
    case kLlMlx5SyndLocalAccessErr: return "LOCAL_ACCESS_ERR";
    case kLlMlx5SyndRemoteInvalReqErr: return "REMOTE_INVAL_REQ_ERR";
    case kLlMlx5SyndRemoteAccessErr: return "REMOTE_ACCESS_ERR";
    case kLlMlx5SyndRemoteOpErr: return "REMOTE_OP_ERR";
    case kLlMlx5SyndTransportRetryExcErr: return "TRANSPORT_RETRY_EXC_ERR";
    case kLlMlx5SyndRnrRetryExcErr: return "RNR_RETRY_EXC_ERR";
    case kLlMlx5SyndRemoteAbortedErr: return "REMOTE_ABORTED_ERR";
    default: return "UNKNOWN_SYNDROME";
  }
}
