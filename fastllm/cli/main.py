"""`fastllm <verb> [--config file.yaml] [--section.key=value ...]`: the verb table, no logic.

Each verb lives in fastllm/cli/<verb>.py and exposes COMMANDS: a mapping from a subcommand name
(None for a verb without subcommands) to a Command (config dataclass + function). The module is
imported only when its verb runs, so `fastllm --help` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from fastllm.utils.errors import FastLLMError

# verb -> (module, one-line description). Add a verb by adding its module and a line here.
VERBS: dict[str, tuple[str, str]] = {
    "info": ("fastllm.cli.info", "show what this build can do: extensions, CPU path, backends per op"),
    "demo": ("fastllm.cli.demo", "kernel demo: GGML Q4_0/Q8_0 Linear checked and timed against torch"),
    "prepare": ("fastllm.cli.prepare", "read, clean, dedup, redact, decontaminate, mix and shard a corpus"),
    "tokenizer": ("fastllm.cli.tokenizer", "train, encode, decode, inspect and export byte-level BPE tokenizers"),
    "pretrain": ("fastllm.cli.pretrain", "pretrain a LLaMA-style model on token shards (torchrun for DDP/FSDP2)"),
    "generate": ("fastllm.cli.generate", "sample text from a model directory or .gguf file (KV cache)"),
    "eval": ("fastllm.cli.eval", "evaluate a model: perplexity and bits per byte"),
    "pipeline": ("fastllm.cli.pipeline", "raw text to an evaluated model in one command (embedded corpus by default)"),
}

GLOBAL_FLAGS = """global options:
  --config FILE   read options from a YAML file (flags override it)
  --debug         show tracebacks for errors
  --quiet         no progress bars
  -h, --help      show the options of a verb and their defaults"""


@dataclass(frozen=True)
class Command:
    """A runnable command: `run(config)` where config is an instance of `config_cls`."""

    help: str
    config_cls: type
    run: Any


def _usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = ["usage: fastllm <verb> [--config file.yaml] [--section.key=value ...]", "", "verbs:"]
    lines += [f"  {verb.ljust(width)}  {text}" for verb, (_, text) in VERBS.items()]
    return "\n".join(lines + ["", GLOBAL_FLAGS, "", "`fastllm <verb> --help` lists a verb's options."])


def _command_help(verb: str, sub: str | None, command: Command) -> str:
    from fastllm.cli.config_io import format_help

    name = f"fastllm {verb}" + (f" {sub}" if sub else "")
    return "\n".join([f"usage: {name} [--config file.yaml] [options]", "", command.help, "",
                      "options:", format_help(command.config_cls), "", GLOBAL_FLAGS])


def _split_globals(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    flags: dict[str, Any] = {"config": None, "debug": False, "quiet": False, "help": False}
    rest, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            flags["help"] = True
        elif token in ("--debug", "--quiet"):
            flags[token[2:]] = True
        elif token == "--config":
            if i + 1 >= len(argv):
                raise FastLLMError("--config needs a file name")
            flags["config"] = argv[i + 1]
            i += 1
        elif token.startswith("--config="):
            flags["config"] = token.split("=", 1)[1]
        else:
            rest.append(token)
        i += 1
    return flags, rest


def _find_command(verb: str, rest: list[str]) -> tuple[str | None, Command, list[str]]:
    commands: dict[str | None, Command] = importlib.import_module(VERBS[verb][0]).COMMANDS
    if None in commands:
        return None, commands[None], rest
    names = ", ".join(str(k) for k in commands)
    if not rest or rest[0] not in commands:
        got = f" {rest[0]!r}" if rest else ""
        raise FastLLMError(f"fastllm {verb}: expected a subcommand{got and ' instead of' + got}: {names}")
    return rest[0], commands[rest[0]], rest[1:]


def run_verb(verb: str, argv: list[str]) -> int:
    from fastllm.cli.config_io import load_config
    from fastllm.utils.progress import is_quiet, set_quiet

    flags, rest = _split_globals(argv)
    if flags["help"] and (not rest or rest[0].startswith("--")):
        commands = importlib.import_module(VERBS[verb][0]).COMMANDS
        if None not in commands:
            width = max(len(name) for name in commands)
            subs = "\n".join(f"  {name.ljust(width)}  {cmd.help.splitlines()[0]}" for name, cmd in commands.items())
            print(f"usage: fastllm {verb} <subcommand> [options]\n\nsubcommands:\n{subs}")
            return 0
    sub, command, rest = _find_command(verb, rest)
    if flags["help"]:
        print(_command_help(verb, sub, command))
        return 0
    set_quiet(flags["quiet"] or is_quiet())  # --quiet or FASTLLM_QUIET=1
    config = load_config(command.config_cls, flags["config"], rest)
    result = command.run(config)
    return result if isinstance(result, int) else 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `fastllm ... | head`: the reader left, which is not an error. Point stdout at /dev/null
        # so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from fastllm import __version__

        print(f"fastllm {__version__}")
        return 0
    verb = argv[0]
    debug = "--debug" in argv
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}; run `fastllm --help` for the list", file=sys.stderr)
        return 2
    try:
        return run_verb(verb, argv[1:])
    except FastLLMError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

