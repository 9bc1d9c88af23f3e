// MinHash signatures, LSH band keys and union-find for near-duplicate detection, plus the n-gram
// matching (decontamination) and text statistics (quality filters) built on the same word hashing.
//
// Math: a document is the set S of its shingles (n consecutive units, see minhash_text.h), each
// hashed to 32 bits. Permutation p of num_perm is h -> fmix32(h ^ seed_p) (a bijection of the
// 32-bit space); the signature is sig[p] = min over S of that. For two documents
// P(sig_a[p] == sig_b[p]) = Jaccard(S_a, S_b), so the fraction of equal entries estimates it with
// standard error sqrt(J (1 - J) / num_perm). Empty documents get all 0xFFFFFFFF.
//
// SIMD: the kernel evaluates the num_perm permutations of one shingle in vector lanes (16 per
// AVX-512 register, 8 per AVX2); all paths compute the same integers, so signatures are identical
// whatever the ISA. Test: tests/data/test_minhash.py; bench: bench/bench_minhash.py.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "cpu/minhash_text.h"

namespace fastllm {
namespace minhash {

// Lanes are padded to a multiple of this many permutations.
constexpr int kPermAlign = 16;

static inline uint32_t permute(uint32_t h, uint32_t seed) {
  uint32_t x = h ^ seed;
  x *= 0x85ebca6bu;
  x ^= x >> 13;
  x *= 0xc2b2ae35u;
  x ^= x >> 16;
  return x;
}

// out[p] = min_i permute(shingles[i], seeds[p]) for p < num_perm (a multiple of kPermAlign).
using SignatureKernel = void (*)(const uint32_t* shingles, int64_t n_shingles, const uint32_t* seeds,
                                 int num_perm, uint32_t* out);

void signature_generic(const uint32_t*, int64_t, const uint32_t*, int, uint32_t*);
#if defined(FASTLLM_X86)
void signature_avx2(const uint32_t*, int64_t, const uint32_t*, int, uint32_t*);
void signature_avx512(const uint32_t*, int64_t, const uint32_t*, int, uint32_t*);
#endif
SignatureKernel signature_kernel();  // the active ISA's

// 32-bit hashes of the shingles of one text (n-grams of `ngram` units; a text with fewer units
// than that gives one shingle of all of them; an empty text gives none).
void shingle_hashes(std::string_view text, Units mode, int ngram, std::vector<Unit>& units,
                    std::vector<uint32_t>& out);

// Signatures of many texts on n_threads threads: out is [n_texts, num_perm_padded] row-major.
void signatures(const std::vector<std::string_view>& texts, Units mode, int ngram, const uint32_t* seeds,
                int num_perm_padded, uint32_t* out, int n_threads);

// keys[i, b] = hash of sig[i, b*rows : (b+1)*rows] (row stride sig_stride).
void band_keys(const uint32_t* sig, int64_t n, int64_t sig_stride, int bands, int rows, uint64_t* keys,
               int n_threads);

// Connected components of the graph with n nodes and the given edges; root[i] = the smallest
// node index in i's component (so "keep root[i] == i" keeps the first document of each cluster).
void components(int64_t n, const int64_t* u, const int64_t* v, int64_t n_edges, int64_t* root);

}  // namespace minhash
}  // namespace fastllm
