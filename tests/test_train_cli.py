"""The real ``gantrain`` command end to end: runs on test-written MNIST files, outputs, resume, sampling, errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import (FAST, REPO, assert_same_training_state, compose_config, run_cli, tensorboard_events,
                      tensorboard_scalars, train_straight_and_resumed)

TINY = {"gan": ["model.generator.hidden=[32]", "model.discriminator.hidden=[32]"],
        "dcgan": ["model.generator.base_channels=8", "model.discriminator.base_channels=8"]}


@pytest.mark.parametrize("model", ["gan", "dcgan"])
def test_train_on_mnist_idx_files_writes_checkpoint_events_and_grid(model, mnist_root, tmp_path):
    run = tmp_path / "run"
    run_cli(f"model={model}", "data=mnist", f"data.root={mnist_root}", "data.download=false",
            "trainer.max_steps=4", "trainer.batch_size=16", "trainer.log_every=2", "trainer.sample_every=2",
            "trainer.n_samples=16", f"hydra.run.dir={run}", *TINY[model], *FAST, cwd=tmp_path)

    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == 4
    assert set(saved["recipe"]["networks"]) == {"generator", "discriminator"}
    assert set(saved["recipe"]["optimizers"]) == {"generator", "discriminator"}
    assert saved["config"]["model"]["name"] == model
    assert saved["data_spec"]["shape"] == [1, 28, 28]
    assert saved["preview"]["noise"].shape[0] == 16
    assert {"torch", "python", "numpy", "cuda"} <= set(saved["rng"])
    assert saved["data"] == {"epoch": 0, "samples_taken": 4 * 16}
    assert saved["gantrain_version"]

    scalars = tensorboard_scalars(run)
    assert {"loss/d", "loss/g", "D(x)", "D(G(z))", "lr/generator", "lr/discriminator"} <= set(scalars)
    assert sorted(scalars["loss/d"]) == [1, 2, 4]
    assert "samples" in tensorboard_events(run).Tags()["images"]

    grid = Image.open(run / "samples" / "step_0000004.png")
    assert grid.size == (4 * (28 + 2) + 2, 4 * (28 + 2) + 2)  # 4x4 images of 28px with make_grid's 2px padding
    assert (run / ".hydra" / "config.yaml").is_file()


def test_quick_start_defaults_train_offline(tmp_path):
    """Plain ``gantrain`` (digits shipped in scikit-learn) trains with no download."""
    run = tmp_path / "run"
    result = run_cli("trainer.max_steps=3", "trainer.log_every=1", f"hydra.run.dir={run}", *TINY["dcgan"], *FAST,
                     cwd=tmp_path)
    assert "step 3/3" in result.stderr
    assert (run / "checkpoints" / "last.pt").is_file()
    assert Image.open(run / "samples" / "step_0000003.png").size == (8 * 18 + 2, 8 * 18 + 2)


def test_resume_gives_the_same_weights_and_losses_as_an_uninterrupted_run(mnist_root, tmp_path):
    common = ["model=dcgan", "data=mnist", f"data.root={mnist_root}", "data.download=false", "trainer.batch_size=32",
              "trainer.log_every=1", "trainer.checkpoint_every=3", "trainer.sample_every=100", *TINY["dcgan"], *FAST]
    # 256 samples / 32 = 8 batches per epoch: 12 steps cross an epoch boundary after the resume
    straight, split, _, a, b = train_straight_and_resumed(common, total=12, split_at=6, cwd=tmp_path)
    assert a["step"] == b["step"] == 12 and a["data"] == b["data"]
    assert_same_training_state(a, b)
    losses_a, losses_b = tensorboard_scalars(straight)["loss/g"], tensorboard_scalars(split)["loss/g"]
    assert sorted(losses_b) == list(range(1, 13))
    assert losses_a == losses_b
    assert sorted(p.name for p in (split / "checkpoints").iterdir()) == [
        "last.pt", "step_0000006.pt", "step_0000009.pt", "step_0000012.pt"]  # keep_last=3


def test_resume_refuses_a_different_architecture(tmp_path):
    run = tmp_path / "run"
    run_cli("model=gan", "trainer.max_steps=2", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    result = run_cli(f"resume={run}", "model.generator.hidden=[64]", "trainer.max_steps=4", *FAST,
                     cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "cannot resume" in result.stderr and "model.generator.hidden" in result.stderr
    assert "Traceback" not in result.stderr


def test_keep_last_prunes_periodic_checkpoints(tmp_path):
    run = tmp_path / "run"
    run_cli("model=gan", "trainer.max_steps=5", "trainer.checkpoint_every=1", "trainer.keep_last=2",
            f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step_0000004.pt", "step_0000005.pt"]


def test_epoch_and_time_budgets_stop_the_run(tmp_path):
    run = tmp_path / "epochs"
    # 1797 digits / 600 per batch = 2 full batches per epoch
    run_cli("model=gan", "trainer.max_steps=null", "trainer.max_epochs=2", "trainer.batch_size=600",
            f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    run = tmp_path / "time"
    run_cli("model=gan", "trainer.max_steps=null", "trainer.max_time=00:00:01", f"hydra.run.dir={run}", *FAST,
            cwd=tmp_path)
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] > 0 and 1.0 <= saved["elapsed"] < 5.0


def test_toy2d_logs_a_scatter_plot(tmp_path):
    run = tmp_path / "run"
    run_cli("model=gan", "data=toy2d", "data.name=25gaussians", "trainer.max_steps=3", "trainer.n_points=500",
            f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    picture = np.asarray(Image.open(run / "samples" / "step_0000003.png").convert("RGB"))
    assert picture.shape == (384, 384, 3)
    blue = np.all(picture == (70, 110, 200), axis=-1).sum()
    orange = np.all(picture == (230, 90, 40), axis=-1).sum()
    assert blue > 100 and orange > 10  # real and generated points are both drawn
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["data_spec"]["shape"] == [2]


def sample_in_process(*overrides: str) -> Path:
    """``gantrain task=sample OVERRIDES`` without a subprocess's start-up (the CLI path is tested above and below)."""
    from gantrain.tasks.sample import run as sample
    from gantrain.registry import load_builtin_parts

    load_builtin_parts()
    return sample(compose_config("task=sample", "device=cpu", *overrides))


