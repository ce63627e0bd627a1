"""The R1 penalty on real data (Mescheder et al. 2018)."""

from __future__ import annotations

import torch

from gantrain.options import as_float
from gantrain.regularizers.base import Critic, Regularizer, input_gradient_norms
from gantrain.registry import REGULARIZERS


@REGULARIZERS.register("r1")
class R1Penalty(Regularizer):
    """(γ/2) E[‖∇D(x)‖₂²] on real samples: keeps D flat on the data, which makes training converge locally."""

    needs_per_sample_gradients = True

    def __init__(self, gamma: float = 10.0) -> None:
        self.gamma = as_float("regularizers.r1.gamma", gamma, minimum=0.0)

    def penalty(self, critic: Critic, real: torch.Tensor,
                fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        norms = input_gradient_norms(critic, real)
        term = 0.5 * self.gamma * norms.square().mean()
        return term, {"penalty/r1": term.detach(), "critic/real_grad_norm": norms.detach().mean()}
