"""The one training loop: compile a model and fit it on :class:`ArrayBatches`.

Every training in cxrlab goes through :func:`fit_batches`: the config-driven trainer
(:mod:`training.engine.fit`: stages, backups, best-on-validation), the self-training rounds
(:mod:`training.semi.pseudo_label`) and the fusion heads (:mod:`training.clinical.fusion`).
It owns what they must all do the same way: batch order and random state as functions of
``(seed, epoch)`` (:class:`EpochSync`), ``tf.data`` without the autotune stall
(:func:`keras_input`), the XLA policy (:func:`use_jit`) and the masked losses (NaN = unknown).
"""
from __future__ import annotations

from typing import Any, Sequence

import keras

from training.engine.callbacks import EpochSync
from training.engine.data import ArrayBatches, keras_input
from training.engine.device import gpus_visible
from training.models import losses


def use_jit(setting: str) -> bool:
    """Whether to XLA-compile the train step (``TrainConfig.jit_compile``: auto | on | off).

    ``auto`` is on for JAX and GPUs, off for TensorFlow on a CPU, where XLA halved a plain
    ResNet50 ``fit`` (BENCHMARKS.md).
    """
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"jit_compile must be auto, on or off, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    return keras.backend.backend() == "jax" or gpus_visible()


def loss_for(kind: str):
    """The masked loss of a task kind (``single``: softmax, ``multilabel``: sigmoid)."""
    if kind not in ("single", "multilabel"):
        raise ValueError(f"kind must be 'single' or 'multilabel', got {kind!r}")
    return losses.masked_binary_crossentropy if kind == "multilabel" else losses.masked_categorical_crossentropy


def accuracy_metric(kind: str) -> keras.metrics.Metric:
    """Accuracy over known labels, named ``accuracy`` in the logs."""
    if kind == "single":
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.MeanMetricWrapper(losses.masked_binary_accuracy, name="accuracy")


def fit_batches(model: keras.Model, train: ArrayBatches, *, kind: str,
                optimizer: keras.optimizers.Optimizer, epochs: int, val: ArrayBatches | None = None,
                initial_epoch: int = 0, callbacks: Sequence[keras.callbacks.Callback] = (),
                metrics: bool = False, jit_compile: str = "auto", verbose: int = 0) -> dict[str, list[float]]:
    """Compile ``model`` (masked loss of ``kind``) and fit it on ``train``; return the history.

    An :class:`EpochSync` over ``train`` and ``model`` is added unless ``callbacks`` has one.
    ``metrics`` adds the accuracy over known labels. Validation is skipped when ``val`` is
    None or has no usable row.
    """
    model.compile(optimizer=optimizer, loss=loss_for(kind),
                  metrics=[accuracy_metric(kind)] if metrics else None, jit_compile=use_jit(jit_compile))
    cbs: list[Any] = list(callbacks)
    if not any(isinstance(c, EpochSync) for c in cbs):
        cbs.insert(0, EpochSync([train], [model]))
    history = model.fit(keras_input(train),
                        validation_data=keras_input(val) if val is not None and val.n_rows else None,
                        shuffle=False,  # the batches are shuffled by (seed, epoch) already
                        epochs=epochs, initial_epoch=initial_epoch, callbacks=cbs, verbose=verbose)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}
