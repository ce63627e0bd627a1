"""Image-to-image translation data in the layouts users already have on disk.

``paired`` (pix2pix): ``ROOT/train/`` (and ``val/``, ``test/``) where each file is an A|B pair
side by side, split at half the width (facades, maps, edges2shoes, cityscapes), or
``ROOT/train/A/`` + ``ROOT/train/B/`` with matching file names. Batches: ``source`` (the input
side, chosen by ``direction``) and ``target``.

``unpaired`` (CycleGAN): ``ROOT/trainA/`` and ``ROOT/trainB/`` (and ``testA/``/``testB/``,
``valA/``/``valB/``). An epoch is max(|A|, |B|) positions; position i shows A image i mod |A|
and a B image drawn at random, independently of A. Batches: ``a`` and ``b``.

Preprocessing follows the papers' code: resize to ``load_size`` then a random ``crop_size``
crop and a horizontal flip, the same for both halves of a pair and independent for A and B.
Every image is decoded and resized once, at load time; crops and flips are cut per batch from
the stream's per-position uniforms. Held-out splits are cut at the centre, never flipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from gantrain.data.image_bank import (GREY_MODES, BankSet, ImageBank, as_float, channels_of, flip_where, image_files,
                                      open_image, to_uint8_tensor)
from gantrain.data.source import DataSource, DataSpec
from gantrain.data.storage import Storage
from gantrain.errors import UserError
from gantrain.options import positive_int
from gantrain.registry import DATASETS, unknown_choice

log = logging.getLogger("gantrain")

PREPROCESS = ("resize_and_crop", "crop", "scale_width_and_crop", "none")
DIRECTIONS = ("AtoB", "BtoA")
HELD_OUT = ("val", "test")
PAIR_DRAWS = 3  # uniforms per position of paired data: crop row, crop column, flip coin
DOMAIN_DRAWS = 3  # the same for each side of unpaired data, plus one to pick the B image


@dataclass(frozen=True)
class Preprocess:
    """``data.preprocess`` with its sizes: how an image is resized at load time and cropped per batch."""

    mode: str
    load_size: int
    crop_size: int
    flip: bool

    @classmethod
    def from_options(cls, preprocess: str, load_size: int, crop_size: int, flip: bool) -> "Preprocess":
        if preprocess not in PREPROCESS:
            raise UserError(unknown_choice("data.preprocess", preprocess, list(PREPROCESS)))
        if not isinstance(flip, bool):
            raise UserError(f"data.flip must be true or false, got {flip!r}")
        load, crop = positive_int(load_size, "data.load_size"), positive_int(crop_size, "data.crop_size")
        if preprocess in ("resize_and_crop", "scale_width_and_crop") and crop > load:
            raise UserError(f"data.crop_size={crop} is larger than data.load_size={load}: the crop must fit in "
                            "the resized image")
        return cls(preprocess, load, crop, flip)

    @property
    def crop(self) -> tuple[int, int] | None:
        return None if self.mode == "none" else (self.crop_size, self.crop_size)

    @property
    def needs_square(self) -> bool:
        """resize_and_crop squashes each image to load_size x load_size: refuse to distort non-square ones."""
        return self.mode == "resize_and_crop"

    def resize(self, image: Image.Image) -> Image.Image:
        """The load-time resize (bicubic, as the papers' code does)."""
        width, height = image.size
        if self.mode == "resize_and_crop":
            return image.resize((self.load_size, self.load_size), Image.BICUBIC)
        if self.mode == "scale_width_and_crop" and width != self.load_size:
            new_height = max(round(self.load_size * height / width), self.crop_size)
            return image.resize((self.load_size, new_height), Image.BICUBIC)
        return image

    def check(self, image: Image.Image, path: Path) -> None:
        """A resized image the crop does not fit in is a one-line error naming the file."""
        width, height = image.size
        if self.crop is not None and (width < self.crop_size or height < self.crop_size):
            raise UserError(f"{path} is {width}x{height} after data.preprocess={self.mode}, smaller than "
                            f"data.crop_size={self.crop_size}; lower data.crop_size or raise data.load_size")

    def describe(self) -> str:
        return f"data.preprocess={self.mode}"

    def stored(self) -> dict[str, object]:
        """What shapes the images kept by the storage (a cache made with other values is rebuilt); not the flips."""
        return {"preprocess": self.mode, "load_size": self.load_size, "crop_size": self.crop_size}


def _prepare(image: Image.Image, path: Path, how: Preprocess, channels: int) -> torch.Tensor:
    resized = how.resize(image)
    how.check(resized, path)
    return to_uint8_tensor(resized, channels)


_squashed: set[Path] = set()  # folders already warned about


def _check_square(image: Image.Image, path: Path, how: Preprocess, what: str) -> None:
    """resize_and_crop squashes non-square images to a square, as the papers' code does: say so, once per folder."""
    width, height = image.size
    if how.needs_square and width != height and path.parent not in _squashed:
        _squashed.add(path.parent)
        log.warning("%s: %s is %dx%d, not square; data.preprocess=resize_and_crop squashes such images to "
                    "load_size x load_size (as the papers' code does); data.preprocess=scale_width_and_crop keeps "
                    "their aspect", path, what, width, height)


def _one_size(bank: ImageBank, how: Preprocess, where: Path) -> None:
    """data.preprocess=none batches whole images: they must share one size."""
    if how.crop is None and bank.stacked is None:
        sizes = sorted({bank.size(i) for i in range(len(bank))})
        raise UserError(f"data.preprocess=none uses whole images, but those under {where} have different sizes "
                        f"({sizes[0][1]}x{sizes[0][0]}, {sizes[-1][1]}x{sizes[-1][0]}, ...); use "
                        "data.preprocess=resize_and_crop or crop")


def _mode_channels(paths: Sequence[Path], channels: int | None) -> int:
    """Channels from the files' modes (read from their headers) unless data.channels says."""
    if channels is not None:
        return channels_of([], channels)
    modes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                modes.append(image.mode)
        except OSError:
            open_image(path)  # raises the one-line error naming the file
    return 1 if all(mode in GREY_MODES for mode in modes) else 3


def _nonempty(files: list[Path], folder: Path) -> list[Path]:
    if not files:
        raise UserError(f"no images under {folder}")
    return files


# --- paired ----------------------------------------------------------------------------------------


class PairedImages(BankSet):
    """A|B pairs: ``source`` and ``target`` images cut with the same crop and the same flip."""

    random_numbers = PAIR_DRAWS

    def __init__(self, a: ImageBank, b: ImageBank, how: Preprocess, direction: str) -> None:
        self.source, self.target = (a, b) if direction == "AtoB" else (b, a)
        self.how = how

    def banks(self) -> list[ImageBank]:
        return [self.source, self.target]

    def __len__(self) -> int:
        return len(self.source)

    def get_batch(self, indices: torch.Tensor, randoms: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        offsets = randoms[:, :2] if randoms is not None else None
        coins = randoms[:, 2] if randoms is not None and self.how.flip else None
        return {key: as_float(flip_where(bank.crop_batch(indices, self.how.crop, offsets), coins))
                for key, bank in (("source", self.source), ("target", self.target))}

    def domain(self, key: str) -> "DomainImages":
        """One side's images alone (``source`` or ``target``), as real samples: FID's reference."""
        return DomainImages(getattr(self, key), self.how)


def _split_side_by_side(paths: list[Path], how: Preprocess, channels: tuple[int | None, int | None],
                        storage: Storage) -> tuple[ImageBank, ImageBank]:
    from_file = _mode_channels(paths, None)
    count_a, count_b = (c if c is not None else from_file for c in channels)

    def halves(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        image = open_image(path)
        width, height = image.size
        if width % 2:
            raise UserError(f"{path} is {width} pixels wide, an odd width: a paired image holds A|B side by side "
                            "and is split at half the width")
        left, right = image.crop((0, 0, width // 2, height)), image.crop((width // 2, 0, width, height))
        _check_square(left, path, how, "each half")
        return _prepare(left, path, how, count_a), _prepare(right, path, how, count_b)

    key = {"layout": "paired A|B halves", **how.stored(), "channels": [count_a, count_b]}
    a, b = storage.banks(paths, halves, key, [p.name for p in paths], f"the {len(paths)} pairs under {paths[0].parent}")
    return a, b


def _matched_folders(folder: Path, how: Preprocess, channels: tuple[int | None, int | None],
                     storage: Storage) -> tuple[ImageBank, ImageBank]:
    """``A/`` and ``B/`` whose files match by name (the suffix may differ)."""
    a_files = _nonempty(image_files(folder / "A"), folder / "A")
    b_files = _nonempty(image_files(folder / "B"), folder / "B")
    key = lambda path, side: str(path.relative_to(folder / side).with_suffix(""))  # noqa: E731
    a_names, b_names = {key(p, "A"): p for p in a_files}, {key(p, "B"): p for p in b_files}
    only_a, only_b = sorted(set(a_names) - set(b_names)), sorted(set(b_names) - set(a_names))
    if only_a or only_b:
        shown = [f"A/{n}" for n in only_a[:3]] + [f"B/{n}" for n in only_b[:3]]
        raise UserError(f"{folder}: A/ and B/ must hold files with matching names; {len(only_a) + len(only_b)} have no "
                        f"partner, e.g. {', '.join(shown)}")
    names = sorted(a_names)
    banks = [_bank([side_files[n] for n in names], how, side_channels, storage, names)
             for side_files, side_channels in ((a_names, channels[0]), (b_names, channels[1]))]
    for index, name in enumerate(names):
        if banks[0].size(index) != banks[1].size(index):
            raise UserError(f"{folder}: A/{name} and B/{name} differ in size after {how.describe()}; a pair must "
                            "show the same view")
    return banks[0], banks[1]


def _bank(files: list[Path], how: Preprocess, channels: int | None, storage: Storage,
          names: list[str] | None = None) -> ImageBank:
    """One side's files decoded, checked and resized (channels from the files unless given), kept by ``storage``."""
    count = _mode_channels(files, channels)

    def load(path: Path) -> torch.Tensor:
        image = open_image(path)
        _check_square(image, path, how, "the image")
        return _prepare(image, path, how, count)

    key = {"layout": "images", **how.stored(), "channels": count}
    return storage.bank(files, load, key, names or [p.name for p in files],
                        f"the {len(files)} images under {files[0].parent}")


def _paired_split(folder: Path, how: Preprocess, channels: tuple[int | None, int | None],
                  direction: str, storage: Storage) -> PairedImages:
    """One split; ``channels`` (A, B): None takes them from the files."""
    if (folder / "A").is_dir() and (folder / "B").is_dir():
        a, b = _matched_folders(folder, how, channels, storage)
    else:
        a, b = _split_side_by_side(_nonempty(image_files(folder), folder), how, channels, storage)
    _one_size(a, how, folder)
    return PairedImages(a, b, how, direction)


def _root(root: str | None, name: str) -> Path:
    if root is None:
        raise UserError(f"data={name} needs data.root=PATH")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise UserError(f"data.root {path} is not a folder")
    return path


def _direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise UserError(unknown_choice("data.direction", direction, list(DIRECTIONS)))
    return direction


def _channels_option(channels: int | None) -> int | None:
    return None if channels is None else channels_of([], channels)


def _warn_no_held_out(root: Path, expected: str) -> None:
    log.warning("no held-out split (%s) under %s: grids and metrics use training images", expected, root)


@DATASETS.register("paired")
def paired(root: str | None = None, direction: str = "AtoB", preprocess: str = "resize_and_crop",
           load_size: int = 286, crop_size: int = 256, flip: bool = True, channels: int | None = None,
           storage: str = "auto", cache_dir: str | None = None) -> DataSource:
    """pix2pix data: train/ (val/, test/) of A|B files side by side, or of A/ and B/ folders."""
    folder = _root(root, "paired")
    kept = Storage(storage, cache_dir, data_root=folder)
    how = Preprocess.from_options(preprocess, load_size, crop_size, flip)
    direction, channels = _direction(direction), _channels_option(channels)
    if not (folder / "train").is_dir():
        found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise UserError(f"data=paired needs {folder / 'train'} (A|B images side by side, or A/ and B/ folders), "
                        f"next to val/ and/or test/; found: {found}")
    train = _paired_split(folder / "train", how, (channels, channels), direction, kept)
    a_bank, b_bank = (train.source, train.target) if direction == "AtoB" else (train.target, train.source)
    held_out = {split: _paired_split(folder / split, how, (a_bank.channels, b_bank.channels), direction, kept)
                for split in HELD_OUT if (folder / split).is_dir()}  # decoded with the training split's channels
    if not held_out:
        _warn_no_held_out(folder, "val/ or test/")
    spec = DataSpec(shape=_shape(train.target, how),
                    keys={"source": _shape(train.source, how), "target": _shape(train.target, how)},
                    epoch_size=len(train))
    return DataSource(train, spec, held_out)


def _shape(bank: ImageBank, how: Preprocess) -> tuple[int, int, int]:
    if how.crop is not None:
        return (bank.channels, *how.crop)
    return (bank.channels, *bank.size(0))


# --- unpaired --------------------------------------------------------------------------------------


class UnpairedImages(BankSet):
    """Two domains with no pairing: position i is A image i mod |A| and a random B image."""

    random_numbers = 1 + 2 * DOMAIN_DRAWS

    def __init__(self, a: ImageBank, b: ImageBank, how: Preprocess) -> None:
        self.a, self.b = a, b
        self.how = how

    def banks(self) -> list[ImageBank]:
        return [self.a, self.b]

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def get_batch(self, indices: torch.Tensor, randoms: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        a_index = indices % len(self.a)
        if randoms is None:  # held out: the i-th image of each domain, centred
            b_index = indices % len(self.b)
            draws = {"a": (None, None), "b": (None, None)}
        else:
            b_index = (randoms[:, 0] * len(self.b)).long().clamp_(max=len(self.b) - 1).to(indices.device)
            draws = {"a": (randoms[:, 1:3], randoms[:, 3]), "b": (randoms[:, 4:6], randoms[:, 6])}
        batch = {}
        for key, bank, index in (("a", self.a, a_index), ("b", self.b, b_index)):
            offsets, coins = draws[key]
            batch[key] = as_float(flip_where(bank.crop_batch(index, self.how.crop, offsets),
                                             coins if self.how.flip else None))
        return batch

    def domain(self, key: str) -> "DomainImages":
        """One domain's images alone (``a`` or ``b``), as real samples."""
        return DomainImages(getattr(self, key), self.how)


def _domain_bank(folder: Path, how: Preprocess, channels: int | None, storage: Storage) -> ImageBank:
    bank = _bank(_nonempty(image_files(folder), folder), how, channels, storage)
    _one_size(bank, how, folder)
    return bank


@DATASETS.register("unpaired")
def unpaired(root: str | None = None, preprocess: str = "resize_and_crop", load_size: int = 286,
             crop_size: int = 256, flip: bool = True, channels: int | None = None, storage: str = "auto",
             cache_dir: str | None = None) -> DataSource:
    """CycleGAN data: trainA/ and trainB/ (testA/ and testB/, valA/ and valB/)."""
    folder = _root(root, "unpaired")
    kept = Storage(storage, cache_dir, data_root=folder)
    how = Preprocess.from_options(preprocess, load_size, crop_size, flip)
    channels = _channels_option(channels)
    missing = [name for name in ("trainA", "trainB") if not (folder / name).is_dir()]
    if missing:
        raise UserError(f"data=unpaired needs {folder}/trainA and {folder}/trainB (and testA/, testB/); "
                        f"missing: {', '.join(missing)}")
    a, b = _domain_bank(folder / "trainA", how, channels, kept), _domain_bank(folder / "trainB", how, channels, kept)
    held_out = {}
    for split in HELD_OUT:
        if (folder / f"{split}A").is_dir() and (folder / f"{split}B").is_dir():
            held_out[split] = UnpairedImages(_domain_bank(folder / f"{split}A", how, a.channels, kept),
                                             _domain_bank(folder / f"{split}B", how, b.channels, kept), how)
    if not held_out:
        _warn_no_held_out(folder, "testA/ and testB/")
    train = UnpairedImages(a, b, how)
    spec = DataSpec(shape=_shape(b, how), keys={"a": _shape(a, how), "b": _shape(b, how)}, epoch_size=len(train))
    return DataSource(train, spec, held_out)


class DomainImages:
    """One domain's images as real samples (``real`` of each batch), centred: a metric's reference."""

    def __init__(self, bank: ImageBank, how: Preprocess) -> None:
        self.bank = bank
        self.how = how

    def __len__(self) -> int:
        return len(self.bank)

    @property
    def device(self) -> torch.device:
        return self.bank.device

    def get_batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"real": as_float(self.bank.crop_batch(indices, self.how.crop))}
