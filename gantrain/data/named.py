"""Datasets by name (``data=facades``, ``data=div2k data.val=set14``): downloaded once, then read by their layout.

Each name in the table of sources (gantrain/data/catalog.py) is a registered dataset whose builder makes
sure the archives are unpacked under ``data.download_dir`` and then hands the layout's own builder
(paired, unpaired, sr, image_folder) the folders it needs, with every other option unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from gantrain.data.catalog import CATALOG, SR_VAL_SETS, NamedSet
from gantrain.data.download import FROM_TABLE, prepare
from gantrain.data.source import DataSource
from gantrain.errors import UserError
from gantrain.registry import DATASETS, unknown_choice


def lookup(name: str) -> NamedSet:
    """The table's entry for ``name``, or a one-line error listing every name."""
    if name not in CATALOG:
        raise UserError(unknown_choice("dataset", name, sorted(CATALOG)))
    return CATALOG[name]


def folders(entry: NamedSet, download_dir: str | None, mirror: str | None, sha256: object) -> dict[str, str]:
    """The layout options (root, lr_root, val_root) pointing into the unpacked archives of ``entry``."""
    root = prepare(entry, download_dir, mirror, sha256)
    return {option: str(root / path) for option, path in entry.paths.items()}


def split_pins(sha256: object, entry: NamedSet) -> tuple[object, object]:
    """``data.sha256`` as (the rest's, ``entry``'s): a mapping {FILE: DIGEST} may pin the archives of both the
    training set and its named val set; a single digest is the training set's; null skips both."""
    if not isinstance(sha256, Mapping):
        return sha256, (None if sha256 is None else FROM_TABLE)
    own = {archive.filename for archive in entry.archives}
    rest = {key: value for key, value in sha256.items() if key not in own}
    mine = {key: value for key, value in sha256.items() if key in own}
    return rest or FROM_TABLE, mine or FROM_TABLE


def _check_val(val: str | None, val_root: str | None, entry: NamedSet) -> None:
    """``data.val=NAME`` names an SR benchmark, for an SR set, without ``data.val_root`` (both would be ambiguous):
    checked before anything is downloaded."""
    if val is None:
        return
    if entry.layout != "sr":
        raise UserError(f"data.val={val} names an SR benchmark; data={entry.name} is {entry.layout} data")
    if val not in SR_VAL_SETS:
        raise UserError(unknown_choice("data.val", val, list(SR_VAL_SETS)))
    if val_root is not None:
        raise UserError(f"data.val={val} and data.val_root={val_root} both name the held-out images; set one, "
                        "the other to null")


def build_named(name: str, download_dir: str | None = None, mirror: str | None = None, sha256: object = FROM_TABLE,
                val: str | None = None, held_out_only: bool = False, **options: Any) -> DataSource:
    """Fetch ``name`` once, then build its layout from the unpacked folders and the other options."""
    entry = lookup(name)
    for option, value in entry.fixed.items():
        if options.get(option, value) != value:
            siblings = [n for n, e in CATALOG.items() if e.layout == entry.layout and e.source == entry.source]
            raise UserError(f"data={name} holds files made for data.{option}={value}, not {options[option]}; keep "
                            f"{value} or pick another of {', '.join(siblings)}")
    _check_val(val, options.get("val_root"), entry)
    val_sha256 = FROM_TABLE
    if val is not None:
        sha256, val_sha256 = split_pins(sha256, CATALOG[val])
    given = {key: options.pop(key) for key in entry.paths if options.get(key) is not None}
    located = {} if "root" in given else folders(entry, download_dir, mirror, sha256)  # data.root=PATH: a copy of one's own
    located.update(given)
    if val is not None:
        located["val_root"] = folders(CATALOG[val], download_dir, mirror, val_sha256)["val_root"]
    return DATASETS.build(entry.layout, {**options, **located}, held_out_only=held_out_only)


for _name, _entry in CATALOG.items():
    if _entry.layout != "sr_val":  # the SR benchmarks are held-out sets only: data.val=NAME
        DATASETS.register(_name)(partial(build_named, _name))
