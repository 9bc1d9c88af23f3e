"""fastllm: raw text to a trained, quantized, fine-tuned and evaluated language model."""

__version__ = "0.1.0"
