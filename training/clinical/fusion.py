"""Late fusion of an image backbone and clinical metadata in one Keras model.

``image`` (uint8-valued ``(B, S, S, 3)``) → the :func:`training.models.build.build_model`
backbone up to its ``features`` GAP output; ``metadata`` (the
:class:`~training.clinical.encoder.ClinicalEncoder` vector) → a small MLP; both are
concatenated → dropout → dense head. With a frozen backbone the fast path trains only the
fusion head on cached image features (:func:`fusion_head` shares the layers, so the full
model is trained too), exactly like :func:`training.models.build.split_feature_head`.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from training.engine.data import ArrayBatches
from training.engine.loop import fit_batches
from training.models.build import FEATURES_NAME, Kind, Mode, build_model

METADATA_NAME = "metadata"
#: fusion layers, by name (shared between the full model and its head)
META_LAYERS = ("meta_dense", "meta_dropout")
CONCAT_NAME, FUSION_DROPOUT, HEAD_NAME = "fusion_concat", "fusion_dropout", "head"
IMAGE_NORM = "image_norm"


def build_fusion_model(arch: str, outputs: list[str], kind: Kind, n_metadata: int,
                       input_size: int | None = None, mode: Mode = "frozen",
                       weights: str | None = "imagenet", meta_units: int = 16,
                       dropout: float = 0.2, seed: int = 0) -> keras.Model:
    """Two inputs, ``image`` then ``metadata`` (``(B, n_metadata)`` float32); one head."""
    if n_metadata < 1:
        raise ValueError(f"n_metadata must be >= 1, got {n_metadata}")
    base = build_model(arch, outputs, kind, input_size, mode, weights, dropout, seed)
    # standardises the pooled features (adapt it on training features before fitting):
    # raw GAP features of a random-init backbone have arbitrary scales
    features = keras.layers.Normalization(name=IMAGE_NORM)(base.get_layer(FEATURES_NAME).output)
    meta_in = keras.Input((n_metadata,), name=METADATA_NAME)
    init = keras.initializers.GlorotUniform(seed=seed)
    m = keras.layers.Dense(meta_units, activation="relu", kernel_initializer=init,
                           name=META_LAYERS[0])(meta_in)
    m = keras.layers.Dropout(dropout, seed=seed, name=META_LAYERS[1])(m)
    x = keras.layers.Concatenate(name=CONCAT_NAME)([features, m])
    x = keras.layers.Dropout(dropout, seed=seed, name=FUSION_DROPOUT)(x)
    out = keras.layers.Dense(len(outputs), activation="sigmoid" if kind == "multilabel" else "softmax",
                             kernel_initializer=init, name=HEAD_NAME, dtype="float32")(x)
    return keras.Model([base.inputs[0], meta_in], out, name=f"fusion_{arch}")


def fusion_parts(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(feature_model, head)``: image → pooled features; [features, metadata] → output."""
    features = model.get_layer(FEATURES_NAME).output
    feature_model = keras.Model(model.inputs[0], features, name=f"{model.name}_features")
    feat_in = keras.Input(tuple(features.shape[1:]), name="features_in")
    meta_in = keras.Input(tuple(model.inputs[1].shape[1:]), name="metadata_in")
    m = model.get_layer(META_LAYERS[1])(model.get_layer(META_LAYERS[0])(meta_in))
    x = model.get_layer(CONCAT_NAME)([model.get_layer(IMAGE_NORM)(feat_in), m])
    out = model.get_layer(HEAD_NAME)(model.get_layer(FUSION_DROPOUT)(x))
    return feature_model, keras.Model([feat_in, meta_in], out, name=f"{model.name}_head")


def fit_head(head: keras.Model, inputs: list[np.ndarray], y: np.ndarray,
             val: tuple[list[np.ndarray], np.ndarray] | None = None, epochs: int = 60,
             lr: float = 1e-3, batch_size: int = 32, sample_weight: np.ndarray | None = None,
             patience: int = 10, seed: int = 0) -> dict[str, Any]:
    """Train a head on cached inputs (Adam, masked cross-entropy); return its history.

    Through the project's one loop (:func:`training.engine.loop.fit_batches`; batch order a
    function of ``seed`` and the epoch). ``y`` is one-hot (softmax head) or 0/1 (sigmoid).
    ``sample_weight``: per-row loss weights (e.g. :func:`~training.engine.data.class_balance_weights`).
    With ``val``, early stopping on validation loss restores the best weights.
    """
    softmax = getattr(getattr(head.layers[-1], "activation", None), "__name__", "") == "softmax"
    one = (lambda xs: xs[0] if len(xs) == 1 else tuple(xs))  # a one-input model wants a bare array
    train = ArrayBatches(one(inputs), y, batch_size, shuffle=True, seed=seed, sample_weight=sample_weight)
    val_batches = None if val is None else ArrayBatches(one(val[0]), val[1], batch_size)
    callbacks = []
    if val is not None and patience:
        callbacks.append(keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True))
    return fit_batches(head, train, kind="single" if softmax else "multilabel",
                       optimizer=keras.optimizers.Adam(lr), epochs=epochs, val=val_batches,
                       callbacks=callbacks)

