"""GGML int4/int8 matmul: every CPU path bit-identical to the generic C++ path (the integer block
dots are exact and all paths add the blocks in one order), within ggml's named error budgets of
the float math, and of ref.py; the op passes opcheck; bad arguments get one-line errors."""

import multiprocessing

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastllm import _ext
from fastllm.kernels import forced_cpu_isa, ggml
from fastllm.kernels.ggml import cpp, ref

QTYPES = ["q4_0", "q8_0"]

# ggml's tests/test-quantize-fns.cpp budget: |vec_dot(quantized) - dot(floats)| / n on its data
# 0.1 + 2 cos(i + offset), weights quantized to the type, activations to Q8_0.
MAX_DOT_PRODUCT_ERROR = 0.02
# Kernel vs ref.py: the same quantized operands, summed over nb blocks in fp32 (kernel) or fp64
# (ref), so the gap is bounded by the classic summation bound (nb + 2) * 2^-24 * sum |terms|.
FP32_EPS = 2.0**-24


def random_weight(n: int, k: int, qtype: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.randn(n, k, generator=generator)
    return w, ggml.quantize(w, qtype)


def assert_within_accumulation_budget(y: torch.Tensor, x: torch.Tensor, blocks: torch.Tensor, qtype: str) -> None:
    n, k = blocks.shape[0], x.shape[-1]
    expected = ref.ggml_matmul_ref(x, blocks, qtype, n)
    xq, xd = ref.quantize_act(x.reshape(-1, k))
    x_hat = (xq.double() * xd.double()[..., None]).reshape(-1, k)
    w_hat = ggml.dequantize(blocks, qtype, (n, k)).double()
    bound = (k // 32 + 2) * FP32_EPS * (x_hat.abs() @ w_hat.abs().T).reshape(y.shape)
    gap = (y.double() - expected.double()).abs()
    assert bool((gap <= bound + 1e-30).all()), f"max gap {float(gap.max())} over budget {float(bound.max())}"


@pytest.mark.parametrize("qtype", QTYPES)
def test_every_isa_path_is_bit_identical_to_generic(cpu_isa, qtype, seeded):
    for n, k, m in [(1, 32, 1), (7, 96, 3), (27, 256, 9), (33, 64, 11), (16, 64, 64)]:
        _, blocks = random_weight(n, k, qtype, seeded)
        x = torch.randn(m, k, generator=seeded) * 2
        y = ggml.ggml_matmul(x, blocks, qtype, n)
        packed = ggml.repack(blocks, qtype)
        y16 = ggml.ggml_matmul(x, packed, qtype + "_x16", n)
        with forced_cpu_isa("generic"):
            expected = ggml.ggml_matmul(x, blocks, qtype, n)
        assert torch.equal(y, expected), f"{cpu_isa} plain layout differs from generic for {(n, k, m)}"
        assert torch.equal(y16, expected), f"{cpu_isa} x16 layout differs from generic for {(n, k, m)}"
        assert_within_accumulation_budget(y, x, blocks, qtype)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), blocks=st.integers(1, 12), m=st.integers(1, 20),
       log_scale=st.floats(-30, 4), qtype=st.sampled_from(QTYPES), seed=st.integers(0, 2**31))
def test_random_shapes_and_scales_are_identical_across_paths(n, blocks, m, log_scale, qtype, seed):
    gen = torch.Generator().manual_seed(seed)
    k = 32 * blocks
    weight = ggml.quantize(torch.randn(n, k, generator=gen) * 10.0**log_scale, qtype)
    x = torch.randn(m, k, generator=gen) * 10.0 ** (-log_scale / 2)
    packed = ggml.repack(weight, qtype)
    with forced_cpu_isa("generic"):
        expected = ggml.ggml_matmul(x, weight, qtype, n)
    # Activation blocks beyond 127 * 65504 overflow their fp16 scale (as in ggml): inf or NaN
    # then, in the same places on every path.
    same = dict(rtol=0, atol=0, equal_nan=True)
    for isa in ggml_isas():
        with forced_cpu_isa(isa):
            torch.testing.assert_close(ggml.ggml_matmul(x, weight, qtype, n), expected, **same, msg=isa)
            torch.testing.assert_close(ggml.ggml_matmul(x, packed, qtype + "_x16", n), expected, **same, msg=isa)


def ggml_isas() -> list[str]:
    from fastllm.kernels import supported_cpu_isas

    return supported_cpu_isas()


