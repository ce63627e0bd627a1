"""Image-to-image translation: paired/unpaired folders in their real layouts, the papers' networks, pix2pix and
CycleGAN training with exact resume, the translate and eval tasks, and every bad input as one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from conftest import FAST, assert_same_training_state, compose_config, run_cli, train_straight_and_resumed
from gantrain.data.build import build_data
from gantrain.data.demo_photos import build_paired_demo, build_unpaired_demo, vintage
from gantrain.data.stream import BatchStream
from gantrain.engine.tiling import padded, tiled, translate_images
from gantrain.errors import UserError
from gantrain.metrics.fidelity import PeakSignalToNoise
from gantrain.metrics.base import GeneratedBatch
from gantrain.nets.patchgan import PatchGANDiscriminator
from gantrain.nets.resnet_generator import ResNetGenerator
from gantrain.nets.unet import UNetGenerator
from gantrain.optim.schedules import epoch_linear
from gantrain.recipes.image_pool import ImagePool
from gantrain.recipes.translation import TranslationInfo, at_test_time
from gantrain.registry import load_builtin_parts

load_builtin_parts()
CPU = torch.device("cpu")
TINY_PIX2PIX = ["model=pix2pix", "data=paired", "data.load_size=36", "data.crop_size=32",
                "model.generator.base_channels=4", "model.generator.max_channels=8",
                "model.discriminator.base_channels=4", "model.discriminator.n_layers=2", *FAST]
TINY_CYCLEGAN = ["model=cyclegan", "data=unpaired", "data.load_size=36", "data.crop_size=32",
                 "model.generator.base_channels=4", "model.generator.blocks=1", "model.discriminator.base_channels=4",
                 "model.discriminator.n_layers=2", "model.pool_size=3", *FAST]


def picture(rng: np.random.Generator, height: int, width: int, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels == 3 else (height, width)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_side_by_side(root: Path, counts: dict[str, int], size: int = 40, seed: int = 0) -> Path:
    """The pix2pix layout: each file A|B side by side; B is A's negative, so a pair is recognisable after any crop."""
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            a = picture(rng, size, size)
            Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(root / split / f"{index:03d}.png")
    return root


def write_unpaired(root: Path, counts: dict[str, int], size: tuple[int, int] = (40, 40), seed: int = 0) -> Path:
    """The CycleGAN layout; A images are dark (0..80), B images bright (175..255), so each side is recognisable."""
    rng = np.random.default_rng(seed)
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image = picture(rng, *size) // 80 * 26 + (175 if folder.endswith("B") else 0)
            Image.fromarray(image.astype(np.uint8)).save(root / folder / f"{folder}_{index:03d}.png")
    return root


def paired_source(root: Path, **options):
    return build_data(OmegaConf.create({"name": "paired", "root": str(root), "load_size": 36, "crop_size": 32,
                                        **options}))


# --- data ------------------------------------------------------------------------------------------------------


def test_both_halves_of_a_pair_get_the_same_crop_and_flip(tmp_path):
    source = paired_source(write_side_by_side(tmp_path / "facades", {"train": 6, "val": 2}))
    assert source.spec.batch_keys == {"source": (3, 32, 32), "target": (3, 32, 32)} and source.spec.epoch_size == 6
    stream = BatchStream(source.dataset, 6, seed=1, device=CPU)
    crops = []
    for _ in range(4):
        batch = stream.next()
        as_pixels = lambda x: x.add(1).mul(127.5).round()  # noqa: E731
        # B = 255 - A pixel for pixel survives the bicubic resize only approximately: compare up to resampling error
        assert (as_pixels(batch["source"]) + as_pixels(batch["target"]) - 255).abs().max() <= 2
        crops.append(batch["source"])
    assert len({tuple(c.flatten()[:8].tolist()) for c in crops}) == 4  # crops and flips differ between epochs
    held = source.held_out["val"].get_batch(torch.arange(2))
    again = source.held_out["val"].get_batch(torch.arange(2))
    assert torch.equal(held["source"], again["source"])  # held out: centred, never random


def test_direction_swaps_input_and_target(tmp_path):
    root = write_side_by_side(tmp_path / "facades", {"train": 3})
    forward = paired_source(root, flip=False).dataset.get_batch(torch.arange(3))
    backward = paired_source(root, flip=False, direction="BtoA").dataset.get_batch(torch.arange(3))
    assert torch.equal(forward["source"], backward["target"]) and torch.equal(forward["target"], backward["source"])


