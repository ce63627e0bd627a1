"""task=export (gantrain/tasks/export.py): a generator as a TorchScript or ONNX file that runs without gantrain.

Round trips for a noise-to-image model (a DCGAN run with a weight average), a translation model and a
super-resolution model (both from published weight files, as a user would export them), on a 37x53 input:
the TorchScript files run in a fresh interpreter where gantrain cannot be imported and match
task=sample / task=translate to 1e-5; the ONNX files match under onnxruntime to 1e-4.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from reference_archs import ReferenceResnetGenerator, ReferenceRRDBNet, esrgan_sequential_keys, randomised

from gantrain.cli import config_dir
from gantrain.engine.restore import load_trained
from gantrain.tasks.sample import run as sample
from gantrain.engine.trainer import Trainer
from gantrain.engine.tiling import translate_images
from gantrain.errors import UserError
from gantrain.registry import load_builtin_parts
from gantrain.tasks.export import metadata_of, run

load_builtin_parts()
TINY_DCGAN = ["model=dcgan", "model.generator.base_channels=8", "model.discriminator.base_channels=8",
              "trainer.batch_size=8", "trainer.sample_every=100", "trainer.log_every=100", "ema.decay=0.5", *FAST]
CYCLEGAN = ["model=cyclegan", "checkpoint=latest_net_G_A.pth", "model.generator.base_channels=4",
            "model.generator.blocks=2", *FAST]
ESRGAN = ["model=esrgan", "checkpoint=RRDB_ESRGAN_x4.pth", "model.generator.features=8", "model.generator.growth=4",
          "model.generator.blocks=2", *FAST]
# runs the exported files with gantrain made unimportable: only torch and the files themselves
WITHOUT_GANTRAIN = """
import json, sys, torch
sys.modules["gantrain"] = None  # import gantrain now fails
cases = torch.load(sys.argv[1])
outputs = {}
for name, (path, inputs) in cases.items():
    extra = {"gantrain.json": ""}
    module = torch.jit.load(path, _extra_files=extra)
    outputs[name] = (module(*inputs), json.loads(extra["gantrain.json"]))
torch.save(outputs, sys.argv[2])
"""


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("gantrain", list(overrides))


def close(a: torch.Tensor, b: torch.Tensor, tolerance: float) -> bool:
    return a.shape == b.shape and bool((a - b).abs().max() <= tolerance)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DCGAN run with a weight average and two published-format files, in one folder."""
    folder = tmp_path_factory.mktemp("export")
    run_dir = folder / "dcgan"
    Trainer(config(*TINY_DCGAN, "trainer.max_steps=2", f"hydra.run.dir={run_dir}"), run_dir).fit()
    torch.save(randomised(ReferenceResnetGenerator(3, 3, 4, 2)).state_dict(), folder / "latest_net_G_A.pth")
    torch.save(esrgan_sequential_keys(randomised(ReferenceRRDBNet(3, 8, 2, 4, basicsr=False)).state_dict(), 2),
               folder / "RRDB_ESRGAN_x4.pth")
    return folder


