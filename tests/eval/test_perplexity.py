"""Perplexity protocol: window plans, exact per-token scoring, bits per byte, the unigram
baseline, the CLI on text files and shards, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fastllm.cli.main import main
from fastllm.eval.perplexity import stream_perplexity, unigram_baseline, windows
from fastllm.model import Llama, ModelConfig, save_pretrained


def test_window_plans_score_each_token_once():
    assert windows(10, 4, 4) == [(0, 1, 4), (4, 5, 8), (8, 9, 10)]
    assert windows(10, 4, 2) == [(0, 1, 4), (2, 4, 6), (4, 6, 8), (6, 8, 10)]
    for n, w, s in [(1, 4, 4), (2, 4, 4), (37, 8, 3), (64, 8, 8), (65, 8, 1)]:
        scored = [t for _, first, end in windows(n, w, s) for t in range(first, end)]
        assert len(scored) == len(set(scored)) and all(1 <= t < n for t in scored)
        if s < w:
            assert scored == list(range(1, n))
    with pytest.raises(ValueError, match="stride <= window"):
        windows(10, 4, 5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Llama(ModelConfig.preset("tiny", vocab_size=50, n_layers=2, max_seq_len=32, init_std=0.1)).eval()


def test_matches_a_token_by_token_reference(model):
    ids = torch.randint(0, 50, (45,), generator=torch.Generator().manual_seed(1))
    byte_len = np.arange(50) % 3 + 1
    result = stream_perplexity(model, [ids], window=16, stride=6, batch_size=3, token_bytes=byte_len,
                               show_progress=False)
    nll, n_bytes = 0.0, 0
    for begin, first, end in windows(45, 16, 6):
        with torch.no_grad():
            logp = model(ids[None, begin:end - 1]).log_softmax(-1)[0]
        for t in range(first, end):
            nll -= logp[t - begin - 1, ids[t]].item()
            n_bytes += int(byte_len[ids[t]])
    assert result.tokens == 44 and result.bytes == n_bytes
    assert result.nll == pytest.approx(nll, rel=1e-6)
    assert result.perplexity == pytest.approx(math.exp(nll / 44), rel=1e-6)
    assert result.bits_per_byte == pytest.approx(nll / math.log(2) / n_bytes, rel=1e-6)


def test_unigram_baseline():
    train = [np.array([0, 0, 0, 1])]
    result = unigram_baseline(train, 3, [np.array([2, 0, 1, 0])], window=4)
    p = np.array([4, 2, 1]) / 7  # add-one counts
    assert result.tokens == 3
    assert result.nll == pytest.approx(-np.log(p[[0, 1, 0]]).sum())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from fastllm.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("ppl")
    text = "the cat sat on the mat. the dog sat on the log. " * 30
    tokenizer = train_bpe([text], 300, min_frequency=2)
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", vocab_size=tokenizer.vocab_size, n_layers=1, max_seq_len=64,
                                eos_id=tokenizer.eos_id)
    save_pretrained(Llama(config), root / "model", tokenizer=tokenizer)
    (root / "a.txt").write_text(text)
    ids = np.array(tokenizer.encode(text), dtype="<u2")
    (root / "shards").mkdir()
    ids.tofile(root / "shards" / "val-00000.bin")
    index = {"format": "fastllm-shards-v1", "dtype": "uint16", "vocab_size": tokenizer.vocab_size,
             "tokenizer_hash": tokenizer.hash(), "eos_id": tokenizer.eos_id,
             "splits": {"train": [], "val": [{"file": "val-00000.bin", "tokens": len(ids), "documents": 1}]}}
    (root / "shards" / "index.json").write_text(json.dumps(index))
    return root


def test_cli_on_text_and_shards_agree(model_dir, capsys):
    assert main(["eval", "perplexity", "--model", str(model_dir / "model"), "--text", str(model_dir / "a.txt"),
                 "--window=32", "--out", str(model_dir / "report"), "--quiet"]) == 0
    text_report = json.loads((model_dir / "report.json").read_text())
    assert "| perplexity |" in (model_dir / "report.md").read_text()
    assert main(["eval", "perplexity", "--model", str(model_dir / "model"), "--shards", str(model_dir / "shards"),
                 "--window=32", "--out", str(model_dir / "shards_report"), "--quiet"]) == 0
    shard_report = json.loads((model_dir / "shards_report.json").read_text())
    assert shard_report["perplexity"] == pytest.approx(text_report["perplexity"], rel=1e-9)
    assert text_report["tokens"] > 100 and 0 < text_report["bits_per_byte"] < 20
    assert "bits/byte" in capsys.readouterr().out


def test_bits_per_byte_divides_by_the_bytes_of_the_text(model_dir, tmp_path):
    """Special tokens (the eos joining documents in shards) are not text: 0 bytes; special-token
    strings inside a text file are text. So the bytes behind a stream are its documents' UTF-8."""
    from fastllm.eval.perplexity import read_text_streams, token_byte_lengths
    from fastllm.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_file(model_dir / "model" / "tokenizer.json")
    lengths = token_byte_lengths(tokenizer)
    eos = tokenizer.eos_id
    assert lengths[eos] == 0 and len(lengths) == tokenizer.vocab_size
    eos_text = next(t.content for t in tokenizer.added_tokens if t.id == eos)
    documents = ["the cat sat on the mat.", f"a dog {eos_text} on a log. \u00e9t\u00e9"]
    (tmp_path / "doc.txt").write_text(documents[1], encoding="utf-8")
    streams, n_bytes = read_text_streams([tmp_path / "doc.txt"], tokenizer)
    assert eos not in streams[0] and lengths[streams[0]].sum() == n_bytes == len(documents[1].encode())

    torch.manual_seed(0)
    model = Llama(ModelConfig.preset("tiny", vocab_size=tokenizer.vocab_size, n_layers=1, max_seq_len=64)).eval()
    stream = np.array([eos, *tokenizer.encode(documents[0]), eos, *streams[0]])  # a shard's layout
    result = stream_perplexity(model, [stream], window=64, token_bytes=lengths, show_progress=False)
    assert result.tokens == len(stream) - 1
    assert result.bytes == sum(len(d.encode()) for d in documents)
    assert result.bits_per_byte == pytest.approx(result.nll / math.log(2) / result.bytes)


