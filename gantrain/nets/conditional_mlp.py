"""Label-conditioned MLP networks for the conditional GAN (Mirza & Osindero 2014), and what every
conditional network shares.

The generator concatenates a learned label embedding to the noise. The discriminator conditions in
one of three ways (``conditioning``):
  ``concat``      the label embedding is concatenated to the flattened input (Mirza & Osindero 2014);
  ``projection``  score = ψ(φ(x)) + <embed(y), φ(x)> (Miyato & Koyama 2018);
  ``acgan``       no label input: an unconditional score plus a class-logits head (Odena et al. 2017),
                  so ``forward`` returns ``(scores, class_logits)``.
The bodies are the unconditional ``mlp_generator`` / ``mlp_discriminator``, built for the wider input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.nets.mlp import MLPDiscriminator, MLPGenerator
from gantrain.options import positive_int
from gantrain.registry import NETWORKS, unknown_choice

CONDITIONINGS = ("concat", "projection", "acgan")


def class_count(data_spec: DataSpec, network: str) -> int:
    """The number of classes to condition on; unlabelled data is a user error, not a crash mid-run."""
    if data_spec.num_classes is None:
        raise UserError(
            f"model=cgan needs labelled data; {network} got data without class labels (use labelled data such as "
            f"data=digits, mnist or cifar10, or an image_folder with one subfolder per class)")
    if int(data_spec.num_classes) < 1:
        raise UserError(f"model=cgan needs at least one class, the data has {data_spec.num_classes}")
    return int(data_spec.num_classes)


def checked_conditioning(conditioning: str) -> str:
    if conditioning not in CONDITIONINGS:
        raise UserError(unknown_choice("conditioning", conditioning, list(CONDITIONINGS)))
    return conditioning


def checked_embedding_dim(embedding_dim: int) -> int:
    return positive_int(embedding_dim, "embedding_dim")


class ConditionalGenerator(nn.Module):
    """G(z, y) = body([z, embed(y)]): an unconditional generator fed the noise and the label embedding."""

    def __init__(self, num_classes: int, embedding_dim: int, body: nn.Module) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes, embedding_dim)  # N(0, 1): the same scale as the noise
        self.body = body

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([z.flatten(1), self.embedding(labels)], dim=1))


class ConditionalDiscriminator(nn.Module):
    """D(x, y) from an unconditional discriminator split into features φ and its linear score head ψ.

    Subclasses build ``features``, ``score`` (φ's output -> one value per sample) and, for ``acgan``,
    ``classifier`` (φ's output -> class logits), and say how ``concat`` joins labels to the input.
    """

    def __init__(self, num_classes: int, conditioning: str) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conditioning = checked_conditioning(conditioning)

    def join_labels(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract: the input layout decides how the embedding is attached

    def add_projection(self, feature_size: int) -> None:
        """V with one row per class; zero at start, so D begins as its unconditional counterpart."""
        self.projection = nn.Embedding(self.num_classes, feature_size)
        nn.init.zeros_(self.projection.weight)

    def forward(self, x: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.conditioning == "concat":
            x = self.join_labels(x, labels)
        features = self.features(x)
        scores = self.score(features).flatten(1).squeeze(1)
        if self.conditioning == "projection":
            scores = scores + (self.projection(labels) * features.flatten(1)).sum(dim=1)
        if self.conditioning == "acgan":
            return scores, self.classifier(features).flatten(1)
        return scores


@NETWORKS.register("conditional_mlp_generator")
class ConditionalMLPGenerator(ConditionalGenerator):
    """[z, embed(y)] -> ``mlp_generator`` (Tanh for images, linear for unbounded toy points)."""

    def __init__(self, data_spec: DataSpec, latent_dim: int, embedding_dim: int = 16, hidden: Sequence[int] = (256,),
                 negative_slope: float = 0.01) -> None:
        num_classes = class_count(data_spec, "conditional_mlp_generator")
        embedding_dim = checked_embedding_dim(embedding_dim)
        super().__init__(num_classes, embedding_dim,
                         MLPGenerator(data_spec, latent_dim + embedding_dim, hidden, negative_slope))


@NETWORKS.register("conditional_mlp_discriminator")
class ConditionalMLPDiscriminator(ConditionalDiscriminator):
    """``mlp_discriminator`` conditioned by ``concat`` (embedding joined to the flattened input),
    ``projection`` (on the last hidden layer) or ``acgan`` (class logits from the last hidden layer)."""

    def __init__(self, data_spec: DataSpec, conditioning: str = "projection", embedding_dim: int = 16,
                 hidden: Sequence[int] = (128,), negative_slope: float = 0.01) -> None:
        super().__init__(class_count(data_spec, "conditional_mlp_discriminator"), conditioning)
        body_spec = data_spec
        if self.conditioning == "concat":
            self.embedding = nn.Embedding(self.num_classes, checked_embedding_dim(embedding_dim))
            body_spec = replace(data_spec, shape=(math.prod(data_spec.shape) + embedding_dim,))
        body = MLPDiscriminator(body_spec, hidden, negative_slope).net
        self.features, self.score = body[:-1], body[-1]  # Flatten + hidden layers, then the Linear score
        if self.conditioning == "projection":
            self.add_projection(self.score.in_features)
        if self.conditioning == "acgan":
            self.classifier = nn.Linear(self.score.in_features, self.num_classes)

    def join_labels(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.flatten(1), self.embedding(labels)], dim=1)
