"""The trainer end to end on tiny shards: learning, outputs, exact resume (also after SIGKILL
during a save), the non-finite guard, activation checkpointing, and bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fastllm.cli.config_io import build, load_config
from fastllm.model import load_pretrained
from fastllm.train import PretrainConfig, TrainingHalted, pretrain
from fastllm.train import trainer as trainer_module
from fastllm.utils.errors import ConfigError, InputFormatError

MODEL = {"preset": "tiny", "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 128}


def make_config(shards: Path, out: Path, **overrides) -> PretrainConfig:
    data = {"out_dir": str(out), "data": {"shards": str(shards), "seq_len": 32}, "model": dict(MODEL),
            "steps": 8, "batch_size": 8, "micro_batch": 4, "eval_every": 4, "eval_tokens": 512, "save_every": 3,
            "log_every": 1, "deterministic": True, "optim": {"lr": 1e-2, "warmup_steps": 2}}
    for key, value in overrides.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return build(PretrainConfig, data, "test")


def losses_of(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_learns_and_writes_every_output(shards, tmp_path, capsys):
    out = tmp_path / "run"
    result = pretrain(make_config(shards, out, steps=24, save_every=10, keep_last=2))
    assert result.losses[0] == pytest.approx(math.log(64), rel=0.1)
    assert result.val_loss < 0.6 * result.losses[0]
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["step-00000020", "step-00000024"]
    assert (out / "loss.png").stat().st_size > 1000
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [4, 8, 12, 16, 20, 24]
    assert {"loss", "lr", "grad_norm", "tokens", "tokens_per_s"} <= set(records[0])
    assert "val loss" in capsys.readouterr().out
    model = load_pretrained(out / "model")
    assert model.config.vocab_size == 64 and model.config.eos_id == 63


def _kill_during_save_script(config_path: Path, step: int) -> str:
    return textwrap.dedent(f"""
        import os, signal
        from fastllm.cli.config_io import load_config
        from fastllm.train import PretrainConfig, checkpoint, pretrain
        real_sha256 = checkpoint._sha256
        def sha256_or_die(path):  # runs while the manifest is written, after the data files
            if ".step-{step:08d}." in str(path):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_sha256(path)
        checkpoint._sha256 = sha256_or_die
        pretrain(load_config(PretrainConfig, {str(config_path)!r}))
    """)


@pytest.mark.slow
def test_resume_is_bit_exact_even_after_sigkill_during_a_save(shards, tmp_path, capsys):
    straight = pretrain(make_config(shards, tmp_path / "straight", save_model=False))
    interrupted = make_config(shards, tmp_path / "interrupted", save_model=False)
    config_path = tmp_path / "interrupted.yaml"
    from fastllm.cli.config_io import dump_yaml

    config_path.write_text(dump_yaml(interrupted))
    proc = subprocess.run([sys.executable, "-c", _kill_during_save_script(config_path, 6)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "FASTLLM_QUIET": "1"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    ckpt = tmp_path / "interrupted" / "ckpt"
    assert [p.name for p in ckpt.iterdir() if p.name.startswith("step-")] == ["step-00000003"]
    assert any(p.name.startswith(".step-00000006.") for p in ckpt.iterdir())  # the killed save
    assert len(losses_of(tmp_path / "interrupted")) == 6

    capsys.readouterr()
    resumed = pretrain(load_config(PretrainConfig, config_path, ["--resume"]))
    err = capsys.readouterr().err
    assert "ignoring partial checkpoint" in err and "resumed from" in err and "step-00000003" in err
    assert resumed.losses == straight.losses[3:]  # bit for bit
    assert losses_of(tmp_path / "interrupted") == straight.losses
    assert not any(p.name.startswith(".step-") for p in ckpt.iterdir())  # cleaned by the next save


def test_deterministic_mode_is_on_while_training_and_as_before_afterwards(shards, tmp_path, monkeypatch):
    """A Trainer used directly (not only pretrain()) scopes torch's deterministic mode to run()."""
    real = trainer_module.Trainer.forward_loss
    seen = []

    def watched(self, batch):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "forward_loss", watched)
    assert not torch.are_deterministic_algorithms_enabled()
    trainer = trainer_module.Trainer(make_config(shards, tmp_path / "run", steps=2, save_every=0, eval_every=0,
                                                 save_model=False))
    assert not torch.are_deterministic_algorithms_enabled()  # construction leaves it alone
    trainer.run()
    assert seen and all(seen)
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(TrainingHalted):  # restored after a failure too
        monkeypatch.setattr(trainer_module.Trainer, "forward_loss", lambda self, batch: real(self, batch) * math.nan)
        pretrain(make_config(shards, tmp_path / "halt", steps=2, save_every=0, eval_every=0, save_model=False,
                             on_nonfinite="halt"))
    assert not torch.are_deterministic_algorithms_enabled()


