"""The tasks a user runs with ``task=NAME``: one module each, ``gantrain/tasks/NAME.py``, with one entry
function ``run(cfg: DictConfig) -> Any``. Adding a task is adding a module; the CLI finds it by name.

A task module may declare, as plain module-level constants (read from its source, so the CLI knows them
before Hydra runs and without importing torch):
  ``WRITES_RUN_FOLDER = False``   it writes only what ``out=`` names: no run folder, no log file
  ``ADDS_KEYS_UNDER = ("data.",)``  command-line keys under these prefixes are added or replaced (``++``)
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import pkgutil
from typing import Any

from omegaconf import DictConfig

DEFAULTS = {"WRITES_RUN_FOLDER": True, "ADDS_KEYS_UNDER": ()}


def names() -> list[str]:
    """Every task there is: the modules of this package."""
    return sorted(module.name for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_"))


@functools.lru_cache(maxsize=None)
def _constants(name: str) -> dict[str, Any]:
    spec = importlib.util.find_spec(f"{__name__}.{name}") if name in names() else None
    if spec is None or not spec.origin:
        return {}
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    return {target.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name) and target.id in DEFAULTS}


def declared(name: str, constant: str) -> Any:
    """A task's declared constant (``WRITES_RUN_FOLDER``...), its default for an unknown task or one that is silent."""
    return _constants(name).get(constant, DEFAULTS[constant])


def run(name: str, cfg: DictConfig) -> Any:
    """Run task ``name``: its module's ``run(cfg)``."""
    return importlib.import_module(f"{__name__}.{name}").run(cfg)
