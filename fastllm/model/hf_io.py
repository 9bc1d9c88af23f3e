"""Model directories in Hugging Face's LlamaForCausalLM format, both ways.

    model = load_pretrained("runs/x/model")       # config.json + model.safetensors (or a sharded index)
    model = load_pretrained("SmolLM2.Q4_1.gguf")  # a llama.cpp GGUF file (see fastllm.quant.gguf_io)
    save_pretrained(model, "runs/x/model", tokenizer=tok)

A saved directory loads with transformers.AutoModelForCausalLM.from_pretrained and gives the same
logits. Only safetensors are read: pickle-based pytorch_model.bin files are refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fastllm.model.config import ModelConfig
from fastllm.model.llama import Llama, rope_tables
from fastllm.utils.atomic import atomic_directory, write_json
from fastllm.utils.errors import ConfigError, InputFormatError
from fastllm.utils.jsonfile import read_json_object

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Buffers that old HF checkpoints stored; they are recomputed, never loaded.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def load_pretrained(path: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Llama:
    """Our model from an HF LLaMA directory (safetensors, single or sharded) or a .gguf file."""
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        from fastllm.quant.gguf_io import load_gguf_model

        return load_gguf_model(path, dtype=dtype).to(device)
    if not path.exists():
        raise InputFormatError(f"{path}: no such model directory or .gguf file")
    if not path.is_dir():
        raise InputFormatError(f"{path}: expected a model directory (config.json + model.safetensors) or a .gguf file")
    config = read_config(path / "config.json")
    return model_from_tensors(config, read_weights(path, dtype), where=str(path), dtype=dtype).to(device)


def read_config(path: Path) -> ModelConfig:
    if not path.is_file():
        raise InputFormatError(f"{path}: missing; a model directory needs config.json")
    return ModelConfig.from_hf(read_json_object(path), where=str(path))


def read_weights(model_dir: Path, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint by name, from model.safetensors or a sharded index; floating
    tensors converted to `dtype` one at a time as they are read (never the whole file twice)."""
    single, index = model_dir / WEIGHTS_NAME, model_dir / INDEX_NAME
    if single.is_file():
        return read_safetensors(single, dtype)
    if index.is_file():
        tensors: dict[str, torch.Tensor] = {}
        for shard in _shards_of(index):
            tensors.update(read_safetensors(shard, dtype))
        return tensors
    if (model_dir / "pytorch_model.bin").exists():
        raise InputFormatError(f"{model_dir}: only pytorch_model.bin (pickle) found; fastllm reads safetensors "
                               "only: convert it with transformers' save_pretrained(safe_serialization=True)")
    raise InputFormatError(f"{model_dir}: no {WEIGHTS_NAME} or {INDEX_NAME}")


