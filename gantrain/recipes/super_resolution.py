"""Super-resolution: SRResNet/SRGAN (Ledig et al. 2017) and RRDBNet/ESRGAN (Wang et al. 2018).

Both papers train in two stages. A PSNR-oriented generator learns from a pixel loss alone (MSE for
SRResNet, L1 for RRDBNet); the GAN stage then fine-tunes it against a VGG-style discriminator with a
perceptual loss (VGG19 features), a small adversarial weight and, for ESRGAN, a small L1 term; ESRGAN's
adversarial loss is the relativistic average one, whose generator loss has both terms.

One recipe serves all four presets. Without ``model.discriminator`` it trains the pixel loss only (the
PSNR-oriented models). With one, the first ``model.pretrain.steps`` steps are the PSNR stage (an optimizer
and learning-rate milestones of their own), the rest the GAN stage (``optim``, milestones counted from
the switch); or ``model.generator.init=RUN_OR_FILE`` starts the GAN stage from an earlier run's generator or a
published one (loaded before the first step by gantrain/engine/restore.py, as every family's ``init``).
The stage is a function of the steps taken, which the checkpoint holds, so resume is exact in either
stage and across the switch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import Dataset

from gantrain.data.bicubic import resize_8bit
from gantrain.data.source import DataSource, DataSpec
from gantrain.errors import UserError
from gantrain.losses.perceptual import CRITERIA, PerceptualLoss, build_perceptual
from gantrain.metrics.base import Comparison, Outputs
from gantrain.optim.optimizers import build_optimizer, build_schedule
from gantrain.optim.run_length import run_length
from gantrain.options import as_float
from gantrain.recipes.base import NextBatch, Preview, build_loss, build_network, build_regularizers, requires_grad
from gantrain.recipes.ema import ema_decay
from gantrain.recipes.translation import Direction, TranslationRecipe, require_keys, side_by_side
from gantrain.registry import RECIPES, unknown_choice

log = logging.getLogger("gantrain")

PRETRAIN = "generator_pretrain"  # the PSNR stage's optimizer of the generator


def pixel_loss(criterion: str) -> Any:
    if criterion not in CRITERIA:
        raise UserError(unknown_choice("model.pixel.criterion", criterion, list(CRITERIA)))
    return CRITERIA[criterion]


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The baseline every super-resolution table shows: MATLAB's bicubic upscaling of the 8-bit LR image."""
    pixels = resize_8bit(lr.float().add(1).mul(127.5).round(), float(scale))
    return pixels.div(127.5).sub(1)


class SideView:
    """One key of a dataset's batches as real samples (``real``): a metric's reference images."""

    def __init__(self, dataset: Dataset, key: str) -> None:
        self.dataset, self.key = dataset, key

    def __len__(self) -> int:
        return len(self.dataset)

    def get_batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"real": self.dataset.get_batch(indices)[self.key]}


