// Whitespace and control-character normalization of one text, over its code points (the
// Latin-1, UCS-2 or UCS-4 array a Python str holds), with the results of the regex chain in
// fastllm/data/normalize.py (normalize_ref, the truth), step by step:
//
//   whitespace:      "\r\n?" and U+2028, U+2029, U+0085 -> "\n"
//   remove_control:  C0/C1 controls except \t \n \r, U+200B, U+200E, U+200F, U+2060, U+FEFF,
//                    U+FFFE deleted
//   whitespace:      U+00A0, U+1680, U+2000..U+200A, U+202F, U+205F, U+3000 -> " ";
//                    " {2,}" -> " " (collapse_spaces); "[ \t]+\n" -> "\n"; "\n{3,}" -> "\n\n";
//                    then str.strip() (Python's whitespace)
//
// Most texts need none of it, so one scan first says whether any step can change the text.
// Tested against normalize_ref on hypothesis-generated text (tests/data/test_text_native.py).
#pragma once

#include <cstdint>
#include <vector>

namespace fastllm {
namespace text {

struct NormalizeFlags {
  bool remove_control;
  bool whitespace;
  bool collapse_spaces;
};

// False when `text` is already normalized (`out` untouched); otherwise the result is in `out`.
template <typename Char>
bool normalize(const Char* text, int64_t n, NormalizeFlags flags, std::vector<Char>& out);

}  // namespace text
}  // namespace fastllm
