// The mlx5 facts the NIC model decodes and produces: opcodes, segment layouts, CQE layouts, syndromes.
// Written from the PRM field descriptions as published in rdma-core's <infiniband/mlx5dv.h> (struct and
// enum names are given so each value can be checked there); the model does not include that header, so
// it builds where rdma-core is absent. test_nic_model.cc cross-checks these values against the header
// where it is installed. Every multi-byte field in a WQE or CQE is big-endian.
#pragma once

#include <cstdint>

namespace llnic {
namespace prm {

// Send WQE building block (MLX5_SEND_WQE_BB) and the 16-byte unit that the ctrl segment's DS counts.
constexpr uint32_t kWqeBbBytes = 64;
constexpr uint32_t kDsBytes = 16;
// DS is a 6-bit field of qpn_ds, so one WQE spans at most 63 units (1008 bytes, 16 WQEBBs).
constexpr uint32_t kMaxDs = 63;

// mlx5_wqe_ctrl_seg (16 bytes):
//   [0,4)  opmod_idx_opcode: opmod[31:24] | wqe_index[23:8] | opcode[7:0]   (mlx5dv_set_ctrl_seg)
//   [4,8)  qpn_ds:           qpn[31:8] | ds[7:0]
//   [8]    signature, [9,11) dci_stream_channel_id, [11] fm_ce_se, [12,16) imm
constexpr uint32_t kCtrlOpmodIdxOpcode = 0;
constexpr uint32_t kCtrlQpnDs = 4;
constexpr uint32_t kCtrlFmCeSe = 11;
// fm_ce_se bits (MLX5_WQE_CTRL_*): fence mode in [7:5], completion mode in [3:2], solicited in [1].
constexpr uint8_t kCtrlCqUpdate = 2 << 2;  // CE = 2: write a CQE for this WQE even when it succeeds
constexpr uint32_t kCtrlFenceShift = 5;

// Send opcodes (MLX5_OPCODE_*) the model executes.
constexpr uint8_t kOpNop = 0x00;
constexpr uint8_t kOpRdmaWrite = 0x08;
constexpr uint8_t kOpAtomicFetchAdd = 0x12;
constexpr uint8_t kOpAtomicMaskedFetchAdd = 0x15;
// Extended (masked) atomics select their operand size in the ctrl opmod: 0x08 | (log2(bytes) - 2),
// so 0x08 for 4-byte and 0x09 for 8-byte operands (UCX UCT_IB_MLX5_OPMOD_EXT_ATOMIC, NVSHMEM
// IBGDA_4_BYTE_EXT_AMO_OPMOD / IBGDA_8_BYTE_EXT_AMO_OPMOD).
constexpr uint8_t kOpmodExtAtomic4 = 0x08;
constexpr uint8_t kOpmodExtAtomic8 = 0x09;

// mlx5_wqe_raddr_seg (16 bytes): be64 raddr, be32 rkey, 4 reserved.
constexpr uint32_t kRaddrAddr = 0;
constexpr uint32_t kRaddrRkey = 8;
// mlx5_wqe_data_seg (16 bytes): be32 byte_count, be32 lkey, be64 addr.
constexpr uint32_t kDataByteCount = 0;
constexpr uint32_t kDataLkey = 4;
constexpr uint32_t kDataAddr = 8;
// mlx5_wqe_inl_data_seg: be32 byte_count with MLX5_INLINE_SEG set, then the bytes; the segment
// (header + data) is padded to a multiple of 16 bytes.
constexpr uint32_t kInlineSeg = 0x80000000u;
constexpr uint32_t kInlineHeaderBytes = 4;
// mlx5_wqe_atomic_seg (16 bytes): be64 swap_add, be64 compare (unused by fetch-add).
constexpr uint32_t kAtomicSwapAdd = 0;
// Masked fetch-add segments (16 bytes): 4-byte form be32 add, be32 field_boundary, 8 reserved;
// 8-byte form be64 add, be64 field_boundary.
constexpr uint32_t kMaskedFa4Add = 0;
constexpr uint32_t kMaskedFa4Boundary = 4;
constexpr uint32_t kMaskedFa8Add = 0;
constexpr uint32_t kMaskedFa8Boundary = 8;

// Doorbell records are arrays of be32. An SQ's producer counter (WQEBB units, wrapping at 0xffff) is
// dbrec[MLX5_SND_DBR = 1]; a CQ's consumer index (24 bits) is dbrec[MLX5_CQ_SET_CI = 0].
constexpr uint32_t kSqDbrecOffset = 1 * 4;
constexpr uint32_t kCqDbrecConsumerOffset = 0;
constexpr uint32_t kCqConsumerMask = 0xffffff;

// 64-byte CQE (mlx5_cqe64 for successes, mlx5_err_cqe for errors).
constexpr uint32_t kCqeBytes = 64;
constexpr uint32_t kCqeByteCnt = 44;        // mlx5_cqe64.byte_cnt
constexpr uint32_t kCqeVendorSyndrome = 54;  // mlx5_err_cqe.vendor_err_synd
constexpr uint32_t kCqeSyndrome = 55;        // mlx5_err_cqe.syndrome
constexpr uint32_t kCqeOpcodeQpn = 56;       // sop_drop_qpn / s_wqe_opcode_qpn: WQE opcode[31:24] | qpn
constexpr uint32_t kCqeWqeCounter = 60;      // be16 wqe_counter: wqe_index of the completed WQE
constexpr uint32_t kCqeOpOwn = 63;           // op_own: CQE opcode[7:4] | owner[0]
constexpr uint8_t kCqeOpcodeShift = 4;
constexpr uint8_t kCqeReq = 0x0;     // MLX5_CQE_REQ
constexpr uint8_t kCqeReqErr = 0xd;  // MLX5_CQE_REQ_ERR

// CQE syndromes (MLX5_CQE_SYNDROME_*).
enum class Syndrome : uint8_t {
  kNone = 0x00,
  kLocalLengthErr = 0x01,
  kLocalQpOpErr = 0x02,
  kLocalProtErr = 0x04,
  kWrFlushErr = 0x05,
  kRemoteInvalReqErr = 0x12,
  kRemoteAccessErr = 0x13,
  kTransportRetryExcErr = 0x15,
};

// Vendor syndromes are not documented; these are the values ConnectX devices report next to each
// syndrome in public logs (UCX ib_mlx5_log "synd 0x13 vend 0x88", "synd 0x4 vend 0x51",
// "synd 0x2 vend 0x68"; kernel mlx5_poll_one "syndrome 0x5, vendor syndrome 0xf9"; verbs reports of
// 0x12 with vendor 0x8a and 0x15-class retry errors with vendor 0x81). No public log was found for a
// local length error, so the model reports vendor syndrome 0 there.
constexpr uint8_t vendorSyndrome(Syndrome s) {
  switch (s) {
    case Syndrome::kLocalQpOpErr: return 0x68;
    case Syndrome::kLocalProtErr: return 0x51;
    case Syndrome::kWrFlushErr: return 0xf9;
    case Syndrome::kRemoteInvalReqErr: return 0x8a;
    case Syndrome::kRemoteAccessErr: return 0x88;
    case Syndrome::kTransportRetryExcErr: return 0x81;
    default: return 0;
  }
}

}  // namespace prm
}  // namespace llnic
