// ll_perf: nccl-tests-style benchmark of llDispatch / llCombine.
//
//   llrun -np R ll_perf [options]            ranks as local processes (sharing GPUs when R exceeds them)
//   torchrun / mpirun ... ll_perf [options]  one rank per process; llCommInitFromEnv reads the launcher
//
// Per token count (-b .. -e, times -f) it prints one row per operation: dispatch, combine, and "step"
// (one dispatch + combine as a caller sees it), with -z also each call's send and receive phases.
// Times are the median and p99 over -n iterations after -w warm-up ones, taken with CUDA events on the
// stream (step.host: wall clock around the two calls and a stream synchronize). Right before every
// timed call the L2 is flushed (twice its size, read by a kernel; -F write: memset), so the call reads
// its inputs from HBM (in the combine loop, after the untimed dispatch that makes the handle). A read
// flush leaves clean lines of normal priority (it also replaces what a call stored under evict-last);
// a memset leaves the L2 full of dirty ones, and the timed call then also pays for writing those back
// as its misses evict them: up to an L2 of bytes that are not the call's (docs/performance.md,
// "Method"). Then, unless -a 0, an empty dispatch (no tokens) lines the ranks up: it returns once
// every rank has reached it, so one rank's flush does not show up as another rank's wait. Floors come
// from test/perf/perf_floors.h, checks from perf_check.h.
// Exit status: 0, or 1 if any check found a wrong row or any call failed (2: bad usage).
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "device/fp8_quant.h"
#include "llep.h"
#include "test/perf/perf_check.h"
#include "test/perf/perf_common.h"
#include "test/perf/perf_floors.h"
#include "test/perf/perf_io.h"
#include "test/perf/perf_kernels.h"
#include "test/perf/perf_nccl.h"
#include "test/perf/perf_ranks.h"
#include "test/perf/perf_report.h"

namespace {

constexpr int kExchangeTimeoutMs = 300000;
constexpr uint64_t kSeedStride = 1000003;

// ------------------------------------------------------------------------------------------------
// Options

struct Options {
  std::string ops = "both";  // dispatch | combine | both
  int minTokens = 128, maxTokens = 128, factor = 2;
  int hidden = 7168, topk = 8, experts = 256;
  bool fp8 = true;
  bool ue8m0 = false;  // fp8 scales as UE8M0 words (LL_UE8M0)
  int warmup = 10, iters = 50;
  bool check = true, graph = false, sendOnly = false, align = true, nccl = true;
  std::string flush = "read";  // read | write | none
  std::string transport = "auto";
  int sms = 0;
  std::string json;
  bool skipNoGpu = false;

