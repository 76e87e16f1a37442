"""The gate's vocabulary: a :class:`Reason` and the :class:`GateResult` combining them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Level = Literal["warn", "refuse"]
VERDICTS = ("accept", "warn", "refuse")


@dataclass(frozen=True)
class Reason:
    """Why the gate warns about or refuses an image (``code`` is stable, for programs)."""

    code: str
    level: Level
    message: str
    model: str | None = None            # set for a model's own out-of-distribution reason

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class GateResult:
    """The verdict on one image: ``refuse`` if any reason refuses, ``warn`` if any warns."""

    reasons: list[Reason] = field(default_factory=list)
    #: per model: {"score", "p_value", "threshold", "warn_threshold", "verdict"} (gated models)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        levels = {r.level for r in self.reasons}
        return "refuse" if "refuse" in levels else "warn" if "warn" in levels else "accept"

    @property
    def refused(self) -> bool:
        return self.verdict == "refuse"

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": [r.to_json() for r in self.reasons],
                "models": self.models}


#: The bank's false-refusal budget: at most this share of in-distribution X-rays refused
#: (Bonferroni over the models' conformal p-values: a bound, whatever their correlation).
REFUSE_ALPHA = 0.03
#: A model's own p-value under this: its column gets a warning.
WARN_P = 0.02


def judge(image: list[Reason], models: dict[str, dict[str, Any]]) -> GateResult:
    """Combine the image checks with each gated model's OOD p-value.

    ``models``: ``{name: {"score", "p_value", ...}}`` (:func:`training.gate.assess.model_scores`).
    Refused when ``n · min p ≤ REFUSE_ALPHA`` for the n gated models; otherwise a model whose
    own p-value is under :data:`WARN_P` adds a warning. Each entry gets its ``verdict``:
    "ood" (it alone triggers the refusal), "unusual" or "ok".
    """
    reasons = list(image)
    n = len(models)
    for m in models.values():
        p = m["p_value"]
        m["verdict"] = "ood" if n * p <= REFUSE_ALPHA else "unusual" if p <= WARN_P else "ok"
    ood = [name for name, m in models.items() if m["verdict"] == "ood"]
    if ood:
        reasons.append(Reason(
            "out_of_distribution", "refuse",
            f"{len(ood)} of {n} models find this image unlike the chest X-rays they were trained "
            f"on ({', '.join(ood)}): fewer than {REFUSE_ALPHA / n:.1%} of their validation X-rays "
            "score as far out. It is probably not a frontal chest radiograph."))
        return GateResult(reasons, models)
    for name, m in models.items():
        if m["verdict"] == "unusual":
            reasons.append(Reason("unusual", "warn",
                                  f"{name}: this image is unusual for it (only {m['p_value']:.1%} of its "
                                  "validation X-rays score as far out); read its column with care.",
                                  model=name))
    return GateResult(reasons, models)
