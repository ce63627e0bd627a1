"""The contract between a training recipe and the shared loop.

A recipe owns its networks, optimizers and schedulers and says how one training
step updates them. The loop owns everything else (data position, logging,
grids, checkpoints, budget, signals) and never learns which GAN it trains.

What a new family implements:
  ``from_config``     build networks/optimizers from the composed config
  ``train_step``      one step; pulls as many batches as it needs; returns scalars to log
  ``preview_inputs``  the fixed inputs its grids are made from (noise, a fixed input batch...)
  ``preview``         what to show for those inputs (images or points)
  ``sample``          n outputs for ``task=sample``
and, when it has state beyond networks/optimizers/schedulers (an image pool, a
growth stage), ``extra_state``/``load_extra_state``. Every optimizer update goes
through ``apply_update``, so a NaN/Inf loss or gradient is caught the same way in
every family (``trainer.on_nonfinite``), and a network given a weight average
(``average_weights``, the ``ema`` config) has it updated after each of its steps.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

from gantrain.augment.base import Augmentation
from gantrain.data.source import DataSource, DataSpec
from gantrain.engine.acceleration import Precision
from gantrain.engine.export_graph import ExportGraph
from gantrain.engine.distributed import current_world
from gantrain.errors import UserError
from gantrain.metrics.base import Comparison
from gantrain.recipes.ema import WeightAverage, average_name
from gantrain.losses.base import AdversarialLoss
from gantrain.optim.optimizers import build_schedule
from gantrain.optim.run_length import run_length
from gantrain.regularizers.base import Regularizer
from gantrain.registry import LOSSES, NETWORKS, REGULARIZERS

Batch = dict[str, torch.Tensor]
#: The loop's batch source: ``next_batch()`` gives a trainer.batch_size batch, ``next_batch(n)`` one of n
#: samples (global, as trainer.batch_size is), for recipes whose batch size changes during a run.
NextBatch = Callable[..., Batch]

#: What ``apply_update`` does with a non-finite loss or gradient: raise ``NonFiniteUpdate``, or skip that update.
NONFINITE_POLICIES = ("stop", "skip")


class NonFiniteUpdate(Exception):
    """A loss term or gradient of ``network`` was NaN or infinite; ``culprit`` names which (e.g. ``loss/d``)."""

    def __init__(self, network: str, culprit: str) -> None:
        super().__init__(f"non-finite {culprit} ({network})")
        self.network = network
        self.culprit = culprit


@dataclass
class Preview:
    """What the loop writes as a grid (images) or a scatter plot (points)."""

    samples: torch.Tensor  # (N, C, H, W) in [-1, 1], or (N, D) points
    nrow: int = 8  # images per grid row
    reference: torch.Tensor | None = None  # real points drawn beside generated ones in a scatter
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a trained recipe can do at test time: the tasks ask this, never the recipe's type or attributes."""

    generates: bool = False  # draws samples from noise: ``sample(n, generator, label=...)`` (task=sample)
    classes: int | None = None  # ``sample`` takes a class (``label``; class= on the command line) of this many
    directions: tuple[str, ...] = ()  # ``translate(images, direction)`` in these directions (task=translate)
    scale: int = 1  # translated images come out this many times larger (super-resolution)


