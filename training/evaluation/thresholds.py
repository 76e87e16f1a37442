"""Decision thresholds chosen on validation scores (then applied, unchanged, to the test set).

The card's typed record of them, :class:`ThresholdRecord`, is defined here, beside
:func:`choose_record`, its one writer. A threshold is only chosen where the validation part
holds at least ``min_patients`` positive AND negative patients for that output: below that,
Youden's cut-off is noise (a COVID-19 image came back "SARS positive" from thresholds fitted
on one or two SARS patients), so the entry is *not estimable*, carries the counts, and every
consumer shows the probability without a decision.

This module sits below ``training.models`` (the card holds a record): numpy/sklearn only.
"""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)


class ThresholdMethod(str, Enum):
    """How a record's thresholds were set."""

    YOUDEN = "youden"            # max sensitivity + specificity - 1 on validation
    SENSITIVITY = "sensitivity"  # highest threshold reaching target_sensitivity on validation
    FIXED = "fixed"              # 0.5, no data needed
    ARGMAX = "argmax"            # softmax of more than two classes: no thresholds at all


class Status(str, Enum):
    """What one output's entry is."""

    CHOSEN = "chosen"                # fitted on validation by the record's method
    NOT_ESTIMABLE = "not_estimable"  # too few positive or negative patients: no decision
    FIXED = "fixed"                  # 0.5 by the method
    FROM_CARD = "from_card"          # kept from a card of the previous version (method unknown)


#: What a user may ask for (CLI/config choices; ``argmax`` follows from the model's kind).
METHODS: tuple[str, ...] = tuple(m.value for m in ThresholdMethod if m is not ThresholdMethod.ARGMAX)
DEFAULT = 0.5
MIN_PATIENTS = 10
MIN_PATIENTS_HELP = ("a threshold is chosen for an output only when validation holds at least this "
                     "many positive and negative patients; else it is 'not estimable' and no "
                     "decision is shown")
SCALES = ("calibrated", "raw")


def _fail(what: str) -> None:
    raise ValueError(f"threshold record: {what}. What to do: re-choose the thresholds "
                     "(`python -m training calibrate --model DIR`) or fix card.json.")


@dataclass(frozen=True)
class OutputThreshold:
    """One output's threshold (``value`` None: no decision) and the validation counts behind it."""

    value: float | None
    status: Status
    positive_patients: int | None = None
    negative_patients: int | None = None
    positive_images: int | None = None
    negative_images: int | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "status": self.status.value,
                "positive_patients": self.positive_patients,
                "negative_patients": self.negative_patients,
                "positive_images": self.positive_images,
                "negative_images": self.negative_images, "reason": self.reason}

    @classmethod
    def from_json(cls, name: str, d: Any) -> OutputThreshold:
        if not isinstance(d, dict):
            _fail(f"entry {name!r} must be an object, got {type(d).__name__}")
        try:
            status = Status(d.get("status"))
        except ValueError:
            _fail(f"entry {name!r} has unknown status {d.get('status')!r} "
                  f"(expected one of {[s.value for s in Status]})")
        value = d.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= 1):
            _fail(f"entry {name!r}: value must be a number in [0, 1] or null, got {value!r}")
        if (value is None) != (status is Status.NOT_ESTIMABLE):
            _fail(f"entry {name!r}: a {status.value} entry {'needs' if value is None else 'has no'} "
                  "value")
        counts = {k: d.get(k) for k in ("positive_patients", "negative_patients",
                                        "positive_images", "negative_images")}
        bad = {k: v for k, v in counts.items()
               if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0)}
        if bad:
            _fail(f"entry {name!r}: counts must be non-negative integers, got {bad!r}")
        return cls(None if value is None else float(value), status, **counts,
                   reason=str(d.get("reason") or ""))