def test_a_and_b_folders_match_by_name_and_greyscale_stays_greyscale(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("x", "y"):
        for side, channels in (("A", 1), ("B", 3)):
            (tmp_path / "d" / "train" / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture(rng, 36, 36, channels)).save(tmp_path / "d" / "train" / side / f"{name}.png")
    source = paired_source(tmp_path / "d")
    assert source.spec.batch_keys == {"source": (1, 32, 32), "target": (3, 32, 32)}


def test_an_unpaired_epoch_shows_every_a_with_a_random_b(tmp_path):
    root = write_unpaired(tmp_path / "h2z", {"trainA": 5, "trainB": 7, "testA": 2, "testB": 3})
    source = build_data(OmegaConf.create({"name": "unpaired", "root": str(root), "load_size": 36, "crop_size": 32}))
    assert len(source.dataset) == 7 and source.spec.epoch_size == 7  # max(|A|, |B|)
    randoms = torch.rand(7, source.dataset.random_numbers, generator=torch.Generator().manual_seed(0))
    batch = source.dataset.get_batch(torch.arange(7), randoms)
    assert (batch["a"] < -0.1).all() and (batch["b"] > 0.1).all()  # A stays A, B stays B
    a_from_draws = source.dataset.a.crop_batch(torch.arange(7) % 5, (32, 32), randoms[:, 1:3])
    assert torch.equal(batch["a"], flip_back(a_from_draws, randoms[:, 3]))  # A image i mod |A|
    b_index = (randoms[:, 0] * 7).long()
    b_from_draws = source.dataset.b.crop_batch(b_index, (32, 32), randoms[:, 4:6])
    assert torch.equal(batch["b"], flip_back(b_from_draws, randoms[:, 6]))  # B drawn at random, its own crop
    assert b_index.tolist() != list(range(7))


def flip_back(images: torch.Tensor, coins: torch.Tensor) -> torch.Tensor:
    return torch.where((coins < 0.5).view(-1, 1, 1, 1), images.flip(-1), images).float().div(127.5).sub(1)


# --- networks, pool, schedule -------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "depth"), [(256, 8), (128, 7), (64, 6), (32, 5), (48, 4)])
def test_unet_depth_follows_the_crop_size(size, depth):
    unet = UNetGenerator(3, 3, (size, size), base_channels=2, max_channels=4)
    assert unet.depth == depth and unet.multiple == 2 ** depth
    if size <= 64:
        assert unet(torch.zeros(1, 3, size, size)).shape == (1, 3, size, size)
    dropouts = [m for m in unet.decoder.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == min(3, depth - 1)  # the paper's first three decoder layers


def test_patchgan_gives_30x30_logits_at_256_and_resnet_keeps_the_size():
    assert PatchGANDiscriminator(6, base_channels=2)(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)
    assert PatchGANDiscriminator(3, base_channels=2, n_layers=0)(torch.zeros(1, 3, 20, 20)).shape == (1, 1, 20, 20)
    resnet = ResNetGenerator(1, 3, (24, 36), base_channels=2)
    assert resnet.blocks == 6 and resnet(torch.zeros(2, 1, 24, 36)).shape == (2, 3, 24, 36)
    assert ResNetGenerator(3, 3, (256, 256), base_channels=2).blocks == 9


def test_the_pool_returns_stored_images_half_the_time_once_full():
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 4  # filling: every image passes and is kept
    swapped = 0
    for step in range(200):
        new = torch.full((1, 1, 1, 1), 100.0 + step)
        before = [image.clone() for image in pool.images]
        shown = pool.query(new)
        if not torch.equal(shown, new):
            swapped += 1
            assert any(torch.equal(shown[0], image) for image in before)  # an image stored before
            assert any(torch.equal(new[0], image) for image in pool.images)  # replaced by the new one
    assert 70 < swapped < 130
    restored = ImagePool(4)
    restored.load_state_dict(pool.state_dict(), CPU)
    assert all(torch.equal(a, b) for a, b in zip(restored.images, pool.images))


def test_the_learning_rate_holds_then_decays_linearly_per_epoch():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = epoch_linear(optimizer, steps_per_epoch=10, hold_epochs=2, decay_epochs=3)
    rates = []
    for _ in range(60):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == rates[19] == 1.0  # epochs 0 and 1
    # then 1 - (e + 1 - hold) / (decay + 1) for epoch e: the last of the 5 epochs trains at lr / 4, then 0
    assert [rates[e * 10] for e in range(2, 6)] == pytest.approx([0.75, 0.5, 0.25, 0.0])


def test_test_time_train_mode_keeps_running_statistics_and_the_training_random_state():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Dropout(0.5))
    statistics = [b.clone() for b in net.buffers()]
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with at_test_time(net, "train"):
        assert net.training
        first = net(torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    with at_test_time(net, "train"):
        second = net(torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(first, second)  # dropout draws are repeatable
    assert torch.equal(torch.rand(3), expected)  # and do not consume the training's random numbers
    assert all(torch.equal(a, b) for a, b in zip(statistics, net.buffers()))


# --- translate: padding, tiling ------------------------------------------------------------------------------


def test_padding_returns_the_input_size_and_tiles_match_the_whole_image():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    image = torch.randn(1, 3, 37, 53)
    assert padded(net, image, multiple=16, scale=1).shape == (1, 3, 37, 53)
    info = TranslationInfo(3, 3, multiple=1)
    whole = translate_images(net, image, info, tile=None, overlap=4)
    pieces = tiled(net, image, info, tile=16, overlap=4)
    assert torch.allclose(whole, pieces, atol=1e-6)  # overlap >= receptive radius (2): no seams
    upscale = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    info2 = TranslationInfo(3, 3, multiple=1, scale=2)
    assert torch.allclose(padded(upscale, image, 1, 2), tiled(upscale, image, info2, 16, 2), atol=1e-6)


def test_psnr_of_a_known_difference():
    target = torch.zeros(1, 1, 4, 4)  # 0 in [-1, 1] is 127.5 -> 128 in 8 bits
    output = target.clone()
    output[0, 0, 0, 0] = (128 + 16) / 127.5 - 1  # one pixel 16 levels off: MSE = 16^2 / 16 = 16
    metric = PeakSignalToNoise()
    metric.update(GeneratedBatch(output, extra={"targets": target}))
    assert metric.compute(None)["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / 16), abs=1e-5)


# --- training, resume, translate and eval through the command line ---------------------------------------------


def test_pix2pix_resumes_mid_epoch_exactly_then_translates_and_evaluates(tmp_path):
    root = write_side_by_side(tmp_path / "facades", {"train": 5, "val": 2, "test": 3})
    common = [*TINY_PIX2PIX, f"data.root={root}", "optim.schedule.hold_epochs=1", "optim.schedule.decay_epochs=3",
              "trainer.batch_size=2", "trainer.log_every=1", "trainer.sample_every=4"]
    # 5 pairs at batch 2: 2 steps an epoch; the rate starts decaying at step 2, the split falls mid-epoch
    straight, split, _, a, b = train_straight_and_resumed(common, total=6, split_at=3, cwd=tmp_path)
    assert a["data"] == b["data"] == {"epoch": 2, "samples_taken": 4}
    assert_same_training_state(a, b)
    assert a["recipe"]["schedulers"] == b["recipe"]["schedulers"]
    assert b["recipe"]["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 4)  # epoch 3
    assert a["data_spec"]["keys"] == {"source": [3, 32, 32], "target": [3, 32, 32]}

    odd = tmp_path / "photos" / "nested"
    odd.mkdir(parents=True)
    Image.fromarray(picture(np.random.default_rng(1), 45, 61)).save(odd / "odd.jpg")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    result = run_cli("task=translate", f"checkpoint={straight}", f"input={tmp_path / 'photos'}",
                     f"out={tmp_path / 'out'}", *FAST, cwd=tmp_path)
    with Image.open(tmp_path / "out" / "nested" / "odd.png") as translated:
        assert translated.size == (61, 45) and translated.mode == "RGB"
    assert "translated 1 image" in result.stdout

    evaluated = run_cli("task=eval", f"checkpoint={straight}", "metrics.names=[l1,psnr,ssim]", *FAST, cwd=tmp_path)
    assert "test/target" in evaluated.stdout and "psnr" in evaluated.stdout and "ssim" in evaluated.stdout


def test_cyclegan_resumes_exactly_with_its_image_pools(tmp_path):
    root = write_unpaired(tmp_path / "h2z", {"trainA": 3, "trainB": 4, "testA": 2, "testB": 2})
    common = [*TINY_CYCLEGAN, f"data.root={root}", "trainer.log_every=1", "trainer.sample_every=5"]
    straight, split, _, a, b = train_straight_and_resumed(common, total=6, split_at=3, cwd=tmp_path)
    assert_same_training_state(a, b)
    pools = a["recipe"]["extra"]["pools"]
    assert pools["a"]["images"].shape[0] == 3  # full after 6 steps of batch 1
    for side in ("a", "b"):
        assert torch.equal(pools[side]["images"], b["recipe"]["extra"]["pools"][side]["images"])
    assert set(a["recipe"]["optimizers"]) == {"generators", "discriminators"}

    (tmp_path / "zebras").mkdir()
    Image.fromarray(picture(np.random.default_rng(2), 30, 22)).save(tmp_path / "zebras" / "z.png")
    run_cli("task=translate", f"checkpoint={straight}", f"input={tmp_path / 'zebras' / 'z.png'}",
            f"out={tmp_path / 'horse.png'}", "direction=BtoA", *FAST, cwd=tmp_path)
    with Image.open(tmp_path / "horse.png") as translated:
        assert translated.size == (22, 30)
    wrong = run_cli("task=translate", f"checkpoint={straight}", f"input={tmp_path / 'zebras'}",
                    f"out={tmp_path / 'o'}", "direction=CtoD", *FAST, cwd=tmp_path, check=False)
    assert wrong.returncode == 2 and "AtoB and BtoA" in wrong.stderr


# --- bad input -------------------------------------------------------------------------------------------------


def test_translate_refuses_noise_models_and_missing_input(tmp_path):
    run = tmp_path / "gan"
    run_cli("model=gan", "trainer.max_steps=1", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    noise = run_cli("task=translate", f"checkpoint={run}", f"input={tmp_path}", "out=o", *FAST, cwd=tmp_path,
                    check=False)
    assert noise.returncode == 2 and "use task=sample" in noise.stderr and "Traceback" not in noise.stderr
    missing = run_cli("task=translate", f"checkpoint={run}", "input=/no/such/photos", "out=o", *FAST,
                      cwd=tmp_path, check=False)
    assert missing.returncode == 2 and ("no such file" in missing.stderr or "use task=sample" in missing.stderr)


def bad_paired(tmp_path: Path, case: str) -> dict:
    root = tmp_path / "d"
    if case == "no_train":
        (root / "val").mkdir(parents=True)
    elif case == "empty":
        (root / "train").mkdir(parents=True)
    elif case == "odd_width":
        (root / "train").mkdir(parents=True)
        Image.fromarray(picture(np.random.default_rng(0), 40, 81)).save(root / "train" / "odd.png")
    elif case == "unmatched":
        for side, names in (("A", ["1", "2", "3"]), ("B", ["1", "9"])):
            (root / "train" / side).mkdir(parents=True)
            for name in names:
                Image.fromarray(picture(np.random.default_rng(0), 40, 40)).save(root / "train" / side / f"{name}.png")
    elif case == "not_an_image":
        write_side_by_side(root, {"train": 2})
        (root / "train" / "broken.png").write_bytes(b"this is no png")
    elif case in ("crop_too_big", "direction"):
        write_side_by_side(root, {"train": 2})
    options = {"crop_too_big": {"preprocess": "crop", "crop_size": 64}, "direction": {"direction": "AtoC"}}
    return {"name": "paired", "root": str(root), "load_size": 36, "crop_size": 32, **options.get(case, {})}


@pytest.mark.parametrize(("case", "message"), [
    ("no_train", "needs .*train"), ("empty", "no images under"), ("odd_width", "odd width"),
    ("unmatched", "matching names; 3 have no partner, e.g. A/2, A/3, B/9"), ("not_an_image", "broken.png is not a readable image"),
    ("crop_too_big", "smaller than data.crop_size=64"), ("direction", "unknown data.direction 'AtoC'")])
def test_bad_paired_data_is_one_line(tmp_path, case, message):
    with pytest.raises(UserError, match=message):
        build_data(OmegaConf.create(bad_paired(tmp_path, case)))


def test_bad_unpaired_data_and_wrong_models_are_one_line(tmp_path):
    (tmp_path / "u" / "trainA").mkdir(parents=True)
    with pytest.raises(UserError, match="missing: trainB"):
        build_data(OmegaConf.create({"name": "unpaired", "root": str(tmp_path / "u")}))
    result = run_cli("model=pix2pix", "trainer.max_steps=1", *FAST, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "model=pix2pix needs paired images" in result.stderr


def test_the_demos_build_from_the_installed_photos(tmp_path):
    build_paired_demo(tmp_path / "paired", size=64)
    build_unpaired_demo(tmp_path / "unpaired", size=64)
    paired = build_data(OmegaConf.create({"name": "paired", "root": str(tmp_path / "paired"), "load_size": 40,
                                          "crop_size": 32}))
    assert paired.spec.batch_keys == {"source": (1, 32, 32), "target": (3, 32, 32)}
    assert len(paired.dataset) >= 200 and set(paired.held_out) == {"val", "test"}
    unpaired = build_data(OmegaConf.create({"name": "unpaired", "root": str(tmp_path / "unpaired"), "load_size": 40,
                                            "crop_size": 32}))
    assert len(unpaired.dataset.a) >= 100 and len(unpaired.dataset.b) >= 100 and set(unpaired.held_out) == {"test"}
    a_files = sorted((tmp_path / "unpaired" / "trainA").iterdir())
    b_photos = {p.name.rsplit("_", 1)[0] for p in (tmp_path / "unpaired" / "trainB").iterdir()}
    assert {p.name.rsplit("_", 1)[0] for p in a_files} == b_photos  # the same scenes on both sides: style differs
    for a_file in a_files:  # ... but from other places of each photo: no B image is an A image in old-print tone
        b_file = tmp_path / "unpaired" / "trainB" / a_file.name
        assert not np.array_equal(vintage(np.asarray(Image.open(a_file))), np.asarray(Image.open(b_file)))


def test_the_cyclegan_demo_trains_the_unet_generator_and_the_presets_null_resnet_option_is_ignored(tmp_path):
    """The demo's pairing swaps in the U-Net (its skips keep the picture at a CPU budget); the preset's
    ResNet-only ``blocks: null`` is left behind and dropped, while a set one is still an error."""
    from gantrain.engine.trainer import build_recipe

    root = write_unpaired(tmp_path / "d", {"trainA": 2, "trainB": 2}, size=(64, 64))
    cfg = compose_config("model=cyclegan", "data=unpaired_demo", "data.name=unpaired", f"data.root={root}",
                         "model.generator.base_channels=4", "model.discriminator.base_channels=4", *FAST)
    assert cfg.pairing == "cyclegan_unpaired_demo" and cfg.model.generator.blocks is None
    spec = build_data(cfg.data).spec
    recipe = build_recipe(cfg, spec, CPU)
    assert isinstance(recipe.generator_ab, UNetGenerator) and isinstance(recipe.generator_ba, UNetGenerator)
    cfg.model.generator.blocks = 6
    with pytest.raises(UserError, match="has no option 'blocks'"):
        build_recipe(cfg, spec, CPU)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("preset", ["pix2pix", "cyclegan"])
def test_a_step_under_bf16_and_channels_last_tracks_float32(tmp_path, preset):
    """The speed options act on translation recipes as on every other: same losses up to bf16's precision."""
    from gantrain.engine.acceleration import Precision, channels_last_batch, to_channels_last
    from gantrain.engine.trainer import build_recipe

    if preset == "pix2pix":
        overrides, root = TINY_PIX2PIX, write_side_by_side(tmp_path / "d", {"train": 2})
    else:
        overrides, root = TINY_CYCLEGAN, write_unpaired(tmp_path / "d", {"trainA": 2, "trainB": 2})
    cfg = compose_config(*overrides, f"data.root={root}")
    source = build_data(cfg.data)
    batch = source.dataset.get_batch(torch.arange(1), torch.full((1, source.dataset.random_numbers), 0.25))
    losses = {}
    for precision in ("32", "bf16"):
        torch.manual_seed(0)
        recipe = build_recipe(cfg, source.spec, CPU)
        recipe.precision = Precision(precision, CPU)
        if precision == "bf16":
            to_channels_last(recipe.networks.values())
        with recipe.precision.autocast():
            scalars = recipe.train_step(lambda: channels_last_batch(batch) if precision == "bf16" else batch)
        losses[precision] = float(scalars["loss/g"])
        assert all(torch.isfinite(p).all() for net in recipe.networks.values() for p in net.parameters())
    assert losses["bf16"] == pytest.approx(losses["32"], rel=0.05)
