"""Any folder tree of images, resized and center-cropped; labelled when every image sits in a class subfolder."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from gantrain.data.image_bank import IMAGE_SUFFIXES
from gantrain.data.source import DataSource, DataSpec, TensorImages, normalise_uint8
from gantrain.data.storage import Storage
from gantrain.errors import UserError
from gantrain.options import positive_number
from gantrain.registry import DATASETS

log = logging.getLogger("gantrain")



class ImageFiles(Dataset):
    """Decodes one file per item (through a DataLoader, with workers when asked)."""

    def __init__(self, files: list[Path], labels: list[int] | None, image_size: int, channels: int) -> None:
        self.files = files
        self.labels = labels
        from torchvision.transforms import v2  # imported here: torchvision's import takes ~1 s (it loads torch._dynamo), so bad input fails fast

        self.mode = "L" if channels == 1 else "RGB"
        self.transform = v2.Compose([v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, index: int) -> torch.Tensor:
        """One image as uint8 (C, S, S): resized, center-cropped, not yet scaled (the cache stores this)."""
        return self.decode_file(self.files[index])

    def decode_file(self, path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return self.transform(image.convert(self.mode)).as_subclass(torch.Tensor)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"real": normalise_uint8(self.decode(index))}
        if self.labels is not None:
            item["label"] = torch.tensor(self.labels[index])
        return item


def decoded_once(files: ImageFiles, shape: tuple[int, ...], storage: Storage) -> TensorImages:
    """Decode every image once into uint8 (in memory or a mapped cache), so batches take the tensor path."""
    key = {"layout": "image_folder", "shape": list(shape), "transform": "resize shorter side, centre crop, antialias"}
    bank = storage.bank(files.files, files.decode_file, key, [path.name for path in files.files],
                        f"data.cache=true: {len(files)} images of {'x'.join(map(str, shape))}",
                        nbytes=len(files) * math.prod(shape))
    labels = torch.tensor(files.labels) if files.labels is not None else None
    return TensorImages(bank.stacked, labels, mapped=bank.mapped)


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
def image_folder(root: str, image_size: int = 64, channels: int = 3, cache: bool = False,
                 cache_max_gb: float = 8.0, storage: str = "auto", cache_dir: str | None = None) -> DataSource:
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
    kept = Storage(storage, cache_dir, positive_number(cache_max_gb, "data.cache_max_gb"), data_root=root_path)
    if not cache and storage != "auto":
        raise UserError(f"data.storage={storage} keeps decoded images, but data.cache=false decodes them per batch "
                        "in workers; set data.cache=true")
    decoder = ImageFiles(files, labels, image_size, channels)
    return DataSource(decoded_once(decoder, spec.shape, kept) if cache else decoder, spec)
