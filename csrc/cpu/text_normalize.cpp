// See text_normalize.h. The steps run only on texts that need them, fused into two passes (the
// one-character rewrites, then blank runs and newlines) and a strip; each pass says which
// regexes of normalize_ref it stands for and why their order is kept.
#include "cpu/text_normalize.h"

#include <cstddef>

namespace fastllm {
namespace text {
namespace {

bool is_line_break(uint32_t c) { return c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85; }

bool is_control(uint32_t c) {
  return c <= 0x08 || c == 0x0B || c == 0x0C || (c >= 0x0E && c <= 0x1F) || (c >= 0x7F && c <= 0x9F) ||
         c == 0x200B || c == 0x200E || c == 0x200F || c == 0x2060 || c == 0xFEFF || c == 0xFFFE;
}

bool is_unicode_space(uint32_t c) {
  return c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.isspace() (what str.strip() removes).
bool is_python_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0x2028 || c == 0x2029 ||
         is_unicode_space(c);
}

bool is_blank(uint32_t c) { return c == ' ' || c == '\t'; }

// Whether some step would change the text: a character a step replaces or deletes, or the
// start of a pattern (two spaces, a blank before a newline, three newlines, outer whitespace).
template <typename Char>
bool needs_work(const Char* s, int64_t n, NormalizeFlags f) {
  if (n == 0) return false;
  if (f.whitespace && (is_python_space(s[0]) || is_python_space(s[n - 1]))) return true;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t c = s[i];
    if (c > ' ' && c < 0x7F) continue;
    const uint32_t next = i + 1 < n ? static_cast<uint32_t>(s[i + 1]) : 0;
    if (c == ' ' || c == '\t') {
      if (f.whitespace && (next == '\n' || (f.collapse_spaces && c == ' ' && next == ' '))) return true;
    } else if (c == '\n') {
      if (f.whitespace && next == '\n' && i + 2 < n && s[i + 2] == '\n') return true;
    } else if ((f.whitespace && (is_line_break(c) || is_unicode_space(c))) || (f.remove_control && is_control(c))) {
      return true;
    }
  }
  return false;
}

// Line breaks, controls and Unicode spaces, from the text into `out`: each step rewrites single
// characters, so one pass does all three; a character in two sets (U+0085 is a line break and a
// C1 control) gets the earlier step's rewrite, and "\r\n" is seen in the original text, both as
// in the regex order.
template <typename Char>
void map_characters(const Char* s, int64_t n, NormalizeFlags f, std::vector<Char>& out) {
  out.clear();
  out.reserve(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t c = s[i];
    if (f.whitespace && is_line_break(c)) {
      if (c == '\r' && i + 1 < n && s[i + 1] == '\n') ++i;
      out.push_back(Char('\n'));
    } else if (f.remove_control && is_control(c)) {
      continue;
    } else {
      out.push_back(f.whitespace && is_unicode_space(c) ? Char(' ') : s[i]);
    }
  }
}

// In place: a maximal run of blanks followed by '\n' is dropped ("[ \t]+\n" -> "\n"); in
// other runs, spaces after a space are dropped (" {2,}" -> " ", when collapsing; runs are
// maximal, so that never reaches across them); a '\n' after two written ones is dropped
// ("\n{3,}" -> "\n\n", which the regexes apply last, so to what is written here).
template <typename Char>
void blanks_and_newlines(std::vector<Char>& t, bool collapse) {
  std::size_t j = 0;
  for (std::size_t i = 0; i < t.size();) {
    if (is_blank(t[i])) {
      std::size_t k = i;
      while (k < t.size() && is_blank(t[k])) ++k;
      if (k < t.size() && t[k] == '\n') {
        i = k;
        continue;
      }
      for (; i < k; ++i)
        if (!(collapse && t[i] == ' ' && j > 0 && t[j - 1] == ' ')) t[j++] = t[i];
      continue;
    }
    if (!(t[i] == '\n' && j >= 2 && t[j - 1] == '\n' && t[j - 2] == '\n')) t[j++] = t[i];
    ++i;
  }
  t.resize(j);
}

template <typename Char>
void strip(std::vector<Char>& t) {
  std::size_t b = 0, e = t.size();
  while (b < e && is_python_space(t[b])) ++b;
  while (e > b && is_python_space(t[e - 1])) --e;
  t.erase(t.begin() + static_cast<std::ptrdiff_t>(e), t.end());
  t.erase(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(b));
}

}  // namespace

template <typename Char>
bool normalize(const Char* text, int64_t n, NormalizeFlags flags, std::vector<Char>& out) {
  if (!needs_work(text, n, flags)) return false;
  map_characters(text, n, flags, out);
  if (flags.whitespace) {
    blanks_and_newlines(out, flags.collapse_spaces);
    strip(out);
  }
  return true;
}

template bool normalize(const uint8_t*, int64_t, NormalizeFlags, std::vector<uint8_t>&);
template bool normalize(const uint16_t*, int64_t, NormalizeFlags, std::vector<uint16_t>&);
template bool normalize(const uint32_t*, int64_t, NormalizeFlags, std::vector<uint32_t>&);

}  // namespace text
}  // namespace fastllm
