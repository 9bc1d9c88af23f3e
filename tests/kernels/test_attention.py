"""fastllm.kernels.attention: the reference agrees with torch SDPA, decoding alignment is
bottom-right, gradients are right, the ops pass opcheck, bad input fails with one named line."""

import pytest
import torch
import torch.nn.functional as F

from fastllm.kernels import attention
from fastllm.kernels.attention.ref import (
    attention_ref,
    attention_ref_backward,
    attention_ref_forward,
    attention_ref_grads,
)
from fastllm.utils.errors import KernelInputError


def _qkv(batch=2, heads=4, kv_heads=2, seq_q=7, seq_k=7, head_dim=16, dtype=torch.float32,
         requires_grad=False):
    make = lambda h, s: torch.randn(batch, h, s, head_dim, dtype=dtype, requires_grad=requires_grad)
    return make(heads, seq_q), make(kv_heads, seq_k), make(kv_heads, seq_k)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_reference_matches_sdpa(seeded, causal, kv_heads):
    q, k, v = _qkv(kv_heads=kv_heads, seq_q=9, seq_k=9)
    out = attention(q, k, v, causal=causal)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_lse_is_the_log_normaliser(seeded):
    q, k, v = _qkv()
    _, lse = attention_ref(q, k, v, causal=False, scale=0.3)
    scores = q @ k.repeat_interleave(2, dim=1).transpose(-1, -2) * 0.3
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seq_q", [1, 3])
def test_decoding_queries_are_the_last_positions(seeded, seq_q):
    """T queries against S cached keys equal the last T rows of full causal attention."""
    q, k, v = _qkv(seq_q=12, seq_k=12)
    full = attention(q, k, v, causal=True)
    tail = attention(q[:, :, -seq_q:], k, v, causal=True)
    torch.testing.assert_close(tail, full[:, :, -seq_q:], rtol=1e-5, atol=1e-6)


def test_scale_argument(seeded):
    q, k, v = _qkv(kv_heads=4)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.1)
    torch.testing.assert_close(attention(q, k, v, scale=0.1), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_gradients_match_autograd_of_sdpa(seeded, causal):
    q, k, v = _qkv(seq_q=5, seq_k=8, requires_grad=True)
    grad = torch.randn(2, 4, 5, 16)
    if causal:  # SDPA aligns top-left; give it the bottom-right mask explicitly
        mask = torch.ones(5, 8, dtype=torch.bool).tril(diagonal=3)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    else:
        expected = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad)
    out = attention(q, k, v, causal=causal)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(torch.autograd.grad(out, (q, k, v), grad), expected_grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_gradient_through_lse(seeded):
    """The backward takes grad_lse too (d lse / d s = softmax), checked in float64."""
    q, k, v = (t.double().requires_grad_() for t in _qkv(seq_q=4, seq_k=6))
    out, lse = attention_ref(q, k, v, causal=True, scale=0.25)
    grad_out, grad_lse = torch.randn_like(out), torch.randn_like(lse)
    expected = torch.autograd.grad((out, lse), (q, k, v), (grad_out, grad_lse))
    ours = attention_ref_backward(grad_out, q, k, v, out, lse, grad_lse, True, 0.25)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, causal", [((2, 4, 2, 7, 7), True), ((1, 8, 1, 3, 11), True),
                                           ((2, 4, 4, 5, 9), False)])
def test_cpu_backend_matches_the_formulas(seeded, shape, causal):
    """The ref backend's fused CPU path (sdpa_cpu.py) equals attention_ref and its gradients."""
    batch, heads, kv_heads, seq_q, seq_k = shape
    qkv = torch.randn(batch, seq_q, heads, 16).transpose(1, 2)  # strided, like the model's views
    q, (k, v) = qkv, _qkv(batch, heads, kv_heads, seq_q, seq_k)[1:]
    out, lse = attention_ref_forward(q, k, v, causal, 0.3)
    want_out, want_lse = attention_ref(q, k, v, causal, 0.3)
    torch.testing.assert_close((out, lse), (want_out, want_lse), rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    got = attention_ref_backward(grad, q, k, v, out, lse, None, causal, 0.3)
    want = attention_ref_grads(grad, q, k, v, None, causal, 0.3)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_unused_lse_gets_no_gradient_so_the_fused_backward_runs(seeded, monkeypatch):
    """Autograd must hand the backward grad_lse=None (not zeros): the fused CPU backward and the
    Triton kernel's HAS_DLSE=False path depend on it."""
    import importlib

    ref_module = importlib.import_module("fastllm.kernels.attention.ref")
    calls = []
    formulas = ref_module.attention_ref_grads
    monkeypatch.setattr(ref_module, "attention_ref_grads", lambda *args: calls.append(args) or formulas(*args))
    q, k, v = _qkv(requires_grad=True)
    attention(q, k, v).sum().backward()
    assert calls == [] and q.grad is not None


def test_registered_as_torch_ops():
    assert torch.ops.fastllm.attention.default is not None
    assert torch.ops.fastllm.attention_backward.default is not None


@pytest.mark.parametrize("causal", [True, False])
def test_opcheck(seeded, causal):
    q, k, v = _qkv(seq_q=3, seq_k=5, requires_grad=True)
    torch.library.opcheck(torch.ops.fastllm.attention.default, (q, k, v, causal, 0.25, None))
    out, lse = torch.ops.fastllm.attention(q, k, v, causal, 0.25, None)
    args = (torch.randn_like(out), q.detach(), k.detach(), v.detach(), out.detach(), lse.detach(), None,
            causal, 0.25, "ref")
    torch.library.opcheck(torch.ops.fastllm.attention_backward.default, args)


def test_compiles_as_one_node(seeded):
    q, k, v = _qkv()
    compiled = torch.compile(lambda q, k, v: attention(q, k, v), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), attention(q, k, v), rtol=0, atol=0)


