"""The contract of a critic regulariser, and the per-sample input-gradient norm they share."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

#: The critic as a function of its input alone: scores for a batch (a cGAN binds its labels in).
Critic = Callable[[torch.Tensor], torch.Tensor]


class Regularizer:
    """Acts on the discriminator step: adds a penalty to its loss and/or constrains it after the update.

    ``enforces_lipschitz`` tells the recipe whether a Wasserstein critic is constrained;
    ``needs_per_sample_gradients`` whether BatchNorm (which mixes samples) breaks it.
    """

    enforces_lipschitz: bool = False
    needs_per_sample_gradients: bool = False

    def penalty(self, critic: Critic, real: torch.Tensor,
                fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """(term added to the discriminator loss, scalars to log), or None when it adds no term."""
        return None

    @torch.no_grad()
    def after_step(self, discriminator: nn.Module) -> None:
        """Called after each discriminator optimizer step (weight clipping lives here)."""


def eager_forward() -> AbstractContextManager:
    """Compiled modules run their eager forward within this block (nothing to do if none was compiled)."""
    if "torch._dynamo" not in sys.modules:  # nothing compiled: skip importing the compiler (about a second)
        return nullcontext()
    return torch.compiler.set_stance("force_eager")


def input_gradient_norms(critic: Critic, inputs: torch.Tensor) -> torch.Tensor:
    """‖∇ₓ D(x)‖₂ for each sample, over all non-batch dimensions; differentiable (for penalties).

    Summing the scores before differentiating is exact because each score depends only on its
    own sample (no BatchNorm). The gradient is of the scores themselves, never of a scaled loss,
    so it stays correct under mixed precision with a GradScaler. The critic runs eagerly here even when
    ``trainer.compile`` compiled it: PyTorch cannot differentiate a compiled graph twice.
    """
    inputs = inputs.detach().requires_grad_(True)
    with eager_forward():
        scores = critic(inputs)
    (gradients,) = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
    return gradients.flatten(1).norm(2, dim=1)
