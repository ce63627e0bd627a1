"""Trained weights back into networks: the one loader behind every task and every start from weights.

- ``load_trained``: the model a task uses (sample, eval, translate, export). A gantrain run or checkpoint
  brings its own config; a bare weights file (a published one) goes into the network of the current preset
  (``model=PRESET checkpoint=published_weights.pth``), built from the current config with its overrides, its
  channels and scale read from the file.
- ``initialise``: a new training run's starting weights: ``init=RUN_OR_FILE`` loads every network the file
  has (generator, discriminators, averages), ``model.NODE.init`` one node's networks, ``model.NODE.init_SUFFIX``
  one network of a node that builds several (``model.generator.init_ab`` of a two-generator model). Optimizers, schedules,
  the step and the data position start fresh; a resumed run never reads these files again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from gantrain.data.source import DataSpec
from gantrain.engine.checkpoint import resolve_checkpoint
from gantrain.engine.device import resolve_device
from gantrain.engine.weight_files import (NATIVE, WeightsFile, check_options, fit, load_fitted, read_weights, say)
from gantrain.errors import UserError
from gantrain.recipes.base import Recipe
from gantrain.recipes.ema import average_name
from gantrain.registry import RECIPES, import_plugins

NetworkPicker = Callable[[Recipe], str]  # which of a recipe's networks a bare file is for (a task decides)


@dataclass
class TrainedModel:
    """A checkpoint's recipe with its weights, and what it was trained with."""

    path: Path  # the checkpoint file that was read
    saved: dict[str, Any]  # its whole payload (a bare weights file: {"step": 0})
    config: DictConfig  # the run's resolved config (a bare weights file: the current one)
    spec: DataSpec  # the data it was trained on (a bare weights file: what its tensors imply)
    recipe: Recipe  # networks holding the checkpoint's weights (optimizers untouched)
    device: torch.device  # where its networks are

    @property
    def step(self) -> int:
        return int(self.saved.get("step", 0))


def init_settings(cfg: DictConfig) -> tuple[str | None, str | None, bool]:
    """(model.init_key, model.init_format, model.init_strict)."""
    model = cfg.get("model") or {}
    return model.get("init_key"), model.get("init_format"), bool(model.get("init_strict", True))


def load_trained(checkpoint: str | None, device_name: str, task: str, cfg: DictConfig | None = None,
                 network: NetworkPicker | None = None) -> TrainedModel:
    """``checkpoint=RUN|FILE`` of ``task=...``: the newest readable checkpoint's recipe on the chosen device;
    with ``cfg`` and ``network``, also a bare weights file in the current preset's network."""
    if not checkpoint:
        raise UserError(f"task={task} needs checkpoint=PATH (a run folder, a .pt checkpoint or a weights file)")
    if cfg is None or network is None:
        path, saved = resolve_checkpoint(checkpoint)
    else:
        file = read_weights(checkpoint, init_settings(cfg)[0])
        if file.checkpoint is None:
            return from_weights(file, cfg, device_name, network)
        path, saved = file.path, file.checkpoint
    config = OmegaConf.create(saved["config"])
    import_plugins(config.get("plugins"))
    device = resolve_device(device_name)
    spec = DataSpec.from_dict(saved["data_spec"])
    recipe = RECIPES.get(config.model.recipe).from_config(config, spec, device)
    recipe.load_state_dict(saved["recipe"], weights_only=True)
    return TrainedModel(path, saved, config, spec, recipe, device)


def node_of(cfg: DictConfig, name: str) -> tuple[str, str]:
    """(config node, per-network suffix) a recipe network is built from: generator_ab -> (generator, ab)."""
    head, _, suffix = name.partition("_")
    if not isinstance((cfg.get("model") or {}).get(head), (dict, DictConfig)):
        raise UserError(f"the network '{name}' was not built from a model.{head} node; it cannot load a weights file")
    return head, suffix


def from_weights(file: WeightsFile, cfg: DictConfig, device_name: str, network: NetworkPicker) -> TrainedModel:
    """A bare weights file in the current preset: the file's channels and scale, the config's options."""
    _, forced, strict = init_settings(cfg)
    kind = str(cfg.model.generator.name)
    implied = {option: item.value for option, item in fit(file, kind, None, forced).implied.items()}
    device = resolve_device(device_name)
    recipe_type = RECIPES.get(cfg.model.recipe)
    spec = recipe_type.standalone_spec(cfg, implied)
    recipe = recipe_type.from_config(recipe_type.standalone_config(cfg), spec, device)
    name = network(recipe)
    load_bare(recipe, name, file, cfg, spec, forced, strict)
    return TrainedModel(file.path, {"step": 0}, cfg, spec, recipe, device)