def test_activation_quantization_is_bit_identical(cpu_isa, seeded):
    x = torch.randn(320, generator=seeded) * 5
    x[:32] = torch.arange(-16, 16) + 0.5   # ties: amax 16 gives id = 127/16 * ...; mixed magnitudes
    x[32:64] = 1e-40                        # subnormal block: 1/d overflows, quants are 0
    x[64:96] = 0.0
    q, d, corr = cpp.quantize_act_cpp(x, 8)
    q_ref, d_ref = ref.quantize_act(x)
    assert torch.equal(q, q_ref.reshape(-1, 32))
    assert torch.equal(d, d_ref.reshape(-1))
    assert torch.equal(corr, 8 * q_ref.reshape(-1, 32).sum(-1).to(torch.int32))


@pytest.mark.parametrize("qtype", QTYPES)
def test_vec_dot_within_ggml_budget_and_identical_across_paths(cpu_isa, qtype):
    n = 32 * 128
    i = torch.arange(n, dtype=torch.float64)
    x, y = ((0.1 + 2 * torch.cos(i + offset)).to(torch.float32) for offset in (0.0, 1.0))
    xb, yb = ggml.quantize(x, qtype), ggml.quantize(y, "q8_0")
    result = cpp.vec_dot_cpp(xb, yb, qtype)
    assert abs(result - float(x.double() @ y.double())) / n < MAX_DOT_PRODUCT_ERROR
    with forced_cpu_isa("generic"):
        assert cpp.vec_dot_cpp(xb, yb, qtype) == result
    # The matmul computes the same dot (activations quantized by the kernel, not by us).
    assert ggml.ggml_matmul(y[None], xb[None], qtype, 1).item() == result


