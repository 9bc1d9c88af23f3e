"""Every attention backend against the float32 reference under the flash-attention tolerance rule:
forward, lse and all three gradients, on odd lengths, GQA/MQA ratios, head dims 64/128, causal
and not, and decoding alignment (T != S). Triton runs in the interpreter on the CPU (float32 and
float16, a representative subset: the interpreter is slow); the full grid runs on a GPU."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from flash_tolerance import assert_within_flash_tolerance

from fastllm.kernels import attention, dispatch
from fastllm.kernels.attention.op import choose_backend
from fastllm.kernels.attention.ref import attention_ref
from fastllm.utils.errors import BackendUnavailableError, KernelInputError


def _qkv(shape, dtype, device="cpu"):
    batch, heads, kv_heads, seq_q, seq_k, head_dim = shape
    q = torch.randn(batch, heads, seq_q, head_dim, device=device).to(dtype)
    k = torch.randn(batch, kv_heads, seq_k, head_dim, device=device).to(dtype)
    v = torch.randn(batch, kv_heads, seq_k, head_dim, device=device).to(dtype)
    return q, k, v


def _reference(q, k, v, grad_out, causal, upcast):
    """(out, dq, dk, dv) of the reference by autograd, in float32 (float64 for float64 inputs) or
    in the inputs' own dtype."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out, _ = attention_ref(*leaves, causal=causal, upcast=upcast)
    out.backward(grad_out)
    return [out.detach()] + [t.grad for t in leaves]


def check_backend(backend, shape, dtype, causal, device="cpu", eps=1e-5):
    q, k, v = _qkv(shape, dtype, device)
    grad_out = torch.randn(q.shape, device=device).to(dtype)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = attention(*leaves, causal=causal, backend=backend)
    out.backward(grad_out)
    got = [out.detach()] + [t.grad for t in leaves]
    # The truth is one precision above the kernel's: float32 for 16-bit kernels, float64 for a
    # float32 kernel (whose low-precision reference is then the float32 one).
    truth = torch.float64 if dtype == torch.float32 else torch.float32
    want = _reference(*(t.to(truth) for t in (q, k, v, grad_out)), causal, upcast=True)
    lowp = _reference(q, k, v, grad_out, causal, upcast=False)
    for name, g, w, lo in zip(("out", "dq", "dk", "dv"), got, want, lowp):
        assert g.dtype == dtype and g.shape == w.shape, name
        assert_within_flash_tolerance(f"{backend} {name} {shape} causal={causal}", g, w, lo, eps)


# (B, H, Hkv, T, S, D): odd lengths, GQA ratios 1/4/8, T != S (decoding and prefill continuation).
INTERPRETER_CASES = [
    ((1, 2, 2, 1, 1, 64), True),
    ((2, 4, 1, 7, 7, 64), True),
    ((1, 8, 1, 7, 7, 128), False),
    ((3, 2, 2, 97, 97, 64), True),
    ((1, 4, 1, 97, 97, 128), False),
    ((1, 8, 2, 128, 128, 64), True),
    ((2, 4, 4, 1, 97, 64), True),
    ((1, 8, 1, 7, 59, 128), True),
    ((1, 2, 1, 33, 40, 64), False),
    ((1, 4, 2, 40, 9, 64), False),  # more queries than keys (cross-attention-like)
]


@pytest.mark.parametrize("shape, causal", INTERPRETER_CASES)
def test_triton_float32_in_the_interpreter(seeded, shape, causal):
    check_backend("triton", shape, torch.float32, causal)


@pytest.mark.slow
def test_triton_long_sequence_in_the_interpreter(seeded):
    """1025 positions: 33 query and key blocks, the last one a single row (about 15 s here)."""
    check_backend("triton", (1, 2, 1, 1025, 1025, 64), torch.float32, causal=True)


@pytest.mark.parametrize("shape, causal", [((1, 4, 1, 97, 97, 64), True), ((2, 2, 2, 7, 40, 128), False)])
def test_triton_float16_in_the_interpreter(seeded, shape, causal):
    check_backend("triton", shape, torch.float16, causal)


