// Byte-level BPE encoding and decoding (the C++ core behind fastllm.tokenizer.Tokenizer).
//
// Semantics are Hugging Face tokenizers' BPE model (the one tokenizer.json describes): a word's
// bytes map to their byte tokens, then the adjacent pair with the lowest merge rank is merged,
// leftmost first, until no adjacent pair has a merge. Bytes without a token are dropped, as HF
// does when unk_token is null. With ignore_merges (LLaMA-3's tokenizer.json), a word that is
// itself a token is emitted whole.
//
// Speed comes from (1) a regex-free pre-tokenizer (pretokenize.h), (2) a per-thread word cache
// (most words of real text repeat), and (3) a merge loop that is linear-scan for short words and
// a heap over a linked list for long ones, so a 1 MiB word costs O(n log n), not O(n^2).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cpu/bpe_hash.h"
#include "cpu/pretokenize.h"

namespace fastllm {
namespace bpe {

constexpr uint32_t kNoToken = ~0u;

struct Merge {
  uint32_t left, right, result;
};

// Remembers the tokens of recently seen words. Not thread-safe: one per thread.
// Words of at most 8 bytes (most words of real text, leading space included) live in their own
// table keyed by the word's bytes as one zero-padded integer: a lookup is one 16-byte slot, no
// byte comparison. Longer words keep their bytes in an arena. Slots are 16 bytes and the tables
// start small and double, so the words of a typical text fit in L2; when the cache holds
// max_entries words it is cleared, so a shifting input (one language, then another) keeps hits.
class WordCache {
 public:
  explicit WordCache(size_t max_entries = 1 << 17);

  // The word's bytes as a zero-padded integer (length <= 8; `available` bytes may be read).
  static uint64_t short_key(const uint8_t* word, size_t length, size_t available) {
    if (available >= 8) return load_u64(word) & (length == 8 ? ~0ull : (1ull << (8 * length)) - 1);
    uint64_t key = 0;
    std::memcpy(&key, word, length);
    return key;
  }

  // The cached tokens of a short word (or nullptr), *count set to their number.
  const uint32_t* find_short(uint64_t key, size_t length, uint32_t* count) const {
    const size_t mask = short_slots_.size() - 1;
    for (size_t i = short_hash(key, length) & mask;; i = (i + 1) & mask) {
      const ShortSlot& slot = short_slots_[i];
      if (slot.length == 0) return nullptr;
      if (slot.key == key && slot.length == length) {
        *count = slot.id_count;
        return slot.id_count == 1 ? &slot.ids : ids_.data() + slot.ids;
      }
    }
  }

  // The cached tokens of a longer word (or nullptr), *count set to their number.
  const uint32_t* find(const uint8_t* word, size_t length, uint64_t hash, uint32_t* count) const {
    const size_t mask = slots_.size() - 1;
    const uint32_t tag = static_cast<uint32_t>(hash >> 32);
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot& slot = slots_[i];
      if (slot.key_length == 0) return nullptr;
      if (slot.tag == tag && slot.key_length == length && bytes_equal(keys_.data() + slot.key_offset, word, length)) {
        *count = slot.id_count;
        return slot.id_count == 1 ? &slot.ids : ids_.data() + slot.ids;
      }
    }
  }
  void insert_short(uint64_t key, size_t length, const uint32_t* ids, uint32_t count);
  void insert(const uint8_t* word, size_t length, uint64_t hash, const uint32_t* ids, uint32_t count);

  static constexpr size_t kMaxWordBytes = 128;  // longer words are not cached

  // An output buffer lent with the cache: a long text's ids go to pages an earlier call already
  // mapped (first-touch page faults on a fresh 15 MB buffer cost about a third of encoding it).
  std::vector<uint32_t> scratch;
  static constexpr size_t kMaxScratchIds = size_t{1} << 23;  // larger buffers are not kept

