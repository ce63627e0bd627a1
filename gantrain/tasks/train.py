"""``task=train`` (the default): train the configured model in this process, or as N data-parallel ranks.

Returns what sweepers optimise: the value ``objective`` names, else the last logged scalars.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from gantrain.cli import override_key
from gantrain.engine.evaluation import METRICS_LOG
from gantrain.engine.summary import record_objective
from gantrain.engine.trainer import Trainer
from gantrain.errors import UserError
from gantrain.options import positive_int
from gantrain.sweeps.job import resumed_job, skipped_result


def run(cfg: DictConfig) -> dict[str, float] | float:
    """Train; return the value ``objective`` names as a float (what sweepers such as Optuna optimise), else the last scalars."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if cfg.get("pairing"):  # settings chosen for the user by model x data: say so, since nobody typed them
        logging.getLogger("gantrain").info("applied configs/pairing/%s.yaml (settings for this model on this data; "
                                           "the command line still wins)", cfg.pairing)
    if cfg.trainer.get("devices", 1) != 1 and "WORLD_SIZE" not in os.environ:
        if cfg.get("objective") is not None:
            raise UserError("objective= needs the training in this process: with trainer.devices>1, "
                            "start the sweep's jobs with torchrun instead")
        status = launch_ranks(cfg, list(hydra_cfg.overrides.task), run_dir)
        if status:
            raise SystemExit(status)
        return {}
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("resume=")]
    earlier = resumed_job(cfg, run_dir)  # -m resume=SWEEP_DIR: a job that finished before is skipped
    if earlier is not None:
        return skipped_result(earlier, cfg.get("objective"))
    trainer = Trainer(cfg, run_dir, overrides)
    scalars = trainer.fit()
    objective = cfg.get("objective")
    if objective is None:
        return scalars
    value = objective_value(str(objective), scalars, trainer)
    if trainer.world.is_main:
        record_objective(run_dir, str(objective), value)
    return value


def objective_value(name: str, scalars: dict[str, float], trainer: Any) -> float:
    """A logged scalar's last logged value, or a metric's value: the best one when ``metrics.best`` names it
    (the value checkpoints/best.pt was kept for), else the final evaluation's (the one last.pt gets).
    """
    if name in scalars:
        return float(scalars[name])
    if not trainer.world.is_main:
        return float("nan")  # data parallel: only rank 0 evaluates, and only its value reaches a sweeper
    evaluator, metrics = trainer.evaluator, {}
    if evaluator is not None:
        outputs = list(evaluator.value_names())
        log = Path(trainer.run_dir) / METRICS_LOG
        lines = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
        final = json.loads(lines[-1]) if lines else {}  # the evaluation at the end of the budget
        metrics = {out: final[out] for out in outputs if out in final}
        for out, value in metrics.items():
            if name in (out, out.split("@")[0], out.split("/")[0].split("@")[0]):
                best = evaluator.best if evaluator.best_name == out else None
                return float(best["value"] if best is not None else value)
    logged = ", ".join([*scalars, *metrics]) or "(nothing)"
    hint = "" if metrics else "; metrics such as fid need metrics.names"
    raise UserError(f"objective={name} was not logged by this run; choose from: {logged}{hint}")


def launch_ranks(cfg: DictConfig, overrides: list[str], run_dir: Path) -> int:
    """``trainer.devices=N`` (N > 1) outside torchrun: run this job as N data-parallel ranks through torchrun.

    The ranks get this job's overrides and run folder, so rank 0 writes where this job would have;
    returns their exit status (the ranks print their own errors).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    devices = positive_int(cfg.trainer.devices, "trainer.devices (processes)")
    arguments = [o for o in overrides if override_key(o) != "hydra.run.dir"] + [f"hydra.run.dir={run_dir}"]
    try:
        torchrun(["--standalone", f"--nproc_per_node={devices}", "-m", "gantrain", *arguments])
    except ChildFailedError as failure:
        exitcode = failure.get_first_failure()[1].exitcode  # the root cause; the other ranks were stopped
        return 128 - exitcode if exitcode < 0 else exitcode  # killed by signal N: 128 + N, as a shell reports it
    return 0
