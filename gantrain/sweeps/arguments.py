"""Command-line arguments around sweeps, before Hydra parses them, and the exit status after a sweep.

Job folders are named by their overrides (0_optim.lr=1e-4,trainer.seed=0), so paths now hold '=' and ','
(quoted here for Hydra's override grammar); gantrain appends overrides of its own (``-m resume=SWEEP``,
``task=results``), so Hydra's flags are moved ahead of all overrides. Light imports only: this runs
before every command.
"""

from __future__ import annotations

import re
import sys

OVERRIDE = re.compile(r"^(?P<prefix>\+\+|\+|~)?(?P<key>[\w./@-]+)=(?P<value>.*)$")


def override_key(arg: str) -> str | None:
    """The key an override sets, without its prefix (``hydra.run.dir`` of ``hydra.run.dir=out``, ``model`` of
    ``+model=gan``); None for other arguments."""
    match = OVERRIDE.match(arg)
    return match["key"] if match else None

PATH_KEYS = ("resume", "checkpoint", "hydra.run.dir", "hydra.sweep.dir", "results.sweep", "out", "input", "a", "b")


def quote_paths(args: list[str]) -> list[str]:
    """A path with '=' or ',' in it (a sweep's job folder, 0_optim.lr=1e-4,trainer.seed=0) is one value, not
    Hydra syntax: quote it (``resume='SWEEP/0_optim.lr=1e-4'``) unless the user already did."""
    quoted = []
    for arg in args:
        match = OVERRIDE.match(arg)
        value = match["value"] if match else ""
        if match and match["key"] in PATH_KEYS and any(c in value for c in "=,") and value[:1] not in "'\"":
            arg = f"{match['prefix'] or ''}{match['key']}='{value}'"
        quoted.append(arg)
    return quoted


VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
               "--experimental-rerun")
INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def flags_first(args: list[str]) -> list[str]:
    """Hydra's flags (with their values) ahead of the overrides: the overrides gantrain adds after the user's
    (``-m resume=SWEEP``, task=results) must stay one run of arguments, or argparse rejects the rest."""
    flags, overrides, rest = [], [], iter(args)
    for arg in rest:
        if not arg.startswith("-"):
            overrides.append(arg)
            continue
        flags.append(arg)
        value = next(rest, None) if arg in VALUE_FLAGS or arg == "--info" else None
        if value is not None and arg == "--info" and value not in INFO_CHOICES:
            overrides.append(value)
        elif value is not None:
            flags.append(value)
    return flags + overrides


def sweep_exit_status() -> None:
    """After a sweep with failed jobs: one line, and the number of failed jobs (at most 100) as exit status."""
    if "gantrain.sweeps.callback" not in sys.modules:  # no Hydra run began, so no sweep either
        return
    from gantrain.sweeps.callback import last_sweep

    ended = dict(last_sweep)
    last_sweep.clear()  # reported: a later command in this process starts afresh
    if ended.get("failed"):
        print(f"gantrain: {ended['failed']} of {ended['jobs']} jobs failed (see {ended['sweep_dir']}/results.md)",
              file=sys.stderr)
        raise SystemExit(min(ended["failed"], 100))


def table_after_stop() -> None:
    """A sweep that stopped early (a signal, sweep.fail_fast, an error) gets its table all the same."""
    if "gantrain.sweeps.callback" in sys.modules:  # not imported: no Hydra run began, so no sweep either
        sys.modules["gantrain.sweeps.callback"].table_after_stop()
