"""`fastllm generate --model runs/x/model --prompt "To be"`: sample text from a model directory
or a .gguf file with the KV cache.

A .gguf file brings its own tokenizer (tokenizer.ggml.*), so `--tokenizer` is only needed for a
file without one. Generation stops at the model's eos and at end-of-turn tokens the vocabulary has
(<|im_end|>, <|eot_id|>, <|endoftext|>, <|end_of_text|>). `--chat` sends the prompt as one user
message (after `--system`, if given) through the model's own chat template (the Jinja text in its
GGUF or tokenizer_config.json, rendered as transformers renders it) and prints only the answer:

    fastllm generate --model SmolLM2-135M-Instruct.Q4_1.gguf --chat --prompt "What is the capital of France?"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastllm.cli.main import Command
from fastllm.utils.errors import ConfigError, FastLLMError
from fastllm.utils.jsonfile import read_json_object

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>")


@dataclass
class GenerateConfig:
    model: Path = field(default=Path("runs/shakespeare/model"), metadata={"help": "HF-format model directory or .gguf file"})
    prompt: str = field(default="", metadata={"help": "text to continue (empty: start a new document)"})
    tokenizer: Path | None = field(default=None, metadata={"help": "tokenizer.json (default: the model directory's, "
                                                                   "or the .gguf file's own)"})
    chat: bool = field(default=False, metadata={"help": "send the prompt as a user message through the model's "
                                                        "chat template and print the assistant's answer"})
    system: str | None = field(default=None, metadata={"help": "with --chat: a system message before the prompt "
                                                               "(default: whatever the template writes)"})
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
        if self.system is not None and not self.chat:
            raise ValueError("system is a chat message: give --chat too")
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
        tok = load_tokenizer(model, tokenizer)
        config_file = (Path(tokenizer) if tokenizer is not None else model)
        settings = _tokenizer_settings((config_file if config_file.is_dir() else config_file.parent) / "tokenizer_config.json")
        template = settings.get("chat_template")
        prefix = (tok.bos_id,) if settings.get("add_bos_token") is True and tok.bos_id is not None else ()
    stops = [tok.eos_id] + [tok.special_tokens.get(name) for name in END_OF_TURN]
    stops = tuple(dict.fromkeys(i for i in stops if i is not None))
    return ModelTokenizer(tok, prefix, stops, template if isinstance(template, str) else None)


def _tokenizer_settings(path: Path) -> dict:
    """tokenizer_config.json's fields (chat_template, add_bos_token); none when it is absent or unreadable."""
    try:
        return read_json_object(path) if path.is_file() else {}
    except FastLLMError:
        return {}


def chat_prompt(user: str, found: ModelTokenizer, *, system: str | None = None, where: str = "model") -> str:
    """The prompt text the model's chat template renders for one user message (after a system
    message when given), ending with the assistant's header."""
    from fastllm.model.chat import render_chat, unknown_special_tokens

    if not found.chat_template:
        raise ConfigError(f"{where}: --chat needs a chat template and this model has none; give the prompt as plain text")
    tok = found.tokenizer
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]
    text = render_chat(found.chat_template, messages, bos_token=_token_text(tok, tok.bos_id),
                       eos_token=_token_text(tok, tok.eos_id), where=where)
    unknown = unknown_special_tokens(text, tok.special_tokens)
    if unknown:  # else the turn markers would be encoded as plain text
        raise ConfigError(f"{where}: --chat needs the token {unknown[0]} the chat template writes, and the tokenizer "
                          "has none; give the prompt as plain text")
    return text


def _token_text(tokenizer, token_id: int | None) -> str:
    return "" if token_id is None else tokenizer.id_to_token(token_id) or ""


def run(config: GenerateConfig) -> int:
    import torch

    from fastllm.model import load_pretrained
    from fastllm.model.generate import generate_text
    from fastllm.train.distributed import pick_device

    found = model_tokenizer(config.model, config.tokenizer)
    prompt, prefix_ids = config.prompt, found.prefix_ids
    if config.chat:
        prompt = chat_prompt(config.prompt, found, system=config.system, where=str(config.tokenizer or config.model))
        if prefix_ids and prompt.startswith(_token_text(found.tokenizer, prefix_ids[0]) or "\0"):
            prefix_ids = ()  # the template writes the BOS itself
    model = load_pretrained(config.model, dtype=getattr(torch, config.dtype), device=pick_device(config.device))
    try:
        samples = generate_text(model, found.tokenizer, prompt, config.max_new_tokens, num_samples=config.num_samples,
                                temperature=config.temperature, top_k=config.top_k, top_p=config.top_p, seed=config.seed,
                                prefix_ids=prefix_ids, stop_ids=found.stop_ids)
    except ValueError as exc:
        raise ConfigError(f"{config.model}: {exc}") from None
    for i, text in enumerate(samples):
        if config.num_samples > 1:
            print(f"--- sample {i + 1}")
        print(text if config.chat else config.prompt + text)
    return 0


COMMANDS = {None: Command("Generate text from a model directory (HF format) or a .gguf file (with its own "
                          "tokenizer), with greedy, temperature, top-k and top-p sampling; --chat for instruct "
                          "models (their own chat template).", GenerateConfig, run)}
