"""The one post-training step: calibrate -> choose thresholds -> validation metrics.

Run on a model's RAW validation probabilities by the trainer (``engine.fit``), by
``evaluate`` when it refits (``--calibration`` other than ``card``, or thresholds re-chosen)
and by ``calibrate`` (``evaluation.recalibrate``), so the three give the same record on the
same data. The softmax cases are handled once, in :func:`thresholds.thresholded_outputs`
(two classes: the positive class's threshold; more: the argmax, no thresholds).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import keras
import numpy as np

from training.evaluation.calibration import Calibration, fit_calibration
from training.evaluation.metrics import compute_metrics
from training.evaluation.thresholds import MIN_PATIENTS, ThresholdRecord, choose_record
from training.models import losses


@dataclass(frozen=True)
class PostTraining:
    """What the step fitted: the calibration, the thresholds on its scale, validation metrics."""

    calibration: Calibration
    thresholds: ThresholdRecord
    metrics: dict[str, Any]  # compute_metrics on calibrated probabilities, + loss, n_images
    loss: float              # mean masked loss, calibrated probabilities
    loss_uncalibrated: float  # the same on the raw ones


def post_train(Y: np.ndarray, raw: np.ndarray, kind: str, outputs: Sequence[str],
               groups: Sequence | None, *, calibration: str | Calibration = "auto",
               threshold_method: str = "youden", target_sensitivity: float | None = None,
               min_patients: int = MIN_PATIENTS, seed: int = 0,
               fitted_on: str = "validation") -> PostTraining:
    """Calibrate ``raw`` (validation labels ``Y``, patient ids ``groups``), choose thresholds on
    the calibrated scale, compute validation metrics there.

    ``calibration``: a method of ``CHOICES["calibration"]`` fitted here, or a fitted
    :class:`Calibration` used as it is (``evaluate`` with the card's). Empty ``Y``: the
    identity, thresholds not estimable (no validation patients), no metrics.
    """
    Y = np.asarray(Y, dtype=np.float64).reshape(-1, len(outputs))
    raw = np.asarray(raw, dtype=np.float64).reshape(Y.shape)
    if isinstance(calibration, Calibration):
        cal = calibration
    elif len(Y) == 0:
        cal = Calibration.identity(kind, outputs, "no validation images: not calibrated")
    else:
        cal = fit_calibration(Y, raw, kind, outputs, calibration, seed, groups=groups)
    P = cal.apply(raw) if len(Y) else raw
    record = choose_record(Y, P, kind, outputs, None if groups is None else np.asarray(groups),
                           method=threshold_method, target_sensitivity=target_sensitivity,
                           min_patients=min_patients, calibration=cal.method, fitted_on=fitted_on)
    if len(Y) == 0:
        return PostTraining(cal, record, {}, float("nan"), float("nan"))
    # Metrics need a number per output: 0.5 stands in where no threshold is estimable (the
    # metrics' documented default); the card's record says those outputs have no decision.
    metrics = dict(compute_metrics(Y, P, kind, outputs, record.decided() or None))
    loss, before = mean_loss(kind, Y, P), mean_loss(kind, Y, raw)
    metrics.update(loss=loss, loss_uncalibrated=before, n_images=int(len(Y)))
    return PostTraining(cal, record, metrics, loss, before)


def mean_loss(kind: str, Y: np.ndarray, P: np.ndarray) -> float:
    """The training loss (masked: NaN labels ignored) of probabilities ``P``."""
    loss = losses.masked_binary_crossentropy if kind == "multilabel" else losses.masked_categorical_crossentropy
    p = keras.ops.convert_to_tensor(np.asarray(P, dtype=np.float32))
    y = keras.ops.convert_to_tensor(np.asarray(Y, dtype=np.float32))
    return float(keras.ops.convert_to_numpy(keras.ops.mean(loss(y, p))))
