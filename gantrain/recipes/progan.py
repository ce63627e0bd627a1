"""Progressive growing (Karras et al. 2018): WGAN-GP training whose networks grow from 4x4 to the data's size.

The whole schedule is one pure function of the real images shown so far (``GrowthSchedule.stage``,
gantrain/recipes/progan_schedule.py). Saving the image count (``extra_state``) is therefore all a
checkpoint needs for the resolution, alpha, batch size and learning rates to resume exactly, mid
fade-in included.

Each step takes a batch of the size the table gives for the current resolution (``next_batch(n)``),
box-downsamples the real images to that resolution and, during a fade, blends them with their once more
downsampled-then-upsampled version by alpha (the official ``process_reals``). The discriminator step
(WGAN loss, gradient penalty, the loss's drift term) and the generator step are GANRecipe's; the
optimizers' learning rates come from the per-resolution tables, and their state is reset whenever a
fade starts or ends (``reset_optimizer``, the official ``reset_opt_for_new_lod``). One critic step per
generator step (``model.n_critic``, official ``D_repeats`` = 1); the schedule is read before every
step (the official reads it every 4 steps, ``minibatch_repeats``, which the image count makes needless).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import Dataset

from gantrain.data.source import DataSource, DataSpec, batch_of
from gantrain.engine.distributed import current_world
from gantrain.errors import UserError
from gantrain.metrics.base import Comparison
from gantrain.nets.progan import blend, downsample, square_image, upsample
from gantrain.recipes.base import Batch, NextBatch, Preview
from gantrain.recipes.gan import GANRecipe
from gantrain.recipes.progan_schedule import GrowthSchedule, Stage
from gantrain.registry import RECIPES, unknown_choice
from gantrain.regularizers.gradient_penalty import GradientPenalty

#: where gradient penalties measure the critic's input gradient (model.penalty_resolution)
PENALTY_RESOLUTIONS = ("final", "current")


class Downsampled(Dataset):
    """Another dataset's images box-downsampled by ``factor``: the real data at a growing network's resolution."""

    def __init__(self, dataset: Dataset, factor: int) -> None:
        self.dataset = dataset
        self.factor = factor

    def __len__(self) -> int:
        return len(self.dataset)

    def get_batch(self, indices: torch.Tensor) -> Batch:
        batch = batch_of(self.dataset, indices)
        return {**batch, "real": downsample(batch["real"], self.factor)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.get_batch(torch.tensor([index])).items()}


@RECIPES.register("progan")
class ProGANRecipe(GANRecipe):
    """GANRecipe's critic and generator steps, run at the resolution and alpha of the growth schedule."""

    ends_by_itself = True  # the schedule's total_kimg ends the run

    def __init__(self, *, schedule: GrowthSchedule, reset_optimizer: bool = True, penalty_resolution: str = "final",
                 **options: Any) -> None:
        """``schedule``: the growth (model.schedule); ``reset_optimizer``: clear Adam's moments when a phase
        changes; ``penalty_resolution``: final | current (model.penalty_resolution); the rest is GANRecipe's."""
        if penalty_resolution not in PENALTY_RESOLUTIONS:
            raise UserError(unknown_choice("model.penalty_resolution", penalty_resolution, list(PENALTY_RESOLUTIONS)))
        super().__init__(**{**options, "schedulers": {}})  # the learning rates follow the resolution (``enter``)
        self.schedule = schedule
        self.reset_optimizer = bool(reset_optimizer)
        self.penalty_resolution = penalty_resolution
        self.base_lr = {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}  # tables' default
        self.penalty_settings = [(penalty, penalty.weight, penalty.target) for penalty in self.regularizers
                                 if isinstance(penalty, GradientPenalty)]  # each penalty's configured weight, target
        self.images_seen = 0  # real images shown to the critic so far (all ranks together)
        self.trained_phase: int | None = None  # the phase of the last step trained (None: no step yet)
        self.handed_out: list[Comparison] = []  # comparisons given to an evaluator, kept at the current resolution
        self.stage: Stage = schedule.stage(0)  # the stage the networks run at
        self.enter(self.stage)

    @classmethod
    def arguments(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> dict[str, Any]:
        model = cfg.model
        _, size = square_image(data_spec, "model=progan")
        schedule = GrowthSchedule.from_config(model.get("schedule") or {}, size,
                                              model.discriminator.get("mbstd_group_size", 4), current_world().size)
        lr_schedule = (cfg.optim.get("schedule") or {}).get("name", "constant")
        if lr_schedule != "constant":
            raise UserError(f"model=progan sets its learning rates per resolution (model.schedule.generator_lr, "
                            f"discriminator_lr); optim.schedule.name must be constant, got {lr_schedule!r}")
        return {**super().arguments(cfg, data_spec, device), "schedule": schedule,
                "reset_optimizer": bool(model.get("reset_optimizer", True)),
                "penalty_resolution": model.get("penalty_resolution", "final")}

    # --- the schedule ------------------------------------------------------------------------------

    def enter(self, stage: Stage) -> None:
        """Run at ``stage`` from now on: learning rates, penalty scale, optimizer reset at a phase change."""
        if self.trained_phase is not None and stage.phase != self.trained_phase and self.reset_optimizer:
            for optimizer in self.optimizers.values():
                optimizer.state.clear()  # in place: the loop and the GradScalers keep these optimizer objects
        self.stage = stage
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.schedule.learning_rate(name, stage, self.base_lr[name])
        factor = self.schedule.final_resolution // stage.resolution if self.penalty_resolution == "final" else 1
        for penalty, weight, target in self.penalty_settings:
            # The official code feeds D images upscaled to the final resolution, whose pixels each get 1/factor^2
            # of a current pixel's gradient: the norm it penalises is the current one / factor. Same penalty:
            # (weight / factor^2) * (|g| - target * factor)^2 = weight * (|g| / factor - target)^2.
            penalty.weight, penalty.target = weight / factor ** 2, target * factor
        for comparison in self.handed_out:
            self.reference_at_stage(comparison, comparison.reference)

    def train_step(self, next_batch: NextBatch) -> dict[str, torch.Tensor]:
        stage = self.schedule.stage(self.images_seen)
        self.enter(stage)
        batch_size = self.schedule.batch_size(stage)
        for _ in range(self.n_critic):
            batch = self.reals_at_stage(next_batch(batch_size))
            scalars = self.discriminator_step(batch)
            self.images_seen += batch_size
        scalars.update(self.generator_step(batch))
        self.trained_phase = stage.phase
        scalars.update({"growth/resolution": float(stage.resolution), "growth/alpha": stage.alpha,
                        "growth/kimg": self.images_seen / 1000, "growth/batch_size": float(batch_size)})
        return scalars

    def reals_at_stage(self, batch: Batch) -> Batch:
        """The data's images at the stage's resolution: box-downsampled, and during a fade blended with their
        once more downsampled-then-upsampled version by alpha (the official ``process_reals``)."""
        real = downsample(batch["real"], self.schedule.final_resolution // self.stage.resolution)
        if self.stage.alpha < 1:
            real = blend(upsample(downsample(real)), real, self.stage.alpha)
        return {**batch, "real": real}

    def checkpoint_due(self) -> bool:
        """The step just taken ended a phase (the start resolution's training, a fade, a resolution's training)."""
        return self.schedule.stage(self.images_seen).phase != self.trained_phase

    def steps_left(self) -> int:
        return self.schedule.steps_left(self.images_seen, self.n_critic)

    def extra_state(self) -> dict[str, Any]:
        return {"images_seen": self.images_seen, "trained_phase": self.trained_phase}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """The image count (hence resolution, alpha, batch size, learning rates) and the phase last trained."""
        self.images_seen = int(state.get("images_seen", 0))
        phase = state.get("trained_phase")
        self.trained_phase = None  # entering the saved stage is no phase change: no optimizer reset
        self.enter(self.schedule.stage(self.images_seen))
        self.trained_phase = None if phase is None else int(phase)

    # --- the networks at the stage -------------------------------------------------------------------

    def generate(self, noise: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.generator(noise, self.stage.resolution, self.stage.alpha)

    def discriminate(self, samples: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, None]:
        return self.discriminator(samples, self.stage.alpha), None

    # --- what it shows --------------------------------------------------------------------------------

    def preview(self, inputs: Mapping[str, torch.Tensor]) -> Preview:
        """Grids at the current resolution, clamped and upscaled (nearest) to the final size for display."""
        preview = super().preview(inputs)
        samples = preview.samples.clamp(-1, 1)
        factor = self.schedule.final_resolution // samples.shape[-1]
        preview.samples = F.interpolate(samples, scale_factor=factor, mode="nearest") if factor > 1 else samples
        return preview

    def sample(self, n: int, generator: torch.Generator, **conditions: object) -> torch.Tensor:
        """n images at the resolution training reached (the final one unless it stopped early), in [-1, 1]."""
        return super().sample(n, generator, **conditions).clamp(-1, 1)

    def sampling_note(self) -> str:
        final, stage = self.schedule.final_resolution, self.stage
        if stage.resolution == final and not stage.fading:
            return ""
        fading = f", fading in with alpha {stage.alpha:.3f}" if stage.fading else ""
        return (f"training stopped at {stage.resolution}x{stage.resolution}{fading} on its way to {final}x{final} "
                f"({self.images_seen / 1000:g} of {self.schedule.total_images / 1000:g} kimg): the samples are "
                f"{stage.resolution}x{stage.resolution}")

    def comparisons(self, source: DataSource, held_out: tuple[str, Dataset]) -> list[Comparison]:
        """The samples against the training data at the resolution the networks are at; kept at it as they grow."""
        comparison = Comparison("", source.dataset, "train")
        self.reference_at_stage(comparison, source.dataset)
        self.handed_out.append(comparison)
        return [comparison]

    def reference_at_stage(self, comparison: Comparison, dataset: Dataset) -> None:
        """Point ``comparison`` at ``dataset`` (or the data it downsamples) at the current resolution."""
        full = dataset.dataset if isinstance(dataset, Downsampled) else dataset
        factor = self.schedule.final_resolution // self.stage.resolution
        comparison.reference = Downsampled(full, factor) if factor > 1 else full
        resolution = self.stage.resolution
        comparison.reference_split = "train" if factor == 1 else f"train at {resolution}x{resolution}"
