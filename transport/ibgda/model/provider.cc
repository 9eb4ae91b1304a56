// The model's verbs table: the device list, contexts (each with the thread that watches its doorbells) and the
// table that gathers the entry points of provider_*.cc. The records behind what callers hold are in
// provider_internal.h.
#include "transport/ibgda/model/provider.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "param.h"
#include "transport/ibgda/model/provider_internal.h"
#include "transport/ibgda/model/socket_wire.h"

namespace llnic {
namespace provider_detail {
namespace {

constexpr const char* kDeviceName = "llep_model0";

}  // namespace

ibv_device* modelDevice() {
  static ibv_device device = [] {
    ibv_device d{};
    d.node_type = IBV_NODE_CA;
    d.transport_type = IBV_TRANSPORT_IB;
    std::snprintf(d.name, sizeof(d.name), "%s", kDeviceName);
    std::snprintf(d.dev_name, sizeof(d.dev_name), "uverbs_llep_model0");
    return d;
  }();
  return &device;
}

// QPs whose UAR page had its BlueFlame register written since the last look.
std::vector<uint32_t> Context::rungQps() {
  std::lock_guard<std::mutex> lock(mutex);
  std::set<uint32_t> pages;
  for (auto& [id, uar] : uars) {
    uint64_t v = __atomic_load_n(reinterpret_cast<uint64_t*>(uar->pub.reg_addr), __ATOMIC_ACQUIRE);
    if (v != uar->seen) pages.insert(id);
    uar->seen = v;
  }
  std::vector<uint32_t> qpns;
  for (auto& [qpn, view] : qps)
    if (pages.count(view.uarPage)) qpns.push_back(qpn);
  return qpns;
}

// The watcher: a doorbell (BlueFlame write) makes the model read the QP's doorbell record and run what it
// announces. The record is read with acquire semantics, so WQEs written before it are seen.
void Context::watch() {
  while (!stop.load(std::memory_order_acquire)) {
    std::vector<uint32_t> qpns = rungQps();
    for (uint32_t qpn : qpns) nic.pollSqDoorbell(qpn);
    if (qpns.empty()) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

Context* contextOf(ibv_context* c) {
  return c && c->device == modelDevice() ? reinterpret_cast<ContextShell*>(c)->self : nullptr;
}

namespace {

// ---- device list, contexts --------------------------------------------------------------------------------

ibv_device** getDeviceList(int* n) {
  if (n) *n = 1;
  return new ibv_device* [2] { modelDevice(), nullptr };
}

void freeDeviceList(ibv_device** list) { delete[] list; }

const char* getDeviceName(ibv_device* device) { return device ? device->name : nullptr; }

// LLEP_MODEL_LINK: ib or eth. Anything else is refused, so a misspelt value cannot quietly test the other one.
bool ethernetLink(bool* eth) {
  const char* link = llParamModelLink();
  *eth = std::strcmp(link, "eth") == 0;
  if (*eth || std::strcmp(link, "ib") == 0) return true;
  std::fprintf(stderr, "llep model: LLEP_MODEL_LINK='%s' is neither ib nor eth\n", link);
  return false;
}

// With LLEP_MODEL_JOB set, the context opened while no other holds the process's SocketWire takes it: it
// listens as rank RANK and answers every operation that other ranks send here (one such context per
// process at a time; later ones reach only this process's contexts).
ibv_context* openDevice(ibv_device* device) {
  if (device != modelDevice()) return failWith<ibv_context>(ENODEV);
  bool eth = false;
  if (!ethernetLink(&eth)) return failWith<ibv_context>(EINVAL);
  auto* ctx = new Context(nextLid(), eth);
  const std::string dir = modelJobDir();
  if (!dir.empty() && !processWire().hasSocket()) {
    SocketWireOptions options;
    options.dir = dir;
    options.self = (PeerId)envRank();
    auto socket = std::make_shared<SocketWire>(options);
    if (!socket->start(ctx->nic)) {
      std::fprintf(stderr, "llep model: rank %u cannot listen in %s: %s\n", envRank(), dir.c_str(),
                   socket->error().c_str());
      delete ctx;
      return failWith<ibv_context>(EIO);
    }
    ctx->socket = socket;
    processWire().setSocket(std::move(socket));
  }
  processWire().attach(ctx->lid, &ctx->nic);
  ctx->watcher = std::thread([ctx] { ctx->watch(); });
  return &ctx->shell.ibv;
}

// DevX is always available on the model, so the attributes change nothing.
ibv_context* mlx5dvOpenDevice(ibv_device* device, mlx5dv_context_attr*) { return openDevice(device); }

// Everything created on the context goes with it. Peers must be quiet: the context stops answering.
int closeDevice(ibv_context* c) {
  Context* ctx = contextOf(c);
  if (!ctx) return failCode(EINVAL);
  ctx->stop.store(true, std::memory_order_release);
  ctx->watcher.join();
  processWire().attach(ctx->lid, nullptr);
  if (ctx->socket) {
    processWire().setSocket(nullptr);
    ctx->socket->stop();  // before the model it answers with goes
    ctx->socket.reset();
  }
  delete ctx;
  return 0;
}

}  // namespace
}  // namespace provider_detail

using provider_detail::Context;
using provider_detail::contextOf;

NicModel* modelNic(ibv_context* context) {
  Context* ctx = contextOf(context);
  return ctx ? &ctx->nic : nullptr;
}

uint16_t modelLid(ibv_context* context) {
  Context* ctx = contextOf(context);
  return ctx ? ctx->lid : 0;
}

}  // namespace llnic

const llVerbs* llModelVerbs() {
  using namespace llnic::provider_detail;
  static const llVerbs table = [] {
    llVerbs v{};
    v.provider = "model";
    v.getDeviceList = getDeviceList;
    v.freeDeviceList = freeDeviceList;
    v.getDeviceName = getDeviceName;
    v.openDevice = openDevice;
    v.mlx5dvOpenDevice = mlx5dvOpenDevice;
    v.closeDevice = closeDevice;
    v.queryPort = queryPort;
    v.queryGid = queryGid;
    v.queryGidEx = queryGidEx;
    v.allocPd = allocPd;
    v.deallocPd = deallocPd;
    v.regMr = regMr;
    v.regDmabufMr = regDmabufMr;
    v.deregMr = deregMr;
    v.createAh = createAh;
    v.destroyAh = destroyAh;
    v.mlx5dvInitObj = mlx5dvInitObj;
    v.devxObjCreate = objCreate;
    v.devxObjDestroy = objDestroy;
    v.devxObjModify = objModify;
    v.devxObjQuery = objQuery;
    v.devxGeneralCmd = generalCmd;
    v.devxUmemReg = umemReg;
    v.devxUmemDereg = umemDereg;
    v.devxAllocUar = allocUar;
    v.devxFreeUar = freeUar;
    v.devxQueryEqn = queryEqn;
    return v;
  }();
  return &table;
}
