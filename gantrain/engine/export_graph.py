"""What ``task=export`` turns into a file: a generator and its test-time conventions as one graph.

A recipe says what it runs at test time (``Recipe.export_graph``): noise-to-image models a ``SampleGraph``
(z, and the class for conditional ones -> images in [-1, 1]); image-to-image models a ``TranslateGraph``
(images in [-1, 1] of any height and width -> images in [-1, 1], ``scale`` times larger), which pads its
input to the multiple the network needs and crops the output back inside the graph, exactly as
``task=translate`` does, so a caller needs no knowledge of that multiple. The graph contains no gantrain
code: the padding is a TorchScript function and the network is traced.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad the bottom and right to a multiple (replicate when the pad exceeds the image, as translate does)."""
    height, width = images.shape[-2], images.shape[-1]
    pad_h, pad_w = (multiple - height % multiple) % multiple, (multiple - width % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return images
    if pad_h < height and pad_w < width:
        return F.pad(images, [0, pad_w, 0, pad_h], mode="reflect")
    return F.pad(images, [0, pad_w, 0, pad_h], mode="replicate")


def crop_to(outputs: torch.Tensor, images: torch.Tensor, scale: int) -> torch.Tensor:
    return outputs[:, :, :images.shape[-2] * scale, :images.shape[-1] * scale]


@functools.cache
def scripted(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``function`` as TorchScript, so tracing keeps its shape arithmetic and branches (torch 2.x calls the
    TorchScript compiler deprecated; it is still what a file that runs without Python code needs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(function)


class TranslateGraph(nn.Module):
    """An image-input generator with its padding: any height and width in, the same times ``scale`` out."""

    def __init__(self, network: nn.Module, multiple: int, scale: int) -> None:
        super().__init__()
        self.network, self.multiple, self.scale = network, int(multiple), int(scale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        padded = scripted(pad_to_multiple)(images, self.multiple)
        return scripted(crop_to)(self.network(padded), images, self.scale)


class SampleGraph(nn.Module):
    """A noise-to-image generator: ``generate(z, conditions)`` as the recipe draws its samples."""

    def __init__(self, network: nn.Module, generate: Callable[..., torch.Tensor], conditional: bool) -> None:
        super().__init__()
        self.network, self.generate, self.conditional = network, generate, conditional

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generate(noise, {"label": labels} if self.conditional else {})


@dataclass
class ExportGraph:
    """A module to trace, example inputs, their names and dynamic axes, and what a caller must know."""

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    metadata: dict[str, Any] = field(default_factory=dict)
