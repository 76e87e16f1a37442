"""``evaluate --part site``: the served model's own site-held-out AUCs, as card evidence.

A split's ``site`` part (:mod:`training.data.site_split`) holds whole sites that the model never
trained or validated on. Its evaluation is reported like any test part, but on the card it is
transfer evidence (``SITE_HELD_OUT``, of this model, not of its recipe), never the internal test
(``metrics.test`` is left as it is). An output gets an item only where the part holds
:data:`~training.data.site_split.MIN_SITE_PATIENTS` positive and negative patients for it;
the others are "not estimable", said in the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from training.data.site_split import MIN_SITE_PATIENTS, held_out_site_names
from training.evaluation.estimate import Estimate
from training.evaluation.evidence import Evidence, EvidenceKind
from training.models.card import ModelCard, update_card


@dataclass(frozen=True)
class SiteEvaluation:
    """What a site part's evaluation adds to the report and the card."""

    sites: tuple[str, ...]
    what: str
    evidence: dict[str, list[Evidence]] = field(default_factory=dict)
    not_estimable: dict[str, str] = field(default_factory=dict)  # output -> why

    def notes(self) -> list[str]:
        return [f"{self.what}: transfer evidence on the model card, not its internal test"] + [
            f"{o}: site-held-out AUC not estimable ({why}); nothing recorded on the card"
            for o, why in self.not_estimable.items()]

    def to_json(self) -> dict[str, Any]:
        return {"sites": list(self.sites), "what": self.what, "not_estimable": dict(self.not_estimable),
                "recorded": {o: items[0].auc.to_json() for o, items in self.evidence.items()}}


def describe(sites: Sequence[str], split_sha256: str | None) -> str:
    """The evidence's ``what``: which sites, and of which split."""
    named = f"held-out sites {', '.join(sites)}" if sites else "held-out site part"
    split = f", split {split_sha256[:8]}" if split_sha256 else ""
    return f"{named} (never in training or validation){split}"


def site_evaluation(evs: Any, Y: np.ndarray, groups: np.ndarray, per_output: dict[str, Any],
                    outputs: Sequence[str], split_sha256: str | None,
                    min_patients: int = MIN_SITE_PATIENTS) -> SiteEvaluation:
    """Per output of ``per_output`` (the evaluation's metrics): an item, or why not.

    ``evs``: the EvalSet of the site part; ``Y``/``groups``: its scored rows' targets and patients.
    """
    in_part = evs.full.meta["path"].astype(str).isin(set(evs.paths)).to_numpy()
    sites = held_out_site_names(evs.full, in_part)
    what = describe(sites, split_sha256)
    evidence, missing = {}, {}
    for j, name in enumerate(outputs):
        y = Y[:, j]
        pos, neg = len(set(groups[y == 1])), len(set(groups[y == 0]))
        auc = Estimate.of((per_output.get(name) or {}).get("roc_auc"))
        if pos < min_patients or neg < min_patients or auc.value is None:
            missing[name] = f"{pos} positive and {neg} negative patients; {min_patients} of each needed"
            continue
        known = np.isfinite(y)
        evidence[name] = [Evidence(EvidenceKind.SITE_HELD_OUT, auc, what, int(known.sum()),
                                   len(set(groups[known])))]
    return SiteEvaluation(sites, what, evidence, missing)


def record(model_dir: str | Path, card: ModelCard, found: SiteEvaluation) -> None:
    """Replace the card's earlier model items of this kind (cross-site's recipe items stay)."""
    evidence = card.evidence.replaced((EvidenceKind.SITE_HELD_OUT,), found.evidence, recipe_only=False)
    update_card(model_dir, evidence=evidence.to_json())
