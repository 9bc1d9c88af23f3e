// Text statistics behind the Gopher (Rae et al. 2021) and C4 quality filters, in one pass per
// document family: word, symbol and line counts, duplicate lines and paragraphs, and the n-gram
// repetition fractions. Python compares them with the configured thresholds
// (fastllm/data/quality.py). Words are whitespace units; "chars" are Unicode code points.
//
//   top n-gram fraction (n = 2..4): chars of the most frequent n-gram times its count over all
//     word chars, when it occurs at least twice (0 otherwise);
//   duplicate n-gram fraction (n = 5..10): chars of words covered by an n-gram occurrence that
//     repeats an earlier one, each word counted once, over all word chars.
//
// Lines, paragraphs, words and n-grams are compared by 64-bit hashes. The truth is
// fastllm.data.quality.text_stats_ref (Python strings, exact comparisons): tests/data/
// test_text_native.py checks equality on generated text, test_clean_golden.py pins the outputs;
// bench/bench_prepare.py times it ("quality").
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "common/parallel.h"
#include "cpu/minhash_ngrams.h"

namespace fastllm {
namespace minhash {
namespace {

int64_t count_code_points(const unsigned char* s, int64_t b, int64_t e) {
  int64_t n = 0;
  for (int64_t i = b; i < e; ++i) n += (s[i] & 0xC0) != 0x80;
  return n;
}

// Decodes the code point starting at s[i] (no validation: the text is valid UTF-8 from Python).
uint32_t decode_at(const unsigned char* s, int64_t i, int64_t n) {
  const int len = utf8_length(s[i]);
  if (len == 1 || i + len > n) return s[i];
  uint32_t cp = s[i] & (0xFF >> (len + 1));
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
  return cp;
}

bool is_letter_code_point(uint32_t cp) {
  if (cp < 0x80) return static_cast<uint32_t>((cp | 0x20) - 'a') < 26;
  if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7) return false;           // Latin-1 symbols
  if (cp >= 0x2000 && cp <= 0x2BFF) return false;                    // punctuation, symbols, arrows
  if (cp >= 0x3000 && cp <= 0x303F) return false;                    // CJK punctuation
  if (cp >= 0xFF00 && cp <= 0xFF0F) return false;                    // fullwidth punctuation
  if (cp >= 0x1F000) return false;                                   // emoji and pictographs
  return true;
}

bool is_bullet(uint32_t cp) {
  return cp == '-' || cp == '*' || cp == 0x2022 || cp == 0x2023 || cp == 0x25E6 || cp == 0x25AA ||
         cp == 0x25CF || cp == 0x25CB || cp == 0x00B7 || cp == 0x2043 || cp == 0x25A0;
}

// Hash of bytes [b, e) for line and paragraph equality: 8 bytes per multiply instead of FNV's one
// (only equality of whole lines matters, so any strong 64-bit hash gives the same statistics).
uint64_t span_hash(const unsigned char* s, int64_t b, int64_t e) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ static_cast<uint64_t>(e - b);
  for (; b + 8 <= e; b += 8) {
    uint64_t w;
    std::memcpy(&w, s + b, 8);
    h = (h ^ mix64(w)) * 0xff51afd7ed558ccdULL;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s + b, static_cast<size_t>(e - b));
  return mix64(h ^ mix64(tail ^ 0xD6E8FEB86659FD93ULL));
}

struct Span {
  int64_t begin, end;
};

Span trim(const unsigned char* s, Span span) {
  while (span.begin < span.end && is_space_byte(s[span.begin])) ++span.begin;
  while (span.end > span.begin && is_space_byte(s[span.end - 1])) --span.end;
  return span;
}

bool ends_with_ellipsis(const unsigned char* s, Span line) {
  const int64_t len = line.end - line.begin;
  if (len >= 3 && s[line.end - 1] == '.' && s[line.end - 2] == '.' && s[line.end - 3] == '.') return true;
  return len >= 3 && s[line.end - 3] == 0xE2 && s[line.end - 2] == 0x80 && s[line.end - 1] == 0xA6;
}

// Open addressing from 64-bit keys to (count, first position), emptied in O(1) per document and
// pass: a slot whose generation is not the current one is empty. Keys are hashes; the key 0 is
// stored as 1, as HashCounter does.
class NgramCounter {
 public:
  struct Slot {
    uint64_t key;
    int64_t first;
    uint32_t generation;
    int32_t count;
  };

