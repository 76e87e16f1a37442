"""Losses and metrics that ignore unknown labels (NaN targets), written with ``keras.ops``.

NaN in ``y_true`` means "not labelled for this output": zero weight, never a negative.
Per-sample values are scaled so that Keras' batch mean equals the mean over the batch's
*known* entries; a batch with no known entry gives 0, not NaN.
"""
from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-7


def _prepare(y_true, y_pred):
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    known = ops.logical_not(ops.isnan(y_true))
    return ops.where(known, y_true, 0.0), y_pred, ops.cast(known, "float32")


def _per_sample(total_per_row, n_known_total, n_rows):
    """Scale row sums so that their mean over rows is sum / number of known items."""
    return total_per_row * (ops.cast(n_rows, "float32") / ops.maximum(n_known_total, 1.0))


@keras.saving.register_keras_serializable(package="cxrlab")
def masked_binary_crossentropy(y_true, y_pred):
    """Binary crossentropy over the entries where ``y_true`` is not NaN; shape ``(B,)``."""
    y, p, w = _prepare(y_true, y_pred)
    p = ops.clip(p, EPSILON, 1.0 - EPSILON)
    bce = -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))
    return _per_sample(ops.sum(bce * w, axis=-1), ops.sum(w), ops.shape(w)[0])


#: the name used in docs/architecture.md
masked_bce = masked_binary_crossentropy


@keras.saving.register_keras_serializable(package="cxrlab")
def masked_categorical_crossentropy(y_true, y_pred):
    """Categorical crossentropy; rows with any NaN target get zero weight; shape ``(B,)``."""
    y, p, w = _prepare(y_true, y_pred)
    row_known = ops.min(w, axis=-1)
    cce = -ops.sum(y * ops.log(ops.clip(p, EPSILON, 1.0)), axis=-1)
    return _per_sample(cce * row_known, ops.sum(row_known), ops.shape(w)[0])


@keras.saving.register_keras_serializable(package="cxrlab")
def masked_binary_accuracy(y_true, y_pred, threshold: float = 0.5):
    """Fraction of known entries where ``y_pred > threshold`` matches ``y_true``; shape ``(B,)``.

    Exact within a batch; across batches Keras' mean weights each batch by its size.
    """
    y, p, w = _prepare(y_true, y_pred)
    correct = ops.cast(ops.equal(ops.cast(p > threshold, "float32"), y), "float32")
    return _per_sample(ops.sum(correct * w, axis=-1), ops.sum(w), ops.shape(w)[0])


@keras.saving.register_keras_serializable(package="cxrlab")
class MaskedAUC(keras.metrics.AUC):
    """``keras.metrics.AUC`` that ignores NaN targets (zero sample weight per entry).

    Use ``multi_label=True, num_labels=K`` for one AUC per output averaged (macro).
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        y, p, w = _prepare(y_true, y_pred)
        if sample_weight is not None:
            w = w * ops.cast(ops.reshape(sample_weight, (-1, 1)), "float32")
        return super().update_state(y, p, sample_weight=w)
