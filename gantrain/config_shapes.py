"""Which config keys hold a group of options, read from the YAML files, for the one-line errors of the CLI.

``metrics=[fid]`` or ``ema=0.999`` give a value to a key that holds options (``metrics.names``,
``ema.decay``). Hydra either fails with "Error merging override metrics=[fid]" or, for a scalar, silently
replaces the options, and the run crashes later. Reading every YAML under configs/ (each placed where its
``# @package`` line puts it) tells, before Hydra runs, which keys hold options and which option was meant.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")
NULLS = ("null", "~", "None", "")
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: ~10x faster
#: keys that moved (old -> new, why): the old key on the command line is a one-line error naming the new one,
#: and a checkpoint saved with the old key resumes as if it had the new one
MOVED_KEYS = {"trainer.n_critic": ("model.n_critic", "critic steps per generator step are an option of the model "
                                                     "presets that train a critic; model=wgan_gp has 5")}


@functools.lru_cache(maxsize=4)
def _shapes(config_root: Path) -> dict[str, list[Any]]:
    """Every dotted key of every config file -> the values files give it (dicts as dicts), in file order.

    The primary config comes first, then each group folder's own files before its subfolders', so the
    first value seen for a key is the one a reader finds first.
    """
    shapes: dict[str, list[Any]] = {}
    for text, package in _config_files(config_root):
        content = yaml.load(text, Loader=SAFE_LOADER) or {}
        if isinstance(content, dict):
            content.pop("defaults", None)
            _record(shapes, package, content)
    return shapes


def _config_files(config_root: Path) -> Iterator[tuple[str, str]]:
    """(a file's text, the dotted package its content lands in) for the primary config and every group's files."""
    files = sorted(config_root.rglob("*.yaml"), key=lambda p: (len(p.relative_to(config_root).parts), str(p)))
    for path in files:
        group = path.parent.relative_to(config_root).as_posix()
        package = "" if group == "." else group.replace("/", ".")
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines()[:5]:
            header = PACKAGE.match(line)
            if header:
                package = {"_global_": "", "_group_": package}.get(header[1], header[1])
        yield text, package


def _record(shapes: dict[str, list[Any]], prefix: str, node: Any) -> None:
    if prefix:
        shapes.setdefault(prefix, []).append(node)
    if isinstance(node, dict):
        for key, value in node.items():
            _record(shapes, f"{prefix}.{key}" if prefix else str(key), value)


def options_of(key: str, config_root: Path) -> dict[str, Any] | None:
    """The options (name -> first default seen) of ``key`` when every file that sets it makes it a group of
    options; None when some file gives it a value, or none sets it."""
    values = _shapes(config_root).get(key)
    if not values or not all(isinstance(value, dict) for value in values):
        return None
    options: dict[str, Any] = {}
    for value in values:
        for name, default in value.items():
            options.setdefault(str(name), default)
    return options


def moved_key(key: str, value: str) -> str | None:
    """A one-line error for a key that has moved (``trainer.n_critic`` -> ``model.n_critic``); None otherwise."""
    if key not in MOVED_KEYS:
        return None
    new, why = MOVED_KEYS[key]
    return f"{key} has moved: set {new}={value or 'VALUE'} instead ({why})"


def _pop(node: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node:
        return False, None
    return True, node.pop(last)


def with_moved_keys(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A saved (resolved) config with each moved key's value at its new place, where ``current`` has that place
    (a run saved before ``trainer.n_critic`` moved resumes with its value as ``model.n_critic``)."""
    import copy

    saved = copy.deepcopy(saved)
    for old, (new, _) in MOVED_KEYS.items():
        found, value = _pop(saved, old)
        *parents, last = new.split(".")
        here, there = current, saved
        for part in parents:
            here, there = (here or {}).get(part), (there or {}).get(part)
        if found and isinstance(here, dict) and last in here and isinstance(there, dict):
            there.setdefault(last, value)
    return saved


def list_items(value: str) -> list[str]:
    """``[fid, kid]`` -> ["fid", "kid"]; a single value -> [value]."""
    inner = value.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    return [item.strip().strip("'\"") for item in inner.split(",") if item.strip()]


def _option_for(value: str, options: dict[str, Any]) -> tuple[str, str] | None:
    """(option, value) the user most likely meant: an option whose default has the value's shape
    (a list, or one value; ``name`` for a bare word), or the one list option a single value belongs in."""
    is_list = value.strip().startswith("[")
    same_shape = [name for name, default in options.items()
                  if not isinstance(default, dict) and isinstance(default, list) == is_list]
    if not is_list and "name" in same_shape and re.fullmatch(r"[A-Za-z_][\w.-]*", value.strip()):
        return "name", value
    if len(same_shape) == 1:
        return same_shape[0], value
    lists = [name for name, default in options.items() if isinstance(default, list)]
    if not is_list and len(lists) == 1:
        return lists[0], f"[{value}]"
    return None


def misplaced_value(key: str, value: str, config_root: Path) -> str | None:
    """A one-line error for a value given to a key that holds options, naming the override that was meant
    (``metrics is a group of options, not a value: set metrics.names=[fid]``); None when the value fits.

    A dict (``{...}``) or null is a fine value for a group of options (``regularizers.r1=null`` turns one off).
    """
    if value.strip() in NULLS or value.strip().startswith("{"):
        return None
    options = options_of(key, config_root)
    if not options:
        return None
    lead = f"{key} is a group of options, not a value"
    meant = _option_for(value, options)
    if meant is not None:
        return f"{lead}: set {key}.{meant[0]}={meant[1]}"
    named = [item for item in list_items(value) if isinstance(options.get(item), dict)]
    if named:  # regularizers=[gradient_penalty]: entries that hold options of their own
        inner = options_of(f"{key}.{named[0]}", config_root) or {}
        option, default = next(iter(inner.items()), ("OPTION", "VALUE"))
        prefix = "" if (config_root / key.split(".")[0]).is_dir() else "++"  # outside a group a preset may lack it
        return f"{lead}: set each entry's options, e.g. {prefix}{key}.{named[0]}.{option}={default}"
    return f"{lead}: set one of its options as {key}.OPTION={value} (options: {', '.join(options)})"


def listed_choice(group: str, value: str, choices: list[str]) -> str | None:
    """``loss=[hinge]``: a config group takes one preset's name, not a list; None for any other value."""
    if not value.strip().startswith("["):
        return None
    example = next((item for item in list_items(value) if item in choices), choices[0] if choices else "NAME")
    return (f"{group} is a group of presets, not a list: pick one, e.g. {group}={example} "
            f"(choose from: {', '.join(choices)}); set its options as {group}.KEY=VALUE")


def merge_error(key: str, value: str, cause: BaseException | None, config_root: Path) -> str:
    """Hydra's "Error merging override KEY=VALUE" (a list given to a group of options that the files do not
    show, e.g. one a plugin adds) in one line with the fix."""
    if cause is not None and "Cannot merge DictConfig with" in str(cause):
        return misplaced_value(key, value, config_root) or \
            f"{key} is a group of options, not a value: set one of its options as {key}.OPTION={value}"
    reason = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else "it does not fit"
    return f"cannot set {key}={value}: {reason}"
