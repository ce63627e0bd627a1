"""Offline demo datasets built from real photographs that ship inside installed packages.

scikit-image bundles a dozen photographs (astronaut, chelsea, coffee, rocket, a motorcycle, ...) and
scikit-learn two (china, flower). The demos cut crops from them, once, into a cache folder, in exactly
the on-disk layouts users' own data has, then read that folder with the ordinary builders: what trains
is the real path, on real photos, with no download.

Held-out crops never overlap training crops: every photo is split in two regions, the larger one
for training, the other for val/ and test/.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from gantrain.data.source import DataSource
from gantrain.data.super_resolution import super_resolution
from gantrain.data.translation import paired, unpaired
from gantrain.errors import UserError
from gantrain.registry import DATASETS

log = logging.getLogger("gantrain")

COMPLETE = ".complete"  # written last into a finished demo folder
TRAIN_SHARE = 0.75  # the left part of each photo's width gives training crops, the rest held-out ones


def default_demo_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gantrain" / "demos"


def bundled_photos() -> dict[str, np.ndarray]:
    """The colour photographs scikit-image and scikit-learn install, as (H, W, 3) uint8 arrays (left out: the
    Hubble deep field and the retina, mostly black backgrounds with little detail to learn from)."""
    try:
        from skimage import data
    except ImportError as error:
        raise UserError(f"the demo datasets need scikit-image (pip install scikit-image): {error}") from None
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")}
    photos["motorcycle"] = data.stereo_motorcycle()[0]
    for name, image in zip(("china", "flower"), load_sample_images().images):
        photos[name] = image
    return photos


def built_folder(name: str, root: str | None, build: Callable[[Path], None]) -> Path:
    """``ROOT/NAME``, built by ``build`` the first time (into a temporary folder renamed when complete)."""
    folder = (Path(str(root)).expanduser() if root else default_demo_root()) / name
    if (folder / COMPLETE).is_file():
        return folder
    partial = folder.with_name(f".{name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        log.info("building the demo dataset %s (once)", folder)
        build(partial)
        (partial / COMPLETE).write_text("built by gantrain\n", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"cannot build the demo dataset in {folder}: {error.strerror or error}; "
                        "choose a writable folder with data.root=PATH") from None
    return folder


def crops(photo: np.ndarray, columns: tuple[float, float], size: int, count: int,
          rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random ``size`` x ``size`` crops lying within the given share of the photo's width."""
    height, width = photo.shape[:2]
    left, right = int(columns[0] * width), int(columns[1] * width)
    tops = rng.integers(0, height - size + 1, count)
    lefts = rng.integers(left, right - size + 1, count)
    return [photo[top:top + size, x:x + size] for top, x in zip(tops, lefts)]


def regions(split: str) -> tuple[float, float]:
    return (0.0, TRAIN_SHARE) if split == "train" else (TRAIN_SHARE, 1.0)


