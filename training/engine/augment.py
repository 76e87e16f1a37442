"""Training-only augmentation: small geometric and intensity changes, never flips.

A chest has sides (the heart is on the left), so neither horizontal nor vertical flips are
used. The layers run inside the training graph on any backend; they live only in the training
wrapper (``images → aug → model``) and are never part of the exported model.

Rotation, translation and zoom are one :class:`RandomAffine` (one resampling of the image, not
three). Measured with ``KERAS_BACKEND=jax`` (BENCHMARKS.md, "Augmentation cost"): Keras's
``RandomRotation`` / ``RandomTranslation`` / ``RandomZoom`` each halved ResNet50's training
throughput inside ``fit``, while this layer costs nothing measurable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

ROTATION = 5 / 360  # the default policy: ±5 degrees, as a fraction of a full turn (Keras's unit)
TRANSLATION = 0.05  # ±5 % of height/width
ZOOM = 0.10  # ±10 %
INTENSITY = 0.10  # ±10 % brightness and contrast


@dataclass(frozen=True)
class Strength:
    """Ranges of one augmentation policy, each drawn uniformly in ``[-f, f]`` per image."""

    rotation: float  # a fraction of a full turn (Keras's unit)
    translation: float  # of height/width
    zoom: float  # of the size
    intensity: float  # brightness and contrast


#: ``TrainConfig.augment_strength`` (its names: config.CHOICES). "strong" is issue 25's site-transfer variant: wider
#: geometry and photometry, so scanner exposure and patient positioning matter less.
STRENGTHS = {
    "default": Strength(ROTATION, TRANSLATION, ZOOM, INTENSITY),
    "strong": Strength(rotation=15 / 360, translation=0.10, zoom=0.20, intensity=0.30),
}


def affine_matrices(theta, tx, ty, scale, height: int, width: int):
    """Per-image transforms for ``keras.ops.image.affine_transform`` (8 numbers each).

    They map an output pixel ``(x, y)`` to the input point it samples: rotation by ``theta``
    radians and scaling by ``scale`` (> 1 zooms out) about the image centre, then a shift of
    ``(-tx, -ty)`` pixels (so the content moves by ``(tx, ty)``).
    """
    cx, cy = (width - 1) / 2, (height - 1) / 2
    cos, sin = scale * ops.cos(theta), scale * ops.sin(theta)
    a2 = cx - cos * cx + sin * cy - tx
    b2 = cy - sin * cx - cos * cy - ty
    zero = ops.zeros_like(cos)
    return ops.stack([cos, -sin, a2, sin, cos, b2, zero, zero], axis=1)


@keras.saving.register_keras_serializable(package="cxrlab")
class RandomAffine(keras.layers.Layer):
    """Random rotation, translation and zoom of a batch of images, one resampling, training only.

    ``rotation`` is a fraction of a full turn, ``translation`` a fraction of height/width and
    ``zoom`` a fraction of the size (each drawn uniformly in ``[-f, f]`` per image); pixels
    brought in from outside get ``fill_value``.
    """

    def __init__(self, rotation: float = 0.0, translation: float = 0.0, zoom: float = 0.0,
                 fill_value: float = 0.0, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.rotation, self.translation, self.zoom = float(rotation), float(translation), float(zoom)
        self.fill_value, self.seed = float(fill_value), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        height, width = int(images.shape[1]), int(images.shape[2])
        u = keras.random.uniform((ops.shape(images)[0], 4), -1.0, 1.0, seed=self.seed_generator)
        transforms = affine_matrices(u[:, 0] * (2 * math.pi * self.rotation), u[:, 1] * (self.translation * width),
                                     u[:, 2] * (self.translation * height), 1.0 + u[:, 3] * self.zoom,
                                     height, width)
        out = ops.image.affine_transform(images, transforms, interpolation="bilinear",
                                         fill_mode="constant", fill_value=self.fill_value)
        return ops.cast(out, images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rotation": self.rotation, "translation": self.translation,
                "zoom": self.zoom, "fill_value": self.fill_value, "seed": self.seed}


def build_augmentation(cfg: Any = None, seed: int = 0) -> keras.Sequential:
    """The augmentation block for uint8-valued images in [0, 255] (output float32, same range).

    ``cfg``: a TrainConfig (its ``augment_strength``, checked by the config) or None: "default".
    """
    st, s = STRENGTHS[getattr(cfg, "augment_strength", "default")], int(seed)
    return keras.Sequential(
        [
            RandomAffine(st.rotation, st.translation, st.zoom, seed=s),
            keras.layers.RandomBrightness(st.intensity, value_range=(0, 255), seed=s + 3),
            keras.layers.RandomContrast(st.intensity, value_range=(0, 255), seed=s + 4),
        ],
        name="augmentation",
    )


def with_augmentation(model: keras.Model, aug: keras.Sequential) -> keras.Model:
    """A training wrapper ``images → aug → model`` sharing ``model``'s weights."""
    inputs = keras.Input(shape=model.input_shape[1:], name="train_images")
    # Keras passes training=True only inside fit()'s train step: validation is not augmented.
    x = aug(keras.ops.cast(inputs, "float32"))
    return keras.Model(inputs, model(x), name=f"train_{model.name}")
