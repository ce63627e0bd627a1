"""Building a dataset from the ``data`` config group: one home for training, evaluation and translation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gantrain.data.source import DataSource
from gantrain.data.stream import BatchStream
from gantrain.registry import DATASETS

# data-group keys read by the loop, or (kind: images | points) by the model presets, not passed to the dataset builder;
# "samples" is kind's name in checkpoints written before the rename
DATA_LOOP_KEYS = ("name", "kind", "samples", *BatchStream.CONFIG_KEYS)


def build_data(data_cfg: Mapping[str, Any], held_out_only: bool = False) -> DataSource:
    """The registered dataset ``data.name`` built with the group's other keys as its options.

    ``held_out_only`` (task=eval): a builder that asks for it may skip decoding the training images (a
    super-resolution training folder can hold gigabytes), as long as its spec and held-out splits are whole.
    """
    options = {k: v for k, v in data_cfg.items() if k not in DATA_LOOP_KEYS}
    return DATASETS.build(data_cfg["name"], options, held_out_only=held_out_only)
