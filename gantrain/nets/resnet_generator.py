"""The CycleGAN ResNet generator (Zhu et al. 2017, after Johnson et al. 2016).

c7s1-64, d128, d256, R256 x blocks, u128, u64, c7s1-3: a 7x7 stem with reflection padding, two
stride-2 downsamplings, residual blocks (two 3x3 convolutions with reflection padding), two
transposed-convolution upsamplings and a 7x7 output with tanh; instance normalisation without
learned parameters. 9 blocks at 256x256 and above, 6 below (the paper's choice for 128x128).
"""

from __future__ import annotations

import torch
from torch import nn

from gantrain.errors import UserError
from gantrain.nets.init import dcgan_init
from gantrain.nets.translation_blocks import halvings, norm2d, uses_bias
from gantrain.registry import NETWORKS

DOWNSAMPLINGS = 2


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str, dropout: float, bias: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   norm2d(norm, channels), nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm2d(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@NETWORKS.register("resnet_generator")
class ResNetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, image_shape: tuple[int, int], base_channels: int = 64,
                 blocks: int | None = None, norm: str = "instance", dropout: float = 0.0) -> None:
        super().__init__()
        height, width = image_shape
        if min(halvings(height), halvings(width)) < DOWNSAMPLINGS:
            raise UserError(f"resnet_generator: image sizes must be multiples of 4, got {width}x{height}")
        self.blocks = (9 if min(height, width) >= 256 else 6) if blocks is None else int(blocks)
        bias = uses_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, base_channels, 7, bias=bias),
                                   norm2d(norm, base_channels), nn.ReLU(True)]
        channels = base_channels
        for _ in range(DOWNSAMPLINGS):
            layers += [nn.Conv2d(channels, channels * 2, 3, 2, 1, bias=bias), norm2d(norm, channels * 2), nn.ReLU(True)]
            channels *= 2
        layers += [ResidualBlock(channels, norm, dropout, bias) for _ in range(self.blocks)]
        for _ in range(DOWNSAMPLINGS):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 3, 2, padding=1, output_padding=1, bias=bias),
                       norm2d(norm, channels // 2), nn.ReLU(True)]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.multiple = 2 ** DOWNSAMPLINGS
        dcgan_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)