def test_triton_odd_head_dims_and_scale(seeded):
    for head_dim in (32, 80, 96):
        check_backend("triton", (1, 2, 1, 9, 9, head_dim), torch.float32, causal=True)
    q, k, v = _qkv((1, 2, 1, 9, 12, 32), torch.float32)
    expected, _ = attention_ref(q, k, v, causal=True, scale=0.05)
    torch.testing.assert_close(attention(q, k, v, scale=0.05, backend="triton"), expected,
                               rtol=1e-5, atol=1e-5)


def test_triton_strided_inputs(seeded):
    """q, k, v as (B, T, H, D) projections viewed as (B, H, T, D): strides the kernels take."""
    qkv = torch.randn(2, 19, 3, 4, 64)  # (B, T, 3, H, D)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    expected, _ = attention_ref(q, k, v, causal=True)
    torch.testing.assert_close(attention(q, k, v, backend="triton"), expected, rtol=1e-5, atol=1e-5)


def test_triton_gradient_through_lse(seeded):
    q, k, v = (t.requires_grad_() for t in _qkv((1, 4, 2, 9, 13, 32), torch.float32))
    grads = []
    for backend in ("ref", "triton"):
        out, lse = torch.ops.fastllm.attention(q, k, v, True, 0.2, backend)
        (out.square().sum() + lse.sin().sum()).backward()
        grads.append([t.grad.clone() for t in (q, k, v)])
        for t in (q, k, v):
            t.grad = None
    for ours, ref in zip(grads[1], grads[0]):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_compiled_training_chooses_backends_on_real_tensors(seeded, monkeypatch):
    """Under torch.compile the autograd setup runs on fake tensors, which have no data pointer; the
    backend checks (the cuda one reads data_ptr() for alignment) must only ever see real ones."""
    import importlib

    module = importlib.import_module("fastllm.kernels.attention.triton")
    checked = module.unsupported_reason

    def reads_pointers(q, k, v):
        q.data_ptr()
        return checked(q, k, v)

    monkeypatch.setattr(module, "unsupported_reason", reads_pointers)
    leaves = [t.requires_grad_() for t in _qkv((1, 2, 1, 5, 9, 32), torch.float32)]
    compiled = torch.compile(lambda q, k, v: attention(q, k, v, backend="triton"), backend="aot_eager",
                             fullgraph=True)
    compiled(*leaves).square().sum().backward()
    copies = [t.detach().clone().requires_grad_() for t in leaves]
    attention_ref(*copies)[0].square().sum().backward()
    for ours, ref in zip(leaves, copies):
        torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-4, atol=1e-5)


def test_triton_opcheck(seeded):
    q, k, v = (t.requires_grad_() for t in _qkv((1, 2, 1, 5, 9, 32), torch.float32))
    torch.library.opcheck(torch.ops.fastllm.attention.default, (q, k, v, True, 0.2, "triton"))


def test_gpu_launcher_falls_back_to_smaller_tiles_on_out_of_resources(monkeypatch):
    """The table-driven GPU launch (exercised here with a stand-in kernel): a configuration whose
    tiles do not fit shared memory is skipped, the one that compiles is remembered."""
    import importlib

    from triton.runtime.errors import OutOfResources

    module = importlib.import_module("fastllm.kernels.attention.triton")
    monkeypatch.setattr(module, "_interpreting", lambda t: False)
    monkeypatch.setattr(module, "_working", {})
    launched = []

    class StandInKernel:
        def __getitem__(self, grid):
            def run(*args, **meta):
                if meta["BLOCK_M"] == 128:
                    raise OutOfResources(required=1 << 18, limit=1 << 17, name="shared memory")
                launched.append((grid, meta["BLOCK_M"], meta["BLOCK_N"], meta["num_stages"]))
            return run

    t = torch.empty(1, dtype=torch.float16)
    for _ in range(2):
        module._launch("fwd", StandInKernel(), lambda cfg: (cfg["BLOCK_M"],), (), {"HEAD_DIM": 128}, t)
    fitting = next(cfg for cfg in module.GPU_CONFIGS[("fwd", 128, 2)] if cfg["BLOCK_M"] != 128)
    expected = ((fitting["BLOCK_M"],), fitting["BLOCK_M"], fitting["BLOCK_N"], fitting["num_stages"])
    assert launched == [expected, expected]
    assert module._working[("fwd", 128, 2, t.device)] == fitting


