"""Weight files of any origin, read safely and fitted to one of gantrain's networks.

What a user may hand to ``checkpoint=``, ``init=`` or ``model.generator.init=``: a gantrain run folder or
checkpoint; a plain ``state_dict`` file; a dict wrapping one or several (BasicSR's ``params`` and
``params_ema``, StyleGAN-style ``g_ema``, ``state_dict``, ``model``...: ``model.init_key`` picks, else the
first of ``WRAPPERS`` the file has); keys with data-parallel ``module.`` prefixes; ``.safetensors`` files.
Only tensors are read (``weights_only`` / safetensors): a file that needs code to unpickle is refused.

A bare file's keys are matched to the target network: its own keys (a ``state_dict`` saved from
gantrain), else the first registered ``WEIGHT_LAYOUTS`` entry of that network that recognises them
(``model.init_format`` forces one). Before a tensor is copied, the architecture options the file implies
are compared with the configured ones, and every shape with the network's: a difference is one line that
names the option (or the key and both shapes) to change.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gantrain.engine.checkpoint import FORMAT_VERSION, resolve_checkpoint, unreadable_reason
from gantrain.errors import UserError
from gantrain.nets.weight_layout import State, WeightLayout, layouts_for
from gantrain.registry import WEIGHT_LAYOUTS, unknown_choice

# wrapper keys tried in this order when model.init_key is not set: averaged weights first (what the publishers
# recommend for inference and fine-tuning), then the raw ones
WRAPPERS = ("params_ema", "g_ema", "ema", "params", "state_dict", "model", "generator", "netG", "net_g", "weights")
NATIVE = "gantrain"  # the format of a state_dict saved from gantrain's own network
SHOWN = 3  # keys named in a message before "... (N in all)"


@dataclass
class WeightsFile:
    """What a path holds: a gantrain checkpoint, or one network's tensors."""

    path: Path
    checkpoint: dict[str, Any] | None = None  # a gantrain checkpoint's payload
    tensors: State = field(default_factory=dict)  # a bare file's tensors, unwrapped, without module. prefixes
    key: str | None = None  # the wrapper key they came from


def say(message: str) -> None:
    """One line on stderr: the tasks that read weights run without a log file."""
    print(f"gantrain: {message}", file=sys.stderr)


def is_tensor_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(torch.is_tensor(v) for v in value.values())


def _load_file(path: Path) -> Any:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(f"{path} is a .safetensors file: install its reader with "
                            "'pip install safetensors' (or 'pip install gantrain[export]')") from None
        try:
            return load_file(str(path))
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise UserError(f"{path} is not a readable safetensors file: {str(error).splitlines()[0][:160]}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError,
            ImportError, IndexError, KeyError, TypeError) as error:
        raise UserError(f"{path} is not a readable checkpoint or weights file: "
                        f"{unreadable_reason(path, error)}") from None


def unwrap(payload: Any, path: Path, key: str | None) -> tuple[State, str | None]:
    """The tensors of a plain state_dict, or of the wrapper entry ``key`` (else the first of WRAPPERS it has)."""
    if not isinstance(payload, Mapping):
        raise UserError(f"{path} is not a weights file: it holds a {type(payload).__name__}, not a dict of tensors")
    held = [name for name, value in payload.items() if is_tensor_dict(value)]
    if key is not None:
        if key not in held:
            raise UserError(unknown_choice(f"model.init_key of {path}", key, held) if held else
                            f"model.init_key={key}: {path} is a plain state_dict (no wrapper keys); drop init_key")
        return dict(payload[key]), key
    if is_tensor_dict(payload):
        return dict(payload), None
    chosen = next((name for name in WRAPPERS if name in held), held[0] if len(held) == 1 else None)
    if chosen is None:
        if not held:
            raise UserError(f"{path} is not a checkpoint or weights file: it holds no tensors "
                            f"(keys: {', '.join(map(str, list(payload)[:6]))})")
        raise UserError(f"{path} holds several sets of weights ({', '.join(held)}); choose one with model.init_key=NAME")
    others = [name for name in held if name != chosen]
    say(f"reading the '{chosen}' weights of {path}" + (f" (it also holds: {', '.join(others)}; "
                                                         "model.init_key=NAME picks another)" if others else ""))
    return dict(payload[chosen]), chosen


def strip_prefix(tensors: State) -> State:
    """Data-parallel saves prefix every key with ``module.``."""
    if tensors and all(key.startswith("module.") for key in tensors):
        return {key[len("module."):]: value for key, value in tensors.items()}
    return tensors


def read_weights(target: str | Path, key: str | None = None) -> WeightsFile:
    """A run folder or a gantrain checkpoint (``checkpoint`` set), or a bare weights file (``tensors`` set)."""
    path = Path(str(target)).expanduser()
    if path.is_dir():
        found, payload = resolve_checkpoint(path)
        return WeightsFile(found, checkpoint=payload)
    if not path.is_file():
        raise UserError(f"{path} does not exist (expected a run folder, a checkpoint or a weights file)")
    payload = _load_file(path)
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT_VERSION and "recipe" in payload:
        return WeightsFile(path, checkpoint=dict(payload))
    tensors, used = unwrap(payload, path, key)
    return WeightsFile(path, tensors=strip_prefix(tensors), key=used)


