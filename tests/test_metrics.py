"""Sample-quality metrics: each against an independent computation or a known value, the reference cache,
the offline Inception error, and the metrics of a training run / ``task=eval`` end to end.

Inception is never loaded: a small stand-in feature network (registered here, or written as TorchScript)
takes its place, and downloads are switched off (``GANTRAIN_OFFLINE=1``) so nothing touches the network.
"""

from __future__ import annotations

import json
import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import FAST, REPO, run_cli
from gantrain.data.source import DataSpec
from gantrain.data.toy2d import mixture_modes
from gantrain.engine.evaluation import Evaluator
from gantrain.data.build import build_data
from gantrain.errors import UserError
from gantrain.metrics.base import GeneratedBatch, Reference, accumulate_moments
from gantrain.metrics.coverage import mode_statistics
from gantrain.metrics.features import INCEPTION_FILE, inception_features
from gantrain.metrics.fid import FrechetDistance
from gantrain.metrics.inception_score import InceptionScore
from gantrain.metrics.kid import KernelDistance
from gantrain.metrics.precision_recall import precision_recall
from gantrain.registry import NETWORKS, load_builtin_parts

OFFLINE = {"GANTRAIN_OFFLINE": "1"}


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path):
    """No test may fetch Inception weights, nor find a copy a developer happens to have cached."""
    monkeypatch.setenv("GANTRAIN_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


class PooledFeatures(nn.Module):
    """A stand-in for Inception: fixed random 3x3 filters, pooled over 2x2 cells (16 features); counts its calls."""

    calls = 0

    def __init__(self, data_spec) -> None:
        super().__init__()
        self.conv = nn.Conv2d(data_spec.shape[0], 4, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        PooledFeatures.calls += 1
        return nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(images)), 2).flatten(1)


@pytest.fixture
def pooled_features(monkeypatch):
    """Registers the stand-in network for one test only (other tests list every registered network)."""
    load_builtin_parts()
    monkeypatch.setitem(NETWORKS._entries, "test_pooled_features", PooledFeatures)


def fid_of(real: torch.Tensor, generated: torch.Tensor) -> float:
    metric = FrechetDistance()
    metric.start()
    for block in generated.split(64):  # batch by batch, as during training
        metric.update(GeneratedBatch(block, features=block))
    return metric.compute(Reference(moments=accumulate_moments(None, real)))["fid"]


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def gaussian_features(n: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator) / dim ** 0.5
    return torch.randn(n, dim, generator=generator, dtype=torch.float64) @ mixing.double()


def test_frechet_distance_matches_scipy_sqrtm():
    real, generated = gaussian_features(600, 8, 0), gaussian_features(500, 8, 1) * 1.3 + 0.2
    expected = scipy_frechet(real.numpy(), generated.numpy())
    assert fid_of(real, generated) == pytest.approx(expected, rel=1e-4)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    features = gaussian_features(1000, 8, 2)
    assert abs(fid_of(features, features)) < 1e-4
    distances = [fid_of(features, features + shift) for shift in (0.25, 0.5, 1.0)]
    assert distances == sorted(distances) and distances[0] > 0.1
    assert distances[2] == pytest.approx(8 * 1.0 ** 2, rel=1e-3)  # a pure shift by 1 in 8 dimensions: |Δμ|² = 8


def kid_of(real: torch.Tensor, generated: torch.Tensor) -> float:
    metric = KernelDistance(subsets=50, subset_size=200)
    metric.start()
    metric.update(GeneratedBatch(generated, features=generated))
    torch.manual_seed(0)
    return metric.compute(Reference(features=real))["kid"]


def test_kid_of_identical_sets_is_zero_without_bias():
    features = gaussian_features(1000, 16, 3).float()
    same, shifted = kid_of(features, features), kid_of(features, features + 0.5)
    # ≈ 0: only the samples the two random subsets share bias it (slightly negative), far below a small shift's
    assert abs(same) < 0.03 * shifted and shifted > 0.5


def inception_score(logits: torch.Tensor) -> float:
    metric = InceptionScore(splits=1)
    metric.start()
    metric.update(GeneratedBatch(logits, logits=logits))
    return metric.compute(Reference())["is"]


def test_inception_score_is_one_for_uniform_predictions_and_k_for_confident_spread_ones():
    assert inception_score(torch.zeros(100, 10)) == pytest.approx(1.0, abs=1e-5)
    confident = 50.0 * nn.functional.one_hot(torch.arange(200) % 10, 10).float()
    assert inception_score(confident) == pytest.approx(10.0, rel=1e-4)


