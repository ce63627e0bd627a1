"""Datasets and the batch stream: real on-disk formats in, correctly scaled tensors out."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from conftest import write_mnist
from gantrain.data.source import DataSource, TensorImages, TensorPoints
from gantrain.data.stream import BatchStream
from gantrain.errors import UserError
from gantrain.registry import DATASETS, load_builtin_parts

load_builtin_parts()
CPU = torch.device("cpu")


def everything(source: DataSource) -> dict[str, torch.Tensor]:
    """All samples of a tensor-backed source in one batch."""
    return source.dataset.get_batch(torch.arange(len(source.dataset)))


# ---------------------------------------------------------------- MNIST / Fashion-MNIST / CIFAR-10


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_datasets_load_through_torchvision(tmp_path: Path, name: str, folder: str) -> None:
    """IDX files in torchvision's layout load at native 28x28, scaled to [-1, 1], labels intact."""
    write_mnist(tmp_path, folder=folder, n_train=40, n_test=12)
    source = DATASETS.build(name, {"root": str(tmp_path), "download": False})
    assert len(source.dataset) == 40
    assert source.spec.shape == (1, 28, 28)
    assert source.spec.num_classes == 10
    assert source.spec.bounded
    batch = everything(source)
    real, labels = batch["real"], batch["label"]
    assert real.shape == (40, 1, 28, 28) and real.dtype == torch.float32
    assert real.min() >= -1.0 and real.max() <= 1.0
    assert real.max() == 1.0 and real.min() < -0.6  # 255 -> 1, the dark background near -1
    assert labels.dtype == torch.long and labels.min() >= 0 and labels.max() <= 9
    # write_mnist draws a bright bar on row 2 + 2 * label: labels must belong to their images
    rows = 2 + 2 * labels
    assert torch.all(real[torch.arange(40), 0, rows, 10] == 1.0)


def test_idx_test_split(tmp_path: Path) -> None:
    """train=false reads the t10k files."""
    write_mnist(tmp_path, n_train=40, n_test=12)
    source = DATASETS.build("mnist", {"root": str(tmp_path), "download": False, "train": False})
    assert len(source.dataset) == 12


@pytest.mark.parametrize("size", [16, 32])
def test_idx_dataset_resized(tmp_path: Path, size: int) -> None:
    """data.image_size resizes once at load time and the spec follows."""
    write_mnist(tmp_path, n_train=20, n_test=4)
    source = DATASETS.build("mnist", {"root": str(tmp_path), "download": False, "image_size": size})
    assert source.spec.shape == (1, size, size)
    real = everything(source)["real"]
    assert real.shape == (20, 1, size, size)
    assert real.min() >= -1.0 and real.max() <= 1.0
    assert real.max() > 0.5  # the bright bar survives the resize


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_missing_idx_dataset_without_download(tmp_path: Path, name: str) -> None:
    """No files and download=false: a UserError telling the user about data.download."""
    with pytest.raises(UserError, match="data.download=true"):
        DATASETS.build(name, {"root": str(tmp_path / "empty"), "download": False})


def test_fashion_files_are_not_mnist(tmp_path: Path) -> None:
    """MNIST files do not satisfy a Fashion-MNIST request (each has its own folder)."""
    write_mnist(tmp_path, folder="MNIST", n_train=8, n_test=4)
    with pytest.raises(UserError, match="data.download=true"):
        DATASETS.build("fashion_mnist", {"root": str(tmp_path), "download": False})


def test_cifar10_missing_without_download(tmp_path: Path) -> None:
    """CIFAR-10 absent and download=false: a UserError, not a torchvision traceback."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="data.download=true"):
        DATASETS.build("cifar10", {"root": str(tmp_path / "empty"), "download": False})


# ---------------------------------------------------------------- digits


def test_digits_offline() -> None:
    """sklearn's digits: 1,797 labelled images upscaled to 16x16, in [-1, 1]."""
    source = DATASETS.build("digits")
    assert source.spec.shape == (1, 16, 16)
    assert source.spec.num_classes == 10
    assert len(source.dataset) == 1797
    batch = everything(source)
    assert batch["real"].shape == (1797, 1, 16, 16)
    assert batch["real"].min() == -1.0 and batch["real"].max() == 1.0
    assert set(batch["label"].tolist()) == set(range(10))


def test_digits_other_size() -> None:
    """image_size changes the digits' resolution."""
    source = DATASETS.build("digits", {"image_size": 28})
    assert source.spec.shape == (1, 28, 28)
    assert source.dataset[0]["real"].shape == (1, 28, 28)


# ---------------------------------------------------------------- image_folder


