"""Noise-to-sample adversarial training: n_critic discriminator steps, then one generator step.

Serves the MLP GAN, DCGAN and (with a Wasserstein loss and a Lipschitz
constraint) the WGAN presets; the networks and the loss come from the config.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.engine.distributed import sharded_draw
from gantrain.losses.base import AdversarialLoss
from gantrain.optim.optimizers import build_optimizer
from gantrain.options import positive_int
from gantrain.engine.export_graph import ExportGraph, SampleGraph
from gantrain.recipes.base import (Batch, Capabilities, NextBatch, Preview, Recipe, build_loss, build_network,
                                   build_regularizers, build_schedulers, preview_rows, requires_grad)
from gantrain.recipes.adversarial import combination_problems, discriminator_objective
from gantrain.recipes.ema import ema_decay
from gantrain.regularizers.base import Regularizer
from gantrain.registry import RECIPES

log = logging.getLogger("gantrain")

SAMPLE_CHUNK = 256  # generator forward passes are split into chunks this size when sampling


@RECIPES.register("gan")
class GANRecipe(Recipe):
    def __init__(self, *, generator: nn.Module, discriminator: nn.Module, loss: AdversarialLoss,
                 optimizers: Mapping[str, torch.optim.Optimizer],
                 schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler],
                 latent_dim: int, n_critic: int = 1, regularizers: Sequence[Regularizer] = (),
                 averages: Mapping[str, float | None] | None = None) -> None:
        super().__init__(networks={"generator": generator, "discriminator": discriminator}, optimizers=optimizers,
                         schedulers=schedulers, averages=averages)
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.latent_dim = int(latent_dim)
        self.n_critic = positive_int(n_critic, "model.n_critic")
        self.regularizers = list(regularizers)
        for problem in combination_problems(loss, self.regularizers, discriminator):
            log.warning(problem)

    @classmethod
    def arguments(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> dict[str, Any]:
        model = cfg.model
        generator = build_network(model.generator, device, data_spec=data_spec, latent_dim=model.latent_dim)
        discriminator = build_network(model.discriminator, device, data_spec=data_spec, latent_dim=model.latent_dim)
        optimizers = {
            "generator": build_optimizer(cfg.optim, "generator", generator.parameters()),
            "discriminator": build_optimizer(cfg.optim, "discriminator", discriminator.parameters()),
        }
        n_critic = positive_int(model.get("n_critic", 1), "model.n_critic")
        return {"generator": generator, "discriminator": discriminator, "loss": build_loss(cfg),
                "optimizers": optimizers, "latent_dim": model.latent_dim, "n_critic": n_critic,
                "schedulers": build_schedulers(cfg, optimizers, data_spec, batches_per_step=n_critic),
                "regularizers": build_regularizers(cfg), "averages": {"generator": ema_decay(cfg)}}

    def noise(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent vectors for this rank (data parallel: its slice of the global batch's draw)."""
        return sharded_draw(torch.randn, n, self.latent_dim, device=device, generator=generator)

    # --- hooks a conditional subclass overrides (gantrain/recipes/cgan.py) ---------------------------

    def generate(self, noise: torch.Tensor, batch: Batch) -> torch.Tensor:
        """G's forward; ``batch`` is the real batch of this step (its labels condition a cGAN)."""
        return self.generator(noise)

    def discriminate(self, samples: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(adversarial scores, auxiliary output or None); a discriminator may return both as a tuple."""
        output = self.discriminator(samples)
        return output if isinstance(output, tuple) else (output, None)

    def auxiliary_terms(self, network: str, real_aux: torch.Tensor | None, fake_aux: torch.Tensor | None,
                        batch: Batch) -> dict[str, torch.Tensor]:
        """Extra loss terms for ``network`` from the auxiliary outputs (ACGAN's classifier); none here."""
        return {}

    # --- the two updates ------------------------------------------------------------------------------

    def discriminator_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        real = self.augment(batch["real"], real=True)  # the penalties below also see what D scored: augmented
        with torch.no_grad():
            fake = self.augment(self.generate(self.noise(real.shape[0], real.device), batch))
        real_scores, real_aux = self.discriminate(real, batch)
        fake_scores, fake_aux = self.discriminate(fake, batch)
        self.augmentation.observe(real_scores, self.loss.decision_boundary(fake_scores))
        total, scalars = discriminator_objective(
            self.loss, self.regularizers, lambda x: self.discriminate(x, batch)[0], real, fake, real_scores,
            fake_scores, extra=self.auxiliary_terms("discriminator", real_aux, fake_aux, batch))
        self.apply_update("discriminator", total, scalars)
        scalars["critic/param_grad_norm"] = parameter_grad_norm(self.discriminator)
        for regularizer in self.regularizers:
            regularizer.after_step(self.discriminator)
        return scalars

    def generator_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        real = batch["real"]
        requires_grad(self.discriminator, False)
        fake = self.augment(self.generate(self.noise(real.shape[0], real.device), batch))
        fake_scores, fake_aux = self.discriminate(fake, batch)
        real_scores = None
        if self.loss.needs_real_scores_for_generator:
            with torch.no_grad():
                real_scores = self.discriminate(self.augment(real), batch)[0]
        adversarial = self.loss.generator_loss(fake_scores, real_scores)
        scalars = {"loss/g": adversarial.detach()}
        total = adversarial
        for name, term in self.auxiliary_terms("generator", None, fake_aux, batch).items():
            total = total + term
            scalars[name] = term.detach()
        self.apply_update("generator", total, scalars)
        requires_grad(self.discriminator, True)
        return scalars

    @property
    def batches_per_step(self) -> int:
        return self.n_critic  # each critic step draws its own batch

    def train_step(self, next_batch: NextBatch) -> dict[str, torch.Tensor]:
        for _ in range(self.n_critic):
            batch = next_batch()
            scalars = self.discriminator_step(batch)
        scalars.update(self.generator_step(batch))
        return scalars

    def preview_inputs(self, reference: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        n = reference["real"].shape[0]
        return {"noise": torch.randn(n, self.latent_dim, generator=generator), "reference": reference["real"].cpu()}

    @torch.no_grad()
    def _generate(self, noise: torch.Tensor, conditions: Batch | None = None) -> torch.Tensor:
        """The ``generate`` hook in eval mode, in chunks, on the CPU: what previews and sampling draw.

        ``conditions`` (e.g. ``{"label": ...}`` for a cGAN) are split into the same chunks as the noise.
        """
        device = next(self.generator.parameters()).device
        conditions = conditions or {}
        was_training = self.generator.training
        self.generator.eval()
        try:
            return torch.cat([
                self.generate(noise[start:start + SAMPLE_CHUNK].to(device),
                              {k: v[start:start + SAMPLE_CHUNK].to(device) for k, v in conditions.items()}).cpu()
                for start in range(0, len(noise), SAMPLE_CHUNK)
            ])
        finally:
            self.generator.train(was_training)

    def preview(self, inputs: Mapping[str, torch.Tensor]) -> Preview:
        samples = self._generate(inputs["noise"])
        return Preview(samples, nrow=preview_rows(len(samples)), reference=inputs.get("reference"))

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(generates=True)

    def export_graph(self, direction: str | None = None) -> ExportGraph:
        """z (N, latent_dim) [and labels (N,)] -> what ``generate`` makes, in eval mode."""
        name = self.test_network(direction)
        classes = self.capabilities.classes
        noise = torch.randn(2, self.latent_dim)
        inputs = (noise, torch.arange(2) % classes) if classes else (noise,)
        graph = SampleGraph(self.networks[name], self.generate, bool(classes)).eval()
        with torch.no_grad():
            shape = list(graph(*inputs).shape[1:])
        names = ["z", "labels"][:len(inputs)]
        return ExportGraph(graph, inputs, names, {key: {0: "batch"} for key in [*names, "output"]},
                           {"kind": "noise_to_image", "inputs": " ".join(names), "latent_dim": self.latent_dim,
                            "num_classes": classes or 0, "output_shape": shape,
                            "value_range": "[-1, 1]" if len(shape) == 3 else "unbounded", "noise": "standard normal"})

    def sample(self, n: int, generator: torch.Generator, **conditions: object) -> torch.Tensor:
        return self._generate(torch.randn(n, self.latent_dim, generator=generator))


def parameter_grad_norm(net: nn.Module) -> torch.Tensor:
    """The L2 norm of all parameter gradients together (a cheap stability signal for the critic)."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())

