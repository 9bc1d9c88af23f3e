// fastllm._C.bpe: byte-level BPE pre-tokenization, encoding, decoding and training.
// Python strings are read as UTF-8 in place (PyUnicode_AsUTF8AndSize); a string holding lone
// surrogates raises UnicodeEncodeError, which fastllm/tokenizer/bpe.py answers by replacing them
// with U+FFFD (as tiktoken does) and calling again. Every call that does real work releases the
// GIL; results are turned into Python lists after the GIL is taken back.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bindings/registry.h"
#include "common/check.h"
#include "common/parallel.h"
#include "cpu/bpe_encoder.h"
#include "cpu/bpe_trainer.h"
#include "cpu/pretokenize.h"

namespace fastllm {
namespace {

using bpe::BpeModel;
using bpe::Pattern;

Pattern to_pattern(int pattern) {
  FASTLLM_CHECK(pattern >= 0 && pattern <= 2, "unknown pre-tokenizer pattern id ", pattern);
  return static_cast<Pattern>(pattern);
}

std::string_view utf8_view(py::handle text) {
  if (PyUnicode_Check(text.ptr())) {
    Py_ssize_t size;
    const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
    if (!data) throw py::error_already_set();
    return {data, static_cast<size_t>(size)};
  }
  if (PyBytes_Check(text.ptr())) return {PyBytes_AS_STRING(text.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(text.ptr()))};
  throw py::type_error("expected str or bytes, got " + std::string(py::str(py::type::of(text)).cast<std::string>()));
}

const uint8_t* bytes_of(std::string_view v) { return reinterpret_cast<const uint8_t*>(v.data()); }

// Token ids as Python ints: one shared int object per id, made once. Building a list is then a
// reference-count increment per token instead of an allocation (and freeing it no longer frees
// millions of ints), which is most of the cost of returning a long encoding to Python.
// Only touched with the GIL held; ensure_id_objects(limit) before converting ids below limit.
std::vector<PyObject*>& id_objects() {
  static std::vector<PyObject*> ints;
  return ints;
}

void ensure_id_objects(size_t limit) {
  std::vector<PyObject*>& ints = id_objects();
  if (limit <= ints.size()) return;
  const size_t old = ints.size();
  ints.resize(std::max(limit, old * 2));
  for (size_t i = old; i < ints.size(); ++i) {
    ints[i] = PyLong_FromUnsignedLong(static_cast<unsigned long>(i));
    if (!ints[i]) {
      ints.resize(i);
      throw py::error_already_set();
    }
  }
}

// A list of n items for the caller to fill, every one of them, before Python sees it: the item
// array is not zeroed first (PyList_New would clear all of it, serially, with the GIL).
PyObject* new_unfilled_list(size_t n) {
  PyObject* list = PyList_New(0);
  if (!list || n == 0) return list;
  auto* items = static_cast<PyObject**>(PyMem_Malloc(n * sizeof(PyObject*)));
  if (!items) {
    Py_DECREF(list);
    return PyErr_NoMemory();
  }
  auto* op = reinterpret_cast<PyListObject*>(list);
  op->ob_item = items;
  op->allocated = static_cast<Py_ssize_t>(n);
  Py_SET_SIZE(op, static_cast<Py_ssize_t>(n));
  return list;
}

// A new list of the ids (a new reference), or nullptr with a Python error set.
PyObject* new_id_list(const uint32_t* ids, size_t n) {
  PyObject* list = new_unfilled_list(n);
  if (!list) return nullptr;
  PyObject* const* ints = id_objects().data();
  PyObject** items = reinterpret_cast<PyListObject*>(list)->ob_item;
  for (size_t i = 0; i < n; ++i) {
    PyObject* value = ints[ids[i]];
    Py_INCREF(value);
    items[i] = value;
  }
  return list;
}

py::list to_list(const BpeModel& model, const std::vector<uint32_t>& ids) {
  ensure_id_objects(model.id_limit());
  PyObject* list = new_id_list(ids.data(), ids.size());
  if (!list) throw py::error_already_set();
  return py::reinterpret_steal<py::list>(list);
}

// The GIL for a worker thread of a batch call, made once per worker and taken only while it
// builds lists (PyGILState_Ensure works on pool threads and on the caller alike).
class WorkerGil {
 public:
  ~WorkerGil() {
    if (!state_) return;
    PyEval_RestoreThread(state_);
    PyGILState_Release(gil_);
  }
  void acquire() {
    if (state_) {
      PyEval_RestoreThread(state_);
    } else {
      gil_ = PyGILState_Ensure();
    }
  }
  void release() { state_ = PyEval_SaveThread(); }

