"""Turning previews into pictures: image grids, and scatter plots for 2-D points (no plotting library needed)."""

from __future__ import annotations

from pathlib import Path

import torch

REAL_COLOR = (70, 110, 200)  # blue
FAKE_COLOR = (230, 90, 40)  # orange
GREY = (175, 175, 175)  # real points as a backdrop for samples drawn on top (scripts/toy_benchmark.py)

Color = tuple[int, int, int]


def image_grid(samples: torch.Tensor, nrow: int) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (3 or 1, H', W') float grid in [0, 1]."""
    from torchvision.utils import make_grid  # imported here: torchvision's import takes ~1 s (it loads torch._dynamo), so bad input fails fast

    return make_grid(samples.float().clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)


def save_picture(picture: torch.Tensor, path: Path) -> None:
    """Write a (C, H, W) float picture in [0, 1] as PNG/JPEG."""
    from torchvision.utils import save_image  # imported here: torchvision's import takes ~1 s (it loads torch._dynamo), so bad input fails fast

    save_image(picture, path)


def scatter_image(fake: torch.Tensor, real: torch.Tensor | None = None, size: int = 384,
                  real_color: Color = REAL_COLOR, fake_color: Color = FAKE_COLOR) -> torch.Tensor:
    """Rasterise 2-D points: real (blue by default) under generated (orange), on white; (3, size, size) in [0, 1].

    The view is fitted to the real points (to the generated ones when there are
    none) with a margin, so drifting samples leave the frame instead of shrinking the data.
    """
    anchor = (real if real is not None else fake).float()[:, :2]
    low, high = anchor.min(0).values, anchor.max(0).values
    centre, half = (low + high) / 2, ((high - low).max() / 2 * 1.25).clamp_min(1e-3)
    canvas = torch.ones(3, size, size)
    for points, color in ((real, real_color), (fake, fake_color)):
        if points is None:
            continue
        pixels = ((points.float()[:, :2] - centre) / half * 0.5 + 0.5) * (size - 1)
        cols, rows = pixels[:, 0].round().long(), (size - 1 - pixels[:, 1]).round().long()
        for d_row in (-1, 0, 1):
            for d_col in (-1, 0, 1):
                r, c = rows + d_row, cols + d_col
                inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
                canvas[:, r[inside], c[inside]] = torch.tensor(color, dtype=torch.float32)[:, None] / 255
    return canvas
