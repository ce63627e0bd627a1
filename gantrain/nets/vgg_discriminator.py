"""The VGG-style discriminator of SRGAN (Ledig et al. 2017) and ESRGAN (Wang et al. 2018).

Stages of two 3x3 convolutions, the second with stride 2, channels 64, 128, 256, 512 (then 512 again),
BatchNorm after every convolution but the first, LeakyReLU 0.2; then a dense layer and one logit.
SRGAN: 96x96 crops, 4 stages down to 6x6, stride-2 kernels of 3, dense 1024. ESRGAN: 128x128 crops,
5 stages down to 4x4, stride-2 kernels of 4, dense 100. ``stages: null`` halves until at most 6x6.
"""

from __future__ import annotations

import torch
from torch import nn

from gantrain.errors import UserError
from gantrain.registry import NETWORKS

MAX_MULTIPLIER = 8
SMALLEST = 6  # stages: null stops halving once the map is at most this big


@NETWORKS.register("vgg_discriminator")
class VGGDiscriminator(nn.Module):
    def __init__(self, in_channels: int, image_shape: tuple[int, int], base_channels: int = 64,
                 stages: int | None = None, stride_kernel: int = 3, dense: int = 1024,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        height, width = image_shape
        if stages is None:
            stages = 0
            while max(height, width) / 2 ** stages > SMALLEST:
                stages += 1
        if height % 2 ** stages or width % 2 ** stages:
            raise UserError(f"vgg_discriminator: {width}x{height} crops cannot be halved {stages} times; "
                            "use a crop size divisible by 2^stages (96 and 128 work)")
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in range(stages):
            width_out = base_channels * min(2 ** stage, MAX_MULTIPLIER)
            layers += [nn.Conv2d(channels, width_out, 3, 1, 1, bias=stage == 0)]
            if stage > 0:
                layers.append(nn.BatchNorm2d(width_out))
            layers += [nn.LeakyReLU(negative_slope, True),
                       nn.Conv2d(width_out, width_out, stride_kernel, 2, (stride_kernel - 1) // 2, bias=False),
                       nn.BatchNorm2d(width_out), nn.LeakyReLU(negative_slope, True)]
            channels = width_out
        self.features = nn.Sequential(*layers)
        flat = channels * (height // 2 ** stages) * (width // 2 ** stages)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, dense), nn.LeakyReLU(negative_slope, True),
                                  nn.Linear(dense, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
