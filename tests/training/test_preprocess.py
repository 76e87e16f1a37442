"""Tests of training/preprocess.py: config, decoding of every format/mode, preprocessing."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile

from tests.helpers import images as H
from training import preprocess as pp
from training.errors import CXRError, DataError, ImageDecodeError
from training.preprocess import PreprocessConfig, decode_image, load_image, preprocess

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
IEEE = SHARED / "ieee8023-covid-chestxray" / "images"
KERMANY = SHARED / "kermany-pneumonia" / "train"

PNG_MODES = ["L", "RGB", "RGBA", "P", "LA", "I;16"]


def _file(tmp_path: Path, kind: str) -> Path:
    """One test file per kind: 'png-<mode>', 'jpg-<mode>', 'dcm-<photometric>'."""
    fmt, mode = kind.split("-", 1)
    if fmt == "dcm":
        return H.write_dicom(tmp_path / f"{mode}.dcm", photometric=mode)
    return H.write_image(tmp_path / f"{mode.replace(';', '')}.{fmt}", mode)


ALL_KINDS = [f"png-{m}" for m in PNG_MODES] + ["jpg-L", "jpg-RGB", "dcm-MONOCHROME2",
                                                "dcm-MONOCHROME1"]


# ------------------------------------------------------------------------------------ config

def test_config_round_trips_through_dict():
    cfg = PreprocessConfig(size=128, clip_percentile=1, resize="crop", clahe=True, channels=1)
    d = cfg.to_dict()
    assert d == {"size": 128, "clip_percentile": 1.0, "resize": "crop", "clahe": True,
                 "clahe_clip": 0.01, "channels": 1}
    assert PreprocessConfig.from_dict(d) == cfg
    assert PreprocessConfig.from_dict({}) == PreprocessConfig()


def test_from_dict_rejects_unknown_keys_by_name():
    with pytest.raises(ValueError, match=r"unknown preprocessing parameter.*'sise'"):
        PreprocessConfig.from_dict({"sise": 224})


@pytest.mark.parametrize("kwargs, field", [
    ({"size": 0}, "size"), ({"size": -3}, "size"), ({"size": 22.5}, "size"),
    ({"clip_percentile": -1}, "clip_percentile"), ({"clip_percentile": 50}, "clip_percentile"),
    ({"resize": "stretch"}, "resize"), ({"channels": 2}, "channels"),
    ({"clahe_clip": 0}, "clahe_clip"), ({"clahe": "yes"}, "clahe"),
])
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PreprocessConfig(**kwargs)


def test_key_is_stable_and_short():
    assert PreprocessConfig().key() == PreprocessConfig().key()
    assert PreprocessConfig(clip_percentile=1).key() == PreprocessConfig(clip_percentile=1.0).key()
    assert len(PreprocessConfig().key()) == 16


@pytest.mark.parametrize("change", [
    {"size": 225}, {"clip_percentile": 1.0}, {"resize": "crop"}, {"clahe": True},
    {"clahe_clip": 0.02}, {"channels": 1},
])
def test_key_changes_with_every_parameter(change):
    assert dataclasses.replace(PreprocessConfig(), **change).key() != PreprocessConfig().key()


def test_key_changes_with_preprocess_version(monkeypatch):
    before = PreprocessConfig().key()
    monkeypatch.setattr(pp, "PREPROCESS_VERSION", pp.PREPROCESS_VERSION + 1)
    assert PreprocessConfig().key() != before


# ---------------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("kind", [k for k in ALL_KINDS if not k.startswith("dcm")])
def test_decode_every_pil_mode_gives_gray_float_close_to_the_source(tmp_path, kind):
    gray = decode_image(_file(tmp_path, kind))
    assert gray.dtype == np.float32 and gray.shape == (48, 64)
    scale = 65535 if kind.endswith("I;16") else 255
    tol = 0.04 if kind.startswith("jpg") else 0.01  # JPEG is lossy
    assert np.abs(gray / scale - H.gradient()).mean() < tol


def test_decode_keeps_16_bit_precision(tmp_path):
    gray = decode_image(_file(tmp_path, "png-I;16"))
    assert gray.max() > 255
    np.testing.assert_array_equal(gray, (H.gradient() * 65535).astype(np.uint16))


def test_decode_drops_alpha(tmp_path):
    rgb = (H.gradient() * 255).astype(np.uint8)
    rgba = np.dstack([rgb, rgb, rgb, np.zeros_like(rgb)])  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_allclose(decode_image(tmp_path / "a.png"), rgb, atol=1e-3)


def test_decode_applies_exif_orientation(tmp_path):
    img = Image.fromarray((H.gradient() * 255).astype(np.uint8), "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.jpg", exif=exif.tobytes())
    gray = decode_image(tmp_path / "o.jpg")
    assert gray.shape == (64, 48)
    np.testing.assert_allclose(gray, np.rot90(decode_image(_jpeg_plain(tmp_path, img)), -1),
                               atol=1e-4)


def _jpeg_plain(tmp_path: Path, img: Image.Image) -> Path:
    img.save(tmp_path / "plain.jpg")
    return tmp_path / "plain.jpg"


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


def _edit_dicom(path: Path, out: Path, **changes) -> Path:
    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.save_as(out)
    return out


def test_decode_dicom_respects_bits_stored(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm", bits_stored=12)
    raw = np.frombuffer(pydicom.dcmread(src).PixelData, np.uint16) | 0xF000  # junk high bits
    dirty = _edit_dicom(src, tmp_path / "dirty.dcm", PixelData=raw.tobytes())
    np.testing.assert_array_equal(decode_image(dirty), decode_image(src))


def test_decode_dicom_applies_rescale(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm")
    out = _edit_dicom(src, tmp_path / "r.dcm", RescaleSlope=2, RescaleIntercept=-1024)
    np.testing.assert_allclose(decode_image(out), decode_image(src) * 2 - 1024)


def test_decode_dicom_applies_window(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm", bits_stored=12)
    out = _edit_dicom(src, tmp_path / "w.dcm", WindowCenter=2000, WindowWidth=1000)
    raw, win = decode_image(src), decode_image(out)
    assert len(np.unique(win[raw <= 1400])) == 1 and len(np.unique(win[raw >= 2600])) == 1
    assert len(np.unique(win)) > 100  # inside the window the gradient survives


def test_decode_dicom_multiframe_takes_first_frame(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm")
    first = (H.gradient() * 4095).astype(np.uint16)
    frames = np.stack([first, 4095 - first])
    out = _edit_dicom(src, tmp_path / "mf.dcm", NumberOfFrames=2, PixelData=frames.tobytes())
    np.testing.assert_array_equal(decode_image(out), first)


def test_decode_dicom_without_preamble_when_named_dcm(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm")
    ds = pydicom.dcmread(src)
    ds.preamble = None
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=False)  # no preamble, no "DICM"
    data = buf.getvalue()
    assert data[128:132] != b"DICM"
    np.testing.assert_array_equal(decode_image(data, name="x.DCM"), decode_image(src))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_bytes_and_path_give_identical_output(tmp_path, kind):
    path = _file(tmp_path, kind)
    cfg = PreprocessConfig(size=40)
    assert load_image(path, cfg).tobytes() == load_image(path.read_bytes(), cfg).tobytes()


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("clahe", [False, True])
def test_output_is_deterministic(tmp_path, kind, clahe):
    path = _file(tmp_path, kind)
    cfg = PreprocessConfig(size=40, clahe=clahe)
    assert load_image(path, cfg).tobytes() == load_image(path, PreprocessConfig(**cfg.to_dict()))\
        .tobytes()


# ------------------------------------------------------------------------------------ errors

def _bad(tmp_path: Path, kind: str) -> Path:
    makers = {
        "truncated-png": lambda p: H.write_truncated(p.with_suffix(".png"), "L"),
        "truncated-png-rgb": lambda p: H.write_truncated(p.with_suffix(".png"), "RGB"),
        "truncated-jpg": lambda p: H.write_truncated(p.with_suffix(".jpg"), "L"),
        "truncated-jpg-rgb": lambda p: H.write_truncated(p.with_suffix(".jpg"), "RGB"),
        "not-image": lambda p: H.write_not_image(p.with_suffix(".png")),
        "empty": lambda p: (p.with_suffix(".jpg").write_bytes(b""), p.with_suffix(".jpg"))[1],
        "gif": lambda p: H.write_image(p.with_suffix(".gif"), "L", fmt="GIF"),
        "dicom-no-pixels": _dicom_without_pixels,
        "dicom-truncated": lambda p: _truncate(H.write_dicom(p.with_suffix(".dcm"))),
        "not-dicom-named-dcm": lambda p: H.write_not_image(p.with_suffix(".dcm")),
    }
    return makers[kind](tmp_path / f"bad-{kind}")


def _dicom_without_pixels(p: Path) -> Path:
    src = H.write_dicom(p.with_suffix(".dcm"))
    ds = pydicom.dcmread(src)
    del ds.PixelData
    ds.save_as(src)
    return src


def _truncate(p: Path) -> Path:
    p.write_bytes(p.read_bytes()[:-1000])
    return p


BAD_KINDS = ["truncated-png", "truncated-png-rgb", "truncated-jpg", "truncated-jpg-rgb",
             "not-image", "empty", "gif", "dicom-no-pixels", "dicom-truncated",
             "not-dicom-named-dcm"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_undecodable_file_raises_naming_the_file(tmp_path, kind):
    path = _bad(tmp_path, kind)
    with pytest.raises(ImageDecodeError) as err:
        decode_image(path)
    assert err.value.path == str(path) and str(path) in str(err.value)
    assert "What to do:" in str(err.value)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_undecodable_bytes_raise_naming_the_upload(tmp_path, kind):
    data = _bad(tmp_path, kind).read_bytes()
    name = "upload.dcm" if "dcm" in kind or "dicom" in kind else "upload.png"
    with pytest.raises(ImageDecodeError, match=name):
        decode_image(data, name=name)


def test_unnamed_bytes_are_called_uploaded_bytes():
    with pytest.raises(ImageDecodeError, match="<uploaded bytes>"):
        decode_image(b"nope")


def test_truncated_image_is_not_accepted_even_if_readable_header(tmp_path):
    path = H.write_truncated(tmp_path / "t.jpg", "L")
    with Image.open(path) as img:  # the header alone is fine ...
        assert img.size == (64, 48)
    with pytest.raises(ImageDecodeError, match="truncated|Truncated"):  # ... the pixels are not
        decode_image(path)


def test_refuses_to_run_with_load_truncated_images(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(CXRError, match="LOAD_TRUNCATED_IMAGES"):
        decode_image(H.write_truncated(tmp_path / "t.jpg"))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("limit", [2000, 1000])  # Pillow warns (1x-2x) or raises (> 2x)
def test_decompression_bomb_is_a_decode_error(tmp_path, monkeypatch, limit):
    path = H.write_image(tmp_path / "big.png")  # 48 x 64 = 3072 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageDecodeError, match=r"(?i)decompression ?bomb"):
        decode_image(path)


def test_missing_file_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(DataError, match="file not found") as err:
        decode_image(path)
    assert err.value.path == str(path)


def test_directory_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="directory"):
        decode_image(tmp_path)


# ----------------------------------------------------------------------------- preprocessing

@pytest.mark.parametrize("resize", ["pad", "crop"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("shape", [(48, 64), (64, 48), (30, 30), (500, 20)])
def test_output_shape_dtype_and_range(resize, channels, shape):
    cfg = PreprocessConfig(size=32, resize=resize, channels=channels)
    out = preprocess(H.gradient(*shape), cfg)
    assert out.shape == (32, 32, channels) and out.dtype == np.uint8
    assert out.max() > 100 and out.std() > 10
    assert all(np.array_equal(out[..., 0], out[..., c]) for c in range(channels))


def test_pad_keeps_a_wide_image_whole_and_centred():
    gray = np.ones((50, 100), np.float32)
    gray[:, :10] = 0  # a dark stripe at the left keeps the range non-constant
    out = preprocess(gray, PreprocessConfig(size=40, clip_percentile=0, resize="pad"))[..., 0]
    rows = np.flatnonzero(out.max(axis=1) > 0)
    assert (rows[0], rows[-1]) == (10, 29)  # 20 content rows, 10 zero rows above and below
    assert out[20, 0] < 30 and out[20, -1] == 255  # both ends of the width are kept


def test_crop_keeps_the_centre_square():
    gray = np.full((50, 100), 0.5, np.float32)
    gray[:, :25], gray[:, 75:] = 0, 1  # the centre square is x in [25, 75): all 0.5
    out = preprocess(gray, PreprocessConfig(size=40, clip_percentile=0, resize="crop"))[..., 0]
    assert np.abs(out[:, 2:-2].astype(int) - 128).max() <= 1  # edges may blend by the filter


def test_percentile_clipping_ignores_a_few_outliers():
    gray = H.gradient(100, 100)
    gray[0, 0] = 1000.0  # one hot pixel (a burned-in marker)
    clipped = preprocess(gray, PreprocessConfig(size=100, clip_percentile=0.5))
    raw = preprocess(gray, PreprocessConfig(size=100, clip_percentile=0))
    assert clipped.mean() > 100 and raw.mean() < 5


@pytest.mark.parametrize("clahe", [False, True])
def test_constant_image_gives_zeros_never_nan(clahe):
    out = preprocess(np.full((30, 40), 7.0, np.float32), PreprocessConfig(size=16, clahe=clahe))
    assert out.dtype == np.uint8 and not out.any()


def test_clahe_changes_the_output():
    gray = H.gradient(64, 64) ** 3
    plain = preprocess(gray, PreprocessConfig(size=64))
    eq = preprocess(gray, PreprocessConfig(size=64, clahe=True))
    assert np.abs(plain.astype(int) - eq).mean() > 5


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3)), np.zeros(5), np.zeros((0, 4))])
def test_preprocess_rejects_non_2d(bad):
    with pytest.raises(ValueError, match="2-D"):
        preprocess(bad, PreprocessConfig())


def test_preprocess_rejects_nan():
    gray = H.gradient()
    gray[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        preprocess(gray, PreprocessConfig())


def test_512px_jpeg_to_model_input(tmp_path):
    # Speed is measured by benchmarks/bench_data.py, not here.
    img = Image.fromarray((H.gradient(512, 400) * 255).astype(np.uint8), "L")
    img.save(tmp_path / "big.jpg", quality=90)
    out = load_image((tmp_path / "big.jpg").read_bytes(), PreprocessConfig())
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8 and out.max() > 200


# ---------------------------------------------------------------------------------- real data

def _real(folder: Path, pattern: str, n: int) -> list[Path]:
    files = sorted(folder.glob(pattern))[:n] if folder.is_dir() else []
    if not files:
        pytest.skip(f"real data not available under {folder}")
    return files


def test_real_ieee8023_images_of_every_mode():
    files = _real(IEEE, "*", 200)
    by_mode: dict[str, Path] = {}
    for f in files:
        with Image.open(f) as img:
            by_mode.setdefault(img.mode, f)
    assert {"L", "RGB", "RGBA"} <= set(by_mode), by_mode
    for f in by_mode.values():
        out = load_image(f, PreprocessConfig())
        assert out.shape == (224, 224, 3) and out.max() > 200 and out.std() > 20


def test_real_kermany_images():
    for f in _real(KERMANY, "*/*.jpeg", 5):
        out = load_image(f, PreprocessConfig(size=128, resize="crop"))
        assert out.shape == (128, 128, 3) and out.max() > 200 and out.std() > 20
