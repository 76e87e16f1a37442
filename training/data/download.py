"""Download the public ieee8023 COVID-19 image collection (users have internet; CI does not)."""
from __future__ import annotations

import os
import shutil
import socket
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from training import io
from training.errors import CXRError

IEEE8023_URL = "https://github.com/ieee8023/covid-chestxray-dataset/archive/refs/heads/master.zip"
IEEE8023_DIRNAME = "covid-chestxray-dataset-master"


def default_data_dir() -> Path:
    """Where downloaded datasets live: ``$CXRLAB_DATA_CACHE`` or ``~/.cache/cxrlab/datasets``."""
    return Path(os.environ.get("CXRLAB_DATA_CACHE", Path.home() / ".cache" / "cxrlab" / "datasets"))


def download_ieee8023(dest: str | Path | None = None, url: str = IEEE8023_URL,
                      timeout: float = 20.0, progress: bool = True) -> Path:
    """Download and unpack the ieee8023 collection; returns the folder with ``metadata.csv``.

    Reuses a complete earlier download. Offline, stops with a message naming ``DATA=``.
    """
    dest = Path(dest) if dest else default_data_dir()
    target = dest / IEEE8023_DIRNAME
    if (target / "metadata.csv").exists() and (target / "images").is_dir():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "ieee8023.zip"
    partial = archive.with_suffix(".zip.part")
    try:
        _fetch(url, partial, timeout, progress)
    except (urllib.error.URLError, socket.timeout, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise CXRError(
            f"could not download the ieee8023 COVID-19 collection from {url} ({exc}). "
            "What to do: if this machine is offline, point the demo at a local copy: "
            "`make demo DATA=path/to/covid-chestxray-dataset` (the folder with metadata.csv and "
            "images/), or download it elsewhere and unpack it into " + str(dest)
        ) from exc
    io.publish(partial, archive)  # only a complete download gets the final name
    _unpack(archive, dest)
    archive.unlink(missing_ok=True)
    return target


def _fetch(url: str, out: Path, timeout: float, progress: bool) -> None:
    """Stream ``url`` to ``out`` with a tqdm progress bar."""
    from tqdm import tqdm  # download progress only

    req = urllib.request.Request(url, headers={"User-Agent": "cxrlab"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(out, "wb") as fh:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="ieee8023", disable=not progress) as bar:
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
                bar.update(len(chunk))


def _unpack(archive: Path, dest: Path) -> None:
    """Unzip into a temporary folder, then move into place (an interrupted unpack is redone)."""
    tmp = dest / ".unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():  # refuse paths that escape the folder
            if member.startswith("/") or ".." in Path(member).parts:
                raise CXRError(f"{archive}: unsafe path {member!r} in archive")
        zf.extractall(tmp)
    final = dest / IEEE8023_DIRNAME
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp / IEEE8023_DIRNAME, final)
    shutil.rmtree(tmp, ignore_errors=True)
