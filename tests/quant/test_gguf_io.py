"""GGUF reader: round trip through the gguf package's writer (F32 exact, Q8_0/Q4_1 close), the
Q/K row permutation, and bad files (truncated, corrupt counts/offsets, wrong arch) as one-line errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from fastllm.model import Llama, ModelConfig, load_pretrained  # noqa: E402
from fastllm.quant.gguf_io import GGUFFile, hf_name, permute_rows, unpermute_rows  # noqa: E402
from fastllm.utils.errors import ConfigError, InputFormatError  # noqa: E402

Q = gguf.GGMLQuantizationType
_TO_GGUF = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
            "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
            "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def _gguf_name(name: str) -> str:
    if not name.startswith("model.layers."):
        return {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight"}[name]
    _, _, layer, *rest, last = name.split(".")
    return f"blk.{layer}.{_TO_GGUF['.'.join(rest)]}.{last}"


def write_gguf(path, model: Llama, qtype=Q.F32, arch="llama"):
    """A llama.cpp-style GGUF of `model` (Q/K rows permuted like convert_hf_to_gguf.py)."""
    c = model.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(c.max_seq_len)
    writer.add_embedding_length(c.dim)
    writer.add_block_count(c.n_layers)
    writer.add_feed_forward_length(c.ffn_dim)
    writer.add_head_count(c.n_heads)
    writer.add_head_count_kv(c.n_kv_heads)
    writer.add_rope_freq_base(c.rope_theta)
    writer.add_layer_norm_rms_eps(c.norm_eps)
    writer.add_uint32("tokenizer.ggml.eos_token_id", 2)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and c.tie_embeddings:
            continue
        if name.endswith("q_proj.weight"):
            tensor = permute_rows(tensor, c.n_heads)
        elif name.endswith("k_proj.weight"):
            tensor = permute_rows(tensor, c.n_kv_heads)
        data = tensor.numpy().astype(np.float32)
        if data.ndim == 2 and qtype != Q.F32:
            writer.add_tensor(_gguf_name(name), gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(_gguf_name(name), data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return Llama(ModelConfig.preset("tiny", vocab_size=96, n_layers=2, max_seq_len=64, tie_embeddings=False)).eval()


def _logits(model):
    with torch.no_grad():
        return model(torch.arange(20)[None] % 96)


def test_permutation_round_trip_and_pairs():
    w = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(16, 3)  # 2 heads of 8 rows
    torch.testing.assert_close(unpermute_rows(permute_rows(w, 2), 2), w)
    # llama.cpp interleaves the two halves of each head: rows (0, 4, 1, 5, 2, 6, 3, 7) of head 0
    assert permute_rows(w, 2)[:8, 0].tolist() == [0.0, 12.0, 3.0, 15.0, 6.0, 18.0, 9.0, 21.0]


def test_f32_gguf_round_trip_is_exact(tmp_path, tiny_model):
    path = write_gguf(tmp_path / "m.gguf", tiny_model)
    loaded = load_pretrained(path)
    assert loaded.config.replace(eos_id=None) == tiny_model.config
    assert loaded.config.eos_id == 2
    torch.testing.assert_close(_logits(loaded), _logits(tiny_model), atol=1e-5, rtol=0)


@pytest.mark.parametrize("qtype, atol", [(Q.Q8_0, 0.01), (Q.Q4_1, 0.05), (Q.F16, 1e-3)])
def test_quantized_gguf_is_close(tmp_path, tiny_model, qtype, atol):
    path = write_gguf(tmp_path / "m.gguf", tiny_model, qtype)
    gf = GGUFFile(path)
    assert gf.tensors["blk.0.ffn_up.weight"].ggml_type == qtype
    expected = tiny_model.model.layers[0].mlp.up_proj.weight
    assert (gf.tensor("blk.0.ffn_up.weight") - expected).abs().max() < atol
    gf.close()
    assert (_logits(load_pretrained(path)) - _logits(tiny_model)).abs().max() < 20 * atol


def test_names():
    assert hf_name("blk.12.attn_k.weight") == "model.layers.12.self_attn.k_proj.weight"
    assert hf_name("output.weight") == "lm_head.weight"
    assert hf_name("rope_freqs.weight") is None


@pytest.fixture(scope="module")
def good_file(tmp_path_factory, tiny_model):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "good.gguf", tiny_model)


@pytest.mark.parametrize("cut", [3, 10, 30, 200, 2000, -1000, -1])
def test_truncated_files_are_one_line_errors(tmp_path, good_file, cut):
    data = good_file.read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:cut])
    with pytest.raises(InputFormatError, match=r"cut.gguf: (not a GGUF file|corrupt GGUF file|tensor .* outside the file)") as info:
        load_pretrained(path)
    assert "\n" not in str(info.value)


def test_corrupt_headers(tmp_path, good_file):
    data = bytearray(good_file.read_bytes())
    path = tmp_path / "bad.gguf"

    def check(blob, message):
        path.write_bytes(bytes(blob))
        with pytest.raises(InputFormatError, match=message):
            GGUFFile(path)

    check(b"GGML" + data[4:], "bad magic")
    check(data[:4] + struct.pack("<I", 1) + data[8:], "version 1 is not supported")
    check(data[:8] + struct.pack("<Q", 2**40) + data[16:], "more than the file holds")
    check(data[:16] + struct.pack("<Q", 2**50) + data[24:], "more than the file holds")
    # The first key's length says 2**60 bytes.
    check(data[:24] + struct.pack("<Q", 2**60) + data[32:], "metadata key needs")
    check(b"", "too short")


def test_tensor_offset_and_type_validation(tmp_path, good_file):
    gf = GGUFFile(good_file)
    info = gf.tensors["blk.0.attn_q.weight"]
    gf.close()
    data = bytearray(good_file.read_bytes())
    name = b"blk.0.attn_q.weight"
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)  # n_dims, dims, type, offset follow
    n_dims = struct.unpack_from("<I", data, at)[0]
    type_at, offset_at = at + 4 + 8 * n_dims, at + 4 + 8 * n_dims + 4
    path = tmp_path / "bad.gguf"
    bad = bytearray(data)
    struct.pack_into("<Q", bad, offset_at, len(data) * 4)
    path.write_bytes(bytes(bad))
    with pytest.raises(InputFormatError, match="attn_q.weight data .* lies outside the file"):
        GGUFFile(path)
    bad = bytearray(data)
    struct.pack_into("<I", bad, type_at, 999)
    path.write_bytes(bytes(bad))
    with pytest.raises(InputFormatError, match="attn_q.weight has unknown ggml type 999"):
        GGUFFile(path)
    assert info.shape == (128, 128)


def test_wrong_architecture(tmp_path, tiny_model):
    path = write_gguf(tmp_path / "gpt2.gguf", tiny_model, arch="gpt2")
    with pytest.raises(ConfigError, match="general.architecture is 'gpt2'"):
        load_pretrained(path)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _kv(key: str, value_type: int, payload: bytes) -> bytes:
    return _string(key) + struct.pack("<I", value_type) + payload


def _u32(key: str, value: int) -> bytes:
    return _kv(key, 4, struct.pack("<I", value))


def _crafted(metadata: list[bytes], tensors: tuple[tuple[str, tuple[int, ...]], ...] = ()) -> bytes:
    """A GGUF v3 file from raw metadata entries and F32 tensors (dims innermost first), zero data."""
    infos, offset = b"", 0
    for name, dims in tensors:
        infos += _string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", 0, offset)
        offset += -(-4 * int(np.prod(dims)) // 32) * 32
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)) + b"".join(metadata) + infos
    return head + b"\0" * (-len(head) % 32 + offset + 64)


_LLAMA_KV = [_kv("general.architecture", 8, _string("llama")), _u32("llama.embedding_length", 8),
             _u32("llama.attention.head_count", 2), _u32("llama.block_count", 1), _u32("llama.feed_forward_length", 8),
             _u32("llama.context_length", 16), _kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5))]


def _replace(key: str, entry: bytes) -> list[bytes]:
    return [entry if e.startswith(_string(key)) else e for e in _LLAMA_KV]


@pytest.mark.parametrize("blob, message", [
    # an array of arrays of ... 3000 deep: a few bytes per level, no RecursionError
    (_crafted([_string("x") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 2999 + struct.pack("<IQ", 0, 0)]),
     "nested deeper than"),
    (_crafted([_kv("general.alignment", 8, _string("abc"))]), "general.alignment 'abc' is not a power of two"),
    (_crafted(_replace("llama.attention.head_count", _u32("llama.attention.head_count", 0)), (("token_embd.weight", (8, 4)),)),
     "head_count must be positive"),
    (_crafted(_replace("llama.embedding_length", _kv("llama.embedding_length", 8, _string("eight"))),
              (("token_embd.weight", (8, 4)),)), "llama.embedding_length 'eight' is not an integer"),
    (_crafted([*_LLAMA_KV, _kv("tokenizer.ggml.eos_token_id", 8, _string("x"))], (("token_embd.weight", (8, 4)),)),
     "tokenizer.ggml.eos_token_id 'x' is not an integer"),
    # a billion layers claimed, one tensor present: refused before any model is built
    (_crafted(_replace("llama.block_count", _u32("llama.block_count", 10**9)), (("token_embd.weight", (8, 4)),)),
     "1000000000 layers"),
    # attn_q with 3 rows cannot be un-permuted for 2 heads: a shape error, not a reshape traceback
    (_crafted(_LLAMA_KV, (("token_embd.weight", (8, 4)), ("output_norm.weight", (8,)),
                          *((f"blk.0.{n}.weight", (8,)) for n in ("attn_norm", "ffn_norm")),
                          *((f"blk.0.{n}.weight", (8, 8)) for n in ("attn_k", "attn_v", "attn_output", "ffn_gate",
                                                                   "ffn_up", "ffn_down")),
                          ("blk.0.attn_q.weight", (8, 3)))),
     r"q_proj.weight has shape \(3, 8\), the config expects \(8, 8\)"),
])
def test_crafted_metadata_is_a_one_line_error(tmp_path, blob, message):
    path = tmp_path / "crafted.gguf"
    path.write_bytes(blob)
    with pytest.raises((InputFormatError, ConfigError), match=message) as info:
        load_pretrained(path)
    assert "\n" not in str(info.value) and "crafted.gguf" in str(info.value)
