"""``task=sample``: draw from a trained generator into a grid PNG, a folder of PNGs or an .npz tensor.

Any recipe whose capabilities say it generates (``Recipe.capabilities``) can be sampled; ``class=`` is
passed on to those that take a class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from gantrain.engine.restore import load_trained
from gantrain.engine.visuals import image_grid, save_picture, scatter_image
from gantrain.errors import UserError
from gantrain.options import positive_int
from gantrain.recipes.base import Capabilities, preview_rows

WRITES_RUN_FOLDER = False  # writes only what out= names
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


def conditions(cfg: DictConfig, capabilities: Capabilities) -> dict[str, object]:
    """The command line's conditions for ``Recipe.sample``: ``class=`` as ``label``, for a model that takes one."""
    if cfg.get("class") is None:
        return {}
    if capabilities.classes is None:
        raise UserError("this model is unconditional: class= applies only to conditional models")
    return {"label": cfg.get("class")}


def run(cfg: DictConfig) -> Path:
    """``gantrain task=sample checkpoint=RUN n=64 out=grid.png [class=3]``."""
    positive_int(cfg.n, "n")
    trained = load_trained(cfg.get("checkpoint"), cfg.device.name, "sample", cfg, lambda recipe: "generator")
    capabilities = trained.recipe.capabilities
    if not capabilities.generates:
        raise UserError(f"{trained.path} holds a model={trained.config.model.name} model, which translates images "
                        "rather than drawing samples: use task=translate checkpoint=RUN input=FILE_OR_FOLDER out=FOLDER")
    with trained.recipe.averaged_weights():  # the generator's EMA, when the run kept one
        generator = torch.Generator().manual_seed(cfg.seed)
        samples = trained.recipe.sample(cfg.n, generator, **conditions(cfg, capabilities))
    out = write_samples(samples, str(cfg.out))
    note = trained.recipe.sampling_note()  # e.g. the resolution a growing network had reached
    print(f"wrote {cfg.n} samples from {trained.path} (step {trained.step}) to {out}{f'; {note}' if note else ''}")
    return out
