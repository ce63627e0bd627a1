"""MATLAB's ``imresize(..., 'bicubic')`` in torch, on whole batches, on any device.

Super-resolution papers make their low-resolution inputs with MATLAB's imresize and report the bicubic
upscaling of them as the baseline, so both must be computed exactly that way for the numbers to compare
(Set5 x4 bicubic: 28.43 dB on Y, not the ~27.7 dB torch's own bicubic gives). What MATLAB's
``imresize.m`` (``contributions``) does, and this does too:

- Keys' cubic kernel with a = -0.5, 4 input pixels wide;
- when shrinking by ``scale`` < 1, the kernel is stretched by 1/scale and its height scaled by ``scale``
  (antialiasing), so it is ``4 / scale`` pixels wide;
- output pixel k (1-based) lies at input position ``k / scale + 0.5 * (1 - 1 / scale)`` (pixel centres
  aligned), each row of weights is normalised to sum 1;
- pixels beyond the border are mirrored with the edge pixel repeated (``[1:n, n:-1:1]`` cyclically);
- the output size is ``ceil(scale * size)``, and rows are resized before columns.

Each resize along one axis is a fixed (out, in) matrix, so a batch is two matrix products, computed in
float64 (TF32 or autocast could otherwise move pixels by a level). ``imresize`` does not round: callers
round to 8 bits where a file would (``eight_bit``). ``resize_8bit`` is MATLAB's path for uint8 images,
which rounds after each of the two passes too (as its imresizemex does); LR files were made that way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch

KERNEL_WIDTH = 4.0  # input pixels the bicubic kernel covers when enlarging
CUBIC_A = -0.5  # Keys' parameter, MATLAB's choice
TIE = 1e-6  # how far below an exact half a computed value may fall and still round up


def cubic(distance: torch.Tensor, a: float = CUBIC_A) -> torch.Tensor:
    """Keys' cubic convolution kernel at ``distance`` (zero beyond 2 pixels)."""
    x = distance.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def output_length(length: int, scale: float) -> int:
    """MATLAB's output size along one axis: ceil(scale * length)."""
    return math.ceil(scale * length)


@lru_cache(maxsize=64)
def _weights(in_length: int, out_length: int, scale: float) -> torch.Tensor:
    """The (out_length, in_length) float64 matrix of one axis's resize, built as MATLAB's ``contributions``."""
    shrink = scale < 1
    width = KERNEL_WIDTH / scale if shrink else KERNEL_WIDTH
    centres = torch.arange(1, out_length + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(centres - width / 2)
    taps = left[:, None] + torch.arange(math.ceil(width) + 2, dtype=torch.float64)  # 1-based input positions
    distance = centres[:, None] - taps
    weights = scale * cubic(scale * distance) if shrink else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    mirrored = torch.cat([torch.arange(in_length), torch.arange(in_length - 1, -1, -1)])  # [1:n, n:-1:1], 0-based
    columns = mirrored[(taps.long() - 1) % (2 * in_length)]
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    return matrix.scatter_add_(1, columns, weights)


def weight_matrix(in_length: int, out_length: int, scale: float, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The matrix W with ``W @ column`` resizing a column of ``in_length`` pixels to ``out_length``."""
    return _weights(int(in_length), int(out_length), float(scale)).to(device=device, dtype=dtype)


def _working_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _resized(images: torch.Tensor, scale: float, size: tuple[int, int] | None,
             after_pass: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    if not images.is_floating_point():
        raise TypeError(f"imresize takes float images, got {images.dtype} (convert uint8 with .float())")
    if scale <= 0:
        raise ValueError(f"imresize needs a positive scale, got {scale}")
    height, width = images.shape[-2:]
    out_h, out_w = size if size is not None else (output_length(height, scale), output_length(width, scale))
    work = _working_dtype(images.device)
    rows = weight_matrix(height, out_h, scale, images.device, work)
    columns = weight_matrix(width, out_w, scale, images.device, work)
    resized = after_pass(torch.matmul(rows, images.to(work)))  # rows first, as MATLAB (equal scales: in order)
    return after_pass(torch.matmul(resized, columns.T)).to(images.dtype)


def imresize(images: torch.Tensor, scale: float, size: tuple[int, int] | None = None) -> torch.Tensor:
    """MATLAB ``imresize(images, scale, 'bicubic')`` of a float batch (N, C, H, W) (or (C, H, W)), unrounded.

    ``size`` (height, width) overrides MATLAB's ceil(scale * size) output size. Returns the input's
    dtype, on its device; values may leave the input's range (the cubic kernel overshoots at edges).
    """
    return _resized(images, scale, size, lambda pixels: pixels)


def eight_bit(pixels: torch.Tensor) -> torch.Tensor:
    """Pixel values (0..255 scale) rounded and clamped as MATLAB's uint8 conversion does (halves away from 0).

    Exact halves are common (symmetric weights on integer pixels); ``TIE`` lets one computed a hair below
    .5 round up too, so they land the same way whatever the device's summation order.
    """
    return pixels.add(0.5 + TIE).floor_().clamp_(0, 255)


def resize_8bit(pixels: torch.Tensor, scale: float, size: tuple[int, int] | None = None) -> torch.Tensor:
    """What MATLAB's imresize gives for a uint8 image: float 0..255 values, each pass rounded to 8 bits.

    ``pixels`` are float 0..255 values of an 8-bit image (N, C, H, W). This is how LR files (DIV2K's,
    the benchmarks') were made, so LR made on the fly matches them to the last level.
    """
    return _resized(pixels, scale, size, eight_bit)
