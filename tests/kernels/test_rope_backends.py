"""Every RoPE backend against the reference: C++ on each CPU path (bit-exact), Triton in the
interpreter on the CPU (float32/float16) and on a GPU, CUDA on a GPU; forward, inverse (the
backward), offsets, explicit positions, strided views and in-place use."""

import pytest
import torch
from flash_tolerance import assert_within_flash_tolerance

from fastllm.kernels import rope, rope_tables
from fastllm.kernels.rope.ref import rope_ref
from fastllm.utils.errors import BackendUnavailableError, KernelInputError

MAX_POSITIONS = 64
OFFSET = 3  # where the "offset" position kind starts


def _table_length(seq):
    return max(MAX_POSITIONS, seq + OFFSET)


def _inputs(batch, seq, q_heads, k_heads, head_dim, dtype, device="cpu"):
    q = torch.randn(batch, seq, q_heads, head_dim, device=device).to(dtype)
    k = torch.randn(batch, seq, k_heads, head_dim, device=device).to(dtype)
    return q, k, *rope_tables(_table_length(seq), head_dim, device=device)


def _positions(kind, batch, seq, device):
    if kind == "offset":
        return None
    if kind == "row":
        return torch.randperm(_table_length(seq), device=device)[:seq]
    return torch.randint(0, _table_length(seq), (batch, seq), device=device)


def _check(backend, shape, dtype, positions_kind, inverse, device="cpu", exact=False):
    batch, seq, q_heads, k_heads, head_dim = shape
    q, k, cos, sin = _inputs(batch, seq, q_heads, k_heads, head_dim, dtype, device)
    positions = _positions(positions_kind, batch, seq, device)
    offset = OFFSET if positions is None else 0
    got = torch.ops.fastllm.rope(q, k, cos, sin, positions, offset, inverse, backend)
    want = rope_ref(q, k, cos, sin, positions, offset, inverse)
    if exact:
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        return
    lowp = rope_ref(q, k, cos, sin, positions, offset, inverse, upcast=False)
    want32 = rope_ref(q.float(), k.float(), cos, sin, positions, offset, inverse)
    for name, g, w32, lo in zip(("q", "k"), got, want32, lowp):
        assert_within_flash_tolerance(f"{backend} {name}", g, w32, lo)


SHAPES = [(1, 1, 1, 1, 2), (2, 7, 4, 2, 16), (3, 5, 8, 1, 34), (1, 9, 4, 4, 64), (2, 3, 2, 1, 128)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cpp_is_bit_exact_on_every_isa(cpu_isa, seeded, shape, dtype):
    for positions_kind in ("offset", "row", "batch"):
        for inverse in (False, True):
            _check("cpp", shape, dtype, positions_kind, inverse, exact=True)


def test_cpp_runs_on_many_threads(seeded):
    # Enough tokens that the thread pool splits the work.
    _check("cpp", (3, 61, 8, 2, 64), torch.float32, "batch", False, exact=True)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 2), (2, 7, 4, 2, 16), (1, 5, 3, 1, 34), (1, 3, 2, 1, 128)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("positions_kind", ["offset", "batch"])
def test_triton_in_the_interpreter(seeded, shape, dtype, positions_kind):
    _check("triton", shape, dtype, positions_kind, inverse=positions_kind == "batch", exact=True)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_strided_views_and_inplace(seeded, backend):
    qkv = torch.randn(2, 5, 3, 4, 32)  # a fused projection: q and k are views with gaps
    q, k = qkv[:, :, 0], qkv[:, :, 1]
    cos, sin = rope_tables(16, 32)
    want = rope_ref(q, k, cos, sin, offset=2)
    torch.testing.assert_close(rope(q, k, cos, sin, offset=2, backend=backend), want, rtol=0, atol=0)
    untouched = qkv[:, :, 2].clone()
    rope(q, k, cos, sin, offset=2, inplace=True, backend=backend)
    torch.testing.assert_close((q, k), want, rtol=0, atol=0)
    torch.testing.assert_close(qkv[:, :, 2], untouched, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["ref", "triton"])