def test_round_trips_without_gantrain(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(models)
    image = torch.rand(1, 3, 37, 53) * 2 - 1
    noise = torch.randn(4, 100, generator=torch.Generator().manual_seed(0))  # what task=sample seed=0 draws
    sample(config("task=sample", "checkpoint=dcgan", "n=4", "out=samples.npz", *TINY_DCGAN))
    expected = {"dcgan": torch.from_numpy(np.load("samples.npz")["samples"])}
    for name, args in (("cyclegan", [*CYCLEGAN, "direction=BtoA"]), ("esrgan", ESRGAN)):
        cfg = config("task=translate", *args)
        model = load_trained(cfg.checkpoint, "cpu", "translate", cfg,
                             lambda recipe: recipe.test_network(cfg.get("direction")))
        direction = model.recipe.direction(cfg.get("direction")).name
        info = model.recipe.translation_info(direction)
        expected[name] = translate_images(lambda x: model.recipe.translate(x, direction), image, info, None, 0)

    cases = {"dcgan": ("dcgan.pt", (noise,)), "cyclegan": ("cyclegan.pt", (image,)), "esrgan": ("esrgan.pt", (image,))}
    run(config("task=export", "checkpoint=dcgan", "out=dcgan.pt", *TINY_DCGAN))
    run(config("task=export", *CYCLEGAN, "network=generator_ba", "out=cyclegan.pt"))  # as direction=BtoA
    run(config("task=export", *ESRGAN, "out=esrgan.pt"))
    torch.save(cases, "cases.pt")
    subprocess.run([sys.executable, "-c", WITHOUT_GANTRAIN, "cases.pt", "outputs.pt"], check=True, cwd=models,
                   env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(torch.__file__).parents[1])})
    outputs = torch.load("outputs.pt", weights_only=False)
    for name, (output, metadata) in outputs.items():
        assert close(output, expected[name], 1e-5), name
        assert metadata["gantrain_version"] and metadata["value_range"] == "[-1, 1]"
    assert outputs["esrgan"][1]["scale"] == 4 and outputs["esrgan"][0].shape[-2:] == (37 * 4, 53 * 4)
    assert outputs["cyclegan"][1]["direction"] == "BtoA" and outputs["cyclegan"][1]["multiple"] == 4
    assert outputs["dcgan"][1]["weights"] == "average" and outputs["dcgan"][1]["latent_dim"] == 100
    assert metadata_of("esrgan.pt")["kind"] == "image_to_image"

    onnxruntime = pytest.importorskip("onnxruntime")
    for name, (_, inputs) in cases.items():
        args = {"dcgan": ["checkpoint=dcgan", *TINY_DCGAN], "cyclegan": [*CYCLEGAN, "direction=BtoA"],
                "esrgan": ESRGAN}[name]
        run(config("task=export", *args, "format=onnx", f"out={name}.onnx"))
        session = onnxruntime.InferenceSession(f"{name}.onnx")
        feed = {spec.name: tensor.numpy() for spec, tensor in zip(session.get_inputs(), inputs)}
        assert close(torch.from_numpy(session.run(None, feed)[0]), expected[name], 1e-4), name
        meta = session.get_modelmeta().custom_metadata_map
        assert meta["kind"] in ("noise_to_image", "image_to_image") and meta["value_range"] == "[-1, 1]"


def test_raw_weights_and_bad_input(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(models)
    run(config("task=export", "checkpoint=dcgan", "out=raw.pt", "average=false", *TINY_DCGAN))
    assert metadata_of("raw.pt")["weights"] == "raw"
    with pytest.raises(UserError, match="direction=AtoB applies to models with two generators"):
        run(config("task=export", "checkpoint=dcgan", "out=x.pt", "direction=AtoB", *TINY_DCGAN))
    with pytest.raises(UserError, match="network=discriminator: task=export writes a generator; this model's are: "
                                        "generator"):
        run(config("task=export", "checkpoint=dcgan", "out=x.pt", "network=discriminator", *TINY_DCGAN))
    with pytest.raises(UserError, match="unknown export format 'tflite'; choose from: torchscript, onnx"):
        run(config("task=export", "checkpoint=dcgan", "out=x.pt", "format=tflite", *TINY_DCGAN))
    with pytest.raises(UserError, match="format=torchscript writes a .pt file: set out=NAME.pt"):
        run(config("task=export", "checkpoint=dcgan", "out=x.onnx", *TINY_DCGAN))
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(UserError, match=r"format=onnx needs the onnx package: pip install 'gantrain\[export\]'"):
        run(config("task=export", "checkpoint=dcgan", "out=x.onnx", "format=onnx", *TINY_DCGAN))
    saved = torch.load(models / "dcgan" / "checkpoints" / "last.pt", weights_only=True)
    for name in ("generator", "generator_ema"):
        del saved["recipe"]["networks"][name]
    torch.save(saved, "no_generator.pt")
    with pytest.raises(UserError, match="the checkpoint has no network 'generator'"):
        run(config("task=export", "checkpoint=no_generator.pt", "out=x.pt", *TINY_DCGAN))
