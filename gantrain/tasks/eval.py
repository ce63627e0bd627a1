"""``task=eval``: the metrics of a checkpoint; a table per comparison on the console, JSON beside the checkpoint.

The run's own data and metrics options, with the command line's keys on top (``data.val_root=Set14``
replaces or adds that key of the run's data); the metrics the recipe names by default when none are.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gantrain.data.build import build_data
from gantrain.engine.evaluation import Evaluator
from gantrain.engine.restore import load_trained
from gantrain.errors import UserError, warn
from gantrain.metrics.features import INCEPTION, INCEPTION_FILE, inception_available

WRITES_RUN_FOLDER = False  # writes its JSON beside the checkpoint
ADDS_KEYS_UNDER = ("data.",)  # data.KEY=VALUE on the command line adds or replaces a key of the run's data (++)


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
                 "offline (see README 'Offline use'); name the metrics with metrics.names to be told what to fetch")
            names = [name for name in names if name not in inception]
    options.names = names
    return options


def run(cfg: DictConfig) -> Path:
    """``gantrain task=eval checkpoint=RUN [metrics.names=[fid,kid]] [data.KEY=VALUE]``."""
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
