// Text statistics behind the Gopher (Rae et al. 2021) and C4 quality filters, in one pass per
// document family: word, symbol and line counts, duplicate lines and paragraphs, and the n-gram
// repetition fractions. Python compares them with the configured thresholds
// (fastllm/data/quality.py). Words are whitespace units; "chars" are Unicode code points.
//
//   top n-gram fraction (n = 2..4): chars of the most frequent n-gram times its count over all
//     word chars, when it occurs at least twice (0 otherwise);
//   duplicate n-gram fraction (n = 5..10): chars of words covered by an n-gram occurrence that
//     repeats an earlier one, each word counted once, over all word chars.
#include <algorithm>

#include "common/parallel.h"
#include "cpu/minhash_ngrams.h"
#include "cpu/minhash_table.h"

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

class StatsComputer {
 public:
  explicit StatsComputer(const std::vector<uint64_t>& stop_words) : stop_words_(stop_words) {}

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
  void symbols(double* out) const {
    double hashes = 0, ellipses = 0;
    for (int64_t i = 0; i < n_; ++i) {
      if (s_[i] == '#') ++hashes;
      else if (s_[i] == '.' && i + 2 < n_ && s_[i + 1] == '.' && s_[i + 2] == '.') {
        ++ellipses;
        while (i + 1 < n_ && s_[i + 1] == '.') ++i;
      } else if (s_[i] == 0xE2 && i + 2 < n_ && s_[i + 1] == 0x80 && s_[i + 2] == 0xA6) {
        ++ellipses;
        i += 2;
      }
    }
    out[kHashSymbols] = hashes;
    out[kEllipses] = ellipses;
  }

  void lines_and_paragraphs(double* out) {
    std::vector<Span> lines;
    for (int64_t b = 0; b <= n_;) {
      int64_t e = b;
      while (e < n_ && s_[e] != '\n') ++e;
      lines.push_back(trim(s_, {b, e}));
      b = e + 1;
    }
    table_.reset(static_cast<int64_t>(lines.size()));
    std::vector<Span> paragraphs;
    Span paragraph{-1, -1};
    for (const Span& line : lines) {
      if (line.begin == line.end) {
        if (paragraph.begin >= 0) paragraphs.push_back(paragraph);
        paragraph = {-1, -1};
        continue;
      }
      if (paragraph.begin < 0) paragraph.begin = line.begin;
      paragraph.end = line.end;
      out[kLines] += 1;
      if (is_bullet(decode_at(s_, line.begin, n_))) out[kBulletLines] += 1;
      if (ends_with_ellipsis(s_, line)) out[kEllipsisLines] += 1;
      if (table_.add(hash_bytes(s_, line.begin, line.end, false), line.begin) > 0) {
        out[kDupLines] += 1;
        out[kDupLineChars] += static_cast<double>(count_code_points(s_, line.begin, line.end));
      }
    }
    if (paragraph.begin >= 0) paragraphs.push_back(paragraph);
    table_.reset(static_cast<int64_t>(paragraphs.size()));
    for (const Span& p : paragraphs) {
      out[kParagraphs] += 1;
      if (table_.add(hash_bytes(s_, p.begin, p.end, false), p.begin) > 0) {
        out[kDupParagraphs] += 1;
        out[kDupParagraphChars] += static_cast<double>(count_code_points(s_, p.begin, p.end));
      }
    }
  }

  void words(double* out) {
    split_units(reinterpret_cast<const char*>(s_), n_, Units::whitespace, words_);
    word_chars_.resize(words_.size());
    double total = 0, alpha = 0, stop = 0;
    for (size_t w = 0; w < words_.size(); ++w) {
      const Unit& u = words_[w];
      word_chars_[w] = count_code_points(s_, u.begin, u.end);
      total += static_cast<double>(word_chars_[w]);
      for (int64_t i = u.begin; i < u.end; i += utf8_length(s_[i])) {
        if (is_letter_code_point(decode_at(s_, i, n_))) {
          alpha += 1;
          break;
        }
      }
      if (!stop_words_.empty() && is_stop_word(u)) stop += 1;
    }
    out[kWords] = static_cast<double>(words_.size());
    out[kWordChars] = total;
    out[kAlphaWords] = alpha;
    out[kStopWords] = stop;
  }

