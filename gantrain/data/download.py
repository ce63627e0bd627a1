"""Fetching, verifying and unpacking the archives of a named dataset, once.

The transfer itself goes through pooch (its HTTP downloader: progress bar, streaming; its file hashing):
a small, well-kept library made for exactly this. What gantrain adds is the order of things: a mirror
first, then each official host (a 404 falls through to the next); a cut transfer continues from its
``.part`` file where the server takes byte ranges; the checksum is checked before anything is unpacked
(a mismatch removes the file); unpacking goes into a temporary folder that is renamed into place only
once it holds the folders the layout needs. A finished archive folder carries a marker, so a second run
makes no request and hashes nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from gantrain.data.catalog import Archive, NamedSet
from gantrain.data.lock import one_at_a_time
from gantrain.errors import UserError
from gantrain.pretrained import OFFLINE_ENV, offline

log = logging.getLogger("gantrain")

DATA_DIR_ENV = "GANTRAIN_DATA_DIR"  # where named datasets go when data.download_dir is null
MIRROR_ENV = "GANTRAIN_DATASET_MIRROR"  # a base URL tried first when data.mirror is null
COMPLETE = ".complete"  # written last into a finished archive folder
FROM_TABLE = "table"  # data.sha256's default: the checksum in gantrain's table of sources
CHUNK = 1 << 20  # bytes per read while downloading
TIMEOUT = 60  # seconds without data before a host counts as failed


def download_root(download_dir: str | None) -> Path:
    """``data.download_dir``, else $GANTRAIN_DATA_DIR, else ~/.cache/gantrain/datasets."""
    if download_dir is not None:
        return Path(str(download_dir)).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gantrain" / "datasets"


def mirror_urls(mirror: str | None) -> list[str]:
    """``data.mirror``, else $GANTRAIN_DATASET_MIRROR: base URLs holding the archives under their own names."""
    given = mirror or os.environ.get(MIRROR_ENV)
    if not given:
        return []
    return [str(given).rstrip("/") + "/"]


def expected_checksums(entry: NamedSet, sha256: object) -> dict[str, str | None]:
    """The checksum each archive must have: the table's, or ``data.sha256`` (a digest for a one-archive set,
    a mapping {file name: digest} otherwise; null: none, with a warning)."""
    table = {archive.filename: archive.checksum for archive in entry.archives}
    if sha256 == FROM_TABLE:
        return table
    if sha256 is None:
        log.warning("data.sha256=null: the archives of %s are not verified", entry.name)
        return dict.fromkeys(table)
    if isinstance(sha256, Mapping):
        unknown = sorted(set(map(str, sha256)) - set(table))
        if unknown:
            raise UserError(f"data.sha256 names {unknown[0]}, which is not an archive of {entry.name}; its archives "
                            f"are: {', '.join(table)}")
        return {name: _sha256(sha256[name]) if name in sha256 else digest for name, digest in table.items()}
    if len(table) != 1:
        raise UserError(f"{entry.name} has {len(table)} archives ({', '.join(table)}): give data.sha256 as "
                        "{FILE_NAME: DIGEST, ...}")
    return {name: _sha256(sha256) for name in table}


def _sha256(digest: object) -> str:
    text = str(digest).lower().removeprefix("sha256:")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise UserError(f"data.sha256 must be 64 hex digits (or null to skip verification), got {digest!r}")
    return f"sha256:{text}"


def prepare(entry: NamedSet, download_dir: str | None = None, mirror: str | None = None,
            sha256: object = FROM_TABLE) -> Path:
    """Every archive of ``entry`` fetched, verified and unpacked under the download folder, which is returned."""
    root = download_root(download_dir)
    checksums = expected_checksums(entry, sha256)
    for archive in entry.archives:
        if (root / archive.folder / COMPLETE).is_file():
            continue
        writable(root)
        waiting = f"waiting for another process fetching {archive.filename}"
        with one_at_a_time(root / f".{archive.filename}.lock", waiting):
            if not (root / archive.folder / COMPLETE).is_file():  # another process may have finished it meanwhile
                unpack(archive, fetch(archive, root, mirror_urls(mirror), checksums[archive.filename]), root)
    return root


def writable(root: Path) -> None:
    """The download folder exists and takes files, or a one-line error saying how to pick another."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UserError(f"cannot write the download folder {root}: {error.strerror or error}; choose one with "
                        f"data.download_dir=PATH (or {DATA_DIR_ENV}=PATH)") from None


def fetch(archive: Archive, root: Path, mirrors: list[str], checksum: str | None) -> Path:
    """``root/FILENAME``: already there (a manual download), else from the first source that serves it."""
    target = root / archive.filename
    urls = [base + archive.filename for base in mirrors] + list(archive.urls)
    if target.is_file():
        log.info("using %s (already downloaded)", target)
        verify(target, checksum, f"{target} (found there)", remove=False)
        return target
    manual = f"download {urls[0]} by hand and put it at {target}"
    if offline(True):
        raise UserError(f"{archive.filename} is not downloaded and downloads are off ({OFFLINE_ENV}=1): {manual}")
    failures, unreachable = [], 0
    for url in urls:
        try:
            _download(url, archive, target)
        except _Unreachable as error:
            failures.append(f"{url} ({error})")
            unreachable += 1
            continue
        except _Failed as error:
            failures.append(f"{url} ({error})")
            continue
        verify(target, checksum, url, remove=True)
        return target
    if unreachable == len(urls):
        raise UserError(f"cannot reach any source of {archive.filename} (no network?): {'; '.join(failures)}; "
                        f"{manual}")
    raise UserError(f"no source served {archive.filename}: {'; '.join(failures)}; {manual}")


