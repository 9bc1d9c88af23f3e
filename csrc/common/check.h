// Argument checks for native entry points. Python validates tensors at the boundary; these
// guard the invariants native code relies on and turn violations into Python ValueErrors
// (pybind11 maps std::invalid_argument to ValueError) instead of crashes.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace fastllm {

template <typename... Parts>
[[noreturn]] static inline void fail(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw std::invalid_argument(message.str());
}

}  // namespace fastllm

// FASTLLM_CHECK(cond, "what", value, "more") throws std::invalid_argument with the parts joined.
#define FASTLLM_CHECK(cond, ...)      \
  do {                                \
    if (!(cond)) ::fastllm::fail(__VA_ARGS__); \
  } while (0)
