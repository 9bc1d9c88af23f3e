"""torch.compile over the model and the trainer on the CPU: the custom ops fastllm::rope and
fastllm::attention (fake kernels + autograd) trace into one graph (fullgraph=True fails on any
graph break), and the compiled forward and backward equal eager's within float32 tolerance.

Inductor compiles C++ with the system compiler on the CPU: these tests take ~10-30 s each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from fastllm.cli.config_io import build
from fastllm.model import Llama, ModelConfig
from fastllm.train import PretrainConfig, pretrain


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _loss_and_grads(model: torch.nn.Module, call, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    logits = call(ids)
    logits.float().square().mean().backward()
    return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_compiled_model_forward_and_backward_equal_eager_without_graph_breaks():
    torch.manual_seed(0)
    model = Llama(ModelConfig.preset("tiny"))
    ids = torch.randint(0, model.config.vocab_size, (2, 24))
    eager_logits, eager_grads = _loss_and_grads(model, model, ids)
    compiled = torch.compile(model, fullgraph=True)  # the default backend: inductor
    logits, grads = _loss_and_grads(model, compiled, ids)
    torch.testing.assert_close(logits, eager_logits, rtol=1e-4, atol=1e-5)
    assert grads.keys() == eager_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def _write_shards(root: Path, vocab: int = 64) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    splits = {}
    for split, size in (("train", 4000), ("val", 1000)):
        rng.integers(0, vocab, size).astype("<u2").tofile(root / f"{split}-00000.bin")
        splits[split] = [{"file": f"{split}-00000.bin", "tokens": size, "documents": 1}]
    index = {"format": "fastllm-shards-v1", "dtype": "uint16", "vocab_size": vocab, "tokenizer_hash": "test",
             "eos_id": vocab - 1, "splits": splits, "tokens_per_source": {"random": 5000}}
    (root / "index.json").write_text(json.dumps(index))
    return root


def test_trainer_compile_option_trains_on_the_cpu(tmp_path):
    model = {"preset": "tiny", "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 128}
    data = {"data": {"shards": str(_write_shards(tmp_path / "shards")), "seq_len": 32}, "model": model,
            "steps": 2, "batch_size": 4, "micro_batch": 4, "eval_every": 0, "eval_tokens": 0, "save_every": 0,
            "save_model": False, "log_every": 1, "device": "cpu", "deterministic": True}
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        eager = pretrain(build(PretrainConfig, {**data, "out_dir": str(tmp_path / "eager")}, "test"))
        assert counters["stats"]["unique_graphs"] == 0
        compiled = pretrain(build(PretrainConfig, {**data, "out_dir": str(tmp_path / "compiled"), "compile": True},
                                  "test"))
    finally:
        torch.use_deterministic_algorithms(deterministic)
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]  # it did compile
    assert len(compiled.losses) == 2
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-4)
