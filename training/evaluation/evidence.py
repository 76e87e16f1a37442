"""Transfer evidence: per output, which ROC-AUC measurements exist, and where they were made.

The card's ``evidence`` section (``{output: [Evidence, ...]}``). Pure records (no NumPy, no
Keras) so the web app reads them without the evaluation stack. Writers: ``evaluate`` (internal
or external test, through :func:`evidence_from_test`; site-held-out on a split's ``site`` part,
``evaluation.site_evidence``), ``cross-site --card`` (site-held-out, ``recipe_only``). Readers: the app's pages, ``compare``, the demo's summary, via
:meth:`TransferEvidence.status`.

Migration: a card written before this section has none; :func:`evidence_from_test` turns its
stored test evaluation into items on load (the card does it), so every card answers ``status``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

from training.evaluation.estimate import Estimate, finite_number
from training.evaluation.records import TestEvaluation

SUPPORTED = "transfer supported"
BELOW_CHANCE = "below chance elsewhere"
TRAINING_ONLY = "validated only on its training sources"
STATUSES = (SUPPORTED, BELOW_CHANCE, TRAINING_ONLY)


class EvidenceKind(str, Enum):
    """Where an output's AUC was measured."""

    INTERNAL = "internal"            # test part of the training sources' own split
    SITE_HELD_OUT = "site_held_out"  # sites never seen in training (cross-site, a split's site part)
    EXTERNAL = "external"            # a collection never seen in training


#: The kinds that say something about transfer (an internal test shares sites with training).
TRANSFER_KINDS = (EvidenceKind.SITE_HELD_OUT, EvidenceKind.EXTERNAL)


def _fail(what: str) -> None:
    raise ValueError(f"evidence {what}")


def _count(raw: Mapping[str, Any], key: str) -> int:
    v = raw.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or v != int(v):
        _fail(f"{key} must be a non-negative whole number, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class Evidence:
    """One measurement of one output's ROC-AUC (95 % patient-bootstrap CI)."""

    kind: EvidenceKind
    auc: Estimate
    what: str               # e.g. "test part of split 1a2b3c (patient-disjoint)"
    n_images: int
    n_patients: int
    recipe_only: bool = False  # measured on models trained with this recipe without the site

    @classmethod
    def from_json(cls, raw: Any) -> Evidence:
        if isinstance(raw, cls):
            return raw
        if not isinstance(raw, Mapping):
            _fail(f"item must be a JSON object, got {type(raw).__name__}")
        kinds = [k.value for k in EvidenceKind]
        if raw.get("kind") not in kinds:
            _fail(f"kind must be one of {kinds}, got {raw.get('kind')!r}")
        if not isinstance(raw.get("auc"), (Mapping, int, float)) or isinstance(raw.get("auc"), bool):
            _fail("auc must be an object {value, low, high}")
        auc = Estimate.of(raw["auc"])
        for name, v in (("value", auc.value), ("low", auc.low), ("high", auc.high)):
            if v is not None and not 0 <= v <= 1:
                _fail(f"auc {name} must lie in [0, 1], got {v!r}")
        if auc.low is not None and auc.high is not None and auc.low > auc.high:
            _fail(f"auc interval [{auc.low}, {auc.high}] is reversed")
        if not isinstance(raw.get("what"), str) or not raw["what"]:
            _fail("what must say where it was measured (a non-empty text)")
        recipe_only = raw.get("recipe_only", False)
        if not isinstance(recipe_only, bool):
            _fail(f"recipe_only must be true or false, got {recipe_only!r}")
        return cls(EvidenceKind(raw["kind"]), auc, raw["what"], _count(raw, "n_images"),
                   _count(raw, "n_patients"), recipe_only)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "auc": self.auc.to_json(), "what": self.what,
                "n_images": self.n_images, "n_patients": self.n_patients, "recipe_only": self.recipe_only}


