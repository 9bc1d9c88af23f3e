"""Atomic outputs: a failure mid-write leaves neither a partial file nor a temporary one."""

import pytest

from fastllm.utils.atomic import atomic_directory, atomic_write, write_json


def test_write_replaces_atomically(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    assert target.read_text().strip() == '{\n  "a": 1\n}'


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_directory_appears_only_when_complete(tmp_path):
    target = tmp_path / "ckpt"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "a").write_text("x")
        raise RuntimeError("crash")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("x")
    assert (target / "a").read_text() == "x"
    with atomic_directory(target) as tmp:
        (tmp / "b").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
