"""The named parts of a cxrlab model (image → preprocess → backbone → pooling → head).

Below ``build``, ``weights`` and ``card`` (all three use it), so none of them imports another
just for these names.
"""
from __future__ import annotations

import math
from typing import Sequence

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


def feature_model(model: keras.Model, layers: str | Sequence[str] = FEATURES_NAME) -> keras.Model:
    """image → the pooled outputs of ``layers``, concatenated (4-D maps are average-pooled)."""
    names = [layers] if isinstance(layers, str) else list(layers)
    outs = []
    for i, name in enumerate(names):
        out = model.get_layer(name).output
        if len(out.shape) == 4:
            out = keras.layers.GlobalAveragePooling2D(name=f"gate_pool_{i}")(out)
        outs.append(out)
    joined = outs[0] if len(outs) == 1 else keras.layers.Concatenate(name="gate_features")(outs)
    return keras.Model(model.inputs[0], joined, name=f"{model.name}_gate_features")


def gate_layers(model: keras.Model, gradcam_layer: str | None) -> list[str]:
    """The layers whose pooled outputs the OOD gate models, deepest first.

    The pooled backbone output (``features``; else the Grad-CAM layer) plus the last layer
    at each of the next two spatial resolutions up: mid-level features see texture and
    layout that the final, class-driven features discard, and separate non-X-rays much
    better for some backbones (docs/gate.md).
    """
    names = [lay.name for lay in model.layers]
    final = FEATURES_NAME if FEATURES_NAME in names else gradcam_layer
    if final not in names:
        raise ValueError(f"model {model.name!r} has neither a {FEATURES_NAME!r} layer nor the Grad-CAM "
                         "layer: no feature space for the OOD gate")
    last_at: dict[int, str] = {}
    for lay in model.layers:
        shape = None if isinstance(lay, keras.layers.InputLayer) else getattr(lay.output, "shape", None)
        if shape is not None and len(shape) == 4 and shape[1] and shape[1] > 1:
            last_at[int(shape[1])] = lay.name
    # The final map's resolution is what `final` already pools: take the next two up.
    fed = model.get_layer(final)
    if final == FEATURES_NAME:
        fed = fed.input._keras_history[0]
    fed_shape = fed.output.shape
    skip = int(fed_shape[1]) if len(fed_shape) == 4 and fed_shape[1] else None
    sizes = sorted(size for size in last_at if size != skip)[:2]
    return [str(final)] + [last_at[size] for size in sizes]
