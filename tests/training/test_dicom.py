"""training/dicom.py through the decode API: LUTs, photometry, frames, the one DICOM rule."""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from tests.helpers import images as H
from training import preprocess as pp
from training.preprocess import PreprocessConfig, decode_image, load_image


def test_decode_dicom_12_bit_monochrome2(tmp_path):
    gray = decode_image(H.write_dicom(tmp_path / "a.dcm", bits_stored=12))
    np.testing.assert_array_equal(gray, (H.gradient() * 4095).astype(np.uint16))


def test_decode_dicom_monochrome1_is_inverted_so_bone_is_bright(tmp_path):
    m2 = decode_image(H.write_dicom(tmp_path / "m2.dcm", photometric="MONOCHROME2"))
    m1 = decode_image(H.write_dicom(tmp_path / "m1.dcm", photometric="MONOCHROME1"))
    np.testing.assert_allclose(m1, m2.max() + m2.min() - m2)
    cfg = PreprocessConfig(size=32)
    diff = load_image(tmp_path / "m1.dcm", cfg).astype(int) + load_image(tmp_path / "m2.dcm", cfg)
    assert np.abs(diff[8:-8] - 255).max() <= 1  # inner rows: no pad; rounding only


def test_decode_dicom_respects_bits_stored(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm", bits_stored=12)
    raw = np.frombuffer(pydicom.dcmread(src).PixelData, np.uint16) | 0xF000  # junk high bits
    dirty = H.edit_dicom(src, tmp_path / "dirty.dcm", PixelData=raw.tobytes())
    np.testing.assert_array_equal(decode_image(dirty), decode_image(src))


def test_decode_dicom_applies_rescale(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm")
    out = H.edit_dicom(src, tmp_path / "r.dcm", RescaleSlope=2, RescaleIntercept=-1024)
    np.testing.assert_allclose(decode_image(out), decode_image(src) * 2 - 1024)


def test_decode_dicom_applies_window(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm", bits_stored=12)
    out = H.edit_dicom(src, tmp_path / "w.dcm", WindowCenter=2000, WindowWidth=1000)
    raw, win = decode_image(src), decode_image(out)
    assert len(np.unique(win[raw <= 1400])) == 1 and len(np.unique(win[raw >= 2600])) == 1
    assert len(np.unique(win)) > 100  # inside the window the gradient survives


def test_decode_dicom_multiframe_takes_first_frame(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm")
    first = (H.gradient() * 4095).astype(np.uint16)
    frames = np.stack([first, 4095 - first])
    out = H.edit_dicom(src, tmp_path / "mf.dcm", NumberOfFrames=2, PixelData=frames.tobytes())
    np.testing.assert_array_equal(decode_image(out), first)


@pytest.mark.parametrize("name", ["x.DCM", "x.dicom"])
@pytest.mark.parametrize("bare", [False, True])  # bare: no file meta either (ACR-NEMA style)
def test_decode_dicom_without_preamble_by_its_name(tmp_path, name, bare):
    src = H.write_dicom(tmp_path / "a.dcm")
    ds = pydicom.dcmread(src)
    ds.preamble, buf = None, io.BytesIO()
    if bare:
        del ds.file_meta
    pydicom.dcmwrite(buf, ds, enforce_file_format=False, implicit_vr=bare, little_endian=True)
    assert not pp.is_dicom(buf.getvalue()) and pp.is_dicom(buf.getvalue(), name)
    np.testing.assert_array_equal(decode_image(buf.getvalue(), name=name), decode_image(src))


def test_is_dicom_is_the_one_rule():
    assert pp.is_dicom(bytes(128) + b"DICM") and pp.is_dicom(b"", "A.Dicom")
    assert not pp.is_dicom(bytes(128) + b"DICX", "x.png") and not pp.is_dicom(b"DICM", "x.dcm.png")
