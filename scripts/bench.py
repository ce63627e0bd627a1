#!/usr/bin/env python
"""How fast gantrain trains, measured against the cost of the maths alone and against a textbook loop.

For each workload (a preset on synthetic data written in a real on-disk format), in one process:

  (a) bare       the recipe's own ``train_step`` on batches pre-built on the device: no data pipeline,
                 no logging, no checkpoints. The floor: what the networks, losses and optimizers cost.
  (b) trainer    ``gantrain.engine.trainer.Trainer`` built from the composed Hydra config, as the
                 ``gantrain`` command builds it, and its ``fit()`` with the normal logging cadence
                 (progress display off), into a temporary run folder.
  (c) reference  a textbook loop: a torchvision dataset with per-sample ``ToTensor``/``Normalize``
                 through ``DataLoader(shuffle=True, num_workers=2)`` (PyTorch's DCGAN tutorial uses
                 2 workers), feeding the same recipe's ``train_step``.

Throughput is real images consumed per second (batch size x n_critic per generator step), the median over
``--rounds`` rounds. (b) is one ordinary fit(); after its warm-up steps it is timed in stretches of
``--steps`` steps, and between two stretches (a) and (c) take their turns, so a busy neighbour slows
every variant alike; the ratios (b)/(a) and (b)/(c) are the medians of the rounds' own ratios. (b)'s
start-up and its final grid and checkpoint are reported apart (JSON: startup_s, finish_s).

    python scripts/bench.py                                   # every workload, table on stdout
    python scripts/bench.py --presets gan dcgan --threads 1 --json bench.json
    python scripts/bench.py --storage                         # data.storage=memory vs disk (scripts/storage_bench.py)
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmark this checkout, not some other installed copy

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from gantrain.cli import CONFIG_NAME, config_dir  # noqa: E402
from gantrain.engine.device import resolve_device  # noqa: E402
from gantrain.engine.trainer import Trainer  # noqa: E402
from gantrain.errors import UserError  # noqa: E402
from gantrain.recipes.base import Batch, Recipe  # noqa: E402
from gantrain.registry import load_builtin_parts  # noqa: E402

VARIANTS = {"bare": "(a) bare", "trainer": "(b) trainer", "reference": "(c) reference"}
MNIST_SIZE = 60_000  # training images written for the 28x28 workloads, as many as MNIST has
IMAGE_FOLDER_SIZE = 2_048  # at most this many 64x64 PNGs (32 batches of 64): each one is written, then checked per Trainer
NUM_CLASSES = 10
PREBUILT_BATCHES = 8  # (a) cycles through this many batches already on the device
TARGET_STRETCH_SECONDS = 1.0  # default --steps: about this long per timed stretch, judged from (a)'s step time
MIN_STEPS = 1
WARMUP_SECONDS = 0.3  # untimed steps before (b) and (c) are timed: allocations, optimizer state, worker start-up
CALIBRATION_SECONDS = 0.2  # (a)'s step time is measured over at least this long
MEGABYTE = 2**20


TRANSLATION_FILES = 64  # synthetic images (pairs, or images per domain) written for the translation workloads
HALF_WIDTH_PIX2PIX = ("model.generator.base_channels=32", "model.generator.max_channels=256",
                      "model.discriminator.base_channels=32")
HALF_WIDTH_CYCLEGAN = ("model.generator.base_channels=32", "model.discriminator.base_channels=32")


def load_size(crop: int) -> int:
    """The translation presets' resize before the random crop: 286 for 256, in proportion below."""
    return crop * 286 // 256


PROGAN_CPU_SIZE = ("model.generator.fmap_base=256", "model.generator.fmap_max=64", "model.latent_dim=64",
                   "data.cache=true")  # the README demo's networks (D's follow G's); images decoded once
