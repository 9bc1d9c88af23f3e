"""Resumable training checkpoints: safetensors for tensors, JSON for everything else, no pickle.

    ckpt/step-00000100/
        model.safetensors       full (unsharded) model state, HF parameter names
        optimizer.safetensors   AdamW moments and step counts, flattened names (state.<param>.exp_avg)
        rng.safetensors         every process's torch (CPU and CUDA) generator states
        state.json              step, data position, config, optimizer hyperparameters, numpy/python RNG
        manifest.json           written last: sha256 and size of every file above

A checkpoint is written to a hidden temporary directory and renamed into place after its manifest,
so `step-*` directories are complete by construction; a save killed midway leaves only the hidden
directory, which `latest_complete` reports and skips (and the next successful save removes).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from fastllm.model.hf_io import read_safetensors
from fastllm.utils.atomic import atomic_directory, recover_directory, write_json
from fastllm.utils.errors import InputFormatError

FORMAT = "fastllm-ckpt-v1"
MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")
# Leftovers of killed saves: the temporary directory, or an old step directory moved aside.
_PARTIAL_DIR = re.compile(r"^\.step-\d{8}\.(.*\.tmp|old)$")


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def save(root: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any],
         keep_last: int, before_manifest: Callable[[Path], None] | None = None) -> Path:
    """Writes checkpoint `step` (tensors: file stem -> tensors) and keeps the newest `keep_last`."""
    final = step_dir(root, step)
    with atomic_directory(final) as tmp:
        for stem, group in tensors.items():
            save_file({k: v.detach().contiguous() for k, v in group.items()}, str(tmp / f"{stem}.safetensors"))
        write_json(tmp / "state.json", {"format": FORMAT, **state})
        if before_manifest is not None:
            before_manifest(tmp)
        files = sorted(p.name for p in tmp.iterdir())
        write_json(tmp / MANIFEST, {"format": FORMAT, "step": step,
                                    "files": {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                                              for name in files}})
    prune(root, keep_last)
    return final


def prune(root: Path, keep_last: int) -> None:
    """Removes all but the newest `keep_last` complete checkpoints, and leftovers of killed saves."""
    complete = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / MANIFEST).is_file())
    for old in complete[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in root.iterdir():
        if _PARTIAL_DIR.match(partial.name):
            shutil.rmtree(partial, ignore_errors=True)


def verify(path: Path) -> str | None:
    """None when `path` is a complete, intact checkpoint: its manifest lists exactly the files
    beside it (state.json among them), each with its size and sha256; otherwise why not."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return "no manifest (the save was interrupted)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    if manifest.get("format") != FORMAT:
        return f"format {manifest.get('format')!r} is not {FORMAT!r}"
    for name, meta in files.items():
        if not (isinstance(meta, dict) and isinstance(meta.get("bytes"), int) and isinstance(meta.get("sha256"), str)
                and name == Path(name).name):
            return f"unreadable manifest entry for {name}"
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != meta["bytes"] or _sha256(file) != meta["sha256"]:
            return f"{name} does not match its checksum"
    unlisted = sorted({p.name for p in path.iterdir()} - set(files) - {MANIFEST})
    if unlisted or "state.json" not in files:
        return f"files not in the manifest: {', '.join(unlisted or ['state.json'])}"
    return None


def latest_complete(root: Path, log: Callable[[str], None]) -> Path | None:
    """The newest intact checkpoint under `root`; partial or damaged ones are reported and skipped."""
    if not root.is_dir():
        return None
    for moved_aside in root.glob(".step-*.old"):  # a re-save killed between its two renames
        recover_directory(root / moved_aside.name[1:-len(".old")])
    for partial in sorted(p for p in root.iterdir() if _PARTIAL_DIR.match(p.name)):
        log(f"ignoring partial checkpoint {partial} (interrupted save)")
    for candidate in sorted((p for p in root.iterdir() if _STEP_DIR.match(p.name)), reverse=True):
        problem = verify(candidate)
        if problem is None:
            return candidate
        log(f"ignoring checkpoint {candidate}: {problem}")
    return None


def load(path: Path, *, verified: bool = False) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """(tensors by file stem, state) of a complete checkpoint (checked first unless `verified`
    says latest_complete just did)."""
    problem = None if verified else verify(path)
    if problem is not None:
        raise InputFormatError(f"{path}: not a complete checkpoint: {problem}")
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    tensors = {file.stem: read_safetensors(file) for file in sorted(path.glob("*.safetensors"))}
    return tensors, state


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """A name-keyed optimizer state dict -> (tensors "state.<param>.<key>", JSON param groups)."""
    tensors = {f"state.{name}.{key}": value for name, per_param in state["state"].items()
               for key, value in per_param.items()}
    return tensors, [dict(group) for group in state["param_groups"]]


def unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Inverse of flatten_optimizer (JSON lists such as betas become tuples again)."""
    names = sorted((name for group in groups for name in group["params"]), key=len, reverse=True)
    state: dict[str, dict[str, torch.Tensor]] = {}
    for flat, value in tensors.items():
        name = next((n for n in names if flat.startswith(f"state.{n}.")), None)
        if name is None:
            raise InputFormatError(f"optimizer.safetensors: tensor {flat} belongs to no parameter group")
        state.setdefault(name, {})[flat[len(name) + 7:]] = value
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}
