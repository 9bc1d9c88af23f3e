"""Chat templates render as transformers' apply_chat_template renders them (the real library, on
LLaMA-3-, ChatML- and Gemma-style templates), and a bad or hostile template is a one-line error."""

from __future__ import annotations

import pytest

from fastllm.model.chat import render_chat, unknown_special_tokens
from fastllm.tokenizer import AddedToken, Tokenizer
from fastllm.utils.errors import ConfigError

LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
GEMMA = """{{ bos_token }}
{% if messages[0]['role'] == 'system' %}
    {{ raise_exception('System role not supported') }}
{% endif %}
{% for message in messages %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    {% set role = 'model' if message['role'] == 'assistant' else message['role'] %}
    {{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}
{% endfor %}
{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"""
TOOLS = "{% for m in messages %}{{ m | tojson }}{% if loop.last %}{% break %}{% endif %}\n{% endfor %}"

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "  Capital of Peru? \n"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Ünïcödé, 日本語 and \"quotes\""}],
]


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    specials = ["<s>", "</s>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer([bytes([i]) for i in range(256)], [], [AddedToken(t, 256 + i) for i, t in enumerate(specials)])
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(path)
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token="<s>", eos_token="</s>")


@pytest.mark.parametrize("template", [LLAMA3, CHATML, GEMMA, TOOLS], ids=["llama3", "chatml", "gemma", "tojson"])
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_renders_as_transformers(hf_tokenizer, template, conversation, generation_prompt):
    messages = CONVERSATIONS[conversation]
    try:
        expected = hf_tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                    add_generation_prompt=generation_prompt)
    except Exception as exc:  # the template refuses the conversation (Gemma: no system role)
        with pytest.raises(ConfigError, match="the chat template refuses this conversation") as ours:
            render_chat(template, messages, bos_token="<s>", eos_token="</s>", add_generation_prompt=generation_prompt)
        assert str(exc).splitlines()[-1].split(": ")[-1] in str(ours.value)
        return
    assert render_chat(template, messages, bos_token="<s>", eos_token="</s>",
                       add_generation_prompt=generation_prompt) == expected


@pytest.mark.parametrize("template, message", [
    ("{% for m in messages %}{{ m['content'] }", "chat template (line 1): unexpected '}'"),
    ("{{ messages.__class__.__mro__ }}", "chat template: access to attribute '__class__'"),
    ("{{ messages.append(1) }}", "chat template: access to attribute 'append'"),
    ("{{ raise_exception('roles must alternate') }}", "refuses this conversation: roles must alternate"),
])
def test_bad_or_hostile_templates_are_one_line_errors(template, message):
    with pytest.raises(ConfigError) as err:
        render_chat(template, [{"role": "user", "content": "hi"}], where="m.gguf")
    assert str(err.value).startswith("m.gguf: ") and message in str(err.value) and "\n" not in str(err.value)


def test_unknown_special_tokens_are_the_markers_the_tokenizer_lacks():
    text = "<|start_header_id|>user<|end_header_id|>\n\nhi <|x|> a|b <|eot_id|>"
    assert unknown_special_tokens(text, {"<|eot_id|>": 1}) == ["<|end_header_id|>", "<|start_header_id|>", "<|x|>"]
    assert unknown_special_tokens("plain text | with <pipes>", {}) == []
