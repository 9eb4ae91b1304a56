#include "test/perf/perf_nccl.h"

#include <numeric>

#include "test/perf/perf_common.h"

namespace {

constexpr int kIdTimeoutMs = 120000;

}  // namespace

#define PERF_NCCL(call)                                                                            \
  do {                                                                                             \
    ncclResult_t perfNcclRes_ = (call);                                                            \
    if (perfNcclRes_ != ncclSuccess)                                                               \
      llPerfDie("%s failed: %s (%s:%d)", #call, nccl_->getErrorString(perfNcclRes_), __FILE__, __LINE__); \
  } while (0)

llPerfNccl::llPerfNccl(const llPerfRanks& r, cudaStream_t stream) : stream_(stream) {
  // Every condition below reads the same on every rank, so either all ranks join ncclCommInitRank or none.
  if (r.world < 2) {
    note_ = "n/a: one rank";
    return;
  }
  if (r.ranksOnGpu > 1 || r.world > r.gpus) {
    note_ = "n/a: ranks share a GPU (NCCL takes one rank per GPU)";
    return;
  }
  if (!llPerfCanExchange(r)) {
    note_ = "n/a: ranks not known to share this host (the NCCL id travels through files)";
    return;
  }
  std::string why;
  nccl_ = llTestNcclLoad(&why);
  if (nccl_ == nullptr) {
    note_ = "n/a: " + why;
    return;
  }
  ncclUniqueId id;
  if (r.rank == 0) {
    PERF_NCCL(nccl_->getUniqueId(&id));
    llPerfPublish(r, "ncclid", &id, sizeof(id));
  } else if (!llPerfFetch(r, "ncclid", 0, &id, sizeof(id), kIdTimeoutMs)) {
    llPerfDie("rank 0 never published the NCCL unique id");
  }
  PERF_NCCL(nccl_->commInitRank(&comm_, r.world, id, r.rank));
  // NCCL's init returns once every rank has joined its bootstrap, so every rank has read the id.
  if (r.rank == 0) llPerfUnpublish(r, "ncclid", 0);
  note_ = "ncclSend/ncclRecv to every rank in one group (as all_to_all_single), same bytes as the row";
}

llPerfNccl::~llPerfNccl() {
  if (comm_) nccl_->commDestroy(comm_);
  cudaFree(sendBuf_);
  cudaFree(recvBuf_);
}

void llPerfNccl::grow(void** buf, size_t* have, size_t need) {
  if (need <= *have) return;
  PERF_CUDA(cudaStreamSynchronize(stream_));
  PERF_CUDA(cudaFree(*buf));
  *buf = nullptr;
  PERF_CUDA(cudaMalloc(buf, need));
  PERF_CUDA(cudaMemsetAsync(*buf, 0, need, stream_));
  *have = need;
}

void llPerfNccl::enqueue(const std::vector<size_t>& send, const std::vector<size_t>& recv) {
  grow(&sendBuf_, &sendHave_, std::accumulate(send.begin(), send.end(), size_t(1)));
  grow(&recvBuf_, &recvHave_, std::accumulate(recv.begin(), recv.end(), size_t(1)));
  PERF_NCCL(nccl_->groupStart());
  size_t sendAt = 0, recvAt = 0;
  for (size_t p = 0; p < send.size(); p++) {
    if (send[p]) PERF_NCCL(nccl_->send(static_cast<char*>(sendBuf_) + sendAt, send[p], ncclUint8, (int)p, comm_, stream_));
    if (recv[p]) PERF_NCCL(nccl_->recv(static_cast<char*>(recvBuf_) + recvAt, recv[p], ncclUint8, (int)p, comm_, stream_));
    sendAt += send[p];
    recvAt += recv[p];
  }
  PERF_NCCL(nccl_->groupEnd());
}
