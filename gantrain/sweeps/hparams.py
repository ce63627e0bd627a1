"""TensorBoard's HParams view of a sweep: each finished job writes its varying overrides and final values.

The hyperparameters are the sweep's varying keys (the same keys in every job, from sweep.json); the
metrics are ``hparams/objective``, ``hparams/steps``, ``hparams/wall_time_s`` and the final and best value of
every evaluated metric (``hparams/NAME``, ``hparams/NAME_best``). ``tensorboard --logdir SWEEP_DIR`` then
compares the jobs in its HPARAMS tab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gantrain.sweeps.arguments import override_key
from gantrain.sweeps.plan import SweepPlan

PREFIX = "hparams/"


def hparam_value(text: str) -> bool | float | str:
    """A number as a number (so TensorBoard can plot it), true/false as a bool, anything else as text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def job_hparams(plan: SweepPlan, overrides: list[str]) -> dict[str, bool | float | str]:
    chosen = {override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o}
    return {key: hparam_value(chosen.get(key, "")) for key in plan.varying}


def job_metrics(summary: dict[str, Any]) -> dict[str, float]:
    metrics = {f"{PREFIX}steps": float(summary.get("steps") or 0),
               f"{PREFIX}wall_time_s": float(summary.get("wall_time_s") or 0.0)}
    objective = (summary.get("objective") or {}).get("value")
    if objective is not None:
        metrics[f"{PREFIX}objective"] = float(objective)
    for name, record in (summary.get("metrics") or {}).items():
        for suffix, kind in (("", "final"), ("_best", "best")):
            value = record.get(kind)
            metrics[f"{PREFIX}{name}{suffix}"] = float("nan") if value is None else float(value)
    return metrics


def write_hparams(run_dir: Path, plan: SweepPlan, overrides: list[str], summary: dict[str, Any]) -> None:
    """The HParams session of one job, in its own TensorBoard folder (beside its scalars)."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    metrics = job_metrics(summary)
    experiment, start, end = hparams(job_hparams(plan, overrides), metrics)
    step = int(summary.get("steps") or 0)
    with SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard")) as writer:
        for proto in (experiment, start, end):
            writer.file_writer.add_summary(proto, step)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, step)
