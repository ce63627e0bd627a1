"""Foreign weight layouts: how the keys of a published weight file map onto one of gantrain's networks.

A layout is registered in ``WEIGHT_LAYOUTS`` from a small module beside the network it fits
(``rrdbnet_layouts.py`` beside ``rrdbnet.py``): its name, the registered network it loads into, how to
recognise it from the file's keys, how to rename (and reshape) the tensors into gantrain's keys, and
which architecture options the file implies, so that a file and a configured network that differ are
named in one line ("the file has 23 RRDB blocks, model.generator.blocks is 16") before any tensor is
copied. The loader (gantrain/engine/weight_files.py) tries the layouts of the target network in turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from gantrain.registry import WEIGHT_LAYOUTS

State = dict[str, torch.Tensor]
NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Implied:
    """An architecture choice a weight file fixes: ``option`` of the network's config node (or ``setting``)."""

    option: str  # the network option, e.g. blocks; or a context value: scale, in_channels, out_channels
    value: Any
    words: str  # what the file has, for messages: "23 RRDB blocks"
    setting: str | None = None  # where a user changes it when not model.NODE.OPTION (e.g. data.scale)


@dataclass(frozen=True)
class WeightLayout:
    """One published key layout of one network."""

    name: str
    network: str  # the registered network (NETWORKS) it loads into
    origin: str  # where such files come from, for the list of recognised layouts
    recognise: Callable[[Collection[str]], bool]
    convert: Callable[[State], State]  # the file's tensors under gantrain's keys
    implied: Callable[[State], list[Implied]] = lambda state: []
    ignored: Callable[[str], bool] = lambda key: False  # file keys with no counterpart and no effect
    notes: tuple[str, ...] = field(default_factory=tuple)  # structural differences worth a log line


def register_layout(layout: WeightLayout) -> WeightLayout:
    WEIGHT_LAYOUTS.register(layout.name)(layout)
    return layout


def layouts_for(network: str) -> list[WeightLayout]:
    """The registered layouts that load into ``network``, in name order."""
    return [WEIGHT_LAYOUTS.get(name) for name in WEIGHT_LAYOUTS if WEIGHT_LAYOUTS.get(name).network == network]


def renamed(state: Mapping[str, torch.Tensor], rules: Iterable[tuple[str, str | Callable[[re.Match], str]]]) -> State:
    """Each key through the first rule (regex, replacement) that matches it whole; unmatched keys are kept as they are
    (the loader then names them as unexpected)."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    out: State = {}
    for key, tensor in state.items():
        for pattern, replacement in compiled:
            match = pattern.fullmatch(key)
            if match:
                key = replacement(match) if callable(replacement) else match.expand(replacement)
                break
        out[key] = tensor
    return out


def indices(keys: Iterable[str], pattern: str) -> list[int]:
    """The distinct integers the first group of ``pattern`` takes over the keys that match it, sorted."""
    compiled = re.compile(pattern)
    return sorted({int(m.group(1)) for m in map(compiled.match, keys) if m})


def has_keys(*keys: str) -> Callable[[Collection[str]], bool]:
    """A ``recognise`` test: the file holds all of these keys."""
    def recognise(found: Collection[str]) -> bool:
        return all(key in found for key in keys)
    return recognise


def is_norm_buffer(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in NORM_BUFFERS