@dataclass(frozen=True)
class ThresholdRecord:
    """A model's thresholds (``card.json`` ``thresholds``), generated, never parsed back.

    ``entries``: one per thresholded output (every output of a sigmoid model; the positive,
    second class of a two-class softmax; none for a larger softmax, decided by its argmax).
    ``scale``: the probabilities they apply to (``calibrated`` by ``calibration``, or ``raw``).
    """

    method: ThresholdMethod
    entries: dict[str, OutputThreshold] = field(default_factory=dict)
    target_sensitivity: float | None = None
    min_patients: int | None = None
    scale: str = "calibrated"
    calibration: str | None = None
    fitted_on: str = ""

    def values(self) -> dict[str, float | None]:
        """``{output: threshold}`` of the thresholded outputs; None: no decision for it."""
        return {name: e.value for name, e in self.entries.items()}

    def decided(self) -> dict[str, float]:
        """The entries that have a value (for metrics, which use 0.5 elsewhere)."""
        return {name: v for name, v in self.values().items() if v is not None}

    def not_estimable(self) -> dict[str, str]:
        """``{output: why}`` of the outputs without a decision."""
        return {n: e.reason for n, e in self.entries.items() if e.status is Status.NOT_ESTIMABLE}

    def describe(self) -> str:
        """The human sentence (pages, reports)."""
        if self.method is ThresholdMethod.ARGMAX:
            return "argmax (softmax): no thresholds"
        label = (f"sensitivity >= {self.target_sensitivity}" if self.method is ThresholdMethod.SENSITIVITY
                 else "fixed 0.5" if self.method is ThresholdMethod.FIXED else self.method.value)
        text = label if self.method is ThresholdMethod.FIXED else f"{label} on {self.fitted_on or 'validation'}"
        if self.scale == "calibrated" and self.calibration and self.calibration != "none":
            text += f" (on probabilities calibrated by {self.calibration})"
        kept = [n for n, e in self.entries.items() if e.status is Status.FROM_CARD]
        if kept:
            text += f"; {', '.join(kept)}: kept from an older card"
        for name, why in self.not_estimable().items():
            text += f"; {name}: not estimable ({why})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method.value, "target_sensitivity": self.target_sensitivity,
                "min_patients": self.min_patients, "scale": self.scale,
                "calibration": self.calibration, "fitted_on": self.fitted_on,
                "entries": {n: e.to_json() for n, e in self.entries.items()}}

    @classmethod
    def from_json(cls, d: Any, outputs: Sequence[str] | None = None) -> ThresholdRecord:
        """The record of its JSON, validated (ValueError says what is wrong and what to do)."""
        if isinstance(d, ThresholdRecord):
            return d
        if not isinstance(d, dict) or not isinstance(d.get("entries"), dict):
            _fail(f"must be an object with 'method' and 'entries', got {d!r:.80}")
        try:
            method = ThresholdMethod(d.get("method"))
        except ValueError:
            _fail(f"unknown method {d.get('method')!r} (expected one of "
                  f"{[m.value for m in ThresholdMethod]})")
        if d.get("scale", "calibrated") not in SCALES:
            _fail(f"scale must be one of {list(SCALES)}, got {d.get('scale')!r}")
        unknown = sorted(set(d["entries"]) - set(outputs or d["entries"]))
        if unknown:
            _fail(f"entries {unknown} are not outputs of the model {list(outputs or [])}")
        target, least = d.get("target_sensitivity"), d.get("min_patients")
        if method is ThresholdMethod.SENSITIVITY and not (isinstance(target, (int, float))
                                                          and 0 < target <= 1):
            _fail(f"method 'sensitivity' needs target_sensitivity in (0, 1], got {target!r}")
        return cls(method, {n: OutputThreshold.from_json(n, e) for n, e in d["entries"].items()},
                   None if target is None else float(target),
                   None if least is None else int(least), d.get("scale", "calibrated"),
                   d.get("calibration"), str(d.get("fitted_on") or ""))

    @classmethod
    def from_v1(cls, thresholds: Mapping[str, float] | None, method_text: str | None,
                kind: str = "multilabel", outputs: Sequence[str] | None = None) -> ThresholdRecord | None:
        """The record of a version-1 card's ``thresholds`` dict + ``threshold_method`` sentence.

        The only place that sentence is ever parsed. Outputs the old trainer set to 0.5
        because validation was empty or single-class become not estimable (their 0.5 was
        never estimated); a sentence this cannot read keeps the values as ``from_card``.
        """
        if thresholds is None:
            return None
        text = (method_text or "").strip()
        names = list(outputs or thresholds)
        if kind == "single" and len(names) > 2:
            return cls(ThresholdMethod.ARGMAX, fitted_on="the model's kind (v1 card)")
        keep = names[1:] if kind == "single" else names
        found = re.match(r"sensitivity >= ([0-9.]+)", text)
        first = text.split()[0] if text else ""
        if found:
            method, status = ThresholdMethod.SENSITIVITY, Status.CHOSEN
        elif first in ("youden", "fixed"):
            method = ThresholdMethod(first)
            status = Status.FIXED if first == "fixed" else Status.CHOSEN
        else:  # a sentence this cannot read: the values stand, the method is unknown
            method, status = ThresholdMethod.YOUDEN, Status.FROM_CARD
        fallback = re.search(r"0\.5 for \[([^\]]*)\]", text)
        unset = set(re.findall(r"'([^']*)'", fallback.group(1))) if fallback else set()
        if "no validation images" in text:  # the old trainer's 0.5 for every output
            unset = set(keep)
        calibrated = re.search(r"calibrated by ([A-Za-z-]+)", text)
        entries = {n: (OutputThreshold(None, Status.NOT_ESTIMABLE,
                                       reason="validation empty or single-class (v1 card)")
                       if n in unset else OutputThreshold(float(thresholds[n]), status))
                   for n in keep if n in thresholds}
        return cls(method, entries, float(found.group(1)) if found else None, None,
                   "calibrated" if calibrated else "raw",
                   calibrated.group(1) if calibrated else None, "validation (v1 card)")


