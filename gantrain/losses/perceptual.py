"""The perceptual loss of SRGAN and ESRGAN: outputs and targets compared in the features of a frozen network.

By default the features of torchvision's ImageNet VGG19 at a named layer: ``relu5_4`` (after the last
convolution's activation, SRGAN's phi_5,4) or ``conv5_4`` (before it, ESRGAN's choice, which keeps more
signal). Images go in as VGG expects them: [0, 1], normalised with ImageNet's mean and std, greyscale
repeated to RGB. The VGG19 weights come from a local file, torch's hub cache or a download (the shared
path in gantrain/pretrained.py). Without them: ``weight: 0`` (no perceptual loss) or ``network: PATH``
(a TorchScript feature network of your own); ``weights: random`` is for tests and benchmarks only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.metrics.features import user_network
from gantrain.options import as_float
from gantrain.pretrained import WeightsFile, first_line, locate
from gantrain.registry import unknown_choice

log = logging.getLogger("gantrain")

VGG19 = "vgg19"
RANDOM = "random"
VGG19_WEIGHTS = WeightsFile(
    "vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "model.perceptual.weights",
    "model.perceptual.download", "the perceptual loss's VGG19 features",
    "set model.perceptual.weight=0 (no perceptual loss) or model.perceptual.network=PATH_TO_TORCHSCRIPT "
    "(your own feature network)")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_CONVS = (2, 2, 4, 4, 4)  # convolutions per block of VGG19's feature stack
CRITERIA = {"l1": F.l1_loss, "mse": F.mse_loss}


def vgg19_layer_names() -> list[str]:
    """The names of torchvision's vgg19().features, in order: conv1_1, relu1_1, ..., pool5."""
    names = []
    for block, convs in enumerate(VGG19_CONVS, start=1):
        for conv in range(1, convs + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return names


class ImageNetInput(nn.Module):
    """[-1, 1] images -> what ImageNet classifiers expect: [0, 1], normalised, three channels."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images.add(1).div(2)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images - self.mean) / self.std


def vgg19_features(layer: str, weights: str | None, download: bool) -> nn.Module:
    """VGG19's feature stack up to and including ``layer``, with ImageNet weights (or random ones when asked)."""
    from torchvision.models import vgg19

    names = vgg19_layer_names()
    if layer not in names:
        raise UserError(unknown_choice("model.perceptual.layer", layer, names))
    network = vgg19()
    if weights == RANDOM:
        log.warning("the perceptual loss uses a randomly initialised VGG19 (model.perceptual.weights=random): "
                    "its features mean nothing; for tests and benchmarks only")
    else:
        path = locate(VGG19_WEIGHTS, weights, download)
        try:
            if path is None:  # torchvision downloads into the hub cache
                from torchvision.models import VGG19_Weights

                network = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
            else:
                network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError
            if path is None:
                raise VGG19_WEIGHTS.missing(f"the download failed: {first_line(error, 120)}") from None
            raise UserError(f"cannot load VGG19 weights from {path}: {first_line(error)}") from None
    return nn.Sequential(ImageNetInput(), *list(network.features)[:names.index(layer) + 1])


class PerceptualLoss(nn.Module):
    """``criterion(phi(output), phi(target))`` for a frozen feature network phi; the target's side without grad."""

    def __init__(self, features: nn.Module, criterion: str = "l1") -> None:
        super().__init__()
        if criterion not in CRITERIA:
            raise UserError(unknown_choice("model.perceptual.criterion", criterion, list(CRITERIA)))
        self.features = features.eval()
        for parameter in self.features.parameters():
            parameter.requires_grad_(False)
        self.criterion = CRITERIA[criterion]

    def train(self, mode: bool = True) -> "PerceptualLoss":
        return super().train(False)  # always frozen, also when the recipe's networks switch to training

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self.features(targets)
        return self.criterion(self.features(outputs), wanted)


def build_perceptual(options: Mapping[str, Any] | None, spec: DataSpec,
                     device: torch.device) -> tuple[float, PerceptualLoss | None]:
    """(weight, loss) from ``model.perceptual``; a weight of 0 (or no such node) needs no feature network."""
    options = dict(options or {})
    weight = as_float("model.perceptual.weight", options.get("weight", 0.0), minimum=0)
    if weight == 0:
        return 0.0, None
    network = str(options.get("network", VGG19))
    if network == VGG19:
        features = vgg19_features(str(options.get("layer", "conv5_4")), options.get("weights"),
                                  bool(options.get("download", True)))
    else:
        features = user_network(network, spec, device, "model.perceptual.network", VGG19)[0]
    return weight, PerceptualLoss(features, str(options.get("criterion", "l1"))).to(device)
