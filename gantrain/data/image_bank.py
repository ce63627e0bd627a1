"""Images decoded once into uint8 tensors, with random crops and flips cut on the whole batch.

Families that take images in (translation, super-resolution) train on random crops of
photos. Decoding and resizing each photo once at load time and cutting crops by slicing
keeps a batch-1 step at 256x256 from waiting on JPEG decoding; the crop offsets and flips
come from uniform numbers the batch stream draws per position of the epoch (``randoms``),
so they are part of the exact data position and resume replays nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from gantrain.data.source import normalise_uint8
from gantrain.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes of single-channel images


def image_files(folder: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Every image file below ``folder`` (recursively, sorted), leaving out the ``exclude`` subfolders."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not any(p in path.parents for p in exclude):
            files.append(path)
    return files


def open_image(path: Path) -> Image.Image:
    """The decoded image, or a one-line error naming the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path} is not a readable image ({str(error).splitlines()[0][:100]})") from None


def channels_of(images: Sequence[Image.Image], channels: int | None) -> int:
    """``channels`` if given (1 or 3), else 1 when every image is greyscale, 3 otherwise."""
    if channels is None:
        return 1 if all(image.mode in GREY_MODES for image in images) else 3
    if channels not in (1, 3):
        raise UserError(f"data.channels must be 1 (greyscale), 3 (RGB) or null (from the files), got {channels}")
    return int(channels)


