"""The decision rule: which outputs of a model are positive for an image.

One rule for every place that says "positive": the app (``app.model_bank``), ``cxrlab
predict`` (``training.runtime.Runtime.interpret``) and the evaluation's metrics
(``metrics.predictions``). Probabilities are the CALIBRATED ones, the scale of the card's
thresholds.

* ``multilabel`` (one sigmoid per output): an output is positive when its probability
  reaches its threshold; any number of outputs may be.
* ``single`` (softmax: the classes exclude each other): exactly one class per image. Two
  classes: the second (positive) class when its probability reaches its threshold, else
  the first (the first class's own threshold is not used). More classes: the argmax
  (thresholds are not used).
* Missing thresholds, ``missing`` (a required keyword, so every caller states its choice):
  a number stands in for each threshold the card lacks (the metrics: 0.5); ``None`` gives
  no decision there (the app and ``cxrlab predict``: a card without thresholds shows no
  positive output, and a softmax model without its thresholds shows no class).
* Not estimable (the card's :class:`~training.evaluation.thresholds.ThresholdRecord` has
  the output with value None: too few validation patients): no decision for that output
  whatever ``missing`` is; a two-class softmax whose positive class is not estimable shows
  no class. A softmax of more than two classes with a record (method ``argmax``) is decided
  by its argmax.
* A row with a NaN probability (unreadable or refused image) has no positive output.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from training.evaluation.thresholds import ThresholdRecord

KINDS: tuple[str, ...] = ("single", "multilabel")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'multilabel' or 'single', got {kind!r}")


Thresholds = Mapping[str, float | None] | ThresholdRecord | None


def output_thresholds(thresholds: Thresholds, names: Sequence[str], *,
                      missing: float | None) -> list[float | None]:
    """Each output's threshold as given (e.g. the card's record), else ``missing``; None for
    an output the record marks not estimable (``missing`` does not stand in for it)."""
    if isinstance(thresholds, ThresholdRecord):
        values = thresholds.values()
        return [None if n in values and values[n] is None else
                values[n] if n in values else None if missing is None else float(missing)
                for n in names]
    given = thresholds or {}
    return [float(given[n]) if given.get(n) is not None else
            (None if missing is None else float(missing)) for n in names]


def single_label_classes(P: np.ndarray, thresholds: Any, names: Sequence[str]) -> np.ndarray:
    """Class index per row of softmax scores ``P``.

    Two classes with a threshold for the second (positive) class, e.g. chosen by Youden on
    validation: positive when its probability reaches the threshold. Otherwise the argmax
    (a softmax's argmax equals a 0.5 threshold only for two classes, and says nothing about
    the operating point the validation data favour). ``thresholds``: a ``{name: value}``
    dict, a sequence in ``names`` order, or None.
    """
    P = np.asarray(P, dtype=np.float64)
    if len(names) == 2 and thresholds is not None and not isinstance(thresholds, Mapping):
        values = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (2,))
        thresholds = dict(zip(names, values))  # a list is honoured too
    if len(names) == 2 and isinstance(thresholds, Mapping) and thresholds.get(names[1]) is not None:
        return (P[:, 1] >= float(thresholds[names[1]])).astype(np.int64)
    return P.argmax(axis=1) if len(P) else np.zeros(0, np.int64)


def _single_decided(thresholds: Thresholds, t: list[float | None]) -> bool:
    """A softmax model is decided when its positive class (two classes) has a threshold; over
    more classes (argmax) when the card has a record, or any class a threshold."""
    if len(t) == 2:
        return t[1] is not None
    return isinstance(thresholds, ThresholdRecord) or any(v is not None for v in t)


def decide(P: np.ndarray, kind: str, thresholds: Thresholds,
           names: Sequence[str], *, missing: float | None) -> np.ndarray:
    """Boolean ``(N, C)``: which outputs are positive for each row of calibrated ``P``.

    ``thresholds``: ``{output: threshold}`` on the calibrated scale (the card's), or None;
    ``missing``: the threshold of an output without one, or None for no decision there.
    The rule is the module's docstring.
    """
    _check_kind(kind)
    P = np.asarray(P, dtype=np.float64).reshape(-1, len(names))
    t = output_thresholds(thresholds, names, missing=missing)
    known = ~np.isnan(P).any(axis=1)
    if kind == "multilabel":
        limits = np.array([np.inf if v is None else v for v in t], dtype=np.float64)
        out = P >= limits[None, :]
    else:
        out = np.zeros(P.shape, dtype=bool)
        if _single_decided(thresholds, t) and len(P):
            positive = {names[1]: t[1]} if len(names) == 2 else None
            out[np.arange(len(P)), single_label_classes(P, positive, names)] = True
    return out & known[:, None]


def decision_thresholds(kind: str, thresholds: Thresholds, names: Sequence[str],
                        *, missing: float | None) -> list[float | None]:
    """The threshold :func:`decide` applies to each output, on that output's own scale.

    None where no threshold decides (a softmax of more than two classes: the argmax; or no
    decision). A two-class softmax's first class is chosen exactly when the second's
    probability ``p`` is below its threshold ``t``, i.e. when its own probability ``1 - p``
    exceeds ``1 - t``: it gets ``1 - t``, so "probability >= threshold" reads the decision
    for every output (but at the tie itself, where the positive class wins).
    """
    _check_kind(kind)
    t = output_thresholds(thresholds, names, missing=missing)
    if kind == "multilabel":
        return t
    if len(names) == 2:
        return [None, None] if t[1] is None else [1.0 - t[1], t[1]]
    return [None] * len(names)


NO_THRESHOLDS = "the model card has no thresholds"


def no_decision(kind: str, thresholds: Thresholds, names: Sequence[str]) -> dict[str, str]:
    """``{output: why}`` for the outputs :func:`decide` (``missing=None``) gives no
    positive/negative decision: every consumer shows their probability only, and says why."""
    _check_kind(kind)
    t = output_thresholds(thresholds, names, missing=None)
    why = thresholds.not_estimable() if isinstance(thresholds, ThresholdRecord) else {}

    def reason(name: str, whose: str = "") -> str:
        return f"{whose}threshold not estimable ({why[name]})" if name in why else NO_THRESHOLDS

    if kind == "multilabel":
        return {n: reason(n) for n, v in zip(names, t) if v is None}
    if _single_decided(thresholds, t):
        return {}
    return {n: reason(names[1], f"the {names[1]} ") if len(names) == 2 else NO_THRESHOLDS for n in names}