def test_unsupported_head_dim_errors_when_forced_and_falls_back_when_automatic():
    q, k, v = _qkv((1, 2, 1, 3, 3, 256), torch.float32)
    with pytest.raises(KernelInputError, match="backend triton cannot run this call: head dim 256"):
        attention(q, k, v, backend="triton")
    # Automatic choice on a GPU (fake CUDA tensors stand in for one): triton is picked for head dim
    # 64, and head dim 256 moves down to ref instead of failing.
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = {d: [torch.empty(1, 2, 3, d, device="cuda", dtype=torch.float16) for _ in range(3)] for d in (64, 256)}
    assert choose_backend(*fake[64], None) in ("cuda", "triton")
    assert choose_backend(*fake[256], None) == "ref"


def test_automatic_choice_on_a_gpu_decodes_with_cuda_and_prefills_with_triton(monkeypatch):
    """With both compiled backends usable and no wgmma forward preferred (a GPU other than an
    H100 / H200), T == 1 goes to the CUDA split-KV kernel and longer query blocks to Triton (the
    faster forward there); a forced backend is left alone."""
    from fastllm.kernels.attention import cuda, op

    monkeypatch.setattr(cuda, "HOPPER_FORWARD", None)
    monkeypatch.setattr(dispatch, "pick", lambda name, device, backend=None: backend or "cuda")
    monkeypatch.setattr(op, "_triton_takes", lambda q, k, v: True)
    monkeypatch.setattr(op, "_unsupported", lambda name, q, k, v: None)
    prefill, decode = _qkv((1, 2, 1, 5, 5, 64), torch.float16), _qkv((1, 2, 1, 1, 5, 64), torch.float16)
    assert choose_backend(*prefill, None) == "triton"
    assert choose_backend(*decode, None) == "cuda"
    assert choose_backend(*prefill, "cuda") == "cuda"
    monkeypatch.setenv("FASTLLM_BACKEND", "attention=cuda")
    assert choose_backend(*prefill, None) == "cuda"
    monkeypatch.setattr(op, "_triton_takes", lambda q, k, v: False)  # e.g. triton not installed
    monkeypatch.delenv("FASTLLM_BACKEND")
    assert choose_backend(*prefill, None) == "cuda"


def test_automatic_choice_keeps_prefill_on_cuda_where_its_wgmma_forward_is_preferred(monkeypatch):
    """On Hopper, prefill of the head dims in HOPPER_PREFILL_HEAD_DIMS (128) stays on cuda, whose
    wgmma forward outran Triton's there; other head dims, other GPUs and builds without a Hopper
    forward go to Triton."""
    from fastllm.kernels.attention import cuda, op

    monkeypatch.setattr(dispatch, "pick", lambda name, device, backend=None: backend or "cuda")
    monkeypatch.setattr(op, "_triton_takes", lambda q, k, v: True)
    monkeypatch.setattr(op, "_unsupported", lambda name, q, k, v: None)
    monkeypatch.setattr(cuda, "wgmma_unavailable_reason", lambda device: None)
    prefill = {dim: _qkv((1, 2, 1, 5, 5, dim), torch.float16) for dim in (64, 128)}
    assert cuda.HOPPER_PREFILL_HEAD_DIMS == (128,)
    assert choose_backend(*prefill[128], None) == "cuda"
    assert choose_backend(*prefill[64], None) == "triton"
    monkeypatch.setattr(cuda, "HOPPER_FORWARD", None)
    assert choose_backend(*prefill[128], None) == "triton"
    monkeypatch.setattr(cuda, "HOPPER_FORWARD", "wgmma64")
    monkeypatch.setattr(cuda, "wgmma_unavailable_reason", lambda device: "not a Hopper card")
    assert choose_backend(*prefill[128], None) == "triton"


def test_bfloat16_is_refused_by_the_interpreter_not_rerouted():
    q, k, v = _qkv((1, 2, 1, 3, 3, 32), torch.bfloat16)
    with pytest.raises(KernelInputError, match="bfloat16 is not supported in Triton's CPU interpreter"):
        attention(q, k, v, backend="triton")


