"""Short, display-ready views of model cards (for the pages and the API)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.metrics_view import split_name, summary_json, test_summary

if TYPE_CHECKING:  # a type only: this module stays free of Keras
    from training.models.card import ModelCard

#: Card keys too bulky or too internal for the API's model list.
BULKY_KEYS = ("training",)
#: Lists longer than this (curves, per-sample values) are left out of the API.
MAX_LIST = 50
_CI_KEYS = (("ci_low", "ci_high"), ("low", "high"), ("lower", "upper"))


def _total(counts: Any) -> Any:
    """``{"Normal": 3, "Pneumonia": 5}`` -> 8; a number stays as it is."""
    if isinstance(counts, dict):
        return sum(v for v in counts.values() if isinstance(v, (int, float)))
    return counts


def format_metric(value: Any) -> str:
    """A number, or ``{"value"|"estimate", ci}`` as "0.910 (95% CI 0.880–0.940)"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.3f}" if isinstance(value, float) else str(value)
    if isinstance(value, dict):
        point = next((value[k] for k in ("value", "estimate", "point", "mean") if k in value), None)
        ci = value.get("ci")
        if ci is None:
            ci = next(([value[a], value[b]] for a, b in _CI_KEYS if a in value and b in value), None)
        if isinstance(point, (int, float)):
            text = f"{point:.3f}"
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
                level = value.get("level", 0.95)
                text += f" ({level:.0%} CI {ci[0]:.3f}–{ci[1]:.3f})"
            return text
    return str(value)


def metric_rows(metrics: Any, prefix: str = "", limit: int = 40) -> list[tuple[str, str]]:
    """Flatten nested metrics into (name, formatted value) rows, lists left out."""
    rows: list[tuple[str, str]] = []
    if not isinstance(metrics, dict):
        return rows
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and format_metric(value) == str(value):
            rows.extend(metric_rows(value, name + " · ", limit))
        elif not isinstance(value, (list, tuple)):
            rows.append((name, format_metric(value)))
    return rows[:limit]


def initialisation(card: ModelCard) -> str:
    """Where the model's backbone weights started, in one line (cards before it: from transfer)."""
    init = card.initialisation
    if isinstance(init, dict) and init.get("summary"):
        return str(init["summary"])
    weights = card.transfer.get("weights")
    return f"from {weights} weights" if weights else "none: random initialisation (trained from scratch)"


def short_card(card: ModelCard) -> dict[str, Any]:
    """What a clinician needs beside a prediction: data, split, test metrics or their absence."""
    data, split, test = card.data, card.split, card.test_metrics
    summary = test_summary(card)
    sha = split.get("sha256") or ""
    return {
        "name": card.name,
        "architecture": card.architecture,
        "task": card.task,
        "kind": card.kind,
        "input_size": card.input_size,
        "initialisation": initialisation(card),
        "outputs": list(card.outputs),
        "data_sources": list(data.get("sources") or []),
        "data_counts": {part: _total(c) for part, c in (data.get("counts") or {}).items()},
        "split_file": split_name(split.get("file")),
        "split_sha256_prefix": sha[:12] or None,
        "split_counts": split.get("counts") or {},
        "test_set": card.test_set,
        "evaluated": bool(test) and card.test_set is not None,
        # evaluate's structure as {output: {metric: {value, low, high}}}; else a flat fallback
        "test": summary_json(summary),
        "test_metrics": {} if summary else dict(metric_rows(test)),
        "threshold_method": card.threshold_method,
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
