"""torchrun with 2 CPU processes (gloo): DDP and FSDP2 match one process on the same global batch
(fp32 losses within 1e-5 over 20 steps), and an FSDP2 run resumes from its checkpoint and gathers
its shards into an HF model directory equal to the one-process model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastllm.cli.config_io import dump_yaml
from fastllm.model import load_pretrained
from fastllm.train import pretrain

sys.path.insert(0, str(Path(__file__).parent))
from test_pretrain import make_config  # noqa: E402

STEPS = 20


def _torchrun(config_path: Path, *flags: str) -> None:
    env = {**os.environ, "FASTLLM_QUIET": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fastllm", "pretrain", "--config", str(config_path), "--quiet", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-3000:]


def _losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


@pytest.mark.slow
def test_two_processes_match_one(shards, tmp_path):
    common = dict(steps=STEPS, deterministic=False, eval_every=0, eval_tokens=256,
                  optim={"schedule": "constant", "warmup_steps": 3})
    single = pretrain(make_config(shards, tmp_path / "single", save_every=0, **common))

    ddp = make_config(shards, tmp_path / "ddp", save_every=0, save_model=False, **common)
    (tmp_path / "ddp.yaml").write_text(dump_yaml(ddp))
    _torchrun(tmp_path / "ddp.yaml")
    assert _losses(tmp_path / "ddp") == pytest.approx(single.losses, abs=1e-5)

    fsdp = make_config(shards, tmp_path / "fsdp", save_every=10, parallel="fsdp", **common)
    (tmp_path / "fsdp.yaml").write_text(dump_yaml(fsdp))
    _torchrun(tmp_path / "fsdp.yaml", "--steps=10")
    assert _losses(tmp_path / "fsdp") == pytest.approx(single.losses[:10], abs=1e-5)
    _torchrun(tmp_path / "fsdp.yaml", "--resume")
    state = json.loads((tmp_path / "fsdp" / "ckpt" / "step-00000020" / "state.json").read_text())
    assert state["world_size"] == 2
    assert _losses(tmp_path / "fsdp") == pytest.approx(single.losses, abs=1e-5)
    # The sharded model is gathered into one HF directory equal to the one-process model.
    ours, theirs = load_pretrained(tmp_path / "fsdp" / "model"), load_pretrained(tmp_path / "single" / "model")
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0, msg=name)