def test_forcing_cuda_on_cpu_is_an_error():
    q, k, v = _qkv((1, 2, 1, 3, 3, 32), torch.float32)
    with pytest.raises(BackendUnavailableError, match="attention: backend=cuda cannot run"):
        attention(q, k, v, backend="cuda")


def test_grids_beyond_cuda_limits_fall_back_when_automatic_and_fail_when_forced():
    """B * H beyond a CUDA grid's second axis (65535): the GPU kernels cannot launch it. Fake CUDA
    tensors stand in for a GPU, so the rule is checked on any machine."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        make = lambda batch, heads: torch.empty(batch, heads, 4, 64, device="cuda", dtype=torch.float16)
        q, k, v = make(1024, 128), make(1024, 8), make(1024, 8)
        small = make(2, 128), make(2, 8), make(2, 8)
    if dispatch.unavailable_reason("attention", "triton", q.device) is not None:
        pytest.skip("triton is not installed")
    assert choose_backend(*small, "triton") == "triton"
    with pytest.raises(KernelInputError, match="batch \\* heads = 131072 exceeds 65535"):
        choose_backend(q, k, v, "triton")
    assert choose_backend(q, k, v, None) == "ref"


@pytest.mark.parametrize("backend", ["ref", "triton"])
@pytest.mark.parametrize("shape", [(1, 2, 1, 0, 4, 32), (0, 2, 1, 3, 4, 32), (1, 0, 1, 3, 4, 32)])
def test_empty_inputs(seeded, backend, shape):
    """No queries, batch or heads: empty outputs and gradients (torch's fused CPU kernel, behind
    the ref backend, dies of SIGFPE on T = 0, so that case must not reach it)."""
    leaves = [t.requires_grad_() for t in _qkv(shape, torch.float32)]
    out = attention(*leaves, causal=False, backend=backend)
    assert out.shape == leaves[0].shape
    out.sum().backward()
    assert [t.grad.shape for t in leaves] == [t.shape for t in leaves]
    assert all(not t.grad.any() for t in leaves)


def test_cpu_auto_dispatch_is_the_reference():
    q, k, v = _qkv((1, 2, 1, 3, 3, 32), torch.float32)
    assert choose_backend(q, k, v, None) == "ref"


# ---- GPU: the full grid, every backend that runs there --------------------------------------

GPU_SHAPES = [(1, 2, 2, 1, 1, 64), (2, 4, 1, 7, 7, 128), (3, 8, 1, 97, 97, 64), (1, 8, 2, 128, 128, 128),
              (2, 4, 4, 1025, 1025, 64), (1, 16, 2, 1025, 1025, 128), (2, 8, 1, 1, 1025, 128),
              (1, 8, 8, 7, 300, 64), (1, 4, 1, 97, 1025, 128)]


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("shape", GPU_SHAPES)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_backends(seeded, backend, shape, causal, dtype):
    check_backend(backend, shape, dtype, causal, device="cuda", eps=1e-3)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", GPU_SHAPES[:4])
def test_gpu_triton_float32_is_exact_float32(seeded, shape):
    # A GPU's exp2 is ex2.approx (2 ulp): gradients summed over ~100 rows, with values near 10,
    # drift ~1.5e-5 from the float64 truth. TF32 dot products would be off by ~1e-2 there.
    check_backend("triton", shape, torch.float32, causal=True, device="cuda", eps=5e-5)


@pytest.mark.cuda
def test_gpu_auto_dispatch_prefers_compiled_kernels():
    q, k, v = _qkv((1, 2, 1, 3, 3, 64), torch.float16, device="cuda")
    assert choose_backend(q, k, v, None) in ("cuda", "triton")


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(1, 16, 1, 1, 4097, 64), (2, 32, 8, 1, 32768, 128), (3, 12, 3, 1, 77, 128)])
def test_gpu_decode_kernel_long_caches_and_wide_groups(seeded, shape):
    """T == 1 runs the split-KV kernel: many splits, GQA groups wider than one block's 8 heads."""
    q, k, v = _qkv(shape, torch.bfloat16, device="cuda")
    got = attention(q, k, v, causal=True, backend="cuda")
    want32, _ = attention_ref(q.float(), k.float(), v.float(), causal=True)
    lowp, _ = attention_ref(q, k, v, causal=True, upcast=False)
    assert_within_flash_tolerance(f"decode {shape}", got, want32, lowp, eps=1e-3)


