"""Our checkpoints are transformers LlamaForCausalLM checkpoints, and theirs load into our model:
fp32 logits equal within 1e-4 both ways (tiny configs, tied/untied, GQA, sharded index)."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

from fastllm.model import Llama, ModelConfig, load_pretrained, save_pretrained  # noqa: E402
from fastllm.utils.errors import ConfigError, InputFormatError  # noqa: E402

IDS = torch.tensor([[5, 17, 3, 250, 99, 1, 0, 64, 31, 7, 120, 2], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12]])


def _logits(model, ids=IDS):
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out


@pytest.mark.parametrize("tied, n_kv_heads", [(True, 2), (False, 4), (False, 1)])
def test_ours_loads_in_transformers_with_equal_logits(tmp_path, tied, n_kv_heads):
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", vocab_size=256, n_layers=2, n_kv_heads=n_kv_heads,
                                tie_embeddings=tied, rope_theta=50000.0, bos_id=1, eos_id=2)
    ours = Llama(config).eval()
    save_pretrained(ours, tmp_path / "model")
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "model").eval()
    assert isinstance(theirs, LlamaForCausalLM)
    assert theirs.config.tie_word_embeddings == tied
    torch.testing.assert_close(_logits(theirs), _logits(ours), atol=1e-4, rtol=0)


@pytest.mark.parametrize("shard", [False, True])
def test_transformers_checkpoint_loads_into_ours_with_equal_logits(tmp_path, shard):
    torch.manual_seed(0)
    hf_config = LlamaConfig(vocab_size=256, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                            num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                            rope_theta=20000.0, rms_norm_eps=1e-6, tie_word_embeddings=not shard)
    theirs = LlamaForCausalLM(hf_config).eval()
    theirs.save_pretrained(tmp_path / "hf", max_shard_size="100KB" if shard else "5GB")
    if shard:
        assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    ours = load_pretrained(tmp_path / "hf")
    assert ours.config.head_dim == 16 and ours.config.n_kv_heads == 2 and ours.config.rope_theta == 20000.0
    torch.testing.assert_close(_logits(ours), _logits(theirs), atol=1e-4, rtol=0)


@pytest.mark.parametrize("direction", ["theirs_to_ours", "ours_to_theirs"])
def test_llama3_rope_scaling_matches_transformers(tmp_path, direction):
    torch.manual_seed(0)
    scaling = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
    ids = torch.randint(0, 256, (2, 60))  # longer than the original context, so the scaling matters
    if direction == "theirs_to_ours":
        hf_config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, **scaling})
        theirs = LlamaForCausalLM(hf_config).eval()
        theirs.save_pretrained(tmp_path / "m")
        ours = load_pretrained(tmp_path / "m")
        assert ours.config.rope_scaling == {k: float(v) for k, v in scaling.items()}
    else:
        config = ModelConfig.preset("tiny", vocab_size=256, n_layers=2, max_seq_len=64,
                                    rope_scaling={k: float(v) for k, v in scaling.items()})
        ours = Llama(config).eval()
        save_pretrained(ours, tmp_path / "m")
        theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    torch.testing.assert_close(_logits(ours, ids), _logits(theirs, ids), atol=1e-4, rtol=0)
    plain = Llama(ours.config.replace(rope_scaling=None))
    assert not torch.allclose(plain.rope_cos, ours.rope_cos)


def _byte_level_tokenizer_json(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["to be or not to be, that is the question"] * 20, trainer)
    tok.save(str(path))
    return tok


def test_saved_directory_carries_a_usable_tokenizer(tmp_path):
    hf_tok = _byte_level_tokenizer_json(tmp_path / "tokenizer.json")
    config = ModelConfig.preset("tiny", vocab_size=hf_tok.get_vocab_size(), n_layers=1,
                                bos_id=hf_tok.token_to_id("<|begin_of_text|>"), eos_id=hf_tok.token_to_id("<|end_of_text|>"))
    save_pretrained(Llama(config), tmp_path / "model", tokenizer=tmp_path / "tokenizer.json")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert tokenizer.eos_token == "<|end_of_text|>" and tokenizer.bos_token == "<|begin_of_text|>"
    assert tokenizer("to be or not")["input_ids"] == hf_tok.encode("to be or not").ids


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    model_dir = tmp_path / "m"
    save_pretrained(Llama(ModelConfig.preset("tiny", n_layers=1)), model_dir)
    weights = model_dir / "model.safetensors"

    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "config.json").write_text((model_dir / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputFormatError, match=r"corrupt/model.safetensors: not a valid safetensors file"):
        load_pretrained(bad)
    (bad / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(InputFormatError, match="not a valid safetensors file"):
        load_pretrained(bad)

    other = json.loads((model_dir / "config.json").read_text())
    other["intermediate_size"] = 999  # a checkpoint from a different architecture
    (bad / "model.safetensors").write_bytes(weights.read_bytes())
    (bad / "config.json").write_text(json.dumps(other))
    with pytest.raises(ConfigError, match=r"gate_proj.weight has shape \(352, 128\), the config expects \(999, 128\)"):
        load_pretrained(bad)
    other["num_hidden_layers"] = 2
    (bad / "config.json").write_text(json.dumps(other))
    with pytest.raises(ConfigError, match="does not match its config"):
        load_pretrained(bad)
    other["num_hidden_layers"] = 10**9  # refused from the tensor names, before a model is built
    (bad / "config.json").write_text(json.dumps(other))
    with pytest.raises(ConfigError, match=r"does not match its config \(1000000000 layers configured, tensors for 1\)"):
        load_pretrained(bad)

    (bad / "config.json").write_text("{not json")
    with pytest.raises(InputFormatError, match="config.json: not valid JSON"):
        load_pretrained(bad)
    (bad / "config.json").unlink()
    with pytest.raises(InputFormatError, match="config.json: missing"):
        load_pretrained(bad)
    with pytest.raises(InputFormatError, match="no such model directory"):
        load_pretrained(tmp_path / "nowhere")

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((model_dir / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(InputFormatError, match="only pytorch_model.bin"):
        load_pretrained(pickled)
