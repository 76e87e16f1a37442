"""Grad-CAM heatmaps."""
from __future__ import annotations


import keras
import numpy as np
import pytest

from tests.helpers.tiny import tiny_model
from training.explain import explainer, gradcam

SIZE = 24


def _tiny(outputs: int, seed: int) -> keras.Model:
    return tiny_model(outputs, "multilabel", size=SIZE, filters=6, seed=seed)


@pytest.fixture(scope="module")
def model():
    return _tiny(3, seed=0)


@pytest.fixture(scope="module")
def model4():
    """Four outputs: for ``GradCAM.explain`` (one compiled call: probabilities, heatmap, class)."""
    return _tiny(4, seed=1)


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.mark.parametrize("class_index", [0, 1, 2])
def test_gradcam_shape_and_range(model, class_index):
    cam = gradcam(model, _image(), "last_conv", class_index)
    assert cam.shape == (SIZE, SIZE) and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() <= 1
    assert cam.max() in (0.0, pytest.approx(1.0))


def test_gradcam_matches_manual_computation(model):
    """Against an eager reference: feature maps weighted by mean gradients, ReLU, scaled."""
    import tensorflow as tf

    image = _image(1)
    grad_model = keras.Model(model.inputs, [model.get_layer("last_conv").output, model.output])
    x = tf.constant(image[None].astype(np.float32))
    with tf.GradientTape() as tape:
        features, preds = grad_model(x)
        score = preds[:, 1]
    grads = tape.gradient(score, features).numpy()[0]
    cam = np.maximum((features.numpy()[0] * grads.mean(axis=(0, 1))).sum(-1), 0)  # same size here
    expected = cam / cam.max() if cam.max() > 0 else cam
    np.testing.assert_allclose(gradcam(model, image, "last_conv", 1), expected, atol=1e-5)


def test_gradcam_is_specific_to_the_class(model):
    image = _image(2)
    maps = [gradcam(model, image, "last_conv", k) for k in range(3)]
    assert not all(np.allclose(maps[0], m) for m in maps[1:])


def test_gradcam_errors(model):
    with pytest.raises(ValueError, match="gradcam_layer"):
        gradcam(model, _image(), "missing", 0)
    with pytest.raises(ValueError, match="out of range"):
        gradcam(model, _image(), "last_conv", 3)
    with pytest.raises(ValueError, match="shape"):
        gradcam(model, np.zeros((10, 10, 3), np.uint8), "last_conv", 0)


# ---------------------------------------------------------------- explain(): one compiled call
def test_explain_matches_model_and_gradcam(model4):
    image = _image(3)
    probs, cam, index = explainer(model4, "last_conv").explain(image, 2)
    direct = np.asarray(model4(image[None].astype(np.float32), training=False))[0]
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-6)
    assert index == 2
    np.testing.assert_allclose(cam, gradcam(model4, image, "last_conv", 2), atol=1e-6)


@pytest.mark.parametrize("mask", [None, [True, False, True, False], [False, False, False, True]])
def test_automatic_class_is_top_candidate(model4, mask):
    image = _image(4)
    probs, cam, index = explainer(model4, "last_conv").explain(image, None, mask)
    allowed = np.ones(4, bool) if mask is None else np.array(mask)
    expected = int(np.flatnonzero(allowed)[np.argmax(probs[allowed])])
    assert index == expected
    np.testing.assert_allclose(cam, gradcam(model4, image, "last_conv", expected), atol=1e-6)


def test_explain_errors(model4):
    cam = explainer(model4, "last_conv")
    assert explainer(model4, "last_conv") is cam       # compiled once, cached
    for bad in (4, -1):
        with pytest.raises(ValueError, match="out of range"):
            cam.explain(_image(), bad)
    with pytest.raises(ValueError, match="non-empty mask"):
        cam.explain(_image(), None, [False] * 4)
    with pytest.raises(ValueError, match="non-empty mask"):
        cam.explain(_image(), None, [True] * 3)