def test_nonfinite_steps_are_skipped_without_touching_weights(shards, tmp_path, monkeypatch):
    real = trainer_module.Trainer.forward_loss
    snapshots = {}

    def poisoned(self, batch):
        loss = real(self, batch)
        step = len(self.metrics.records and [r for r in self.metrics.records if "loss" in r])
        if step == 2:
            snapshots["before"] = {k: v.clone() for k, v in self.model.state_dict().items()}
            return loss * float("nan")
        if step == 3 and "after" not in snapshots:
            snapshots["after"] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return loss

    monkeypatch.setattr(trainer_module.Trainer, "forward_loss", poisoned)
    result = pretrain(make_config(shards, tmp_path / "skip", steps=5, save_every=0, eval_every=0,
                                  deterministic=False, save_model=False))
    assert result.skipped_steps == 1 and math.isnan(result.losses[2])
    assert all(torch.equal(snapshots["before"][k], snapshots["after"][k]) for k in snapshots["before"])
    assert all(math.isfinite(x) for i, x in enumerate(result.losses) if i != 2)
    with pytest.raises(TrainingHalted, match="non-finite loss/gradient at step 3"):
        pretrain(make_config(shards, tmp_path / "halt", steps=5, save_every=0, eval_every=0, save_model=False,
                             on_nonfinite="halt"))


def test_consecutive_skips_carry_over_a_resume(shards, tmp_path, monkeypatch):
    """Steps 2-4 are non-finite and max_skips=2: the run halts at step 4 whether or not it was
    interrupted after the checkpoint of step 3 (the streak is part of the checkpoint)."""
    current = {}
    real_lr, real_loss = trainer_module.learning_rate, trainer_module.Trainer.forward_loss

    def lr_and_note_step(step, total, optim):
        current["step"] = step
        return real_lr(step, total, optim)

    def poisoned(self, batch):
        if current["step"] == current.get("crash_at"):
            raise KeyboardInterrupt  # the process dies after its step-3 checkpoint
        loss = real_loss(self, batch)
        return loss * float("nan") if current["step"] in (1, 2, 3) else loss

    monkeypatch.setattr(trainer_module, "learning_rate", lr_and_note_step)
    monkeypatch.setattr(trainer_module.Trainer, "forward_loss", poisoned)
    config = dict(steps=6, save_every=3, eval_every=0, save_model=False, max_skips=2)
    with pytest.raises(TrainingHalted, match="at step 4 \\(3 in a row\\)"):
        pretrain(make_config(shards, tmp_path / "straight", **config))
    current["crash_at"] = 3
    with pytest.raises(KeyboardInterrupt):
        pretrain(make_config(shards, tmp_path / "interrupted", **config))
    current["crash_at"] = None
    with pytest.raises(TrainingHalted, match="at step 4 \\(3 in a row\\)"):
        pretrain(make_config(shards, tmp_path / "interrupted", **config, resume=True))


def test_resume_with_changed_schedule_or_data_settings_says_so(shards, tmp_path, capsys):
    out = tmp_path / "run"
    pretrain(make_config(shards, out, steps=2, save_every=2, eval_every=0, save_model=False))
    capsys.readouterr()
    pretrain(make_config(shards, out, steps=3, eval_every=0, save_model=False, resume=True, optim={"lr": 2e-2}))
    assert "note: steps, optim changed since" in capsys.readouterr().err
    pretrain(make_config(shards, out, steps=3, eval_every=0, save_model=False, resume=True, optim={"lr": 2e-2}))
    assert "note:" not in capsys.readouterr().err  # the step-3 checkpoint has these settings


def test_activation_checkpointing_gives_the_same_losses(shards, tmp_path):
    plain = pretrain(make_config(shards, tmp_path / "a", steps=3, save_every=0, save_model=False))
    recomputed = pretrain(make_config(shards, tmp_path / "b", steps=3, save_every=0, save_model=False,
                                      activation_checkpointing=True))
    assert recomputed.losses == pytest.approx(plain.losses, abs=1e-6)


