"""Typed configs: YAML then flags, strict keys, errors that name the file and the key."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from fastllm.cli import config_io
from fastllm.cli.main import main
from fastllm.utils.errors import ConfigError


@dataclass
class Optim:
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate"})
    betas: tuple[float, float] = (0.9, 0.95)


@dataclass
class Example:
    name: str = "run"
    steps: int = 10
    out_dir: Path = Path("runs/x")
    files: list[str] = field(default_factory=list)
    schedule: Literal["cosine", "wsd"] = "cosine"
    compile: bool = False
    seed: int | None = None
    optim: Optim = field(default_factory=Optim)

    def validate(self):
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_then_file_then_flags(tmp_path):
    path = write(tmp_path, "steps: 5\noptim:\n  lr: 1.0e-3\n")
    config = config_io.load_config(Example, path, ["--optim.lr=2e-3", "--files", "a.txt", "b.txt"])
    assert config.steps == 5 and config.optim.lr == 2e-3
    assert config.files == ["a.txt", "b.txt"]
    assert config.out_dir == Path("runs/x") and config.optim.betas == (0.9, 0.95)


def test_dashes_and_bare_flags(tmp_path):
    config = config_io.load_config(Example, None, ["--out-dir", "o", "--compile", "--seed=3"])
    assert config.out_dir == Path("o") and config.compile is True and config.seed == 3


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "optim:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*unknown key 'lrr'"):
        config_io.load_config(Example, path)


def test_unknown_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown flag --optim\.lrr"):
        config_io.load_config(Example, None, ["--optim.lrr=1"])


@pytest.mark.parametrize("text, message", [
    ("steps: many\n", "steps: expected an integer"),
    ("schedule: linear\n", "'linear' is not one of 'cosine', 'wsd'"),
    ("compile: maybe\n", "expected true or false"),
    ("optim: 3\n", "expected a section"),
    ("steps: 0\n", "steps must be positive"),
    ("- a\n- b\n", "expected a mapping"),
    ("steps: [1,\n", "invalid YAML at line"),
])
def test_bad_values_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        config_io.load_config(Example, write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        config_io.load_config(Example, "nope.yaml")


def test_help_lists_every_option_with_its_default():
    text = config_io.format_help(Example)
    assert "--optim.lr" in text and "peak learning rate" in text and "(default: 0.0003)" in text


def test_round_trip_through_yaml(tmp_path):
    config = config_io.load_config(Example, None, ["--steps=7", "--optim.lr=0.1"])
    path = write(tmp_path, config_io.dump_yaml(config))
    assert config_io.load_config(Example, path) == config


def test_cli_prints_one_line_errors(capsys):
    assert main(["info", "--bogus=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown flag --bogus") and err.count("\n") == 1
    assert main(["nonsense"]) == 2


def test_cli_help(capsys):
    assert main(["--help"]) == 0
    assert "verbs:" in capsys.readouterr().out
    assert main(["info", "--help"]) == 0
    assert "--json" in capsys.readouterr().out


def test_quiet_from_the_environment_survives_the_cli(monkeypatch):
    from fastllm.utils import progress

    monkeypatch.setattr(progress, "_quiet", True)  # what FASTLLM_QUIET=1 sets at import
    assert main(["info"]) == 0
    assert progress.is_quiet()


def test_help_into_a_closed_pipe_is_not_a_traceback():
    import subprocess
    import sys

    code = "import sys; from fastllm.cli.main import main; sys.exit(main(['--help']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before the writer prints, like `| head -0`
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "Traceback" not in err


def test_nested_errors_name_the_file_once_then_the_key_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        config_io.load_config(Example, write(tmp_path, "optim:\n  lr: abc\n"))
    assert str(info.value) == f"{tmp_path / 'c.yaml'}: optim.lr: expected a number, got 'abc'"
