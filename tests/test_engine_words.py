"""The shared engine names no GAN family or preset: what differs between families lives in their recipes."""

from __future__ import annotations

import re
from pathlib import Path

import gantrain
from gantrain.cli import config_dir
from gantrain.registry import RECIPES, load_builtin_parts

ENGINE = Path(gantrain.__file__).parent / "engine"
GENERIC = {"GAN", "GANs"}  # the generic word, as in "every GAN family"


def family_names() -> set[str]:
    load_builtin_parts()
    return {path.stem for path in (config_dir() / "model").glob("*.yaml")} | set(RECIPES.names())


def mentions(text: str, names: set[str]) -> list[str]:
    found = []
    for name in sorted(names):
        for match in re.finditer(rf"(?<![A-Za-z0-9_]){re.escape(name)}s?(?![A-Za-z0-9_])", text, re.IGNORECASE):
            if match.group() not in GENERIC:
                found.append(match.group())
    return found


def test_the_names_are_read_from_the_presets_and_the_registry():
    names = family_names()
    assert {"wgan_gp", "pix2pix", "cyclegan", "progan", "super_resolution", "dcgan"} <= names
    assert mentions("a WGAN-GP critic, then Pix2Pix; every GAN family", names) == ["Pix2Pix", "WGAN"]


def test_no_engine_module_names_a_family_or_preset():
    names = family_names()
    offenders = {path.name: mentions(path.read_text(encoding="utf-8"), names) for path in sorted(ENGINE.glob("*.py"))}
    assert {name: words for name, words in offenders.items() if words} == {}
