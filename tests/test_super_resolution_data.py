"""Super-resolution data: MATLAB's bicubic imresize, aligned LR/HR crops under the 8 symmetries, exact
batches from the stream's uniforms, ready LR files (DIV2K naming), held-out whole images, the offline
demo, every bad input as one line, and the papers' x4 bicubic scores on the real Set5 and Set14."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from conftest import REPO
from gantrain.data.bicubic import eight_bit, imresize, resize_8bit
from gantrain.data.build import build_data
from gantrain.data.demo_photos import SR_VAL_PHOTOS
from gantrain.data.stream import BatchStream
from gantrain.data.super_resolution import Undecoded, downscaled
from gantrain.errors import UserError
from gantrain.metrics.base import GeneratedBatch
from gantrain.metrics.fidelity import PeakSignalToNoise, StructuralSimilarity
from gantrain.registry import load_builtin_parts

load_builtin_parts()
CPU = torch.device("cpu")
BENCHMARKS = REPO.parent / "shared" / "data" / "sr"
# Keys' cubic (a = -0.5) at distances 0.25, 0.75, 1.25, 1.75 is (111, 29, -9, -3) / 128: the taps of a x2
# enlargement; stretched by 2 and halved (MATLAB's antialiasing) they are the x1/2 taps, the same / 256
TAPS = torch.tensor([-3.0, -9.0, 29.0, 111.0], dtype=torch.float64)


def pixels_of(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats back to the uint8 pixels they were made from (exact)."""
    return images.add(1).mul(127.5).round().to(torch.uint8)


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def photos(folder: Path, sizes: list[tuple[int, int]], seed: int = 0, names: list[str] | None = None) -> Path:
    rng = np.random.default_rng(seed)
    for index, (height, width) in enumerate(sizes):
        write(folder / f"{(names or [])[index] if names else f'{index + 1:04d}'}.png",
              rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return folder


def sr_source(root: Path, **options):
    return build_data(OmegaConf.create({"name": "sr", "root": str(root), "hr_size": 24, **options}))


# --- the bicubic resize -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_constant_images_stay_constant_and_sizes_are_matlabs(scale):
    image = torch.full((2, 3, 37, 50), 0.3, dtype=torch.float64)
    down = imresize(image, 1 / scale)
    assert down.shape[-2:] == (-(-37 // scale), -(-50 // scale))  # ceil(size / scale), as MATLAB
    up = imresize(down, scale)
    assert up.shape[-2:] == (down.shape[-2] * scale, down.shape[-1] * scale)
    assert torch.allclose(down, image[..., :1, :1], atol=1e-12) and torch.allclose(up, image[..., :1, :1], atol=1e-12)
    assert imresize(torch.zeros(1, 1, 96, 96), 1 / scale).shape[-1] == 96 // scale


def test_linear_ramps_land_on_matlabs_output_grid():
    """Keys' kernel reproduces straight lines, so away from the borders each output pixel k (0-based) shows the
    input position it is centred on: (k + 1) / scale + 0.5 (1 - 1 / scale) - 1."""
    ramp = torch.arange(64, dtype=torch.float64).expand(1, 1, 8, 64)
    for scale, interior in ((1 / 4, slice(2, 14)), (1 / 3, slice(3, 19)), (1 / 2, slice(2, 30)), (4, slice(8, 248)),
                            (3, slice(6, 186)), (2, slice(4, 124))):
        out = imresize(ramp, scale)[0, 0, 0]
        k = torch.arange(out.shape[0], dtype=torch.float64)
        expected = (k + 1) / scale + 0.5 * (1 - 1 / scale) - 1
        assert torch.allclose(out[interior], expected[interior], atol=1e-9), scale
        assert torch.allclose(imresize(ramp.transpose(-1, -2), scale)[0, 0, :, 0], out)  # rows as columns


def test_known_taps_and_matlabs_mirrored_border():
    impulse = torch.zeros(1, 1, 1, 16, dtype=torch.float64)
    impulse[..., 8] = 1
    up = imresize(impulse, 2)[0, 0, 0]
    assert torch.allclose(up[13:21], torch.cat([TAPS, TAPS.flip(0)]) / 128)  # (-3, -9, 29, 111, 111, 29, -9, -3)/128
    down = imresize(impulse, 1 / 2)[0, 0, 0]
    assert torch.allclose(down[2:6], torch.tensor([-3.0, 29, 111, -9], dtype=torch.float64) / 256)
    # beyond the border MATLAB mirrors with the edge repeated ([1:n, n:-1:1]): the first x2 output of the ramp
    # 0, 1, 2, ... reads pixels (1, 0, 0, 1), giving (-3 - 9) / 128 (edge replication would give -9 / 128)
    ramp = torch.arange(8, dtype=torch.float64).view(1, 1, 1, 8)
    assert imresize(ramp, 2)[0, 0, 0, 0].item() == pytest.approx(-12 / 128, abs=1e-12)
    column = torch.rand(1, 2, 5, 1, dtype=torch.float64)  # narrower than the kernel: mirrored again and again
    assert imresize(column, 1 / 4).shape == (1, 2, 2, 1) and imresize(column, 3).shape == (1, 2, 15, 3)
    assert torch.allclose(imresize(column, 1 / 4), imresize(column.expand(1, 2, 5, 3), 1 / 4))  # width 1 or 3: same


def test_eight_bit_rounding_is_matlabs_and_each_pass_rounds():
    assert eight_bit(torch.tensor([0.5, 1.5, 2.4999999999, -3.0, 255.6], dtype=torch.float64)).tolist() == \
        [1, 2, 3, 0, 255]  # halves away from zero; a hair below a half (summation order) counts as the half
    image = torch.randint(0, 256, (1, 3, 20, 20)).double()
    once = eight_bit(imresize(image, 1 / 4))
    twice = resize_8bit(image, 1 / 4)
    assert (once - twice).abs().max() <= 1 and torch.equal(resize_8bit(twice, 1.0), twice)
    float32 = resize_8bit(image.float(), 1 / 4)  # computed in float64 whatever comes in
    assert float32.dtype == torch.float32 and torch.equal(float32.double(), twice)


# --- training batches ----------------------------------------------------------------------------------------


def test_lr_is_the_rounded_bicubic_of_the_very_hr_crop_and_batches_repeat_exactly(tmp_path):
    source = sr_source(photos(tmp_path / "hr", [(40, 50), (30, 30), (64, 33)]), repeat=3)
    assert source.spec.batch_keys == {"lr": (3, 6, 6), "hr": (3, 24, 24)} and source.spec.scale == 4
    assert len(source.dataset) == source.spec.epoch_size == 9 and source.dataset.random_numbers == 5
    randoms = torch.rand(9, 5, generator=torch.Generator().manual_seed(0))
    batch = source.dataset.get_batch(torch.arange(9), randoms)
    assert batch["hr"].dtype == torch.float32 and batch["hr"].min() >= -1 and batch["hr"].max() <= 1
    hr = pixels_of(batch["hr"])
    assert torch.equal(pixels_of(batch["lr"]), resize_8bit(hr.double(), 1 / 4).to(torch.uint8))
    again = source.dataset.get_batch(torch.arange(9), randoms.clone())
    assert all(torch.equal(batch[key], again[key]) for key in batch)
    streams = [BatchStream(source.dataset, 4, seed=5, device=CPU) for _ in range(2)]
    first = [streams[0].next() for _ in range(3)]
    streams[1].load_state_dict({"epoch": 0, "samples_taken": 4})  # resumed after one batch
    resumed = streams[1].next()
    assert all(torch.equal(first[1][key], resumed[key]) for key in ("lr", "hr"))


def test_position_i_shows_image_i_mod_n(tmp_path):
    for index, level in enumerate((10, 120, 240)):  # three flat images of different grey levels
        write(tmp_path / "hr" / f"{index}.png", np.full((30 + index, 28, 3), level, np.uint8))
    source = sr_source(tmp_path / "hr", repeat=4, flip=False)
    batch = source.dataset.get_batch(torch.arange(12), torch.rand(12, 5))
    assert pixels_of(batch["hr"])[:, 0, 0, 0].tolist() == [10, 120, 240] * 4
    assert pixels_of(batch["lr"])[:, 0, 0, 0].tolist() == [10, 120, 240] * 4  # flat stays flat


def dihedral(image: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of a square image in the coin order (hflip, vflip, transpose) of itertools.product."""
    out = []
    for h, v, t in itertools.product((True, False), repeat=3):
        x = image.flip(-1) if h else image
        x = x.flip(-2) if v else x
        out.append(x.transpose(-1, -2) if t else x)
    return out


def coins_for_all_symmetries(offset: tuple[float, float]) -> torch.Tensor:
    """8 positions with the same crop offset and every combination of the three coins (< 0.5: heads)."""
    return torch.tensor([[*offset, *(0.25 if heads else 0.75 for heads in combo)]
                         for combo in itertools.product((True, False), repeat=3)])


def test_the_eight_symmetries_apply_identically_to_lr_and_hr_files(tmp_path):
    """HR files that are their LR files enlarged by pixel replication: an aligned crop under the same symmetry
    keeps HR = LR enlarged, for each of the 8 symmetries (all different on a random image)."""
    rng = np.random.default_rng(1)
    for name in ("0001", "0002"):
        lr = rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)
        write(tmp_path / "LR" / "X4" / f"{name}x4.png", lr)  # DIV2K's layout and naming
        write(tmp_path / "HR" / f"{name}.png", lr.repeat(4, axis=0).repeat(4, axis=1))
    source = sr_source(tmp_path / "HR", lr_root=str(tmp_path / "LR"))
    randoms = coins_for_all_symmetries((0.3, 0.8))
    batch = source.dataset.get_batch(torch.ones(8, dtype=torch.long), randoms)
    lr, hr = pixels_of(batch["lr"]), pixels_of(batch["hr"])
    assert torch.equal(hr, F.interpolate(lr, scale_factor=4, mode="nearest"))  # aligned, same symmetry
    assert len({tuple(x.flatten().tolist()) for x in hr}) == 8
    top, left = min(int(0.3 * 6), 5) * 4, min(int(0.8 * 8), 7) * 4  # LR place (y, x) -> HR (4y, 4x)
    base = source.dataset.hr.images[1][:, top:top + 24, left:left + 24]
    assert all(torch.equal(got, want) for got, want in zip(hr, dihedral(base)))
    unflipped = sr_source(tmp_path / "HR", lr_root=str(tmp_path / "LR"), flip=False)
    assert all(torch.equal(x, base) for x in pixels_of(unflipped.dataset.get_batch(torch.ones(8, dtype=torch.long),
                                                                                  randoms)["hr"]))


def test_bicubic_lr_follows_each_symmetry_of_the_hr_crop(tmp_path):
    source = sr_source(photos(tmp_path / "hr", [(40, 40)]), repeat=8)
    batch = source.dataset.get_batch(torch.zeros(8, dtype=torch.long), coins_for_all_symmetries((0.5, 0.5)))
    hr = pixels_of(batch["hr"])
    assert all(torch.equal(got, want) for got, want in zip(hr, dihedral(hr[-1])))  # the last: no coin came up
    assert torch.equal(pixels_of(batch["lr"]), downscaled(hr, 4))


def test_lr_files_with_the_same_name_and_aligned_crops(tmp_path):
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (52, 60, 3), dtype=np.uint8)
    write(tmp_path / "HR" / "sub" / "a.png", hr)
    lr_file = write(tmp_path / "LR" / "sub" / "a.png", np.asarray(resize_8bit(
        torch.from_numpy(hr).permute(2, 0, 1)[None].double(), 1 / 2)[0].permute(1, 2, 0).to(torch.uint8)))
    source = sr_source(tmp_path / "HR", lr_root=str(tmp_path / "LR"), scale=2, flip=False)
    assert source.spec.batch_keys["lr"] == (3, 12, 12)
    batch = source.dataset.get_batch(torch.zeros(1, dtype=torch.long), torch.tensor([[0.99, 0.4, 0, 0, 0]]))
    top, left = 26 - 12, int(0.4 * 19)  # the LR file is 26x30: free rows 14 (0.99 -> the last), columns 18
    assert torch.equal(pixels_of(batch["lr"])[0], torch.from_numpy(np.array(Image.open(lr_file))).permute(2, 0, 1)[
        :, top:top + 12, left:left + 12])
    assert torch.equal(pixels_of(batch["hr"])[0], torch.from_numpy(hr).permute(2, 0, 1)[
        :, 2 * top:2 * top + 24, 2 * left:2 * left + 24])


# --- held out ------------------------------------------------------------------------------------------------


def test_held_out_images_are_cropped_to_the_scale_with_lr_made_once(tmp_path):
    val = photos(tmp_path / "val", [(50, 43), (21, 30)], seed=3, names=["zebra", "ant"])
    source = sr_source(photos(tmp_path / "hr", [(30, 30)]), val_root=str(val), scale=4)
    held = source.held_out["val"]
    assert len(held) == 2 and held.names == ["ant", "zebra"]  # sorted file stems
    lr, hr = held.whole(1)
    assert hr.shape == (1, 3, 48, 40) and lr.shape == (1, 3, 12, 10)  # top-left crop to a multiple of 4
    full = torch.from_numpy(np.array(Image.open(val / "zebra.png"))).permute(2, 0, 1)
    assert torch.equal(pixels_of(hr)[0], full[:, :48, :40])
    assert torch.equal(pixels_of(lr), downscaled(full[None, :, :48, :40], 4))
    # previews: one size for all, hr_size or the largest multiple of the scale that fits every image (ant: 20x28)
    batch = held.get_batch(torch.arange(2))
    assert batch["hr"].shape == (2, 3, 20, 20) and batch["lr"].shape == (2, 3, 5, 5)
    assert torch.equal(pixels_of(batch["lr"])[1], pixels_of(lr)[0, :, 3:8, 2:7])  # centred, from the LR made once
    assert torch.equal(batch["hr"], held.get_batch(torch.arange(2))["hr"])


def test_eval_builds_the_held_out_split_without_decoding_training_images(tmp_path, caplog):
    root = photos(tmp_path / "hr", [(30, 30), (40, 40)])
    (root / "9999.png").write_bytes(b"not decoded at all")
    source = build_data(OmegaConf.create({"name": "sr", "root": str(root), "hr_size": 24,
                                          "val_root": str(photos(tmp_path / "val", [(24, 24)]))}), held_out_only=True)
    assert isinstance(source.dataset, Undecoded) and len(source.dataset) == 3 and len(source.held_out["val"]) == 1
    with caplog.at_level(logging.WARNING, logger="gantrain"):  # whatever another test set the level to
        assert source.spec.same_shape(sr_source(photos(tmp_path / "other", [(30, 30)])).spec)
    assert "no data.val_root" in caplog.text


# --- bad input -----------------------------------------------------------------------------------------------


def bad_sr(tmp_path: Path, case: str) -> dict:
    hr = tmp_path / "hr"
    options: dict = {}
    if case == "missing_root":
        return {"root": str(tmp_path / "nowhere")}
    if case == "no_root":
        return {"root": None}
    if case == "empty":
        hr.mkdir()
        return {"root": str(hr)}
    photos(hr, [(40, 40), (20, 50)] if case == "too_small" else [(40, 40)])
    if case == "unreadable":
        (hr / "broken.png").write_bytes(b"this is no png")
    elif case == "lr_size":
        write(tmp_path / "lr" / "0001x4.png", np.zeros((10, 11, 3), np.uint8))
        options = {"lr_root": str(tmp_path / "lr")}
    elif case == "lr_missing":
        write(tmp_path / "lr" / "0002x4.png", np.zeros((10, 10, 3), np.uint8))
        options = {"lr_root": str(tmp_path / "lr")}
    elif case == "cache":
        options = {"cache_max_gb": 1e-6, "storage": "memory"}
    elif case == "unreadable_val":
        write(tmp_path / "val" / "ok.png", np.zeros((8, 8, 3), np.uint8))
        (tmp_path / "val" / "bad.png").write_bytes(b"nope")
        options = {"val_root": str(tmp_path / "val")}
    options.update({"multiple": {"hr_size": 26}, "scale": {"scale": 5}, "channels": {"channels": 4},
                    "repeat": {"repeat": 0}}.get(case, {}))
    return {"root": str(hr), **options}


@pytest.mark.parametrize(("case", "message"), [
    ("missing_root", "data.root .*nowhere is not a folder"), ("no_root", "data=sr needs data.root=PATH"),
    ("empty", "no images under .*hr"), ("too_small", r"0002.png is 50x20, smaller than data.hr_size=24"),
    ("unreadable", "broken.png is not a readable image"),
    ("lr_size", r"0001x4.png is 11x10 but .*0001.png is 40x40: with data.scale=4 the LR image must be 10x10"),
    ("lr_missing", r"no LR image for .*0001.png under data.lr_root .* \(looked for 0001 or 0001x4"),
    ("cache", r"the 1 training images under .* take 4.8e-06 GB decoded \(uint8\), over data.cache_max_gb=1e-06"),
    ("unreadable_val", "bad.png is not a readable image"),
    ("multiple", r"data.hr_size=26 is not a multiple of data.scale=4; use 24 or 28"),
    ("scale", "data.scale must be 2, 3 or 4, got 5"), ("channels", "data.channels must be 1 .* or 3 .*, got 4"),
    ("repeat", "data.repeat must be a positive integer")])
def test_bad_sr_data_is_one_line(tmp_path, case, message):
    with pytest.raises(UserError, match=message) as error:
        build_data(OmegaConf.create({"name": "sr", "hr_size": 24, **bad_sr(tmp_path, case)}))
    assert "\n" not in str(error.value)


# --- the offline demo ----------------------------------------------------------------------------------------


def test_the_sr_demo_builds_from_the_installed_photos_with_val_photos_never_trained_on(tmp_path):
    source = build_data(OmegaConf.create({"name": "sr_demo", "root": str(tmp_path), "hr_size": 32, "repeat": 2}))
    folder = tmp_path / "sr_demo-v1"
    train = {p.stem for p in (folder / "train").iterdir()}
    val = {p.stem for p in (folder / "val").iterdir()}
    assert val == set(SR_VAL_PHOTOS) and len(train) >= 5 and not train & val  # whole different photos
    assert source.spec.batch_keys == {"lr": (3, 8, 8), "hr": (3, 32, 32)} and (folder / ".complete").is_file()
    assert len(source.dataset) == 2 * len(train) and source.held_out["val"].names == sorted(SR_VAL_PHOTOS)


# --- the papers' numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "psnr", "ssim"), [("set5", 28.430, 0.8111), ("set14", 26.091, 0.7048)])
def test_bicubic_x4_reproduces_the_published_benchmark_scores(name, psnr, ssim):
    """The papers' convention (shared/data/sr/README.md): HR cropped to a multiple of 4, LR = MATLAB bicubic
    x1/4 of the 8-bit image, the baseline its bicubic x4, each rounded to 8 bits; Y of BT.601, 4 pixels of
    border cut. Set14's 1-channel bridge is replicated to RGB."""
    folder = BENCHMARKS / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is not here")
    source = build_data(OmegaConf.create({"name": "sr", "root": str(folder), "val_root": str(folder), "scale": 4}),
                        held_out_only=True)
    held = source.held_out["val"]
    metrics = [PeakSignalToNoise(y_channel=True, crop_border=4), StructuralSimilarity(y_channel=True, crop_border=4)]
    for index in range(len(held)):
        lr, hr = held.whole(index)
        bicubic = resize_8bit(lr.add(1).mul(127.5), 4).div(127.5).sub(1)
        for metric in metrics:
            metric.update(GeneratedBatch(bicubic, extra={"targets": hr}))
    assert metrics[0].compute(None)["psnr"] == pytest.approx(psnr, abs=0.01)
    assert metrics[1].compute(None)["ssim"] == pytest.approx(ssim, abs=0.0005)
