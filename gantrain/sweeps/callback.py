"""The Hydra callback behind every ``gantrain -m`` (configs/gantrain.yaml, hydra.callbacks).

Before the first job: SWEEP_DIR/sweep.json (gantrain/sweeps/plan.py). After each job that ran: its
HParams session, and the results table brought up to date (so a sweep killed later still has one).
After the sweep: the table once more, printed, and how many jobs failed (the CLI's exit status).
Hooks that run in the job run wherever the launcher runs it (a SLURM node with the shared sweep folder).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gantrain.engine.summary import DONE, SUMMARY, read_summary
from gantrain.sweeps.plan import plan_from_config, read_plan, register_resolvers, write_plan

log = logging.getLogger("gantrain")

register_resolvers()  # hydra.sweep.subdir needs it wherever a job's folder is named
last_sweep: dict[str, Any] = {}  # {"sweep_dir", "config", "failed", "jobs", "ended"} of this process's sweep, for main()


def table_after_stop() -> None:
    """A sweep stopped by a signal or a failing job (fail_fast) ends without on_multirun_end: its table still
    shows the stopped job as interrupted and the rest as not started."""
    if last_sweep.get("sweep_dir") is not None and not last_sweep.get("ended"):
        SweepCallback._refresh(last_sweep["sweep_dir"], last_sweep["config"])
        print(f"gantrain: the sweep stopped; finish it with: gantrain -m resume={last_sweep['sweep_dir']}",
              file=sys.stderr)
        last_sweep.clear()  # reported: a later command in this process starts afresh


def _summary_stamp(run_dir: Path) -> int | None:
    try:
        return (run_dir / SUMMARY).stat().st_mtime_ns
    except OSError:
        return None


class SweepCallback(Callback):
    def __init__(self) -> None:
        self._stamp: int | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if read_plan(sweep_dir) is None:  # a resumed sweep keeps its plan: the same jobs, the same folders
            write_plan(sweep_dir, plan_from_config(config))
        last_sweep.clear()
        last_sweep.update(sweep_dir=sweep_dir, config=config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._stamp = _summary_stamp(Path(config.hydra.runtime.output_dir))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        run_dir, sweep_dir = Path(config.hydra.runtime.output_dir), Path(config.hydra.sweep.dir)
        plan, summary = read_plan(sweep_dir), read_summary(run_dir)
        ran = _summary_stamp(run_dir) != self._stamp  # a job skipped by a resumed sweep leaves its files alone
        if plan is None or summary is None or not ran:
            return
        if summary.get("status") == DONE:
            from gantrain.sweeps.hparams import write_hparams

            write_hparams(run_dir, plan, [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task)], summary)
        self._refresh(sweep_dir, config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        last_sweep["ended"] = True
        table, groups = self._refresh(sweep_dir, config) or (None, None)
        if table is None:
            return
        from gantrain.sweeps.results import show

        show(table, groups, stderr=True)
        last_sweep.update(failed=table.failed(), jobs=len(table.rows))

    @staticmethod
    def _refresh(sweep_dir: Path, config: DictConfig) -> Any:
        """Rewrite the table; never let bookkeeping end a sweep (a warning instead)."""
        from gantrain.sweeps.results import tabulate

        results = config.get("results") or {}
        try:
            return tabulate(sweep_dir, results.get("sort"), results.get("direction"), results.get("group_seeds", True))
        except Exception as error:  # noqa: BLE001 - e.g. results.sort names a column no job logged yet
            print(f"gantrain: warning: results table of {sweep_dir} not written: {error}", file=sys.stderr)
            return None
