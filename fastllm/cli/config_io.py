"""Typed configuration: a dataclass per command, filled from a YAML file and then from
`--section.key=value` flags (flags win). Unknown keys and ill-typed values are errors that name
the file (or flag) and the key. Nested dataclass fields are sections.

    @dataclass
    class TrainConfig:
        lr: float = field(default=3e-4, metadata={"help": "peak learning rate"})

    @dataclass
    class PretrainConfig:
        out_dir: Path = Path("runs/pretrain")
        train: TrainConfig = field(default_factory=TrainConfig)

    config = load_config(PretrainConfig, "configs/pretrain/tiny.yaml", ["--train.lr=1e-3"])
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fastllm.utils.errors import ConfigError

T = TypeVar("T")
_MISSING = object()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _child(where: str, key: str) -> str:
    """Where a key sits: `c.yaml: optim.lr` (the file once, then the dotted key path)."""
    if not where:
        return key
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Converts a YAML/flag value to type `tp`, or raises ConfigError mentioning `where`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: cannot read {value!r} as {_describe(tp)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v for v in (p.strip() for p in value.split(",")) if v]
        if not isinstance(value, list | tuple):
            value = [value]
        item_type = args[0] if args else Any
        items = [coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = args if args else (Any, Any)
        return {coerce(k, key_type, _child(where, str(k))): coerce(v, value_type, _child(where, str(k)))
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return build(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not one of {[e.value for e in tp]}") from None
    return _coerce_scalar(value, tp, where)


def _coerce_scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if value.strip().lower().count("e") else int(value, 0)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    if isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")


def build(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Builds dataclass `cls` from `data`; unknown keys are errors naming `where` and the key."""
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(fields)}")
        kwargs[name] = coerce(value, hints[name], _child(where, name))
    try:
        config = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    _validate(config, where)
    return config


def _validate(config: Any, where: str) -> None:
    check = getattr(config, "validate", None)
    if check is None:
        return
    try:
        check()
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-serialisable dict of a config (paths and enums as strings)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Sets data[a][b][c] = value for dotted = 'a.b.c', creating sections as needed."""
    *sections, last = dotted.split(".")
    node = data
    for section in sections:
        child = node.setdefault(section, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--{dotted}: {section!r} is a value, not a section")
        node = child
    node[last] = value


def parse_flag_value(text: str) -> Any:
    """A flag's value read as YAML (so 3e-4, true, [a, b] get their types); plain text otherwise."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """`--a.b=1 --c 2 --files x y` -> {"a": {"b": 1}, "c": 2, "files": ["x", "y"]}.
    A flag followed by several non-flag words takes them all as a list."""
    data: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"unexpected argument {token!r}; options look like --key=value")
        key, eq, raw = token[2:].partition("=")
        key = key.replace("-", "_")
        i += 1
        if eq:
            value = parse_flag_value(raw)
        else:
            words = []
            while i < len(argv) and not argv[i].startswith("--"):
                words.append(argv[i])
                i += 1
            if not words:
                value = True  # a bare --flag means true
            elif len(words) == 1:
                value = parse_flag_value(words[0])
            else:
                value = [parse_flag_value(w) for w in words]
        set_path(data, key, value)
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merges `override` into a copy of `base` (sections merge, values replace)."""
    out = dict(base)
    for key, value in override.items():
        key = str(key).replace("-", "_")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(cls: type[T], path: str | Path | None = None, argv: list[str] | None = None) -> T:
    """Defaults, then the YAML file, then flags. Errors name the file or flag and the key."""
    file_data = read_yaml(path) if path else {}
    flag_data = parse_overrides(argv or [])
    where = str(path) if path else "flags"
    _check_keys(cls, flag_data)
    return build(cls, merge(_normalise_keys(file_data), flag_data), where)


def _normalise_keys(data: Any) -> Any:
    if isinstance(data, dict):
        return {str(k).replace("-", "_"): _normalise_keys(v) for k, v in data.items()}
    return data


def _check_keys(cls: type, data: dict[str, Any], prefix: str = "") -> None:
    """Flags get their own message (`unknown flag --train.lrr`) before the merge hides where a
    key came from."""
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown flag --{prefix}{key}; see --help for the options")
        if isinstance(value, dict) and dataclasses.is_dataclass(hints[key]):
            _check_keys(hints[key], value, f"{prefix}{key}.")


def describe_options(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(flag, default, help) for every option of `cls`, sections flattened with dots."""
    rows = []
    hints = _type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe_options(tp, f"{prefix}{f.name}."))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        default_text = str(to_dict(default)) if not isinstance(default, str) else default
        # Shown with dashes (--vocab-size); both spellings are accepted.
        rows.append((f"--{prefix}{f.name}".replace("_", "-"), default_text, f.metadata.get("help", "")))
    return rows


def format_help(cls: type) -> str:
    rows = describe_options(cls)
    width = max((len(flag) for flag, _, _ in rows), default=0)
    lines = []
    for flag, default, text in rows:
        lines.append(f"  {flag.ljust(width)}  {text}{' ' if text else ''}(default: {default})")
    return "\n".join(lines)


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
