"""Atomic, safely loaded checkpoints.

A checkpoint is one ``torch.save`` dict of plain tensors and containers, so it
loads with ``weights_only=True``: a crafted file cannot run code. Writes go to a
temporary file that is fsync'd and then renamed over the target, so a crash or a
kill at any moment leaves the previous checkpoint whole. A write that fails (a full
disk) is a one-line user error; resuming from a run folder skips, with a warning,
checkpoints that no longer load.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch

from gantrain.errors import UserError

FORMAT_VERSION = 1
LAST = "last.pt"
PERIODIC = re.compile(r"^step_(\d+)\.pt$")
TEMPORARY = re.compile(r"^\..+\.\d+\.tmp$")  # what write_atomic writes before the rename
ZIP_MAGIC = b"PK"  # torch.save's format is a zip archive
PICKLE_MAGIC = b"\x80"  # the legacy format (and plain pickle) starts with the PROTO opcode

_reported_unreadable: set[Path] = set()  # each skipped checkpoint is reported once per process


class CheckpointNotWritten(UserError):
    """A checkpoint could not be written (disk full, folder gone); the file it would have replaced is untouched."""


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


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(data: bytes, path: Path) -> None:
    """Replace ``path`` with ``data`` all at once: any failure leaves the old file as it was and no temporary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
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
        raise UserError(f"{path} is not a readable gantrain checkpoint: {unreadable_reason(path, error)}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION or "recipe" not in payload:
        raise UserError(f"{path} is not a gantrain checkpoint (format {FORMAT_VERSION})")
    return payload


def unreadable_reason(path: Path, error: BaseException) -> str:
    """Why torch.load failed, in words a user can act on (torch's own messages run to paragraphs)."""
    text = str(error).strip()
    first = re.split(r"(?<=\.)\s", text.splitlines()[0])[0].rstrip(".") if text else type(error).__name__
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:  # unreadable (permissions): torch's own first sentence says so
        return first[:200]
    if not head:
        return "the file is empty"
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        return "it is not a PyTorch file"
    if text.startswith("Weights only load failed"):
        return "it holds pickled objects that a safe (weights_only) load refuses to run"
    if head.startswith(ZIP_MAGIC):
        return f"it is truncated or corrupt ({first[:160]})"
    return first[:200]


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
            report_unreadable(candidate, error)
    raise UserError(f"none of the {len(candidates)} checkpoints in {folder} could be read")


def report_unreadable(path: Path, error: UserError) -> None:
    """One warning line per skipped checkpoint (the CLI and the trainer both resolve the same folder)."""
    if path.resolve() not in _reported_unreadable:
        _reported_unreadable.add(path.resolve())
        print(f"gantrain: warning: {error}; trying an older checkpoint", file=sys.stderr)


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint was written in (``RUN/checkpoints/x.pt``), if it is one."""
    checkpoint = checkpoint.resolve()
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


class CheckpointWriter:
    """Writes ``last.pt`` and periodic ``step_XXXXXXX.pt``, keeping the newest ``keep_last`` periodic ones."""

    def __init__(self, folder: Path, keep_last: int) -> None:
        self.folder = folder
        self.keep_last = int(keep_last)

    def prepare(self) -> None:
        """Fail before training, not hours later, if the folder is not writable; drop a killed run's temporaries."""
        try:
            write_atomic(b"", self.folder / ".write-test")
            (self.folder / ".write-test").unlink()
        except OSError as error:
            raise UserError(f"cannot write checkpoints to {self.folder}: {error.strerror or error}; "
                            "choose a writable run folder with hydra.run.dir=PATH") from None
        for leftover in self.folder.iterdir():
            if TEMPORARY.match(leftover.name):
                leftover.unlink(missing_ok=True)

    def save(self, payload: dict[str, Any], periodic: bool) -> Path:
        """``last.pt`` first, so it is always the newest complete checkpoint; then the periodic copy."""
        data = serialize({"format": FORMAT_VERSION, **payload})
        last = self.folder / LAST
        targets = [last] + ([self.folder / periodic_name(int(payload["step"]))] if periodic else [])
        for target in targets:
            try:
                write_atomic(data, target)
            except OSError as error:
                raise CheckpointNotWritten(f"cannot write checkpoint {target}: {error.strerror or error}") from error
        if periodic:
            self.prune()
        return last

    def save_as(self, payload: dict[str, Any], name: str) -> Path:
        """A named copy beside ``last.pt`` (``best.pt``); never a resume candidate of the run folder."""
        target = self.folder / name
        try:
            write_atomic(serialize({"format": FORMAT_VERSION, **payload}), target)
        except OSError as error:
            raise CheckpointNotWritten(f"cannot write checkpoint {target}: {error.strerror or error}") from error
        return target

    def prune(self) -> None:
        if self.keep_last <= 0:
            return
        periodic = [p for p in checkpoint_candidates(self.folder) if p.name != LAST]
        for old in periodic[self.keep_last:]:
            old.unlink(missing_ok=True)
