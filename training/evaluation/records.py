"""The card's evaluation records: calibration, validation metrics and the test evaluation.

Pure dataclasses (no NumPy, no Keras): the card (``training.models.card``) validates them on
load and the web app reads them without the evaluation stack. Each has ``from_json`` (raises
ValueError naming what is wrong) and ``to_json`` (the ``card.json`` form). A metric is an
:class:`~training.evaluation.estimate.Estimate`; a point without an interval (validation) is
written as a bare number, one with an interval (the test bootstrap) as ``{"value", "low", "high"}``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

from training.evaluation.estimate import Estimate, finite_number

KINDS = ("single", "multilabel")
TEST_SETS = ("internal", "external")
SIGMOID_METHODS = ("platt", "isotonic", "none")


def _fail(section: str, what: str) -> None:
    raise ValueError(f"{section} {what}")


def _object(raw: Any, section: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        _fail(section, f"must be a JSON object, got {type(raw).__name__}")
    return raw


def _count(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


# ------------------------------------------------------------------ calibration

@dataclass(frozen=True)
class CalibrationRecord:
    """A fitted calibration map as stored (``training.evaluation.calibration.Calibration`` runs it).

    ``params``: softmax ``{"temperature": T}``; sigmoids ``{output: {"method": "platt", "a", "b"}
    | {"method": "isotonic", "x", "y"} | {"method": "none", "reason"}}``.
    """

    kind: str
    outputs: list[str]
    method: str                      # temperature | platt | isotonic | none | per-output
    params: dict[str, Any]
    chosen_by: str = ""
    fitted_on: dict[str, Any] = field(default_factory=dict)       # n_images, labelled, positives
    validation_ece: dict[str, Any] = field(default_factory=dict)  # {output|macro: {raw, calibrated}}

    @classmethod
    def from_json(cls, raw: Any) -> CalibrationRecord:
        if isinstance(raw, cls):
            return raw
        d = _object(raw, "calibration")
        missing = [k for k in ("kind", "outputs", "method", "params") if k not in d]
        if missing:
            _fail("calibration", f"is missing {', '.join(missing)}")
        if d["kind"] not in KINDS:
            _fail("calibration", f"kind {d['kind']!r} is not one of {list(KINDS)}")
        outs = d["outputs"]
        if not isinstance(outs, list) or not outs or not all(isinstance(o, str) for o in outs):
            _fail("calibration", f"outputs must be a non-empty list of names, got {outs!r}")
        params = _object(d["params"], "calibration params")
        if d["kind"] == "single":
            t = finite_number(params.get("temperature"))
            if t is None or t <= 0:
                _fail("calibration", f"temperature must be a positive number, got {params.get('temperature')!r}")
        elif set(params) != set(outs):
            _fail("calibration", f"params keys {sorted(params)} != outputs {outs}")
        else:
            for o in outs:
                _check_sigmoid(o, params[o])
        return cls(d["kind"], list(outs), str(d["method"]), dict(params), str(d.get("chosen_by") or ""),
                   dict(d.get("fitted_on") or {}), dict(d.get("validation_ece") or {}))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "outputs": list(self.outputs), "method": self.method,
                "params": self.params, "chosen_by": self.chosen_by, "fitted_on": self.fitted_on,
                "validation_ece": self.validation_ece}


def _check_sigmoid(output: str, p: Any) -> None:
    where = f"output {output!r}:"
    method = p.get("method") if isinstance(p, Mapping) else None
    if method not in SIGMOID_METHODS:
        _fail("calibration", f"{where} method {method!r} is not one of {list(SIGMOID_METHODS)}")
    if method == "platt" and (finite_number(p.get("a")) is None or finite_number(p.get("b")) is None):
        _fail("calibration", f"{where} platt needs finite numbers a and b, got {p.get('a')!r}, {p.get('b')!r}")
    if method == "isotonic":
        x, y = p.get("x"), p.get("y")
        if not (isinstance(x, list) and isinstance(y, list) and 0 < len(x) == len(y)
                and all(finite_number(v) is not None for v in x + y)):
            _fail("calibration", f"{where} isotonic needs lists x and y of equal non-zero length of numbers")
        rising = all(a <= b for a, b in zip(x, x[1:])) and all(a <= b for a, b in zip(y, y[1:]))
        if not rising or min(y) < 0 or max(y) > 1:
            _fail("calibration", f"{where} isotonic x and y must be non-decreasing, y in [0, 1]")


# ------------------------------------------------------------------ metrics

def _is_metric(v: Any) -> bool:
    """A number, n/a (None) or an interval object: a metric; lists and text are tables."""
    return (v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))
            or (isinstance(v, Mapping) and "value" in v))


def _estimate(v: Any) -> Estimate:
    """NumPy scalars count as the numbers they are (Estimate reads Python numbers only)."""
    return Estimate.of(float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v)


def estimate_json(e: Estimate) -> Any:
    """A point as a bare number (NaN -> None); an interval as ``{"value", "low", "high"[, "n_used"]}``."""
    if e.low is None and e.high is None and e.n_used is None:
        return finite_number(e.value)
    return e.to_json()


def _split_values(d: Mapping[str, Any], skip: tuple[str, ...]) -> tuple[dict[str, Estimate], dict[str, Any]]:
    values = {k: _estimate(v) for k, v in d.items() if k not in skip and _is_metric(v)}
    return values, {k: v for k, v in d.items() if k not in skip and k not in values}


@dataclass(frozen=True)
class OutputMetrics:
    """One output's metrics (``roc_auc``, ``recall``, ...) with its counts and threshold."""

    n_pos: int | None = None
    n_neg: int | None = None
    threshold: float | None = None
    values: dict[str, Estimate] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)   # confusion matrix etc., as written

    @classmethod
    def from_json(cls, raw: Any, name: str) -> OutputMetrics:
        if isinstance(raw, cls):
            return raw
        d = _object(raw, f"metrics of output {name!r}")
        values, tables = _split_values(d, ("n_pos", "n_neg", "threshold"))
        return cls(_count(d.get("n_pos")), _count(d.get("n_neg")), finite_number(d.get("threshold")),
                   values, tables)

    def to_json(self) -> dict[str, Any]:
        head = {k: v for k, v in (("n_pos", self.n_pos), ("n_neg", self.n_neg),
                                  ("threshold", self.threshold)) if v is not None}
        return {**head, **{k: estimate_json(e) for k, e in self.values.items()}, **self.tables}

    def get(self, metric: str) -> Estimate:
        """The metric's estimate (n/a when absent)."""
        return self.values.get(metric, Estimate(None))