class Recipe:
    """Base class: keeps the parts, steps schedulers, saves and restores state."""

    def __init__(self, *, networks: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
                 schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler],
                 averages: Mapping[str, float | None] | None = None) -> None:
        """Keyword-only, so a subclass adds its own options (``def __init__(self, *, mine, **options)``).

        ``averages``: network name -> EMA decay of its weights (None: no average), see ``average_weights``.
        """
        self.networks = dict(networks)
        self.optimizers = dict(optimizers)
        self.schedulers = dict(schedulers)
        self.nonfinite_policy = "stop"  # set by the loop from trainer.on_nonfinite
        self.skipped_updates = {name: 0 for name in self.optimizers}  # per optimizer, under the "skip" policy
        self.last_nonfinite: NonFiniteUpdate | None = None  # the most recent skipped update, for the loop to report
        self.averages: dict[str, WeightAverage] = {}  # network name -> its EMA (stored as network NAME_ema)
        self.precision = Precision()  # set by the loop from trainer.precision
        for network, decay in (averages or {}).items():
            self.average_weights(network, decay)
        self.augmentation = Augmentation()  # the ``augment`` config, set by the loop (none: images pass unchanged)

    def augment(self, *images: torch.Tensor, real: bool = False) -> torch.Tensor:
        """Images as a discriminator sees them: every image it scores, real (``real=True``) and generated, goes
        through here, so ``augment=diffaugment|ada`` reaches every family; differentiable, so G's gradient
        passes. Several tensors (pix2pix's input and output) get one transform and come back concatenated
        along the channels. The recipe passes D's scores on the augmented reals to
        ``self.augmentation.observe`` with its loss's decision boundary (ADA's overfitting signal)."""
        return self.augmentation(*images, real=real)

    def average_weights(self, network: str, decay: float | None) -> None:
        """Keep an EMA of ``network``'s weights (None: don't); grids, samples and metrics then use it."""
        if decay is None:
            return
        self.averages[network] = WeightAverage(self.networks[network], decay)
        self.networks[average_name(network)] = self.averages[network].average

    @contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within this block, every attribute that holds an averaged network holds its average instead.

        The loop wraps previews, sampling and metrics in it, so a family's own ``preview``/``sample``
        (which use ``self.generator`` and the like) draw from the averaged weights without knowing of them.
        """
        swapped = []
        for name, average in self.averages.items():
            for attribute, value in list(vars(self).items()):
                if value is self.networks[name]:
                    setattr(self, attribute, average.average)
                    swapped.append((attribute, value))
        try:
            yield
        finally:
            for attribute, value in swapped:
                setattr(self, attribute, value)

    @classmethod
    def from_config(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> "Recipe":
        """The recipe the composed config describes, built in one step from ``arguments``."""
        return cls(**cls.arguments(cfg, data_spec, device))

    @classmethod
    def arguments(cls, cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> dict[str, Any]:
        """The constructor's keyword arguments, read and built from the config (networks, optimizers, options).

        A subclass adds its own: ``{**super().arguments(cfg, data_spec, device), "mine": cfg.model.mine}``.
        """
        raise NotImplementedError  # abstract: each recipe reads the config nodes it needs

    def train_step(self, next_batch: NextBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # abstract

    def preview_inputs(self, reference: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # abstract

    def preview(self, inputs: Mapping[str, torch.Tensor]) -> Preview:
        raise NotImplementedError  # abstract

    def sample(self, n: int, generator: torch.Generator, **conditions: Any) -> torch.Tensor:
        """n outputs on the CPU; ``conditions`` come from the command line (e.g. ``label`` from ``class=3``)."""
        raise NotImplementedError  # abstract

    @property
    def capabilities(self) -> Capabilities:
        """What this recipe can do once trained (generate, take a class, translate, upscale); nothing by default."""
        return Capabilities()

    #: metrics task=eval reports when none are named (metrics.names); noise-to-image models have no default
    default_metrics: tuple[str, ...] = ()

    def comparisons(self, source: DataSource, held_out: tuple[str, Dataset]) -> list[Comparison]:
        """What evaluation measures: by default the samples of ``sample`` against the training data.

        ``held_out`` is the (name, samples) split to score on (val during training, test for task=eval);
        families that take images in compare their outputs for its inputs with its images.
        """
        del held_out  # a generator's samples are compared with the data it learned (the usual FID reference)
        return [Comparison("", source.dataset, "train")]

    def test_network(self, direction: str | None = None) -> str:
        """The network that stands for the model at test time (a bare weights file for a task goes into it; export
        writes it): the generator. Models with several (CycleGAN) choose by ``direction``."""
        if direction is not None:
            raise UserError(f"direction={direction} applies to models with two generators (model=cyclegan); this "
                            "model has one generator: drop direction=")
        return "generator"

    def test_directions(self) -> list[str | None]:
        """The ``direction=`` values ``test_network`` takes (None: the model's only one)."""
        return [None]

    def export_graph(self, direction: str | None = None) -> ExportGraph:
        """What ``task=export`` writes: the test-time network with its conventions (gantrain/engine/export_graph.py)."""
        raise UserError(f"{type(self).__name__.removesuffix('Recipe')} models cannot be exported yet")

    @classmethod
    def standalone_spec(cls, cfg: DictConfig, implied: Mapping[str, Any]) -> DataSpec:
        """The data a model built around a bare weights file assumes (``task=sample model=dcgan checkpoint=G.pth``):
        noise-to-image models read it from the data config; ``implied`` holds what the file fixes (channels)."""
        del implied
        from gantrain.data.build import build_data

        return build_data(cfg.data).spec

    @classmethod
    def standalone_config(cls, cfg: DictConfig) -> DictConfig:
        """The config a model built only to run a bare weights file is made from (training-only parts may go)."""
        return cfg

    def start(self) -> None:
        """Called by the loop once before the first step of a new run (never on resume): a recipe that starts
        from pretrained weights (``model.generator.init``) loads them here, so resuming and using a trained
        model never need the file they came from."""

    def checkpoint_due(self) -> bool:
        """Whether the step just taken ended a stage worth its own checkpoint (a growth phase, a training stage).

        Asked by the loop after every step, besides trainer.checkpoint_every; a periodic step_*.pt is written.
        """
        return False

    #: True for a recipe whose own schedule ends the run (``steps_left``): trainer.max_steps, max_epochs and
    #: max_time may then all be null
    ends_by_itself: bool = False

    def steps_left(self) -> int | None:
        """Training steps until the recipe's own schedule is done (e.g. a growth schedule counted in images).

        Asked once when the loop starts (or resumes); the run ends there unless the trainer's budget ends it
        sooner. None: the recipe has no end of its own.
        """
        return None

    @property
    def batches_per_step(self) -> int:
        """Batches one ``train_step`` draws with ``next_batch()`` (a critic trained n_critic times per generator
        step draws n_critic): the loop and the learning-rate schedules count an epoch's steps with it."""
        return 1

    def sampling_note(self) -> str:
        """What ``task=sample`` should say about the samples besides their count (e.g. the resolution a growing
        network had reached when its training stopped); empty for nothing."""
        return ""

    def end_step(self) -> None:
        """Called by the loop after every training step.

        Every schedule counts training steps, also while its optimizer waits for its stage (a GAN stage after
        a pretraining one), which torch would otherwise warn about as a misuse.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
            for scheduler in self.schedulers.values():
                scheduler.step()
        self.augmentation.end_step()

    def learning_rates(self) -> dict[str, float]:
        return {f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        del state  # nothing beyond networks, optimizers and schedulers by default

    def state_dict(self) -> dict[str, Any]:
        return {
            "networks": {name: net.state_dict() for name, net in self.networks.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: sched.state_dict() for name, sched in self.schedulers.items()},
            "extra": self.extra_state(),
            "averages": {name: average.updates for name, average in self.averages.items()},
            "grad_scalers": self.precision.state_dict(),
            "augment": self.augmentation.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any], weights_only: bool = False) -> None:
        """Restore everything, or only the networks (``weights_only``, for sampling).

        Extra state loads first, so a recipe can reshape its networks (a growth stage) before weights load.
        """
        self.load_extra_state(state.get("extra", {}))
        averaged = {average_name(name): name for name in self.averages}
        for name, net in self.networks.items():
            if name in averaged and name not in state["networks"]:  # the average was turned on after this checkpoint
                self.averages[averaged[name]].reset()  # (after the live weights loaded: averages come last)
                continue
            if name not in state["networks"]:
                raise UserError(f"the checkpoint has no network '{name}' (it has: {', '.join(state['networks'])})")
            try:
                net.load_state_dict(state["networks"][name])
            except RuntimeError as error:
                first = str(error).strip().splitlines()
                detail = first[1].strip() if len(first) > 1 else first[0]
                raise UserError(f"the checkpoint's {name} does not match this architecture: {detail}") from error
        for name, updates in state.get("averages", {}).items():
            if name in self.averages and average_name(name) in state["networks"]:
                self.averages[name].updates = int(updates)
        if weights_only:
            return
        self.precision.load_state_dict(state.get("grad_scalers", {}))
        self.augmentation.load_state_dict(state.get("augment", {}))
        for kind, parts in (("optimizers", self.optimizers), ("schedulers", self.schedulers)):
            for name, part in parts.items():
                part.load_state_dict(state[kind][name])

    def apply_update(self, network: str, total: torch.Tensor, terms: Mapping[str, torch.Tensor],
                     average: str | None = None) -> bool:
        """Back-propagate ``total`` and step ``network``'s optimizer, unless the loss or a gradient is not finite.

        The backward pass and the step run outside autocast, through ``self.precision`` (float16: scaled
        gradients, unscaled before the check). Under data parallelism the gradients (and the loss, so
        every rank makes the same decision) are averaged over the ranks first.
        One device sync per update: the loss and every gradient's largest magnitude are checked together
        (the max-norm cannot overflow, so only a real NaN/Inf trips it). Only after a failure are ``terms``
        (the named parts of ``total``) and the parameters looked at one by one, to name the culprit.
        Under the "stop" policy that raises ``NonFiniteUpdate`` before the step, so the weights stay as
        they were; under "skip" the gradients are dropped, the update is counted, and False is returned.
        A float16 overflow of the gradients alone is not a failure: the GradScaler skips that step and
        lowers its scale. ``network`` names the optimizer; ``average`` the network whose weight average the
        step updates, when another optimizer than the network's own trains it (a pretraining stage's).
        """
        optimizer = self.optimizers[network]
        optimizer.zero_grad(set_to_none=True)
        with self.precision.full_precision():
            self.precision.backward(network, total)
            gradients = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            loss = total.detach().float().reshape(1).clone()
            current_world().average_([loss, *gradients])
            self.precision.unscale(network, optimizer)
            if all_finite([loss, *gradients]):
                self.precision.step(network, optimizer)
                if (average or network) in self.averages:
                    self.averages[average or network].update()
                return True
            if self.precision.scaled and all_finite([loss]):
                self.precision.step(network, optimizer)  # skipped by the GradScaler, which lowers its scale
                return False
        failure = NonFiniteUpdate(network, self._nonfinite_culprit(network, total, terms))
        if self.nonfinite_policy != "skip":
            raise failure
        optimizer.zero_grad(set_to_none=True)
        self.skipped_updates[network] = self.skipped_updates.get(network, 0) + 1
        self.last_nonfinite = failure
        return False

    def _nonfinite_culprit(self, network: str, total: torch.Tensor, terms: Mapping[str, torch.Tensor]) -> str:
        """The first non-finite named term, else the loss itself, else the first parameter with a bad gradient."""
        for name, value in terms.items():
            if torch.is_tensor(value) and not bool(torch.isfinite(value).all()):
                return name
        if not bool(torch.isfinite(total).all()):
            return "loss"
        owner = self.networks.get(network)
        named = owner.named_parameters() if owner is not None else ()
        for name, param in named:
            if param.grad is not None and not bool(torch.isfinite(param.grad).all()):
                return f"gradient of {name}"
        return "gradient"

    def nonfinite_networks(self) -> list[str]:
        """Networks with a NaN/Inf weight: checked before a checkpoint is written, so none is saved broken."""
        return [name for name, net in self.networks.items() if not all_finite(list(net.parameters()))]


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite, with one device sync.

    Compares each tensor's largest magnitude: unlike a sum or an L2 norm it cannot overflow, so only a
    real NaN/Inf makes this False.
    """
    tensors = [t.detach().reshape(-1) for t in tensors]
    if not tensors:
        return True
    largest = torch._foreach_norm(tensors, math.inf)
    return bool(torch.isfinite(torch.stack([m.float() for m in largest])).all())


