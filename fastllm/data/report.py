"""stats.json and report.md: documents and bytes per stage and source, every drop reason, the
accounting identity per stage, duplicate clusters, PII and decontamination counts, tokens per source
and the mix, the time per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastllm.cli.config_io import to_dict
from fastllm.data.stats import bytes_edited, identity_errors
from fastllm.utils.atomic import write_json, write_text

STAGE_ORDER = ("read", "normalize", "quality", "blocklist", "decontam", "pii", "dedup")


def build_stats(stats: dict[str, Any], timings: dict[str, float], config) -> dict[str, Any]:
    stages = {name: stats[name] for name in STAGE_ORDER if name in stats}
    errors = [e for name, s in stages.items() for e in identity_errors(name, s)]
    return {"stages": stages, "identity_ok": not errors, "identity_errors": errors,
            "tokenize": stats.get("tokenize", {}), "mix": stats.get("mix", {}),
            "seconds_per_stage": {k: round(v, 3) for k, v in timings.items()}, "config": to_dict(config)}


def _markdown(doc: dict[str, Any]) -> str:
    lines = ["# Data preparation report", "",
             f"Accounting identity (docs in = out + dropped, every stage and source): "
             f"**{'exact' if doc['identity_ok'] else 'BROKEN: ' + '; '.join(doc['identity_errors'])}**", "",
             "## Stages", "", "| stage | source | docs in | docs out | dropped | bytes in | bytes out | bytes edited |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    drops = []
    for stage, s in doc["stages"].items():
        for source, c in s["sources"].items():
            dropped = sum(d["docs"] for d in c["dropped"].values())
            lines.append(f"| {stage} | {source} | {c['docs_in']} | {c['docs_out']} | {dropped} | {c['bytes_in']} | "
                         f"{c['bytes_out']} | {bytes_edited(c)} |")
            drops += [(stage, source, reason, d) for reason, d in sorted(c["dropped"].items())]
    lines += ["", "## Drop reasons", "", "| stage | source | reason | docs | bytes |", "|---|---|---|---:|---:|"]
    lines += [f"| {st} | {src} | {reason} | {d['docs']} | {d['bytes']} |" for st, src, reason, d in drops]
    extras = {stage: s.get("extra") for stage, s in doc["stages"].items() if s.get("extra")}
    if extras:
        lines += ["", "## Details", ""]
        for stage, extra in extras.items():
            for key, value in extra.items():
                lines.append(f"- {stage} / {key}: {value}")
    if doc["mix"]:
        lines += ["", "## Mix (training tokens per source)", "",
                  "| source | available | mixed | share | target | val tokens |", "|---|---:|---:|---:|---:|---:|"]
        for source, m in doc["mix"].items():
            lines.append(f"| {source} | {m['available_train_tokens']} | {m['mixed_train_tokens']} | {m['train_share']} | "
                         f"{m['target_share'] if m['target_share'] is not None else 'natural'} | {m['val_tokens']} |")
    if doc["seconds_per_stage"]:
        total = sum(doc["seconds_per_stage"].values()) or 1.0
        lines += ["", "## Time", "", "| stage | seconds | share |", "|---|---:|---:|"]
        lines += [f"| {k} | {v:.2f} | {v / total:.0%} |" for k, v in doc["seconds_per_stage"].items()]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, stats: dict[str, Any], timings: dict[str, float], config) -> dict[str, Any]:
    doc = build_stats(stats, timings, config)
    write_json(out_dir / "stats.json", doc)
    write_text(out_dir / "report.md", _markdown(doc))
    return doc
