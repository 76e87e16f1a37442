"""HTML pages of an evaluation and of a model comparison (``training/templates``, autoescaped,
self-contained apart from the PNG figures beside them). Numbers are printed from the rounded
JSON values, so the page shows exactly what ``metrics.json`` / ``compare.json`` hold."""
from __future__ import annotations

from typing import Any

from training.evaluation.metrics import METRIC_NAMES
from training.html import DECIMALS, fmt, render  # noqa: F401  (DECIMALS, fmt: used by evaluate, audits)


def render_evaluation(result: dict[str, Any]) -> str:
    """The evaluation page of a (rounded) ``metrics.json`` dict."""
    return render("evaluation.html", r=result, names=METRIC_NAMES)


def render_comparison(summary: dict[str, Any], rows: list[dict[str, Any]], columns: list[str]) -> str:
    """The comparison page: one table row per model plus the paired tests."""
    return render("comparison.html", c=summary, rows=rows, columns=columns)
