// The ibgda transport inside a communicator: RC QPs to every rank (llIbgdaConnect) with their rings in GPU
// memory and the QP structs uploaded for the kernels (device_qps.h); the kernels post through the routes
// this fills. Only in builds with rdma-core's headers (LLEP_HAVE_IBGDA).
#pragma once

#include <string>

#include "comm.h"

struct llIbgdaTransport;

// Whether this rank can run ibgda at all (verbs table loads, a device exists); false with the reason.
bool llIbgdaTransportUsable(std::string* why);

// Collective: every rank of the communicator calls it (once every rank knows ibgda is usable everywhere).
llResult_t llIbgdaTransportConnect(llComm* comm, llIbgdaTransport** out);

// The route to `peer` through its QP.
void llIbgdaTransportRoute(const llIbgdaTransport* t, const llPeerInfo& peer, llRoute* route);

// After a barrier that every rank reaches once its kernels are done (every WQE is quiet). Idempotent.
llResult_t llIbgdaTransportClose(llIbgdaTransport* t);

// A short name for an error CQE's syndrome.
const char* llIbgdaTransportSyndromeName(uint32_t syndrome);
