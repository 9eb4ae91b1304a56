// Inputs of the benchmark's calls and the checks of their outputs (the `#wrong` column).
//
// Every rank draws every rank's inputs from one seed (test/reference's generator: random bf16 tokens,
// K distinct experts per token, weights in [0.05, 1)), so it knows which rows it must receive. Checks
// run on their own iterations, never timed:
//   dispatch: recvCount, layoutRange, srcInfo and every valid row of recvX (bf16: the source token bit
//             for bit; fp8: its quantisation by device/fp8_quant.h, bytes and scales bit for bit).
//   combine:  each expert's output is what it received, dequantised and scaled by a factor of its own
//             (so a row reduced under the wrong expert shows), rounded to bf16; every output token is
//             compared with the fp64 sum of its weighted expert outputs by calc_diff < 1e-5 (the only
//             error left is fp32 accumulation and one rounding to bf16). A rank sees only its own
//             tokens' rows, so the reference uses the rows a correct dispatch delivers; the dispatch
//             check holds the library to exactly those.
// A row is wrong if anything about it differs; an expert whose count is off counts all its expected
// rows (at least one); NaN never matches.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "test/perf/perf_io.h"
#include "test/reference/reference.h"

struct llPerfCase {
  llRefShape shape;  // the communicator's: N is the largest token count of the run
  bool fp8 = false;
  bool ue8m0 = false;  // fp8 scales as UE8M0 bytes, four groups a word (LL_UE8M0), else floats
  int rank = 0;
  int T = 0;
  std::vector<llRefRankInput> inputs;  // every rank's, T tokens each
  // Per local expert: (source rank, token) of each row it receives, in the library's order
  // (source rank, token, k).
  std::vector<std::vector<std::pair<int, int>>> rows;

  const llRefRankInput& mine() const { return inputs[rank]; }
};

llPerfCase llPerfMakeCase(const llRefShape& shape, bool fp8, bool ue8m0, int T, int rank, uint64_t seed);

// This rank's (token, k) pairs with an expert (all of them: the generator draws no -1).
long llPerfValidPairs(const llPerfCase& c);

// Uploads this rank's tokens, experts and weights; returns with the stream idle.
void llPerfUploadInputs(const llPerfCase& c, llPerfIo& io, cudaStream_t s);

// Writes the expert outputs of the rows this rank will receive and poisons every output (0xFF: NaN in
// bf16, fp8 and fp32; 0x7F in counts and indices), so a check sees only what the library wrote.
void llPerfPrepareCheck(const llPerfCase& c, llPerfIo& io, cudaStream_t s);

// Rows that differ from the reference (the stream is synchronised first).
long llPerfCheckDispatch(const llPerfCase& c, const llPerfIo& io, cudaStream_t s);
long llPerfCheckCombine(const llPerfCase& c, const llPerfIo& io, cudaStream_t s);
