"""Loading a checkpoint moves the file's tensors into the model instead of copying them, so peak
memory stays near one copy of the weights (a 2x peak once made a 8B model need 64 GB to load)."""

from __future__ import annotations

import pytest
import torch

from fastllm.model import load_pretrained
from fastllm.model.config import ModelConfig
from fastllm.model.hf_io import model_from_tensors, save_pretrained
from fastllm.model.llama import Llama

CONFIG = ModelConfig(vocab_size=96, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, ffn_dim=64, max_seq_len=32)


def _hf_tensors(model: Llama) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


@pytest.mark.parametrize("tied", [False, True])
def test_parameters_are_the_given_tensors_and_the_dict_is_consumed(tied):
    config = ModelConfig(**{**CONFIG.__dict__, "tie_embeddings": tied})
    source = Llama(config)
    tensors = _hf_tensors(source)
    pointers = {name: t.data_ptr() for name, t in tensors.items()}
    model = model_from_tensors(config, tensors, where="t")
    assert tensors == {}
    for name, param in model.state_dict().items():
        assert param.data_ptr() == pointers[name if not (tied and name == "lm_head.weight") else "model.embed_tokens.weight"]
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    ids = torch.randint(0, config.vocab_size, (2, 9))
    torch.testing.assert_close(model(ids), source(ids), rtol=0, atol=0)
    assert all(p.requires_grad for p in model.parameters())
    assert model.rope_cos.device.type == "cpu" and model.rope_cos.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_load_pretrained_converts_to_the_requested_dtype(tmp_path, dtype):
    source = Llama(CONFIG)
    save_pretrained(source, tmp_path / "m", dtype=torch.bfloat16)
    model = load_pretrained(tmp_path / "m", dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {dtype} and model.rope_cos.dtype == torch.float32
    expected = source.model.embed_tokens.weight.to(torch.bfloat16).to(dtype)
    torch.testing.assert_close(model.model.embed_tokens.weight, expected, rtol=0, atol=0)
