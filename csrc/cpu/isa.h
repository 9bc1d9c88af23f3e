// Run-time CPU instruction-set selection, like ggml: each kernel family has a scalar
// `_generic` implementation (the C++ truth) and optional `_avx2` / `_avx512` translation units
// compiled with their own -m flags. cpuid decides once which ones this CPU can run; the active
// level can be forced (FASTLLM_CPU_ISA or set_active_isa) so every path is tested on one machine.
//
// A kernel family publishes one function table per ISA and picks with `active_isa()`:
//
//   const GgmlKernels& ggml_kernels() {
//     switch (active_isa()) {
//       case Isa::avx512: return ggml_kernels_avx512;  // defined in ggml_avx512.cpp
//       case Isa::avx2:   return ggml_kernels_avx2;
//       default:          return ggml_kernels_generic;
//     }
//   }
#pragma once

#include <string>
#include <vector>

namespace fastllm {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false;
};

// What cpuid (and the OS, via xgetbv) says this machine supports.
const CpuFeatures& cpu_features();

// The best level this CPU and this build support. avx2 needs AVX2+FMA+F16C+BMI2; avx512 needs
// F/BW/VL/DQ + VNNI + BF16 (the flags its translation units are compiled with).
Isa best_isa();

// The level kernels use now: best_isa() unless forced.
Isa active_isa();

// Forces a level; throws std::invalid_argument naming the level when the CPU or build lacks it.
void set_active_isa(Isa isa);
Isa parse_isa(const std::string& name);  // "generic" | "avx2" | "avx512"
const char* isa_name(Isa isa);
std::vector<Isa> supported_isas();       // generic first, best last

}  // namespace fastllm
