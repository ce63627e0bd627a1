"""The original GAN objective (Goodfellow et al. 2014), on logits for numerical stability."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gantrain.losses.base import AdversarialLoss
from gantrain.registry import LOSSES


def _bce(scores: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, target))


@LOSSES.register("minimax")
class MinimaxLoss(AdversarialLoss):
    """D maximises log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z))).

    With D = sigmoid(logit): L_D = -log s(r) - log(1 - s(f)),  L_G = log(1 - s(f)) = -softplus(f).
    G's gradient vanishes while D confidently rejects its samples, which is why
    ``nonsaturating`` is the usual choice.
    """

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return _bce(real_scores, 1.0) + _bce(fake_scores, 0.0)

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None) -> torch.Tensor:
        return -_bce(fake_scores, 0.0)

    def describe_scores(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"D(x)": torch.sigmoid(real_scores.detach()).mean(),
                "D(G(z))": torch.sigmoid(fake_scores.detach()).mean()}


@LOSSES.register("nonsaturating")
class NonSaturatingLoss(MinimaxLoss):
    """Same discriminator loss; G maximises log D(G(z)) instead: L_G = -log s(f) = softplus(-f).

    The fixed point is the same but G gets strong gradients early (Goodfellow et al. 2014, sec. 3).
    """

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None) -> torch.Tensor:
        return _bce(fake_scores, 1.0)
