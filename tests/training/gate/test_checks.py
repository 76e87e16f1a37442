"""Every image-level reason of the gate, and a plausible chest X-ray passing them all."""
from __future__ import annotations

import logging
import time
import tracemalloc

import numpy as np
import pytest

from tests.helpers import hostile
from tests.helpers import images as H
from tests.helpers.images import chest_like, png_bytes, write_dicom
from training.errors import ImageDecodeError
from training.gate import checks
from training.gate.assess import assess
from training.preprocess import decode_image


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


# ------------------------------------------------------------------ hostile uploads (issue 22)

#: kind -> (make the file, its name, refused from the header alone)
HOSTILE = {
    "rle_bomb_40000px": (hostile.rle_bomb_dicom, "x.dcm", True),
    "png_bomb_50mpx": (lambda: hostile.png_bomb(50_000_000), "x.png", True),
    "rgb_png_bomb_41mpx": (lambda: hostile.png_bomb(41_000_000, colour_type=2), "x.png", True),
    "one_bit_png_9400px": (lambda: hostile.one_bit_png(9400, 9400), "x.png", True),
    "dicom_100000_frames": (hostile.many_frames_dicom, "x.dcm", True),
    "dicom_short_pixel_data": (hostile.short_pixel_dicom, "x.dcm", False),
    "dicom_no_rows": (lambda: hostile.uncompressed_dicom(8, 8, Rows=0), "x.dcm", True),
    "dicom_4_samples": (lambda: hostile.uncompressed_dicom(8, 8, SamplesPerPixel=4), "x.dcm", True),
    "dicom_jpeg_declaring_9000px": (hostile.codestream_bomb_dicom, "x.dcm", True),
    "dicom_j2k_declaring_9000px": (lambda: hostile.codestream_bomb_dicom("j2k"), "x.dcm", True),
}


def _spy_pixel_decoders(monkeypatch) -> list[str]:
    """Record every call of Pillow's and pydicom's pixel decoders (where pixels are allocated)."""
    import pydicom.pixels
    from PIL import ImageFile

    calls: list[str] = []
    for owner, attr in ((ImageFile.ImageFile, "load"), (pydicom.pixels, "pixel_array")):
        real = getattr(owner, attr)
        monkeypatch.setattr(owner, attr, lambda *a, _real=real, _name=attr, **k:
                            (calls.append(_name), _real(*a, **k))[1])
    return calls


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_upload_is_refused_fast_before_its_pixels_are_allocated(kind, monkeypatch):
    make, name, header_only = HOSTILE[kind]
    data = make()
    calls = _spy_pixel_decoders(monkeypatch)
    tracemalloc.start()  # sees numpy's and pydicom's buffers (Pillow's: the spy above)
    try:
        start = time.perf_counter()
        with pytest.raises(ImageDecodeError, match=name):
            checks.inspect(data, name)
        seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MB allocated before the refusal"
    assert seconds < 1.0  # before issue 22 the RLE bomb took 3.6 s and 1.5 GB here
    assert calls == ([] if header_only else ["pixel_array"])


def test_the_rle_bomb_is_refused_for_its_declared_size():
    data = hostile.rle_bomb_dicom()
    assert len(data) < 1000
    with pytest.raises(ImageDecodeError, match=r"40000x40000.* 1600000000 pixels.*bomb"):
        checks.inspect(data, "bomb.dcm")


@pytest.mark.parametrize("fmt", ["png", "jpg", "dcm"])
def test_the_pixel_budget_is_honoured_for_every_format(tmp_path, fmt):
    path = (H.write_dicom(tmp_path / "a.dcm") if fmt == "dcm"
            else H.write_image(tmp_path / f"a.{fmt}", "RGB"))  # 48 x 64 = 3072 pixels
    data = path.read_bytes()
    assert checks.inspect(data, path.name, max_pixels=3072).decoded.shape == (48, 64)
    with pytest.raises(ImageDecodeError, match="3072 pixels, more than the 3071 allowed"):
        checks.inspect(data, path.name, max_pixels=3071)


def test_the_dicom_budget_counts_every_frame_and_sample_but_decodes_the_first_frame():
    first = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    data = hostile.uncompressed_dicom(48, 64, pixels=first, frames=3)
    facts = checks.inspect(data, "x.dcm", max_pixels=3 * 3072)
    np.testing.assert_array_equal(facts.decoded, first)
    with pytest.raises(ImageDecodeError, match=r"3 frame\(s\)"):
        checks.inspect(data, "x.dcm", max_pixels=3 * 3072 - 1)