  bool dispatchRows() const { return ops != "combine"; }
  bool combineRows() const { return ops != "dispatch"; }
  bool stepRows() const { return ops == "both"; }
};

void usage(FILE* f) {
  fprintf(f,
          "usage: ll_perf [options]   (launch: llrun -np R ll_perf ..., or one rank per process under\n"
          "                            torchrun / mpirun)\n"
          "  -o dispatch|combine|both  operations to time (default both: dispatch, combine, step)\n"
          "  -b N / -e N / -f F        tokens per rank: from N to N, times F (default 128, 128, 2)\n"
          "  -H N                      hidden size (7168)\n"
          "  -k N                      top-k (8)\n"
          "  -E N                      experts, all ranks together (256)\n"
          "  -d bf16|fp8|fp8-ue8m0     dispatch payload (fp8: a float scale per 128 channels; fp8-ue8m0:\n"
          "                            power-of-two scales as exponent bytes, four a word); combine is bf16\n"
          "  -w N / -n N               warm-up and timed iterations (10, 50)\n"
          "  -c 0|1                    check against the reference on separate iterations (1)\n"
          "  -G 0|1                    capture one dispatch + combine in a CUDA graph and replay it (0)\n"
          "  -z 0|1                    send-only calls, receive phase by llHookRun, timed apart (0)\n"
          "  -a 0|1                    line the ranks up before each timed call with an empty dispatch (1)\n"
          "  -F read|write|none        L2 flush before each timed call: a kernel reads 2 x L2, evict-last\n"
          "                            lines included (clean lines stay), a memset writes it (dirty lines the\n"
          "                            call writes back), or none\n"
          "                            (inputs and code may still be in the L2) (read)\n"
          "  -N 0|1                    NCCL baseline: the same bytes by ncclSend/ncclRecv, one rank per GPU (1)\n"
          "  -t auto|p2p|ibgda         transports (config.transports; auto: the library's choice)\n"
          "  -S N                      SM budget (config.numSms; 0: the library's choice)\n"
          "  -J FILE                   also write the results as JSON\n"
          "  --skip-no-gpu             exit 77 (skipped) instead of 1 where there is no GPU\n"
          "  -h                        this help\n");
}

[[noreturn]] void badUsage(const char* fmt, const char* what) {
  fprintf(stderr, "ll_perf: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, "\n");
  usage(stderr);
  exit(2);
}

int parseInt(const char* flag, const char* text, int min) {
  char* end = nullptr;
  long v = strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < min || v > (1 << 30)) badUsage("bad value for %s", flag);
  return static_cast<int>(v);
}

bool parseBool(const char* flag, const char* text) {
  if (strcmp(text, "0") && strcmp(text, "1")) badUsage("%s takes 0 or 1", flag);
  return text[0] == '1';
}

std::string parseChoice(const char* flag, const char* text, std::initializer_list<const char*> choices) {
  for (const char* c : choices)
    if (!strcmp(text, c)) return c;
  badUsage("bad value for %s", flag);
}

Options parseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string f = argv[i];
    if (f == "-h" || f == "--help") {
      usage(stdout);
      exit(0);
    }
    if (f == "--skip-no-gpu") {
      o.skipNoGpu = true;
      continue;
    }
    if (i + 1 >= argc) badUsage("unknown option or missing value: %s", argv[i]);
    const char* v = argv[++i];
    const char* flag = f.c_str();
    if (f == "-o") o.ops = parseChoice(flag, v, {"dispatch", "combine", "both"});
    else if (f == "-b") o.minTokens = parseInt(flag, v, 1);
    else if (f == "-e") o.maxTokens = parseInt(flag, v, 1);
    else if (f == "-f") o.factor = parseInt(flag, v, 2);
    else if (f == "-H") o.hidden = parseInt(flag, v, 128);
    else if (f == "-k") o.topk = parseInt(flag, v, 1);
    else if (f == "-E") o.experts = parseInt(flag, v, 1);
    else if (f == "-d") {
      std::string d = parseChoice(flag, v, {"bf16", "fp8", "fp8-ue8m0"});
      o.fp8 = d != "bf16";
      o.ue8m0 = d == "fp8-ue8m0";
    }
    else if (f == "-w") o.warmup = parseInt(flag, v, 0);
    else if (f == "-n") o.iters = parseInt(flag, v, 1);
    else if (f == "-c") o.check = parseBool(flag, v);
    else if (f == "-G") o.graph = parseBool(flag, v);
    else if (f == "-z") o.sendOnly = parseBool(flag, v);
    else if (f == "-a") o.align = parseBool(flag, v);
    else if (f == "-F") o.flush = parseChoice(flag, v, {"read", "write", "none"});
    else if (f == "-N") o.nccl = parseBool(flag, v);
    else if (f == "-t") o.transport = parseChoice(flag, v, {"auto", "p2p", "ibgda"});
    else if (f == "-S") o.sms = parseInt(flag, v, 0);
    else if (f == "-J") o.json = v;
    else badUsage("unknown option %s", argv[i - 1]);
  }
  if (o.maxTokens < o.minTokens) badUsage("%s", "-e must be >= -b");
  if (o.topk > LL_MAX_TOPK || o.topk > o.experts)
    badUsage("%s", "-k must be <= 16 and <= -E (a token's experts are distinct)");
  return o;
}

std::vector<int> tokenCounts(const Options& o) {
  std::vector<int> v;
  for (long t = o.minTokens; t <= o.maxTokens; t *= o.factor) v.push_back(static_cast<int>(t));
  return v;
}

// ------------------------------------------------------------------------------------------------
// The run: communicator, buffers, events, and the calls as the loops enqueue them

struct Bench {
  const Options& o;
  const llPerfRanks& ranks;
  const llPerfFloors& floors;
  llComm_t comm;
  cudaStream_t stream;
  llPerfIo& io;
  llPerfNccl* nccl;  // nullptr with -N 0
  int T = 0;  // tokens of the current size
  llDispatchHandle_t handle = LL_DISPATCH_HANDLE_INITIALIZER;
  cudaEvent_t mark[5] = {};    // inside a step: start, dispatch hook, dispatch end, combine hook, end
  cudaEvent_t around[2] = {};  // around a step or a graph launch
  unsigned flushByte = 0;
  long wrongTotal = 0;  // this rank's wrong rows over every check
};