@pytest.mark.cuda
def test_gpu_cuda_refuses_float32_when_forced_and_auto_takes_triton():
    q, k, v = _qkv((1, 2, 1, 3, 3, 64), torch.float32, device="cuda")
    with pytest.raises(KernelInputError, match="backend cuda cannot run this call: the cuda kernels take float16"):
        attention(q, k, v, backend="cuda")
    assert choose_backend(q, k, v, None) in ("triton", "ref")


@pytest.mark.cuda
def test_gpu_cuda_lse_matches_reference(seeded):
    q, k, v = _qkv((2, 4, 2, 130, 200, 128), torch.float16, device="cuda")
    _, lse = torch.ops.fastllm.attention(q, k, v, True, 128 ** -0.5, "cuda")
    _, want = attention_ref(q, k, v, causal=True)
    torch.testing.assert_close(lse, want, rtol=1e-3, atol=1e-3)


# ---- devices: Triton launches on the current CUDA device, so the launchers pick the tensors' ----


def test_device_check_names_the_first_argument_on_another_device():
    from fastllm.kernels.checks import check_one_device

    cpu, meta = torch.empty(1), torch.empty(1, device="meta")
    assert check_one_device("op", a=cpu, b=None, c=cpu) == torch.device("cpu")
    with pytest.raises(KernelInputError, match="^op: c is on meta but a is on cpu; move them to one device$"):
        check_one_device("op", a=cpu, b=None, c=meta)


def test_launch_context_makes_the_tensors_device_current(monkeypatch):
    from fastllm.kernels import checks

    entered = []
    def device(d):
        entered.append(d)
        return contextlib.nullcontext()

    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    with checks.on_device(torch.device("cuda", 1)):
        pass
    with checks.on_device(torch.device("cuda", 0)):  # already current: no switch on the host path
        pass
    with checks.on_device(torch.device("cpu")):  # the interpreter: nothing to switch
        pass
    assert entered == [torch.device("cuda", 1)]


def test_triton_launchers_refuse_mixed_devices(seeded):
    """The launchers are reachable without the op (dispatch.implementation_of, benchmarks): they
    check the devices themselves before any pointer reaches a kernel."""
    pytest.importorskip("triton")
    from fastllm.kernels.attention.triton import attention_triton_backward, attention_triton_forward

    q, k, v = _qkv((1, 2, 1, 3, 3, 32), torch.float32)
    with pytest.raises(KernelInputError, match="^attention: v is on meta but q is on cpu"):
        attention_triton_forward(q, k, v.to("meta"), True, 1.0)
    out, lse = attention_triton_forward(q, k, v, True, 1.0)
    with pytest.raises(KernelInputError, match="^attention_backward: lse is on meta but q is on cpu"):
        attention_triton_backward(torch.ones_like(out), q, k, v, out, lse.to("meta"), None, True, 1.0)


@pytest.mark.cuda
def test_gpu_triton_runs_on_the_tensors_device_not_the_current_one(seeded):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    q, k, v = _qkv((2, 4, 2, 33, 33, 64), torch.float16, device="cuda:1")
    with torch.cuda.device(0):
        out = attention(q, k, v, backend="triton")
        torch.cuda.synchronize(1)
    want32, _ = attention_ref(q.float(), k.float(), v.float())
    lowp, _ = attention_ref(q, k, v, upcast=False)
    assert_within_flash_tolerance("triton on cuda:1", out, want32, lowp, 1e-3)


@pytest.mark.cuda
def test_gpu_triton_launcher_refuses_cpu_and_gpu_mix():
    from fastllm.kernels.attention.triton import attention_triton_forward

    q, k, v = _qkv((1, 2, 1, 3, 3, 64), torch.float16, device="cuda")
    with pytest.raises(KernelInputError, match="attention: k is on cpu but q is on cuda:0"):
        attention_triton_forward(q, k.cpu(), v, True, 1.0)


# ---- 64-bit offsets: a row index times a stride passes 2^31 elements on long inputs -------------


