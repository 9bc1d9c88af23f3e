"""The scalar fp16 conversions every native kernel uses match numpy bit for bit."""

import numpy as np
import torch

from fastllm import _ext


def _to_fp16_bits(values: np.ndarray) -> np.ndarray:
    src = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    dst = torch.empty(src.numel(), dtype=torch.int16)
    _ext.cpu().core.fp32_to_fp16(src.data_ptr(), dst.data_ptr(), src.numel(), 2)
    return dst.numpy().view(np.uint16)


def test_every_fp16_value_converts_to_fp32_exactly():
    bits = np.arange(1 << 16, dtype=np.uint16)
    src = torch.from_numpy(bits.view(np.int16).copy())
    dst = torch.empty(1 << 16, dtype=torch.float32)
    _ext.cpu().core.fp16_to_fp32(src.data_ptr(), dst.data_ptr(), 1 << 16, 2)
    expected = bits.view(np.float16).astype(np.float32)
    got = dst.numpy()
    finite = np.isfinite(expected)
    assert np.array_equal(got[finite].view(np.uint32), expected[finite].view(np.uint32))
    assert np.array_equal(np.isnan(got), np.isnan(expected))


def test_fp32_to_fp16_rounds_like_numpy():
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.standard_normal(100_000).astype(np.float32) * 10.0 ** rng.integers(-9, 6, 100_000),
        # Ties and boundaries: halfway between fp16 neighbours, subnormal edges, overflow edge.
        (np.arange(2048, dtype=np.float32) + 0.5) * 2.0**-24,
        np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, 1e9, -1e9, 2.0**-14, 2.0**-25, 2.0**-26,
                  np.inf, -np.inf], dtype=np.float32),
    ])
    assert np.array_equal(_to_fp16_bits(values), values.astype(np.float16).view(np.uint16))


def test_nan_stays_nan():
    out = _to_fp16_bits(np.array([np.nan, -np.nan], dtype=np.float32)).view(np.float16)
    assert np.isnan(out).all()
