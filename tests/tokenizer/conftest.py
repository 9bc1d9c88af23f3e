"""Tokenizers shared by the tokenizer tests: ours and HF's, trained once per session on real text."""

from __future__ import annotations

import pytest
from tok_corpus import MULTILINGUAL, VOCAB, hf_train, hf_training_texts, training_files

from fastllm.tokenizer import Tokenizer, train_bpe


@pytest.fixture(scope="session")
def ours_llama3() -> Tokenizer:
    return train_bpe(training_files() + MULTILINGUAL, VOCAB, num_threads=2)


@pytest.fixture(scope="session")
def ours_gpt2() -> Tokenizer:
    return train_bpe(training_files() + MULTILINGUAL, VOCAB, pattern="gpt2", num_threads=2)


@pytest.fixture(scope="session")
def hf_llama3():
    return hf_train("llama3", hf_training_texts())


@pytest.fixture(scope="session")
def hf_llama3_file(hf_llama3, tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    hf_llama3.save(str(path))
    return path
