#include "cpu/bpe_trainer.h"

#include <algorithm>
#include <atomic>

#include "common/check.h"
#include "common/parallel.h"

namespace fastllm {
namespace bpe {
namespace {

constexpr int64_t kHistogramSize = 4096;

inline uint64_t pair_key(uint32_t left, uint32_t right) { return (static_cast<uint64_t>(left) << 32) | right; }

inline size_t shard_of(uint64_t hash) { return hash >> (64 - WordCounter::kShardBits); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// WordCounter
// ---------------------------------------------------------------------------------------------
WordCounter::WordCounter(Pattern pattern, const std::vector<std::string>& specials, size_t max_words)
    : pattern_(pattern), max_words_(std::max<size_t>(max_words, 2)), shards_(kShards) {
  for (size_t i = 0; i < specials.size(); ++i) specials_.add(specials[i], static_cast<uint32_t>(i));
}

void WordCounter::count_segment(std::string_view segment, std::vector<WordCountMap>& shards,
                                int64_t* words) const {
  const uint8_t* s = reinterpret_cast<const uint8_t*>(segment.data());
  const size_t n = segment.size();
  auto count_text = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end;) {
      const size_t j = next_pretoken(pattern_, s, i, end);
      const uint64_t hash = hash_bytes(s + i, j - i);
      shards[shard_of(hash)].add(s + i, j - i, hash, 1);
      ++*words;
      i = j;
    }
  };
  size_t start = 0, pos, index;
  while (specials_.find(s, start, n, nullptr, &pos, &index)) {
    count_text(start, pos);
    start = pos + specials_.content(index).size();
  }
  count_text(start, n);
}

void WordCounter::count(const std::vector<std::string_view>& segments, int n_threads) {
  const int n_workers = static_cast<int>(std::max<size_t>(1, std::min<size_t>(std::max(n_threads, 1), segments.size())));
  while (static_cast<int>(workers_.size()) < n_workers) workers_.emplace_back(kShards);
  std::vector<int64_t> words(n_workers, 0);
  std::atomic<size_t> next{0};
  parallel_for(n_workers, n_workers, [&](int64_t w) {
    for (size_t i = next.fetch_add(1); i < segments.size(); i = next.fetch_add(1))
      count_segment(segments[i], workers_[w], &words[w]);
  });
  parallel_for(kShards, n_threads, [&](int64_t s) {
    for (int w = 0; w < n_workers; ++w) {
      WordCountMap& local = workers_[w][s];
      local.for_each([&](const uint8_t* word, size_t len, uint64_t hash, int64_t c) {
        shards_[s].add(word, len, hash, c);
      });
      local.clear();
    }
  });
  for (int64_t w : words) total_words_ += w;
  prune_if_full(n_threads);
}

void WordCounter::prune_if_full(int n_threads) {
  if (num_words() <= max_words_) return;
  // Histogram of counts (capped), then the smallest threshold that halves the table.
  std::vector<std::vector<int64_t>> histograms(kShards, std::vector<int64_t>(kHistogramSize + 1, 0));
  parallel_for(kShards, n_threads, [&](int64_t s) {
    shards_[s].for_each([&](const uint8_t*, size_t, uint64_t, int64_t c) {
      ++histograms[s][std::min<int64_t>(c, kHistogramSize)];
    });
  });
  std::vector<int64_t> histogram(kHistogramSize + 1, 0);
  for (const auto& h : histograms)
    for (int64_t c = 0; c <= kHistogramSize; ++c) histogram[c] += h[c];
  int64_t kept = static_cast<int64_t>(num_words());
  int64_t threshold = 0;
  while (threshold < kHistogramSize && kept > static_cast<int64_t>(max_words_)) kept -= histogram[++threshold];
  parallel_for(kShards, n_threads, [&](int64_t s) { shards_[s].prune(threshold); });
  ++prunes_;
  prune_threshold_ = std::max(prune_threshold_, threshold);
}

size_t WordCounter::num_words() const {
  size_t n = 0;
  for (const auto& shard : shards_) n += shard.size();
  return n;
}

size_t WordCounter::memory_bytes() const {
  size_t bytes = 0;
  for (const auto& shard : shards_) bytes += shard.memory_bytes();
  for (const auto& worker : workers_)
    for (const auto& shard : worker) bytes += shard.memory_bytes();
  return bytes;
}

std::vector<WordCountMap> WordCounter::take_shards() {
  std::vector<WordCountMap> shards = std::move(shards_);
  shards_ = std::vector<WordCountMap>(kShards);
  workers_.clear();
  return shards;
}

// ---------------------------------------------------------------------------------------------
// BpeTrainer
// ---------------------------------------------------------------------------------------------
BpeTrainer::BpeTrainer(WordCounter& counter, int64_t min_frequency)
    : min_frequency_(std::max<int64_t>(min_frequency, 1)) {
  uint32_t next = 0;
  for (int printable = 1; printable >= 0; --printable)
    for (uint32_t b = 0; b < 256; ++b)
      if (((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) == (printable == 1)) byte_order_[b] = next++;
  std::vector<WordCountMap> shards = counter.take_shards();
  size_t n_words = 0, n_symbols = 0;
  for (const auto& shard : shards)
    shard.for_each([&](const uint8_t*, size_t len, uint64_t, int64_t) { ++n_words, n_symbols += len; });
  FASTLLM_CHECK(n_words < (1ull << 32), "too many distinct words (", n_words, "); lower max_words");
  symbols_.reserve(n_symbols);
  word_start_.reserve(n_words);
  word_len_.reserve(n_words);
  word_count_.reserve(n_words);
  for (auto& shard : shards) {
    shard.for_each([&](const uint8_t* w, size_t len, uint64_t, int64_t c) {
      word_start_.push_back(symbols_.size());
      word_len_.push_back(static_cast<uint32_t>(len));
      word_count_.push_back(c);
      symbols_.insert(symbols_.end(), w, w + len);
    });
    shard = WordCountMap(0);  // free as we go: the counter's table and the words never coexist whole
  }
  word_seen_.assign(n_words, 0);
  pair_ids_.reset(std::min<size_t>(n_symbols, 1 << 20));
  for (uint32_t w = 0; w < n_words; ++w) {
    const uint32_t* s = &symbols_[word_start_[w]];
    for (uint32_t i = 0; i + 1 < word_len_[w]; ++i) add_pair(pair_key(s[i], s[i + 1]), word_count_[w], w);
  }
  touched_ = std::vector<uint32_t>();
  std::fill(pair_pushed_.begin(), pair_pushed_.end(), 0);
  heap_.reserve(pair_count_.size());
  for (uint32_t p = 0; p < pair_count_.size(); ++p) heap_.push_back(entry(p));
  std::make_heap(heap_.begin(), heap_.end());
}

uint32_t BpeTrainer::pair_index(uint64_t key) {
  bool inserted = false;
  const uint64_t index = pair_ids_.insert(key, pair_count_.size(), &inserted);
  if (inserted) {
    pair_key_.push_back(key);
    pair_count_.push_back(0);
    pair_words_.emplace_back();
    pair_pushed_.push_back(0);
  }
  return static_cast<uint32_t>(index);
}

void BpeTrainer::add_pair(uint64_t key, int64_t delta, uint32_t word) {
  const uint32_t p = pair_index(key);
  pair_count_[p] += delta;
  if (delta > 0) {
    std::vector<uint32_t>& words = pair_words_[p];
    if (words.empty() || words.back() != word) words.push_back(word);
    if (pair_pushed_[p] != step_ + 1) {
      pair_pushed_[p] = step_ + 1;
      touched_.push_back(p);
    }
  }
}

void BpeTrainer::apply_merge(uint32_t word, uint32_t a, uint32_t b, uint32_t merged) {
  uint32_t* s = &symbols_[word_start_[word]];
  const uint32_t len = word_len_[word];
  const int64_t c = word_count_[word];
  uint32_t out = 0;
  for (uint32_t i = 0; i < len;) {
    if (i + 1 < len && s[i] == a && s[i + 1] == b) {
      if (out > 0) {
        add_pair(pair_key(s[out - 1], a), -c, word);
        add_pair(pair_key(s[out - 1], merged), c, word);
      }
      if (i + 2 < len) {
        add_pair(pair_key(b, s[i + 2]), -c, word);
        add_pair(pair_key(merged, s[i + 2]), c, word);
      }
      s[out++] = merged;
      i += 2;
    } else {
      s[out++] = s[i++];
    }
  }
  word_len_[word] = out;
}

BpeTrainer::HeapEntry BpeTrainer::entry(uint32_t pair) const {
  const uint64_t key = pair_key_[pair];
  const uint32_t a = static_cast<uint32_t>(key >> 32), b = static_cast<uint32_t>(key);
  const uint64_t order_a = a < 256 ? byte_order_[a] : a, order_b = b < 256 ? byte_order_[b] : b;
  return HeapEntry{pair_count_[pair], (order_a << 32) | order_b, key};
}

void BpeTrainer::push(uint32_t pair) {
  if (pair_count_[pair] <= 0) return;
  heap_.push_back(entry(pair));
  std::push_heap(heap_.begin(), heap_.end());
}

std::vector<std::pair<uint32_t, uint32_t>> BpeTrainer::step(size_t max_merges) {
  std::vector<std::pair<uint32_t, uint32_t>> done;
  while (done.size() < max_merges && !heap_.empty()) {
    const HeapEntry top = heap_.front();
    std::pop_heap(heap_.begin(), heap_.end());
    heap_.pop_back();
    const uint32_t p = static_cast<uint32_t>(*pair_ids_.find(top.key));
    if (pair_count_[p] != top.count) {  // stale: the pair lost occurrences since it was pushed
      push(p);
      continue;
    }
    if (top.count < min_frequency_) {
      heap_.clear();
      break;
    }
    const uint32_t a = static_cast<uint32_t>(top.key >> 32), b = static_cast<uint32_t>(top.key);
    const uint32_t merged = next_id_++;
    std::vector<uint32_t> words = std::move(pair_words_[p]);
    pair_words_[p] = std::vector<uint32_t>();
    for (uint32_t w : words) {
      if (word_seen_[w] == step_ + 1) continue;
      word_seen_[w] = step_ + 1;
      apply_merge(w, a, b, merged);
    }
    pair_count_[p] = 0;
    for (uint32_t t : touched_) push(t);
    touched_.clear();
    ++step_;
    done.emplace_back(a, b);
  }
  return done;
}

size_t BpeTrainer::memory_bytes() const {
  size_t bytes = symbols_.capacity() * 4 + word_start_.capacity() * 8 + word_len_.capacity() * 4 +
                 word_count_.capacity() * 8 + word_seen_.capacity() * 8 + pair_ids_.memory_bytes() +
                 pair_key_.capacity() * 8 + pair_count_.capacity() * 8 + pair_pushed_.capacity() * 8 +
                 heap_.capacity() * sizeof(HeapEntry);
  for (const auto& words : pair_words_) bytes += words.capacity() * 4 + sizeof(words);
  return bytes;
}

}  // namespace bpe
}  // namespace fastllm
