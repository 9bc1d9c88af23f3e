"""fastllm.kernels.rope: the reference matches HF LLaMA, the op is differentiable, registered and
checked by opcheck, and bad input fails with one line naming the argument."""

import pytest
import torch

from fastllm.kernels import dispatch, rope, rope_tables
from fastllm.kernels.rope.ref import rope_ref
from fastllm.utils.errors import KernelInputError


def _qk(batch=2, seq=7, q_heads=4, k_heads=2, head_dim=16, dtype=torch.float32, requires_grad=False):
    q = torch.randn(batch, seq, q_heads, head_dim, dtype=dtype, requires_grad=requires_grad)
    k = torch.randn(batch, seq, k_heads, head_dim, dtype=dtype, requires_grad=requires_grad)
    return q, k


def test_tables_and_rotation_match_hf_llama(seeded):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    head_dim, seq = 32, 11
    config = LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, rope_theta=500000.0,
                         max_position_embeddings=64)
    q, k = _qk(seq=seq, head_dim=head_dim)
    positions = torch.arange(3, 3 + seq).unsqueeze(0).expand(2, seq)
    hf_cos, hf_sin = LlamaRotaryEmbedding(config)(q, positions)
    hf_q, hf_k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), hf_cos, hf_sin)
    cos, sin = rope_tables(64, head_dim, theta=500000.0)
    ours_q, ours_k = rope(q, k, cos, sin, offset=3, backend="ref")
    torch.testing.assert_close(ours_q, hf_q.transpose(1, 2), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours_k, hf_k.transpose(1, 2), rtol=1e-6, atol=1e-6)


def test_offset_and_explicit_positions_agree(seeded):
    q, k = _qk()
    cos, sin = rope_tables(32, 16)
    by_offset = rope(q, k, cos, sin, offset=5)
    row = torch.arange(5, 12)
    for positions in (row, row.expand(2, 7)):
        by_positions = rope(q, k, cos, sin, positions=positions)
        torch.testing.assert_close(by_positions, by_offset, rtol=0, atol=0)


def test_per_sequence_positions(seeded):
    q, k = _qk()
    cos, sin = rope_tables(32, 16)
    positions = torch.stack([torch.arange(7), torch.arange(20, 27)])
    q_rot, _ = rope(q, k, cos, sin, positions=positions)
    second, _ = rope(q[1:], k[1:], cos, sin, offset=20)
    torch.testing.assert_close(q_rot[1:], second, rtol=0, atol=0)


def test_inverse_undoes_forward(seeded):
    q, k = _qk()
    cos, sin = rope_tables(32, 16)
    q_rot, k_rot = rope_ref(q, k, cos, sin, offset=2)
    q_back, k_back = rope_ref(q_rot, k_rot, cos, sin, offset=2, inverse=True)
    torch.testing.assert_close(q_back, q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k_back, k, rtol=1e-5, atol=1e-5)


