"""Byte-level BPE tokenizer with a C++ core: train, encode, decode; HF tokenizer.json,
tiktoken and GGUF compatible. See bpe.py (Tokenizer), train.py (train_bpe), hf_json.py."""

from fastllm.tokenizer.bpe import AddedToken, DisallowedSpecialTokenError, Tokenizer
from fastllm.tokenizer.patterns import PATTERNS
from fastllm.tokenizer.train import DEFAULT_SPECIAL_TOKENS, TrainStats, train_bpe, train_bpe_with_stats

__all__ = ["AddedToken", "DEFAULT_SPECIAL_TOKENS", "DisallowedSpecialTokenError", "PATTERNS", "Tokenizer",
           "TrainStats", "train_bpe", "train_bpe_with_stats"]
