"""``gantrain task=results sweep=SWEEP_DIR``: a sweep's results table rebuilt from its folders alone.

Rewrites SWEEP_DIR/results.csv, results.md and SWEEP_DIR/best, and prints the table sorted by the objective
(or ``results.sort``), jobs differing only in their seed grouped as mean +- std (``results.group_seeds``).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from gantrain.errors import UserError

WRITES_RUN_FOLDER = False  # writes its table into the sweep folder


def run(cfg: DictConfig) -> Any:
    from gantrain.sweeps.results import show, tabulate

    options = cfg.results
    if not options.sweep:
        raise UserError("task=results needs the sweep folder: gantrain task=results sweep=outputs/multirun/DATE/TIME")
    table, groups = tabulate(options.sweep, options.sort, options.direction, bool(options.group_seeds))
    show(table, groups)
    return table
