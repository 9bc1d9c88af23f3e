// Decontamination n-gram matching and text statistics for quality filters (see the .cpp files).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cpu/minhash_text.h"

namespace fastllm {
namespace minhash {

struct NgramTable {
  const uint64_t* hashes;  // sorted, unique
  const uint64_t* masks;   // bit s set: the n-gram occurs in evaluation set s
  int64_t size;
};

// 64-bit hashes of every n-gram of `ngram` units (none when the text has fewer units).
void ngram_hash_list(std::string_view text, Units mode, int ngram, std::vector<Unit>& units,
                     std::vector<uint64_t>& out);

// counts[i]: n-grams of text i found in the table; masks[i]: OR of their set masks.
void ngram_match(const std::vector<std::string_view>& texts, const NgramTable& table, Units mode, int ngram,
                 int64_t* counts, uint64_t* masks, int n_threads);

// Byte spans [begin, end) of the matched n-grams of one text, overlapping ones merged.
std::vector<std::pair<int64_t, int64_t>> ngram_spans(std::string_view text, const NgramTable& table,
                                                     Units mode, int ngram);

// Per-text statistics for Gopher/C4-style quality filters; columns in TextStat order.
enum TextStat : int {
  kChars = 0, kWords, kWordChars, kAlphaWords, kHashSymbols, kEllipses, kLines, kBulletLines,
  kEllipsisLines, kStopWords, kDupLines, kDupLineChars, kParagraphs, kDupParagraphs, kDupParagraphChars,
  kTopNgram2, kTopNgram3, kTopNgram4, kDupNgram5, kDupNgram6, kDupNgram7, kDupNgram8, kDupNgram9,
  kDupNgram10, kNumTextStats
};

// out: [n_texts, kNumTextStats] doubles. stop_words: lowercase.
void text_stats(const std::vector<std::string_view>& texts, const std::vector<std::string>& stop_words,
                double* out, int n_threads);

}  // namespace minhash
}  // namespace fastllm
