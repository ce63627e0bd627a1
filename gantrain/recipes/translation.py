"""What every recipe that maps images to images shares: directions, test-time behaviour, previews,
comparisons for the metrics, and the adversarial terms of its discriminators.

A translation recipe names its directions (pix2pix: the one it was trained for; CycleGAN: AtoB and
BtoA), each a generator network from one batch key to another. ``translate(images, direction)`` is
all the translate task (gantrain/tasks/translate.py) needs; reading files, padding, tiling
(gantrain/engine/tiling.py) and writing PNGs live there, once, for every such family.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

from gantrain.data.source import DataSource, DataSpec
from gantrain.engine.export_graph import ExportGraph, TranslateGraph
from gantrain.errors import UserError, warn
from gantrain.options import as_float
from gantrain.losses.base import AdversarialLoss
from gantrain.metrics.base import Comparison, Outputs
from gantrain.recipes.base import Capabilities, Preview, Recipe
from gantrain.recipes.adversarial import combination_problems, discriminator_objective
from gantrain.regularizers.base import Regularizer
from gantrain.registry import unknown_choice

TEST_MODES = ("train", "eval")
TEST_SEED = 0  # test-time dropout draws from its own generator with this seed: repeatable outputs
CHUNK = 8  # images translated at a time for previews and metrics
STANDALONE_SIZE = 256  # image size a model built for a bare weights file assumes (the published models' crops)


#: what a discriminator judges: images, or a pair of tensors it sees side by side in its channels (pix2pix)
Images = torch.Tensor | tuple[torch.Tensor, ...]


def images_of(images: Images) -> tuple[torch.Tensor, ...]:
    return tuple(images) if isinstance(images, (tuple, list)) else (images,)


@dataclass(frozen=True)
class Direction:
    """One way a recipe translates: which generator, from which batch key to which."""

    name: str  # AtoB or BtoA
    network: str  # the recipe attribute (and networks key) holding the generator
    input_key: str  # batch key of its inputs
    output_key: str  # batch key of the real images of its output side
    paired: bool  # whether the output side holds each input's own target (pix2pix)


@dataclass(frozen=True)
class TranslationInfo:
    """What the translate task must know to feed a generator images of any size."""

    in_channels: int
    out_channels: int
    multiple: int  # input height and width must be multiples of this (pad, then crop back)
    scale: int = 1  # outputs are this many times larger than inputs (super-resolution)


@contextmanager
def at_test_time(net: nn.Module, mode: str) -> Iterator[None]:
    """Run ``net`` as at test time: ``eval`` (running statistics, no dropout) or ``train``.

    ``train`` is what the pix2pix paper does: dropout stays on and BatchNorm normalises with the
    statistics of the test batch. The running statistics are put back afterwards, and the dropout
    draws come from a generator of their own, so neither previews nor metrics change the training.
    """
    device = next(net.parameters()).device
    kept = [buffer.clone() for buffer in net.buffers()] if mode == "train" else []
    was_training = net.training
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(TEST_SEED)
        net.train(mode == "train")
        try:
            yield
        finally:
            for buffer, value in zip(net.buffers(), kept):
                buffer.copy_(value)
            net.train(was_training)


def checked_test_mode(mode: str) -> str:
    if mode not in TEST_MODES:
        raise UserError(unknown_choice("model.test_mode", mode, list(TEST_MODES)))
    return mode


def require_keys(spec: DataSpec, keys: Sequence[str], model: str, data_hint: str) -> None:
    """A model trained on the wrong kind of data fails before training, naming the data it needs."""
    held = spec.batch_keys
    if not all(key in held for key in keys):
        raise UserError(f"model={model} needs {data_hint} (batches of {', '.join(keys)}); this data hands out "
                        f"{', '.join(held)}")


def side_by_side(columns: Sequence[torch.Tensor]) -> Preview:
    """Rows of (input | output | ...) images: column j of row i is ``columns[j][i]`` (greyscale shown as RGB)."""
    channels = max(column.shape[1] for column in columns)
    shown = [column.expand(-1, channels, -1, -1) if column.shape[1] != channels else column for column in columns]
    return Preview(torch.stack(shown, dim=1).flatten(0, 1), nrow=len(columns))


class TranslationRecipe(Recipe):
    """Base of pix2pix, CycleGAN and super-resolution: translate, previews, comparisons and discriminator terms."""

    default_metrics = ("fid", "kid")

    sides: tuple[str, str] = ("source", "target")  # batch keys of the input and the output side

    @classmethod
    def standalone_spec(cls, cfg: DictConfig, implied: Mapping[str, Any]) -> DataSpec:
        """Square images of the data config's crop size (else STANDALONE_SIZE) with the channels and scale the
        weights file implies: what sizes a network (ResNet blocks, U-Net depth) when no data is read."""
        data = cfg.get("data") or {}
        size = int(data.get("crop_size") or data.get("hr_size") or STANDALONE_SIZE)
        scale = int(implied.get("scale") or data.get("scale") or 1)
        channels_in = int(implied.get("in_channels") or data.get("channels") or 3)
        channels_out = int(implied.get("out_channels") or channels_in)
        keys = {cls.sides[0]: (channels_in, max(size // scale, 1), max(size // scale, 1)),
                cls.sides[1]: (channels_out, size, size)}
        return DataSpec(shape=keys[cls.sides[1]], keys=keys, scale=scale, epoch_size=1)  # no training: any length

    def __init__(self, *, networks: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
                 schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler], spec: DataSpec,
                 directions: Sequence[Direction], loss: AdversarialLoss | None = None,
                 regularizers: Sequence[Regularizer] = (), test_mode: str = "eval", discriminator_weight: float = 1.0,
                 averages: Mapping[str, float | None] | None = None) -> None:
        """What every image-to-image recipe keeps: the data it maps (``spec``), its ``directions``, the
        adversarial ``loss`` and ``regularizers`` of its discriminators and the weight of their loss
        (model.discriminator_weight), and how its generators run at test time (model.test_mode)."""
        super().__init__(networks=networks, optimizers=optimizers, schedulers=schedulers, averages=averages)
        self.spec, self.loss, self.regularizers = spec, loss, list(regularizers)
        self.directions = {direction.name: direction for direction in directions}
        self.test_mode = checked_test_mode(test_mode)
        self.discriminator_weight = as_float("model.discriminator_weight", discriminator_weight, minimum=0,
                                             strictly_above=True)

    def direction(self, name: str | None = None) -> Direction:
        """The named direction, or the model's first when None."""
        if name is None:
            return next(iter(self.directions.values()))
        if name not in self.directions:
            raise UserError(f"this {type(self).__name__.removesuffix('Recipe')} model translates "
                            f"{' and '.join(self.directions)}, not {name}; choose direction="
                            f"{' or '.join(self.directions)}")
        return self.directions[name]

    def test_network(self, direction: str | None = None) -> str:
        return self.direction(direction).network

    def test_directions(self) -> list[str | None]:
        return list(self.directions)

    def export_graph(self, direction: str | None = None) -> ExportGraph:
        """Images (N, C, H, W) in [-1, 1], any H and W -> outputs, padded and cropped inside the graph, in eval mode."""
        chosen = self.direction(direction)
        info = self.translation_info(chosen.name)
        if self.test_mode == "train":
            warn("model.test_mode=train (dropout and batch statistics at test time) is not exported: the file runs "
                 "the generator in eval mode (running statistics, no dropout)")
        graph = TranslateGraph(getattr(self, chosen.network), info.multiple, info.scale).eval()
        side = info.multiple * max(1, -(-16 // info.multiple)) + (info.multiple > 1)  # padded: a new tensor to trace
        axes = {0: "batch", 2: "height", 3: "width"}
        return ExportGraph(graph, (torch.rand(1, info.in_channels, side, side) * 2 - 1,), ["images"],
                           {"images": axes, "output": axes},
                           {"kind": "image_to_image", "inputs": "images", "direction": chosen.name,
                            "in_channels": info.in_channels, "out_channels": info.out_channels, "scale": info.scale,
                            "multiple": info.multiple, "value_range": "[-1, 1]",
                            "padding": f"inside the graph: reflect to a multiple of {info.multiple}, cropped back"})

    def translation_info(self, name: str | None = None) -> TranslationInfo:
        direction = self.direction(name)
        keys = self.spec.batch_keys
        network = getattr(self, direction.network)
        return TranslationInfo(int(keys[direction.input_key][0]), int(keys[direction.output_key][0]),
                               int(getattr(network, "multiple", 1)), int(self.spec.scale))

    @torch.no_grad()
    def translate(self, images: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        """Outputs for ``images`` (in [-1, 1], on the model's device) as at test time (``model.test_mode``).

        In ``train`` mode BatchNorm normalises with the statistics of what it is given, so images go
        through one at a time, as in the paper: an output never depends on which images share its batch.
        """
        network = getattr(self, self.direction(direction).network)
        with at_test_time(network, self.test_mode):
            if self.test_mode == "train":
                return torch.cat([network(image) for image in images.split(1)])
            return network(images)

    def translate_on_cpu(self, images: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        """``translate`` for CPU images, a few at a time on the model's device."""
        device = next(getattr(self, self.direction(direction).network).parameters()).device
        return torch.cat([self.translate(chunk.to(device), direction).float().cpu() for chunk in images.split(CHUNK)])

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(directions=tuple(self.directions), scale=int(self.spec.scale))

    def preview_inputs(self, reference: Mapping[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {key: value.cpu() for key, value in reference.items()}

    # --- evaluation ----------------------------------------------------------------------------------

    def comparisons(self, source: DataSource, held_out: tuple[str, Dataset]) -> list[Comparison]:
        """Per direction: its outputs for the split's inputs against the split's output-side images."""
        split, data = held_out
        named = len(self.directions) > 1
        return [Comparison(direction.name if named else "", data.domain(direction.output_key),
                           f"{split}/{direction.output_key}",
                           self._outputs(direction, data.domain(direction.input_key),
                                         data.domain(direction.output_key) if direction.paired else None),
                           has_targets=direction.paired)
                for direction in self.directions.values()]

    def _outputs(self, direction: Direction, inputs: Any, targets: Any | None) -> Outputs:
        def produce(limit: int, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, Any]]:
            for indices in torch.arange(min(limit, len(inputs))).split(batch_size):
                outputs = self.translate_on_cpu(inputs.get_batch(indices)["real"].cpu(), direction.name)
                yield outputs, targets.get_batch(indices)["real"].cpu() if targets is not None else None

        return produce

    # --- the adversarial terms both families use ----------------------------------------------------

    def discriminator_terms(self, name: str, discriminator: nn.Module, real: Images,
                            fake: Images) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """model.discriminator_weight x the adversarial loss on real and (detached) generated inputs, plus the
        regularisers; scalars under ``loss/NAME`` and ``NAME/``.

        ``real``/``fake`` may be a pair of tensors (pix2pix's input and output): augmented with one transform
        per pair and concatenated. The regularisers see the augmented images the discriminator scored.
        """
        real = self.augment(*images_of(real), real=True)
        fake = self.augment(*(image.detach() for image in images_of(fake)))
        real_scores, fake_scores = discriminator(real), discriminator(fake)
        self.augmentation.observe(real_scores, self.loss.decision_boundary(fake_scores))
        return discriminator_objective(self.loss, self.regularizers, discriminator, real, fake, real_scores,
                                       fake_scores, weight=self.discriminator_weight, name=name, prefix=f"{name}/")

    def generator_adversarial(self, discriminator: nn.Module, fake: Images, real: Images) -> torch.Tensor:
        """The generator's adversarial loss against a (frozen) discriminator; relativistic losses also see D(real)."""
        real_scores = None
        if self.loss.needs_real_scores_for_generator:
            with torch.no_grad():
                real_scores = discriminator(self.augment(*images_of(real)))
        return self.loss.generator_loss(discriminator(self.augment(*images_of(fake))), real_scores)

    def after_discriminator_step(self, *discriminators: nn.Module) -> None:
        for regularizer in self.regularizers:
            for discriminator in discriminators:
                regularizer.after_step(discriminator)

    def warn_about_combinations(self, discriminator: nn.Module, log: Any) -> None:
        for problem in combination_problems(self.loss, self.regularizers, discriminator):
            log.warning(problem)