llComm_t initComm(const Options& o) {
  llConfig_t c = LL_CONFIG_INITIALIZER;
  c.maxTokensPerRank = o.maxTokens;
  c.hidden = o.hidden;
  c.numExperts = o.experts;
  c.maxTopk = o.topk;
  if (o.transport == "p2p") c.transports = LL_TRANSPORT_P2P;
  if (o.transport == "ibgda") c.transports = LL_TRANSPORT_IBGDA;
  if (o.sms > 0) c.numSms = o.sms;
  llComm_t comm = nullptr;
  PERF_LL(llCommInitFromEnv(&comm, &c));
  return comm;
}

void record(Bench& b, cudaEvent_t e, bool inGraph) {
  if (!e) return;
  if (inGraph) PERF_CUDA(cudaEventRecordWithFlags(e, b.stream, cudaEventRecordExternal));
  else PERF_CUDA(cudaEventRecord(e, b.stream));
}

void flushL2(Bench& b) {
  if (b.o.flush == "none") return;
  if (b.o.flush == "read") {
    PERF_CUDA(llPerfLaunchReadFlush(b.io.flush, b.io.flushBytes, static_cast<int4*>(b.io.flush), b.stream));
    return;
  }
  PERF_CUDA(cudaMemsetAsync(b.io.flush, static_cast<int>(++b.flushByte & 0xff), b.io.flushBytes, b.stream));
}

// A dispatch of no tokens: it completes on a rank once every rank has signalled, so the call after
// it starts on all ranks at about the same time. Its outputs are its own; recvX gets no rows.
void alignRanks(Bench& b) {
  if (!b.o.align) return;
  llDispatchArgs_t a = LL_DISPATCH_ARGS_INITIALIZER;
  a.topk = b.o.topk;
  a.recvX = b.io.recvX;
  a.recvCount = b.io.alignCount;
  a.srcInfo = b.io.alignSrcInfo;
  a.layoutRange = b.io.alignLayout;
  llDispatchHandle_t h = LL_DISPATCH_HANDLE_INITIALIZER;
  PERF_LL(llDispatch(b.comm, &a, &h, b.stream));
}

// A send-only call's receive phase, enqueued right away; `mid` (if set) marks where the send phase ended.
void runHook(Bench& b, llHook_t* hook, cudaEvent_t mid, bool inGraph) {
  record(b, mid, inGraph);
  PERF_LL(llHookRun(b.comm, hook, b.stream));
}

void dispatch(Bench& b, bool sendOnly, cudaEvent_t mid, bool inGraph) {
  llHook_t hook = LL_HOOK_INITIALIZER;
  llDispatchArgs_t a = LL_DISPATCH_ARGS_INITIALIZER;
  a.flags = (b.o.fp8 ? LL_FP8 : 0) | (b.o.ue8m0 ? LL_UE8M0 : 0) | (sendOnly ? LL_SEND_ONLY : 0);
  a.x = b.io.x;
  a.topkIdx = b.io.topk;
  a.numTokens = b.T;
  a.topk = b.o.topk;
  a.recvX = b.io.recvX;
  a.recvScales = b.o.fp8 ? b.io.scales : nullptr;
  a.recvCount = b.io.recvCount;
  a.srcInfo = b.io.srcInfo;
  a.layoutRange = b.io.layoutRange;
  a.hook = sendOnly ? &hook : nullptr;
  PERF_LL(llDispatch(b.comm, &a, &b.handle, b.stream));
  if (sendOnly) runHook(b, &hook, mid, inGraph);
}

void combine(Bench& b, bool sendOnly, cudaEvent_t mid, bool inGraph) {
  llHook_t hook = LL_HOOK_INITIALIZER;
  llCombineArgs_t a = LL_COMBINE_ARGS_INITIALIZER;
  a.flags = sendOnly ? LL_SEND_ONLY : 0;
  a.x = b.io.y;
  a.topkIdx = b.io.topk;
  a.topkWeights = b.io.weights;
  a.numTokens = b.T;
  a.topk = b.o.topk;
  a.out = b.io.out;
  a.hook = sendOnly ? &hook : nullptr;
  PERF_LL(llCombine(b.comm, &a, &b.handle, b.stream));
  if (sendOnly) runHook(b, &hook, mid, inGraph);
}

