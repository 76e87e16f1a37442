"""Display-ready test metrics with 95 % CIs, read from the card's typed test evaluation.

``training.evaluation.evaluate`` writes ``card.metrics.test``, a
:class:`training.evaluation.records.TestEvaluation` (validated when the card is read);
:func:`test_summary` turns it into rows in :data:`METRICS` order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Any

from training.evaluation.estimate import CI_LEVEL, Estimate  # noqa: F401  (CI_LEVEL: compare_report)
from training.evaluation.records import MetricSet, OutputMetrics

if TYPE_CHECKING:  # a type only: this module stays free of Keras
    from training.models.card import ModelCard

#: (key in the evaluation's metric dicts, column label), in display order.
METRICS: tuple[tuple[str, str], ...] = (
    ("roc_auc", "AUC"), ("recall", "Sensitivity"), ("specificity", "Specificity"),
    ("precision", "PPV"), ("f1", "F1"))


def split_name(split: Any) -> str | None:
    """A split file as users may see it: its name only. Cards and reports record the path the
    training machine used; a page never shows a server's folders (the hash identifies it)."""
    return PureWindowsPath(str(split or "").strip()).name or None  # "/" and "\\" both separate


#: Strings that are file-system paths: absolute, home- or dot-relative, or a Windows drive.
_PATH = re.compile(r"^(/|~/|\.\.?/|[A-Za-z]:[\\/])")


def without_paths(value: Any) -> Any:
    """``value`` (JSON-like) with every path string reduced to its last name, for pages that
    show a card's training config or a compare.json: users see names, not a server's folders.
    Label strings such as ``Pneumonia/Viral/COVID-19`` are not paths (no leading ``/``)."""
    if isinstance(value, dict):
        return {k: without_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_paths(v) for v in value]
    if isinstance(value, str) and _PATH.match(value.strip()):
        return split_name(value) or value
    return value


@dataclass
class OutputRow:
    """One output (class) of a model: its metrics in :data:`METRICS` order."""

    name: str
    cells: list[Estimate]
    n_pos: int | None = None
    n_neg: int | None = None
    threshold: float | None = None


@dataclass
class TestSummary:
    """How and on what a model was tested, and its per-output metrics with CIs."""

    test_set: str | None
    part: str | None
    split: str | None
    n_images: int | None
    n_patients: int | None
    threshold_method: str | None
    outputs: list[OutputRow]
    macro: list[Estimate]
    extra: list[tuple[str, Estimate]] = field(default_factory=list)   # accuracy etc. (single-label)
    overlap_warning: str | None = None
    split_sha256: str | None = None

    @property
    def labels(self) -> list[str]:
        return [label for _, label in METRICS]


def metric_cells(section: OutputMetrics | dict[str, Estimate]) -> list[Estimate]:
    """The :data:`METRICS` of one output (or the macro estimates), in display order."""
    values = section.values if isinstance(section, OutputMetrics) else section
    return [values.get(key, Estimate(None)) for key, _ in METRICS]


def _overlap_warning(overlap: dict[str, Any], n_images: int | None) -> str | None:
    if overlap.get("checked") is False:
        return "The test images could not be checked against the training images."
    if overlap.get("n_images"):
        return (f"{overlap['n_images']} of {n_images} test images were used in training or "
                "validation: these results are optimistic.")
    return None


def _rows(metrics: MetricSet, outputs: list[str]) -> list[OutputRow]:
    per_output = metrics.per_output
    order = [o for o in metrics.outputs or outputs if o in per_output] or list(per_output)
    return [OutputRow(name, metric_cells(m), m.n_pos, m.n_neg, m.threshold)
            for name in order for m in [per_output[name]]]


def test_summary(card: ModelCard) -> TestSummary | None:
    """The card's test evaluation in display form; None before any evaluation."""
    test = card.test_evaluation
    if test is None or not test.metrics.per_output:
        return None
    metrics = test.metrics
    extra = [(label, metrics.values[key]) for key, label in
             (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy")) if key in metrics.values]
    return TestSummary(
        test_set=test.test_set, part=test.part, split=split_name(test.split),
        n_images=test.n_images, n_patients=test.n_patients,
        threshold_method=test.threshold_method, outputs=_rows(metrics, list(card.outputs)),
        macro=metric_cells(metrics.macro), extra=extra,
        overlap_warning=_overlap_warning(test.overlap, test.n_images), split_sha256=test.split_sha256)


def summary_json(summary: TestSummary | None) -> dict[str, Any] | None:
    """The summary as plain JSON for the API: ``{metric: {"value", "low", "high"}}`` per output."""
    if summary is None:
        return None

    def cells(row: list[Estimate]) -> dict[str, Any]:
        return {key: {k: e.to_json()[k] for k in ("value", "low", "high")} for (key, _), e in zip(METRICS, row)}

    return {"test_set": summary.test_set, "part": summary.part, "n_images": summary.n_images,
            "n_patients": summary.n_patients, "threshold_method": summary.threshold_method,
            "ci": CI_LEVEL, "per_output": {r.name: cells(r.cells) for r in summary.outputs},
            "macro": cells(summary.macro), "overlap_warning": summary.overlap_warning,
            "split_sha256": summary.split_sha256}
