"""Label-conditioned DCGAN networks for the conditional GAN (see ``conditional_mlp`` for the three
discriminator conditionings).

The generator feeds [z, embed(y)] to ``dcgan_generator``. The discriminator is ``dcgan_discriminator``
split into its conv features φ (the last s0 x s0 feature map) and its final s0 x s0 conv ψ:
  ``concat``      the label embedding is broadcast to ``embedding_dim`` constant channel maps and
                  concatenated to the image, so the first conv already sees the class;
  ``projection``  score = ψ(φ(x)) + <V_y, φ(x)> over the flattened last feature map;
  ``acgan``       a second s0 x s0 conv beside ψ gives the class logits.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.nets.conditional_mlp import (ConditionalDiscriminator, ConditionalGenerator, checked_embedding_dim,
                                           class_count)
from gantrain.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gantrain.nets.init import dcgan_init
from gantrain.registry import NETWORKS


@NETWORKS.register("conditional_dcgan_generator")
class ConditionalDCGANGenerator(ConditionalGenerator):
    """[z, embed(y)] -> ``dcgan_generator``: the label enters as extra latent units of the first layer."""

    def __init__(self, data_spec: DataSpec, latent_dim: int, embedding_dim: int = 16, base_channels: int = 64,
                 norm: str = "batch") -> None:
        num_classes = class_count(data_spec, "conditional_dcgan_generator")
        embedding_dim = checked_embedding_dim(embedding_dim)
        super().__init__(num_classes, embedding_dim,
                         DCGANGenerator(data_spec, latent_dim + embedding_dim, base_channels, norm))


@NETWORKS.register("conditional_dcgan_discriminator")
class ConditionalDCGANDiscriminator(ConditionalDiscriminator):
    """``dcgan_discriminator`` conditioned by ``concat`` (label maps joined to the image), ``projection``
    or ``acgan`` (both on the last feature map); linear scores, no sigmoid."""

    def __init__(self, data_spec: DataSpec, conditioning: str = "projection", embedding_dim: int = 16,
                 base_channels: int = 64, norm: str = "batch", negative_slope: float = 0.2) -> None:
        super().__init__(class_count(data_spec, "conditional_dcgan_discriminator"), conditioning)
        body_spec = data_spec
        if self.conditioning == "concat" and data_spec.is_image:  # not an image: the body says why it refuses
            self.embedding = nn.Embedding(self.num_classes, checked_embedding_dim(embedding_dim))
            channels, *size = data_spec.shape
            body_spec = replace(data_spec, shape=(channels + embedding_dim, *size))
        body = DCGANDiscriminator(body_spec, base_channels, norm, negative_slope).net
        self.features, self.score = body[:-1], body[-1]  # strided convs, then the s0 x s0 conv to one score
        feature_channels, start = self.score.in_channels, self.score.kernel_size[0]
        if self.conditioning == "projection":
            self.add_projection(feature_channels * start * start)
        if self.conditioning == "acgan":
            self.classifier = nn.Conv2d(feature_channels, self.num_classes, start, 1, 0)
            dcgan_init(self.classifier)

    def join_labels(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        maps = self.embedding(labels)[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return torch.cat([x, maps], dim=1)
