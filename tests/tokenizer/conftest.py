"""Tokenizers shared by the tokenizer tests: ours and HF's, trained once per session on real text."""

from __future__ import annotations

import pytest
from tok_corpus import MULTILINGUAL, python_sources, shakespeare_files

from fastllm.tokenizer import Tokenizer, train_bpe
from fastllm.tokenizer.patterns import PATTERNS

VOCAB = 2000
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]


def training_files():
    """Half the plays plus a little code; the other plays stay held out."""
    return shakespeare_files()[::2] + python_sources()[:3]


@pytest.fixture(scope="session")
def ours_llama3() -> Tokenizer:
    return train_bpe(training_files() + MULTILINGUAL, VOCAB, num_threads=2)


@pytest.fixture(scope="session")
def ours_gpt2() -> Tokenizer:
    return train_bpe(training_files() + MULTILINGUAL, VOCAB, pattern="gpt2", num_threads=2)


def hf_train(pattern: str, texts: list[str], vocab_size: int = VOCAB, alphabet: bool = True):
    """An HF `tokenizers` byte-level BPE with our split pattern, trained by its BpeTrainer."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    if pattern == "gpt2":
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PATTERNS[pattern]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if alphabet else [])
    hf.train_from_iterator(texts, trainer)
    return hf


def hf_training_texts() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in shakespeare_files()[:12:2]]
    return texts + [p.read_text(encoding="utf-8") for p in python_sources()[:2]] + MULTILINGUAL


@pytest.fixture(scope="session")
def hf_llama3():
    return hf_train("llama3", hf_training_texts())


@pytest.fixture(scope="session")
def hf_llama3_file(hf_llama3, tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    hf_llama3.save(str(path))
    return path
