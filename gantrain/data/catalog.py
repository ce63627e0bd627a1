"""The table of named datasets: where each archive lives, how big it is, its checksum and who published it,
and how the unpacked files map onto the layouts gantrain reads (paired, unpaired, sr, image_folder).

Each archive is unpacked into ``DOWNLOAD_DIR/<archive name without extension>/``; a set's ``paths`` name
folders below DOWNLOAD_DIR for its layout's options (``root``, ``lr_root``, ``val_root``). A new dataset
is one entry here plus one YAML in configs/data/.

Checksums come from a published list where one exists (``checksum_source``); where none does, the entry
says so and the download is not verified (the log prints its sha256, to pin with ``data.sha256=``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TFDS_CYCLE_GAN = "TensorFlow Datasets, tensorflow_datasets/url_checksums/cycle_gan.txt (sha256)"
TFDS_DIV2K = "TensorFlow Datasets, tensorflow_datasets/url_checksums/div2k.txt (sha256)"
TFDS_CELEBA = "TensorFlow Datasets, tensorflow_datasets/url_checksums/celeb_a.txt (sha256)"
TORCHSR = "torchSR (Coloquinte/torchSR, torchsr/datasets/*.py) (md5)"
NONE_PUBLISHED = "none published: not verified (the log prints the sha256 to pin with data.sha256=)"


@dataclass(frozen=True)
class Archive:
    """One downloadable file, tried at each of ``urls`` in order (after any mirror the user gives)."""

    filename: str  # also the name looked for under a mirror and where a manual download is picked up
    urls: tuple[str, ...]
    size: int | None  # bytes, as published; None: not published (approx_mb is what the listing shows)
    checksum: str | None  # "sha256:HEX" or "md5:HEX" as published; None: none published
    checksum_source: str
    contains: tuple[str, ...]  # folders the unpacked archive must hold (else the layout cannot be read)
    approx_mb: int = 0  # shown by `gantrain task=download` when size is not published
    google_drive_id: str | None = None  # fetched with torchvision's Google Drive helper (needs gdown)

    @property
    def folder(self) -> str:
        """The folder below DOWNLOAD_DIR it unpacks into: its name without the archive extension."""
        for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
            if self.filename.endswith(suffix):
                return self.filename[: -len(suffix)]
        return self.filename

    @property
    def megabytes(self) -> float:
        return self.size / 1e6 if self.size else float(self.approx_mb)


@dataclass(frozen=True)
class NamedSet:
    """A dataset by name: its archives and the layout that reads them."""

    name: str
    layout: str  # paired | unpaired | sr | image_folder; "sr_val": an SR benchmark, only for data.val=NAME
    archives: tuple[Archive, ...]
    paths: dict[str, str]  # layout option -> folder below DOWNLOAD_DIR
    source: str  # who publishes the data
    fixed: dict[str, object] = field(default_factory=dict)  # layout options the files decide (DIV2K x4 LR: scale 4)

    @property
    def megabytes(self) -> float:
        return sum(archive.megabytes for archive in self.archives)

    @property
    def sized(self) -> bool:
        """Whether every size is published (else the listing shows an approximate one)."""
        return all(archive.size for archive in self.archives)


def _pix2pix(name: str, approx_mb: int) -> NamedSet:
    archive = Archive(
        f"{name}.tar.gz",
        (f"http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz",
         f"https://people.eecs.berkeley.edu/~tinghuiz/projects/pix2pix/datasets/{name}.tar.gz"),
        None, None, NONE_PUBLISHED, (f"{name}/train",), approx_mb=approx_mb)
    return NamedSet(name, "paired", (archive,), {"root": f"{name}/{name}"},
                    "pix2pix (Isola et al. 2017), junyanz/pytorch-CycleGAN-and-pix2pix datasets/download_pix2pix_dataset.sh")


def _cyclegan(name: str, size: int, sha256: str, key: str | None = None) -> NamedSet:
    archive = Archive(
        f"{name}.zip",
        (f"http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip",
         f"https://people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/{name}.zip"),
        size, f"sha256:{sha256}", TFDS_CYCLE_GAN, (f"{name}/trainA", f"{name}/trainB"))
    return NamedSet(key or name, "unpaired", (archive,), {"root": f"{name}/{name}"},
                    "CycleGAN (Zhu et al. 2017), junyanz/pytorch-CycleGAN-and-pix2pix datasets/download_cyclegan_dataset.sh")


DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
DIV2K_SOURCE = "DIV2K (Agustsson and Timofte 2017), data.vision.ee.ethz.ch/cvl/DIV2K"


def _div2k(stem: str, size: int, sha256: str, contains: str) -> Archive:
    return Archive(f"{stem}.zip", (DIV2K_URL + f"{stem}.zip",), size, f"sha256:{sha256}", TFDS_DIV2K, (contains,))


DIV2K_TRAIN_HR = _div2k("DIV2K_train_HR", 3530603713,
                        "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", "DIV2K_train_HR")
DIV2K_VALID_HR = _div2k("DIV2K_valid_HR", 448993893,
                        "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc", "DIV2K_valid_HR")
DIV2K_TRAIN_LR = {  # scale -> DIV2K's bicubic LR of the 800 training images (0001x4.png for HR 0001.png)
    2: _div2k("DIV2K_train_LR_bicubic_X2", 925390592,
              "a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850", "DIV2K_train_LR_bicubic/X2"),
    3: _div2k("DIV2K_train_LR_bicubic_X3", 427847282,
              "ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a", "DIV2K_train_LR_bicubic/X3"),
    4: _div2k("DIV2K_train_LR_bicubic_X4", 246914039,
              "f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a", "DIV2K_train_LR_bicubic/X4"),
}

SR_BENCHMARK = Archive(  # EDSR's bundle of the four SR test sets: benchmark/NAME/HR/*.png (+ LR_bicubic/X2..X4)
    "benchmark.tar", ("https://cv.snu.ac.kr/research/EDSR/benchmark.tar",), None,
    "md5:4ace41d33c2384b97e6b320cd0afd6ba", TORCHSR,
    ("benchmark/Set5/HR", "benchmark/Set14/HR", "benchmark/B100/HR", "benchmark/Urban100/HR"), approx_mb=250)
SR_BENCHMARK_SOURCE = "EDSR (Lim et al. 2017) benchmark.tar, sanghyun-son/EDSR-PyTorch README"

FLICKR2K = Archive("Flickr2K.tar", ("https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar",), None,
                   "md5:5d3f39443d5e9489bff8963f8f26cb03", TORCHSR, ("Flickr2K/Flickr2K_HR",), approx_mb=20000)

CELEBA = Archive(
    "img_align_celeba.zip", ("https://drive.google.com/uc?export=download&id=0B7EVK8r0v71pZjFTYXZWM3FlRnM",),
    1443490838, "sha256:46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74", TFDS_CELEBA,
    ("img_align_celeba",), google_drive_id="0B7EVK8r0v71pZjFTYXZWM3FlRnM")


def _sr_benchmark(name: str, folder: str) -> NamedSet:
    return NamedSet(name, "sr_val", (SR_BENCHMARK,), {"val_root": f"benchmark/benchmark/{folder}/HR"},
                    SR_BENCHMARK_SOURCE)


def _div2k_set(name: str, scale: int | None) -> NamedSet:
    lr = (DIV2K_TRAIN_LR[scale],) if scale else ()
    paths = {"root": "DIV2K_train_HR/DIV2K_train_HR"}
    if scale:
        paths["lr_root"] = f"DIV2K_train_LR_bicubic_X{scale}/DIV2K_train_LR_bicubic/X{scale}"
    return NamedSet(name, "sr", (DIV2K_TRAIN_HR, *lr), paths, DIV2K_SOURCE, {"scale": scale} if scale else {})


SETS: tuple[NamedSet, ...] = (
    # pix2pix: A|B pairs side by side in train/ (val/, test/); sizes as listed by the authors' server, approximate
    _pix2pix("facades", 30),
    _pix2pix("cityscapes", 100),
    _pix2pix("maps", 240),
    _pix2pix("edges2shoes", 2100),
    _pix2pix("edges2handbags", 8600),
    _pix2pix("night2day", 1900),
    # CycleGAN: trainA/ trainB/ testA/ testB/
    _cyclegan("horse2zebra", 116867962, "a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1"),
    _cyclegan("monet2photo", 305231073, "88f91b00fc228f97c9411fbf1880ec1d119c98f1722e4cfcfaa2fb35fac05b04"),
    _cyclegan("summer2winter_yosemite", 132640856,
              "167fe1726807a9d22bd106b4a6c0bd7953b688af924ac1bf967439c4961e49f9"),
    _cyclegan("apple2orange", 78456409, "845a191e9af8926408ea597001cd03a452e3300a1f44a79fe329b3d59f6e3eb8"),
    _cyclegan("vangogh2photo", 306590349, "362c3473e70be0944bda08d49d660eafdc2854df55d697835b8186d1d79caaff"),
    _cyclegan("maps", 1476754427, "639534f69dbf9f36bef8d6292a7698006361221f83f0285d7c9ca78afe6e8a9e",
              key="maps_unpaired"),
    # super-resolution training sets: HR photos (LR made by bicubic on the batch), or with DIV2K's own LR files
    _div2k_set("div2k", None),
    _div2k_set("div2k_x2", 2),
    _div2k_set("div2k_x3", 3),
    _div2k_set("div2k_x4", 4),
    NamedSet("flickr2k", "sr", (FLICKR2K,), {"root": "Flickr2K/Flickr2K/Flickr2K_HR"},
             "Flickr2K (Lim et al. 2017, EDSR), sanghyun-son/EDSR-PyTorch README"),
    # super-resolution benchmarks, for data.val=NAME beside an SR training set
    _sr_benchmark("set5", "Set5"),
    _sr_benchmark("set14", "Set14"),
    _sr_benchmark("bsd100", "B100"),
    _sr_benchmark("urban100", "Urban100"),
    NamedSet("div2k_valid", "sr_val", (DIV2K_VALID_HR,), {"val_root": "DIV2K_valid_HR/DIV2K_valid_HR"}, DIV2K_SOURCE),
    # noise-to-image
    NamedSet("celeba", "image_folder", (CELEBA,), {"root": "img_align_celeba/img_align_celeba"},
             "CelebA (Liu et al. 2015), the aligned 178x218 faces torchvision.datasets.CelebA fetches"),
)

CATALOG: dict[str, NamedSet] = {entry.name: entry for entry in SETS}
SR_VAL_SETS = tuple(name for name, entry in CATALOG.items() if entry.layout == "sr_val")
