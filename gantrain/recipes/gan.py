"""Noise-to-sample adversarial training: n_critic discriminator steps, then one generator step.

Serves the MLP GAN, DCGAN and (with a Wasserstein loss and a Lipschitz
constraint) the WGAN presets; the networks and the loss come from the config.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from omegaconf import DictConfig
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.losses.base import AdversarialLoss
from gantrain.optim.optimizers import build_optimizer, build_schedule
from gantrain.recipes.base import Batch, NextBatch, Preview, Recipe, build_network, preview_rows, requires_grad
from gantrain.registry import LOSSES, RECIPES

SAMPLE_CHUNK = 256  # generator forward passes are split into chunks this size when sampling


@RECIPES.register("gan")
class GANRecipe(Recipe):
    def __init__(self, generator: nn.Module, discriminator: nn.Module, loss: AdversarialLoss,
                 optimizers: Mapping[str, torch.optim.Optimizer],
                 schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler],
                 latent_dim: int, n_critic: int = 1) -> None:
        super().__init__({"generator": generator, "discriminator": discriminator}, optimizers, schedulers)
        if n_critic < 1:
            raise UserError(f"trainer.n_critic must be at least 1, got {n_critic}")
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.latent_dim = int(latent_dim)
        self.n_critic = int(n_critic)

    @classmethod
    def from_config(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> "GANRecipe":
        model = cfg.model
        generator = build_network(model.generator, device, data_spec=data_spec, latent_dim=model.latent_dim)
        discriminator = build_network(model.discriminator, device, data_spec=data_spec, latent_dim=model.latent_dim)
        loss_options = {k: v for k, v in cfg.loss.items() if k != "name"}
        loss = LOSSES.build(cfg.loss.name, loss_options)
        optimizers = {
            "generator": build_optimizer(cfg.optim, "generator", generator.parameters()),
            "discriminator": build_optimizer(cfg.optim, "discriminator", discriminator.parameters()),
        }
        schedulers = {name: build_schedule(cfg.optim, opt, cfg.trainer.max_steps) for name, opt in optimizers.items()}
        return cls(generator, discriminator, loss, optimizers, schedulers, model.latent_dim, cfg.trainer.n_critic)

    def noise(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=device, generator=generator)

    def discriminator_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self.generator(self.noise(real.shape[0], real.device))
        real_scores = self.discriminator(real)
        fake_scores = self.discriminator(fake)
        loss = self.loss.discriminator_loss(real_scores, fake_scores)
        optimizer = self.optimizers["discriminator"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss/d": loss.detach(), **self.loss.describe_scores(real_scores, fake_scores)}

    def generator_step(self, batch_size: int, real: torch.Tensor) -> dict[str, torch.Tensor]:
        requires_grad(self.discriminator, False)
        fake_scores = self.discriminator(self.generator(self.noise(batch_size, real.device)))
        real_scores = None
        if getattr(self.loss, "needs_real_scores_for_generator", False):
            with torch.no_grad():
                real_scores = self.discriminator(real)
        loss = self.loss.generator_loss(fake_scores, real_scores)
        optimizer = self.optimizers["generator"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        requires_grad(self.discriminator, True)
        return {"loss/g": loss.detach()}

    def train_step(self, next_batch: NextBatch) -> dict[str, torch.Tensor]:
        for _ in range(self.n_critic):
            real = next_batch()["real"]
            scalars = self.discriminator_step(real)
        scalars.update(self.generator_step(real.shape[0], real))
        return scalars

    def preview_inputs(self, reference: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        n = reference["real"].shape[0]
        return {"noise": torch.randn(n, self.latent_dim, generator=generator), "reference": reference["real"].cpu()}

    @torch.no_grad()
    def _generate(self, noise: torch.Tensor) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        was_training = self.generator.training
        self.generator.eval()
        try:
            return torch.cat([self.generator(chunk.to(device)).cpu() for chunk in noise.split(SAMPLE_CHUNK)])
        finally:
            self.generator.train(was_training)

    def preview(self, inputs: Mapping[str, torch.Tensor]) -> Preview:
        samples = self._generate(inputs["noise"])
        return Preview(samples, nrow=preview_rows(len(samples)), reference=inputs.get("reference"))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self._generate(torch.randn(n, self.latent_dim, generator=generator))