PROGAN_BATCH = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16}  # the preset's (official single-GPU) table
SR_FILES = 32  # synthetic HR images written for the super-resolution workloads (2x the crop size, square)
SR_CPU_SIZE = {"srresnet": ("model.generator.features=32", "model.generator.blocks=8"),  # the sr_demo pairing's
               "rrdbnet": ("model.generator.features=32", "model.generator.blocks=4", "model.generator.growth=16")}
# ESRGAN's GAN stage with the perceptual network: an untrained VGG19 costs what the trained one does
ESRGAN_GAN_STAGE = ("model.pretrain.steps=0", "model.perceptual.weights=random", "metrics.names=[]")


@dataclass(frozen=True)
class Workload:
    """A preset on synthetic data: ``mnist`` (IDX files, 1x28x28), ``image_folder`` (RGB PNGs), the
    translation layouts ``paired`` (A|B PNGs side by side) and ``unpaired`` (trainA/ and trainB/ PNGs), or
    ``sr`` (a folder of HR PNGs)."""

    name: str
    preset: str
    data: str
    image_size: int  # the size trained on (translation: the crop; files are TRANSLATION_LOAD_EXTRA larger;
    #                  super-resolution: the HR crop)
    batch_size: int | None = None  # None: --batch-size
    overrides: tuple[str, ...] = ()  # more config overrides (smaller networks for a CPU-sized setting)
    heavy: bool = False  # a paper-sized setting meant for a GPU: run when named, or on CUDA by default

    @property
    def channels(self) -> int:
        return 1 if self.data == "mnist" else 3


def progan_workloads(final: int) -> list[Workload]:
    """ProGAN at each resolution of a run growing to final x final, at that resolution's batch size: the run
    starts there with a training phase longer than the benchmark, so every step is one of that resolution."""
    resolutions = [4 * 2 ** level for level in range(int(math.log2(final)) - 1)]
    return [Workload(f"progan{final}_{r}", "progan", "image_folder", final, batch_size=PROGAN_BATCH[r],
                     overrides=(*PROGAN_CPU_SIZE, f"model.schedule.start_resolution={r}",
                                "model.schedule.training_kimg=1000000"))
            for r in resolutions]


WORKLOADS = {w.name: w for w in (
    Workload("gan", "gan", "mnist", 28),
    Workload("dcgan", "dcgan", "mnist", 28),
    Workload("wgan", "wgan", "mnist", 28),
    Workload("wgan_gp", "wgan_gp", "mnist", 28),
    Workload("cgan", "cgan", "mnist", 28),
    Workload("dcgan_64rgb", "dcgan", "image_folder", 64),
    Workload("pix2pix_256", "pix2pix", "paired", 256, batch_size=1, heavy=True),  # the paper's setting
    Workload("pix2pix_64", "pix2pix", "paired", 64, batch_size=1, overrides=HALF_WIDTH_PIX2PIX),  # the CPU demo's
    Workload("cyclegan_256", "cyclegan", "unpaired", 256, batch_size=1, heavy=True),
    Workload("cyclegan_64", "cyclegan", "unpaired", 64, batch_size=1, overrides=HALF_WIDTH_CYCLEGAN),
    Workload("srresnet_128", "srresnet", "sr", 128, batch_size=16, heavy=True),  # x4, the papers' batch
    Workload("rrdbnet_128", "rrdbnet", "sr", 128, batch_size=16, heavy=True),
    Workload("esrgan_gan_128", "esrgan", "sr", 128, batch_size=16, overrides=ESRGAN_GAN_STAGE, heavy=True),
    Workload("srresnet_64", "srresnet", "sr", 64, batch_size=16, overrides=SR_CPU_SIZE["srresnet"]),  # the CPU demo's
    Workload("rrdbnet_64", "rrdbnet", "sr", 64, batch_size=16, overrides=SR_CPU_SIZE["rrdbnet"]),
    Workload("esrgan_gan_64", "esrgan", "sr", 64, batch_size=16, overrides=(*SR_CPU_SIZE["rrdbnet"], *ESRGAN_GAN_STAGE)),
    *progan_workloads(32),
    *progan_workloads(128),
)}


