"""`fastllm demo`: the kernel demo runs, checks against the reference and prints its table."""

from fastllm.cli.main import main


def test_demo_runs_and_checks_against_the_reference(capsys):
    assert main(["demo", "--in_features=64", "--out_features=48", "--repeats=2"]) == 0
    out = capsys.readouterr().out
    for name in ("torch fp32", "torch bf16", "GGMLLinear q4_0", "GGMLLinear q8_0"):
        assert name in out
    assert out.count("bytes equal") == 2


def test_demo_rejects_bad_sizes(capsys):
    assert main(["demo", "--in_features=100"]) == 1
    assert "multiple of 32" in capsys.readouterr().err


def test_demo_rejects_bad_counts(capsys):
    assert main(["demo", "--repeats=0"]) == 1
    assert "repeats=0 must be at least 1" in capsys.readouterr().err
    assert main(["demo", "--threads=-2"]) == 1
    assert "threads=-2" in capsys.readouterr().err