def choose_threshold(y_true: Sequence[float], scores: Sequence[float], method: str = "youden",
                     target_sensitivity: float | None = None) -> float:
    """A threshold (predict positive when ``score >= threshold``) from labelled scores.

    ``youden``: maximises Youden's J = sensitivity + specificity - 1 on the ROC curve (ties:
    the highest threshold). ``sensitivity``: the highest threshold whose sensitivity reaches
    ``target_sensitivity`` (giving ``target_sensitivity`` implies this method). ``fixed``:
    0.5. NaN labels are ignored; with no labels or a single class the result is 0.5 with a
    warning (a threshold cannot be learned from one class).
    """
    method = _checked_method(method, target_sensitivity)
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
    from sklearn.metrics import roc_curve  # here: the card and config import this module

    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    # thr[0] is +inf (nothing predicted positive): never a useful operating point.
    fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]
    if method == "youden":
        return float(thr[int(np.argmax(tpr - fpr))])
    return float(thr[int(np.argmax(tpr >= target_sensitivity - 1e-12))])


def _checked_method(method: str, target_sensitivity: float | None) -> str:
    if target_sensitivity is not None:
        if not 0 < target_sensitivity <= 1:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
        method = "sensitivity"
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {list(METHODS)}")
    if method == "sensitivity" and target_sensitivity is None:
        raise ValueError("method 'sensitivity' needs target_sensitivity (e.g. 0.9)")
    return method


def thresholded_outputs(kind: str, outputs: Sequence[str]) -> list[str]:
    """The outputs that get a threshold: all sigmoids; a two-class softmax's positive (second)
    class only (the decision rule reads nothing else); none for a larger softmax (argmax)."""
    if kind == "single":
        return list(outputs[1:]) if len(outputs) == 2 else []
    return list(outputs)


def _counts(y: np.ndarray, groups: np.ndarray) -> dict[str, int]:
    known = ~np.isnan(y)
    pos, neg = known & (y == 1), known & (y == 0)
    return {"positive_patients": int(len(set(groups[pos]))), "negative_patients": int(len(set(groups[neg]))),
            "positive_images": int(pos.sum()), "negative_images": int(neg.sum())}


def choose_record(Y: np.ndarray | None, P: np.ndarray | None, kind: str, outputs: Sequence[str],
                  groups: np.ndarray | None = None, *, method: str = "youden",
                  target_sensitivity: float | None = None, min_patients: int = MIN_PATIENTS,
                  calibration: str | None = None, fitted_on: str = "validation") -> ThresholdRecord:
    """The record of thresholds chosen on validation labels ``Y`` and probabilities ``P``.

    The one place thresholds are chosen (training, ``evaluate``, ``calibrate``, through
    :func:`training.evaluation.posttrain.post_train`). ``groups``: patient ids (None: each
    image its own patient). An output gets a threshold only with at least ``min_patients``
    (and at least one) positive and negative patients; else it is not estimable, with counts.
    ``calibration``: the method ``P`` is calibrated by (None or "none": raw).
    """
    method = _checked_method(method, target_sensitivity)
    names = thresholded_outputs(kind, outputs)
    scale = "raw" if calibration in (None, "none") else "calibrated"
    common = dict(target_sensitivity=target_sensitivity, scale=scale, calibration=calibration)
    if not names and kind == "single":
        return ThresholdRecord(ThresholdMethod.ARGMAX, {}, fitted_on="the model's kind", **common)
    if method == "fixed":
        return ThresholdRecord(ThresholdMethod.FIXED, {n: OutputThreshold(DEFAULT, Status.FIXED) for n in names},
                               fitted_on="", **common)
    Y = np.zeros((0, len(outputs))) if Y is None else np.asarray(Y, dtype=np.float64).reshape(-1, len(outputs))
    P = np.zeros_like(Y) if P is None else np.asarray(P, dtype=np.float64).reshape(Y.shape)
    groups = np.arange(len(Y)).astype(str) if groups is None else np.asarray(groups).astype(str)
    least = max(1, int(min_patients))
    entries = {}
    for name in names:
        j = list(outputs).index(name)
        c = _counts(Y[:, j], groups)
        if min(c["positive_patients"], c["negative_patients"]) < least:
            why = (f"{c['positive_patients']} positive and {c['negative_patients']} negative patients "
                   f"in validation; at least {least} of each are needed")
            entries[name] = OutputThreshold(None, Status.NOT_ESTIMABLE, **c, reason=why)
            continue
        known = ~np.isnan(Y[:, j])
        value = choose_threshold(Y[known, j], P[known, j], method, target_sensitivity)
        entries[name] = OutputThreshold(value, Status.CHOSEN, **c)
    return ThresholdRecord(ThresholdMethod(method), entries, min_patients=least, fitted_on=fitted_on,
                           **common)
