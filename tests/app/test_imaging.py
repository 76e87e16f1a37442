"""Overlays, colour scales and data URIs for the pages."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from app.imaging import Box, blend, cam_box, cam_region, colourise, display_image, overlay, png_data_uri
from training.preprocess import PreprocessConfig

SIZE = 24


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def test_overlay_blends_in_colour():
    image = np.full((8, 8, 3), 100, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[:4] = 1.0
    out = overlay(image, heat, alpha=0.5)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[0, 0], out[7, 7])            # hot vs cold colours differ
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.0), image)
    assert overlay(image[..., 0], heat).shape == (8, 8, 3)     # grayscale input
    with pytest.raises(ValueError, match="does not match"):
        overlay(image, np.zeros((4, 4)))


def test_png_data_uri_round_trip():
    from PIL import Image

    image = _image(3)
    uri = png_data_uri(image)
    assert uri.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    np.testing.assert_array_equal(decoded, image)


def test_overlay_lut_matches_matplotlib():
    """The lookup table gives the colours matplotlib's colormap gives (within rounding)."""
    from matplotlib import colormaps

    image = np.zeros((16, 16, 3), np.uint8)
    heat = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    got = overlay(image, heat, alpha=1.0).astype(int)
    expected = np.rint(colormaps["jet"](heat)[..., :3] * 255).astype(int)
    assert np.abs(got - expected).max() <= 3


def _decode(uri):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_a_padded_models_map_loses_its_padding_and_covers_the_display():
    """A 200×100 (H×W) upload padded into an 8×8 input fills columns 2-5: those are the map's."""
    cam = np.zeros((8, 8), np.float32)
    cam[:, 2:6] = 1.0
    cfg = PreprocessConfig(size=8)
    region = cam_region(cam, (200, 100), cfg)
    assert region.shape == (8, 4) and region.min() == 1.0
    assert cam_box((512, 256), cfg) == Box(0, 0, 512, 256)


def test_a_cropping_models_map_lies_on_the_centre_square():
    cfg = PreprocessConfig(size=8, resize="crop")
    cam = np.random.default_rng(0).uniform(size=(8, 8)).astype(np.float32)
    np.testing.assert_array_equal(cam_region(cam, (300, 200), cfg), cam)
    assert cam_box((300, 200), cfg) == Box(50, 0, 200, 200)


def test_blend_colours_the_box_only_and_the_layer_is_the_same_colours():
    base = np.full((40, 30, 3), 90, np.uint8)
    region = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    box = Box(5, 0, 30, 30)
    out = blend(base, region, box, alpha=0.5)
    np.testing.assert_array_equal(out[:5], base[:5])              # outside the box: the picture
    np.testing.assert_array_equal(out[35:], base[35:])
    assert not np.array_equal(out[5:35], base[5:35])
    flat = np.full((30, 30), 0.25, np.float32)                    # a uniform map: one colour
    blended = blend(base, flat[:8, :8], box, alpha=1.0)[5:35]
    np.testing.assert_array_equal(blended, np.broadcast_to(colourise(flat)[0, 0], blended.shape))


def test_display_image_keeps_the_aspect_within_the_display_side():
    gray = np.random.default_rng(1).uniform(0, 4000, (1000, 800)).astype(np.float32)
    shown = display_image(gray)
    assert shown.shape == (512, 410, 3) and shown.dtype == np.uint8
    assert display_image(gray[:100, :80]).shape == (100, 80, 3)  # small uploads are not enlarged


def test_served_heatmaps_are_layers_on_one_display_image(bank, tmp_path):
    """Each map: a layer at the map's own resolution for its model's box, and the same map
    blended over the display image (the API's and the reports' picture)."""
    from tests.helpers.images import write_xray

    data = write_xray(tmp_path / "x.png", "L", 300, 240, seed=4).read_bytes()
    served = bank.predict(data, "x.png", heatmaps=True)
    assert (served.display.height, served.display.width) == _decode(served.display.uri).shape[:2] == (300, 240)
    assert bank.predict(data, "x.png").display is None            # no heatmaps: no picture
    drawn = 0
    for model, result in zip(bank, served.models):
        assert result.heatmap_box == cam_box((300, 240), model.preprocess)
        for h in result.heatmaps.values():
            assert (h.layer is None) == (h.image is None) == (h.problem is not None)
            if h.layer:
                drawn += 1
                assert _decode(h.layer).shape[0] <= model.preprocess.size
                assert _decode(h.image).shape[:2] == (300, 240)
    assert drawn