@RECIPES.register("super_resolution")
class SuperResolutionRecipe(TranslationRecipe):
    default_metrics = ("psnr", "ssim")
    sides = ("lr", "hr")

    def __init__(self, *, generator: nn.Module, spec: DataSpec, pixel: Mapping[str, Any],
                 discriminator: nn.Module | None = None,
                 perceptual: tuple[float, PerceptualLoss | None] = (0.0, None), adversarial_weight: float = 0.0,
                 pretrain: Mapping[str, Any] | None = None, init: str | None = None, **options: Any) -> None:
        """``pixel``, ``perceptual`` (weight, loss), ``adversarial_weight``, ``pretrain`` and ``init``: the model.*
        options of the same names; no ``discriminator``: the pixel loss only. The rest is TranslationRecipe's."""
        networks = {"generator": generator, **({"discriminator": discriminator} if discriminator is not None else {})}
        name = f"x{int(spec.scale)}"
        super().__init__(networks=networks, spec=spec, **options,
                         directions=[Direction(name, "generator", "lr", "hr", paired=True)])
        self.generator, self.discriminator = generator, discriminator
        self.scale = int(spec.scale)
        self.pixel_criterion = pixel_loss(str(pixel.get("criterion", "l1")))
        self.pixel_weight = as_float("model.pixel.weight", pixel.get("weight", 1.0), minimum=0)
        self.perceptual_weight, self.perceptual = perceptual
        self.adversarial_weight = as_float("model.adversarial_weight", adversarial_weight, minimum=0)
        pretrain = dict(pretrain or {})
        self.pretrain_steps = int(pretrain.get("steps", 0)) if discriminator is not None else 0
        self.pretrain_criterion = pixel_loss(str(pretrain.get("criterion", "l1")))
        self.init = init
        self.steps = 0  # training steps taken: decides the stage
        if discriminator is not None:
            self.warn_about_combinations(discriminator, log)
            if not self.pretrain_steps and not init:
                log.warning("the GAN stage starts from a random generator; the papers start it from a PSNR-oriented "
                            "one: set model.generator.init=RUN (a srresnet/rrdbnet run) or model.pretrain.steps=N")

    @classmethod
    def arguments(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> dict[str, Any]:
        model = cfg.model
        require_keys(data_spec, ("lr", "hr"), model.get("name", "super_resolution"),
                     "super-resolution data (data=sr data.root=PATH)")
        channels = data_spec.batch_keys["hr"][0]
        generator_node = {k: v for k, v in model.generator.items() if k != "init"}
        generator = build_network(generator_node, device, in_channels=channels, out_channels=channels,
                                  scale=data_spec.scale)
        optimizers = {"generator": build_optimizer(cfg.optim, "generator", generator.parameters())}
        lengths = run_length(cfg, data_spec)
        discriminator = loss = None
        pretrain = model.get("pretrain")
        pretrain = OmegaConf.to_container(pretrain, resolve=True) if pretrain is not None else {}
        stage_start = 0
        if model.get("discriminator") is not None:
            discriminator = build_network(model.discriminator, device, in_channels=channels,
                                          image_shape=tuple(data_spec.batch_keys["hr"][1:]))
            optimizers["discriminator"] = build_optimizer(cfg.optim, "discriminator", discriminator.parameters())
            loss = build_loss(cfg)
            stage_start = int(as_float("model.pretrain.steps", pretrain.get("steps", 0), minimum=0))
            if stage_start:
                optimizers[PRETRAIN] = build_optimizer({**cfg.optim, "lr": pretrain.get("lr", cfg.optim.lr)},
                                                       "generator", generator.parameters())
        schedulers = {name: build_schedule(cfg.optim, optimizer, **lengths, stage_start=stage_start)
                      for name, optimizer in optimizers.items() if name != PRETRAIN}
        if PRETRAIN in optimizers:
            schedulers[PRETRAIN] = build_schedule({"schedule": {"name": "multistep", **{
                k: pretrain[k] for k in ("milestones", "gamma") if k in pretrain}}}, optimizers[PRETRAIN], **lengths)
        perceptual = build_perceptual(model.get("perceptual"), data_spec, device) if discriminator is not None \
            else (0.0, None)
        return {"generator": generator, "spec": data_spec, "optimizers": optimizers, "schedulers": schedulers,
                "pixel": model.get("pixel") or {}, "discriminator": discriminator, "loss": loss,
                "perceptual": perceptual, "adversarial_weight": model.get("adversarial_weight", 0.0),
                "discriminator_weight": model.get("discriminator_weight", 1.0), "pretrain": pretrain,
                "init": model.generator.get("init") or cfg.get("init"), "regularizers": build_regularizers(cfg),
                "averages": {"generator": ema_decay(cfg)}}

    # --- stages --------------------------------------------------------------------------------------

    @property
    def adversarial(self) -> bool:
        """Whether the next step is a GAN-stage step."""
        return self.discriminator is not None and self.steps >= self.pretrain_steps

    @classmethod
    def standalone_config(cls, cfg: DictConfig) -> DictConfig:
        """Running a published generator needs no perceptual feature network (no VGG19 download)."""
        copy = cfg.copy()
        if copy.model.get("perceptual") is not None:
            with open_dict(copy):
                copy.model.perceptual.weight = 0.0
        return copy

    def checkpoint_due(self) -> bool:
        return self.discriminator is not None and self.pretrain_steps > 0 and self.steps == self.pretrain_steps

    def extra_state(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))

    # --- one step ------------------------------------------------------------------------------------

    def train_step(self, next_batch: NextBatch) -> dict[str, torch.Tensor]:
        batch = next_batch()
        lr, hr = batch["lr"], batch["hr"]
        adversarial = self.adversarial
        self.steps += 1
        output = self.generator(lr)
        if not adversarial:
            criterion = self.pretrain_criterion if self.discriminator is not None else self.pixel_criterion
            weight = 1.0 if self.discriminator is not None else self.pixel_weight
            pixel = weight * criterion(output, hr)
            optimizer = PRETRAIN if self.discriminator is not None else "generator"
            self.apply_update(optimizer, pixel, {"loss/pixel": pixel}, average="generator")
            return {"loss/pixel": pixel.detach(), "stage/gan": torch.zeros(())}

        requires_grad(self.discriminator, False)
        terms = {"loss/pixel": self.pixel_weight * self.pixel_criterion(output, hr)}
        if self.perceptual is not None:
            terms["loss/perceptual"] = self.perceptual_weight * self.perceptual(output, hr)
        terms["loss/g_adversarial"] = self.adversarial_weight * self.generator_adversarial(self.discriminator,
                                                                                             output, hr)
        total = sum(terms.values())
        self.apply_update("generator", total, terms)
        requires_grad(self.discriminator, True)
        d_total, scalars = self.discriminator_terms("d", self.discriminator, hr, output)
        self.apply_update("discriminator", d_total, scalars)
        self.after_discriminator_step(self.discriminator)
        return {**{name: term.detach() for name, term in terms.items()}, "loss/g": total.detach(), **scalars,
                "stage/gan": torch.ones(())}

    # --- watching and measuring ----------------------------------------------------------------------

    def preview(self, inputs: Mapping[str, torch.Tensor]) -> Preview:
        """Rows of LR (nearest-upscaled) | bicubic | output | HR on fixed held-out crops."""
        lr = inputs["lr"]
        nearest = F.interpolate(lr, scale_factor=self.scale, mode="nearest")
        return side_by_side([nearest, bicubic_upscale(lr, self.scale), self.translate_on_cpu(lr).clamp(-1, 1),
                             inputs["hr"]])

    def comparisons(self, source: DataSource, held_out: tuple[str, Dataset]) -> list[Comparison]:
        """The model and the bicubic baseline, each on every held-out image (whole, when the split has them)."""
        split, data = held_out
        reference = SideView(data, "hr")
        model = self._pairs(data, lambda lr: self.translate_on_cpu(lr))
        bicubic = self._pairs(data, lambda lr: bicubic_upscale(lr, self.scale))
        names = list(getattr(data, "names", []))
        return [Comparison("", reference, f"{split}/hr", model, has_targets=True, item_names=names),
                Comparison("bicubic", reference, f"{split}/hr", bicubic, has_targets=True, item_names=names)]

    @staticmethod
    def _pairs(data: Any, upscale: Any) -> Outputs:
        def produce(limit: int, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, Any]]:
            if hasattr(data, "whole"):  # images of any size, one at a time
                for index in range(min(limit, len(data))):
                    lr, hr = data.whole(index)
                    yield upscale(lr.cpu()), hr.cpu()
                return
            for indices in torch.arange(min(limit, len(data))).split(batch_size):
                batch = data.get_batch(indices)
                yield upscale(batch["lr"].cpu()), batch["hr"].cpu()

        return produce
