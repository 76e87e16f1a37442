"""Overlays, colour scales and data URIs for the pages."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from app.imaging import overlay, png_data_uri

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
