"""Atomic, safely loaded checkpoints.

A checkpoint is one ``torch.save`` dict of plain tensors and containers, so it
loads with ``weights_only=True``: a crafted file cannot run code. Writes go to a
temporary file that is fsync'd and then renamed over the target, so a crash or a
kill at any moment leaves the previous checkpoint whole.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from gantrain.errors import UserError

FORMAT_VERSION = 1
LAST = "last.pt"
PERIODIC = re.compile(r"^step_(\d+)\.pt$")


def periodic_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def serialize(payload: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a gantrain checkpoint without executing pickled code; any failure is a one-line user error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError,
            ImportError, IndexError, KeyError, TypeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if reason.startswith("Weights only load failed"):
            reason = "it holds pickled objects that a safe (weights_only) load refuses to run"
        raise UserError(f"{path} is not a readable gantrain checkpoint: {reason[:200]}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION or "recipe" not in payload:
        raise UserError(f"{path} is not a gantrain checkpoint (format {FORMAT_VERSION})")
    return payload


def checkpoint_candidates(folder: Path) -> list[Path]:
    """``last.pt`` first, then periodic checkpoints newest first."""
    periodic = sorted((p for p in folder.iterdir() if PERIODIC.match(p.name)),
                      key=lambda p: int(PERIODIC.match(p.name).group(1)), reverse=True)
    last = folder / LAST
    return ([last] if last.is_file() else []) + periodic


def resolve_checkpoint(target: str | Path) -> tuple[Path, dict[str, Any]]:
    """A checkpoint file, or the newest loadable checkpoint of a run folder (or its checkpoints/)."""
    path = Path(target).expanduser()
    if path.is_file():
        return path, load_checkpoint(path)
    if not path.is_dir():
        raise UserError(f"{path} is neither a checkpoint file nor a run folder")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    candidates = checkpoint_candidates(folder)
    if not candidates:
        raise UserError(f"no checkpoints (last.pt, step_*.pt) in {folder}")
    for candidate in candidates:
        try:
            return candidate, load_checkpoint(candidate)
        except UserError as error:
            warnings.warn(f"skipping unreadable checkpoint: {error}", stacklevel=2)
    raise UserError(f"none of the {len(candidates)} checkpoints in {folder} could be read")


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint was written in (``RUN/checkpoints/x.pt``), if it is one."""
    checkpoint = checkpoint.resolve()
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


class CheckpointWriter:
    """Writes ``last.pt`` and periodic ``step_XXXXXXX.pt``, keeping the newest ``keep_last`` periodic ones."""

    def __init__(self, folder: Path, keep_last: int) -> None:
        self.folder = folder
        self.keep_last = int(keep_last)

    def save(self, payload: dict[str, Any], periodic: bool) -> Path:
        data = serialize({"format": FORMAT_VERSION, **payload})
        if periodic:
            write_atomic(data, self.folder / periodic_name(int(payload["step"])))
        last = self.folder / LAST
        write_atomic(data, last)
        if periodic:
            self.prune()
        return last

    def prune(self) -> None:
        if self.keep_last <= 0:
            return
        periodic = [p for p in checkpoint_candidates(self.folder) if p.name != LAST]
        for old in periodic[self.keep_last:]:
            old.unlink(missing_ok=True)
