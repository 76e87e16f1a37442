"""Every image-level reason of the gate, and a plausible chest X-ray passing them all."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.images import chest_like, png_bytes, write_dicom
from training.errors import ImageDecodeError
from training.gate import checks
from training.gate.assess import assess


def codes(data: bytes, name: str = "x.png") -> dict[str, str]:
    return {r.code: r.level for r in assess(checks.inspect(data, name)).reasons}


def test_a_chest_like_image_is_accepted():
    result = assess(checks.inspect(png_bytes(chest_like()), "cxr.png"))
    assert result.verdict == "accept", result.reasons


def test_inspect_keeps_the_decoded_image_and_a_small_preview():
    facts = checks.inspect(png_bytes(chest_like(600, 400)), "cxr.png")
    assert facts.decoded.shape == (600, 400) and facts.decoded.dtype == np.float32
    assert max(facts.preview.shape[:2]) <= checks.PREVIEW and facts.preview.shape[2] == 3
    assert (facts.width, facts.height) == (400, 600)


@pytest.mark.parametrize("shape", [(1, 1), (100, 300), (127, 127)])
def test_too_small_is_refused(shape):
    assert codes(png_bytes(np.resize(chest_like(), shape)))["too_small"] == "refuse"


def test_extreme_aspect_ratio_is_refused_and_a_long_one_warned():
    stripe = np.random.default_rng(0).integers(0, 256, (130, 4000))
    assert codes(png_bytes(stripe))["aspect_ratio"] == "refuse"
    wide = np.hstack([chest_like(256, 256)] * 3)[:, :560]       # 2.2 : 1
    assert codes(png_bytes(wide))["aspect_ratio"] == "warn"


@pytest.mark.parametrize("value", [0, 128, 255])
def test_constant_images_are_refused(value):
    found = codes(png_bytes(np.full((512, 512), value)))
    assert found["near_constant"] == "refuse"
    assert "colour" not in found and "inverted" not in found     # nothing else to say about a blank


def test_colour_photograph_is_refused_and_coloured_marks_warned():
    rng = np.random.default_rng(0)
    assert codes(png_bytes(rng.integers(0, 256, (300, 300, 3))))["colour"] == "refuse"
    marked = np.repeat(chest_like()[..., None], 3, axis=-1)
    marked[20:40, 20:120] = (255, 0, 0)                            # a red label: ~3% of pixels
    assert codes(png_bytes(marked))["colour"] == "warn"


def test_gray_saved_as_rgb_is_not_colour():
    rgb = np.repeat(chest_like()[..., None], 3, axis=-1)
    assert "colour" not in codes(png_bytes(rgb))


def test_inverted_image_is_warned():
    assert codes(png_bytes(255 - chest_like()))["inverted"] == "warn"
    assert checks.mediastinum_contrast(chest_like().astype(np.float32)) > 50


def test_undecodable_bytes_raise_the_decoders_clear_error():
    with pytest.raises(ImageDecodeError, match="x.png"):
        checks.inspect(b"not an image at all", "x.png")


def _dicom(tmp_path, **tags):
    path = write_dicom(tmp_path / "x.dcm", h=256, w=256)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PixelData = chest_like().astype(np.uint16).tobytes() * 1
    ds.BitsStored, ds.HighBit = 8, 7
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def test_dicom_frontal_chest_is_accepted(tmp_path):
    data = _dicom(tmp_path, ViewPosition="PA", BodyPartExamined="CHEST")
    facts = checks.inspect(data, "x.dcm")
    assert facts.dicom["ViewPosition"] == "PA"
    assert assess(facts).verdict == "accept"


@pytest.mark.parametrize("tags, code", [
    ({"ViewPosition": "LL"}, "lateral_view"),
    ({"Modality": "CT"}, "modality"),
    ({"BodyPartExamined": "KNEE"}, "body_part"),
])
def test_dicom_tags_refuse_what_is_not_a_frontal_chest_radiograph(tmp_path, tags, code):
    assert codes(_dicom(tmp_path, **tags), "x.dcm")[code] == "refuse"


def test_dicom_inverse_presentation_is_warned(tmp_path):
    assert codes(_dicom(tmp_path, PresentationLUTShape="INVERSE"), "x.dcm")["photometry"] == "warn"
