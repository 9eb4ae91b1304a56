// The mlx5 firmware commands that the ibgda host setup sends through DevX (mlx5dv_devx_obj_create,
// mlx5dv_devx_obj_modify and mlx5dv_devx_general_cmd take raw command bytes): CREATE_CQ, CREATE_QP,
// RST2INIT_QP, INIT2RTR_QP, RTR2RTS_QP and QUERY_HCA_CAP. rdma-core's public headers do not describe these
// layouts, so this file keeps the few fields llep uses, transcribed from the PRM tables as facts: a bit
// offset from the start of the structure and a width. test/cpu/test_prm_cmd.cc checks them against golden
// bytes written by hand from those offsets.
//
// Bit numbering (as the PRM tables and mlx5_ifc.h's "reserved_at_<hex>" names count): a structure is a run of
// big-endian 32-bit dwords, bit 0 is the most significant bit of the first byte, so bit b lives in byte
// b / 8 at mask 0x80 >> (b % 8). A field of width w at offset b holds its value most significant bit first
// in bits b .. b + w - 1. Multi-dword fields (64-bit addresses, the 128-bit GID) follow the same rule.
//
// Values that the encoders set and the caller does not choose (all fields not listed are written as zero):
//   CREATE_CQ  cqe_sz 0 (64-byte CQEs), cq_umem_valid 1, dbr_umem_valid 1 (ring and record are in UMEM).
//   CREATE_QP  st RC, pm_state MIGRATED, rq_type ZERO_SIZE_RQ with log_rq_size 0 (send-only QP), no_sq 0,
//              wq_umem_valid 1, dbr_umem_valid 1.
//   modify QP  opt_param_mask 0 (only the fields each transition requires are set).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

// One PRM field: where it starts (bits from the start of its structure) and how wide it is; name is the PRM
// field name, used in error messages. llPrmSet/llPrmGet take widths 1..64; the one wider field (rgid_rip)
// is a byte array, copied as bytes.
struct LlPrmField {
  uint32_t bitOffset;
  uint32_t bitWidth;
  const char* name;
};

// The same field inside an enclosing structure that places its sub-structure at bit baseBit (e.g. a qpc
// field inside create_qp_in, or an address-path field inside qpc).
constexpr LlPrmField llPrmIn(uint32_t baseBit, LlPrmField f) {
  return {baseBit + f.bitOffset, f.bitWidth, f.name};
}

// Whether value fits in the field (widths 1..64).
constexpr bool llPrmFits(LlPrmField f, uint64_t value) {
  return f.bitWidth >= 64 || (value >> f.bitWidth) == 0;
}

// Writes value's low f.bitWidth bits into the field; every other bit of buf is left as it was.
void llPrmSet(uint8_t* buf, LlPrmField f, uint64_t value);
// Reads the field (widths 1..64).
uint64_t llPrmGet(const uint8_t* buf, LlPrmField f);

// ---- Opcodes (PRM "Command Opcodes") ----------------------------------------------------------------------
constexpr uint16_t kLlPrmOpQueryHcaCap = 0x100;
constexpr uint16_t kLlPrmOpCreateCq = 0x400;
constexpr uint16_t kLlPrmOpCreateQp = 0x500;
constexpr uint16_t kLlPrmOpRst2initQp = 0x502;
constexpr uint16_t kLlPrmOpInit2rtrQp = 0x503;
constexpr uint16_t kLlPrmOpRtr2rtsQp = 0x504;

// ---- Command header (the first two dwords of every command's input and output) ----------------------------
// Input: opcode [0x00,16), uid [0x10,16) (filled by the kernel for DevX), op_mod [0x30,16).
constexpr LlPrmField kLlPrmCmdInOpcode{0x00, 16, "opcode"};
constexpr LlPrmField kLlPrmCmdInOpMod{0x30, 16, "op_mod"};
// Output: status [0x00,8), syndrome [0x20,32) (firmware's detail code when status != 0).
constexpr LlPrmField kLlPrmCmdOutStatus{0x00, 8, "status"};
constexpr LlPrmField kLlPrmCmdOutSyndrome{0x20, 32, "syndrome"};

// Command status (PRM "Return Status Summary"): 0 is success.
constexpr uint8_t kLlPrmStatusOk = 0x00;
// A short name for a command status ("bad parameter", ...), or "unknown status".
const char* llPrmStatusName(uint8_t status);

