#!/usr/bin/env python
"""Training on little data: DCGAN and WGAN-GP on 100, 300 and all scikit-learn digits, without augmentation,
with DiffAugment and with ADA, at equal steps, 3 seeds each.

The 1,797 digits are split once (fixed seed): ``--held-out`` (297) are never trained on; the rest (1,500) are
the pool the training sets are the first N of ("all" = the whole pool). Each run is exactly
``gantrain model=MODEL data=digits augment=AUGMENT`` (the composed config, ``Trainer.fit()``) on such a set,
through a dataset registered here (``digits_subset``, the ``data=digits`` pipeline on a subset).

Quality is the Fréchet distance (FD) between features of generated digits and of the held-out digits, from a
small digit classifier trained here on the pool (Inception is offline here, and knows nothing of 16x16
digits). Lower is better. The overfitting signal r_t = E[sign(D(real) - boundary)] is recorded for every run (ADA steers
it to its target; without augmentation it climbs toward 1 as D memorises a small set), and the r_t curves
of seed 0 are drawn in a figure.

    python scripts/limited_data_benchmark.py                     # the full table (hours on a CPU)
    python scripts/limited_data_benchmark.py --steps 300 --seeds 0 --models dcgan --sizes 100 all
    python scripts/limited_data_benchmark.py --override trainer.batch_size=32  # any config override
    python scripts/limited_data_benchmark.py --jobs 2 --json dcgan.json --models dcgan   # 2 runs at a time
    python scripts/limited_data_benchmark.py --report dcgan.json wgan_gp.json          # one table from parts

ADA adapts p over ``augment.speed_kimg`` thousand images; the paper's 500 suits runs of tens of thousands of
kimg, so this benchmark scales it to its short runs (``--ada-speed-kimg``, 20 by default).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmark this checkout, not some other installed copy

from hydra import compose, initialize_config_dir  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from gantrain.cli import CONFIG_NAME, config_dir  # noqa: E402
from gantrain.data.source import DataSource, normalise_uint8, resize_uint8, tensor_image_source  # noqa: E402
from gantrain.engine.trainer import Trainer  # noqa: E402
from gantrain.registry import DATASETS, load_builtin_parts  # noqa: E402

SPLIT_SEED = 0  # the held-out/pool split and the pool's order
IMAGE_SIZE = 16  # data=digits' default
AUGMENTS = ("none", "diffaugment", "ada")
COLOURS = {"none": (200, 60, 60), "diffaugment": (60, 120, 220), "ada": (40, 160, 80)}


def digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 (N, 1, 8, 8) as data=digits reads them, and their labels, in the split's order."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return images[order], torch.from_numpy(bunch.target)[order]


@DATASETS.register("digits_subset")
def digits_subset(train_size: int | None = None, held_out: int = 297, image_size: int | None = IMAGE_SIZE) -> DataSource:
    """The first ``train_size`` digits of the pool (null: all of it): data=digits on a subset."""
    images, labels = digit_images()
    pool, pool_labels = images[held_out:], labels[held_out:]
    size = len(pool) if train_size is None else int(train_size)
    return tensor_image_source(pool[:size], pool_labels[:size], num_classes=10, image_size=image_size)


class DigitFeatures(nn.Module):
    """A small classifier of 16x16 digits; its 128-d penultimate layer is the FD's feature space."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 3, 2, 1),
                                  nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.LeakyReLU(0.2))
        self.head = nn.Linear(128, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def train_features(images: torch.Tensor, labels: torch.Tensor, check: tuple[torch.Tensor, torch.Tensor],
                   steps: int = 600) -> DigitFeatures:
    torch.manual_seed(SPLIT_SEED)
    net = DigitFeatures()
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        index = torch.randint(len(images), (64,))
        loss = nn.functional.cross_entropy(net(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(check[0]).argmax(1) == check[1]).float().mean()
    print(f"feature network: held-out accuracy {accuracy:.3f}", file=sys.stderr)
    return net


@torch.no_grad()
def frechet_distance(net: DigitFeatures, a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy import linalg

    fa, fb = (net.body(images.clamp(-1, 1)).double().numpy() for images in (a, b))
    mean_a, mean_b = fa.mean(0), fb.mean(0)
    cov_a, cov_b = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real))


def train_one(model: str, size: int | None, augment: str, seed: int, args: argparse.Namespace,
              runs: Path) -> tuple[torch.Tensor, list[float], float, float | None]:
    """(samples, r_t per training step, seconds, ADA's p at the end) of one run."""
    extra = [f"augment.speed_kimg={args.ada_speed_kimg}"] if augment == "ada" else []
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=CONFIG_NAME, overrides=[
            f"model={model}", "data=digits", "data.name=digits_subset", f"+data.train_size={size or 'null'}",
            f"+data.held_out={args.held_out}", f"augment={augment}", *extra, "device=cpu", "trainer.progress=false",
            f"trainer.max_steps={args.steps}", f"trainer.seed={seed}", f"trainer.sample_every={args.steps}",
            f"trainer.checkpoint_every={args.steps}", *args.override])
    trainer = Trainer(cfg, runs / f"{model}_{size or 'all'}_{augment}_{seed}")
    signs: list[float] = []
    observe = trainer.recipe.augmentation.observe

    def record(scores: torch.Tensor, boundary: float | torch.Tensor = 0.0) -> None:
        signs.append(float((scores.detach() - boundary).sign().mean()))
        observe(scores, boundary)

    trainer.recipe.augmentation.observe = record
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    samples = trainer.recipe.sample(args.samples, torch.Generator().manual_seed(seed))
    per_step = len(signs) // max(1, trainer.step)  # discriminator steps per training step (WGAN-GP: 5)
    rt = [float(np.mean(signs[i:i + per_step])) for i in range(0, per_step * trainer.step, per_step)]
    return samples, rt, seconds, getattr(trainer.recipe.augmentation, "p", None)