def build_network(node: Mapping[str, Any], device: torch.device, **context: Any) -> nn.Module:
    """Build ``{name: ..., option: value}`` from ``NETWORKS`` and move it to ``device``."""
    options = {k: v for k, v in node.items() if k != "name" and k != "init" and not str(k).startswith("init_")}
    return NETWORKS.build(node["name"], options, **context).to(device)


def build_loss(cfg: DictConfig) -> AdversarialLoss:
    """The ``loss`` group's adversarial loss."""
    return LOSSES.build(cfg.loss.name, {k: v for k, v in cfg.loss.items() if k != "name"}, "loss")


def build_regularizers(cfg: DictConfig) -> list[Regularizer]:
    """The ``regularizers`` dict: each named regulariser with its options; a null entry turns one off."""
    return [REGULARIZERS.build(name, options)
            for name, options in (cfg.get("regularizers") or {}).items() if options is not None]


def build_schedulers(cfg: DictConfig, optimizers: Mapping[str, torch.optim.Optimizer], data_spec: DataSpec,
                     batches_per_step: int = 1) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
    """``optim.schedule`` for each optimizer, knowing the run's length and the data's epoch length
    (``batches_per_step``: the recipe's, as ``Recipe.batches_per_step``)."""
    return {name: build_schedule(cfg.optim, optimizer, **run_length(cfg, data_spec, batches_per_step))
            for name, optimizer in optimizers.items()}


def requires_grad(net: nn.Module, flag: bool) -> None:
    """Freeze a network's parameters while only its input gradients are needed (saves the weight grads)."""
    for param in net.parameters():
        param.requires_grad_(flag)


def preview_rows(n: int) -> int:
    """Images per row for a near-square grid of n images."""
    return max(1, int(round(n ** 0.5)))
