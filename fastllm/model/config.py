"""ModelConfig: the shape of a LLaMA-style decoder, its presets, and the mapping to and from
Hugging Face's `config.json` (LlamaConfig field names), so a saved model is an HF checkpoint.

    cfg = ModelConfig.preset("tiny", vocab_size=512)
    cfg = ModelConfig.from_hf(json.load(open("config.json")), where="config.json")
    hf = cfg.to_hf()
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from fastllm.utils.errors import ConfigError

MAX_SEQ_LEN = 1 << 24  # 16M positions: above the context of any released LLaMA-style model


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = field(default=1024, metadata={"help": "number of token ids"})
    dim: int = field(default=128, metadata={"help": "residual stream width (hidden_size)"})
    n_layers: int = field(default=4, metadata={"help": "transformer blocks"})
    n_heads: int = field(default=4, metadata={"help": "query heads"})
    n_kv_heads: int = field(default=2, metadata={"help": "key/value heads (GQA); divides n_heads"})
    head_dim: int = field(default=0, metadata={"help": "per-head width; 0 means dim // n_heads"})
    ffn_dim: int = field(default=352, metadata={"help": "SwiGLU hidden width (intermediate_size)"})
    max_seq_len: int = field(default=256, metadata={"help": "longest sequence (RoPE table length)"})
    rope_theta: float = field(default=10000.0, metadata={"help": "RoPE base frequency"})
    norm_eps: float = field(default=1e-5, metadata={"help": "RMSNorm epsilon"})
    tie_embeddings: bool = field(default=True, metadata={"help": "share the embedding and output matrices"})
    init_std: float = field(default=0.02, metadata={"help": "std of the normal weight init"})
    rope_scaling: dict[str, float] | None = field(default=None, metadata={
        "help": "Llama 3.1-style RoPE scaling: factor, low_freq_factor, high_freq_factor, "
                "original_max_position_embeddings (None: plain RoPE)"})
    bos_id: int | None = field(default=None, metadata={"help": "beginning-of-text token id"})
    eos_id: int | None = field(default=None, metadata={"help": "end-of-text token id"})

    def __post_init__(self) -> None:
        if self.head_dim == 0 and self.n_heads > 0:
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        self.validate()

    def validate(self) -> None:
        """Raises ValueError (one line) for a shape the model cannot be built with."""
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_seq_len > MAX_SEQ_LEN:
            # The RoPE tables are (max_seq_len, head_dim / 2) floats, built when the model is:
            # an absurd value from an untrusted config.json would exhaust memory, not fail.
            raise ValueError(f"max_seq_len {self.max_seq_len} is above the supported {MAX_SEQ_LEN}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_kv_heads ({self.n_kv_heads}) must divide n_heads ({self.n_heads})")
        if self.head_dim <= 0 or self.head_dim % 2:
            raise ValueError(f"head_dim must be positive and even for RoPE, got {self.head_dim}")
        if not (self.rope_theta > 0 and self.norm_eps > 0 and self.init_std > 0):
            raise ValueError("rope_theta, norm_eps and init_std must be positive")
        if self.rope_scaling is not None:
            missing = {*LLAMA3_SCALING_KEYS} - set(self.rope_scaling)
            if missing:
                raise ValueError(f"rope_scaling needs {sorted(missing)}")
        for name in ("bos_id", "eos_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"{name} {value} is outside the vocabulary (size {self.vocab_size})")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r}; known presets: {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def num_params(self, *, embeddings: bool = True) -> int:
        """Parameter count (tied embeddings counted once)."""
        q_out, kv_out = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        attention = self.dim * (q_out + 2 * kv_out) + q_out * self.dim
        block = attention + 3 * self.dim * self.ffn_dim + 2 * self.dim
        total = self.n_layers * block + self.dim
        if embeddings:
            total += self.vocab_size * self.dim * (1 if self.tie_embeddings else 2)
        return total

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 L H Q T."""
        return 6 * self.num_params(embeddings=False) + 6 * self.vocab_size * self.dim + \
            12 * self.n_layers * self.n_heads * self.head_dim * seq_len

    # ---- Hugging Face LlamaConfig mapping ----

    def to_hf(self, dtype: str = "float32") -> dict[str, Any]:
        """config.json for transformers' LlamaForCausalLM (both the v4 and v5 RoPE spellings)."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "intermediate_size": self.ffn_dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_seq_len,
            "initializer_range": self.init_std,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_type": "llama3" if self.rope_scaling else "default",
                                "rope_theta": self.rope_theta, **(self.rope_scaling or {})},
            "rope_scaling": {"rope_type": "llama3", **self.rope_scaling} if self.rope_scaling else None,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "mlp_bias": False,
            "tie_word_embeddings": self.tie_embeddings,
            "bos_token_id": self.bos_id,
            "eos_token_id": self.eos_id,
            "torch_dtype": dtype,
            "use_cache": True,
        }

    @classmethod
    def from_hf(cls, hf: dict[str, Any], where: str = "config.json") -> ModelConfig:
        """A ModelConfig from an HF LLaMA-family config dict; unsupported features are errors."""
        model_type = hf.get("model_type")
        if model_type not in ("llama", "mistral", None):
            raise ConfigError(f"{where}: model_type {model_type!r} is not a LLaMA-style model")
        _reject_unsupported(hf, where)
        try:
            n_heads = int(hf["num_attention_heads"])
            dim = int(hf["hidden_size"])
            values = dict(
                vocab_size=int(hf["vocab_size"]), dim=dim, n_layers=int(hf["num_hidden_layers"]),
                n_heads=n_heads, n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
                head_dim=int(hf.get("head_dim") or dim // n_heads),
                ffn_dim=int(hf["intermediate_size"]),
                max_seq_len=int(hf.get("max_position_embeddings", 2048)),
                rope_theta=float(_rope_theta(hf)), rope_scaling=_rope_scaling(hf, where),
                norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
                tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
                init_std=float(hf.get("initializer_range", 0.02)),
                bos_id=_single_id(hf.get("bos_token_id")), eos_id=_single_id(hf.get("eos_token_id")),
            )
        except KeyError as exc:
            raise ConfigError(f"{where}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: bad field value ({exc})") from None
        try:
            return cls(**values)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _rope_theta(hf: dict[str, Any]) -> float:
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        return params["rope_theta"]
    return hf.get("rope_theta", 10000.0)


LLAMA3_SCALING_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def _rope_scaling(hf: dict[str, Any], where: str) -> dict[str, float] | None:
    """Llama 3.1-style scaling parameters (from v5's rope_parameters or v4's rope_scaling)."""
    for key in ("rope_parameters", "rope_scaling"):
        spec = hf.get(key)
        if isinstance(spec, dict) and spec.get("rope_type", spec.get("type", "default")) == "llama3":
            try:
                return {name: float(spec[name]) for name in LLAMA3_SCALING_KEYS}
            except KeyError as exc:
                raise ConfigError(f"{where}: {key} of type llama3 lacks {exc.args[0]!r}") from None
    return None


def _reject_unsupported(hf: dict[str, Any], where: str) -> None:
    for key in ("rope_scaling", "rope_parameters"):
        spec = hf.get(key)
        kind = spec.get("rope_type", spec.get("type", "default")) if isinstance(spec, dict) else "default"
        if kind not in ("default", "llama3"):
            raise ConfigError(f"{where}: RoPE scaling {kind!r} is not supported (only llama3); "
                              "use a checkpoint without it")
    if hf.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"{where}: hidden_act {hf['hidden_act']!r} is not supported (only silu)")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ConfigError(f"{where}: attention_bias/mlp_bias checkpoints are not supported")
    if hf.get("sliding_window") not in (None, 0) and hf.get("model_type") == "mistral":
        raise ConfigError(f"{where}: sliding-window attention is not supported")


def _single_id(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else int(value)


def _fit_ffn(dim: int, multiple: int = 32) -> int:
    """LLaMA's SwiGLU width: 2/3 of 4*dim, rounded up to a multiple."""
    return multiple * math.ceil(int(8 * dim / 3) / multiple)


