"""The tests' one tiny-model factory: small Keras models with valid cards, saved like real ones.

Every tiny model has the product's model contract (uint8-valued ``(B, S, S, 3)`` input, one
output per class, softmax or sigmoid) and the same layers: ``Rescaling`` → ``Conv2D``
``last_conv`` (the Grad-CAM layer) → ``GlobalAveragePooling2D`` ``gap`` → ``Dense`` ``head``.
Models that only test a mechanism (a BatchNorm layer, a loss, accumulation) build their own.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

SIZE = 32
PREP = {"size": SIZE, "clip_percentile": 0.5, "resize": "pad", "clahe": False,
        "clahe_clip": 0.01, "channels": 3}


def tiny_model(n_out: int, kind: str, *, size: int = SIZE, filters: int = 4, seed: int = 0,
               gain: float | None = None, metadata: int = 0) -> keras.Model:
    """A tiny model; random weights from ``seed``, or with ``gain`` a fixed brightness reader.

    ``gain``: ``last_conv`` sums the three channels and the head's last output rises (its first
    falls) with the mean brightness, so generated images whose classes differ in brightness
    get meaningful metrics. ``metadata``: a second input of that width, joined after pooling.
    """
    if kind not in ("single", "multilabel"):
        raise ValueError(f"kind must be 'single' or 'multilabel', got {kind!r}")
    keras.utils.set_random_seed(seed)
    image = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name="last_conv")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(conv(keras.layers.Rescaling(1 / 255.0)(image)))
    inputs = [image]
    if metadata:
        inputs.append(keras.Input((metadata,)))
        x = keras.layers.Concatenate()([x, inputs[1]])
    head = keras.layers.Dense(n_out, activation="softmax" if kind == "single" else "sigmoid", name="head")
    model = keras.Model(inputs if metadata else image, head(x))
    if gain is not None:
        _read_brightness(conv, head, gain)
    return model


def _read_brightness(conv: keras.layers.Conv2D, head: keras.layers.Dense, gain: float) -> None:
    kernel, bias = np.zeros(conv.kernel.shape, np.float32), np.zeros(conv.filters, np.float32)
    kernel[1, 1, :, 0] = 1.0  # filter 0 = R + G + B at each pixel (the centre tap: no edge effect)
    conv.set_weights([kernel, bias])
    w, b = np.zeros(head.kernel.shape, np.float32), np.zeros(head.units, np.float32)
    w[0, -1], w[0, 0] = gain, -gain  # last output = "sick", first = "normal"
    b[-1], b[0] = -1.25 * gain, 1.25 * gain
    head.set_weights([w, b])


def tiny_card(name: str, kind: str, outputs: list[str], *, arch: str = "tiny", size: int = SIZE,
              preprocessing: dict | None = None, **entries: Any) -> dict:
    """A valid card for a tiny model; ``entries`` replace or add top-level card entries."""
    card = {
        "name": name, "architecture": arch, "task": "test", "kind": kind, "outputs": outputs,
        "input_size": size, "preprocessing": {**PREP, "size": size, **(preprocessing or {})},
        "gradcam_layer": "last_conv", "transfer": {"mode": "scratch", "weights": None},
        "split": {"file": "split.csv", "sha256": "ab" * 32, "counts": {"train": 7, "val": 2, "test": 3}},
        "data": {"sources": ["kermany"], "counts": {"train": {o: 3 for o in outputs}}},
        "thresholds": {o: 0.5 for o in outputs}, "threshold_method": "fixed",
        "metrics": {"validation": {}, "test": {}},
    }
    card.update(entries)
    return card

