"""runs/<name>/report.md: what the pipeline did and how well the model does, on one page."""

from __future__ import annotations

import json
import math
from pathlib import Path

from fastllm.pipeline.config import PipelineConfig
from fastllm.utils.atomic import write_text


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _perplexity_table(results: dict) -> list[str]:
    lines = ["| text | tokens | model perplexity | model bits/byte | unigram perplexity | unigram bits/byte | "
             "gain (bits/byte) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, pair in results.items():
        ours, unigram = pair["model"], pair["unigram"]
        gain = None if ours["bits_per_byte"] is None else unigram["bits_per_byte"] - ours["bits_per_byte"]
        lines.append(f"| {label} | {ours['tokens']:,} | {_fmt(ours['perplexity'], 2)} | {_fmt(ours['bits_per_byte'])} "
                     f"| {_fmt(unigram['perplexity'], 2)} | {_fmt(unigram['bits_per_byte'])} | {_fmt(gain)} |")
    return lines


def _data_section(data_dir: Path, embedded: bool) -> list[str]:
    index = json.loads((data_dir / "index.json").read_text(encoding="utf-8"))
    splits = index["splits"]
    count = {s: (sum(e["tokens"] for e in splits.get(s, [])), sum(e.get("documents", 0) for e in splits.get(s, [])))
             for s in ("train", "val")}
    return [f"- training split: {count['train'][0]:,} tokens in {count['train'][1]} documents",
            f"- validation split{' (whole plays held out)' if embedded else ''}: {count['val'][0]:,} tokens in "
            f"{count['val'][1]} documents",
            f"- tokenizer: byte-level BPE, {index['vocab_size']:,} tokens, hash `{index['tokenizer_hash'][:16]}`",
            "- data preparation report: [data/report.md](data/report.md)"]


def write_report(config: PipelineConfig, run_dir: Path, data_dir: Path, train, evaluation: dict,
                 times: dict[str, float]) -> Path:
    results = evaluation["perplexity"]
    first = next(iter(results.values()))
    beats = first["model"]["loss"] < first["unigram"]["loss"]
    mode = "non-overlapping" if evaluation["stride"] == evaluation["window"] else f"sliding, stride {evaluation['stride']}"
    model_config = json.loads((run_dir / "model" / "config.json").read_text(encoding="utf-8"))
    val_loss = train.val_loss
    lines = [
        f"# fastllm pipeline: {config.name}", "",
        "prepare -> tokenizer -> pretrain -> perplexity, from raw text to an evaluated model "
        "(`fastllm pipeline`; every artifact is in this directory).", "",
        "## Data", "", *_data_section(data_dir, config.prepare_config is None), "",
        "## Model and training", "",
        f"- model: LLaMA-style, preset `{config.preset}`: {model_config['num_hidden_layers']} layers, d "
        f"{model_config['hidden_size']}, {model_config['num_attention_heads']} heads "
        f"({model_config['num_key_value_heads']} KV), {_param_count(run_dir)}; HF format in [model/](model/)",
        f"- {train.steps} steps x {config.batch_size} x {config.seq_len} tokens = {train.tokens:,} tokens; "
        f"{train.seconds:.0f}s this run ({train.skipped_steps} skipped steps)",
        f"- final train loss {_fmt(train.train_loss)}; validation loss {_fmt(val_loss)}"
        + (f" (perplexity {math.exp(min(val_loss, 700)):.2f})" if val_loss is not None else ""), "",
        "![training and validation loss](loss.png)", "",
        f"## Perplexity (windows of {evaluation['window']} tokens, {mode})", "",
        *_perplexity_table(results), "",
        f"The unigram baseline predicts every token from its training-set frequency. The model "
        f"{'beats' if beats else 'does NOT beat'} it on the held-out plays by "
        f"{first['unigram']['bits_per_byte'] - first['model']['bits_per_byte']:.3f} bits per byte.", "",
        "## Samples (temperature 0.8, top-p 0.95)", "",
    ]
    for prompt, text in evaluation["samples"]:
        shown = (prompt + text).replace("```", "'''")
        lines += [f"Prompt: {prompt.strip() or '(start of a document)'!s}", "", "```text", shown.strip(), "```", ""]
    lines += ["## Time", "", "| stage | seconds |", "|---|---:|",
              *(f"| {stage} | {seconds:.1f} |" for stage, seconds in times.items()),
              f"| total | {sum(times.values()):.1f} |", ""]
    path = run_dir / "report.md"
    write_text(path, "\n".join(lines))
    return path


def _param_count(run_dir: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(run_dir / "model" / "model.safetensors"), framework="np") as handle:
        total = sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())  # noqa: SIM118
    return f"{total / 1e6:.2f}M parameters"
