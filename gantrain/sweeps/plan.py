"""SWEEP_DIR/sweep.json: what a sweep was asked to do, saved before its first job starts.

It holds the command line's overrides (task and hydra), the keys that vary from job to job, the sweeper's
direction and the objective, and the gantrain version and format that made it. The job folders' names,
the results table, HParams and ``-m resume=SWEEP_DIR`` are all built from it, so they agree with each
other and work with every launcher (the file lives in the shared sweep folder).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gantrain import __version__
from gantrain.engine.checkpoint import write_atomic
from gantrain.errors import UserError
from gantrain.sweeps.arguments import override_key

PLAN = "sweep.json"
PLAN_FORMAT = 1  # bump when sweep.json or the job folder naming changes: older sweeps then refuse to resume
MAX_FOLDER_NAME = 120  # characters of a job folder's name; longer ones end in a short hash of the full name
UNSAFE = re.compile(r"[^A-Za-z0-9._,=+@%-]")  # anything else (/, spaces, brackets, quotes) becomes _
SEED_KEY = "trainer.seed"


@dataclass
class SweepPlan:
    """The saved facts of one sweep (see the module docstring)."""

    arguments: list[str]  # the task overrides as typed (sweeps unexpanded: optim.lr=1e-4,2e-4)
    hydra_arguments: list[str]  # hydra.* and hydra/* overrides (launcher, sweeper), without hydra.sweep.dir
    varying: list[str]  # keys whose value differs between jobs, in command-line order
    sweeper: str = "basic"  # basic | optuna | the sweeper's class name
    direction: str | None = None  # the sweeper's (minimize | maximize), when it has one
    objective: str | None = None  # cfg.objective: the value each job returns
    metrics: list[str] = field(default_factory=list)
    gantrain_version: str = __version__
    format: int = PLAN_FORMAT


def swept_keys(arguments: list[str], params: dict[str, Any] | None) -> list[str]:
    """Keys that take more than one value: command-line sweeps (a=1,2, range(...)) and sweeper search spaces."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    keys: list[str] = []
    for parsed in OverridesParser.create().parse_overrides(given):
        key = parsed.key_or_group + (f"@{parsed.package}" if parsed.package else "")
        if parsed.is_sweep_override() and key not in keys:
            keys.append(key)
    return keys


def plan_from_config(cfg: DictConfig) -> SweepPlan:
    """The plan of the sweep a master config (``on_multirun_start``'s) describes."""
    hydra = cfg.hydra
    arguments = [str(a) for a in OmegaConf.to_container(hydra.overrides.task, resolve=False)]
    hydra_arguments = [str(a) for a in OmegaConf.to_container(hydra.overrides.hydra, resolve=False)
                       if override_key(str(a)) != "hydra.sweep.dir"]
    sweeper = hydra.sweeper
    params = OmegaConf.to_container(sweeper.params, resolve=False) if sweeper.get("params") else None
    target = str(sweeper.get("_target_", ""))
    name = "basic" if target.endswith("BasicSweeper") else "optuna" if "optuna" in target.lower() else target
    direction = sweeper.get("direction")
    return SweepPlan(arguments=[a for a in arguments if override_key(a) != "resume"],
                     hydra_arguments=hydra_arguments, varying=swept_keys(arguments, params), sweeper=name,
                     direction=str(direction) if isinstance(direction, str) else None,
                     objective=cfg.get("objective"), metrics=list(cfg.get("metrics", {}).get("names", []) or []))


def is_sweep_folder(path: str | Path) -> bool:
    path = Path(path).expanduser()
    return (path / PLAN).is_file() or (path / "multirun.yaml").is_file()


def write_plan(sweep_dir: Path, plan: SweepPlan) -> None:
    write_atomic((json.dumps(asdict(plan), indent=2) + "\n").encode("utf-8"), Path(sweep_dir) / PLAN)


def read_plan(sweep_dir: str | Path) -> SweepPlan | None:
    """The saved plan, or None when the folder has none (or an unreadable one)."""
    try:
        saved = json.loads((Path(sweep_dir) / PLAN).read_text(encoding="utf-8"))
        return SweepPlan(**saved)
    except (OSError, ValueError, TypeError):
        return None


def load_plan(sweep_dir: str | Path, purpose: str) -> SweepPlan:
    """The plan of a sweep folder, or a one-line error saying why this gantrain cannot use it for ``purpose``."""
    folder = Path(sweep_dir).expanduser()
    if not is_sweep_folder(folder):
        raise UserError(f"{folder} is not a sweep folder (no {PLAN} or multirun.yaml in it): "
                        "give the folder a 'gantrain -m ...' sweep wrote (outputs/multirun/DATE/TIME)")
    plan = read_plan(folder)
    if plan is None:
        raise UserError(f"cannot {purpose} {folder}: it was made by a gantrain without sweep bookkeeping (no {PLAN}); "
                        f"this is gantrain {__version__} (sweep format {PLAN_FORMAT}): run the sweep again")
    if plan.format != PLAN_FORMAT:
        raise UserError(f"cannot {purpose} {folder}: it was made by gantrain {plan.gantrain_version} "
                        f"(sweep format {plan.format}); this is gantrain {__version__} (sweep format {PLAN_FORMAT})")
    return plan


def job_folder_name(num: int | str, overrides: list[str], varying: list[str] | None) -> str:
    """``0_optim.lr=1e-4,trainer.seed=0``: the job number, then the overrides that vary, safe and short.

    ``varying=None`` (no plan): the job number alone, as Hydra names job folders by default.
    """
    kept = [o for o in overrides if varying is not None and override_key(o) in varying]
    if not kept:
        return str(num)
    name = UNSAFE.sub("_", f"{num}_{','.join(kept)}")
    if len(name) > MAX_FOLDER_NAME:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
        name = f"{name[:MAX_FOLDER_NAME - 9]}-{digest}"
    return name


def job_number(folder_name: str) -> int | None:
    match = re.match(r"^(\d+)(?:_|$)", folder_name)
    return int(match[1]) if match else None


def job_folder(*, _root_: DictConfig) -> str:
    """The ``gantrain_job_folder`` resolver behind ``hydra.sweep.subdir`` (evaluated in each job, any launcher)."""
    hydra = _root_.hydra
    plan = read_plan(hydra.sweep.dir)
    overrides = [str(o) for o in hydra.overrides.task]
    num = OmegaConf.select(_root_, "hydra.job.num", default="")  # unset outside a sweep (--cfg hydra --resolve)
    return job_folder_name(num, overrides, plan.varying if plan else None)


def register_resolvers() -> None:
    """``${gantrain_job_folder:}`` in configs/gantrain.yaml; safe to call more than once."""
    if not OmegaConf.has_resolver("gantrain_job_folder"):
        OmegaConf.register_new_resolver("gantrain_job_folder", job_folder, use_cache=False)
