"""Short, display-ready views of model cards (for the pages and the API)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.metrics_view import summary_json, test_summary

if TYPE_CHECKING:  # types only: this module stays free of Keras
    from training.evaluation.records import MetricSet
    from training.models.card import ModelCard

#: Card keys too bulky or too internal for the API's model list.
BULKY_KEYS = ("training",)
#: Lists longer than this (curves, per-sample values) are left out of the API.
MAX_LIST = 50


def validation_rows(metrics: MetricSet | None, limit: int = 40) -> list[tuple[str, str]]:
    """The validation metrics as (name, value) rows: overall numbers, macro, then per output."""
    if metrics is None:
        return []
    rows = [(k, str(e)) for k, e in metrics.values.items()]
    rows += [(f"macro · {k}", str(e)) for k, e in metrics.macro.items()]
    for name, m in metrics.per_output.items():
        rows += [(f"{name} · {k}", str(e)) for k, e in m.values.items()]
    return rows[:limit]


def initialisation(card: ModelCard) -> str:
    """Where the model's backbone weights started, in one line (cards before it: from transfer)."""
    if card.initialisation is not None:
        return card.initialisation.summary
    weights = card.transfer.weights
    return f"from {weights} weights" if weights else "none: random initialisation (trained from scratch)"


def short_card(card: ModelCard) -> dict[str, Any]:
    """What a clinician needs beside a prediction: data, split, test metrics or their absence."""
    data, split = card.data, card.split
    return {
        "name": card.name,
        "architecture": card.architecture,
        "task": card.task,
        "kind": card.kind,
        "input_size": card.input_size,
        "initialisation": initialisation(card),
        "outputs": list(card.outputs),
        "data_sources": list(data.sources),
        "data_counts": {part: sum(c.values()) for part, c in data.counts.items()},
        "split_file": split.name,
        "split_sha256_prefix": (split.sha256 or "")[:12] or None,
        "split_counts": dict(split.counts),
        "test_set": card.test_set,
        "evaluated": card.test_evaluation is not None,
        # {output: {metric: {value, low, high}}}; None before any evaluation
        "test": summary_json(test_summary(card)),
        "threshold_method": card.thresholds.describe() if card.thresholds else None,
        "created": card.created,
    }


def _trim(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _trim(v) for k, v in value.items()
                if not (isinstance(v, (list, tuple)) and len(v) > MAX_LIST)}
    if isinstance(value, list):
        return [_trim(v) for v in value]
    return value


def public_card(card: ModelCard | dict[str, Any]) -> dict[str, Any]:
    """The card's JSON without its resolved training config and long arrays."""
    raw = card if isinstance(card, dict) else card.to_json()
    return _trim({k: v for k, v in raw.items() if k not in BULKY_KEYS})