def test_cli_bad_input(model_dir, tmp_path, capsys):
    index = json.loads((model_dir / "shards" / "index.json").read_text())
    other = tmp_path / "shards"
    other.mkdir()
    (other / "val-00000.bin").write_bytes((model_dir / "shards" / "val-00000.bin").read_bytes())
    (other / "index.json").write_text(json.dumps({**index, "tokenizer_hash": "0123456789abcdef"}))
    model = str(model_dir / "model")
    cases = [
        (["--shards", str(other)], "index.json: the shards were tokenized with 0123456789ab"),
        (["--text", str(tmp_path / "missing.txt")], "missing.txt: text file not found"),
        (["--model", str(tmp_path / "nowhere"), "--text", str(model_dir / "a.txt")], "no such model directory"),
        (["--text", str(model_dir / "a.txt"), "--window=500"], "exceeds the model's max_seq_len 64"),
        (["--text", str(model_dir / "a.txt"), "--window=32", "--stride=40"], "need window >= 2 and stride <= window"),
        (["--text", str(model_dir / "a.txt"), "--window=1"], "need window >= 2"),
        (["--text", str(model_dir / "a.txt"), "--stride=100"], "--window 64 / --stride 100"),
        ([], "give either --text files or --shards"),
        (["--text", str(model_dir / "a.txt"), "--windw=3"], "unknown flag --windw"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "index.json").write_text(json.dumps({**index, "splits": {"train": [], "val": []}}))
    cases.append((["--shards", str(empty)], "split 'val' is empty or missing"))
    cases.append((["--text", str(tmp_path)], f"{tmp_path}: cannot read"))  # a directory
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "index.json").write_text(json.dumps(index))
    (corrupt / "val-00000.bin").write_bytes(b"\xff" * (model_dir / "shards" / "val-00000.bin").stat().st_size)
    cases.append((["--shards", str(corrupt)], "token id 65535 is outside the vocabulary"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    cases.append((["--text", str(tmp_path / "bin.txt")], "bin.txt: not UTF-8 text"))
    for args, message in cases:
        argv = ["eval", "perplexity", *(["--model", model] if "--model" not in args else []), *args, "--quiet"]
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (args, err)
