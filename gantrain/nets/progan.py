"""ProGAN's growing networks (Karras et al. 2018, "Progressive Growing of GANs").

Both networks hold every block from 4x4 up to the data's size from the start, so a checkpoint's keys
never change; which blocks run is chosen per call. The generator is asked for a ``resolution`` and an
``alpha``; the discriminator reads the resolution from its input's size. While a new block fades in
(0 <= alpha < 1), the generator's output is the new block's image blended with the previous
resolution's image upsampled (nearest), and the discriminator's features are the new block's blended
with those of the input downsampled (2x2 average): alpha 0 is exactly the smaller network.

What makes them ProGAN's (facts from the official code, tkarras/progressive_growing_of_gans,
networks.py ``G_paper``/``D_paper``):
  * equalized learning rate: weights are stored N(0, 1) and multiplied at run time by the He constant
    gain / sqrt(fan_in) (gain sqrt(2); 1 for toRGB and the last dense layer; sqrt(2)/4 for the first
    dense layer), so Adam's normalised steps change every layer at the same rate;
  * pixelwise feature normalisation after every generator convolution, and on the latent vector;
  * minibatch standard deviation (one extra feature map, groups of 4) before the 4x4 block of D;
  * LeakyReLU 0.2, nearest upsampling / average-pool downsampling, 1x1 toRGB/fromRGB;
  * feature maps min(fmap_base / 2^stage, fmap_max) with stage = log2(resolution) - 1;
  * a linear toRGB (no tanh): samples are clamped to [-1, 1] only when they are shown or written.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.registry import NETWORKS

FIRST_RESOLUTION = 4  # the smallest network works on 4x4 images
HE_GAIN = math.sqrt(2.0)


def final_level(image_size: int, network: str) -> int:
    """The level of ``image_size`` (0 is 4x4, 1 is 8x8, ...): a power of two of at least 8, else a user error."""
    if image_size < 2 * FIRST_RESOLUTION or image_size & (image_size - 1):
        raise UserError(f"image size {image_size} is not supported by {network}: it grows from 4x4 in doublings, "
                        "so it needs a power of two of at least 8 (8, 16, 32, 64, 128, ...); set data.image_size")
    return int(math.log2(image_size)) - 2


def resolution_of(level: int) -> int:
    return FIRST_RESOLUTION * 2 ** level


def level_of(resolution: int, final: int, network: str) -> int:
    """The level of one of a network's resolutions (4x4 to its final one); a ValueError for any other size."""
    for level in range(final + 1):
        if resolution_of(level) == resolution:
            return level
    raise ValueError(f"{network} works on 4x4 to {resolution_of(final)}x{resolution_of(final)} images, "
                     f"not {resolution}x{resolution}")


def feature_maps(stage: int, fmap_base: int, fmap_max: int, fmap_decay: float = 1.0) -> int:
    """min(fmap_base / 2^(stage * fmap_decay), fmap_max): how many feature maps a block at that stage has."""
    return max(1, min(int(fmap_base / 2.0 ** (stage * fmap_decay)), fmap_max))


def square_image(data_spec: DataSpec, network: str) -> tuple[int, int]:
    """(channels, size) of square image data, else a user error naming the shape."""
    if not data_spec.is_image or data_spec.shape[1] != data_spec.shape[2]:
        raise UserError(f"{network} needs square images, the data has samples of shape {tuple(data_spec.shape)}")
    return data_spec.shape[0], data_spec.shape[1]