# Rows 2^26 - 64 elements apart put the last rows past element 2^31 while a 32-row tile spans
# less; rows 3 * 2^25 apart make one tile's own rows (and a 32-row pointer step) pass 2^31 too, as
# a 64- or 128-row GPU tile does at the first stride. In-tile offsets must be int64 as well.
STRIDES_BEYOND_INT32 = (2**26 - 64, 3 * 2**25)


def _rows_beyond_int32(dtype, device, stride):
    """q, k, v, grad_out of shape (1, 1, 40, 16) whose rows lie `stride` elements apart, so the
    last rows sit past element 2^31 (int32 offsets wrap there). One storage holds all four; it is
    reserved, not touched, except for the rows used."""
    seq, dim = 40, 16
    try:
        storage = torch.empty((seq - 1) * stride + 4 * dim, dtype=dtype, device=device)
    except (RuntimeError, MemoryError):
        pytest.skip(f"cannot reserve {(seq - 1) * stride * 2 / 1e9:.0f} GB of address space here")
    gen = torch.Generator(device=device).manual_seed(0)
    for t in range(seq):
        storage[t * stride:t * stride + 4 * dim] = torch.randn(4 * dim, generator=gen, device=device).to(dtype)
    return [storage.as_strided((1, 1, seq, dim), (0, 0, stride, 1), i * dim) for i in range(4)]


def _check_beyond_int32(device, stride):
    q, k, v, grad_out = _rows_beyond_int32(torch.float16, device, stride)
    assert q.storage_offset() + (q.shape[2] - 1) * q.stride(2) > 2**31
    for causal in (True, False):
        leaves = [t.detach().requires_grad_() for t in (q, k, v)]
        out = attention(*leaves, causal=causal, backend="triton")
        out.backward(grad_out)
        want32 = _reference(q.float(), k.float(), v.float(), grad_out.float(), causal, upcast=True)
        lowp = _reference(q, k, v, grad_out, causal, upcast=False)
        for name, g, w, lo in zip(("out", "dq", "dk", "dv"), [out.detach()] + [t.grad for t in leaves],
                                  want32, lowp):
            assert_within_flash_tolerance(f"beyond int32 {name} causal={causal}", g, w, lo, 1e-3)


@pytest.mark.parametrize("stride", STRIDES_BEYOND_INT32)
def test_triton_offsets_beyond_int32_in_the_interpreter(stride):
    """Before the kernels took int64 offsets this read wrapped addresses (a segfault)."""
    pytest.importorskip("triton")
    _check_beyond_int32("cpu", stride)


@pytest.mark.cuda
@pytest.mark.parametrize("stride", STRIDES_BEYOND_INT32)
def test_gpu_triton_offsets_beyond_int32(stride):
    _check_beyond_int32("cuda", stride)


# ---- causal alignment when T != S --------------------------------------------------------------


@pytest.mark.parametrize("seq_q, seq_k", [(1, 1), (1, 97), (7, 59), (33, 40), (40, 40), (5, 64)])
def test_causal_with_fewer_queries_is_flash_attentions_bottom_right_on_every_backend(seeded, seq_q, seq_k):
    """T < S (a KV-cache prefill continuing a cache): query i sees keys j <= i + S - T, as
    flash-attn >= 2.1 and torch's causal_lower_right define it; every backend, forward and grads."""
    from torch.nn.attention.bias import causal_lower_right

    q, k, v = _qkv((2, 4, 4, seq_q, seq_k, 32), torch.float32)
    grad_out = torch.randn(q.shape)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    expected = F.scaled_dot_product_attention(*leaves, attn_mask=causal_lower_right(seq_q, seq_k))
    expected_grads = torch.autograd.grad(expected, leaves, grad_out)
    backends = ["ref"] + (["triton"] if dispatch.unavailable_reason("attention", "triton", q.device) is None else [])
    for backend in backends:
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = attention(*leaves, causal=True, backend=backend)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5, msg=backend)
        for name, ours, theirs in zip("qkv", torch.autograd.grad(out, leaves, grad_out), expected_grads):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=f"{backend} d{name}")


