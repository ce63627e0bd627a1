"""Super-resolution data: high-resolution photos, with the low-resolution inputs made the papers' way.

``sr`` reads a folder (recursively) of HR images of any size (DIV2K, Flickr2K, your own photos). Each
training position i shows image i mod N (``repeat`` positions per image, so a few photos still fill an
epoch of batches): a random ``hr_size`` crop, one of the 8 symmetries of the square (BasicSR's
``augment``: horizontal flip, vertical flip, transpose), and its LR made on the batch by MATLAB's bicubic
``imresize(crop, 1/scale)`` rounded to 8 bits as an LR file is (gantrain/data/bicubic.py). With
``lr_root`` the LR comes from ready files instead (DIV2K's ``0001x4.png`` beside HR ``0001.png``, or the
same name), cut at the aligned place: LR crop at (y, x), HR crop at (scale*y, scale*x).

Every image is decoded once into uint8, in memory (``cache_max_gb`` caps it) or a memory-mapped cache on disk
(``data.storage``, gantrain/data/storage.py): a random crop from either takes about a millisecond, decoding a
2K PNG to cut one takes tens of milliseconds, longer than a training step.
Crop offsets and symmetries come from the batch stream's per-position uniforms, so resume is exact.

Held out (``val_root``, Set5/Set14-style HR images): each image cropped at the top-left to a multiple of
the scale, its LR made once the same way. ``whole(index)`` gives an image pair at full size for the
papers' evaluation, ``get_batch`` fixed-size centre crops for preview grids.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from gantrain.data.bicubic import resize_8bit
from gantrain.data.image_bank import BankSet, ImageBank, as_float, image_files, open_image, to_uint8_tensor
from gantrain.data.source import DataSource, DataSpec
from gantrain.data.storage import Storage
from gantrain.errors import UserError
from gantrain.options import positive_int, positive_number
from gantrain.registry import DATASETS

log = logging.getLogger("gantrain")

SCALES = (2, 3, 4)
SR_DRAWS = 5  # uniforms per position: crop row, crop column, and the coins of hflip, vflip, transpose


def downscaled(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 HR (N, C, H, W) -> uint8 LR: MATLAB's bicubic imresize by 1/scale, as an 8-bit LR file holds it."""
    return resize_8bit(hr.float(), 1 / scale).to(torch.uint8)


def symmetries(images: torch.Tensor, coins: torch.Tensor | None) -> torch.Tensor:
    """Each square image of (N, C, S, S) flipped left-right, upside-down and transposed where its coin (N, 3) < 0.5.

    The three coins give all 8 symmetries of the square, each equally likely (BasicSR's ``augment``).
    """
    if coins is None:
        return images
    heads = coins.to(images.device) < 0.5
    for column, change in enumerate((lambda x: x.flip(-1), lambda x: x.flip(-2), lambda x: x.transpose(-1, -2))):
        images = torch.where(heads[:, column].view(-1, 1, 1, 1), change(images), images)
    return images


class BankPair(BankSet):
    """HR images and their LR (None: made on the batch), kept on one device together."""

    hr: ImageBank
    lr: ImageBank | None

    def banks(self) -> list[ImageBank]:
        return [bank for bank in (self.hr, self.lr) if bank is not None]


