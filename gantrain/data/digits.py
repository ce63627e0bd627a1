"""The offline quick-start data: scikit-learn's 1,797 handwritten digits (8x8, UCI), shipped inside sklearn."""

from __future__ import annotations

import torch

from gantrain.data.source import DataSource, tensor_image_source
from gantrain.registry import DATASETS


@DATASETS.register("digits")
def digits(image_size: int | None = 16) -> DataSource:
    from sklearn.datasets import load_digits  # a local file read, no download

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    return tensor_image_source(images, torch.from_numpy(bunch.target), num_classes=10, image_size=image_size)