@pytest.mark.parametrize("backend", ["ref", "triton", None])
def test_causal_with_more_queries_than_keys_is_refused_on_every_backend(backend):
    """T > S causal is refused, not given a convention: the first T - S queries would precede every
    key (flash-attn returns zeros there, SDPA's is_causal aligns top-left instead and returns
    something else), and no caller in fastllm makes it (a KV cache always holds S >= T)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    q, k, v = _qkv((1, 2, 1, 5, 3, 32), torch.float32)
    match = "causal attention with T=5 queries needs at least as many keys, got S=3"
    with pytest.raises(KernelInputError, match=match):
        attention(q, k, v, causal=True, backend=backend)
    with pytest.raises(KernelInputError, match=match), FakeTensorMode(allow_non_fake_inputs=True):
        torch.ops.fastllm.attention(q, k, v, True, 0.5, backend)  # the fake kernel (torch.compile)
    assert attention(q, k, v, causal=False, backend=backend).shape == q.shape


# ---- T == 1: the split-KV decoding kernel (csrc/cuda/attention_decode.cu) ------------------------

# (B, H, Hkv, S): partial 16-key tiles and 64-key block steps, S = 1 and S below one split, GQA
# groups 1, 4, 8, 12 and 16 (chunks of 8 heads, the last one short), several splits.
DECODE_SHAPES = [(1, 4, 1, 300), (2, 8, 2, 77), (3, 12, 3, 1000), (1, 16, 1, 4097), (2, 2, 2, 1),
                 (1, 32, 8, 8193), (3, 8, 8, 33)]


def _check_decode(q, k, v, label):
    out, lse = torch.ops.fastllm.attention(q, k, v, True, q.shape[-1] ** -0.5, "cuda")
    want32, want_lse = attention_ref(q.float(), k.float(), v.float(), causal=True)
    lowp, _ = attention_ref(q, k, v, causal=True, upcast=False)
    assert_within_flash_tolerance(f"decode {label}", out, want32, lowp, eps=1e-3)
    torch.testing.assert_close(lse, want_lse, rtol=1e-3, atol=1e-3, msg=f"decode lse {label}")


@pytest.mark.cuda
@pytest.mark.parametrize("shape", DECODE_SHAPES)
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_decode_kernel_odd_lengths_and_groups(seeded, shape, head_dim, dtype):
    batch, heads, kv_heads, seq_k = shape
    q, k, v = _qkv((batch, heads, kv_heads, 1, seq_k, head_dim), dtype, device="cuda")
    _check_decode(q, k, v, f"{shape} D={head_dim} {dtype}")


@pytest.mark.cuda
@pytest.mark.parametrize("seq_k, plan", [(130, (3, 64)), (257, (5, 64)), (77, (2, 64)), (1000, (2, 512))])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_gpu_decode_kernel_short_last_splits(seeded, monkeypatch, seq_k, plan, head_dim):
    """Splits forced small: a last split of 1-13 keys leaves warps without a tile (they weigh 0)."""
    from fastllm.kernels.attention import cuda as cuda_launcher

    monkeypatch.setattr(cuda_launcher, "decode_splits", lambda *args: plan)
    q, k, v = _qkv((2, 12, 3, 1, seq_k, head_dim), torch.bfloat16, device="cuda")
    _check_decode(q, k, v, f"S={seq_k} plan={plan} D={head_dim}")


@pytest.mark.cuda
@pytest.mark.parametrize("head_dim", [64, 128])
def test_gpu_decode_kernel_reads_a_slice_of_a_longer_cache(seeded, head_dim):
    """A KV cache is a prefix of a preallocated buffer: row strides span the whole buffer."""
    q = torch.randn(2, 8, 1, head_dim, device="cuda").to(torch.float16)
    k = torch.randn(2, 2, 600, head_dim, device="cuda").to(torch.float16)[:, :, :333]
    v = torch.randn(2, 2, 600, head_dim, device="cuda").to(torch.float16)[:, :, :333]
    q_view = torch.randn(2, 1, 8, head_dim, device="cuda").to(torch.float16).transpose(1, 2)  # (B, H, 1, D) strided
    _check_decode(q, k, v, f"slice D={head_dim}")
    _check_decode(q_view, k, v, f"slice, strided q D={head_dim}")
