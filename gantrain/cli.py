"""The ``gantrain`` command: Hydra composes the config, a task (train, sample, eval) runs it.

Errors the user can fix are printed as one line with exit status 2 (3 for a run
that diverged, 130 for Ctrl-C before training starts); ``debug=true`` or
``HYDRA_FULL_ERROR=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from gantrain.config_shapes import listed_choice, merge_error, misplaced_value
from gantrain.errors import UserError
from gantrain.registry import import_plugins, load_builtin_parts, unknown_choice

CONFIG_NAME = "gantrain"
GROUPS = ("model", "loss", "data", "optim", "device", "trainer", "augment")
OVERRIDE = re.compile(r"^(?P<prefix>\+\+|\+|~)?(?P<key>[\w./@-]+)=(?P<value>.*)$")
MERGE_ERROR = re.compile(r"^Error merging override (?P<key>[^=\s]+)=(?P<value>.*)$")  # Hydra's words


def config_dir() -> Path:
    """The YAML configs: packaged as ``gantrain/configs`` in a wheel, top-level ``configs/`` in a checkout."""
    packaged = Path(__file__).resolve().parent / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "configs"


def group_options(group: str) -> list[str]:
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def train_task(cfg: DictConfig) -> dict[str, float] | float:
    """Train; return the value ``objective`` names as a float (what sweepers such as Optuna optimise), else the last scalars."""
    from hydra.core.hydra_config import HydraConfig

    from gantrain.engine.trainer import Trainer

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if cfg.trainer.get("devices", 1) != 1 and "WORLD_SIZE" not in os.environ:
        if cfg.get("objective") is not None:
            raise UserError("objective= needs the training in this process: with trainer.devices>1, "
                            "start the sweep's jobs with torchrun instead")
        status = launch_ranks(cfg, list(hydra_cfg.overrides.task), run_dir)
        if status:
            raise SystemExit(status)
        return {}
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("resume=")]
    trainer = Trainer(cfg, run_dir, overrides)
    scalars = trainer.fit()
    objective = cfg.get("objective")
    return scalars if objective is None else objective_value(str(objective), scalars, trainer)


def objective_value(name: str, scalars: dict[str, float], trainer: Any) -> float:
    """A logged scalar's last logged value, or a metric's value: the best one when ``metrics.best`` names it
    (the value checkpoints/best.pt was kept for), else the final evaluation's (the one last.pt gets).
    """
    import json

    from gantrain.engine.evaluation import METRICS_LOG

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

    devices = cfg.trainer.devices
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise UserError(f"trainer.devices must be a positive number of processes, got {devices!r}")
    arguments = [o for o in overrides if override_key(o) != "hydra.run.dir"] + [f"hydra.run.dir={run_dir}"]
    try:
        torchrun(["--standalone", f"--nproc_per_node={devices}", "-m", "gantrain", *arguments])
    except ChildFailedError as failure:
        exitcode = failure.get_first_failure()[1].exitcode  # the root cause; the other ranks were stopped
        return 128 - exitcode if exitcode < 0 else exitcode  # killed by signal N: 128 + N, as a shell reports it
    return 0


def sample_task(cfg: DictConfig) -> Path:
    from gantrain.engine.sampling import sample

    return sample(cfg)


def eval_task(cfg: DictConfig) -> Path:
    from gantrain.engine.evaluation import evaluate_checkpoint

    return evaluate_checkpoint(cfg)


def translate_task(cfg: DictConfig) -> Path:
    from gantrain.engine.translate import translate_files

    return translate_files(cfg)


def interpolate_task(cfg: DictConfig) -> Path:
    from gantrain.engine.interpolate import interpolate

    return interpolate(cfg)


TASKS: dict[str, Callable[[DictConfig], Any]] = {"train": train_task, "sample": sample_task, "eval": eval_task,
                                                 "translate": translate_task, "interpolate": interpolate_task}


def run_task(cfg: DictConfig) -> Any:
    load_builtin_parts()
    import_plugins(cfg.get("plugins"))
    if cfg.task not in TASKS:
        raise UserError(unknown_choice("task", cfg.task, sorted(TASKS)))
    return TASKS[cfg.task](cfg)


def _split(arg: str) -> tuple[str, str] | None:
    match = OVERRIDE.match(arg)
    return (match["key"], match["value"]) if match else None


def override_key(arg: str) -> str | None:
    """The key an override sets (``hydra.run.dir`` of ``hydra.run.dir=out``), None for other arguments."""
    parsed = _split(arg)
    return parsed[0] if parsed else None


def check_group_choices(args: list[str]) -> None:
    """``model=foo`` -> one line listing the presets (Hydra's own message spans many lines); a value given to a
    key that holds options (``metrics=[fid]``, ``ema=0.999``) -> one line naming the override meant."""
    for arg in args:
        match = OVERRIDE.match(arg)
        if not match or "(" in match["value"]:
            continue
        key, value = match["key"], match["value"]
        if key not in GROUPS:  # + adds a key and ~ deletes one: neither replaces options with a value
            misplaced = misplaced_value(key, value, config_dir()) if match["prefix"] in (None, "++") else None
            if misplaced:
                raise UserError(misplaced)
            continue
        choices = group_options(key)
        listed = listed_choice(key, value, choices)
        if listed:
            raise UserError(listed)
        for choice in value.split(","):
            if choice.strip() not in choices:
                raise UserError(unknown_choice(key, choice.strip(), choices))


def resume_arguments(args: list[str]) -> list[str]:
    """``resume=RUN`` composes the run's original overrides under the new ones and writes into the same folder."""
    target = next((value for key, value in filter(None, map(_split, args)) if key == "resume"), None)
    if not target or target in ("null", "None"):
        return args
    from gantrain.engine.checkpoint import resolve_checkpoint, run_dir_of

    path, saved = resolve_checkpoint(target)
    given = {parsed[0] for parsed in map(_split, args) if parsed}
    earlier = [o for o in saved.get("overrides", []) if override_key(o) not in given]
    run_dir = run_dir_of(path)
    placement = [f"hydra.run.dir={run_dir}"] if run_dir and "hydra.run.dir" not in given else []
    return earlier + args + placement


NO_RUN_FOLDER = ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=disabled",
                 "hydra/hydra_logging=disabled"]


