"""The conditional GAN (Mirza & Osindero 2014): both networks see the class label.

The training step is GANRecipe's, unchanged; only its hooks differ. Each generated sample takes the
label of the real sample it is paired with, so generated classes follow the data's class frequencies
and a gradient penalty interpolates between a real and a generated sample of the same class. With an
ACGAN discriminator (Odena et al. 2017), which returns class logits beside its scores, both networks
also minimise a classification cross-entropy weighted by ``model.aux_weight``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.options import as_float
from gantrain.recipes.base import Batch, Capabilities, Preview
from gantrain.recipes.gan import GANRecipe
from gantrain.registry import RECIPES

MAX_PREVIEW_CLASSES = 16  # grid rows; with more classes, this many evenly spaced classes are shown
MAX_PREVIEW_COLUMNS = 16  # grid columns (fixed noise vectors), so few-class grids stay readable


@RECIPES.register("cgan")
class CGANRecipe(GANRecipe):
    def __init__(self, *, num_classes: int, aux_weight: float = 1.0, **options: Any) -> None:
        """``aux_weight``: weight of ACGAN's classification loss (model.aux_weight); the rest is GANRecipe's."""
        super().__init__(**options)
        self.num_classes = int(num_classes)
        self.aux_weight = as_float("model.aux_weight", aux_weight, minimum=0)

    @classmethod
    def arguments(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> dict[str, Any]:
        if data_spec.num_classes is None:
            raise UserError(
                f"model={cfg.model.get('name', 'cgan')} needs labelled data; data '{cfg.data.get('name')}' has no "
                "class labels (use data=digits, mnist, fashion_mnist or cifar10, or an image_folder with one "
                "subfolder per class)")
        return {**super().arguments(cfg, data_spec, device), "num_classes": data_spec.num_classes,
                "aux_weight": cfg.model.get("aux_weight", 1.0)}

    # --- the hooks of GANRecipe's training step ----------------------------------------------------

    def generate(self, noise: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.generator(noise, batch["label"])

    def discriminate(self, samples: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        output = self.discriminator(samples, batch["label"])
        return output if isinstance(output, tuple) else (output, None)

    def auxiliary_terms(self, network: str, real_aux: torch.Tensor | None, fake_aux: torch.Tensor | None,
                        batch: Batch) -> dict[str, torch.Tensor]:
        """ACGAN: D learns to classify real and generated samples, G to make its samples classifiable."""
        if fake_aux is None:  # the discriminator gives no class logits: concat or projection
            return {}
        labels = batch["label"]
        if network == "discriminator":
            return {"loss/d_class": self.aux_weight * (F.cross_entropy(real_aux, labels)
                                                       + F.cross_entropy(fake_aux, labels))}
        return {"loss/g_class": self.aux_weight * F.cross_entropy(fake_aux, labels)}

    # --- previews and sampling -------------------------------------------------------------------------

    def preview_inputs(self, reference: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Images: one row per class, one fixed noise vector per column (so a column shows one "style"
        across classes). Points: as many as the reference, classes cycling."""
        real = reference["real"]
        if real.dim() == 4:
            classes = preview_classes(self.num_classes)
            columns = min(MAX_PREVIEW_COLUMNS, max(1, real.shape[0] // len(classes)))
            noise = torch.randn(columns, self.latent_dim, generator=generator).repeat(len(classes), 1)
            labels = classes.repeat_interleave(columns)
        else:
            noise = torch.randn(real.shape[0], self.latent_dim, generator=generator)
            labels = torch.arange(real.shape[0]) % self.num_classes
        return {"noise": noise, "labels": labels, "reference": real.cpu()}

    def preview(self, inputs: Mapping[str, torch.Tensor]) -> Preview:
        labels = inputs["labels"]
        columns = int((labels == labels[0]).sum())  # each class row holds one sample per noise column
        return Preview(self._generate(inputs["noise"], {"label": labels}), nrow=columns,
                       reference=inputs.get("reference"))

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(generates=True, classes=self.num_classes)

    def sample(self, n: int, generator: torch.Generator, label: object = None, **conditions: object) -> torch.Tensor:
        """n samples of class ``label``, or, without one, classes cycling 0, 1, ..., K-1, 0, ... (a class grid)."""
        if label is None:
            labels = torch.arange(n) % self.num_classes
        else:
            labels = torch.full((n,), checked_class(label, self.num_classes), dtype=torch.long)
        return self._generate(torch.randn(n, self.latent_dim, generator=generator), {"label": labels})


def preview_classes(num_classes: int) -> torch.Tensor:
    """Every class, or MAX_PREVIEW_CLASSES evenly spaced ones (first and last included) when there are more."""
    if num_classes <= MAX_PREVIEW_CLASSES:
        return torch.arange(num_classes)
    return torch.linspace(0, num_classes - 1, MAX_PREVIEW_CLASSES).round().long()


def checked_class(label: object, num_classes: int) -> int:
    """``class=`` from the command line as a class index, or a one-line error naming the valid range."""
    valid = f"this model has {num_classes} classes: 0..{num_classes - 1}"
    if isinstance(label, bool) or not isinstance(label, int):
        try:
            label = int(str(label))
        except ValueError:
            raise UserError(f"class must be a class index, got {label!r}; {valid}") from None
    if not 0 <= label < num_classes:
        raise UserError(f"class={label} is out of range; {valid}")
    return label
