"""BatchNorm statistics that match what training optimised.

Keras's ``BatchNormalization`` keeps an exponential moving average of the batch statistics
with momentum 0.99, so after a few hundred steps from scratch the moving mean/variance are
still mostly their initial values (0 and 1) and inference-mode outputs no longer match the
train-mode outputs the weights were fitted to (keras-team/keras #7177, #10666): from-scratch
models came out inverted. Two remedies, both from "Rethinking 'Batch' in BatchNorm" (Wu &
Johnson, arXiv 2105.07576):

* a momentum suited to short runs while training (:func:`set_momentum`; 0.9, PyTorch's 0.1);
* **precise BN** after training (:func:`precise_bn`): with the weights fixed, run training
  images (no augmentation) through the model in training mode and set every trainable BN
  layer's moving statistics to the plain average of the batch statistics.

:func:`mode_losses` measures the result: the loss on the same images with batch statistics
(train mode) and with the moving statistics (inference mode); :func:`health` turns the two
into the card's health figure and a warning when they disagree.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Iterator

import numpy as np
import keras

from training.engine.forward import compiled_call

log = logging.getLogger(__name__)

#: precise BN averages the statistics of at most this many training images
PRECISE_BN_IMAGES = 2048


def trainable_bn_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of ``model`` (nested too) that updates its statistics."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def set_momentum(model: keras.Model, momentum: float) -> int:
    """Set the moving-average momentum of every trainable BN layer; returns how many."""
    layers = trainable_bn_layers(model)
    for layer in layers:
        layer.momentum = float(momentum)
    return len(layers)


def _batch_indices(n_rows: int, batch_size: int, limit: int, seed: int) -> Iterator[np.ndarray]:
    """Full batches of row indices from a seeded random subset of at most ``limit`` rows
    (a partial last batch is dropped: its statistics are noisier than the others')."""
    n = min(n_rows, int(limit))
    order = np.random.default_rng(seed).permutation(n_rows)[:n]
    step = min(int(batch_size), n)
    for start in range(0, n - step + 1, step):
        yield np.sort(order[start:start + step])


def precise_bn(model: keras.Model, images: np.ndarray, batch_size: int,
               limit: int = PRECISE_BN_IMAGES, seed: int = 0) -> dict[str, Any]:
    """Recompute the moving statistics of ``model``'s trainable BN layers on ``images``.

    The weights are not changed (no gradient step; dropout only affects the head, after every
    BN layer). With momentum 0 each training-mode call leaves one batch's statistics in the
    moving variables; they are summed here, and each moving statistic becomes the equal-weight
    mean over the batches (one compiled call per batch: :mod:`training.engine.forward`).
    Returns what was done.
    """
    layers = trainable_bn_layers(model)
    if not layers or len(images) == 0:
        return {"layers": 0, "images": 0}
    saved = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape, np.float64), np.zeros(layer.moving_variance.shape, np.float64)]
            for layer in layers]
    used = batches = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # moving = batch statistics, read after every call
        call = compiled_call(model, training=True)
        for idx in _batch_indices(len(images), batch_size, limit, seed):
            x = np.asarray(images[idx])
            call(x)
            for layer, acc in zip(layers, sums):
                acc[0] += keras.ops.convert_to_numpy(layer.moving_mean)
                acc[1] += keras.ops.convert_to_numpy(layer.moving_variance)
            used, batches = used + len(x), batches + 1
        for layer, (mean, var) in zip(layers, sums):
            layer.moving_mean.assign(mean / batches)
            layer.moving_variance.assign(var / batches)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    log.info("precise BN: statistics of %d BN layers recomputed on %d training images", len(layers), used)
    return {"layers": len(layers), "images": used}