def sample_arguments(args: list[str]) -> list[str]:
    """Sampling, translating, interpolating and evaluating write only what ``out`` names (eval: JSON beside the
    checkpoint): no run folder, no log file."""
    if not any(f"task={task}" in args for task in ("sample", "eval", "translate", "interpolate")):
        return args
    return eval_arguments(args) + NO_RUN_FOLDER


def eval_arguments(args: list[str]) -> list[str]:
    """task=eval: ``data.KEY=VALUE`` changes the checkpoint's data config (``data.val_root=Set14``), whatever
    keys the default data preset happens to have, so such keys are added or replaced (``++``)."""
    if "task=eval" not in args:
        return args
    return [f"++{arg}" if (override_key(arg) or "").startswith("data.") and arg[0] not in "+~" else arg
            for arg in args]


def rank_arguments(args: list[str]) -> list[str]:
    """Under torchrun, ranks other than 0 make no run folder and no log file: rank 0 writes for all."""
    if int(os.environ.get("RANK", "0")) == 0:
        return args
    return [a for a in args if override_key(a) != "hydra.run.dir"] + NO_RUN_FOLDER


def one_line(error: BaseException) -> str:
    from hydra.errors import MissingConfigException
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(error, MissingMandatoryValue) and getattr(error, "full_key", None):
        return f"{error.full_key} is required: set {error.full_key}=VALUE"
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    merging = MERGE_ERROR.match(lines[0]) if lines else None
    if merging:  # a value Hydra cannot merge into the key's node (metrics=[fid] where check_group_choices missed it)
        return merge_error(merging["key"], merging["value"], error.__cause__, config_dir())
    if isinstance(error, MissingConfigException) and error.options is not None and lines:  # a config group's choice
        return f"{lines[0]}; choose from: {', '.join(error.options) or '(none installed)'}"
    text = "; ".join(line.rstrip(".") for line in lines[:2]) if lines else type(error).__name__
    return text.replace("HYDRA_FULL_ERROR=1", "debug=true")


def exit_status(error: BaseException) -> int | None:
    """2 for bad input; an error's own ``exit_status`` (a diverged run: 3); None for a bug."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, (UserError, HydraException, OmegaConfBaseException)):
        return 2
    status = getattr(error, "exit_status", None)
    return status if isinstance(status, int) else None


def report_user_error(error: BaseException, debug: bool) -> None:
    """Print a user error as one line and exit with its status; return (to re-raise) for bugs or in debug mode."""
    status = exit_status(error)
    if debug or status is None:
        return
    print(f"gantrain: error: {one_line(error)}", file=sys.stderr)
    raise SystemExit(status) from None


def _raised_by_task(error: BaseException) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code is run_task.__code__:
            return True
        traceback = traceback.tb_next
    return False


def output_folder_error(error: BaseException) -> UserError | None:
    """Hydra makes the run folder, ``.hydra/`` and its log file before any task runs; if it cannot, say so in one line.

    An OSError that did not come out of ``run_task`` is one of those writes (for the log file, logging
    wraps it in a ValueError).
    """
    from hydra.errors import MissingConfigException  # an IOError too, but about a config choice, not a folder

    cause = error.__cause__ if isinstance(error, ValueError) else error
    if not isinstance(cause, OSError) or isinstance(cause, MissingConfigException) or _raised_by_task(error):
        return None
    where = f" '{cause.filename}'" if cause.filename else ""
    return UserError(f"cannot write the output folder{where}: {cause.strerror or cause}; "
                     "choose a writable one with hydra.run.dir=PATH (hydra.sweep.dir=PATH with -m)")


_SHOW_TRACEBACKS = False  # set by main() from debug=true / HYDRA_FULL_ERROR=1


def _hydra_app() -> Any:
    import hydra

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=CONFIG_NAME)
    def app(cfg: DictConfig) -> Any:
        try:
            return run_task(cfg)
        except Exception as error:  # noqa: BLE001 - ends the job here, before Hydra adds its own report
            report_user_error(error, debug=_SHOW_TRACEBACKS or bool(cfg.get("debug")))
            raise

    return app()


def main(argv: list[str] | None = None) -> Any:
    global _SHOW_TRACEBACKS
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _SHOW_TRACEBACKS = "debug=true" in args or os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        check_group_choices(args)
        args = rank_arguments(sample_arguments(resume_arguments(args)))
        os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach this function; it decides what to show
        sys.argv = ["gantrain", *args]
        return _hydra_app()
    except KeyboardInterrupt:  # Ctrl-C before training (the loop handles its own): nothing to save yet
        if debug:
            raise
        print("gantrain: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:  # noqa: BLE001 - only user errors are shortened, the rest re-raised
        report_user_error(output_folder_error(error) or error, debug)
        raise
