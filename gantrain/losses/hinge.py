"""The hinge adversarial loss (Lim & Ye 2017; Miyato et al. 2018; used by SAGAN and BigGAN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gantrain.losses.base import AdversarialLoss, Weights
from gantrain.registry import LOSSES


@LOSSES.register("hinge")
class HingeLoss(AdversarialLoss):
    """A margin loss on raw scores: D stops pushing a sample once it is past the margin.

      L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]
      L_G = -E[D(G(z))]
    """

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor,
                           weights: Weights = None) -> torch.Tensor:
        return self.reduce_halves(F.relu(1.0 - real_scores), F.relu(1.0 + fake_scores), weights)

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None,
                       weights: Weights = None) -> torch.Tensor:
        return self.reduce(-fake_scores, weights)
