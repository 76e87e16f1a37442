"""Build one flat functional model: image → preprocess → backbone → pooling → head.

The backbone's layers live in the outer graph (built with ``input_tensor``), so Grad-CAM
reaches ``Architecture.gradcam_layer`` by name and the saved model is self-contained.
"""
from __future__ import annotations

import logging
from typing import Literal

import keras

from training.errors import CXRError
from training.models.layers import BackbonePreprocess
from training.models.parts import (DROPOUT_NAME, FEATURES_NAME, HEAD_NAME, INPUT_NAME,  # noqa: F401
                                   NON_BACKBONE, PREPROCESS_NAME, backbone_layers, count_params)
from training.models.registry import Architecture, get_architecture
from training.models.weights import backbone_with_weights, normalise_weights

log = logging.getLogger(__name__)

Kind = Literal["multilabel", "single"]
Mode = Literal["frozen", "finetune", "scratch"]
KINDS = ("multilabel", "single")
MODES = ("frozen", "finetune", "scratch")


def build_model(arch: str, outputs: list[str], kind: Kind, input_size: int | None = None,
                mode: Mode = "frozen", weights: str | None = "imagenet",
                dropout: float = 0.2, seed: int = 0) -> keras.Model:
    """A model taking uint8-valued ``(B, S, S, 3)`` images, one output per name in ``outputs``.

    ``kind``: "multilabel" (sigmoid per output) or "single" (softmax). ``mode``: "frozen"
    (only the head trains), "finetune" (built frozen; call :func:`unfreeze_backbone` for
    stage 2), "scratch" (random init, everything trains). ``weights``: "imagenet", None /
    "none", a backbone ``.weights.h5``/``.h5`` file, or a cxrlab model directory.
    """
    a = get_architecture(arch)
    size = _check_args(a, outputs, kind, input_size, mode)
    if mode == "scratch":
        if normalise_weights(weights) is not None:
            log.warning("mode 'scratch' trains from random init; ignoring weights=%r", weights)
        weights = None
    inp = keras.Input((size, size, 3), name=INPUT_NAME)
    x = BackbonePreprocess(a.preprocess_mode, name=PREPROCESS_NAME)(inp)
    backbone_out = backbone_with_weights(a, x, weights)
    x = keras.layers.GlobalAveragePooling2D(name=FEATURES_NAME)(backbone_out)
    x = keras.layers.Dropout(dropout, seed=seed, name=DROPOUT_NAME)(x)
    out = keras.layers.Dense(
        len(outputs), activation="sigmoid" if kind == "multilabel" else "softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        name=HEAD_NAME, dtype="float32")(x)  # float32 probabilities under mixed precision
    model = keras.Model(inp, out, name=f"cxr_{a.name}")
    set_backbone_trainable(model, mode == "scratch")
    return model


def _check_args(a: Architecture, outputs: list[str], kind: str,
                input_size: int | None, mode: str) -> int:
    """Validate the arguments; return the input size."""
    if kind not in KINDS:
        raise CXRError(f"unknown model kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if mode not in MODES:
        raise CXRError(f"unknown transfer mode {mode!r}; choose one of: {', '.join(MODES)}")
    if not outputs or len(set(outputs)) != len(outputs):
        raise CXRError(f"model outputs must be a non-empty list of distinct names, got {outputs!r}")
    if kind == "single" and len(outputs) < 2:
        raise CXRError(f"a single-label (softmax) model needs at least 2 outputs, got {outputs!r}")
    size = a.input_size if input_size is None else int(input_size)
    if size < a.min_input_size:
        raise CXRError(f"{a.name} needs an input size of at least {a.min_input_size} px, got {size}")
    return size


def set_backbone_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze or unfreeze every backbone layer (BatchNorm included). Recompile afterwards."""
    for layer in backbone_layers(model):
        layer.trainable = trainable


def unfreeze_backbone(model: keras.Model) -> None:
    """Fine-tuning stage 2: backbone trainable, but BatchNormalization stays frozen.

    Frozen BN layers run in inference mode (Keras fine-tuning advice): their ImageNet
    statistics are not wrecked by small, differently-distributed batches. Recompile afterwards.
    """
    for layer in backbone_layers(model):
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)


def split_feature_head(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(feature_model, head_model)``: image → pooled features, and features → output.

    ``head_model`` reuses the model's own dropout and dense layers, so training it on
    cached features trains the full model's head.
    """
    features = model.get_layer(FEATURES_NAME).output
    feature_model = keras.Model(model.inputs[0], features, name=f"{model.name}_features")
    feat_in = keras.Input(tuple(features.shape[1:]), name="features_in")
    x = model.get_layer(DROPOUT_NAME)(feat_in)
    head_model = keras.Model(feat_in, model.get_layer(HEAD_NAME)(x), name=f"{model.name}_head")
    return feature_model, head_model
