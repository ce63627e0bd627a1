"""``task=translate``: run a trained image-to-image model (pix2pix, CycleGAN, super-resolution) on files.

Everything about files and sizes lives here, once, for every family that maps images to images: reading
a file or a folder (recursively), converting to the channels the model was trained on, padding each image
to the multiple its generator needs and cropping the output back, cutting large images into overlapping
tiles so memory stays bounded, batching images of one size, a progress bar, and writing PNGs under the
same relative names. A recipe only has to ``translate(images, direction)`` and describe itself in a
``TranslationInfo`` (channels, multiple, scale).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image

from gantrain.data.image_bank import image_files, open_image, to_uint8_tensor
from gantrain.data.image_bank import IMAGE_SUFFIXES
from gantrain.engine.checkpoint import write_atomic
from gantrain.engine.restore import load_trained
from gantrain.errors import UserError, warn
from gantrain.options import positive_int
from gantrain.recipes.translation import TranslationInfo

AUTO_TILE = 512  # tile=null: images whose output would exceed AUTO_PIXELS are cut into tiles of this many input pixels
AUTO_PIXELS = 2048 * 2048
Translator = Callable[[torch.Tensor], torch.Tensor]


def padded(translate: Translator, images: torch.Tensor, multiple: int, scale: int) -> torch.Tensor:
    """``translate`` of images padded (reflected) to a multiple of ``multiple``, cropped back to scale x size."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        images = F.pad(images, (0, pad_w, 0, pad_h), mode=mode)
    return translate(images)[..., :height * scale, :width * scale]


def tiled(translate: Translator, images: torch.Tensor, info: TranslationInfo, tile: int, overlap: int) -> torch.Tensor:
    """``translate`` tile by tile: each tile is widened by ``overlap`` pixels of context on every side,
    translated, and only its own part of the output kept, so seams vanish once the overlap covers the
    network's receptive field (a U-Net's spans the whole image: its tiles are an approximation).
    """
    batch, _, height, width = images.shape
    scale = info.scale
    out = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(bottom + overlap, height), min(right + overlap, width)
            piece = padded(translate, images[..., y0:y1, x0:x1], info.multiple, scale)
            if out is None:
                out = piece.new_empty(batch, piece.shape[1], height * scale, width * scale)
            out[..., top * scale:bottom * scale, left * scale:right * scale] = \
                piece[..., (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
    return out


def tile_for(height: int, width: int, info: TranslationInfo, tile: int | None) -> int | None:
    """The tile size to use: the one asked for, else AUTO_TILE for outputs over AUTO_PIXELS, else none."""
    if tile is not None:
        return positive_int(tile, "tile")
    return AUTO_TILE if height * width * info.scale ** 2 > AUTO_PIXELS else None


def translate_images(translate: Translator, images: torch.Tensor, info: TranslationInfo, tile: int | None,
                     overlap: int) -> torch.Tensor:
    """Outputs for a batch of same-size images of any size: padded, and tiled when asked or when large."""
    size = tile_for(images.shape[-2], images.shape[-1], info, tile)
    if size is None or (images.shape[-2] <= size and images.shape[-1] <= size):
        return padded(translate, images, info.multiple, info.scale)
    return tiled(translate, images, info, size, overlap)


def input_files(target: str | None, out: Path) -> tuple[Path, list[Path]]:
    """(the folder names are relative to, the image files) of ``input=``; never files under ``out``."""
    if not target:
        raise UserError("task=translate needs input=FILE_OR_FOLDER (an image, or a folder of images)")
    path = Path(str(target)).expanduser()
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise UserError(f"input={target}: no such file or folder")
    files = image_files(path, exclude=[out.resolve()] if out.resolve() != path.resolve() else [])
    if not files:
        raise UserError(f"input={target} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return path, files


def read_inputs(files: list[Path], channels: int, single: bool) -> Iterator[tuple[Path, torch.Tensor]]:
    """(file, uint8 (C, H, W)) in the model's channels; a folder's unreadable files are skipped with a warning."""
    for path in files:
        try:
            yield path, to_uint8_tensor(open_image(path), channels)
        except UserError as error:
            if single:
                raise
            warn(f"skipping {error}")


def write_png(image: torch.Tensor, path: Path) -> None:
    """A (C, H, W) image in [-1, 1] as an 8-bit PNG (greyscale for one channel), written atomically."""
    pixels = image.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu()
    array = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    write_atomic(buffer.getvalue(), path)


def same_size_batches(images: Iterator[tuple[Path, torch.Tensor]], batch: int
                      ) -> Iterator[list[tuple[Path, torch.Tensor]]]:
    """Consecutive images of one size, at most ``batch`` at a time (only one batch is held in memory)."""
    pending: list[tuple[Path, torch.Tensor]] = []
    for item in images:
        if pending and (len(pending) == batch or pending[0][1].shape != item[1].shape):
            yield pending
            pending = []
        pending.append(item)
    if pending:
        yield pending


def output_path(path: Path, base: Path, out: Path, single: bool) -> Path:
    """out/RELATIVE/NAME.png; for one input file, ``out`` itself when it names a picture file."""
    if single and out.suffix.lower() in IMAGE_SUFFIXES:
        return out.with_suffix(".png")
    return out / path.relative_to(base).with_suffix(".png")


def translate_files(cfg: DictConfig) -> Path:
    """``gantrain task=translate checkpoint=RUN input=FILE_OR_FOLDER out=FOLDER [direction=] [tile=]``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out = Path(str(cfg.out)).expanduser()
    model = load_trained(cfg.get("checkpoint"), cfg.device.name, "translate", cfg,
                         lambda recipe: recipe.direction(cfg.get("direction")).network)  # a bare file: this network
    recipe = model.recipe
    if not hasattr(recipe, "translate"):
        raise UserError(f"{model.path} holds a model={model.config.model.name} model, which draws images from "
                        "noise rather than translating them; use task=sample")
    direction = recipe.direction(cfg.get("direction"))
    info = recipe.translation_info(direction.name)
    base, files = input_files(cfg.get("input"), out)
    single = len(files) == 1 and Path(str(cfg.input)).expanduser().is_file()
    if not single and out.suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(f"out={cfg.out} names a picture, but input={cfg.input} is a folder: give a folder for out")
    overlap = int(cfg.get("tile_overlap", 32))
    batch = positive_int(cfg.get("batch", 4), "batch")
    device = model.device
    translate = lambda images: recipe.translate(images, direction.name)  # noqa: E731
    written = 0
    with recipe.averaged_weights(), Progress(TextColumn("[bold]translate"), BarColumn(), MofNCompleteColumn(),
                                             TimeRemainingColumn(), transient=True) as progress:
        task = progress.add_task("translate", total=len(files))
        position = {path: index for index, path in enumerate(files)}
        for chunk in same_size_batches(read_inputs(files, info.in_channels, single), batch):
            inputs = torch.stack([image for _, image in chunk]).to(device).float().div_(127.5).sub_(1.0)
            outputs = translate_images(translate, inputs, info, cfg.get("tile"), overlap)
            for (path, _), output in zip(chunk, outputs):
                write_png(output, output_path(path, base, out, single))
                written += 1
            progress.update(task, completed=position[chunk[-1][0]] + 1)
    where = output_path(files[0], base, out, single) if single else out
    print(f"translated {written} image(s) {direction.name} with {model.path} (step {model.step}) into {where}")
    return where
