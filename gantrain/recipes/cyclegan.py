"""CycleGAN (Zhu et al. 2017): two generators learn to translate between unpaired domains.

G_AB: A -> B and G_BA: B -> A are trained together against D_B and D_A, with a cycle-consistency
loss (translating there and back returns the input, L1 x ``model.cycle_weight`` both ways) and an
identity loss (a generator leaves images already of its output domain alone, L1 x
``model.identity_weight`` x cycle_weight). The generators step first, with the discriminators frozen;
then the discriminators on real images and on generated ones drawn through an image pool.
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
from gantrain.errors import UserError
from gantrain.optim.optimizers import build_optimizer
from gantrain.options import as_float
from gantrain.recipes.base import (NextBatch, Preview, build_loss, build_network, build_regularizers,
                                   build_schedulers, requires_grad)
from gantrain.recipes.image_pool import ImagePool
from gantrain.recipes.translation import (Direction, TranslationRecipe, require_keys,
                                          side_by_side)
from gantrain.registry import RECIPES

log = logging.getLogger("gantrain")

DIRECTIONS = {"AtoB": Direction("AtoB", "generator_ab", "a", "b", paired=False),
              "BtoA": Direction("BtoA", "generator_ba", "b", "a", paired=False)}


@RECIPES.register("cyclegan")
class CycleGANRecipe(TranslationRecipe):
    sides = ("a", "b")

    def __init__(self, *, generators: Mapping[str, nn.Module], discriminators: Mapping[str, nn.Module],
                 spec: DataSpec, cycle_weight: float = 10.0, identity_weight: float = 0.5,
                 discriminator_weight: float = 0.5, pool_size: int = 50, **options: Any) -> None:
        """``generators``: generator_ab, generator_ba; ``discriminators``: discriminator_a, discriminator_b; the
        weights and ``pool_size`` are the model.* options of the same names; the rest is TranslationRecipe's."""
        super().__init__(networks={**generators, **discriminators}, spec=spec, directions=list(DIRECTIONS.values()),
                         discriminator_weight=discriminator_weight, **options)
        self.generator_ab, self.generator_ba = generators["generator_ab"], generators["generator_ba"]
        self.discriminator_a, self.discriminator_b = discriminators["discriminator_a"], discriminators["discriminator_b"]
        self.cycle_weight = as_float("model.cycle_weight", cycle_weight, minimum=0)
        self.identity_weight = as_float("model.identity_weight", identity_weight, minimum=0)
        if self.identity_weight > 0 and spec.batch_keys["a"][0] != spec.batch_keys["b"][0]:
            raise UserError(f"the identity loss compares a generator's input with its output, but domain A has "
                            f"{spec.batch_keys['a'][0]} channels and B {spec.batch_keys['b'][0]}; set "
                            "model.identity_weight=0")
        self.pools = {"a": ImagePool(pool_size), "b": ImagePool(pool_size)}  # generated A and generated B images
        self.warn_about_combinations(self.discriminator_a, log)

    @classmethod
    def arguments(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> dict[str, Any]:
        require_keys(data_spec, ("a", "b"), "cyclegan", "unpaired images (data=unpaired data.root=PATH)")
        a, b = data_spec.batch_keys["a"], data_spec.batch_keys["b"]
        model = cfg.model
        generators = {"generator_ab": build_network(model.generator, device, in_channels=a[0], out_channels=b[0],
                                                    image_shape=tuple(b[1:])),
                      "generator_ba": build_network(model.generator, device, in_channels=b[0], out_channels=a[0],
                                                    image_shape=tuple(a[1:]))}
        discriminators = {"discriminator_a": build_network(model.discriminator, device, in_channels=a[0]),
                          "discriminator_b": build_network(model.discriminator, device, in_channels=b[0])}
        optimizers = {  # one Adam for both generators, one for both discriminators, as in the paper's code
            "generators": build_optimizer(cfg.optim, "generator", [p for g in generators.values() for p in g.parameters()]),
            "discriminators": build_optimizer(cfg.optim, "discriminator",
                                              [p for d in discriminators.values() for p in d.parameters()])}
        return {"generators": generators, "discriminators": discriminators, "loss": build_loss(cfg),
                "optimizers": optimizers, "schedulers": build_schedulers(cfg, optimizers, data_spec), "spec": data_spec,
                "cycle_weight": model.cycle_weight, "identity_weight": model.identity_weight,
                "discriminator_weight": model.discriminator_weight, "pool_size": model.pool_size,
                "test_mode": model.test_mode, "regularizers": build_regularizers(cfg)}

    def train_step(self, next_batch: NextBatch) -> dict[str, torch.Tensor]:
        batch = next_batch()
        real_a, real_b = batch["a"], batch["b"]
        fake_b, fake_a = self.generator_ab(real_a), self.generator_ba(real_b)

        discriminators = (self.discriminator_a, self.discriminator_b)
        for discriminator in discriminators:
            requires_grad(discriminator, False)
        terms = {"loss/g_ab_adversarial": self.generator_adversarial(self.discriminator_b, fake_b, real_b),
                 "loss/g_ba_adversarial": self.generator_adversarial(self.discriminator_a, fake_a, real_a),
                 "loss/cycle_a": self.cycle_weight * F.l1_loss(self.generator_ba(fake_b), real_a),
                 "loss/cycle_b": self.cycle_weight * F.l1_loss(self.generator_ab(fake_a), real_b)}
        if self.identity_weight > 0:
            weight = self.identity_weight * self.cycle_weight
            terms["loss/identity_a"] = weight * F.l1_loss(self.generator_ba(real_a), real_a)
            terms["loss/identity_b"] = weight * F.l1_loss(self.generator_ab(real_b), real_b)
        total = sum(terms.values())
        scalars = {name: term.detach() for name, term in terms.items()}
        scalars["loss/g"] = total.detach()
        self.apply_update("generators", total, terms)
        for discriminator in discriminators:
            requires_grad(discriminator, True)

        total_a, scalars_a = self.discriminator_terms("d_a", self.discriminator_a, real_a,
                                                      self.pools["a"].query(fake_a))
        total_b, scalars_b = self.discriminator_terms("d_b", self.discriminator_b, real_b,
                                                      self.pools["b"].query(fake_b))
        self.apply_update("discriminators", total_a + total_b, {**scalars_a, **scalars_b})
        self.after_discriminator_step(*discriminators)
        return {**scalars, **scalars_a, **scalars_b}

    def preview(self, inputs: Mapping[str, torch.Tensor]) -> Preview:
        """Rows A | G_AB(A) | G_BA(G_AB(A)), then rows B | G_BA(B) | G_AB(G_BA(B)), for fixed held-out images."""
        rows = []
        for there, back in (("AtoB", "BtoA"), ("BtoA", "AtoB")):
            images = inputs[self.directions[there].input_key]
            translated = self.translate_on_cpu(images, there)
            rows.append([images, translated, self.translate_on_cpu(translated, back)])
        channels = max(image.shape[1] for row in rows for image in row)
        columns = [torch.cat([row[j].expand(-1, channels, -1, -1) for row in rows]) for j in range(3)]
        return side_by_side(columns)

    def extra_state(self) -> dict[str, Any]:
        return {"pools": {side: pool.state_dict() for side, pool in self.pools.items()}}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        device = next(self.generator_ab.parameters()).device
        for side, pool_state in state.get("pools", {}).items():
            self.pools[side].load_state_dict(pool_state, device)
