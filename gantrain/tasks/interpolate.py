"""``task=interpolate``: ESRGAN's network interpolation between two trained generators.

theta = (1 - alpha) theta_a + alpha theta_b for every weight: alpha 0 gives A (say the PSNR-oriented
model), 1 gives B (the GAN one), values between trade fidelity for texture without retraining (Wang et
al. 2018, section 3.4). The result is B's checkpoint with the blended generator, so translate and eval
take it like any other; both checkpoints must hold the same generator architecture for the same data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from gantrain.data.source import DataSpec
from gantrain.engine.checkpoint import FORMAT_VERSION, resolve_checkpoint, serialize, write_atomic
from gantrain.errors import UserError
from gantrain.options import as_float
from gantrain.recipes.ema import average_name, averaged_or_live

WRITES_RUN_FOLDER = False  # writes only what out= names
GENERATOR = "generator"


def generator_of(saved: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's generator weights (its average when the run kept one)."""
    networks = saved["recipe"]["networks"]
    weights = averaged_or_live(networks, GENERATOR)
    if weights is None:
        raise UserError(f"{path} holds no generator to interpolate (it has: {', '.join(networks)})")
    return weights


def architecture(saved: dict[str, Any]) -> dict[str, Any]:
    node = dict(saved["config"]["model"][GENERATOR])
    node.pop("init", None)  # where the weights started from is not part of the architecture
    return node


def check_compatible(a: dict[str, Any], b: dict[str, Any], path_a: Path, path_b: Path) -> None:
    if architecture(a) != architecture(b):
        raise UserError(f"cannot interpolate: {path_a} has generator {architecture(a)}, {path_b} has "
                        f"{architecture(b)}; both must be the same network")
    spec_a, spec_b = DataSpec.from_dict(a["data_spec"]), DataSpec.from_dict(b["data_spec"])
    if not spec_a.same_shape(spec_b):
        raise UserError(f"cannot interpolate: {path_a} was trained on {spec_a.describe()} (x{spec_a.scale}), "
                        f"{path_b} on {spec_b.describe()} (x{spec_b.scale})")


def blend(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) a + alpha b for floating-point tensors; counters (BatchNorm's batches seen) are B's."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        differing = next((k for k in sorted(a.keys() | b.keys()) if k not in a or k not in b or a[k].shape != b[k].shape))
        raise UserError(f"cannot interpolate: the generators differ at {differing}")
    return {key: torch.lerp(a[key].double(), b[key].double(), alpha).to(b[key].dtype) if b[key].is_floating_point()
            else b[key].clone() for key in b}


def run(cfg: DictConfig) -> Path:
    """``gantrain task=interpolate a=RUN_A b=RUN_B alpha=0.8 out=interp.pt``."""
    if not cfg.get("a") or not cfg.get("b"):
        raise UserError("task=interpolate needs a=RUN_OR_CHECKPOINT and b=RUN_OR_CHECKPOINT (alpha=0: a, 1: b)")
    alpha = as_float("alpha", cfg.get("alpha"), minimum=0)
    if alpha > 1:
        raise UserError(f"alpha must be in [0, 1] (0: a, 1: b), got {alpha:g}")
    out = Path(str(cfg.out)).expanduser()
    if out.suffix != ".pt":
        raise UserError(f"out={cfg.out}: task=interpolate writes a checkpoint; give a file ending in .pt")
    path_a, a = resolve_checkpoint(cfg.a)
    path_b, b = resolve_checkpoint(cfg.b)
    check_compatible(a, b, path_a, path_b)
    blended = blend(generator_of(a, path_a), generator_of(b, path_b), alpha)
    networks = {name: weights for name, weights in b["recipe"]["networks"].items() if name != average_name(GENERATOR)}
    networks[GENERATOR] = blended
    averages = {name: n for name, n in b["recipe"].get("averages", {}).items() if name != GENERATOR}
    payload = {**b, "recipe": {**b["recipe"], "networks": networks, "averages": averages},
               "interpolated": {"a": str(path_a), "b": str(path_b), "alpha": alpha}}
    payload.pop("format", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(serialize({"format": FORMAT_VERSION, **payload}), out)
    print(f"wrote {out}: generator = {1 - alpha:g} x {path_a} + {alpha:g} x {path_b}")
    return out
