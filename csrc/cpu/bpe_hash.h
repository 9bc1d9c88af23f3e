// Hashing and flat open-addressing tables shared by the BPE encoder and trainer.
//
// std::unordered_map costs a heap node per entry and a pointer chase per lookup; these tables
// keep entries in one array (linear probing, power-of-two capacity, load <= 1/2) and string keys
// in one byte arena, which is what makes the word cache and the word counter fast.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace fastllm {
namespace bpe {

static inline uint64_t mix64(uint64_t a, uint64_t b) {
  const __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

static inline uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

static inline uint64_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Equality of short byte strings without a libc call (most words are under 16 bytes).
static inline bool bytes_equal(const uint8_t* a, const uint8_t* b, size_t n) {
  if (n >= 8) {
    if (n <= 16) return load_u64(a) == load_u64(b) && load_u64(a + n - 8) == load_u64(b + n - 8);
    return std::memcmp(a, b, n) == 0;
  }
  if (n >= 4) return load_u32(a) == load_u32(b) && load_u32(a + n - 4) == load_u32(b + n - 4);
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return false;
  return true;
}

// A fast non-cryptographic hash of short byte strings (wyhash-style overlapping loads).
static inline uint64_t hash_bytes(const uint8_t* p, size_t n) {
  constexpr uint64_t k0 = 0xa0761d6478bd642full, k1 = 0xe7037ed1a0b428dbull;
  uint64_t a, b;
  if (n <= 16) {
    if (n >= 4) {
      a = (load_u32(p) << 32) | load_u32(p + ((n >> 3) << 2));
      b = (load_u32(p + n - 4) << 32) | load_u32(p + n - 4 - ((n >> 3) << 2));
    } else if (n > 0) {
      a = (static_cast<uint64_t>(p[0]) << 16) | (static_cast<uint64_t>(p[n >> 1]) << 8) | p[n - 1];
      b = 0;
    } else {
      a = b = 0;
    }
  } else {
    uint64_t seed = k0;
    size_t i = 0;
    for (; i + 16 < n; i += 16) seed = mix64(load_u64(p + i) ^ k1, load_u64(p + i + 8) ^ seed);
    a = load_u64(p + n - 16);
    b = load_u64(p + n - 8) ^ seed;
  }
  return mix64(a ^ k1 ^ n, b ^ k0);
}

static inline uint64_t hash_u64(uint64_t x) { return mix64(x ^ 0x9E3779B97F4A7C15ull, 0xbf58476d1ce4e5b9ull); }

static inline size_t table_capacity_for(size_t entries) {
  size_t capacity = 16;
  while (capacity < entries * 2) capacity <<= 1;
  return capacity;
}

// uint64 key -> uint64 value. kEmpty is never a valid key.
class U64Map {
 public:
  static constexpr uint64_t kEmpty = ~0ull;

  explicit U64Map(size_t expected = 16) { reset(expected); }

  void reset(size_t expected) {
    keys_.assign(table_capacity_for(expected), kEmpty);
    values_.assign(keys_.size(), 0);
    size_ = 0;
  }

  // Pointer to the value of `key`, or nullptr.
  const uint64_t* find(uint64_t key) const {
    const size_t mask = keys_.size() - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
      if (keys_[i] == key) return &values_[i];
      if (keys_[i] == kEmpty) return nullptr;
    }
  }

  // The value slot of `key`, inserted as `init` if absent; *inserted says which.
  uint64_t& insert(uint64_t key, uint64_t init, bool* inserted = nullptr) {
    if ((size_ + 1) * 2 > keys_.size()) grow();
    const size_t mask = keys_.size() - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
      if (keys_[i] == key) {
        if (inserted) *inserted = false;
        return values_[i];
      }
      if (keys_[i] == kEmpty) {
        keys_[i] = key;
        values_[i] = init;
        ++size_;
        if (inserted) *inserted = true;
        return values_[i];
      }
    }
  }

  size_t size() const { return size_; }
  size_t memory_bytes() const { return keys_.capacity() * 16; }

 private:
  void grow() {
    std::vector<uint64_t> keys = std::move(keys_), values = std::move(values_);
    keys_.assign(keys.size() * 2, kEmpty);
    values_.assign(keys_.size(), 0);
    size_ = 0;
    for (size_t i = 0; i < keys.size(); ++i)
      if (keys[i] != kEmpty) insert(keys[i], values[i]);
  }

  std::vector<uint64_t> keys_, values_;
  size_t size_ = 0;
};

// Byte-string key -> int64 count, keys in one arena. Used to count pre-tokenized words.
class WordCountMap {
 public:
  struct Slot {
    uint64_t hash;
    uint64_t offset;  // into the arena
    uint32_t length;  // 0 = empty slot (words are never empty)
    int64_t count;
  };

  explicit WordCountMap(size_t expected = 1024) { slots_.assign(table_capacity_for(expected), Slot{0, 0, 0, 0}); }

  void add(const uint8_t* word, size_t length, uint64_t hash, int64_t count) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      Slot& slot = slots_[i];
      if (slot.length == 0) {
        slot = Slot{hash, arena_.size(), static_cast<uint32_t>(length), count};
        arena_.insert(arena_.end(), word, word + length);
        ++size_;
        return;
      }
      if (slot.hash == hash && slot.length == length &&
          bytes_equal(arena_.data() + slot.offset, word, length)) {
        slot.count += count;
        return;
      }
    }
  }

  template <typename F>
  void for_each(F&& f) const {
    for (const Slot& slot : slots_)
      if (slot.length) f(arena_.data() + slot.offset, static_cast<size_t>(slot.length), slot.hash, slot.count);
  }

  // Keeps only words counted more than `threshold` times; returns how many were dropped.
  size_t prune(int64_t threshold) {
    WordCountMap kept(size_);
    for_each([&](const uint8_t* w, size_t len, uint64_t h, int64_t c) {
      if (c > threshold) kept.add(w, len, h, c);
    });
    const size_t dropped = size_ - kept.size_;
    *this = std::move(kept);
    return dropped;
  }

  void clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{0, 0, 0, 0});
    arena_.clear();
    size_ = 0;
  }

  size_t size() const { return size_; }
  size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot) + arena_.capacity(); }

 private:
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.size() * 2, Slot{0, 0, 0, 0});
    const size_t mask = slots_.size() - 1;
    for (const Slot& slot : old) {
      if (!slot.length) continue;
      size_t i = slot.hash & mask;
      while (slots_[i].length) i = (i + 1) & mask;
      slots_[i] = slot;
    }
  }

  std::vector<Slot> slots_;
  std::vector<uint8_t> arena_;
  size_t size_ = 0;
};

}  // namespace bpe
}  // namespace fastllm
