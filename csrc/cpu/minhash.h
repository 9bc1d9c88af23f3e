// MinHash signatures, LSH band keys and union-find for near-duplicate detection, plus the n-gram
// matching (decontamination) and text statistics (quality filters) built on the same word hashing.
//
// Math. A document is the set S of its shingles (n consecutive units), each hashed to an odd
// 32-bit number s (minhash_shingle.h: 31 bits of a strong 64-bit mix of the shingle's unit hashes,
// so the shingle hashes behave like independent uniform draws from the odd residues mod 2^32).
// Permutation p of num_perm is pi_p(s) = a_p * s mod 2^32 with a_p odd (drawn from the seed): a
// bijection of the odd residues, so for any fixed set the values pi_p(s) are again i.i.d.
// uniform and the argmin of pi_p over S_a u S_b is uniform over the union. The signature is
// sig[p] = min over S of pi_p(s); hence P(sig_a[p] == sig_b[p]) = Jaccard(S_a, S_b), up to 31-bit
// hash collisions (probability ~|S_a u S_b|^2 / 2^32 per pair), and the fraction of equal entries
// is an unbiased estimate. Its standard error is sqrt(J (1 - J) / num_perm) when the permutations
// are independent: pi_q = c * pi_p with c = a_q / a_p, a 2-D lattice whose points are spread evenly
// at the scale of the minima for all but vanishingly rare c (the usual objection to linear
// permutations, structured inputs, does not apply: the randomness comes from the strong shingle
// hash, the permutations only have to order it independently). tests/data/test_minhash.py checks
// the estimates against exact Jaccard on thousands of pairs from 8 to 4000 words (no bias, overall
// or per permutation; binomial spread, i.e. no correlation between permutations) and against
// datasketch. Empty documents get all 0xFFFFFFFF.
//
// Cost: one 32-bit multiply and one unsigned min per shingle and permutation, 16 lanes per
// AVX-512 register (8 per AVX2); on Zen 4 vpmulld zmm issues once per cycle, so 128 permutations
// take 8 cycles per shingle (the previous murmur-finaliser permutation needed two multiplies and
// five more operations per lane, ~36 cycles). Shingling is O(text), SIMD too (minhash_shingle.h).
//
// SIMD: the kernel evaluates the num_perm permutations of one shingle in vector lanes; all paths
// compute the same integers (shingling included), so signatures are identical whatever the ISA
// and thread count. Test: tests/data/test_minhash.py; bench: bench/bench_minhash.py.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "cpu/minhash_shingle.h"
#include "cpu/minhash_text.h"

namespace fastllm {
namespace minhash {

// Lanes are padded to a multiple of this many permutations.
constexpr int kPermAlign = 16;

static inline uint32_t permute(uint32_t s, uint32_t a) { return a * s; }

// One ISA's implementation. All of them give identical results.
struct MinhashKernels {
  // sig[p] = min(sig[p], min_i permute(shingles[i], mults[p])) for p < num_perm (a multiple of
  // kPermAlign).
  void (*fold)(const uint32_t* shingles, int64_t n_shingles, const uint32_t* mults, int num_perm,
               uint32_t* sig);
  // Folds the shingles of one text into sig (set to 0xFFFFFFFF by the caller), streaming them.
  void (*signature)(std::string_view text, Units mode, int ngram, const uint32_t* mults, int num_perm,
                    ShingleScratch& scratch, uint32_t* sig);
  // All shingle hashes of one text, in text order (duplicates kept).
  void (*shingles)(std::string_view text, Units mode, int ngram, ShingleScratch& scratch,
                   std::vector<uint32_t>& out);
};

extern const MinhashKernels kernels_generic;
#if defined(FASTLLM_X86)
extern const MinhashKernels kernels_avx2;
extern const MinhashKernels kernels_avx512;
#endif
const MinhashKernels& kernels();  // the active ISA's

// 32-bit shingle hashes of one text (n-grams of `ngram` units; a text with fewer units than that
// gives one shingle of all of them; an empty text gives none).
void shingle_hashes(std::string_view text, Units mode, int ngram, std::vector<uint32_t>& out);

// Signatures of many texts on n_threads threads: out is [n_texts, num_perm_padded] row-major.
// mults: num_perm_padded odd multipliers.
void signatures(const std::vector<std::string_view>& texts, Units mode, int ngram, const uint32_t* mults,
                int num_perm_padded, uint32_t* out, int n_threads);

// keys[i, b] = hash of sig[i, b*rows : (b+1)*rows] (row stride sig_stride).
void band_keys(const uint32_t* sig, int64_t n, int64_t sig_stride, int bands, int rows, uint64_t* keys,
               int n_threads);

// Connected components of the graph with n nodes and the given edges; root[i] = the smallest
// node index in i's component (so "keep root[i] == i" keeps the first document of each cluster).
void components(int64_t n, const int64_t* u, const int64_t* v, int64_t n_edges, int64_t* root);

}  // namespace minhash
}  // namespace fastllm