// The step a graph replays, with its marks as event nodes.
cudaGraphExec_t captureStep(Bench& b) {
  cudaGraph_t g = nullptr;
  cudaGraphExec_t exec = nullptr;
  PERF_CUDA(cudaStreamBeginCapture(b.stream, cudaStreamCaptureModeThreadLocal));
  record(b, b.mark[0], true);
  dispatch(b, b.o.sendOnly, b.mark[1], true);
  record(b, b.mark[2], true);
  combine(b, b.o.sendOnly, b.mark[3], true);
  record(b, b.mark[4], true);
  PERF_CUDA(cudaStreamEndCapture(b.stream, &g));
  PERF_CUDA(cudaGraphInstantiate(&exec, g, 0));
  PERF_CUDA(cudaGraphDestroy(g));
  return exec;
}

// ------------------------------------------------------------------------------------------------
// Timed loops. Each iteration ends with a stream synchronize, so iterations never overlap and their
// events can be read at once.

using Samples = std::map<std::string, std::vector<double>>;

double elapsedUs(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  PERF_CUDA(cudaEventElapsedTime(&ms, a, b));
  return ms * 1e3;
}

// A call's total, and with send-only its two phases (marks: start, hook, end).
void addCall(Bench& b, Samples* s, const std::string& op, int first) {
  if (!s) return;
  cudaEvent_t* m = b.mark + first;
  (*s)[op].push_back(elapsedUs(m[0], m[2]));
  if (!b.o.sendOnly) return;
  (*s)[op + ".send"].push_back(elapsedUs(m[0], m[1]));
  (*s)[op + ".recv"].push_back(elapsedUs(m[1], m[2]));
}

void dispatchIteration(Bench& b, Samples* s) {
  flushL2(b);
  alignRanks(b);
  record(b, b.mark[0], false);
  dispatch(b, b.o.sendOnly, b.mark[1], false);
  record(b, b.mark[2], false);
  PERF_CUDA(cudaStreamSynchronize(b.stream));
  addCall(b, s, "dispatch", 0);
}

// The untimed dispatch makes the handle; the flush after it leaves none of its output in the L2, so the
// combine starts from the same L2 as every other timed call.
void combineIteration(Bench& b, Samples* s) {
  dispatch(b, false, nullptr, false);
  flushL2(b);
  alignRanks(b);
  record(b, b.mark[0], false);
  combine(b, b.o.sendOnly, b.mark[1], false);
  record(b, b.mark[2], false);
  PERF_CUDA(cudaStreamSynchronize(b.stream));
  addCall(b, s, "combine", 0);
}

// As a caller sees it: the host starts on an idle GPU and waits for the end. The inside marks stay
// out of the eager step (each record would add host time); a graph carries them as nodes.
void stepIteration(Bench& b, cudaGraphExec_t graph, Samples* s) {
  flushL2(b);
  alignRanks(b);
  PERF_CUDA(cudaStreamSynchronize(b.stream));
  auto t0 = std::chrono::steady_clock::now();
  record(b, b.around[0], false);
  if (graph) {
    PERF_CUDA(cudaGraphLaunch(graph, b.stream));
  } else {
    dispatch(b, b.o.sendOnly, nullptr, false);
    combine(b, b.o.sendOnly, nullptr, false);
  }
  record(b, b.around[1], false);
  PERF_CUDA(cudaStreamSynchronize(b.stream));
  auto t1 = std::chrono::steady_clock::now();
  if (!s) return;
  (*s)["step"].push_back(elapsedUs(b.around[0], b.around[1]));
  (*s)["step.host"].push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  if (!graph) return;
  addCall(b, s, "dispatch", 0);
  addCall(b, s, "combine", 2);
}

// Bytes an op moves between this rank and each rank p (self included), for the NCCL baseline.
struct PeerBytes {
  std::vector<size_t> send, recv;
};

// The NCCL baseline of one op, timed as the op is: flush, line up, events around the exchange.
void ncclIteration(Bench& b, const PeerBytes& bytes, const std::string& op, Samples* s) {
  flushL2(b);
  alignRanks(b);
  record(b, b.mark[0], false);
  b.nccl->enqueue(bytes.send, bytes.recv);
  record(b, b.mark[2], false);
  PERF_CUDA(cudaStreamSynchronize(b.stream));
  if (s) (*s)[op + ".nccl"].push_back(elapsedUs(b.mark[0], b.mark[2]));
}

