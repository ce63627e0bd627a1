"""The feature networks metrics compare samples in: InceptionV3 (the standard), or the user's own.

Inception is torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's port of the TensorFlow FID network,
the one torchmetrics' FrechetInceptionDistance uses by default): pool features (2048) for FID, KID and
precision/recall, unbiased logits (1008) for the Inception Score. Its weights are downloaded once by
torch-fidelity into torch's hub cache; where that is impossible, ``metrics.inception_weights=PATH`` points
at a local copy. ``metrics.features`` may instead name a TorchScript file or a registered network: values
measured in such features are logged as ``fid@NAME`` so they are never mistaken for Inception numbers.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.pretrained import WeightsFile, available, first_line, locate
from gantrain.registry import NETWORKS

INCEPTION = "inception"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # what torch-fidelity downloads and looks for
INCEPTION_WEIGHTS = WeightsFile(
    INCEPTION_FILE, f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}",
    "metrics.inception_weights", "metrics.download", "the Inception features of fid, kid, is and precision_recall",
    "use your own features with metrics.features=PATH_TO_TORCHSCRIPT")


class FeatureNetwork:
    """Maps samples (as the generator gives them) to (features, logits); logits is None if not asked for."""

    def __init__(self, name: str, identity: str, network: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor],
                 split: Callable[[object], tuple[torch.Tensor, torch.Tensor | None]], device: torch.device) -> None:
        self.name = name  # "inception", or the user's features: appended to metric names (fid@NAME)
        self.identity = identity  # changes whenever the weights do: part of the reference-statistics cache key
        self.network = network
        self.prepare = prepare
        self.split = split
        self.device = device

    @property
    def is_standard(self) -> bool:
        return self.name == INCEPTION

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.split(self.network(self.prepare(samples.to(self.device))))


def inception_available(weights: str | None, download: bool) -> bool:
    """Whether Inception features can be had without asking the user for anything (a file or a download)."""
    return available(INCEPTION_WEIGHTS, weights, download)


def inception_features(weights: str | None, download: bool, spec: DataSpec, device: torch.device) -> FeatureNetwork:
    """torchmetrics' InceptionV3 on images in [-1, 1] (greyscale repeated to RGB), with a clear error offline."""
    if not spec.is_image or spec.shape[0] not in (1, 3):
        raise UserError(f"Inception features need 1- or 3-channel images, the data has shape {list(spec.shape)}; "
                        "use metrics.names=[coverage] for 2-D toy data, or metrics.features=PATH_TO_TORCHSCRIPT")
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = locate(INCEPTION_WEIGHTS, weights, download)  # None: torch-fidelity downloads them into the hub cache
    try:
        network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048", "logits_unbiased"],
                                     feature_extractor_weights_path=None if path is None else str(path))
    except (OSError, ValueError, RuntimeError) as error:  # URLError is an OSError
        if path is None:
            raise INCEPTION_WEIGHTS.missing(f"the download failed: {first_line(error, 120)}") from None
        raise UserError(f"cannot load Inception weights from {path}: {first_line(error)}") from None

    def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
        images = images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    def split(outputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs[0].float(), outputs[1].float()

    network.to(device).eval()
    # NoTrainInceptionV3.forward returns only the first feature; this returns both in one pass
    return FeatureNetwork(INCEPTION, f"inception-v3-compat/{INCEPTION_FILE}", network._torch_fidelity_forward,
                          to_uint8_rgb, split, device)


def user_network(source: str, spec: DataSpec, device: torch.device, option: str,
                 builtin: str) -> tuple[nn.Module, str, str]:
    """(network, name, identity) of a TorchScript file or a registered network (built with ``data_spec``).

    The identity changes with the weights (a hash), so cached statistics computed with it are never reused
    for another network. ``option``/``builtin`` name the config key and its built-in choice, for messages.
    """
    path = Path(source).expanduser()
    if path.is_file():
        try:
            with warnings.catch_warnings():  # torch's deprecation notice for TorchScript: nothing a user can act on
                warnings.simplefilter("ignore", FutureWarning)
                network = torch.jit.load(str(path), map_location=device)
        except (RuntimeError, ValueError, OSError) as error:
            raise UserError(f"{option}={source} is not a loadable TorchScript file: {first_line(error)}") from None
        return network, path.stem, "torchscript:" + hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    if source in NETWORKS:
        with torch.random.fork_rng(devices=[]):  # a randomly initialised network is the same every time
            torch.manual_seed(0)
            network = NETWORKS.build(source, {}, data_spec=spec).to(device)
        digest = hashlib.sha256()
        for key, value in sorted(network.state_dict().items()):
            digest.update(key.encode() + value.detach().cpu().contiguous().numpy().tobytes())
        return network, source, f"network:{source}:{digest.hexdigest()[:20]}"
    raise UserError(f"{option}={source} is neither a file nor a registered network; give '{builtin}', a "
                    "TorchScript file, or a network name")


def own_features(source: str, spec: DataSpec, device: torch.device) -> FeatureNetwork:
    """A TorchScript file or a registered network (built with ``data_spec``), taking samples in data space."""
    network, name, identity = user_network(source, spec, device, "metrics.features", INCEPTION)
    network.eval()

    def split(output: object) -> tuple[torch.Tensor, torch.Tensor]:
        output = output[0] if isinstance(output, (tuple, list)) else output
        output = output.reshape(output.shape[0], -1).float()
        return output, output  # one output: features, and logits for the Inception Score

    return FeatureNetwork(re.sub(r"[^\w.-]", "_", name), identity, network, lambda x: x.float(), split, device)


def build_features(source: str, inception_weights: str | None, download: bool, spec: DataSpec,
                   device: torch.device) -> FeatureNetwork:
    if str(source) == INCEPTION:
        return inception_features(inception_weights, download, spec, device)
    return own_features(str(source), spec, device)
