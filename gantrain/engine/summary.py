"""RUN/summary.json: how a run ended, in one small file a sweep's bookkeeping can read without TensorBoard.

The loop guarantees only this: whichever way ``Trainer.fit`` ends (budget, signal, divergence, a bad option),
the run folder holds a whole summary (written atomically) with its status (done / failed with a one-line
reason / interrupted), steps, wall time, last logged scalars and the final and best value of every metric.
Everything built from it (results tables, HParams, resuming a sweep) lives in ``gantrain/sweeps/``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gantrain import __version__
from gantrain.engine.checkpoint import write_atomic
from gantrain.errors import warn

SUMMARY = "summary.json"
DONE, FAILED, INTERRUPTED, NOT_STARTED = "done", "failed", "interrupted", "not started"
INTERRUPT_STATUSES = (130, 143)  # SystemExit of a run stopped by SIGINT / SIGTERM (128 + signal number)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary, or None when it has none (never started, or killed with SIGKILL before any end)."""
    path = Path(run_dir) / SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Replace RUN/summary.json all at once (NaN and Inf are written as null: plain JSON for every reader)."""
    clean = json.dumps(_finite(summary), indent=2, sort_keys=False)
    write_atomic((clean + "\n").encode("utf-8"), Path(run_dir) / SUMMARY)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def metric_history(run_dir: Path, directions: dict[str, bool | None]) -> dict[str, dict[str, Any]]:
    """Final and best value of each metric in RUN/metrics.jsonl; 'best' follows the metric's own direction."""
    from gantrain.engine.evaluation import METRICS_LOG

    path = Path(run_dir) / METRICS_LOG
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    history: dict[str, dict[str, Any]] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        for name, higher in directions.items():
            value = entry.get(name)
            if not isinstance(value, (int, float)):
                continue
            record = history.setdefault(name, {"final": None, "best": None, "best_step": None,
                                               "higher_is_better": higher})
            record["final"] = float(value)
            best = record["best"]
            ranked = higher is not None and math.isfinite(value)  # None: a value that is not a ranking
            if ranked and (best is None or (value > best if higher else value < best)):
                record["best"], record["best_step"] = float(value), entry.get("step")
    return history


def run_summary(trainer: Any, status: str, seconds: float, scalars: dict[str, float] | None = None,
                reason: str | None = None) -> dict[str, Any]:
    """What a finished (or stopped) Trainer says about itself."""
    directions = trainer.evaluator.value_names() if trainer.evaluator is not None else {}
    previous = read_summary(trainer.run_dir) or {}
    return {
        "status": status,
        "reason": reason,
        "steps": int(trainer.step),
        "max_steps": trainer.budget.max_steps,
        "wall_time_s": round(seconds, 3),
        "scalars": scalars if scalars is not None else previous.get("scalars", {}),
        "metrics": metric_history(trainer.run_dir, directions),
        "objective": None,
        "overrides": list(trainer.overrides),
        "gantrain_version": __version__,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def recorded(trainer: Any, fit: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run ``fit`` and leave RUN/summary.json however it ends; rank 0 alone writes (it holds the metrics)."""
    started = time.monotonic()
    seconds = lambda: trainer.elapsed_before + time.monotonic() - started  # noqa: E731
    try:
        scalars = fit()
    except SystemExit as stop:
        status = INTERRUPTED if stop.code in INTERRUPT_STATUSES else FAILED
        _write_if_main(trainer, status, seconds(), reason=None if status == INTERRUPTED else f"exit status {stop.code}")
        raise
    except BaseException as error:
        _write_if_main(trainer, FAILED, seconds(), reason=first_line(error))
        raise
    _write_if_main(trainer, DONE, seconds(), scalars=scalars)
    return scalars


def _write_if_main(trainer: Any, status: str, seconds: float, **details: Any) -> None:
    """A summary that cannot be written (a full disk) is a warning: it never hides why the run ended."""
    if not trainer.world.is_main:
        return
    try:
        write_summary(trainer.run_dir, run_summary(trainer, status, seconds, **details))
    except OSError as error:
        warn(f"cannot write {Path(trainer.run_dir) / SUMMARY}: {error.strerror or error}")


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def record_objective(run_dir: Path, name: str, value: float) -> None:
    """The value the sweeper got back (``objective=``), added to a finished run's summary."""
    summary = read_summary(run_dir)
    if summary is not None:
        summary["objective"] = {"name": name, "value": float(value)}
        write_summary(run_dir, summary)


def record_failure(run_dir: Path, reason: str, overrides: list[str]) -> dict[str, Any]:
    """A job that failed before or outside the loop (a bad option value): status failed with its one-line reason.

    A summary the loop already wrote as failed (a diverged run, with its steps) is kept, with this reason.
    """
    summary = read_summary(run_dir) or {"steps": 0, "wall_time_s": 0.0, "scalars": {}, "metrics": {},
                                         "objective": None, "overrides": overrides}
    summary.update(status=FAILED, reason=reason, gantrain_version=__version__,
                   written_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_summary(run_dir, summary)
    return summary
