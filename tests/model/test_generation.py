"""Generation: greedy with and without the KV cache, sampling filters, seeds, EOS."""

from __future__ import annotations

import pytest
import torch

from fastllm.model import Llama, ModelConfig, Sampling, generate
from fastllm.model.generate import next_token


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Llama(ModelConfig.preset("tiny", vocab_size=61, max_seq_len=48, init_std=0.2)).eval()


def test_greedy_with_cache_equals_without(model):
    prompt = torch.randint(0, 61, (2, 5), generator=torch.Generator().manual_seed(1))
    with_cache = generate(model, prompt, 20, temperature=0)
    without = generate(model, prompt, 20, temperature=0, use_cache=False)
    assert with_cache == without
    assert [len(row) for row in with_cache] == [20, 20]


def test_top_k_one_and_tiny_top_p_are_greedy(model):
    prompt = [3, 14, 15, 9]
    greedy = generate(model, prompt, 12, temperature=0)
    assert generate(model, prompt, 12, temperature=1.0, top_k=1, seed=5) == greedy
    assert generate(model, prompt, 12, temperature=1.0, top_p=1e-6, seed=5) == greedy


def test_seeded_sampling_is_reproducible_and_varies_with_seed(model):
    a = generate(model, [1, 2, 3], 30, temperature=1.5, seed=7)
    assert a == generate(model, [1, 2, 3], 30, temperature=1.5, seed=7)
    assert a != generate(model, [1, 2, 3], 30, temperature=1.5, seed=8)


def test_generation_stops_at_max_seq_len_and_eos(model):
    assert len(generate(model, list(range(40)), 100, temperature=0)[0]) == 8
    with pytest.raises(ValueError, match="prompt of 48 tokens leaves no room .* max_seq_len 48"):
        generate(model, list(range(48)), 5, temperature=0)
    first = generate(model, [5, 6], 1, temperature=0)[0][0]
    assert generate(model, [5, 6], 10, temperature=0, eos_id=first) == [[first]]


def test_filters_keep_only_allowed_tokens():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    top2 = next_token(logits, Sampling(1.0, top_k=2), g)
    assert set(top2.tolist()) == {0, 1}
    probs = logits[0].softmax(-1)  # 0.636, 0.234, ...: top_p 0.8 keeps tokens 0 and 1
    nucleus = next_token(logits, Sampling(1.0, top_p=0.8), g)
    assert set(nucleus.tolist()) == {0, 1}
    share = (nucleus == 0).float().mean().item()
    assert share == pytest.approx((probs[0] / probs[:2].sum()).item(), abs=0.04)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_k=-2), "top_k")])
def test_bad_sampling_arguments(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(model, [1], 3, **kwargs)


def test_generate_cli_prints_samples_and_rejects_bad_input(tmp_path, capsys):
    from fastllm.cli.main import main
    from fastllm.model import save_pretrained
    from fastllm.tokenizer import train_bpe

    tokenizer = train_bpe(["so fair and foul a day I have not seen. " * 20], 280)
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", vocab_size=tokenizer.vocab_size, n_layers=1, max_seq_len=64,
                                eos_id=tokenizer.eos_id)
    save_pretrained(Llama(config), tmp_path / "model", tokenizer=tokenizer)
    args = ["generate", "--model", str(tmp_path / "model"), "--max_new_tokens=8", "--seed=3", "--quiet"]
    assert main([*args, "--prompt", "so fair", "--num_samples=2"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample") == 2 and out.count("so fair") == 2
    assert main([*args, "--temperature=0"]) == 0  # empty prompt: starts from the eos separator
    capsys.readouterr()
    (tmp_path / "model" / "tokenizer.json").unlink()
    assert main(args) == 1
    assert "no tokenizer.json found" in capsys.readouterr().err
    assert main([*args, "--top_p=0"]) == 1
    assert "top_p must be in (0, 1]" in capsys.readouterr().err


def _cached_logits(model, prompt, continuation):
    """Logits of a KV-cached run: the prompt (prefill), then one token at a time (decoding)."""
    cache = model.new_cache(prompt.shape[0], prompt.shape[1] + continuation.shape[1])
    steps = [model(prompt, cache)[:, -1]]
    for t in range(continuation.shape[1]):
        steps.append(model(continuation[:, t:t + 1], cache)[:, -1])
    return torch.stack(steps, 1).float()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cuda_prefill", [True, False], ids=["hopper-cuda-prefill", "triton-prefill"])
def test_gpu_cached_decoding_with_the_fast_kernels_follows_the_reference(dtype, cuda_prefill, monkeypatch):
    """On a GPU the model prefills through the automatic choice (on Hopper, for the head dims in
    HOPPER_PREFILL_HEAD_DIMS, the CUDA wgmma forward; elsewhere the Triton kernel; both routes run
    here by setting those head dims) and decodes through the CUDA split-KV kernel (both checked in
    the profile); its logits at every step stay within low-precision noise of the same model on
    the reference backends."""
    from fastllm.kernels.attention import cuda as cuda_attention

    monkeypatch.setattr(cuda_attention, "HOPPER_PREFILL_HEAD_DIMS", (64,) if cuda_prefill else ())
    device = torch.device("cuda", torch.cuda.current_device())
    on_cuda = cuda_attention.prefers_cuda_prefill(device, 64)  # the model's head dim: 256 / 4
    prefill_kernel = "attention_fwd_wgmma_kernel" if on_cuda else "attention_fwd_kernel"
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=97, dim=256, n_layers=2, n_heads=4, n_kv_heads=1, ffn_dim=512,
                         max_seq_len=320, init_std=0.1)
    model = Llama(config).to("cuda", dtype).eval()
    prompt = torch.randint(0, 97, (3, 200), device="cuda")
    continuation = torch.randint(0, 97, (3, 40), device="cuda")
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fast = _cached_logits(model, prompt, continuation)
        torch.cuda.synchronize()
    kernels = " ".join(event.key for event in prof.key_averages())
    assert prefill_kernel in kernels and "attention_decode_split_kernel" in kernels, kernels
    monkeypatch.setenv("FASTLLM_BACKEND", "ref")
    with torch.no_grad():
        reference = _cached_logits(model, prompt, continuation)
        exact = _cached_logits(model.float(), prompt, continuation)
    kernel_error = (fast - exact).abs().max().item()
    reference_error = (reference - exact).abs().max().item()
    assert kernel_error <= 2 * reference_error + 1e-3, (kernel_error, reference_error)
