"""Evaluation figures as PNG files (matplotlib's Agg canvas; no display, no pyplot state)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

from training import io
from training.evaluation.estimate import Estimate
from training.evaluation.reliability import expected_calibration_error, reliability_curve


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return io.write_figure(path, fig, dpi=110, bbox_inches="tight")


def _curves(y_list, p_list, labels, kind: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, y, p) per curve, NaN labels dropped, curves needing two classes only."""
    out = []
    for label, y, p in zip(labels, y_list, p_list):
        y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
        known = ~np.isnan(y)
        y, p = y[known].astype(int), p[known]
        if (kind == "roc" and len(np.unique(y)) == 2) or (kind == "pr" and y.sum() > 0):
            out.append((label, y, p))
    return out


def _curve_figure(curves, kind: str, title: str, path: str | Path) -> Path:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    display = RocCurveDisplay if kind == "roc" else PrecisionRecallDisplay
    for label, y, p in curves:  # the display puts the AUC / AP in the legend
        display.from_predictions(y, p, ax=ax, name=label)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    if not curves:
        ax.text(0.5, 0.5, "not defined (needs both classes)", ha="center", va="center")
    ax.set_title(title)
    return _save(fig, path)


def plot_roc(Y: np.ndarray, P: np.ndarray, names: Sequence[str], path: str | Path,
             title: str = "ROC") -> Path:
    """ROC curve per output (one-vs-rest), AUC in the legend."""
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    curves = _curves(Y.T, P.T, names, "roc")
    return _curve_figure(curves, "roc", title, path)


def plot_pr(Y: np.ndarray, P: np.ndarray, names: Sequence[str], path: str | Path,
            title: str = "Precision-recall") -> Path:
    """Precision-recall curve per output, average precision in the legend."""
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    curves = _curves(Y.T, P.T, names, "pr")
    return _curve_figure(curves, "pr", title, path)


def plot_roc_overlay(models: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                     title: str = "ROC, all models") -> Path:
    """One ROC curve per model for the same output: ``{model: (y, p)}``."""
    curves = _curves([v[0] for v in models.values()], [v[1] for v in models.values()],
                     list(models), "roc")
    return _curve_figure(curves, "roc", title, path)


def operating_point(y: np.ndarray, positive: np.ndarray, kind: str) -> tuple[float, float] | None:
    """Where a model's decisions sit on its curve: ROC (FPR, TPR) or PR (recall, precision);
    None where undefined. From the decisions, not a threshold: any decision rule works."""
    y, d = np.asarray(y, dtype=np.float64), np.asarray(positive, dtype=bool)
    known = ~np.isnan(y)
    y, d = y[known] == 1, d[known]
    tp, fp = float((d & y).sum()), float((d & ~y).sum())
    pos, neg = float(y.sum()), float((~y).sum())
    if kind == "roc":
        return (fp / neg, tp / pos) if pos and neg else None
    return (tp / pos, tp / (tp + fp)) if pos and tp + fp else None


def plot_marked_curves(models: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                       kind: str, path: str | Path, title: str) -> Path:
    """One ROC (``kind`` "roc") or precision-recall ("pr") curve per model for the same output,
    each with its operating point marked: ``{model: (y, p, decisions or None)}``."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    display = RocCurveDisplay if kind == "roc" else PrecisionRecallDisplay
    curves = _curves([v[0] for v in models.values()], [v[1] for v in models.values()], list(models), kind)
    for label, y, p in curves:
        line = display.from_predictions(y, p, ax=ax, name=label).line_
        decisions = models[label][2]
        point = None if decisions is None else operating_point(models[label][0], decisions, kind)
        if point is not None:
            ax.plot(*point, marker="o", ms=9, mfc="white", mec=line.get_color(), mew=2.5,
                    ls="none", label=f"{label}: operating point")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    if curves:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "not defined (needs both classes)", ha="center", va="center")
    ax.set_title(title)
    return _save(fig, path)


def plot_reliability_panels(models: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                            title: str = "Reliability") -> Path:
    """One reliability diagram per model, side by side, same axes: ``{model: (y, p)}``."""
    n = max(1, len(models))
    fig = Figure(figsize=(3.2 * n, 3.6))
    for i, (name, (y, p)) in enumerate(models.items()):
        ax = fig.add_subplot(1, n, i + 1)
        c = reliability_curve(y, p)
        x, f = np.asarray(c["mean_predicted"], dtype=float), np.asarray(c["fraction_positive"], dtype=float)
        ok = np.isfinite(x) & np.isfinite(f)
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
        ax.plot(x[ok], f[ok], marker="o")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted",
               title=f"{name}\nECE {expected_calibration_error(y, p):.3f}")
        if i == 0:
            ax.set_ylabel("observed fraction positive")
    fig.suptitle(title)
    return _save(fig, path)


def plot_reliability(calibration: dict[str, dict[str, Any]], path: str | Path,
                     title: str = "Reliability") -> Path:
    """Observed positive fraction against mean prediction per bin, per output (ECE in legend).

    ``calibration``: ``{output: {"ece", "curve"}}`` (``calibration_report``, or one side of the
    evaluation's ``calibration``, whose ``ece`` is an Estimate JSON); entries without a curve
    (``macro``) are skipped.
    """
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1, label="perfect calibration")
    for name, cal in calibration.items():
        if not isinstance(cal, dict) or "curve" not in cal:
            continue
        c = cal["curve"]
        x, y = np.asarray(c["mean_predicted"], dtype=float), np.asarray(c["fraction_positive"], dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        ece = Estimate.of(cal.get("ece"))
        ax.plot(x[ok], y[ok], marker="o", label=f"{name} (ECE {ece.text})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability",
           ylabel="observed fraction positive", title=title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path,
                   title: str = "Confusion matrix") -> Path:
    """A confusion matrix (rows = truth, columns = prediction) with counts."""
    cm = np.asarray(cm)
    fig = Figure(figsize=(1.2 * len(labels) + 3, 1.2 * len(labels) + 2.5))
    ax = fig.add_subplot()
    ConfusionMatrixDisplay(cm, display_labels=list(labels)).plot(ax=ax, colorbar=False,
                                                                 xticks_rotation=30)
    ax.set_title(title)
    return _save(fig, path)
