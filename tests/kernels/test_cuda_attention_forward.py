"""The CUDA forward kernels for T > 1: mma.sync (csrc/cuda/attention.cu, sm_80+) and wgmma in two
tilings (csrc/cuda/attention_wgmma.cu, sm_90a), chosen by fastllm.kernels.attention.cuda.forward_kernel.

On the CPU: the choice and FASTLLM_CUDA_ATTENTION's errors. On a GPU: every kernel that runs
there against the reference on block-edge lengths, head dims, dtypes, scales and strides. Their
index math is modelled on the CPU in test_cuda_attention_model.py and test_cuda_wgmma_model.py."""

import types

import pytest
import torch
from flash_tolerance import assert_within_flash_tolerance

from fastllm.kernels.attention import cuda as cuda_attention
from fastllm.kernels.attention.ref import attention_ref
from fastllm.utils.errors import BackendUnavailableError, ConfigError

KERNELS = list(cuda_attention.FORWARD_KERNELS)


# ---- the choice (CPU) ------------------------------------------------------------------------------

@pytest.fixture
def fake_gpu(monkeypatch):
    """A device of a chosen capability, with or without sm_90a kernels in the build."""
    state = {"capability": (9, 0), "compiled": True}
    cuda_attention.wgmma_unavailable_reason.cache_clear()
    monkeypatch.setattr(cuda_attention, "_capability", lambda device: state["capability"])
    module = types.SimpleNamespace(attention=types.SimpleNamespace(wgmma_compiled=lambda: state["compiled"]))
    monkeypatch.setattr(cuda_attention._ext, "cuda", lambda: module)
    monkeypatch.delenv("FASTLLM_CUDA_ATTENTION", raising=False)
    yield state
    cuda_attention.wgmma_unavailable_reason.cache_clear()


def _choose(state, capability, compiled):
    cuda_attention.wgmma_unavailable_reason.cache_clear()
    state.update(capability=capability, compiled=compiled)
    return cuda_attention.forward_kernel(torch.device("cuda", 0))


def test_auto_takes_the_hopper_forward_on_hopper_builds_only(fake_gpu, monkeypatch):
    assert _choose(fake_gpu, (9, 0), True) == (cuda_attention.HOPPER_FORWARD or "mma")
    monkeypatch.setattr(cuda_attention, "HOPPER_FORWARD", "wgmma64")
    assert _choose(fake_gpu, (9, 0), True) == "wgmma64"
    assert _choose(fake_gpu, (8, 0), True) == "mma"  # A100: no wgmma
    assert _choose(fake_gpu, (10, 0), True) == "mma"  # sm_90a code runs on 9.0 alone
    assert _choose(fake_gpu, (9, 0), False) == "mma"  # built without 90 in FASTLLM_CUDA_ARCHS


def test_the_hopper_forward_names_a_wgmma_kernel():
    assert cuda_attention.HOPPER_FORWARD in (None, *cuda_attention.WGMMA_KERNELS)
    assert set(cuda_attention.HOPPER_PREFILL_HEAD_DIMS) <= set(cuda_attention.HEAD_DIMS)


def test_cuda_prefill_is_preferred_for_the_listed_head_dims_on_hopper_only(fake_gpu):
    device = torch.device("cuda", 0)
    cuda_attention.wgmma_unavailable_reason.cache_clear()
    assert cuda_attention.prefers_cuda_prefill(device, 128)
    assert not cuda_attention.prefers_cuda_prefill(device, 64)
    fake_gpu["capability"] = (8, 0)
    cuda_attention.wgmma_unavailable_reason.cache_clear()
    assert not cuda_attention.prefers_cuda_prefill(device, 128)


@pytest.mark.parametrize("kernel", cuda_attention.WGMMA_KERNELS)
def test_forcing_a_kernel(fake_gpu, monkeypatch, kernel):
    monkeypatch.setenv("FASTLLM_CUDA_ATTENTION", kernel)
    assert _choose(fake_gpu, (9, 0), True) == kernel
    with pytest.raises(BackendUnavailableError, match=rf"^FASTLLM_CUDA_ATTENTION={kernel}: the wgmma kernels run "
                                                      r"on compute capability 9.0 \(H100 / H200\), cuda:0 has \(8, 6\)"):
        _choose(fake_gpu, (8, 6), True)
    with pytest.raises(BackendUnavailableError, match="this build has no sm_90a kernels"):
        _choose(fake_gpu, (9, 0), False)
    monkeypatch.setenv("FASTLLM_CUDA_ATTENTION", "mma")
    assert _choose(fake_gpu, (9, 0), True) == "mma"
    monkeypatch.setenv("FASTLLM_CUDA_ATTENTION", "flash")
    with pytest.raises(ConfigError, match=r"^FASTLLM_CUDA_ATTENTION='flash': expected auto, mma, wgmma, wgmma64$"):
        _choose(fake_gpu, (9, 0), True)


# ---- GPU --------------------------------------------------------------------------------------------

