"""Decision thresholds chosen on validation scores (then applied, unchanged, to the test set)."""
from __future__ import annotations

import logging
import warnings
from typing import Sequence

import numpy as np
from sklearn.metrics import roc_curve

from training.config import CHOICES

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = CHOICES["threshold_method"]
DEFAULT = 0.5


def choose_threshold(y_true: Sequence[float], scores: Sequence[float], method: str = "youden",
                     target_sensitivity: float | None = None) -> float:
    """A threshold (predict positive when ``score >= threshold``) from labelled scores.

    ``youden``: maximises Youden's J = sensitivity + specificity - 1 on the ROC curve (ties:
    the highest threshold). ``sensitivity``: the highest threshold whose sensitivity reaches
    ``target_sensitivity`` (giving ``target_sensitivity`` implies this method). ``fixed``:
    0.5. NaN labels are ignored; with no labels or a single class the result is 0.5 with a
    warning (a threshold cannot be learned from one class).
    """
    if target_sensitivity is not None:
        if not 0 < target_sensitivity <= 1:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
        method = "sensitivity"
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {list(METHODS)}")
    if method == "sensitivity" and target_sensitivity is None:
        raise ValueError("method 'sensitivity' needs target_sensitivity (e.g. 0.9)")
    if method == "fixed":
        return DEFAULT
    y, s = np.asarray(y_true, dtype=np.float64).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    known = ~np.isnan(y)
    y, s = y[known], s[known]
    if len(np.unique(y)) < 2:
        msg = (f"cannot choose a {method} threshold from {len(y)} labelled scores with "
               f"{len(np.unique(y))} class(es); using {DEFAULT}")
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
        return DEFAULT
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    # thr[0] is +inf (nothing predicted positive): never a useful operating point.
    fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]
    if method == "youden":
        return float(thr[int(np.argmax(tpr - fpr))])
    return float(thr[int(np.argmax(tpr >= target_sensitivity - 1e-12))])


def choose_thresholds(Y: np.ndarray, P: np.ndarray, outputs: Sequence[str],
                      columns: Sequence[str] | None = None, method: str = "youden",
                      target_sensitivity: float | None = None) -> tuple[dict[str, float], list[str]]:
    """``({output: threshold}, outputs that fell back to 0.5)`` for ``columns`` (default all).

    The one place thresholds are chosen (training's validation report and ``evaluate``):
    :func:`choose_threshold` on each output's labelled rows; an output whose validation rows
    hold fewer than two classes gets 0.5 and is listed.
    """
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    values, fallback = {}, []
    for name in (outputs if columns is None else columns):
        j = list(outputs).index(name)
        known = ~np.isnan(Y[:, j])
        if len(np.unique(Y[known, j])) < 2:
            values[name] = DEFAULT
            fallback.append(name)
            continue
        values[name] = choose_threshold(Y[known, j], P[known, j], method, target_sensitivity)
    return values, fallback
