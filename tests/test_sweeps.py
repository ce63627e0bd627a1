"""Sweeps as a workflow (gantrain/sweeps/): readable job folders, results.csv/md and SWEEP_DIR/best, TensorBoard
HParams, seeds grouped, task=results, a failing job that does not sink the sweep, and ``-m resume=SWEEP_DIR``.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import FAST, REPO, assert_same_training_state, run_cli
from gantrain.cli import main
from gantrain.sweeps.plan import MAX_FOLDER_NAME, PLAN, job_folder_name
from gantrain.sweeps.results import collect, group_seeds, rank
from test_multirun import fresh_hydra, train_in_process  # noqa: F401 - fresh_hydra: the fixture, used by name

TINY = ["data=toy2d", "model=gan", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]",
        "trainer.n_points=64", "trainer.progress=false", "trainer.log_every=1", *FAST]
GRID = ["optim.lr=1e-4,2e-4", "trainer.seed=0,1"]
COVERAGE = ["metrics.names=[coverage]", "metrics.eval_samples=200", "metrics.eval_every=2", "trainer.max_steps=2"]
FOLDERS = ["0_optim.lr=0.0001,trainer.seed=0", "1_optim.lr=0.0001,trainer.seed=1",
           "2_optim.lr=0.0002,trainer.seed=0", "3_optim.lr=0.0002,trainer.seed=1"]
NO_LOGS = ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]  # in-process main(): keep pytest's handlers


@contextmanager
def cli_in_process(cwd: Path) -> Iterator[None]:
    """``main()`` as the command runs it, without a subprocess's start-up; every global it touches restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", list(sys.argv))
        patch.setenv("HYDRA_FULL_ERROR", "0")  # main() sets it; the context puts the old value back
        patch.chdir(cwd)
        GlobalHydra.instance().clear()
        try:
            yield
        finally:
            GlobalHydra.instance().clear()
            HydraConfig.instance().cfg = None
            torch.set_num_threads(threads)
            for logger in logging.Logger.manager.loggerDict.values():  # as test_multirun's fresh_hydra does
                if isinstance(logger, logging.Logger):
                    logger.disabled = False


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """A 2x2 sweep (learning rate x seed) of 2-step toy runs measuring coverage."""
    tmp = tmp_path_factory.mktemp("grid")
    sweep = tmp / "sweep"
    with cli_in_process(tmp):
        main(["-m", *GRID, *TINY, *COVERAGE, f"hydra.sweep.dir={sweep}", *NO_LOGS])
    return sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def hparams_of(run: Path) -> tuple[dict[str, float], dict[str, float]]:
    """The HParams session a run wrote (hyperparameters) and its hparams/* scalars, read back by TensorBoard."""
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    scalars = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"] if tag.startswith("hparams/")}
    return {key: value.number_value for key, value in start.hparams.items()}, scalars


def test_grid_sweep_writes_readable_folders_a_results_table_and_hparams(grid: Path) -> None:
    assert sorted(p.name for p in grid.iterdir() if p.is_dir() and not p.is_symlink()) == FOLDERS
    rows = read_csv(grid / "results.csv")
    assert [r["folder"] for r in rows] == FOLDERS
    for row in rows:
        job = grid / row["folder"]
        overrides = (job / ".hydra" / "overrides.yaml").read_text()  # the full overrides stay inside
        assert f"optim.lr={row['optim.lr']}" in overrides and "trainer.max_steps=2" in overrides
        assert row["status"] == "done" and row["steps"] == "2" and row["reason"] == ""
        evaluations = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
        assert float(row["mode_kl"]) == pytest.approx(evaluations[-1]["mode_kl"], rel=1e-5)
        assert float(row["coverage"]) == pytest.approx(evaluations[-1]["coverage"], rel=1e-5)
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "done" and summary["steps"] == 2 and summary["wall_time_s"] > 0

        hyper, scalars = hparams_of(job)  # the same keys in every job: the swept ones
        assert hyper == pytest.approx({"optim.lr": float(row["optim.lr"]), "trainer.seed": float(row["trainer.seed"])})
        assert scalars["hparams/mode_kl"] == pytest.approx(float(row["mode_kl"]), rel=1e-5)
        assert scalars["hparams/steps"] == 2
    assert "## Grouped over seeds" in (grid / "results.md").read_text()


