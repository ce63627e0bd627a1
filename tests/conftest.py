"""Shared test helpers: datasets written in their real on-disk formats, and the CLI in a subprocess."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from gantrain.registry import load_builtin_parts

load_builtin_parts()
if os.environ.get("PYTEST_XDIST_WORKER"):
    # several test processes share the cores: torch's default intra-op threads would spin-wait on each other
    # (a CLI run took 3x longer), so every worker and every gantrain it starts uses one thread
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)  # every registered part, whichever test a (pytest-xdist) worker happens to run first

REPO = Path(__file__).resolve().parent.parent
FAST = ["device=cpu"]  # every CLI test runs on the CPU (not a terminal, so progress comes as log lines)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format MNIST ships in (magic 0x08 = unsigned byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 256, n_test: int = 64, seed: int = 0) -> Path:
    """Fake MNIST in torchvision's layout (ROOT/MNIST/raw/*-idx?-ubyte): a bright bar whose row is the label."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for image, label in zip(images, labels):
            image[2 + 2 * label: 4 + 2 * label, 4:24] = 255
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: on a small CPU, thread hand-offs cost more than the maths (use with pytest.mark.usefixtures)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    return write_mnist(tmp_path / "data")


def run_cli(*args: str, cwd: Path, check: bool = True, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m gantrain ARGS`` the way a user runs ``gantrain``; returns the finished process."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run([sys.executable, "-m", "gantrain", *args], cwd=cwd, env=full_env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"gantrain {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def compose_config(*overrides: str, hydra: bool = False) -> DictConfig:
    """The config ``gantrain OVERRIDES`` runs with, composed in-process (milliseconds, not a subprocess's seconds).

    ``hydra=True`` keeps the ``hydra`` node (launcher, sweeper, run folder) for tests that need it.
    """
    from hydra import compose, initialize_config_dir

    from gantrain.cli import CONFIG_NAME, config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(CONFIG_NAME, overrides=list(overrides), return_hydra_config=hydra)


def tensorboard_events(run: Path) -> Any:
    """What a run wrote to RUN/tensorboard, read back (an EventAccumulator)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return events


def tensorboard_scalars(run: Path) -> dict[str, dict[int, float]]:
    """Every scalar a run logged, as {tag: {step: value}}."""
    events = tensorboard_events(run)
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def flatten_state(tree, prefix: str = "") -> dict:
    """A nested checkpoint tree as {"/path/to/leaf": value}, for comparing two checkpoints leaf by leaf."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flatten_state(value, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in flatten_state(value, f"{prefix}/{i}").items()}
    return {prefix: tree}


def assert_same_training_state(a: dict, b: dict) -> None:
    """Every network and optimizer of two checkpoints is bit-identical."""
    for kind in ("networks", "optimizers"):
        flat_a, flat_b = flatten_state(a["recipe"][kind]), flatten_state(b["recipe"][kind])
        assert flat_a.keys() == flat_b.keys(), kind
        for key, value in flat_a.items():
            same = torch.equal(value, flat_b[key]) if torch.is_tensor(value) else value == flat_b[key]
            assert same, (kind, key)


def train_straight_and_resumed(common: list[str], total: int, split_at: int, cwd: Path):
    """Train ``total`` steps in one go, and ``split_at`` steps + resume to ``total`` in another folder.

    Returns (straight run folder, split run folder, the resumed process, straight checkpoint, split checkpoint).
    """
    straight, split = cwd / "straight", cwd / "split"
    run_cli(*common, f"trainer.max_steps={total}", f"hydra.run.dir={straight}", cwd=cwd)
    run_cli(*common, f"trainer.max_steps={split_at}", f"hydra.run.dir={split}", cwd=cwd)
    resumed = run_cli(f"resume={split}", f"trainer.max_steps={total}", *FAST, cwd=cwd)
    assert "resumed from" in resumed.stderr
    last = "checkpoints/last.pt"
    return (straight, split, resumed, torch.load(straight / last, weights_only=True),
            torch.load(split / last, weights_only=True))
