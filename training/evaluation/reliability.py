"""Measuring calibration: reliability curves and ECE, plain and with patient-bootstrap CIs.

Plain functions first (:func:`reliability_curve`, :func:`expected_calibration_error`); the
bootstrap metric :class:`ECE` and :func:`ece_with_ci` wrap them; :func:`calibration_section`
is what an evaluation report stores. Fitting calibration maps is :mod:`.calibration`'s job.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from training.evaluation.bootstrap import bootstrap_ci
from training.evaluation.estimate import Estimate


def reliability_curve(y: Sequence[float], p: Sequence[float], n_bins: int = 10) -> dict[str, Any]:
    """Per bin of predicted probability: count, mean prediction, observed positive fraction.

    Bins are ``[0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]``; NaN labels are ignored; empty bins
    have NaN means. Returns lists (JSON-able): ``edges``, ``count``, ``mean_predicted``,
    ``fraction_positive``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y, p = np.asarray(y, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    known = ~np.isnan(y)
    y, p = y[known], p[known]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = _bins(p, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac = np.bincount(idx, weights=y, minlength=n_bins) / count
    return {"edges": edges.tolist(), "count": count.astype(int).tolist(),
            "mean_predicted": mean_p.tolist(), "fraction_positive": frac.tolist()}


def _bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)


def expected_calibration_error(y: Sequence[float], p: Sequence[float], n_bins: int = 10) -> float:
    """ECE = sum over bins of (bin share) * |observed fraction - mean prediction|; NaN if no labels."""
    curve = reliability_curve(y, p, n_bins)
    count = np.asarray(curve["count"], dtype=np.float64)
    if count.sum() == 0:
        return float("nan")
    gap = np.abs(np.asarray(curve["fraction_positive"]) - np.asarray(curve["mean_predicted"]))
    return float(np.nansum(count * gap) / count.sum())


def calibration_report(Y: np.ndarray, P: np.ndarray, names: Sequence[str],
                       n_bins: int = 10) -> dict[str, dict[str, Any]]:
    """``{output: {"ece": ..., "curve": reliability_curve}}`` per output (one-vs-rest)."""
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    return {n: {"ece": expected_calibration_error(Y[:, j], P[:, j], n_bins),
                "curve": reliability_curve(Y[:, j], P[:, j], n_bins)}
            for j, n in enumerate(names)}


@dataclass(frozen=True)
class ECE:
    """ECE as a bootstrap metric: 1-D ``y``/``p`` one output, 2-D the macro mean over outputs.

    ``batched`` evaluates a whole ``(B, N)`` matrix of resample weights at once (with equal-width
    bins, ECE = sum over bins of |sum of labels - sum of predictions| / n).
    """

    n_bins: int = 10

    def __call__(self, y: np.ndarray, p: np.ndarray) -> float:
        y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
        if y.ndim == 1:
            return expected_calibration_error(y, p, self.n_bins)
        return macro_mean([expected_calibration_error(y[:, j], p[:, j], self.n_bins)
                         for j in range(y.shape[1])])

    def batched(self, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
        y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
        if y.ndim == 1:
            return self._batched_one(y, p, w)
        per = np.stack([self._batched_one(y[:, j], p[:, j], w) for j in range(y.shape[1])])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no labels: NaN
            return np.nanmean(per, axis=0)

    def _batched_one(self, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
        known = ~np.isnan(y)
        onehot = np.zeros((len(y), self.n_bins))
        onehot[np.flatnonzero(known), _bins(p[known], self.n_bins)] = 1.0
        n = w @ onehot.sum(axis=1)
        gap = np.abs(w @ (onehot * np.where(known, y, 0.0)[:, None])
                     - w @ (onehot * np.where(known, p, 0.0)[:, None])).sum(axis=1)
        return np.where(n > 0, gap / np.where(n > 0, n, 1.0), np.nan)


def macro_mean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values (NaN if none): a macro average over outputs."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def ece_with_ci(Y: np.ndarray, P: np.ndarray, outputs: Sequence[str], groups: Sequence | None = None,
                n_boot: int = 1000, seed: int = 0, n_bins: int = 10,
                alpha: float = 0.05) -> dict[str, Estimate]:
    """ECE per output and ``"macro"`` with patient-bootstrap ``1 - alpha`` CIs (``groups``: patients).

    ECE's bootstrap distribution lies above the point estimate (resampling adds noise, and
    |noise| > 0), so a well-calibrated output's percentile interval can miss its own small point
    estimate: the interval is then widened to include it (it never shrinks).
    """
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    metric = ECE(n_bins)
    out = {o: bootstrap_ci(metric, Y[:, j], P[:, j], groups, n_boot, alpha, seed)
           for j, o in enumerate(outputs)}
    out["macro"] = bootstrap_ci(metric, Y, P, groups, n_boot, alpha, seed)
    return {k: _including_point(e) for k, e in out.items()}


def _including_point(e: Estimate) -> Estimate:
    if e.value is None or math.isnan(e.value) or e.low is None or math.isnan(e.low):
        return e
    return Estimate(e.value, min(e.low, e.value), max(e.high, e.value), e.n_used)


def calibration_section(Y: np.ndarray, P: np.ndarray, outputs: Sequence[str],
                        groups: Sequence | None = None, n_boot: int = 1000, seed: int = 0,
                        n_bins: int = 10) -> dict[str, Any]:
    """``{output: {"ece": Estimate JSON, "curve": reliability_curve}, "macro": {"ece": ...}}``."""
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    eces = ece_with_ci(Y, P, outputs, groups, n_boot, seed, n_bins)
    out: dict[str, Any] = {o: {"ece": eces[o].to_json(), "curve": reliability_curve(Y[:, j], P[:, j], n_bins)}
                           for j, o in enumerate(outputs)}
    out["macro"] = {"ece": eces["macro"].to_json()}
    return out
