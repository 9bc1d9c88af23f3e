// fastllm._C.text: per-document text cleaning over the code points of Python str objects (their
// Latin-1 / UCS-2 / UCS-4 arrays are read in place, so positions are Python's). The texts are
// collected with the GIL held, worked on without it, and the results built with it again.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <vector>

#include "bindings/registry.h"
#include "common/check.h"
#include "cpu/text_normalize.h"
#include "cpu/text_pii.h"
#include "cpu/text_search.h"

namespace fastllm {
namespace {

// One str's code points, and where its normalized form goes when it changes.
struct StrItem {
  int kind = 1;
  const void* data = nullptr;
  int64_t length = 0;
  bool changed = false;
  std::vector<uint8_t> out1;
  std::vector<uint16_t> out2;
  std::vector<uint32_t> out4;
};

StrItem str_item(py::handle obj) {
  if (!PyUnicode_Check(obj.ptr())) fail("text: expected str items, got ", Py_TYPE(obj.ptr())->tp_name);
  if (PyUnicode_READY(obj.ptr()) < 0) throw py::error_already_set();  // a no-op from Python 3.12
  StrItem item;
  item.kind = PyUnicode_KIND(obj.ptr());
  item.data = PyUnicode_DATA(obj.ptr());
  item.length = PyUnicode_GET_LENGTH(obj.ptr());
  return item;
}

void normalize_item(StrItem& item, text::NormalizeFlags flags) {
  switch (item.kind) {
    case PyUnicode_1BYTE_KIND:
      item.changed = text::normalize(static_cast<const uint8_t*>(item.data), item.length, flags, item.out1);
      break;
    case PyUnicode_2BYTE_KIND:
      item.changed = text::normalize(static_cast<const uint16_t*>(item.data), item.length, flags, item.out2);
      break;
    default:
      item.changed = text::normalize(static_cast<const uint32_t*>(item.data), item.length, flags, item.out4);
  }
}

py::object normalized_str(const StrItem& item, py::handle original) {
  if (!item.changed) return py::reinterpret_borrow<py::object>(original);
  PyObject* out = nullptr;
  switch (item.kind) {
    case PyUnicode_1BYTE_KIND:
      out = PyUnicode_FromKindAndData(item.kind, item.out1.data(), static_cast<Py_ssize_t>(item.out1.size()));
      break;
    case PyUnicode_2BYTE_KIND:
      out = PyUnicode_FromKindAndData(item.kind, item.out2.data(), static_cast<Py_ssize_t>(item.out2.size()));
      break;
    default:
      out = PyUnicode_FromKindAndData(item.kind, item.out4.data(), static_cast<Py_ssize_t>(item.out4.size()));
  }
  if (out == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(out);
}

// The whitespace/control steps of fastllm.data.normalize on each text (NFC and mojibake repair
// happen before, in Python); unchanged texts come back as the same objects.
py::list normalize_texts(const py::list& texts, bool remove_control, bool whitespace, bool collapse_spaces) {
  std::vector<StrItem> items;
  items.reserve(texts.size());
  for (const py::handle obj : texts) items.push_back(str_item(obj));
  const text::NormalizeFlags flags{remove_control, whitespace, collapse_spaces};
  {
    py::gil_scoped_release release;
    for (StrItem& item : items) normalize_item(item, flags);
  }
  py::list out(items.size());
  for (size_t i = 0; i < items.size(); ++i) out[i] = normalized_str(items[i], texts[i]);
  return out;
}

// Per text: 1 when one of `needles` (lowercase) occurs in text.lower(), 0 when none does, -1 when
// the caller must decide in Python (see csrc/cpu/text_search.h).
py::list contains_any_lowered(const py::list& texts, const std::vector<std::string>& needles,
                              const std::vector<uint32_t>& unsafe) {
  std::vector<StrItem> items;
  items.reserve(texts.size());
  for (const py::handle obj : texts) items.push_back(str_item(obj));
  std::vector<int> found(items.size());
  {
    py::gil_scoped_release release;
    for (size_t i = 0; i < items.size(); ++i) {
      const StrItem& t = items[i];
      switch (t.kind) {
        case PyUnicode_1BYTE_KIND:
          found[i] = text::contains_any_lowered(static_cast<const uint8_t*>(t.data), t.length, needles, unsafe);
          break;
        case PyUnicode_2BYTE_KIND:
          found[i] = text::contains_any_lowered(static_cast<const uint16_t*>(t.data), t.length, needles, unsafe);
          break;
        default:
          found[i] = text::contains_any_lowered(static_cast<const uint32_t*>(t.data), t.length, needles, unsafe);
      }
    }
  }
  py::list out(items.size());
  for (size_t i = 0; i < items.size(); ++i) out[i] = py::int_(found[i]);
  return out;
}

bool python_is_decimal(uint32_t c) { return Py_UNICODE_ISDECIMAL(static_cast<Py_UCS4>(c)) != 0; }

template <typename Char>
uint32_t scan_as(const text::PiiScanner& scanner, const StrItem& item, std::vector<int64_t>& windows) {
  return scanner.scan(static_cast<const Char*>(item.data), item.length, windows);
}

uint32_t scan_item(const text::PiiScanner& scanner, const StrItem& item, std::vector<int64_t>& windows) {
  switch (item.kind) {
    case PyUnicode_1BYTE_KIND:
      return scan_as<uint8_t>(scanner, item, windows);
    case PyUnicode_2BYTE_KIND:
      return scan_as<uint16_t>(scanner, item, windows);
    default:
      return scan_as<uint32_t>(scanner, item, windows);
  }
}

py::tuple bits_and_bounds(uint32_t bits, const std::vector<int64_t>& windows) {
  py::tuple bounds(windows.size());
  for (size_t i = 0; i < windows.size(); ++i) bounds[i] = py::int_(windows[i]);
  return py::make_tuple(bits, bounds);
}

// pii_scan for many texts, without the GIL while scanning; None for a text with no digit window,
// none of `anchors` and not all of `together` (no detector can match there).
py::list pii_scan_many(const text::PiiScanner& scanner, const py::list& texts, uint32_t anchors, uint32_t together) {
  std::vector<StrItem> items;
  items.reserve(texts.size());
  for (const py::handle obj : texts) items.push_back(str_item(obj));
  std::vector<uint32_t> bits(items.size());
  std::vector<std::vector<int64_t>> windows(items.size());
  {
    py::gil_scoped_release release;
    for (size_t i = 0; i < items.size(); ++i) bits[i] = scan_item(scanner, items[i], windows[i]);
  }
  py::list out(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const bool nothing = windows[i].empty() && !(bits[i] & anchors) && (bits[i] & together) != together;
    out[i] = nothing ? py::object(py::none()) : py::object(bits_and_bounds(bits[i], windows[i]));
  }
  return out;
}

// (hint bits, [window begin, end, ...]) for one text. Holds the GIL: it is a microsecond's work
// per document, less than releasing and taking back the GIL would cost.
py::tuple pii_scan(const text::PiiScanner& scanner, const py::handle obj) {
  std::vector<int64_t> windows;
  const uint32_t bits = scan_item(scanner, str_item(obj), windows);
  return bits_and_bounds(bits, windows);
}

const BindingRegistrar registrar("text", [](py::module_& m) {
  py::class_<text::PiiScanner>(m, "PiiScanner")
      .def(py::init([](const std::vector<std::vector<std::string>>& hint_groups,
                       const std::vector<std::string>& words, const std::vector<uint32_t>& lower_to_ascii,
                       int64_t margin) {
             return text::PiiScanner(hint_groups, words, lower_to_ascii, margin, &python_is_decimal);
           }),
           py::arg("hint_groups"), py::arg("words"), py::arg("lower_to_ascii"), py::arg("margin"))
      .def("scan", &pii_scan, py::arg("text"))
      .def("scan_many", &pii_scan_many, py::arg("texts"), py::arg("anchors"), py::arg("together"));
  m.def("contains_any_lowered", &contains_any_lowered, py::arg("texts"), py::arg("needles"), py::arg("unsafe"));
  m.attr("SECRET_WORD") = 1u << text::kSecretWord;
  m.attr("HAS_AT") = 1u << text::kHasAt;
  m.attr("IPV6_HINT") = 1u << text::kIpv6Hint;
  m.attr("ASSIGN_CHAR") = 1u << text::kAssignChar;
  m.def("normalize", &normalize_texts, py::arg("texts"), py::arg("remove_control"), py::arg("whitespace"),
        py::arg("collapse_spaces"));
});

}  // namespace
}  // namespace fastllm
