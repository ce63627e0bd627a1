"""Improved precision and recall (Kynkäänniemi et al. 2019) on feature-space k-NN balls.

Each real sample's feature gets a ball reaching its k-th nearest real neighbour; the union of the balls
estimates the real manifold. Precision is the share of generated samples inside it (quality: are the
samples realistic?); recall swaps the roles (diversity: is every part of the data produced?). Both lie
in [0, 1], higher is better. As in the paper, the two sets have the same size: the reference is cut to
as many samples as were generated. Distances are computed with ``torch.cdist`` in blocks.
"""

from __future__ import annotations

import torch

from gantrain.errors import UserError
from gantrain.metrics.base import GeneratedBatch, Metric, Reference
from gantrain.options import positive_int
from gantrain.registry import METRICS

BLOCK = 1024  # rows of a distance matrix computed at once


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (each row is its own nearest, at 0)."""
    if len(features) <= k:
        raise UserError(f"precision_recall needs more than k={k} samples per side, got {len(features)}")
    return torch.cat([torch.cdist(block, features).kthvalue(k + 1, dim=1).values for block in features.split(BLOCK)])


def share_inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """The share of ``queries`` inside at least one ball (centre, radius)."""
    inside = [(torch.cdist(block, centres) <= radii.unsqueeze(0)).any(dim=1) for block in queries.split(BLOCK)]
    return float(torch.cat(inside).float().mean())


def precision_recall(real: torch.Tensor, generated: torch.Tensor, k: int = 3) -> tuple[float, float]:
    real, generated = real.float(), generated.float().to(real.device)
    precision = share_inside(generated, real, knn_radii(real, k))
    recall = share_inside(real, generated, knn_radii(generated, k))
    return precision, recall


@METRICS.register("precision_recall")
class PrecisionRecall(Metric):
    outputs = {"precision": True, "recall": True}
    reference_needs = ("features",)

    def __init__(self, k: int = 3) -> None:
        self.k = positive_int(k, "metrics.precision_recall.k")
        self._features: list[torch.Tensor] = []

    def start(self) -> None:
        self._features = []

    def update(self, batch: GeneratedBatch) -> None:
        self._features.append(batch.features.detach())

    def compute(self, reference: Reference) -> dict[str, float]:
        generated = torch.cat(self._features)
        real = reference.features[: len(generated)]
        precision, recall = precision_recall(real.to(generated.device), generated, self.k)
        return {"precision": precision, "recall": recall}