def test_opcheck_other_backends(seeded, backend):
    """test_rope.py runs opcheck on the automatic (cpp) backend; the others register the same op."""
    q, k, cos, sin = _inputs(2, 5, 4, 2, 16, torch.float32)
    positions = torch.randint(0, MAX_POSITIONS, (2, 5))
    torch.library.opcheck(torch.ops.fastllm.rope.default,
                          (q.requires_grad_(), k.requires_grad_(), cos, sin, positions, 0, False, backend))
    torch.library.opcheck(torch.ops.fastllm.rope_.default, (q.detach().clone(), k.detach().clone(), cos, sin,
                                                           None, 3, True, backend))


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_gradients_match_the_reference(seeded, backend):
    q, k, cos, sin = _inputs(2, 5, 4, 2, 32, torch.float32)
    grads = torch.randn_like(q), torch.randn_like(k)
    results = []
    for name in ("ref", backend):
        leaves = [t.clone().requires_grad_() for t in (q, k)]
        torch.autograd.backward(rope(*leaves, cos, sin, offset=7, backend=name), grads)
        results.append([t.grad for t in leaves])
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["ref", "cpp", "triton"])
@pytest.mark.parametrize("shape", [(1, 0, 2, 1, 8), (0, 3, 2, 1, 8), (1, 3, 0, 1, 8), (1, 3, 0, 0, 8)])
def test_empty_inputs(seeded, backend, shape):
    q, k, cos, sin = _inputs(*shape, torch.float32)
    q.requires_grad_()
    q_rot, k_rot = rope(q, k, cos, sin, backend=backend)
    assert q_rot.shape == q.shape and k_rot.shape == k.shape
    q_rot.sum().backward()  # autograd's gradient of an empty sum has all strides 0
    assert q.grad.shape == q.shape


def test_auto_dispatch_uses_cpp_on_the_cpu():
    from fastllm.kernels import dispatch

    assert dispatch.pick("rope", "cpu") == "cpp"


def test_forcing_cuda_on_cpu_tensors_is_an_error():
    q, k, cos, sin = _inputs(1, 2, 1, 1, 8, torch.float32)
    with pytest.raises(BackendUnavailableError, match="rope: backend=cuda cannot run"):
        rope(q, k, cos, sin, backend="cuda")


def test_forced_backend_from_the_environment(monkeypatch, seeded):
    q, k, cos, sin = _inputs(1, 2, 1, 1, 8, torch.float32)
    monkeypatch.setenv("FASTLLM_BACKEND", "rope=cuda")
    with pytest.raises(BackendUnavailableError, match="rope: FASTLLM_BACKEND=cuda cannot run"):
        rope(q, k, cos, sin)


def test_triton_interpreter_refuses_bfloat16_rather_than_rerouting():
    q, k, cos, sin = _inputs(1, 2, 1, 1, 8, torch.bfloat16)
    with pytest.raises(KernelInputError, match="bfloat16 is not supported in Triton's CPU interpreter"):
        rope(q, k, cos, sin, backend="triton")


def test_inplace_on_overlapping_memory_is_an_error():
    q = torch.randn(1, 2, 1, 8).expand(1, 2, 3, 8)
    k = torch.randn(1, 2, 1, 8)
    cos, sin = rope_tables(4, 8)
    with pytest.raises(KernelInputError, match="q has overlapping elements"):
        rope(q, k, cos, sin, inplace=True)


