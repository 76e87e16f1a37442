"""The one confidence-interval type: a point estimate with its (patient-bootstrap) interval.

Written to JSON as ``{"value", "low", "high"[, "n_used"]}`` (:meth:`Estimate.to_json`) and read
back from that, a bare number, or anything else (n/a) with :meth:`Estimate.of`; the bootstrap
returns it, the reports, the app's pages and its API show it. No third-party imports, so the
web app can use it without the evaluation stack.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

CI_LEVEL = "95% CI"


def finite_number(v: Any) -> float | None:
    """``v`` as a float when it is a finite number, else None (bools, text, NaN, inf)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


@dataclass(frozen=True)
class Estimate:
    """``value`` with its interval ``[low, high]``; None (or NaN, as the bootstrap computes it)
    where undefined, e.g. AUC with one class present. ``n_used``: bootstrap resamples where
    the metric was defined."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n_used: int | None = None

    @classmethod
    def of(cls, raw: Any) -> Estimate:
        """From ``{"value", "low", "high"[, "n_used"]}``, an Estimate, a bare number, or n/a."""
        if isinstance(raw, Estimate):
            return raw
        if isinstance(raw, dict):
            n = raw.get("n_used")
            return cls(finite_number(raw.get("value")), finite_number(raw.get("low")), finite_number(raw.get("high")),
                       int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None)
        return cls(finite_number(raw))

    def __iter__(self) -> Iterator[float | None]:
        """``value, low, high = estimate`` (the bootstrap's former tuple; NumPy sees 3 numbers)."""
        return iter((self.value, self.low, self.high))

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> float | None:
        return (self.value, self.low, self.high)[i]

    def to_json(self) -> dict[str, Any]:
        """``{"value", "low", "high"}`` (+ ``n_used`` when known); NaN/inf become None."""
        out: dict[str, Any] = {"value": finite_number(self.value), "low": finite_number(self.low),
                               "high": finite_number(self.high)}
        if self.n_used is not None:
            out["n_used"] = self.n_used
        return out

    def includes(self, x: float) -> bool:
        """Whether the interval contains ``x`` (False without an interval)."""
        low, high = finite_number(self.low), finite_number(self.high)
        return low is not None and high is not None and low <= x <= high

    @property
    def text(self) -> str:
        value = finite_number(self.value)
        return "n/a" if value is None else f"{value:.3f}"

    @property
    def ci(self) -> str:
        """"0.850–0.950", or "" when the bootstrap gave no interval."""
        low, high = finite_number(self.low), finite_number(self.high)
        if low is None or high is None:
            return ""
        return f"{low:.3f}–{high:.3f}"

    def __str__(self) -> str:
        return f"{self.text} ({CI_LEVEL} {self.ci})" if self.ci and finite_number(self.value) is not None else self.text
