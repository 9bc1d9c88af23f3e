// Case-insensitive substring search for the C4 "forbidden substrings" filter: `needle in
// text.lower()` (fastllm/data/quality.py) for lowercase needles, over a str's code points.
// Only ASCII needles are searched here: Python's lower() maps ASCII letters to ASCII and, in the
// Unicode data Python ships, only two other characters to strings with ASCII in them (U+0130
// and U+212A: `unsafe`, checked by tests/data/test_text_native.py); every other character lowers
// to non-ASCII characters, so an ASCII needle can only match ASCII characters of the text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fastllm {
namespace text {

// 1: a needle occurs in the lowered text; 0: none does; -1: undecided here (a non-ASCII needle,
// or the text holds one of `unsafe`): the caller decides in Python.
template <typename Char>
int contains_any_lowered(const Char* s, int64_t n, const std::vector<std::string>& needles,
                         const std::vector<uint32_t>& unsafe);

}  // namespace text
}  // namespace fastllm