def test_gradients_match_autograd_through_the_reference(seeded):
    q, k = _qk(requires_grad=True)
    cos, sin = rope_tables(32, 16)
    grad_q, grad_k = torch.randn_like(q), torch.randn_like(k)
    q_rot, k_rot = rope(q, k, cos, sin, offset=4)
    torch.autograd.backward((q_rot, k_rot), (grad_q, grad_k))
    q2, k2 = (t.detach().clone().requires_grad_() for t in (q, k))
    torch.autograd.backward(rope_ref(q2, k2, cos, sin, offset=4), (grad_q, grad_k))
    torch.testing.assert_close(q.grad, q2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(k.grad, k2.grad, rtol=1e-5, atol=1e-6)


def test_gradient_when_only_q_is_used(seeded):
    q, k = _qk(requires_grad=True)
    cos, sin = rope_tables(32, 16)
    q_rot, _ = rope(q, k, cos, sin)
    q_rot.sum().backward()
    assert torch.count_nonzero(k.grad) == 0 and torch.count_nonzero(q.grad) > 0


def test_strided_views_are_accepted(seeded):
    qkv = torch.randn(2, 7, 3, 4, 16)  # a fused projection: q and k are views with gaps
    q, k = qkv[:, :, 0], qkv[:, :, 1]
    cos, sin = rope_tables(16, 16)
    expected = rope_ref(q.contiguous(), k.contiguous(), cos, sin)
    torch.testing.assert_close(rope(q, k, cos, sin), expected, rtol=0, atol=0)


def test_inplace_overwrites_and_returns_inputs(seeded):
    q, k = _qk()
    cos, sin = rope_tables(32, 16)
    expected = rope_ref(q, k, cos, sin, offset=1)
    q_out, k_out = rope(q, k, cos, sin, offset=1, inplace=True)
    assert q_out is q and k_out is k
    torch.testing.assert_close((q, k), expected, rtol=0, atol=0)


def test_inplace_refuses_tensors_that_need_grad():
    q, k = _qk(requires_grad=True)
    cos, sin = rope_tables(32, 16)
    with pytest.raises(KernelInputError, match="inplace=True is not differentiable"):
        rope(q, k, cos, sin, inplace=True)


def test_registered_as_torch_ops():
    assert torch.ops.fastllm.rope.default is not None
    assert torch.ops.fastllm.rope_.default is not None


@pytest.mark.parametrize("positions", [None, "row", "batch"])
def test_opcheck(seeded, positions):
    q, k = _qk(requires_grad=True)
    cos, sin = rope_tables(32, 16)
    pos = {None: None, "row": torch.arange(3, 10), "batch": torch.randint(0, 32, (2, 7))}[positions]
    torch.library.opcheck(torch.ops.fastllm.rope.default, (q, k, cos, sin, pos, 2, False, None))
    q, k = _qk()
    torch.library.opcheck(torch.ops.fastllm.rope_.default, (q, k, cos, sin, pos, 2, False, None))


def test_compiles_as_one_node(seeded):
    q, k = _qk()
    cos, sin = rope_tables(32, 16)
    compiled = torch.compile(lambda q, k: rope(q, k, cos, sin, offset=3), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k), rope(q, k, cos, sin, offset=3), rtol=0, atol=0)


def test_compiles_with_positions_and_in_place(seeded):
    """The position range check is data-dependent: it must run in the op body, not while tracing."""
    q, k = _qk(requires_grad=True)
    cos, sin = rope_tables(32, 16)
    positions = torch.randint(0, 32, (2, 7))
    compiled = torch.compile(lambda q, k: rope(q, k, cos, sin, positions=positions), backend="eager",
                             fullgraph=True)
    got = compiled(q, k)
    torch.testing.assert_close(got, rope_ref(q, k, cos, sin, positions), rtol=0, atol=0)
    got[0].sum().backward()
    assert q.grad is not None
    with pytest.raises(KernelInputError, match=r"positions must lie in \[0, 32\)"):
        torch.compile(lambda q, k: rope(q, k, cos, sin, positions=positions + 30), backend="eager",
                      fullgraph=True)(q, k)
    q2, k2 = (t.detach().clone() for t in (q, k))
    inplace = torch.compile(lambda q, k: rope(q, k, cos, sin, offset=2, inplace=True), backend="eager",
                            fullgraph=True)
    inplace(q2, k2)
    torch.testing.assert_close((q2, k2), rope_ref(q.detach(), k.detach(), cos, sin, offset=2), rtol=0, atol=0)


@pytest.mark.parametrize("op", ["rope", "rope_"])
def test_direct_op_calls_are_validated(op):
    """torch.ops.fastllm.rope is reachable without rope(): it checks its arguments before any kernel reads."""
    q, k = _qk()
    cos, sin = rope_tables(32, 16)
    cases = [((q, k, cos[:, :2].contiguous(), sin[:, :2].contiguous(), None, 0), "cos has 2 columns"),
             ((q, k, cos, sin, torch.arange(7) + 40, 0), "positions must lie in"),
             ((q, k[:, :3], cos, sin, None, 0), "B, T and D must match"),
             ((q, k, cos, sin, None, 30), "offset=30 with T=7")]
    for args, match in cases:
        with pytest.raises(KernelInputError, match=match):
            getattr(torch.ops.fastllm, op)(*args, False, None)


_TABLES = rope_tables(16, 16)


