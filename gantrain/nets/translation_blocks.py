"""Pieces the image-to-image networks share: normalisation chosen by name, and the size a network needs."""

from __future__ import annotations

from torch import nn

from gantrain.errors import UserError
from gantrain.registry import unknown_choice

NORMS = ("batch", "instance", "none")


def norm2d(kind: str, channels: int) -> nn.Module:
    """batch (learned scale, running statistics), instance (none of either, as in CycleGAN/pix2pix) or none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise UserError(unknown_choice("norm", kind, list(NORMS)))


def uses_bias(norm: str) -> bool:
    """A convolution before BatchNorm needs no bias (the norm's shift replaces it)."""
    return norm != "batch"


def halvings(size: int) -> int:
    """How many times ``size`` can be halved exactly (its power-of-two factor's exponent)."""
    count = 0
    while size > 1 and size % 2 == 0:
        size, count = size // 2, count + 1
    return count