def test_inplace_with_q_and_k_the_same_tensor_is_an_error():
    x = torch.randn(1, 3, 2, 8)
    before = x.clone()
    cos, sin = rope_tables(4, 8)
    with pytest.raises(KernelInputError, match="q and k are the same memory"):
        rope(x, x, cos, sin, inplace=True)
    assert torch.equal(x, before)  # refused before anything was written


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("shape", SHAPES + [(2, 1025, 32, 8, 128)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_backends(seeded, backend, shape, dtype):
    for positions_kind in ("offset", "row", "batch"):
        for inverse in (False, True):
            _check(backend, shape, dtype, positions_kind, inverse, device="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_strided_inplace_and_gradients(seeded, backend):
    qkv = torch.randn(2, 33, 3, 4, 64, device="cuda")
    q, k = qkv[:, :, 0], qkv[:, :, 1]
    originals = [q.clone(), k.clone()]
    cos, sin = rope_tables(64, 64, device="cuda")
    want = rope_ref(q, k, cos, sin, offset=5)
    torch.testing.assert_close(rope(q, k, cos, sin, offset=5, backend=backend), want, rtol=1e-6, atol=1e-6)
    rope(q, k, cos, sin, offset=5, inplace=True, backend=backend)
    torch.testing.assert_close((q, k), want, rtol=1e-6, atol=1e-6)
    leaves = [t.clone().requires_grad_() for t in want]
    torch.autograd.backward(rope(*leaves, cos, sin, offset=5, backend=backend), [t.detach() for t in want])
    # The gradient of a rotation is the inverse rotation: pulling back the rotated q, k gives q, k.
    torch.testing.assert_close([t.grad for t in leaves], originals, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_explicit_positions_inside_a_cuda_graph(seeded, backend):
    """While a graph is captured the positions range check runs on the device (no read-back), so
    rope with explicit positions can be captured; replays see the positions' new values."""
    q, k = (torch.randn(2, 5, 4, 64, device="cuda") for _ in range(2))
    cos, sin = rope_tables(64, 64, device="cuda")
    positions = torch.tensor([[3, 9, 1, 0, 63], [7, 7, 2, 8, 40]], device="cuda")
    rope(q, k, cos, sin, positions=positions, backend=backend)  # compiles / warms up outside the graph
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = rope(q, k, cos, sin, positions=positions, backend=backend)
    for new in (positions.flip(1), torch.randint(0, 64, positions.shape, device="cuda")):
        positions.copy_(new)
        graph.replay()
        torch.testing.assert_close(got, rope_ref(q, k, cos, sin, positions=positions), rtol=1e-6, atol=1e-6)


def test_positions_are_checked_on_the_device_while_a_graph_is_captured(monkeypatch):
    """The capture path's check, exercised on the CPU (torch._assert_async raises there at once)."""
    from fastllm.kernels.rope import op

    q, k, cos, sin = _inputs(1, 3, 2, 2, 8, torch.float32)
    bad = torch.tensor([0, 1, 99])
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    readback = []
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: readback.append(self) or [0, 0])
    with pytest.raises(RuntimeError, match=r"rope: positions must lie in \[0, 16\) \(the table size\)"):
        op._validate_positions(bad, 1, 3, 16, q.device, values=True)
    op._validate_positions(torch.tensor([0, 1, 15]), 1, 3, 16, q.device, values=True)
    assert readback == []  # nothing was read back to the host


@pytest.mark.cuda
def test_gpu_auto_dispatch_and_cpp_refusal():
    from fastllm.kernels import dispatch

    assert dispatch.pick("rope", "cuda") in ("cuda", "triton")
    q, k, cos, sin = _inputs(1, 2, 1, 1, 8, torch.float32, device="cuda")
    with pytest.raises(BackendUnavailableError, match="needs CPU tensors"):
        rope(q, k, cos, sin, backend="cpp")


def test_triton_launcher_refuses_mixed_devices():
    pytest.importorskip("triton")
    from fastllm.kernels.rope.triton import rope_triton

    q, k, cos, sin = _inputs(1, 2, 1, 1, 8, torch.float32)
    with pytest.raises(KernelInputError, match="^rope: sin is on meta but q is on cpu"):
        rope_triton(q, k, cos, sin.to("meta"), None, 0, False, False)
    positions = torch.zeros(1, 2, dtype=torch.long, device="meta")
    with pytest.raises(KernelInputError, match="^rope: positions is on meta but q is on cpu"):
        rope_triton(q, k, cos, sin, positions, 0, False, False)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_runs_on_the_tensors_device_not_the_current_one(seeded, backend):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    q, k, cos, sin = _inputs(2, 9, 4, 2, 64, torch.float32, device="cuda:1")
    with torch.cuda.device(0):
        got = rope(q, k, cos, sin, offset=3, backend=backend)
        torch.cuda.synchronize(1)
    torch.testing.assert_close(got, rope_ref(q, k, cos, sin, offset=3), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_head_offsets_beyond_int32_in_the_interpreter(dtype):
    """Heads 2^26 - 64 elements apart (a (B, H, T, D) cache of 2^22 positions seen as (B, T, H, D)):
    the last heads start past element 2^31, where an int32 head * stride wrapped (a segfault)."""
    pytest.importorskip("triton")
    heads, dim, stride = 40, 16, 2**26 - 64
    try:
        storage = torch.empty((heads - 1) * stride + 2 * dim, dtype=dtype)  # reserved, barely touched
    except (RuntimeError, MemoryError):
        pytest.skip("cannot reserve the address space here")
    gen = torch.Generator().manual_seed(0)
    for h in range(heads):
        storage[h * stride:h * stride + 2 * dim] = torch.randn(2 * dim, generator=gen).to(dtype)
    q, k = (storage.as_strided((1, 1, heads, dim), (0, 0, stride, 1), i * dim) for i in range(2))
    cos, sin = rope_tables(MAX_POSITIONS, dim)
    want = rope_ref(q.contiguous(), k.contiguous(), cos, sin, offset=3)
    torch.testing.assert_close(rope(q, k, cos, sin, offset=3, backend="triton"), want, rtol=0, atol=0)


# Shapes that reach every work split: in csrc/cuda/rope.cu blocks of a few whole tokens
# (W < 256 threads per token), one wide token per block (256 <= W <= 512) and the lane loop
# (W > 512), 16-byte lanes and the one-pair fallback (D/2 = 48 with float32 is 12 lanes of 4,
# D=34 none); in Triton partial token blocks and head counts off its 8-head tiles.
GPU_SPLIT_SHAPES = [(1, 1, 32, 8, 128), (2, 3, 130, 2, 128), (1, 2, 150, 149, 256), (3, 37, 5, 3, 96),
                    (2, 9, 7, 1, 64), (2, 5, 3, 2, 34)]


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("shape", GPU_SPLIT_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_work_splits(seeded, backend, shape, dtype):
    for positions_kind, inverse in (("offset", False), ("batch", True), ("row", False)):
        _check(backend, shape, dtype, positions_kind, inverse, device="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_misaligned_and_bhtd_views_in_and_out_of_place(seeded, backend, dtype):
    """q one element past an aligned start (the CUDA kernel's one-pair fallback), k a (B, H, T, D)
    cache seen as (B, T, H, D); out of place, then in place with per-sequence positions."""
    storage = torch.randn(1 + 2 * 5 * 3 * 64, device="cuda").to(dtype)
    q = storage[1:].view(2, 5, 3, 64)
    k = torch.randn(2, 4, 5, 64, device="cuda").to(dtype).transpose(1, 2)
    cos, sin = rope_tables(16, 64, device="cuda")
    positions = torch.randint(0, 16, (2, 5), device="cuda")
    want = rope_ref(q, k, cos, sin, positions)
    torch.testing.assert_close(rope(q, k, cos, sin, positions=positions, backend=backend), want)
    first = storage[0].clone()
    rope(q, k, cos, sin, positions=positions, inplace=True, backend=backend)
    torch.testing.assert_close((q, k), want)
    assert torch.equal(storage[0], first)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_head_offsets_beyond_int32(backend):
    """Heads 2^26 - 64 elements apart: the last heads start past element 2^31 (5 GB of float16)."""
    heads, dim, stride = 40, 128, 2**26 - 64
    try:
        storage = torch.empty((heads - 1) * stride + 2 * dim, dtype=torch.float16, device="cuda")
    except torch.OutOfMemoryError:
        pytest.skip("needs 5 GB of GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = storage[:(heads - 1) * stride].view(heads - 1, stride)[:, :2 * dim]
    rows.copy_(torch.randn(rows.shape, generator=gen, device="cuda"))
    storage[-2 * dim:].copy_(torch.randn(2 * dim, generator=gen, device="cuda"))
    q, k = (storage.as_strided((1, 1, heads, dim), (0, 0, stride, 1), i * dim) for i in range(2))
    cos, sin = rope_tables(MAX_POSITIONS, dim, device="cuda")
    want = rope_ref(q.contiguous(), k.contiguous(), cos, sin, offset=3)
    torch.testing.assert_close(rope(q, k, cos, sin, offset=3, backend=backend), want)
    rope(q, k, cos, sin, offset=3, inplace=True, backend=backend)
    torch.testing.assert_close((q, k), want)
    del storage
    torch.cuda.empty_cache()


@pytest.mark.parametrize("tile_bytes, max_heads", [(256, 1), (1024, 2), (4096, 4), (32768, 16)])
def test_triton_other_tile_configurations_in_the_interpreter(seeded, monkeypatch, tile_bytes, max_heads):
    """The knobs bench/tune_rope.py sweeps on a GPU: every tile shape must stay exact."""
    pytest.importorskip("triton")
    from fastllm.kernels.rope import triton as rope_triton_module

    monkeypatch.setattr(rope_triton_module, "TILE_BYTES", tile_bytes)
    monkeypatch.setattr(rope_triton_module, "MAX_TILE_HEADS", max_heads)
    for shape, positions_kind in (((2, 7, 5, 3, 16), "batch"), ((1, 9, 8, 1, 64), "offset")):
        _check("triton", shape, torch.float32, positions_kind, inverse=positions_kind == "batch", exact=True)
