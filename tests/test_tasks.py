"""The tasks package: one module per task with one ``run(cfg)``, found by name (a new module is a new task, with
no edit to cli.py), and what a recipe can do at test time asked through its declared capabilities."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config
from gantrain import tasks
from gantrain.cli import NO_RUN_FOLDER, run_task, sample_arguments
from gantrain.data.source import DataSpec
from gantrain.engine.trainer import build_recipe
from gantrain.errors import UserError
from gantrain.recipes.base import Capabilities
from gantrain.registry import load_builtin_parts
from gantrain.tasks.sample import conditions

load_builtin_parts()
CPU = torch.device("cpu")
TASKS_DIR = Path(tasks.__file__).parent


def composed(*overrides: str):
    return compose_config("device=cpu", *overrides)


def test_every_task_is_one_module_with_a_docstring_and_one_run():
    assert {"train", "sample", "eval", "translate", "interpolate"} <= set(tasks.names())
    for name in tasks.names():
        tree = ast.parse((TASKS_DIR / f"{name}.py").read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), name
        assert "run" in [node.name for node in tree.body if isinstance(node, ast.FunctionDef)], name
        assert callable(importlib.import_module(f"gantrain.tasks.{name}").run)


def test_tasks_ask_capabilities_rather_than_probe_recipes():
    for path in TASKS_DIR.glob("*.py"):
        assert "hasattr(" not in path.read_text(encoding="utf-8"), path.name


def test_a_new_task_module_is_found_dispatched_and_keeps_its_run_folder_setting(tmp_path, monkeypatch):
    (tmp_path / "hello.py").write_text('"""task=hello: says hello."""\n\nWRITES_RUN_FOLDER = False\n\n\n'
                                       "def run(cfg):\n    return f'hello {cfg.n}'\n", encoding="utf-8")
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(tmp_path)])
    tasks._constants.cache_clear()
    try:
        assert "hello" in tasks.names()
        assert sample_arguments(["task=hello", "n=3"]) == ["task=hello", "n=3", *NO_RUN_FOLDER]
        assert run_task(OmegaConf.merge(composed("n=3"), {"task": "hello"})) == "hello 3"
    finally:
        tasks._constants.cache_clear()


def test_which_tasks_write_a_run_folder_and_which_add_data_keys():
    assert sample_arguments(["model=gan"]) == ["model=gan"]  # train (the default) writes its run folder
    assert sample_arguments(["task=sample", "n=4"])[-len(NO_RUN_FOLDER):] == NO_RUN_FOLDER
    assert sample_arguments(["task=eval", "data.val_root=x"])[:2] == ["task=eval", "++data.val_root=x"]
    assert sample_arguments(["task=translate", "data.val_root=x"])[:2] == ["task=translate", "data.val_root=x"]


def test_an_unknown_task_lists_the_modules():
    with pytest.raises(UserError, match="choose from: .*interpolate, .*sample, train, translate"):
        run_task(OmegaConf.merge(composed(), {"task": "smaple"}))


IMAGE = (3, 16, 16)


@pytest.mark.parametrize("preset,spec,expected", [
    ("gan", DataSpec(shape=(2,), bounded=False), Capabilities(generates=True)),
    ("cgan_mlp", DataSpec(shape=(2,), bounded=False, num_classes=4), Capabilities(generates=True, classes=4)),
    ("pix2pix", DataSpec(shape=IMAGE, keys={"source": IMAGE, "target": IMAGE}, epoch_size=4), Capabilities(directions=("AtoB",))),
    ("cyclegan", DataSpec(shape=IMAGE, keys={"a": IMAGE, "b": IMAGE}, epoch_size=4), Capabilities(directions=("AtoB", "BtoA"))),
    ("srresnet", DataSpec(shape=IMAGE, keys={"lr": (3, 8, 8), "hr": IMAGE}, scale=2),
     Capabilities(directions=("x2",), scale=2)),
])
def test_recipes_declare_what_they_can_do_at_test_time(preset, spec, expected):
    tiny = {"gan": ["data=toy2d", "model.generator.hidden=[8]", "model.discriminator.hidden=[8]"],
            "cgan_mlp": ["data=toy2d", "model.generator.hidden=[8]", "model.discriminator.hidden=[8]"],
            "pix2pix": ["model.generator.base_channels=4", "model.generator.max_channels=8",
                        "model.discriminator.base_channels=4"],
            "cyclegan": ["model.generator.base_channels=4", "model.generator.blocks=1",
                         "model.discriminator.base_channels=4"],
            "srresnet": ["model.generator.features=4", "model.generator.blocks=1"]}[preset]
    assert build_recipe(composed(f"model={preset}", *tiny), spec, CPU).capabilities == expected


def test_class_is_passed_only_to_models_that_take_one():
    assert conditions(OmegaConf.create({"class": 3}), Capabilities(generates=True, classes=10)) == {"label": 3}
    assert conditions(OmegaConf.create({"class": None}), Capabilities(generates=True)) == {}
    with pytest.raises(UserError, match="this model is unconditional: class= applies only to conditional models"):
        conditions(OmegaConf.create({"class": 3}), Capabilities(generates=True))
