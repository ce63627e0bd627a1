"""The contract every adversarial loss keeps, so recipes can use any of them.

A loss computes per-element terms; the shared helpers here weight and reduce
them the same way for every loss, so ``reduction``, ``weights``, ``real_weight``
and ``generated_weight`` mean one thing across the whole catalogue.
"""

from __future__ import annotations

from typing import Union

import torch

from gantrain.errors import UserError
from gantrain.options import as_float
from gantrain.registry import unknown_choice

#: Per-sample loss weights: a float, or a tensor broadcastable to the scores (batch first).
Weights = Union[torch.Tensor, float, None]

REDUCTIONS = ("mean", "sum", "sum_by_nonzero_weights")


class AdversarialLoss:
    """Turns discriminator scores (unbounded, any shape with batch first) into the two losses.

    Both methods take the scores on real and on generated samples, so relativistic
    losses fit the same contract; a loss that ignores one side simply does not use it.

    Options shared by every loss (each is a key of the loss YAML):
      ``reduction``         how per-element terms become one number: ``mean`` (sum(w*l) / numel),
                            ``sum`` (sum(w*l)) or ``sum_by_nonzero_weights`` (sum(w*l) / #(w != 0),
                            so zero-weighted samples do not dilute the average).
      ``real_weight``       scales the discriminator's term on real samples.
      ``generated_weight``  scales the discriminator's term on generated samples.
    The methods' ``weights`` argument weights samples (both halves of the discriminator
    loss, and the generator loss); see ``reduce`` for the shapes it accepts.
    """

    #: True where the generator loss needs D(real) too (relativistic losses); the recipe then passes it.
    needs_real_scores_for_generator: bool = False
    #: True where the loss is only meaningful for a Lipschitz critic (Wasserstein); the recipe warns otherwise.
    needs_lipschitz: bool = False

    def __init__(self, reduction: str = "mean", real_weight: float = 1.0, generated_weight: float = 1.0) -> None:
        if reduction not in REDUCTIONS:
            raise UserError(unknown_choice("reduction", reduction, list(REDUCTIONS)))
        self.reduction = str(reduction)
        self.real_weight = as_float("real_weight", real_weight)
        self.generated_weight = as_float("generated_weight", generated_weight)

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor,
                           weights: Weights = None) -> torch.Tensor:
        raise NotImplementedError  # abstract: each registered loss defines it

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor | None = None,
                       weights: Weights = None) -> torch.Tensor:
        raise NotImplementedError  # abstract: each registered loss defines it

    def decision_boundary(self, fake_scores: torch.Tensor) -> float | torch.Tensor:
        """The score between "real" and "generated", given D's scores on generated samples of the same step: ADA's
        overfitting signal counts the real scores above it. 0 for logits (the sign says which side)."""
        return 0.0

    def describe_scores(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scalars worth watching, in this loss's own terms (raw mean scores by default)."""
        return {"score/real": real_scores.detach().mean(), "score/fake": fake_scores.detach().mean()}

    # --- shared helpers -------------------------------------------------------------------------

    def reduce(self, losses: torch.Tensor, weights: Weights = None) -> torch.Tensor:
        """Weight per-element ``losses`` and reduce them to a scalar with ``self.reduction``.

        ``weights`` is a float or a tensor broadcastable to ``losses`` without enlarging
        it; a 1-D tensor with one weight per sample also fits scores of any rank
        (batch first), so per-sample weights work for patch discriminators.
        ``sum_by_nonzero_weights`` counts non-zero weights after broadcasting to the
        scores' shape and returns 0 when there are none, rather than NaN.
        """
        if weights is None:
            if self.reduction == "sum":
                return losses.sum()
            return losses.mean()  # mean and sum_by_nonzero_weights agree when every weight is 1
        w = _broadcastable_weights(weights, losses)
        total = (w * losses).sum()
        if self.reduction == "sum":
            return total
        if self.reduction == "mean":
            return total / max(losses.numel(), 1)
        nonzero = (w != 0).expand(losses.shape).sum()
        return total / nonzero.clamp(min=1).to(total.dtype)

    def reduce_halves(self, real_losses: torch.Tensor, fake_losses: torch.Tensor,
                      weights: Weights = None) -> torch.Tensor:
        """``real_weight * reduce(real) + generated_weight * reduce(fake)``: the discriminator's total.

        Each half is reduced on its own (as two expectations), so the halves may differ in size.
        """
        return (self.real_weight * self.reduce(real_losses, weights)
                + self.generated_weight * self.reduce(fake_losses, weights))

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({options})"


def _broadcastable_weights(weights: torch.Tensor | float, losses: torch.Tensor) -> torch.Tensor:
    """``weights`` as a tensor on ``losses``' device that broadcasts to ``losses.shape`` unchanged.

    Refusing weights that would enlarge the result catches the silent (B,) x (B, 1) -> (B, B) outer product.
    """
    w = torch.as_tensor(weights, dtype=losses.dtype, device=losses.device)
    if w.dim() == 1 and losses.dim() > 1 and w.shape[0] == losses.shape[0]:
        w = w.reshape(-1, *([1] * (losses.dim() - 1)))  # one weight per sample, batch first
    try:
        shape = torch.broadcast_shapes(w.shape, losses.shape)
    except RuntimeError:
        shape = None
    if shape != losses.shape:
        raise ValueError(f"loss weights of shape {tuple(w.shape)} do not broadcast to scores of shape "
                         f"{tuple(losses.shape)}; give a float, one weight per sample, or the scores' shape")
    return w
