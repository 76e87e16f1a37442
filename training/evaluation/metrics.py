"""Plain metric functions on arrays (scores + labels), then multi-output aggregates.

Conventions: ``y`` holds 1 / 0 / NaN (NaN = unknown, ignored per output); ``p`` holds scores
in [0, 1]. A metric that is undefined on the data (e.g. ROC-AUC with one class, precision
with no positive prediction) is NaN, never an exception. precision = PPV, recall =
sensitivity.

Two implementations of the same binary metrics live here on purpose: the scikit-learn one
(:func:`binary_metrics`) gives the point estimates; :func:`batched_binary` computes the same
numbers for a whole matrix of bootstrap sample weights at once (``(B, N)``), which is what
makes 1000 patient resamples cheap. Tests hold the two equal.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from training.evaluation.decision import decide

#: Scalar metrics of one binary output (all get bootstrap CIs).
METRIC_NAMES: tuple[str, ...] = (
    "precision", "recall", "specificity", "npv", "f1",
    "accuracy", "balanced_accuracy", "roc_auc", "pr_auc",
)


def _div(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """a / b with NaN where b == 0 (an undefined ratio, not an error)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _labelled(y: np.ndarray, p: np.ndarray, pred: np.ndarray | None = None):
    """Rows with a known label, as (int y, float p, int pred or None)."""
    y, p = np.asarray(y, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {p.shape}")
    known = ~np.isnan(y)
    pred = None if pred is None else np.asarray(pred).ravel()[known].astype(np.int64)
    return y[known].astype(np.int64), p[known], pred


def binary_metrics(y: Sequence[float], p: Sequence[float], threshold: float = 0.5,
                   pred: Sequence[int] | None = None) -> dict[str, Any]:
    """All binary metrics of one output; predictions are ``p >= threshold`` unless ``pred``.

    Returns the :data:`METRIC_NAMES` plus ``n``, ``n_pos``, ``n_neg``, ``tp``, ``fp``,
    ``tn``, ``fn``, ``confusion_matrix`` ``[[tn, fp], [fn, tp]]`` and ``threshold``.
    """
    y, p, pred = _labelled(y, p, pred)
    if pred is None:
        pred = (p >= threshold).astype(np.int64)
    if len(y) == 0:  # scikit-learn refuses empty input; every metric is undefined
        tn = fp = fn = tp = 0
    else:
        tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    n_pos, n_neg = tp + fn, tn + fp
    out: dict[str, Any] = {"n": len(y), "n_pos": n_pos, "n_neg": n_neg,
                           "tp": tp, "fp": fp, "tn": tn, "fn": fn,
                           "confusion_matrix": [[tn, fp], [fn, tp]],
                           "threshold": None if threshold is None else float(threshold)}
    if len(y) == 0:
        return {**out, **{m: float("nan") for m in METRIC_NAMES}}
    prec, rec, f1, _ = precision_recall_fscore_support(
        y, pred, labels=[1], average=None, zero_division=np.nan)
    spec, npv = float(_div(tn, n_neg)), float(_div(tn, tn + fn))
    out.update(precision=float(prec[0]), recall=float(rec[0]), specificity=spec, npv=npv,
               f1=float(f1[0]), accuracy=float(accuracy_score(y, pred)),
               # (sens + spec) / 2: NaN with one class (sklearn would quietly return one recall)
               balanced_accuracy=float((rec[0] + spec) / 2))
    both = n_pos > 0 and n_neg > 0
    out["roc_auc"] = float(roc_auc_score(y, p)) if both else float("nan")
    out["pr_auc"] = float(average_precision_score(y, p)) if n_pos > 0 else float("nan")
    return out


def _nanmean(values: list[float]) -> float:
    vals = np.asarray(values, dtype=np.float64)
    return float(vals[np.isfinite(vals)].mean()) if np.isfinite(vals).any() else float("nan")


def _macro(per_output: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Unweighted mean over outputs of each metric, over the outputs where it is defined."""
    return {m: _nanmean([d[m] for d in per_output.values()]) for m in METRIC_NAMES}


def _as_2d(Y: np.ndarray, P: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    if Y.ndim != 2 or Y.shape != P.shape or Y.shape[1] != len(names):
        raise ValueError(f"labels {Y.shape} and scores {P.shape} must both be (N, {len(names)})")
    return Y, P


def thresholds_array(thresholds: float | Sequence[float] | dict[str, float] | None,
                     names: Sequence[str]) -> np.ndarray:
    """Per-output thresholds from a scalar, a sequence or a ``{name: value}`` dict (0.5 default)."""
    if thresholds is None:
        return np.full(len(names), 0.5)
    if isinstance(thresholds, dict):
        return np.array([float(thresholds.get(n, 0.5)) for n in names])
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(names),))
    return t.copy()


def predictions(P: np.ndarray, kind: str, thresholds: Any, names: Sequence[str]) -> np.ndarray:
    """0/1 predictions ``(N, C)`` by the one decision rule (:func:`decision.decide`): scores
    over their thresholds, or one class per row (single); 0.5 where no threshold is given."""
    given = None if thresholds is None else dict(zip(names, thresholds_array(thresholds, names)))
    return decide(P, kind, given, names, missing=0.5).astype(np.int64)


def multilabel_metrics(Y: np.ndarray, P: np.ndarray, thresholds: Any, names: Sequence[str],
                       pred: np.ndarray | None = None) -> dict[str, Any]:
    """Per-output binary metrics (own threshold each, NaN labels ignored) + macro and micro.

    micro pools every labelled (row, output) pair into one binary problem. ``pred`` (0/1,
    ``(N, C)``) replaces the thresholded scores when given.
    """
    Y, P = _as_2d(Y, P, names)
    t = thresholds_array(thresholds, names)
    if pred is None:
        pred = predictions(P, "multilabel", t, names)
    per = {n: binary_metrics(Y[:, j], P[:, j], t[j], pred=pred[:, j]) for j, n in enumerate(names)}
    micro = binary_metrics(Y.ravel(), P.ravel(), None, pred=pred.ravel())
    return {"kind": "multilabel", "outputs": list(names), "per_output": per,
            "macro": _macro(per), "micro": micro}


def multiclass_metrics(Y_onehot: np.ndarray, P: np.ndarray, names: Sequence[str],
                       thresholds: Any = None) -> dict[str, Any]:
    """Softmax outputs: per-class one-vs-rest metrics, macro, micro, KxK confusion matrix.

    The predicted class is the argmax, or for two classes the positive class's threshold
    (:func:`predictions`: the one decision rule). Rows whose label is unknown (any NaN) are ignored.
    """
    Y, P = _as_2d(Y_onehot, P, names)
    known = ~np.isnan(Y).any(axis=1)
    Y, P = Y[known], P[known]
    k = len(names)
    onehot_pred = predictions(P, "single", thresholds, names)
    true, pred = Y.argmax(axis=1), onehot_pred.argmax(axis=1)
    per = {n: binary_metrics(Y[:, j], P[:, j], None, pred=onehot_pred[:, j])
           for j, n in enumerate(names)}
    micro = binary_metrics(Y.ravel(), P.ravel(), None, pred=onehot_pred.ravel())
    with warnings.catch_warnings():  # a class never seen in y_true is reported, not warned
        warnings.simplefilter("ignore")
        bal = float(balanced_accuracy_score(true, pred)) if len(true) else float("nan")
    return {"kind": "single", "outputs": list(names), "per_output": per,
            "macro": _macro(per), "micro": micro, "n": int(len(true)),
            "accuracy": float(accuracy_score(true, pred)) if len(true) else float("nan"),
            "balanced_accuracy": bal,
            "confusion_matrix": confusion_matrix(true, pred, labels=list(range(k))).tolist()}


def compute_metrics(Y: np.ndarray, P: np.ndarray, kind: str, names: Sequence[str],
                    thresholds: Any = None, pred: np.ndarray | None = None) -> dict[str, Any]:
    """:func:`multilabel_metrics` or :func:`multiclass_metrics` by the card's ``kind``."""
    if kind == "multilabel":
        return multilabel_metrics(Y, P, thresholds, names, pred)
    if kind == "single":
        return multiclass_metrics(Y, P, names, thresholds)
    raise ValueError(f"kind must be 'multilabel' or 'single', got {kind!r}")


def negative_class(m: dict[str, Any]) -> dict[str, Any]:
    """The binary metrics of an output seen from its negative class (e.g. "COVID-19 negative").

    precision <-> NPV and recall <-> specificity swap; ROC-AUC is unchanged; PR-AUC needs the
    scores and is left NaN here (use :func:`binary_metrics` on ``1 - y, 1 - p`` for it).
    """
    out = dict(m)
    out.update(precision=m["npv"], npv=m["precision"], recall=m["specificity"],
               specificity=m["recall"], n_pos=m["n_neg"], n_neg=m["n_pos"],
               tp=m["tn"], tn=m["tp"], fp=m["fn"], fn=m["fp"],
               f1=float(_div(2 * m["tn"], 2 * m["tn"] + m["fn"] + m["fp"])),
               confusion_matrix=[[m["tp"], m["fn"]], [m["fp"], m["tn"]]], pr_auc=float("nan"))
    return out


# ------------------------------------------------------------------ batched (bootstrap) versions

def _auc_batched(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ROC-AUC and average precision for every row of ``w`` (B, N) at once.

    ROC-AUC is the weighted Mann-Whitney statistic (ties count one half), which equals the
    trapezoidal area scikit-learn computes; AP is ``sum_k (R_k - R_{k-1}) P_k`` over the
    distinct thresholds, as in ``average_precision_score``.
    """
    order = np.argsort(-p, kind="mergesort")  # descending scores
    ps, ys, ws = p[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # one group per distinct score
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * (1 - ys), starts, axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    neg_below = n_neg[:, None] - np.cumsum(neg, axis=1)  # negatives with a strictly lower score
    auc = _div((pos * (neg_below + 0.5 * neg)).sum(axis=1), n_pos * n_neg)
    tps, fps = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = np.nan_to_num(_div(tps, tps + fps))  # 0/0 only where the recall step is 0
    ap = _div((pos * precision).sum(axis=1), n_pos)
    return auc, ap


def batched_binary(y: np.ndarray, p: np.ndarray, pred: np.ndarray,
                   w: np.ndarray) -> dict[str, np.ndarray]:
    """:data:`METRIC_NAMES` of one labelled output for each weight row of ``w`` (B, N).

    ``y`` (0/1), ``p`` and ``pred`` (0/1) are 1-D without NaN; integer weights = bootstrap
    multiplicities. Returns ``{metric: (B,) array}`` with NaN where undefined.
    """
    y, pred = y.astype(np.float64), pred.astype(np.float64)
    tp, fp = w @ (y * pred), w @ ((1 - y) * pred)
    fn, tn = w @ (y * (1 - pred)), w @ ((1 - y) * (1 - pred))
    recall, spec = _div(tp, tp + fn), _div(tn, tn + fp)
    auc, ap = _auc_batched(y, p, w) if len(y) else (np.full(len(w), np.nan),) * 2
    return {"precision": _div(tp, tp + fp), "recall": recall, "specificity": spec,
            "npv": _div(tn, tn + fn), "f1": _div(2 * tp, 2 * tp + fp + fn),
            "accuracy": _div(tp + tn, tp + tn + fp + fn), "balanced_accuracy": (recall + spec) / 2,
            "roc_auc": auc, "pr_auc": ap}


def _nanmean_rows(arrays: list[np.ndarray]) -> np.ndarray:
    """Element-wise mean over the arrays where finite (NaN where none is)."""
    stack = np.stack(arrays)
    finite = np.isfinite(stack)
    return _div(np.where(finite, stack, 0).sum(axis=0), finite.sum(axis=0))


def _macro_batched(per: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {m: _nanmean_rows([d[m] for d in per.values()]) for m in METRIC_NAMES}


def batched_metrics(Y: np.ndarray, P: np.ndarray, kind: str, names: Sequence[str],
                    thresholds: Any, w: np.ndarray, pred: np.ndarray | None = None) -> dict[str, Any]:
    """The scalar metrics of :func:`compute_metrics` for each weight row of ``w`` (B, N).

    Same nesting: ``per_output``/``macro``/``micro`` (and ``accuracy``, ``balanced_accuracy``
    for ``single``), each leaf a (B,) array. ``pred`` as in :func:`multilabel_metrics`.
    """
    Y, P = _as_2d(Y, P, names)
    if kind == "single":
        known = ~np.isnan(Y).any(axis=1)
        Y, P, w = Y[known], P[known], w[:, known]
    if pred is None or kind == "single":
        pred = predictions(P, kind, thresholds, names)
    per, ys, ps, preds, ws = {}, [], [], [], []
    for j, n in enumerate(names):
        mask = ~np.isnan(Y[:, j])
        args = (Y[mask, j], P[mask, j], pred[mask, j], w[:, mask])
        per[n] = batched_binary(*args)
        for acc, a in zip((ys, ps, preds, ws), args):
            acc.append(a)
    micro = batched_binary(np.concatenate(ys), np.concatenate(ps), np.concatenate(preds),
                           np.concatenate(ws, axis=1))
    out: dict[str, Any] = {"per_output": per, "macro": _macro_batched(per), "micro": micro}
    if kind == "single":
        out["accuracy"] = micro["recall"]  # single-label: pooled recall = accuracy
        out["balanced_accuracy"] = _nanmean_rows([per[n]["recall"] for n in names])
    return out
