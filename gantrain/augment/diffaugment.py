"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same three differentiable policies as the paper's code (mit-han-lab/data-efficient-gans,
DiffAugment_pytorch.py), each with random parameters per sample, applied in the order listed:
  color        brightness + U(-0.5, 0.5); saturation (distance from the pixel's channel mean) x U(0, 2);
               contrast (distance from the image's mean) x U(0.5, 1.5)   (images in [-1, 1])
  translation  an integer shift of up to ``translation_ratio`` (1/8) of the height and width each way,
               the uncovered border filled with zeros
  cutout       a square of ``cutout_ratio`` (1/2) of the size set to zero, its centre anywhere in the
               image (clipped at the borders)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gantrain.augment.base import Augmentation, per_sample
from gantrain.errors import UserError
from gantrain.options import as_float
from gantrain.registry import AUGMENTATIONS, unknown_choice

POLICIES = ("color", "translation", "cutout")


def color(images: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
    """Brightness, saturation, contrast; each tensor of a group (a pair's input, its output) keeps its own means."""
    n = images.shape[0]
    brightness = per_sample(torch.rand, n, 1, 1, 1, like=images) - 0.5
    saturation = per_sample(torch.rand, n, 1, 1, 1, like=images) * 2
    contrast = per_sample(torch.rand, n, 1, 1, 1, like=images) + 0.5
    parts = []
    for part in images.split(list(groups), 1):
        part = part + brightness
        mean = part.mean(dim=1, keepdim=True)
        part = (part - mean) * saturation + mean
        mean = part.mean(dim=(1, 2, 3), keepdim=True)
        parts.append((part - mean) * contrast + mean)
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def shift(images: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, most: tuple[int, int]) -> torch.Tensor:
    """Each image moved by its own whole number of rows and columns (n,), zeros shifted in; differentiable."""
    n, c, h, w = images.shape
    padded = F.pad(images, [most[1], most[1], most[0], most[0]])
    row_index = torch.arange(h, device=images.device) + most[0] - rows[:, None]  # output row r reads r - shift
    column_index = torch.arange(w, device=images.device) + most[1] - columns[:, None]
    picked = padded.gather(2, row_index[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return picked.gather(3, column_index[:, None, None, :].expand(n, c, h, w))


def translation(images: torch.Tensor, ratio: float) -> torch.Tensor:
    n, _, h, w = images.shape
    most = (int(h * ratio + 0.5), int(w * ratio + 0.5))
    offsets = [(per_sample(torch.rand, n, like=images) * (2 * m + 1)).floor().long().clamp(max=2 * m) - m
               for m in most]  # uniform integers in [-m, m]
    return shift(images, offsets[0], offsets[1], most)


def cutout(images: torch.Tensor, ratio: float) -> torch.Tensor:
    n, _, h, w = images.shape
    masks = []
    for length, size in ((h, int(h * ratio + 0.5)), (w, int(w * ratio + 0.5))):
        # the centre is uniform in [0, length + (1 - size % 2)) as in the paper's code, the square clipped
        centre = (per_sample(torch.rand, n, like=images) * (length + 1 - size % 2)).floor().long()
        start = centre - size // 2
        position = torch.arange(length, device=images.device)
        masks.append((position >= start[:, None]) & (position < start[:, None] + size))
    inside = masks[0][:, :, None] & masks[1][:, None, :]
    return images * (~inside).to(images.dtype)[:, None]


@AUGMENTATIONS.register("diffaugment")
class DiffAugment(Augmentation):
    """The paper's policies in the order given; an empty policy is the identity."""

    changes_images = True

    def __init__(self, policy: Sequence[str] = POLICIES, translation_ratio: float = 0.125,
                 cutout_ratio: float = 0.5) -> None:
        super().__init__()
        if isinstance(policy, str) or not isinstance(policy, Sequence):
            raise UserError(f"augment.policy must be a list of policies, e.g. [{', '.join(POLICIES)}], "
                            f"got {policy!r}")
        for name in policy:
            if name not in POLICIES:
                raise UserError(unknown_choice("DiffAugment policy (augment.policy)", name, list(POLICIES)))
        self.policy = [str(name) for name in policy]
        self.translation_ratio = as_float("augment.translation_ratio", translation_ratio, minimum=0)
        self.cutout_ratio = as_float("augment.cutout_ratio", cutout_ratio, minimum=0)
        if self.translation_ratio > 1 or self.cutout_ratio > 1:
            raise UserError("augment.translation_ratio and augment.cutout_ratio are fractions of the image size: "
                            f"0..1, got {self.translation_ratio:g} and {self.cutout_ratio:g}")

    def transform(self, images: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
        for name in self.policy:
            if name == "color":
                images = color(images, groups)
            elif name == "translation":
                images = translation(images, self.translation_ratio)
            else:
                images = cutout(images, self.cutout_ratio)
        return images
