"""Tests of training/preprocess.py: config, decoding of every format/mode, preprocessing."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile, ImageOps

from tests.helpers import images as H
from training import preprocess as pp
from training.errors import CXRError, DataError, ImageDecodeError
from training.preprocess import PreprocessConfig, decode_image, load_image, preprocess
from training.pixels import LUMA

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


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "40000000"])
def test_max_pixels_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(ValueError, match="max_pixels"):
        decode_image(_file(tmp_path, "png-L"), max_pixels=bad)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_decode_refuses_non_finite_pixels(tmp_path):
    src = H.write_dicom(tmp_path / "a.dcm")
    out = H.edit_dicom(src, tmp_path / "inf.dcm", RescaleSlope="1e308", RescaleIntercept="1e308")
    with pytest.raises(ImageDecodeError, match="NaN or infinite"):
        decode_image(out)


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


# ------------------------------------------------------- byte-identical to PREPROCESS_VERSION 1

def _version_1(data: bytes, name: str, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(decode_image, load_image[..., 0])`` as version 1 was first written (the whole image
    as float RGB, numpy normalise): what every trained model and cache expects, byte for byte."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

    if pp.is_dicom(data, name):
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")
        g = np.asarray(apply_voi_lut(apply_modality_lut(pixel_array(ds, index=0), ds), ds, index=0),
                       dtype=np.float32)
        g = g.max() + g.min() - g if ds.PhotometricInterpretation == "MONOCHROME1" else g
    else:
        img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        img = img.convert("RGBA") if img.mode == "P" else img.convert("RGB") if img.mode == "CMYK" else img
        a = np.asarray(img)
        g = (a[..., :3].astype(np.float32) @ LUMA if img.mode in ("RGB", "RGBA") else
             a[..., 0].astype(np.float32) if img.mode == "LA" else a.astype(np.float32))
    lo, hi = np.percentile(g, [cfg.clip_percentile, 100.0 - cfg.clip_percentile])
    x = (np.clip((g - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0, dtype=np.float32)
         if hi > lo else np.zeros(g.shape, np.float32))
    (h, w), size = x.shape, cfg.size
    new = (max(1, round(w * size / max(h, w))), max(1, round(h * size / max(h, w))))
    out = np.zeros((size, size), np.float32)
    top, left = (size - new[1]) // 2, (size - new[0]) // 2
    out[top:top + new[1], left:left + new[0]] = Image.fromarray(x).resize(new, pp.RESAMPLE)
    return g, np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def _generated(tmp: Path) -> list[Path]:
    """Every mode and DICOM option, and images spanning several row blocks of the new code."""
    files = [H.write_image(tmp / f"{m.replace(';', '')}.png", m, 300, 260, seed=i)
             for i, m in enumerate(["L", "RGBA", "P", "LA", "I;16", "1"])]
    files += [H.write_image(tmp / "wide.png", "RGB", 1100, 2100), H.write_image(tmp / "c.jpg", "RGB")]
    Image.open(files[-1]).convert("CMYK").save(tmp / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(files[-1]).save(tmp / "exif.jpg", exif=exif.tobytes())
    big = H.write_dicom(tmp / "big.dcm", 1100, 1000, photometric="MONOCHROME1")
    return files + [tmp / "cmyk.jpg", tmp / "exif.jpg", big,
                    H.edit_dicom(big, tmp / "w.dcm", WindowCenter=2000, WindowWidth=1000),
                    H.edit_dicom(big, tmp / "r.dcm", RescaleSlope=2, RescaleIntercept=-1024)]


def _real(per_kind: int = 3) -> list[Path]:
    """A few real files of every (format, mode) in the shared data; none when it is absent."""
    kinds: dict[tuple[str, str], list[Path]] = {}
    for f in sorted(IEEE.glob("*"))[:300] + sorted(KERMANY.glob("*/*.jpeg"))[:per_kind]:
        with Image.open(f) as img:
            kinds.setdefault((img.format, img.mode), []).append(f)
    if IEEE.is_dir():
        assert {"L", "RGB", "RGBA"} <= {mode for _, mode in kinds}, sorted(kinds)
    return [f for found in kinds.values() for f in found[:per_kind]]


@pytest.mark.parametrize("cfg", [PreprocessConfig(), PreprocessConfig(size=96, clip_percentile=0,
                                                                      channels=1)])
def test_output_is_byte_identical_to_version_1(tmp_path, cfg):
    files = _generated(tmp_path) + _real()
    differ = []
    for f in files:
        gray, out = _version_1(f.read_bytes(), f.name, cfg)
        new = load_image(f, cfg)
        if decode_image(f).tobytes() != gray.tobytes() or new[..., 0].tobytes() != out.tobytes():
            differ.append(f.name)
        assert new.shape == (cfg.size, cfg.size, cfg.channels) and out.max() > 100
    assert differ == [] and len(files) >= 14