def test_bad_input_is_one_line_errors(shards, tmp_path):
    base = dict(steps=2, save_every=0, save_model=False)
    pretrain(make_config(shards, tmp_path / "run", **{**base, "save_every": 2}))
    with pytest.raises(ConfigError, match=r"step-00000002/state.json: checkpoint of a different architecture \(dim=64"):
        pretrain(make_config(shards, tmp_path / "run", **base, resume=True, model={"dim": 96}))
    other = tmp_path / "other"
    other.mkdir()
    index = json.loads((shards / "index.json").read_text())
    for entry in index["splits"]["train"] + index["splits"]["val"]:
        (other / entry["file"]).write_bytes((shards / entry["file"]).read_bytes())
    (other / "index.json").write_text(json.dumps({**index, "tokenizer_hash": "another-tokenizer"}))
    with pytest.raises(ConfigError, match="state.json: trained on tokenizer test-tokeniz, the shards in .* use another-toke"):
        pretrain(make_config(other, tmp_path / "run", **base, resume=True))
    with pytest.raises(ConfigError, match="batch_size 8 is not a multiple of micro_batch x processes"):
        pretrain(make_config(shards, tmp_path / "x", **base, micro_batch=3))
    with pytest.raises(ConfigError, match="model.vocab_size is 32"):
        pretrain(make_config(shards, tmp_path / "x", **base, model={"vocab_size": 32}))
    with pytest.raises(ConfigError, match=r"flags: unknown key 'stepz'|unknown flag --stepz"):
        load_config(PretrainConfig, None, ["--stepz=3"])

    (other / "index.json").write_text(json.dumps({**index, "splits": {**index["splits"], "val": []}}))
    with pytest.raises(ConfigError, match="validation split has no window"):
        pretrain(make_config(other, tmp_path / "y", **base))
    # A corrupt token id (beyond the index's vocab_size) is named, not an embedding IndexError.
    (other / "index.json").write_text(json.dumps(index))
    for name in ("val-00000.bin", "train-00000.bin"):
        good = (other / name).read_bytes()
        (other / name).write_bytes(b"\xff" * len(good))
        with pytest.raises(InputFormatError, match=r"token id 65535 .* outside the vocabulary \(64\); .* corrupt"):
            pretrain(make_config(other, tmp_path / "y", **base))
        (other / name).write_bytes(good)
    (other / "train-00000.bin").write_bytes(b"\0" * 10)
    with pytest.raises(InputFormatError, match=r"train-00000.bin: .*(6000 tokens|12000 bytes)"):
        pretrain(make_config(other, tmp_path / "y", **base))
    with pytest.raises(InputFormatError, match="index.json: (missing|no shard index)"):
        pretrain(make_config(tmp_path / "nothing", tmp_path / "y", **base))


def test_tokenizer_that_did_not_make_the_shards_is_rejected(shards, tmp_path):
    from fastllm.tokenizer import train_bpe

    train_bpe(["some other text " * 10], 270).save(tmp_path / "tokenizer.json")
    with pytest.raises(ConfigError, match=r"index.json: the shards were tokenized with tokenizer test-tokeniz, "
                                          r"but .*tokenizer.json is [0-9a-f]{12}"):
        pretrain(make_config(shards, tmp_path / "run", steps=1, data={"tokenizer": str(tmp_path / "tokenizer.json")}))


def test_model_dir_ships_the_tokenizer_that_made_the_shards(shards, tmp_path):
    """Without data.tokenizer, the shard directory's tokenizer.json (fastllm prepare writes one)
    goes into model/, so the model directory is complete for generate, eval and transformers."""
    from fastllm.tokenizer import train_bpe

    tokenizer = train_bpe(["to be or not to be, that is the question " * 10], 300)
    index = json.loads((shards / "index.json").read_text())
    (shards / "index.json").write_text(json.dumps({**index, "vocab_size": tokenizer.vocab_size,
                                                   "tokenizer_hash": tokenizer.hash()}))
    tokenizer.save(shards / "tokenizer.json")
    pretrain(make_config(shards, tmp_path / "run", steps=1, save_every=0, eval_every=0))
    assert (tmp_path / "run" / "model" / "tokenizer.json").read_bytes() == (shards / "tokenizer.json").read_bytes()
    assert (tmp_path / "run" / "model" / "tokenizer_config.json").is_file()


def test_resume_with_another_world_size_is_refused(shards, tmp_path):
    from fastllm.train import checkpoint

    out = tmp_path / "run"
    pretrain(make_config(shards, out, steps=2, save_every=2, save_model=False))
    step_dir = out / "ckpt" / "step-00000002"
    state = json.loads((step_dir / "state.json").read_text())
    (step_dir / "state.json").write_text(json.dumps({**state, "world_size": 2}))
    manifest = json.loads((step_dir / "manifest.json").read_text())
    manifest["files"]["state.json"] = {"sha256": checkpoint._sha256(step_dir / "state.json"),
                                       "bytes": (step_dir / "state.json").stat().st_size}
    (step_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="written by 2 process\\(es\\), this run has 1"):
        pretrain(make_config(shards, out, steps=4, save_model=False, resume=True))


@pytest.mark.cuda
def test_gpu_bf16_training_logs_mfu(shards, tmp_path):
    result = pretrain(make_config(shards, tmp_path / "gpu", steps=6, save_every=0, deterministic=False,
                                  device="cuda", save_model=False))
    records = [json.loads(line) for line in (tmp_path / "gpu" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(x) for x in result.losses)
    assert result.losses[-1] < result.losses[0]
    from fastllm.train.metrics import peak_flops

    if peak_flops(torch.device("cuda")) is not None:  # a card with a known bf16 peak
        assert all(0 < r["mfu"] < 1 for r in records if "loss" in r)
