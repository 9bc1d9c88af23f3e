"""`fastllm tokenizer ...` end to end through the CLI entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tok_corpus import shakespeare_files

from fastllm.cli.main import main
from fastllm.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tok" / "tokenizer.json"
    plays = shakespeare_files()[0].parent
    assert main(["tokenizer", "train", "--input", str(plays / "*.md"), "--vocab-size", "700",
                 "--output", str(out), "--num-threads", "2", "--quiet"]) == 0
    return out


def test_train_writes_a_loadable_tokenizer(trained, capsys):
    tok = Tokenizer.from_file(trained)
    assert tok.vocab_size == 700 and (tok.bos_id, tok.eos_id) == (697, 698)  # specials at the end


def test_encode_decode_info_export(trained, tmp_path, capsys):
    capsys.readouterr()
    assert main(["tokenizer", "encode", "--tokenizer", str(trained), "--text", "To be, or not to be"]) == 0
    ids = [int(x) for x in capsys.readouterr().out.split()]
    assert ids == Tokenizer.from_file(trained).encode("To be, or not to be")
    assert main(["tokenizer", "decode", "--tokenizer", str(trained), "--ids", ",".join(map(str, ids))]) == 0
    assert capsys.readouterr().out == "To be, or not to be\n"

    source = tmp_path / "in.txt"
    source.write_text("Now is the winter of our discontent<|end_of_text|>", encoding="utf-8")
    npy = tmp_path / "ids.npy"
    assert main(["tokenizer", "encode", "--tokenizer", str(trained), "--input", str(source), "--output", str(npy),
                 "--allowed-special", "all"]) == 0
    saved = np.load(npy)
    assert saved.dtype == np.uint32 and saved[-1] == Tokenizer.from_file(trained).eos_id
    capsys.readouterr()

    assert main(["tokenizer", "info", "--tokenizer", str(trained), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vocab_size"] == 700 and info["pattern"] == "llama3" and len(info["hash"]) == 64

    out = tmp_path / "ours.tiktoken"
    assert main(["tokenizer", "export", "--tokenizer", str(trained), "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 700 - 3
    fields = tmp_path / "gguf.json"
    assert main(["tokenizer", "export", "--tokenizer", str(trained), "--format", "gguf-fields",
                 "--output", str(fields)]) == 0
    assert json.loads(fields.read_text())["tokenizer.ggml.pre"] == "llama-bpe"


@pytest.mark.parametrize("argv, message", [
    (["train", "--input", "/nonexistent/x.txt"], "no such file"),
    (["train"], "give at least one file"),
    (["train", "--input", "x.txt", "--vocab-size", "100"], "below the 259 tokens"),
    (["encode", "--tokenizer", "/nonexistent.json", "--text", "x"], "not found"),
    (["encode", "--text", "x", "--input", "y"], "exactly one of"),
    (["encode", "--text", "a<|end_of_text|>"],
     "--text: contains the special token '<|end_of_text|>'; pass --allowed-special '<|end_of_text|>' (or all)"),
    (["encode", "--text", "a", "--allowed-special", "<|nope|>"], "--allowed-special: not special tokens"),
])
def test_errors_are_one_line(argv, message, capsys, trained, tmp_path):
    if argv[0] == "encode" and "--tokenizer" not in argv:
        argv = argv + ["--tokenizer", str(trained)]
    if argv[:3] == ["train", "--input", "x.txt"]:
        (tmp_path / "x.txt").write_text("some words")
        argv = ["train", "--input", str(tmp_path / "x.txt"), *argv[3:]]
    assert main(["tokenizer", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_help_lists_subcommands(capsys):
    assert main(["tokenizer", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(sub in out for sub in ("train", "encode", "decode", "info", "export"))
    assert main(["tokenizer", "train", "--help"]) == 0
    assert "--vocab-size" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["llama3-32k", "gpt2-50k", "tiny-4k"])
def test_shipped_configs_load(name):
    from pathlib import Path

    from fastllm.cli.config_io import load_config
    from fastllm.cli.tokenizer import TrainConfig

    path = Path(__file__).resolve().parents[2] / "configs" / "tokenizer" / f"{name}.yaml"
    config = load_config(TrainConfig, path, ["--input", "corpus.txt"])
    assert config.vocab_size > 256 + len(config.special_tokens)


def test_gpt2_end_of_text_is_the_eos():
    from fastllm.tokenizer import train_bpe

    tok = train_bpe(["a small corpus for a small test"], 270, special_tokens=["<|endoftext|>"], pattern="gpt2")
    assert tok.eos_id == tok.special_tokens["<|endoftext|>"] and tok.bos_id is None


def test_train_takes_every_pattern_the_library_has(tmp_path):
    from fastllm.tokenizer.patterns import PATTERNS

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("In 1611, 42 men wrote 7 books.\n" * 50, encoding="utf-8")
    for pattern in PATTERNS:
        out = tmp_path / pattern / "tokenizer.json"
        assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "300", "--output", str(out),
                     f"--pattern={pattern}", "--quiet"]) == 0
        assert Tokenizer.from_file(out).pattern == pattern
