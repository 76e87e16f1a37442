"""Bootstrap confidence intervals that resample patients, not images.

Images of one patient are correlated; resampling images as if independent gives CIs that
are too narrow. Every function here draws **groups (patients) with replacement** and keeps
all images of a drawn patient together (``groups=None`` resamples single images).

A resample is a vector of row weights (how many times each row was drawn), so many resamples
form a ``(B, N)`` matrix and the metrics in :mod:`training.evaluation.metrics` evaluate them
all at once. Resamples where a metric is undefined (e.g. no positive drawn) are skipped and
their number is reported (``n_used``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from training.evaluation import metrics as M
from training.evaluation.estimate import Estimate

log = logging.getLogger(__name__)

#: Upper bound on the cells of one weight matrix chunk (memory: 8 bytes each).
_MAX_CELLS = 4_000_000


@dataclass(frozen=True)
class ScalarMetric:
    """A named metric of :data:`metrics.METRIC_NAMES` usable by the bootstrap (vectorised).

    1-D ``y``/``p``: the binary metric at ``threshold``. 2-D: the macro average over outputs
    (``kind`` "multilabel": per-output thresholds; "single": argmax), NaN labels ignored.
    """

    name: str
    threshold: Any = 0.5
    kind: str = "multilabel"

    def __post_init__(self) -> None:
        if self.name not in M.METRIC_NAMES:
            raise ValueError(f"unknown metric {self.name!r}; choose one of {list(M.METRIC_NAMES)}")

    def __call__(self, y: np.ndarray, p: np.ndarray) -> float:
        y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
        if y.ndim == 1:
            return M.binary_metrics(y, p, self.threshold)[self.name]
        names = [str(j) for j in range(y.shape[1])]
        return M.compute_metrics(y, p, self.kind, names, self.threshold)["macro"][self.name]

    def batched(self, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
        y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
        if y.ndim == 1:
            y2, p2 = y[:, None], p[:, None]
            return M.batched_metrics(y2, p2, "multilabel", ["0"], self.threshold, w)["macro"][self.name]
        names = [str(j) for j in range(y.shape[1])]
        return M.batched_metrics(y, p, self.kind, names, self.threshold, w)["macro"][self.name]


MetricFn = str | ScalarMetric | Callable[[np.ndarray, np.ndarray], float]


def as_metric(metric_fn: MetricFn) -> Callable:
    """A metric name becomes a :class:`ScalarMetric`; callables pass through."""
    return ScalarMetric(metric_fn) if isinstance(metric_fn, str) else metric_fn


def resample_weights(groups: Sequence | None, n_rows: int, n_boot: int,
                     seed: int = 0) -> Iterator[np.ndarray]:
    """Chunks of bootstrap row weights ``(b, n_rows)``, ``n_boot`` rows in all.

    Each resample draws as many groups as there are, with replacement; a row's weight is
    the number of times its group was drawn.
    """
    if groups is None:
        codes, n_groups = np.arange(n_rows), n_rows
    else:
        groups = np.asarray(groups, dtype=object)
        if len(groups) != n_rows:
            raise ValueError(f"groups has {len(groups)} entries for {n_rows} rows")
        codes, uniques = pd.factorize(groups)
        if (codes < 0).any():
            raise ValueError(f"{int((codes < 0).sum())} rows have no group (patient) id")
        n_groups = len(uniques)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _MAX_CELLS // max(n_rows, n_groups, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        draws = rng.integers(0, max(n_groups, 1), size=(b, n_groups))
        flat = (draws + n_groups * np.arange(b)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n_groups).reshape(b, n_groups)
        yield counts[:, codes].astype(np.float64)
        done += b


def _evaluate(metric: Callable, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The metric on every resample of ``w``: vectorised when it can be, else one by one."""
    if hasattr(metric, "batched"):
        return np.asarray(metric.batched(y, p, w), dtype=np.float64)
    out = np.empty(len(w))
    rows = np.arange(len(y))
    for i, wi in enumerate(w):
        idx = np.repeat(rows, wi.astype(np.int64))
        try:
            out[i] = metric(y[idx], p[idx])
        except ValueError:  # e.g. scikit-learn refusing one class: undefined, skipped
            out[i] = np.nan
    return out


def _interval(point: float, stats: np.ndarray, alpha: float) -> Estimate:
    stats = stats[np.isfinite(stats)]
    if len(stats) < 2:
        return Estimate(float(point), np.nan, np.nan, len(stats))
    low, high = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Estimate(float(point), float(low), float(high), len(stats))


