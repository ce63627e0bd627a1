"""scripts/bench.py: one tiny run reports every variant, a positive speed for each, and both ratios.

It asserts what the benchmark reports, never how fast anything is.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def load_script(name: str) -> ModuleType:
    """Import scripts/NAME.py (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("one_torch_thread")  # restores torch's thread count that --threads 1 changes
def test_bench_reports_every_variant_with_ratios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_script("bench")
    out = tmp_path / "bench.json"
    report = bench.main(["--presets", "gan", "--steps", "3", "--rounds", "2", "--threads", "1",
                         "--dataset-size", "1024", "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    (workload,) = report["workloads"]
    assert workload["workload"] == "gan" and workload["steps"] == 3 and workload["rounds"] == 2
    assert set(workload["variants"]) == {"bare", "trainer", "reference"}
    for variant in workload["variants"].values():
        assert variant["images_per_s"] > 0
        assert len(variant["rounds_images_per_s"]) == 2
        assert variant["peak_rss_mb"] > 0
    assert workload["variants"]["trainer"]["startup_s"] > 0 and workload["variants"]["trainer"]["finish_s"] > 0
    assert set(workload["ratios"]) == {"trainer/bare", "trainer/reference"}
    assert all(ratio > 0 for ratio in workload["ratios"].values())
    assert "(b)/(a)" in capsys.readouterr().out  # the table
