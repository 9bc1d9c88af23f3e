"""Evaluation: perplexity and bits per byte (perplexity.py); tasks, human and bias probes come later."""