def bootstrap_ci(metric_fn: MetricFn, y: np.ndarray, p: np.ndarray, groups: Sequence | None = None,
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> Estimate:
    """Point estimate and percentile ``1 - alpha`` CI of ``metric_fn(y, p)`` by group bootstrap.

    ``metric_fn``: a name of :data:`metrics.METRIC_NAMES`, a :class:`ScalarMetric`, or any
    ``f(y, p) -> float`` (evaluated resample by resample: slower). Returns an :class:`~training.evaluation.estimate.Estimate`.
    """
    metric = as_metric(metric_fn)
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    stats = np.concatenate([_evaluate(metric, y, p, w)
                            for w in resample_weights(groups, len(y), n_boot, seed)])
    ci = _interval(metric(y, p), stats, alpha)
    if ci.n_used < n_boot:
        log.info("bootstrap: metric undefined in %d of %d resamples (skipped)",
                 n_boot - ci.n_used, n_boot)
    return ci


def paired_bootstrap(metric_fn: MetricFn, y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray,
                     groups: Sequence | None = None, n_boot: int = 1000, alpha: float = 0.05,
                     seed: int = 0) -> dict[str, float]:
    """Difference ``metric(a) - metric(b)`` of two models on the same rows, same resamples.

    Returns ``diff``, its CI ``low``/``high``, a two-sided bootstrap ``p_value`` (for
    "no difference"), ``n_used``, and each model's point value ``a`` and ``b``.
    """
    metric = as_metric(metric_fn)
    y = np.asarray(y, dtype=np.float64)
    p_a, p_b = np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)
    diffs = np.concatenate([_evaluate(metric, y, p_a, w) - _evaluate(metric, y, p_b, w)
                            for w in resample_weights(groups, len(y), n_boot, seed)])
    a, b = metric(y, p_a), metric(y, p_b)
    ci = _interval(a - b, diffs, alpha)
    d = diffs[np.isfinite(diffs)]
    tail = min((d <= 0).sum(), (d >= 0).sum())
    p_value = min(1.0, 2 * (tail + 1) / (len(d) + 1)) if len(d) else float("nan")
    return {"diff": ci.value, "low": ci.low, "high": ci.high, "p_value": float(p_value),
            "n_used": ci.n_used, "a": float(a), "b": float(b)}


# ------------------------------------------------------------------ every metric at once

def _leaves(tree: dict, prefix: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _set(tree: dict, key: tuple, value: Any) -> None:
    for k in key[:-1]:
        tree = tree.setdefault(k, {})
    tree[key[-1]] = value


def bootstrap_metrics(Y: np.ndarray, P: np.ndarray, kind: str, names: Sequence[str],
                      thresholds: Any = None, groups: Sequence | None = None,
                      n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                      pred: np.ndarray | None = None) -> dict[str, Any]:
    """CIs of every scalar metric of :func:`metrics.compute_metrics` from the same resamples.

    Returns the same nesting with leaves ``{"low", "high", "n_used"}``. Resampling is joint
    over outputs (one patient draw per resample), so macro/micro CIs are coherent.
    ``pred``: explicit 0/1 predictions (multilabel), as in :func:`metrics.multilabel_metrics`.
    """
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    parts: dict[tuple, list[np.ndarray]] = {}
    for w in resample_weights(groups, len(Y), n_boot, seed):
        for key, arr in _leaves(M.batched_metrics(Y, P, kind, names, thresholds, w, pred)):
            parts.setdefault(key, []).append(arr)
    out: dict[str, Any] = {}
    for key, arrs in parts.items():
        ci = _interval(np.nan, np.concatenate(arrs), alpha)
        _set(out, key, {"low": ci.low, "high": ci.high, "n_used": ci.n_used})
    return out


def attach_ci(point: dict[str, Any], cis: dict[str, Any]) -> dict[str, Any]:
    """``point`` metrics with every leaf that has a CI turned into ``{value, low, high, n_used}``."""
    out: dict[str, Any] = {}
    for k, v in point.items():
        c = cis.get(k) if isinstance(cis, dict) else None
        if isinstance(v, dict):
            out[k] = attach_ci(v, c if isinstance(c, dict) else {})
        elif isinstance(c, dict) and "low" in c:
            out[k] = {"value": v, **c}
        else:
            out[k] = v
    return out
