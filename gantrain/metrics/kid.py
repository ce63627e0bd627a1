"""Kernel Inception Distance (Bińkowski et al. 2018), computed by torchmetrics.

The squared maximum mean discrepancy between real and generated features under the cubic polynomial
kernel k(x, y) = (xᵀy / d + 1)³, estimated without bias and averaged over ``subsets`` random subsets
of ``subset_size`` samples from each side. Lower is better; unlike FID it is unbiased, so it is ≈ 0
for two samples of the same distribution at any sample count (and can be slightly negative).
"""

from __future__ import annotations

import warnings

from gantrain.errors import UserError
from gantrain.metrics.base import GeneratedBatch, GivenFeatures, Metric, Reference
from gantrain.options import positive_int
from gantrain.registry import METRICS


@METRICS.register("kid")
class KernelDistance(Metric):
    outputs = {"kid": False, "kid_std": None}
    reference_needs = ("features",)

    def __init__(self, subsets: int = 100, subset_size: int = 1000, degree: int = 3) -> None:
        self.subsets = positive_int(subsets, "metrics.kid.subsets")
        self.subset_size = positive_int(subset_size, "metrics.kid.subset_size")
        self.degree = positive_int(degree, "metrics.kid.degree")
        self._metric = None

    def start(self) -> None:
        self._metric = None

    def update(self, batch: GeneratedBatch) -> None:
        from torchmetrics.image.kid import KernelInceptionDistance

        if self._metric is None:
            with warnings.catch_warnings():  # "will save all extracted features": features, not images, here
                warnings.simplefilter("ignore", UserWarning)
                self._metric = KernelInceptionDistance(feature=GivenFeatures(batch.features.shape[1]),
                                                       subsets=self.subsets, subset_size=self.subset_size,
                                                       degree=self.degree, reset_real_features=False)
        self._metric.update(batch.features, real=False)

    def compute(self, reference: Reference) -> dict[str, float]:
        metric = self._metric
        if metric is None:
            raise UserError("kid needs generated samples")
        generated = sum(len(f) for f in metric.fake_features)
        # at most as many as each side has: small evaluations still get a (noisier) estimate
        metric.subset_size = min(self.subset_size, generated, len(reference.features))
        if metric.subset_size < 2:
            raise UserError("kid needs at least 2 generated and 2 real samples")
        metric.real_features.clear()
        metric.real_features.append(reference.features.to(metric.fake_features[0].device))
        mean, std = metric.compute()
        return {"kid": float(mean), "kid_std": float(std)}
