"""Relativistic average GAN (Jolicoeur-Martineau 2018): D judges samples against the other side's mean."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gantrain.errors import UserError
from gantrain.losses.base import AdversarialLoss, Weights
from gantrain.registry import LOSSES


@LOSSES.register("relativistic_average")
class RelativisticAverageLoss(AdversarialLoss):
    """RaGAN on logits: D estimates how much more realistic a sample is than the other side on average.

    With r = D(x), f = D(G(z)), the relative logits r~ = r - E[f] and f~ = f - E[r], and
    BCE(y, t) the binary cross-entropy of logit y against target t:
      L_D = E[BCE(r~, 1)] + E[BCE(f~, 0)] = E[softplus(-r~)] + E[softplus(f~)]
      L_G = E[BCE(f~, 1)] + E[BCE(r~, 0)] = E[softplus(-f~)] + E[softplus(r~)]
    G's loss depends on D(x) too, so the recipe must pass ``real_scores`` (it may pass them
    detached). The batch means E[r], E[f] are plain means over all elements; ``weights`` weight
    only the per-sample terms. ``real_weight``/``generated_weight`` scale the halves of L_D.
    """

    needs_real_scores_for_generator = True

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor,
                           weights: Weights = None) -> torch.Tensor:
        real_rel, fake_rel = _relative(real_scores, fake_scores)
        return self.reduce_halves(F.softplus(-real_rel), F.softplus(fake_rel), weights)

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None,
                       weights: Weights = None) -> torch.Tensor:
        if real_scores is None:
            raise UserError("loss 'relativistic_average' needs D(real) in the generator step, "
                            "but this recipe did not pass real_scores; choose another loss for it")
        real_rel, fake_rel = _relative(real_scores, fake_scores)
        return self.reduce(F.softplus(-fake_rel), weights) + self.reduce(F.softplus(real_rel), weights)

    def describe_scores(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """Adds D's relativistic probabilities: how often a real (fake) sample beats the average fake (real)."""
        scores = super().describe_scores(real_scores, fake_scores)
        real_rel, fake_rel = _relative(real_scores.detach(), fake_scores.detach())
        scores["D_ra(x)"] = torch.sigmoid(real_rel).mean()
        scores["D_ra(G(z))"] = torch.sigmoid(fake_rel).mean()
        return scores


def _relative(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(r - E[f], f - E[r]): each side's logits relative to the other side's batch mean."""
    return real_scores - fake_scores.mean(), fake_scores - real_scores.mean()
