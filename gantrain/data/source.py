"""What a dataset builder hands to the loop: samples plus a description of their shape."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate


@dataclass(frozen=True)
class DataSpec:
    """What networks must adapt to. Stored in checkpoints so sampling and translating need no data.

    Batches say what they hold: noise-to-image data hands out ``real`` (and ``label``); paired
    translation ``source``/``target``; unpaired ``a``/``b``; super-resolution ``lr``/``hr``.
    ``keys`` gives one item's shape under each key (None: the noise-to-image default, ``real``
    of ``shape``); ``shape`` is what a generator makes (the target side for image-to-image data).
    """

    shape: tuple[int, ...]  # one sample: (C, H, W) for images, (D,) for points
    num_classes: int | None = None  # None: the data has no labels
    bounded: bool = True  # samples lie in [-1, 1] (images); toy points do not
    keys: dict[str, tuple[int, ...]] | None = None  # batch key -> one item's shape (None: {"real": shape})
    scale: int = 1  # super-resolution: how many times larger the output side is than the input side
    epoch_size: int | None = None  # training samples per epoch (epoch-based schedules); not part of the shape

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def batch_keys(self) -> dict[str, tuple[int, ...]]:
        """Every key a training batch holds, with one item's shape (a label is a scalar: ())."""
        if self.keys is not None:
            return dict(self.keys)
        return {"real": tuple(self.shape), **({"label": ()} if self.num_classes else {})}

    def to_dict(self) -> dict[str, Any]:
        values = {**asdict(self), "shape": list(self.shape)}
        if self.keys is not None:
            values["keys"] = {key: list(shape) for key, shape in self.keys.items()}
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DataSpec":
        keys = values.get("keys")
        return cls(**{**values, "shape": tuple(values["shape"]),
                      "keys": {k: tuple(v) for k, v in keys.items()} if keys is not None else None})

    def same_shape(self, other: "DataSpec") -> bool:
        """Whether networks built for one fit the other (the epoch size may differ)."""
        return (self.shape, self.num_classes, self.bounded, self.batch_keys, self.scale) == \
            (other.shape, other.num_classes, other.bounded, other.batch_keys, other.scale)

    def describe(self) -> str:
        """'real [1, 28, 28]' / 'source [3, 256, 256], target [3, 256, 256]': for messages."""
        return ", ".join(f"{key} {list(shape)}" for key, shape in self.batch_keys.items() if shape)


@dataclass
class DataSource:
    """The training samples, their spec, and the held-out splits (val, test) when the data has them.

    Grids and metrics of families that take images in use a held-out split, never training data.
    """

    dataset: Dataset  # items are dicts: {"real": tensor, "label": tensor (when labelled)}, or the keys of spec
    spec: DataSpec
    held_out: dict[str, Dataset] = field(default_factory=dict)  # split name ("val", "test") -> its samples

    def split(self, preferred: tuple[str, ...]) -> tuple[str, Dataset]:
        """The first held-out split of ``preferred`` that exists, else ("train", the training data)."""
        for name in preferred:
            if name in self.held_out:
                return name, self.held_out[name]
        return "train", self.dataset

    def preview_split(self) -> tuple[str, Dataset]:
        """Where fixed preview inputs come from: val, else test, else the training data."""
        return self.split(("val", "test"))

    def evaluation_split(self) -> tuple[str, Dataset]:
        """What task=eval scores on: test, else val, else the training data."""
        return self.split(("test", "val"))


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

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, mapped: bool = False) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        super().__init__(images, labels)
        self.mapped = mapped  # a memory-mapped cache (data.storage=disk): it stays on the host, batches are copied
        self.target: torch.device | None = None  # where a mapped cache's batches go (uint8, before decoding)

    @property
    def device(self) -> torch.device:
        return self.target or self.samples.device

    def to(self, device: torch.device) -> "TensorImages":
        """Move the images onto ``device``; a mapped cache stays on the host and hands its rows over per batch."""
        if not self.mapped:
            return super().to(device)
        self.target = torch.device(device)
        self.labels = self.labels.to(device) if self.labels is not None else None
        return self

    def get_batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.target is None:
            return super().get_batch(indices)
        rows = self.samples.index_select(0, indices.cpu()).to(self.target, non_blocking=True)
        batch = {"real": self.decode(rows)}
        if self.labels is not None:
            batch["label"] = self.labels.index_select(0, indices.to(self.target))
        return batch

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


def batch_of(dataset: Dataset, indices: torch.Tensor) -> dict[str, torch.Tensor]:
    """The samples at ``indices`` as one batch: the dataset's own ``get_batch`` (tensor storage reads a batch
    at once), else its items collated."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices)
    return default_collate([dataset[int(i)] for i in indices])
