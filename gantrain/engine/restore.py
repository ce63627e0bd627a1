"""A trained model back from its checkpoint, for the tasks that use one (sample, eval, translate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from gantrain.data.source import DataSpec
from gantrain.engine.checkpoint import resolve_checkpoint
from gantrain.engine.device import resolve_device
from gantrain.errors import UserError
from gantrain.recipes.base import Recipe
from gantrain.registry import RECIPES, import_plugins


@dataclass
class TrainedModel:
    """A checkpoint's recipe with its weights, and what it was trained with."""

    path: Path  # the checkpoint file that was read
    saved: dict[str, Any]  # its whole payload
    config: DictConfig  # the run's resolved config
    spec: DataSpec  # the data it was trained on
    recipe: Recipe  # networks holding the checkpoint's weights (optimizers untouched)
    device: torch.device  # where its networks are

    @property
    def step(self) -> int:
        return int(self.saved["step"])


def load_trained(checkpoint: str | None, device_name: str, task: str) -> TrainedModel:
    """``checkpoint=RUN|FILE`` of ``task=...``: the newest readable checkpoint's recipe on the chosen device."""
    if not checkpoint:
        raise UserError(f"task={task} needs checkpoint=PATH (a .pt file or a run folder)")
    path, saved = resolve_checkpoint(checkpoint)
    config = OmegaConf.create(saved["config"])
    import_plugins(config.get("plugins"))
    device = resolve_device(device_name)
    spec = DataSpec.from_dict(saved["data_spec"])
    recipe = RECIPES.get(config.model.recipe).from_config(config, spec, device)
    recipe.load_state_dict(saved["recipe"], weights_only=True)
    return TrainedModel(path, saved, config, spec, recipe, device)
