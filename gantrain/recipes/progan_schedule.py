"""ProGAN's growth schedule (Karras et al. 2018), counted in real images shown, and the checks of its options.

``GrowthSchedule.stage`` is one pure function of the image count, as the official code's
``TrainingSchedule`` (tkarras/progressive_growing_of_gans, train.py): the networks train at the start
resolution for ``training_kimg`` thousand images, then each next resolution fades in over
``transition_kimg`` (alpha rising linearly from 0 to 1) and stabilises for ``training_kimg``, until the
data's size; training goes on there until ``total_kimg``. The per-resolution batch sizes and learning
rates are tables of the schedule. The recipe that runs it is gantrain/recipes/progan.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gantrain.errors import UserError
from gantrain.nets.progan import final_level, resolution_of
from gantrain.options import positive_int, positive_number


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
        rates = {network: {r: positive_number(v, f"model.schedule.{network}_lr.{r}") for r, v in
                           resolution_table(node.get(f"{network}_lr"), f"model.schedule.{network}_lr").items()}
                 for network in ("generator", "discriminator")}
        return cls(start, final, training, transition, total_images, batch_sizes, rates)


def kimg_images(value: Any, option: str) -> int:
    """A positive number of thousands of images, as a whole number of images (at least 1)."""
    return max(1, round(positive_number(value, option) * 1000))


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
    positive_int(size, option)
    if size % world_size:
        raise UserError(f"{option}={size} (the global batch) is not divisible by world_size={world_size}")
    local = size // world_size
    if isinstance(group, int) and group > 1 and local > group and local % group:  # (the network checks the group)
        raise UserError(f"{option}={size} is not divisible by the minibatch-stddev group of {group} "
                        f"(model.discriminator.mbstd_group_size){' per process' if world_size > 1 else ''}; "
                        f"use a multiple of {group}")
