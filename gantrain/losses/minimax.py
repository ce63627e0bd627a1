"""The original GAN objective (Goodfellow et al. 2014), on logits for numerical stability."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gantrain.losses.base import AdversarialLoss, Weights
from gantrain.registry import LOSSES


@LOSSES.register("minimax")
class MinimaxLoss(AdversarialLoss):
    """D maximises log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z))).

    With D = sigmoid(logit), r = D's logit on x, f = its logit on G(z), s = sigmoid:
      L_D = E[-log s(r)] + E[-log(1 - s(f))] = E[softplus(-r)] + E[softplus(f)]
      L_G = E[log(1 - s(f))]                 = -E[softplus(f)]
    Written with softplus so that logits of any size give finite values and gradients.
    G's gradient vanishes while D confidently rejects its samples, which is why
    ``nonsaturating`` is the usual choice.
    """

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor,
                           weights: Weights = None) -> torch.Tensor:
        return self.reduce_halves(F.softplus(-real_scores), F.softplus(fake_scores), weights)

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None,
                       weights: Weights = None) -> torch.Tensor:
        return self.reduce(-F.softplus(fake_scores), weights)

    def describe_scores(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """D's mean probabilities, the numbers the original GAN's theory talks about."""
        return {"D(x)": torch.sigmoid(real_scores.detach()).mean(),
                "D(G(z))": torch.sigmoid(fake_scores.detach()).mean()}


@LOSSES.register("nonsaturating")
class NonSaturatingLoss(MinimaxLoss):
    """Same discriminator loss; G maximises log D(G(z)) instead:

      L_G = E[-log s(f)] = E[softplus(-f)]

    The fixed point is the same but G gets strong gradients early (Goodfellow et al. 2014, sec. 3).
    """

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None,
                       weights: Weights = None) -> torch.Tensor:
        return self.reduce(F.softplus(-fake_scores), weights)
