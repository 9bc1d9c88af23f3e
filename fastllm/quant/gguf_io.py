"""Reading llama.cpp GGUF files into our model.

Layout (v2/v3, little-endian):
    "GGUF" u32 version  u64 n_tensors  u64 n_kv
    n_kv x     key: string   value_type: u32   value (arrays: u32 item type, u64 count, items)
    n_tensors x name: string u32 n_dims  u64 dims[n_dims] (innermost first)  u32 ggml_type  u64 offset
    padding to `general.alignment` (32), then the tensor data (offsets relative to that point)

The header is parsed here, not by gguf.GGUFReader, so every length, count and offset is checked
against the file size before anything is allocated: a truncated or corrupt file is a one-line
InputFormatError, never a MemoryError or a numpy traceback. Block dequantization (Q4_0, Q4_1,
Q8_0, K-quants, F16, BF16, ...) uses the `gguf` package's quant helpers.

llama.cpp's converter permutes the rows of attn_q / attn_k from HF's half-rotation RoPE layout to
its interleaved-pair layout; `unpermute_rows` undoes it so our (HF-layout) model can use them.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastllm.utils.errors import ConfigError, InputFormatError

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_FLOAT32, _STRING, _ARRAY = 6, 8, 9
_MAX_DIMS = 4
_MAX_NESTING = 8  # arrays of arrays: llama.cpp writes at most 2 levels; deeper is a crafted file


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # torch order (outermost first), the reverse of GGUF's dims
    ggml_type: int
    offset: int  # absolute byte offset in the file
    nbytes: int


class _Cursor:
    """Bounds-checked little-endian reads from the file buffer."""

    def __init__(self, buf: memoryview, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def fail(self, what: str) -> InputFormatError:
        return InputFormatError(f"{self.path}: corrupt GGUF file: {what} (at byte {self.pos})")

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail(f"{what} needs {n} bytes but the file ends at {len(self.buf)}")
        view = self.buf[self.pos:self.pos + n]
        self.pos += n
        return view

    def scalar(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.scalar("<Q", f"{what} length")
        try:
            return bytes(self.take(n, what)).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype == _FLOAT32:  # the shortest decimal that is this float32 (1e-05, not 9.9999997e-06)
            return float(np.format_float_scientific(np.float32(self.scalar("<f", what)), unique=True))
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            if depth == _MAX_NESTING:
                raise self.fail(f"{what} has arrays nested deeper than {_MAX_NESTING} levels")
            item_type = self.scalar("<I", f"{what} item type")
            count = self.scalar("<Q", f"{what} count")
            if item_type in _SCALARS:  # numeric arrays in one read, size checked first
                size = struct.calcsize(_SCALARS[item_type])
                raw = self.take(count * size, f"{what} ({count} items)")
                return np.frombuffer(raw, dtype=np.dtype(_SCALARS[item_type])).copy()
            if count * 8 > len(self.buf) - self.pos:  # each string or array is at least 8 bytes
                raise self.fail(f"{what} claims {count} items, more than the file can hold")
            return [self.value(item_type, f"{what}[{i}]", depth + 1) for i in range(count)]
        raise self.fail(f"{what} has unknown value type {vtype}")


class GGUFFile:
    """A validated GGUF file: `.metadata` (key -> value), `.tensors` (name -> GGUFTensor),
    `.tensor(name)` (float32 torch tensor, dequantized)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                if size < 24:
                    raise InputFormatError(f"{self.path}: not a GGUF file ({size} bytes, too short for a header)")
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise InputFormatError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        try:
            self._parse(memoryview(self._map))
        except BaseException:
            self.close()  # a rejected file keeps no mapping open
            raise

    def _parse(self, buf: memoryview) -> None:
        cur = _Cursor(buf, self.path)
        if bytes(cur.take(4, "magic")) != MAGIC:
            raise InputFormatError(f"{self.path}: not a GGUF file (bad magic)")
        self.version = cur.scalar("<I", "version")
        if self.version not in (2, 3):
            raise InputFormatError(f"{self.path}: GGUF version {self.version} is not supported (only 2 and 3)")
        n_tensors, n_kv = cur.scalar("<Q", "tensor count"), cur.scalar("<Q", "metadata count")
        # Each metadata entry takes at least 12 bytes, each tensor info at least 24.
        if n_kv * 12 + n_tensors * 24 > len(buf):
            raise cur.fail(f"header claims {n_kv} metadata entries and {n_tensors} tensors, more than the file holds")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string("metadata key")
            self.metadata[key] = cur.value(cur.scalar("<I", f"type of {key}"), key)
        infos = [self._tensor_info(cur) for _ in range(n_tensors)]
        alignment = self.metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise cur.fail(f"general.alignment {alignment!r} is not a power of two")
        self.alignment = alignment
        data_start = -(-cur.pos // self.alignment) * self.alignment
        self.tensors: dict[str, GGUFTensor] = {}
        for name, shape, ggml_type, offset in infos:
            self.tensors[name] = self._place(name, shape, ggml_type, data_start + offset, len(buf))

    def _tensor_info(self, cur: _Cursor) -> tuple[str, tuple[int, ...], int, int]:
        name = cur.string("tensor name")
        n_dims = cur.scalar("<I", f"{name} n_dims")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise cur.fail(f"tensor {name} has {n_dims} dimensions")
        dims = [cur.scalar("<Q", f"{name} dims") for _ in range(n_dims)]
        ggml_type = cur.scalar("<I", f"{name} type")
        offset = cur.scalar("<Q", f"{name} offset")
        return name, tuple(reversed(dims)), ggml_type, offset

    def _place(self, name: str, shape: tuple[int, ...], ggml_type: int, start: int, file_size: int) -> GGUFTensor:
        import gguf

        where = f"{self.path}: tensor {name}"
        if name in getattr(self, "tensors", {}):
            raise InputFormatError(f"{where} appears twice")
        try:
            qtype = gguf.GGMLQuantizationType(ggml_type)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise InputFormatError(f"{where} has unknown ggml type {ggml_type}") from None
        if any(d <= 0 for d in shape) or shape[-1] % block:
            raise InputFormatError(f"{where} has shape {shape}, not whole {qtype.name} blocks of {block}")
        count = math.prod(shape)
        nbytes = count // block * type_size
        if start % self.alignment or start + nbytes > file_size:
            raise InputFormatError(f"{where} data [{start}, {start + nbytes}) lies outside the file "
                                   f"({file_size} bytes) or is misaligned; the file is truncated or corrupt")
        return GGUFTensor(name, shape, ggml_type, start, nbytes)

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes, (rows, bytes per row), without copying."""
        info = self._info(name)
        data = np.frombuffer(self._map, dtype=np.uint8, count=info.nbytes, offset=info.offset)
        return data.reshape(-1, info.nbytes // max(1, int(np.prod(info.shape[:-1]))))

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor dequantized to float32 with its torch shape."""
        import gguf

        info = self._info(name)
        qtype = gguf.GGMLQuantizationType(info.ggml_type)
        try:
            values = gguf.quants.dequantize(self.raw(name), qtype)
        except NotImplementedError:
            raise InputFormatError(f"{self.path}: tensor {name} uses {qtype.name}, which cannot be dequantized "
                                   "here") from None
        # A copy, so no tensor keeps the file mapping alive (F32 "dequantization" is a view).
        return torch.from_numpy(np.array(values, dtype=np.float32, copy=True).reshape(info.shape))

    def _info(self, name: str) -> GGUFTensor:
        if name not in self.tensors:
            raise InputFormatError(f"{self.path}: no tensor named {name!r}")
        return self.tensors[name]

    def close(self) -> None:
        try:
            self._map.close()
        except BufferError:  # a caller still holds a raw() view; the mapping goes with it
            pass


def unpermute_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of llama.cpp's Q/K permutation: per head, rows (pairs interleaved) -> (two halves)."""
    rows = weight.shape[0]
    half = rows // n_heads // 2
    return weight.reshape(n_heads, half, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def permute_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's Q/K permutation (HF halves -> interleaved pairs), for writing GGUF files."""
    half = weight.shape[0] // n_heads // 2
    return weight.reshape(n_heads, 2, half, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


# GGUF tensor name -> HF name ({i} is the layer).
_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                 "output.weight": "lm_head.weight"}


def hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _LAYER_NAMES and parts[1].isdigit():
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
    return None


def config_from_gguf(gf: GGUFFile):
    """A ModelConfig from the llama.* metadata of a GGUF file."""
    from fastllm.model.config import ModelConfig

    meta, where = gf.metadata, str(gf.path)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ConfigError(f"{where}: general.architecture is {arch!r}; only llama GGUF files are supported")
    if "token_embd.weight" not in gf.tensors:
        raise InputFormatError(f"{where}: no token_embd.weight tensor")

    def number(key: str, kind: type = int, default: Any = None) -> Any:
        value = meta.get(key, default)
        if value is None:
            raise InputFormatError(f"{where}: missing metadata {key}")
        if not isinstance(value, int if kind is int else int | float):
            raise InputFormatError(f"{where}: metadata {key} {value!r} is not {'an integer' if kind is int else 'a number'}")
        return kind(value)

    dim, n_heads = number("llama.embedding_length"), number("llama.attention.head_count")
    if n_heads <= 0:
        raise InputFormatError(f"{where}: metadata llama.attention.head_count must be positive, got {n_heads}")
    head_dim = number("llama.attention.key_length", default=dim // n_heads)
    if number("llama.rope.dimension_count", default=head_dim) != head_dim:
        raise ConfigError(f"{where}: partial rotary embeddings (rope.dimension_count != head_dim) are not supported")
    if "rope_freqs.weight" in gf.tensors:
        raise ConfigError(f"{where}: per-frequency RoPE factors (rope_freqs, Llama 3.1 scaling) are not "
                          "supported in GGUF files; load the HF checkpoint instead")
    if meta.get("llama.rope.scaling.type", "none") not in ("none", None):
        raise ConfigError(f"{where}: RoPE scaling {meta['llama.rope.scaling.type']!r} is not supported")

    def token_id(key: str) -> int | None:
        return number(f"tokenizer.ggml.{key}") if f"tokenizer.ggml.{key}" in meta else None

    values = dict(
        vocab_size=gf.tensors["token_embd.weight"].shape[0], dim=dim, n_layers=number("llama.block_count"),
        n_heads=n_heads, n_kv_heads=number("llama.attention.head_count_kv", default=n_heads), head_dim=head_dim,
        ffn_dim=number("llama.feed_forward_length"), max_seq_len=number("llama.context_length"),
        rope_theta=number("llama.rope.freq_base", float, 10000.0),
        norm_eps=number("llama.attention.layer_norm_rms_epsilon", float),
        tie_embeddings="output.weight" not in gf.tensors,
        bos_id=token_id("bos_token_id"), eos_id=token_id("eos_token_id"))
    try:
        return ModelConfig(**values)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_gguf_model(path: str | Path, *, dtype: torch.dtype = torch.float32):
    """Our Llama from a llama-architecture GGUF file, weights dequantized to `dtype`."""
    from fastllm.model.hf_io import model_from_tensors

    gf = GGUFFile(path)
    try:
        config = config_from_gguf(gf)
        tensors = {}
        for name in gf.tensors:
            target = hf_name(name)
            if target is None:
                continue  # not a weight of the model
            weight = gf.tensor(name)
            heads = {"attn_q.weight": config.n_heads, "attn_k.weight": config.n_kv_heads}.get(name.split(".", 2)[-1])
            if heads is not None and weight.shape[0] == heads * config.head_dim:  # else a shape error below
                weight = unpermute_rows(weight, heads)
            tensors[target] = weight
        return model_from_tensors(config, tensors, where=str(path), dtype=dtype)
    finally:
        gf.close()
