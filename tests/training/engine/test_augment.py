"""On-device augmentation: no flips, training only, uint8 in, seeded and serializable affine."""
import numpy as np
import keras
import pytest

from training.engine.augment import build_augmentation, with_augmentation


def test_no_flip_layers():
    aug = build_augmentation(None, seed=0)
    assert not any(isinstance(layer, keras.layers.RandomFlip) for layer in aug.layers)
    assert aug.name == "augmentation"


def test_shape_dtype_and_training_only():
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    aug = build_augmentation(None, seed=1)
    y = keras.ops.convert_to_numpy(aug(x, training=True))
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.allclose(y, x)
    assert y.min() >= 0 and y.max() <= 255
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(aug(x, training=False)), x)


def test_top_and_bottom_and_sides_are_never_swapped():
    img = np.zeros((16, 32, 32, 3), "float32")
    img[:, :16, :, :] = 200  # bright top
    img[:, :, :10, :] += 40  # brighter left
    y = keras.ops.convert_to_numpy(build_augmentation(None, seed=2)(img, training=True))
    assert (y[:, :12].mean(axis=(1, 2, 3)) > y[:, 20:].mean(axis=(1, 2, 3))).all()
    assert (y[:, :, :8].mean(axis=(1, 2, 3)) > y[:, :, 24:].mean(axis=(1, 2, 3))).all()


def test_wrapper_shares_weights_and_accepts_uint8():
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inp)))
    wrapper = with_augmentation(model, build_augmentation(None))
    assert wrapper.get_layer(model.name) is model
    out = wrapper.predict(np.zeros((2, 8, 8, 3), np.uint8), verbose=0)
    assert out.shape == (2, 2)


def _affine(img, theta=0.0, tx=0.0, ty=0.0, scale=1.0):
    from training.engine.augment import affine_matrices

    h, w = img.shape[1:3]
    t = affine_matrices(*(np.full((len(img),), v, "float32") for v in (theta, tx, ty, scale)), h, w)
    return keras.ops.convert_to_numpy(keras.ops.image.affine_transform(img, t, interpolation="bilinear"))


def test_affine_matrices_identity_rotation_and_shift():
    img = np.random.default_rng(0).random((2, 9, 9, 1)).astype("float32")
    np.testing.assert_allclose(_affine(img), img, atol=1e-5)
    # a quarter turn about the centre is numpy's rot90 (rows and columns exchanged)
    np.testing.assert_allclose(_affine(img, theta=np.pi / 2), np.rot90(img, 1, axes=(1, 2)), atol=1e-4)
    shifted = _affine(img, tx=2.0, ty=1.0)  # content moves 2 px right and 1 px down
    np.testing.assert_allclose(shifted[:, 1:, 2:], img[:, :-1, :-2], atol=1e-5)
    assert np.all(shifted[:, 0] == 0) and np.all(shifted[:, :, :2] == 0)  # filled with 0
    zoomed_out = _affine(img, scale=2.0)  # the centre stays, the border gets fill
    np.testing.assert_allclose(zoomed_out[:, 4, 4], img[:, 4, 4], atol=1e-5)
    assert np.all(zoomed_out[:, 0, 0] == 0)


def test_random_affine_is_seeded_serializable_and_resettable():
    from training.engine.augment import RandomAffine
    from training.engine.callbacks import seed_generators

    x = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3)).astype("float32")
    layer = RandomAffine(0.05, 0.1, 0.1, seed=3)
    a = keras.ops.convert_to_numpy(layer(x, training=True))
    b = keras.ops.convert_to_numpy(RandomAffine(0.05, 0.1, 0.1, seed=3)(x, training=True))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, x) and a.shape == x.shape
    clone = RandomAffine.from_config(layer.get_config())
    assert (clone.rotation, clone.translation, clone.zoom, clone.seed) == (0.05, 0.1, 0.1, 3)
    # EpochSync resets the augmentation's random state each epoch (resume = same draws)
    aug = build_augmentation(None, seed=0)
    assert len(seed_generators(aug)) == 3


def _cfg(**kw):
    from training.config import TrainConfig

    return TrainConfig(**kw)


def test_default_strength_is_todays_policy_and_strong_is_wider():
    from training.config import CHOICES
    from training.engine.augment import INTENSITY, ROTATION, STRENGTHS, TRANSLATION, ZOOM

    assert set(STRENGTHS) == set(CHOICES["augment_strength"])
    default = build_augmentation(_cfg(), seed=0).layers[0]
    assert (default.rotation, default.translation, default.zoom) == (ROTATION, TRANSLATION, ZOOM)
    assert build_augmentation(_cfg(), seed=0).layers[1].factor == build_augmentation(None).layers[1].factor
    strong = build_augmentation(_cfg(augment_strength="strong"), seed=0)
    assert strong.layers[0].rotation > ROTATION and strong.layers[0].translation > TRANSLATION
    assert strong.layers[0].zoom > ZOOM and STRENGTHS["strong"].intensity > INTENSITY
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype("float32")
    same_seed = [keras.ops.convert_to_numpy(build_augmentation(_cfg(augment_strength=s), seed=3)(x, training=True))
                 for s in ("default", "strong")]
    assert not np.allclose(*same_seed)


def test_strong_augmentation_never_flips():
    top = np.zeros((32, 32, 32, 1), "float32")
    top[:, :16] = 200  # bright top half
    left = np.zeros((32, 32, 32, 1), "float32")
    left[:, :, :16] = 200  # bright left half
    aug = build_augmentation(_cfg(augment_strength="strong"), seed=5)
    yt, yl = (keras.ops.convert_to_numpy(aug(img, training=True)) for img in (top, left))
    assert (yt[:, :10].mean(axis=(1, 2, 3)) > yt[:, 22:].mean(axis=(1, 2, 3))).all()
    assert (yl[:, :, :10].mean(axis=(1, 2, 3)) > yl[:, :, 22:].mean(axis=(1, 2, 3))).all()


def test_unknown_strength_is_a_clear_config_error():
    from training.errors import CXRError

    with pytest.raises(CXRError, match="augment_strength='extreme' is not one of"):
        _cfg(augment_strength="extreme")