// ---- cqc: CQ context (0x200 bits) -------------------------------------------------------------------------
constexpr uint32_t kLlPrmCqcBits = 0x200;
constexpr LlPrmField kLlPrmCqcDbrUmemValid{0x06, 1, "dbr_umem_valid"};
constexpr LlPrmField kLlPrmCqcCqeSz{0x08, 3, "cqe_sz"};  // 0: 64-byte CQEs
constexpr LlPrmField kLlPrmCqcOi{0x0e, 1, "oi"};         // overrun ignore
constexpr LlPrmField kLlPrmCqcDbrUmemId{0x20, 32, "dbr_umem_id"};
constexpr LlPrmField kLlPrmCqcLogCqSize{0x63, 5, "log_cq_size"};
constexpr LlPrmField kLlPrmCqcUarPage{0x68, 24, "uar_page"};
// Older PRM revisions name the low 8 bits c_eqn (reserved above); writing the whole dword covers both.
constexpr LlPrmField kLlPrmCqcCEqnOrApuElement{0xa0, 32, "c_eqn_or_apu_element"};
// With dbr_umem_valid, dbr_addr is the doorbell record's byte offset inside the dbr_umem_id UMEM.
constexpr LlPrmField kLlPrmCqcDbrAddr{0x1c0, 64, "dbr_addr"};

// ---- create_cq_in / create_cq_out -------------------------------------------------------------------------
constexpr uint32_t kLlPrmCreateCqInCqContext = 0x80;  // bit offset of the cqc
constexpr LlPrmField kLlPrmCreateCqInCqUmemOffset{0x280, 64, "cq_umem_offset"};
constexpr LlPrmField kLlPrmCreateCqInCqUmemId{0x2c0, 32, "cq_umem_id"};
constexpr LlPrmField kLlPrmCreateCqInCqUmemValid{0x2e0, 1, "cq_umem_valid"};
constexpr size_t kLlPrmCreateCqInBytes = 0x880 / 8;  // up to the (unused) pas list
constexpr LlPrmField kLlPrmCreateCqOutCqn{0x48, 24, "cqn"};
constexpr size_t kLlPrmCreateCqOutBytes = 0x80 / 8;

// ---- ads: address path (0x160 bits; qpc holds the primary one) --------------------------------------------
constexpr uint32_t kLlPrmAdsBits = 0x160;
constexpr LlPrmField kLlPrmAdsFl{0x00, 1, "fl"};  // force loopback
constexpr LlPrmField kLlPrmAdsGrh{0x28, 1, "grh"};
constexpr LlPrmField kLlPrmAdsRlid{0x30, 16, "rlid"};
constexpr LlPrmField kLlPrmAdsAckTimeout{0x40, 5, "ack_timeout"};
constexpr LlPrmField kLlPrmAdsSrcAddrIndex{0x48, 8, "src_addr_index"};  // local GID index
constexpr LlPrmField kLlPrmAdsHopLimit{0x58, 8, "hop_limit"};
constexpr LlPrmField kLlPrmAdsTclass{0x64, 8, "tclass"};
constexpr LlPrmField kLlPrmAdsRgidRip{0x80, 128, "rgid_rip"};  // remote GID / IP, in wire byte order
constexpr LlPrmField kLlPrmAdsDscp{0x10a, 6, "dscp"};           // RoCE v2: the IP header's DSCP
constexpr LlPrmField kLlPrmAdsUdpSport{0x110, 16, "udp_sport"};  // RoCE v2: the UDP source port
constexpr LlPrmField kLlPrmAdsVhcaPortNum{0x128, 8, "vhca_port_num"};
constexpr LlPrmField kLlPrmAdsRmac47_32{0x130, 16, "rmac_47_32"};  // RoCE: remote MAC bytes 0..1
constexpr LlPrmField kLlPrmAdsRmac31_0{0x140, 32, "rmac_31_0"};    // RoCE: remote MAC bytes 2..5

