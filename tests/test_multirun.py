"""Hydra multirun (``-m``) and ``--cfg job`` through the real CLI, in a subprocess."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from omegaconf import OmegaConf

from conftest import FAST, run_cli

LRS = (1e-4, 2e-4)
MODELS = ("gan", "dcgan")
GENERATOR = {"gan": "mlp_generator", "dcgan": "dcgan_generator"}


def override_value(overrides: list[str], key: str) -> str:
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key]
    assert len(values) == 1, (key, overrides)
    return values[0]


def test_multirun_sweeps_lr_and_model_into_one_folder_per_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_cli("-m", "optim.lr=1e-4,2e-4", "model=gan,dcgan", "trainer.max_steps=2", "trainer.log_every=1",
            f"hydra.sweep.dir={sweep}", *FAST, cwd=tmp_path)

    jobs = sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: p.name)
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    assert (sweep / "multirun.yaml").is_file()
    seen = set()
    for job in jobs:
        overrides = list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        lr, model = float(override_value(overrides, "optim.lr")), override_value(overrides, "model")
        seen.add((lr, model))

        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")  # this job's own composed config
        assert cfg.optim.lr == lr, job.name
        assert cfg.model.name == model, job.name
        assert cfg.model.generator.name == GENERATOR[model], job.name
        assert cfg.trainer.max_steps == 2 and cfg.trainer.log_every == 1 and cfg.device.name == "cpu"

        last = job / "checkpoints" / "last.pt"
        assert last.is_file(), job.name
        checkpoint = torch.load(last, map_location="cpu", weights_only=False)
        assert checkpoint["step"] == 2, job.name
        assert checkpoint["config"]["optim"]["lr"] == lr and checkpoint["config"]["model"]["name"] == model
    assert seen == set(itertools.product(LRS, MODELS))  # every combination ran, once
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()  # all under SWEEP


def test_cfg_job_prints_the_composed_config_without_training(tmp_path: Path) -> None:
    result = run_cli("--cfg", "job", "model=gan", "optim.lr=3e-4", *FAST, cwd=tmp_path, timeout=120)
    assert result.returncode == 0
    cfg = OmegaConf.create(result.stdout)
    assert cfg.optim.lr == 3e-4
    assert cfg.model.name == "gan"
    assert cfg.model.generator.name == "mlp_generator"
    assert cfg.model.discriminator.name == "mlp_discriminator"
    assert cfg.task == "train" and cfg.trainer.max_steps == 3000  # the default budget: nothing ran it
    assert "hydra" not in cfg  # --cfg job: the job's config only
    # no run folder, checkpoint, sample grid or TensorBoard log anywhere
    assert list(tmp_path.iterdir()) == []
