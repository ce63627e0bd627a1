"""One job of a sweep: a failure recorded instead of ending the sweep, and a job of a resumed sweep
skipped, resumed from its own checkpoint, or started, according to what its folder holds.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from gantrain.engine.summary import DONE, FAILED, read_summary, record_failure
from gantrain.errors import UserError
from gantrain.sweeps.arguments import override_key
from gantrain.sweeps.plan import is_sweep_folder, load_plan

MULTIRUN_FLAGS = ("-m", "--multirun")


def _hydra() -> Any:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def in_sweep() -> bool:
    from hydra.types import RunMode

    hydra = _hydra()
    return hydra is not None and hydra.mode == RunMode.MULTIRUN


def job_failed(cfg: DictConfig, error: BaseException, reason: str | None, status: int | None) -> None:
    """A job of a sweep raised: record it as failed with its one-line reason (a bug: its type and first line,
    and the traceback on stderr) and say so. Then return None, so the basic sweeper goes on and Optuna marks
    the trial FAIL; or, with ``sweep.fail_fast=true``, end the sweep with the error's exit status."""
    hydra = _hydra()
    if reason is None:
        traceback.print_exception(error, file=sys.stderr)
        text = str(error).strip()
        reason = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
    record_failure(Path(hydra.runtime.output_dir), reason, [str(o) for o in hydra.overrides.task])
    fail_fast = bool((cfg.get("sweep") or {}).get("fail_fast", False))
    then = "sweep.fail_fast=true: the sweep stops" if fail_fast else "the sweep goes on; sweep.fail_fast=true stops it"
    print(f"gantrain: error: job {hydra.job.num} failed: {reason} ({then})", file=sys.stderr)
    if fail_fast:
        raise SystemExit(status or 1)


def resume_sweep_arguments(args: list[str], target: str) -> list[str]:
    """``-m resume=SWEEP_DIR``: the sweep's own arguments under the ones given now, into the same folder."""
    if not any(flag in args for flag in MULTIRUN_FLAGS):
        raise UserError(f"{target} is a sweep folder: resume the whole sweep with 'gantrain -m resume={target}', "
                        f"or one job with resume={target}/JOB_FOLDER")
    plan = load_plan(target, "resume")
    given = {override_key(a) for a in args}
    earlier = [a for a in [*plan.hydra_arguments, *plan.arguments] if override_key(a) not in given]
    placement = [] if "hydra.sweep.dir" in given else [f"hydra.sweep.dir={target}"]
    return earlier + args + placement


def resumed_job(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """In a resumed sweep (``resume`` names the sweep folder): the summary of a job that finished earlier (skip
    it), else None after pointing ``resume`` at this job's own folder when it has checkpoints (resume it
    exactly, as ``resume=RUN`` does) or clearing it (start it)."""
    target = cfg.get("resume")
    if not target or not in_sweep() or not is_sweep_folder(target):
        return None
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") in (DONE, FAILED):
        print(f"gantrain: job {run_dir.name}: {summary['status']} earlier, skipped", file=sys.stderr)
        return summary
    cfg.resume = str(run_dir) if any((run_dir / "checkpoints").glob("*.pt")) else None
    return None


def skipped_result(summary: dict[str, Any], objective: str | None) -> Any:
    """What a skipped job returns to the sweeper: its recorded objective, None for a failed job (Optuna: FAIL)."""
    if summary.get("status") != DONE:
        return None
    if objective is not None:
        return (summary.get("objective") or {}).get("value")
    return summary.get("scalars", {})