  // Empties the table and makes room for at least `n` distinct keys.
  void reset(int64_t n) {
    int64_t capacity = 16;
    while (capacity < 2 * n) capacity <<= 1;
    if (static_cast<int64_t>(slots_.size()) < capacity || ++generation_ == 0) {
      slots_.assign(std::max<int64_t>(capacity, static_cast<int64_t>(slots_.size())), Slot{0, 0, 0, 0});
      generation_ = 1;
    }
    mask_ = static_cast<uint64_t>(capacity - 1);
    shift_ = 64 - __builtin_ctzll(static_cast<uint64_t>(capacity));
  }

  // Counts one occurrence of `key` at `position`; returns the index of its slot.
  int64_t add(uint64_t key, int64_t position) {
    if (key == 0) key = 1;
    for (uint64_t i = key >> shift_;; i = (i + 1) & mask_) {  // the top bits: the best mixed
      Slot& slot = slots_[i];
      if (slot.generation != generation_) {
        slot = {key, position, generation_, 1};
        return static_cast<int64_t>(i);
      }
      if (slot.key == key) {
        ++slot.count;
        return static_cast<int64_t>(i);
      }
    }
  }

  const Slot& slot(int64_t i) const { return slots_[i]; }

 private:
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
  int shift_ = 60;
  uint32_t generation_ = 0;
};

// Stop words (ASCII-lowercased here too), matched against a word with its ASCII punctuation
// trimmed and ASCII letters lowered. Words of up to 8 bytes compare as one 64-bit load each.
class StopWords {
 public:
  explicit StopWords(const std::vector<std::string>& words) {
    for (std::string w : words) {
      if (w.empty()) continue;
      for (char& c : w) c = static_cast<char>(ascii_lower(static_cast<unsigned char>(c)));
      max_bytes_ = std::max(max_bytes_, static_cast<int64_t>(w.size()));
      const auto first = static_cast<unsigned char>(w[0]);
      first_byte_[first] = true;
      first_byte_[static_cast<unsigned char>(first - 'a') < 26 ? first & 0xDF : first] = true;
      if (w.size() <= 8) {
        packed_.push_back({pack(reinterpret_cast<const unsigned char*>(w.data()), static_cast<int64_t>(w.size())),
                           static_cast<int64_t>(w.size())});
      } else {
        long_.push_back(w);
      }
    }
  }

  bool empty() const { return packed_.empty() && long_.empty(); }

  // The word s[b, e) of a text of n bytes.
  bool contains(const unsigned char* s, int64_t b, int64_t e, int64_t n) const {
    const auto kept = [](unsigned char c) { return c >= 0x80 || is_alnum_byte(c); };
    if (e - b > max_bytes_ && kept(s[b]) && kept(s[e - 1])) return false;  // too long, nothing to trim
    while (b < e && s[b] < 0x80 && !is_alnum_byte(s[b])) ++b;
    while (e > b && s[e - 1] < 0x80 && !is_alnum_byte(s[e - 1])) --e;
    const int64_t len = e - b;
    if (len == 0 || len > max_bytes_ || !first_byte_[s[b]]) return false;
    if (len <= 8) {
      const uint64_t key = lower_ascii8(b + 8 <= n ? load8_prefix(s + b, len) : pack(s + b, len));
      for (const auto& [word, word_len] : packed_)
        if (word == key && word_len == len) return true;
      return false;
    }
    for (const std::string& w : long_) {
      if (static_cast<int64_t>(w.size()) != len) continue;
      int64_t k = 0;
      while (k < len && ascii_lower(s[b + k]) == static_cast<unsigned char>(w[k])) ++k;
      if (k == len) return true;
    }
    return false;
  }