class EqualizedConv2d(nn.Conv2d):
    """A same-padded convolution whose weights are N(0, 1), scaled by gain / sqrt(fan_in) at every call."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = HE_GAIN) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        nn.init.normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.scale, self.bias)


class EqualizedLinear(nn.Linear):
    """A dense layer whose weights are N(0, 1), scaled by gain / sqrt(fan_in) at every call."""

    def __init__(self, in_features: int, out_features: int, gain: float = HE_GAIN, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.scale = gain / math.sqrt(in_features)
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def pixel_norm(x: torch.Tensor, epsilon: float = 1e-8) -> torch.Tensor:
    """Each pixel's feature vector scaled to unit root-mean-square: keeps G's magnitudes from escalating."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + epsilon)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """x with one more feature map: the standard deviation over a group of samples, averaged over features
    and pixels, the same for every sample of the group. A collapsed generator (every sample alike) is then
    visible to D.

    As in the official code, the batch is split into groups of min(group_size, N) samples taken with a
    stride (sample i belongs to group i mod N/G), and the statistic is computed in float32.
    """
    n, c, h, w = x.shape
    group = min(group_size, n)
    if n % group:
        raise ValueError(f"minibatch stddev: a batch of {n} does not split into groups of {group}")
    y = x.float().reshape(group, -1, c, h, w)
    y = (y - y.mean(dim=0, keepdim=True)).square().mean(dim=0).add(1e-8).sqrt()  # (N/G, C, H, W)
    y = y.mean(dim=(1, 2, 3)).to(x.dtype).repeat(group)  # sample g * (N/G) + m gets group m's value
    return torch.cat([x, y.view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Box-filter downsampling: the mean of each factor x factor square."""
    return F.avg_pool2d(x, factor) if factor > 1 else x


def blend(previous: torch.Tensor, new: torch.Tensor, alpha: float) -> torch.Tensor:
    """previous at alpha 0, new at alpha 1, linear between (exactly ``previous`` at 0)."""
    return torch.lerp(previous, new, alpha)


class GeneratorLayers(nn.Module):
    """What every generator block ends with: LeakyReLU, then pixel norm, after each convolution."""

    def __init__(self, negative_slope: float, use_pixel_norm: bool) -> None:
        super().__init__()
        self.slope = negative_slope
        self.use_pixel_norm = use_pixel_norm

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, self.slope)
        return pixel_norm(x) if self.use_pixel_norm else x