@dataclass(frozen=True)
class MetricSet:
    """Metrics of one part (validation or test): per output, macro, and overall numbers."""

    kind: str | None = None
    outputs: list[str] = field(default_factory=list)
    per_output: dict[str, OutputMetrics] = field(default_factory=dict)
    macro: dict[str, Estimate] = field(default_factory=dict)
    values: dict[str, Estimate] = field(default_factory=dict)  # accuracy, loss, n_images, ...
    tables: dict[str, Any] = field(default_factory=dict)       # confusion matrix, notes, as written

    @classmethod
    def from_json(cls, raw: Any, section: str = "metrics") -> MetricSet:
        if isinstance(raw, cls):
            return raw
        d = _object(raw, section)
        per = _object(d.get("per_output") or {}, f"{section}.per_output")
        macro, _ = _split_values(_object(d.get("macro") or {}, f"{section}.macro"), ())
        values, tables = _split_values(d, ("kind", "outputs", "per_output", "macro"))
        outputs = d.get("outputs") or list(per)
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            _fail(section, f"outputs must be a list of names, got {outputs!r}")
        return cls(d.get("kind"), list(outputs),
                   {str(k): OutputMetrics.from_json(v, str(k)) for k, v in per.items()},
                   macro, values, tables)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.kind is not None:
            out["kind"] = self.kind
        if self.outputs:
            out["outputs"] = list(self.outputs)
        if self.per_output:
            out["per_output"] = {k: v.to_json() for k, v in self.per_output.items()}
        if self.macro:
            out["macro"] = {k: estimate_json(e) for k, e in self.macro.items()}
        return {**out, **{k: estimate_json(e) for k, e in self.values.items()}, **self.tables}

    def get(self, metric: str) -> Estimate:
        return self.values.get(metric, Estimate(None))

    @property
    def n_images(self) -> int | None:
        return _count(self.get("n_images").value)

    @property
    def note(self) -> str | None:
        note = self.tables.get("note")
        return note if isinstance(note, str) else None


@dataclass(frozen=True)
class TestEvaluation:
    """What ``evaluate`` found on a held-out test set (the card's ``metrics.test``)."""

    test_set: str                    # internal | external
    metrics: MetricSet
    part: str | None = None
    split: str | None = None         # the split file as evaluate read it; pages show its name only
    split_sha256: str | None = None
    n_images: int | None = None
    n_patients: int | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)   # evaluate's: method, source, values
    overlap: dict[str, Any] = field(default_factory=dict)      # checked, n_images (test ∩ train/val)
    calibration: dict[str, Any] = field(default_factory=dict)  # ECE before/after: method, source
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: Any) -> TestEvaluation:
        if isinstance(raw, cls):
            return raw
        d = _object(raw, "metrics.test")
        if d.get("test_set") not in TEST_SETS:
            _fail("metrics.test", f"test_set must be one of {list(TEST_SETS)}, got {d.get('test_set')!r}")
        if not isinstance(d.get("metrics"), Mapping):
            _fail("metrics.test", "has no metrics object (evaluate writes one)")
        notes = d.get("notes") or []
        return cls(d["test_set"], MetricSet.from_json(d["metrics"], "metrics.test.metrics"),
                   d.get("part"), d.get("split"), d.get("split_sha256"), _count(d.get("n_images")),
                   _count(d.get("n_patients")),
                   dict(_object(d.get("thresholds") or {}, "metrics.test.thresholds")),
                   dict(_object(d.get("overlap") or {}, "metrics.test.overlap")),
                   dict(_object(d.get("calibration") or {}, "metrics.test.calibration")),
                   [str(n) for n in notes])

    def to_json(self) -> dict[str, Any]:
        return {"test_set": self.test_set, "split": self.split, "split_sha256": self.split_sha256,
                "part": self.part, "n_images": self.n_images, "n_patients": self.n_patients,
                "thresholds": self.thresholds, "metrics": self.metrics.to_json(),
                "overlap": self.overlap, "calibration": self.calibration, "notes": list(self.notes)}

    @property
    def threshold_method(self) -> str | None:
        method = self.thresholds.get("method")
        return method if isinstance(method, str) else None


@dataclass(frozen=True)
class CardMetrics:
    """The card's ``metrics``: validation (the trainer, ``calibrate``) and test (``evaluate``)."""

    validation: MetricSet | None = None
    test: TestEvaluation | None = None

    @classmethod
    def from_json(cls, raw: Any) -> CardMetrics:
        if isinstance(raw, cls):
            return raw
        d = _object(raw if raw is not None else {}, "metrics")
        val, test = d.get("validation"), d.get("test")
        return cls(MetricSet.from_json(val, "metrics.validation") if val else None,
                   TestEvaluation.from_json(test) if test else None)

    def to_json(self) -> dict[str, Any]:
        return {"validation": self.validation.to_json() if self.validation else {},
                "test": self.test.to_json() if self.test else {}}
