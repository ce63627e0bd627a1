"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's own loaders, decoded once into tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gantrain.data.source import DataSource, tensor_image_source
from gantrain.errors import UserError
from gantrain.registry import DATASETS


def _open(dataset_name: str, label: str, root: str, train: bool, download: bool):
    """The torchvision dataset class ``dataset_name`` opened at ``root``, its errors turned into one-line ones."""
    from torchvision import datasets  # imported here: torchvision's import takes ~1 s (it loads torch._dynamo), so bad input fails fast

    root_path = Path(root).expanduser()
    try:
        return getattr(datasets, dataset_name)(root=str(root_path), train=train, download=download)
    except RuntimeError as error:
        if "not found" in str(error).lower():
            raise UserError(
                f"{label} not found under {root_path} and data.download=false; "
                f"set data.download=true or data.root to a folder holding it"
            ) from error
        raise UserError(f"cannot read {label} under {root_path}: {error}") from error
    except OSError as error:  # no network, unwritable root, ...
        raise UserError(f"cannot download {label} to {root_path}: {error}") from error


def _grayscale_28(dataset_name: str, label: str, root: str, train: bool, download: bool,
                  image_size: int | None) -> DataSource:
    dataset = _open(dataset_name, label, root, train, download)
    images = dataset.data.unsqueeze(1)  # (N, 1, 28, 28) uint8
    return tensor_image_source(images, dataset.targets, num_classes=10, image_size=image_size)


@DATASETS.register("mnist")
def mnist(root: str = "data", train: bool = True, download: bool = True, image_size: int | None = 28) -> DataSource:
    return _grayscale_28("MNIST", "MNIST", root, train, download, image_size)


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: str = "data", train: bool = True, download: bool = True,
                  image_size: int | None = 28) -> DataSource:
    return _grayscale_28("FashionMNIST", "Fashion-MNIST", root, train, download, image_size)


@DATASETS.register("cifar10")
def cifar10(root: str = "data", train: bool = True, download: bool = True, image_size: int | None = 32) -> DataSource:
    dataset = _open("CIFAR10", "CIFAR-10", root, train, download)
    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2)  # (N, 3, 32, 32)
    return tensor_image_source(images, torch.tensor(dataset.targets), num_classes=10, image_size=image_size)
