"""Pretrained weights that cannot ship with gantrain: one way to find them, for every network that needs some.

Inception (FID, KID, IS) and VGG19 (the super-resolution perceptual loss) are both looked for in the same
order: a local file the config names, else torch's hub cache (where their libraries download to and look),
else a download when allowed, else one clear line naming the file, where it was looked for, where to get
it and the option that takes a local copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from gantrain.errors import UserError

OFFLINE_ENV = "GANTRAIN_OFFLINE"  # set to 1: never download pretrained weights (tests, air-gapped clusters)


@dataclass(frozen=True)
class WeightsFile:
    """A pretrained weights file as its library names it in the hub cache."""

    file: str  # e.g. vgg19-dcbb9e9d.pth
    url: str  # where to fetch it where there is internet
    option: str  # the config key that takes a local copy (metrics.inception_weights)
    download_option: str  # the config key that forbids the download (metrics.download)
    purpose: str  # what needs it, for the message ("the Inception features of fid/kid")
    alternative: str  # what a user without the file can do instead

    @property
    def cached(self) -> Path:
        """Where torch's hub cache keeps (and its libraries look for) the file."""
        return Path(torch.hub.get_dir()) / "checkpoints" / self.file

    def missing(self, reason: str) -> UserError:
        return UserError(f"{self.purpose} need {self.file}, which is missing ({reason}); it is looked for in "
                         f"{self.cached.parent}; download {self.url} where there is internet and set {self.option}=PATH "
                         f"(or copy it there), or {self.alternative}")


def offline(download: bool) -> bool:
    """Downloads are off by the config (``download=false``) or by the environment (GANTRAIN_OFFLINE=1)."""
    return not download or os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes")


def available(weights: WeightsFile, given: str | None, download: bool) -> bool:
    """Whether the weights can be had without asking the user for anything: a file, or a download that
    works now (made into the hub cache, where ``locate`` then finds it). A machine without internet whose
    downloads are allowed gets False, not a failure later."""
    if given is not None:
        return Path(str(given)).expanduser().is_file()
    if weights.cached.is_file():
        return True
    if offline(download):
        return False
    try:
        weights.cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(weights.cached), progress=False)  # temp file, then moved
    except OSError:  # no route to the internet (URLError is an OSError), a read-only cache
        return False
    return weights.cached.is_file()


def locate(weights: WeightsFile, given: str | None, download: bool) -> Path | None:
    """The file to load; None when the library may download it into the hub cache itself."""
    if given is not None:
        path = Path(str(given)).expanduser()
        if not path.is_file():
            raise UserError(f"{weights.option}={given}: no such file (it should be {weights.file})")
        return path
    if weights.cached.is_file():
        return weights.cached
    if offline(download):
        raise weights.missing(f"downloads are off: {weights.download_option}=false or {OFFLINE_ENV}=1")
    return None


def first_line(error: BaseException, limit: int = 160) -> str:
    return str(error).strip().splitlines()[0][:limit] if str(error).strip() else type(error).__name__
