"""How outputs are turned into the numbers fidelity metrics compare, the way papers report them.

Images are first rounded to 8 bits, as they would be saved; super-resolution papers then compare only
the luma Y of ITU-R BT.601 YCbCr (Y in 16..235, what MATLAB's rgb2ycbcr gives) with ``scale`` pixels
cut from every border, so their numbers are comparable only when computed the same way.
"""

from __future__ import annotations

import torch

#: ITU-R BT.601 luma for RGB in [0, 1], giving Y in [16, 235] (MATLAB rgb2ycbcr's first row, over 255)
LUMA_WEIGHTS = (65.481, 128.553, 24.966)
LUMA_OFFSET = 16.0


def eight_bit(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> float64 pixel values 0..255, rounded as an 8-bit file would store them."""
    return images.double().add(1).mul(127.5).round().clamp(0, 255)


def luma(pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB pixel values 0..255 -> (N, 1, H, W) BT.601 Y in 16..235; one channel stays as it is."""
    if pixels.shape[1] == 1:
        return pixels
    weights = torch.tensor(LUMA_WEIGHTS, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels / 255.0 * weights).sum(dim=1, keepdim=True) + LUMA_OFFSET


def without_border(images: torch.Tensor, border: int) -> torch.Tensor:
    """``border`` pixels cut from each side (super-resolution papers cut ``scale``)."""
    return images[..., border:images.shape[-2] - border, border:images.shape[-1] - border] if border else images


def compared(images: torch.Tensor, y_channel: bool, border: int) -> torch.Tensor:
    """What a fidelity metric compares: 8-bit values, Y only when asked, without the border."""
    pixels = eight_bit(images)
    return without_border(luma(pixels) if y_channel else pixels, border)
