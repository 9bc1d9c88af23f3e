#include "cpu/bpe_encoder.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"

namespace fastllm {
namespace bpe {

// ---------------------------------------------------------------------------------------------
// WordCache
// ---------------------------------------------------------------------------------------------
constexpr size_t kInitialCacheSlots = 1 << 12;

WordCache::WordCache(size_t max_entries) : max_entries_(max_entries) { clear(); }

void WordCache::clear() {
  slots_.assign(kInitialCacheSlots, Slot{0, 0, 0, 0, 0});
  short_slots_.assign(kInitialCacheSlots, ShortSlot{0, 0, 0, 0});
  keys_.clear();
  ids_.clear();
  size_ = short_size_ = 0;
}

void WordCache::place(const Slot& slot, uint64_t hash) {
  const size_t mask = slots_.size() - 1;
  size_t i = hash & mask;
  while (slots_[i].key_length != 0) i = (i + 1) & mask;
  slots_[i] = slot;
}

void WordCache::place_short(const ShortSlot& slot) {
  const size_t mask = short_slots_.size() - 1;
  size_t i = short_hash(slot.key, slot.length) & mask;
  while (short_slots_[i].length != 0) i = (i + 1) & mask;
  short_slots_[i] = slot;
}

uint32_t WordCache::store_ids(const uint32_t* ids, uint32_t count) {
  if (count == 1) return ids[0];  // kept in the slot itself: one memory access less
  const uint32_t offset = static_cast<uint32_t>(ids_.size());
  ids_.insert(ids_.end(), ids, ids + count);
  return offset;
}

void WordCache::make_room() {
  if (size_ + short_size_ >= max_entries_) clear();
}

void WordCache::insert_short(uint64_t key, size_t length, const uint32_t* ids, uint32_t count) {
  if (length == 0 || length > 8 || count > 0xFFFF) return;
  make_room();
  if ((short_size_ + 1) * 2 > short_slots_.size()) {
    std::vector<ShortSlot> old(short_slots_.size() * 2, ShortSlot{0, 0, 0, 0});
    old.swap(short_slots_);
    for (const ShortSlot& slot : old)
      if (slot.length) place_short(slot);
  }
  place_short(ShortSlot{key, store_ids(ids, count), static_cast<uint16_t>(count), static_cast<uint16_t>(length)});
  ++short_size_;
}

void WordCache::insert(const uint8_t* word, size_t length, uint64_t hash, const uint32_t* ids, uint32_t count) {
  if (length == 0 || length > kMaxWordBytes || count > 0xFFFF) return;
  make_room();
  if ((size_ + 1) * 2 > slots_.size()) {
    std::vector<Slot> old(slots_.size() * 2, Slot{0, 0, 0, 0, 0});
    old.swap(slots_);
    for (const Slot& slot : old)
      if (slot.key_length) place(slot, hash_bytes(keys_.data() + slot.key_offset, slot.key_length));
  }
  place(Slot{static_cast<uint32_t>(hash >> 32), static_cast<uint32_t>(keys_.size()), static_cast<uint16_t>(length),
             static_cast<uint16_t>(count), store_ids(ids, count)},
        hash);
  keys_.insert(keys_.end(), word, word + length);
  ++size_;
}

// ---------------------------------------------------------------------------------------------
// SpecialMatcher
// ---------------------------------------------------------------------------------------------
void SpecialMatcher::add(std::string content, uint32_t id) {
  FASTLLM_CHECK(!content.empty(), "special token ", id, " is empty");
  tokens_.emplace_back(std::move(content), id);
  rebuild_index();
}

void SpecialMatcher::rebuild_index() {
  for (auto& list : by_first_byte_) list.clear();
  std::fill(std::begin(first_byte_), std::end(first_byte_), false);
  distinct_first_bytes_ = 0;
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const uint8_t first = static_cast<uint8_t>(tokens_[i].first[0]);
    if (!first_byte_[first]) ++distinct_first_bytes_;
    first_byte_[first] = true;
    by_first_byte_[first].push_back(static_cast<uint32_t>(i));
  }
  for (auto& list : by_first_byte_)
    std::stable_sort(list.begin(), list.end(),
                     [&](uint32_t a, uint32_t b) { return tokens_[a].first.size() > tokens_[b].first.size(); });
}

bool SpecialMatcher::find(const uint8_t* s, size_t from, size_t n, const std::vector<uint8_t>* enabled,
                          size_t* pos, size_t* index) const {
  if (tokens_.empty()) return false;
  const uint8_t only = static_cast<uint8_t>(tokens_[0].first[0]);
  for (size_t i = from; i < n; ++i) {
    if (distinct_first_bytes_ == 1) {
      const void* hit = std::memchr(s + i, only, n - i);
      if (!hit) return false;
      i = static_cast<const uint8_t*>(hit) - s;
    } else if (!first_byte_[s[i]]) {
      continue;
    }
    for (uint32_t k : by_first_byte_[s[i]]) {
      const std::string& token = tokens_[k].first;
      if (enabled && !(*enabled)[k]) continue;
      if (token.size() <= n - i && std::memcmp(s + i, token.data(), token.size()) == 0) {
        *pos = i;
        *index = k;
        return true;
      }
    }
  }
  return false;
}

bool SpecialMatcher::crosses(const uint8_t* s, size_t n, size_t cut, const std::vector<uint8_t>* enabled) const {
  for (size_t k = 0; k < tokens_.size(); ++k) {
    if (enabled && !(*enabled)[k]) continue;
    const std::string& token = tokens_[k].first;
    const size_t len = token.size();
    for (size_t p = cut >= len ? cut - len + 1 : 0; p < cut; ++p)
      if (p + len <= n && std::memcmp(s + p, token.data(), len) == 0) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// BpeModel
// ---------------------------------------------------------------------------------------------
BpeModel::BpeModel(std::vector<std::string> id_to_bytes, const std::vector<Merge>& merges,
                   const std::vector<std::pair<std::string, uint32_t>>& specials, Pattern pattern,
                   bool ignore_merges)
    : pattern_(pattern), ignore_merges_(ignore_merges), merges_(merges.size()) {
  const size_t limit = id_to_bytes.size();
  std::vector<uint8_t> is_special(limit, 0);
  for (const auto& [content, id] : specials) {
    FASTLLM_CHECK(id < limit, "special token id ", id, " is outside the vocabulary (", limit, " ids)");
    FASTLLM_CHECK(id_to_bytes[id] == content, "special token id ", id, " does not hold its content");
    is_special[id] = 1;
    specials_.add(content, id);
  }
  id_offsets_.reserve(limit + 1);
  for (const std::string& token : id_to_bytes) {
    id_offsets_.push_back(bytes_.size());
    bytes_ += token;
  }
  id_offsets_.push_back(bytes_.size());

  std::fill(std::begin(byte_token_), std::end(byte_token_), kNoToken);
  if (ignore_merges_) whole_words_.reset(limit);
  for (uint32_t id = 0; id < limit; ++id) {
    const std::string& token = id_to_bytes[id];
    if (token.empty() || is_special[id]) continue;
    if (token.size() == 1 && byte_token_[static_cast<uint8_t>(token[0])] == kNoToken)
      byte_token_[static_cast<uint8_t>(token[0])] = id;
    if (ignore_merges_)
      whole_words_.insert(hash_bytes(reinterpret_cast<const uint8_t*>(token.data()), token.size()), id);
  }
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    FASTLLM_CHECK(m.left < limit && m.right < limit && m.result < limit, "merge ", rank,
                  " refers to a token id outside the vocabulary");
    const uint64_t key = (static_cast<uint64_t>(m.left) << 32) | m.right;
    bool inserted;
    merges_.insert(key, (static_cast<uint64_t>(rank) << 32) | m.result, &inserted);
    // A repeated pair keeps its first (lowest) rank, as HF does.
  }
}

std::unique_ptr<WordCache> BpeModel::take_cache() const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (!free_caches_.empty()) {
      std::unique_ptr<WordCache> cache = std::move(free_caches_.back());
      free_caches_.pop_back();
      return cache;
    }
  }
  return std::make_unique<WordCache>();
}