def save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def greyscale(photo: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, the weights PIL's convert("L") uses."""
    return np.round(photo.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.uint8)


def vintage(photo: np.ndarray) -> np.ndarray:
    """An old-print look: luma toned warm brown, faded blacks and softened whites."""
    luma = greyscale(photo).astype(np.float32) / 255.0
    toned = np.stack([luma * 0.94 + 0.10, luma * 0.80 + 0.07, luma * 0.58 + 0.04], axis=-1)
    return np.round(np.clip(toned, 0, 1) * 255).astype(np.uint8)


SPLIT_COUNTS = {"train": 240, "val": 24, "test": 48}  # crops per split, over all photos


def _per_photo(total: int, photos: int) -> int:
    return max(1, total // photos)


def build_paired_demo(folder: Path, size: int, seed: int = 0) -> None:
    """Colourisation pairs: A/ greyscale crops, B/ the same crops in colour (pix2pix's A/ + B/ layout)."""
    rng = np.random.default_rng(seed)
    photos = bundled_photos()
    for split, total in SPLIT_COUNTS.items():
        for name, photo in photos.items():
            for index, crop in enumerate(crops(photo, regions(split), size, _per_photo(total, len(photos)), rng)):
                save(greyscale(crop), folder / split / "A" / f"{name}_{index:03d}.png")
                save(crop, folder / split / "B" / f"{name}_{index:03d}.png")


def build_unpaired_demo(folder: Path, size: int, seed: int = 0) -> None:
    """photo2vintage: A/ colour crops, B/ old-print crops drawn at other random places of the same photos.

    Both domains show the same kinds of scene, so style is all that tells them apart (with half the photos
    on each side a discriminator tells the scenes apart instead, and the generators learn to paint the other
    side's scenes); no B crop is the A crop of the same place, so there are no pairs.
    """
    rng = np.random.default_rng(seed)
    photos = bundled_photos()
    for split, total in SPLIT_COUNTS.items():
        if split == "val":
            continue  # the CycleGAN layout: trainA/B and testA/B
        for side in ("A", "B"):
            for name, photo in photos.items():
                for index, crop in enumerate(crops(photo, regions(split), size, _per_photo(total, len(photos)), rng)):
                    save(crop if side == "A" else vintage(crop), folder / f"{split}{side}" / f"{name}_{index:03d}.png")


DEMO_SIZE = 96  # pixels of each stored crop; data.load_size resizes them and data.crop_size cuts from that


@DATASETS.register("paired_demo")
def paired_demo(root: str | None = None, direction: str = "AtoB", preprocess: str = "resize_and_crop",
                load_size: int = 72, crop_size: int = 64, flip: bool = True, channels: int | None = None,
                storage: str = "auto", cache_dir: str | None = None) -> DataSource:
    """Greyscale -> colour crops of the bundled photos, in the pix2pix layout (built once into a cache)."""
    folder = built_folder("paired_demo-v2", root, lambda path: build_paired_demo(path, DEMO_SIZE))
    return paired(str(folder), direction, preprocess, load_size, crop_size, flip, channels, storage, cache_dir)


@DATASETS.register("unpaired_demo")
def unpaired_demo(root: str | None = None, preprocess: str = "resize_and_crop", load_size: int = 72,
                  crop_size: int = 64, flip: bool = True, channels: int | None = None, storage: str = "auto",
                  cache_dir: str | None = None) -> DataSource:
    """Colour photos <-> old-print photos, unpaired, in the CycleGAN layout (built once into a cache)."""
    folder = built_folder("unpaired_demo-v3", root, lambda path: build_unpaired_demo(path, DEMO_SIZE))
    return unpaired(str(folder), preprocess, load_size, crop_size, flip, channels, storage, cache_dir)


# --- super-resolution ------------------------------------------------------------------------------

SR_VAL_PHOTOS = ("chelsea", "coffee")  # whole photos held out: a cat and a cup, shown in no training photo


def build_sr_demo(folder: Path) -> None:
    """Whole bundled photos as HR PNGs: val/ holds SR_VAL_PHOTOS, train/ the others, so val is never trained on."""
    for name, photo in bundled_photos().items():
        save(photo, folder / ("val" if name in SR_VAL_PHOTOS else "train") / f"{name}.png")


@DATASETS.register("sr_demo")
def sr_demo(root: str | None = None, scale: int = 4, hr_size: int = 64, lr_root: str | None = None,
            val_root: str | None = None, flip: bool = True, repeat: int = 64, channels: int = 3,
            cache_max_gb: float = 12.0, storage: str = "auto", cache_dir: str | None = None,
            held_out_only: bool = False) -> DataSource:
    """x``scale`` super-resolution of real photos (built once into a cache), read as data=sr reads a folder."""
    folder = built_folder("sr_demo-v1", root, build_sr_demo)
    return super_resolution(str(folder / "train"), scale, hr_size, lr_root,
                            str(folder / "val") if val_root is None else val_root, flip, repeat, channels,
                            cache_max_gb, storage, cache_dir, held_out_only)
