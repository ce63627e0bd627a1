"""Progressive growing (Karras et al. 2018): WGAN-GP training whose networks grow from 4x4 to the data's size.

The whole schedule is one pure function of the real images shown so far (``GrowthSchedule.stage``), as
in the official code's ``TrainingSchedule`` (tkarras/progressive_growing_of_gans, train.py): the
networks train at the start resolution for ``training_kimg`` thousand images, then each next resolution
fades in over ``transition_kimg`` (alpha rising linearly from 0 to 1) and stabilises for
``training_kimg``, until the data's size; training goes on there until ``total_kimg``. Saving the image
count (``extra_state``) is therefore all a checkpoint needs for the resolution, alpha, batch size and
learning rates to resume exactly, mid fade-in included.

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

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import Dataset, default_collate

from gantrain.data.source import DataSource, DataSpec
from gantrain.engine.distributed import current_world
from gantrain.errors import UserError
from gantrain.metrics.base import Comparison
from gantrain.nets.progan import blend, downsample, final_level, resolution_of, square_image, upsample
from gantrain.recipes.base import Batch, NextBatch, Preview
from gantrain.recipes.gan import GANRecipe
from gantrain.registry import RECIPES, unknown_choice
from gantrain.regularizers.gradient_penalty import GradientPenalty

#: where gradient penalties measure the critic's input gradient (model.penalty_resolution)
PENALTY_RESOLUTIONS = ("final", "current")


@dataclass(frozen=True)
class Stage:
    """Where the growth stands: which resolution runs, how far its block has faded in, and which phase it is."""

    level: int  # 0 is 4x4, 1 is 8x8, ...
    alpha: float  # the newest block's weight: rises from 0 to 1 during a fade, 1 otherwise
    phase: int  # 0: training at the start resolution, 1: fading in the next one, 2: training it, ...

    @property
    def resolution(self) -> int:
        return resolution_of(self.level)

    @property
    def fading(self) -> bool:
        return self.phase % 2 == 1


@dataclass(frozen=True)
class GrowthSchedule:
    """The growth schedule, counted in real images shown; ``stage`` is its one pure function of that count."""

    start_level: int
    final_level: int
    training_images: int  # images shown at each resolution once it has faded in
    transition_images: int  # images over which each new resolution fades in
    total_images: int  # images shown in the whole run
    batch_sizes: Mapping[int, int]  # resolution -> global batch size
    learning_rates: Mapping[str, Mapping[int, float]] = field(default_factory=dict)  # network -> resolution -> lr

    @property
    def final_resolution(self) -> int:
        return resolution_of(self.final_level)

    @property
    def growth_images(self) -> int:
        """Images until the final resolution has faded in and trained for training_kimg."""
        return (self.final_level - self.start_level) * (self.training_images + self.transition_images) \
            + self.training_images

    def stage(self, images: int) -> Stage:
        """The stage after ``images`` real images (the official TrainingSchedule, in levels instead of lod)."""
        growths = self.final_level - self.start_level
        done, within = divmod(int(images), self.training_images + self.transition_images)
        if done >= growths:
            return Stage(self.final_level, 1.0, 2 * growths)
        if within <= self.training_images:
            return Stage(self.start_level + done, 1.0, 2 * done)
        return Stage(self.start_level + done + 1, (within - self.training_images) / self.transition_images,
                     2 * done + 1)

    def batch_size(self, stage: Stage) -> int:
        return self.batch_sizes[stage.resolution]

    def learning_rate(self, network: str, stage: Stage, default: float) -> float:
        return self.learning_rates.get(network, {}).get(stage.resolution, default)

    def steps_left(self, images: int, critic_steps: int = 1) -> int:
        """Training steps from ``images`` until ``total_images``, each showing critic_steps batches of its stage's size.

        The batch size only changes with the level, and the level only where a fade starts, so the steps are
        counted a level at a time.
        """
        cycle = self.training_images + self.transition_images
        fade_starts = [k * cycle + self.training_images + 1 for k in range(self.final_level - self.start_level)]
        steps = 0
        while images < self.total_images:
            per_step = critic_steps * self.batch_size(self.stage(images))
            limit = min([self.total_images, *(start for start in fade_starts if start > images)])
            count = -(-(limit - images) // per_step)  # steps that start below the limit: all at this level
            steps += count
            images += count * per_step
        return steps

    @classmethod
    def from_config(cls, node: Mapping[str, Any], image_size: int, mbstd_group_size: int,
                    world_size: int = 1) -> "GrowthSchedule":
        """``model.schedule``, checked: one-line errors before anything is built or trained."""
        final = final_level(image_size, "model=progan")
        start_resolution = node.get("start_resolution", 4)
        if isinstance(start_resolution, bool) or not isinstance(start_resolution, int) \
                or start_resolution not in [resolution_of(level) for level in range(final + 1)]:
            if isinstance(start_resolution, int) and start_resolution > image_size:
                raise UserError(f"model.schedule.start_resolution={start_resolution} is above the data's "
                                f"{image_size}x{image_size} (data.image_size); it must lie in 4..{image_size}")
            raise UserError(f"model.schedule.start_resolution must be a power of two in 4..{image_size}, "
                            f"got {start_resolution!r}")
        start = int(math.log2(start_resolution)) - 2
        training, transition = (kimg_images(node.get(key), f"model.schedule.{key}")
                                for key in ("training_kimg", "transition_kimg"))
        schedule = cls(start, final, training, transition, 0, {}, {})
        total = node.get("total_kimg")
        total_images = schedule.growth_images if total is None else kimg_images(total, "model.schedule.total_kimg")
        needed = [resolution_of(level) for level in range(start, final + 1)]
        batch_sizes = resolution_table(node.get("batch_size"), "model.schedule.batch_size")
        for resolution in needed:
            if resolution not in batch_sizes:
                raise UserError(f"model.schedule.batch_size has no entry for {resolution}x{resolution}, which this "
                                f"run trains at ({', '.join(map(str, needed))}); add model.schedule.batch_size."
                                f"{resolution}=N")
            check_batch_size(batch_sizes[resolution], resolution, mbstd_group_size, world_size)
        rates = {network: {r: positive(v, f"model.schedule.{network}_lr.{r}") for r, v in
                           resolution_table(node.get(f"{network}_lr"), f"model.schedule.{network}_lr").items()}
                 for network in ("generator", "discriminator")}
        return cls(start, final, training, transition, total_images, batch_sizes, rates)


def kimg_images(value: Any, option: str) -> int:
    """A positive number of thousands of images, as a whole number of images (at least 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"{option} must be a positive number of thousands of images, got {value!r}")
    return max(1, round(value * 1000))


