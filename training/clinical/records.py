"""The card's ``metadata_encoder``: a fitted clinical encoder's parameters, typed.

Pure (no pandas, no scikit-learn) so the card validates it on load; written by
``training.clinical.encoder.ClinicalEncoder.to_dict`` and run by ``ClinicalEncoder.from_dict``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

ENCODER_VERSION = 1


def _names(raw: Any, what: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ValueError(f"metadata_encoder {what} must be a list of names, got {raw!r}")
    return list(raw)


def _numbers(raw: Any, what: str, n: int) -> list[float]:
    ok = isinstance(raw, list) and len(raw) == n and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    if not ok:
        raise ValueError(f"metadata_encoder {what} must be {n} numbers (one per encoded numeric column), "
                         f"got {raw!r}")
    return [float(v) for v in raw]


@dataclass(frozen=True)
class EncoderRecord:
    """Numeric fields (median-imputed, standardised, with missing indicators) and one-hot
    categorical fields; ``output_names``: the encoded columns, in the model's input order."""

    features: list[str]
    numeric: list[str]
    categorical: list[str]
    output_names: list[str]
    medians: list[float] = field(default_factory=list)
    indicators: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    version: int = ENCODER_VERSION

    @classmethod
    def from_json(cls, raw: Any) -> EncoderRecord:
        if isinstance(raw, EncoderRecord):
            return raw
        if not isinstance(raw, Mapping) or raw.get("version") != ENCODER_VERSION:
            raise ValueError(f"metadata_encoder must be an object of version {ENCODER_VERSION}")
        numeric = _names(raw.get("numeric"), "numeric")
        indicators = _names(raw.get("indicators", []), "indicators")
        n = len(numeric)
        scaled = n + len(indicators)   # the scaler sees the values and their missing indicators
        cats = raw.get("categories") or {}
        if not isinstance(cats, Mapping):
            raise ValueError("metadata_encoder categories must be an object")
        rec = cls(_names(raw.get("features"), "features"), numeric,
                  _names(raw.get("categorical"), "categorical"), _names(raw.get("output_names"), "output_names"),
                  _numbers(raw.get("medians", []), "medians", n) if n else [], indicators,
                  _numbers(raw.get("mean", []), "mean", scaled) if n else [],
                  _numbers(raw.get("scale", []), "scale", scaled) if n else [],
                  {str(k): _names(v, f"categories of {k!r}") for k, v in cats.items()})
        if rec.output_names != rec.expected_names():
            raise ValueError("metadata_encoder is inconsistent (output_names differ from its fields)")
        return rec

    def expected_names(self) -> list[str]:
        """The encoded column names its fields imply."""
        names = list(self.numeric) + [f"{f}_missing" for f in self.indicators]
        for f in self.categorical:
            names += [f"{f}={c}" for c in self.categories.get(f, [])]
        return names

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "features": self.features,
                               "numeric": self.numeric, "categorical": self.categorical}
        if self.numeric:
            out.update(medians=self.medians, indicators=self.indicators, mean=self.mean, scale=self.scale)
        if self.categorical:
            out["categories"] = self.categories
        out["output_names"] = self.output_names
        return out
