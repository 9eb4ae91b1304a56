// The user's llConfig_t, checked and with every default filled in.
#pragma once

#include <cstddef>

#include "llep.h"

struct llCommConfig {
  int maxTokensPerRank;
  int hidden;
  int numExperts;
  int maxTopk;
  int transports;  // LL_TRANSPORT_* mask
  int timeoutMs;
  int numSms;
  size_t bufferBytes;
};

// Largest shapes accepted; beyond them 32-bit row indices or buffer sizes would overflow.
constexpr int kLlMaxTokensPerRank = 1 << 16;
constexpr int kLlMaxHidden = 1 << 16;
constexpr int kLlMaxExperts = 1 << 14;

// Rejects a NULL, uninitialised, foreign-sized or out-of-range config with llInvalidArgument and a
// message naming the field; otherwise fills *out. nranks is needed for the experts-per-rank check.
llResult_t llConfigResolve(const llConfig_t* user, int nranks, llCommConfig* out);

// LLEP_TRANSPORT ("auto", "p2p", "ibgda") as a mask; malformed values warn and give auto.
int llTransportsFromEnv();
