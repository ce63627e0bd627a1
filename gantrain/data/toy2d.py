"""2-D toy distributions: the standard mode-collapse benchmarks and the seeds' linear Gaussian.

8 Gaussians on a ring of radius 2 (std 0.02) and 25 on the grid {-4,-2,0,2,4}^2
(std 0.05) as in the unrolled-GAN / VEEGAN / PacGAN literature; labels are the
mode index. A fixed sample set of ``num_samples`` points is drawn from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gantrain.data.source import DataSource, DataSpec, TensorPoints
from gantrain.registry import DATASETS

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor | None, int | None]]


def _mixture(centers: torch.Tensor, std: float) -> Sampler:
    def sample(n: int, gen: torch.Generator):
        modes = torch.randint(len(centers), (n,), generator=gen)
        return centers[modes] + std * torch.randn(n, 2, generator=gen), modes, len(centers)
    return sample


def _ring_centers(count: int = 8, radius: float = 2.0) -> torch.Tensor:
    angles = torch.arange(count) * (2 * math.pi / count)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def _grid_centers() -> torch.Tensor:
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    return torch.cartesian_prod(axis, axis)


def _swiss_roll(n: int, gen: torch.Generator):
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=gen))
    points = torch.stack([t * t.cos(), t * t.sin()], dim=1) + 0.25 * torch.randn(n, 2, generator=gen)
    return points / 7.5, None, None


def _linear_gaussian(n: int, gen: torch.Generator):
    """x = z A + b with z ~ N(0, I): the seeds' first GAN example."""
    a = torch.tensor([[1.0, 2.0], [-0.1, 0.5]])
    b = torch.tensor([1.0, 2.0])
    return torch.randn(n, 2, generator=gen) @ a + b, None, None


def _register(name: str, draw: Sampler) -> None:
    """Each distribution is its own dataset, so ``data=toy2d data.name=25gaussians`` switches it."""

    def build(num_samples: int = 65536, seed: int = 0) -> DataSource:
        points, labels, num_classes = draw(int(num_samples), torch.Generator().manual_seed(seed))
        return DataSource(TensorPoints(points, labels), DataSpec(shape=(2,), num_classes=num_classes, bounded=False))

    build.__name__ = build.__qualname__ = name
    DATASETS.register(name)(build)


MIXTURE_MODES: dict[str, tuple[Callable[[], torch.Tensor], float]] = {  # name -> (centres, std of each mode)
    "8gaussians": (_ring_centers, 0.02),
    "25gaussians": (_grid_centers, 0.05),
}


def mixture_modes(name: str) -> tuple[torch.Tensor, float] | None:
    """(centres (K, 2), std) of a Gaussian-mixture toy dataset, or None for the others (mode-coverage metrics)."""
    if name not in MIXTURE_MODES:
        return None
    centres, std = MIXTURE_MODES[name]
    return centres(), std


for _name, _draw in {
    **{name: _mixture(centres(), std) for name, (centres, std) in MIXTURE_MODES.items()},
    "swissroll": _swiss_roll,
    "linear_gaussian": _linear_gaussian,
}.items():
    _register(_name, _draw)
