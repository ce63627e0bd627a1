"""The Wasserstein GAN critic objective (Arjovsky et al. 2017): raw scores, no sigmoid, no log."""

from __future__ import annotations

import torch

from gantrain.losses.base import AdversarialLoss, Weights
from gantrain.options import as_float
from gantrain.registry import LOSSES


@LOSSES.register("wasserstein")
class WassersteinLoss(AdversarialLoss):
    """The critic D estimates W(P_real, P_G) = sup over 1-Lipschitz D of E[D(x)] - E[D(G(z))]:

      L_D = E[D(G(z))] - E[D(x)]
      L_G = -E[D(G(z))]

    The estimate only means something while D is kept (roughly) 1-Lipschitz: pair this loss
    with weight clipping, a gradient penalty or spectral normalisation.
    """

    needs_lipschitz = True  # the recipe warns when no regularizer keeps the critic Lipschitz

    def __init__(self, reduction: str = "mean", real_weight: float = 1.0, generated_weight: float = 1.0,
                 drift: float = 0.0) -> None:
        super().__init__(reduction, real_weight, generated_weight)
        self.drift = as_float("loss.drift", drift, minimum=0.0)

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor,
                           weights: Weights = None) -> torch.Tensor:
        """Plus ``drift`` * E[D(x)^2] (ProGAN's epsilon_drift, Karras et al. 2018): keeps the scores near 0."""
        loss = self.reduce_halves(-real_scores, fake_scores, weights)
        if self.drift:
            loss = loss + self.drift * self.reduce(real_scores.float().square(), weights)
        return loss

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None,
                       weights: Weights = None) -> torch.Tensor:
        return self.reduce(-fake_scores, weights)

    def decision_boundary(self, fake_scores: torch.Tensor) -> torch.Tensor:
        """A critic's scores have no fixed zero: a real sample counts as told apart when it scores above the
        generated samples' mean."""
        return fake_scores.detach().mean()

    def describe_scores(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """Adds the critic's Wasserstein estimate, the curve WGAN users watch fall during training."""
        scores = super().describe_scores(real_scores, fake_scores)
        scores["wasserstein_estimate"] = scores["score/real"] - scores["score/fake"]
        if self.drift:
            scores["penalty/drift"] = self.drift * real_scores.detach().float().square().mean()
        return scores
