"""data.storage: memory and a memory-mapped disk cache give the same batches; the cache is keyed, atomic, shared."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import REPO, assert_same_training_state, run_cli, train_straight_and_resumed
from gantrain.data import storage as storage_module
from gantrain.data.build import build_data
from gantrain.data.storage import CACHE_FOLDER, Storage
from gantrain.data.stream import BatchStream
from gantrain.errors import UserError
from gantrain.registry import load_builtin_parts

load_builtin_parts()
CPU = torch.device("cpu")
TINY_PIX2PIX = ["model=pix2pix", "data=paired", "data.load_size=36", "data.crop_size=32",
                "model.generator.base_channels=4", "model.generator.max_channels=8",
                "model.discriminator.base_channels=4", "model.discriminator.n_layers=2", "device=cpu"]


def save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_layout(root: Path, layout: str) -> dict:
    """Tiny real files in ``layout``; returns the data config that reads them."""
    rng = np.random.default_rng(0)
    if layout == "paired":
        for split, count in (("train", 5), ("val", 2)):
            for index in range(count):
                a = noise(rng, 40, 40)
                save(np.concatenate([a, 255 - a], axis=1), root / split / f"{index:03d}.png")
        return {"name": "paired", "load_size": 36, "crop_size": 32}
    if layout == "unpaired":
        for folder, count in (("trainA", 4), ("trainB", 3), ("testA", 2), ("testB", 2)):
            for index in range(count):
                save(noise(rng, 40, 40), root / folder / f"{index:03d}.png")
        return {"name": "unpaired", "load_size": 36, "crop_size": 32}
    if layout == "sr":  # photos of different sizes: a flat array with an offset table
        for index, (height, width) in enumerate([(40, 52), (48, 36), (44, 44)]):
            save(noise(rng, height, width), root / "train" / f"{index:04d}.png")
        save(noise(rng, 24, 28), root / "val" / "v.png")
        return {"name": "sr", "root": str(root / "train"), "val_root": str(root / "val"), "hr_size": 24, "repeat": 2}
    for index in range(6):  # image_folder, decoded once (data.cache=true): ProGAN's and DCGAN's folders
        save(noise(rng, 20, 14), root / ("cats" if index % 2 else "dogs") / f"{index}.png")
    return {"name": "image_folder", "image_size": 8, "cache": True}


def source(root: Path, options: dict, **more):
    return build_data(OmegaConf.create({"root": str(root), **options, **more}))


def batches(data, on_device: bool | str = "auto") -> list[dict[str, torch.Tensor]]:
    """Batches of changing sizes (as a growing network asks for): the position stays exact in samples."""
    stream = BatchStream.from_config(data, {"on_device": on_device, "hflip": False}, 2, seed=3, device=CPU)
    return [stream.next(size) for size in (2, 4, 2, 2)]


def banks_of(data):
    dataset = data.dataset
    return dataset.banks() if hasattr(dataset, "banks") else [dataset]


@pytest.mark.parametrize("layout", ["paired", "unpaired", "sr", "image_folder"])
def test_memory_and_disk_give_bitwise_equal_batches(tmp_path, layout):
    options = write_layout(tmp_path / "data", layout)
    in_memory = source(tmp_path / "data", options, storage="memory")
    on_disk = source(tmp_path / "data", options, storage="disk", cache_dir=str(tmp_path / "cache"))
    assert all(getattr(bank, "mapped", False) for bank in banks_of(on_disk))
    assert not any(getattr(bank, "mapped", False) for bank in banks_of(in_memory))
    # on_device=true: a mapped cache stays mapped and hands each batch's crops to the training device
    for a, b in zip(batches(in_memory), batches(on_disk, on_device=True)):
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    for split, held_out in in_memory.held_out.items():
        index = torch.arange(len(held_out))
        assert all(torch.equal(x, y) for x, y in zip(held_out.get_batch(index).values(),
                                                      on_disk.held_out[split].get_batch(index).values()))
    if layout == "sr":  # HR photos of three sizes: one flat array and its offset table
        assert on_disk.dataset.hr.stacked is None and on_disk.dataset.hr.table.shape == (3, 4)
        assert torch.equal(in_memory.held_out["val"].whole(0)[1], on_disk.held_out["val"].whole(0)[1])


def test_the_cache_lies_next_to_the_data_and_a_second_build_maps_it(tmp_path, caplog):
    options = write_layout(tmp_path / "data", "paired")
    with caplog.at_level(logging.INFO, logger="gantrain"):
        source(tmp_path / "data", options, storage="disk")
        first = caplog.text
        caplog.clear()
        source(tmp_path / "data", options, storage="disk")
    assert first.count("decoding") == 2 and "mapped from" not in first  # train/ and val/
    assert caplog.text.count("mapped from") == 2 and "decoding" not in caplog.text
    assert len([p for p in (tmp_path / "data" / CACHE_FOLDER).iterdir() if p.is_dir()]) == 2


def test_pix2pix_resumes_exactly_from_a_disk_cache(tmp_path):
    root = tmp_path / "facades"
    write_layout(root, "paired")
    common = [*TINY_PIX2PIX, f"data.root={root}", "data.storage=disk", "trainer.batch_size=2", "trainer.log_every=1",
              "trainer.sample_every=100"]
    _, split, _, a, b = train_straight_and_resumed(common, total=3, split_at=2, cwd=tmp_path)
    assert a["data"] == b["data"] == {"epoch": 1, "samples_taken": 2}
    assert_same_training_state(a, b)
    log = (split / "gantrain.log").read_text()
    assert log.count("decoding") == 0 and log.count("mapped from") == 4  # the straight run built it; both reads map it


def test_a_changed_file_or_preprocessing_rebuilds_the_cache(tmp_path, caplog):
    options = write_layout(tmp_path / "data", "unpaired")
    cache = str(tmp_path / "cache")
    before = source(tmp_path / "data", options, storage="disk", cache_dir=cache)
    changed = tmp_path / "data" / "trainA" / "001.png"
    save(np.zeros((40, 40, 3), np.uint8), changed)
    os.utime(changed, ns=(1, 1))  # a different mtime even on a coarse clock
    with caplog.at_level(logging.INFO, logger="gantrain"):
        after = source(tmp_path / "data", options, storage="disk", cache_dir=cache)
    assert "changed since" in caplog.text and "rebuilding" in caplog.text
    index = torch.tensor([1])
    assert before.dataset.a.crop_batch(index, (36, 36)).sum() > 0
    assert after.dataset.a.crop_batch(index, (36, 36)).sum() == 0  # the new file's pixels, not the old cache's
    entries = {p.name for p in Path(cache).iterdir() if p.is_dir()}
    source(tmp_path / "data", {**options, "load_size": 38}, storage="disk", cache_dir=cache)
    assert len({p.name for p in Path(cache).iterdir() if p.is_dir()} - entries) == 4  # a cache of its own per folder


def test_a_half_written_cache_is_never_read_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    options = write_layout(tmp_path / "data", "paired")
    cache = tmp_path / "cache"
    reference = batches(source(tmp_path / "data", options, storage="memory"))
    real_write = storage_module._write

    def disk_full(folder, files, prepare):
        real_write(folder, files[:2], prepare)  # some pixels written, then the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_module, "_write", disk_full)
    with pytest.raises(UserError, match="the disk is full.*partial cache was removed") as error:
        source(tmp_path / "data", options, storage="disk", cache_dir=str(cache))
    assert "\n" not in str(error.value)
    assert not [p for p in cache.iterdir() if p.is_dir()]  # neither the partial folder nor an entry
    monkeypatch.setattr(storage_module, "_write", real_write)

    built = batches(source(tmp_path / "data", options, storage="disk", cache_dir=str(cache)))
    entry = next(p for p in cache.iterdir() if p.is_dir() and "train" in p.name)
    (entry / "index.json").unlink()  # as if the build died before its last file: the folder is not a cache
    (entry / "part0.u8").unlink()
    (entry / "part0.u8").write_bytes(b"\0" * 16)  # (a new file: one truncated in place under a mapping faults)
    rebuilt = batches(source(tmp_path / "data", options, storage="disk", cache_dir=str(cache)))
    for a, b, c in zip(reference, built, rebuilt):
        assert all(torch.equal(a[key], b[key]) and torch.equal(a[key], c[key]) for key in a)
    assert json.loads((entry / "index.json").read_text())["count"] == 5


RSS_PROBE = textwrap.dedent("""
    import sys, numpy as np, torch
    from pathlib import Path
    from PIL import Image
    from gantrain.data.storage import Storage
    from gantrain.data.image_bank import to_uint8_tensor, open_image

    def private_kb():  # anonymous resident memory: what a process holds for itself (mapped file pages are shared)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])

    mode, cache, folders = sys.argv[1], sys.argv[2], sys.argv[3:]
    growth = []
    for folder in folders:
        files = sorted(Path(folder).glob("*.png"))
        before = private_kb()
        bank = Storage(mode, cache).bank(files, lambda p: to_uint8_tensor(open_image(p), 3), {"probe": 1},
                                         [p.name for p in files], "probe")
        top = max(int(bank.image(i).max()) for i in range(len(bank)))  # every page read (max: no wider temporaries)
        growth.append(private_kb() - before)
        del bank
    print(*growth)
