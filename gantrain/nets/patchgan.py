"""PatchGAN discriminators (Isola et al. 2017): a logit per image patch instead of per image.

With ``n_layers=3`` it is the 70x70 PatchGAN: C64-C128-C256 at stride 2, C512 at stride 1, then a
stride-1 convolution to one channel: 30x30 logits for a 256x256 input, each seeing a 70x70 patch.
``n_layers=1`` sees 16x16 patches, 5 sees 286x286; ``n_layers=0`` is the 1x1 PixelGAN, whose 1x1
convolutions judge every pixel alone (colour, not structure).
"""

from __future__ import annotations

import torch
from torch import nn

from gantrain.errors import UserError
from gantrain.nets.init import dcgan_init
from gantrain.nets.translation_blocks import norm2d, uses_bias
from gantrain.registry import NETWORKS

MAX_MULTIPLIER = 8  # channel growth stops at 8 x base_channels (512 for 64)


@NETWORKS.register("patchgan_discriminator")
class PatchGANDiscriminator(nn.Module):
    def __init__(self, in_channels: int, base_channels: int = 64, n_layers: int = 3, norm: str = "batch",
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
            raise UserError(f"patchgan_discriminator: n_layers must be 0 (1x1 pixels), 1, 2, ... got {n_layers!r}")
        bias = uses_bias(norm)
        if n_layers == 0:
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, base_channels, 1), nn.LeakyReLU(negative_slope, True),
                nn.Conv2d(base_channels, base_channels * 2, 1, bias=bias), norm2d(norm, base_channels * 2),
                nn.LeakyReLU(negative_slope, True), nn.Conv2d(base_channels * 2, 1, 1, bias=bias)]
        else:
            layers = [nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(negative_slope, True)]
            channels = base_channels
            for layer in range(1, n_layers + 1):
                wider = base_channels * min(2 ** layer, MAX_MULTIPLIER)
                stride = 2 if layer < n_layers else 1
                layers += [nn.Conv2d(channels, wider, 4, stride, 1, bias=bias), norm2d(norm, wider),
                           nn.LeakyReLU(negative_slope, True)]
                channels = wider
            layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)