# --- synthetic data in real formats -----------------------------------------------------------------


def synthetic_images(n: int, channels: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, channels) uint8 images and their labels: a noisy background with a bright bar whose row is the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n)
    images = rng.integers(0, 40, (n, size, size, channels), dtype=np.uint8)
    bar = size // 14
    rows = bar * (1 + labels)
    for offset in range(bar):
        images[np.arange(n), rows + offset, size // 7: size - size // 7] = 255
    return images, labels.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """A uint8 array in the IDX format MNIST ships in (magic 0x08: unsigned byte)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root: Path, n: int) -> Path:
    """Fake MNIST in torchvision's layout (ROOT/MNIST/raw/*-ubyte), read by both gantrain and torchvision."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    images, labels = synthetic_images(n, 1, 28)
    for prefix, count in (("train", n), ("t10k", min(n, 1_000))):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:count, :, :, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[:count])
    return root


def write_image_folder(root: Path, n: int, size: int) -> Path:
    """PNGs in one subfolder per class, the layout of torchvision's ImageFolder and of data=image_folder."""
    from PIL import Image

    images, labels = synthetic_images(n, 3, size)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")
    return root


def write_translation(root: Path, paired: bool, size: int) -> Path:
    """``paired``: train/ and test/ of A|B files side by side (B is A's negative); else trainA/B and testA/B."""
    from PIL import Image

    held_out = TRANSLATION_FILES // 8
    images, _ = synthetic_images((TRANSLATION_FILES + held_out) * 2, 3, size)
    for index in range(TRANSLATION_FILES + held_out):
        split = "train" if index < TRANSLATION_FILES else "test"
        if paired:
            (root / split).mkdir(parents=True, exist_ok=True)
            pair = np.concatenate([images[index], 255 - images[index]], axis=1)
            Image.fromarray(pair).save(root / split / f"{index:05d}.png")
            continue
        for side, image in (("A", images[2 * index]), ("B", 255 - images[2 * index + 1])):
            (root / f"{split}{side}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / f"{split}{side}" / f"{index:05d}.png")
    return root


def write_hr_folder(root: Path, size: int) -> Path:
    """HR photos for ``data=sr``: smooth random pictures (upscaled noise), twice the crop size."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(SR_FILES):
        small = Image.fromarray(rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8))
        small.resize((2 * size, 2 * size), Image.BICUBIC).save(root / f"{index:04d}.png")
    return root


def write_data(workload: Workload, root: Path, dataset_size: int) -> Path:
    if workload.data == "mnist":
        return write_mnist(root, dataset_size)
    if workload.data == "sr":
        return write_hr_folder(root, workload.image_size)
    if workload.data in ("paired", "unpaired"):
        return write_translation(root, workload.data == "paired", load_size(workload.image_size))
    return write_image_folder(root, min(dataset_size, IMAGE_FOLDER_SIZE), workload.image_size)


# --- measuring --------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak resident memory of this process (and CUDA's max allocated) since the last ``reset``.

    Linux resets the RSS high-water mark through /proc/self/clear_refs; elsewhere the peak is since the
    process started. The RSS is the whole process's: what the other variants keep alive counts too, so
    compare the variants of one workload rather than read absolute sizes.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.resettable = self._reset_rss()

    @staticmethod
    def _reset_rss() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        self._reset_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict[str, float]:
        peak = {"peak_rss_mb": self._rss_mb()}
        if self.device.type == "cuda":
            peak["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(self.device) / MEGABYTE
        return peak

    def _rss_mb(self) -> float:
        if self.resettable:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MEGABYTE
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return maxrss / (MEGABYTE if sys.platform == "darwin" else 1024)


class Recorder:
    """Seconds and peak memory of every timed stretch, per variant; a GPU is synchronised at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.memory = PeakMemory(device)
        self.seconds: dict[str, list[float]] = {key: [] for key in VARIANTS}
        self.peaks: dict[str, list[dict[str, float]]] = {key: [] for key in VARIANTS}
        self._started = 0.0

    def start(self) -> None:
        synchronize(self.device)
        self.memory.reset()
        self._started = time.perf_counter()

    def stop(self, variant: str) -> None:
        synchronize(self.device)
        self.seconds[variant].append(time.perf_counter() - self._started)
        self.peaks[variant].append(self.memory.read())

    def time(self, variant: str, work: Callable[[], object]) -> None:
        self.start()
        work()
        self.stop(variant)

    def summary(self, variant: str, images_per_stretch: int) -> dict[str, Any]:
        """Median images/s (every round's is kept too) and the largest memory peaks."""
        rates = [images_per_stretch / s for s in self.seconds[variant]]
        peaks = self.peaks[variant]
        return {"images_per_s": statistics.median(rates), "rounds_images_per_s": rates,
                **{key: max(p[key] for p in peaks) for key in peaks[0]}}

    def ratio(self, numerator: str, denominator: str) -> float:
        """The median over rounds of one variant's speed over another's: the rounds pair runs made close in time."""
        return statistics.median(d / n for n, d in zip(self.seconds[numerator], self.seconds[denominator]))


class RecipeLoop:
    """(a) and (c): call a recipe's ``train_step`` directly; they differ only in where batches come from.

    The recipe comes from a ``Trainer`` built from the same config as (b)'s, so its networks get the same
    speed settings (precision, memory layout, compilation) and its step runs under the same autocast.
    """

    def __init__(self, recipe: Recipe, next_batch: Callable[[], Batch], device: torch.device) -> None:
        self.recipe = recipe
        self.next_batch = next_batch
        self.device = device

    def train(self, steps: int) -> None:
        for _ in range(steps):
            with self.recipe.precision.autocast():
                self.recipe.train_step(self.next_batch)

    def seconds_per_step(self) -> float:
        """From runs of doubling length until one lasts long enough to time; warms the recipe up as it goes."""
        self.train(1)
        steps = 1
        while True:
            synchronize(self.device)
            started = time.perf_counter()
            self.train(steps)
            synchronize(self.device)
            seconds = time.perf_counter() - started
            if seconds >= CALIBRATION_SECONDS:
                return seconds / steps
            steps *= 2


def interleave_in_fit(trainer: Trainer, warmup: int, steps: int, rounds: int, recorder: Recorder,
                      between: Callable[[int], None]) -> float:
    """(b): ``trainer.fit()``, timed over ``rounds`` stretches of ``steps`` steps after ``warmup`` steps.

    The loop calls ``recipe.end_step`` once per step; wrapped, it stops (b)'s clock at the end of each
    stretch and runs ``between(round)`` (that round's (a) and (c)) before (b)'s next stretch starts, so the
    variants alternate at a fine grain while (b) stays one ordinary run. Only those step ends synchronise
    a GPU. Returns the seconds fit() took after its last step (the final grid and checkpoint).
    """
    original = trainer.recipe.end_step
    done = 0
    resumed = 0.0  # when the loop got its last step back from the hook

    def end_step() -> None:
        nonlocal done, resumed
        original()
        done += 1
        timed, rest = divmod(done - warmup, steps)
        if done < warmup or rest:
            return
        if timed:
            recorder.stop("trainer")
            between(timed - 1)
        if timed < rounds:
            recorder.start()
        resumed = time.perf_counter()

    trainer.recipe.end_step = end_step  # type: ignore[method-assign]
    trainer.fit()
    if done != warmup + rounds * steps:
        raise RuntimeError(f"the trainer ran {done} steps, not the {warmup + rounds * steps} asked for")
    return time.perf_counter() - resumed


class TranslationFiles(torch.utils.data.Dataset):
    """The pix2pix/CycleGAN reference code's data path: each item decoded from its file(s), resized to the load
    size, cropped at a random place and maybe flipped (the same crop and flip for both halves of a pair),
    then ``ToTensor`` and ``Normalize``, in a DataLoader's workers.
    """

    def __init__(self, root: Path, paired: bool, crop: int) -> None:
        from torchvision import transforms

        self.paired, self.crop = paired, crop
        self.files = sorted((root / "train").iterdir()) if paired else sorted((root / "trainA").iterdir())
        self.others = [] if paired else sorted((root / "trainB").iterdir())
        self.to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])

    def __len__(self) -> int:
        return max(len(self.files), len(self.others))

    def _prepared(self, image: Any, top: int, left: int, flip: bool) -> torch.Tensor:
        from PIL import Image

        size = load_size(self.crop)
        image = image.convert("RGB").resize((size, size), Image.BICUBIC).crop((left, top, left + self.crop, top + self.crop))
        return self.to_tensor(image.transpose(Image.FLIP_LEFT_RIGHT) if flip else image)

    def _place(self) -> tuple[int, int, bool]:
        free = load_size(self.crop) - self.crop
        return int(np.random.randint(free + 1)), int(np.random.randint(free + 1)), bool(np.random.rand() < 0.5)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from PIL import Image

        if self.paired:
            with Image.open(self.files[index]) as pair:
                width, height = pair.size
                a, b = pair.crop((0, 0, width // 2, height)), pair.crop((width // 2, 0, width, height))
                place = self._place()
                return {"source": self._prepared(a, *place), "target": self._prepared(b, *place)}
        with Image.open(self.files[index % len(self.files)]) as a, \
                Image.open(self.others[np.random.randint(len(self.others))]) as b:
            return {"a": self._prepared(a, *self._place()), "b": self._prepared(b, *self._place())}


class HighResolutionFiles(torch.utils.data.Dataset):
    """The textbook super-resolution data path: each item's HR file decoded, randomly cropped and flipped, and
    its LR made with PIL's bicubic, then ``ToTensor``, in a DataLoader's workers (4 positions per file)."""

    def __init__(self, root: Path, crop: int, scale: int = 4) -> None:
        from torchvision import transforms

        self.files, self.crop, self.scale = sorted(root.iterdir()), crop, scale
        self.to_tensor = transforms.ToTensor()

    def __len__(self) -> int:
        return 4 * len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from PIL import Image

        with Image.open(self.files[index % len(self.files)]) as image:
            top, left = (int(np.random.randint(side - self.crop + 1)) for side in image.size[::-1])
            hr = image.convert("RGB").crop((left, top, left + self.crop, top + self.crop))
        if np.random.rand() < 0.5:
            hr = hr.transpose(Image.FLIP_LEFT_RIGHT)
        lr = hr.resize((self.crop // self.scale,) * 2, Image.BICUBIC)
        return {"lr": self.to_tensor(lr) * 2 - 1, "hr": self.to_tensor(hr) * 2 - 1}


def reference_loader(workload: Workload, data_root: Path, batch_size: int,
                     workers: int) -> torch.utils.data.DataLoader:
    """The textbook pipeline: PIL images, per-sample transforms, a shuffling DataLoader with workers."""
    from torchvision import datasets, transforms

    if workload.data in ("paired", "unpaired", "sr"):
        dataset = HighResolutionFiles(data_root, workload.image_size) if workload.data == "sr" else \
            TranslationFiles(data_root, workload.data == "paired", workload.image_size)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                           drop_last=True)
    normalize = transforms.Normalize([0.5] * workload.channels, [0.5] * workload.channels)
    if workload.data == "mnist":  # PyTorch's MNIST examples
        dataset = datasets.MNIST(str(data_root), train=True, download=False,
                                 transform=transforms.Compose([transforms.ToTensor(), normalize]))
    else:  # PyTorch's DCGAN tutorial
        dataset = datasets.ImageFolder(str(data_root), transform=transforms.Compose([
            transforms.Resize(workload.image_size), transforms.CenterCrop(workload.image_size),
            transforms.ToTensor(), normalize]))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       drop_last=True)


class LoaderBatches:
    """(c)'s input: a loader's batches epoch after epoch, as a tutorial's ``for epoch: for batch in loader`` takes them."""

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device) -> None:
        self.batches = self._endless(loader)
        self.device = device

    @staticmethod
    def _endless(loader: torch.utils.data.DataLoader) -> Iterator[Any]:
        while True:
            yield from loader

    def __call__(self, batch_size: int | None = None) -> Batch:
        """The next batch; the loader was built at the batch size the workload asks for (``batch_size``)."""
        batch = next(self.batches)
        if isinstance(batch, dict):  # translation data: its own batch keys
            return {key: value.to(self.device) for key, value in batch.items()}
        images, labels = batch
        return {"real": images.to(self.device), "label": labels.to(self.device)}

    def close(self) -> None:
        """Stop the workers now: shut down by the garbage collector, they sat out a 5 s join timeout each."""
        self.batches.close()


def prebuilt_batches(trainer: Trainer) -> Callable[..., Batch]:
    """(a)'s input: a few batches of the same data, cut by the trainer's own stream, already on the device;
    of trainer.batch_size, or of the size a recipe asks for (``next_batch(n)``, e.g. a growing network's)."""
    cycles: dict[int | None, Iterator[Batch]] = {}

    def next_batch(batch_size: int | None = None) -> Batch:
        if batch_size not in cycles:
            cycles[batch_size] = itertools.cycle([trainer.stream.next(batch_size) for _ in range(PREBUILT_BATCHES)])
        return next(cycles[batch_size])

    return next_batch


def data_overrides(workload: Workload, data_root: Path) -> list[str]:
    if workload.data == "mnist":
        return ["data=mnist", f"data.root={data_root}", "data.download=false"]
    if workload.data in ("paired", "unpaired"):
        return [f"data={workload.data}", f"data.root={data_root}", f"data.crop_size={workload.image_size}",
                f"data.load_size={load_size(workload.image_size)}", *workload.overrides]
    if workload.data == "sr":
        return ["data=sr", f"data.root={data_root}", f"data.hr_size={workload.image_size}", "data.repeat=4",
                *workload.overrides]
    return ["data=image_folder", f"data.root={data_root}", f"data.image_size={workload.image_size}", "data.channels=3",
            *workload.overrides]


def measure(workload: Workload, data_root: Path, runs_root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every variant of one workload, interleaved over ``args.rounds`` rounds."""

    batch_size = workload.batch_size or args.batch_size

    def compose_config(max_steps: int) -> DictConfig:
        return compose(config_name=CONFIG_NAME, overrides=[
            f"model={workload.preset}", f"device={args.device}", f"trainer.batch_size={batch_size}",
            f"trainer.max_steps={max_steps}", "trainer.max_epochs=null", "trainer.progress=false",
            *data_overrides(workload, data_root)])

    def new_trainer(max_steps: int, name: str) -> Trainer:
        return Trainer(compose_config(max_steps), runs_root / workload.name / name)

    host = new_trainer(1, "bare")  # (a)'s recipe and batches; never fitted
    device = host.device
    bare = RecipeLoop(host.recipe, prebuilt_batches(host), device)
    step_seconds = bare.seconds_per_step()
    steps = args.steps or max(MIN_STEPS, round(TARGET_STRETCH_SECONDS / step_seconds))
    warmup = max(1, math.ceil(WARMUP_SECONDS / step_seconds))
    reference_batches = LoaderBatches(reference_loader(workload, data_root, batch_size, args.reference_workers),
                                      device)
    reference = RecipeLoop(new_trainer(1, "reference").recipe, reference_batches, device)
    reference.train(warmup)
    print(f"{workload.name}: {args.rounds} rounds of {steps} steps per variant ({step_seconds * 1e3:.1f} ms/step bare, "
          f"{warmup} warm-up steps)", file=sys.stderr, flush=True)

    recorder = Recorder(device)
    others = {"bare": bare, "reference": reference}

    def between(round_index: int) -> None:  # (a) and (c) of one round, their order alternating
        for key in (list(others) if round_index % 2 == 0 else list(others)[::-1]):
            recorder.time(key, lambda: others[key].train(steps))

    started = time.perf_counter()
    trainer = new_trainer(warmup + args.rounds * steps, "trainer")
    startup_s = time.perf_counter() - started
    finish_s = interleave_in_fit(trainer, warmup, steps, args.rounds, recorder, between)
    reference_batches.close()

    n_critic = int(trainer.recipe.batches_per_step)
    results = {key: recorder.summary(key, batch_size * n_critic * steps) for key in VARIANTS}
    results["trainer"].update(startup_s=startup_s, finish_s=finish_s)
    results["reference"]["num_workers"] = args.reference_workers
    return {
        "workload": workload.name, "preset": workload.preset, "data": workload.data,
        "shape": [workload.channels, workload.image_size, workload.image_size],
        "num_classes": NUM_CLASSES, "batch_size": batch_size, "n_critic": n_critic,
        "steps": steps, "warmup_steps": warmup, "rounds": args.rounds, "variants": results,
        "ratios": {"trainer/bare": recorder.ratio("trainer", "bare"),
                   "trainer/reference": recorder.ratio("trainer", "reference")},
    }


# --- reporting --------------------------------------------------------------------------------------


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    settings = report["settings"]
    table = Table(title=f"images/s (median of {settings['rounds']} rounds; min-max) on {settings['device']}, "
                        f"batch {settings['batch_size']} (bN: the workload's own), {settings['threads']} torch threads")
    on_gpu = any("cuda_max_allocated_mb" in w["variants"]["bare"] for w in report["workloads"])
    for column in ("workload", "steps x n_critic", *VARIANTS.values(), "(b)/(a)", "(b)/(c)", "peak RSS MB a/b/c",
                   *(["CUDA max MB a/b/c"] if on_gpu else [])):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for w in report["workloads"]:
        variants = w["variants"]
        rates = [f"{v['images_per_s']:,.0f} ({min(v['rounds_images_per_s']):,.0f}-{max(v['rounds_images_per_s']):,.0f})"
                 for v in variants.values()]
        memory = [" / ".join(f"{v[key]:,.0f}" for v in variants.values())
                  for key in ("peak_rss_mb", *(["cuda_max_allocated_mb"] if on_gpu else []))]
        batch = f" b{w['batch_size']}" if w["batch_size"] != settings["batch_size"] else ""
        table.add_row(f"{w['workload']} {'x'.join(map(str, w['shape']))}{batch}", f"{w['steps']} x {w['n_critic']}", *rates,
                      f"{w['ratios']['trainer/bare']:.3f}", f"{w['ratios']['trainer/reference']:.3f}", *memory)
    Console(width=None if sys.stdout.isatty() else 160).print(table)  # files and pipes: no wrapped cells


TILE_INPUTS = (512, 2048)  # input sizes of the tiled-upscaling memory check
TILE = 256


def tile_memory(device: torch.device) -> list[dict[str, Any]]:
    """Peak memory of upscaling growing inputs x4 in 256-pixel tiles (the translate task's path), next to
    the size of the output itself: what tiling keeps bounded is everything but the output."""
    from gantrain.engine.tiling import translate_images
    from gantrain.nets.srresnet import SRResNetGenerator
    from gantrain.recipes.translation import TranslationInfo

    rows = []
    torch.manual_seed(0)
    generator = SRResNetGenerator(3, 3, 4, features=32, blocks=8).to(device).eval()  # the CPU demo's size
    info = TranslationInfo(3, 3, multiple=1, scale=4)
    memory = PeakMemory(device)
    for size in TILE_INPUTS:
        image = torch.rand(1, 3, size, size, device=device) * 2 - 1
        gc.collect()
        memory.reset()
        started = time.perf_counter()
        with torch.no_grad():
            output = translate_images(generator, image, info, tile=TILE, overlap=16)
        synchronize(device)
        rows.append({"input": size, "tile": TILE, "seconds": time.perf_counter() - started,
                     "output_mb": output.numel() * output.element_size() / MEGABYTE, **memory.read()})
        del output
    print("tiled x4 upscaling (srresnet, 32 features, 8 blocks, tile 256):", file=sys.stderr)
    for row in rows:
        peaks = ", ".join(f"{key} {value:,.0f}" for key, value in row.items() if key.endswith("_mb"))
        print(f"  {row['input']}x{row['input']} -> {4 * row['input']}: {row['seconds']:.1f} s, {peaks}", file=sys.stderr)
    return rows


def machine() -> dict[str, Any]:
    """What the numbers were measured on, for the JSON."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=None, metavar="NAME",
                        help=f"workloads to run, space- or comma-separated (default: all on CUDA; elsewhere all but the "
                             f"paper-sized {', '.join(w.name for w in WORKLOADS.values() if w.heavy)}); "
                             f"choose from: {', '.join(WORKLOADS)}")
    parser.add_argument("--tile-memory", action="store_true",
                        help="also measure the peak memory of tiled upscaling of 512x512 and 2048x2048 inputs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None,
                        help=f"generator steps per timed stretch (default: about {TARGET_STRETCH_SECONDS:g} s of (a)'s work)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed stretches per variant, the variants taking turns (default 5)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--reference-workers", type=int, default=2,
                        help="DataLoader workers of (c) (default 2, as in PyTorch's DCGAN tutorial)")
    parser.add_argument("--dataset-size", type=int, default=MNIST_SIZE,
                        help=f"synthetic images written (default {MNIST_SIZE:,}; the 64x64 folder holds at most "
                             f"{IMAGE_FOLDER_SIZE:,})")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if args.presets is None:
        gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        args.presets = [name for name, workload in WORKLOADS.items() if gpu or not workload.heavy]
    args.presets = [name for item in args.presets for name in item.split(",") if name]
    unknown = [name for name in args.presets if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown preset '{unknown[0]}'; choose from: {', '.join(WORKLOADS)}")
    for name in ("batch_size", "steps", "rounds", "threads", "dataset_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.reference_workers < 0:
        parser.error("--reference-workers must be at least 0")
    if args.dataset_size < args.batch_size:
        parser.error("--dataset-size must be at least --batch-size")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    given = sys.argv[1:] if argv is None else argv
    if "--storage" in given:  # data.storage=memory vs disk: measurements and options of their own
        sys.path.insert(0, str(REPO / "scripts"))
        import storage_bench

        return storage_bench.main([arg for arg in given if arg != "--storage"])
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_builtin_parts()
    workloads = [WORKLOADS[name] for name in args.presets]
    try:
        device = resolve_device(args.device)
    except UserError as error:
        raise SystemExit(f"bench: error: {error}") from None
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {"device": str(device), "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
                     "threads": torch.get_num_threads(), "reference_workers": args.reference_workers,
                     "dataset_size": args.dataset_size,
                     "peak_rss_since": "each stretch's start" if PeakMemory(device).resettable else "the process's start"},
        "workloads": [],
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gantrain-bench-") as scratch, \
            initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        written: dict[tuple[str, int], Path] = {}
        for workload in workloads:
            key = (workload.data, workload.image_size)
            if key not in written:
                written[key] = write_data(workload, Path(scratch) / f"{workload.data}_{workload.image_size}",
                                          args.dataset_size)
            report["workloads"].append(measure(workload, written[key], Path(scratch) / "runs", args))
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.tile_memory:
        report["tile_memory"] = tile_memory(device)
    report["total_s"] = time.perf_counter() - started
    print_table(report)
    print(f"total {report['total_s']:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
