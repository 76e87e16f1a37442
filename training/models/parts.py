"""The named parts of a cxrlab model (image → preprocess → backbone → pooling → head).

Below ``build``, ``weights`` and ``card`` (all three use it), so none of them imports another
just for these names.
"""
from __future__ import annotations

import math

import keras

#: layers outside the backbone, by name (the rest of the model is the backbone)
INPUT_NAME, PREPROCESS_NAME, FEATURES_NAME, DROPOUT_NAME, HEAD_NAME = (
    "image", "cxr_preprocess", "features", "head_dropout", "head")
NON_BACKBONE = {INPUT_NAME, PREPROCESS_NAME, FEATURES_NAME, DROPOUT_NAME, HEAD_NAME}


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers (everything but input, preprocessing, pooling and head)."""
    return [layer for layer in model.layers
            if layer.name not in NON_BACKBONE and not isinstance(layer, keras.layers.InputLayer)]


def count_params(model: keras.Model) -> dict[str, int]:
    """``{"total": ..., "trainable": ...}`` parameter counts."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return {"total": int(model.count_params()), "trainable": trainable}
