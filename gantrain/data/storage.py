"""``data.storage``: where decoded pixels live - in each process's memory, or in one memory-mapped cache file.

``memory`` decodes every image once into uint8 tensors held by the process (what every image layout did
before). ``disk`` decodes them once into a cache folder (``.gantrain-cache/`` next to the data, or
``data.cache_dir``) and maps it with ``numpy.memmap``: every process and every data-parallel rank reads the
same pages through the operating system's page cache, which also evicts them under memory pressure, so a
dataset larger than RAM trains and a process's own memory does not grow with the dataset. ``auto`` keeps
memory while the decoded size (times the processes on this machine) is under ``MEMORY_SHARE`` of the
available RAM and under ``data.cache_max_gb``, else disk, and logs which and why.

A cache entry is a folder named by the layout, the preprocessing that shapes the stored arrays and the data
folder; it holds one flat uint8 file per part (the A and B halves of a pair...), each image's offset and
shape (``partK.table.npy``), and ``index.json`` with a fingerprint of the files (paths, sizes, mtimes): a
changed, added or removed file rebuilds it. It is built under a temporary name and renamed when complete
(a half-written cache is never read), by the first process to take its lock file: other processes and
ranks wait on the lock, then map what it built.

The layouts do not know which storage they use: they hand ``Storage.banks`` their files and a function
decoding one file into its parts, and get image banks back (gantrain/data/image_bank.py).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gantrain.data.image_bank import ImageBank, decode_all, offset_table
from gantrain.data.lock import one_at_a_time
from gantrain.errors import UserError
from gantrain.options import positive_number
from gantrain.registry import unknown_choice

log = logging.getLogger("gantrain")

STORAGES = ("auto", "memory", "disk")
MEMORY_SHARE = 0.5  # auto: memory while the decoded images (all local processes) take under this share of available RAM
CACHE_FOLDER = ".gantrain-cache"  # next to the data unless data.cache_dir says where
CACHE_FORMAT = 1  # bumped when the cache's layout on disk changes: older caches are rebuilt
CHUNK = 64  # images decoded at a time while a cache is written: the build holds no more than these
GB = 1e9

Prepare = Callable[[Path], Sequence[torch.Tensor]]  # one file -> its parts, uint8 (C, H, W) each


def available_memory() -> int:
    """Bytes of RAM the system can give without swapping (Linux's MemAvailable; free pages elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def local_processes() -> int:
    """Training processes on this machine (torchrun's LOCAL_WORLD_SIZE): in memory mode each holds a copy."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gantrain" / "storage"


def fingerprint(files: Sequence[Path]) -> str:
    """A hash of the files' paths, sizes and modification times: any change to the data changes it."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:60]


class Storage:
    """Builds image banks for the layouts, in memory or from a memory-mapped cache (``data.storage``)."""

    def __init__(self, mode: str = "auto", cache_dir: str | None = None, max_gb: float | None = None,
                 data_root: Path | None = None) -> None:
        """``data_root``: the data's folder, which receives ``.gantrain-cache`` unless ``cache_dir`` is given."""
        if mode not in STORAGES:
            raise UserError(unknown_choice("data.storage", mode, list(STORAGES)))
        self.mode = mode
        self.cache_dir = Path(str(cache_dir)).expanduser() if cache_dir is not None else None
        self.max_gb = positive_number(max_gb, "data.cache_max_gb") if max_gb is not None else None
        self.data_root = data_root
        self.held = 0  # bytes this storage has decoded into memory so far (auto and the cap count them)

    # --- choosing -------------------------------------------------------------------------------

    def choose(self, nbytes: int, what: str) -> str:
        """``memory`` or ``disk`` for ``nbytes`` more decoded bytes; memory over data.cache_max_gb is an error."""
        size = f"{what} take {nbytes / GB:.3g} GB decoded (uint8)"
        total = self.held + nbytes
        over_cap = self.max_gb is not None and total > self.max_gb * GB
        if self.mode == "memory" and over_cap:
            raise UserError(f"{size}, over data.cache_max_gb={self.max_gb:g}; raise it, or set data.storage=disk "
                            "(a memory-mapped cache on disk)")
        if self.mode == "memory":
            log.info("data.storage=memory: %s", size)
        if self.mode != "auto":
            return self.mode
        copies, available = local_processes(), available_memory()
        share = total * copies / max(available, 1)
        held = f"{copies} processes x " if copies > 1 else ""
        if over_cap:
            mode, why = "disk", f"over data.cache_max_gb={self.max_gb:g}"
        elif share < MEMORY_SHARE:
            mode, why = "memory", f"{held}{total / GB:.3g} GB is {share:.0%} of the {available / GB:.3g} GB of RAM " \
                                  f"available, under {MEMORY_SHARE:.0%}"
        else:
            mode, why = "disk", f"{held}{total / GB:.3g} GB is {share:.0%} of the {available / GB:.3g} GB of RAM " \
                                f"available, over {MEMORY_SHARE:.0%}"
        log.info("data.storage=auto chose %s: %s; %s (data.storage=memory|disk decides)", mode, size, why)
        return mode

    # --- the banks ------------------------------------------------------------------------------

    def banks(self, files: Sequence[Path], prepare: Prepare, key: Mapping[str, Any], names: Sequence[str],
              what: str, nbytes: int | None = None) -> list[ImageBank]:
        """One bank per part of ``prepare(file)``, from memory or the cache, whichever this storage picks.

        ``key`` names the layout and every option that shapes the stored arrays (sizes, channels): a cache
        made with other values is never used. ``nbytes``: the decoded size when the layout knows it from the
        files' headers; else it is estimated from the first file.
        """
        files = list(files)
        if self.mode == "disk":  # a cache already built is mapped without decoding anything
            return self._mapped(files, prepare, key, names, what, nbytes)
        first = None
        if nbytes is None:
            first, nbytes = _estimate(files, prepare)
        if self.choose(nbytes, what) == "memory":
            self.held += nbytes
            rest = decode_all(files[1:] if first is not None else files, prepare)
            decoded = ([first] if first is not None else []) + [list(parts) for parts in rest]
            return [ImageBank.from_images([parts[k] for parts in decoded], names) for k in range(len(decoded[0]))]
        return self._mapped(files, prepare, key, names, what, nbytes)

    def bank(self, files: Sequence[Path], prepare: Callable[[Path], torch.Tensor], key: Mapping[str, Any],
             names: Sequence[str], what: str, nbytes: int | None = None) -> ImageBank:
        """``banks`` for a layout whose files decode into one image each."""
        return self.banks(files, lambda path: (prepare(path),), key, names, what, nbytes)[0]

    # --- the cache ------------------------------------------------------------------------------

    def _root(self, files: Sequence[Path]) -> Path:
        """data.cache_dir, else ``.gantrain-cache`` in the data's folder, else (read-only data) the user's cache."""
        if self.cache_dir is not None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserError(f"data.cache_dir {self.cache_dir} cannot be created: "
                                f"{error.strerror or error}") from None
            if not os.access(self.cache_dir, os.W_OK):
                raise UserError(f"data.cache_dir {self.cache_dir} is not writable; choose another folder")
            return self.cache_dir
        data = self.data_root or Path(os.path.commonpath([str(path.resolve().parent) for path in files]))
        beside = data / CACHE_FOLDER
        try:
            beside.mkdir(exist_ok=True)
            if os.access(beside, os.W_OK):
                return beside
        except OSError:
            pass
        fallback = user_cache()
        try:
            fallback.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"data.storage=disk: neither {beside.parent} nor {fallback} is writable "
                            f"({error.strerror or error}); set data.cache_dir=PATH") from None
        log.info("data.storage=disk: %s is not writable; caching in %s instead (data.cache_dir=PATH chooses)",
                 beside.parent, fallback)
        return fallback

    def _mapped(self, files: list[Path], prepare: Prepare, key: Mapping[str, Any], names: Sequence[str],
                what: str, nbytes: int | None) -> list[ImageBank]:
        root = self._root(files)
        folder = os.path.commonpath([str(path.resolve().parent) for path in files])
        identity = json.dumps({"format": CACHE_FORMAT, "key": dict(key), "folder": folder}, sort_keys=True, default=str)
        entry = root / f"{_slug(Path(folder).name)}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
        stamp = fingerprint(files)
        waiting = f"data.storage=disk: waiting for another process to cache {what}"
        with one_at_a_time(entry.with_name(entry.name + ".lock"), waiting):
            if not _complete(entry, stamp, len(files)):
                self._build(entry, files, prepare, identity, stamp, what, nbytes)
            else:
                log.info("data.storage=disk: %s mapped from %s (%.3g GB)", what, entry, _size_of(entry) / GB)
            return _map(entry, names)

    def _build(self, entry: Path, files: list[Path], prepare: Prepare, identity: str, stamp: str, what: str,
               nbytes: int | None) -> None:
        nbytes = _estimate(files, prepare)[1] if nbytes is None else nbytes
        free = shutil.disk_usage(entry.parent).free
        if nbytes > free:
            raise UserError(f"data.storage=disk: {what} need {nbytes / GB:.3g} GB in {entry.parent}, which has "
                            f"{free / GB:.3g} GB free; free space, set data.cache_dir=PATH, or data.storage=memory")
        partial = entry.with_name(f".{entry.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        started = time.perf_counter()
        log.info("data.storage=disk: decoding %s once into %s", what, entry)
        try:
            partial.mkdir()
            parts = _write(partial, files, prepare)
            (partial / "index.json").write_text(json.dumps(
                {"identity": json.loads(identity), "fingerprint": stamp, "count": len(files), "parts": parts}, indent=1))
            shutil.rmtree(entry, ignore_errors=True)  # a stale build (other files): processes mapping it keep their pages
            partial.rename(entry)
        except OSError as error:
            shutil.rmtree(partial, ignore_errors=True)
            reason = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else error.strerror or str(error)
            raise UserError(f"data.storage=disk: caching {what} in {entry.parent} failed ({reason}); the partial "
                            "cache was removed; free space, set data.cache_dir=PATH, or data.storage=memory") from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        log.info("data.storage=disk: cached %s (%.3g GB) in %.1f s", what, _size_of(entry) / GB,
                 time.perf_counter() - started)


def _estimate(files: Sequence[Path], prepare: Prepare) -> tuple[list[torch.Tensor], int]:
    """The first file's parts, and the decoded size of all the files were they all like it."""
    first = list(prepare(files[0]))
    return first, sum(part.numel() for part in first) * len(files)


def _complete(entry: Path, stamp: str, count: int) -> bool:
    """Whether ``entry`` is a finished cache of exactly these files."""
    try:
        index = json.loads((entry / "index.json").read_text())
    except (OSError, ValueError):
        return False
    if index.get("fingerprint") != stamp or index.get("count") != count:
        log.info("data.storage=disk: the files under %s changed since %s was cached; rebuilding it",
                 index.get("identity", {}).get("folder", "the data"), entry)
        return False
    return True


def _write(folder: Path, files: list[Path], prepare: Prepare) -> int:
    """Decode ``files`` a chunk at a time, appending each part's pixels to its flat file; then the tables.

    Returns the number of parts."""
    handles: list[Any] = []
    shapes: list[list[tuple[int, ...]]] = []
    try:
        for start in range(0, len(files), CHUNK):
            for parts in decode_all(files[start:start + CHUNK], prepare):
                if not handles:
                    handles = [open(folder / f"part{k}.u8", "wb") for k in range(len(parts))]
                    shapes = [[] for _ in parts]
                for handle, part, part_shapes in zip(handles, parts, shapes):
                    handle.write(memoryview(part.contiguous().numpy()).cast("B"))
                    part_shapes.append(tuple(part.shape))
        for handle in handles:
            handle.flush()
            os.fsync(handle.fileno())  # the pixels are on disk before the rename makes the cache visible
    finally:
        for handle in handles:
            handle.close()
    for k, part_shapes in enumerate(shapes):
        np.save(folder / f"part{k}.table.npy", offset_table(part_shapes).numpy())
    return len(shapes)


def _map(entry: Path, names: Sequence[str]) -> list[ImageBank]:
    """The cache's parts as banks over read-only-in-practice private mappings (copy-on-write: never copied)."""
    banks = []
    for k in range(json.loads((entry / "index.json").read_text())["parts"]):
        table = torch.from_numpy(np.load(entry / f"part{k}.table.npy"))
        pixels = torch.from_numpy(np.memmap(entry / f"part{k}.u8", dtype=np.uint8, mode="c"))
        shapes = table[:, 1:]
        if bool((shapes == shapes[0]).all()):
            banks.append(ImageBank(names, stacked=pixels.view(len(table), *shapes[0].tolist()), mapped=True))
        else:
            banks.append(ImageBank(names, flat=pixels, table=table, mapped=True))
    return banks


def _size_of(entry: Path) -> int:
    return sum(path.stat().st_size for path in entry.iterdir())