class FirstGeneratorBlock(GeneratorLayers):
    """The 4x4 block: a dense layer from z to 4x4 feature maps (one bias per map), then a 3x3 convolution."""

    def __init__(self, latent_dim: int, channels: int, negative_slope: float, use_pixel_norm: bool) -> None:
        super().__init__(negative_slope, use_pixel_norm)
        self.dense = EqualizedLinear(latent_dim, channels * 16, gain=HE_GAIN / 4, bias=False)  # the official gain
        self.bias = nn.Parameter(torch.zeros(channels))
        self.conv = EqualizedConv2d(channels, channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.dense(z).view(z.shape[0], -1, 4, 4) + self.bias.view(1, -1, 1, 1)
        return self.activate(self.conv(self.activate(x)))


class GeneratorBlock(GeneratorLayers):
    """Upsample (nearest), then two 3x3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float, use_pixel_norm: bool) -> None:
        super().__init__(negative_slope, use_pixel_norm)
        self.conv0 = EqualizedConv2d(in_channels, out_channels, 3)
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv1(self.activate(self.conv0(upsample(x)))))


@NETWORKS.register("progan_generator")
class ProGANGenerator(nn.Module):
    """z -> an image at any resolution from 4x4 to the data's size; ``forward(z, resolution, alpha)``."""

    def __init__(self, data_spec: DataSpec, latent_dim: int, fmap_base: int = 8192, fmap_max: int = 512,
                 fmap_decay: float = 1.0, normalize_latents: bool = True, pixel_norm: bool = True,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        channels, size = square_image(data_spec, "progan_generator")
        self.final_level = final_level(size, "progan_generator")
        self.normalize_latents = bool(normalize_latents)

        def nf(stage: int) -> int:
            return feature_maps(stage, fmap_base, fmap_max, fmap_decay)

        # level l (resolution 4 * 2^l) has nf(l + 1) feature maps
        self.blocks = nn.ModuleList([FirstGeneratorBlock(latent_dim, nf(1), negative_slope, pixel_norm)])
        self.blocks.extend(GeneratorBlock(nf(level), nf(level + 1), negative_slope, pixel_norm)
                           for level in range(1, self.final_level + 1))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(nf(level + 1), channels, 1, gain=1.0)
                                    for level in range(self.final_level + 1))

    def forward(self, z: torch.Tensor, resolution: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Images (N, C, resolution, resolution), the data's size by default; alpha < 1 fades the last block in."""
        level = self.final_level if resolution is None else level_of(resolution, self.final_level, "progan_generator")
        x = pixel_norm(z) if self.normalize_latents else z
        previous = x
        for block in self.blocks[:level + 1]:
            previous, x = x, block(x)
        image = self.to_rgb[level](x)
        if level > 0 and alpha < 1:
            image = blend(upsample(self.to_rgb[level - 1](previous)), image, alpha)
        return image


class DiscriminatorBlock(nn.Sequential):
    """Two 3x3 convolutions with LeakyReLU, then 2x2 average-pool downsampling."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float) -> None:
        super().__init__(EqualizedConv2d(in_channels, in_channels, 3), nn.LeakyReLU(negative_slope),
                         EqualizedConv2d(in_channels, out_channels, 3), nn.LeakyReLU(negative_slope),
                         nn.AvgPool2d(2))


class LastDiscriminatorBlock(nn.Module):
    """The 4x4 block: minibatch stddev, a 3x3 convolution, a dense layer, and the linear score."""

    def __init__(self, in_channels: int, hidden: int, negative_slope: float, mbstd_group_size: int) -> None:
        super().__init__()
        self.mbstd_group_size = int(mbstd_group_size)
        extra = 1 if self.mbstd_group_size > 1 else 0
        self.conv = EqualizedConv2d(in_channels + extra, in_channels, 3)
        self.dense = EqualizedLinear(in_channels * 16, hidden)
        self.act = nn.LeakyReLU(negative_slope)
        self.score = EqualizedLinear(hidden, 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd_group_size > 1:
            x = minibatch_stddev(x, self.mbstd_group_size)
        x = self.act(self.conv(x))
        return self.score(self.act(self.dense(x.flatten(1)))).squeeze(1)


@NETWORKS.register("progan_discriminator")
class ProGANDiscriminator(nn.Module):
    """An image of any resolution from 4x4 to the data's size -> one linear score; ``forward(x, alpha)``."""

    def __init__(self, data_spec: DataSpec, fmap_base: int = 8192, fmap_max: int = 512, fmap_decay: float = 1.0,
                 mbstd_group_size: int = 4, negative_slope: float = 0.2) -> None:
        super().__init__()
        channels, size = square_image(data_spec, "progan_discriminator")
        self.final_level = final_level(size, "progan_discriminator")
        if isinstance(mbstd_group_size, bool) or not isinstance(mbstd_group_size, int) or mbstd_group_size < 0:
            raise UserError(f"model.discriminator.mbstd_group_size must be 0 (off) or a group size, got "
                            f"{mbstd_group_size!r}")
        self.mbstd_group_size = mbstd_group_size

        def nf(stage: int) -> int:
            return feature_maps(stage, fmap_base, fmap_max, fmap_decay)

        self.from_rgb = nn.ModuleList(nn.Sequential(EqualizedConv2d(channels, nf(level + 1), 1),
                                                    nn.LeakyReLU(negative_slope))
                                      for level in range(self.final_level + 1))
        # blocks[l - 1] takes level l's features (nf(l + 1) maps) down to level l - 1's (nf(l) maps)
        self.blocks = nn.ModuleList(DiscriminatorBlock(nf(level + 1), nf(level), negative_slope)
                                    for level in range(1, self.final_level + 1))
        self.last = LastDiscriminatorBlock(nf(1), nf(0), negative_slope, mbstd_group_size)  # registered last: the score

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """Scores (N,) for images at any of the levels' resolutions; alpha < 1 fades the first block in."""
        level = level_of(x.shape[-1], self.final_level, "progan_discriminator")
        features = self.from_rgb[level](x)
        if level > 0:
            features = self.blocks[level - 1](features)
            if alpha < 1:
                features = blend(self.from_rgb[level - 1](downsample(x)), features, alpha)
            for block in reversed(self.blocks[:level - 1]):
                features = block(features)
        return self.last(features)
