"""GGML Q4_0 / Q8_0 quantization: our bytes are the gguf package's bytes (and so ggml's), for random
and adversarial inputs, on the C++ path and the pure-torch reference; dequantize and repack are
exact; bad input gets a one-line error."""

import re

import numpy as np
import pytest
import torch

from fastllm.kernels import ggml

gguf = pytest.importorskip("gguf", reason="the gguf package (fastllm[interop]) is the byte-level truth")
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402
from gguf.quants import quantize as gguf_quantize  # noqa: E402

QTYPES = ["q4_0", "q8_0"]
GGUF_TYPE = {"q4_0": gguf.GGMLQuantizationType.Q4_0, "q8_0": gguf.GGMLQuantizationType.Q8_0}

# ggml's tests/test-quantize-fns.cpp budget, on its synthetic data 0.1 + 2 cos(i + offset):
# sqrt(sum of squared errors) / n after a quantize -> dequantize round trip.
MAX_QUANTIZATION_TOTAL_ERROR = 0.002


def gguf_bytes(x: torch.Tensor, qtype: str) -> np.ndarray:
    with np.errstate(all="ignore"):  # subnormal blocks overflow 1/d inside gguf, as in ggml
        return gguf_quantize(x.numpy(), GGUF_TYPE[qtype])


def assert_bytes_match_gguf(x: torch.Tensor, qtype: str) -> None:
    expected = gguf_bytes(x, qtype)
    for backend in ("cpp", "ref"):
        ours = ggml.quantize(x, qtype, backend=backend).numpy()
        assert ours.shape == expected.shape, backend
        mismatch = np.argwhere(ours != expected)
        assert mismatch.size == 0, f"{backend}: {len(mismatch)} bytes differ from gguf, first at {mismatch[0]}"


def adversarial_rows() -> torch.Tensor:
    """Blocks of 32 values that stress the reference rounding, one block per row."""
    rows = [torch.zeros(32)]                                       # all zero: d = -0.0, q = 8
    outlier = torch.randn(32, generator=torch.Generator().manual_seed(1)) * 1e-3
    outlier[17] = 1e4
    rows.append(outlier)                                           # one huge outlier
    rows.append(-outlier)
    halves = torch.arange(-8, 8, dtype=torch.float32).repeat(2) + 0.5
    for scale in (1.0, 0.25, 3.0, 1 / 3, 1e-3):
        tie = halves.clone()
        tie[0] = -8.0                                              # d = 1: x / d lands on k + .5 exactly
        rows += [tie * scale, -tie * scale]
    q8_ties = torch.linspace(-126.5, 126.5, 32).round() + 0.5       # k + .5 under d = 1 for q8_0
    q8_ties[5] = 127.0
    rows += [q8_ties, -q8_ties, q8_ties * 0.5]
    rows.append(torch.tensor([3.0, -3.0] * 16))                     # equal magnitudes: the first wins
    rows.append(torch.tensor([-3.0, 3.0] * 16))
    clamp = torch.full((32,), 1.0)
    clamp[0], clamp[1] = -8.0, 8.0                                  # q = 16 -> clamped to 15
    rows.append(clamp)
    for tiny in (1e-40, 3e-39, 1.1e-38, 1e-30, 6e-8):              # subnormal / fp16-underflowing scales
        block = torch.linspace(-1, 1, 32) * tiny
        block[::3] = 0.0
        rows += [block, torch.full((32,), tiny), -torch.full((32,), tiny)]
    rows.append(torch.full((32,), 65000.0 * 7))                      # large but representable q4_0 scale
    return torch.stack(rows)


@pytest.mark.parametrize("qtype", QTYPES)
def test_random_bytes_match_gguf(qtype, seeded):
    for shape in [(1, 32), (7, 224), (3, 5, 96), (16, 1024)]:         # 224 = 7 blocks: odd block counts
        assert_bytes_match_gguf(torch.randn(shape, generator=seeded), qtype)
    heavy = torch.distributions.Cauchy(0.0, 1.0).sample((9, 160))
    assert_bytes_match_gguf(heavy, qtype)
    scales = 10.0 ** torch.empty(64, 1).uniform_(-30, 4, generator=seeded)
    assert_bytes_match_gguf(torch.randn(64, 128, generator=seeded) * scales, qtype)