template <typename Iteration>
void timeLoop(Bench& b, Samples* s, Iteration iteration) {
  for (int i = 0; i < b.o.warmup; i++) iteration(nullptr);
  for (int i = 0; i < b.o.iters; i++) iteration(s);
}

Samples timeSize(Bench& b, cudaGraphExec_t graph, const PeerBytes& dispatchBytes, const PeerBytes& combineBytes) {
  Samples s;
  if (graph) {
    timeLoop(b, &s, [&](Samples* out) { stepIteration(b, graph, out); });
    return s;
  }
  bool nccl = b.nccl && b.nccl->ready();
  if (b.o.dispatchRows()) timeLoop(b, &s, [&](Samples* out) { dispatchIteration(b, out); });
  if (b.o.dispatchRows() && nccl)
    timeLoop(b, &s, [&](Samples* out) { ncclIteration(b, dispatchBytes, "dispatch", out); });
  if (b.o.combineRows()) timeLoop(b, &s, [&](Samples* out) { combineIteration(b, out); });
  if (b.o.combineRows() && nccl)
    timeLoop(b, &s, [&](Samples* out) { ncclIteration(b, combineBytes, "combine", out); });
  if (b.o.stepRows()) timeLoop(b, &s, [&](Samples* out) { stepIteration(b, nullptr, out); });
  return s;
}

// ------------------------------------------------------------------------------------------------
// Checks: the step (or the op) as timed, on fresh inputs, outputs poisoned first

struct Wrong {
  long dispatch = -1, combine = -1;
  void add(long& slot, long n) { slot = (slot < 0 ? 0 : slot) + n; }
};

void checkOnce(Bench& b, const llPerfCase& c, cudaGraphExec_t graph, Wrong* w) {
  bool withCombine = graph || b.o.combineRows();
  llPerfUploadInputs(c, b.io, b.stream);
  llPerfPrepareCheck(c, b.io, b.stream);
  if (graph) {
    PERF_CUDA(cudaGraphLaunch(graph, b.stream));
  } else {
    dispatch(b, b.o.sendOnly, nullptr, false);
    if (withCombine) combine(b, b.o.sendOnly, nullptr, false);
  }
  long d = llPerfCheckDispatch(c, b.io, b.stream);
  w->add(w->dispatch, d);
  b.wrongTotal += d;
  if (!withCombine) return;
  long cw = llPerfCheckCombine(c, b.io, b.stream);
  w->add(w->combine, cw);
  b.wrongTotal += cw;
}

// ------------------------------------------------------------------------------------------------
// Rows: bytes, floors, and the other ranks' numbers

// A dispatched row's payload: bf16, or fp8 plus its scales (a float per group, or a UE8M0 byte per
// group in whole int32 words).
double dispatchPayloadBytes(const Options& o) {
  if (!o.fp8) return 2.0 * o.hidden;
  return o.hidden + (o.ue8m0 ? 4.0 * llUe8m0Words(o.hidden) : 4.0 * (o.hidden / kLlQuantGroup));
}

// DeepEP's bytes per (token, k) pair: the payload and a 16-byte header.
double dispatchPairBytes(const Options& o) { return dispatchPayloadBytes(o) + 16; }
double combinePairBytes(const Options& o) { return 2.0 * o.hidden; }

// Pairs whose expert lives on another GPU of this host (their payload must cross the link).
long remotePairs(const Bench& b, const llPerfCase& c) {
  if (b.ranks.gpus < 2 || !b.ranks.singleHost) return 0;
  int El = b.o.experts / b.ranks.world;
  long n = 0;
  for (int64_t e : c.mine().topk)
    n += e >= 0 && llPerfGpuOf(b.ranks, static_cast<int>(e / El)) != b.ranks.device;
  return n;
}

// Bytes that must cross HBM once: each input read once, each output written once. Dispatch: x and
// topk in, recvX rows, their scales (fp8) and srcInfo out. Combine: the expert-output rows, topk and
// weights in, out written. Only the payload must cross the link.
llPerfTraffic traffic(const Bench& b, const llPerfCase& c, const std::string& op) {
  const Options& o = b.o;
  double pairs = llPerfValidPairs(c), remote = remotePairs(b, c), T = c.T, H = o.hidden, K = o.topk;
  double payload = dispatchPayloadBytes(o);
  llPerfTraffic d{T * 2 * H + T * K * 8 + pairs * (payload + 4), remote * payload};
  llPerfTraffic cb{pairs * 2 * H + T * K * 12 + T * 2 * H, remote * 2 * H};
  if (op == "dispatch") return d;
  if (op == "combine") return cb;
  return llPerfTraffic{d.hbmBytes + cb.hbmBytes, d.linkBytes + cb.linkBytes};
}

