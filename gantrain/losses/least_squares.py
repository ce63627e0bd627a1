"""Least squares GAN (Mao et al. 2017): regression of D's raw scores onto target values."""

from __future__ import annotations

import torch

from gantrain.losses.base import AdversarialLoss, Weights
from gantrain.options import as_float
from gantrain.registry import LOSSES


@LOSSES.register("lsgan")
class LeastSquaresLoss(AdversarialLoss):
    """D regresses real scores onto b and generated ones onto a; G pulls its scores towards c:

      L_D = k * E[(D(x) - b)^2] + k * E[(D(G(z)) - a)^2]
      L_G = k * E[(D(G(z)) - c)^2]

    k = ``factor``: the paper's 1/2, or 1 for plain mean squared errors (the CycleGAN code's loss,
    whose generator term is weighed against the cycle loss at that scale).
    a = ``fake_target``, b = ``real_target``, c = ``generator_target``. The defaults
    (a, b, c) = (0, 1, 1) are the paper's common choice; (-1, 1, 0) is the setting its
    theory ties to the Pearson chi^2 divergence (b - c = 1, b - a = 2).
    Unlike the log losses, samples far on the right side of the boundary are still penalised,
    which is what gives G gradients when D is confident.
    """

    def __init__(self, real_target: float = 1.0, fake_target: float = 0.0, generator_target: float = 1.0,
                 reduction: str = "mean", real_weight: float = 1.0, generated_weight: float = 1.0,
                 factor: float = 0.5) -> None:
        super().__init__(reduction=reduction, real_weight=real_weight, generated_weight=generated_weight)
        self.factor = as_float("factor", factor, minimum=0, strictly_above=True)
        self.real_target = as_float("real_target", real_target)
        self.fake_target = as_float("fake_target", fake_target)
        self.generator_target = as_float("generator_target", generator_target)

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor,
                           weights: Weights = None) -> torch.Tensor:
        return self.reduce_halves(self.factor * (real_scores - self.real_target) ** 2,
                                  self.factor * (fake_scores - self.fake_target) ** 2, weights)

    def decision_boundary(self, fake_scores: torch.Tensor) -> float:
        """Midway between the targets real and generated scores are regressed onto."""
        return (self.real_target + self.fake_target) / 2

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None,
                       weights: Weights = None) -> torch.Tensor:
        return self.reduce(self.factor * (fake_scores - self.generator_target) ** 2, weights)
