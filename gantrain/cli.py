"""The ``gantrain`` command: Hydra composes the config, a task (gantrain/tasks/NAME.py for task=NAME) runs it.

Errors the user can fix are printed as one line with exit status 2 (3 for a run
that diverged, 130 for Ctrl-C before training starts); ``debug=true`` or
``HYDRA_FULL_ERROR=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from gantrain import tasks
from gantrain.config_shapes import MOVED_KEYS, listed_choice, merge_error, misplaced_value, moved_key
from gantrain.errors import UserError
from gantrain.registry import import_plugins, load_builtin_parts, unknown_choice
from gantrain.sweeps.arguments import (OVERRIDE, flags_first, override_key, quote_paths, sweep_exit_status,
                                      table_after_stop)

CONFIG_NAME = "gantrain"
GROUPS = ("model", "loss", "data", "optim", "device", "trainer", "augment")
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


def run_task(cfg: DictConfig) -> Any:
    """``task=NAME``: the module gantrain/tasks/NAME.py runs the job."""
    load_builtin_parts()
    import_plugins(cfg.get("plugins"))
    if cfg.task not in tasks.names():
        raise UserError(unknown_choice("task", cfg.task, tasks.names()))
    if not tasks.declared(cfg.task, "WRITES_RUN_FOLDER"):
        log_to_stderr()
    return tasks.run(cfg.task, cfg)


def log_to_stderr() -> None:
    """A task without a run folder has no log file: its progress lines and warnings go to stderr.

    Hydra's ``job_logging=disabled`` also disables loggers made before it (a callback's), so this one is
    switched back on.
    """
    import logging

    log = logging.getLogger("gantrain")
    log.disabled = False
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("gantrain: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _split(arg: str) -> tuple[str, str] | None:
    match = OVERRIDE.match(arg)
    return (match["key"], match["value"]) if match else None


def check_group_choices(args: list[str]) -> None:
    """``model=foo`` -> one line listing the presets (Hydra's own message spans many lines); a value given to a
    key that holds options (``metrics=[fid]``, ``ema=0.999``) -> one line naming the override meant."""
    for arg in args:
        match = OVERRIDE.match(arg)
        moved = moved_key(match["key"], match["value"]) if match else None
        if moved:  # also a sweep's choice(...) of it
            raise UserError(moved)
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
    target = next((value.strip("'\"") for key, value in filter(None, map(_split, args)) if key == "resume"), None)
    if not target or target in ("null", "None"):
        return args
    from gantrain.sweeps.plan import is_sweep_folder

    if is_sweep_folder(target):  # -m resume=SWEEP_DIR: the same jobs again (gantrain/sweeps/job.py)
        from gantrain.sweeps.job import resume_sweep_arguments

        return resume_sweep_arguments(args, target)
    from gantrain.engine.checkpoint import resolve_checkpoint, run_dir_of

    path, saved = resolve_checkpoint(target)
    given = {parsed[0] for parsed in map(_split, args) if parsed}
    earlier = [moved_override(o) for o in saved.get("overrides", [])]
    earlier = [o for o in earlier if override_key(o) not in given]
    run_dir = run_dir_of(path)
    placement = [f"hydra.run.dir={run_dir}"] if run_dir and "hydra.run.dir" not in given else []
    return earlier + args + placement


def moved_override(arg: str) -> str:
    """An override of a run saved before its key moved, with the key's new name (``trainer.n_critic=5`` ->
    ``model.n_critic=5``), so the run resumes as it was started."""
    match = OVERRIDE.match(arg)
    if not match or match["key"] not in MOVED_KEYS:
        return arg
    return f"{match['prefix'] or ''}{MOVED_KEYS[match['key']][0]}={match['value']}"


NO_RUN_FOLDER = ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=disabled",
                 "hydra/hydra_logging=disabled"]


def task_of(args: list[str]) -> str:
    """The task the command line asks for (the last ``task=``), else the config's default, train."""
    return next((value for key, value in reversed(list(filter(None, map(_split, args)))) if key == "task"), "train")


def sample_arguments(args: list[str]) -> list[str]:
    """A task that writes only what ``out`` names (sample, translate, eval...: ``WRITES_RUN_FOLDER = False`` in its
    module) gets no run folder and no log file; keys the task adds (``ADDS_KEYS_UNDER``) are added or replaced."""
    task = task_of(args)
    prefixes = tuple(tasks.declared(task, "ADDS_KEYS_UNDER"))
    if prefixes:  # task=eval: data.KEY=VALUE changes the checkpoint's data config (data.val_root=Set14), whatever
        args = [f"++{arg}" if (override_key(arg) or "").startswith(prefixes) and arg[0] not in "+~" else arg
                for arg in args]  # keys the default data preset happens to have
    return args if tasks.declared(task, "WRITES_RUN_FOLDER") else args + NO_RUN_FOLDER


def results_arguments(args: list[str]) -> list[str]:
    """task=results: ``sweep=DIR`` is ``results.sweep=DIR`` (``sweep`` alone names the sweep config group)."""
    if "task=results" not in args:
        return args
    return [f"results.{arg}" if override_key(arg) == "sweep" and arg[0] not in "+~" else arg for arg in args]


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

    from gantrain.sweeps.job import in_sweep, job_failed
    from gantrain.sweeps.plan import register_resolvers

    register_resolvers()  # ${gantrain_job_folder:} names the job folders of a sweep

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=CONFIG_NAME)
    def app(cfg: DictConfig) -> Any:
        try:
            return run_task(cfg)
        except Exception as error:  # noqa: BLE001 - ends the job here, before Hydra adds its own report
            debug = _SHOW_TRACEBACKS or bool(cfg.get("debug"))
            if not debug and in_sweep():  # recorded as failed; the sweep goes on (gantrain/sweeps/job.py)
                status = exit_status(error)
                return job_failed(cfg, error, one_line(error) if status is not None else None, status)
            report_user_error(error, debug=debug)
            raise

    return app()


def main(argv: list[str] | None = None) -> Any:
    global _SHOW_TRACEBACKS
    args = list(sys.argv[1:] if argv is None else argv)
    asked = os.environ.get("HYDRA_FULL_ERROR")  # the user's; ours below is for this call only (tests call main often)
    debug = _SHOW_TRACEBACKS = "debug=true" in args or asked == "1"
    try:
        args = results_arguments(args)
        check_group_choices(args)
        args = flags_first(quote_paths(rank_arguments(sample_arguments(resume_arguments(args)))))  # sweeps/arguments.py
        os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach this function; it decides what to show
        sys.argv = ["gantrain", *args]
        try:
            returned = _hydra_app()
        finally:  # a sweep stopped by a signal, sweep.fail_fast or an error: its results table is brought up to date
            table_after_stop()
        sweep_exit_status()
        return returned
    except KeyboardInterrupt:  # Ctrl-C before training (the loop handles its own): nothing to save yet
        if debug:
            raise
        print("gantrain: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:  # noqa: BLE001 - only user errors are shortened, the rest re-raised
        report_user_error(output_folder_error(error) or error, debug)
        raise
    finally:
        if asked is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = asked