// Per peer: dispatch sends each (token, k) pair's message to the rank of its expert; combine sends the
// expert outputs back the other way, 2H bytes a pair.
PeerBytes peerBytes(const Bench& b, const llPerfCase& c, bool dispatch) {
  int R = b.ranks.world, me = b.ranks.rank, El = b.o.experts / R;
  std::vector<size_t> mineTo(R, 0), toMe(R, 0);  // pairs: mine with an expert on p; p's with one on me
  for (int q = 0; q < R; q++)
    for (int64_t e : c.inputs[q].topk) {
      if (e < 0) continue;
      int owner = static_cast<int>(e / El);
      if (q == me) mineTo[owner]++;
      if (owner == me) toMe[q]++;
    }
  size_t pairBytes = static_cast<size_t>(dispatch ? dispatchPairBytes(b.o) : combinePairBytes(b.o));
  PeerBytes p{std::vector<size_t>(R), std::vector<size_t>(R)};
  for (int q = 0; q < R; q++) {
    p.send[q] = (dispatch ? mineTo[q] : toMe[q]) * pairBytes;
    p.recv[q] = (dispatch ? toMe[q] : mineTo[q]) * pairBytes;
  }
  return p;
}

llPerfRow makeRow(const Bench& b, const llPerfCase& c, const std::string& op, const Samples& s,
                  const Wrong& w) {
  const std::vector<double>& us = s.at(op);
  llPerfRow r;
  r.op = op;
  r.tokens = c.T;
  r.us = llPerfStats(us);
  double pairs = llPerfValidPairs(c);
  std::string base = op.substr(0, op.find('.'));
  r.bytes = base == "dispatch" ? pairs * dispatchPairBytes(b.o)
            : base == "combine" ? pairs * combinePairBytes(b.o)
                                : pairs * (dispatchPairBytes(b.o) + combinePairBytes(b.o));
  bool phase = op.find(".send") != std::string::npos || op.find(".recv") != std::string::npos;
  if (!phase) {
    llPerfLatency kind = op == "step" ? llPerfLatency::kStep
                         : op == "step.host" ? llPerfLatency::kStepHost
                                             : llPerfLatency::kCall;
    r.floorUs = b.ranks.rank == 0 ? llPerfFloorUs(b.floors, b.ranks, traffic(b, c, base), kind) : -1;
  }
  auto nccl = s.find(op + ".nccl");
  if (nccl != s.end()) r.ncclUs = llPerfStats(nccl->second).median;
  if (base == "dispatch") r.wrong = w.dispatch;
  else if (base == "combine") r.wrong = w.combine;
  else if (w.dispatch >= 0 && w.combine >= 0) r.wrong = w.dispatch + w.combine;
  return r;
}

std::vector<llPerfRow> makeRows(const Bench& b, const llPerfCase& c, const Samples& s, const Wrong& w) {
  static const char* kOrder[] = {"dispatch", "dispatch.send", "dispatch.recv", "combine", "combine.send",
                                 "combine.recv", "step", "step.host"};
  std::vector<llPerfRow> rows;
  for (const char* op : kOrder) {
    std::string name = op, base = name.substr(0, name.find('.'));
    bool wanted = base == "dispatch"  ? b.o.dispatchRows()
                  : base == "combine" ? b.o.combineRows()
                                      : b.o.stepRows();
    auto it = s.find(name);
    if (wanted && it != s.end()) rows.push_back(makeRow(b, c, name, s, w));
  }
  return rows;
}

