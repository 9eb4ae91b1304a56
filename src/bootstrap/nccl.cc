// Bootstrap over an existing NCCL communicator: setup records travel by ncclAllGather through a small
// device buffer on the NCCL communicator's GPU. The NCCL communicator must outlive the llep one
// (teardown uses it for its barriers).
#include <cstring>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/nccl_wrap.h"
#include "checks.h"

namespace {

#define NCCLCHECK(call)                                                                                 \
  do {                                                                                                  \
    ncclResult_t nr_ = (call);                                                                          \
    if (nr_ != ncclSuccess) {                                                                           \
      LL_WARN("NCCL error: %s: %s", #call, nccl_->getErrorString(nr_));                                 \
      return nr_ == ncclInvalidArgument || nr_ == ncclInvalidUsage ? llInvalidUsage : llRemoteError;    \
    }                                                                                                   \
  } while (0)

class NcclBootstrap : public llBootstrap {
 public:
  NcclBootstrap(const llNcclFns* fns, ncclComm_t comm) : nccl_(fns), comm_(comm) {}
  ~NcclBootstrap() override {
    if (dev_) (void)cudaFree(dev_);
    if (stream_) (void)cudaStreamDestroy(stream_);
  }

  llResult_t init() {
    int dev = -1;
    NCCLCHECK(nccl_->commCount(comm_, &nranks));
    NCCLCHECK(nccl_->commUserRank(comm_, &rank));
    NCCLCHECK(nccl_->commCuDevice(comm_, &dev));
    // The llep communicator lives on the NCCL communicator's GPU.
    CUDACHECK(cudaSetDevice(dev));
    CUDACHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    return llSuccess;
  }

  llResult_t allGather(void* buf, size_t bytesPerRank) override {
    if (bytesPerRank == 0) return barrier();
    char* hostBuf = static_cast<char*>(buf);
    LLCHECK(reserve(bytesPerRank * nranks));
    CUDACHECK(cudaMemcpyAsync(dev_ + rank * bytesPerRank, hostBuf + rank * bytesPerRank, bytesPerRank,
                              cudaMemcpyHostToDevice, stream_));
    NCCLCHECK(nccl_->allGather(dev_ + rank * bytesPerRank, dev_, bytesPerRank, ncclUint8, comm_, stream_));
    CUDACHECK(cudaMemcpyAsync(hostBuf, dev_, bytesPerRank * nranks, cudaMemcpyDeviceToHost, stream_));
    CUDACHECK(cudaStreamSynchronize(stream_));
    return llSuccess;
  }

  llResult_t broadcast(void* buf, size_t bytes, int root) override {
    LL_REQUIRE(root >= 0 && root < nranks, llInternalError, "broadcast root %d out of range", root);
    if (bytes == 0) return llSuccess;
    LLCHECK(reserve(bytes));
    CUDACHECK(cudaMemcpyAsync(dev_, buf, bytes, cudaMemcpyHostToDevice, stream_));
    NCCLCHECK(nccl_->broadcast(dev_, dev_, bytes, ncclUint8, root, comm_, stream_));
    CUDACHECK(cudaMemcpyAsync(buf, dev_, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDACHECK(cudaStreamSynchronize(stream_));
    return llSuccess;
  }

  llResult_t barrier() override {
    char token = 0;
    std::vector<char> all(nranks);
    all[rank] = token;
    return allGather(all.data(), 1);
  }

 private:
  llResult_t reserve(size_t bytes) {
    if (bytes <= devBytes_) return llSuccess;
    if (dev_) CUDACHECK(cudaFree(dev_));
    dev_ = nullptr;
    CUDACHECK(cudaMalloc(&dev_, bytes));
    devBytes_ = bytes;
    return llSuccess;
  }

  const llNcclFns* nccl_;
  ncclComm_t comm_;
  cudaStream_t stream_ = nullptr;
  char* dev_ = nullptr;
  size_t devBytes_ = 0;
};

}  // namespace

llResult_t llBootstrapNcclCreate(ncclComm_t comm, llBootstrap** out) {
  const llNcclFns* fns = nullptr;
  LLCHECK(llNcclLoad(&fns));
  auto* bs = new NcclBootstrap(fns, comm);
  llResult_t res = bs->init();
  if (res != llSuccess) {
    delete bs;
    return res;
  }
  *out = bs;
  return llSuccess;
}
