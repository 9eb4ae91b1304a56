#include "calls.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include "api.h"
#include "checks.h"
#include "device/dispatch.h"

namespace {

uint64_t newTag() {
  static std::atomic<uint64_t> counter{0};
  uint64_t t = (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
  return (t * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)getpid() << 32) ^ ++counter;
}

}  // namespace

llResult_t llCallsSetup(llComm* comm) {
  const llCommConfig& c = comm->config;
  comm->tag = newTag();
  comm->layout = llBufferLayoutFor(c.maxTokensPerRank, c.hidden, comm->nranks, c.numExperts);
  // Kernels spin on peers inside one launch, so every block of every rank sharing this GPU must be
  // resident at once: the SMs are split between the ranks on the GPU.
  int sms = 0;
  CUDACHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, comm->cudaDev));
  int onThisGpu = 0;
  for (const llPeerInfo& p : comm->peers)
    onThisGpu += p.machineHash == comm->peers[comm->rank].machineHash && strcmp(p.busId, comm->peers[comm->rank].busId) == 0;
  // A NIC reads and writes through the system, as another GPU does.
  comm->sysScope = onThisGpu != comm->nranks || comm->ibgda != nullptr;
  comm->blocks = c.numSms > 0 ? c.numSms : sms / (onThisGpu > 0 ? onThisGpu : 1);
  if (comm->blocks < 1) comm->blocks = 1;
  if (comm->blocks > sms) comm->blocks = sms;
  LL_INFO(LL_INIT, "rank %d: kernels use %d blocks (%d SMs, %d ranks on this GPU)", comm->rank, comm->blocks, sms,
          onThisGpu);
  CUDACHECK(cudaMalloc((void**)&comm->devState, sizeof(llDeviceState)));
  CUDACHECK(cudaMemset(comm->devState, 0, sizeof(llDeviceState)));
  CUDACHECK(cudaMalloc((void**)&comm->pairRows, 2 * llCallsPairRowsPerHalf(comm) * sizeof(int32_t)));
  CUDACHECK(cudaMalloc((void**)&comm->rowPairK, 2 * llCallsRowsPerHalf(comm) * sizeof(int8_t)));
  CUDACHECK(cudaMalloc((void**)&comm->ownCounts, 2 * llCallsLocalExperts(comm) * sizeof(int32_t)));
  return llSuccess;
}

void llCallsTeardown(llComm* comm) {
  if (comm->devState && cudaFree(comm->devState) != cudaSuccess) (void)cudaGetLastError();
  if (comm->pairRows && cudaFree(comm->pairRows) != cudaSuccess) (void)cudaGetLastError();
  if (comm->rowPairK && cudaFree(comm->rowPairK) != cudaSuccess) (void)cudaGetLastError();
  if (comm->ownCounts && cudaFree(comm->ownCounts) != cudaSuccess) (void)cudaGetLastError();
  comm->devState = nullptr;
  comm->pairRows = nullptr;
  comm->rowPairK = nullptr;
  comm->ownCounts = nullptr;
}

llResult_t llCallsReserveHalf(llComm* comm, const char* what, int* half) {
  int h = comm->nextHalf;
  const llComm::PendingRecv& p = comm->pending[h];
  LL_REQUIRE(!p.pending, llInvalidUsage,
             "%s: two results are outstanding already (call %llu's receive phase is pending): run its hook first",
             what, (unsigned long long)p.call);
  *half = h;
  return llSuccess;
}

void llCallsCommit(llComm* comm, int half) {
  comm->calls++;
  comm->nextHalf = half ^ 1;
}

llCommonKernelArgs llCallsCommonArgs(const llComm* comm, int half, int numTokens, int topk, int phases) {
  const llBufferLayout& l = comm->layout;
  llCommonKernelArgs a{};
  a.routes = comm->devRoutes;
  a.ownBuffer = comm->buffer;
  a.state = comm->devState;
  a.asyncError = comm->asyncError;
  a.rank = comm->rank;
  a.nranks = comm->nranks;
  a.numExperts = comm->config.numExperts;
  a.localExperts = (int)llCallsLocalExperts(comm);
  a.maxTokens = comm->config.maxTokensPerRank;
  a.hidden = comm->config.hidden;
  a.topk = topk;
  a.numTokens = numTokens;
  a.half = half;
  a.phases = phases;
  a.sysScope = comm->sysScope ? 1 : 0;
  a.deferCredits = comm->ibgda == nullptr ? 1 : 0;
  a.timeoutNs = (uint64_t)comm->config.timeoutMs * 1000000ull;
  a.signalOffset = l.half[half].signalOffset;
  for (int h = 0; h < 2; h++) a.signalOffsetOfHalf[h] = l.half[h].signalOffset;
  a.sendOffset = l.half[half].sendOffset;
  a.recvOffset = l.half[half].recvOffset;
  a.dispatchSignalWord = (uint32_t)l.dispatchSignalWord;
  a.combineSignalWord = (uint32_t)l.combineSignalWord;
  a.creditWord = (uint32_t)l.creditWord;
  return a;
}

