"""The README and docs/ cannot drift from the tree: every page is linked, every link resolves, every command composes.

Commands are composed in-process with Hydra's compose API after the argument rewriting ``gantrain`` itself does
(``gantrain.cli``), so the whole file runs in seconds rather than one subprocess per command.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import REPO, compose_config
from gantrain import tasks
from gantrain.cli import check_group_choices, override_key, results_arguments, sample_arguments

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)|!\[[^\]]*\]\((?P<image>[^)\s]+)\)")
FLAGS = {"-m", "--multirun", "--help", "-h", "--cfg", "job", "hydra", "all"}  # what the CLI reads besides overrides
SKIPPED_KEYS = ("resume",)  # gantrain rewrites resume=RUN into the run's saved overrides: it needs a real run


def prose(text: str) -> str:
    """The page without its fenced code blocks (a link-looking string in code is not a link)."""
    return FENCE.sub("", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", prose(page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def links(page: Path) -> list[str]:
    found = LINK.finditer(prose(page.read_text()))
    return [m["target"] or m["image"] for m in found if not re.match(r"^[a-z]+:", m["target"] or m["image"])]


def resolve(page: Path, link: str) -> tuple[Path, str]:
    path, _, anchor = link.partition("#")
    return (page.parent / path).resolve() if path else page, anchor


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    seen, todo = {README}, [README]
    while todo:
        page = todo.pop()
        for link in links(page):
            target, _ = resolve(page, link)
            if target.suffix == ".md" and target.is_file() and target not in seen:
                seen.add(target)
                todo.append(target)
    unreachable = [p.relative_to(REPO).as_posix() for p in PAGES if p not in seen]
    assert not unreachable, f"pages no link from README.md leads to: {unreachable}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for link in links(page):
        target, anchor = resolve(page, link)
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link} (no heading #{anchor} in {target.name})")
    assert not broken, f"{page.name}: {broken}"


def shown_commands(page: Path) -> list[tuple[str, list[str]]]:
    """Each ``gantrain ARGS`` (or ``torchrun ... -m gantrain ARGS``) line of the page's ```bash blocks."""
    commands = []
    for block in FENCE.finditer(page.read_text()):
        if block["lang"] != "bash":
            continue
        for line in block["body"].replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "gantrain" in words and (words[0] == "gantrain" or words[0] == "torchrun"):
                commands.append((line.strip(), words[words.index("gantrain") + 1:]))
    return commands


def variants(args: list[str]) -> list[list[str]]:
    """``-m`` sweeps as single runs: each listed value of each swept key once (the other keys at their first value);
    a sweep with no values to list (``interval(...)``) is left to the sweeper and dropped here."""
    overrides = [a for a in args if a not in FLAGS]
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for arg, override in zip(overrides, parsed):
        if not override.is_sweep_override():
            choices.append([arg])
            continue
        try:
            values = list(override.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - Hydra: "Can only enumerate CHOICE and RANGE sweeps"
            values = []
        choices.append([f"{override.get_key_element()}={value}" for value in values] or [None])
    runs = {tuple(c[0] for c in choices)}
    for i, values in enumerate(choices):
        for value in values[1:]:
            runs.add(tuple(value if j == i else c[0] for j, c in enumerate(choices)))
    return [[a for a in run if a is not None] for run in sorted(runs, key=str)]


def composable(args: list[str]) -> list[str]:
    """What ``gantrain.cli.main`` hands Hydra, without the rewriting that needs a real run folder (resume=)."""
    args = results_arguments(args)
    check_group_choices(args)
    kept = [a for a in args if override_key(a) not in SKIPPED_KEYS]
    return sample_arguments(kept)


COMMANDS = [(page, line, args) for page in PAGES for line, args in shown_commands(page)]
COMPOSED: set[tuple[str, ...]] = set()  # several pages show the same command: compose it once


def test_the_pages_show_commands() -> None:
    assert len(COMMANDS) > 50 and {page for page, _, _ in COMMANDS} >= {README, REPO / "docs" / "sweeps.md"}


@pytest.mark.parametrize("page, line, args", COMMANDS,
                         ids=[f"{p.name}:{line[:60]}" for p, line, _ in COMMANDS])
def test_every_command_shown_composes(page: Path, line: str, args: list[str]) -> None:
    for run in variants(args):
        overrides = composable(run)
        if tuple(overrides) in COMPOSED:
            continue
        try:
            cfg = compose_config(*overrides, hydra=True)
        except Exception as error:  # noqa: BLE001 - name the page and the line, then Hydra's reason
            raise AssertionError(f"{page.name}: `{line}` does not compose: {error}") from error
        assert cfg.task in tasks.names()
        COMPOSED.add(tuple(overrides))