def save(path: Path, size: tuple[int, int] = (20, 20), colour=(255, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def image_folder(root: Path, **options) -> DataSource:
    return DATASETS.build("image_folder", {"root": str(root), **options})


def test_image_folder_flat_is_unlabelled(tmp_path: Path) -> None:
    """Images directly under root: an unlabelled dataset of (3, S, S) items in [-1, 1]."""
    for i in range(3):
        save(tmp_path / f"img{i}.png")
    source = image_folder(tmp_path, image_size=16)
    assert source.spec.shape == (3, 16, 16)
    assert source.spec.num_classes is None
    assert len(source.dataset) == 3
    item = source.dataset[0]
    assert set(item) == {"real"}
    real = item["real"]
    assert real.shape == (3, 16, 16)
    assert torch.allclose(real[0], torch.ones(16, 16)) and torch.allclose(real[1:], -torch.ones(2, 16, 16))


def test_image_folder_class_subfolders_are_labelled_sorted(tmp_path: Path) -> None:
    """One subfolder per class: labelled, classes numbered in sorted order."""
    colours = {"zebra": (255, 255, 255), "apple": (0, 0, 0), "mango": (128, 128, 128)}
    for cls, colour in colours.items():
        for i in range(2):
            save(tmp_path / cls / f"{i}.png", colour=colour)
    source = image_folder(tmp_path, image_size=8, channels=1)
    assert source.spec.num_classes == 3
    assert len(source.dataset) == 6
    brightness_by_label = {}
    for i in range(len(source.dataset)):
        item = source.dataset[i]
        brightness_by_label.setdefault(int(item["label"]), set()).add(round(item["real"].mean().item(), 2))
    # apple (black) = 0, mango (grey) = 1, zebra (white) = 2
    assert brightness_by_label == {0: {-1.0}, 1: {0.0}, 2: {1.0}}


def test_image_folder_mixed_layout_is_unlabelled(tmp_path: Path) -> None:
    """Some images outside any class folder: no labels rather than wrong ones."""
    save(tmp_path / "cats" / "a.png")
    save(tmp_path / "loose.png")
    source = image_folder(tmp_path, image_size=8)
    assert source.spec.num_classes is None
    assert "label" not in source.dataset[0]


def test_image_folder_greyscale(tmp_path: Path) -> None:
    """channels=1 converts colour images to one luminance channel."""
    save(tmp_path / "red.png", colour=(255, 0, 0))
    rgb = image_folder(tmp_path, image_size=8, channels=3)
    grey = image_folder(tmp_path, image_size=8, channels=1)
    assert rgb.spec.shape == (3, 8, 8) and grey.spec.shape == (1, 8, 8)
    assert rgb.dataset[0]["real"].shape == (3, 8, 8)
    grey_value = grey.dataset[0]["real"]
    assert grey_value.shape == (1, 8, 8)
    expected = 76 / 255 * 2 - 1  # PIL's L of pure red is 76
    assert torch.allclose(grey_value, torch.full((1, 8, 8), expected), atol=0.01)


@pytest.mark.parametrize("size", [(60, 20), (20, 60)])
def test_image_folder_resize_and_center_crop(tmp_path: Path, size: tuple[int, int]) -> None:
    """Non-square images: shorter side resized to image_size, then the centre cut out square."""
    width, height = size
    image = np.zeros((height, width, 3), dtype=np.uint8)  # black edges, white middle third
    if width > height:
        image[:, width // 3: 2 * width // 3] = 255
    else:
        image[height // 3: 2 * height // 3, :] = 255
    Image.fromarray(image).save(tmp_path / "image.png")
    real = image_folder(tmp_path, image_size=16).dataset[0]["real"]
    assert real.shape == (3, 16, 16)
    # the kept centre square is the white middle third (blurred only at its edge by antialiasing)
    assert real[:, 2:14, 2:14].min() > 0.9
    assert real.mean() > 0.8


def test_image_folder_skips_corrupt_file_with_warning(tmp_path: Path) -> None:
    """A bad file among good ones is skipped, and the warning names it."""
    save(tmp_path / "good1.png")
    save(tmp_path / "good2.png")
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    with pytest.warns(UserWarning, match="broken.png"):
        source = image_folder(tmp_path, image_size=8)
    assert len(source.dataset) == 2
    for i in range(2):
        assert source.dataset[i]["real"].shape == (3, 8, 8)


def test_image_folder_ignores_non_images(tmp_path: Path) -> None:
    """Other files (notes, labels) are not mistaken for images and raise no warning."""
    save(tmp_path / "a.png")
    (tmp_path / "README.txt").write_text("hello")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = image_folder(tmp_path, image_size=8)
    assert len(source.dataset) == 1


def test_image_folder_empty_folder(tmp_path: Path) -> None:
    """A folder without images: a UserError naming the folder."""
    with pytest.raises(UserError, match="no readable images") as info:
        image_folder(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_image_folder_only_corrupt_files(tmp_path: Path) -> None:
    """Nothing readable left after skipping: a UserError, not an empty dataset."""
    (tmp_path / "broken.png").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="broken.png"), pytest.raises(UserError, match="no readable images"):
        image_folder(tmp_path)


def test_image_folder_missing_root(tmp_path: Path) -> None:
    """A root that does not exist: a UserError naming it."""
    with pytest.raises(UserError, match="not a folder") as info:
        image_folder(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


# ---------------------------------------------------------------- toy 2-D


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians", "swissroll", "linear_gaussian"])
def test_toy_datasets_build(name: str) -> None:
    """Each toy distribution gives unbounded 2-D points of the requested count."""
    source = DATASETS.build(name, {"num_samples": 500, "seed": 1})
    assert source.spec.shape == (2,)
    assert not source.spec.bounded
    assert len(source.dataset) == 500
    points = everything(source)["real"]
    assert points.shape == (500, 2) and points.dtype == torch.float32
    assert torch.isfinite(points).all()


def test_eight_gaussians_ring() -> None:
    """8 modes on a ring of radius 2, std 0.02, labelled 0..7 by mode."""
    batch = everything(DATASETS.build("8gaussians", {"num_samples": 4000}))
    points, modes = batch["real"], batch["label"]
    assert DATASETS.build("8gaussians", {"num_samples": 10}).spec.num_classes == 8
    radius = points.norm(dim=1)
    assert (radius - 2).abs().mean() < 0.03
    assert set(modes.tolist()) == set(range(8))
    angles = modes.float() * (2 * math.pi / 8)
    centres = 2 * torch.stack([angles.cos(), angles.sin()], dim=1)
    offsets = points - centres
    assert offsets.abs().max() < 0.15  # every point sits next to its own mode's centre
    assert offsets.std().item() == pytest.approx(0.02, rel=0.1)


def test_twenty_five_gaussians_grid() -> None:
    """25 modes on {-4,-2,0,2,4}^2 with std 0.05."""
    batch = everything(DATASETS.build("25gaussians", {"num_samples": 5000}))
    points, modes = batch["real"], batch["label"]
    centres = (points / 2).round() * 2
    assert set(centres.flatten().tolist()) <= {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert len({tuple(c) for c in centres.tolist()}) == 25
    assert set(modes.tolist()) == set(range(25))
    assert (points - centres).std().item() == pytest.approx(0.05, rel=0.1)


def test_linear_gaussian_moments() -> None:
    """x = z A + b: mean b = [1, 2] and covariance A^T A."""
    points = everything(DATASETS.build("linear_gaussian", {"num_samples": 65536}))["real"].double()
    a = torch.tensor([[1.0, 2.0], [-0.1, 0.5]], dtype=torch.float64)
    assert torch.allclose(points.mean(0), torch.tensor([1.0, 2.0], dtype=torch.float64), atol=0.05)
    assert torch.allclose(torch.cov(points.T), a.T @ a, atol=0.06)
    assert DATASETS.build("linear_gaussian", {"num_samples": 4}).spec.num_classes is None


@pytest.mark.parametrize("name", ["8gaussians", "swissroll"])
def test_toy_seed_reproducible(name: str) -> None:
    """Same seed, same points; another seed, other points."""
    first = everything(DATASETS.build(name, {"num_samples": 300, "seed": 5}))["real"]
    again = everything(DATASETS.build(name, {"num_samples": 300, "seed": 5}))["real"]
    other = everything(DATASETS.build(name, {"num_samples": 300, "seed": 6}))["real"]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


# ---------------------------------------------------------------- BatchStream


class IndexDataset(Dataset):
    """A plain map-style dataset (no get_batch): forces the DataLoader path."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"real": torch.tensor([float(index)]), "label": torch.tensor(index)}


def tensor_dataset(n: int) -> TensorPoints:
    """A tensor dataset whose point i is (i, -i): the get_batch fast path."""
    values = torch.arange(n, dtype=torch.float32)
    return TensorPoints(torch.stack([values, -values], dim=1), torch.arange(n))


DATASET_KINDS = {"tensor": tensor_dataset, "map": IndexDataset}


def ids(batch: dict[str, torch.Tensor]) -> list[int]:
    return batch["label"].tolist()


def take(stream: BatchStream, count: int) -> list[list[int]]:
    return [ids(stream.next()) for _ in range(count)]


@pytest.mark.parametrize("kind", DATASET_KINDS)
def test_stream_same_seed_same_order(kind: str) -> None:
    """The data order is a function of the seed alone."""
    make = DATASET_KINDS[kind]
    first = take(BatchStream(make(30), 4, seed=3, device=CPU), 12)
    again = take(BatchStream(make(30), 4, seed=3, device=CPU), 12)
    other = take(BatchStream(make(30), 4, seed=4, device=CPU), 12)
    assert first == again
    assert first != other


@pytest.mark.parametrize("kind", DATASET_KINDS)
def test_stream_every_sample_once_per_epoch(kind: str) -> None:
    """Each epoch is a permutation: every sample exactly once, shuffled differently per epoch."""
    stream = BatchStream(DATASET_KINDS[kind](20), 5, seed=0, device=CPU)
    assert stream.batches_per_epoch == 4
    epoch0 = sum(take(stream, 4), [])
    epoch1 = sum(take(stream, 4), [])
    assert sorted(epoch0) == list(range(20))
    assert sorted(epoch1) == list(range(20))
    assert epoch0 != epoch1 and epoch0 != list(range(20))


@pytest.mark.parametrize("kind", DATASET_KINDS)
def test_stream_batch_contents(kind: str) -> None:
    """Batches carry the dataset's tensors with a leading batch dimension."""
    batch = BatchStream(DATASET_KINDS[kind](10), 4, seed=0, device=CPU).next()
    assert batch["real"].shape[0] == 4 and batch["label"].shape == (4,)
    assert torch.equal(batch["real"][:, 0], batch["label"].float())


def test_stream_drop_last() -> None:
    """drop_last: only full batches, the remainder waits for another epoch."""
    stream = BatchStream(tensor_dataset(23), 5, seed=1, device=CPU)
    assert stream.batches_per_epoch == 4
    epoch0 = take(stream, 4)
    assert all(len(b) == 5 for b in epoch0)
    assert len(set(sum(epoch0, []))) == 20
    assert stream.epoch == 0
    take(stream, 1)
    assert stream.state_dict() == {"epoch": 1, "samples_taken": 5}


def test_stream_keep_last() -> None:
    """drop_last=False: a short final batch completes each epoch."""
    stream = BatchStream(tensor_dataset(23), 5, seed=1, device=CPU, drop_last=False)
    assert stream.batches_per_epoch == 5
    epoch0 = take(stream, 5)
    assert [len(b) for b in epoch0] == [5, 5, 5, 5, 3]
    assert sorted(sum(epoch0, [])) == list(range(23))


@pytest.mark.parametrize("kind", DATASET_KINDS)
@pytest.mark.parametrize("stop_after", [2, 4, 5, 7])  # mid-epoch, at the epoch's end, just past it, ...
def test_stream_resume_matches_uninterrupted(kind: str, stop_after: int) -> None:
    """A stream restored from state_dict continues with exactly the batches an unbroken one gives."""
    make = DATASET_KINDS[kind]  # 22 samples, batch 5: 4 batches per epoch, 2 dropped
    reference = take(BatchStream(make(22), 5, seed=7, device=CPU), stop_after + 6)

    interrupted = BatchStream(make(22), 5, seed=7, device=CPU)
    assert take(interrupted, stop_after) == reference[:stop_after]
    state = dict(interrupted.state_dict())

    resumed = BatchStream(make(22), 5, seed=7, device=CPU)
    resumed.load_state_dict(state)
    assert take(resumed, 6) == reference[stop_after:]
    # the original stream, restored in place, also agrees
    interrupted.load_state_dict(state)
    assert take(interrupted, 6) == reference[stop_after:]


def test_stream_state_survives_torch_save(tmp_path: Path) -> None:
    """The position is plain ints, loadable with weights_only=True as checkpoints are."""
    stream = BatchStream(tensor_dataset(12), 5, seed=2, device=CPU)
    take(stream, 3)
    torch.save(stream.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state == {"epoch": 1, "samples_taken": 5}


def test_stream_image_dataset() -> None:
    """The fast path on images converts uint8 to [-1, 1] floats."""
    images = torch.randint(0, 256, (12, 1, 4, 4), dtype=torch.uint8)
    images[0] = 255
    images[1] = 0
    stream = BatchStream(TensorImages(images), 6, seed=0, device=CPU)
    batches = [stream.next()["real"] for _ in range(2)]
    real = torch.cat(batches)
    assert real.shape == (12, 1, 4, 4)
    assert real.min() == -1.0 and real.max() == 1.0


def test_stream_dataset_smaller_than_batch() -> None:
    """Fewer samples than one batch: a UserError naming both numbers."""
    with pytest.raises(UserError, match="batch_size=8") as info:
        BatchStream(tensor_dataset(5), 8, seed=0, device=CPU)
    assert "5 samples" in str(info.value)
    with pytest.raises(UserError):
        BatchStream(IndexDataset(5), 8, seed=0, device=CPU)