void BpeModel::return_cache(std::unique_ptr<WordCache> cache) const {
  constexpr size_t kMaxKept = 16;
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (free_caches_.size() < kMaxKept) free_caches_.push_back(std::move(cache));
}

inline uint64_t BpeModel::lookup_merge(uint32_t left, uint32_t right) const {
  const uint64_t* found = merges_.find((static_cast<uint64_t>(left) << 32) | right);
  return found ? *found : ~0ull;
}

// Short words: the rank of every adjacent pair in an array, rescanned for the minimum after each
// merge (at most ~64 symbols, so the scan is cheaper than a heap).
void BpeModel::merge_short(uint32_t* syms, size_t m, std::vector<uint32_t>& out) const {
  uint64_t info[64];
  for (size_t i = 0; i + 1 < m; ++i) info[i] = lookup_merge(syms[i], syms[i + 1]);
  while (m > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < m; ++i)
      if (info[i] < info[best]) best = i;
    if (info[best] == ~0ull) break;
    syms[best] = static_cast<uint32_t>(info[best]);
    std::memmove(syms + best + 1, syms + best + 2, (m - best - 2) * sizeof(uint32_t));
    if (best + 2 < m) std::memmove(info + best + 1, info + best + 2, (m - best - 3) * sizeof(uint64_t));
    --m;
    if (best > 0) info[best - 1] = lookup_merge(syms[best - 1], syms[best]);
    if (best + 1 < m) info[best] = lookup_merge(syms[best], syms[best + 1]);
  }
  out.insert(out.end(), syms, syms + m);
}

