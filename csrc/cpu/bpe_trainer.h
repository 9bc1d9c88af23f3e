// Byte-level BPE training: a streaming, multithreaded word count with a memory cap, then the
// incremental pair-count merge loop with a lazy max-heap.
//
// Counting. Python feeds batches of text segments (file pieces cut at safe boundaries, or whole
// documents). Each worker thread pre-tokenizes segments into its own table, sharded by hash;
// then shard s of every worker is merged into the global shard s, shards in parallel. Special
// tokens are cut out of the text first and never counted.
// Memory cap: when the table holds more than `max_words` distinct words after a batch, every
// word whose count is <= t is dropped, with the smallest t that leaves at most max_words
// (lossy counting: frequent words keep their counts; a rare word seen again restarts at 0).
// Until the first prune the counts are exact. Batches are cut by Python by size, independent
// of the thread count, so the result never depends on the number of threads.
//
// Merging. Words are arrays of token ids (the 256 byte tokens are ids 0..255, merge k creates
// id 256 + k). For every pair we keep its weighted count and the words it occurs in. A merge
// rewrites only the words of its pair, updating the counts of the neighbouring pairs
// (prev,a)->(prev,new) and (b,next)->(new,next), and pushes the new pairs onto the heap.
// Heap entries may be stale (counts only fall for old pairs); a popped entry whose count no
// longer matches is pushed back with its current count.
// Tie-breaking (documented, deterministic): the highest count wins; among equal counts, the
// smallest (left, right) in HF BpeTrainer's token order: byte tokens ordered by their byte-level
// character (GPT-2's byte-to-unicode map: printable bytes first, in byte order, then the others),
// merged tokens by creation, after all bytes. On the same word counts this picks exactly the
// merges `tokenizers` picks, so the two trainers agree merge for merge.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cpu/bpe_encoder.h"
#include "cpu/bpe_hash.h"
#include "cpu/pretokenize.h"

namespace fastllm {
namespace bpe {

class WordCounter {
 public:
  static constexpr int kShardBits = 6;
  static constexpr int kShards = 1 << kShardBits;

  WordCounter(Pattern pattern, const std::vector<std::string>& specials, size_t max_words);

  // Pre-tokenizes and counts each segment independently (no pre-token spans two segments).
  void count(const std::vector<std::string_view>& segments, int n_threads);

  size_t num_words() const;
  int64_t total_words() const { return total_words_; }
  size_t prunes() const { return prunes_; }
  int64_t prune_threshold() const { return prune_threshold_; }
  size_t memory_bytes() const;

  // Hands the shards to the trainer, leaving this counter empty.
  std::vector<WordCountMap> take_shards();

 private:
  void count_segment(std::string_view segment, std::vector<WordCountMap>& shards, int64_t* words) const;
  void prune_if_full(int n_threads);

  Pattern pattern_;
  SpecialMatcher specials_;
  size_t max_words_;
  std::vector<WordCountMap> shards_;
  std::vector<std::vector<WordCountMap>> workers_;  // per worker, per shard
  int64_t total_words_ = 0;
  size_t prunes_ = 0;
  int64_t prune_threshold_ = 0;
};

class BpeTrainer {
 public:
  // Consumes the counter's words. Pairs counted fewer than min_frequency times are never merged.
  BpeTrainer(WordCounter& counter, int64_t min_frequency);

  // Performs up to max_merges merges; returns them as (left id, right id) in order. Fewer (or
  // none) when no pair reaches min_frequency.
  std::vector<std::pair<uint32_t, uint32_t>> step(size_t max_merges);

  size_t num_words() const { return word_count_.size(); }
  size_t num_merges() const { return next_id_ - 256; }
  size_t memory_bytes() const;

 private:
  struct HeapEntry {
    int64_t count;
    uint64_t order;  // tie-break: (order(left) << 32 | order(right)), smaller wins
    uint64_t key;
    bool operator<(const HeapEntry& o) const {  // max-heap: higher count, then smaller order
      return count != o.count ? count < o.count : order > o.order;
    }
  };
  HeapEntry entry(uint32_t pair) const;
  uint32_t pair_index(uint64_t key);
  void add_pair(uint64_t key, int64_t delta, uint32_t word);
  void apply_merge(uint32_t word, uint32_t a, uint32_t b, uint32_t merged);
  void push(uint32_t pair);

  int64_t min_frequency_;
  uint32_t next_id_ = 256;
  uint64_t step_ = 0;
  std::vector<uint32_t> symbols_;      // all words' token ids, word w at [start[w], start[w] + len[w])
  std::vector<uint64_t> word_start_;
  std::vector<uint32_t> word_len_;
  std::vector<int64_t> word_count_;
  std::vector<uint64_t> word_seen_;    // last merge step that visited the word (dedups word lists)
  U64Map pair_ids_;                    // (left << 32 | right) -> index into the vectors below
  std::vector<uint64_t> pair_key_;
  std::vector<int64_t> pair_count_;
  std::vector<std::vector<uint32_t>> pair_words_;
  std::vector<uint64_t> pair_pushed_;  // step at which the pair was last pushed (dedups pushes)
  std::vector<HeapEntry> heap_;
  std::vector<uint32_t> touched_;      // pairs created or grown by the current merge
  uint32_t byte_order_[256];           // rank of each byte token in HF's (byte-level character) order
};

}  // namespace bpe
}  // namespace fastllm