 private:
  static uint64_t pack(const unsigned char* s, int64_t len) {
    uint64_t v = 0;
    std::memcpy(&v, s, static_cast<size_t>(len));
    return v;
  }

  // The first len (1..8) of 8 readable bytes, the rest zero: one load, no memcpy call.
  static uint64_t load8_prefix(const unsigned char* s, int64_t len) {
    uint64_t v;
    std::memcpy(&v, s, 8);
    return len == 8 ? v : v & ((uint64_t{1} << (8 * len)) - 1);
  }

  // ASCII 'A'..'Z' -> 'a'..'z' in each byte; other bytes (UTF-8 included) unchanged.
  static uint64_t lower_ascii8(uint64_t v) {
    const uint64_t high = 0x8080808080808080ULL, ascii = ~v & high;  // bytes below 0x80
    const uint64_t ge_a = (v | high) - 0x4141414141414141ULL;        // bit 7 set: byte >= 'A'
    const uint64_t gt_z = (v | high) - 0x5B5B5B5B5B5B5B5BULL;        // bit 7 set: byte >= 'Z' + 1
    const uint64_t upper = ascii & ge_a & ~gt_z & high;
    return v | (upper >> 2);
  }

  std::vector<std::pair<uint64_t, int64_t>> packed_;
  std::vector<std::string> long_;
  int64_t max_bytes_ = 0;
  bool first_byte_[256] = {};  // a stop word starts with this byte (either case of a letter)
};

// The per-document work, with every buffer kept across the documents of one thread.
class StatsComputer {
 public:
  explicit StatsComputer(const StopWords& stop_words) : stop_words_(stop_words) {}

  void compute(std::string_view text, double* out) {
    std::fill(out, out + kNumTextStats, 0.0);
    s_ = reinterpret_cast<const unsigned char*>(text.data());
    n_ = static_cast<int64_t>(text.size());
    out[kChars] = static_cast<double>(count_code_points(s_, 0, n_));
    symbols(out);
    lines_and_paragraphs(out);
    words(out);
    repetition(out);
  }

 private:
  // '#' characters and ellipses: a run of three or more dots counts once, and so does each
  // U+2026 (E2 80 A6). Branch-free counts over every position, which the compiler vectorizes.
  // '#' characters and ellipses (a run of three or more dots counts once, as does each U+2026,
  // E2 80 A6), each found with memchr: they are rare, and the three searches cannot interfere.
  void symbols(double* out) const {
    const unsigned char* end = s_ + n_;
    double hashes = 0, ellipses = 0;
    for (const unsigned char* p = s_; (p = find(p, end, '#')) != nullptr; ++p) ++hashes;
    for (const unsigned char* p = s_; (p = find(p, end, '.')) != nullptr;) {
      const unsigned char* run = p;
      while (run < end && *run == '.') ++run;
      ellipses += run - p >= 3;
      p = run;
    }
    for (const unsigned char* p = s_; (p = find(p, end, 0xE2)) != nullptr; ++p)
      ellipses += end - p >= 3 && p[1] == 0x80 && p[2] == 0xA6;
    out[kHashSymbols] = hashes;
    out[kEllipses] = ellipses;
  }

  static const unsigned char* find(const unsigned char* p, const unsigned char* end, unsigned char c) {
    return p < end ? static_cast<const unsigned char*>(std::memchr(p, c, static_cast<size_t>(end - p))) : nullptr;
  }

