"""What a metric sees and what it reports.

A metric never draws samples itself: the evaluation (gantrain/engine/evaluation.py) streams batches from
a generator-side sampler through the feature network once, hands each batch to every metric, and gives
the metrics the reference (real-data) statistics, computed once and cached on disk. So a metric is
an accumulator: ``start``, ``update`` per generated batch, ``compute`` against the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset


#: reference statistics a metric may ask for: feature moments (sum, sum of outer products, count) or raw features
REFERENCE_KINDS = ("moments", "features")


@dataclass
class GeneratedBatch:
    """One batch from the generator side."""

    samples: torch.Tensor  # in data space: images in [-1, 1] (N, C, H, W) or points (N, D)
    features: torch.Tensor | None = None  # the feature network's embedding, (N, F), when a metric needs features
    logits: torch.Tensor | None = None  # the feature network's class logits, (N, K) (Inception Score)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. targets, for paired (image-to-image) metrics


#: Yields (outputs, targets or None) batch by batch: at most ``limit`` outputs, ``batch_size`` at a time.
Outputs = Callable[[int, int, torch.Generator], Iterator[tuple[torch.Tensor, "torch.Tensor | None"]]]


@dataclass
class Comparison:
    """One set of outputs measured against real images; a recipe says which it has.

    A noise-to-image generator has one: its samples against the training data. A translation model
    has one per direction: its outputs for held-out inputs against the held-out images of the output
    domain, and against the paired targets where there are any (L1, PSNR, SSIM).
    """

    name: str  # "" for a model's only comparison; else appended to value names (fid/AtoB)
    reference: Dataset  # real samples of the output side ("real" of get_batch / items): FID/KID's reference
    reference_split: str  # which split (and domain) that is, for the statistics cache and the report
    outputs: Outputs | None = None  # None: the samples of the sampler the evaluation is given
    has_targets: bool = False  # whether outputs come with paired targets
    item_names: list[str] = field(default_factory=list)  # names of the images outputs are made for, in order


@dataclass
class Reference:
    """Statistics of the real data the generated samples are compared with."""

    moments: dict[str, torch.Tensor] | None = None  # {"sum": (F,), "outer": (F, F), "count": ()} in float64
    features: torch.Tensor | None = None  # (N, F) features of the reference samples


class Metric:
    """Base class of a registered metric (``@METRICS.register("name")``).

    ``outputs`` names the values it reports and which way is better (True: higher, False: lower, None:
    not a ranking, such as a standard deviation); ``metrics.best`` may name any ranked one.
    """

    outputs: ClassVar[dict[str, bool | None]] = {}
    uses_features: ClassVar[bool] = True  # needs batch.features; its values are named NAME@FEATURES for own features
    needs_targets: ClassVar[bool] = False  # compares outputs with paired targets (batch.extra["targets"])
    uses_logits: ClassVar[bool] = False  # needs batch.logits
    reference_needs: ClassVar[tuple[str, ...]] = ()  # from REFERENCE_KINDS

    def start(self) -> None:
        """Forget the previous evaluation's generated samples."""

    def update(self, batch: GeneratedBatch) -> None:
        raise NotImplementedError  # abstract

    def compute(self, reference: Reference) -> dict[str, float]:
        raise NotImplementedError  # abstract


class GivenFeatures(nn.Module):
    """The identity, for torchmetrics' metrics: features are extracted once per batch and shared by every metric."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def accumulate_moments(moments: dict[str, torch.Tensor] | None, features: torch.Tensor) -> dict[str, torch.Tensor]:
    """Add a batch to running first and second moments (float64), so no more than a batch is held at once."""
    features = float64_ready(features.detach()).double()
    if moments is None:
        dim = features.shape[1]
        moments = {"sum": features.new_zeros(dim), "outer": features.new_zeros(dim, dim),
                   "count": torch.zeros((), dtype=torch.float64, device=features.device)}
    moments["sum"] += features.sum(dim=0)
    moments["outer"] += features.T @ features
    moments["count"] += features.shape[0]
    return moments


def float64_ready(tensor: torch.Tensor) -> torch.Tensor:
    """On the CPU if its device has no float64 (Apple's MPS): feature moments are accumulated in float64."""
    return tensor.cpu() if tensor.device.type == "mps" else tensor
