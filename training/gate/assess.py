"""One call for every caller (app, API, ``predict``): image checks + per-model OOD → verdict."""
from __future__ import annotations

from collections.abc import Mapping

from training.gate.checks import ImageFacts, image_reasons
from training.gate.ood import OODGate
from training.gate.verdict import GateResult, judge


def model_scores(scores: Mapping[str, tuple[OODGate, float]]) -> dict[str, dict]:
    """``{model: {"score", "p_value", "threshold", "warn_threshold"}}`` for :func:`judge`."""
    return {name: {"score": float(score), "p_value": gate.p_value(score),
                   "threshold": gate.threshold, "warn_threshold": gate.warn_threshold}
            for name, (gate, score) in scores.items()}


def assess(facts: ImageFacts, scores: Mapping[str, tuple[OODGate, float]] | None = None,
           checked: GateResult | None = None) -> GateResult:
    """The gate's verdict on one image; ``scores`` holds each gated model's OOD score.

    ``checked``: this image's earlier verdict without scores (its image reasons are reused).
    """
    image = checked.reasons if checked is not None else image_reasons(facts)
    return judge(image, model_scores(scores or {}))
