"""Calibration: expected calibration error and reliability-diagram data (equal-width bins)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


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
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac = np.bincount(idx, weights=y, minlength=n_bins) / count
    return {"edges": edges.tolist(), "count": count.astype(int).tolist(),
            "mean_predicted": mean_p.tolist(), "fraction_positive": frac.tolist()}


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
