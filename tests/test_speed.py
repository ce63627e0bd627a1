"""The loop's speed options: mixed precision, GradScaler, torch.compile, channels-last, CUDA flags, throughput."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import FAST, compose_config, run_cli
from gantrain.engine.acceleration import Precision, compile_networks, set_cuda_flags, to_channels_last
from gantrain.engine.run_log import DATA_SHARE, IMAGES_PER_SECOND, Throughput, speed_text
from gantrain.data.build import build_data
from gantrain.engine.trainer import build_recipe
from gantrain.errors import UserError
from gantrain.recipes.base import NonFiniteUpdate, Recipe
from gantrain.registry import load_builtin_parts
from gantrain.regularizers.gradient_penalty import GradientPenalty

load_builtin_parts()
pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")
WGAN_GP_MLP = ["model=gan", "data=toy2d", "loss=wasserstein", "optim=adam_wgan_gp",
               "+regularizers.gradient_penalty.weight=10", "model.generator.hidden=[32]",
               "model.discriminator.hidden=[32]"]


def recipe_and_batches(overrides: list[str], n_batches: int = 5) -> tuple[Recipe, list[dict[str, torch.Tensor]]]:
    """A recipe exactly as ``gantrain OVERRIDES`` builds it, and a few real batches of its data."""
    cfg = compose_config(*overrides, "device=cpu")
    source = build_data(cfg.data)
    torch.manual_seed(0)
    recipe = build_recipe(cfg, source.spec, CPU)
    batches = [source.dataset.get_batch(torch.arange(i * 32, (i + 1) * 32)) for i in range(n_batches)]
    return recipe, batches


def critic_losses(recipe: Recipe, batches: list[dict[str, torch.Tensor]], precision: str) -> list[float]:
    """loss/d of consecutive critic updates, all inside one autocast block as in the loop."""
    recipe.precision = Precision(precision, CPU)
    torch.manual_seed(1)
    with recipe.precision.autocast():
        return [float(recipe.discriminator_step(batch)["loss/d"]) for batch in batches]


def test_bf16_training_follows_float32_over_consecutive_updates():
    """Autocast's cached low-precision weights must be dropped after each update, or later steps use stale ones."""
    recipe, batches = recipe_and_batches(["model=wgan_gp"])
    reference = critic_losses(copy.deepcopy(recipe), batches, "32")
    mixed = critic_losses(recipe, batches, "bf16")
    assert abs(reference[-1] - reference[0]) > 0.2  # the critic really learns over these updates
    assert mixed == pytest.approx(reference, abs=0.03)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gradient_penalty_under_autocast_uses_true_unscaled_gradients(dtype):
    """A linear critic's penalty is λ(‖w‖−1)² in any precision (no GradScaler factor inside it)."""
    critic = nn.Linear(6, 1)
    with torch.no_grad():
        critic.weight.fill_(0.5)  # ‖w‖ = 0.5·√6
    real, fake = torch.randn(8, 6), torch.randn(8, 6)
    with torch.autocast("cpu", dtype=dtype):
        term, scalars = GradientPenalty(weight=10.0).penalty(lambda x: critic(x).squeeze(1), real, fake)
    expected = 10.0 * (0.5 * 6 ** 0.5 - 1) ** 2
    assert float(term.detach()) == pytest.approx(expected, rel=2e-2)
    assert float(scalars["critic/grad_norm"]) == pytest.approx(0.5 * 6 ** 0.5, rel=1e-2)


def linear_recipe(precision: str, policy: str = "stop") -> Recipe:
    net = nn.Linear(3, 1)
    recipe = Recipe(networks={"net": net}, optimizers={"net": torch.optim.SGD(net.parameters(), lr=0.1)}, schedulers={})
    recipe.precision = Precision(precision, CPU)
    recipe.nonfinite_policy = policy
    return recipe


def overflowing_loss(recipe: Recipe) -> torch.Tensor:
    """A finite loss whose float16 backward overflows once the GradScaler multiplies it by 65536."""
    with recipe.precision.autocast():
        return recipe.networks["net"](torch.ones(4, 3)).sum() * 100.0


def test_float16_overflow_is_skipped_by_the_grad_scaler_not_reported_as_divergence():
    recipe = linear_recipe("16")
    net = recipe.networks["net"]
    before = copy.deepcopy(net.state_dict())
    huge = overflowing_loss(recipe)
    assert recipe.apply_update("net", huge, {}) is False
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the step was skipped
    assert recipe.precision.scales()["amp/scale_net"] == 65536.0 / 2  # and the scale lowered
    assert recipe.skipped_updates["net"] == 0

    assert recipe.apply_update("net", net(torch.ones(4, 3)).sum(), {}) is True  # a normal update goes through
    assert not torch.equal(before["weight"], net.weight)
    assert recipe.state_dict()["grad_scalers"]["net"]["scale"] == 65536.0 / 2  # saved with checkpoints


def test_float16_still_stops_on_a_non_finite_loss():
    recipe = linear_recipe("16")
    loss = recipe.networks["net"](torch.ones(2, 3)).sum() * float("nan")
    with pytest.raises(NonFiniteUpdate):
        recipe.apply_update("net", loss, {"loss/net": loss})


