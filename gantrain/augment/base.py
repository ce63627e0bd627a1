"""The contract of an augmentation, the "none" augmentation, and building one from the ``augment`` config.

An augmentation is applied by the recipe to every image its discriminator scores, real and generated,
as one differentiable function, so the generator's gradient passes through it (Zhao et al. 2020;
Karras et al. 2020). Several tensors given together (pix2pix's input and output) get one transform:
geometric steps act on all their channels at once, colour steps on each tensor's own channels.
Its random numbers come from torch's generators (the run's streams, checkpointed by the loop); what
it adapts (ADA's p) is in ``state_dict``, which the recipe saves beside its networks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from gantrain.data.source import DataSpec
from gantrain.engine.distributed import sharded_draw
from gantrain.errors import UserError
from gantrain.registry import AUGMENTATIONS

#: At most this many augmented reals are kept for the one grid the loop shows at its first preview.
SHOWN = 64


class Augmentation:
    """Base class and the ``none`` augmentation: images pass unchanged."""

    #: whether it changes images (then the loop shows the first augmented reals once)
    changes_images: bool = False

    def __init__(self) -> None:
        self.shown: list[torch.Tensor] | None = None  # the first augmented reals of this process, per tensor
        self._showing = self.changes_images  # keep the next reals given (once)

    def __call__(self, *images: torch.Tensor, real: bool = False) -> torch.Tensor:
        """``images`` as the discriminator sees them; several tensors share one transform and come back
        concatenated along the channels (a pix2pix pair). ``real`` marks data images (kept once for display)."""
        groups = [int(image.shape[1]) for image in images]
        joined = images[0] if len(images) == 1 else torch.cat(images, 1)
        out = self.transform(joined, groups)
        if real and self._showing:
            self._showing = False
            self.shown = [part.detach()[:SHOWN].float().cpu() for part in out.split(groups, 1)]
        return out

    def transform(self, images: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
        """The augmentation of a batch whose channels are ``groups`` (sizes) of separate images."""
        return images

    def observe(self, real_scores: torch.Tensor, boundary: float | torch.Tensor = 0.0) -> None:
        """The discriminator's scores for the (augmented) reals of one of its steps, and the score that separates
        "real" from "generated" under its loss (``AdversarialLoss.decision_boundary``): ADA's overfitting signal."""

    def end_step(self) -> None:
        """Called once after each training step (ADA adjusts p here)."""

    def scalars(self) -> dict[str, float]:
        """What TensorBoard shows under ``augment/`` (ADA: p and r_t)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        del state  # nothing adapts

    def take_shown(self) -> tuple[torch.Tensor, int] | None:
        """(images, per row) of the augmented reals kept for display, once; None afterwards or before any.

        A pair (pix2pix) shows its two images side by side, greyscale as RGB beside colour.
        """
        parts, self.shown = self.shown, None
        if parts is None:
            return None
        channels = max(part.shape[1] for part in parts)
        parts = [part.expand(-1, channels, -1, -1) for part in parts]
        if len(parts) == 1:
            return parts[0], max(1, round(len(parts[0]) ** 0.5))
        return torch.stack(parts, 1).flatten(0, 1), len(parts) * max(1, round((len(parts[0]) / len(parts)) ** 0.5))


AUGMENTATIONS.register("none")(Augmentation)


def per_sample(sampler: Callable[..., torch.Tensor], n: int, *shape: int, like: torch.Tensor) -> torch.Tensor:
    """Random numbers for n samples from torch's generator of ``like``'s device, in float32.

    Under data parallelism each rank takes its slice of the global batch's draw (``sharded_draw``), so the
    augmentation a sample gets does not depend on how many processes share the batch.
    """
    return sharded_draw(sampler, n, *shape, device=like.device, dtype=torch.float32)


def build_augmentation(node: Mapping[str, Any] | None, data_spec: DataSpec) -> Augmentation:
    """The ``augment`` config as an augmentation; a one-line error for a name or data it does not fit."""
    options = dict(node or {"name": "none"})
    name = options.pop("name", "none")
    augmentation = AUGMENTATIONS.build(name, options, "augment")
    if name != "none" and not data_spec.is_image:
        raise UserError(f"augment={name} transforms images, but this data is not images ({data_spec.describe()}); "
                        "use augment=none")
    return augmentation