def test_inference_calls_skip_the_op_wrappers_with_the_same_result(seeded, monkeypatch):
    """With no gradient to record, attention() runs the implementation directly (torch.library's
    wrappers cost more host time than a decoding step's kernel); autograd goes through the op."""
    q, k, v = _qkv()
    via_op = torch.ops.fastllm.attention(q, k, v, True, q.shape[-1] ** -0.5, None)[0]

    def refuse(*args):
        raise AssertionError("went through torch.ops.fastllm.attention")

    monkeypatch.setattr(torch.ops.fastllm, "attention", refuse)
    torch.testing.assert_close(attention(q, k, v), via_op, rtol=0, atol=0)
    for t in (q, k, v):
        t.requires_grad_()
    with torch.no_grad():
        torch.testing.assert_close(attention(q, k, v), via_op, rtol=0, atol=0)
    with pytest.raises(AssertionError, match="went through"):
        attention(q, k, v)


@pytest.mark.parametrize("change, match", [
    (lambda q, k, v: (q[0], k, v, {}), "q must be a 4-d tensor"),
    (lambda q, k, v: (q, k[:, :, :, :8], v[:, :, :, :8], {}), "B and D must match"),
    (lambda q, k, v: (q, k, v[:, :, :5], {}), "v has shape"),
    (lambda q, k, v: (q[:, :3], k, v, {}), "q has 3 heads, not a multiple of k's 2 kv heads"),
    (lambda q, k, v: (q.long(), k.long(), v.long(), {}), "q has dtype torch.int64"),
    (lambda q, k, v: (q, k.half(), v, {}), "k has dtype torch.float16 but q has torch.float32"),
    (lambda q, k, v: (q, k, v.half(), {}), "v has dtype torch.float16"),
    (lambda q, k, v: (q, k.transpose(2, 3), v, {}), "k needs a contiguous last dimension"),
    (lambda q, k, v: (q.transpose(2, 3)[:, :, :7, :7], k[..., :7], v[..., :7], {}),
     "q needs a contiguous last dimension"),
    (lambda q, k, v: (q, k[:, :, :0], v[:, :, :0], {}), "S=0"),
    (lambda q, k, v: (q, k.to("meta"), v, {}), "k is on meta but q is on cpu"),
    (lambda q, k, v: (q, k[:, :, :4], v[:, :, :4], {"causal": True}), "T=7 queries needs at least"),
])
def test_bad_input_is_one_line_naming_the_argument(change, match):
    q, k, v, kwargs = change(*_qkv())
    with pytest.raises(KernelInputError, match=match) as info:
        attention(q, k, v, **kwargs)
    assert "\n" not in str(info.value) and str(info.value).startswith("attention: ")


def test_direct_op_calls_are_validated(seeded):
    """torch.ops.fastllm.attention(_backward) are reachable without attention(): they check their
    arguments before any kernel indexes memory."""
    q, k, v = _qkv()
    with pytest.raises(KernelInputError, match="q has 4 heads, not a multiple of k's 3 kv heads"):
        torch.ops.fastllm.attention(q, k.repeat(1, 2, 1, 1)[:, :3], v.repeat(1, 2, 1, 1)[:, :3], True, 0.25, "ref")
    out, lse = torch.ops.fastllm.attention(q, k, v, True, 0.25, None)
    grad = torch.randn_like(out)
    bad = [((grad[:, :, :5], q, k, v, out, lse, None), "grad_out has shape"),
           ((grad, q, k, v, out, lse[:, :, :5], None), r"lse must be a contiguous float32 \(2, 4, 7\)"),
           ((grad, q, k, v, out, lse.double(), None), "lse must be a contiguous float32"),
           ((grad, q, k, v, out, lse, lse.transpose(1, 2).contiguous().transpose(1, 2)), "grad_lse must be a contiguous float32"),
           ((grad, q, k, v, out.half(), lse, None), "out has dtype torch.float16")]
    for args, match in bad:
        with pytest.raises(KernelInputError, match=match):
            torch.ops.fastllm.attention_backward(*args, True, 0.25, "ref")
