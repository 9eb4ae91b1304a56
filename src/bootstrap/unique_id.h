// The unique id (what llUniqueId's 128 bytes hold) and the rendezvous protocol that turns it into the
// address of rank 0's hub.
//
// RELAY (llGetUniqueId): the id names a root thread in the process that made it. Every rank sends it a
// hello; once all nranks have, the root answers each with rank 0's hub address and exits.
// DIRECT (llUniqueIdFromAddress, MASTER_ADDR/PORT): the id names rank 0's hub itself.
// Either way the ranks then greet rank 0's hub with the same hello (see tcp.cc).
//
// Ids and hellos are raw structs in host byte order: all ranks of a communicator share one ABI.
#pragma once

#include <cstdint>
#include <vector>

#include "bootstrap/socket.h"
#include "llep.h"

#define LL_UNIQUE_ID_MAGIC 0x4c4c4944u  // "LLID"
#define LL_HELLO_MAGIC 0x4c4c4845u      // "LLHE"

enum llUniqueIdMode : uint32_t { LL_ID_RELAY = 1, LL_ID_DIRECT = 2 };

// The layout inside llUniqueId::internal; unused bytes are zero, so an id's hex is deterministic.
struct llUniqueIdInfo {
  uint32_t magic;
  uint32_t mode;      // llUniqueIdMode
  uint64_t secret;    // proves a connection belongs to this run
  llSocketAddr addr;  // RELAY: the root; DIRECT: rank 0's hub
};
static_assert(sizeof(llUniqueIdInfo) <= LL_UNIQUE_ID_BYTES, "llUniqueIdInfo must fit in llUniqueId");

// llInvalidArgument (with a message) if the id has the wrong magic or mode.
llResult_t llUniqueIdDecode(const llUniqueId& id, llUniqueIdInfo* info);
void llUniqueIdEncode(const llUniqueIdInfo& info, llUniqueId* id);

// DIRECT id: rank 0 listens on host:port, the other ranks connect there.
llResult_t llUniqueIdFromAddress(const char* host, int port, uint64_t secret, llUniqueId* out);
// The 128 bytes as 256 lowercase hex digits and a NUL, and back (either case accepted).
llResult_t llUniqueIdToHex(const llUniqueId& id, char out[2 * LL_UNIQUE_ID_BYTES + 1]);
llResult_t llUniqueIdFromHex(const char* hex, llUniqueId* out);
// LLEP_UNIQUE_ID, else MASTER_ADDR + MASTER_PORT (secret: LLEP_BOOTSTRAP_SECRET, else derived from the
// port); rank and size from RANK/WORLD_SIZE, OMPI_COMM_WORLD_RANK/SIZE or PMI_RANK/PMI_SIZE.
llResult_t llUniqueIdFromEnv(llUniqueId* id, int* rank, int* nranks);

// What a rank sends first, to the root and to rank 0's hub.
struct llHello {
  uint32_t magic;  // LL_HELLO_MAGIC
  int32_t rank;
  int32_t nranks;
  int32_t remainingMs;  // how long this rank still waits: the server gives up on everyone then
  uint64_t secret;
  llSocketAddr hub;  // rank 0 to the root: where its hub listens
};

enum llRendezvousStatus : int32_t {
  LL_RDV_OK = 0,
  LL_RDV_BAD_SECRET = 1,  // this connection only: the others go on
  LL_RDV_RANK_RANGE = 2,  // the rest reject the whole communicator
  LL_RDV_DUP_RANK = 3,
  LL_RDV_NRANKS_MISMATCH = 4,
  LL_RDV_TIMEOUT = 5,
};

struct llHelloReply {
  uint32_t magic;    // LL_HELLO_MAGIC
  int32_t status;    // llRendezvousStatus
  llSocketAddr hub;  // from the root, with LL_RDV_OK: where rank 0's hub listens
  char detail[192];  // why, for anything but LL_RDV_OK
};

// Rank side: connects to server (retrying until deadlineMs), sends hello (filling remainingMs) and
// waits for the reply a little past deadlineMs, so that the server's reason for giving up arrives
// first. Returns the connection and the reply's hub address.
llResult_t llRendezvousJoin(const llSocketAddr& server, const char* serverName, llHello hello,
                            int64_t deadlineMs, llSocket* conn, llSocketAddr* hub);

// Server side: accepts on listener until ranks [firstRank, nranks) have each sent a valid hello
// (nranks 0: learnt from the first hello). A wrong secret is refused and forgotten; a rank out of range,
// a duplicate or disagreeing nranks, or the deadline (lowered by each hello's remainingMs) rejects
// everyone with the reason. On success (*conns)[r] and (*hellos)[r] hold rank r's; nobody is answered.
llResult_t llRendezvousServe(const llSocket& listener, uint64_t secret, int nranks, int firstRank,
                             int64_t deadlineMs, std::vector<llSocket>* conns, std::vector<llHello>* hellos);

// Answers every connection in conns (from firstRank on) with LL_RDV_OK and hub, even past a failed one
// (returned).
llResult_t llRendezvousAccept(std::vector<llSocket>& conns, int firstRank, const llSocketAddr& hub,
                              int64_t deadlineMs);