  void lines_and_paragraphs(double* out) {
    lines_.clear();
    for (int64_t b = 0; b <= n_;) {
      const void* nl = std::memchr(s_ + b, '\n', static_cast<size_t>(n_ - b));
      const int64_t e = nl ? static_cast<const unsigned char*>(nl) - s_ : n_;
      lines_.push_back(trim(s_, {b, e}));
      b = e + 1;
    }
    table_.reset(static_cast<int64_t>(lines_.size()));
    paragraphs_.clear();
    paragraph_hashes_.clear();
    Span paragraph{-1, -1};
    int64_t paragraph_lines = 0;
    uint64_t line_hash = 0;
    // A one-line paragraph spans the same bytes as its line, so it reuses the line's hash.
    const auto close_paragraph = [&] {
      paragraphs_.push_back(paragraph);
      paragraph_hashes_.push_back(paragraph_lines == 1 ? line_hash : span_hash(s_, paragraph.begin, paragraph.end));
    };
    for (const Span& line : lines_) {
      if (line.begin == line.end) {
        if (paragraph.begin >= 0) close_paragraph();
        paragraph = {-1, -1};
        paragraph_lines = 0;
        continue;
      }
      if (paragraph.begin < 0) paragraph.begin = line.begin;
      paragraph.end = line.end;
      ++paragraph_lines;
      out[kLines] += 1;
      if (is_bullet(decode_at(s_, line.begin, n_))) out[kBulletLines] += 1;
      if (ends_with_ellipsis(s_, line)) out[kEllipsisLines] += 1;
      line_hash = span_hash(s_, line.begin, line.end);
      if (table_.slot(table_.add(line_hash, line.begin)).count > 1) {
        out[kDupLines] += 1;
        out[kDupLineChars] += static_cast<double>(count_code_points(s_, line.begin, line.end));
      }
    }
    if (paragraph.begin >= 0) close_paragraph();
    table_.reset(static_cast<int64_t>(paragraphs_.size()));
    for (size_t k = 0; k < paragraphs_.size(); ++k) {
      const Span& p = paragraphs_[k];
      out[kParagraphs] += 1;
      if (table_.slot(table_.add(paragraph_hashes_[k], p.begin)).count > 1) {
        out[kDupParagraphs] += 1;
        out[kDupParagraphChars] += static_cast<double>(count_code_points(s_, p.begin, p.end));
      }
    }
  }

  // Whitespace-separated words (ASCII whitespace, as split_units): their hashes, code points
  // (prefix sums, so an n-gram's characters are one subtraction), letters and stop words. Word
  // boundaries are collected without branches (a branch per byte would mispredict at every word
  // end) and words are read 8 bytes at a time.
  void words(double* out) {
    word_bounds();
    const int64_t n_words = static_cast<int64_t>(bounds_.size() / 2);
    word_hashes_.resize(n_words);
    chars_before_.resize(n_words + 1);
    chars_before_[0] = 0;
    double alpha = 0, stop = 0;
    for (int64_t w = 0; w < n_words; ++w) {
      const int64_t b = bounds_[2 * w], e = bounds_[2 * w + 1];
      int64_t chars = 0;
      word_hashes_[w] = word_hash(b, e, &chars);
      chars_before_[w + 1] = chars_before_[w] + chars;
      alpha += has_letter(b, e);
      if (!stop_words_.empty() && stop_words_.contains(s_, b, e, n_)) stop += 1;
    }
    out[kWords] = static_cast<double>(n_words);
    out[kWordChars] = static_cast<double>(chars_before_[n_words]);
    out[kAlphaWords] = alpha;
    out[kStopWords] = stop;
  }

  // bounds_ = [begin0, end0, begin1, end1, ...]: every change between space and non-space,
  // found from 64-bit masks of the space bytes (64 bytes at a time), one step per boundary.
  void word_bounds() {
    bounds_.clear();
    uint64_t previous_space = 1;  // before the text: as if a space
    for (int64_t block = 0; block < n_; block += 64) {
      const int64_t len = std::min<int64_t>(64, n_ - block);
      const uint64_t space = space_mask(s_ + block, len);
      uint64_t changes = space ^ ((space << 1) | previous_space);
      if (len < 64) changes &= (uint64_t{1} << len) - 1;
      for (; changes != 0; changes &= changes - 1) bounds_.push_back(block + __builtin_ctzll(changes));
      previous_space = (space >> (len - 1)) & 1;
    }
    if (bounds_.size() % 2 == 1) bounds_.push_back(n_);
  }

