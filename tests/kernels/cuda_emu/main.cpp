// emu_attention KERNEL DIR (or `fault NAME`: emulate_faults.cpp; `addresses "DESC ROWS K_MAJOR"`): runs a CUDA attention kernel (KERNEL: the forwards mma, wgmma, wgmma64,
// or the split-KV decoding pair, decode) on the CPU block emulator. DIR/args.txt holds,
// whitespace-separated:
//   dtype (1 fp16, 2 bf16) batch heads kv_heads seq_q seq_k head_dim causal scale
//   q_strides[3] k_strides[3] v_strides[3] q_elements k_elements v_elements
//   [n_splits keys_per_split]  (decode only)
// and DIR/q.bin, k.bin, v.bin the raw 16-bit storage the strides index. Writes DIR/out.bin
// (B, H, T, D contiguous, same dtype) and DIR/lse.bin (B, H, T float32). Every buffer ends at a
// page boundary followed by an inaccessible page, so a read or write past it crashes; outputs
// start as NaN so an element the kernel never writes shows. Driven by test_cuda_emulated.py.
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "cuda/attention_cuda.h"
#include "emu_wgmma.h"

namespace fastllm {
void emulate_wgmma(int dtype, const AttentionCudaArgs& a, bool narrow);
void emulate_mma(int dtype, const AttentionCudaArgs& a);
void emulate_decode(int dtype, const AttentionCudaArgs& a, const AttentionDecodeWorkspace& w);
int run_fault(const std::string& name);  // emulate_faults.cpp
}  // namespace fastllm

namespace {

// `bytes` of memory ending right before a PROT_NONE page.
uint8_t* guarded_buffer(size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t data_pages = (bytes + page - 1) / page;
  void* region = mmap(nullptr, (data_pages + 1) * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) emu::fail("mmap of %zu bytes failed", bytes);
  auto* base = static_cast<uint8_t*>(region);
  if (mprotect(base + data_pages * page, page, PROT_NONE) != 0) emu::fail("mprotect failed");
  return base + data_pages * page - bytes;
}

uint8_t* read_input(const std::string& path, size_t bytes) {
  uint8_t* buffer = guarded_buffer(bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(buffer), static_cast<std::streamsize>(bytes))) {
    emu::fail("%s: expected %zu bytes", path.c_str(), bytes);
  }
  emu::memory().globals.push_back({buffer, bytes});
  return buffer;
}

void write_output(const std::string& path, const void* data, size_t bytes) {
  const std::string partial = path + ".partial";
  std::ofstream out(partial, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  out.close();
  if (!out || std::rename(partial.c_str(), path.c_str()) != 0) emu::fail("cannot write %s", path.c_str());
}

// "DESC ROWS K_MAJOR": the byte address of every (row, k) element of a 16-deep wgmma operand, as
// the emulator reads it (checked against wgmma_spec.py).
int print_operand_addresses(const std::string& spec) {
  unsigned long long desc = 0;
  int rows = 0, k_major = 0;
  if (std::sscanf(spec.c_str(), "%llu %d %d", &desc, &rows, &k_major) != 3) emu::fail("addresses: DESC ROWS K_MAJOR");
  const emu::Descriptor fields = emu::decode_descriptor(desc);
  for (int mn = 0; mn < rows; ++mn) {
    for (int k = 0; k < 16; ++k) std::printf("%u ", emu::operand_address(fields, mn, k, k_major != 0));
  }
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s mma|wgmma|wgmma64|decode DIR, or %s fault NAME\n", argv[0], argv[0]);
    return 2;
  }
  const std::string kernel = argv[1], dir = argv[2];
  if (kernel == "fault") return fastllm::run_fault(argv[2]);
  if (kernel == "addresses") return print_operand_addresses(argv[2]);
  std::ifstream args_file(dir + "/args.txt");
  fastllm::AttentionCudaArgs a{};
  int dtype = 0, causal = 0;
  int64_t elements[3];
  args_file >> dtype >> a.batch >> a.heads >> a.kv_heads >> a.seq_q >> a.seq_k >> a.head_dim >> causal >> a.scale;
  for (int64_t* strides : {a.q_strides, a.k_strides, a.v_strides}) args_file >> strides[0] >> strides[1] >> strides[2];
  args_file >> elements[0] >> elements[1] >> elements[2];
  if (!args_file) emu::fail("%s/args.txt: malformed", dir.c_str());
  a.causal = causal != 0;
  a.q = read_input(dir + "/q.bin", static_cast<size_t>(elements[0]) * 2);
  a.k = read_input(dir + "/k.bin", static_cast<size_t>(elements[1]) * 2);
  a.v = read_input(dir + "/v.bin", static_cast<size_t>(elements[2]) * 2);

  const size_t rows = static_cast<size_t>(a.batch * a.heads * a.seq_q);
  auto* out = reinterpret_cast<uint16_t*>(guarded_buffer(rows * a.head_dim * 2));
  auto* lse = reinterpret_cast<float*>(guarded_buffer(rows * 4));
  std::memset(out, 0xFF, rows * a.head_dim * 2);
  for (size_t i = 0; i < rows; ++i) lse[i] = NAN;
  a.out = out;
  a.lse = lse;
  a.out_strides[2] = a.head_dim;
  a.out_strides[1] = a.seq_q * a.head_dim;
  a.out_strides[0] = a.heads * a.out_strides[1];

  if (kernel == "decode") {
    fastllm::AttentionDecodeWorkspace w{};
    if (!(args_file >> w.n_splits >> w.keys_per_split)) {
      emu::fail("%s/args.txt: decode needs n_splits keys_per_split", dir.c_str());
    }
    const size_t partial_rows = static_cast<size_t>(w.n_splits) * rows;
    w.partial_out = reinterpret_cast<float*>(guarded_buffer(partial_rows * a.head_dim * 4));
    w.partial_max = reinterpret_cast<float*>(guarded_buffer(partial_rows * 4));
    w.partial_sum = reinterpret_cast<float*>(guarded_buffer(partial_rows * 4));
    fastllm::emulate_decode(dtype, a, w);
  } else if (kernel == "mma") {
    fastllm::emulate_mma(dtype, a);
  } else if (kernel == "wgmma" || kernel == "wgmma64") {
    fastllm::emulate_wgmma(dtype, a, kernel == "wgmma64");
  } else {
    emu::fail("unknown kernel %s", kernel.c_str());
  }
  write_output(dir + "/out.bin", out, rows * a.head_dim * 2);
  write_output(dir + "/lse.bin", lse, rows * 4);
  return 0;
}
