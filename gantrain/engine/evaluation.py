"""Sample-quality evaluation: every ``metrics.eval_every`` training steps, and ``gantrain task=eval``.

GAN-agnostic: the generator side is a sampler ``(n, torch.Generator) -> samples`` (the loop passes
``recipe.sample`` under the recipe's averaged weights), the data side is the run's dataset. Each
generated batch goes through the feature network once and is shared by every metric; the reference
statistics of the real data are computed once and cached on disk (gantrain/metrics/cache.py).
Evaluation never touches the training's random numbers (it runs in a forked RNG with its own seed),
so a run with metrics trains exactly as one without, and resuming stays exact.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset, default_collate

from gantrain.data.build import build_data
from gantrain.data.source import DataSource
from gantrain.data.stream import BatchStream
from gantrain.errors import UserError, warn
from gantrain.metrics.base import (REFERENCE_KINDS, Comparison, GeneratedBatch, Metric, Outputs, Reference,
                                   accumulate_moments)
from gantrain.metrics.cache import ReferenceCache, cache_key
from gantrain.options import positive_int
from gantrain.metrics.features import INCEPTION, INCEPTION_FILE, FeatureNetwork, build_features, inception_available
from gantrain.registry import METRICS, unknown_choice

METRICS_LOG = "metrics.jsonl"  # in the run folder: one JSON object per evaluation
BEST = "best.pt"  # in RUN/checkpoints: the checkpoint with the best value of metrics.best
Sampler = Callable[[int, torch.Generator], torch.Tensor]


def real_batches(dataset: Dataset, n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """n real samples in a fixed random order (its own generator), batch by batch."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    for indices in order.split(batch_size):
        if hasattr(dataset, "get_batch"):
            yield dataset.get_batch(indices)["real"]
        else:
            yield default_collate([dataset[int(i)] for i in indices])["real"]


def _forked_rng(device: torch.device) -> Any:
    devices = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def sampled(sample: Sampler) -> Outputs:
    """A sampler's outputs, ``batch_size`` at a time (no targets): what a noise-to-image model is measured on."""

    def produce(limit: int, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, None]]:
        produced = 0
        while produced < limit:
            samples = sample(min(batch_size, limit - produced), generator)
            produced += len(samples)
            yield samples, None

    return produce


