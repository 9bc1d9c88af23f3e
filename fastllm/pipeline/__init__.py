"""`fastllm pipeline`: the whole chain on the embedded corpus (or a prepare config), one report."""

from fastllm.pipeline.config import PipelineConfig
from fastllm.pipeline.run import run_pipeline

__all__ = ["PipelineConfig", "run_pipeline"]
