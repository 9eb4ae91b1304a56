// The NCCL baseline of a row: the same bytes a dispatch or combine moves between ranks, moved by one
// group of ncclSend/ncclRecv per peer (what torch.distributed.all_to_all_single enqueues), timed like
// the llep call of the row (L2 flushed, ranks lined up, CUDA events). It moves bytes only: no layout,
// no quantisation, no weighted reduction, so it is a lower bound for an NCCL implementation of the
// op. Only where every rank has a GPU of its own (NCCL refuses ranks sharing one) on this host.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <vector>

#include "test/common/nccl_runtime.h"
#include "test/perf/perf_ranks.h"

class llPerfNccl {
 public:
  // Collective: every rank constructs it (or none, with -N 0). not ready() says why in note().
  llPerfNccl(const llPerfRanks& ranks, cudaStream_t stream);
  ~llPerfNccl();
  llPerfNccl(const llPerfNccl&) = delete;
  llPerfNccl& operator=(const llPerfNccl&) = delete;

  bool ready() const { return comm_ != nullptr; }
  const std::string& note() const { return note_; }

  // Enqueues one exchange: send[p] bytes to rank p and recv[p] bytes from rank p, every p (self too).
  void enqueue(const std::vector<size_t>& send, const std::vector<size_t>& recv);

 private:
  void grow(void** buf, size_t* have, size_t need);

  const llTestNccl* nccl_ = nullptr;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_;
  std::string note_;
  void *sendBuf_ = nullptr, *recvBuf_ = nullptr;
  size_t sendHave_ = 0, recvHave_ = 0;
};