 private:
  PyGILState_STATE gil_{};
  PyThreadState* state_ = nullptr;
};

// encode_batch's engine. Building the lists needs the GIL, so done after the encoding it would
// leave every other core idle; instead, whichever worker finishes a text first turns the
// finished texts into lists, in order, while the other workers keep encoding. One worker runs
// the two in turn, freeing each text's ids right after its list is made.
// Robust to parallel_for running its tasks one after another: a worker only ever waits for a
// text another worker is encoding at that moment.
class BatchToLists {
 public:
  BatchToLists(const BpeModel& model, const std::vector<std::string_view>& views, const std::vector<uint8_t>* mask,
               PyObject* out)
      : model_(model), views_(views), mask_(mask), out_(out), results_(views.size()), done_(views.size()) {}

  bool run(int n_threads) {  // without the GIL; false when a list could not be made
    const int workers = static_cast<int>(std::max<size_t>(1, std::min<size_t>(std::max(n_threads, 1), views_.size())));
    parallel_for(workers, workers, [&](int64_t) { work(); });
    return !failed_.load();
  }

 private:
  void work() {
    try {
      encode_and_convert();
    } catch (...) {
      failed_.store(true);  // or the other workers would wait for this one's text forever
      throw;
    }
  }

  void encode_and_convert() {
    bpe::CacheLease cache(model_);
    WorkerGil gil;
    // Encoded into a worker-local buffer and copied once: pushing into results_[i] directly
    // would make workers write the same cache lines (adjacent vector headers).
    std::vector<uint32_t> local;
    const size_t n = views_.size();
    for (size_t i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) {
      local.clear();
      model_.encode(bytes_of(views_[i]), views_[i].size(), mask_, cache.get(), local);
      results_[i].assign(local.begin(), local.end());
      done_[i].store(1, std::memory_order_release);
      convert_ready(gil);
    }
    while (converted_.load(std::memory_order_acquire) < n && !failed_.load())
      if (!convert_ready(gil)) std::this_thread::yield();
  }

  // Makes the lists of the finished texts that follow the last converted one, unless another
  // worker is doing so. Returns whether it made any.
  bool convert_ready(WorkerGil& gil) {
    size_t c = converted_.load(std::memory_order_acquire);
    if (c >= views_.size() || !done_[c].load(std::memory_order_acquire)) return false;
    if (converting_.exchange(true, std::memory_order_acquire)) return false;
    c = converted_.load(std::memory_order_relaxed);
    gil.acquire();
    for (; c < views_.size() && done_[c].load(std::memory_order_acquire); ++c) {
      PyObject* list = new_id_list(results_[c].data(), results_[c].size());
      if (!list) {
        PyErr_Clear();
        failed_.store(true);
        break;
      }
      PyList_SET_ITEM(out_, static_cast<Py_ssize_t>(c), list);
      std::vector<uint32_t>().swap(results_[c]);  // freed now, so later texts reuse the memory
    }
    gil.release();
    converted_.store(c, std::memory_order_release);
    converting_.store(false, std::memory_order_release);
    return true;
  }