def test_a_deflated_dicom_is_inflated_only_as_far_as_its_budget():
    bomb = hostile.deflate_bomb_dicom(inflated=64 << 20)           # 64 MB of zeros, ~70 kB here
    tracemalloc.start()
    try:
        with pytest.raises(ImageDecodeError, match="inflates to more than 5048576 bytes"):
            checks.inspect(bomb, "x.dcm", max_pixels=1_000_000)   # 4 B/px + 1 MiB
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()
    assert checks.inspect(bomb, "x.dcm").decoded.shape == (64, 64)  # 64 MB < 4 B/px of 40 Mpx


@pytest.mark.parametrize("syntax", ["jpeg", "j2k"])
def test_a_compressed_dicom_is_held_to_its_codestream_size_too(syntax):
    honest = hostile.codestream_bomb_dicom(syntax, side=64)   # the codestream agrees: 64 x 64
    assert checks.inspect(honest, "x.dcm", max_pixels=4096).decoded.shape == (64, 64)
    with pytest.raises(ImageDecodeError, match=r"65x65 \(its JPEG.* 4225 pixels"):
        checks.inspect(hostile.codestream_bomb_dicom(syntax, side=65), "x.dcm", max_pixels=4096)


@pytest.mark.parametrize("name", ["chest.dicom", "CHEST.DCM"])
def test_a_dicom_without_preamble_is_read_by_its_name(name):
    data = hostile.dicom_without_preamble()
    assert data[128:132] != b"DICM"
    facts = checks.inspect(data, name)
    assert facts.decoded.shape == (256, 256) and facts.dicom["Modality"] == "DX"
    assert assess(facts).verdict == "accept"
    with pytest.raises(ImageDecodeError, match="not a JPEG, PNG or DICOM"):
        checks.inspect(data, "chest.png")


# ------------------------------------------------------------------ no patient data anywhere

def _leaky_uploads() -> list[bytes]:
    """The odd-tag DICOM, and DICOMs whose tags make the decoder or the checks fail or refuse."""
    odd, secret = hostile.ODD_TAG_VALUES, hostile.ODD_TAG_VALUES[0]
    return [hostile.odd_tags_dicom(),
            hostile.uncompressed_dicom(64, 64, WindowCenter=30, WindowWidth=40,
                                       VOILUTFunction=secret),           # pydicom quotes it
            hostile.uncompressed_dicom(64, 64, Modality=odd[2], BodyPartExamined=odd[3],
                                       PhotometricInterpretation=odd[4], PatientName=secret),
            hostile.odd_tags_dicom()[:-5000]]                          # truncated pixel data


def test_no_tag_value_reaches_a_log_warning_stderr_or_message(caplog, recwarn, capfd):
    caplog.set_level(logging.DEBUG)
    texts = []
    for data in _leaky_uploads():
        for call in (lambda d: [r.message for r in assess(checks.inspect(d, "up.dcm")).reasons],
                     lambda d: [str(decode_image(d, name="up.dcm").shape)]):
            try:
                texts += call(data)
            except ImageDecodeError as exc:
                texts.append(str(exc))
    out, err = capfd.readouterr()
    texts += [out, err, caplog.text, *(str(w.message) for w in recwarn)]
    assert any("cannot" in t for t in texts)  # the failing uploads did fail
    leaked = [(v, t) for v in hostile.ODD_TAG_VALUES for t in texts if v.lower() in t.lower()]
    assert leaked == []


@pytest.mark.parametrize("tags, quoted", [
    ({"Modality": "CT"}, "modality (CT)"), ({"Modality": "DOE^JANE"}, "modality (a value"),
    ({"BodyPartExamined": "KNEE"}, "part (KNEE)"), ({"BodyPartExamined": "WARD 7"}, "part (a value"),
    ({"SamplesPerPixel": 3, "PhotometricInterpretation": "YBR_FULL"}, "pixels (YBR_FULL)"),
    ({"SamplesPerPixel": 3, "PhotometricInterpretation": "DOE"}, "pixels (a value"),
])
def test_reasons_quote_dicom_defined_terms_only(tags, quoted):
    facts = checks.inspect(png_bytes(chest_like()), "x.png")
    facts.dicom = {"Modality": "DX", **tags}
    messages = " ".join(r.message for r in checks.image_reasons(facts))
    assert quoted in messages and "DOE" not in messages and "WARD" not in messages
