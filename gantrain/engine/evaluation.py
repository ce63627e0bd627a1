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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset, default_collate

from gantrain.data.source import DataSource
from gantrain.data.stream import BatchStream
from gantrain.errors import UserError
from gantrain.metrics.base import REFERENCE_KINDS, GeneratedBatch, Metric, Reference, accumulate_moments
from gantrain.options import positive_int
from gantrain.metrics.cache import ReferenceCache, cache_key
from gantrain.metrics.features import FeatureNetwork, build_features
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


class Evaluator:
    """The configured metrics, the feature network, the reference statistics and the best value so far."""

    def __init__(self, options: DictConfig, source: DataSource, data_cfg: DictConfig, device: torch.device) -> None:
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
        real = options.get("real_samples")
        self.real_samples = len(source.dataset) if real is None else min(positive_int(real, "metrics.real_samples"),
                                                                          len(source.dataset))
        self.device = device
        self.metrics: dict[str, Metric] = {
            name: METRICS.build(name, options.get(name) or {}, data_name=data_cfg.get("name"), data_spec=source.spec)
            for name in names}
        self.features: FeatureNetwork | None = None
        if any(m.uses_features or m.uses_logits for m in self.metrics.values()):
            with _forked_rng(device):  # building a network draws initial weights: not from the training's stream
                self.features = build_features(options.features, options.get("inception_weights"),
                                               bool(options.get("download", True)), source.spec, device)
        self.cache = ReferenceCache(options.get("cache_dir"))
        self.description = self._describe(data_cfg)
        self.key = cache_key(self.description)
        self._reference: Reference | None = None
        self.best_name, self.higher_is_better = self._best_output(options.get("best"))
        self.best: dict[str, float] | None = None  # {"value": ..., "step": ...}

    def _describe(self, data_cfg: DictConfig) -> dict[str, Any]:
        """Everything the reference statistics depend on (the cache key)."""
        data = OmegaConf.to_container(data_cfg, resolve=True)
        for how_it_is_read in (*BatchStream.CONFIG_KEYS, "cache", "cache_max_gb"):  # same images either way
            data.pop(how_it_is_read, None)
        if isinstance(data.get("root"), str):
            data["root"] = str(Path(data["root"]).expanduser().resolve())
        return {"data": data, "shape": list(self.source.spec.shape), "size": len(self.source.dataset),
                "reference_samples": self.real_samples, "seed": self.seed,
                "features": self.features.identity if self.features else None}

    def value_name(self, metric: Metric, output: str) -> str:
        """``fid`` in Inception features, ``fid@NAME`` in the user's own."""
        own = metric.uses_features or metric.uses_logits
        return f"{output}@{self.features.name}" if own and self.features and not self.features.is_standard else output

    def _best_output(self, best: str | None) -> tuple[str | None, bool]:
        if best is None:
            return None, False
        ranked = {self.value_name(m, out): higher for m in self.metrics.values()
                  for out, higher in m.outputs.items() if higher is not None}
        for name, higher in ranked.items():
            if best in (name, name.split("@")[0]):
                return name, higher
        raise UserError(f"metrics.best={best} is not a value the configured metrics report; choose from: "
                        f"{', '.join(ranked) or '(none: set metrics.names first)'}")

    # --- computing ---------------------------------------------------------------------------------

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def reference(self) -> Reference:
        """The real data's statistics: from memory, from the disk cache, or computed (then cached)."""
        if self._reference is None:
            needs = sorted({kind for m in self.metrics.values() for kind in m.reference_needs})
            loaded = {kind: self.cache.load(self.key, kind) for kind in needs}
            missing = [kind for kind, tensors in loaded.items() if tensors is None]
            if missing:
                for kind, tensors in self.compute_reference(missing).items():
                    self.cache.save(self.key, kind, tensors, self.description)
                    loaded[kind] = tensors
            features = loaded.get("features")
            self._reference = Reference(moments=loaded.get("moments"),
                                        features=features["features"].to(self.device) if features else None)
        return self._reference

    def compute_reference(self, kinds: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        """One pass of the feature network over the reference samples, for every kind asked for."""
        assert set(kinds) <= set(REFERENCE_KINDS), kinds
        moments, features = None, []
        for batch in real_batches(self.source.dataset, self.real_samples, self.batch_size, self.seed):
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
    def evaluate(self, sample: Sampler) -> dict[str, float]:
        """Every metric on ``metrics.eval_samples`` samples drawn batch by batch from ``sample``."""
        with _forked_rng(self.device):
            torch.manual_seed(self.seed)  # torchmetrics' KID/IS subsets are drawn from the global generator
            reference = self.reference()
            for metric in self.metrics.values():
                metric.start()
            generator = torch.Generator().manual_seed(self.seed)
            produced = 0
            while produced < self.samples:
                samples = sample(min(self.batch_size, self.samples - produced), generator)
                features = logits = None
                if self.features is not None:
                    features, logits = self.features(samples)
                batch = GeneratedBatch(samples.to(self.device), features, logits)
                for metric in self.metrics.values():
                    metric.update(batch)
                produced += len(samples)
            return {self.value_name(metric, output): value for metric in self.metrics.values()
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


def build_evaluator(cfg: DictConfig, source: DataSource, device: torch.device) -> Evaluator | None:
    """The run's evaluator, or None when ``metrics.names`` is empty."""
    options = cfg.get("metrics")
    if not options or not options.get("names"):
        return None
    return Evaluator(options, source, cfg.data, device)


# --- task=eval ---------------------------------------------------------------------------------------


def _data_overrides() -> list[str]:
    """``data.KEY=VALUE`` given on the command line (they replace the checkpoint's, e.g. a new data.root)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = HydraConfig.get().overrides.task
    except ValueError:  # not run by Hydra (a test calling this directly)
        return []
    return [o.split("=", 1)[0].lstrip("+~") for o in task if o.lstrip("+~").startswith("data.")]


def evaluate_checkpoint(cfg: DictConfig) -> Path:
    """``task=eval``: the configured metrics for a checkpoint; a table on the console, JSON beside the checkpoint."""
    from rich.console import Console
    from rich.table import Table

    from gantrain.data.source import DataSpec
    from gantrain.engine.checkpoint import resolve_checkpoint
    from gantrain.engine.device import resolve_device
    from gantrain.engine.trainer import build_data
    from gantrain.registry import RECIPES, import_plugins

    if not cfg.get("checkpoint"):
        raise UserError("task=eval needs checkpoint=PATH (a .pt file or a run folder)")
    if not (cfg.get("metrics") or {}).get("names"):
        raise UserError("task=eval needs metrics to compute, e.g. 'metrics.names=[fid,kid]'")
    path, saved = resolve_checkpoint(cfg.checkpoint)
    trained = OmegaConf.create(saved["config"])
    import_plugins(trained.get("plugins"))
    data_cfg = trained.data
    for key in _data_overrides():
        OmegaConf.update(data_cfg, key.removeprefix("data."), OmegaConf.select(cfg, key), force_add=True)
    device = resolve_device(cfg.device.name)
    source = build_data(data_cfg)
    spec = DataSpec.from_dict(saved["data_spec"])
    if source.spec.shape != spec.shape:
        raise UserError(f"the data has shape {list(source.spec.shape)}, the checkpoint was trained on {list(spec.shape)}")
    recipe = RECIPES.get(trained.model.recipe).from_config(trained, spec, device)
    recipe.load_state_dict(saved["recipe"], weights_only=True)
    evaluator = Evaluator(cfg.metrics, source, data_cfg, device)
    started = time.monotonic()
    with recipe.averaged_weights():
        values = evaluator.evaluate(recipe.sample)
    seconds = time.monotonic() - started
    features = evaluator.features.name if evaluator.features else None
    console = Console()
    console.print(f"{path} at step {saved['step']}: {evaluator.samples} generated vs {evaluator.real_samples} real "
                  f"samples{f', {features} features' if features else ''}"
                  f"{', averaged generator weights' if recipe.averages else ''}", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in values.items():
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    out = path.with_name(f"{path.stem}.metrics.json")
    out.write_text(json.dumps({"checkpoint": str(path), "step": int(saved["step"]), "eval_samples": evaluator.samples,
                               "reference_samples": evaluator.real_samples, "features": features,
                               "averaged_weights": bool(recipe.averages), "seconds": round(seconds, 3),
                               "values": values}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return out
