"""The real download code: offline it stops with a message naming DATA=; it unpacks safely."""
import io
import zipfile

import pytest

from training.data import download
from training.errors import CXRError


def test_offline_error_names_data(tmp_path):
    # An unroutable address stands for "no internet", whatever this machine has.
    with pytest.raises(CXRError, match="DATA="):
        download.download_ieee8023(tmp_path, url="http://127.0.0.1:9/none.zip", timeout=2, progress=False)
    assert not list(tmp_path.glob("*.part")), "a failed download must not leave partial files"


def test_unpacks_archive_from_url(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{download.IEEE8023_DIRNAME}/metadata.csv", "patientid,finding,filename\n")
        zf.writestr(f"{download.IEEE8023_DIRNAME}/images/a.png", b"x")
    src = tmp_path / "src.zip"
    src.write_bytes(buf.getvalue())
    target = download.download_ieee8023(tmp_path / "cache", url=src.as_uri(), progress=False)
    assert (target / "metadata.csv").exists() and (target / "images" / "a.png").exists()
    # A complete earlier download is reused without fetching again.
    assert download.download_ieee8023(tmp_path / "cache", url="http://127.0.0.1:9/x", progress=False) == target


def test_refuses_archive_escaping_folder(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.txt", "x")
    src = tmp_path / "evil.zip"
    src.write_bytes(buf.getvalue())
    with pytest.raises(CXRError, match="unsafe"):
        download.download_ieee8023(tmp_path / "cache", url=src.as_uri(), progress=False)