 private:
  struct Slot {
    uint32_t tag;         // high half of the word's hash
    uint32_t key_offset;
    uint16_t key_length;  // 0 = empty
    uint16_t id_count;
    uint32_t ids;         // the id itself when id_count == 1, else an offset into ids_
  };
  struct ShortSlot {
    uint64_t key;         // the word's bytes, zero-padded
    uint32_t ids;         // as in Slot
    uint16_t id_count;
    uint16_t length;      // 0 = empty
  };
  static uint64_t short_hash(uint64_t key, size_t length) { return hash_u64(key ^ (static_cast<uint64_t>(length) << 60)); }
  uint32_t store_ids(const uint32_t* ids, uint32_t count);
  void make_room();
  void place(const Slot& slot, uint64_t hash);
  void place_short(const ShortSlot& slot);
  void clear();
  std::vector<Slot> slots_;
  std::vector<ShortSlot> short_slots_;
  std::vector<uint8_t> keys_;
  std::vector<uint32_t> ids_;
  size_t size_ = 0, short_size_ = 0, max_entries_;
};

// Finds special-token strings in text (leftmost, then longest).
class SpecialMatcher {
 public:
  void add(std::string content, uint32_t id);
  // First occurrence at or after `from` of a special whose index is enabled in `enabled`
  // (nullptr = all). Returns false when there is none.
  bool find(const uint8_t* s, size_t from, size_t n, const std::vector<uint8_t>* enabled, size_t* pos,
            size_t* index) const;
  // Whether an occurrence of an enabled special starts before `cut` and ends after it.
  bool crosses(const uint8_t* s, size_t n, size_t cut, const std::vector<uint8_t>* enabled) const;
  size_t size() const { return tokens_.size(); }
  const std::string& content(size_t i) const { return tokens_[i].first; }
  uint32_t id(size_t i) const { return tokens_[i].second; }

 private:
  void rebuild_index();
  std::vector<std::pair<std::string, uint32_t>> tokens_;
  std::vector<uint32_t> by_first_byte_[256];  // indices, longest first
  bool first_byte_[256] = {};
  int distinct_first_bytes_ = 0;
};

class BpeModel {
 public:
  // id_to_bytes[id]: the token's bytes, or an empty string where no token has that id.
  // merges: in rank order. specials: (content, id), matched before pre-tokenization.
  BpeModel(std::vector<std::string> id_to_bytes, const std::vector<Merge>& merges,
           const std::vector<std::pair<std::string, uint32_t>>& specials, Pattern pattern,
           bool ignore_merges);

  // Appends the tokens of `text` (no special-token handling) to `out`.
  void encode_ordinary(const uint8_t* text, size_t n, WordCache& cache, std::vector<uint32_t>& out) const;
  // Splits out the specials enabled in `allowed` (indices into specials(); nullptr = none) and
  // encodes the rest as ordinary text.
  void encode(const uint8_t* text, size_t n, const std::vector<uint8_t>* allowed, WordCache& cache,
              std::vector<uint32_t>& out) const;
  // Up to pieces - 1 increasing cut positions near multiples of n / pieces at which the text can
  // be encoded piece by piece (encode() of each with `allowed`) and give the same ids, joined.
  std::vector<size_t> parallel_cuts(const uint8_t* text, size_t n, const std::vector<uint8_t>* allowed,
                                    size_t pieces) const;
  // Tokens of one pre-tokenized word (no cache).
  void encode_word(const uint8_t* word, size_t n, std::vector<uint32_t>& out) const;
  // Appends the bytes of `ids` to `out`; returns the index of the first invalid id or -1.
  int64_t decode(const uint32_t* ids, size_t n, std::string& out) const;

  // Word caches are kept by the model between calls and lent to one thread at a time.
  std::unique_ptr<WordCache> take_cache() const;
  void return_cache(std::unique_ptr<WordCache> cache) const;

  const SpecialMatcher& specials() const { return specials_; }
  Pattern pattern() const { return pattern_; }
  size_t id_limit() const { return id_offsets_.size() - 1; }

 private:
  uint64_t lookup_merge(uint32_t left, uint32_t right) const;  // (rank << 32 | result) or ~0
  void merge_short(uint32_t* syms, size_t m, std::vector<uint32_t>& out) const;
  void merge_long(const uint32_t* syms, size_t m, std::vector<uint32_t>& out) const;
  template <Pattern P>
  void encode_piece(const uint8_t* s, size_t n, WordCache& cache, std::vector<uint32_t>& out) const;

  Pattern pattern_;
  bool ignore_merges_;
  uint32_t byte_token_[256];
  U64Map merges_;                      // (left << 32 | right) -> (rank << 32 | result)
  std::vector<uint64_t> id_offsets_;   // token id -> [offset, next offset) in bytes_
  std::string bytes_;
  U64Map whole_words_;                 // ignore_merges: hash(bytes) -> id (verified on hit)
  SpecialMatcher specials_;
  mutable std::mutex cache_mutex_;
  mutable std::vector<std::unique_ptr<WordCache>> free_caches_;
};

// Holds one of a model's word caches for the lifetime of a call.
class CacheLease {
 public:
  explicit CacheLease(const BpeModel& model) : model_(model), cache_(model.take_cache()) {}
  ~CacheLease() { model_.return_cache(std::move(cache_)); }
  CacheLease(const CacheLease&) = delete;
  CacheLease& operator=(const CacheLease&) = delete;
  WordCache& get() { return *cache_; }

 private:
  const BpeModel& model_;
  std::unique_ptr<WordCache> cache_;
};

}  // namespace bpe
}  // namespace fastllm
