// GPU check of a communicator's routes: every rank writes a rank- and cycle-specific pattern into every
// peer's buffer through its route, then a release-ordered signal; every rank waits (bounded) for all
// signals and checks every word it received.
#pragma once

#include <cstddef>
#include <cstdint>

#include "comm.h"

struct llRouteCheckResult {
  unsigned long long wrongWords;  // words that differ from the expected pattern
  unsigned int missingSignals;    // sources whose signal never came within the timeout
};

// Runs the check on the current stream and waits for it. Returns llSuccess when the kernels ran;
// the result says whether the data was right.
llResult_t llRouteCheck(llComm* comm, uint32_t cycle, llRouteCheckResult* result);
