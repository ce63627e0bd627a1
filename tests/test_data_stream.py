"""The batch stream's tensor-resident path, whole-batch flips, rank sharding and the image-folder cache."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import Dataset

from conftest import compose_config
from gantrain.data.source import DataSource, DataSpec, TensorImages, TensorPoints
from gantrain.data.stream import BatchStream, keeps_on_device, mirror
from gantrain.data.build import DATA_LOOP_KEYS, build_data
from gantrain.data.catalog import CATALOG
from gantrain.errors import UserError
from gantrain.registry import DATASETS, load_builtin_parts

load_builtin_parts()
CPU = torch.device("cpu")
CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "data"


def random_images(n: int, size: int = 4, seed: int = 0) -> torch.Tensor:
    """n random uint8 images (N, 1, 3, size): asymmetric, so a mirrored one is told from the original."""
    return torch.randint(0, 256, (n, 1, 3, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class ImageMap(Dataset):
    """The same images as a plain map-style dataset (no get_batch): forces the DataLoader path."""

    def __init__(self, images: torch.Tensor) -> None:
        self.tensors = TensorImages(images, torch.arange(len(images)))

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.tensors[index]


KINDS = {"tensor": lambda images: TensorImages(images, torch.arange(len(images))), "map": ImageMap}


def image_stream(kind: str, n: int = 22, batch_size: int = 4, **options) -> BatchStream:
    return BatchStream(KINDS[kind](random_images(n)), batch_size, seed=5, device=CPU, **options)


def take(stream: BatchStream, count: int) -> list[dict[str, torch.Tensor]]:
    return [stream.next() for _ in range(count)]


def same_batches(first: list[dict[str, torch.Tensor]], second: list[dict[str, torch.Tensor]]) -> bool:
    return len(first) == len(second) and all(
        a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(first, second))


def flipped(stream: BatchStream, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Which images of a batch came out mirrored, checked against the stored originals."""
    original = TensorImages(random_images(len(stream.dataset))).get_batch(batch["label"])["real"]
    mirrored = (batch["real"] == original.flip(-1)).flatten(1).all(1)
    assert torch.all(mirrored | (batch["real"] == original).flatten(1).all(1)), "neither original nor mirror image"
    return mirrored


# ---------------------------------------------------------------- tensors kept on the training device


def test_on_device_auto_only_on_accelerators() -> None:
    """auto keeps data on cuda/mps, not on the CPU; true/false are explicit; anything else is a one-line error."""
    assert keeps_on_device("auto", torch.device("cuda")) and keeps_on_device("auto", torch.device("mps"))
    assert not keeps_on_device("auto", CPU)
    assert keeps_on_device(True, CPU) and not keeps_on_device(False, torch.device("cuda"))
    with pytest.raises(UserError, match="data.on_device"):
        keeps_on_device("gpu", CPU)


@pytest.mark.parametrize("dataset", [TensorImages(random_images(10), torch.arange(10)),
                                     TensorPoints(torch.randn(10, 2), torch.arange(10))])
def test_on_device_storage_serves_batches(dataset) -> None:
    """on_device=true moves the storage (here onto the CPU: the code is device-agnostic) and batches still come."""
    spec = DataSpec(shape=tuple(dataset.samples.shape[1:]))
    expected = dataset.get_batch(torch.arange(10))
    stream = BatchStream.from_config(DataSource(dataset, spec), {"on_device": True}, 5, seed=0, device=CPU)
    assert stream.dataset is dataset and dataset.device == CPU
    batches = take(stream, 2)
    labels = torch.cat([b["label"] for b in batches])
    assert sorted(labels.tolist()) == list(range(10))
    assert torch.equal(torch.cat([b["real"] for b in batches]), expected["real"][labels])


def test_get_batch_takes_indices_from_any_device() -> None:
    """get_batch moves the indices to the storage, so previews and metrics may pass CPU indices."""
    images = TensorImages(random_images(6)).to(CPU)
    real = images.get_batch(torch.tensor([4, 1]))["real"]
    assert real.dtype == torch.float32 and real.device == images.device
    assert torch.equal(real, images.images[[4, 1]].float() / 127.5 - 1)


