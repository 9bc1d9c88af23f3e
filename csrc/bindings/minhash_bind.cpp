// fastllm._C.minhash: MinHash signatures, LSH band keys, union-find, decontamination n-gram
// matching and quality-filter text statistics. Texts come in as a Python sequence of str (their
// cached UTF-8 buffers are borrowed, not copied) or bytes; outputs go to caller-allocated numpy
// buffers passed as addresses. Every call that does real work releases the GIL.
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

#include "bindings/registry.h"
#include "common/check.h"
#include "cpu/minhash.h"
#include "cpu/minhash_ngrams.h"

namespace fastllm {
namespace {

using minhash::Units;

// Borrowed views of the texts; valid while the caller keeps `texts` alive (it does, for the call).
std::vector<std::string_view> text_views(const py::sequence& texts) {
  std::vector<std::string_view> views;
  views.reserve(py::len(texts));
  for (const py::handle item : texts) {
    PyObject* obj = item.ptr();
    if (PyUnicode_Check(obj)) {
      Py_ssize_t size = 0;
      const char* data = PyUnicode_AsUTF8AndSize(obj, &size);
      if (data == nullptr) throw py::error_already_set();
      views.emplace_back(data, static_cast<size_t>(size));
    } else if (PyBytes_Check(obj)) {
      views.emplace_back(PyBytes_AS_STRING(obj), static_cast<size_t>(PyBytes_GET_SIZE(obj)));
    } else {
      fail("minhash: expected str or bytes items, got ", Py_TYPE(obj)->tp_name);
    }
  }
  return views;
}

Units units_from(int mode) {
  FASTLLM_CHECK(mode >= 0 && mode <= 2, "minhash: unit mode must be 0 (whitespace), 1 (alnum) or 2 (chars), got ",
                mode);
  return static_cast<Units>(mode);
}

template <typename T>
T* ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void signatures(const py::sequence& texts, uintptr_t mults, int num_perm_padded, int mode, int ngram,
                uintptr_t out, int n_threads) {
  const std::vector<std::string_view> views = text_views(texts);
  py::gil_scoped_release release;
  minhash::signatures(views, units_from(mode), ngram, ptr<const uint32_t>(mults), num_perm_padded,
                      ptr<uint32_t>(out), n_threads);
}

py::list shingle_hashes(const py::sequence& one_text, int mode, int ngram) {
  const std::vector<std::string_view> views = text_views(one_text);
  FASTLLM_CHECK(views.size() == 1, "shingle_hashes: pass exactly one text");
  std::vector<uint32_t> out;
  minhash::shingle_hashes(views[0], units_from(mode), ngram, out);
  py::list result;
  for (uint32_t h : out) result.append(h);
  return result;
}

// Concatenated n-gram hashes of every text (uint64 bytes) and the per-text counts (int64 bytes).
py::tuple ngram_hashes(const py::sequence& texts, int mode, int ngram) {
  const std::vector<std::string_view> views = text_views(texts);
  std::vector<uint64_t> all;
  std::vector<int64_t> counts(views.size());
  {
    py::gil_scoped_release release;
    std::vector<minhash::Unit> units;
    std::vector<uint64_t> hashes;
    for (size_t i = 0; i < views.size(); ++i) {
      minhash::ngram_hash_list(views[i], units_from(mode), ngram, units, hashes);
      counts[i] = static_cast<int64_t>(hashes.size());
      all.insert(all.end(), hashes.begin(), hashes.end());
    }
  }
  return py::make_tuple(py::bytes(reinterpret_cast<const char*>(all.data()), all.size() * 8),
                        py::bytes(reinterpret_cast<const char*>(counts.data()), counts.size() * 8));
}

minhash::NgramTable table_from(uintptr_t hashes, uintptr_t masks, int64_t size) {
  return {ptr<const uint64_t>(hashes), ptr<const uint64_t>(masks), size};
}

void ngram_match(const py::sequence& texts, uintptr_t hashes, uintptr_t masks, int64_t size, int mode,
                 int ngram, uintptr_t counts_out, uintptr_t masks_out, int n_threads) {
  const std::vector<std::string_view> views = text_views(texts);
  py::gil_scoped_release release;
  minhash::ngram_match(views, table_from(hashes, masks, size), units_from(mode), ngram,
                       ptr<int64_t>(counts_out), ptr<uint64_t>(masks_out), n_threads);
}

std::vector<std::pair<int64_t, int64_t>> ngram_spans(const py::sequence& one_text, uintptr_t hashes,
                                                     uintptr_t masks, int64_t size, int mode, int ngram) {
  const std::vector<std::string_view> views = text_views(one_text);
  FASTLLM_CHECK(views.size() == 1, "ngram_spans: pass exactly one text");
  py::gil_scoped_release release;
  return minhash::ngram_spans(views[0], table_from(hashes, masks, size), units_from(mode), ngram);
}

void text_stats(const py::sequence& texts, const std::vector<std::string>& stop_words, uintptr_t out,
                int n_threads) {
  const std::vector<std::string_view> views = text_views(texts);
  py::gil_scoped_release release;
  minhash::text_stats(views, stop_words, ptr<double>(out), n_threads);
}

const BindingRegistrar registrar("minhash", [](py::module_& m) {
  m.attr("PERM_ALIGN") = minhash::kPermAlign;
  m.attr("NUM_TEXT_STATS") = static_cast<int>(minhash::kNumTextStats);
  m.def("signatures", &signatures, py::arg("texts"), py::arg("mults"), py::arg("num_perm_padded"),
        py::arg("mode"), py::arg("ngram"), py::arg("out"), py::arg("n_threads"));
  m.def("shingle_hashes", &shingle_hashes, py::arg("one_text"), py::arg("mode"), py::arg("ngram"));
  m.def("band_keys",
        [](uintptr_t sig, int64_t n, int64_t stride, int bands, int rows, uintptr_t keys, int n_threads) {
          minhash::band_keys(ptr<const uint32_t>(sig), n, stride, bands, rows, ptr<uint64_t>(keys), n_threads);
        },
        py::arg("sig"), py::arg("n"), py::arg("stride"), py::arg("bands"), py::arg("rows"), py::arg("keys"),
        py::arg("n_threads"), py::call_guard<py::gil_scoped_release>());
  m.def("components",
        [](int64_t n, uintptr_t u, uintptr_t v, int64_t n_edges, uintptr_t root) {
          minhash::components(n, ptr<const int64_t>(u), ptr<const int64_t>(v), n_edges, ptr<int64_t>(root));
        },
        py::arg("n"), py::arg("u"), py::arg("v"), py::arg("n_edges"), py::arg("root"),
        py::call_guard<py::gil_scoped_release>());
  m.def("ngram_hashes", &ngram_hashes, py::arg("texts"), py::arg("mode"), py::arg("ngram"));
  m.def("ngram_match", &ngram_match, py::arg("texts"), py::arg("hashes"), py::arg("masks"), py::arg("size"),
        py::arg("mode"), py::arg("ngram"), py::arg("counts_out"), py::arg("masks_out"), py::arg("n_threads"));
  m.def("ngram_spans", &ngram_spans, py::arg("one_text"), py::arg("hashes"), py::arg("masks"), py::arg("size"),
        py::arg("mode"), py::arg("ngram"));
  m.def("text_stats", &text_stats, py::arg("texts"), py::arg("stop_words"), py::arg("out"),
        py::arg("n_threads"));
});

}  // namespace
}  // namespace fastllm
