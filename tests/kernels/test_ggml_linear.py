"""GGMLLinear: built from nn.Linear or GGUF bytes, repacked for the kernels, GGUF bytes exact."""

import mmap

import pytest
import torch
from torch import nn

from fastllm.kernels import ggml
from fastllm.kernels.ggml import GGMLLinear


@pytest.mark.parametrize("qtype", ["q4_0", "q8_0"])
def test_from_linear_keeps_exact_gguf_bytes_and_matches_the_op(qtype, seeded):
    linear = nn.Linear(96, 37)
    layer = GGMLLinear.from_linear(linear, qtype)
    blocks = ggml.quantize(linear.weight.detach(), qtype)
    assert torch.equal(layer.ggml_bytes(), blocks)
    assert layer.packed.shape == (3, layer.packed.shape[1])  # ceil(37 / 16) tiles
    x = torch.randn(4, 96, generator=seeded)
    expected = ggml.ggml_matmul(x, blocks, qtype, 37) + linear.bias.detach()
    assert torch.equal(layer(x), expected)
    torch.testing.assert_close(layer.dequantized_weight(), ggml.dequantize(blocks, qtype, (37, 96)))


def test_close_to_the_float_layer(seeded):
    linear = nn.Linear(256, 64)
    x = torch.randn(8, 256, generator=seeded)
    for qtype, budget in (("q4_0", 0.1), ("q8_0", 0.01)):  # relative error of the quantized layer
        y = GGMLLinear.from_linear(linear, qtype)(x)
        reference = linear(x).detach()
        assert float((y - reference).norm() / reference.norm()) < budget, qtype


def test_non_contiguous_input_bias_free_and_state_dict(seeded):
    linear = nn.Linear(64, 20, bias=False)
    layer = GGMLLinear.from_linear(linear, "q4_0")
    assert layer.bias is None
    x = torch.randn(64, 3, generator=seeded).t()
    assert torch.equal(layer(x), layer(x.contiguous()))
    clone = GGMLLinear(64, 20, "q4_0", bias=False)
    clone.load_state_dict(layer.state_dict())
    assert torch.equal(clone.ggml_bytes(), layer.ggml_bytes())


def test_from_ggml_bytes_checks_shapes(seeded):
    blocks = ggml.quantize(torch.randn(16, 64, generator=seeded), "q8_0")
    layer = GGMLLinear.from_ggml_bytes(blocks, "q8_0", 64, 16, bias=torch.zeros(16))
    assert torch.equal(layer.ggml_bytes(), blocks)
    with pytest.raises(ggml.GGMLError, match="does not hold a 17 x 64 q8_0 weight"):
        GGMLLinear.from_ggml_bytes(blocks, "q8_0", 64, 17)
    with pytest.raises(ggml.GGMLError, match="not a positive multiple of 32"):
        GGMLLinear(60, 16)
    with pytest.raises(ggml.GGMLError, match="in_features, out_features: expected positive ints, got 64, 0"):
        GGMLLinear(64, 0)


def test_trains_an_input_projection_through_frozen_weights(seeded):
    layer = GGMLLinear.from_linear(nn.Linear(64, 16), "q8_0")
    x = torch.randn(4, 64, generator=seeded, requires_grad=True)
    layer(x).sum().backward()
    torch.testing.assert_close(x.grad, layer.dequantized_weight().sum(0).expand(4, 64))


def test_huge_page_buffers_behave_like_tensors(seeded):
    from fastllm.kernels.ggml.hugepages import HUGE_PAGE, copy_to_huge_pages, empty_bytes

    small = empty_bytes((4, 8))
    assert small.shape == (4, 8) and small.dtype == torch.uint8
    source = torch.randint(0, 256, (3, HUGE_PAGE // 2 + 5), dtype=torch.uint8, generator=seeded)
    copy = copy_to_huge_pages(source)
    assert torch.equal(copy, source)
    if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux: starts on a 2 MiB boundary, so THP can back it
        assert copy.data_ptr() % HUGE_PAGE == 0
    copy[0, 0] += 1  # writable, and independent of the source
    assert not torch.equal(copy, source)
