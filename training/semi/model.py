"""A small CNN trained from scratch: the semi-supervised experiments' model.

ImageNet weights are not available everywhere, and the registry's backbones (ResNet50, ...)
trained from scratch are far too slow on a CPU at the experiment's scale; this ~100k
parameter network trains on a few thousand 64 px images in seconds per epoch. It follows
the project's model contract: uint8-valued ``(B, S, S, 3)`` input in [0, 255], normalisation
inside the model, one output per class (softmax or sigmoid).
"""
from __future__ import annotations

import keras

from training.models.layers import FirstChannel

WIDTHS: tuple[int, ...] = (16, 32, 64, 128)


def small_cnn(n_outputs: int, kind: str, size: int = 64, seed: int = 0,
              widths: tuple[int, ...] = WIDTHS, dropout: float = 0.3) -> keras.Model:
    """Conv-BN-ReLU blocks (stride-2 pooling), global average pooling, dropout, dense head."""
    if kind not in ("single", "multilabel"):
        raise ValueError(f"kind must be 'single' or 'multilabel', got {kind!r}")
    init = keras.initializers.HeNormal(seed=seed)
    inp = keras.Input((size, size, 3), name="image")
    # Grayscale CXRs are stored as 3 equal channels; one is enough here.
    x = FirstChannel(name="gray")(inp)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(x)
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=init,
                                name=f"conv{i}")(x)
        # momentum 0.9 (not 0.99): the small labelled subsets give few steps, and the moving
        # statistics used at inference must still converge
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(x)
    out = keras.layers.Dense(n_outputs, activation="softmax" if kind == "single" else "sigmoid",
                             kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                             name="head", dtype="float32")(x)
    return keras.Model(inp, out, name="small_cnn")
