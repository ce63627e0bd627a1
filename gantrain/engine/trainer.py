"""The training loop shared by every GAN family.

It knows that a recipe has networks, optimizers, a ``train_step`` and something
to preview; it owns the data position, the budget, logging, grids, checkpoints,
resume and signals. Nothing here names a GAN.

How a run ends: the budget runs out (exit 0); SIGINT/SIGTERM (checkpoint, then
130/143); a non-finite loss or weight under ``on_nonfinite=stop`` (no checkpoint of
the broken state, ``TrainingDiverged``: 3); a checkpoint that cannot be written
(``UserError``: 2). In every case the newest checkpoint on disk is whole.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from gantrain import __version__
from gantrain.augment.base import build_augmentation
from gantrain.config_shapes import with_moved_keys
from gantrain.data.build import build_data
from gantrain.data.source import DataSpec, batch_of
from gantrain.data.stream import BatchStream
from gantrain.engine.acceleration import Precision, channels_last_batch, compile_networks, set_cuda_flags, to_channels_last
from gantrain.engine.checkpoint import LAST, CheckpointNotWritten, CheckpointWriter, resolve_checkpoint
from gantrain.engine.device import resolve_device
from gantrain.engine.distributed import join_world, leave_world
from gantrain.engine.evaluation import BEST, METRICS_LOG, Evaluator, build_evaluator
from gantrain.engine.restore import initialise, without_init
from gantrain.engine.rng import rng_state, seed_everything, set_rng_state
from gantrain.engine.run_log import RunLog, SilentLog, Throughput, to_floats
from gantrain.engine.summary import recorded
from gantrain.errors import UserError
from gantrain.optim.run_length import steps_per_epoch, total_steps
from gantrain.options import positive_int
from gantrain.recipes.base import NONFINITE_POLICIES, Batch, NextBatch, NonFiniteUpdate, Recipe
from gantrain.registry import RECIPES, unknown_choice

log = logging.getLogger("gantrain")

POSITIVE_INTEGERS = ("batch_size", "log_every", "sample_every", "checkpoint_every", "n_samples")


class TrainingDiverged(Exception):
    """A loss, gradient or weight became NaN/Inf: the CLI prints this as one line and exits with ``exit_status``.

    Not a ``UserError`` (status 2, bad input): the input was valid, the training itself went wrong.
    """

    exit_status = 3


def build_recipe(cfg: DictConfig, data_spec: DataSpec, device: torch.device) -> Recipe:
    augmentation = build_augmentation(cfg.get("augment"), data_spec)  # what its discriminators see (augment=)
    recipe = RECIPES.get(cfg.model.recipe).from_config(cfg, data_spec, device)
    recipe.augmentation = augmentation
    return recipe


def parse_duration(value: Any) -> float | None:
    """Seconds from a number or from 'DD:HH:MM:SS' / 'HH:MM:SS' / 'MM:SS'."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not re.fullmatch(r"\d+(:\d+){1,3}", text):
        raise UserError(f"trainer.max_time must be seconds or DD:HH:MM:SS, got '{value}'")
    seconds = 0.0
    for part, unit in zip(reversed(text.split(":")), (1, 60, 3600, 86400)):
        seconds += int(part) * unit
    return seconds