def test_on_device_true_needs_tensor_data() -> None:
    """on_device=true on data that only a DataLoader can read is refused; auto quietly keeps the DataLoader."""
    source = DataSource(ImageMap(random_images(8)), DataSpec(shape=(1, 3, 4)))
    with pytest.raises(UserError, match="data.cache=true"):
        BatchStream.from_config(source, {"name": "image_folder", "on_device": True}, 4, 0, CPU)
    assert BatchStream.from_config(source, {"on_device": "auto"}, 4, 0, CPU).next()["real"].shape == (4, 1, 3, 4)


# ---------------------------------------------------------------- horizontal flips


def test_mirror_flips_only_the_chosen_images() -> None:
    images = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    result = mirror(images, torch.tensor([True, False]))
    assert torch.equal(result[0], images[0].flip(-1)) and torch.equal(result[1], images[1])


@pytest.mark.parametrize("kind", KINDS)
def test_flips_reproducible_mirror_images_about_half(kind: str) -> None:
    """Flips are mirror images, about half of them, identical for the same seed; without hflip, none."""
    stream = image_stream(kind, n=200, batch_size=20, hflip=True)
    batches = take(stream, 10)  # one whole epoch
    share = torch.cat([flipped(stream, b) for b in batches]).float().mean().item()
    assert 0.38 < share < 0.62
    assert same_batches(batches, take(image_stream(kind, n=200, batch_size=20, hflip=True), 10))
    plain = image_stream(kind, n=200, batch_size=20)
    assert not any(flipped(plain, b).any() for b in take(plain, 10))


def test_flips_change_between_epochs() -> None:
    """Each epoch draws its own coins: the same image is not always flipped the same way."""
    stream = image_stream("tensor", n=40, batch_size=40, hflip=True)
    first, second = (stream.next() for _ in range(2))
    by_image = [dict(zip(b["label"].tolist(), flipped(stream, b).tolist())) for b in (first, second)]
    assert by_image[0] != by_image[1]


def test_tensor_and_dataloader_paths_flip_alike() -> None:
    """The same (seed, epoch, position) flips the same way whichever path reads the data."""
    assert same_batches(take(image_stream("tensor", hflip=True), 12), take(image_stream("map", hflip=True), 12))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stop_after", [3, 5, 6])  # mid-epoch, at its end (5 per epoch), just past it
def test_flipped_resume_matches_uninterrupted(kind: str, stop_after: int) -> None:
    """Restored from state_dict mid-epoch, the stream continues with the very same flipped batches."""
    reference = take(image_stream(kind, hflip=True), stop_after + 6)
    interrupted = image_stream(kind, hflip=True)
    take(interrupted, stop_after)
    resumed = image_stream(kind, hflip=True)
    resumed.load_state_dict(interrupted.state_dict())
    assert same_batches(take(resumed, 6), reference[stop_after:])


def test_hflip_refused_for_points_and_non_booleans() -> None:
    points = DataSource(TensorPoints(torch.randn(8, 2)), DataSpec(shape=(2,), bounded=False))
    with pytest.raises(UserError, match="holds points"):
        BatchStream.from_config(points, {"name": "8gaussians", "hflip": True}, 4, 0, CPU)
    images = DataSource(TensorImages(random_images(8)), DataSpec(shape=(1, 3, 4)))
    with pytest.raises(UserError, match="data.hflip must be true or false"):
        BatchStream.from_config(images, {"hflip": "yes"}, 4, 0, CPU)


