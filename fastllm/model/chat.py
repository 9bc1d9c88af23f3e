"""Chat templates: the Jinja text a model ships (tokenizer_config.json's `chat_template`, a GGUF's
`tokenizer.chat_template`) rendered the way transformers' `apply_chat_template` renders it, in a
sandbox (a template comes from a downloaded file), so any instruct model's prompt format works.

    render_chat(template, [{"role": "user", "content": "Hi"}], bos_token="<s>", eos_token="</s>")
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache

from fastllm.utils.errors import ConfigError

# Special tokens as chat templates spell them: <|im_start|>, <|eot_id|>, <|start_header_id|>, ...
SPECIAL_TOKEN_SHAPE = re.compile(r"<\|[^<>|\s]{1,64}\|>")


class TemplateRaised(Exception):
    """A template's own raise_exception('...') (it refuses a conversation, e.g. roles out of order)."""


def _raise_exception(message: str):
    raise TemplateRaised(message)


def _tojson(value, indent=None, ensure_ascii=False, sort_keys=False):
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


@cache
def _compiled(template: str):
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # transformers' settings: blocks do not leave their newline and indentation behind
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat(template: str, messages: list[dict], *, bos_token: str = "", eos_token: str = "",
                add_generation_prompt: bool = True, where: str = "chat template") -> str:
    """The prompt text for `messages` ({"role", "content"} dicts), ending with the assistant's
    header when add_generation_prompt is set and the template writes one."""
    from jinja2 import TemplateError

    try:
        return _compiled(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                          bos_token=bos_token, eos_token=eos_token)
    except TemplateRaised as exc:
        raise ConfigError(f"{where}: the chat template refuses this conversation: {exc}") from None
    except TemplateError as exc:
        line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        raise ConfigError(f"{where}: chat template{line}: {exc.message or type(exc).__name__}") from None


def unknown_special_tokens(text: str, special_tokens: dict[str, int]) -> list[str]:
    """Special-token-shaped markers in a rendered prompt that the tokenizer lacks: they would be
    encoded as plain text and the model would never see its turn markers."""
    return sorted({m for m in SPECIAL_TOKEN_SHAPE.findall(text) if m not in special_tokens})