llResult_t llCheckStructHeader(const void* ptr, size_t size, unsigned magic, size_t expectSize, const char* what) {
  LL_REQUIRE(ptr != nullptr, llInvalidArgument, "%s is NULL", what);
  LL_REQUIRE(magic == LL_ARGS_MAGIC, llInvalidArgument,
             "%s.magic is 0x%x, not LL_ARGS_MAGIC: initialise it with its LL_..._INITIALIZER", what, magic);
  LL_REQUIRE(size == expectSize, llInvalidArgument, "%s.size is %zu, this library's is %zu: built against another llep.h?",
             what, size, expectSize);
  return llSuccess;
}

llResult_t llCheckPointer(const void* p, size_t align, const char* what) {
  LL_REQUIRE(p != nullptr, llInvalidArgument, "%s is NULL", what);
  LL_REQUIRE((uintptr_t)p % align == 0, llInvalidArgument, "%s = %p is not %zu-byte aligned", what, p, align);
  return llSuccess;
}

void llCallsSetPending(llComm* comm, int half, const llDispatchKernelArgs* d, const llCombineKernelArgs* c,
                       llHook_t* hook) {
  llComm::PendingRecv& p = comm->pending[half];
  p.pending = true;
  p.isDispatch = d != nullptr;
  p.call = comm->calls + 1;
  if (d) p.dispatch = *d, p.dispatch.c.phases = LL_PHASE_RECV;
  if (c) p.combine = *c, p.combine.c.phases = LL_PHASE_RECV;
  hook->internal[0] = comm->tag;
  hook->internal[1] = p.call;
  hook->internal[2] = (uint64_t)half;
}

size_t llCallsPairRowsPerHalf(const llComm* comm) {
  return (size_t)comm->config.maxTokensPerRank * comm->config.maxTopk;
}

size_t llCallsRowsPerHalf(const llComm* comm) {
  return (size_t)comm->config.numExperts * comm->config.maxTokensPerRank;  // E_l * R * N
}

size_t llCallsLocalExperts(const llComm* comm) { return (size_t)comm->config.numExperts / comm->nranks; }

bool llCallsIsPending(const llComm* comm, uint64_t call) {
  for (const llComm::PendingRecv& p : comm->pending)
    if (p.pending && p.call == call) return true;
  return false;
}

LL_API llResult_t llHookRun(llComm_t comm, llHook_t* hook, cudaStream_t stream) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llHookRun: comm is NULL");
  LLCHECK(llCheckStructHeader(hook, hook ? hook->size : 0, hook ? hook->magic : 0, sizeof(llHook_t), "hook"));
  LL_REQUIRE(hook->internal[0] == comm->tag, llInvalidUsage, "llHookRun: the hook belongs to another communicator");
  uint64_t half = hook->internal[2];
  LL_REQUIRE(half < 2 && comm->pending[half].pending && comm->pending[half].call == hook->internal[1],
             llInvalidUsage, "llHookRun: this hook has run already (or is not from a send-only call)");
  llComm::PendingRecv& p = comm->pending[half];
  cudaError_t err = p.isDispatch ? llLaunchDispatch(p.dispatch, comm->blocks, stream)
                                 : llLaunchCombine(p.combine, comm->blocks, stream);
  CUDACHECK(err);
  p.pending = false;
  hook->internal[1] = 0;
  return llSuccess;
}

LL_API llResult_t llGetCombineBuffer(llComm_t comm, void** buffer) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llGetCombineBuffer: comm is NULL");
  LL_REQUIRE(buffer != nullptr, llInvalidArgument, "llGetCombineBuffer: buffer is NULL");
  int half = 0;
  LLCHECK(llCallsReserveHalf(comm, "llGetCombineBuffer", &half));
  *buffer = comm->buffer + comm->layout.half[half].sendOffset;
  comm->zeroCopyCall = comm->calls + 1;
  return llSuccess;
}

LL_API llResult_t llCleanBuffer(llComm_t comm, cudaStream_t stream) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llCleanBuffer: comm is NULL");
  CUDACHECK(cudaStreamSynchronize(stream));
  // Nobody may still be writing into a peer when the signals are cleared, nor start before all are.
  LLCHECK(comm->bootstrap->barrier());
  for (const llBufferHalf& h : comm->layout.half)
    CUDACHECK(cudaMemset(comm->buffer + h.signalOffset, 0, h.signalBytes));
  CUDACHECK(cudaMemset(comm->devState, 0, sizeof(llDeviceState)));
  CUDACHECK(cudaDeviceSynchronize());
  llClearAsyncError(comm);
  // Call numbers go on (handles from before stay valid); only what was in flight is forgotten.
  comm->zeroCopyCall = 0;
  for (llComm::PendingRecv& p : comm->pending) p = llComm::PendingRecv{};
  LLCHECK(comm->bootstrap->barrier());
  return llSuccess;
}
