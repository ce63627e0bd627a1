"""Fréchet Inception Distance (Heusel et al. 2017), computed by torchmetrics.

The distance between two Gaussians fitted to the features of real and generated samples:
‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½). Lower is better; 0 means the fitted Gaussians coincide.
The generated side is accumulated batch by batch (sums of features and of their outer products), so
no more than one batch of images is ever held.
"""

from __future__ import annotations

import torch

from gantrain.errors import UserError
from gantrain.metrics.base import GeneratedBatch, GivenFeatures, Metric, Reference, float64_ready
from gantrain.registry import METRICS


@METRICS.register("fid")
class FrechetDistance(Metric):
    outputs = {"fid": False}
    reference_needs = ("moments",)

    def __init__(self) -> None:
        self._metric = None

    def start(self) -> None:
        self._metric = None

    def update(self, batch: GeneratedBatch) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        features = float64_ready(batch.features)  # torchmetrics sums them in float64
        if self._metric is None:
            self._metric = FrechetInceptionDistance(feature=GivenFeatures(features.shape[1]), reset_real_features=False)
            self._metric.to(features.device)
        self._metric.update(features, real=False)

    def compute(self, reference: Reference) -> dict[str, float]:
        metric, moments = self._metric, reference.moments
        if metric is None or int(metric.fake_features_num_samples) < 2 or float(moments["count"]) < 2:
            raise UserError("fid needs at least 2 generated and 2 real samples")
        if moments["sum"].shape != metric.real_features_sum.shape:
            raise UserError(f"fid: real features have {moments['sum'].shape[0]} dimensions, generated ones "
                            f"{metric.real_features_sum.shape[0]}")
        device = metric.real_features_sum.device
        metric.real_features_sum = moments["sum"].to(device, torch.float64)
        metric.real_features_cov_sum = moments["outer"].to(device, torch.float64)
        metric.real_features_num_samples = torch.tensor(int(moments["count"]), device=device)
        return {"fid": float(metric.compute())}
