"""Training-only augmentation: small geometric and intensity changes, never flips.

A chest has sides (the heart is on the left), so neither horizontal nor vertical flips are
used. The layers are Keras preprocessing layers, so they run inside the training graph on any
backend; they live only in the training wrapper (``keras.Sequential([aug, model])``) and are
never part of the exported model.
"""
from __future__ import annotations

from typing import Any

import keras

ROTATION = 5 / 360  # ±5 degrees, as a fraction of a full turn (Keras's unit)
TRANSLATION = 0.05  # ±5 % of height/width
ZOOM = 0.10  # ±10 %
INTENSITY = 0.10  # ±10 % brightness and contrast


def build_augmentation(cfg: Any = None, seed: int = 0) -> keras.Sequential:
    """The augmentation block for uint8-valued images in [0, 255] (output float32, same range).

    ``cfg`` is accepted for symmetry with the other builders (no field changes the policy yet).
    """
    del cfg
    s = int(seed)
    return keras.Sequential(
        [
            keras.layers.RandomRotation(ROTATION, fill_mode="constant", seed=s),
            keras.layers.RandomTranslation(TRANSLATION, TRANSLATION, fill_mode="constant", seed=s + 1),
            keras.layers.RandomZoom(ZOOM, ZOOM, fill_mode="constant", seed=s + 2),
            keras.layers.RandomBrightness(INTENSITY, value_range=(0, 255), seed=s + 3),
            keras.layers.RandomContrast(INTENSITY, value_range=(0, 255), seed=s + 4),
        ],
        name="augmentation",
    )


def with_augmentation(model: keras.Model, aug: keras.Sequential) -> keras.Model:
    """A training wrapper ``images → aug → model`` sharing ``model``'s weights."""
    inputs = keras.Input(shape=model.input_shape[1:], name="train_images")
    # Keras passes training=True only inside fit()'s train step: validation is not augmented.
    x = aug(keras.ops.cast(inputs, "float32"))
    return keras.Model(inputs, model(x), name=f"train_{model.name}")