  bool is_stop_word(const Unit& u) const {
    int64_t b = u.begin, e = u.end;
    while (b < e && s_[b] < 0x80 && !is_alnum_byte(s_[b])) ++b;
    while (e > b && s_[e - 1] < 0x80 && !is_alnum_byte(s_[e - 1])) --e;
    if (b == e) return false;
    return std::binary_search(stop_words_.begin(), stop_words_.end(), hash_bytes(s_, b, e, true));
  }

  void repetition(double* out) {
    const int64_t n_words = static_cast<int64_t>(words_.size());
    const double total = out[kWordChars];
    if (total <= 0) return;
    for (int n = 2; n <= 4; ++n) out[kTopNgram2 + n - 2] = top_ngram_fraction(n, n_words) / total;
    for (int n = 5; n <= 10; ++n) {
      const double covered = duplicate_ngram_chars(n, n_words);
      out[kDupNgram5 + n - 5] = covered / total;
      if (covered == 0) break;  // no repeated n-gram means no repeated longer one either
    }
  }

  int64_t ngram_chars(int64_t i, int n) const {
    int64_t c = 0;
    for (int k = 0; k < n; ++k) c += word_chars_[i + k];
    return c;
  }

  double top_ngram_fraction(int n, int64_t n_words) {
    if (n_words < n) return 0;
    table_.reset(n_words - n + 1);
    for (int64_t i = 0; i + n <= n_words; ++i) table_.add(ngram_hash(words_.data() + i, n), i);
    int32_t best_count = 1;
    int64_t best_chars = 0;
    table_.for_each([&](int32_t count, int64_t first) {
      if (count < 2 || count < best_count) return;
      const int64_t chars = ngram_chars(first, n);
      if (count > best_count || chars > best_chars) {
        best_count = count;
        best_chars = chars;
      }
    });
    return best_count >= 2 ? static_cast<double>(best_count) * static_cast<double>(best_chars) : 0.0;
  }

  double duplicate_ngram_chars(int n, int64_t n_words) {
    if (n_words < n) return 0;
    table_.reset(n_words - n + 1);
    covered_.assign(n_words, 0);
    for (int64_t i = 0; i + n <= n_words; ++i)
      if (table_.add(ngram_hash(words_.data() + i, n), i) > 0)
        std::fill(covered_.begin() + i, covered_.begin() + i + n, 1);
    double chars = 0;
    for (int64_t w = 0; w < n_words; ++w)
      if (covered_[w]) chars += static_cast<double>(word_chars_[w]);
    return chars;
  }

  const std::vector<uint64_t>& stop_words_;
  const unsigned char* s_ = nullptr;
  int64_t n_ = 0;
  HashCounter table_;
  std::vector<Unit> words_;
  std::vector<int64_t> word_chars_;
  std::vector<char> covered_;
};

}  // namespace

uint64_t word_hash(std::string_view word) {
  return hash_bytes(reinterpret_cast<const unsigned char*>(word.data()), 0,
                    static_cast<int64_t>(word.size()), true);
}

void text_stats(const std::vector<std::string_view>& texts, const std::vector<uint64_t>& stop_words,
                double* out, int n_threads) {
  parallel_range(static_cast<int64_t>(texts.size()), 4, n_threads, [&](int64_t begin, int64_t end) {
    StatsComputer computer(stop_words);
    for (int64_t i = begin; i < end; ++i) computer.compute(texts[i], out + i * kNumTextStats);
  });
}

}  // namespace minhash
}  // namespace fastllm