class Evaluator:
    """The configured metrics, the feature network, the reference statistics and the best value so far.

    What is measured is a list of comparisons (gantrain/metrics/base.py) the recipe names: by default one,
    the samples of the sampler ``evaluate`` is given against the training data.
    """

    def __init__(self, options: DictConfig, source: DataSource, data_cfg: DictConfig, device: torch.device,
                 comparisons: Sequence[Comparison] | None = None) -> None:
        names = list(options.get("names") or [])
        if len(set(names)) != len(names):
            raise UserError(f"metrics.names lists a metric twice: {names}")
        for name in names:
            if name not in METRICS:
                raise UserError(unknown_choice("metric", name, METRICS.names()))
        self.every = positive_int(options.eval_every, "metrics.eval_every")
        self.samples = positive_int(options.eval_samples, "metrics.eval_samples")
        self.batch_size = positive_int(options.batch_size, "metrics.batch_size")
        self.seed = int(options.seed)
        self.source = source
        self.comparisons = list(comparisons) if comparisons is not None else [Comparison("", source.dataset, "train")]
        real = options.get("real_samples")
        self._real_limit = None if real is None else positive_int(real, "metrics.real_samples")
        self.device = device
        self.metrics: dict[str, Metric] = {
            name: METRICS.build(name, options.get(name) or {}, data_name=data_cfg.get("name"), data_spec=source.spec)
            for name in names}
        paired = [c.name or "the outputs" for c in self.comparisons if c.has_targets]
        for name, metric in self.metrics.items():
            if metric.needs_targets and not paired:
                raise UserError(f"metric '{name}' compares outputs with paired targets, which this model and data "
                                "do not have; use fid or kid (or psnr/ssim/l1 with paired data)")
        self.features: FeatureNetwork | None = None
        if any(m.uses_features or m.uses_logits for m in self.metrics.values()):
            with _forked_rng(device):  # building a network draws initial weights: not from the training's stream
                self.features = build_features(options.features, options.get("inception_weights"),
                                               bool(options.get("download", True)), source.spec, device)
        self.cache = ReferenceCache(options.get("cache_dir"))
        self.data_description = self._describe_data(data_cfg)
        self._references: dict[tuple[str, str], Reference] = {}
        self.per_image: dict[str, dict[str, list[float]]] = {}  # comparison -> value name -> one value per image
        self.best_name, self.higher_is_better = self._best_output(options.get("best"))
        self.best: dict[str, float] | None = None  # {"value": ..., "step": ...}

    @property
    def real_samples(self) -> int:
        """Reference samples of the first comparison (the only one of a noise-to-image model)."""
        return self.reference_count(self.comparisons[0])

    def reference_count(self, comparison: Comparison) -> int:
        size = len(comparison.reference)
        return size if self._real_limit is None else min(self._real_limit, size)

    def _describe_data(self, data_cfg: DictConfig) -> dict[str, Any]:
        data = OmegaConf.to_container(data_cfg, resolve=True)
        for how_it_is_read in (*BatchStream.CONFIG_KEYS, "cache", "cache_max_gb"):  # same images either way
            data.pop(how_it_is_read, None)
        if isinstance(data.get("root"), str):
            data["root"] = str(Path(data["root"]).expanduser().resolve())
        return data

    def description(self, comparison: Comparison) -> dict[str, Any]:
        """Everything a comparison's reference statistics depend on (the cache key)."""
        described = {"data": self.data_description, "shape": list(self.source.spec.shape),
                     "size": len(comparison.reference), "reference_samples": self.reference_count(comparison),
                     "seed": self.seed, "features": self.features.identity if self.features else None}
        if comparison.reference_split != "train":
            described["split"] = comparison.reference_split
        return described

    def applies(self, metric: Metric, comparison: Comparison) -> bool:
        return comparison.has_targets or not metric.needs_targets

    def value_name(self, metric: Metric, output: str, comparison: Comparison | None = None) -> str:
        """``fid`` in Inception features, ``fid@NAME`` in the user's own; ``/DIRECTION`` for a named comparison."""
        own = metric.uses_features or metric.uses_logits
        name = f"{output}@{self.features.name}" if own and self.features and not self.features.is_standard else output
        return f"{name}/{comparison.name}" if comparison is not None and comparison.name else name

    def value_names(self) -> dict[str, bool | None]:
        """Every value an evaluation reports, with which way is better (None: not a ranking)."""
        return {self.value_name(metric, output, comparison): higher
                for comparison in self.comparisons for metric in self.metrics.values()
                if self.applies(metric, comparison) for output, higher in metric.outputs.items()}

    def _best_output(self, best: str | None) -> tuple[str | None, bool]:
        if best is None:
            return None, False
        ranked = {name: higher for name, higher in self.value_names().items() if higher is not None}
        for name, higher in ranked.items():
            if best in (name, name.split("@")[0], name.split("/")[0].split("@")[0]):
                return name, higher
        raise UserError(f"metrics.best={best} is not a value the configured metrics report; choose from: "
                        f"{', '.join(ranked) or '(none: set metrics.names first)'}")

    # --- computing ---------------------------------------------------------------------------------

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def reference(self, comparison: Comparison | None = None) -> Reference:
        """The real data's statistics: from memory, from the disk cache, or computed (then cached)."""
        comparison = comparison or self.comparisons[0]
        description = self.description(comparison)
        key = cache_key(description)
        memo = (comparison.name, key)  # a comparison whose reference changes during a run gets new statistics
        if memo not in self._references:
            needs = sorted({kind for m in self.metrics.values() if self.applies(m, comparison)
                            for kind in m.reference_needs})
            loaded = {kind: self.cache.load(key, kind) for kind in needs}
            missing = [kind for kind, tensors in loaded.items() if tensors is None]
            if missing:
                for kind, tensors in self.compute_reference(missing, comparison).items():
                    self.cache.save(key, kind, tensors, description)
                    loaded[kind] = tensors
            features = loaded.get("features")
            self._references[memo] = Reference(
                moments=loaded.get("moments"), features=features["features"].to(self.device) if features else None)
        return self._references[memo]

    def compute_reference(self, kinds: list[str], comparison: Comparison | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """One pass of the feature network over the reference samples, for every kind asked for."""
        assert set(kinds) <= set(REFERENCE_KINDS), kinds
        comparison = comparison or self.comparisons[0]
        moments, features = None, []
        for batch in real_batches(comparison.reference, self.reference_count(comparison), self.batch_size, self.seed):
            batch_features = self.features(batch)[0]
            if "moments" in kinds:
                moments = accumulate_moments(moments, batch_features)
            if "features" in kinds:
                features.append(batch_features.cpu())
        computed = {}
        if "moments" in kinds:
            computed["moments"] = moments
        if "features" in kinds:
            computed["features"] = {"features": torch.cat(features)}
        return computed

    @torch.no_grad()
    def evaluate(self, sample: Sampler | None = None) -> dict[str, float]:
        """Every metric of every comparison on at most ``metrics.eval_samples`` outputs, batch by batch.

        ``sample`` draws the outputs of comparisons that bring none of their own (a generator's samples).
        """
        values: dict[str, float] = {}
        with _forked_rng(self.device):
            for comparison in self.comparisons:
                torch.manual_seed(self.seed)  # torchmetrics' KID/IS subsets (and test-time dropout) draw from it
                values.update(self._measure(comparison, sample))
        return values

    def _measure(self, comparison: Comparison, sample: Sampler | None) -> dict[str, float]:
        metrics = [metric for metric in self.metrics.values() if self.applies(metric, comparison)]
        reference = self.reference(comparison)
        for metric in metrics:
            metric.start()
        produce = comparison.outputs
        if produce is None:
            if sample is None:
                raise ValueError("this comparison measures a sampler's outputs, but none was given")
            produce = sampled(sample)
        generator = torch.Generator().manual_seed(self.seed)
        for outputs, targets in produce(self.samples, self.batch_size, generator):
            features = logits = None
            if self.features is not None:
                features, logits = self.features(outputs)
            extra = {"targets": targets.to(self.device)} if targets is not None else {}
            batch = GeneratedBatch(outputs.to(self.device), features, logits, extra)
            for metric in metrics:
                metric.update(batch)
        self.per_image[comparison.name] = {self.value_name(metric, next(iter(metric.outputs)), comparison):
                                           list(metric.values) for metric in metrics if hasattr(metric, "values")}
        return {self.value_name(metric, output, comparison): value for metric in metrics
                for output, value in metric.compute(reference).items()}

    # --- recording -----------------------------------------------------------------------------------

    def record(self, step: int, values: dict[str, float], seconds: float, log_path: Path) -> bool:
        """Append the evaluation to metrics.jsonl; True when it is the best so far (write best.pt)."""
        entry = {"step": step, **values, "eval_samples": self.samples,
                 "features": self.features.name if self.features else None, "seconds": round(seconds, 3)}
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        if self.best_name is None:
            return False
        value = values[self.best_name]
        if math.isnan(value):
            return False
        better = self.best is None or (value > self.best["value"] if self.higher_is_better else value < self.best["value"])
        if better:
            self.best = {"value": value, "step": step}
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"best_name": self.best_name, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The best value so far, if it was for the same metric."""
        if state and state.get("best_name") == self.best_name:
            self.best = state.get("best")

    @staticmethod
    def forget_after(step: int, log_path: Path) -> None:
        """On resume: drop evaluations an interrupted run logged after its checkpoint (they are redone)."""
        if not log_path.is_file():
            return
        kept = []
        for line in log_path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except (ValueError, AttributeError):  # a line cut short by a kill: dropped
                continue
        log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def build_evaluator(cfg: DictConfig, source: DataSource, device: torch.device,
                    comparisons: Sequence[Comparison] | None = None) -> Evaluator | None:
    """The run's evaluator, or None when ``metrics.names`` is empty."""
    options = cfg.get("metrics")
    if not options or not options.get("names"):
        return None
    return Evaluator(options, source, cfg.data, device, comparisons)


# --- task=eval ---------------------------------------------------------------------------------------


def given_overrides(group: str) -> list[str]:
    """The ``GROUP.KEY`` keys given on the command line (they replace the checkpoint's, e.g. a new data.root)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = HydraConfig.get().overrides.task
    except ValueError:  # not run by Hydra (a test calling this directly)
        return []
    return [o.split("=", 1)[0].lstrip("+~") for o in task if o.lstrip("+~").startswith(f"{group}.")]


def updated(trained: DictConfig | None, cfg: DictConfig, group: str) -> DictConfig:
    """The run's own ``group`` node (else this command's) with the keys given on the command line on top."""
    node = OmegaConf.create(OmegaConf.to_container(trained if trained is not None else cfg[group], resolve=True))
    for key in given_overrides(group):
        OmegaConf.update(node, key.removeprefix(f"{group}."), OmegaConf.select(cfg, key), force_add=True)
    return node


def evaluation_metrics(cfg: DictConfig, trained: DictConfig, defaults: Sequence[str]) -> DictConfig:
    """The metrics options of task=eval: the run's own (super-resolution: on Y, borders cut) with the command
    line's on top; the names given, else the run's own, else the model's defaults.

    Default Inception metrics are dropped (with a warning) when their weights cannot be had offline, so
    a plain ``task=eval`` of a translation model still reports L1/PSNR/SSIM without internet.
    """
    options = updated(trained.get("metrics"), cfg, "metrics")
    if "metrics.names" in given_overrides("metrics"):
        return options
    names = list(options.get("names") or defaults)
    if not names:
        raise UserError("task=eval needs metrics to compute, e.g. 'metrics.names=[fid,kid]'")
    inception = [name for name in names if name in ("fid", "kid", "is", "precision_recall")]
    if options.features == INCEPTION and inception and len(inception) < len(names):
        if not inception_available(options.get("inception_weights"), bool(options.get("download", True))):
            warn(f"skipping {', '.join(inception)}: the Inception weights {INCEPTION_FILE} are not available "
                 "offline (see docs/metrics.md); name the metrics with metrics.names to be told what to fetch")
            names = [name for name in names if name not in inception]
    options.names = names
    return options


def evaluate_checkpoint(cfg: DictConfig) -> Path:
    """``task=eval``: the metrics of a checkpoint; a table per comparison on the console, JSON beside the checkpoint."""
    from gantrain.engine.restore import load_trained

    model = load_trained(cfg.get("checkpoint"), cfg.device.name, "eval")
    data_cfg = updated(model.config.data, cfg, "data")
    source = build_data(data_cfg, held_out_only=True)
    if not source.spec.same_shape(model.spec):
        raise UserError(f"the data holds {source.spec.describe()}, the checkpoint was trained on {model.spec.describe()}")
    recipe = model.recipe
    options = evaluation_metrics(cfg, model.config, recipe.default_metrics)
    evaluator = Evaluator(options, source, data_cfg, model.device, recipe.comparisons(source, source.evaluation_split()))
    started = time.monotonic()
    with recipe.averaged_weights():
        values = evaluator.evaluate(recipe.sample)
    seconds = time.monotonic() - started
    report_evaluation(evaluator, values, f"{model.path} at step {model.step}", bool(recipe.averages))
    out = model.path.with_name(f"{model.path.stem}.metrics.json")
    features = evaluator.features.name if evaluator.features else None
    out.write_text(json.dumps({"checkpoint": str(model.path), "step": model.step, "eval_samples": evaluator.samples,
                               "reference_samples": evaluator.real_samples, "features": features,
                               "comparisons": {c.name or "outputs": c.reference_split for c in evaluator.comparisons},
                               "averaged_weights": bool(recipe.averages), "seconds": round(seconds, 3),
                               "values": values}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return out


def report_evaluation(evaluator: Evaluator, values: dict[str, float], what: str, averaged: bool) -> None:
    """One table per comparison (per direction of a translation), with what was compared above it."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    features = evaluator.features.name if evaluator.features else None
    for comparison in evaluator.comparisons:
        suffix = f"/{comparison.name}" if comparison.name else ""
        rows = {name.removesuffix(suffix): value for name, value in values.items()
                if (name.endswith(suffix) if suffix else "/" not in name)}
        if not rows:
            continue
        compared = (f"{evaluator.samples} generated vs {evaluator.reference_count(comparison)} real samples"
                    if comparison.outputs is None else f"outputs for the {comparison.reference_split} split")
        console.print(f"{what}{f' {comparison.name}' if comparison.name else ''}: {compared}"
                      f"{f', {features} features' if features else ''}{', averaged generator weights' if averaged else ''}",
                      highlight=False, soft_wrap=True)
        table = Table()
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in rows.items():
            table.add_row(name, f"{value:.6g}")
        console.print(table)
    report_per_image(evaluator, console)


def report_per_image(evaluator: Evaluator, console: Any) -> None:
    """Per-image values (super-resolution's per-image table), for comparisons that name their images."""
    from rich.table import Table

    named = [c for c in evaluator.comparisons if c.item_names and evaluator.per_image.get(c.name)]
    if not named:
        return
    columns = {name: values for c in named for name, values in evaluator.per_image[c.name].items()}
    table = Table(title="per image")
    table.add_column("image")
    for name in columns:
        table.add_column(name, justify="right")
    for row, image in enumerate(named[0].item_names):
        table.add_row(image, *(f"{values[row]:.4f}" if row < len(values) else "" for values in columns.values()))
    console.print(table)
