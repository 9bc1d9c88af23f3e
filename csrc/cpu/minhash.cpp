// MinHash drivers: the per-ISA kernel choice, signatures of many texts, LSH band keys, union-find.
// See minhash.h for the math.
#include "cpu/minhash.h"

#include <algorithm>
#include <numeric>

#include "common/check.h"
#include "common/parallel.h"
#include "cpu/isa.h"

namespace fastllm {
namespace minhash {

const MinhashKernels& kernels() {
#if defined(FASTLLM_X86)
  switch (active_isa()) {
    case Isa::avx512: return kernels_avx512;
    case Isa::avx2: return kernels_avx2;
    default: break;
  }
#endif
  return kernels_generic;
}

void shingle_hashes(std::string_view text, Units mode, int ngram, std::vector<uint32_t>& out) {
  FASTLLM_CHECK(ngram >= 1, "minhash: ngram must be >= 1, got ", ngram);
  ShingleScratch scratch;
  kernels().shingles(text, mode, ngram, scratch, out);
}

void signatures(const std::vector<std::string_view>& texts, Units mode, int ngram, const uint32_t* mults,
                int num_perm_padded, uint32_t* out, int n_threads) {
  FASTLLM_CHECK(ngram >= 1, "minhash: ngram must be >= 1, got ", ngram);
  FASTLLM_CHECK(num_perm_padded > 0 && num_perm_padded % kPermAlign == 0,
                "minhash: padded permutation count must be a positive multiple of ", kPermAlign);
  const MinhashKernels& k = kernels();
  const int64_t n = static_cast<int64_t>(texts.size());
  // Small tasks handed out dynamically: a thread slowed down by a busy core or by long documents
  // does not hold the others up.
  const int64_t per_task = std::clamp<int64_t>(n / (16 * std::max(n_threads, 1)), 8, 256);
  parallel_for((n + per_task - 1) / per_task, n_threads, [&](int64_t task) {
    thread_local ShingleScratch scratch;
    const int64_t end = std::min(n, (task + 1) * per_task);
    for (int64_t i = task * per_task; i < end; ++i) {
      uint32_t* sig = out + i * num_perm_padded;
      std::fill(sig, sig + num_perm_padded, 0xFFFFFFFFu);
      k.signature(texts[i], mode, ngram, mults, num_perm_padded, scratch, sig);
    }
  });
}

void band_keys(const uint32_t* sig, int64_t n, int64_t sig_stride, int bands, int rows, uint64_t* keys,
               int n_threads) {
  FASTLLM_CHECK(bands >= 1 && rows >= 1 && bands * rows <= sig_stride,
                "minhash: bands x rows (", bands, " x ", rows, ") exceeds the signature length ", sig_stride);
  parallel_range(n, 1024, n_threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint32_t* row = sig + i * sig_stride;
      for (int b = 0; b < bands; ++b) {
        uint64_t x = 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(b);
        for (int r = 0; r < rows; ++r) x = mix64(x ^ row[b * rows + r]);
        keys[i * bands + b] = x;
      }
    }
  });
}

namespace {
int64_t find_root(std::vector<int64_t>& parent, int64_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];  // path halving
    x = parent[x];
  }
  return x;
}
}  // namespace

void components(int64_t n, const int64_t* u, const int64_t* v, int64_t n_edges, int64_t* root) {
  std::vector<int64_t> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  for (int64_t e = 0; e < n_edges; ++e) {
    FASTLLM_CHECK(u[e] >= 0 && u[e] < n && v[e] >= 0 && v[e] < n, "minhash: edge ", e, " (", u[e], ", ",
                  v[e], ") is outside [0, ", n, ")");
    const int64_t a = find_root(parent, u[e]);
    const int64_t b = find_root(parent, v[e]);
    // The smaller index becomes the root, so the result does not depend on the edge order.
    if (a < b) parent[b] = a;
    else if (b < a) parent[a] = b;
  }
  for (int64_t i = 0; i < n; ++i) root[i] = find_root(parent, i);
}

}  // namespace minhash
}  // namespace fastllm
