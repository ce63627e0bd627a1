"""DCGAN (Radford et al. 2015): transposed-conv generator, strided-conv discriminator.

The feature map starts at s0 x s0 (s0 in 4..7) and doubles until the image size,
so any size s0 * 2^k works: 16, 32, 64, 128 start at 4, MNIST's native 28 at 7
(no resize to 32). Channels halve as resolution doubles, ending at
``base_channels`` next to the image.
"""

from __future__ import annotations

import torch
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.nets.init import dcgan_init
from gantrain.registry import NETWORKS

NORMS = ("batch", "instance", "layer", "none")


def start_size(image_size: int, network: str) -> tuple[int, int]:
    """(s0, number of doublings) with image_size = s0 * 2**doublings, s0 in 4..7, doublings >= 1."""
    size, doublings = image_size, 0
    while size > 7 and size % 2 == 0:
        size, doublings = size // 2, doublings + 1
    if not 4 <= size <= 7 or doublings < 1:
        raise UserError(
            f"image size {image_size} is not supported by {network}: it needs s*2^k with s in 4..7 "
            f"(e.g. 16, 28, 32, 64, 128); set data.image_size"
        )
    return size, doublings


def norm_layer(kind: str, channels: int, size: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # LayerNorm over (C, H, W), per sample
    if kind == "none":
        return nn.Identity()
    raise UserError(f"unknown norm '{kind}'; choose from: {', '.join(NORMS)}")


def _image_shape(data_spec: DataSpec, network: str) -> tuple[int, int]:
    if not data_spec.is_image or data_spec.shape[1] != data_spec.shape[2]:
        raise UserError(f"{network} needs square images, the data has samples of shape {tuple(data_spec.shape)}")
    return data_spec.shape[0], data_spec.shape[1]


@NETWORKS.register("dcgan_generator")
class DCGANGenerator(nn.Module):
    def __init__(self, data_spec: DataSpec, latent_dim: int, base_channels: int = 64, norm: str = "batch") -> None:
        super().__init__()
        channels, size = _image_shape(data_spec, "dcgan_generator")
        s0, doublings = start_size(size, "dcgan_generator")
        width = base_channels * 2 ** (doublings - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, width, s0, 1, 0, bias=False), norm_layer(norm, width, s0), nn.ReLU(True)
        ]
        for step in range(doublings - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       norm_layer(norm, width // 2, s0 * 2 ** (step + 1)), nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


@NETWORKS.register("dcgan_discriminator")
class DCGANDiscriminator(nn.Module):
    """Ends in a linear score (no sigmoid); ``norm=none`` or ``layer`` for gradient-penalty critics."""

    def __init__(self, data_spec: DataSpec, base_channels: int = 64, norm: str = "batch",
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        channels, size = _image_shape(data_spec, "dcgan_discriminator")
        s0, doublings = start_size(size, "dcgan_discriminator")
        width = base_channels
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(negative_slope, True)]
        for step in range(doublings - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                       norm_layer(norm, width * 2, size // 2 ** (step + 2)), nn.LeakyReLU(negative_slope, True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, s0, 1, 0)]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1).squeeze(1)
