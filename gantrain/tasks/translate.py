"""``task=translate``: run a trained image-to-image model on files: a file, or a folder (recursively).

Files are read in the channels the model was trained on, batched by size, padded or tiled
(gantrain/engine/tiling.py), translated by the recipe in the direction asked for, and written as PNGs
under the same relative names, atomically, with a progress bar. Any recipe whose capabilities list
directions (``Recipe.capabilities``) can be run this way.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from gantrain.data.image_bank import image_files, open_image, to_uint8_tensor
from gantrain.data.image_bank import IMAGE_SUFFIXES
from gantrain.engine.checkpoint import write_atomic
from gantrain.engine.restore import load_trained
from gantrain.engine.tiling import translate_images
from gantrain.errors import UserError, warn
from gantrain.options import positive_int

WRITES_RUN_FOLDER = False  # writes only what out= names


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


def run(cfg: DictConfig) -> Path:
    """``gantrain task=translate checkpoint=RUN input=FILE_OR_FOLDER out=FOLDER [direction=] [tile=]``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out = Path(str(cfg.out)).expanduser()
    model = load_trained(cfg.get("checkpoint"), cfg.device.name, "translate", cfg,
                         lambda recipe: recipe.direction(cfg.get("direction")).network)  # a bare file: this network
    recipe = model.recipe
    if not recipe.capabilities.directions:
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