def positive(value: Any, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"{option} must be a positive number, got {value!r}")
    return float(value)


def resolution_table(node: Any, option: str) -> dict[int, Any]:
    """A {resolution: value} table from the config (YAML keys are strings there, so the command line can set one)."""
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise UserError(f"{option} must map resolutions to values, e.g. {{\"4\": 128, \"8\": 128}}, got {node!r}")
    table = {}
    for key, value in node.items():
        try:
            table[int(str(key))] = value
        except ValueError:
            raise UserError(f"{option} has the key {key!r}; its keys are resolutions such as 4, 8, 16") from None
    return table


def check_batch_size(size: Any, resolution: int, group: int, world_size: int) -> None:
    """A global batch every rank can take its slice of, and whose slices split into minibatch-stddev groups."""
    option = f"model.schedule.batch_size.{resolution}"
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UserError(f"{option} must be a positive integer, got {size!r}")
    if size % world_size:
        raise UserError(f"{option}={size} (the global batch) is not divisible by world_size={world_size}")
    local = size // world_size
    if isinstance(group, int) and group > 1 and local > group and local % group:  # (the network checks the group)
        raise UserError(f"{option}={size} is not divisible by the minibatch-stddev group of {group} "
                        f"(model.discriminator.mbstd_group_size){f' per process' if world_size > 1 else ''}; "
                        f"use a multiple of {group}")


class Downsampled(Dataset):
    """Another dataset's images box-downsampled by ``factor``: the real data at a growing network's resolution."""

    def __init__(self, dataset: Dataset, factor: int) -> None:
        self.dataset = dataset
        self.factor = factor

    def __len__(self) -> int:
        return len(self.dataset)

    def get_batch(self, indices: torch.Tensor) -> Batch:
        if hasattr(self.dataset, "get_batch"):
            batch = self.dataset.get_batch(indices)
        else:
            batch = default_collate([self.dataset[int(i)] for i in indices])
        return {**batch, "real": downsample(batch["real"], self.factor)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.get_batch(torch.tensor([index])).items()}


@RECIPES.register("progan")
class ProGANRecipe(GANRecipe):
    """GANRecipe's critic and generator steps, run at the resolution and alpha of the growth schedule."""

    ends_by_itself = True  # the schedule's total_kimg ends the run
    # set by from_config (GANRecipe.from_config constructs with its own arguments)
    schedule: GrowthSchedule
    stage: Stage  # the stage the networks run at
    images_seen: int  # real images shown to the critic so far (all ranks together)
    trained_phase: int | None  # the phase of the last step trained (None: no step yet)
    base_lr: dict[str, float]  # each optimizer's learning rate where the tables give none
    penalty_settings: list[tuple[GradientPenalty, float, float]]  # each gradient penalty's configured weight, target
    handed_out: list[Comparison]  # comparisons given to an evaluator, kept at the current resolution
    reset_optimizer: bool = True
    penalty_resolution: str = "final"

    @classmethod
    def from_config(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> "ProGANRecipe":
        model = cfg.model
        _, size = square_image(data_spec, "model=progan")
        schedule = GrowthSchedule.from_config(model.get("schedule") or {}, size,
                                              model.discriminator.get("mbstd_group_size", 4), current_world().size)
        penalty_resolution = model.get("penalty_resolution", "final")
        if penalty_resolution not in PENALTY_RESOLUTIONS:
            raise UserError(unknown_choice("model.penalty_resolution", penalty_resolution, list(PENALTY_RESOLUTIONS)))
        lr_schedule = (cfg.optim.get("schedule") or {}).get("name", "constant")
        if lr_schedule != "constant":
            raise UserError(f"model=progan sets its learning rates per resolution (model.schedule.generator_lr, "
                            f"discriminator_lr); optim.schedule.name must be constant, got {lr_schedule!r}")
        recipe = super().from_config(cfg, data_spec, device)
        recipe.schedulers = {}  # the learning rates follow the resolution (set before each step)
        recipe.schedule = schedule
        recipe.reset_optimizer = bool(model.get("reset_optimizer", True))
        recipe.penalty_resolution = penalty_resolution
        recipe.base_lr = {name: opt.param_groups[0]["lr"] for name, opt in recipe.optimizers.items()}
        recipe.penalty_settings = [(penalty, penalty.weight, penalty.target) for penalty in recipe.regularizers
                                   if isinstance(penalty, GradientPenalty)]
        recipe.images_seen = 0
        recipe.trained_phase = None
        recipe.handed_out = []
        recipe.enter(schedule.stage(0))
        return recipe

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
