"""WGAN-GP's gradient penalty (Gulrajani et al. 2017)."""

from __future__ import annotations

import torch

from gantrain.engine.distributed import sharded_draw
from gantrain.options import as_float
from gantrain.regularizers.base import Critic, Regularizer, input_gradient_norms
from gantrain.registry import REGULARIZERS


@REGULARIZERS.register("gradient_penalty")
class GradientPenalty(Regularizer):
    """λ E[(‖∇D(x̂)‖₂ − target)²] at x̂ = εx + (1 − ε)G(z), ε ~ U[0, 1] per sample.

    ``one_sided`` penalises only norms above the target: λ E[max(0, ‖∇D(x̂)‖₂ − target)²].
    The generated samples are detached, so no gradient of the penalty reaches G.
    """

    enforces_lipschitz = True
    needs_per_sample_gradients = True

    def __init__(self, weight: float = 10.0, target: float = 1.0, one_sided: bool = False) -> None:
        self.weight = as_float("regularizers.gradient_penalty.weight", weight, minimum=0.0)
        self.target = as_float("regularizers.gradient_penalty.target", target, minimum=0.0)
        self.one_sided = bool(one_sided)

    def penalty(self, critic: Critic, real: torch.Tensor,
                fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mix = sharded_draw(torch.rand, real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
        interpolates = mix * real.detach() + (1 - mix) * fake.detach()
        norms = input_gradient_norms(critic, interpolates)
        excess = norms - self.target
        if self.one_sided:
            excess = excess.clamp_min(0)
        term = self.weight * excess.square().mean()
        return term, {"penalty/gradient": term.detach(), "critic/grad_norm": norms.detach().mean()}
