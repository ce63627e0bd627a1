"""Pix2Pix (Isola et al. 2017): a conditional GAN that learns a mapping from paired images.

The discriminator judges (input, image) pairs: the real target beside its input, or the generator's
output beside it. Each step updates the discriminator on both pairs (its loss halved, so it learns
more slowly than the generator), then the generator on the adversarial loss plus
``model.l1_weight`` x L1 to the target, which makes it get the low frequencies right while the
PatchGAN judges the high ones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.optim.optimizers import build_optimizer
from gantrain.options import as_float
from gantrain.recipes.base import (NextBatch, Preview, build_loss, build_network, build_regularizers,
                                   build_schedulers, requires_grad)
from gantrain.recipes.translation import (Direction, TranslationRecipe, require_keys,
                                          side_by_side)
from gantrain.registry import RECIPES

log = logging.getLogger("gantrain")


@RECIPES.register("pix2pix")
class Pix2PixRecipe(TranslationRecipe):
    default_metrics = ("l1", "psnr", "ssim", "fid", "kid")

    def __init__(self, *, generator: nn.Module, discriminator: nn.Module, direction: str = "AtoB",
                 l1_weight: float = 100.0, discriminator_weight: float = 0.5, test_mode: str = "train",
                 **options: Any) -> None:
        """``direction``: the one it was trained for (data.direction); the rest is TranslationRecipe's."""
        super().__init__(networks={"generator": generator, "discriminator": discriminator},
                         directions=[Direction(direction, "generator", "source", "target", paired=True)],
                         discriminator_weight=discriminator_weight, test_mode=test_mode, **options)
        self.generator, self.discriminator = generator, discriminator
        self.l1_weight = as_float("model.l1_weight", l1_weight, minimum=0)
        self.warn_about_combinations(discriminator, log)

    @classmethod
    def arguments(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> dict[str, Any]:
        require_keys(data_spec, ("source", "target"), "pix2pix", "paired images (data=paired data.root=PATH)")
        source, target = data_spec.batch_keys["source"], data_spec.batch_keys["target"]
        model = cfg.model
        generator = build_network(model.generator, device, in_channels=source[0], out_channels=target[0],
                                  image_shape=tuple(target[1:]))
        discriminator = build_network(model.discriminator, device, in_channels=source[0] + target[0])
        optimizers = {"generator": build_optimizer(cfg.optim, "generator", generator.parameters()),
                      "discriminator": build_optimizer(cfg.optim, "discriminator", discriminator.parameters())}
        return {"generator": generator, "discriminator": discriminator, "loss": build_loss(cfg),
                "optimizers": optimizers, "schedulers": build_schedulers(cfg, optimizers, data_spec), "spec": data_spec,
                "direction": cfg.data.get("direction", "AtoB"), "l1_weight": model.l1_weight,
                "discriminator_weight": model.discriminator_weight, "test_mode": model.test_mode,
                "regularizers": build_regularizers(cfg)}

    def train_step(self, next_batch: NextBatch) -> dict[str, torch.Tensor]:
        batch = next_batch()
        source, target = batch["source"], batch["target"]
        fake = self.generator(source)
        real_pair, fake_pair = (source, target), (source, fake)  # D sees each pair in its channels
        total, scalars = self.discriminator_terms("d", self.discriminator, real_pair, fake_pair)
        self.apply_update("discriminator", total, scalars)
        self.after_discriminator_step(self.discriminator)

        requires_grad(self.discriminator, False)
        adversarial = self.generator_adversarial(self.discriminator, fake_pair, real_pair)
        l1 = F.l1_loss(fake, target)
        total = adversarial + self.l1_weight * l1
        terms = {"loss/g_adversarial": adversarial.detach(), "loss/g_l1": l1.detach(), "loss/g": total.detach()}
        self.apply_update("generator", total, terms)
        requires_grad(self.discriminator, True)
        return {**scalars, **terms}

    def preview(self, inputs: Mapping[str, torch.Tensor]) -> Preview:
        """Rows of input | output | target, for the fixed held-out pairs."""
        return side_by_side([inputs["source"], self.translate_on_cpu(inputs["source"]), inputs["target"]])