// ---- qpc: QP context (0x740 bits) -------------------------------------------------------------------------
constexpr uint32_t kLlPrmQpcBits = 0x740;
constexpr LlPrmField kLlPrmQpcSt{0x08, 8, "st"};
constexpr LlPrmField kLlPrmQpcPmState{0x13, 2, "pm_state"};
constexpr LlPrmField kLlPrmQpcPd{0x28, 24, "pd"};
constexpr LlPrmField kLlPrmQpcMtu{0x40, 3, "mtu"};  // 1 = 256 ... 5 = 4096 bytes, as enum ibv_mtu
constexpr LlPrmField kLlPrmQpcLogMsgMax{0x43, 5, "log_msg_max"};
constexpr LlPrmField kLlPrmQpcLogRqSize{0x49, 4, "log_rq_size"};
constexpr LlPrmField kLlPrmQpcNoSq{0x50, 1, "no_sq"};
constexpr LlPrmField kLlPrmQpcLogSqSize{0x51, 4, "log_sq_size"};  // log2 of the send queue's WQEBBs
constexpr LlPrmField kLlPrmQpcUarPage{0x68, 24, "uar_page"};
constexpr LlPrmField kLlPrmQpcRemoteQpn{0xa8, 24, "remote_qpn"};
constexpr uint32_t kLlPrmQpcPrimaryAddressPath = 0xc0;  // bit offset of the primary ads
constexpr LlPrmField kLlPrmQpcLogSraMax{0x388, 3, "log_sra_max"};
constexpr LlPrmField kLlPrmQpcRetryCount{0x38d, 3, "retry_count"};
constexpr LlPrmField kLlPrmQpcRnrRetry{0x390, 3, "rnr_retry"};
constexpr LlPrmField kLlPrmQpcNextSendPsn{0x3c8, 24, "next_send_psn"};
constexpr LlPrmField kLlPrmQpcCqnSnd{0x3e8, 24, "cqn_snd"};
constexpr LlPrmField kLlPrmQpcLogRraMax{0x488, 3, "log_rra_max"};
constexpr LlPrmField kLlPrmQpcAtomicMode{0x48c, 4, "atomic_mode"};
constexpr LlPrmField kLlPrmQpcRre{0x490, 1, "rre"};  // remote read enable
constexpr LlPrmField kLlPrmQpcRwe{0x491, 1, "rwe"};  // remote write enable
constexpr LlPrmField kLlPrmQpcRae{0x492, 1, "rae"};  // remote atomic enable
constexpr LlPrmField kLlPrmQpcMinRnrNak{0x4a3, 5, "min_rnr_nak"};
constexpr LlPrmField kLlPrmQpcNextRcvPsn{0x4a8, 24, "next_rcv_psn"};
constexpr LlPrmField kLlPrmQpcCqnRcv{0x4e8, 24, "cqn_rcv"};
// With dbr_umem_valid, dbr_addr is the doorbell record's byte offset inside the dbr_umem_id UMEM.
constexpr LlPrmField kLlPrmQpcDbrAddr{0x500, 64, "dbr_addr"};
constexpr LlPrmField kLlPrmQpcRqType{0x565, 3, "rq_type"};
constexpr LlPrmField kLlPrmQpcDbrUmemValid{0x683, 1, "dbr_umem_valid"};
constexpr LlPrmField kLlPrmQpcDbrUmemId{0x720, 32, "dbr_umem_id"};

constexpr uint32_t kLlPrmQpcStRc = 0x0;
constexpr uint32_t kLlPrmQpcPmStateMigrated = 0x3;
constexpr uint32_t kLlPrmQpcRqTypeZeroSizeRq = 0x3;
// atomic_mode: 1 = IB-compliant (8-byte big-endian atomics only); 3 = extended atomics of up to 8 bytes,
// which the masked fetch-add WQEs need.
constexpr uint32_t kLlPrmQpcAtomicModeIbComp = 0x1;
constexpr uint32_t kLlPrmQpcAtomicModeUpTo8B = 0x3;

// ---- create_qp_in / create_qp_out -------------------------------------------------------------------------
constexpr uint32_t kLlPrmCreateQpInQpc = 0xc0;  // bit offset of the qpc
constexpr LlPrmField kLlPrmCreateQpInWqUmemOffset{0x800, 64, "wq_umem_offset"};
constexpr LlPrmField kLlPrmCreateQpInWqUmemId{0x840, 32, "wq_umem_id"};
constexpr LlPrmField kLlPrmCreateQpInWqUmemValid{0x860, 1, "wq_umem_valid"};
constexpr size_t kLlPrmCreateQpInBytes = 0x880 / 8;  // up to the (unused) pas list
constexpr LlPrmField kLlPrmCreateQpOutQpn{0x48, 24, "qpn"};
constexpr size_t kLlPrmCreateQpOutBytes = 0x80 / 8;

// ---- rst2init_qp_in, init2rtr_qp_in, rtr2rts_qp_in (one layout) and their outputs -------------------------
constexpr LlPrmField kLlPrmModifyQpInQpn{0x48, 24, "qpn"};
constexpr uint32_t kLlPrmModifyQpInQpc = 0xc0;  // bit offset of the qpc
constexpr size_t kLlPrmModifyQpInBytes = 0x880 / 8;
constexpr size_t kLlPrmModifyQpOutBytes = 0x80 / 8;