@pytest.fixture(params=KERNELS)
def kernel(request, monkeypatch):
    """Forces each forward kernel in turn; one the GPU cannot run is skipped with the reason."""
    cuda_attention.wgmma_unavailable_reason.cache_clear()
    if request.param in cuda_attention.WGMMA_KERNELS:
        reason = cuda_attention.wgmma_unavailable_reason(torch.device("cuda", torch.cuda.current_device()))
        if reason:
            pytest.skip(reason)
    monkeypatch.setenv("FASTLLM_CUDA_ATTENTION", request.param)
    return request.param


def _qkv(shape, dtype):
    batch, heads, kv_heads, seq_q, seq_k, head_dim = shape
    make = lambda h, t: torch.randn(batch, h, t, head_dim, device="cuda").to(dtype)  # noqa: E731
    return make(heads, seq_q), make(kv_heads, seq_k), make(kv_heads, seq_k)


def _check(label, q, k, v, causal, scale):
    out, lse = torch.ops.fastllm.attention(q, k, v, causal, scale, "cuda")
    want32, want_lse = attention_ref(q.float(), k.float(), v.float(), causal=causal, scale=scale)
    lowp, _ = attention_ref(q, k, v, causal=causal, scale=scale, upcast=False)
    assert_within_flash_tolerance(label, out, want32, lowp, 1e-3)
    torch.testing.assert_close(lse, want_lse, rtol=1e-3, atol=1e-3, msg=f"lse {label}")


# (T, S): lengths on and off 64 / 128, the causal diagonal on a block edge (S - T = 0, 64, 128)
# and off it (S - T = 1, 37, 62, 63, 65), one query block and many, T = 2 (the smallest prefill).
SPLIT_LENGTHS = [(2, 2), (63, 63), (64, 64), (65, 65), (127, 127), (128, 128), (129, 129), (200, 201),
                 (192, 256), (130, 167), (66, 128), (64, 127), (100, 165), (256, 384), (1023, 1023),
                 (1024, 1024), (1025, 1025), (17, 1025)]


@pytest.mark.cuda
@pytest.mark.parametrize("seq_q, seq_k", SPLIT_LENGTHS)
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_forward_block_split(seeded, kernel, seq_q, seq_k, head_dim, dtype):
    """Forward and lse (GQA 2:1) against the reference, causal and not: unmasked full blocks,
    masked diagonal / tail blocks, padding rows."""
    q, k, v = _qkv((2, 4, 2, seq_q, seq_k, head_dim), dtype)
    for causal in (True, False):
        _check(f"{kernel} {seq_q}x{seq_k} d{head_dim} causal={causal}", q, k, v, causal, head_dim ** -0.5)


@pytest.mark.cuda
@pytest.mark.parametrize("scale", [-0.3, 0.0, 0.5])
def test_gpu_forward_any_scale(seeded, kernel, scale):
    """The kernels fold the scale into the exponent (Q's sign flipped for scale < 0, at least
    FLT_MIN so scale 0 masks without NaN)."""
    q, k, v = _qkv((1, 4, 1, 97, 160, 128), torch.bfloat16)
    for causal in (True, False):
        _check(f"{kernel} scale={scale} causal={causal}", q, k, v, causal, scale)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(1, 8, 8, 4096, 4096, 128), (2, 16, 2, 2048, 2048, 64), (1, 4, 1, 300, 5000, 128),
                                   (3, 6, 3, 777, 777, 128)])
def test_gpu_forward_long_sequences(seeded, kernel, shape):
    """Many key blocks per query block: the two-stage K / V pipeline and the running softmax."""
    q, k, v = _qkv(shape, torch.bfloat16)
    _check(f"{kernel} {shape}", q, k, v, True, shape[-1] ** -0.5)


@pytest.mark.cuda
def test_gpu_forward_projection_strides(seeded, kernel):
    """q, k, v as (B, T, H, D) projections viewed as (B, H, T, D)."""
    qkv = torch.randn(2, 300, 3, 4, 128, device="cuda").to(torch.float16)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    _check(f"{kernel} strided", q, k, v, True, 128 ** -0.5)
    _check(f"{kernel} strided", q, k, v, False, 128 ** -0.5)