// Long words: a min-heap of (rank, position) over a doubly linked list of symbols. Entries made
// stale by earlier merges are recognised on pop (the pair at that position changed).
void BpeModel::merge_long(const uint32_t* syms, size_t m, std::vector<uint32_t>& out) const {
  struct Node {
    uint32_t id;
    int64_t prev, next;
  };
  struct Entry {
    uint32_t rank;
    uint32_t pos;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Node> nodes(m);
  for (size_t i = 0; i < m; ++i)
    nodes[i] = Node{syms[i], static_cast<int64_t>(i) - 1, i + 1 < m ? static_cast<int64_t>(i + 1) : -1};
  std::vector<Entry> heap;
  heap.reserve(m);
  auto push = [&](size_t pos) {
    const Node& node = nodes[pos];
    if (node.next < 0) return;
    const uint64_t info = lookup_merge(node.id, nodes[node.next].id);
    if (info == ~0ull) return;
    heap.push_back(Entry{static_cast<uint32_t>(info >> 32), static_cast<uint32_t>(pos)});
    std::push_heap(heap.begin(), heap.end(), std::greater<Entry>());
  };
  for (size_t i = 0; i + 1 < m; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Entry>());
    const Entry top = heap.back();
    heap.pop_back();
    Node& node = nodes[top.pos];
    if (node.id == kNoToken || node.next < 0) continue;
    const uint64_t info = lookup_merge(node.id, nodes[node.next].id);
    if (info == ~0ull || static_cast<uint32_t>(info >> 32) != top.rank) continue;
    Node& right = nodes[node.next];
    node.id = static_cast<uint32_t>(info);
    right.id = kNoToken;
    node.next = right.next;
    if (node.next >= 0) nodes[node.next].prev = top.pos;
    if (node.prev >= 0) push(static_cast<size_t>(node.prev));
    push(top.pos);
  }
  for (int64_t i = 0; i >= 0; i = nodes[i].next) out.push_back(nodes[i].id);
}

void BpeModel::encode_word(const uint8_t* word, size_t n, std::vector<uint32_t>& out) const {
  if (ignore_merges_) {
    const uint64_t* id = whole_words_.find(hash_bytes(word, n));
    if (id) {
      const uint64_t begin = id_offsets_[*id], end = id_offsets_[*id + 1];
      if (end - begin == n && bytes_equal(reinterpret_cast<const uint8_t*>(bytes_.data()) + begin, word, n)) {
        out.push_back(static_cast<uint32_t>(*id));
        return;
      }
    }
  }
  uint32_t small[64];
  std::vector<uint32_t> large;
  uint32_t* syms = small;
  if (n > 64) {
    large.resize(n);
    syms = large.data();
  }
  size_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t t = byte_token_[word[i]];
    if (t != kNoToken) syms[m++] = t;
  }
  if (m == 0) return;
  if (m <= 64) {
    merge_short(syms, m, out);
  } else {
    merge_long(syms, m, out);
  }
}