// ---- query_hca_cap_in / query_hca_cap_out -----------------------------------------------------------------
// op_mod = capability type << 1 | 1 (current values, not maximums); type 0 = general device, 3 = atomic.
constexpr uint16_t kLlPrmHcaCapOpModGeneralCur = (0x0 << 1) | 1;
constexpr uint16_t kLlPrmHcaCapOpModAtomicCur = (0x3 << 1) | 1;
constexpr size_t kLlPrmQueryHcaCapInBytes = 0x80 / 8;
constexpr uint32_t kLlPrmQueryHcaCapOutCapability = 0x80;  // bit offset of the capability union
constexpr size_t kLlPrmQueryHcaCapOutBytes = (0x80 + 0x8000) / 8;

// cmd_hca_cap (general device capabilities), offsets within the capability.
constexpr LlPrmField kLlPrmCmdHcaCapLogMaxQpSz{0x88, 8, "log_max_qp_sz"};
constexpr LlPrmField kLlPrmCmdHcaCapLogMaxQp{0x9b, 5, "log_max_qp"};
constexpr LlPrmField kLlPrmCmdHcaCapLogMaxCqSz{0xc8, 8, "log_max_cq_sz"};
constexpr LlPrmField kLlPrmCmdHcaCapLogMaxCq{0xdb, 5, "log_max_cq"};
constexpr LlPrmField kLlPrmCmdHcaCapLogMaxRaReqQp{0x14a, 6, "log_max_ra_req_qp"};
constexpr LlPrmField kLlPrmCmdHcaCapLogMaxRaResQp{0x15a, 6, "log_max_ra_res_qp"};
constexpr LlPrmField kLlPrmCmdHcaCapPortType{0x1b6, 2, "port_type"};
constexpr LlPrmField kLlPrmCmdHcaCapLogMaxMsg{0x1c3, 5, "log_max_msg"};
constexpr LlPrmField kLlPrmCmdHcaCapRoce{0x21d, 1, "roce"};
constexpr LlPrmField kLlPrmCmdHcaCapAtomic{0x21e, 1, "atomic"};
constexpr uint32_t kLlPrmPortTypeIb = 0x0;
constexpr uint32_t kLlPrmPortTypeEth = 0x1;

// atomic_caps, offsets within the capability.
constexpr LlPrmField kLlPrmAtomicCapsAtomicReq8BEndiannessMode{0x40, 2, "atomic_req_8B_endianness_mode"};
constexpr LlPrmField kLlPrmAtomicCapsAtomicOperations{0x90, 16, "atomic_operations"};
constexpr LlPrmField kLlPrmAtomicCapsAtomicSizeQp{0xb0, 16, "atomic_size_qp"};  // bit n: 2^n-byte operands
constexpr uint32_t kLlPrmAtomicOpsFetchAdd = 1u << 1;
constexpr uint32_t kLlPrmAtomicOpsMaskedFetchAdd = 1u << 3;

// ---- Encoders ---------------------------------------------------------------------------------------------
// Each fills *in with the command's input (resized, zeroed, then the fields written) and sets *outSize to the
// size of the output buffer to pass with it. Returns nullptr, or the PRM name of the first field a parameter
// does not fit (then *in is not usable).

struct LlPrmCreateCqParams {
  uint32_t logCqSize;      // log2 of the number of 64-byte CQEs
  uint32_t uarPage;        // UAR page index (mlx5dv_devx_uar::page_id)
  uint32_t eqn;            // completion EQ (mlx5dv_devx_query_eqn)
  uint32_t cqUmemId;       // UMEM holding the CQE ring
  uint64_t cqUmemOffset;   // the ring's byte offset in it
  uint32_t dbrUmemId;      // UMEM holding the doorbell record
  uint64_t dbrUmemOffset;  // the record's byte offset in it
  bool overrunIgnore;      // cqc.oi: the device does not fail the CQ when it overruns
};
const char* llPrmBuildCreateCq(const LlPrmCreateCqParams& p, std::vector<uint8_t>* in, size_t* outSize);