@pytest.mark.parametrize("change, match", [
    (lambda q, k, c, s: (q[0], k, c, s, {}), "q must be a 4-d tensor"),
    (lambda q, k, c, s: (q, k[:, :3], c, s, {}), "B, T and D must match"),
    (lambda q, k, c, s: (q[..., :15], k[..., :15], c, s, {}), "head dim D=15 must be even"),
    (lambda q, k, c, s: (q.int(), k.int(), c, s, {}), "q has dtype torch.int32"),
    (lambda q, k, c, s: (q, k.half(), c, s, {}), "k has dtype torch.float16 but q has torch.float32"),
    (lambda q, k, c, s: (torch.randn(2, 7, 4, 32)[..., ::2], torch.randn(2, 7, 2, 32)[..., ::2], c, s, {}),
     "q needs a contiguous last dimension"),
    (lambda q, k, c, s: (q, k, c.double(), s, {}), "cos has dtype torch.float64"),
    (lambda q, k, c, s: (q, k.to("meta"), c, s, {}), "k is on meta but q is on cpu"),
    (lambda q, k, c, s: (q, k, c.to("meta"), s, {}), "cos is on meta but q is on cpu"),
    (lambda q, k, c, s: (q, k, c[:, :4], s[:, :4], {}), "cos has 4 columns"),
    (lambda q, k, c, s: (q, k, c, s, {"offset": 12}), "offset=12 with T=7"),
    (lambda q, k, c, s: (q, k, c, s, {"positions": torch.arange(7.0)}), "positions must be an int64"),
    (lambda q, k, c, s: (q, k, c, s, {"positions": torch.arange(8)}), "positions has shape"),
    (lambda q, k, c, s: (q, k, c, s, {"positions": torch.arange(7) + 10}), r"positions must lie in \[0, 16\)"),
    (lambda q, k, c, s: (q, k, c, s, {"positions": [0, 1, 2, 3, 4, 5, 6]}), "positions must be an int64 tensor"),
    (lambda q, k, c, s: (q, k, c, s, {"offset": 1.5}), "offset must be an int, got 1.5"),
    (lambda q, k, c, s: (q.numpy(), k, c, s, {}), "q must be a torch.Tensor, got ndarray"),
])
def test_bad_input_is_one_line_naming_the_argument(change, match):
    q, k = _qk(head_dim=16)
    q, k, cos, sin, kwargs = change(q, k, *_TABLES)
    with pytest.raises(KernelInputError, match=match) as info:
        rope(q, k, cos, sin, **kwargs)
    assert "\n" not in str(info.value) and str(info.value).startswith("rope: ")


def _count_rope_dispatches(fn) -> int:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "fastllm":
                Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.calls


def test_plain_calls_skip_the_dispatcher_and_match_it(seeded):
    """rope() runs the op body itself for plain tensors without autograd (a decode step's host
    cost); the result, the in-place writes and the version bump equal the dispatched op's."""
    q, k = torch.randn(2, 3, 4, 16), torch.randn(2, 3, 2, 16)
    cos, sin = rope_tables(8, 16)
    assert dispatch.direct_call_allowed(q, k, cos, sin)
    torch.testing.assert_close(rope(q, k, cos, sin, offset=2),
                               torch.ops.fastllm.rope(q, k, cos, sin, None, 2, False, None), rtol=0, atol=0)
    want = rope_ref(q, k, cos, sin, offset=2)
    q_in, k_in = q.clone(), k.clone()
    versions = q_in._version, k_in._version
    rope(q_in, k_in, cos, sin, offset=2, inplace=True)
    torch.testing.assert_close((q_in, k_in), want, rtol=0, atol=0)
    assert q_in._version > versions[0] and k_in._version > versions[1]
    with torch.inference_mode():
        q_inf, k_inf = q.clone(), k.clone()
        rope(q_inf, k_inf, cos, sin, offset=2, inplace=True)
    torch.testing.assert_close((q_inf, k_inf), want, rtol=0, atol=0)


def test_modes_autograd_and_meta_tensors_go_through_the_dispatcher(seeded):
    q, k = torch.randn(1, 2, 2, 8), torch.randn(1, 2, 1, 8)
    cos, sin = rope_tables(4, 8)
    assert _count_rope_dispatches(lambda: rope(q, k, cos, sin)) == 1
    assert _count_rope_dispatches(lambda: rope(q.clone(), k.clone(), cos, sin, inplace=True)) == 1
    assert not dispatch.direct_call_allowed(q.requires_grad_(), k, cos, sin)
    with torch.no_grad():
        assert dispatch.direct_call_allowed(q, k, cos, sin)
    q.requires_grad_(False)
    meta = [t.to("meta") for t in (q, k, cos, sin)]
    assert not dispatch.direct_call_allowed(*meta)
    assert rope(*meta)[0].shape == q.shape  # the fake kernel answers

    def direct_under_vmap(x):
        seen.append(dispatch.direct_call_allowed(x, x, cos, sin))
        return x

    seen = []
    torch.func.vmap(direct_under_vmap)(q[None])
    assert seen == [False]
