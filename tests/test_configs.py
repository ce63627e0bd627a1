"""The YAML under configs/ composes instead of copying, and what it picks for the user is visible."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from conftest import compose_config
from gantrain import cli
from gantrain.tasks import train
from gantrain.cli import config_dir

CONFIGS = config_dir()
PAIRINGS = sorted(p.stem for p in (CONFIGS / "pairing").glob("*.yaml"))
# a name users type that only includes another file, and why it exists
ALIASES = {"optim/adam_wgan_gp_images.yaml": "wgan_gp picks its optimizer by data.kind (points: the toy code's); "
                                            "optim=adam_wgan_gp stays the name to type"}


def content(path: Path) -> dict:
    """A config file's settings, comments and layout aside."""
    return OmegaConf.to_container(OmegaConf.load(path))


def test_no_config_file_is_a_copy_of_another_or_a_stub() -> None:
    """Two files with the same settings should be one file; a file that only includes another should not exist."""
    files = sorted(p for p in CONFIGS.rglob("*.yaml") if "hydra" not in p.parts)
    seen: dict[str, Path] = {}
    for path in files:
        settings = content(path)
        name = path.relative_to(CONFIGS).as_posix()
        assert settings.keys() - {"defaults"} or name in ALIASES, f"{name} only includes other files"
        key = repr(settings)
        assert key not in seen, f"{name} repeats {seen[key].relative_to(CONFIGS)}"
        seen[key] = path


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_the_pairing_applied_is_named_in_the_composed_config(pairing: str) -> None:
    model, data = next((m, pairing[len(m) + 1:]) for m in cli.group_options("model") if pairing.startswith(f"{m}_")
                       and pairing[len(m) + 1:] in cli.group_options("data"))
    assert compose_config(f"model={model}", f"data={data}").pairing == pairing
    assert compose_config(f"model={model}", "data=toy2d" if data != "toy2d" else "data=digits").pairing is None


def test_the_log_says_which_pairing_was_applied(monkeypatch, caplog, tmp_path: Path) -> None:
    class NoTraining:  # the task up to the training itself
        def __init__(self, *args) -> None:
            pass

        def fit(self) -> dict[str, float]:
            return {}

    monkeypatch.setattr("gantrain.tasks.train.Trainer", NoTraining)
    cfg = compose_config("model=progan", "data=digits", hydra=True)
    cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        with caplog.at_level(logging.INFO, logger="gantrain"):
            train.run(cfg)
    finally:
        HydraConfig.instance().cfg = None
    assert "applied configs/pairing/progan_digits.yaml" in caplog.text


@pytest.mark.parametrize("gan, base", [("srgan", "srresnet"), ("esrgan", "rrdbnet")])
def test_a_gan_super_resolution_preset_is_its_psnr_preset_plus_the_gan_stage(gan: str, base: str) -> None:
    assert base in content(CONFIGS / "model" / f"{gan}.yaml")["defaults"]  # built on it, not copied from it
    stage, psnr = compose_config(f"model={gan}", "data=sr"), compose_config(f"model={base}", "data=sr")
    assert stage.model.generator.name == psnr.model.generator.name and stage.metrics == psnr.metrics
    assert stage.model.discriminator is not None and psnr.model.discriminator is None
