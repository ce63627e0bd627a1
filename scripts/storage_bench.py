#!/usr/bin/env python
"""data.storage=memory vs disk: training speed, resident memory, and random crops from mapped 2K photos.

Run through ``python scripts/bench.py --storage`` (or this file directly). Three measurements, each short:

  speed    pix2pix 256 b1 and SRResNet 128-crop b16 (the papers' networks) on synthetic files: end-to-end
           images/s of ``stream.next()`` + the recipe's ``train_step``, memory and disk (page cache warm)
           taking turns over ``--rounds`` rounds; and the data path alone (``stream.next()``) per batch.
  memory   a fresh process per case builds 286x286 data (``--images`` files, and a tenth of them),
           cuts one epoch of 256 crops (every page read), and reports its peak RSS (VmHWM), its private
           memory (RssAnon) and the mapped file pages it has touched (RssFile: page cache, shared by every
           process mapping the file, dropped by the kernel under memory pressure; not a copy of its own).
  sr2k     16 crops of 128 (b16) from ``--photos`` 2040x1356 photos: in memory, and mapped from disk with the
           page cache of the cache file warm and evicted (posix_fadvise DONTNEED on that one file), vs one
           SR step. The SR networks are the CPU demo's size (SRResNet 32 features, 8 blocks).

    python scripts/bench.py --storage                       # all three, a table on stdout
    python scripts/storage_bench.py --only memory --images 2000 --json storage.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench import SR_CPU_SIZE, RecipeLoop, load_size, write_hr_folder, write_translation  # noqa: E402

MODES = ("memory", "disk")
MB = 2**20
DATA_BATCHES = 200  # batches per mode of the data-path-alone timing


def smooth_photos(count: int, height: int, width: int, seed: int = 0) -> Any:
    """``count`` smooth random RGB pictures (upscaled noise: quick to encode, sized like photos' JPEGs)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for _ in range(count):
        small = Image.fromarray(rng.integers(0, 256, (max(height // 8, 1), max(width // 8, 1), 3), dtype=np.uint8))
        yield small.resize((width, height), Image.BILINEAR)


def write_jpegs(folder: Path, count: int, height: int, width: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(smooth_photos(count, height, width)):
        image.save(folder / f"{index:05d}.jpg", quality=90)
    return folder


# --- speed ----------------------------------------------------------------------------------------------


def trainers(preset: str, overrides: list[str], batch_size: int, cache_dir: Path, runs: Path) -> dict[str, Any]:
    """One Trainer per storage mode, from the composed config as the gantrain command builds it."""
    from hydra import compose, initialize_config_dir

    from gantrain.cli import CONFIG_NAME, config_dir
    from gantrain.engine.trainer import Trainer
    from gantrain.registry import load_builtin_parts

    load_builtin_parts()
    built = {}
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for mode in MODES:
            cfg = compose(config_name=CONFIG_NAME, overrides=[
                f"model={preset}", "device=cpu", f"trainer.batch_size={batch_size}", "trainer.progress=false",
                "trainer.max_epochs=null", "trainer.max_steps=100000", *overrides, f"data.storage={mode}", f"data.cache_dir={cache_dir}"])
            built[mode] = Trainer(cfg, runs / mode)
    return built


def speed(name: str, preset: str, overrides: list[str], batch_size: int, work: Path, rounds: int,
          steps: int) -> dict[str, Any]:
    """End-to-end images/s per mode (the same networks, each mode's own stream), taking turns; and data alone."""
    built = trainers(preset, overrides, batch_size, work / "cache", work / "runs" / name)
    recipe = built["memory"].recipe
    loops = {mode: RecipeLoop(recipe, built[mode].stream.next, torch.device("cpu")) for mode in MODES}
    for loop in loops.values():
        loop.train(1)  # warm-up: allocations, optimizer state, the mapped pages read once
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_index in range(rounds):
        for mode in (MODES if round_index % 2 == 0 else MODES[::-1]):
            started = time.perf_counter()
            loops[mode].train(steps)
            seconds[mode].append(time.perf_counter() - started)
    data: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(DATA_BATCHES):  # the data path alone, the modes alternating batch by batch (a busy neighbour
        for mode in MODES:         # slows both alike; the median drops the batches it hit)
            started = time.perf_counter()
            built[mode].stream.next()
            data[mode].append(time.perf_counter() - started)
    rates = {mode: [batch_size * steps / s for s in seconds[mode]] for mode in MODES}
    data_s = {mode: statistics.median(data[mode]) for mode in MODES}
    step_s = statistics.median(seconds["memory"]) / steps
    result = {"workload": name, "batch_size": batch_size, "rounds": rounds, "steps": steps,
              **{f"{mode}_images_per_s": statistics.median(rates[mode]) for mode in MODES},
              "disk/memory": statistics.median(d / m for d, m in zip(rates["disk"], rates["memory"])),
              **{f"{mode}_data_ms_per_batch": 1e3 * data_s[mode] for mode in MODES},
              # what the data path's difference alone does to a step's rate (the end-to-end ratio without the noise)
              "disk/memory_from_data_path": step_s / (step_s + data_s["disk"] - data_s["memory"])}
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def speed_all(work: Path, rounds: int, steps: int) -> list[dict[str, Any]]:
    pairs = write_translation(work / "paired", paired=True, size=load_size(256))
    hr = write_hr_folder(work / "hr", 128)
    return [speed("pix2pix_256_b1", "pix2pix", ["data=paired", f"data.root={pairs}", "data.crop_size=256",
                                                f"data.load_size={load_size(256)}"], 1, work, rounds, steps),
            speed("srresnet_128_b16", "srresnet", ["data=sr", f"data.root={hr}", "data.hr_size=128", "data.repeat=4",
                                                   *SR_CPU_SIZE["srresnet"]], 16, work, rounds, max(1, steps // 2))]


# --- memory (one fresh process per case) -------------------------------------------------------------------


def status_mb() -> dict[str, float]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            values[key] = int(line.split()[1]) / 1024
    return values


def memory_probe(mode: str, root: str, cache: str) -> dict[str, float]:
    """Inside a fresh process: build 286x286 data from ``root``, read one epoch of 256 crops, report memory."""
    from gantrain.data.build import build_data
    from gantrain.data.stream import BatchStream
    from gantrain.registry import load_builtin_parts
    from omegaconf import OmegaConf

    load_builtin_parts()
    before = status_mb()
    source = build_data(OmegaConf.create({"name": "unpaired", "root": root, "load_size": 286, "crop_size": 256,
                                          "storage": mode, "cache_dir": cache}))
    stream = BatchStream.from_config(source, {"on_device": False}, 16, seed=0, device=torch.device("cpu"))
    for _ in range(len(source.dataset) // 16):
        stream.next()
    after = status_mb()
    return {**after, "RssAnon_growth": after["RssAnon"] - before["RssAnon"], "images": len(source.dataset.a)}


def write_unpaired(root: Path, count: int) -> Path:
    """trainA/ with ``count`` 286x286 JPEGs and a small trainB/ (the probe reads A's epoch)."""
    write_jpegs(root / "trainA", count, 286, 286)
    write_jpegs(root / "trainB", 16, 286, 286)
    return root


def run_probe(mode: str, root: Path, cache: Path) -> dict[str, float]:
    result = subprocess.run([sys.executable, __file__, "--probe", mode, str(root), str(cache)], check=True,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_all(work: Path, images: int) -> list[dict[str, Any]]:
    small, large = write_unpaired(work / f"n{images // 10}", images // 10), write_unpaired(work / f"n{images}", images)
    rows = []
    for mode in MODES:
        for root in (small, large):
            if mode == "disk":
                run_probe(mode, root, work / "cache")  # builds the cache: the measured run maps it
            row = {"mode": mode, **run_probe(mode, root, work / "cache")}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


# --- random crops from mapped 2K photos ---------------------------------------------------------------------


def evict(folder: Path) -> None:
    """Drop one cache's pages from the page cache (just those files: nobody else's data is touched)."""
    for path in folder.rglob("*.u8"):
        with open(path, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def sr2k(work: Path, photos: int, rounds: int) -> dict[str, Any]:
    """Data time of b16 128-crops (with the LR made on the batch) from mapped 2040x1356 photos, warm and cold."""
    write_jpegs(work / "div2k", photos, 1356, 2040)
    built = trainers("srresnet", ["data=sr", f"data.root={work / 'div2k'}", "data.hr_size=128", "data.repeat=100",
                                  *SR_CPU_SIZE["srresnet"]], 16, work / "cache", work / "runs" / "sr2k")
    stream = built["disk"].stream
    loop = RecipeLoop(built["disk"].recipe, stream.next, torch.device("cpu"))
    loop.train(1)
    times: dict[str, list[float]] = {"memory": [], "warm": [], "cold": []}
    for path in (work / "cache").rglob("*.u8"):  # the whole cache in the page cache: warm
        path.read_bytes()
    for _ in range(rounds):  # warm: memory and disk taking turns
        for state, source in (("warm", stream), ("memory", built["memory"].stream)):
            started = time.perf_counter()
            source.next()
            times[state].append(time.perf_counter() - started)
    for _ in range(rounds):  # cold: every batch's pages read from the disk
        evict(work / "cache")
        started = time.perf_counter()
        stream.next()
        times["cold"].append(time.perf_counter() - started)
    started = time.perf_counter()
    loop.train(1)
    step = time.perf_counter() - started
    result = {"photos": photos, "size": "2040x1356", "batch": 16, "crop": 128,
              **{f"{state}_data_ms": 1e3 * statistics.median(values) for state, values in times.items()},
              "step_ms": 1e3 * step}
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


# --- driver -------------------------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    for row in report.get("speed", []):
        print(f"{row['workload']}: memory {row['memory_images_per_s']:.2f} img/s, disk {row['disk_images_per_s']:.2f} "
              f"img/s (disk/memory {row['disk/memory']:.3f}); data path {row['memory_data_ms_per_batch']:.2f} vs "
              f"{row['disk_data_ms_per_batch']:.2f} ms/batch (disk/memory from it {row['disk/memory_from_data_path']:.4f})")
    for row in report.get("memory", []):
        print(f"{row['mode']:6s} {row['images']:5d} images 286x286: peak RSS {row['VmHWM']:.0f} MB, RssAnon "
              f"{row['RssAnon']:.0f} MB (+{row['RssAnon_growth']:.0f} building/reading), RssFile {row['RssFile']:.0f} MB")
    if "sr2k" in report:
        row = report["sr2k"]
        print(f"sr 2K: b16 128-crops (+ bicubic LR) from {row['photos']} {row['size']} photos: {row['memory_data_ms']:.1f} "
              f"ms in memory, mapped {row['warm_data_ms']:.1f} ms warm, {row['cold_data_ms']:.1f} ms cold page cache; "
              f"one SRResNet (32 features, 8 blocks) step {row['step_ms']:.0f} ms")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=("speed", "memory", "sr2k"), default=["speed", "memory", "sr2k"])
    parser.add_argument("--images", type=int, default=2000, help="286x286 images of the memory measurement")
    parser.add_argument("--photos", type=int, default=24, help="2040x1356 photos of the sr2k measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="steps per timed stretch (SR: half)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--probe", nargs=3, metavar=("MODE", "ROOT", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(memory_probe(*args.probe)))
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="gantrain-storage-bench-") as scratch:
        work = Path(scratch)
        if "speed" in args.only:
            report["speed"] = speed_all(work / "speed", args.rounds, args.steps)
        if "memory" in args.only:
            report["memory"] = memory_all(work / "memory", args.images)
        if "sr2k" in args.only:
            report["sr2k"] = sr2k(work / "sr2k", args.photos, args.rounds * 3)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
