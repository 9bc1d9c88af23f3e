// Long n-gram matching for decontamination: a document is contaminated by an evaluation set when
// they share any n-gram of `ngram` units (13 alnum words by default, as in GPT-3's analysis).
// The evaluation side is a sorted array of 64-bit n-gram hashes with a bitmask of the sets each
// came from; documents are looked up with a binary search per n-gram.
#include "cpu/minhash_ngrams.h"

#include <algorithm>

#include "common/check.h"
#include "common/parallel.h"

namespace fastllm {
namespace minhash {

void ngram_hash_list(std::string_view text, Units mode, int ngram, std::vector<Unit>& units,
                     std::vector<uint64_t>& out) {
  split_units(text.data(), static_cast<int64_t>(text.size()), mode, units);
  out.clear();
  const int64_t n = static_cast<int64_t>(units.size());
  for (int64_t i = 0; i + ngram <= n; ++i) out.push_back(ngram_hash(units.data() + i, ngram));
}

namespace {
// Index of `key` in the sorted table, or -1.
int64_t lookup(const NgramTable& table, uint64_t key) {
  const uint64_t* end = table.hashes + table.size;
  const uint64_t* it = std::lower_bound(table.hashes, end, key);
  return (it != end && *it == key) ? it - table.hashes : -1;
}
}  // namespace

void ngram_match(const std::vector<std::string_view>& texts, const NgramTable& table, Units mode, int ngram,
                 int64_t* counts, uint64_t* masks, int n_threads) {
  FASTLLM_CHECK(ngram >= 1, "ngram_match: ngram must be >= 1, got ", ngram);
  parallel_range(static_cast<int64_t>(texts.size()), 16, n_threads, [&](int64_t begin, int64_t end) {
    std::vector<Unit> units;
    std::vector<uint64_t> hashes;
    for (int64_t i = begin; i < end; ++i) {
      ngram_hash_list(texts[i], mode, ngram, units, hashes);
      int64_t count = 0;
      uint64_t mask = 0;
      for (uint64_t h : hashes) {
        const int64_t at = table.size ? lookup(table, h) : -1;
        if (at >= 0) {
          ++count;
          mask |= table.masks[at];
        }
      }
      counts[i] = count;
      masks[i] = mask;
    }
  });
}

std::vector<std::pair<int64_t, int64_t>> ngram_spans(std::string_view text, const NgramTable& table,
                                                     Units mode, int ngram) {
  std::vector<Unit> units;
  split_units(text.data(), static_cast<int64_t>(text.size()), mode, units);
  std::vector<std::pair<int64_t, int64_t>> spans;
  const int64_t n = static_cast<int64_t>(units.size());
  for (int64_t i = 0; i + ngram <= n; ++i) {
    if (lookup(table, ngram_hash(units.data() + i, ngram)) < 0) continue;
    const int64_t b = units[i].begin, e = units[i + ngram - 1].end;
    if (!spans.empty() && b <= spans.back().second) spans.back().second = std::max(spans.back().second, e);
    else spans.emplace_back(b, e);
  }
  return spans;
}

}  // namespace minhash
}  // namespace fastllm
