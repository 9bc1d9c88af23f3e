"""`fastllm generate --model runs/x/model --prompt "To be"`: sample text from a model directory
or a .gguf file with the KV cache.

A .gguf file brings its own tokenizer (tokenizer.ggml.*), so `--tokenizer` is only needed for a
file without one. Generation stops at the model's eos and at end-of-turn tokens the vocabulary has
(<|im_end|>, <|eot_id|>, <|endoftext|>, <|end_of_text|>). `--chat` wraps the prompt as one user
turn of a ChatML conversation (<|im_start|>role\\n...<|im_end|>), with the default system prompt
the model's chat template writes, and prints only the answer:

    fastllm generate --model SmolLM2-135M-Instruct.Q4_1.gguf --chat --prompt "What is the capital of France?"
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastllm.cli.main import Command
from fastllm.utils.errors import ConfigError

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>")


@dataclass
class GenerateConfig:
    model: Path = field(default=Path("runs/shakespeare/model"), metadata={"help": "HF-format model directory or .gguf file"})
    prompt: str = field(default="", metadata={"help": "text to continue (empty: start a new document)"})
    tokenizer: Path | None = field(default=None, metadata={"help": "tokenizer.json (default: the model directory's, "
                                                                   "or the .gguf file's own)"})
    chat: bool = field(default=False, metadata={"help": "send the prompt as a user message (ChatML chat template) "
                                                        "and print the assistant's answer"})
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


@dataclass(frozen=True)
class ModelTokenizer:
    """A model's tokenizer and what generation needs beside it."""

    tokenizer: object
    prefix_ids: tuple[int, ...] = ()  # BOS, when the model's tokenizer adds one
    stop_ids: tuple[int, ...] = ()
    chat_template: str | None = None


def model_tokenizer(model: Path, tokenizer: Path | None) -> ModelTokenizer:
    from fastllm.model.hf_io import load_tokenizer
    from fastllm.tokenizer.gguf_read import read_gguf_tokenizer

    if tokenizer is None and model.suffix == ".gguf" and model.is_file():
        info = read_gguf_tokenizer(model)
        tok, template = info.tokenizer, info.chat_template
        prefix = (info.bos_id,) if info.add_bos and info.bos_id is not None else ()
    else:
        tok, template, prefix = load_tokenizer(model, tokenizer), None, ()
        config_file = (Path(tokenizer) if tokenizer is not None else model)
        config_file = (config_file if config_file.is_dir() else config_file.parent) / "tokenizer_config.json"
        if config_file.is_file():
            try:
                template = json.loads(config_file.read_text(encoding="utf-8")).get("chat_template")
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                template = None
    stops = [tok.eos_id] + [tok.special_tokens.get(name) for name in END_OF_TURN]
    stops = tuple(dict.fromkeys(i for i in stops if i is not None))
    return ModelTokenizer(tok, prefix, stops, template if isinstance(template, str) else None)


def chatml_prompt(user: str, template: str | None, where: str) -> str:
    """The text a ChatML template renders for one user message with add_generation_prompt: the
    template's default system turn (if it writes one), the user turn, and the assistant's header."""
    if not template or "<|im_start|>" not in template:
        raise ConfigError(f"{where}: --chat needs a ChatML chat template (<|im_start|>role ... <|im_end|>); "
                          "this model has " + ("none" if not template else "another kind") +
                          "; give the prompt as plain text")
    system = re.search(r"<\|im_start\|>system(?:\n|\\n)([^{}'\"]*?)<\|im_end\|>", template)
    head = f"<|im_start|>system\n{system.group(1)}<|im_end|>\n" if system else ""
    return f"{head}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def run(config: GenerateConfig) -> int:
    import torch

    from fastllm.model import load_pretrained
    from fastllm.model.generate import generate_text
    from fastllm.train.distributed import pick_device

    found = model_tokenizer(config.model, config.tokenizer)
    prompt = config.prompt
    if config.chat:
        prompt = chatml_prompt(config.prompt, found.chat_template, str(config.model))
        missing = [t for t in ("<|im_start|>", "<|im_end|>") if t not in found.tokenizer.special_tokens]
        if missing:  # else the turn markers would be encoded as plain text
            raise ConfigError(f"{config.tokenizer or config.model}: --chat needs the ChatML token {missing[0]} in "
                              "the tokenizer, which has none; give the prompt as plain text")
    model = load_pretrained(config.model, dtype=getattr(torch, config.dtype), device=pick_device(config.device))
    try:
        samples = generate_text(model, found.tokenizer, prompt, config.max_new_tokens, num_samples=config.num_samples,
                                temperature=config.temperature, top_k=config.top_k, top_p=config.top_p, seed=config.seed,
                                prefix_ids=found.prefix_ids, stop_ids=found.stop_ids)
    except ValueError as exc:
        raise ConfigError(f"{config.model}: {exc}") from None
    for i, text in enumerate(samples):
        if config.num_samples > 1:
            print(f"--- sample {i + 1}")
        print(text if config.chat else config.prompt + text)
    return 0


COMMANDS = {None: Command("Generate text from a model directory (HF format) or a .gguf file (with its own "
                          "tokenizer), with greedy, temperature, top-k and top-p sampling; --chat for ChatML "
                          "instruct models.", GenerateConfig, run)}
