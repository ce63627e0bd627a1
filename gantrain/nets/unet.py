"""The pix2pix U-Net generator (Isola et al. 2017): an encoder-decoder with skip connections.

Encoder C64-C128-C256-C512-C512-... (4x4 stride-2 convolutions, LeakyReLU 0.2, no norm on the
first and the innermost layer); the decoder mirrors it with transposed convolutions and ReLU, each
layer taking the previous decoder output concatenated with the encoder output of the same size.
The depth follows the image: one downsampling per factor of two in its size, at most 8 (8 at
256x256 down to a 1x1 bottleneck, 7 at 128, 5 at 32), so any size that is a multiple of 2^depth works.
"""

from __future__ import annotations

import torch
from torch import nn

from gantrain.errors import UserError
from gantrain.nets.init import dcgan_init
from gantrain.nets.translation_blocks import halvings, norm2d, uses_bias
from gantrain.registry import NETWORKS

MAX_DEPTH = 8  # the paper's deepest U-Net (256x256 down to 1x1)


@NETWORKS.register("unet_generator")
class UNetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, image_shape: tuple[int, int], base_channels: int = 64,
                 max_channels: int = 512, depth: int | None = None, norm: str = "batch", dropout: float = 0.5,
                 dropout_layers: int = 3) -> None:
        super().__init__()
        height, width = image_shape
        fits = min(halvings(height), halvings(width), MAX_DEPTH)
        self.depth = fits if depth is None else int(depth)
        if not 1 <= self.depth <= max(fits, 1) or fits == 0:
            raise UserError(f"unet_generator: images of {width}x{height} can be halved {fits} times, so depth must be "
                            f"1..{fits} (got {self.depth}); use a crop size that is a multiple of a power of two")
        widths = [min(base_channels * 2 ** level, max_channels) for level in range(self.depth)]
        bias = uses_bias(norm)
        self.encoder = nn.ModuleList()
        for level, width_out in enumerate(widths):
            layers: list[nn.Module] = [] if level == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(in_channels if level == 0 else widths[level - 1], width_out, 4, 2, 1, bias=bias))
            if 0 < level < self.depth - 1:
                layers.append(norm2d(norm, width_out))
            self.encoder.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList()  # innermost first
        for level in reversed(range(self.depth)):
            inner = level == self.depth - 1
            width_in = widths[level] if inner else 2 * widths[level]
            if level == 0:
                self.decoder.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(width_in, out_channels, 4, 2, 1),
                                                  nn.Tanh()))
                continue
            layers = [nn.ReLU(), nn.ConvTranspose2d(width_in, widths[level - 1], 4, 2, 1, bias=bias),
                      norm2d(norm, widths[level - 1])]
            if self.depth - 1 - level < dropout_layers and dropout > 0:  # the paper's first decoder layers
                layers.append(nn.Dropout(dropout))
            self.decoder.append(nn.Sequential(*layers))
        self.multiple = 2 ** self.depth  # translate pads images to a multiple of this
        dcgan_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips = []
        x = images
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        x = self.decoder[0](skips.pop())
        for layer in self.decoder[1:]:
            x = layer(torch.cat([x, skips.pop()], dim=1))
        return x
