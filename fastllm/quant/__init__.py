"""Quantization: GPTQ, GGML block formats, GGUF files."""