def test_sample_task_writes_grid_folder_and_npz(tmp_path):
    run = tmp_path / "run"
    run_cli("model=gan", "trainer.max_steps=2", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    run_cli("task=sample", f"checkpoint={run / 'checkpoints' / 'last.pt'}", "n=9", "out=grid.png", "device=cpu",
            cwd=tmp_path)
    assert Image.open(tmp_path / "grid.png").size == (3 * 18 + 2, 3 * 18 + 2)
    sample_in_process(f"checkpoint={run}", "n=5", f"out={tmp_path / 'each'}/")
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [f"sample_{i:06d}.png" for i in range(5)]
    assert Image.open(tmp_path / "each" / "sample_000000.png").size == (16, 16)
    sample_in_process(f"checkpoint={run}", "n=7", "seed=3", f"out={tmp_path / 'x.npz'}")
    sample_in_process(f"checkpoint={run}", "n=7", "seed=3", f"out={tmp_path / 'y.npz'}")
    x, y = np.load(tmp_path / "x.npz")["samples"], np.load(tmp_path / "y.npz")["samples"]
    assert x.shape == (7, 1, 16, 16) and np.array_equal(x, y) and x.min() >= -1 and x.max() <= 1
    assert not (tmp_path / "outputs").exists()  # sampling makes no run folder


BAD_INPUTS = [
    (["model=foo"], "unknown model 'foo'; choose from: "),
    (["loss=nonsaturatin"], "did you mean 'nonsaturating'"),
    (["data=mnst"], "did you mean 'mnist'"),
    (["optim=adamw"], "unknown optim 'adamw'"),
    (["device=tpu"], "unknown device 'tpu'"),
    (["trainer=fast"], "unknown trainer 'fast'"),
    (["data.name=foo"], "unknown dataset 'foo'"),
    (["model.generator.name=resnet"], "unknown network 'resnet'"),
    (["model.recipe=cyclegann"], "unknown recipe 'cyclegann'"),
    (["optim.schedule.name=cosine"], "unknown lr schedule 'cosine'"),
    (["task=train_more"], "unknown task"),
    (["model.generator.widht=3"], "model.generator.widht"),
    (["+model.generator.widht=3"], "has no option 'widht'"),
    (["device=cuda"], "no CUDA GPU"),
    (["trainer.precision=fp8"], "unknown trainer.precision 'fp8'; choose from: 32, bf16, 16"),
    (["trainer.devices=0"], "trainer.devices (processes) must be a positive integer, got 0"),
    (["optim.lr=-1"], "positive"),
    (["trainer.batch_size=0"], "trainer.batch_size must be a positive integer"),
    (["data.image_size=30"], "image size 30 is not supported"),
    (["data=image_folder"], "data.root is required"),
    (["data=image_folder", "data.root=/no/such/folder"], "is not a folder"),
    (["data=mnist", "data.root=empty", "data.download=false"], "data.download"),
    (["resume=/no/such/run"], "neither a checkpoint file nor a run folder"),
    (["task=sample"], "needs checkpoint="),
    (["trainer.max_time=soon"], "trainer.max_time"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    result = run_cli(*args, "trainer.max_steps=1", "trainer.progress=false", f"hydra.run.dir={tmp_path / 'r'}",
                     cwd=tmp_path, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("gantrain: error: "), result.stderr
    assert message in lines[0]


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("model=gan", "device=cuda", "debug=true", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path,
                     check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_sigterm_checkpoints_and_prints_the_resume_command(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "gantrain", "model=gan", "trainer.max_steps=1000000", "trainer.log_every=1",
         "trainer.sample_every=1000000", "trainer.checkpoint_every=1000000", f"hydra.run.dir={run}", *FAST],
        cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    for line in process.stdout:  # wait until training is under way
        if line.startswith("step 3/") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 143
    assert f"gantrain resume={run}" in rest
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] >= 3
    resumed = run_cli(f"resume={run}", f"trainer.max_steps={saved['step'] + 2}", *FAST, cwd=tmp_path)
    assert f"at step {saved['step']}" in resumed.stderr
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == saved["step"] + 2