  // Bit i: s[i] is ASCII whitespace (is_space_byte), for i < len <= 64.
  static uint64_t space_mask(const unsigned char* s, int64_t len) {
    uint64_t mask = 0;
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      mask |= space_bits8(w) << i;
    }
    for (; i < len; ++i) mask |= static_cast<uint64_t>(is_space_byte(s[i])) << i;
    return mask;
  }

  // 8 bits, one per byte of w (first byte lowest): ' ' or '\t'..'\r'. Per byte, with bit 7
  // forced on so no subtraction borrows across bytes: (b | 0x80) - k has bit 7 set iff
  // (b & 0x7F) >= k.
  static uint64_t space_bits8(uint64_t w) {
    constexpr uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
    const uint64_t low7 = w | kHigh, ascii = ~w & kHigh;
    const uint64_t ge_tab = low7 - 0x09 * kOnes, ge_cr_next = low7 - 0x0E * kOnes;
    const uint64_t ge_space = low7 - 0x20 * kOnes, ge_space_next = low7 - 0x21 * kOnes;
    const uint64_t space = ascii & ((ge_tab & ~ge_cr_next) | (ge_space & ~ge_space_next)) & kHigh;
    return ((space >> 7) * 0x0102040810204080ULL) >> 56;  // gathers bit 0 of each byte
  }

  // The bytes [b, e) 8 at a time (the last chunk zero-padded): a strong hash of them and their
  // length (only equality of words matters), and their code points (the bytes that are not UTF-8
  // continuation bytes 10xxxxxx: bit 7 set and bit 6 clear).
  uint64_t word_hash(int64_t b, int64_t e, int64_t* chars) const {
    uint64_t h = static_cast<uint64_t>(e - b) * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
    int64_t continuation = 0;
    for (int64_t i = b; i < e; i += 8) {
      uint64_t chunk = 0;
      if (i + 8 <= n_) {
        std::memcpy(&chunk, s_ + i, 8);
        if (e - i < 8) chunk &= (uint64_t{1} << (8 * (e - i))) - 1;
      } else {
        std::memcpy(&chunk, s_ + i, static_cast<size_t>(e - i));
      }
      // bit 7 of each continuation byte, moved to bit 0 and summed by one multiply
      const uint64_t marks = (chunk & ~(chunk << 1) & 0x8080808080808080ULL) >> 7;
      continuation += static_cast<int64_t>((marks * 0x0101010101010101ULL) >> 56);
      h = mix64(h ^ chunk);
    }
    *chars = (e - b) - continuation;
    return h;
  }

  bool has_letter(int64_t b, int64_t e) const {
    if (static_cast<unsigned char>((s_[b] | 0x20) - 'a') < 26) return true;  // most words
    for (int64_t i = b; i < e; i += utf8_length(s_[i]))
      if (is_letter_code_point(decode_at(s_, i, n_))) return true;
    return false;
  }

  int64_t ngram_chars(int64_t i, int n) const { return chars_before_[i + n] - chars_before_[i]; }

  // An n-gram can repeat only where both of its (n-1)-grams repeat, so each pass counts only
  // those positions (the rest are unique: they never win, never cover a word, never come first
  // for a repeated key) and only they absorb the next word into their hash.
  // repeats_[i]: the (n-1)-gram at i occurs at least twice.
  void count_pass(int n, int64_t n_words) {
    candidates_.resize(positions_.size());
    size_t kept = 0;
    for (const int64_t i : positions_) {  // branch-free: whether a position survives is a coin flip
      candidates_[kept] = i;
      kept += (i + n <= n_words) & (n == 2 || (repeats_[i] & repeats_[i + 1]));
    }
    candidates_.resize(kept);
    for (const int64_t i : positions_) repeats_[i] = 0;
    positions_.swap(candidates_);
    table_.reset(static_cast<int64_t>(positions_.size()));
    slots_.clear();
    for (const int64_t i : positions_) {
      chain_[i] = (chain_[i] ^ word_hashes_[i + n - 1]) * 0xff51afd7ed558ccdULL + 0x632BE59BD9B4E019ULL;
      slots_.push_back(table_.add(chain_[i], i));  // ngram_hash is mix64 of it: a bijection
    }
    for (size_t k = 0; k < positions_.size(); ++k) repeats_[positions_[k]] = table_.slot(slots_[k]).count > 1;
  }

