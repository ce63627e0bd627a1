"""Speed options of the shared loop: mixed precision, channels-last, torch.compile, cuDNN and TF32 flags.

They act on any recipe without its knowing: the loop runs ``train_step`` under ``Precision.autocast``,
``Recipe.apply_update`` backpropagates and steps through ``Precision`` with autocast off, and the
networks that have an optimizer are compiled in place (state-dict keys unchanged, so checkpoints of
compiled and eager runs are interchangeable).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from gantrain.errors import UserError
from gantrain.registry import unknown_choice

#: trainer.precision -> the autocast dtype (None: plain float32)
PRECISIONS: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def precision_name(value: Any) -> str:
    """``trainer.precision`` as one of PRECISIONS' keys (YAML gives 32 and 16 as integers)."""
    name = str(value).strip().lower()
    name = {"fp32": "32", "float32": "32", "fp16": "16", "float16": "16", "16-mixed": "16",
            "bfloat16": "bf16", "bf16-mixed": "bf16"}.get(name, name)
    if name not in PRECISIONS:
        raise UserError(unknown_choice("trainer.precision", value, list(PRECISIONS)))
    return name


class Precision:
    """Autocast for the forward passes and, for float16, one GradScaler per optimizer.

    float16 overflows where float32 does not, so its gradients are scaled up for the backward pass
    and unscaled before anything reads them (the non-finite check, clipping, the optimizer). A step
    whose unscaled gradients overflow is skipped and the scale lowered: the GradScaler's normal
    working, not a divergence. Gradient penalties differentiate the discriminator's raw scores, never a
    scaled loss, so they need no unscaling (gantrain/regularizers/base.py).
    """

    def __init__(self, name: Any = "32", device: torch.device | str = "cpu") -> None:
        self.name = precision_name(name)
        self.device_type = torch.device(device).type
        self.dtype = PRECISIONS[self.name]
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    @property
    def scaled(self) -> bool:
        return self.name == "16"

    def autocast(self) -> AbstractContextManager:
        """Where forward passes run in the reduced dtype (a no-op in float32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def full_precision(self) -> AbstractContextManager:
        """Autocast switched off: backward passes and optimizer steps run outside it."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, enabled=False)

    def _scaler(self, network: str) -> torch.amp.GradScaler:
        if network not in self.scalers:
            self.scalers[network] = torch.amp.GradScaler(self.device_type)
        return self.scalers[network]

    def backward(self, network: str, loss: torch.Tensor) -> None:
        (self._scaler(network).scale(loss) if self.scaled else loss).backward()

    def unscale(self, network: str, optimizer: torch.optim.Optimizer) -> None:
        """Turn the gradients back into true values before they are checked or used."""
        if self.scaled:
            self._scaler(network).unscale_(optimizer)

    def step(self, network: str, optimizer: torch.optim.Optimizer) -> None:
        """Step the optimizer (the GradScaler skips it if the gradients overflowed) and adapt the scale.

        Autocast keeps reduced-precision copies of the weights until its outermost block ends; the loop's
        block spans a whole training step of several updates, so the copies are dropped after each update.
        """
        if self.scaled:
            scaler = self._scaler(network)
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if self.dtype is not None:
            torch.clear_autocast_cache()

    def scales(self) -> dict[str, float]:
        """The current loss scale of each network (float16 only), for TensorBoard."""
        return {f"amp/scale_{name}": float(scaler.get_scale()) for name, scaler in self.scalers.items()}

    def state_dict(self) -> dict[str, Any]:
        return {name: scaler.state_dict() for name, scaler in self.scalers.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not self.scaled:
            return  # a float16 checkpoint resumed in bf16/32: the scales have no meaning there
        for name, scaler_state in state.items():
            if scaler_state:
                self._scaler(name).load_state_dict(scaler_state)


def set_cuda_flags(device: torch.device, cudnn_benchmark: bool, tf32: bool) -> None:
    """cuDNN's autotuner (fixed shapes: pick the fastest convolution once) and TF32 matmuls on Ampere+.

    Both trade bitwise reproducibility for speed; they do nothing off CUDA.
    """
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)


def to_channels_last(networks: Iterable[nn.Module]) -> None:
    """NHWC weights: faster convolutions on tensor cores (and with oneDNN on recent CPUs)."""
    for net in networks:
        net.to(memory_format=torch.channels_last)


def channels_last_batch(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in batch.items()}


def compile_networks(networks: Mapping[str, nn.Module], names: Iterable[str], mode: str, backend: str) -> None:
    """Compile the forward passes of ``names`` in place (``nn.Module.compile``).

    Double backward through a compiled graph is not supported by PyTorch, so gradient penalties run
    their discriminator forward eagerly (``torch.compiler.set_stance("force_eager")`` in
    ``input_gradient_norms``); everything else uses the compiled forward.
    """
    if mode not in COMPILE_MODES:
        raise UserError(unknown_choice("trainer.compile_mode", mode, list(COMPILE_MODES)))
    for name in names:
        networks[name].compile(mode=mode, backend=backend)
