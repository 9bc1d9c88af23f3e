"""The LLaMA-style model: shapes, parameter count, KV cache, GQA, init, dtype handling, learning."""

from __future__ import annotations

import math

import pytest
import torch

from fastllm.model import PRESETS, Llama, ModelConfig, cross_entropy
from fastllm.utils.errors import ConfigError


def _tiny(**overrides) -> ModelConfig:
    return ModelConfig.preset("tiny", vocab_size=97, max_seq_len=64, **overrides)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_counts_match_the_model_formula(name):
    config = PRESETS[name]
    if config.num_params() > 200e6:  # do not allocate the 1B/8B shapes; check the formula's sizes
        assert config.num_params() == pytest.approx({"1b": 1.236e9, "8b": 8.03e9}[name], rel=2e-3)
        return
    assert Llama(config, init=False).num_params() == config.num_params()


def test_tiny_is_about_a_million_parameters():
    assert 0.5e6 < PRESETS["tiny"].num_params() < 1.5e6
    assert PRESETS["smollm2-135m"].num_params() == 134_515_008  # SmolLM2-135M's published size


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_logits_shape_and_kv_cache_matches_full_forward(n_kv_heads):
    torch.manual_seed(0)
    model = Llama(_tiny(n_kv_heads=n_kv_heads)).eval()
    ids = torch.randint(0, 97, (2, 13))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(2, 20)
        # a prefill, a multi-token chunk (causal mask aligned to the cache's end), then single tokens
        parts = [model(ids[:, :4], cache), model(ids[:, 4:7], cache)] + [model(ids[:, t:t + 1], cache)
                                                                          for t in range(7, 13)]
    assert full.shape == (2, 13, 97)
    assert cache.pos == 13
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_causality_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = Llama(_tiny()).eval()
    ids = torch.randint(0, 97, (1, 10))
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 97
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[:, :6], model(changed)[:, :6])


def test_tied_and_untied_embeddings():
    tied, untied = Llama(_tiny()), Llama(_tiny(tie_embeddings=False))
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    assert untied.num_params() - tied.num_params() == 97 * 128


def test_scaled_init_of_residual_projections():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, dim=256, n_layers=8, n_heads=4, n_kv_heads=4, ffn_dim=512)
    model = Llama(config)
    std = config.init_std / math.sqrt(2 * config.n_layers)
    assert model.model.layers[0].self_attn.o_proj.weight.std().item() == pytest.approx(std, rel=0.05)
    assert model.model.layers[0].mlp.down_proj.weight.std().item() == pytest.approx(std, rel=0.05)
    assert model.model.layers[0].self_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(model.model.norm.weight, torch.ones(256))


def test_bf16_cast_keeps_float32_rope_tables_and_empty_model_is_ready():
    model = Llama(_tiny()).to(torch.bfloat16)
    assert model.rope_cos.dtype == torch.float32
    reference = Llama(_tiny())
    torch.testing.assert_close(model.rope_cos, reference.rope_cos)
    empty = Llama.empty(_tiny())
    assert empty.lm_head.weight is empty.model.embed_tokens.weight
    torch.testing.assert_close(empty.rope_sin, reference.rope_sin)
    with torch.no_grad():
        assert model(torch.zeros(1, 4, dtype=torch.long)).dtype == torch.bfloat16


def test_too_long_sequence_is_an_error():
    model = Llama(_tiny())
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = Llama(_tiny())
    ids = torch.randint(0, 97, (4, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(97), rel=0.1)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("bad, message", [
    (dict(n_kv_heads=3), "must divide"), (dict(dim=0), "dim must be positive"),
    (dict(head_dim=7), "even"), (dict(eos_id=5000), "outside the vocabulary"),
    (dict(max_seq_len=1 << 40), "max_seq_len 1099511627776 is above the supported"),
])
def test_invalid_configs_are_one_line_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.preset("tiny", **bad)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown model preset 'huge'"):
        ModelConfig.preset("huge")


def test_hf_config_round_trip_and_rejections():
    config = _tiny(rope_theta=5e5, bos_id=1, eos_id=2)
    assert ModelConfig.from_hf(config.to_hf()) == config
    hf = config.to_hf()
    hf["rope_scaling"] = {"rope_type": "yarn", "factor": 8.0}
    with pytest.raises(ConfigError, match="config.json: RoPE scaling 'yarn' is not supported"):
        ModelConfig.from_hf(hf)
    hf["rope_scaling"] = None
    hf["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}
    with pytest.raises(ConfigError, match="rope_parameters of type llama3 lacks 'low_freq_factor'"):
        ModelConfig.from_hf(hf)
    scaled = config.replace(rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 16.0})
    assert ModelConfig.from_hf(scaled.to_hf()) == scaled
    with pytest.raises(ConfigError, match="missing field 'hidden_size'"):
        ModelConfig.from_hf({k: v for k, v in config.to_hf().items() if k != "hidden_size"})
    with pytest.raises(ConfigError, match="not a LLaMA-style model"):
        ModelConfig.from_hf({**config.to_hf(), "model_type": "gpt2"})
    with pytest.raises(ConfigError, match="max_seq_len .* is above the supported"):  # before any allocation
        ModelConfig.from_hf({**config.to_hf(), "max_position_embeddings": 1 << 40})
