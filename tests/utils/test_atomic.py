"""Atomic outputs: a failure mid-write leaves neither a partial file nor a temporary one."""

import pytest

from fastllm.utils.atomic import atomic_directory, atomic_write, recover_directory, write_json


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


def test_a_crash_between_the_two_renames_is_recovered(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v1")
    # Simulate a kill after the previous copy was moved aside and before the new one arrived.
    target.rename(tmp_path / ".model.old")
    recover_directory(target)
    assert (target / "weights").read_text() == "v1" and not (tmp_path / ".model.old").exists()
    # The next save also starts by recovering, then replaces the restored copy.
    target.rename(tmp_path / ".model.old")
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
