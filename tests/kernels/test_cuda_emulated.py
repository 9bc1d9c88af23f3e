"""The CUDA attention kernels, unchanged, run on a CPU emulator of a thread block.

No GPU runs in CI, yet the sm_90a wgmma kernel (csrc/cuda/attention_wgmma.cu) has never met one.
tests/kernels/cuda_emu compiles the kernel sources with the host compiler (FASTLLM_CUDA_EMULATION
swaps the inline PTX in mma_utils.cuh / wgmma.cuh / attention_decode.cu for emulated instructions)
and runs every CUDA thread of a block as a fiber. wgmma is emulated asynchronously with its
ordering rules checked (fences, waits, cp.async landing and publication, registers and shared
memory untouched while in flight), operands are read through the descriptors as wgmma_spec.py
models them, ldmatrix reads are checked against cp.async copies that have not landed or were not
published by a barrier, plain Q-tile stores go through store_shared_16 and are tracked too,
global buffers sit against inaccessible pages and outputs start as NaN.
The mma.sync forward and the split-KV decoding kernels, which passed their GPU tests on an H100
and an H200, run through the same emulator: that pins the emulator's own conventions (fragments,
ldmatrix, shuffles, cp.async) to hardware-verified code, and keeps those kernels tested in CI.
Mutations of each kernel (a fence, a wait or a barrier removed, a buffer refilled too early) must
be caught. Not checked: shared-memory accesses outside the emulated instructions and
store_shared_16 (plain loads and stores, the decode kernel's static arrays), and anything about speed.

Results are compared with the fp32 reference by the flash-attention rule of DESIGN.md section 9
(error at most 2x that of the reference computed in the same low precision, plus a small floor).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import wgmma_spec as spec

from fastllm.kernels.attention.ref import attention_ref

ROOT = Path(__file__).resolve().parents[2]
EMU_DIR = Path(__file__).resolve().parent / "cuda_emu"
SOURCES = ["main.cpp", "emulate_wgmma.cpp", "emulate_mma.cpp", "emulate_decode.cpp", "emulate_faults.cpp"]
DTYPE_CODES = {torch.float16: 1, torch.bfloat16: 2}


def _cuda_include() -> Path | None:
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    candidates = [Path(nvcc).resolve().parent.parent / "include"] if nvcc else []
    candidates.append(Path("/usr/local/cuda/include"))
    return next((c for c in candidates if (c / "cuda_fp16.h").exists()), None)


def _compile(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"building {what} failed:\n{result.stderr[-4000:]}"


class EmulatorBuild:
    """Compiles the emulator's translation units once; `binary` links them, optionally with one
    kernel taken from another copy of csrc (a mutant)."""

    def __init__(self, directory: Path):
        include = _cuda_include()
        compiler = shutil.which("g++")
        if include is None or compiler is None:
            pytest.skip("the emulator needs g++ and the CUDA toolkit's headers (cuda_fp16.h), not found here")
        self.directory = directory
        self.flags = [compiler, "-std=c++17", "-O1", "-Wall", "-Wno-unknown-pragmas", "-Werror",
                      "-DFASTLLM_CUDA_EMULATION", f"-I{include}"]
        for source in SOURCES:
            self.object_file(source, ROOT / "csrc")

    def object_file(self, source: str, csrc: Path) -> Path:
        target = self.directory / f"{Path(source).stem}-{abs(hash(str(csrc)))}.o"
        if not target.exists():
            _compile([*self.flags, f"-I{csrc}", f"-I{ROOT / 'csrc'}", f"-I{EMU_DIR}", "-c", str(EMU_DIR / source),
                      "-o", str(target)], source)
        return target

    def binary(self, mutant: Path | None = None, kernel: str | None = None) -> Path:
        """The emulator; with `mutant`, the translation unit of `kernel` compiled from that csrc."""
        mutated = f"emulate_{kernel.removesuffix('64')}.cpp" if mutant else None
        target = self.directory / f"emu_attention-{abs(hash(str(mutant)))}"
        if not target.exists():
            objects = [self.object_file(s, mutant if s == mutated else ROOT / "csrc") for s in SOURCES]
            _compile([self.flags[0], *map(str, objects), "-o", str(target)], "the emulator")
        return target


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> EmulatorBuild:
    return EmulatorBuild(tmp_path_factory.mktemp("cuda_emu"))


@pytest.fixture(scope="session")
def emulator(build) -> Path:
    return build.binary()


def launch_emulated(binary: Path, workdir: Path, kernel: str, q, k, v, causal: bool, scale: float,
                    splits: tuple[int, int] = ()):
    """Runs the CUDA kernel `kernel` (mma, wgmma, wgmma64; decode with `splits` = (n_splits,
    keys_per_split)) on the emulator: the finished process."""
    tensors = {"q": q, "k": k, "v": v}
    fields = [DTYPE_CODES[q.dtype], q.shape[0], q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3],
              int(causal), repr(float(scale))]
    for t in tensors.values():
        fields += list(t.stride()[:3])
    for name, t in tensors.items():
        assert t.storage_offset() == 0, "the emulator takes each input from the start of its storage"
        storage = t.as_strided((t.untyped_storage().nbytes() // 2,), (1,), 0)
        fields.append(storage.numel())
        storage.contiguous().view(torch.int16).numpy().tofile(workdir / f"{name}.bin")
    fields += list(splits)
    (workdir / "args.txt").write_text(" ".join(str(f) for f in fields))
    return subprocess.run([str(binary), kernel, str(workdir)], capture_output=True, text=True, timeout=600)


def run_emulated(binary: Path, workdir: Path, kernel: str, q, k, v, causal: bool, scale: float,
                 splits: tuple[int, int] = ()):
    """(out, lse) of the CUDA kernel `kernel` on the emulator."""
    result = launch_emulated(binary, workdir, kernel, q, k, v, causal, scale, splits)
    assert result.returncode == 0, f"{kernel} on the emulator failed ({result.returncode}): {result.stderr[-3000:]}"
    return read_outputs(workdir, q)


def read_outputs(workdir: Path, q):
    """(out, lse) a finished emulator run left in `workdir`, for queries shaped like q."""
    batch, heads, seq_q, dim = q.shape
    out = torch.from_file(str(workdir / "out.bin"), size=batch * heads * seq_q * dim, dtype=torch.int16)
    lse = torch.from_file(str(workdir / "lse.bin"), size=batch * heads * seq_q, dtype=torch.float32)
    return out.view(q.dtype).view(batch, heads, seq_q, dim).clone(), lse.view(batch, heads, seq_q).clone()


def assert_flash_close(q, k, v, out, lse, causal: bool, scale: float) -> None:
    truth, truth_lse = attention_ref(q.double(), k.double(), v.double(), causal=causal, scale=scale)
    low, _ = attention_ref(q, k, v, causal=causal, scale=scale, upcast=False)
    assert torch.isfinite(out.float()).all(), "the kernel left output elements unwritten (NaN) or overflowed"
    ours = (out.double() - truth).abs().max().item()
    reference = (low.double() - truth).abs().max().item()
    assert ours <= 2 * reference + 1e-3, f"max error {ours:.3g} vs the low-precision reference's {reference:.3g}"
    torch.testing.assert_close(lse.double(), truth_lse, atol=2e-3, rtol=0)


def _inputs(shape, kv_heads, seq_k, dtype, seed, layout="bhtd"):
    batch, heads, seq_q, dim = shape
    generator = torch.Generator().manual_seed(seed)

    def make(h, s):
        if layout == "bthd":  # the projections' natural layout, read through strides
            return torch.randn(batch, s, h, dim, generator=generator).to(dtype).transpose(1, 2)
        return torch.randn(batch, h, s, dim, generator=generator).to(dtype)

    return make(heads, seq_q), make(kv_heads, seq_k), make(kv_heads, seq_k)


KERNELS = ["mma", "wgmma", "wgmma64"]

# (batch, heads, kv_heads, seq_q, seq_k, head_dim, causal): one block and several, ragged tails,
# the causal diagonal inside and across blocks, T < S (bottom-right), GQA, both head dims.
CASES = [
    (1, 1, 1, 128, 128, 64, False),
    (1, 2, 1, 97, 97, 128, True),
    (1, 2, 2, 200, 200, 64, True),
    (2, 4, 1, 7, 300, 128, True),
    (1, 1, 1, 130, 257, 128, False),
    (1, 2, 2, 1, 1, 64, False),
    (1, 8, 2, 64, 64, 128, True),
]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}h{}kv{}t{}s{}d{}{}".format(*c[:6], "c" if c[6] else ""))
def test_emulated_forward_matches_reference(emulator, tmp_path, kernel, dtype, case):
    batch, heads, kv_heads, seq_q, seq_k, dim, causal = case
    q, k, v = _inputs((batch, heads, seq_q, dim), kv_heads, seq_k, dtype, seed=seq_q * 31 + seq_k)
    scale = dim ** -0.5
    out, lse = run_emulated(emulator, tmp_path, kernel, q, k, v, causal, scale)
    assert_flash_close(q, k, v, out, lse, causal, scale)


@pytest.mark.parametrize("kernel", ["wgmma", "wgmma64"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_emulated_wgmma_pipeline_over_many_steps(emulator, tmp_path, kernel, dtype):
    """Many key blocks: both K / V buffers refilled several times, T < S causal (the mma kernel,
    verified on hardware, is 4x slower to emulate and skips this one)."""
    q, k, v = _inputs((1, 2, 513, 128), 1, 1025, dtype, seed=7)
    out, lse = run_emulated(emulator, tmp_path, kernel, q, k, v, True, 128 ** -0.5)
    assert_flash_close(q, k, v, out, lse, True, 128 ** -0.5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_emulated_forward_with_large_logits(emulator, tmp_path, kernel):
    """Scores of tens to hundreds: exp2 without the running max subtracted would overflow, and
    a stale max would show."""
    q, k, v = _inputs((1, 2, 150, 128), 1, 150, torch.float16, seed=11)
    out, lse = run_emulated(emulator, tmp_path, kernel, q, k, v, True, 2.0)
    assert_flash_close(q, k, v, out, lse, True, 2.0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_emulated_strided_inputs_and_negative_scale(emulator, tmp_path, kernel, dtype):
    q, k, v = _inputs((2, 4, 70, 64), 2, 70, dtype, seed=5, layout="bthd")
    scale = -0.3
    out, lse = run_emulated(emulator, tmp_path, kernel, q, k, v, True, scale)
    assert_flash_close(q, k, v, out, lse, True, scale)



# Split-KV decoding, one query: (batch, heads, kv_heads, seq_k, head_dim, n_splits, keys_per_split).
# Ragged last splits and tiles, GQA groups above the 8 heads a block serves, one key, MHA.
DECODE_CASES = [
    (1, 8, 2, 37, 64, 3, 16),
    (2, 16, 1, 300, 128, 5, 64),
    (1, 4, 4, 1, 128, 1, 1),
    (3, 6, 2, 129, 64, 2, 100),
    (1, 32, 8, 1000, 128, 7, 150),
]


@pytest.mark.parametrize("case", DECODE_CASES, ids=lambda c: "b{}h{}kv{}s{}d{}x{}".format(*c[:6]))
def test_emulated_decode_matches_reference(emulator, tmp_path, case):
    batch, heads, kv_heads, seq_k, dim, n_splits, keys_per_split = case
    dtype = torch.bfloat16 if seq_k % 2 else torch.float16
    q, k, v = _inputs((batch, heads, 1, dim), kv_heads, seq_k, dtype, seed=seq_k, layout="bthd")
    scale = dim ** -0.5
    out, lse = run_emulated(emulator, tmp_path, "decode", q, k, v, True, scale, (n_splits, keys_per_split))
    assert_flash_close(q, k, v, out, lse, True, scale)

# Bugs the emulator must catch: (kernels to run, file in csrc/cuda, text in it, the replacement, a
# pattern of what the emulator says, None where wrong results may be all that shows). Each is a
# real way to break a pipeline that a GPU may well forgive on one run and not the next; the wgmma
# ones run on both tilings at head dim 128 (the V descriptor's column blocks) and 64.
WGMMA = ("wgmma", "wgmma64")
MUTATIONS = {
    "copies-not-published-to-the-async-proxy": (
        WGMMA, "attention_wgmma.cu", "    fence_proxy_async();\n    __syncthreads();", "    __syncthreads();",
        "fence.proxy.async"),
    "no-barrier-after-the-copies": (
        WGMMA, "attention_wgmma.cu", "    fence_proxy_async();\n    __syncthreads();", "    fence_proxy_async();",
        "no __syncthreads|still reads"),
    "copies-not-waited-for": (WGMMA, "attention_wgmma.cu", "    cp_async_wait<decltype(pending)::value>();\n", "",
                              "landed"),
    "copies-waited-one-group-short": (WGMMA, "attention_wgmma.cu", "std::integral_constant<int, kStages - 2>{}",
                                      "std::integral_constant<int, kStages - 1>{}", "landed"),
    "no-wgmma-fence": (WGMMA, "attention_wgmma.cu", "    keep_in_order(p);\n    wgmma_fence();\n",
                       "    keep_in_order(p);\n", "wgmma.fence"),
    "v-refilled-while-read": (WGMMA, "attention_wgmma.cu",
                              "base + Layout::v_tile(v_block % kStages)",
                              "base + Layout::v_tile((v_block + 1) % kStages)", "still reads"),
    "p-repacked-while-read": (WGMMA, "attention_wgmma.cu", "    if (seq_k > 0) softmax(block, masked);\n",
                              "    if (seq_k > 0) softmax(block, masked);\n    rescale_and_pack();\n",
                              "changed the A registers"),
    "scores-read-before-their-wait": (
        WGMMA, "attention_wgmma.cu", "wgmma_wait<decltype(with_pv)::value ? 1 : 0>();", "wgmma_wait<2>();", None),
    "p-v-not-waited-for": (WGMMA, "attention_wgmma.cu", "      wgmma_wait<0>();\n      keep_in_order(o);\n", "",
                           None),
    "k-steps-16-bytes-apart": (WGMMA, "wgmma.cuh", "(kk % 4) * 32) >> 4)", "(kk % 4) * 16) >> 4)", None),
    "v-column-blocks-misplaced": (WGMMA, "wgmma.cuh", "smem_descriptor(tile, rows * 128, 1024)",
                                  "smem_descriptor(tile, 1024, rows * 128)", None),
    "mma-stage-refilled-while-read": (
        ("mma",), "attention.cu", "    __syncthreads();  // everyone is done with this stage before it is refilled\n",
        "", "no __syncthreads|before the cp.async"),
    "mma-prefetch-not-waited-for": (("mma",), "attention.cu", "      cp_async_wait<1>();\n", "", "before the cp.async"),
    "decode-p-from-the-wrong-lanes": (("decode",), "attention_decode.cu", "src1 = src0 + 4;", "src1 = src0 + 2;",
                                      None),
}


def _mutant(root: Path, file: str, original: str, replacement: str) -> Path:
    shutil.copytree(ROOT / "csrc" / "cuda", root / "cuda")
    source = root / "cuda" / file
    text = source.read_text()
    assert text.count(original) == 1, f"mutation anchor {original!r} not found once in {file}: update it"
    source.write_text(text.replace(original, replacement))
    return root


def _assert_caught(binary: Path, workdir: Path, kernel: str, dim: int, message: str | None) -> None:
    seq_q, splits = (1, (3, 128)) if kernel == "decode" else (300, ())
    q, k, v = _inputs((1, 2, seq_q, dim), 1, 300, torch.float16, seed=3)
    result = launch_emulated(binary, workdir, kernel, q, k, v, True, 0.125, splits)
    if result.returncode == 3 and result.stderr.startswith("emu: "):
        assert message is None or re.search(message, result.stderr), result.stderr[-2000:]
        return
    assert message is None, f"the emulator missed it: rc {result.returncode}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, result.stderr[-2000:]
    out, lse = read_outputs(workdir, q)
    with pytest.raises(AssertionError):  # no rule caught it: the results must
        assert_flash_close(q, k, v, out, lse, True, 0.125)


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_emulator_catches_broken_pipelines(build, tmp_path, mutation):
    kernels, file, original, replacement, message = MUTATIONS[mutation]
    binary = build.binary(_mutant(tmp_path / "csrc", file, original, replacement), kernels[0])
    for kernel in kernels:
        for dim in (128, 64) if kernel in WGMMA else (64,):
            _assert_caught(binary, tmp_path, kernel, dim, message)

# One broken rule each (emulate_faults.cpp): the emulator's message, or for the early read the
# NaN the registers hold until the reading thread's own wait.
FAULTS = {
    "accumulator-read-before-its-wait": "128 of 128 early accumulator reads were NaN",
    "wait-in-one-warp-only": "did not wait for",
    "wait-in-half-a-warp": "deadlock",
    "operand-never-written": "nothing wrote",
    "store-without-proxy-fence": "fence.proxy.async",
    "store-without-barrier": "no __syncthreads|still reads",
    "a-registers-changed-in-flight": "changed the A registers",
    "operand-overwritten-in-flight": "still reads",
    "too-much-shared-memory": "dynamic shared memory",
    "grid-too-tall": "grid",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_emulator_rules_one_at_a_time(emulator, fault):
    result = subprocess.run([str(emulator), "fault", fault], capture_output=True, text=True, timeout=120)
    if fault == "accumulator-read-before-its-wait":
        assert result.returncode == 0, result.stderr[-2000:]
        assert FAULTS[fault] in result.stdout
    else:
        assert result.returncode == 3, f"rc {result.returncode}: {result.stdout[-500:]} {result.stderr[-2000:]}"
        assert re.search(FAULTS[fault], result.stderr), result.stderr[-2000:]


# Descriptors over every swizzle mode, both majors, several LBO / SBO and base offsets: the
# emulator's C++ port must read exactly the addresses the Python model (wgmma_spec.py) reads.
DESCRIPTOR_CASES = [
    (swizzle, major, rows, start, lbo, sbo, base)
    for swizzle in spec.SWIZZLE_CODES
    for major in ("K", "MN")
    for rows, start, lbo, sbo, base in ((64, 0, 0, 1024, 0), (128, 1024 + 96, 16384, 1024, 0),
                                        (64, 2048, 256, 512, 0), (128, 4096 + 32, 8192, 2048, 3))
    if not (base and swizzle == "none")
]


@pytest.mark.parametrize("case", DESCRIPTOR_CASES, ids=lambda c: "-".join(map(str, c)))
def test_emulator_operand_addresses_are_the_spec_models(emulator, case):
    swizzle, major, rows, start, lbo, sbo, base = case
    desc = spec.make_descriptor(start, lbo, sbo, swizzle, base)
    expected = spec.operand_byte_addresses(desc, rows, 16, major)
    result = subprocess.run([str(emulator), "addresses", f"{desc} {rows} {int(major == 'K')}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    ours = torch.tensor([int(x) for x in result.stdout.split()]).view(rows, 16)
    assert torch.equal(ours, expected), f"first mismatch at {(ours != expected).nonzero()[0].tolist()}"
