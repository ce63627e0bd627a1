"""The contract every adversarial loss keeps, so recipes can use any of them."""

from __future__ import annotations

import torch


class AdversarialLoss:
    """Turns discriminator scores (unbounded, any shape with batch first) into the two losses.

    Both methods take the scores on real and on generated samples, so relativistic
    losses fit the same contract; a loss that ignores one side simply does not use it.
    """

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract: each registered loss defines it

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError  # abstract: each registered loss defines it

    def describe_scores(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scalars worth watching, in this loss's own terms (raw mean scores by default)."""
        return {"score/real": real_scores.detach().mean(), "score/fake": fake_scores.detach().mean()}
