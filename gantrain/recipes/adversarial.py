"""The adversarial terms of a discriminator step, shared by every family: the loss on real and generated
inputs plus each regulariser's penalty, and the combinations known not to train."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from gantrain.losses.base import AdversarialLoss
from gantrain.regularizers.base import Regularizer

Critic = Callable[[torch.Tensor], torch.Tensor]  # inputs -> scores (what a gradient penalty differentiates)


def discriminator_objective(loss: AdversarialLoss, regularizers: Sequence[Regularizer], critic: Critic,
                            real: torch.Tensor, fake: torch.Tensor, real_scores: torch.Tensor,
                            fake_scores: torch.Tensor, *, weight: float = 1.0, name: str = "d", prefix: str = "",
                            extra: Mapping[str, torch.Tensor] | None = None
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total, scalars): ``weight`` x the adversarial loss of ``critic``'s scores, then ``extra`` terms (an ACGAN
    classifier's), then every regulariser's penalty on ``real``/``fake`` (``fake`` detached by the caller).

    Scalars: ``loss/NAME`` for the adversarial part, the loss's own score statistics and the penalties under
    ``prefix`` (a recipe with several discriminators keeps them apart), each extra term under its own name.
    """
    adversarial = weight * loss.discriminator_loss(real_scores, fake_scores)
    scalars = {f"loss/{name}": adversarial.detach(),
               **{f"{prefix}{key}": value for key, value in loss.describe_scores(real_scores, fake_scores).items()}}
    total = adversarial
    for term_name, term in (extra or {}).items():
        total = total + term
        scalars[term_name] = term.detach()
    for regularizer in regularizers:
        added = regularizer.penalty(critic, real, fake)
        if added is not None:
            total = total + added[0]
            scalars.update({f"{prefix}{key}": value for key, value in added[1].items()})
    return total, scalars


def combination_problems(loss: AdversarialLoss, regularizers: Sequence[Regularizer],
                         discriminator: nn.Module) -> list[str]:
    """Combinations known not to work: trained anyway, but the user is told why it may fail."""
    problems = []
    if getattr(loss, "needs_lipschitz", False) and not any(r.enforces_lipschitz for r in regularizers):
        problems.append(f"loss '{type(loss).__name__}' needs a Lipschitz critic but no regularizer enforces one; "
                        "add +regularizers.gradient_penalty.weight=10 or +regularizers.weight_clip.clip_value=0.01")
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules())
    per_sample = [type(r).__name__ for r in regularizers if r.needs_per_sample_gradients]
    if has_batchnorm and per_sample:
        problems.append(f"{', '.join(per_sample)} on a discriminator with BatchNorm: BatchNorm mixes the samples "
                        "of a batch, so per-sample input gradients are not what the penalty assumes; use "
                        "model.discriminator.norm=layer (or none, instance)")
    return problems
