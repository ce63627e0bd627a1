"""``gantrain task=download name=NAME``: fetch, verify and unpack a named dataset without training;
``gantrain task=download`` lists every name with its size, layout and source.

The download settings are data=NAME's (``data.download_dir``, ``data.mirror``, ``data.sha256``) when the
data preset is that dataset, else the defaults ($GANTRAIN_DATA_DIR, $GANTRAIN_DATASET_MIRROR, the table's
checksums).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from gantrain.data.catalog import CATALOG, NamedSet
from gantrain.data.download import FROM_TABLE
from gantrain.data.named import folders, lookup

WRITES_RUN_FOLDER = False  # writes into the download folder only


def size_text(entry: NamedSet) -> str:
    """'3.5 GB' (published), '~30 MB' (approximate: the source publishes no size)."""
    megabytes = entry.megabytes
    text = f"{megabytes / 1000:.1f} GB" if megabytes >= 1000 else f"{megabytes:.0f} MB"
    return text if entry.sized else f"~{text}"


def listing() -> str:
    """One line per name: name, size, layout, source."""
    rows = [(name, size_text(entry), entry.layout if entry.layout != "sr_val" else "sr (data.val=NAME)",
             entry.source) for name, entry in CATALOG.items()]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(f"{n:<{widths[0]}}  {s:>{widths[1]}}  {layout:<{widths[2]}}  {source}"
                     for n, s, layout, source in rows)


def run(cfg: DictConfig) -> Any:
    """Download ``name`` (or data=NAME's dataset), printing where its folders are; no name: list them all."""
    data = cfg.get("data") or {}
    name = cfg.get("name") or (data.get("name") if data.get("name") in CATALOG else None)
    if name is None:
        print(listing())
        print("fetch one with: gantrain task=download name=NAME (train on it with data=NAME)")
        return None
    entry = lookup(str(name))
    own = data.get("name") == name  # data=NAME on the command line: its download options apply
    located = folders(entry, data.get("download_dir") if own else None, data.get("mirror") if own else None,
                      data.get("sha256", FROM_TABLE) if own else FROM_TABLE)
    for option, folder in located.items():
        print(f"{name}: {option.replace('_root', '') if option != 'root' else 'data'} in {folder}")
    return Path(next(iter(located.values())))
