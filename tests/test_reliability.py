"""Issue 5, "never lose a run": clear errors, atomic checkpoints, safe loading, signals, NaN/Inf, full disks.

Behaviour of the process (exit status, signals, stderr) is tested on the real CLI in a subprocess;
what needs a fault injected mid-write is tested in-process, or in the CLI through a test-written
plugin module (``plugins=[module]`` imports it before training).
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import gantrain.engine.checkpoint as checkpoint
from conftest import FAST, REPO, assert_same_training_state, flatten_state, run_cli
from gantrain.engine.checkpoint import CheckpointNotWritten, CheckpointWriter, load_checkpoint, resolve_checkpoint
from gantrain.errors import UserError
from gantrain.recipes.base import NonFiniteUpdate, Recipe
from test_train_cli import tensorboard_scalars

TINY = ["model=gan", "model.generator.hidden=[32]", "model.discriminator.hidden=[32]", *FAST]
QUIET = ["trainer.progress=false"]  # no step lines: stderr holds only what the run has to say


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def assert_one_line_error(result: subprocess.CompletedProcess, status: int, *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, result.stderr
    assert len(lines) == 1 and lines[0].startswith("gantrain: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def start_cli() -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts the CLI in the background (stdout and stderr merged) so a test can signal it mid-run.

    A run a failed test leaves behind is killed at teardown (these runs have budgets of a million steps).
    """
    started: list[subprocess.Popen] = []

    def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        full_env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
                    **(env or {})}
        process = subprocess.Popen([sys.executable, "-m", "gantrain", *args], cwd=cwd, env=full_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for_step(process: subprocess.Popen, step: int, timeout: float = 120) -> None:
    """Read the log until ``step N/`` (requires trainer.log_every=1)."""
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        if line.startswith(f"step {step}/"):
            return
        assert time.monotonic() < deadline, f"no 'step {step}/' within {timeout}s"
    raise AssertionError(f"the run ended before step {step} (exit {process.wait()})")


def write_plugin(folder: Path, name: str, source: str) -> dict[str, str]:
    """A module the run imports through ``plugins=[name]``; returns the env that puts it on the path."""
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return {"PYTHONPATH": f"{REPO}{os.pathsep}{folder}"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 5-step run with periodic checkpoints at steps 2 and 4 and last.pt at 5; copy before changing."""
    cwd = tmp_path_factory.mktemp("trained")
    run = cwd / "run"
    run_cli(*TINY, "trainer.max_steps=5", "trainer.checkpoint_every=2", f"hydra.run.dir={run}", cwd=cwd)
    return run


# --- 1. clear errors ----------------------------------------------------------------------------------------

def _prepare_bad_input(kind: str, tmp_path: Path, trained_run: Path) -> str:
    """Make the broken thing ``kind`` names on disk; returns the path to put into the arguments."""
    last = (trained_run / "checkpoints" / "last.pt").read_bytes()
    target = tmp_path / kind
    if kind == "file_in_the_way":
        target.write_text("not a folder")
        return str(target / "run")
    if kind == "read_only_folder":
        target.mkdir()
        target.chmod(0o555)
        return str(target / "run")
    if kind == "checkpoints_is_a_file":
        target.mkdir()
        (target / "checkpoints").write_text("not a folder")
        return str(target)
    if kind == "text_file":
        target.write_text("model: gan\n")
    elif kind == "empty_file":
        target.write_bytes(b"")
    elif kind == "truncated":
        target.write_bytes(last[: len(last) // 2])
    return str(target)


RELIABILITY_BAD_INPUTS = [
    ("file_in_the_way", ["hydra.run.dir={path}"], "cannot write the output folder"),
    ("read_only_folder", ["hydra.run.dir={path}"], "cannot write the output folder"),
    ("checkpoints_is_a_file", ["hydra.run.dir={path}"], "cannot write checkpoints to"),
    ("text_file", ["resume={path}"], "it is not a PyTorch file"),
    ("empty_file", ["resume={path}"], "the file is empty"),
    ("truncated", ["resume={path}"], "it is truncated or corrupt"),
    ("truncated", ["task=sample", "checkpoint={path}"], "it is truncated or corrupt"),
    (None, ["model.n_critic=0"], "model.n_critic must be a positive integer, got 0"),
    (None, ["trainer.n_critic=5"], "trainer.n_critic has moved: set model.n_critic=5 instead"),
    (None, ["trainer.max_steps=-5"], "trainer.max_steps must be positive, got -5"),
    (None, ["trainer.on_nonfinite=ignore"], "unknown trainer.on_nonfinite 'ignore'; choose from: stop, skip"),
]


@pytest.mark.parametrize("kind,args,message", RELIABILITY_BAD_INPUTS,
                         ids=[f"{kind or ''} {' '.join(args)}".strip() for kind, args, _ in RELIABILITY_BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_before_training(kind, args, message, tmp_path, trained_run):
    if kind == "read_only_folder" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; file_in_the_way covers the same check")
    path = _prepare_bad_input(kind, tmp_path, trained_run) if kind else ""
    args = [arg.format(path=path) for arg in args]
    if not any(arg.startswith("hydra.run.dir=") for arg in args) and "task=sample" not in args:
        args.append(f"hydra.run.dir={tmp_path / 'r'}")
    result = run_cli(*TINY, *QUIET, "trainer.max_steps=1", *args, cwd=tmp_path, check=False)
    assert_one_line_error(result, 2, message)
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()  # refused before training


# --- 2. atomic, verified checkpoints ------------------------------------------------------------------------

def _payload(step: int) -> dict:
    return {"step": step, "recipe": {"networks": {"net": {"weight": torch.full((3,), float(step))}}}}


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way may swallow it."""


def test_a_crash_between_write_and_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    writer = CheckpointWriter(tmp_path, keep_last=3)
    writer.save(_payload(1), periodic=True)

    def crash(src, dst):
        assert Path(src).is_file() and Path(src).stat().st_size > 0  # the temporary is fully written
        raise Crash

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(Crash):
        writer.save(_payload(2), periodic=True)
    monkeypatch.undo()

    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_0000001.pt"]  # no temporary left


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    writer = CheckpointWriter(tmp_path, keep_last=3)
    writer.save(_payload(1), periodic=False)
    real_open = open

    class FullDisk:
        """A file that takes half of what is written, then reports ENOSPC, like a disk filling up."""

        def __init__(self, path, mode):
            self.handle = real_open(path, mode)

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(checkpoint, "open", FullDisk, raising=False)
    with pytest.raises(CheckpointNotWritten, match="cannot write checkpoint .*last.pt: No space left on device"):
        writer.save(_payload(2), periodic=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert temporaries(tmp_path) == []


def test_a_full_disk_stops_the_run_with_one_line_naming_the_kept_checkpoint(tmp_path):
    env = write_plugin(tmp_path, "full_disk", """
        import errno, os
        import gantrain.engine.checkpoint as checkpoint

        real_open = open
        writes = []

        def full_disk_open(path, mode="r", *args, **kwargs):
            if "last.pt" in str(path):
                writes.append(path)
                if len(writes) > 2:  # the third last.pt (step 3) finds the disk full
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return real_open(path, mode, *args, **kwargs)

        checkpoint.open = full_disk_open
    """)
    run = tmp_path / "run"
    result = run_cli(*TINY, *QUIET, "plugins=[full_disk]", "trainer.max_steps=5", "trainer.checkpoint_every=1",
                     f"hydra.run.dir={run}", cwd=tmp_path, env=env, check=False)
    assert_one_line_error(result, 2, "cannot write checkpoint", "No space left on device",
                          "previous checkpoint kept at", "(step 2)", f"gantrain resume={run}")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert temporaries(run / "checkpoints") == []


def test_kill_9_while_checkpointing_every_step_leaves_a_loadable_last_pt(tmp_path, start_cli):
    run = tmp_path / "run"
    process = start_cli(*TINY, "trainer.max_steps=1000000", "trainer.log_every=1", "trainer.checkpoint_every=1",
                        "trainer.sample_every=1000000", f"hydra.run.dir={run}", cwd=tmp_path)
    wait_for_step(process, 5)
    process.kill()
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] >= 4

    stale = run / "checkpoints" / ".last.pt.999999.tmp"  # what a kill during a write leaves behind
    stale.write_bytes(b"half a checkpoint")
    saved = resolve_checkpoint(run)[1]
    run_cli(f"resume={run}", f"trainer.max_steps={saved['step'] + 1}", *QUIET, *FAST, cwd=tmp_path)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == saved["step"] + 1
    assert temporaries(run / "checkpoints") == []


def test_resume_skips_a_corrupt_last_pt_with_a_warning_and_uses_the_newest_good_one(tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(os.urandom(4096))
    result = run_cli(f"resume={run}", "trainer.max_steps=6", *QUIET, *FAST, cwd=tmp_path)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("gantrain: warning:")]
    assert len(warnings) == 1 and str(last) in warnings[0] and "trying an older checkpoint" in warnings[0]
    assert "step_0000004.pt at step 4" in result.stderr
    assert load_checkpoint(last)["step"] == 6


# --- 3. untrusted checkpoints cannot run code ---------------------------------------------------------------

class Exploit:
    """Unpickling this runs a shell command: what a crafted "checkpoint" from the internet could hold."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch {marker}"

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("args", [["resume={path}"], ["task=sample", "checkpoint={path}"]], ids=["resume", "sample"])
def test_a_malicious_checkpoint_is_refused_without_running_its_code(args, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT_VERSION, "recipe": Exploit(marker), "step": 1}, path)
    result = run_cli(*[arg.format(path=path) for arg in args], *TINY, *QUIET, f"hydra.run.dir={tmp_path / 'r'}",
                     cwd=tmp_path, check=False)
    assert_one_line_error(result, 2, "refuses to run")
    assert not marker.exists()


PICKLE_FORMATS = {  # how a file is written, and how an unsafe loader would read it
    "torch.save": (torch.save, lambda path: torch.load(path, weights_only=False)),
    "pickle": (lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=2)),
               lambda path: pickle.loads(path.read_bytes())),
}


@pytest.mark.parametrize("written_by", sorted(PICKLE_FORMATS))
def test_the_exploit_is_real_and_load_checkpoint_refuses_it(written_by, tmp_path):
    """The crafted file does run code when unpickled unsafely; load_checkpoint refuses it, in either format."""
    save, unsafe_load = PICKLE_FORMATS[written_by]
    refused, proof = tmp_path / "refused", tmp_path / "proof"
    save({"format": checkpoint.FORMAT_VERSION, "recipe": Exploit(refused)}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="refuses to run"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not refused.exists()
    save({"format": checkpoint.FORMAT_VERSION, "recipe": Exploit(proof)}, tmp_path / "unsafe.pt")
    unsafe_load(tmp_path / "unsafe.pt")
    assert proof.exists()


# --- 4. signals ---------------------------------------------------------------------------------------------

SIGNALLED = [*TINY, "trainer.max_steps=1000000", "trainer.log_every=1", "trainer.sample_every=1000000"]


def test_ctrl_c_checkpoints_prints_the_resume_command_and_exits_130(tmp_path, start_cli):
    run = tmp_path / "run"
    process = start_cli(*SIGNALLED, "trainer.checkpoint_every=1000000", f"hydra.run.dir={run}", cwd=tmp_path)
    wait_for_step(process, 3)
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    assert "SIGINT: stopped at step" in rest and f"gantrain resume={run}" in rest
    assert "Traceback" not in rest
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] >= 3


SLOW_DISK = """
    import time
    import gantrain.engine.checkpoint as checkpoint

    real_open = open

    class SlowFile:
        # writes a checkpoint in two halves a moment apart, so a signal can land in the middle

        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            time.sleep(0.5)
            return self.handle.write(data[len(data) // 2:])

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def slow_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return SlowFile(handle) if "w" in mode else handle

    checkpoint.open = slow_open
"""


def test_a_second_ctrl_c_stops_at_once_and_leaves_whole_checkpoints(tmp_path, start_cli):
    env = write_plugin(tmp_path, "slow_disk", SLOW_DISK)
    run = tmp_path / "run"
    process = start_cli(*SIGNALLED, "plugins=[slow_disk]", "trainer.checkpoint_every=1", f"hydra.run.dir={run}",
                        cwd=tmp_path, env=env)
    wait_for_step(process, 3)
    process.send_signal(signal.SIGINT)
    time.sleep(0.1)  # two signals at once are one to Python: let it take the first
    process.send_signal(signal.SIGINT)  # lands in the checkpoint that the first one lets the step write
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    assert "Traceback" not in rest and "gantrain: stopped at once (Ctrl-C)" in rest, rest
    assert "previous checkpoint kept at" in rest
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] >= 2
    assert temporaries(run / "checkpoints") == []


def test_sigterm_at_an_arbitrary_step_then_resume_equals_an_uninterrupted_run(tmp_path, start_cli):
    total = 200  # long enough to be signalled well before the end
    common = [*TINY, f"trainer.max_steps={total}", "trainer.log_every=1", "trainer.sample_every=1000000",
              "trainer.checkpoint_every=1000000"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    process = start_cli(*common, f"hydra.run.dir={interrupted}", cwd=tmp_path)
    wait_for_step(process, 3)
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 143, rest
    stopped_at = load_checkpoint(interrupted / "checkpoints" / "last.pt")["step"]
    assert 3 <= stopped_at < total

    run_cli(f"resume={interrupted}", *QUIET, *FAST, cwd=tmp_path)  # the saved overrides carry max_steps
    run_cli(*common, *QUIET, f"hydra.run.dir={straight}", cwd=tmp_path)
    a, b = (load_checkpoint(run / "checkpoints" / "last.pt") for run in (straight, interrupted))
    assert a["step"] == b["step"] == total and a["data"] == b["data"]
    assert_same_training_state(a, b)


def test_a_multirun_job_folder_resumes_on_its_own(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("-m", *TINY, *QUIET, "optim.lr=1e-4,2e-4", "trainer.max_steps=2", f"hydra.sweep.dir={sweep}",
            cwd=tmp_path)
    first, second = sweep / "0_optim.lr=0.0001", sweep / "1_optim.lr=0.0002"  # job number + what varies
    before = load_checkpoint(first / "checkpoints" / "last.pt")
    run_cli(f"resume={second}", "trainer.max_steps=4", *QUIET, *FAST, cwd=tmp_path)

    resumed = load_checkpoint(second / "checkpoints" / "last.pt")
    assert resumed["step"] == 4 and resumed["config"]["optim"]["lr"] == 2e-4  # the job's own overrides
    untouched = load_checkpoint(first / "checkpoints" / "last.pt")
    assert untouched["step"] == 2
    assert_same_training_state(before, untouched)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [first.name, second.name]  # no new folder


# --- 5. non-finite losses -----------------------------------------------------------------------------------

POISONED_LOSS = """
    import torch
    from gantrain.losses.minimax import NonSaturatingLoss
    from gantrain.registry import LOSSES

    @LOSSES.register("poisoned")
    class PoisonedLoss(NonSaturatingLoss):
        '''The non-saturating loss, NaN for the discriminator at the given steps (n_critic=1: call = step).'''

        def __init__(self, nan_at=(), **options):
            super().__init__(**options)
            self.nan_at = set(nan_at)
            self.calls = 0

        def discriminator_loss(self, real_scores, fake_scores, weights=None):
            self.calls += 1
            loss = super().discriminator_loss(real_scores, fake_scores, weights)
            return loss * float("nan") if self.calls in self.nan_at else loss
"""


def test_a_nan_loss_stops_with_exit_3_naming_step_network_and_term_and_keeps_the_checkpoint(tmp_path):
    env = write_plugin(tmp_path, "poisoned_loss", POISONED_LOSS)
    run = tmp_path / "run"
    result = run_cli(*TINY, *QUIET, "plugins=[poisoned_loss]", "loss.name=poisoned", "+loss.nan_at=[7]",
                     "trainer.max_steps=10", "trainer.checkpoint_every=5", f"hydra.run.dir={run}",
                     cwd=tmp_path, env=env, check=False)
    assert_one_line_error(result, 3, "non-finite loss/d at step 7 (discriminator)",
                          f"previous checkpoint kept at {run / 'checkpoints' / 'last.pt'} (step 5)")
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert saved["step"] == 5
    assert all(torch.isfinite(t).all() for t in flatten_state(saved["recipe"]["networks"]).values())


def test_a_diverging_learning_rate_stops_with_exit_3(tmp_path):
    result = run_cli(*TINY, *QUIET, "optim.lr=1e30", "trainer.max_steps=20", "trainer.checkpoint_every=1",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    line = assert_one_line_error(result, 3, "non-finite", "at step")
    assert "(generator)" in line or "(discriminator)" in line
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    if last.exists():  # whatever was saved holds finite weights
        networks = flatten_state(load_checkpoint(last)["recipe"]["networks"]).values()
        assert all(torch.isfinite(t).all() for t in networks)


def test_skip_policy_drops_the_bad_updates_counts_them_and_finishes(tmp_path):
    env = write_plugin(tmp_path, "poisoned_loss", POISONED_LOSS)
    run = tmp_path / "run"
    result = run_cli(*TINY, "plugins=[poisoned_loss]", "loss.name=poisoned", "+loss.nan_at=[3,4]",
                     "trainer.on_nonfinite=skip", "trainer.max_steps=6", "trainer.log_every=1",
                     f"hydra.run.dir={run}", cwd=tmp_path, env=env)
    assert "warning: non-finite loss/d at step 3 (discriminator): update skipped" in result.stderr
    assert "2 updates were skipped" in result.stderr
    skipped = tensorboard_scalars(run)["nonfinite/skipped"]
    assert skipped == {1: 0.0, 2: 0.0, 3: 1.0, 4: 2.0, 5: 2.0, 6: 2.0}
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert saved["step"] == 6 and saved["skipped_updates"] == {"generator": 0, "discriminator": 2}


class Line(Recipe):
    """The smallest recipe: one linear network and its Adam optimizer."""

    def __init__(self) -> None:
        self.net = nn.Linear(2, 1)
        super().__init__(networks={"net": self.net}, optimizers={"net": torch.optim.Adam(self.net.parameters(), lr=0.1)},
                         schedulers={})

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.net.parameters()]


def test_apply_update_steps_on_finite_values():
    recipe = Line()
    before = recipe.weights()
    loss = recipe.net(torch.ones(4, 2)).square().mean()
    assert recipe.apply_update("net", loss, {"loss": loss.detach()}) is True
    assert not torch.equal(before[0], recipe.weights()[0])


def test_apply_update_names_a_bad_gradient_under_a_finite_loss():
    recipe = Line()
    before = recipe.weights()
    loss = torch.sqrt(recipe.net.weight * 0).sum()  # 0, but d sqrt(x)/dx at 0 times 0 is NaN
    with pytest.raises(NonFiniteUpdate) as failure:
        recipe.apply_update("net", loss, {"loss": loss.detach()})
    assert (failure.value.network, failure.value.culprit) == ("net", "gradient of weight")
    assert all(torch.equal(a, b) for a, b in zip(before, recipe.weights()))  # no step was taken


def test_apply_update_skip_leaves_weights_and_optimizer_untouched():
    recipe = Line()
    recipe.nonfinite_policy = "skip"
    before = recipe.weights()
    loss = recipe.net(torch.full((4, 2), float("inf"))).mean()
    assert recipe.apply_update("net", loss, {"loss/x": loss.detach()}) is False
    assert all(torch.equal(a, b) for a, b in zip(before, recipe.weights()))
    assert recipe.optimizers["net"].state_dict()["state"] == {}  # Adam never stepped
    assert all(p.grad is None for p in recipe.net.parameters())
    assert recipe.skipped_updates == {"net": 1} and recipe.last_nonfinite.culprit == "loss/x"