def load_bare(recipe: Recipe, name: str, file: WeightsFile, cfg: DictConfig, spec: DataSpec, forced: str | None,
              strict: bool) -> None:
    """A bare file into the recipe network ``name``, its options checked first; its average restarts from it."""
    head, _ = node_of(cfg, name)
    node = cfg.model[head]
    net = recipe.networks[name]
    fitted = fit(file, str(node.name), set(net.state_dict()), forced)
    expected = {**{key: value for key, value in node.items()}, "scale": spec.scale}
    for option in fitted.implied:
        if expected.get(option) is None and hasattr(net, option):
            expected[option] = getattr(net, option)  # an option left to the network (blocks: null)
    check_options(fitted, expected, f"model.{head}")
    load_fitted(net, fitted, f"model.{head}" + (f" ({name})" if name != head else ""), str(node.name), strict)
    restart_average(recipe, name)


def restart_average(recipe: Recipe, name: str) -> None:
    if name in recipe.averages:
        recipe.averages[name].reset()


def load_native(recipe: Recipe, name: str, weights: dict[str, torch.Tensor], origin: Path, strict: bool) -> None:
    """Weights saved by gantrain (a checkpoint's network) into the recipe network ``name``."""
    fitted_file = WeightsFile(origin, tensors=dict(weights))
    fitted = fit(fitted_file, type(recipe.networks[name]).__name__, set(recipe.networks[name].state_dict()), NATIVE)
    load_fitted(recipe.networks[name], fitted, name, type(recipe.networks[name]).__name__, strict)


def initialise(recipe: Recipe, cfg: DictConfig, spec: DataSpec) -> None:
    """A new run's starting weights from ``init`` and ``model.NODE.init[_SUFFIX]`` (nothing set: nothing done)."""
    key, forced, strict = init_settings(cfg)
    whole = cfg.get("init")
    if whole:
        file = read_weights(whole, key)
        if file.checkpoint is None:  # a single network's weights: the generators'
            for name in [n for n in recipe.networks if n.split("_")[0] == "generator" and n not in averaged(recipe)]:
                load_bare(recipe, name, file, cfg, spec, forced, strict)
        else:
            load_checkpoint_networks(recipe, file, strict)
    for name in [n for n in recipe.networks if n not in averaged(recipe)]:
        source = init_source(cfg, name)
        if source:
            load_one(recipe, name, read_weights(source, key), cfg, spec, forced, strict)


def init_source(cfg: DictConfig, name: str) -> str | None:
    """``model.NODE.init_SUFFIX`` for the network NODE_SUFFIX, else ``model.NODE.init`` (None: neither is set)."""
    head, _, suffix = name.partition("_")
    node = (cfg.get("model") or {}).get(head)
    if not isinstance(node, (dict, DictConfig)):
        return None
    return (node.get(f"init_{suffix}") if suffix else None) or node.get("init")


def load_one(recipe: Recipe, name: str, file: WeightsFile, cfg: DictConfig, spec: DataSpec, forced: str | None,
             strict: bool) -> None:
    """One network from a bare file, or from a run's network of that name (its average first, as the tasks use)."""
    if file.checkpoint is None:
        load_bare(recipe, name, file, cfg, spec, forced, strict)
        return
    head = name.partition("_")[0]
    networks = file.checkpoint["recipe"]["networks"]
    chosen = next((n for n in (average_name(name), name, average_name(head), head) if n in networks), None)
    if chosen is None:
        raise UserError(f"model.{head}.init: {file.path} holds no {name} (it has: {', '.join(networks)})")
    load_native(recipe, name, networks[chosen], file.path, strict)
    restart_average(recipe, name)
    say(f"{name} initialised from {file.path}'s {chosen} (step {file.checkpoint.get('step')})")


def averaged(recipe: Recipe) -> set[str]:
    """The recipe's average networks (NAME_ema): they follow their network, never loaded on their own."""
    return {average_name(name) for name in recipe.averages}


def load_checkpoint_networks(recipe: Recipe, file: WeightsFile, strict: bool) -> None:
    """``init=RUN``: every network of the recipe that the checkpoint has, averages included."""
    networks = file.checkpoint["recipe"]["networks"]
    found = [name for name in recipe.networks if name in networks and name not in averaged(recipe)]
    if not found:
        raise UserError(f"init={file.path}: it holds networks {', '.join(networks)}, none of which this model has "
                        f"({', '.join(recipe.networks)})")
    for name in found:
        load_native(recipe, name, networks[name], file.path, strict)
        average = average_name(name)
        if name in recipe.averages and average in networks:
            load_native(recipe, average, networks[average], file.path, strict)
        else:
            restart_average(recipe, name)
    kept = [name for name in recipe.networks if name not in found and name not in averaged(recipe)]
    say(f"init: {', '.join(found)} from {file.path} (step {file.checkpoint.get('step')}), step 0, fresh optimizers"
        + (f"; {', '.join(kept)} as initialised" if kept else ""))


def without_init(node: Any) -> Any:
    """A config tree without its init settings (init, init_*): where a run's weights came from is no part of
    its architecture, so a resume never compares them (and runs from before these settings resume)."""
    if isinstance(node, dict):
        return {key: without_init(value) for key, value in node.items()
                if not (key == "init" or str(key).startswith("init_"))}
    return node