  void repetition(double* out) {
    const int64_t n_words = static_cast<int64_t>(word_hashes_.size());
    const double total = out[kWordChars];
    if (total <= 0) return;
    chain_.assign(n_words, 0x9E3779B97F4A7C15ULL);
    repeats_.assign(n_words + 1, 0);
    positions_.resize(n_words);
    for (int64_t i = 0; i < n_words; ++i) positions_[i] = i;
    for (int64_t i = 0; i < n_words; ++i)  // the first word of every n-gram
      chain_[i] = (chain_[i] ^ word_hashes_[i]) * 0xff51afd7ed558ccdULL + 0x632BE59BD9B4E019ULL;
    for (int n = 2; n <= 10 && !positions_.empty(); ++n) {
      count_pass(n, n_words);
      if (n <= 4) out[kTopNgram2 + n - 2] = top_ngram_fraction(n) / total;
      if (n >= 5) {
        const double covered = duplicate_ngram_chars(n);
        out[kDupNgram5 + n - 5] = covered / total;
        if (covered == 0) break;  // no repeated n-gram means no repeated longer one either
      }
    }
  }

  // The most frequent n-gram (ties: the one with the most characters at its first occurrence).
  double top_ngram_fraction(int n) const {
    int32_t best_count = 1;
    int64_t best_chars = 0;
    for (const int64_t s : slots_) {
      const NgramCounter::Slot& slot = table_.slot(s);
      if (slot.count < 2 || slot.count < best_count) continue;
      const int64_t chars = ngram_chars(slot.first, n);
      if (slot.count > best_count || chars > best_chars) {
        best_count = slot.count;
        best_chars = chars;
      }
    }
    return best_count >= 2 ? static_cast<double>(best_count) * static_cast<double>(best_chars) : 0.0;
  }

  // Characters of the words covered by an n-gram occurrence that repeats an earlier one.
  // Positions come in ascending order, so the covered words are a union of [i, i + n) swept
  // left to right: each word's characters count once, without a flag per word.
  double duplicate_ngram_chars(int n) const {
    int64_t chars = 0, covered_end = 0;
    for (size_t k = 0; k < positions_.size(); ++k) {
      const int64_t i = positions_[k];
      if (table_.slot(slots_[k]).first == i) continue;  // the first occurrence repeats nothing
      const int64_t from = std::max(i, covered_end);
      if (from < i + n) chars += chars_before_[i + n] - chars_before_[from];
      covered_end = i + n;
    }
    return static_cast<double>(chars);
  }

  const StopWords& stop_words_;
  const unsigned char* s_ = nullptr;
  int64_t n_ = 0;
  NgramCounter table_;
  std::vector<Span> lines_, paragraphs_;
  std::vector<uint64_t> word_hashes_, chain_, paragraph_hashes_;
  std::vector<int64_t> bounds_, chars_before_, positions_, candidates_, slots_;
  std::vector<char> repeats_;
};

}  // namespace

void text_stats(const std::vector<std::string_view>& texts, const std::vector<std::string>& stop_words,
                double* out, int n_threads) {
  const StopWords stop(stop_words);
  parallel_range(static_cast<int64_t>(texts.size()), 4, n_threads, [&](int64_t begin, int64_t end) {
    StatsComputer computer(stop);
    for (int64_t i = begin; i < end; ++i) computer.compute(texts[i], out + i * kNumTextStats);
  });
}

}  // namespace minhash
}  // namespace fastllm
