// Scalar MinHash signature kernel: the C++ truth the SIMD paths must match bit for bit.
#include <algorithm>

#include "cpu/minhash.h"

namespace fastllm {
namespace minhash {

void signature_generic(const uint32_t* shingles, int64_t n_shingles, const uint32_t* seeds, int num_perm,
                       uint32_t* out) {
  std::fill(out, out + num_perm, 0xFFFFFFFFu);
  for (int64_t i = 0; i < n_shingles; ++i) {
    const uint32_t h = shingles[i];
    for (int p = 0; p < num_perm; ++p) out[p] = std::min(out[p], permute(h, seeds[p]));
  }
}

}  // namespace minhash
}  // namespace fastllm
