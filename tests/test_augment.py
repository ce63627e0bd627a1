"""Augmentation of what discriminators see (``augment=none|diffaugment|ada``): the transforms, ADA's p, every
preset training with each, exact resume and the one-line errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from conftest import FAST, assert_same_training_state, compose_config, flatten_state, run_cli
from gantrain.augment.ada import PIPELINES, AdaptiveAugment
from gantrain.augment.base import Augmentation, build_augmentation
from gantrain.augment.diffaugment import POLICIES, DiffAugment
from gantrain.cli import config_dir
from gantrain.data.build import build_data
from gantrain.data.source import DataSpec
from gantrain.data.stream import BatchStream
from gantrain.engine.trainer import Trainer, build_recipe
from gantrain.errors import UserError
from gantrain.registry import LOSSES
from gantrain.regularizers.base import Regularizer
from test_progan import TINY as TINY_PROGAN
from test_super_resolution import write_photos
from test_translation import TINY_CYCLEGAN, TINY_PIX2PIX, write_side_by_side, write_unpaired

CPU = torch.device("cpu")
TINY_DCGAN = ["model.generator.base_channels=8", "model.discriminator.base_channels=8"]
IMAGES = DataSpec(shape=(3, 16, 16))
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def composed(*overrides: str) -> DictConfig:
    return compose_config(*FAST, *overrides)


def every_augmentation() -> list[Augmentation]:
    """Each DiffAugment policy alone and each ADA pipeline at p=1: every transform there is."""
    return [DiffAugment([policy]) for policy in POLICIES] + [AdaptiveAugment(p=1.0, pipeline=name) for name in PIPELINES]


# --- the transforms ----------------------------------------------------------------------------------------

def test_zero_strength_is_the_identity() -> None:
    images = torch.randn(6, 3, 16, 16)
    for augmentation in (Augmentation(), DiffAugment([]), AdaptiveAugment(p=0.0), AdaptiveAugment()):
        assert torch.equal(augmentation(images, real=True), images)
    none = Augmentation()
    none(images, real=True)
    assert none.take_shown() is None  # augment=none: no grid of "augmented" reals
    assert torch.equal(AdaptiveAugment(p=0.0)(images, images[:, :1]), torch.cat([images, images[:, :1]], 1))


def test_augmentations_change_images_and_pass_finite_gradients_through_every_policy() -> None:
    torch.manual_seed(0)
    for augmentation in every_augmentation():
        for channels in (1, 3):
            images = torch.randn(8, channels, 16, 16, requires_grad=True)
            out = augmentation(images)
            assert out.shape == images.shape and not torch.equal(out, images), augmentation
            (out * torch.randn_like(out)).sum().backward()
            assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0, augmentation


def test_a_pair_gets_one_transform() -> None:
    """pix2pix's input and output: the same geometry; colour on each tensor's own channels."""
    torch.manual_seed(0)
    images = torch.randn(8, 3, 16, 16)
    for augmentation in every_augmentation():
        first, second = augmentation(images, images).split(3, 1)
        assert torch.allclose(first, second), augmentation
    for augmentation in (DiffAugment(["translation", "cutout"]), AdaptiveAugment(p=1.0, pipeline="bg")):
        rgb, grey = augmentation(images, images[:, :1]).split([3, 1], 1)  # geometric only: channel by channel
        assert torch.allclose(rgb[:, :1], grey), augmentation


def test_diffaugment_translation_and_cutout_follow_the_paper() -> None:
    """Shifts by up to 1/8 of the size with zeros shifted in; cutout zeroes a square of half the size."""
    torch.manual_seed(0)
    ones = torch.ones(64, 1, 16, 16)
    shifted = DiffAugment(["translation"])(ones)
    zero_rows = (shifted == 0).all(dim=3).sum(dim=(1, 2))
    assert zero_rows.max() == 2 and set(zero_rows.tolist()) == {0, 1, 2}  # 16 / 8 = 2 rows at most
    cut = DiffAugment(["cutout"])(ones)
    assert ((cut == 0).sum(dim=(1, 2, 3)) <= 64).all() and (cut == 0).sum(dim=(1, 2, 3)).max() == 64  # 8x8


def test_ada_p_rises_above_the_target_and_falls_below_it_at_the_configured_speed() -> None:
    ada = AdaptiveAugment(target=0.6, interval=4, speed_kimg=1)  # 1000 images take p from 0 to 1
    batch = 25
    step_change = batch * 4 / 1000  # one adjustment: the images of 4 steps
    for steps in range(1, 13):  # r_t = 1 > 0.6: D overfits
        ada.observe(torch.ones(batch, 1))
        ada.end_step()
        assert ada.p == pytest.approx(step_change * (steps // 4))
    assert ada.scalars() == {"augment/p": pytest.approx(3 * step_change), "augment/rt": 1.0}
    for _ in range(8):  # r_t = 0.2: below the target
        ada.observe(torch.tensor([[1.0], [-1.0], [-1.0], [1.0], [-1.0]]).repeat(5, 1))  # 2 of 5 positive
        ada.end_step()
    assert ada.p == pytest.approx(step_change) and ada.rt == pytest.approx(-0.2)
    for _ in range(40):
        ada.observe(-torch.ones(batch, 1))
        ada.end_step()
    assert ada.p == 0.0  # clamped
    for _ in range(4 * 20):
        ada.observe(torch.ones(100, 4, 4))  # PatchGAN scores: every score counts for r_t, every image for speed
        ada.end_step()
    assert ada.p == 1.0
    fixed = AdaptiveAugment(p=0.3)
    for _ in range(8):
        fixed.observe(torch.ones(batch, 1))
        fixed.end_step()
    assert fixed.p == 0.3 and fixed.rt == 1.0  # a fixed p is not adapted; r_t is still measured

    least_squares = AdaptiveAugment(interval=1)  # LSGAN's targets 0 and 1: "real" is above 0.5, not above 0
    generated = torch.tensor([0.2, -3.0])
    least_squares.observe(torch.tensor([0.8, 0.7, 0.6, 0.3]), LOSSES.build("lsgan").decision_boundary(generated))
    least_squares.end_step()
    assert least_squares.rt == 0.5 and LOSSES.build("nonsaturating").decision_boundary(generated) == 0
    critic = AdaptiveAugment(interval=1)  # a Wasserstein critic has no fixed zero: above the generated mean
    critic.observe(torch.tensor([-1.0, -1.2, -1.3, -2.0]), LOSSES.build("wasserstein").decision_boundary(generated))
    critic.end_step()
    assert critic.rt == 0.5

    restored = AdaptiveAugment(target=0.6, interval=4, speed_kimg=1)
    restored.load_state_dict(ada.state_dict())
    assert flatten_state(restored.state_dict()).keys() == flatten_state(ada.state_dict()).keys()
    assert restored.p == ada.p and restored.steps == ada.steps


@pytest.mark.parametrize("overrides, message", [
    (["augment.name=flip"], "unknown augmentation 'flip'; choose from: ada, diffaugment, none"),
    (["augment=diffaugment", "augment.policy=[color,cutt]"], "unknown DiffAugment policy (augment.policy) 'cutt'; "
                                                             "choose from: color, translation, cutout"),
    (["augment=diffaugment", "augment.policy=color"], "augment.policy must be a list"),
    (["augment=ada", "augment.pipeline=bgcf"], "unknown ADA pipeline (augment.pipeline) 'bgcf'"),
    (["augment=ada", "augment.target=1.2"], "augment.target is the r_t that p steers to: above 0 and below 1"),
    (["augment=ada", "augment.target=0"], "augment.target"),
    (["augment=ada", "augment.p=1.5"], "augment.p is a probability: 0..1"),
    (["augment=ada", "augment.p=-0.1"], "augment.p"),
    (["augment=ada", "augment.interval=0"], "augment.interval must be a positive integer"),
    (["augment=ada", "augment.speed_kimg=0"], "augment.speed_kimg"),
    (["augment=ada", "+augment.strength=1"], "augmentation 'ada' has no option 'strength'"),
])
def test_bad_options_are_one_line_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(UserError) as error:
        build_augmentation(composed(*overrides).augment, IMAGES)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_points_data_is_refused_in_one_line(tmp_path: Path) -> None:
    failed = run_cli("data=toy2d", "augment=diffaugment", "trainer.max_steps=1", cwd=tmp_path, check=False)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        "gantrain: error: augment=diffaugment transforms images, but this data is not images (real [2]); "
        "use augment=none"]


# --- in the recipes -----------------------------------------------------------------------------------------

class Recording(Regularizer):
    """Keeps what a penalty is given."""

    seen: list[torch.Tensor]

    def penalty(self, critic, real, fake):
        self.seen = [real, fake]
        return None


def test_gan_recipe_augments_what_d_sees_feeds_ada_and_saves_p() -> None:
    cfg = composed("model=dcgan", *TINY_DCGAN, "trainer.batch_size=16", "augment=ada", "augment.interval=1",
                   "augment.p=0.5")
    source = build_data(cfg.data)
    torch.manual_seed(0)
    recipe = build_recipe(cfg, source.spec, CPU)
    assert isinstance(recipe.augmentation, AdaptiveAugment)
    recording = Recording()
    recipe.regularizers = [recording]
    observed = []
    observe = recipe.augmentation.observe
    recipe.augmentation.observe = lambda scores, boundary: (observed.append(scores.shape), observe(scores, boundary))
    stream = BatchStream(source.dataset, 16, 0, CPU)
    for _ in range(3):
        batch = stream.next()
        recipe.discriminator_step(batch)
        recipe.end_step()
    assert observed == [(16,)] * 3  # D's scores on the reals of each of its steps
    assert recipe.augmentation.rt is not None
    real_seen = recording.seen[0]
    assert not torch.equal(real_seen, batch["real"])  # the penalties see the augmented reals D scored
    recipe.generator_step(batch)
    grads = [p.grad for p in recipe.generator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and sum(g.abs().sum() for g in grads) > 0
    saved = recipe.state_dict()["augment"]
    assert saved["p"] == 0.5 and saved["steps"] == 3 and saved["rt"] == recipe.augmentation.rt
    shown, nrow = recipe.augmentation.take_shown()
    assert shown.shape == batch["real"].shape and nrow == 4 and recipe.augmentation.take_shown() is None


@pytest.fixture(scope="module")
def image_roots(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("augment_data")
    return {"paired": write_side_by_side(root / "paired", {"train": 4}),
            "unpaired": write_unpaired(root / "unpaired", {"trainA": 4, "trainB": 4}),
            "sr": write_photos(root / "sr", 4, (24, 24))}


TINY_SR = ["data=sr", "data.hr_size=16", "data.scale=4"]
PRESETS = {  # every model preset, tiny; image-input ones on files written in their layouts
    "gan": ["model=gan", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]"],
    "dcgan": ["model=dcgan", *TINY_DCGAN],
    "wgan": ["model=wgan", *TINY_DCGAN, "model.n_critic=2"],
    "wgan_gp": ["model=wgan_gp", *TINY_DCGAN, "model.n_critic=2"],
    "cgan": ["model=cgan", *TINY_DCGAN],
    "cgan_mlp": ["model=cgan_mlp", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]"],
    "progan": [*TINY_PROGAN],
    "pix2pix": [*TINY_PIX2PIX, "data.root={paired}"],
    "cyclegan": [*TINY_CYCLEGAN, "data.root={unpaired}"],
    "srresnet": ["model=srresnet", *TINY_SR, "model.generator.features=4", "model.generator.blocks=1",
                 "data.root={sr}"],
    "rrdbnet": ["model=rrdbnet", *TINY_SR, "model.generator.features=4", "model.generator.blocks=1",
                "model.generator.growth=4", "data.root={sr}"],
    "srgan": ["model=srgan", *TINY_SR, "model.generator.features=4", "model.generator.blocks=1",
              "model.discriminator.base_channels=4", "model.discriminator.dense=8", "model.perceptual.weight=0",
              "model.pretrain.steps=0",
              "data.root={sr}"],
    "esrgan": ["model=esrgan", *TINY_SR, "model.generator.features=4", "model.generator.blocks=1",
               "model.generator.growth=4", "model.discriminator.base_channels=4", "model.discriminator.dense=8",
               "model.perceptual.weight=0", "model.pretrain.steps=0", "data.root={sr}"],
}


def test_every_model_preset_is_covered() -> None:
    assert set(PRESETS) == {path.stem for path in (config_dir() / "model").glob("*.yaml")}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains_two_steps_with_each_augmentation(preset: str, image_roots: dict[str, Path]) -> None:
    overrides = [item.format(**image_roots) for item in PRESETS[preset]]
    cfg = composed(*overrides, "trainer.batch_size=4", "augment=diffaugment")
    source = build_data(cfg.data)
    torch.manual_seed(0)
    recipe = build_recipe(cfg, source.spec, CPU)
    stream = BatchStream(source.dataset, 4, 0, CPU)
    for augment in ("diffaugment", "ada"):  # one recipe, each augmentation in turn, as built from its config
        recipe.augmentation = build_augmentation(composed(f"augment={augment}", "augment.p=0.5").augment
                                                 if augment == "ada" else cfg.augment, source.spec)
        for _ in range(2):
            scalars = recipe.train_step(stream.next)
            recipe.end_step()
        assert all(math.isfinite(float(value)) for value in scalars.values()), (augment, scalars)
        assert not recipe.nonfinite_networks()
        shown = recipe.augmentation.take_shown()
        assert (shown is not None) == ("discriminator" in recipe.networks or "discriminator_a" in recipe.networks)


# --- exact resume -------------------------------------------------------------------------------------------

def train_straight_and_resumed_in_process(overrides: list[str], total: int, split_at: int, folder: Path):
    """conftest's train_straight_and_resumed without the three interpreter starts: (straight folder, checkpoints)."""
    straight, split = folder / "straight", folder / "split"
    Trainer(composed(*overrides, f"trainer.max_steps={total}"), straight).fit()
    Trainer(composed(*overrides, f"trainer.max_steps={split_at}"), split).fit()
    Trainer(composed(*overrides, f"trainer.max_steps={total}", f"resume={split}"), split).fit()
    last = "checkpoints/last.pt"
    return straight, torch.load(straight / last, weights_only=True), torch.load(split / last, weights_only=True)


@pytest.mark.parametrize("augment", [["augment=diffaugment"],
                                     ["augment=ada", "augment.interval=1", "augment.speed_kimg=0.1",
                                      "augment.target=0.05", "optim.lr=0.002"]])
def test_resume_mid_run_is_bitwise_exact(tmp_path: Path, augment: list[str]) -> None:
    overrides = ["model=dcgan", *TINY_DCGAN, "trainer.batch_size=16", "trainer.log_every=1", "trainer.progress=false",
                 *augment]
    straight, a, b = train_straight_and_resumed_in_process(overrides, total=4, split_at=2, folder=tmp_path)
    assert_same_training_state(a, b)
    flat_a, flat_b = flatten_state(a["recipe"]["augment"]), flatten_state(b["recipe"]["augment"])
    assert flat_a.keys() == flat_b.keys()
    for key, value in flat_a.items():
        assert torch.equal(value, flat_b[key]) if torch.is_tensor(value) else value == flat_b[key], key
    if augment[0] == "augment=ada":
        assert a["recipe"]["augment"]["p"] > 0.16  # p rose before the split and after it: its state mattered
    assert (straight / "samples" / "augmented_reals.png").is_file()