class SuperResolutionImages(BankPair):
    """Training pairs: random aligned HR/LR crops under one random symmetry, cut on the whole batch."""

    random_numbers = SR_DRAWS

    def __init__(self, hr: ImageBank, lr: ImageBank | None, scale: int, hr_size: int, flip: bool,
                 repeat: int) -> None:
        self.hr, self.lr = hr, lr
        self.scale, self.hr_size, self.flip, self.repeat = scale, hr_size, flip, repeat

    def __len__(self) -> int:
        return len(self.hr) * self.repeat

    def get_batch(self, indices: torch.Tensor, randoms: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{"lr", "hr"} in [-1, 1]; without ``randoms`` (not from the stream): centre crops, no symmetry."""
        images = indices % len(self.hr)
        offsets = randoms[:, :2] if randoms is not None else None
        coins = randoms[:, 2:SR_DRAWS] if randoms is not None and self.flip else None
        size = self.hr_size
        if self.lr is None:
            hr = symmetries(self.hr.crop_batch(images, (size, size), offsets), coins)
            return {"lr": as_float(downscaled(hr, self.scale)), "hr": as_float(hr)}
        lr, hr = aligned_crops(self.lr, self.hr, images, size // self.scale, self.scale, offsets)
        return {"lr": as_float(symmetries(lr, coins)), "hr": as_float(symmetries(hr, coins))}


def aligned_crops(lr: ImageBank, hr: ImageBank, images: torch.Tensor, lr_size: int, scale: int,
                  offsets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 LR crops at (y, x) and the HR crops showing the same view, at (scale*y, scale*x); None centres."""
    places = lr.places(images, (lr_size, lr_size), offsets)
    hr_places = [(top * scale, left * scale) for top, left in places]
    return lr.crop_at(images, (lr_size, lr_size), places), hr.crop_at(images, (lr_size * scale,) * 2, hr_places)


class HeldOutImages(BankPair):
    """Held-out HR images (cropped to a multiple of the scale) with their LR, made once.

    ``whole(index)`` is one pair at full size (the papers' evaluation); ``get_batch`` cuts centre crops of
    one size for preview grids: ``hr_size``, or the largest multiple of the scale that fits every image
    when one is smaller.
    """

    def __init__(self, hr: ImageBank, lr: ImageBank, scale: int, hr_size: int) -> None:
        self.hr, self.lr, self.scale = hr, lr, scale
        smallest = min(lr.smallest()) * scale
        self.crop = min(hr_size, smallest)
        self.names = list(hr.names)

    def __len__(self) -> int:
        return len(self.hr)

    def get_batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        lr, hr = aligned_crops(self.lr, self.hr, indices, self.crop // self.scale, self.scale, None)
        return {"lr": as_float(lr), "hr": as_float(hr)}

    def whole(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr (1, C, h, w), hr (1, C, scale*h, scale*w)) in [-1, 1]: image ``index`` at full size."""
        return as_float(self.lr.image(index)[None]), as_float(self.hr.image(index)[None])


class Undecoded:
    """The training images when only held-out data is needed (task=eval): counted, never decoded."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def get_batch(self, indices: torch.Tensor, randoms: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise RuntimeError("the training images were not decoded: the data was built for held-out use only")


# --- options and files -----------------------------------------------------------------------------


def _folder(path: str, option: str) -> Path:
    folder = Path(str(path)).expanduser()
    if not folder.is_dir():
        raise UserError(f"{option} {folder} is not a folder")
    return folder


def _images(folder: Path) -> list[Path]:
    files = image_files(folder)
    if not files:
        raise UserError(f"no images under {folder}")
    return files


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, or a one-line error naming the file."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError:
        open_image(path)  # raises the one-line error naming the file
        raise


def _check_options(scale: int, hr_size: int, flip: bool, repeat: int, channels: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise UserError(f"data.scale must be 2, 3 or 4, got {scale!r}")
    positive_int(hr_size, "data.hr_size")
    if hr_size % scale:
        raise UserError(f"data.hr_size={hr_size} is not a multiple of data.scale={scale}; use "
                        f"{hr_size // scale * scale or scale} or {(hr_size // scale + 1) * scale}")
    if not isinstance(flip, bool):
        raise UserError(f"data.flip must be true or false, got {flip!r}")
    positive_int(repeat, "data.repeat")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise UserError(f"data.channels must be 1 (greyscale) or 3 (RGB), got {channels!r}")


def _lr_partners(hr_files: list[Path], hr_root: Path, lr_root: Path, scale: int) -> list[Path]:
    """The LR file of each HR file: the same relative name, or DIV2K's NAMExSCALE, any image suffix."""
    by_path: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for path in _images(lr_root):
        key = str(path.relative_to(lr_root).with_suffix(""))
        by_path.setdefault(key, path)
        by_stem.setdefault(path.stem, []).append(path)
    partners = []
    for hr_path in hr_files:
        key = str(hr_path.relative_to(hr_root).with_suffix(""))
        wanted = (key, f"{key}x{scale}")
        found = next((by_path[k] for k in wanted if k in by_path), None)
        if found is None:  # e.g. data.lr_root=DIV2K_train_LR_bicubic holding X4/0001x4.png
            found = next((by_stem[s][0] for s in (hr_path.stem, f"{hr_path.stem}x{scale}")
                          if len(by_stem.get(s, ())) == 1), None)
        if found is None:
            raise UserError(f"no LR image for {hr_path} under data.lr_root {lr_root} (looked for "
                            f"{Path(key).name} or {Path(key).name}x{scale} with an image suffix)")
        partners.append(found)
    return partners


def _check_fits(sizes: list[tuple[int, int]], files: list[Path], hr_size: int) -> None:
    for (width, height), path in zip(sizes, files):
        if width < hr_size or height < hr_size:
            raise UserError(f"{path} is {width}x{height}, smaller than data.hr_size={hr_size}; lower data.hr_size "
                            "or leave the image out")


def _check_lr_sizes(hr_sizes: list[tuple[int, int]], lr_sizes: list[tuple[int, int]], hr_files: list[Path],
                    lr_files: list[Path], scale: int) -> None:
    for (hr_w, hr_h), (lr_w, lr_h), hr_path, lr_path in zip(hr_sizes, lr_sizes, hr_files, lr_files):
        if (lr_w, lr_h) != (hr_w // scale, hr_h // scale):
            raise UserError(f"{lr_path} is {lr_w}x{lr_h} but {hr_path} is {hr_w}x{hr_h}: with data.scale={scale} "
                            f"the LR image must be {hr_w // scale}x{hr_h // scale} (HR / scale)")


def _decoded(files: list[Path], sizes: list[tuple[int, int]], channels: int, storage: Storage, what: str) -> ImageBank:
    """Whole images as they are (any size), kept by ``storage``."""
    return storage.bank(files, lambda path: to_uint8_tensor(open_image(path), channels),
                        {"layout": "sr images", "channels": channels}, [path.stem for path in files], what,
                        nbytes=sum(width * height for width, height in sizes) * channels)


def _held_out(files: list[Path], scale: int, hr_size: int, channels: int, storage: Storage) -> HeldOutImages:
    """HR images cropped at the top-left to a multiple of ``scale``, with their LR made once."""

    def pair(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        image = to_uint8_tensor(open_image(path), channels)
        height, width = image.shape[-2] // scale * scale, image.shape[-1] // scale * scale
        if not height or not width:
            raise UserError(f"{path} is {image.shape[-1]}x{image.shape[-2]}, smaller than data.scale={scale}")
        hr = image[:, :height, :width].contiguous()
        return hr, downscaled(hr[None], scale)[0]

    pixels = sum(width * height for width, height in map(_size, files))
    hr, lr = storage.banks(files, pair, {"layout": "sr held-out", "scale": scale, "channels": channels},
                           [path.stem for path in files], f"the {len(files)} val images and their LR",
                           nbytes=int(pixels * (1 + 1 / scale ** 2)) * channels)
    return HeldOutImages(hr, lr, scale, hr_size)


@DATASETS.register("sr")
def super_resolution(root: str | None = None, scale: int = 4, hr_size: int = 96, lr_root: str | None = None,
                     val_root: str | None = None, flip: bool = True, repeat: int = 1, channels: int = 3,
                     cache_max_gb: float = 12.0, storage: str = "auto", cache_dir: str | None = None,
                     held_out_only: bool = False) -> DataSource:
    """HR images (any size) for x``scale`` super-resolution; LR made by MATLAB's bicubic or read from ``lr_root``."""
    _check_options(scale, hr_size, flip, repeat, channels)
    max_gb = positive_number(cache_max_gb, "data.cache_max_gb")
    if root is None:
        raise UserError("data=sr needs data.root=PATH (a folder of HR images)")
    hr_root = _folder(root, "data.root")
    kept = Storage(storage, cache_dir, max_gb, data_root=hr_root)
    hr_files = _images(hr_root)
    lr_files = None if lr_root is None else _lr_partners(hr_files, hr_root, _folder(lr_root, "data.lr_root"), scale)
    val_files = _images(_folder(val_root, "data.val_root")) if val_root is not None else []
    spec = DataSpec(shape=(channels, hr_size, hr_size), scale=scale, epoch_size=len(hr_files) * repeat,
                    keys={"lr": (channels, hr_size // scale, hr_size // scale), "hr": (channels, hr_size, hr_size)})
    if not val_files:
        log.warning("data=sr: no data.val_root, so grids and metrics use training images; set data.val_root=PATH "
                    "(e.g. Set5) for held-out ones")
    decode_training = not (held_out_only and val_files)  # task=eval needs only the held-out images
    if decode_training:  # every file's size is checked before any is decoded
        hr_sizes = [_size(path) for path in hr_files]
        _check_fits(hr_sizes, hr_files, hr_size)
        if lr_files is not None:
            lr_sizes = [_size(path) for path in lr_files]
            _check_lr_sizes(hr_sizes, lr_sizes, hr_files, lr_files, scale)
    held_out = {"val": _held_out(val_files, scale, hr_size, channels, kept)} if val_files else {}
    if not decode_training:
        return DataSource(Undecoded(len(hr_files) * repeat), spec, held_out)
    hr_bank = _decoded(hr_files, hr_sizes, channels, kept, f"the {len(hr_files)} training images under {hr_root}")
    lr_bank = None if lr_files is None else _decoded(lr_files, lr_sizes, channels, kept,
                                                     f"the {len(lr_files)} LR images under {lr_root}")
    train = SuperResolutionImages(hr_bank, lr_bank, scale, hr_size, flip, repeat)
    return DataSource(train, spec, held_out)