def recognised(network: str) -> str:
    """The formats a file for ``network`` may have, for messages."""
    return "; ".join([f"{NATIVE} (this network's own keys)"] +
                     [f"{layout.name} ({layout.origin})" for layout in layouts_for(network)])


def match_layout(tensors: State, network: str, own_keys: set[str] | None, forced: str | None,
                 path: Path) -> WeightLayout | None:
    """The layout of a bare file for ``network`` (None: gantrain's own keys)."""
    if forced:
        if forced == NATIVE:
            return None
        layout = WEIGHT_LAYOUTS.get(forced)
        if layout.network != network:
            raise UserError(f"model.init_format={forced} is a layout of {layout.network}, not of {network}; "
                            f"for {network} choose from: {recognised(network)}")
        return layout
    if own_keys is not None and set(tensors) <= own_keys and len(tensors) * 2 >= len(own_keys):
        return None
    for layout in layouts_for(network):
        if layout.recognise(set(tensors)):
            return layout
    if own_keys is None:  # no network to compare with yet: its own keys are the remaining guess
        return None
    sample = ", ".join(list(tensors)[:SHOWN])
    raise UserError(f"{path}: unknown weight layout for {network} (keys such as {sample}); recognised: "
                    f"{recognised(network)}; force one with model.init_format=NAME")


def implied_options(converted: State, network: str, layout: WeightLayout | None) -> dict[str, Any]:
    """{option: (value, words, setting)} of what the file fixes (a native file: through the network's first layout)."""
    chosen = layout or next(iter(layouts_for(network)), None)
    return {item.option: item for item in (chosen.implied(converted) if chosen else [])}


def listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > SHOWN else "")


@dataclass
class Fitted:
    """A bare file made ready for one network: its tensors under the network's keys."""

    path: Path
    layout: str  # the format's name
    tensors: State
    implied: dict[str, Any]  # option -> Implied


def fit(file: WeightsFile, network: str, own_keys: set[str] | None = None, forced: str | None = None) -> Fitted:
    """``file``'s tensors renamed for ``network`` (a registered name)."""
    layout = match_layout(file.tensors, network, own_keys, forced, file.path)
    converted = layout.convert(file.tensors) if layout else dict(file.tensors)
    if layout is not None and own_keys is not None:
        converted = {k: v for k, v in converted.items() if k in own_keys or not layout.ignored(k)}
    return Fitted(file.path, layout.name if layout else NATIVE, converted, implied_options(converted, network, layout))


def check_options(fitted: Fitted, expected: Mapping[str, Any], node_path: str) -> None:
    """The first architecture choice of the file that differs from the configured one, as one line."""
    for option, item in fitted.implied.items():
        value = expected.get(option)
        if value is None or value == item.value:
            continue
        setting = item.setting or f"{node_path}.{option}"
        raise UserError(f"{fitted.path} does not fit {node_path}: the file has {item.words}, {setting} is {value}; "
                        f"set {setting}={item.value}")


def load_fitted(net: nn.Module, fitted: Fitted, node_path: str, network: str, strict: bool) -> None:
    """Copy the tensors into ``net``; differences are one line (strict) or a list of what was left out."""
    own = net.state_dict()
    wrong = [key for key, tensor in fitted.tensors.items() if key in own and tensor.shape != own[key].shape]
    if wrong and strict:
        key = wrong[0]
        raise UserError(f"{fitted.path} does not fit {node_path} ({network}): {key} is {list(fitted.tensors[key].shape)} "
                        f"in the file, {list(own[key].shape)} in the network; change the {node_path} options "
                        "(or model.init_strict=false loads only what fits)")
    missing = [key for key in own if key not in fitted.tensors]
    unexpected = [key for key in fitted.tensors if key not in own]
    if strict and (missing or unexpected):
        parts = ([f"missing {listed(missing)}"] if missing else []) + \
                ([f"unexpected {listed(unexpected)}"] if unexpected else [])
        raise UserError(f"{fitted.path} ({fitted.layout} format) does not fit {node_path} ({network}): "
                        f"{'; '.join(parts)}; model.init_strict=false loads what matches")
    usable = {key: tensor for key, tensor in fitted.tensors.items() if key in own and key not in wrong}
    net.load_state_dict(usable, strict=False)
    say(f"{node_path}: loaded {len(usable)} tensors from {fitted.path} ({fitted.layout} format)")
    left = missing + [f"{key} (shape)" for key in wrong]
    if left or unexpected:
        say(f"{node_path}: not loaded (kept as initialised): {listed(left) or 'none'}; "
            f"in the file but unused: {listed(unexpected) or 'none'}")
