// The table ll_perf prints (nccl-tests style: '#' header, one row per size and operation, a footer
// of averages) and the same content as JSON.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "test/perf/perf_common.h"
#include "test/perf/perf_floors.h"

struct llPerfRow {
  std::string op;       // dispatch, dispatch.send, dispatch.recv, combine, ..., step, step.host
  int tokens = 0;       // per rank
  double bytes = 0;     // DeepEP's convention, this rank's valid (token, k) pairs
  llPerfStat us;        // median and p99, microseconds
  double floorUs = -1;  // < 0: no floor (a phase of a send-only call)
  long wrong = -1;      // < 0: not checked
  double ncclUs = -1;   // the NCCL baseline's median (perf_nccl.h); < 0: none

  double gbps() const { return us.median > 0 ? bytes / (us.median * 1e3) : 0; }
  double pctFloor() const { return floorUs > 0 && us.median > 0 ? floorUs / us.median * 100 : -1; }
  // How many times faster than the NCCL baseline (> 1: llep is faster).
  double vsNccl() const { return ncclUs > 0 && us.median > 0 ? ncclUs / us.median : -1; }
};

// Everything the header and the JSON say about the run besides its rows.
struct llPerfRunInfo {
  // What ran.
  std::string ops, payload, transport, aggregate;
  int ranks = 1, gpus = 1, ranksOnGpu = 1;
  int hidden = 0, topk = 0, experts = 0, maxTokens = 0;
  int warmup = 0, iters = 0, sms = 0;
  bool check = false, graph = false, sendOnly = false, align = false;
  size_t flushBytes = 0, ioBytes = 0, libraryBytes = 0;
  std::string flush;  // read (a kernel: clean lines left), write (memset: dirty lines left), none
  // Where it ran.
  std::string gpuName, driver, commit, host;
  int smCount = 0, cudaDriver = 0, cudaRuntime = 0;
  size_t l2Bytes = 0;
  llPerfFloors floors;
  std::string ncclNote;  // what the NCCL baseline is, or why there is none
};

void llPerfPrintHeader(const llPerfRunInfo& info);
void llPerfPrintRow(const llPerfRow& row);
void llPerfPrintFooter(const std::vector<llPerfRow>& rows);
void llPerfWriteJson(const std::string& path, const llPerfRunInfo& info, const std::vector<llPerfRow>& rows);
