"""Inception Score (Salimans et al. 2016), computed by torchmetrics.

exp(E_x KL(p(y|x) ‖ p(y))) from the feature network's class logits: high when each sample is
confidently one class and the classes are evenly used. It ranges from 1 to the number of classes
(1008 logits for Inception); higher is better. It looks only at generated samples (no real data), and
is computed over ``splits`` parts whose mean and standard deviation are reported, as in the paper.
"""

from __future__ import annotations

import warnings

from gantrain.errors import UserError
from gantrain.metrics.base import GeneratedBatch, GivenFeatures, Metric, Reference
from gantrain.options import positive_int
from gantrain.registry import METRICS


@METRICS.register("is")
class InceptionScore(Metric):
    outputs = {"is": True, "is_std": None}
    uses_logits = True

    def __init__(self, splits: int = 10) -> None:
        self.splits = positive_int(splits, "metrics.is.splits")
        self._metric = None

    def start(self) -> None:
        self._metric = None

    def update(self, batch: GeneratedBatch) -> None:
        from torchmetrics.image.inception import InceptionScore as TorchmetricsInceptionScore

        if self._metric is None:
            with warnings.catch_warnings():  # "will save all extracted features": logits, not images, here
                warnings.simplefilter("ignore", UserWarning)
                self._metric = TorchmetricsInceptionScore(feature=GivenFeatures(batch.logits.shape[1]),
                                                          splits=self.splits)
        self._metric.update(batch.logits)

    def compute(self, reference: Reference) -> dict[str, float]:
        del reference  # the score looks at generated samples only
        if self._metric is None or sum(len(f) for f in self._metric.features) < self.splits:
            raise UserError(f"is needs at least metrics.is.splits={self.splits} samples")
        with warnings.catch_warnings():  # one split has no standard deviation (reported as 0)
            warnings.simplefilter("ignore", UserWarning)
            mean, std = self._metric.compute()
        return {"is": float(mean), "is_std": float(std) if self.splits > 1 else 0.0}