// Rank 0 takes, per row, the slowest rank's median and p99 (and NCCL baseline) and the sum of wrong rows. Every rank
// publishes its rows; rank 0 reads and removes them.
void mergeRanks(const Bench& b, int sizeIndex, std::vector<llPerfRow>& rows) {
  if (b.ranks.world == 1 || !llPerfCanExchange(b.ranks)) return;
  std::string name = "rows" + std::to_string(sizeIndex);
  std::vector<double> mine;
  for (const llPerfRow& r : rows)
    mine.insert(mine.end(), {r.us.median, r.us.p99, static_cast<double>(r.wrong), r.ncclUs});
  if (b.ranks.rank != 0) {
    llPerfPublish(b.ranks, name, mine.data(), mine.size() * sizeof(double));
    return;
  }
  std::vector<double> theirs(mine.size());
  for (int from = 1; from < b.ranks.world; from++) {
    if (!llPerfFetch(b.ranks, name, from, theirs.data(), theirs.size() * sizeof(double), kExchangeTimeoutMs))
      llPerfDie("rank %d never published its results for row set %d", from, sizeIndex);
    llPerfUnpublish(b.ranks, name, from);
    for (size_t i = 0; i < rows.size(); i++) {
      llPerfRow& r = rows[i];
      const double* t = &theirs[4 * i];
      r.us.median = std::max(r.us.median, t[0]);
      r.us.p99 = std::max(r.us.p99, t[1]);
      if (r.wrong >= 0) r.wrong += static_cast<long>(t[2]);
      if (r.ncclUs >= 0) r.ncclUs = std::max(r.ncclUs, t[3]);
    }
  }
}

void requireNoAsyncError(const Bench& b) {
  llResult_t err = llSuccess;
  PERF_LL(llCommGetAsyncError(b.comm, &err));
  if (err != llSuccess) llPerfDie("the GPU reported %s: %s", llGetErrorString(err), llGetLastError(b.comm));
}

// One size: check on fresh inputs, time on those inputs, check again on new ones (a state that goes
// bad over many calls shows there), then rows.
std::vector<llPerfRow> runSize(Bench& b, int sizeIndex, int T) {
  b.T = T;
  llRefShape shape{b.ranks.world, b.o.experts, b.o.maxTokens, b.o.hidden, b.o.topk};
  uint64_t seed = kSeedStride * (2 * sizeIndex + 1);
  llPerfCase c = llPerfMakeCase(shape, b.o.fp8, b.o.ue8m0, T, b.ranks.rank, seed);
  cudaGraphExec_t graph = b.o.graph ? captureStep(b) : nullptr;
  Wrong w;
  if (b.o.check) checkOnce(b, c, graph, &w);  // leaves c's inputs on the GPU for the timed calls
  else llPerfUploadInputs(c, b.io, b.stream);
  Samples s = timeSize(b, graph, peerBytes(b, c, true), peerBytes(b, c, false));
  if (b.o.check) checkOnce(b, llPerfMakeCase(shape, b.o.fp8, b.o.ue8m0, T, b.ranks.rank, seed + kSeedStride), graph, &w);
  if (graph) PERF_CUDA(cudaGraphExecDestroy(graph));
  requireNoAsyncError(b);
  std::vector<llPerfRow> rows = makeRows(b, c, s, w);
  mergeRanks(b, sizeIndex, rows);
  return rows;
}

// ------------------------------------------------------------------------------------------------
// Where it runs

