"""Data parallelism on the CPU: two gloo ranks (torchrun) against one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import FAST, REPO, flatten_state, run_cli

# WGAN-GP with the MLPs on toy data: a gradient penalty and n_critic=5, no BatchNorm (whose batch
# statistics are per rank by design), so two ranks must compute what one process computes.
WGAN_GP_MLP = ["model=gan", "data=toy2d", "loss=wasserstein", "optim=adam_wgan_gp", "model.n_critic=5",
               "+regularizers.gradient_penalty.weight=10", "model.generator.hidden=[32]",
               "model.discriminator.hidden=[32]", "trainer.batch_size=64", "trainer.log_every=1",
               "trainer.checkpoint_every=2", "trainer.keep_last=0", *FAST]


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m gantrain ARGS`` on the CPU."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "gantrain", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_close_training_state(a: dict, b: dict) -> None:
    """Networks and optimizer states agree up to float summation order (two half-batch sums vs one)."""
    for kind in ("networks", "optimizers"):
        flat_a, flat_b = flatten_state(a["recipe"][kind]), flatten_state(b["recipe"][kind])
        assert flat_a.keys() == flat_b.keys(), kind
        for key, value in flat_a.items():
            if torch.is_tensor(value):
                torch.testing.assert_close(value, flat_b[key], rtol=1e-4, atol=1e-5, msg=f"{kind} {key}")
            else:
                assert value == flat_b[key], (kind, key)


def checkpoint(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"step_{step:07d}.pt", weights_only=True)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch build has no torch.distributed")
def test_two_ranks_train_resume_and_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    run_cli(*WGAN_GP_MLP, "trainer.max_steps=4", f"hydra.run.dir={single}", cwd=tmp_path,
            env={"OMP_NUM_THREADS": "1"})

    # gantrain's own launcher (trainer.devices=2) for the first half, torchrun by hand to resume
    first = run_cli(*WGAN_GP_MLP, "trainer.max_steps=2", "trainer.devices=2", f"hydra.run.dir={parallel}",
                    cwd=tmp_path)
    resumed = torchrun(f"resume={parallel}", "trainer.max_steps=4", cwd=tmp_path)

    for step in (2, 4):  # 2: straight; 4: after a resume
        assert_close_training_state(checkpoint(single, step), checkpoint(parallel, step))
    assert checkpoint(parallel, 4)["data"] == checkpoint(single, 4)["data"]  # same position in the data

    # only rank 0 reports and writes: one log line per step, nothing outside the run folder
    assert first.stderr.count("step 2/2") == 1
    assert "resumed from" in resumed.stderr and resumed.stderr.count("step 4/4") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parallel", "single"]