def test_seeds_group_into_mean_and_std_and_best_names_a_run_folder(grid: Path) -> None:
    table = rank(collect(grid), sort="mode_kl")
    assert not table.maximize  # mode_kl: lower is better, the metric's own direction
    groups = group_seeds(table)
    assert [sorted(r.overrides["trainer.seed"] for r in g.rows) for g in groups] == [["0", "1"], ["0", "1"]]
    rows = read_csv(grid / "results.csv")
    for group in groups:
        values = [float(r["mode_kl"]) for r in rows if r["optim.lr"] == group.overrides["optim.lr"]]
        mean, std = group.stats("mode_kl")
        assert mean == pytest.approx(statistics.fmean(values), rel=1e-5)
        assert std == pytest.approx(statistics.stdev(values), rel=1e-4)
    assert groups[0].stats("mode_kl")[0] <= groups[1].stats("mode_kl")[0]  # ranked by the mean

    best = (grid / "best").resolve()
    assert best.parent == grid.resolve() and best.name in FOLDERS and (best / "checkpoints" / "last.pt").is_file()


@pytest.mark.usefixtures("fresh_hydra")
def test_task_results_rebuilds_the_same_table_from_the_folders(grid: Path, tmp_path: Path, monkeypatch,
                                                               capsys) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.chdir(tmp_path)
    before = (grid / "results.csv").read_text()
    (grid / "results.csv").unlink()
    (grid / "results.md").unlink()
    main(["task=results", f"sweep={grid}", "results.group_seeds=false", "results.sort=mode_kl", *NO_LOGS])
    assert (grid / "results.csv").read_text() == before
    out = capsys.readouterr().out
    assert "sorted by mode_kl, lower is better" in out and "best: " in out
    assert list(tmp_path.iterdir()) == []  # no run folder of its own


