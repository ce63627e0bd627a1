"""Reference (real-data) statistics, computed once per dataset, split, resolution and feature network.

Extracting Inception features of 50k real images takes longer than most evaluations, and the result
never changes for a given dataset, so it is kept on disk. The file name is a hash of everything the
statistics depend on: the dataset's config (its root made absolute), the sample shape (resolution and
channels), the dataset's size, how many reference samples were drawn and with which seed, and the
feature network's identity (which changes with its weights). Change any of them and the old file is
simply not found; delete the folder to reclaim space.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from gantrain.engine.checkpoint import serialize, write_atomic

FORMAT = 1  # bump when what is stored changes


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gantrain" / "reference_statistics"


def cache_key(description: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ReferenceCache:
    """``KEY-KIND.pt`` files of plain tensors (loaded with ``weights_only``), written atomically."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder else default_cache_dir()

    def path(self, key: str, kind: str) -> Path:
        return self.folder / f"{key}-{kind}.pt"

    def load(self, key: str, kind: str) -> dict[str, torch.Tensor] | None:
        path = self.path(key, kind)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)["tensors"]
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never fatal
            return None

    def save(self, key: str, kind: str, tensors: dict[str, torch.Tensor], description: dict[str, Any]) -> None:
        """Best effort: an unwritable cache only costs a recomputation next time."""
        payload = {"tensors": {k: v.cpu() for k, v in tensors.items()},
                   "description": json.dumps(description, sort_keys=True, default=str)}
        try:
            write_atomic(serialize(payload), self.path(key, kind))
        except OSError:
            pass
