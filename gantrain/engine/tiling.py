"""Images of any size through a network that needs a multiple of some size: padding and cropping back, and
cutting large images into overlapping tiles so memory stays bounded.

Used by ``task=translate`` (gantrain/tasks/translate.py) for every recipe that maps images to images; a
recipe only has to ``translate(images, direction)`` and describe itself in a ``TranslationInfo``
(channels, multiple, scale).
"""

from __future__ import annotations


from collections.abc import Callable

import torch
import torch.nn.functional as F

from gantrain.options import positive_int
from gantrain.recipes.translation import TranslationInfo

AUTO_TILE = 512  # tile=null: images whose output would exceed AUTO_PIXELS are cut into tiles of this many input pixels
AUTO_PIXELS = 2048 * 2048
Translator = Callable[[torch.Tensor], torch.Tensor]


def padded(translate: Translator, images: torch.Tensor, multiple: int, scale: int) -> torch.Tensor:
    """``translate`` of images padded (reflected) to a multiple of ``multiple``, cropped back to scale x size."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        images = F.pad(images, (0, pad_w, 0, pad_h), mode=mode)
    return translate(images)[..., :height * scale, :width * scale]


def tiled(translate: Translator, images: torch.Tensor, info: TranslationInfo, tile: int, overlap: int) -> torch.Tensor:
    """``translate`` tile by tile: each tile is widened by ``overlap`` pixels of context on every side,
    translated, and only its own part of the output kept, so seams vanish once the overlap covers the
    network's receptive field (a U-Net's spans the whole image: its tiles are an approximation).
    """
    batch, _, height, width = images.shape
    scale = info.scale
    out = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(bottom + overlap, height), min(right + overlap, width)
            piece = padded(translate, images[..., y0:y1, x0:x1], info.multiple, scale)
            if out is None:
                out = piece.new_empty(batch, piece.shape[1], height * scale, width * scale)
            out[..., top * scale:bottom * scale, left * scale:right * scale] = \
                piece[..., (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
    return out


def tile_for(height: int, width: int, info: TranslationInfo, tile: int | None) -> int | None:
    """The tile size to use: the one asked for, else AUTO_TILE for outputs over AUTO_PIXELS, else none."""
    if tile is not None:
        return positive_int(tile, "tile")
    return AUTO_TILE if height * width * info.scale ** 2 > AUTO_PIXELS else None


def translate_images(translate: Translator, images: torch.Tensor, info: TranslationInfo, tile: int | None,
                     overlap: int) -> torch.Tensor:
    """Outputs for a batch of same-size images of any size: padded, and tiled when asked or when large."""
    size = tile_for(images.shape[-2], images.shape[-1], info, tile)
    if size is None or (images.shape[-2] <= size and images.shape[-1] <= size):
        return padded(translate, images, info.multiple, info.scale)
    return tiled(translate, images, info, size, overlap)
