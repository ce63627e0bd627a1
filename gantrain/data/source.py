"""What a dataset builder hands to the loop: samples plus a description of their shape."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataSpec:
    """What networks must adapt to. Stored in checkpoints so sampling needs no data."""

    shape: tuple[int, ...]  # one sample: (C, H, W) for images, (D,) for points
    num_classes: int | None = None  # None: the data has no labels
    bounded: bool = True  # samples lie in [-1, 1] (images); toy points do not

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DataSpec":
        return cls(**{**values, "shape": tuple(values["shape"])})


@dataclass
class DataSource:
    dataset: Dataset  # items are dicts: {"real": tensor, "label": tensor (when labelled)}
    spec: DataSpec


def normalise_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [0, 255] -> float [-1, 1], on the whole batch and on whatever device it lies."""
    return images.float().div_(127.5).sub_(1.0)


class TensorSamples(Dataset):
    """Samples held in one tensor; batches are cut by index, no per-sample work, no workers.

    ``get_batch`` is the fast path the batch stream uses instead of a DataLoader; ``to`` moves the
    storage (e.g. onto the training GPU) and ``get_batch`` then takes indices from any device.
    """

    def __init__(self, samples: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.samples = samples.contiguous()
        self.labels = labels.long() if labels is not None else None

    def __len__(self) -> int:
        return self.samples.shape[0]

    @property
    def device(self) -> torch.device:
        return self.samples.device

    def to(self, device: torch.device) -> "TensorSamples":
        """Keep the storage on ``device`` (in place, so every user of the source shares one copy)."""
        self.samples = self.samples.to(device)
        self.labels = self.labels.to(device) if self.labels is not None else None
        return self

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """Stored samples -> what networks see; the identity unless a subclass stores them compactly."""
        return samples

    def get_batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        indices = indices.to(self.device)  # a no-op when the caller already holds them there
        # index_select, not samples[indices]: the same rows, about 25 µs less per batch on a CPU
        batch = {"real": self.decode(self.samples.index_select(0, indices))}
        if self.labels is not None:
            batch["label"] = self.labels.index_select(0, indices)
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.get_batch(torch.tensor([index])).items()}


class TensorImages(TensorSamples):
    """Images decoded once into a uint8 tensor (N, C, H, W): a quarter of the memory of floats."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        super().__init__(images, labels)

    @property
    def images(self) -> torch.Tensor:
        return self.samples

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return normalise_uint8(samples)


class TensorPoints(TensorSamples):
    """Low-dimensional float samples (toy data)."""

    def __init__(self, points: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        super().__init__(points.float(), labels)

    @property
    def points(self) -> torch.Tensor:
        return self.samples


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (N, C, H, W) uint8 batch once at load time (antialiased), keeping uint8."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def tensor_image_source(images: torch.Tensor, labels: torch.Tensor | None, num_classes: int | None,
                        image_size: int | None) -> DataSource:
    """Package decoded uint8 images (N, C, H, W) as a source, resized to ``image_size`` if given."""
    if image_size is not None:
        images = resize_uint8(images, int(image_size))
    spec = DataSpec(shape=tuple(images.shape[1:]), num_classes=num_classes if labels is not None else None)
    return DataSource(TensorImages(images, labels), spec)