@dataclass
class Budget:
    """Steps, epochs or wall-clock seconds, whichever runs out first (None: no limit of that kind)."""

    max_steps: int | None
    max_epochs: float | None
    max_time: float | None

    @classmethod
    def from_config(cls, trainer: DictConfig, recipe_ends: bool = False) -> "Budget":
        """``recipe_ends``: the recipe's own schedule ends the run (``Recipe.ends_by_itself``), so no limit is needed."""
        budget = cls(trainer.max_steps, trainer.max_epochs, parse_duration(trainer.max_time))
        if budget.max_steps is None and budget.max_epochs is None and budget.max_time is None and not recipe_ends:
            raise UserError("set a budget: trainer.max_steps, trainer.max_epochs or trainer.max_time")
        for name in ("max_steps", "max_epochs", "max_time"):
            value = getattr(budget, name)
            if value is not None and value <= 0:
                raise UserError(f"trainer.{name} must be positive, got {value}")
        return budget

    def exhausted(self, step: int, epochs_done: float, elapsed: float) -> str | None:
        if self.max_steps is not None and step >= self.max_steps:
            return "max_steps"
        if self.max_epochs is not None and epochs_done >= self.max_epochs:
            return "max_epochs"
        if self.max_time is not None and elapsed >= self.max_time:
            return "max_time"
        return None

    def ending_by(self, step: int | None) -> "Budget":
        """This budget, with the run ending at ``step`` at the latest (where a recipe's own schedule ends)."""
        if step is None:
            return self
        return replace(self, max_steps=step if self.max_steps is None else min(self.max_steps, step))

    def total_steps(self, per_epoch: float | None) -> int | None:
        return total_steps(self.max_steps, self.max_epochs, per_epoch)


class StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "StopSignals":
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave signal handling to the caller
            self._previous.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def reference_batch(dataset: Dataset, n: int, seed: int) -> Batch:
    """n fixed real samples (for previews), drawn with their own generator so training randomness is untouched."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return batch_of(dataset, order.repeat(math.ceil(n / len(dataset)))[:n])


def check_resumable(saved: dict[str, Any], cfg: DictConfig, data_spec: DataSpec) -> None:
    """Refuse a resume whose architecture or data shape differs from the checkpoint's."""
    now = OmegaConf.to_container(cfg, resolve=True)
    then = with_moved_keys(saved["config"], now)  # a run saved before one of its keys moved (MOVED_KEYS)
    for key in ("model", "optim.name"):
        head, _, tail = key.partition(".")
        old, new = without_init(then.get(head)), without_init(now.get(head))  # how a run started does not matter
        if tail:
            old, new = (old or {}).get(tail), (new or {}).get(tail)
        if old != new and _first_difference(old, new, key) is not None:
            raise UserError(f"cannot resume: this run's {key} differs from the checkpoint's "
                            f"({_first_difference(old, new, key)}); start a new run instead")
    trained_on = DataSpec.from_dict(saved["data_spec"])
    if not trained_on.same_shape(data_spec):
        raise UserError(f"cannot resume: the data now holds {data_spec.describe()}, the checkpoint was "
                        f"trained on {trained_on.describe()}")