def _shards_of(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise InputFormatError(f"{index}: not a safetensors index with a weight_map ({exc})") from None
    shards = []
    for name in files:
        shard = index.parent / str(name)
        if Path(str(name)).is_absolute() or ".." in Path(str(name)).parts or not shard.is_file():
            raise InputFormatError(f"{index}: shard {name!r} is missing or outside the model directory")
        shards.append(shard)
    return shards


def read_safetensors(path: Path, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """All tensors of one safetensors file (floating ones converted to `dtype` if given); a corrupt
    or truncated file is a one-line error."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: _as_dtype(handle.get_tensor(name), dtype) for name in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types and OSError
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFormatError(f"{path}: not a valid safetensors file ({first_line})") from None


def _as_dtype(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def model_from_tensors(config: ModelConfig, tensors: dict[str, torch.Tensor], *, where: str,
                       dtype: torch.dtype = torch.float32) -> Llama:
    """Builds a Llama for `config` and fills it from HF-named tensors, checking names and shapes
    before any weight memory is allocated (the config's sizes come from the file). Consumes
    `tensors`: they move into the model (emptied from the dict) instead of being copied."""
    for name in [k for k in tensors if k.endswith(_IGNORED_SUFFIXES)]:
        del tensors[name]
    layers = {name.split(".")[2] for name in tensors if name.startswith("model.layers.")}
    if len(layers) != config.n_layers:
        raise ConfigError(f"{where}: checkpoint does not match its config ({config.n_layers} layers configured, "
                          f"tensors for {len(layers)}); checkpoint from a different architecture?")
    with torch.device("meta"):
        model = Llama(config, init=False)
    expected = model.state_dict()
    if config.tie_embeddings:
        tensors.pop("lm_head.weight", None)
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ConfigError(f"{where}: checkpoint does not match its config ({detail}"
                          f"{', ...' if len(missing or unexpected) > 3 else ''}); is it a LLaMA-style model?")
    for name, target in expected.items():
        if tuple(tensors[name].shape) != tuple(target.shape):
            raise ConfigError(f"{where}: tensor {name} has shape {tuple(tensors[name].shape)}, the config "
                              f"expects {tuple(target.shape)}; checkpoint from a different architecture?")
    # The file's tensors become the parameters (no second copy of the weights); popping each one
    # as it is converted keeps a dtype change to one tensor's worth of extra memory.
    state = {name: tensors.pop(name).to(dtype).contiguous() for name in expected}
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.rope_cos, model.rope_sin = rope_tables(config, "cpu")
    return model


# ---- writing ----

def save_pretrained(model: Llama, out_dir: str | Path, tokenizer: Any = None, *, dtype: torch.dtype | None = None) -> Path:
    """Writes config.json, generation_config.json, model.safetensors and the tokenizer files
    (from a fastllm Tokenizer, a tokenizer.json path, or an HF model directory) atomically."""
    out_dir = Path(out_dir)
    config = model.config
    tensors = {name: t.detach().to("cpu", dtype or t.dtype).contiguous() for name, t in model.state_dict().items()}
    if config.tie_embeddings:
        tensors.pop("lm_head.weight", None)  # shared with model.embed_tokens.weight
    dtype_name = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    with atomic_directory(out_dir) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        write_json(tmp / "config.json", config.to_hf(dtype=dtype_name))
        write_json(tmp / "generation_config.json", {"bos_token_id": config.bos_id, "eos_token_id": config.eos_id})
        if tokenizer is not None:
            _write_tokenizer(tokenizer, tmp, config)
    return out_dir


def _write_tokenizer(tokenizer: Any, out_dir: Path, config: ModelConfig) -> None:
    if hasattr(tokenizer, "save"):
        tokenizer.save(out_dir / "tokenizer.json")
    else:
        source = Path(tokenizer)
        if source.is_dir():
            copied = [name for name in TOKENIZER_FILES if (source / name).is_file()]
            if "tokenizer.json" not in copied:
                raise InputFormatError(f"{source}: no tokenizer.json to copy")
            for name in copied:
                shutil.copyfile(source / name, out_dir / name)
            return
        if not source.is_file():
            raise InputFormatError(f"{source}: tokenizer file not found")
        shutil.copyfile(source, out_dir / "tokenizer.json")
    write_json(out_dir / "tokenizer_config.json", _tokenizer_config(out_dir / "tokenizer.json", config))


def _tokenizer_config(tokenizer_json: Path, config: ModelConfig) -> dict[str, Any]:
    """The tokenizer_config.json transformers needs to use tokenizer.json (special tokens by name)."""
    try:
        added = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("added_tokens", [])
        names = {int(t["id"]): t["content"] for t in added}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputFormatError(f"{tokenizer_json}: not a tokenizer.json ({exc})") from None
    out: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
                           "model_max_length": config.max_seq_len}
    if config.bos_id in names:
        out["bos_token"] = names[config.bos_id]
    if config.eos_id in names:
        out["eos_token"] = names[config.eos_id]
    return out


def load_tokenizer(model_path: str | Path, tokenizer: str | Path | None = None):
    """The fastllm Tokenizer for a model: `tokenizer` (a tokenizer.json or a directory holding one)
    if given, else the tokenizer.json inside the model directory, or the one a .gguf file carries."""
    from fastllm.tokenizer import Tokenizer

    model_path = Path(model_path)
    if tokenizer is None and model_path.suffix == ".gguf" and model_path.is_file():
        return Tokenizer.from_gguf(model_path)
    candidate = Path(tokenizer) if tokenizer is not None else (model_path if model_path.is_dir() else None)
    if candidate is not None and candidate.is_dir():
        candidate = candidate / "tokenizer.json"
    if candidate is None or not candidate.is_file():
        hint = "pass --tokenizer path/to/tokenizer.json" if model_path.suffix == ".gguf" or tokenizer is None else ""
        raise InputFormatError(f"{candidate or model_path}: no tokenizer.json found; {hint or 'check the path'}")
    return Tokenizer.from_file(candidate)
