"""Named datasets: a local HTTP server on 127.0.0.1 serves small synthetic archives in the real layouts
(pix2pix's tar.gz of A|B pairs, CycleGAN's zip of trainA/trainB/testA/testB, DIV2K's HR and x4 LR zips,
EDSR's benchmark.tar, CelebA's zip); mirrors point at it and data.sha256 pins the synthetic archives' digests.
No test touches the real internet: a source other than the local server is only ever named, never asked.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import threading
import zipfile
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from conftest import FAST, run_cli
from test_multirun import fresh_hydra, train_in_process  # noqa: F401 - fresh_hydra is a fixture
from gantrain.data import catalog, download
from gantrain.data.download import COMPLETE, prepare
from gantrain.data.named import build_named, lookup
from gantrain.cli import NO_RUN_FOLDER, run_task, sample_arguments
from gantrain.sweeps.arguments import flags_first
from gantrain.errors import UserError

TINY_PIX2PIX = ["model=pix2pix", "data.load_size=36", "data.crop_size=32", "model.generator.base_channels=4",
                "model.generator.max_channels=8", "model.discriminator.base_channels=4",
                "model.discriminator.n_layers=2"]
TINY_CYCLEGAN = ["model=cyclegan", "data.load_size=36", "data.crop_size=32", "model.generator.base_channels=4",
                 "model.generator.blocks=1", "model.discriminator.base_channels=4", "model.discriminator.n_layers=2",
                 "model.pool_size=3"]
TINY_SRRESNET = ["model=srresnet", "data.hr_size=16", "model.generator.features=4", "model.generator.blocks=1",
                 "trainer.batch_size=2", "metrics.names=[]"]
TWO_STEPS = ["trainer.max_steps=2", "trainer.max_epochs=null", "trainer.sample_every=100",
             "trainer.checkpoint_every=100", *FAST]


# --- synthetic archives in the real layouts ------------------------------------------------------------------


def png(rng: np.random.Generator, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as bundle:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return path


def paired_files(name: str, rng: np.random.Generator) -> dict[str, bytes]:
    """pix2pix: NAME/train/*.jpg (and val/) of A|B side by side, 80x40."""
    return {f"{name}/{split}/{i}.png": png(rng, 80, 40) for split, count in (("train", 3), ("val", 2))
            for i in range(count)}


def unpaired_files(name: str, rng: np.random.Generator) -> dict[str, bytes]:
    return {f"{name}/{folder}/{i}.png": png(rng, 40, 40) for folder in ("trainA", "trainB", "testA", "testB")
            for i in range(2)}


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> Path:
    """The served folder: one synthetic archive per layout, under the real file names."""
    folder = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(0)
    write_tar(folder / "facades.tar.gz", paired_files("facades", rng))
    write_zip(folder / "horse2zebra.zip", unpaired_files("horse2zebra", rng))
    write_zip(folder / "DIV2K_train_HR.zip", {f"DIV2K_train_HR/000{i}.png": png(rng, 48, 40) for i in (1, 2)})
    write_zip(folder / "DIV2K_train_LR_bicubic_X4.zip",
              {f"DIV2K_train_LR_bicubic/X4/000{i}x4.png": png(rng, 12, 10) for i in (1, 2)})
    write_tar(folder / "benchmark.tar", {f"benchmark/{name}/HR/{i}.png": png(rng, 24, 24)
                                         for name in ("Set5", "Set14", "B100", "Urban100") for i in range(2)})
    write_zip(folder / "img_align_celeba.zip", {f"img_align_celeba/00000{i}.jpg": png(rng, 18, 22) for i in range(4)})
    write_tar(folder / "maps.tar.gz", {"maps/photos/0.png": png(rng, 80, 40)})  # not pix2pix's layout
    corrupt = paired_files("night2day", rng)
    corrupt["night2day/train/1.png"] = b"\x89PNG\r\n\x1a\n not really a picture"
    write_tar(folder / "night2day.tar.gz", corrupt)
    return folder


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Handler(SimpleHTTPRequestHandler):
    """Files from the served folder; every request logged; byte ranges honoured (for resumed transfers)."""

    requests: list[tuple[str, str, str | None]]

    def log_message(self, *args) -> None:  # quiet
        pass

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def do_HEAD(self) -> None:
        self.requests.append(("HEAD", self.path, self.headers.get("Range")))
        super().do_HEAD()

    def do_GET(self) -> None:
        wanted = self.headers.get("Range")
        self.requests.append(("GET", self.path, wanted))
        path = Path(self.translate_path(self.path))
        if not wanted or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()[int(wanted.removeprefix("bytes=").split("-")[0]):]
        self.send_response(206)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server(archives):
    """http://127.0.0.1:PORT/ serving ``archives`` from a thread; ``server.requests`` lists what was asked."""
    handler = type("Served", (Handler,), {"requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(archives)))
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.requests = handler.requests
    yield httpd
    httpd.shutdown()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_outside_sources(monkeypatch):
    """Nothing reaches the real hosts: environment mirrors and offline flags are this test's own."""
    for variable in ("GANTRAIN_DATASET_MIRROR", "GANTRAIN_DATA_DIR", "GANTRAIN_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)


def written(folder: Path) -> list[str]:
    """What a fetch left in ``folder``, leaving out the lock files that let one process fetch at a time."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def local_only(name: str, urls: tuple[str, ...]) -> catalog.NamedSet:
    """``name``'s table entry with its official hosts replaced by ``urls`` (local), for fall-through tests."""
    entry = lookup(name)
    return replace(entry, archives=tuple(replace(a, urls=urls) for a in entry.archives))


# --- each layout downloads, verifies, unpacks and trains ------------------------------------------------------


@pytest.mark.parametrize("name, overrides, archives_of", [
    ("facades", TINY_PIX2PIX, ["facades.tar.gz"]),  # through the command line; the others in process (faster)
    ("horse2zebra", TINY_CYCLEGAN, ["horse2zebra.zip"]),
    ("div2k_x4", [*TINY_SRRESNET, "data.val=set14"], ["DIV2K_train_HR.zip", "DIV2K_train_LR_bicubic_X4.zip",
                                                     "benchmark.tar"]),
    ("celeba", ["model=dcgan", "data.image_size=16", "trainer.batch_size=2"], ["img_align_celeba.zip"]),
])
@pytest.mark.usefixtures("fresh_hydra", "one_torch_thread")
def test_each_layout_downloads_verifies_unpacks_and_trains(tmp_path, server, archives, name, overrides, archives_of):
    pins = ",".join(f"{file}:{digest(archives / file)}" for file in archives_of)
    run = tmp_path / "run"
    arguments = [*overrides, f"data={name}", f"data.download_dir={tmp_path / 'data'}", f"data.mirror={server.url}",
                 f"data.sha256={{{pins}}}", *TWO_STEPS]
    if name == "facades":
        run_cli(*arguments, f"hydra.run.dir={run}", cwd=tmp_path)
    else:
        train_in_process(run, *arguments)
    assert (run / "checkpoints" / "last.pt").is_file()
    for file in archives_of:
        assert (tmp_path / "data" / file).is_file()  # kept: the verified archive, where a manual copy goes
    assert (tmp_path / "data" / catalog.CATALOG[name].archives[0].folder / COMPLETE).is_file()
    assert not list((tmp_path / "data").glob(".*partial")) and not list((tmp_path / "data").glob("*.part"))


def test_task_download_fetches_by_name_and_lists_every_name(tmp_path, server, capsys):
    run_task(OmegaConf.create({"task": "download", "name": None, "data": {"name": "digits"}}))
    listed = capsys.readouterr().out
    for name in ("facades", "edges2shoes", "horse2zebra", "maps_unpaired", "div2k_x4", "set14", "celeba"):
        assert f"\n{name} " in "\n" + listed
    assert "3.5 GB" in listed and "~30 MB" in listed and "junyanz/pytorch-CycleGAN-and-pix2pix" in listed
    fetched = run_cli("task=download", "name=facades", cwd=tmp_path,  # pix2pix publishes no checksum: a warning
                      env={"GANTRAIN_DATASET_MIRROR": server.url, "GANTRAIN_DATA_DIR": str(tmp_path / "d")})
    assert f"{tmp_path / 'd' / 'facades' / 'facades'}" in fetched.stdout and "its sha256 is" in fetched.stderr
    unknown = run_cli("task=download", "name=edges2shoe", cwd=tmp_path, check=False)
    assert unknown.returncode == 2 and "did you mean 'edges2shoes'" in unknown.stderr and "facades" in unknown.stderr
    # no run folder for this task, and its command still shows the composed config (--cfg job stays last)
    assert flags_first(sample_arguments(["task=download", "--cfg", "job"])) == ["--cfg", "job", "task=download",
                                                                                *NO_RUN_FOLDER]


# --- sources: mirrors, fall-through, checksums, offline, resume ------------------------------------------------


def test_a_404_falls_through_to_the_next_source_and_a_second_run_asks_nothing(tmp_path, server):
    entry = local_only("facades", (server.url + "gone/facades.tar.gz", server.url + "facades.tar.gz"))
    server.requests.clear()
    root = prepare(entry, str(tmp_path), server.url + "missing/", None)
    assert [path for _, path, _ in server.requests] == ["/missing/facades.tar.gz", "/gone/facades.tar.gz",
                                                         "/facades.tar.gz"]
    assert (root / "facades" / COMPLETE).is_file() and (root / "facades" / "facades" / "train" / "0.png").is_file()
    server.requests.clear()
    source = build_named("facades", download_dir=str(tmp_path), mirror=server.url + "missing/", sha256=None,
                         load_size=36, crop_size=32)
    assert len(source.dataset) == 3 and "val" in source.held_out
    assert server.requests == []  # no request at all, and nothing hashed again


def test_all_sources_failing_lists_them_and_the_manual_path(tmp_path, server):
    entry = local_only("facades", (server.url + "a/facades.tar.gz",))
    with pytest.raises(UserError) as failure:
        prepare(entry, str(tmp_path), server.url + "b/", None)
    message = str(failure.value)
    assert f"{server.url}b/facades.tar.gz (HTTP 404)" in message and f"{server.url}a/facades.tar.gz (HTTP 404)" in message
    assert str(tmp_path / "facades.tar.gz") in message and "\n" not in message
    assert written(tmp_path) == []  # not even an empty .part
    closed = local_only("facades", ("http://127.0.0.1:9/facades.tar.gz",))  # the discard port: nothing listens
    with pytest.raises(UserError, match="cannot reach any source .*no network.* put it at " + str(tmp_path)):
        prepare(closed, str(tmp_path), None, None)


def test_a_wrong_checksum_names_the_url_and_both_hashes_and_leaves_nothing(tmp_path, server, archives):
    with pytest.raises(UserError) as failure:  # the table's sha256 (TensorFlow Datasets') is not the synthetic zip's
        prepare(lookup("horse2zebra"), str(tmp_path), server.url)
    message = str(failure.value)
    assert f"{server.url}horse2zebra.zip" in message and digest(archives / "horse2zebra.zip") in message
    assert "a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1" in message
    assert written(tmp_path) == []  # no archive, no .part, no folder
    with pytest.raises(UserError, match="64 hex digits"):
        prepare(lookup("horse2zebra"), str(tmp_path), server.url, "abc")


def test_offline_names_the_url_and_path_and_a_dropped_archive_is_used(tmp_path, server, archives, monkeypatch):
    monkeypatch.setenv("GANTRAIN_OFFLINE", "1")
    server.requests.clear()
    with pytest.raises(UserError) as failure:
        prepare(lookup("horse2zebra"), str(tmp_path), None, digest(archives / "horse2zebra.zip"))
    message = str(failure.value)
    assert "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip" in message
    assert f"put it at {tmp_path / 'horse2zebra.zip'}" in message
    shutil.copy(archives / "horse2zebra.zip", tmp_path / "horse2zebra.zip")
    root = prepare(lookup("horse2zebra"), str(tmp_path), None, digest(archives / "horse2zebra.zip"))
    assert (root / "horse2zebra" / "horse2zebra" / "trainA" / "0.png").is_file() and server.requests == []


def test_a_cut_transfer_continues_from_its_part_file(tmp_path, server, archives):
    whole = (archives / "facades.tar.gz").read_bytes()
    (tmp_path / "facades.tar.gz.part").write_bytes(whole[: len(whole) // 2])
    server.requests.clear()
    prepare(lookup("facades"), str(tmp_path), server.url, digest(archives / "facades.tar.gz"))
    assert ("GET", "/facades.tar.gz", f"bytes={len(whole) // 2}-") in server.requests
    assert (tmp_path / "facades.tar.gz").read_bytes() == whole and not (tmp_path / "facades.tar.gz.part").exists()


# --- bad input -------------------------------------------------------------------------------------------------


def test_an_archive_in_another_layout_names_what_is_missing_and_leaves_no_folder(tmp_path, server):
    with pytest.raises(UserError, match="missing maps/train "):
        prepare(lookup("maps"), str(tmp_path), server.url, None)
    assert written(tmp_path) == ["maps.tar.gz"]  # the download stays; nothing half-unpacked


def test_a_corrupt_image_is_named(tmp_path, server):
    with pytest.raises(UserError, match=r"night2day/train/1.png is not a readable image"):
        build_named("night2day", download_dir=str(tmp_path), mirror=server.url, sha256=None, load_size=36,
                    crop_size=32)


def test_an_unwritable_download_folder_and_wrong_options_are_one_line_errors(tmp_path, server):
    server.requests.clear()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match="cannot write the download folder .*data.download_dir=PATH"):
        prepare(lookup("facades"), str(tmp_path / "file" / "data"), server.url, None)
    with pytest.raises(UserError, match="data.scale=4, not 2; keep 4 or pick another of div2k, div2k_x2"):
        build_named("div2k_x4", download_dir=str(tmp_path), scale=2)
    with pytest.raises(UserError, match="unknown data.val 'set15'"):
        build_named("div2k", download_dir=str(tmp_path), mirror=server.url, val="set15")  # before any download
    with pytest.raises(UserError, match="data.val=set5 names an SR benchmark; data=facades is paired data"):
        build_named("facades", download_dir=str(tmp_path), mirror=server.url, val="set5")
    assert server.requests == []
    with pytest.raises(UserError, match="not an archive of facades"):
        prepare(lookup("facades"), str(tmp_path), server.url, {"horse2zebra.zip": "0" * 64})


def test_a_full_disk_while_unpacking_removes_the_half_unpacked_folder(tmp_path, server, archives, monkeypatch):
    def full(file: Path, into: Path) -> None:
        (into / "horse2zebra" / "trainA").mkdir(parents=True)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(download, "_extract", full)
    with pytest.raises(UserError, match="cannot unpack .*No space left on device; free some space"):
        prepare(lookup("horse2zebra"), str(tmp_path), server.url, digest(archives / "horse2zebra.zip"))
    assert written(tmp_path) == ["horse2zebra.zip"]  # the verified download stays, for the next try