class _Frozen:
    """Within the block: BN layers keep their statistics and dropout is off, in any mode."""

    def __init__(self, model: keras.Model):
        self.bn = trainable_bn_layers(model)
        self.dropout = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
                        if isinstance(layer, keras.layers.Dropout)]

    def __enter__(self) -> None:
        self.saved = ([layer.momentum for layer in self.bn], [layer.rate for layer in self.dropout])
        for layer in self.bn:
            layer.momentum = 1.0  # moving = moving * 1 + batch * 0
        for layer in self.dropout:
            layer.rate = 0.0

    def __exit__(self, *exc: Any) -> None:
        for layer, momentum in zip(self.bn, self.saved[0]):
            layer.momentum = momentum
        for layer, rate in zip(self.dropout, self.saved[1]):
            layer.rate = rate


def mode_losses(model: keras.Model, images: np.ndarray, targets: np.ndarray,
                loss: Callable, batch_size: int, limit: int = PRECISE_BN_IMAGES,
                seed: int = 0) -> dict[str, float]:
    """Mean loss on ``images`` with batch statistics (train mode) and moving ones (inference).

    Batches are drawn in a seeded random order, as in training: a batch of one class (data
    sets are often stored class by class) has other statistics than the mixed batches the
    weights were trained on. Neither mode changes the model. Rows of ``targets`` that are all
    NaN are skipped by ``loss``.
    """
    totals = {"train_mode": 0.0, "inference_mode": 0.0}
    batches = 0
    targets = np.asarray(targets, np.float32)
    with _Frozen(model):  # the calls are traced inside: they keep its momentum and dropout
        calls = {"train_mode": compiled_call(model, training=True),
                 "inference_mode": compiled_call(model, training=False)}
        for idx in _batch_indices(len(images), batch_size, limit, seed):
            x, y = np.asarray(images[idx]), targets[idx]
            for name, call in calls.items():
                p = call(x)
                totals[name] += float(keras.ops.convert_to_numpy(keras.ops.mean(loss(y, p))))
            batches += 1
    return {k: v / max(batches, 1) for k, v in totals.items()}


def health(losses: dict[str, float], tolerance: float = 0.25) -> dict[str, Any]:
    """The card's BN health figure; ``ok`` is False when the two losses disagree.

    Disagreement: the inference-mode loss is more than ``tolerance`` (relative) and 0.05
    (absolute) away from the train-mode loss.
    """
    train, infer = losses["train_mode"], losses["inference_mode"]
    gap = abs(infer - train)
    ok = bool(gap <= max(0.05, tolerance * train))
    return {"val_loss_train_mode": round(train, 4), "val_loss_inference_mode": round(infer, 4),
            "ok": ok}


def settle(model: keras.Model, train_images: np.ndarray, val_images: np.ndarray,
           val_targets: np.ndarray, loss: Callable, batch_size: int, seed: int = 0,
           precise: bool = True) -> dict[str, Any]:
    """After training: precise BN on the training images, then the health figure on validation.

    Returns the card's ``batchnorm`` entry; warns (log and stderr) when the inference-mode
    validation loss disagrees with the train-mode one. Models without trainable BN layers
    (frozen backbones, VGG16) get ``{"layers": 0}``.
    """
    layers = trainable_bn_layers(model)
    if not layers:
        return {"layers": 0}
    out: dict[str, Any] = {"layers": len(layers), "momentum": layers[0].momentum}
    if precise:
        out["precise_bn_images"] = precise_bn(model, train_images, batch_size, seed=seed)["images"]
    if len(val_images):
        out |= health(mode_losses(model, val_images, val_targets, loss, batch_size))
        if not out["ok"]:
            msg = (f"BatchNorm: validation loss in inference mode ({out['val_loss_inference_mode']}) "
                   f"disagrees with train mode ({out['val_loss_train_mode']}); the moving statistics "
                   "do not match what training optimised. What to do: keep precise BN on "
                   "(--precise-bn), train longer, or use a larger batch.")
            log.warning(msg)
            print(f"WARNING: {msg}", file=sys.stderr)
    return out