@pytest.mark.usefixtures("fresh_hydra")
def test_sample_from_the_best_link(grid: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    out = tmp_path / "best.png"
    main(["task=sample", f"checkpoint={grid / 'best'}", "n=4", f"out={out}", *FAST])
    assert out.is_file()


@pytest.mark.usefixtures("fresh_hydra")
@pytest.mark.parametrize("args, expected", [
    (["task=results", "sweep={tmp}"], "is not a sweep folder"),
    (["task=results", "sweep={grid}", "results.sort=typo"], "results.sort=typo is not a column of this sweep; "
                                                             "choose from: steps, wall_time_s, coverage"),
    (["-m", "resume={old}"], "cannot resume {old}: it was made by gantrain 0.0.1 (sweep format 0); this is gantrain"),
    (["resume={grid}"], "{grid} is a sweep folder: resume the whole sweep with 'gantrain -m resume={grid}'"),
])
def test_bad_sweep_input_is_one_line(args, expected, grid, tmp_path, monkeypatch, capsys) -> None:
    old = tmp_path / "old_sweep"
    old.mkdir()
    plan = json.loads((grid / PLAN).read_text())
    (old / PLAN).write_text(json.dumps({**plan, "format": 0, "gantrain_version": "0.0.1"}))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.chdir(tmp_path)
    fill = {"tmp": tmp_path, "grid": grid, "old": old}
    with pytest.raises(SystemExit) as exited:
        main([a.format(**fill) for a in args] + NO_LOGS)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected.format(**fill) in err, err


@pytest.mark.usefixtures("fresh_hydra", "one_torch_thread")
def test_fail_fast_stops_the_sweep_at_the_first_failing_job(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit) as exited:
        main(["-m", "trainer.batch_size=0,16", *TINY, "trainer.max_steps=2", "sweep.fail_fast=true",
              f"hydra.sweep.dir={sweep}", *NO_LOGS])
    assert exited.value.code == 2  # the failing job's own status: bad input
    rows = read_csv(sweep / "results.csv")
    assert [(r["folder"], r["status"]) for r in rows] == [("0_trainer.batch_size=0", "failed"),
                                                          ("1_trainer.batch_size=16", "not started")]
    assert not (sweep / "1_trainer.batch_size=16").exists()
    err = capsys.readouterr().err
    assert ("job 0 failed: trainer.batch_size must be a positive integer, got 0 (sweep.fail_fast=true: the sweep "
            "stops)") in err
    assert f"finish it with: gantrain -m resume={sweep}" in err


def test_job_folder_names_are_safe_and_capped() -> None:
    varying = ["model", "optim.lr", "+regularizers.r1.gamma", "metrics.names"]
    assert job_folder_name(7, ["model=gan", "trainer.max_steps=2"], varying) == "7_model=gan"
    assert job_folder_name(3, ["metrics.names=[fid, kid]"], varying) == "3_metrics.names=_fid,_kid_"
    long = [f"optim.lr={'1' * 200}"]
    name = job_folder_name(12, long, varying)
    assert len(name) == MAX_FOLDER_NAME and name.startswith("12_optim.lr=111")
    assert name != job_folder_name(12, [f"optim.lr={'1' * 199}2"], varying)  # the hash tells them apart
    assert job_folder_name(5, ["model=gan"], None) == "5"  # no plan: Hydra's plain job number


def digests(folder: Path) -> dict[str, str]:
    """Every file of a run folder except the .hydra config copies and the log (the launcher rewrites those)."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".hydra" not in p.parts and p.name != "gantrain.log"}


@pytest.mark.usefixtures("fresh_hydra", "one_torch_thread")
def test_a_failed_job_is_recorded_and_a_killed_sweep_resumes(tmp_path: Path) -> None:
    """Job 1 fails (batch size 0), the sweep goes on; SIGTERM during job 2; -m resume= skips jobs 0 and 1,
    resumes job 2 bitwise as a straight run, and starts job 3."""
    sweep = tmp_path / "sweep"
    common = [*TINY, "trainer.max_steps=60", "trainer.checkpoint_every=5"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    sweeping = subprocess.Popen([sys.executable, "-m", "gantrain", "-m", "trainer.batch_size=16,0,32,24", *common,
                                 f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not glob.glob(str(sweep / "2_*" / "checkpoints" / "step_*.pt")):
        assert sweeping.poll() is None and time.monotonic() < deadline, sweeping.communicate()
        time.sleep(0.005)
    sweeping.send_signal(signal.SIGTERM)
    _, err = sweeping.communicate(timeout=120)
    assert sweeping.returncode == 128 + signal.SIGTERM, err
    assert "job 1 failed: trainer.batch_size must be a positive integer, got 0" in err
    rows = read_csv(sweep / "results.csv")
    assert [r["status"] for r in rows] == ["done", "failed", "interrupted", "not started"]
    assert rows[1]["reason"] == "trainer.batch_size must be a positive integer, got 0"
    assert 0 < int(rows[2]["steps"]) < 60
    folders = [sweep / r["folder"] for r in rows]
    untouched = {folder: digests(folder) for folder in folders[:2]}

    resumed = run_cli("-m", f"resume={sweep}", cwd=tmp_path, check=False, env={"OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 1, resumed.stderr[-2000:]  # the exit status: how many jobs failed
    assert "1 of 4 jobs failed" in resumed.stderr
    assert {folder: digests(folder) for folder in folders[:2]} == untouched
    rows = read_csv(sweep / "results.csv")
    assert [r["status"] for r in rows] == ["done", "failed", "done", "done"]
    assert [r["steps"] for r in rows] == ["60", "0", "60", "60"]

    straight = tmp_path / "straight"
    train_in_process(straight, "trainer.batch_size=32", *common)
    split = torch.load(folders[2] / "checkpoints" / "last.pt", weights_only=True)
    assert split["step"] == 60
    assert_same_training_state(torch.load(straight / "checkpoints" / "last.pt", weights_only=True), split)


def test_an_optuna_trial_that_fails_is_a_failed_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'gantrain[optuna]'")
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "+sweep=optuna_lr", "hydra.sweeper.n_trials=2", "objective=loss/d", "metrics.names=[]",
                     "metrics.best=null", "trainer.batch_size=choice(16,0)", *TINY, "trainer.max_steps=2",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=False, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, result.stderr[-2000:]  # one failed trial (the sampler's seed fixes which)
    assert "Failed experiment" in result.stdout + result.stderr  # hydra-optuna-sweeper told Optuna: TrialState.FAIL
    rows = read_csv(sweep / "results.csv")
    assert [(r["trainer.batch_size"], r["status"]) for r in rows] == [("16", "done"), ("0", "failed")]
    assert float(rows[0]["objective"]) == pytest.approx(
        json.loads((sweep / rows[0]["folder"] / "summary.json").read_text())["scalars"]["loss/d"])