# ---------------------------------------------------------------- data-parallel ranks


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_slices_make_up_the_global_batch(kind: str, world_size: int) -> None:
    """Every rank's slice, concatenated in rank order, is the single-process batch, across an epoch boundary."""
    steps = 8  # 22 samples, batch 4: 5 batches per epoch
    whole = take(image_stream(kind, hflip=True), steps)
    ranks = [image_stream(kind, hflip=True, rank=r, world_size=world_size) for r in range(world_size)]
    for step in range(steps):
        parts = [rank.next() for rank in ranks]
        assert all(len(p["label"]) == 4 // world_size for p in parts)
        assert same_batches([{k: torch.cat([p[k] for p in parts]) for k in parts[0]}], [whole[step]])
        assert all(rank.state_dict() == ranks[0].state_dict() for rank in ranks)
    assert ranks[0].state_dict() == {"epoch": 1, "samples_taken": 12}


def test_rank_resume_matches_uninterrupted() -> None:
    """A rank restored from the shared position continues with its own slices."""
    reference = take(image_stream("tensor", hflip=True, rank=1, world_size=2), 9)
    resumed = image_stream("tensor", hflip=True, rank=1, world_size=2)
    resumed.load_state_dict({"epoch": 0, "batches_taken": 3})
    assert same_batches(take(resumed, 6), reference[3:])


def test_global_batch_not_divisible_by_world_size() -> None:
    with pytest.raises(UserError, match="not divisible by world_size=3"):
        image_stream("tensor", batch_size=4, world_size=3)
    with pytest.raises(UserError, match="rank 2"):
        image_stream("tensor", batch_size=4, rank=2, world_size=2)


# ---------------------------------------------------------------- image_folder cache


def write_pngs(root: Path, count: int = 6) -> Path:
    """Random colour PNGs of differing shapes, so resizing and center-cropping matter; two class folders."""
    rng = np.random.default_rng(0)
    for i in range(count):
        height, width = (12, 20) if i % 2 else (18, 10)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = root / ("cats" if i < count // 2 else "dogs") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return root


def test_image_folder_cache_gives_the_same_batches(tmp_path: Path) -> None:
    """cache=true decodes once into uint8 tensors (the tensor path) and yields exactly cache=false's batches."""
    root = write_pngs(tmp_path)
    streamed = DATASETS.build("image_folder", {"root": str(root), "image_size": 8})
    cached = DATASETS.build("image_folder", {"root": str(root), "image_size": 8, "cache": True})
    assert isinstance(cached.dataset, TensorImages) and not isinstance(streamed.dataset, TensorImages)
    assert cached.spec == streamed.spec and cached.dataset.images.shape == (6, 3, 8, 8)
    config = {"hflip": True, "on_device": "auto", "num_workers": 0}
    batches = [take(BatchStream.from_config(source, config, 3, seed=1, device=CPU), 5) for source in (streamed, cached)]
    assert same_batches(*batches)


def test_image_folder_cache_limit(tmp_path: Path) -> None:
    """Memory over data.cache_max_gb is refused in one line naming its size and the limit, before decoding."""
    root = write_pngs(tmp_path, count=2)
    with pytest.raises(UserError, match=r"2 images of 3x8x8 take 3\.84e-07 GB decoded \(uint8\), over "
                                        r"data.cache_max_gb=1e-07; .* data.storage=disk"):
        DATASETS.build("image_folder", {"root": str(root), "image_size": 8, "cache": True, "cache_max_gb": 1e-7,
                                        "storage": "memory"})
    with pytest.raises(UserError, match="data.cache_max_gb must be a positive number"):
        DATASETS.build("image_folder", {"root": str(root), "cache_max_gb": 0})


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_data_presets_name_stream_keys_and_builder_options_only(preset: str) -> None:
    """Every preset sets on_device and hflip (off, as in the papers); the rest are its builder's options
    (a named dataset's builder takes its own download options and passes the rest to its layout's builder)."""
    cfg = compose_config(f"data={preset}").data
    assert cfg.on_device == "auto" and cfg.hflip is False
    builder_options = set(inspect.signature(DATASETS.get(cfg.name)).parameters)
    if cfg.name in CATALOG:
        builder_options |= set(inspect.signature(DATASETS.get(CATALOG[cfg.name].layout)).parameters)
    assert all(key in builder_options for key in cfg if key not in DATA_LOOP_KEYS)


def test_build_data_keeps_stream_keys_from_the_builder() -> None:
    source = build_data(OmegaConf.create({"name": "8gaussians", "num_samples": 8, "on_device": "auto",
                                          "hflip": False, "num_workers": 0}))
    assert len(source.dataset) == 8
