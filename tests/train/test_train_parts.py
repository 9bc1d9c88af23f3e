"""Trainer parts in isolation: schedules, AdamW groups, the window sampler, checkpoint files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fastllm.model import Llama, ModelConfig
from fastllm.train import checkpoint
from fastllm.train.config import OptimSection
from fastllm.train.data import WindowSampler, eval_windows, open_shards
from fastllm.train.optim import build_optimizer, param_groups
from fastllm.train.schedule import learning_rate


def test_cosine_schedule():
    optim = OptimSection(lr=1.0, min_lr_ratio=0.1, warmup_steps=10, schedule="cosine")
    lrs = [learning_rate(s, 110, optim) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 50 / 99)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_wsd_and_constant_schedules():
    optim = OptimSection(lr=2.0, min_lr_ratio=0.0, warmup_steps=5, schedule="wsd", decay_fraction=0.2)
    lrs = [learning_rate(s, 100, optim) for s in range(100)]
    assert lrs[4] == lrs[50] == lrs[79] == 2.0
    assert lrs[80] == pytest.approx(2.0 * 19 / 20) and lrs[99] == pytest.approx(0.0)
    constant = OptimSection(lr=1.0, warmup_steps=2, schedule="constant")
    assert [learning_rate(s, 10, constant) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]


def test_no_weight_decay_on_norms_and_embeddings():
    model = Llama(ModelConfig.preset("tiny", n_layers=1, vocab_size=50, tie_embeddings=False))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} == {
        "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight", "model.norm.weight"}
    assert "lm_head.weight" in {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    tied = Llama(ModelConfig.preset("tiny", n_layers=1, vocab_size=50))
    optimizer = build_optimizer(tied, OptimSection(), torch.device("cpu"))
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(tied.parameters()))
    assert optimizer.defaults.get("fused") is True


def test_window_sampler_is_deterministic_and_rank_slices_partition_the_batch():
    arrays = [np.arange(100, dtype=np.uint16), np.arange(1000, 1050, dtype=np.uint16), np.arange(5, dtype=np.uint16)]
    sampler = WindowSampler(arrays, 8, seed=3, where="test")
    full = sampler.batch(7, 6, slice(0, 6))
    assert full.shape == (6, 9) and full.dtype == torch.int64
    assert torch.equal(full, WindowSampler(arrays, 8, seed=3, where="test").batch(7, 6, slice(0, 6)))
    assert torch.equal(torch.cat([sampler.batch(7, 6, slice(0, 3)), sampler.batch(7, 6, slice(3, 6))]), full)
    assert not torch.equal(sampler.batch(8, 6, slice(0, 6)), full)
    assert torch.all(full[:, 1:] - full[:, :-1] == 1)  # contiguous windows, never across shards
    starts = torch.cat([sampler.batch(s, 64, slice(0, 64))[:, 0] for s in range(20)])
    assert set(starts.tolist()) <= set(range(0, 92)) | set(range(1000, 1042))
    assert (starts >= 1000).float().mean().item() == pytest.approx(42 / 134, abs=0.06)  # uniform over starts


def test_eval_windows_are_fixed_and_non_overlapping():
    windows = eval_windows([np.arange(50, dtype=np.uint16)], 8, max_tokens=24)
    assert windows[:, 0].tolist() == [0, 8, 16]
    assert eval_windows([np.arange(5, dtype=np.uint16)], 8, 100).shape == (0, 9)


def test_open_shards_reads_the_index(shards):
    opened = open_shards(shards)
    assert opened.vocab_size == 64 and opened.eos_id == 63 and opened.tokenizer_hash == "test-tokenizer"
    assert opened.num_tokens("train") == 10000 and opened.num_tokens("val") == 1500


def test_checkpoint_manifest_and_damage_detection(tmp_path):
    root = tmp_path / "ckpt"
    root.mkdir()
    tensors = {"model": {"w": torch.arange(6.0).reshape(2, 3)}}
    for step in (1, 2, 3):
        checkpoint.save(root, step, tensors, {"step": step}, keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002", "step-00000003"]
    manifest = json.loads((root / "step-00000003" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "state.json"}
    loaded, state = checkpoint.load(root / "step-00000003")
    assert torch.equal(loaded["model"]["w"], tensors["model"]["w"]) and state["step"] == 3

    blob = bytearray((root / "step-00000003" / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF  # a flipped bit in the data
    (root / "step-00000003" / "model.safetensors").write_bytes(bytes(blob))
    messages = []
    assert checkpoint.latest_complete(root, messages.append) == root / "step-00000002"
    assert messages == [f"ignoring checkpoint {root / 'step-00000003'}: model.safetensors does not match its checksum"]
    with pytest.raises(Exception, match="not a complete checkpoint: model.safetensors does not match"):
        checkpoint.load(root / "step-00000003")


def test_manifest_must_vouch_for_every_file(tmp_path):
    root = tmp_path / "ckpt"
    root.mkdir()
    path = checkpoint.save(root, 1, {"model": {"w": torch.ones(3)}}, {"step": 1}, keep_last=1)
    manifest = json.loads((path / "manifest.json").read_text())

    def verify_with(files):
        (path / "manifest.json").write_text(json.dumps({**manifest, "files": files}))
        return checkpoint.verify(path)

    assert verify_with(manifest["files"]) is None
    assert verify_with({}) == "files not in the manifest: model.safetensors, state.json"
    assert verify_with({**manifest["files"], "state.json": {"sha256": "0" * 64}}) == "unreadable manifest entry for state.json"
    assert verify_with({**manifest["files"], "../../x": manifest["files"]["state.json"]}).startswith("unreadable manifest")
    assert verify_with([1, 2]).startswith("unreadable manifest")
    verify_with(manifest["files"])
    (path / "extra.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    assert checkpoint.verify(path) == "files not in the manifest: extra.safetensors"
    (path / "extra.safetensors").unlink()
    # A save killed between moving an old step directory aside and renaming the new one in leaves
    # a `.step-N.old` directory; the next save removes it with the other leftovers.
    (root / ".step-00000001.old").mkdir()
    checkpoint.save(root, 2, {"model": {"w": torch.ones(3)}}, {"step": 2}, keep_last=1)
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002"]


def test_a_resave_killed_between_its_renames_keeps_the_old_copy(tmp_path):
    # Re-saving step 2 moves the complete step-2 aside first; a kill before the new one is renamed
    # in leaves only `.step-00000002.old`, which resume puts back instead of losing the step.
    root = tmp_path / "ckpt"
    root.mkdir()
    checkpoint.save(root, 2, {"model": {"w": torch.ones(3)}}, {"step": 2}, keep_last=2)
    (root / "step-00000002").rename(root / ".step-00000002.old")
    assert checkpoint.latest_complete(root, print) == root / "step-00000002"
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002"]


def test_optimizer_state_flattening_round_trip():
    model = Llama(ModelConfig.preset("tiny", n_layers=1, vocab_size=50))
    optimizer = build_optimizer(model, OptimSection(), torch.device("cpu"))
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    from fastllm.train import distributed

    _, state = distributed.full_state(model, optimizer)
    tensors, groups = checkpoint.flatten_optimizer(state)
    assert "state.model.layers.0.mlp.up_proj.weight.exp_avg_sq" in tensors
    json.dumps(groups)  # plain JSON
    back = checkpoint.unflatten_optimizer(tensors, json.loads(json.dumps(groups)))
    assert back["param_groups"][0]["betas"] == (0.9, 0.95)
    assert all(torch.equal(back["state"][n][k], v) for n, s in state["state"].items() for k, v in s.items())


def test_device_names_this_machine_lacks_are_config_errors():
    from fastllm.train.distributed import pick_device
    from fastllm.utils.errors import ConfigError

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="'bogus' is not a device name"):
        pick_device("bogus")
    with pytest.raises(ConfigError, match=f"'cuda:99': torch sees {torch.cuda.device_count()} GPU"):
        pick_device("cuda:99")
