"""``pip install .`` (a real wheel, not editable) works: the configs ship inside the package and ``gantrain``
finds them from any directory.

The wheel is built from this checkout, installed with ``--no-deps`` into a fresh virtual environment that
reuses the system site-packages (torch, hydra, ...), and its ``gantrain`` console script is run from an
empty temporary directory with ``PYTHONPATH`` unset.  The system site-packages may hold an editable install
of this checkout (a ``.pth`` pointing at the repo); the tests check that the venv's own copy is the one
imported, so a pass cannot come from the source tree.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO

REPO_CONFIGS = REPO / "configs"
GROUPS = ("data", "device", "loss", "model", "optim", "trainer")
# Messages pip prints when it cannot fetch the build backend (hatchling) from an index: no network, no mirror.
OFFLINE_SIGNS = ("No matching distribution found", "Could not find a version", "NewConnectionError",
                 "Failed to establish a new connection", "Temporary failure in name resolution",
                 "Network is unreachable", "ProxyError", "SSLError")


def clean_env() -> dict[str, str]:
    """The environment without anything that would make the source tree (or another env) importable."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "HYDRA_FULL_ERROR", "__PYVENV_LAUNCHER__"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def must(result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise AssertionError(f"{what} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result


def repo_yaml_files() -> list[str]:
    return sorted(p.relative_to(REPO_CONFIGS).as_posix() for p in REPO_CONFIGS.rglob("*.yaml"))


def is_inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of this checkout; without network access to fetch hatchling the module is skipped."""
    out = tmp_path_factory.mktemp("wheelhouse")
    attempts = []
    try:
        import hatchling  # noqa: F401 - present: build with it, no index needed
        attempts.append(["--no-build-isolation"])
    except ImportError:
        pass
    attempts.append([])  # build isolation: pip fetches hatchling>=1.21 from the configured index
    failures = []
    for extra in attempts:
        result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", *extra, "-w", out, REPO],
                     cwd=out, timeout=240)
        wheels = sorted(out.glob("gantrain-*.whl"))
        if result.returncode == 0 and len(wheels) == 1:
            return wheels[0]
        failures.append(result.stdout[-1500:] + result.stderr[-3000:])
    if any(sign in text for text in failures for sign in OFFLINE_SIGNS):
        pytest.skip("cannot build the wheel offline: hatchling (the build backend) is not installed and "
                    "pip could not fetch it from an index")
    raise AssertionError("pip wheel failed:\n" + "\n----\n".join(failures))


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (``--system-site-packages``, for torch & co.) with the wheel installed and nothing else."""
    root = tmp_path_factory.mktemp("venv") / "env"
    must(run([sys.executable, "-m", "venv", "--system-site-packages", root], cwd=root.parent, timeout=120),
         "python -m venv")
    if sys.prefix != sys.base_prefix:
        # pytest itself runs in a venv: --system-site-packages reaches only the base interpreter's
        # site-packages, so expose this venv's too (as plain path entries: their .pth files, such as an
        # editable install of gantrain, are not processed).
        (site_packages(root) / "_outer_site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    must(run([python_of(root), "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-input", wheel],
             cwd=root.parent, timeout=180), "pip install WHEEL")
    return root


def bin_dir(root: Path) -> Path:
    return root / ("Scripts" if os.name == "nt" else "bin")


def python_of(root: Path) -> Path:
    return bin_dir(root) / ("python.exe" if os.name == "nt" else "python")


def gantrain_of(root: Path) -> Path:
    return bin_dir(root) / ("gantrain.exe" if os.name == "nt" else "gantrain")


def site_packages(root: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(must(run([python_of(root), "-c", code], cwd=root.parent), "purelib").stdout.strip())


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty working directory that is not (inside) the checkout."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert not is_inside(folder, REPO)
    return folder


def test_wheel_ships_every_config_inside_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        expected = repo_yaml_files()
        assert "gantrain.yaml" in expected and "model/dcgan.yaml" in expected
        missing = [f"gantrain/configs/{name}" for name in expected if f"gantrain/configs/{name}" not in names]
        assert not missing, f"configs missing from {wheel.name}: {missing}"
        for name in expected:  # the packaged copy is the checkout's file, byte for byte
            assert archive.read(f"gantrain/configs/{name}") == (REPO_CONFIGS / name).read_bytes(), name
        packaged = sorted(n.removeprefix("gantrain/configs/") for n in names
                          if n.startswith("gantrain/configs/") and n.endswith(".yaml"))
        assert packaged == expected  # and nothing stale beside them
        assert "gantrain/__init__.py" in names and "gantrain/cli.py" in names
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "gantrain = gantrain.cli:main" in archive.read(entry_points).decode()


def test_venv_imports_its_own_installed_copy(venv: Path, elsewhere: Path) -> None:
    code = ("import gantrain, gantrain.cli as cli; print(gantrain.__file__); print(cli.config_dir()); "
            "print((cli.config_dir() / 'gantrain.yaml').is_file())")
    result = must(run([python_of(venv), "-c", code], cwd=elsewhere), "import gantrain")
    module_file, configs, has_primary = result.stdout.strip().splitlines()[-3:]
    installed = site_packages(venv) / "gantrain"
    assert is_inside(module_file, installed), f"venv imported {module_file}, not its own install in {installed}"
    assert not is_inside(module_file, REPO), f"the source tree was imported: {module_file}"
    assert Path(configs).resolve() == (installed / "configs").resolve()
    assert has_primary == "True"
    assert gantrain_of(venv).is_file()


def test_help_lists_the_config_groups(venv: Path, elsewhere: Path) -> None:
    result = must(run([gantrain_of(venv), "--help"], cwd=elsewhere, timeout=120), "gantrain --help")
    assert "== Configuration groups ==" in result.stdout
    for group in GROUPS:
        options = sorted(p.stem for p in (REPO_CONFIGS / group).glob("*.yaml"))
        assert options, group
        assert f"{group}: {', '.join(options)}" in result.stdout
    assert list(elsewhere.iterdir()) == []  # --help writes nothing


def test_installed_cli_trains_from_any_directory(venv: Path, elsewhere: Path) -> None:
    result = run([gantrain_of(venv), "trainer.max_steps=3", "trainer.progress=false", "device=cpu",
                  "hydra.run.dir=run"], cwd=elsewhere, timeout=240)
    must(result, "gantrain trainer.max_steps=3")
    run_dir = elsewhere / "run"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert list((run_dir / "samples").glob("*.png"))
    assert list((run_dir / "tensorboard").glob("events*"))
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert cfg.trainer.max_steps == 3 and cfg.device.name == "cpu" and cfg.model.name == "dcgan"
    # Hydra records where it read the primary config from: the installed package, not the checkout
    hydra_cfg = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml")
    sources = [s.path for s in hydra_cfg.hydra.runtime.config_sources if s.provider == "main"]
    assert len(sources) == 1
    assert Path(sources[0]).resolve() == (site_packages(venv) / "gantrain" / "configs").resolve()
    assert not is_inside(sources[0], REPO)