def test_precision_recall_of_identical_and_of_far_apart_sets():
    features = torch.randn(400, 8, generator=torch.Generator().manual_seed(4))
    assert precision_recall(features, features.clone(), k=3) == (1.0, 1.0)
    assert precision_recall(features, features + 100.0, k=3) == (0.0, 0.0)
    precision, recall = precision_recall(features, features[:200] * 0.1, k=3)  # collapsed near the middle
    assert precision > 0.9 and recall < 0.5


def test_mode_coverage_of_perfect_and_of_collapsed_samples():
    centres, std = mixture_modes("25gaussians")
    real = build_data(OmegaConf.create({"name": "25gaussians", "num_samples": 5000, "seed": 1})).dataset.points
    perfect = mode_statistics(real, centres, std)
    assert perfect["coverage"] == 25 and perfect["mode_kl"] < 0.01
    assert perfect["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)  # P(χ²₂ ≤ 3²): 98.9% of a 2-D Gaussian
    collapsed = centres[7] + std * torch.randn(5000, 2, generator=torch.Generator().manual_seed(0))
    stats = mode_statistics(collapsed, centres, std)
    assert stats["coverage"] == 1 and stats["mode_kl"] == pytest.approx(math.log(25))
    assert mixture_modes("swissroll") is None


# --- the evaluator: reference statistics and their cache -----------------------------------------------------


def metric_options(tmp_path: Path, **changes) -> OmegaConf:
    options = OmegaConf.load(REPO / "configs" / "gantrain.yaml").metrics
    options.merge_with({"names": ["fid", "kid", "precision_recall"], "features": "test_pooled_features",
                        "eval_samples": 64, "batch_size": 32, "cache_dir": str(tmp_path / "cache"),
                        "kid": {"subsets": 5, "subset_size": 32}, **changes})
    return options


def evaluator_for(tmp_path: Path, data: dict, **changes) -> Evaluator:
    load_builtin_parts()
    data_cfg = OmegaConf.create(data)
    return Evaluator(metric_options(tmp_path, **changes), build_data(data_cfg), data_cfg, torch.device("cpu"))


def noise_sampler(shape):
    return lambda n, generator: torch.rand(n, *shape, generator=generator) * 2 - 1


def test_reference_statistics_are_cached_and_invalidated_by_data_or_resolution(tmp_path, mnist_root, pooled_features):
    digits = {"name": "digits", "image_size": 16}
    first = evaluator_for(tmp_path, digits)
    PooledFeatures.calls = 0
    values = first.evaluate(noise_sampler((1, 16, 16)))
    real_batches = math.ceil(1797 / 32)
    assert PooledFeatures.calls == real_batches + 2  # the whole dataset once, then 64 generated in 2 batches
    assert set(values) == {f"{name}@test_pooled_features" for name in ("fid", "kid", "kid_std", "precision", "recall")}
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "cache").iterdir()) == ["features.pt", "moments.pt"]

    PooledFeatures.calls = 0
    again = evaluator_for(tmp_path, digits).evaluate(noise_sampler((1, 16, 16)))
    assert PooledFeatures.calls == 2  # a new process would read the cache: only generated samples are embedded
    assert again == values  # and the numbers are the same, evaluation has its own seed

    for data in ({"name": "digits", "image_size": 8},  # another resolution
                 {"name": "mnist", "root": str(mnist_root), "download": False, "train": True, "image_size": 16}):
        PooledFeatures.calls = 0
        evaluator = evaluator_for(tmp_path, data)
        evaluator.evaluate(noise_sampler((1, data["image_size"], data["image_size"])))
        assert PooledFeatures.calls > 2, data  # recomputed: a different cache key
    assert len(list((tmp_path / "cache").iterdir())) == 6


def test_the_best_value_is_tracked_in_the_right_direction(tmp_path, pooled_features):
    digits = {"name": "digits", "image_size": 16}
    for best, values, expected_steps in (("fid", [3.0, 2.0, 2.5], [1, 2]), ("precision", [0.2, 0.1, 0.3], [1, 3])):
        evaluator = evaluator_for(tmp_path, digits, best=best)
        name = f"{best}@test_pooled_features"
        improved = [step for step, value in enumerate(values, 1)
                    if evaluator.record(step, {name: value}, 0.0, tmp_path / f"{best}.jsonl")]
        assert improved == expected_steps
    with pytest.raises(UserError, match="metrics.best=is is not a value"):
        evaluator_for(tmp_path, digits, best="is")


# --- Inception weights offline -------------------------------------------------------------------------------