def q8_0_blocks(q: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Q8_0 block bytes holding the int8 quants q (a multiple of 32) verbatim, every scale `scale`."""
    out = torch.empty(q.numel() // 32, 34, dtype=torch.uint8)
    out[:, :2] = torch.tensor([scale], dtype=torch.float16).view(torch.uint8)
    out[:, 2:] = q.reshape(-1, 32).to(torch.int8).view(torch.uint8)
    return out.reshape(*q.shape[:-1], -1)


def test_q8_0_dots_are_exact_for_every_int8_including_minus_128(cpu_isa, seeded):
    # ggml's quantizer never writes -128, a GGUF from elsewhere may. The AVX2 vec_dot used
    # |x| * sign(y, x), whose vpsignb cannot negate -128: -128 * -128 came out as -16384.
    every = torch.arange(-128, 128).repeat(4)  # 1024 values, each byte twice against each sign
    pairs = [(every, every.flip(0)), (every, every), (torch.full((64,), -128), torch.full((64,), -128))]
    pairs += [(torch.randint(-128, 128, (32 * 33,), generator=seeded),
               torch.randint(-128, 128, (32 * 33,), generator=seeded)) for _ in range(3)]
    for x, y in pairs:
        assert cpp.vec_dot_cpp(q8_0_blocks(x), q8_0_blocks(y), "q8_0") == float((x * y).sum()), cpu_isa
    # q4_0 x q8_0 with y holding -128: the nibble path is unsigned x signed, exact already.
    w = ggml.quantize(torch.randn(1024, generator=seeded), "q4_0")
    wq, wd = ref.decode(w, "q4_0")
    y = every
    expected = float(((wq.reshape(-1) * y).reshape(-1, 32).sum(-1).double() * wd.double()).sum())
    assert cpp.vec_dot_cpp(w, q8_0_blocks(y), "q4_0") == pytest.approx(expected, rel=1e-6)


def test_q8_0_matmul_takes_weight_bytes_of_minus_128(cpu_isa, seeded):
    # The matmul quantizes the activations itself (never to -128), so any weight byte is exact.
    n, k = 19, 256
    q = torch.randint(-128, 128, (n, k), generator=seeded)
    q[:, ::3] = -128
    q[0] = -128
    weight = q8_0_blocks(q, 0.01)
    x = torch.randn(5, k, generator=seeded)
    y = ggml.ggml_matmul(x, weight, "q8_0", n)
    y16 = ggml.ggml_matmul(x, ggml.repack(weight, "q8_0"), "q8_0_x16", n)
    with forced_cpu_isa("generic"):
        expected = ggml.ggml_matmul(x, weight, "q8_0", n)
    assert torch.equal(y, expected) and torch.equal(y16, expected)
    assert_within_accumulation_budget(y, x, weight, "q8_0")


@pytest.mark.parametrize("qtype", QTYPES)
def test_batches_and_odd_sizes_match_ref(qtype, seeded):
    for n in (1, 7, 59, 97):
        w, blocks = random_weight(n, 160, qtype, seeded)
        packed = ggml.repack(blocks, qtype)
        for m in (1, 2, 7, 8, 9, 17, 64):
            x = torch.randn(m, 160, generator=seeded)
            y = ggml.ggml_matmul(x, packed, qtype + "_x16", n)
            assert y.shape == (m, n) and y.dtype == torch.float32
            assert_within_accumulation_budget(y, x, blocks, qtype)


def test_long_rows_take_several_passes_over_the_weights(cpu_isa, seeded):
    # 1024 blocks a row: the driver splits 20 activation rows into passes of 8 (rows_per_pass).
    _, blocks = random_weight(3, 32 * 1024, "q4_0", seeded)
    x = torch.randn(20, 32 * 1024, generator=seeded)
    y = ggml.ggml_matmul(x, blocks, "q4_0", 3)
    assert_within_accumulation_budget(y, x, blocks, "q4_0")
    assert torch.equal(y[13:14], ggml.ggml_matmul(x[13:14], blocks, "q4_0", 3))


def test_leading_dimensions_and_half_precision(seeded):
    _, blocks = random_weight(24, 64, "q4_0", seeded)
    x = torch.randn(2, 3, 64, generator=seeded)
    y = ggml.ggml_matmul(x, blocks, "q4_0", 24)
    assert y.shape == (2, 3, 24)
    assert torch.equal(y.reshape(6, 24), ggml.ggml_matmul(x.reshape(6, 64), blocks, "q4_0", 24))
    y_bf16 = ggml.ggml_matmul(x.to(torch.bfloat16), blocks, "q4_0", 24)
    assert y_bf16.dtype == torch.bfloat16
    assert torch.equal(y_bf16, ggml.ggml_matmul(x.to(torch.bfloat16).float(), blocks, "q4_0", 24).to(torch.bfloat16))


def test_forced_ref_backend(monkeypatch, seeded):
    _, blocks = random_weight(9, 64, "q8_0", seeded)
    x = torch.randn(3, 64, generator=seeded)
    expected = ref.ggml_matmul_ref(x, blocks, "q8_0", 9)
    assert torch.equal(ggml.ggml_matmul(x, blocks, "q8_0", 9, backend="ref"), expected)
    monkeypatch.setenv("FASTLLM_BACKEND", "ggml_matmul=ref")
    assert torch.equal(ggml.ggml_matmul(x, blocks, "q8_0", 9), expected)


def test_non_finite_activations_reach_the_output(seeded):
    _, blocks = random_weight(4, 64, "q4_0", seeded)
    x = torch.randn(2, 64, generator=seeded)
    x[1, 40] = float("nan")
    y = ggml.ggml_matmul(x, blocks, "q4_0", 4)
    assert torch.isfinite(y[0]).all() and torch.isnan(y[1]).all()


def test_opcheck(seeded):
    _, blocks = random_weight(20, 64, "q4_0", seeded)
    packed = ggml.repack(blocks, "q4_0")
    x = torch.randn(3, 64, generator=seeded, requires_grad=True)
    for weight, qtype, backend in ((blocks, "q4_0", None), (packed, "q4_0_x16", None), (packed, "q4_0_x16", "ref")):
        torch.library.opcheck(torch.ops.fastllm.ggml_matmul.default, (x, weight, qtype, 20, backend))
    torch.library.opcheck(torch.ops.fastllm.ggml_dequantize_weight.default, (packed, "q4_0_x16", 20, 64))


def test_gradient_is_grad_times_dequantized_weight(seeded):
    _, blocks = random_weight(12, 96, "q8_0", seeded)
    x = torch.randn(5, 96, generator=seeded, requires_grad=True)
    grad = torch.randn(5, 12, generator=seeded)
    ggml.ggml_matmul(x, blocks, "q8_0", 12).backward(grad)
    w_hat = ggml.dequantize(blocks, "q8_0", (12, 96))
    torch.testing.assert_close(x.grad, grad @ w_hat)


def test_backward_stays_on_the_forced_backend(seeded, monkeypatch):
    from fastllm.kernels import dispatch

    _, blocks = random_weight(12, 64, "q4_0", seeded)
    packed = ggml.repack(blocks, "q4_0")
    x = torch.randn(3, 64, generator=seeded, requires_grad=True)
    y = ggml.ggml_matmul(x, packed, "q4_0_x16", 12, backend="ref")
    picked, pick = [], dispatch.pick
    monkeypatch.setattr(dispatch, "pick", lambda op, *args: picked.append((op, pick(op, *args))) or picked[-1][1])
    y.sum().backward()
    assert picked == [("ggml_unpack", "ref"), ("ggml_dequantize", "ref")]
    torch.testing.assert_close(x.grad, ggml.dequantize(blocks, "q4_0", (12, 64)).sum(0).expand(3, 64))


def test_compiles_as_one_node(seeded):
    _, blocks = random_weight(16, 64, "q4_0", seeded)
    x = torch.randn(2, 64, generator=seeded)
    fn = torch.compile(lambda a: ggml.ggml_matmul(a, blocks, "q4_0", 16) * 2, backend="eager", fullgraph=True)
    assert torch.equal(fn(x), ggml.ggml_matmul(x, blocks, "q4_0", 16) * 2)


@pytest.mark.parametrize("make_args, message", [
    (lambda b, p: (torch.ones(2, 48), b, "q4_0", 8), "not a positive multiple of 32"),
    (lambda b, p: (torch.ones(2, 64, dtype=torch.float64), b, "q4_0", 8), "dtype torch.float64"),
    (lambda b, p: (torch.ones(64, 2).t(), b, "q4_0", 8), "not contiguous"),
    (lambda b, p: (torch.ones(2, 64), b.float(), "q4_0", 8), "expected torch.uint8"),
    (lambda b, p: (torch.ones(2, 64), b, "q4_0", 9), "does not match q4_0"),
    (lambda b, p: (torch.ones(2, 96), b, "q4_0", 8), "does not match q4_0"),
    (lambda b, p: (torch.ones(2, 64), b, "q8_0", 8), "does not match q8_0"),
    (lambda b, p: (torch.ones(2, 64), p, "q4_0", 8), "does not match q4_0"),
    (lambda b, p: (torch.ones(2, 64), b, "q4_0_x16", 8), "does not match q4_0_x16"),
    (lambda b, p: (torch.ones(2, 64), b, "q4_k", 8), "unknown GGML type"),
    (lambda b, p: (torch.ones(2, 64), b, "q4_0", 0), "out_features: expected positive ints, got 0"),
    (lambda b, p: (torch.ones(2, 64), b, "q4_0", True), "out_features: expected positive ints, got True"),
])
def test_bad_arguments_give_one_line_errors(make_args, message, seeded):
    _, blocks = random_weight(8, 64, "q4_0", seeded)
    args = make_args(blocks, ggml.repack(blocks, "q4_0"))
    with pytest.raises(ggml.GGMLError, match=message) as info:
        ggml.ggml_matmul(*args)
    assert "\n" not in str(info.value)


def test_direct_op_calls_are_validated(seeded):
    """torch.ops.fastllm.ggml_matmul is reachable without ggml_matmul(): it checks the weight's
    shape before the kernel reads it (and its fake kernel does too, while tracing)."""
    _, blocks = random_weight(8, 64, "q4_0", seeded)
    with pytest.raises(ggml.GGMLError, match="does not match q4_0 for out_features=16"):
        torch.ops.fastllm.ggml_matmul(torch.ones(2, 64), blocks, "q4_0", 16, None)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode, pytest.raises(ggml.GGMLError, match="does not match q4_0 for out_features=16"):
        torch.ops.fastllm.ggml_matmul(torch.ones(2, 64), mode.from_tensor(blocks), "q4_0", 16, None)


@pytest.mark.parametrize("torch_threads", [True, False])
def test_thread_executors_agree(torch_threads, seeded):
    # Tasks run on torch's OpenMP team when libgomp is loaded, else on fastllm's pool; the tiles
    # are independent, so the results are identical either way.
    core = _ext.cpu().core
    _, blocks = random_weight(70, 128, "q4_0", seeded)
    x = torch.randn(13, 128, generator=seeded)
    previous = core.use_torch_openmp(torch_threads)
    try:
        y = ggml.ggml_matmul(x, blocks, "q4_0", 70)
    finally:
        core.use_torch_openmp(previous)
    with forced_cpu_isa("generic"):
        assert torch.equal(y, ggml.ggml_matmul(x, blocks, "q4_0", 70))


def _matmul_in_child(seed: int) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    _, blocks = random_weight(70, 128, "q4_0", gen)
    x = torch.randn(5, 128, generator=gen)
    return ggml.ggml_matmul(x, blocks, "q4_0", 70).flatten().tolist()


def test_matmul_in_a_forked_child():
    # The parent has used its threads; a forked child must not wait on threads it lacks.
    expected = _matmul_in_child(3)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_matmul_in_child, (3,)).get(timeout=120) == expected