template <Pattern P>
void BpeModel::encode_piece(const uint8_t* s, size_t n, WordCache& cache, std::vector<uint32_t>& out) const {
  size_t i = 0;
  while (i < n) {
    const size_t j = next_pretoken_of<P>(s, i, n);
    const size_t len = j - i;
    if (len == 1) {
      const uint32_t t = byte_token_[s[i]];
      if (t != kNoToken) out.push_back(t);
    } else if (len <= 8) {
      const uint64_t key = WordCache::short_key(s + i, len, n - i);
      uint32_t count;
      const uint32_t* ids = cache.find_short(key, len, &count);
      if (ids && count == 1) {
        out.push_back(*ids);
      } else if (ids) {
        out.insert(out.end(), ids, ids + count);
      } else {
        const size_t before = out.size();
        encode_word(s + i, len, out);
        cache.insert_short(key, len, out.data() + before, static_cast<uint32_t>(out.size() - before));
      }
    } else {
      const uint64_t hash = hash_bytes(s + i, len);
      uint32_t count;
      const uint32_t* ids = cache.find(s + i, len, hash, &count);
      if (ids) {
        if (count == 1) {
          out.push_back(*ids);
        } else {
          out.insert(out.end(), ids, ids + count);
        }
      } else {
        const size_t before = out.size();
        encode_word(s + i, len, out);
        cache.insert(s + i, len, hash, out.data() + before, static_cast<uint32_t>(out.size() - before));
      }
    }
    i = j;
  }
}

void BpeModel::encode_ordinary(const uint8_t* text, size_t n, WordCache& cache, std::vector<uint32_t>& out) const {
  switch (pattern_) {
    case Pattern::llama3: encode_piece<Pattern::llama3>(text, n, cache, out); break;
    case Pattern::gpt2: encode_piece<Pattern::gpt2>(text, n, cache, out); break;
    default: encode_piece<Pattern::smollm>(text, n, cache, out); break;
  }
}

// A cut must be a pre-token boundary whatever precedes it (is_safe_cut) and must not split an
// enabled special: then the special matcher, which never matches across it, and the
// pre-tokenizer, which is memoryless, see the same text on either side as in the whole.
std::vector<size_t> BpeModel::parallel_cuts(const uint8_t* text, size_t n, const std::vector<uint8_t>* allowed,
                                            size_t pieces) const {
  constexpr size_t kMaxSearch = size_t{1} << 16;  // bytes searched for a cut past each target
  std::vector<size_t> cuts;
  for (size_t k = 1; k < pieces; ++k) {
    const size_t target = std::max(n / pieces * k, cuts.empty() ? size_t{1} : cuts.back() + 1);
    const size_t stop = std::min(n, target + kMaxSearch);
    for (size_t c = target; c < stop; ++c) {
      if (is_safe_cut(pattern_, text, c, n) && !(allowed && specials_.crosses(text, n, c, allowed))) {
        cuts.push_back(c);
        break;
      }
    }
  }
  return cuts;
}

void BpeModel::encode(const uint8_t* text, size_t n, const std::vector<uint8_t>* allowed, WordCache& cache,
                      std::vector<uint32_t>& out) const {
  size_t start = 0;
  if (allowed) {
    size_t pos, index;
    while (specials_.find(text, start, n, allowed, &pos, &index)) {
      encode_ordinary(text + start, pos - start, cache, out);
      out.push_back(specials_.id(index));
      start = pos + specials_.content(index).size();
    }
  }
  encode_ordinary(text + start, n - start, cache, out);
}

int64_t BpeModel::decode(const uint32_t* ids, size_t n, std::string& out) const {
  const size_t limit = id_limit();
  for (size_t i = 0; i < n; ++i) {
    const uint32_t id = ids[i];
    if (id >= limit || id_offsets_[id] == id_offsets_[id + 1]) return static_cast<int64_t>(i);
    out.append(bytes_, id_offsets_[id], id_offsets_[id + 1] - id_offsets_[id]);
  }
  return -1;
}

}  // namespace bpe
}  // namespace fastllm
