#!/usr/bin/env python
"""Every noise-to-image preset on the 2-D toy data, with the defaults a user gets, and what it learned.

Each preset trains on 8gaussians, 25gaussians and swissroll exactly as ``gantrain model=PRESET data=toy2d
data.name=DATA`` would (the composed config, ``Trainer.fit()``, fixed seeds, progress display off), then draws
samples. On the Gaussian mixtures the coverage metric (gantrain/metrics/coverage.py) counts the modes covered
and the share of high-quality samples (within 3 std of their nearest mode); every run reports its wall seconds.
The table goes to stdout (Markdown), and one figure holds a scatter per run: real points in grey, samples on top.

    python scripts/toy_benchmark.py                            # 6 presets x 3 datasets, docs/toy_benchmark.png
    python scripts/toy_benchmark.py --presets wgan_gp --datasets 8gaussians 25gaussians --figure wgan_gp.png
    python scripts/toy_benchmark.py --presets gan --override trainer.max_steps=200   # any config override
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmark this checkout, not some other installed copy

from hydra import compose, initialize_config_dir  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from gantrain.cli import CONFIG_NAME, config_dir  # noqa: E402
from gantrain.data.toy2d import mixture_modes  # noqa: E402
from gantrain.engine.trainer import Trainer  # noqa: E402
from gantrain.engine.visuals import FAKE_COLOR, GREY, scatter_image  # noqa: E402
from gantrain.metrics.coverage import mode_statistics  # noqa: E402
from gantrain.registry import load_builtin_parts  # noqa: E402

PRESETS = ("gan", "dcgan", "wgan", "wgan_gp", "cgan", "cgan_mlp")  # every noise-to-image preset
DATASETS = ("8gaussians", "25gaussians", "swissroll")
LABELLED = ("8gaussians", "25gaussians")  # the conditional presets need a class per sample (the mode index)
LABEL_HEIGHT = 18  # pixels of the figure's row and column titles


@dataclass
class Result:
    """One preset trained on one dataset: what the coverage metric says (None without modes) and its time."""

    preset: str
    data: str
    seconds: float | None = None  # Trainer.fit(), wall clock
    steps: int | None = None
    coverage: float | None = None  # modes covered
    modes: int | None = None  # modes the data has
    high_quality: float | None = None  # share of samples within 3 std of their nearest mode
    note: str = ""  # why a run was skipped


def train_one(preset: str, data: str, args: argparse.Namespace, runs: Path) -> tuple[Result, torch.Tensor | None,
                                                                                      torch.Tensor | None]:
    """Train ``preset`` on ``data`` with its defaults (and ``args.override``); the result, samples and real points."""
    if preset in ("cgan", "cgan_mlp") and data not in LABELLED:
        return Result(preset, data, note="needs labels"), None, None
    cfg = compose(config_name=CONFIG_NAME, overrides=[
        f"model={preset}", "data=toy2d", f"data.name={data}", "device=cpu", "trainer.progress=false",
        f"trainer.seed={args.seed}", *args.override])
    trainer = Trainer(cfg, runs / f"{preset}_{data}")
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    samples = trainer.recipe.sample(args.samples, torch.Generator().manual_seed(args.seed))
    result = Result(preset, data, seconds=seconds, steps=trainer.step)
    modes = mixture_modes(data)
    if modes is not None:
        centres, std = modes
        statistics = mode_statistics(samples, centres, std)
        result.coverage, result.modes = statistics["coverage"], len(centres)
        result.high_quality = statistics["high_quality"]
    real = trainer.source.dataset.points[:args.points]
    return result, samples[:args.points], real


def cell_text(result: Result) -> str:
    """'8/8 modes, 97.1% HQ, 105 s' (or the time alone, or why it was skipped)."""
    if result.seconds is None:
        return result.note
    if result.coverage is None:
        return f"{result.seconds:.0f} s"
    return f"{result.coverage:.0f}/{result.modes} modes, {100 * result.high_quality:.1f}% HQ, {result.seconds:.0f} s"


def print_table(results: list[Result], presets: list[str], datasets: list[str]) -> None:
    """A Markdown table: one row per preset, one column per dataset."""
    by_key = {(r.preset, r.data): r for r in results}
    print("| preset | " + " | ".join(datasets) + " |")
    print("|---|" + "---|" * len(datasets))
    for preset in presets:
        print(f"| `{preset}` | " + " | ".join(cell_text(by_key[preset, data]) for data in datasets) + " |")


def figure(panels: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor] | None], presets: list[str],
           datasets: list[str], cell: int) -> Image.Image:
    """A grid of scatters, one row per preset and one column per dataset, with titles; blank where skipped."""
    width, height = LABEL_HEIGHT + cell * len(datasets), LABEL_HEIGHT + cell * len(presets)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for column, data in enumerate(datasets):
        draw.text((LABEL_HEIGHT + column * cell + 4, 3), data, fill="black")
    for row, preset in enumerate(presets):
        label = Image.new("RGB", (cell, LABEL_HEIGHT), "white")
        ImageDraw.Draw(label).text((4, 3), preset, fill="black")
        canvas.paste(label.rotate(90, expand=True), (0, LABEL_HEIGHT + row * cell))
        for column, data in enumerate(datasets):
            panel = panels.get((preset, data))
            if panel is None:
                continue
            samples, real = panel
            picture = scatter_image(samples, real, size=cell - 2, real_color=GREY, fake_color=FAKE_COLOR)
            pixels = (picture.permute(1, 2, 0) * 255).round().byte().numpy()
            canvas.paste(Image.fromarray(pixels), (LABEL_HEIGHT + column * cell + 1, LABEL_HEIGHT + row * cell + 1))
    return canvas


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), help="model presets to train")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="toy2d data.name values")
    parser.add_argument("--seed", type=int, default=0, help="trainer.seed and the seed of the drawn samples")
    parser.add_argument("--samples", type=int, default=10_000, help="samples the coverage metric scores")
    parser.add_argument("--points", type=int, default=1_500, help="real and generated points drawn per scatter")
    parser.add_argument("--cell", type=int, default=200, help="pixels per scatter in the figure")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "toy_benchmark.png", help="the figure (PNG)")
    parser.add_argument("--json", type=Path, default=None, help="also write every result as JSON")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--override", nargs="*", default=[], help="config overrides for every run (KEY=VALUE)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_builtin_parts()
    results: list[Result] = []
    panels: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor] | None] = {}
    with tempfile.TemporaryDirectory() as runs, initialize_config_dir(str(config_dir()), version_base="1.3"):
        for preset in args.presets:
            for data in args.datasets:
                result, samples, real = train_one(preset, data, args, Path(runs))
                results.append(result)
                panels[preset, data] = (samples, real) if samples is not None else None
                print(f"{preset} on {data}: {cell_text(result)}", file=sys.stderr, flush=True)
    print_table(results, args.presets, args.datasets)
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    figure(panels, args.presets, args.datasets, args.cell).save(args.figure, optimize=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return results


if __name__ == "__main__":
    main()
