"""Hydra multirun (``-m``), ``--cfg job``, the ``objective`` a sweep optimises, and the shipped sweep configs
(Optuna sweeper, submitit launcher) through the real CLI.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from conftest import FAST, compose_config, run_cli, tensorboard_scalars
from gantrain.cli import main, run_task

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
    assert [p.name for p in jobs] == ["0_optim.lr=0.0001,model=gan", "1_optim.lr=0.0001,model=dcgan",
                                      "2_optim.lr=0.0002,model=gan", "3_optim.lr=0.0002,model=dcgan"]
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


# --- objective: the value a sweeper optimises ------------------------------------------------------------

TINY_RUN = ["model=gan", "trainer.max_steps=2", "trainer.log_every=1", "trainer.progress=false", *FAST]
TOY_METRICS = ["data=toy2d", "metrics.names=[coverage]", "metrics.eval_every=1", "metrics.eval_samples=200"]


@pytest.fixture
def fresh_hydra():
    """In-process Hydra runs leave global state behind (GlobalHydra, HydraConfig, disabled loggers): undo it."""
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None
    for logger in logging.Logger.manager.loggerDict.values():  # Hydra's logging config disables existing loggers
        if isinstance(logger, logging.Logger):
            logger.disabled = False


def train_in_process(run_dir: Path, *overrides: str) -> Any:
    """``run_task`` as a Hydra job runs it, without a subprocess's start-up (about a second instead of seven)."""
    cfg = compose_config(*overrides, hydra=True)
    cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return run_task(cfg)


@pytest.mark.usefixtures("fresh_hydra", "one_torch_thread")
def test_objective_returns_the_named_scalar_as_a_float(tmp_path: Path) -> None:
    scalars = train_in_process(tmp_path / "all", *TINY_RUN)  # objective=null: every last logged scalar
    value = train_in_process(tmp_path / "one", *TINY_RUN, "objective=loss/d")
    assert type(value) is float  # what hydra-optuna-sweeper takes
    assert value == scalars["loss/d"]  # the same seeded run: the very value logged at the last step
    assert tensorboard_scalars(tmp_path / "one")["loss/d"][2] == pytest.approx(value, rel=1e-6)  # float32 on disk


@pytest.mark.usefixtures("fresh_hydra", "one_torch_thread")
def test_objective_metric_is_the_final_evaluation_or_the_best_one_metrics_best_keeps(tmp_path: Path) -> None:
    final = train_in_process(tmp_path / "final", *TINY_RUN, *TOY_METRICS, "objective=mode_kl")
    evaluations = [json.loads(line) for line in (tmp_path / "final" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evaluations] == [1, 2]
    assert type(final) is float and final == evaluations[-1]["mode_kl"]

    best = train_in_process(tmp_path / "best", *TINY_RUN, *TOY_METRICS, "metrics.best=mode_kl", "objective=mode_kl")
    assert type(best) is float and best == min(e["mode_kl"] for e in evaluations)  # lower is better for mode_kl


@pytest.mark.usefixtures("fresh_hydra", "one_torch_thread")
def test_an_objective_never_logged_is_a_one_line_error_listing_the_logged_names(tmp_path: Path, monkeypatch,
                                                                               capsys) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() sets them, and HYDRA_FULL_ERROR below
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    with pytest.raises(SystemExit) as exited:
        main([*TINY_RUN, "objective=loss/typo", f"hydra.run.dir={tmp_path / 'run'}",
              "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"])  # keep pytest's log handlers
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gantrain: error: objective=loss/typo was not logged by this run; choose from: ")
    assert "loss/d" in err and "loss/g" in err and "Traceback" not in err


# --- the shipped sweep configs: Optuna sweeper, SLURM launcher --------------------------------------------


def test_sweep_configs_compose_with_the_plugins(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'gantrain[optuna]'")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'gantrain[slurm]'")
    result = run_cli("--cfg", "all", "+sweep=optuna_lr", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                     cwd=tmp_path, timeout=120)
    cfg = OmegaConf.create(result.stdout)
    sweeper, launcher = cfg.hydra.sweeper, cfg.hydra.launcher
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert sweeper.n_trials > 0 and sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert set(sweeper.params) == {"optim.lr", "optim.betas.0"}
    for key in sweeper.params:  # the search space names keys the composed config has
        assert OmegaConf.select(cfg, key) is not None, key
    assert cfg.objective == "fid" and list(cfg.metrics.names) == ["fid"] and cfg.metrics.best == "fid"
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.timeout_min > 0
    assert launcher.cpus_per_task and launcher.mem_gb
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_optuna_study_through_the_submitit_launcher_reports_the_best_value(tmp_path: Path) -> None:
    """Two trials, each a submitit job (the SLURM path, run locally): the objective crosses the pickle and Optuna."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'gantrain[optuna]'")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'gantrain[slurm]'")
    sweep = tmp_path / "sweep"
    run_cli("-m", "+sweep=optuna_lr", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
            "hydra/launcher=submitit_local", "objective=loss/d", "metrics.names=[]", "metrics.best=null",
            f"hydra.sweep.dir={sweep}", *TINY_RUN, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})

    results = OmegaConf.load(sweep / "optimization_results.yaml")
    trials = sorted((p for p in sweep.iterdir() if p.name[0].isdigit() and not p.is_symlink()), key=lambda p: p.name)
    assert [p.name.split("_")[0] for p in trials] == ["0", "1"]  # named N_optim.lr=...,optim.betas.0=...
    values = [tensorboard_scalars(trial)["loss/d"][2] for trial in trials]
    assert isinstance(results.best_value, float)
    assert results.best_value == pytest.approx(min(values), rel=1e-6)  # minimize: the lower trial's loss/d
    best = trials[values.index(min(values))]
    params = {o.split("=", 1)[0]: float(o.split("=", 1)[1]) for o in OmegaConf.load(best / ".hydra/overrides.yaml")
              if o.startswith("optim.")}
    assert params == pytest.approx(dict(results.best_params))
    for trial in trials:  # Optuna chose both searched values of every trial, and the run trained with them
        cfg = OmegaConf.load(trial / ".hydra/config.yaml")
        chosen = {o.split("=", 1)[0]: float(o.split("=", 1)[1]) for o in OmegaConf.load(trial / ".hydra/overrides.yaml")
                  if o.startswith("optim.")}
        assert chosen == {"optim.lr": cfg.optim.lr, "optim.betas.0": cfg.optim.betas[0]}


@pytest.mark.usefixtures("fresh_hydra")
@pytest.mark.parametrize("choice, listed", [("+sweep=typo", "choose from: optuna_lr"),
                                            ("hydra/launcher=typo", "submitit_local")])
def test_an_unknown_sweep_or_launcher_config_lists_the_choices(choice, listed, tmp_path, monkeypatch, capsys):
    """Hydra's missing-config error is an IOError: it must not read as an unwritable output folder."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    with pytest.raises(SystemExit) as exited:
        main(["-m", choice, *FAST, f"hydra.sweep.dir={tmp_path}", "hydra/job_logging=disabled",
              "hydra/hydra_logging=disabled"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and listed in err and "output folder" not in err, err