def test_missing_inception_weights_offline_is_a_one_line_error_naming_the_file(tmp_path):
    spec = build_data(OmegaConf.create({"name": "digits", "image_size": 16})).spec
    with pytest.raises(UserError) as caught:
        inception_features(None, True, spec, torch.device("cpu"))  # GANTRAIN_OFFLINE=1 overrides download=true
    message = str(caught.value)
    assert INCEPTION_FILE in message and "metrics.inception_weights=PATH" in message
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in message and "\n" not in message
    with pytest.raises(UserError, match="no such file"):
        inception_features(str(tmp_path / "nowhere.pth"), True, spec, torch.device("cpu"))


def test_a_failed_inception_download_is_a_one_line_error(monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.delenv("GANTRAIN_OFFLINE")
    monkeypatch.setattr(fidelity, "load_state_dict_from_url", refuse)
    spec = build_data(OmegaConf.create({"name": "digits", "image_size": 16})).spec
    with pytest.raises(UserError, match="the download failed.*no network in this test.*metrics.inception_weights"):
        inception_features(None, True, spec, torch.device("cpu"))


def test_default_metrics_try_the_download_and_skip_inception_where_there_is_no_internet(monkeypatch, capsys):
    """task=eval's default metrics on a machine that may download but cannot: skipped with a warning (not an
    error at evaluation time); where the download works, the file lands in the hub cache and they stay."""
    from gantrain.tasks.eval import evaluation_metrics
    from gantrain.metrics.features import INCEPTION_WEIGHTS

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    def deliver(url, destination, **kwargs):
        assert url == INCEPTION_WEIGHTS.url
        Path(destination).write_bytes(b"weights")

    monkeypatch.delenv("GANTRAIN_OFFLINE")
    trained = OmegaConf.create({"metrics": {"names": [], "features": "inception", "inception_weights": None,
                                            "download": True}})
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    assert list(evaluation_metrics(OmegaConf.create({}), trained, ["l1", "fid", "kid"]).names) == ["l1"]
    assert "warning: skipping fid, kid" in capsys.readouterr().err
    monkeypatch.setattr(torch.hub, "download_url_to_file", deliver)
    assert list(evaluation_metrics(OmegaConf.create({}), trained, ["l1", "fid", "kid"]).names) == ["l1", "fid", "kid"]
    assert INCEPTION_WEIGHTS.cached.is_file()


def test_cli_without_inception_weights_exits_2_at_once(tmp_path):
    result = run_cli("model=gan", "trainer.max_steps=2", "metrics.names=[fid]", f"hydra.run.dir={tmp_path / 'r'}",
                     *FAST, cwd=tmp_path, check=False, timeout=120,
                     env={**OFFLINE, "TORCH_HOME": str(tmp_path / "torch_home")})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and INCEPTION_FILE in lines[0]
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()  # refused before training


# --- end to end ----------------------------------------------------------------------------------------------


def write_torchscript_features(path: Path) -> Path:
    """A TorchScript feature network as a user would export one: 1-channel images -> 8 features."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.warns(FutureWarning):  # TorchScript is deprecated, but still what users have
        torch.jit.save(torch.jit.script(network), str(path))
    return path


def test_training_logs_metrics_keeps_best_and_eval_task_writes_json(tmp_path):
    features = write_torchscript_features(tmp_path / "tiny_net.pt")
    run = tmp_path / "run"
    common = [f"metrics.features={features}", f"metrics.cache_dir={tmp_path / 'cache'}", "metrics.eval_samples=120",
              "metrics.kid.subset_size=50", "metrics.kid.subsets=10"]
    run_cli("model=gan", "model.generator.hidden=[32]", "model.discriminator.hidden=[32]", "trainer.max_steps=5",
            "metrics.names=[fid,kid,precision_recall]", "metrics.eval_every=2", "metrics.best=fid", *common,
            f"hydra.run.dir={run}", *FAST, cwd=tmp_path, env=OFFLINE)
    entries = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in entries] == [2, 4, 5]  # every 2 steps, and at the end
    assert {"fid@tiny_net", "kid@tiny_net", "precision@tiny_net", "recall@tiny_net"} <= set(entries[0])
    assert all(e["eval_samples"] == 120 and e["features"] == "tiny_net" for e in entries)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    best_step = min(entries, key=lambda e: e["fid@tiny_net"])["step"]
    assert best["step"] == best_step and best["evaluation"]["best"]["step"] == best_step
    from test_train_cli import tensorboard_scalars

    assert sorted(tensorboard_scalars(run)["metrics/fid@tiny_net"]) == [2, 4, 5]

    result = run_cli("task=eval", f"checkpoint={run}", "metrics.names=[fid,kid]", *common, "device=cpu",
                     cwd=tmp_path, env=OFFLINE)
    assert "fid@tiny_net" in result.stdout and "kid@tiny_net" in result.stdout and "┃" in result.stdout
    report = json.loads((run / "checkpoints" / "last.metrics.json").read_text())
    assert report["step"] == 5 and report["features"] == "tiny_net" and report["eval_samples"] == 120
    assert report["values"]["fid@tiny_net"] == pytest.approx(entries[-1]["fid@tiny_net"], rel=1e-5)
    assert not (tmp_path / "outputs").exists()  # eval makes no run folder


def test_toy_coverage_during_training_leaves_training_unchanged(tmp_path):
    common = ["model=gan", "data=toy2d", "data.name=8gaussians", "trainer.max_steps=6", *FAST]
    run_cli(*common, "metrics.names=[coverage]", "metrics.eval_every=3", "metrics.eval_samples=800",
            "metrics.best=coverage", f"hydra.run.dir={tmp_path / 'measured'}", cwd=tmp_path, env=OFFLINE)
    run_cli(*common, f"hydra.run.dir={tmp_path / 'plain'}", cwd=tmp_path, env=OFFLINE)
    entries = [json.loads(line) for line in (tmp_path / "measured" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in entries] == [3, 6]
    assert all(0 <= e["coverage"] <= 8 and 0 <= e["high_quality"] <= 1 and e["mode_kl"] >= 0 for e in entries)
    assert (tmp_path / "measured" / "checkpoints" / "best.pt").is_file()
    measured = torch.load(tmp_path / "measured" / "checkpoints" / "last.pt", weights_only=True)["recipe"]["networks"]
    plain = torch.load(tmp_path / "plain" / "checkpoints" / "last.pt", weights_only=True)["recipe"]["networks"]
    for name, state in plain.items():  # evaluating draws no random numbers from the training's streams
        assert all(torch.equal(value, measured[name][key]) for key, value in state.items()), name


METRIC_INPUTS = [
    (["metrics.names=[fidd]"], "unknown metric 'fidd'"),
    (["metrics.names=[coverage]"], "needs a Gaussian-mixture toy dataset"),
    (["data=toy2d", "metrics.names=[kid]"], "Inception features need 1- or 3-channel images"),
    (["data=toy2d", "metrics.names=[coverage]", "metrics.best=fid"], "metrics.best=fid is not a value"),
    (["data=toy2d", "metrics.names=[coverage]", "metrics.eval_every=0"], "metrics.eval_every must be a positive"),
    (["metrics.names=[fid]", "metrics.features=/no/such.pt"], "neither a file nor a registered network"),
    (["metrics.names=[fid]", "metrics.inception_weights=/no/such.pth"], "no such file"),
    (["task=eval"], "task=eval needs checkpoint="),
]


@pytest.mark.parametrize("args,message", METRIC_INPUTS, ids=[" ".join(a) for a, _ in METRIC_INPUTS])
def test_bad_metric_input_is_one_line_exit_2(args, message, tmp_path):
    result = run_cli("model=gan", *args, "trainer.max_steps=1", "trainer.progress=false",
                     f"hydra.run.dir={tmp_path / 'r'}", "device=cpu", cwd=tmp_path, check=False, env=OFFLINE)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("gantrain: error: ") and message in lines[0], result.stderr


def test_a_given_inception_weights_file_loads_and_embeds_images(tmp_path, monkeypatch):
    """The real Inception path, end to end but for the weight values: a file in torch-fidelity's format
    (random weights, since none can be downloaded here) given as metrics.inception_weights embeds
    greyscale [-1, 1] images into 2048 pool features and 1008 logits."""
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity_inception
    from torchmetrics.image.fid import NoTrainInceptionV3

    with monkeypatch.context() as patch:  # build the architecture once without any weights to load
        patch.setattr(fidelity_inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(fidelity_inception.FeatureExtractorInceptionV3, "load_state_dict",
                      lambda self, state, strict=True: None)
        donor = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048", "logits_unbiased"])
    weights = tmp_path / INCEPTION_FILE
    torch.save(donor.state_dict(), weights)

    features = inception_features(str(weights), download=False, spec=DataSpec((1, 28, 28)),
                                  device=torch.device("cpu"))
    pooled, logits = features(torch.rand(3, 1, 28, 28) * 2 - 1)
    assert features.is_standard
    assert pooled.shape == (3, 2048) and logits.shape == (3, 1008)
    assert torch.isfinite(pooled).all() and torch.isfinite(logits).all()
    first = {k: v for k, v in donor.state_dict().items() if v.is_floating_point()}
    loaded = dict(features.network.__self__.state_dict())  # network is the module's two-output forward
    assert all(torch.equal(value, loaded[key]) for key, value in first.items())  # the file's weights, not others
