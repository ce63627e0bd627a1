"""``task=export``: a trained (or published) generator as one file that runs without gantrain.

``gantrain task=export checkpoint=RUN_OR_FILE format=torchscript|onnx out=FILE [direction=|network=] [average=false]``

The model comes from a run, a checkpoint or a bare weights file (with ``model=PRESET``), exactly as
``task=translate``/``task=sample`` would run it: the generator's weight average when the run kept one
(``average=false``: the raw weights), in eval mode. The recipe says what its test-time graph is
(gantrain/engine/export_graph.py): noise-to-image models take z (and labels) and return images in [-1, 1];
image-to-image models take images in [-1, 1] of any height and width (dynamic axes) and pad to their
network's multiple inside the graph. What a caller must know travels in the file: TorchScript's
``gantrain.json`` extra file, ONNX's ``metadata_props`` (scale, channels, value range, direction, version...).
ONNX needs the optional extra ``pip install 'gantrain[export]'`` (onnx; onnxruntime to run it).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from gantrain import __version__
from gantrain.engine.checkpoint import write_atomic
from gantrain.engine.export_graph import ExportGraph
from gantrain.engine.restore import load_trained
from gantrain.errors import UserError
from gantrain.recipes.base import Recipe
from gantrain.registry import unknown_choice

WRITES_RUN_FOLDER = False  # writes only what out= names

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
METADATA_FILE = "gantrain.json"  # TorchScript: torch.jit.load(path, _extra_files={"gantrain.json": ""})
ONNX_OPSET = 17


def run(cfg: DictConfig) -> Path:
    """Write the exported generator to ``out``; returns its path."""
    kind = str(cfg.get("format") or "torchscript")
    if kind not in FORMATS:
        raise UserError(unknown_choice("export format", kind, list(FORMATS)))
    if kind == "onnx":
        require_onnx()
    out = Path(str(cfg.out)).expanduser()
    if out.suffix != FORMATS[kind]:
        raise UserError(f"task=export format={kind} writes a {FORMATS[kind]} file: set out=NAME{FORMATS[kind]}")
    direction, network = cfg.get("direction"), cfg.get("network")
    model = load_trained(cfg.get("checkpoint"), "cpu", "export", cfg,
                         lambda recipe: network or recipe.test_network(direction))
    recipe = model.recipe
    if network:
        direction = direction_of(recipe, str(network), direction)
    averaged = bool(cfg.get("average", True)) and bool(recipe.averages)
    with torch.no_grad(), (recipe.averaged_weights() if averaged else _nothing()):
        graph = recipe.export_graph(direction)
        graph.metadata.update({"gantrain_version": __version__, "model": str(model.config.model.name),
                               "weights": "average" if averaged else "raw", "source": str(model.path),
                               "step": model.step})
        data = to_torchscript(graph) if kind == "torchscript" else to_onnx(graph)
    write_atomic(data, out)
    print(f"exported {graph.metadata['kind'].replace('_', '-')} generator ({graph.metadata['weights']} weights) of "
          f"{model.path} to {out} ({kind}; inputs: {', '.join(graph.input_names)})")
    return out


def direction_of(recipe: Recipe, network: str, direction: str | None) -> str | None:
    """``network=NAME``: the direction whose generator it is (CycleGAN's generator_ba: BtoA)."""
    chosen = [name for name in recipe.test_directions() if recipe.test_network(name) == network]
    if not chosen or (direction is not None and direction not in chosen):
        generators = sorted({recipe.test_network(name) for name in recipe.test_directions()})
        raise UserError(f"network={network}: task=export writes a generator; this model's are: {', '.join(generators)}")
    return chosen[0]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("format=onnx needs the onnx package: pip install 'gantrain[export]' (onnx, onnxruntime)") \
            from None


def traced(graph: ExportGraph) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer notes
        return torch.jit.trace(graph.module, graph.inputs, check_trace=False)


def to_torchscript(graph: ExportGraph) -> bytes:
    module = traced(graph)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(module, str(path), _extra_files={METADATA_FILE: json.dumps(graph.metadata)})
        return path.read_bytes()


def to_onnx(graph: ExportGraph) -> bytes:
    import onnx

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "model.onnx"
        torch.onnx.export(graph.module, graph.inputs, str(path), input_names=graph.input_names,
                          output_names=["output"], dynamic_axes=graph.dynamic_axes, opset_version=ONNX_OPSET,
                          dynamo=False)
        model = onnx.load(str(path))
    for key, value in graph.metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    return model.SerializeToString()


def metadata_of(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported TorchScript file (what a caller reads before running it)."""
    extra = {METADATA_FILE: ""}
    torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra[METADATA_FILE])