@pytest.mark.cuda
def test_gpu_kernels_agree(seeded):
    """Where all run, they compute the same softmax: outputs within two low-precision roundings."""
    cuda_attention.wgmma_unavailable_reason.cache_clear()
    if reason := cuda_attention.wgmma_unavailable_reason(torch.device("cuda", torch.cuda.current_device())):
        pytest.skip(reason)
    q, k, v = _qkv((2, 8, 2, 1000, 1000, 128), torch.bfloat16)
    module = cuda_attention._ext.cuda().attention
    results = []
    for code in cuda_attention.FORWARD_KERNELS.values():
        out = torch.empty_like(q)
        lse = torch.empty(q.shape[:3], device="cuda")
        strides = [list(t.stride()[:3]) for t in (q, k, v, out)]
        module.forward(2, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr(), *strides,
                       2, 8, 2, 1000, 1000, 128, 128 ** -0.5, True, torch.cuda.current_stream().cuda_stream, code)
        results.append((out, lse))
    for out, lse in results[1:]:  # the wgmma tilings against the mma kernel
        torch.testing.assert_close(out, results[0][0], rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(lse, results[0][1], rtol=1e-4, atol=1e-4)


# ---- the wgmma kernel's two operand paths in isolation (csrc/cuda/wgmma_probe.cu) -----------------

# (leading bytes, stride bytes, layout type) of the kernel's descriptors with `keys` keys a step:
# S = Q K^T (K-major) and O = P V (V MN-major). wgmma_spec.py models what they read.
def kernel_fields(mode: int, keys: int) -> tuple[int, int, int]:
    return (0, 1024, 1) if mode == 0 else (keys * 128, 1024, 1)


def _probe(mode, dtype, dim, keys, fields):
    """(wgmma's product, the float32 product) for random operands through one path."""
    a = torch.randn(64, dim if mode == 0 else keys, device="cuda").to(dtype)
    b = torch.randn(keys, dim, device="cuda").to(dtype)
    out = torch.full((64, keys if mode == 0 else dim), float("nan"), device="cuda")
    code = {torch.float16: 1, torch.bfloat16: 2}[dtype]
    cuda_attention._ext.cuda().attention.wgmma_probe(code, mode, a.data_ptr(), b.data_ptr(), out.data_ptr(), dim,
                                                     keys, *fields, torch.cuda.current_stream().cuda_stream)
    want = a.float() @ (b.float().T if mode == 0 else b.float())
    return out, want


def _agrees(out, want) -> bool:
    return bool(torch.allclose(out, want, rtol=1e-3, atol=1e-3))


def _probe_reads(mode, dim, keys, fields):
    """Byte offsets (from the 1024-aligned base) every k-step of the probe reads, by the spec model:
    mode 0 A (64 rows) at 0 and B (keys rows) after it, both K-major; mode 1 B (V) MN-major."""
    import wgmma_spec as spec

    leading, stride, layout = fields
    swizzle = {1: "128B", 2: "64B", 3: "32B"}[layout]
    b_tile = 64 * dim * 2
    if mode == 0:
        operands = [(rows_base + (kk // 4) * rows * 128 + (kk % 4) * 32, rows, "K")
                    for kk in range(dim // 16) for rows_base, rows in ((0, 64), (b_tile, keys))]
    else:
        operands = [(b_tile + kk * 16 * 128, dim, "MN") for kk in range(keys // 16)]
    for start, mn, major in operands:
        yield spec.operand_byte_addresses(spec.make_descriptor(start, leading, stride, swizzle), mn, 16, major)


def _other_fields(mode, dim, keys):
    """Descriptor fields to try when the kernel's fail, each reading inside the probe's shared
    memory by the spec model (a wrong guess must not fault and poison the CUDA context)."""
    smem_bytes = (64 + keys) * dim * 2
    offsets = (0, 16, 128, 256, 512, 1024, 2048, 4096, 8192, 128 * 128)
    for layout in (1, 2, 3):
        for leading in offsets:
            for stride in offsets[1:]:
                fields = (leading, stride, layout)
                if fields == kernel_fields(mode, keys):
                    continue
                try:
                    reach = max(int(addresses.max()) for addresses in _probe_reads(mode, dim, keys, fields))
                except ValueError:  # a layout the model refuses for this operand
                    continue
                if reach + 2 <= smem_bytes:
                    yield fields


def test_the_kernels_fields_read_exactly_the_probes_tiles():
    """CPU: by the spec model the kernel's fields read the staged tiles to their last byte."""
    for mode in (0, 1):
        for dim in (64, 128):
            for keys in (64, 128):
                reads = list(_probe_reads(mode, dim, keys, kernel_fields(mode, keys)))
                assert max(int(r.max()) for r in reads) + 2 == (64 + keys) * dim * 2
                assert len(list(_other_fields(mode, dim, keys))) > 50


@pytest.mark.cuda
@pytest.mark.parametrize("mode", [0, 1], ids=["q_kt", "p_v"])
@pytest.mark.parametrize("dim", [64, 128])
@pytest.mark.parametrize("keys", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_wgmma_operand_paths(seeded, mode, dim, keys, dtype):
    """One wgmma batch through the kernel's layout and descriptors equals the float32 product. On
    failure the message names the descriptor fields that do work, if any."""
    cuda_attention.wgmma_unavailable_reason.cache_clear()
    if reason := cuda_attention.wgmma_unavailable_reason(torch.device("cuda", torch.cuda.current_device())):
        pytest.skip(reason)
    fields = kernel_fields(mode, keys)
    out, want = _probe(mode, dtype, dim, keys, fields)
    if _agrees(out, want):
        return
    wrong = (~torch.isclose(out, want, rtol=1e-3, atol=1e-3)).nonzero()[:8].tolist()
    working = [other for other in _other_fields(mode, dim, keys) if _agrees(*_probe(mode, dtype, dim, keys, other))]
    pytest.fail(f"wgmma path {mode} (d{dim}, {keys} keys, {dtype}): fields {fields} give wrong products, first "
                f"wrong (row, col): {wrong}; fields that work: {working or 'none of those tried'}")