def test_grad_scaler_state_survives_a_checkpoint_round_trip():
    recipe = linear_recipe("16")
    recipe.apply_update("net", overflowing_loss(recipe), {})  # halves the scale
    restored = linear_recipe("16")
    restored.load_state_dict(recipe.state_dict())
    assert restored.precision.scales() == recipe.precision.scales() == {"amp/scale_net": 32768.0}


@pytest.mark.parametrize("value, name", [(32, "32"), ("bf16", "bf16"), (16, "16"), ("fp16", "16")])
def test_precision_names(value, name):
    assert Precision(value).name == name


def test_an_unknown_precision_is_a_user_error_listing_the_choices():
    with pytest.raises(UserError, match=r"unknown trainer.precision '8'; choose from: 32, bf16, 16"):
        Precision(8)


def test_compiled_networks_train_like_eager_ones_and_the_gradient_penalty_still_works():
    """Double backward is not supported through compiled graphs: the penalty must run the critic eagerly."""
    recipe, batches = recipe_and_batches(WGAN_GP_MLP)
    eager = copy.deepcopy(recipe)
    compile_networks(recipe.networks, ["generator", "discriminator"], mode="default", backend="aot_eager")
    for model in (eager, recipe):
        torch.manual_seed(1)
        for batch in batches[:2]:
            model.discriminator_step(batch)
            model.generator_step(batch)
    assert set(recipe.state_dict()["networks"]["discriminator"]) == set(eager.state_dict()["networks"]["discriminator"])
    for name in ("generator", "discriminator"):
        for key, value in eager.networks[name].state_dict().items():
            torch.testing.assert_close(recipe.networks[name].state_dict()[key], value, rtol=1e-4, atol=1e-6)


def test_an_unknown_compile_mode_is_a_user_error():
    with pytest.raises(UserError, match="unknown trainer.compile_mode 'fastest'"):
        compile_networks({"g": nn.Linear(2, 2)}, ["g"], mode="fastest", backend="inductor")


def test_channels_last_networks_and_batches_compute_the_same_updates():
    recipe, batches = recipe_and_batches(["model=dcgan", "model.generator.base_channels=8",
                                          "model.discriminator.base_channels=8"], n_batches=2)
    nhwc = copy.deepcopy(recipe)
    to_channels_last(nhwc.networks.values())
    assert nhwc.networks["discriminator"].net[0].weight.is_contiguous(memory_format=torch.channels_last)
    for model, layout in ((recipe, torch.contiguous_format), (nhwc, torch.channels_last)):
        torch.manual_seed(1)
        for batch in batches:
            model.train_step(lambda b=batch: {"real": b["real"].contiguous(memory_format=layout)})
    for name in ("generator", "discriminator"):
        for key, value in recipe.networks[name].state_dict().items():
            torch.testing.assert_close(nhwc.networks[name].state_dict()[key], value, rtol=1e-4, atol=1e-5)


def test_cudnn_benchmark_and_tf32_are_set_for_cuda_only():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        set_cuda_flags(torch.device("cpu"), cudnn_benchmark=True, tf32=True)
        assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == saved[:2]
        set_cuda_flags(torch.device("cuda"), cudnn_benchmark=True, tf32=True)
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
        set_cuda_flags(torch.device("cuda"), cudnn_benchmark=False, tf32=False)
        assert not torch.backends.cudnn.benchmark and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_throughput_counts_images_of_all_ranks_and_the_share_spent_waiting(monkeypatch):
    clock = iter([0.0, 1.0, 1.5, 2.0, 2.0, 4.0, 4.0])  # start; wait 1.0..1.5; report (and restart) at 2.0, 4.0
    monkeypatch.setattr("gantrain.engine.run_log.time.perf_counter", lambda: next(clock))
    throughput = Throughput(ranks=2)
    with throughput.waiting_for_data():
        batch = {"real": torch.zeros(16, 1, 2, 2)}
    throughput.count(batch)
    report = throughput.report()
    assert report == {IMAGES_PER_SECOND: 16 * 2 / 2.0, DATA_SHARE: 0.5 / 2.0}
    assert throughput.report()[IMAGES_PER_SECOND] == 0.0  # a new interval started
    assert speed_text(3.0, report) == "3.0 it/s  16 img/s  data 25%"


def test_training_reports_images_per_second_and_data_wait_in_tensorboard_and_log(tmp_path):
    from test_train_cli import tensorboard_scalars

    run = tmp_path / "run"
    result = run_cli(*WGAN_GP_MLP, "trainer.max_steps=2", "trainer.log_every=1", "trainer.precision=bf16",
                     f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    scalars = tensorboard_scalars(run)
    assert sorted(scalars[IMAGES_PER_SECOND]) == [1, 2] and min(scalars[IMAGES_PER_SECOND].values()) > 0
    assert all(0 <= share <= 1 for share in scalars[DATA_SHARE].values())
    assert " img/s  data " in result.stderr
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["config"]["trainer"]["precision"] == "bf16"
