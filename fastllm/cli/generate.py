"""`fastllm generate --model runs/x/model --prompt "To be"`: sample text from a model directory
or a .gguf file with the KV cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastllm.cli.main import Command


@dataclass
class GenerateConfig:
    model: Path = field(default=Path("runs/shakespeare/model"), metadata={"help": "HF-format model directory or .gguf file"})
    prompt: str = field(default="", metadata={"help": "text to continue (empty: start a new document)"})
    tokenizer: Path | None = field(default=None, metadata={"help": "tokenizer.json (default: the model directory's)"})
    max_new_tokens: int = field(default=100, metadata={"help": "tokens to generate per sample"})
    num_samples: int = field(default=1, metadata={"help": "independent samples"})
    temperature: float = field(default=0.8, metadata={"help": "0 for greedy decoding"})
    top_k: int = field(default=0, metadata={"help": "sample from the k most likely tokens (0: all)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass (1: off)"})
    seed: int | None = field(default=None, metadata={"help": "random seed for reproducible samples"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda"})
    dtype: Literal["float32", "bfloat16", "float16"] = field(default="float32", metadata={"help": "weight dtype"})

    def validate(self) -> None:
        if self.max_new_tokens <= 0 or self.num_samples <= 0:
            raise ValueError("max_new_tokens and num_samples must be positive")
        from fastllm.model.generate import Sampling

        Sampling(self.temperature, self.top_k, self.top_p).validate()


def run(config: GenerateConfig) -> int:
    import torch

    from fastllm.model import load_pretrained
    from fastllm.model.generate import generate_text
    from fastllm.model.hf_io import load_tokenizer
    from fastllm.train.distributed import pick_device

    tokenizer = load_tokenizer(config.model, config.tokenizer)
    model = load_pretrained(config.model, dtype=getattr(torch, config.dtype), device=pick_device(config.device))
    try:
        samples = generate_text(model, tokenizer, config.prompt, config.max_new_tokens, num_samples=config.num_samples,
                                temperature=config.temperature, top_k=config.top_k, top_p=config.top_p, seed=config.seed)
    except ValueError as exc:
        from fastllm.utils.errors import ConfigError

        raise ConfigError(f"{config.model}: {exc}") from None
    for i, text in enumerate(samples):
        if config.num_samples > 1:
            print(f"--- sample {i + 1}")
        print(config.prompt + text)
    return 0


COMMANDS = {None: Command("Generate text from a model directory (HF format) or a .gguf file, with greedy, "
                          "temperature, top-k and top-p sampling.", GenerateConfig, run)}
