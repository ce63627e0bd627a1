"""``task=sample``: draw from a trained generator into a grid PNG, a folder of PNGs or an .npz tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from gantrain.engine.restore import load_trained
from gantrain.engine.visuals import image_grid, save_picture, scatter_image
from gantrain.errors import UserError
from gantrain.options import positive_int
from gantrain.recipes.base import preview_rows

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def write_samples(samples: torch.Tensor, target: str) -> Path:
    """A path ending in '/' (or an existing folder) gets one PNG per sample; .npz the raw tensor; .png a grid."""
    out = Path(target).expanduser()
    if target.endswith(("/", "\\")) or out.is_dir():
        if samples.dim() != 4:
            raise UserError("one PNG per sample needs image data; use out=FILE.png (scatter) or out=FILE.npz")
        out.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(samples):
            save_picture(image.add(1).div(2).clamp(0, 1), out / f"sample_{index:06d}.png")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez_compressed(out, samples=samples.numpy())
    elif out.suffix.lower() in PICTURE_SUFFIXES:
        picture = image_grid(samples, preview_rows(len(samples))) if samples.dim() == 4 else scatter_image(samples)
        save_picture(picture, out)
    else:
        raise UserError(f"out={out}: use a .png/.jpg grid, a .npz file, or a folder ending in '/'")
    return out


def sample(cfg: DictConfig) -> Path:
    positive_int(cfg.n, "n")
    trained = load_trained(cfg.get("checkpoint"), cfg.device.name, "sample", cfg, lambda recipe: "generator")
    with trained.recipe.averaged_weights():  # the generator's EMA, when the run kept one
        samples = trained.recipe.sample(cfg.n, torch.Generator().manual_seed(cfg.seed), label=cfg.get("class"))
    out = write_samples(samples, str(cfg.out))
    note = trained.recipe.sampling_note()  # e.g. the resolution a growing network had reached
    print(f"wrote {cfg.n} samples from {trained.path} (step {trained.step}) to {out}{f'; {note}' if note else ''}")
    return out
