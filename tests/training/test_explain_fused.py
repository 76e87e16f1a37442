"""``GradCAM.explain``: probabilities, heatmap and the explained class from one compiled call."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from training.explain import explainer, gradcam, overlay

SIZE = 24


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    x = keras.Input((SIZE, SIZE, 3))
    y = keras.layers.Rescaling(1 / 255.0)(x)
    y = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="last_conv")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(4, activation="sigmoid", name="head")(y)
    return keras.Model(x, y)


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def test_explain_matches_model_and_gradcam(model):
    image = _image(3)
    probs, cam, index = explainer(model, "last_conv").explain(image, 2)
    direct = np.asarray(model(image[None].astype(np.float32), training=False))[0]
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-6)
    assert index == 2
    np.testing.assert_allclose(cam, gradcam(model, image, "last_conv", 2), atol=1e-6)


@pytest.mark.parametrize("mask", [None, [True, False, True, False], [False, False, False, True]])
def test_automatic_class_is_top_candidate(model, mask):
    image = _image(4)
    probs, cam, index = explainer(model, "last_conv").explain(image, None, mask)
    allowed = np.ones(4, bool) if mask is None else np.array(mask)
    expected = int(np.flatnonzero(allowed)[np.argmax(probs[allowed])])
    assert index == expected
    np.testing.assert_allclose(cam, gradcam(model, image, "last_conv", expected), atol=1e-6)


def test_explain_errors(model):
    cam = explainer(model, "last_conv")
    assert explainer(model, "last_conv") is cam       # compiled once, cached
    for bad in (4, -1):
        with pytest.raises(ValueError, match="out of range"):
            cam.explain(_image(), bad)
    with pytest.raises(ValueError, match="non-empty mask"):
        cam.explain(_image(), None, [False] * 4)
    with pytest.raises(ValueError, match="non-empty mask"):
        cam.explain(_image(), None, [True] * 3)


def test_overlay_lut_matches_matplotlib():
    """The lookup table gives the colours matplotlib's colormap gives (within rounding)."""
    from matplotlib import colormaps

    image = np.zeros((16, 16, 3), np.uint8)
    heat = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    got = overlay(image, heat, alpha=1.0).astype(int)
    expected = np.rint(colormaps["jet"](heat)[..., :3] * 255).astype(int)
    assert np.abs(got - expected).max() <= 3