def _first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """The first differing value; None when they differ only by keys one lacks and the other leaves null
    (options added since the checkpoint was written, at their null default)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
                if found is not None:
                    return found
        return None
    return f"{path or 'value'}: checkpoint {old!r}, now {new!r}"


class Trainer:
    """Builds the parts from the config, then runs and checkpoints the loop."""

    def __init__(self, cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.overrides = list(overrides or [])
        trainer = cfg.trainer
        for key in POSITIVE_INTEGERS:
            positive_int(trainer[key], f"trainer.{key}")
        self.nonfinite_policy = trainer.get("on_nonfinite", "stop")
        if self.nonfinite_policy not in NONFINITE_POLICIES:
            raise UserError(unknown_choice("trainer.on_nonfinite", self.nonfinite_policy, list(NONFINITE_POLICIES)))
        self.budget = Budget.from_config(trainer, RECIPES.get(cfg.model.recipe).ends_by_itself)
        device = resolve_device(cfg.device.name)
        self.world = join_world(device)  # data parallel under torchrun; rank 0 of 1 otherwise
        self.device = self.world.device(device)
        self.checkpoints = CheckpointWriter(run_dir / "checkpoints", trainer.keep_last)
        if self.world.is_main:  # only rank 0 writes; before any data or model is built: an unwritable folder fails at once
            self.checkpoints.prepare()
        set_cuda_flags(self.device, trainer.cudnn_benchmark, trainer.tf32)
        seed_everything(trainer.seed)
        self.source = build_data(cfg.data)
        self.recipe = build_recipe(cfg, self.source.spec, self.device)
        self.recipe.nonfinite_policy = self.nonfinite_policy
        self._speed_up(trainer)
        self.evaluator = None
        if self.world.is_main:  # during training, families that take images in are measured on the val split
            comparisons = self.recipe.comparisons(self.source, self.source.preview_split())
            self.evaluator = build_evaluator(cfg, self.source, self.device, comparisons)
        self.stream = BatchStream.from_config(self.source, cfg.data, trainer.batch_size, trainer.seed, self.device,
                                              rank=self.world.rank, world_size=self.world.size)
        self.step = 0
        self.elapsed_before = 0.0  # seconds trained by earlier invocations of this run
        self.newest_checkpoint: tuple[Path, int] | None = None  # (path, step) of the newest whole checkpoint
        self._skip_reported = False  # the first skipped update gets a console line, later ones only a count
        if cfg.get("resume"):
            self._restore(cfg.resume)
        else:
            initialise(self.recipe, cfg, self.source.spec)  # init=, model.NODE.init: starting weights
            self.recipe.start()
            n = trainer.n_samples if self.source.spec.is_image else trainer.n_points
            split, preview_data = self.source.preview_split()  # held out when the data has such a split
            if split != "train":  # its images are shown as they are: each once, not repeated to fill the grid
                n = min(n, len(preview_data))
            reference = reference_batch(preview_data, n, trainer.seed)
            self.preview_inputs = self.recipe.preview_inputs(reference, torch.Generator().manual_seed(trainer.seed))

    def _speed_up(self, trainer: DictConfig) -> None:
        """trainer.precision, channels_last and compile (gantrain/engine/acceleration.py)."""
        self.recipe.precision = Precision(trainer.precision, self.device)
        if self.recipe.precision.scaled and self.device.type == "cpu":
            log.warning("trainer.precision=16 is slow on the CPU (few float16 kernels); bf16 is the CPU's mixed precision")
        if trainer.channels_last:
            to_channels_last(self.recipe.networks.values())
        if trainer.compile:
            trained = [name for name in self.recipe.optimizers if name in self.recipe.networks]
            compile_networks(self.recipe.networks, trained, trainer.compile_mode, trainer.compile_backend)

    def _restore(self, target: str) -> None:
        path, saved = resolve_checkpoint(target)
        check_resumable(saved, self.cfg, self.source.spec)
        self.recipe.load_state_dict(saved["recipe"])
        self.stream.load_state_dict(saved["data"])
        set_rng_state(saved["rng"])
        self.preview_inputs = saved["preview"]
        self.step = int(saved["step"])
        self.elapsed_before = float(saved["elapsed"])
        self.recipe.skipped_updates.update(saved.get("skipped_updates", {}))
        self.resumed_from = path
        self.newest_checkpoint = (path, self.step)
        if self.evaluator is not None:
            self.evaluator.load_state_dict(saved.get("evaluation", {}))
            Evaluator.forget_after(self.step, self.run_dir / METRICS_LOG)

    def epochs_done(self) -> float:
        return self.stream.epochs_done()

    def payload(self, elapsed: float) -> dict[str, Any]:
        return {
            "gantrain_version": __version__,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "overrides": self.overrides,
            "data_spec": self.source.spec.to_dict(),
            "step": self.step,
            "epoch": self.stream.epoch,
            "elapsed": elapsed,
            "recipe": self.recipe.state_dict(),
            "data": self.stream.state_dict(),
            "rng": rng_state(),
            "preview": self.preview_inputs,
            "skipped_updates": dict(self.recipe.skipped_updates),
            "evaluation": self.evaluator.state_dict() if self.evaluator is not None else {},
        }

    def fit(self) -> dict[str, float]:
        """Train until the budget or a signal stops the run; returns the last logged scalars.

        However it ends, RUN/summary.json says how (gantrain/engine/summary.py).
        """
        return recorded(self, self._fit)

    def _fit(self) -> dict[str, float]:
        with StopSignals() as signals:
            try:
                values = self._train(signals)
                self.world.wait_for_all()  # no rank tears the process group down while another still uses it
            except KeyboardInterrupt:  # a second Ctrl-C: no more checkpoints, the ones on disk are whole
                print(f"gantrain: stopped at once (Ctrl-C) after step {self.step}; {self.kept_checkpoint()}",
                      file=sys.stderr)
                raise SystemExit(128 + signal.SIGINT) from None
            except NonFiniteUpdate as failure:  # raised before the optimizer step: nothing broken was saved
                advice = "lower the learning rate, or skip such updates with trainer.on_nonfinite=skip"
                raise self._diverged(f"{failure.culprit} at step {self.step + 1} ({failure.network})", advice) from None
            except CheckpointNotWritten as failure:
                raise UserError(f"{failure}; {self.kept_checkpoint()}") from None
            finally:
                leave_world()
        if signals.received is not None:
            print(f"{signal.Signals(signals.received).name}: stopped at step {self.step}, checkpoint saved. "
                  f"Resume with:\n  gantrain resume={self.run_dir}", file=sys.stderr)
            raise SystemExit(128 + signals.received)
        return values

    def _diverged(self, what: str, advice: str) -> TrainingDiverged:
        return TrainingDiverged(f"non-finite {what}; {self.kept_checkpoint()}; {advice}")

    def kept_checkpoint(self) -> str:
        """Where the run can continue from, for the message of a run that stops early."""
        if self.newest_checkpoint is None:
            return "no checkpoint was written before this"
        path, step = self.newest_checkpoint
        return f"previous checkpoint kept at {path} (step {step}), resume with: gantrain resume={self.run_dir}"

    def _train(self, signals: StopSignals) -> dict[str, float]:
        trainer = self.cfg.trainer
        per_epoch = steps_per_epoch(self.stream.batches_per_epoch, self.recipe.batches_per_step)
        steps_left = self.recipe.steps_left()  # a recipe's own end (a growth schedule), from where it stands now
        self.budget = self.budget.ending_by(None if steps_left is None else self.step + steps_left)
        total = self.budget.total_steps(per_epoch)
        values: dict[str, float] = {}
        started = time.monotonic()
        elapsed = lambda: self.elapsed_before + time.monotonic() - started  # noqa: E731
        log_every, sample_every, checkpoint_every = trainer.log_every, trainer.sample_every, trainer.checkpoint_every
        throughput = Throughput(self.world.size)
        fetch = self._batch_source(throughput)
        log_to = RunLog(self.run_dir, total, self.step, trainer.progress) if self.world.is_main else SilentLog()
        with log_to as log:
            if getattr(self, "resumed_from", None):
                log.note(f"resumed from {self.resumed_from} at step {self.step}")
            last_preview = last_checkpoint = last_evaluation = None
            while not self._should_stop(signals, elapsed()):
                with self.recipe.precision.autocast():
                    scalars = self.recipe.train_step(fetch)
                self.recipe.end_step()
                self.world.share_buffers(self.recipe.networks.values())
                self.step += 1
                self._report_skipped_update(log)
                if self.step % log_every == 0 or self.step == 1:
                    values = self.world.mean({**to_floats(scalars), **self.recipe.learning_rates(),
                                              **self._skip_counts(), **self.recipe.precision.scales(),
                                              **self.recipe.augmentation.scalars(),
                                              **throughput.report(), "epoch": self.epochs_done()})
                    log.scalars(self.step, values)
                log.advance(self.step, values)
                if self.step % sample_every == 0:
                    self._preview(log)
                    last_preview = self.step
                if self.evaluator is not None and self.evaluator.due(self.step):
                    self._evaluate(log, elapsed())
                    last_evaluation = self.step
                if self.step % checkpoint_every == 0 or self.recipe.checkpoint_due():
                    self.save_checkpoint(elapsed(), periodic=True)
                    last_checkpoint = self.step
            if last_preview != self.step:
                self._preview(log)
            if self.evaluator is not None and last_evaluation != self.step and signals.received is None:
                self._evaluate(log, elapsed())  # the budget ran out: measure the final generator
            if last_checkpoint != self.step:
                self.save_checkpoint(elapsed(), periodic=False)
            skipped = sum(self.recipe.skipped_updates.values())
            if skipped:
                log.note(f"{skipped} updates were skipped for non-finite values (TensorBoard: nonfinite/skipped)")
        return values

    def _should_stop(self, signals: StopSignals, elapsed: float) -> bool:
        """A signal or the budget; under data parallelism all ranks stop at the step the first one stops at."""
        stop = signals.received is not None or self.budget.exhausted(self.step, self.epochs_done(), elapsed) is not None
        return self.world.any(stop)

    def _batch_source(self, throughput: Throughput) -> NextBatch:
        """``stream.next`` timed (for images/s and the data-wait share), in channels-last when asked."""
        to_layout = channels_last_batch if self.cfg.trainer.channels_last else None

        def fetch(batch_size: int | None = None) -> Batch:
            with throughput.waiting_for_data():
                batch = self.stream.next(batch_size)
            throughput.count(batch)
            return to_layout(batch) if to_layout else batch

        return fetch

    def _preview(self, log: RunLog) -> None:
        if not self.world.is_main:
            return
        with self.recipe.averaged_weights():  # grids show the weight average, when the recipe keeps one
            log.preview(self.step, self.recipe.preview(self.preview_inputs))
        shown = self.recipe.augmentation.take_shown()  # the first preview also shows what D sees of the reals
        if shown is not None:
            log.augmented_reals(self.step, *shown)

    def _evaluate(self, log: RunLog, elapsed: float) -> None:
        """The metrics (gantrain/engine/evaluation.py); a new best value also writes checkpoints/best.pt."""
        started = time.monotonic()
        with self.recipe.averaged_weights():
            values = self.evaluator.evaluate(self.recipe.sample)
        seconds = time.monotonic() - started
        log.metrics(self.step, values, seconds)
        if self.evaluator.record(self.step, values, seconds, self.run_dir / METRICS_LOG):
            self.checkpoints.save_as(self.payload(elapsed), BEST)

    def save_checkpoint(self, elapsed: float, periodic: bool) -> None:
        """Write a checkpoint, unless a weight has become NaN/Inf: a broken state never replaces a good one.

        Only rank 0 writes: every rank holds the same state (checked first).
        """
        self.world.check_same_weights(self.recipe.networks.values())
        if not self.world.is_main:
            return
        broken = self.recipe.nonfinite_networks()
        if broken:
            raise self._diverged(f"weights at step {self.step} ({broken[0]})", "lower the learning rate")
        self.checkpoints.save(self.payload(elapsed), periodic=periodic)
        self.newest_checkpoint = (self.checkpoints.folder / LAST, self.step)

    def _skip_counts(self) -> dict[str, float]:
        """``nonfinite/skipped`` (all networks) under the skip policy; nothing to log under stop."""
        if self.nonfinite_policy != "skip":
            return {}
        return {"nonfinite/skipped": float(sum(self.recipe.skipped_updates.values()))}

    def _report_skipped_update(self, log: RunLog) -> None:
        """The first skipped update of a run gets a line on the console; later ones are only counted."""
        failure, self.recipe.last_nonfinite = self.recipe.last_nonfinite, None
        if failure is not None and not self._skip_reported:
            self._skip_reported = True
            log.note(f"warning: non-finite {failure.culprit} at step {self.step} ({failure.network}): update "
                     "skipped (trainer.on_nonfinite=skip); further skips are counted in nonfinite/skipped")
