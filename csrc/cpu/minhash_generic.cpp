// Scalar MinHash: shingling and the signature fold, the C++ truth the SIMD paths must match bit
// for bit (see minhash.h and minhash_shingle.h for the math).
#include <algorithm>

#include "cpu/minhash.h"

namespace fastllm {
namespace minhash {
namespace {

struct GenericOps : ScalarSteps {
  static void fold(const uint32_t* shingles, int64_t n_shingles, const uint32_t* mults, int num_perm,
                   uint32_t* sig) {
    for (int64_t i = 0; i < n_shingles; ++i) {
      const uint32_t s = shingles[i];
      for (int p = 0; p < num_perm; ++p) sig[p] = std::min(sig[p], permute(s, mults[p]));
    }
  }
};

}  // namespace

const MinhashKernels kernels_generic = {GenericOps::fold, signature_of<GenericOps>, shingles_of<GenericOps>};

}  // namespace minhash
}  // namespace fastllm
