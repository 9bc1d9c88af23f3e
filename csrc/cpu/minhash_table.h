// A small open-addressing hash table from 64-bit hashes to (count, first position), reused per
// document by the n-gram statistics and matching code. `static inline`/header-only for the same
// reason as minhash_text.h.
#pragma once

#include <cstdint>
#include <vector>

namespace fastllm {
namespace minhash {

class HashCounter {
 public:
  // Empties the table and makes room for at least `n` distinct keys.
  void reset(int64_t n) {
    int64_t capacity = 16;
    while (capacity < 2 * n) capacity <<= 1;
    if (static_cast<int64_t>(keys_.size()) != capacity) {
      keys_.assign(capacity, 0);
      counts_.assign(capacity, 0);
      first_.assign(capacity, 0);
    } else {
      std::fill(keys_.begin(), keys_.end(), 0);
    }
    mask_ = static_cast<uint64_t>(capacity - 1);
  }

  // Counts one occurrence of `key` at `position`; returns the count before this one.
  int32_t add(uint64_t key, int64_t position) {
    if (key == 0) key = 1;  // 0 marks an empty slot
    for (uint64_t slot = key & mask_;; slot = (slot + 1) & mask_) {
      if (keys_[slot] == key) return counts_[slot]++;
      if (keys_[slot] == 0) {
        keys_[slot] = key;
        counts_[slot] = 1;
        first_[slot] = position;
        return 0;
      }
    }
  }

  // Calls fn(count, first_position) for every key.
  template <typename Fn>
  void for_each(Fn fn) const {
    for (size_t s = 0; s < keys_.size(); ++s)
      if (keys_[s] != 0) fn(counts_[s], first_[s]);
  }

 private:
  std::vector<uint64_t> keys_;
  std::vector<int32_t> counts_;
  std::vector<int64_t> first_;
  uint64_t mask_ = 0;
};

}  // namespace minhash
}  // namespace fastllm