std::string commandLine(const char* cmd) {
  std::string out;
  if (FILE* p = popen(cmd, "r")) {
    char buf[256];
    while (fgets(buf, sizeof(buf), p)) out += buf;
    if (pclose(p) != 0) return "";
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// The kernel module's version (what nvidia-smi calls the driver), else the CUDA driver API level.
std::string driverVersion() {
  std::string line = commandLine("cat /proc/driver/nvidia/version 2>/dev/null | head -1");
  for (size_t at = 0; (at = line.find_first_of("0123456789", at)) != std::string::npos;) {
    size_t end = line.find_first_not_of("0123456789.", at);
    std::string word = line.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (std::count(word.begin(), word.end(), '.') >= 1 && (at == 0 || line[at - 1] == ' ')) return word;
    at = end == std::string::npos ? line.size() : end;
  }
  return "unknown";
}

std::string commit() {
  std::string head = commandLine("git rev-parse --short=12 HEAD 2>/dev/null");
  if (head.empty()) return "unknown (not run from a git checkout)";
  bool dirty = !commandLine("git status --porcelain --untracked-files=no 2>/dev/null").empty();
  return dirty ? head + " + local changes" : head;
}

llPerfRunInfo runInfo(const Options& o, const llPerfRanks& r, const llPerfFloors& f, size_t l2,
                      size_t flush) {
  llPerfRunInfo i;
  i.ops = o.stepRows() ? "dispatch, combine, step" : o.ops;
  i.payload = o.ue8m0 ? "fp8-ue8m0" : o.fp8 ? "fp8" : "bf16";
  i.transport = o.transport;
  i.aggregate = r.world == 1 ? "one rank"
                : llPerfCanExchange(r) ? "the slowest rank's median and p99 (#wrong: all ranks)"
                                       : "rank 0's (ranks on other hosts cannot be read)";
  i.ranks = r.world, i.gpus = r.gpus, i.ranksOnGpu = r.ranksOnGpu;
  i.hidden = o.hidden, i.topk = o.topk, i.experts = o.experts, i.maxTokens = o.maxTokens;
  i.warmup = o.warmup, i.iters = o.iters, i.sms = o.sms;
  i.check = o.check, i.graph = o.graph, i.sendOnly = o.sendOnly, i.align = o.align;
  i.flushBytes = flush;
  i.flush = o.flush;
  llRefShape shape{r.world, o.experts, o.maxTokens, o.hidden, o.topk};
  i.ioBytes = llPerfIo::bytesFor(shape, o.fp8, flush);
  PERF_LL(llGetBufferSizeHint(o.maxTokens, o.hidden, r.world, o.experts, &i.libraryBytes));
  cudaDeviceProp p;
  PERF_CUDA(cudaGetDeviceProperties(&p, r.device));
  i.gpuName = p.name;
  i.smCount = p.multiProcessorCount;
  i.l2Bytes = l2;
  PERF_CUDA(cudaDriverGetVersion(&i.cudaDriver));
  PERF_CUDA(cudaRuntimeGetVersion(&i.cudaRuntime));
  i.driver = driverVersion();
  i.commit = commit();
  char host[256] = "";
  gethostname(host, sizeof(host) - 1);
  i.host = host;
  i.floors = f;
  i.ncclNote = !o.nccl ? "off (-N 0)" : o.graph ? "n/a: not with -G (the graph holds the step only)" : "";
  return i;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  Options o = parseOptions(argc, argv);
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0) {
    fprintf(stderr, "no GPU: ll_perf needs one\n");
    return o.skipNoGpu ? 77 : 1;
  }
  llPerfRanks ranks = llPerfRanksFromEnv(gpus);
  llPerfRank() = ranks.rank;
  if (o.experts % ranks.world != 0)
    llPerfDie("-E %d is not a multiple of the %d ranks", o.experts, ranks.world);
  PERF_CUDA(cudaSetDevice(ranks.device));
  cudaStream_t stream = nullptr;
  PERF_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  llPerfFloors floors = llPerfMeasureFloors(ranks, o.graph, stream);
  llComm_t comm = initComm(o);

  int l2 = 0;
  PERF_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, ranks.device));
  size_t flushBytes = 2 * static_cast<size_t>(l2);  // twice the L2, so nothing of the last call stays
  std::unique_ptr<llPerfNccl> nccl(o.nccl && !o.graph ? new llPerfNccl(ranks, stream) : nullptr);
  llPerfRunInfo info = runInfo(o, ranks, floors, l2, flushBytes);
  if (info.ncclNote.empty()) info.ncclNote = nccl->note();
  if (ranks.rank == 0) llPerfPrintHeader(info);

  llPerfIo io(llRefShape{ranks.world, o.experts, o.maxTokens, o.hidden, o.topk}, o.fp8, flushBytes);
  Bench b{o, ranks, floors, comm, stream, io, nccl.get()};
  for (cudaEvent_t& e : b.mark) PERF_CUDA(cudaEventCreate(&e));
  for (cudaEvent_t& e : b.around) PERF_CUDA(cudaEventCreate(&e));
  std::vector<llPerfRow> all;
  std::vector<int> sizes = tokenCounts(o);
  for (size_t i = 0; i < sizes.size(); i++) {
    for (const llPerfRow& r : runSize(b, static_cast<int>(i), sizes[i])) {
      if (ranks.rank == 0) llPerfPrintRow(r);
      all.push_back(r);
    }
  }
  if (ranks.rank == 0) llPerfPrintFooter(all);
  if (ranks.rank == 0 && !o.json.empty()) llPerfWriteJson(o.json, info, all);
  for (cudaEvent_t e : b.mark) PERF_CUDA(cudaEventDestroy(e));
  for (cudaEvent_t e : b.around) PERF_CUDA(cudaEventDestroy(e));
  nccl.reset();
  PERF_LL(llCommDestroy(comm));
  PERF_CUDA(cudaStreamDestroy(stream));
  long wrong = b.wrongTotal;
  if (ranks.rank == 0)
    for (const llPerfRow& r : all) wrong += r.wrong > 0 ? r.wrong : 0;  // other ranks' too
  return wrong > 0 ? 1 : 0;
}