  const BpeModel& model_;
  const std::vector<std::string_view>& views_;
  const std::vector<uint8_t>* mask_;
  PyObject* out_;
  std::vector<std::vector<uint32_t>> results_;
  std::vector<std::atomic<uint8_t>> done_;
  std::atomic<size_t> next_{0}, converted_{0};
  std::atomic<bool> converting_{false}, failed_{false};
};

bool encode_to_lists(const BpeModel& model, const std::vector<std::string_view>& views,
                     const std::vector<uint8_t>* mask, int n_threads, PyObject* out) {
  return BatchToLists(model, views, mask, out).run(n_threads);
}

// Optional list of enabled special-token indices -> mask (empty optional = no specials).
std::optional<std::vector<uint8_t>> to_mask(const BpeModel& model, const std::optional<std::vector<size_t>>& indices) {
  if (!indices) return std::nullopt;
  std::vector<uint8_t> mask(model.specials().size(), 0);
  for (size_t i : *indices) {
    FASTLLM_CHECK(i < mask.size(), "special token index ", i, " out of range");
    mask[i] = 1;
  }
  return mask;
}

uint32_t checked_id(long long v) {
  if (v < 0 || v > 0xFFFFFFFFll) throw py::value_error("token id " + std::to_string(v) + " is out of range");
  return static_cast<uint32_t>(v);
}

template <typename T>
void append_ids(const py::buffer_info& info, std::vector<uint32_t>& out) {
  const char* base = static_cast<const char*>(info.ptr);
  for (py::ssize_t i = 0; i < info.shape[0]; ++i)
    out.push_back(checked_id(static_cast<long long>(*reinterpret_cast<const T*>(base + i * info.strides[0]))));
}

// Token ids from a list (fast path), a 1-D integer buffer such as a numpy array, or any sequence.
std::vector<uint32_t> ids_from_python(py::handle ids) {
  std::vector<uint32_t> out;
  if (PyList_Check(ids.ptr())) {
    const Py_ssize_t n = PyList_GET_SIZE(ids.ptr());
    out.reserve(n);
    for (Py_ssize_t i = 0; i < n; ++i) {
      const long long v = PyLong_AsLongLong(PyList_GET_ITEM(ids.ptr(), i));
      if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
      out.push_back(checked_id(v));
    }
    return out;
  }
  if (PyObject_CheckBuffer(ids.ptr())) {
    const py::buffer_info info = py::reinterpret_borrow<py::buffer>(ids).request();
    const std::string f = info.format;
    if (info.ndim == 1 && f.size() == 1 && std::string("bBhHiIlLqQ").find(f[0]) != std::string::npos) {
      out.reserve(info.shape[0]);
      switch (info.itemsize) {
        case 1: f == "b" ? append_ids<int8_t>(info, out) : append_ids<uint8_t>(info, out); break;
        case 2: f == "h" ? append_ids<int16_t>(info, out) : append_ids<uint16_t>(info, out); break;
        case 4: (f == "i" || f == "l") ? append_ids<int32_t>(info, out) : append_ids<uint32_t>(info, out); break;
        default: (f == "l" || f == "q") ? append_ids<int64_t>(info, out) : append_ids<uint64_t>(info, out); break;
      }
      return out;
    }
  }
  py::sequence seq = py::reinterpret_borrow<py::sequence>(ids);
  out.reserve(seq.size());
  for (py::handle item : seq) {
    const long long v = PyLong_AsLongLong(item.ptr());
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    out.push_back(checked_id(v));
  }
  return out;
}

std::shared_ptr<BpeModel> make_model(const std::vector<py::bytes>& id_to_bytes,
                                     const std::vector<std::tuple<uint32_t, uint32_t, uint32_t>>& merges,
                                     const std::vector<std::pair<py::bytes, uint32_t>>& specials, int pattern,
                                     bool ignore_merges) {
  std::vector<std::string> tokens;
  tokens.reserve(id_to_bytes.size());
  for (const py::bytes& b : id_to_bytes) tokens.emplace_back(b);
  std::vector<bpe::Merge> merge_list;
  merge_list.reserve(merges.size());
  for (const auto& [l, r, m] : merges) merge_list.push_back(bpe::Merge{l, r, m});
  std::vector<std::pair<std::string, uint32_t>> special_list;
  for (const auto& [content, id] : specials) special_list.emplace_back(std::string(content), id);
  py::gil_scoped_release release;
  return std::make_shared<BpeModel>(std::move(tokens), merge_list, special_list, to_pattern(pattern), ignore_merges);
}

// Runs body(piece) for every piece on n_threads workers, each holding one per-worker state
// (made by make()) for all its pieces, so a word cache stays on the core that warmed it.
template <typename Make, typename Body>
void for_pieces(size_t pieces, int n_threads, Make make, Body body) {
  std::atomic<size_t> next{0};
  parallel_for(n_threads, n_threads, [&](int64_t worker) {
    auto state = make(worker);
    for (size_t k = next.fetch_add(1); k < pieces; k = next.fetch_add(1)) body(state, k);
  });
}

// One long text on several threads: cut at safe points (BpeModel::parallel_cuts), the pieces
// encoded in parallel, then the list filled in parallel too, without the GIL. That is sound
// because the new list is reachable from nowhere else (and untracked by the GC meanwhile): the
// workers store borrowed pointers to the shared id ints and count them, and the references are
// added per id afterwards, with the GIL. Filling a list of millions of items is mostly page
// faults on its fresh memory, which is work the threads can share.
py::list encode_parallel(const BpeModel& model, std::string_view view, const std::vector<uint8_t>* mask,
                         int n_threads) {
  struct alignas(64) Piece {  // own cache line: workers append to neighbouring pieces at once
    std::vector<uint32_t> ids;
  };
  std::vector<Piece> parts;
  {
    py::gil_scoped_release release;
    const size_t wanted = std::max<size_t>(4 * n_threads, view.size() >> 18);
    std::vector<size_t> bounds = model.parallel_cuts(bytes_of(view), view.size(), mask, wanted);
    bounds.insert(bounds.begin(), 0);
    bounds.push_back(view.size());
    parts.resize(bounds.size() - 1);
    for_pieces(parts.size(), n_threads, [&](int64_t) { return std::make_unique<bpe::CacheLease>(model); },
               [&](auto& cache, size_t k) {
                 parts[k].ids.reserve((bounds[k + 1] - bounds[k]) / 3 + 16);
                 model.encode(bytes_of(view) + bounds[k], bounds[k + 1] - bounds[k], mask, cache->get(), parts[k].ids);
               });
  }
  std::vector<size_t> offsets(parts.size() + 1, 0);
  for (size_t k = 0; k < parts.size(); ++k) offsets[k + 1] = offsets[k] + parts[k].ids.size();
  PyObject* list = new_unfilled_list(offsets.back());
  if (!list) throw py::error_already_set();
  py::list result = py::reinterpret_steal<py::list>(list);
  if (offsets.back() == 0) return result;
  PyObject_GC_UnTrack(list);
  const size_t limit = model.id_limit();
  std::vector<std::vector<uint32_t>> counts(n_threads);  // per worker: references to add per id
  {
    py::gil_scoped_release release;
    PyObject* const* ints = id_objects().data();
    PyObject** items = reinterpret_cast<PyListObject*>(list)->ob_item;
    try {
      for_pieces(parts.size(), n_threads,
                 [&](int64_t worker) {
                   counts[worker].assign(limit, 0);
                   return counts[worker].data();
                 },
                 [&](uint32_t* count, size_t k) {
                   PyObject** dst = items + offsets[k];
                   for (const uint32_t id : parts[k].ids) {
                     *dst++ = ints[id];
                     ++count[id];
                   }
                   std::vector<uint32_t>().swap(parts[k].ids);
                 });
    } catch (...) {
      std::memset(items, 0, offsets.back() * sizeof(PyObject*));  // no references were taken
      throw;
    }
  }
  PyObject* const* ints = id_objects().data();
  for (const std::vector<uint32_t>& count : counts)
    for (size_t id = 0; id < count.size(); ++id)
      if (count[id]) Py_SET_REFCNT(ints[id], Py_REFCNT(ints[id]) + static_cast<Py_ssize_t>(count[id]));
  PyObject_GC_Track(list);
  return result;
}

py::list encode(const BpeModel& model, py::handle text, const std::optional<std::vector<size_t>>& allowed,
                int n_threads) {
  constexpr size_t kParallelMinBytes = size_t{1} << 18;
  const std::string_view view = utf8_view(text);
  const auto mask = to_mask(model, allowed);
  ensure_id_objects(model.id_limit());
  if (n_threads > 1 && view.size() >= kParallelMinBytes)
    return encode_parallel(model, view, mask ? &*mask : nullptr, n_threads);
  bpe::CacheLease cache(model);
  std::vector<uint32_t>& out = cache.get().scratch;
  out.clear();
  {
    py::gil_scoped_release release;
    out.reserve(view.size() / 4 + 16);
    model.encode(bytes_of(view), view.size(), mask ? &*mask : nullptr, cache.get(), out);
  }
  PyObject* list = new_id_list(out.data(), out.size());
  if (out.capacity() > bpe::WordCache::kMaxScratchIds) std::vector<uint32_t>().swap(out);
  if (!list) throw py::error_already_set();
  return py::reinterpret_steal<py::list>(list);
}

// Encodes every text on `n_threads` workers; results[i] holds text i's ids. Called without the GIL.
void encode_all(const BpeModel& model, const std::vector<std::string_view>& views, const std::vector<uint8_t>* mask,
                int n_threads, std::vector<std::vector<uint32_t>>& results) {
  const int workers = static_cast<int>(std::max<size_t>(1, std::min<size_t>(std::max(n_threads, 1), views.size())));
  std::atomic<size_t> next{0};
  parallel_for(workers, workers, [&](int64_t) {
    bpe::CacheLease cache(model);
    // Encode into a worker-local buffer and copy once: pushing into results[i] directly would
    // make neighbouring workers write the same cache lines (adjacent vector headers).
    std::vector<uint32_t> local;
    for (size_t i = next.fetch_add(1); i < views.size(); i = next.fetch_add(1)) {
      local.clear();
      model.encode(bytes_of(views[i]), views[i].size(), mask, cache.get(), local);
      results[i].assign(local.begin(), local.end());
    }
  });
}

std::vector<std::string_view> utf8_views(const py::list& texts) {
  std::vector<std::string_view> views;
  views.reserve(texts.size());
  for (py::handle t : texts) views.push_back(utf8_view(t));
  return views;
}

py::list encode_batch(const BpeModel& model, const py::list& texts, const std::optional<std::vector<size_t>>& allowed,
                      int n_threads) {
  const std::vector<std::string_view> views = utf8_views(texts);
  const auto mask = to_mask(model, allowed);
  ensure_id_objects(model.id_limit());
  py::list out(views.size());
  bool ok;
  {
    py::gil_scoped_release release;
    ok = encode_to_lists(model, views, mask ? &*mask : nullptr, n_threads, out.ptr());
  }
  if (!ok) throw std::bad_alloc();
  return out;
}

// The same as encode_batch, as two numpy arrays: every text's ids concatenated (uint32) and
// offsets (int64, len(texts) + 1). No Python int per token, so it suits bulk data preparation.
py::tuple encode_batch_flat(const BpeModel& model, const py::list& texts,
                            const std::optional<std::vector<size_t>>& allowed, int n_threads) {
  const std::vector<std::string_view> views = utf8_views(texts);
  const auto mask = to_mask(model, allowed);
  std::vector<std::vector<uint32_t>> results(views.size());
  {
    py::gil_scoped_release release;
    encode_all(model, views, mask ? &*mask : nullptr, n_threads, results);
  }
  py::array_t<int64_t> offsets(static_cast<py::ssize_t>(views.size() + 1));
  int64_t* off = offsets.mutable_data();
  off[0] = 0;
  for (size_t i = 0; i < results.size(); ++i) off[i + 1] = off[i] + static_cast<int64_t>(results[i].size());
  py::array_t<uint32_t> tokens(static_cast<py::ssize_t>(off[views.size()]));
  uint32_t* dst = tokens.mutable_data();
  {
    py::gil_scoped_release release;
    for (size_t i = 0; i < results.size(); ++i)
      if (!results[i].empty()) std::memcpy(dst + off[i], results[i].data(), results[i].size() * sizeof(uint32_t));
  }
  return py::make_tuple(tokens, offsets);
}

py::object find_special(const BpeModel& model, py::handle text, const std::vector<size_t>& indices) {
  const std::string_view view = utf8_view(text);
  const auto mask = to_mask(model, indices);
  size_t pos, index;
  bool found;
  {
    py::gil_scoped_release release;
    found = model.specials().find(bytes_of(view), 0, view.size(), &*mask, &pos, &index);
  }
  if (!found) return py::none();
  return py::make_tuple(pos, index);
}

py::bytes decode(const BpeModel& model, py::handle ids) {
  const std::vector<uint32_t> list = ids_from_python(ids);
  std::string out;
  int64_t bad;
  {
    py::gil_scoped_release release;
    out.reserve(list.size() * 4);
    bad = model.decode(list.data(), list.size(), out);
  }
  if (bad >= 0) throw py::value_error("token id " + std::to_string(list[bad]) + " (position " + std::to_string(bad) +
                                      ") is not in the vocabulary");
  return py::bytes(out);
}

py::list pretokenize(py::handle text, int pattern) {
  const std::string_view view = utf8_view(text);
  const Pattern p = to_pattern(pattern);
  std::vector<size_t> ends;
  {
    py::gil_scoped_release release;
    for (size_t i = 0; i < view.size();) ends.push_back(i = bpe::next_pretoken(p, bytes_of(view), i, view.size()));
  }
  py::list out;
  const bool as_str = PyUnicode_Check(text.ptr());
  size_t start = 0;
  for (size_t end : ends) {
    if (as_str) {
      out.append(py::str(view.data() + start, end - start));
    } else {
      out.append(py::bytes(view.data() + start, end - start));
    }
    start = end;
  }
  return out;
}

// The largest cut position <= limit at which `data` can be split without changing its
// pre-tokens (see bpe::is_safe_cut), or -1 when there is none.
int64_t last_safe_cut(py::bytes data, size_t limit, int pattern) {
  const std::string_view view(data);
  const uint8_t* s = bytes_of(view);
  const Pattern p = to_pattern(pattern);
  for (size_t i = std::min(limit, view.size()); i > 0; --i)
    if (bpe::is_safe_cut(p, s, i, view.size())) return static_cast<int64_t>(i);
  return -1;
}

void count_words(bpe::WordCounter& counter, const py::list& segments, int n_threads) {
  std::vector<std::string_view> views;
  views.reserve(segments.size());
  for (py::handle s : segments) views.push_back(utf8_view(s));
  py::gil_scoped_release release;
  counter.count(views, n_threads);
}

const BindingRegistrar registrar("bpe", [](py::module_& m) {
  m.doc() = "byte-level BPE: regex-free pre-tokenizer, encoder/decoder, trainer";
  m.def("pretokenize", &pretokenize, py::arg("text"), py::arg("pattern"),
        "pre-tokens of text (str or bytes) for pattern 0 = llama3, 1 = gpt2, 2 = smollm");
  m.def("last_safe_cut", &last_safe_cut, py::arg("data"), py::arg("limit"), py::arg("pattern"),
        "largest cut <= limit that keeps the pre-tokens of pattern (the rule depends on it), or -1");
  m.attr("unicode_version") = unicode::kUnicodeVersion;

  py::class_<BpeModel, std::shared_ptr<BpeModel>>(m, "Model")
      .def(py::init(&make_model), py::arg("id_to_bytes"), py::arg("merges"), py::arg("specials"),
           py::arg("pattern"), py::arg("ignore_merges"))
      .def("encode", &encode, py::arg("text"), py::arg("allowed") = std::nullopt, py::arg("n_threads") = 1)
      .def("encode_batch", &encode_batch, py::arg("texts"), py::arg("allowed") = std::nullopt,
           py::arg("n_threads") = 1)
      .def("encode_batch_flat", &encode_batch_flat, py::arg("texts"), py::arg("allowed") = std::nullopt,
           py::arg("n_threads") = 1)
      .def("find_special", &find_special, py::arg("text"), py::arg("indices"))
      .def("decode", &decode, py::arg("ids"))
      .def("encode_word", [](const BpeModel& model, py::bytes word) {
        const std::string_view view(word);
        std::vector<uint32_t> out;
        model.encode_word(bytes_of(view), view.size(), out);
        return to_list(model, out);
      }, py::arg("word"));

  py::class_<bpe::WordCounter>(m, "WordCounter")
      .def(py::init([](int pattern, const std::vector<std::string>& specials, size_t max_words) {
             return new bpe::WordCounter(to_pattern(pattern), specials, max_words);
           }),
           py::arg("pattern"), py::arg("specials"), py::arg("max_words"))
      .def("count", &count_words, py::arg("segments"), py::arg("n_threads"))
      .def_property_readonly("num_words", &bpe::WordCounter::num_words)
      .def_property_readonly("total_words", &bpe::WordCounter::total_words)
      .def_property_readonly("prunes", &bpe::WordCounter::prunes)
      .def_property_readonly("prune_threshold", &bpe::WordCounter::prune_threshold)
      .def_property_readonly("memory_bytes", &bpe::WordCounter::memory_bytes);

  py::class_<bpe::BpeTrainer>(m, "Trainer")
      .def(py::init([](bpe::WordCounter& counter, int64_t min_frequency) {
             py::gil_scoped_release release;
             return new bpe::BpeTrainer(counter, min_frequency);
           }),
           py::arg("counter"), py::arg("min_frequency"))
      .def("step", &bpe::BpeTrainer::step, py::arg("max_merges"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("num_words", &bpe::BpeTrainer::num_words)
      .def_property_readonly("num_merges", &bpe::BpeTrainer::num_merges)
      .def_property_readonly("memory_bytes", &bpe::BpeTrainer::memory_bytes);
});

}  // namespace
}  // namespace fastllm
