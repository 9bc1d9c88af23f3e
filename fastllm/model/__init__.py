"""The LLaMA-style model: config and presets, the module, generation, and HF/GGUF checkpoints."""

from fastllm.model.config import PRESETS, ModelConfig
from fastllm.model.generate import Sampling, generate
from fastllm.model.hf_io import load_pretrained, save_pretrained
from fastllm.model.llama import KVCache, Llama, cross_entropy

__all__ = ["PRESETS", "KVCache", "Llama", "ModelConfig", "Sampling", "cross_entropy", "generate",
           "load_pretrained", "save_pretrained"]