@pytest.mark.parametrize("qtype", QTYPES)
def test_adversarial_bytes_match_gguf(qtype):
    assert_bytes_match_gguf(adversarial_rows(), qtype)
    rows = adversarial_rows()
    assert_bytes_match_gguf(rows[: len(rows) // 5 * 5].reshape(-1, 5 * 32), qtype)  # 5 blocks a row


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_matches_gguf(qtype, seeded):
    x = torch.randn(11, 96, generator=seeded) * 3
    blocks = ggml.quantize(x, qtype)
    expected = gguf_dequantize(blocks.numpy(), GGUF_TYPE[qtype])
    for backend in ("cpp", "ref"):
        ours = ggml.dequantize(blocks, qtype, x.shape, backend=backend)
        assert ours.dtype == torch.float32 and ours.shape == x.shape
        np.testing.assert_array_equal(ours.numpy(), expected)


@pytest.mark.parametrize("qtype", QTYPES)
def test_round_trip_error_budget(qtype):
    n = 4096
    data = 0.1 + 2 * torch.cos(torch.arange(n, dtype=torch.float64) + 0.0).to(torch.float32)
    restored = ggml.dequantize(ggml.quantize(data, qtype), qtype, data.shape)
    total_error = float(((data - restored).double() ** 2).sum().sqrt()) / n
    assert total_error < MAX_QUANTIZATION_TOTAL_ERROR, total_error


def test_half_precision_inputs_quantize_like_fp32(seeded):
    x = torch.randn(4, 64, generator=seeded).to(torch.bfloat16)
    assert torch.equal(ggml.quantize(x, "q4_0"), ggml.quantize(x.float(), "q4_0"))


@pytest.mark.parametrize("qtype", QTYPES)
def test_repack_is_an_exact_permutation(cpu_isa, qtype, seeded):
    for n in (1, 16, 37):
        blocks = ggml.quantize(torch.randn(n, 96, generator=seeded), qtype)
        packed = ggml.repack(blocks, qtype)
        assert torch.equal(packed, ggml.repack(blocks, qtype, backend="ref"))
        assert torch.equal(ggml.unpack(packed, qtype, n, 96), blocks)
        assert torch.equal(ggml.unpack(packed, qtype, n, 96, backend="ref"), blocks)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_rejected(bad):
    x = torch.ones(2, 64)
    x[1, 40] = bad
    with pytest.raises(ggml.GGMLError, match="NaN or inf"):
        ggml.quantize(x, "q4_0")


def test_scale_overflow_is_rejected():
    with pytest.raises(ggml.GGMLError, match="overflow the fp16 block scale"):
        ggml.quantize(torch.full((1, 32), 1e6), "q4_0")


@pytest.mark.parametrize("call, message", [
    (lambda: ggml.quantize(torch.ones(2, 48), "q4_0"), "not a positive multiple of 32"),
    (lambda: ggml.quantize(torch.ones(2, 64, dtype=torch.int32), "q4_0"), "dtype torch.int32"),
    (lambda: ggml.quantize(torch.ones(64, 2).t(), "q8_0"), "not contiguous"),
    (lambda: ggml.quantize(torch.ones(2, 64), "q5_0"), "unknown GGML type 'q5_0'"),
    (lambda: ggml.dequantize(torch.zeros(2, 36, dtype=torch.uint8), "q4_0", (2, 96)), "do not hold"),
    (lambda: ggml.dequantize(torch.zeros(2, 36), "q4_0", (2, 64)), "expected torch.uint8"),
    (lambda: ggml.dequantize(torch.zeros(2, 36, dtype=torch.uint8), "q4_0", (2, 70)), "multiple of 32"),
    (lambda: ggml.repack(torch.zeros(2, 35, dtype=torch.uint8), "q4_0"), "is not (N, K / 32 * 18)"),
    (lambda: ggml.unpack(torch.zeros(1, 64, dtype=torch.uint8), "q4_0", 16, 64), "is not the q4_0_x16 layout"),
    (lambda: ggml.dequantize(torch.zeros(2, 36, dtype=torch.uint8), "q4_0", (-1, -2, 64)), "shape: expected non-negative ints, got -1, -2, 64"),
    (lambda: ggml.dequantize(torch.zeros(2, 36, dtype=torch.uint8), "q4_0", (2.5, 64)), "shape: expected non-negative ints"),
    (lambda: ggml.unpack(torch.zeros(0, 640, dtype=torch.uint8), "q4_0", -5, 64), "expected positive ints, got -5, 64"),
    (lambda: ggml.dequantize_weight(torch.zeros(8, 36, dtype=torch.uint8), "q4_0", -8, 64), "expected non-negative ints"),
])
def test_bad_arguments_give_one_line_errors(call, message):
    with pytest.raises(ggml.GGMLError, match=re.escape(message)) as info:
        call()
    assert "\n" not in str(info.value)


def test_errors_are_kernel_input_errors():
    from fastllm.utils.errors import FastLLMError, KernelInputError

    assert issubclass(ggml.GGMLError, KernelInputError) and issubclass(KernelInputError, FastLLMError)
    with pytest.raises(KernelInputError):
        ggml.quantize(torch.ones(2, 48), "q4_0")
