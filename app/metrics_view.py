"""Display-ready test metrics with 95 % CIs, read from the structures the evaluation writes.

``training.evaluation.evaluate`` stores in ``card["metrics"]["test"]``::

    {"test_set", "split", "part", "n_images", "n_patients", "thresholds": {"method", ...},
     "overlap": {...}, "metrics": {"kind", "outputs", "per_output": {name: {"n_pos", "n_neg",
     "threshold", metric: {"value", "low", "high", "n_used"}}}, "macro": {metric: {...}}, ...}}

Anything else (a hand-edited card) is not guessed at: :func:`test_summary` returns None and
the pages fall back to a flat list.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Any

from training.evaluation.estimate import CI_LEVEL, Estimate, finite_number  # noqa: F401  (CI_LEVEL: compare_report)

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

    @property
    def labels(self) -> list[str]:
        return [label for _, label in METRICS]


def metric_cells(section: dict[str, Any]) -> list[Estimate]:
    """The :data:`METRICS` of one per-output (or macro) dict, in display order."""
    return [Estimate.of(section.get(key)) for key, _ in METRICS]


def _overlap_warning(overlap: Any, n_images: Any) -> str | None:
    if not isinstance(overlap, dict):
        return None
    if overlap.get("checked") is False:
        return "The test images could not be checked against the training images."
    if overlap.get("n_images"):
        return (f"{overlap['n_images']} of {n_images} test images were used in training or "
                "validation: these results are optimistic.")
    return None


def test_summary(card: ModelCard) -> TestSummary | None:
    """The card's test evaluation in display form; None if absent or not evaluate's structure."""
    test = card.test_metrics
    if not isinstance(test, dict) or not isinstance(test.get("metrics"), dict):
        return None
    metrics = test["metrics"]
    per_output = metrics.get("per_output")
    if not isinstance(per_output, dict) or not per_output:
        return None
    order = [o for o in metrics.get("outputs") or card.outputs or [] if o in per_output]
    rows = [OutputRow(name, metric_cells(d), d.get("n_pos"), d.get("n_neg"), finite_number(d.get("threshold")))
            for name in order or list(per_output) for d in [per_output[name]] if isinstance(d, dict)]
    extra = [(label, Estimate.of(metrics[key])) for key, label in
             (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy")) if key in metrics]
    thresholds = test.get("thresholds") if isinstance(test.get("thresholds"), dict) else {}
    return TestSummary(
        test_set=test.get("test_set") or card.test_set, part=test.get("part"),
        split=split_name(test.get("split")), n_images=test.get("n_images"), n_patients=test.get("n_patients"),
        threshold_method=thresholds.get("method"), outputs=rows,
        macro=metric_cells(metrics.get("macro") or {}), extra=extra,
        overlap_warning=_overlap_warning(test.get("overlap"), test.get("n_images")))


def summary_json(summary: TestSummary | None) -> dict[str, Any] | None:
    """The summary as plain JSON for the API: ``{metric: {"value", "low", "high"}}`` per output."""
    if summary is None:
        return None

    def cells(row: list[Estimate]) -> dict[str, Any]:
        return {key: {k: e.to_json()[k] for k in ("value", "low", "high")} for (key, _), e in zip(METRICS, row)}

    return {"test_set": summary.test_set, "part": summary.part, "n_images": summary.n_images,
            "n_patients": summary.n_patients, "threshold_method": summary.threshold_method,
            "ci": CI_LEVEL, "per_output": {r.name: cells(r.cells) for r in summary.outputs},
            "macro": cells(summary.macro), "overlap_warning": summary.overlap_warning}