def verify(path: Path, checksum: str | None, source: str, remove: bool) -> None:
    """The file's hash against ``checksum`` ("sha256:HEX"/"md5:HEX"); a mismatch is removed (if ``remove``)."""
    import pooch

    if checksum is None:
        log.warning("%s has no checksum to verify against; its sha256 is %s (pin it with data.sha256=)",
                    path.name, pooch.file_hash(str(path), "sha256"))
        return
    algorithm, expected = checksum.split(":", 1)
    actual = pooch.file_hash(str(path), algorithm)
    if actual != expected.lower():
        if remove:
            path.unlink(missing_ok=True)
        what = "removed" if remove else "left in place: replace or delete it"
        raise UserError(f"wrong checksum for {source}: expected {algorithm} {expected}, got {actual}; the file was "
                        f"{what} (a mirror that repacked it: data.sha256=DIGEST, or null to skip)")


class _Failed(Exception):
    """This source did not serve the file (HTTP error, cut transfer)."""


class _Unreachable(_Failed):
    """This source could not be reached at all (no network, unknown host, refused)."""


def _download(url: str, archive: Archive, target: Path) -> None:
    """``url`` into ``target.part`` (continued where the server takes byte ranges), renamed to ``target``."""
    import requests

    part = target.with_name(target.name + ".part")
    try:
        if archive.google_drive_id and "drive.google.com" in url:
            _from_google_drive(archive, part)
        else:
            _http(url, part, f"{archive.megabytes:,.0f} MB" if archive.size else f"about {archive.approx_mb:,} MB")
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise _Failed(f"HTTP {status}") from None
    except (requests.ConnectionError, requests.Timeout) as error:
        part_size = part.stat().st_size if part.is_file() else 0
        if part_size:  # the transfer was cut: keep what came, for the next try to continue
            raise _Failed(f"cut after {part_size} bytes, kept in {part}: {type(error).__name__}") from None
        raise _Unreachable(type(error).__name__) from None
    except requests.RequestException as error:
        raise _Failed(type(error).__name__) from None
    except OSError as error:
        part.unlink(missing_ok=True)
        raise UserError(f"cannot write {part}: {error.strerror or error}; free some space or choose another "
                        "folder with data.download_dir=PATH") from None
    finally:
        if part.is_file() and not part.stat().st_size:  # nothing came: leave no empty file behind
            part.unlink()
    if not part.is_file():
        raise _Failed("an empty file")
    os.replace(part, target)


def _http(url: str, part: Path, size: str) -> None:
    """pooch's HTTP downloader (progress bar, streaming), asked for the missing bytes only when some are there."""
    import pooch
    import requests

    done = part.stat().st_size if part.is_file() else 0
    headers = {}
    if done:
        try:
            head = requests.head(url, timeout=TIMEOUT, allow_redirects=True)
            head.raise_for_status()
        except requests.HTTPError:  # a server that answers no HEAD: start over with GET (its errors are reported)
            head = None
        ranges = head is not None and head.headers.get("Accept-Ranges", "").lower() == "bytes"
        total = int(head.headers.get("Content-Length", 0) or 0) if head is not None else 0
        if ranges and 0 < done < total:
            headers = {"Range": f"bytes={done}-"}
            log.info("continuing %s from byte %d of %d", part.name, done, total)
        elif not (ranges and done == total):
            done = 0  # no ranges (or a different file): start over
        else:
            return  # complete already
    progress = sys.stderr.isatty()
    downloader = pooch.HTTPDownloader(progressbar=progress, chunk_size=CHUNK, timeout=TIMEOUT, headers=headers)
    log.info("downloading %s (%s)", url, size)
    with open(part, "ab" if done else "wb") as output:
        downloader(url, output, None)


def _from_google_drive(archive: Archive, part: Path) -> None:
    """Google Drive answers large files with a confirmation page: torchvision's helper (through gdown) handles it."""
    from torchvision.datasets.utils import download_file_from_google_drive

    part.unlink(missing_ok=True)  # the helper would take any file already there as done
    try:
        download_file_from_google_drive(archive.google_drive_id, str(part.parent), part.name)
    except RuntimeError as error:  # gdown missing, or Google Drive's download quota
        raise _Failed(str(error).splitlines()[0][:120]) from None
    except Exception as error:  # noqa: BLE001 - gdown raises its own types for quota and access errors
        raise _Failed(f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}") from None
    if not part.is_file():
        raise _Failed("Google Drive sent nothing")


def unpack(archive: Archive, file: Path, root: Path) -> Path:
    """``file`` unpacked into ``root/FOLDER``: through a temporary folder, renamed only once complete and holding
    what the layout reads; anything half-written is removed."""
    folder = root / archive.folder
    partial = root / f".{archive.folder}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    log.info("unpacking %s", file)
    try:
        _extract(file, partial)
        missing = [path for path in archive.contains if not (partial / path).is_dir()]
        if missing:
            found = ", ".join(sorted(p.name for p in partial.iterdir())[:8]) or "nothing"
            raise UserError(f"{file} does not hold the expected layout: missing {', '.join(missing)} (found: {found}); "
                            "a mirror may serve a different archive under this name (delete the file to download "
                            "it again)")
        (partial / COMPLETE).write_text(f"unpacked from {archive.filename} by gantrain\n", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    except OSError as error:
        raise UserError(f"cannot unpack {file} into {folder}: {error.strerror or error}; free some space or choose "
                        "another folder with data.download_dir=PATH") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _extract(file: Path, into: Path) -> None:
    """A .zip, .tar or .tar.gz unpacked by the standard library (tar members checked by its 'data' filter)."""
    import tarfile
    import zipfile

    try:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as bundle:
                bundle.extractall(into)
        else:
            with tarfile.open(file) as bundle:
                bundle.extractall(into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise UserError(f"{file} is not a readable archive ({error}); delete it to download it again") from None
