"""Fidelity to paired targets: L1, PSNR and SSIM of each output against its own target image.

Translation with pairs (pix2pix) and super-resolution report these beside FID. Each value is computed per
image and averaged over images, as papers do. ``y_channel`` and ``crop_border`` give the super-resolution
convention (gantrain/metrics/pixels.py); the defaults compare all channels of the whole image.
PSNR and SSIM come from torchmetrics; SSIM with an 11x11 Gaussian window of sigma 1.5 over the valid
region and the constants of Wang et al. 2004, on 0..255 values in float64.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from gantrain.errors import UserError
from gantrain.metrics.base import GeneratedBatch, Metric, Reference
from gantrain.metrics.pixels import compared
from gantrain.registry import METRICS


class PerImageMetric(Metric):
    """An average over images of a value each output gets against its target."""

    uses_features = False
    needs_targets = True
    name: ClassVar[str]

    def __init__(self, y_channel: bool = False, crop_border: int = 0) -> None:
        if not isinstance(y_channel, bool):
            raise UserError(f"metrics.{self.name}.y_channel must be true or false, got {y_channel!r}")
        if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
            raise UserError(f"metrics.{self.name}.crop_border must be a non-negative integer, got {crop_border!r}")
        self.y_channel, self.crop_border = y_channel, crop_border
        self.values: list[float] = []

    def start(self) -> None:
        self.values = []

    def update(self, batch: GeneratedBatch) -> None:
        targets = batch.extra["targets"]
        if targets.shape != batch.samples.shape:
            raise UserError(f"{self.name}: outputs of shape {list(batch.samples.shape[1:])} cannot be compared with "
                            f"targets of shape {list(targets.shape[1:])}")
        outputs = compared(batch.samples, self.y_channel, self.crop_border)
        self.values.extend(self.per_image(outputs, compared(targets, self.y_channel, self.crop_border)).tolist())

    def per_image(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract: (N,) values of 0..255 float64 images

    def compute(self, reference: Reference) -> dict[str, float]:
        if not self.values:
            raise UserError(f"{self.name} needs at least one output with its target")
        return {self.name: float(sum(self.values) / len(self.values))}


@METRICS.register("l1")
class MeanAbsoluteError(PerImageMetric):
    """Mean absolute difference per pixel, on the 0..1 scale (8-bit values / 255)."""

    name = "l1"
    outputs = {"l1": False}

    def per_image(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs - targets).abs().flatten(1).mean(1) / 255.0


@METRICS.register("psnr")
class PeakSignalToNoise(PerImageMetric):
    """10 log10(255^2 / MSE) in dB per image (an identical image counts as 100 dB rather than infinity)."""

    name = "psnr"
    outputs = {"psnr": True}

    def per_image(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from torchmetrics.functional.image import peak_signal_noise_ratio

        values = peak_signal_noise_ratio(outputs, targets, data_range=255.0, reduction="none", dim=(1, 2, 3))
        return torch.nan_to_num(values, posinf=100.0).clamp(max=100.0)


@METRICS.register("ssim")
class StructuralSimilarity(PerImageMetric):
    """SSIM (Wang et al. 2004) per image, averaged over channels (1 with y_channel)."""

    name = "ssim"
    outputs = {"ssim": True}

    def per_image(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from torchmetrics.functional.image import structural_similarity_index_measure

        if min(outputs.shape[-2:]) < 11:
            raise UserError(f"ssim needs images of at least 11x11 pixels (its window), got "
                            f"{outputs.shape[-1]}x{outputs.shape[-2]}")
        _, full = structural_similarity_index_measure(outputs, targets, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                                      data_range=255.0, reduction="none", return_full_image=True)
        # torchmetrics averages over the whole image, its border windows reflect-padded; Wang et al.'s (and the
        # papers') SSIM averages the valid region only, where the 11x11 window lies wholly inside the image
        return full[..., 5:-5, 5:-5].flatten(1).mean(1)
