"""Choosing the device from ``device=auto|cpu|cuda|mps``."""

from __future__ import annotations

import torch

from gantrain.errors import UserError
from gantrain.registry import unknown_choice

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(name: str) -> torch.device:
    """``auto`` takes CUDA, then Apple MPS, then the CPU; asking for a missing one is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device=cuda but PyTorch sees no CUDA GPU here; use device=cpu or device=auto")
        return torch.device("cuda")
    if name == "mps":
        if not _mps_available():
            raise UserError("device=mps but Apple's MPS backend is not available here; use device=cpu or device=auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(unknown_choice("device", name, list(DEVICE_NAMES)))