struct LlPrmCreateQpParams {
  uint32_t pd;             // protection domain number (mlx5dv_pd::pdn)
  uint32_t uarPage;        // UAR page of the send doorbell
  uint32_t logSqSize;      // log2 of the send queue's WQEBBs
  uint32_t cqnSnd;         // CQ of send completions
  uint32_t cqnRcv;         // CQ of receive completions (required even with a zero-size RQ)
  uint32_t wqUmemId;       // UMEM holding the work queue
  uint64_t wqUmemOffset;   // the queue's byte offset in it
  uint32_t dbrUmemId;      // UMEM holding the doorbell record
  uint64_t dbrUmemOffset;  // the record's byte offset in it
};
const char* llPrmBuildCreateQp(const LlPrmCreateQpParams& p, std::vector<uint8_t>* in, size_t* outSize);

// RST -> INIT: port, remote access rights and the atomic mode the responder applies.
struct LlPrmRst2initParams {
  uint32_t qpn;
  uint32_t pd;
  uint32_t vhcaPortNum;  // 1-based port number
  bool remoteRead;       // rre
  bool remoteWrite;      // rwe
  bool remoteAtomic;     // rae
  uint32_t atomicMode;   // kLlPrmQpcAtomicMode*
};
const char* llPrmBuildRst2init(const LlPrmRst2initParams& p, std::vector<uint8_t>* in, size_t* outSize);

// The primary address path of INIT -> RTR. IB: rlid, and grh with rgid when the peer is routed. RoCE: grh,
// rgid (the peer's GID), srcAddrIndex (local GID index), hopLimit, tclass and rmac (from the address handle);
// RoCE v2 adds udpSport and dscp, which RoCE v1 (no UDP/IP header) leaves zero.
struct LlPrmAddressPath {
  bool grh;
  uint32_t rlid;
  uint8_t rgid[16];  // wire order
  uint32_t srcAddrIndex;
  uint32_t hopLimit;
  uint32_t tclass;
  uint32_t dscp;
  uint32_t udpSport;
  uint8_t rmac[6];  // wire order
  bool forceLoopback;
  uint32_t vhcaPortNum;
};

struct LlPrmInit2rtrParams {
  uint32_t qpn;
  uint32_t mtu;  // enum ibv_mtu value: 1 = 256 ... 5 = 4096
  uint32_t logMsgMax;
  uint32_t remoteQpn;
  uint32_t nextRcvPsn;
  uint32_t logRraMax;  // log2 of responder RDMA read / atomic resources
  uint32_t minRnrNak;
  LlPrmAddressPath path;
};
const char* llPrmBuildInit2rtr(const LlPrmInit2rtrParams& p, std::vector<uint8_t>* in, size_t* outSize);

struct LlPrmRtr2rtsParams {
  uint32_t qpn;
  uint32_t nextSendPsn;
  uint32_t logSraMax;  // log2 of outstanding RDMA reads / atomics as requester
  uint32_t retryCount;
  uint32_t rnrRetry;
  uint32_t ackTimeout;  // 4.096 us * 2^ackTimeout
};
const char* llPrmBuildRtr2rts(const LlPrmRtr2rtsParams& p, std::vector<uint8_t>* in, size_t* outSize);

// opMod: kLlPrmHcaCapOpMod*.
void llPrmBuildQueryHcaCap(uint16_t opMod, std::vector<uint8_t>* in, size_t* outSize);

// ---- Decoders (out holds at least the command's output size) ----------------------------------------------
struct LlPrmCmdStatus {
  uint8_t status;     // kLlPrmStatusOk, or an error (llPrmStatusName)
  uint32_t syndrome;  // firmware detail code, for error messages
};
LlPrmCmdStatus llPrmDecodeStatus(const uint8_t* out);
uint32_t llPrmDecodeCqn(const uint8_t* out);  // create_cq_out
uint32_t llPrmDecodeQpn(const uint8_t* out);  // create_qp_out

struct LlPrmGeneralCaps {
  uint32_t logMaxQpSz, logMaxQp, logMaxCqSz, logMaxCq;
  uint32_t logMaxRaReqQp, logMaxRaResQp, logMaxMsg;
  uint32_t portType;  // kLlPrmPortType*
  bool roce, atomic;
};
LlPrmGeneralCaps llPrmDecodeGeneralCaps(const uint8_t* out);  // query_hca_cap_out, general op_mod

struct LlPrmAtomicCaps {
  uint32_t atomicReq8BEndiannessMode, atomicOperations, atomicSizeQp;
};
LlPrmAtomicCaps llPrmDecodeAtomicCaps(const uint8_t* out);  // query_hca_cap_out, atomic op_mod
