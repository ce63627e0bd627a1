"""Any folder tree of images, resized and center-cropped; labelled when every image sits in a class subfolder."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from gantrain.data.source import DataSource, DataSpec
from gantrain.errors import UserError
from gantrain.registry import DATASETS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class ImageFiles(Dataset):
    """Decodes one file per item (through a DataLoader, with workers when asked)."""

    def __init__(self, files: list[Path], labels: list[int] | None, image_size: int, channels: int) -> None:
        self.files = files
        self.labels = labels
        from torchvision.transforms import v2  # imported here: torchvision's import takes ~1 s (it loads torch._dynamo), so bad input fails fast

        self.mode = "L" if channels == 1 else "RGB"
        self.transform = v2.Compose([
            v2.ToImage(),
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.5] * channels, [0.5] * channels),
        ])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with Image.open(self.files[index]) as image:
            item = {"real": self.transform(image.convert(self.mode))}
        if self.labels is not None:
            item["label"] = torch.tensor(self.labels[index])
        return item


def _readable(files: list[Path]) -> list[Path]:
    """Drop files PIL cannot decode, naming them once, so one bad file does not kill a long run."""
    good, bad = [], []
    for path in files:
        try:
            with Image.open(path) as image:
                image.verify()
            good.append(path)
        except (UnidentifiedImageError, OSError, SyntaxError):
            bad.append(path)
    if bad:
        shown = ", ".join(str(p) for p in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(f"skipping {len(bad)} unreadable image file(s): {shown}", stacklevel=2)
    return good


@DATASETS.register("image_folder")
def image_folder(root: str, image_size: int = 64, channels: int = 3) -> DataSource:
    if root is None:
        raise UserError("data=image_folder needs data.root=PATH (a folder of images)")
    root_path = Path(str(root)).expanduser()
    if not root_path.is_dir():
        raise UserError(f"data.root {root_path} is not a folder")
    files = sorted(p for p in root_path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    files = _readable(files)
    if not files:
        raise UserError(f"no readable images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root_path}")
    classes = sorted({p.relative_to(root_path).parts[0] for p in files if len(p.relative_to(root_path).parts) > 1})
    labelled = bool(classes) and all(len(p.relative_to(root_path).parts) > 1 for p in files)
    labels = [classes.index(p.relative_to(root_path).parts[0]) for p in files] if labelled else None
    spec = DataSpec(shape=(channels, image_size, image_size), num_classes=len(classes) if labelled else None)
    return DataSource(ImageFiles(files, labels, image_size, channels), spec)