@dataclass
class TransferEvidence:
    """The card's ``evidence``: per output, its AUC measurements (any number, any kinds)."""

    by_output: dict[str, list[Evidence]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any) -> TransferEvidence:
        if isinstance(raw, cls):
            return raw
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            _fail(f"must be a JSON object {{output: [items]}}, got {type(raw).__name__}")
        out = {}
        for output, items in raw.items():
            if not isinstance(items, list):
                _fail(f"of output {output!r} must be a list of items")
            out[str(output)] = [Evidence.from_json(i) for i in items]
        return cls(out)

    def to_json(self) -> dict[str, Any]:
        return {o: [e.to_json() for e in items] for o, items in self.by_output.items()}

    def items(self, output: str, kind: EvidenceKind | None = None) -> list[Evidence]:
        """``output``'s measurements, of ``kind`` only when given."""
        return [e for e in self.by_output.get(output, []) if kind is None or e.kind == kind]

    def status(self, output: str) -> str:
        """SUPPORTED when a site-held-out or external CI lies wholly above 0.5; BELOW_CHANCE
        when one lies wholly below (and none above); else TRAINING_ONLY. Strict bounds: a CI
        touching 0.5 does not exclude chance."""
        transfer = [e.auc for e in self.by_output.get(output, []) if e.kind in TRANSFER_KINDS]
        if any(finite_number(a.low) is not None and a.low > 0.5 for a in transfer):
            return SUPPORTED
        if any(finite_number(a.high) is not None and a.high < 0.5 for a in transfer):
            return BELOW_CHANCE
        return TRAINING_ONLY

    def best_transfer(self, output: str) -> Evidence | None:
        """The held-out item with the highest CI lower bound (what a page shows beside the status)."""
        transfer = [e for e in self.by_output.get(output, []) if e.kind in TRANSFER_KINDS]
        return max(transfer, key=lambda e: -1.0 if e.auc.low is None else e.auc.low, default=None)

    def replaced(self, kinds: tuple[EvidenceKind, ...], new: Mapping[str, list[Evidence]],
                 recipe_only: bool | None = None) -> TransferEvidence:
        """A copy where the items of ``kinds`` (and of ``recipe_only``, when given) are ``new``'s,
        others kept: a writer re-running replaces its own earlier measurements, never another
        writer's (``cross-site``'s recipe items and ``evaluate --part site``'s model items)."""
        def mine(e: Evidence) -> bool:
            return e.kind in kinds and (recipe_only is None or e.recipe_only == recipe_only)

        outputs = list(self.by_output) + [o for o in new if o not in self.by_output]
        return TransferEvidence({o: [e for e in self.by_output.get(o, []) if not mine(e)]
                                 + list(new.get(o, [])) for o in outputs})

    def with_test(self, test: TestEvaluation) -> TransferEvidence:
        """A copy with ``evaluate``'s items of ``test`` in place of its earlier ones of the same
        kind (internal or external: the card holds one test evaluation); other items stay."""
        return self.replaced((_test_kind(test),), evidence_from_test(test))


def _test_kind(test: TestEvaluation) -> EvidenceKind:
    return EvidenceKind.EXTERNAL if test.test_set == "external" else EvidenceKind.INTERNAL


def evidence_from_test(test: TestEvaluation | None) -> dict[str, list[Evidence]]:
    """The INTERNAL or EXTERNAL items of a stored test evaluation (outputs with a ROC-AUC).

    The one converter: ``evaluate`` writes its items through it, and a card saved before the
    ``evidence`` section gets them from its ``metrics.test`` on load.
    """
    if test is None:
        return {}
    kind = _test_kind(test)
    split = f" of split {test.split_sha256[:8]}" if test.split_sha256 else ""
    what = (f"external collection ({test.part or 'all'} part{split})" if kind is EvidenceKind.EXTERNAL
            else f"{test.part or 'test'} part{split} (patient-disjoint, same sources as training)")
    out = {}
    for output, m in test.metrics.per_output.items():
        auc = m.get("roc_auc")
        if finite_number(auc.value) is None:
            continue
        out[output] = [Evidence(kind, auc, what, test.n_images or 0, test.n_patients or 0)]
    return out