""")


def test_private_memory_does_not_grow_with_the_dataset_on_disk(tmp_path):
    rng = np.random.default_rng(0)
    folders = []
    for count in (20, 200):
        folder = tmp_path / f"n{count}"
        for index in range(count):
            save(noise(rng, 160, 160), folder / f"{index:04d}.png")  # 75 KiB decoded each: 14.6 MiB for 200
        folders.append(str(folder))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    probe = [sys.executable, "-c", RSS_PROBE]
    cache = str(tmp_path / "cache")
    subprocess.run([*probe, "disk", cache, *folders], env=env, check=True, capture_output=True)  # builds the caches
    growth = {}
    for mode in ("disk", "memory"):
        result = subprocess.run([*probe, mode, cache, *reversed(folders)], env=env, check=True, capture_output=True,
                                text=True)
        growth[mode] = dict(zip((200, 20), map(int, result.stdout.split())))
    assert growth["memory"][200] - growth["memory"][20] > 12_000, growth  # the probe sees a dataset held in memory (KiB)
    assert growth["disk"][200] - growth["disk"][20] < 6_000, growth  # mapped: the page cache holds it, shared


def test_auto_picks_memory_or_disk_by_the_available_ram_and_says_why(tmp_path, monkeypatch, caplog):
    options = write_layout(tmp_path / "data", "image_folder")  # 6 images of 3x8x8: 1,152 bytes
    caplog.set_level(logging.INFO, logger="gantrain")
    monkeypatch.setattr(storage_module, "available_memory", lambda: 10**9)
    assert not source(tmp_path / "data", options, cache_dir=str(tmp_path / "cache")).dataset.mapped
    assert "data.storage=auto chose memory" in caplog.text and "under 50%" in caplog.text
    caplog.clear()
    monkeypatch.setattr(storage_module, "available_memory", lambda: 2_000)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two local processes: two copies in memory
    assert source(tmp_path / "data", options, cache_dir=str(tmp_path / "cache")).dataset.mapped
    assert "data.storage=auto chose disk" in caplog.text and "2 processes x" in caplog.text
    assert "115% of the 2e-06 GB of RAM available, over 50%" in caplog.text


def test_bad_storage_options_are_one_line(tmp_path):
    options = write_layout(tmp_path / "data", "paired")
    with pytest.raises(UserError, match="data.storage.*'tape'.*auto, memory, disk"):
        source(tmp_path / "data", options, storage="tape")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="data.cache_dir .*file/cache cannot be created"):
        source(tmp_path / "data", options, storage="disk", cache_dir=str(blocker / "cache"))
    with pytest.raises(UserError, match="data.storage=disk keeps decoded images, but data.cache=false"):
        source(tmp_path / "data", {"name": "image_folder", "cache": False}, storage="disk")
    assert isinstance(Storage("memory"), Storage)


def test_two_data_parallel_ranks_build_each_cache_once_and_map_it(tmp_path):
    root = tmp_path / "facades"
    write_layout(root, "paired")
    run_cli(*TINY_PIX2PIX, f"data.root={root}", "data.storage=disk", "trainer.batch_size=2", "trainer.max_steps=2",
            "trainer.devices=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    cache = root / CACHE_FOLDER
    entries = sorted(p.name.split("-")[0] for p in cache.iterdir() if p.is_dir())
    assert entries == ["train", "val"] and not list(cache.glob(".*partial"))  # one entry each, nothing half-written
    log = (tmp_path / "run" / "gantrain.log").read_text()  # rank 0's: each cache either built here or mapped
    assert log.count("decoding") + log.count("mapped from") == 2