def to_uint8_tensor(image: Image.Image, channels: int) -> torch.Tensor:
    """A PIL image as a (C, H, W) uint8 tensor with ``channels`` channels."""
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    tensor = torch.from_numpy(np.array(array, copy=True))  # PIL hands out a read-only view
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def decode_all(paths: Sequence[Path], prepare) -> list:
    """``prepare(path)`` for every path, on a few threads (PIL decodes outside the GIL), in order."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(prepare, paths))


class ImageBank:
    """One domain's images as uint8 (C, H, W): one (N, C, H, W) array when they share a size, else one flat
    array with an offset table (offset, C, H, W per image).

    The arrays come from a storage (gantrain/data/storage.py): tensors in memory, or a memory-mapped cache
    file (``mapped``), which stays on the host whatever device training runs on. ``crop_batch`` cuts a
    (n, C, crop_h, crop_w) batch at offsets given as uniforms in [0, 1): the same uniforms give the same
    crops, whichever device or storage the images lie in.
    """

    def __init__(self, names: Sequence[str], stacked: torch.Tensor | None = None, flat: torch.Tensor | None = None,
                 table: torch.Tensor | None = None, mapped: bool = False) -> None:
        if (stacked is None) == (flat is None or table is None):
            raise ValueError("an image bank needs stacked images, or a flat array and its offset table")
        self.names = list(names)
        self.stacked, self.flat, self.mapped = stacked, flat, mapped
        self.target: torch.device | None = None  # a mapped bank's crops go here (the training device), cut on the host
        self.table = table.long() if table is not None else None  # (N, 4): offset, channels, height, width
        count = len(stacked) if stacked is not None else len(self.table)
        if count == 0:
            raise ValueError("an image bank needs images")
        self.channels = int(stacked.shape[1] if stacked is not None else self.table[0, 1])
        self._offsets = None if self.table is None else self.table.numpy()  # read per crop without tensor overhead

    @classmethod
    def from_images(cls, images: Sequence[torch.Tensor], names: Sequence[str]) -> "ImageBank":
        """Decoded images (C, H, W) in memory: stacked when they share a size, else packed into one flat array."""
        if not images:
            raise ValueError("an image bank needs images")
        stacked, flat, table = pack(images)
        return cls(names, stacked=stacked, flat=flat, table=table)

    def __len__(self) -> int:
        return len(self.stacked) if self.stacked is not None else len(self.table)

    @property
    def device(self) -> torch.device:
        """Where crops come out (and indices may lie): the arrays' device, or a mapped bank's target."""
        return self.target or self._home

    @property
    def _home(self) -> torch.device:
        return (self.stacked if self.stacked is not None else self.flat).device

    def to(self, device: torch.device) -> "ImageBank":
        """Move the arrays onto ``device``; a mapped cache stays on the host and its crops are copied there,
        so what the layout does next (flips, SR's bicubic LR) runs on ``device`` as with images in memory."""
        if self.mapped:
            self.target = torch.device(device)
            return self
        if self.stacked is not None:
            self.stacked = self.stacked.to(device)
        else:
            self.flat = self.flat.to(device)
        return self

    def image(self, index: int) -> torch.Tensor:
        """Image ``index`` as a (C, H, W) view of the bank's array."""
        if self.stacked is not None:
            return self.stacked[index]
        offset, channels, height, width = (int(value) for value in self._offsets[index])
        return self.flat[offset:offset + channels * height * width].view(channels, height, width)

    @property
    def images(self) -> list[torch.Tensor]:
        """Every image as a view (one tensor object each: for small held-out sets, not the training loop)."""
        return [self.image(index) for index in range(len(self))]

    def size(self, index: int) -> tuple[int, int]:
        """(height, width) of image ``index``."""
        if self._offsets is None:
            return int(self.stacked.shape[-2]), int(self.stacked.shape[-1])
        return int(self._offsets[index, 2]), int(self._offsets[index, 3])

    def smallest(self) -> tuple[int, int]:
        """The smallest height and width over all images."""
        if self._offsets is None:
            return self.size(0)
        return int(self.table[:, 2].min()), int(self.table[:, 3].min())

    def crop_batch(self, indices: torch.Tensor, crop: tuple[int, int] | None,
                   offsets: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (n, C, h, w): image ``indices[i]`` cropped to ``crop`` (None: whole images, one size).

        ``offsets`` (n, 2) uniforms place each crop (row, column); None centres them.
        """
        if crop is None:
            if self.stacked is not None:
                return self._out(self.stacked.index_select(0, indices.to(self._home)))
            return self._out(torch.stack([self.image(i) for i in indices.tolist()]))
        return self.crop_at(indices, crop, self.places(indices, crop, offsets))

    def _out(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.target is None else images.to(self.target, non_blocking=True)

    def places(self, indices: torch.Tensor, crop: tuple[int, int],
               offsets: torch.Tensor | None = None) -> list[tuple[int, int]]:
        """(top, left) pixel of each ``crop`` of image ``indices[i]``: ``offsets`` (n, 2) uniforms, None centres."""
        height, width = crop
        uniforms = offsets.tolist() if offsets is not None else None  # one host copy for the whole batch
        places = []
        for position, index in enumerate(indices.tolist()):
            free_h, free_w = self.size(index)[0] - height, self.size(index)[1] - width
            if uniforms is None:
                places.append((free_h // 2, free_w // 2))
            else:
                places.append((min(int(uniforms[position][0] * (free_h + 1)), free_h),
                               min(int(uniforms[position][1] * (free_w + 1)), free_w)))
        return places

    def crop_at(self, indices: torch.Tensor, crop: tuple[int, int], places: Sequence[tuple[int, int]]) -> torch.Tensor:
        """uint8 (n, C, h, w): image ``indices[i]`` cut at pixel ``places[i]`` (top, left), e.g. aligned with another."""
        height, width = crop
        return self._out(torch.stack([self.image(index)[:, top:top + height, left:left + width]
                                      for index, (top, left) in zip(indices.tolist(), places)]))


def pack(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(stacked, None, None) when the images share a size, else (None, flat, table): one copy either way."""
    if len({tuple(image.shape) for image in images}) == 1:
        return torch.stack(list(images)), None, None
    return None, torch.cat([image.reshape(-1) for image in images]), offset_table([image.shape for image in images])


def offset_table(shapes: Sequence[Sequence[int]]) -> torch.Tensor:
    """(N, 4) int64: where each (C, H, W) image starts in a flat array of them all, and its shape."""
    table = torch.tensor([list(shape) for shape in shapes], dtype=torch.int64).reshape(-1, 3)
    sizes = table.prod(dim=1)
    starts = torch.cumsum(sizes, 0) - sizes
    return torch.cat([starts[:, None], table], dim=1)


class BankSet:
    """A dataset made of image banks (the sides of a pair, two domains, HR and LR) kept on one device together."""

    def banks(self) -> list[ImageBank]:
        raise NotImplementedError  # abstract: the banks, the first one always present

    @property
    def device(self) -> torch.device:
        return self.banks()[0].device

    def to(self, device: torch.device) -> "BankSet":
        """Keep every bank on ``device`` (in place: crops are then cut there)."""
        for bank in self.banks():
            bank.to(device)
        return self


def flip_where(images: torch.Tensor, coins: torch.Tensor | None) -> torch.Tensor:
    """Mirror left-right the images whose uniform coin is below 0.5 (None: no flips)."""
    if coins is None:
        return images
    flips = (coins.to(images.device) < 0.5).view(-1, *([1] * (images.dim() - 1)))
    return torch.where(flips, images.flip(-1), images)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1] (what the networks see)."""
    return normalise_uint8(images)
