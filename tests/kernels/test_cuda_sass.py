"""What ptxas makes of the sm_90a wgmma kernels, checked without a GPU (needs nvcc; the SASS
checks also nvdisasm, from the `nvidia-cuda-nvdisasm` wheel of the test extras).

ptxas decides silently whether the wgmma pipeline overlaps anything: it serialises every wgmma
batch when ordinary instructions touch in-flight accumulators (an "info" line, C7514, not a
warning), and it schedules a wgmma wait as early as it can, which once put the wait for P V
above the softmax it was meant to overlap. Both are visible in the compiled code, so both are
pinned here: no C7514, no spills, and in every attention kernel each softmax's exp2s sit between
the wait for S (`DEPBAR.LE gsb0, 0x1`) and the wait for P V (`DEPBAR.LE gsb0, 0x0`)."""

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The sm_90a object's flags in CMakeLists.txt (FASTLLM_CUDA_FLAGS), without -lineinfo.
FLAGS = ["-std=c++17", "-O3", "--use_fast_math", "--expt-relaxed-constexpr", "-arch=sm_90a", f"-I{ROOT / 'csrc'}"]


def _tool(name: str) -> str | None:
    found = shutil.which(name) or (f"/usr/local/cuda/bin/{name}" if os.access(f"/usr/local/cuda/bin/{name}", os.X_OK)
                                   else None)
    if found or name != "nvdisasm":
        return found
    spec = importlib.util.find_spec("nvidia")  # the pip wheel installs nvidia/cu*/bin/nvdisasm
    for root in (spec.submodule_search_locations if spec else []):
        for candidate in sorted(Path(root).glob("cu*/bin/nvdisasm")):
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def attention_cubin(tmp_path_factory):
    nvcc = _tool("nvcc")
    if nvcc is None:
        pytest.skip("no nvcc here (the CUDA toolkit compiles the sm_90a kernels)")
    cubin = tmp_path_factory.mktemp("sass") / "attention_wgmma.cubin"
    done = subprocess.run([nvcc, *FLAGS, "-Xptxas", "-v", "-cubin", "-o", str(cubin),
                           str(ROOT / "csrc" / "cuda" / "attention_wgmma.cu")], capture_output=True, text=True)
    if "Unsupported gpu architecture" in done.stderr:
        pytest.skip(f"this nvcc cannot build sm_90a (CUDA 12.0 or newer can): {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-2000:]
    return cubin, done.stderr


def test_no_serialised_wgmma_and_no_spills(attention_cubin):
    _, ptxas_log = attention_cubin
    assert "C7514" not in ptxas_log, ptxas_log
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", ptxas_log)
    # {f16, bf16} x head dim {64, 128} x tiling {128 x 128, 64 x 64}
    assert len(spills) == 8 and all(s == ("0", "0") for s in spills), ptxas_log


def _kernels(sass: str) -> dict[str, list[str]]:
    """Instruction lines of each attention kernel, by mangled name."""
    kernels, name = {}, None
    for line in sass.splitlines():
        header = re.match(r"\s*\.text\.(\S+):", line)
        if header:
            name = header.group(1) if "attention_fwd_wgmma_kernel" in header.group(1) else None
            if name:
                kernels[name] = []
        elif name and re.search(r"/\*[0-9a-f]{4,}\*/", line):
            kernels[name].append(line)
    return kernels


@pytest.fixture(scope="module")
def attention_sass(attention_cubin) -> dict[str, list[str]]:
    nvdisasm = _tool("nvdisasm")
    if nvdisasm is None:
        pytest.skip("no nvdisasm (pip install nvidia-cuda-nvdisasm)")
    cubin, _ = attention_cubin
    sass = subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True, check=True).stdout
    kernels = _kernels(sass)
    assert len(kernels) == 8
    return kernels


def test_no_float_arithmetic_between_wgmma_fence_and_its_batch(attention_sass):
    """wgmma.fence (WARPGROUP.ARRIVE) must follow every other access to the registers a batch reads
    or writes; keep_in_order before each fence stops the compiler sinking an O rescale or a P pack
    below it (which the CPU emulator could not see)."""
    for name, lines in attention_sass.items():
        fences, inside = 0, False
        for line in lines:
            if "WARPGROUP.ARRIVE" in line:
                fences, inside = fences + 1, True
            elif inside and "HGMMA" in line:
                inside = False
            elif inside:
                assert not re.search(r"\b(FMUL|FFMA|FADD|F2FP|FMNMX|MUFU)\b", line), (name, line)
        assert fences >= 3, name  # the two key-block loops and the last P V


def test_softmax_overlaps_the_p_v_batch(attention_sass):
    for name, lines in attention_sass.items():
        dim, keys = (int(x) for x in re.search(r"Li(\d+)ENS\w*?TilesILi\d+ELi(\d+)E", name).groups())
        # The two key-block loops (unmasked, masked): S and P V batches, then the exp2s between the waits.
        windows, inside, count = [], False, 0
        for line in lines:
            if "DEPBAR.LE gsb0, 0x1" in line:
                inside, count = True, 0
            elif inside and "MUFU.EX2" in line:
                count += 1
            elif inside and "DEPBAR.LE gsb0, 0x0" in line:
                windows.append(count)
                inside = False
        assert len(windows) == 2, (name, windows)
        assert all(n >= keys // 2 for n in windows), (name, windows)  # a thread's scores (+ 2 alphas)
        # D / 16 S and keys / 16 P V wgmma in each loop; the first step (masked and unmasked copies)
        # S only, the last one P V only: nothing serialised into extra instructions, nothing dropped.
        s_steps, pv_steps = dim // 16, keys // 16
        assert sum("HGMMA" in line for line in lines) == 2 * s_steps + 2 * (s_steps + pv_steps) + pv_steps, name


def test_whole_tiles_copy_without_per_row_checks(attention_sass):
    """TileCopy::async has a path for whole K / V tiles: cp.async with no zero-fill operand
    (`LDGSTS ... desc[..][R.64]` with no trailing predicate), which took ~50 instructions out of
    each step (bench/RESULTS.md); the checked path (`, !Pn`) stays for the tail tile."""
    for name, lines in attention_sass.items():
        copies = [line for line in lines if "LDGSTS" in line]
        whole = [line for line in copies if re.search(r"desc\[\w+\]\[R\d+\.64\]\s*;", line)]
        checked = [line for line in copies if re.search(r"desc\[\w+\]\[R\d+\.64\],\s*!?P\d\s*;", line)]
        assert whole and checked, (name, len(whole), len(checked))