def reference() -> tuple[DigitFeatures, torch.Tensor, torch.Tensor]:
    """The feature network, the held-out digits and the pool (deterministic: every worker rebuilds the same)."""
    images, labels = digit_images()
    scaled = normalise_uint8(resize_uint8(images, IMAGE_SIZE))
    held_out, pool = scaled[:ARGS.held_out], scaled[ARGS.held_out:]
    features = train_features(pool, labels[ARGS.held_out:], (held_out, labels[:ARGS.held_out]))
    return features, held_out, pool


def run_job(job: tuple[str, str, str, int], folder: str) -> dict:
    """One benchmark run and its scores, as a JSON-able record."""
    global REFERENCE
    if REFERENCE is None:
        load_builtin_parts()
        REFERENCE = reference()
    features, held_out, _ = REFERENCE
    model, size_name, augment, seed = job
    samples, rt, seconds, p = train_one(model, None if size_name == "all" else int(size_name), augment, seed, ARGS,
                                     Path(folder))
    fd = frechet_distance(features, samples, held_out)
    tail = float(np.mean(rt[-max(1, len(rt) // 10):]))
    ada = f", p at the end {p:.2f}" if p is not None else ""
    print(f"{model} {size_name} {augment} seed {seed}: FD {fd:.2f}, r_t at the end {tail:+.2f}{ada}, {seconds:.0f} s",
          file=sys.stderr, flush=True)
    return {"model": model, "size": size_name, "augment": augment, "seed": seed, "steps": ARGS.steps, "fd": fd,
            "rt_end": tail, "p_end": p, "seconds": seconds, "rt": rt[::max(1, len(rt) // 200)]}


ARGS: argparse.Namespace  # set in main(), and in each worker by start_worker()
REFERENCE: tuple[DigitFeatures, torch.Tensor, torch.Tensor] | None = None


def start_worker(args: argparse.Namespace) -> None:
    """A worker process trains on one thread: small networks gain more from runs side by side than from threads."""
    global ARGS
    ARGS = args
    torch.set_num_threads(1)


def smooth(values: list[float], window: int) -> list[float]:
    return [float(np.mean(values[max(0, i - window + 1):i + 1])) for i in range(len(values))]


def draw_curves(curves: dict[str, dict[str, list[float]]], steps: dict[str, int], path: Path,
                target: float = 0.6) -> None:
    """One panel per (model, size): r_t of seed 0 against the step (``steps[panel]`` in all), one line per
    augmentation."""
    panel_w, panel_h, pad = 320, 200, 34
    panels = list(curves)
    image = Image.new("RGB", (panel_w * len(panels) + pad, panel_h + 2 * pad + 20), "white")
    draw = ImageDraw.Draw(image)
    for k, name in enumerate(panels):
        x0, y0 = pad + k * panel_w, pad
        w, h = panel_w - pad, panel_h
        draw.rectangle([x0, y0, x0 + w, y0 + h], outline=(0, 0, 0))
        draw.text((x0 + 4, y0 - 14), name, fill=(0, 0, 0))
        to_y = lambda v: y0 + h * (1 - (v + 1) / 2)  # noqa: E731 - r_t in [-1, 1]
        for level in (0.0, target):
            draw.line([x0, to_y(level), x0 + w, to_y(level)], fill=(190, 190, 190))
        for level in (-1.0, 0.0, target, 1.0):
            draw.text((x0 - 24, to_y(level) - 6), f"{level:g}", fill=(90, 90, 90))
        draw.text((x0 + w - 70, y0 + h + 2), f"{steps[name]:,} steps", fill=(90, 90, 90))
        for augment, values in curves[name].items():
            values = smooth(values, max(1, len(values) // 40))
            points = [(x0 + w * i / max(1, len(values) - 1), to_y(v)) for i, v in enumerate(values)]
            if len(points) > 1:
                draw.line(points, fill=COLOURS[augment], width=2)
    legend_x = pad
    for augment, colour in COLOURS.items():
        draw.line([legend_x, panel_h + pad + 20, legend_x + 20, panel_h + pad + 20], fill=colour, width=3)
        draw.text((legend_x + 24, panel_h + pad + 14), augment, fill=(0, 0, 0))
        legend_x += 120
    draw.text((legend_x, panel_h + pad + 14), f"r_t = E[sign D(real)] against the step (grey lines: 0 and {target})", fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def report(results: list[dict], figure: Path) -> None:
    """The markdown table of FD (mean ± std over seeds) and the r_t figure of each (model, size)'s first seed."""
    keys = list(dict.fromkeys((r["model"], r["size"]) for r in results))
    augments = [a for a in AUGMENTS if any(r["augment"] == a for r in results)]
    seeds = sorted({r["seed"] for r in results})
    print(f"\nFD to held-out digits (mean ± std over seeds {seeds}; lower is better); "
          "r_t over the last 10% of steps in brackets\n")
    print("| model | images | steps | " + " | ".join(augments) + " |")
    print("|---|---|---|" + "---|" * len(augments))
    curves: dict[str, dict[str, list[float]]] = {}
    lengths: dict[str, int] = {}
    for model, size_name in keys:
        cells, steps = [], set()
        for augment in augments:
            runs = [r for r in results if (r["model"], r["size"], r["augment"]) == (model, size_name, augment)]
            if not runs:
                cells.append("-")
                continue
            fds, rts = [r["fd"] for r in runs], [r["rt_end"] for r in runs]
            steps |= {r.get("steps") for r in runs}
            cells.append(f"{np.mean(fds):.1f} ± {np.std(fds):.1f} ({np.mean(rts):+.2f})")
            first = min(runs, key=lambda r: r["seed"])
            curves.setdefault(f"{model}, {size_name} images", {})[augment] = first["rt"]
            lengths[f"{model}, {size_name} images"] = first["steps"]
        print(f"| {model} | {size_name} | {'/'.join(map(str, sorted(steps, key=str)))} | " + " | ".join(cells) + " |")
    draw_curves(curves, lengths, figure)
    print(f"\nr_t curves: {figure}")


def main() -> None:
    global ARGS, REFERENCE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["dcgan", "wgan_gp"])
    parser.add_argument("--sizes", nargs="+", default=["100", "300", "all"], help="training images; all = the pool")
    parser.add_argument("--augments", nargs="+", default=list(AUGMENTS), choices=AUGMENTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000, help="training steps of every run (equal for all)")
    parser.add_argument("--held-out", type=int, default=297, help="digits never trained on: the FD's reference")
    parser.add_argument("--samples", type=int, default=1000, help="generated digits per FD")
    parser.add_argument("--ada-speed-kimg", type=float, default=20.0)
    parser.add_argument("--override", nargs="*", default=[], help="config overrides for every run")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, one thread each (1: one run on all threads)")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "limited_data_rt.png")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    parser.add_argument("--runs", type=Path, default=None, help="keep the run folders here (default: a temporary one)")
    parser.add_argument("--report", type=Path, nargs="+", default=None, metavar="JSON",
                        help="train nothing: one table and figure from the --json files of earlier runs")
    ARGS = args = parser.parse_args()
    if args.report:
        report([r for path in args.report for r in json.loads(path.read_text())], args.figure)
        return

    load_builtin_parts()
    REFERENCE = features, held_out, pool = reference()  # run_job reuses it when the runs are in this process
    for size_name in args.sizes:
        training = pool if size_name == "all" else pool[:int(size_name)]
        print(f"FD of the {len(training)} training digits themselves (a generator that memorised them): "
              f"{frechet_distance(features, training, held_out):.1f}", file=sys.stderr)
    jobs = [(model, size, augment, seed) for model in args.models for size in args.sizes
            for augment in args.augments for seed in args.seeds]
    with tempfile.TemporaryDirectory() as temporary:
        folder = str(args.runs or temporary)
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs, multiprocessing.get_context("spawn"), start_worker, (args,)) as pool:
                results = list(pool.map(run_job, jobs, [folder] * len(jobs)))
        else:
            results = [run_job(job, folder) for job in jobs]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    report(results, args.figure)


if __name__ == "__main__":
    main()