PRESETS: dict[str, ModelConfig] = {
    # ~1M parameters with vocab 1024: unit tests and interop checks.
    "tiny": ModelConfig(vocab_size=1024, dim=128, n_layers=4, n_heads=4, n_kv_heads=2,
                        ffn_dim=_fit_ffn(128), max_seq_len=256),
    # ~6M parameters: the `fastllm pipeline` default, trains in minutes on 2 CPU cores.
    "demo": ModelConfig(vocab_size=4096, dim=256, n_layers=4, n_heads=8, n_kv_heads=4,
                        ffn_dim=_fit_ffn(256), max_seq_len=256),
    # 23M-class (6 layers, d 384), the shape bench_train.py measures against plain PyTorch.
    "small": ModelConfig(vocab_size=32000, dim=384, n_layers=6, n_heads=6, n_kv_heads=6,
                         ffn_dim=1024, max_seq_len=256),
    # GPT-2 small class (~124M with a 32k vocabulary).
    "124m": ModelConfig(vocab_size=32000, dim=768, n_layers=12, n_heads=12, n_kv_heads=12,
                        ffn_dim=2048, max_seq_len=1024, tie_embeddings=True),
    # SmolLM2-135M's shape.
    "smollm2-135m": ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3,
                                ffn_dim=1536, max_seq_len=8192, rope_theta=100000.0),
    # Llama-3.2-1B's shape, with its RoPE scaling (context cut to 8192 positions).
    "1b": ModelConfig(vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8,
                      ffn_dim=8192, max_seq_len=8192, rope_theta=500000.0, tie_embeddings=True,
                      rope_scaling={"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192.0}),
    # Llama-3-8B's shape.
    "8b": ModelConfig(vocab_size=128256, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                      ffn_dim=14336, max_seq_len=8192, rope_theta=500000.0, tie_embeddings=False),
}
