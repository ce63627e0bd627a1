"""Building a dataset from the ``data`` config group: one home for training, evaluation and translation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gantrain.data.source import DataSource
from gantrain.data.stream import BatchStream
from gantrain.registry import DATASETS

DATA_LOOP_KEYS = ("name", *BatchStream.CONFIG_KEYS)  # data-group keys read by the loop, not passed to the dataset builder


def build_data(data_cfg: Mapping[str, Any]) -> DataSource:
    """The registered dataset ``data.name`` built with the group's other keys as its options."""
    options = {k: v for k, v in data_cfg.items() if k not in DATA_LOOP_KEYS}
    return DATASETS.build(data_cfg["name"], options)
