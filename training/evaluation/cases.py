"""Case-level comparison of several models on one output: where they disagree, which errors
they share, and how well their decisions agree.

Plain functions on arrays (one row per test case, one model per row of a matrix), then
:func:`output_cases`, which assembles them into one typed record per output. A model whose
card gives an output no threshold (``decided`` False) has no decisions there: it is left out
of the error and agreement counts, and :attr:`OutputCases.undecided` says why. Unknown truths
(NaN) count as neither right nor wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import binom, chi2

from training.evaluation.bootstrap import bootstrap_ci
from training.evaluation.estimate import Estimate

#: Gallery size by spread of probabilities (every split decision is added to it).
GALLERY_K = 24
#: The files ``compare`` writes: the comparison (shown and served by the app), and the gallery
#: cases' image paths (read only by the app's "open this case" route: never shown).
CASES_FILE, CASE_FILES = "cases.json", "case_files.json"
#: Below this many discordant cases McNemar's test is the exact binomial one.
EXACT_BELOW = 25


def spread(P: np.ndarray) -> np.ndarray:
    """``(N,)`` largest minus smallest probability of each case over models ``P (M, N)``."""
    P = np.asarray(P, dtype=np.float64)
    return P.max(axis=0) - P.min(axis=0)


def split_cases(D: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the models' decisions ``D (M, N)`` are not all the same."""
    D = np.asarray(D, dtype=bool)
    return D.any(axis=0) & ~D.all(axis=0) if len(D) else np.zeros(D.shape[1:], bool)


def gallery_rows(P: np.ndarray, D: np.ndarray, k: int = GALLERY_K,
                 known: np.ndarray | None = None) -> list[int]:
    """The ``k`` cases with the largest spread plus every split case, largest spread first
    (ties: lower case index first). With ``known`` (bool per case) only cases with a known
    truth: an output kept within one source has none elsewhere, where its spread says nothing."""
    s = spread(P)
    keep = np.ones(len(s), bool) if known is None else np.asarray(known, bool)
    order = [int(i) for i in np.lexsort((np.arange(len(s)), -s)) if keep[i]]  # spread desc, then index
    chosen = set(order[:k]) | set(np.flatnonzero(split_cases(D) & keep).tolist())
    return [int(i) for i in order if int(i) in chosen]


def wrong(y: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``(M, N)`` bool: decision differs from a known truth (NaN truths: never wrong)."""
    y = np.asarray(y, dtype=np.float64)
    return (np.asarray(D, dtype=bool) != (y == 1)) & ~np.isnan(y)


def error_subsets(W: np.ndarray, names: Sequence[str]) -> list[tuple[tuple[str, ...], int]]:
    """UpSet-style counts: for each exact set of models wrong on a case, how many cases;
    largest first (ties: fewer models, then name order)."""
    counts: dict[tuple[int, ...], int] = {}
    for col in np.asarray(W, dtype=bool).T:
        if col.any():
            key = tuple(np.flatnonzero(col).tolist())
            counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))
    return [(tuple(names[i] for i in key), n) for key, n in ranked]


def alone_right(y: np.ndarray, W: np.ndarray, names: Sequence[str]) -> dict[str, list[int]]:
    """Per model, the cases with a known truth it alone gets right (every other model wrong)."""
    W = np.asarray(W, dtype=bool)
    known = ~np.isnan(np.asarray(y, dtype=np.float64))
    if len(W) < 2:
        return {n: [] for n in names}
    return {n: np.flatnonzero(known & ~W[i] & (W.sum(axis=0) == len(W) - 1)).tolist()
            for i, n in enumerate(names)}


def kappa(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None) -> np.ndarray | float:
    """Cohen's κ of two binary decision vectors (``w (B, N)``: bootstrap row weights, one κ
    each); NaN where chance agreement is 1 (both constant and equal)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    W = np.ones((1, len(a))) if w is None else np.asarray(w, dtype=np.float64)
    n = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        po = W @ (a == b) / n
        pa, pb = W @ a / n, W @ b / n
        pe = pa * pb + (1 - pa) * (1 - pb)
        k = np.where(np.isclose(pe, 1.0), np.nan, (po - pe) / (1 - pe))
    return float(k[0]) if w is None else k


@dataclass(frozen=True)
class _Kappa:
    """κ as a bootstrap metric (``y``, ``p``: the two models' decisions)."""

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        return kappa(a, b)

    def batched(self, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
        return kappa(a, b, w)


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on paired right/wrong: ``b`` cases only the first model gets right,
    ``c`` only the second."""

    b: int
    c: int
    statistic: float | None   # χ² with continuity correction (None for the exact test)
    p_value: float
    method: str               # "exact binomial" | "chi-square, continuity-corrected"

    def to_json(self) -> dict[str, Any]:
        return {"b": self.b, "c": self.c, "statistic": self.statistic, "p_value": self.p_value,
                "method": self.method}


def mcnemar(right_a: np.ndarray, right_b: np.ndarray) -> McNemar:
    """Exact two-sided binomial test below :data:`EXACT_BELOW` discordant cases, else χ²."""
    ra, rb = np.asarray(right_a, dtype=bool), np.asarray(right_b, dtype=bool)
    b, c = int((ra & ~rb).sum()), int((~ra & rb).sum())
    if b + c < EXACT_BELOW:
        p = min(1.0, 2 * float(binom.cdf(min(b, c), b + c, 0.5))) if b + c else 1.0
        return McNemar(b, c, None, p, "exact binomial")
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    return McNemar(b, c, float(stat), float(chi2.sf(stat, 1)), "chi-square, continuity-corrected")


@dataclass(frozen=True)
class PairAgreement:
    """Two models' decisions on one output: κ (patient-bootstrap CI) and McNemar's test."""

    a: str
    b: str
    kappa: Estimate
    mcnemar: McNemar

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "kappa": self.kappa.to_json(),
                "mcnemar": self.mcnemar.to_json()}


def pairwise(y: np.ndarray, D: np.ndarray, names: Sequence[str], groups: Sequence | None,
             n_boot: int, seed: int = 0) -> list[PairAgreement]:
    """κ on all cases and McNemar's test on the cases with a known truth, for every pair."""
    y = np.asarray(y, dtype=np.float64)
    D = np.asarray(D, dtype=bool)
    known = ~np.isnan(y)
    R = ~wrong(y, D)
    out = []
    for i, j in combinations(range(len(names)), 2):
        k = bootstrap_ci(_Kappa(), D[i], D[j], groups, n_boot, seed=seed)
        out.append(PairAgreement(names[i], names[j], k, mcnemar(R[i][known], R[j][known])))
    return out


@dataclass
class OutputCases:
    """The case-level comparison of one output (case = row index of the test part)."""

    output: str
    models: list[str]                 # every compared model (the gallery uses them all)
    deciding: list[str]               # the models with a decision on this output
    undecided: dict[str, str]         # model -> why it has no decision here
    gallery: list[int]
    spread: dict[int, float]          # gallery case -> spread of probabilities
    split: list[int]                  # gallery cases where the deciding models disagree
    n_known: int                      # cases with a known truth
    errors: dict[str, int]            # deciding model -> wrong decisions
    shared: dict[int, int]            # k -> cases exactly k deciding models get wrong
    subsets: list[tuple[tuple[str, ...], int]]
    alone_right: dict[str, list[int]]
    pairs: list[PairAgreement] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"output": self.output, "models": self.models, "deciding": self.deciding,
                "undecided": self.undecided, "gallery": self.gallery,
                "spread": {str(c): s for c, s in self.spread.items()}, "split": self.split,
                "n_known": self.n_known, "errors": self.errors,
                "shared": {str(k): n for k, n in self.shared.items()},
                "subsets": [{"models": list(m), "count": n} for m, n in self.subsets],
                "alone_right": self.alone_right, "pairs": [p.to_json() for p in self.pairs]}


def output_cases(output: str, y: np.ndarray, probs: Mapping[str, np.ndarray],
                 positive: Mapping[str, np.ndarray], undecided: Mapping[str, str],
                 groups: Sequence | None, k: int = GALLERY_K, n_boot: int = 1000,
                 seed: int = 0) -> OutputCases:
    """One output: ``probs``/``positive`` ``{model: (N,)}`` (calibrated; the decision rule's
    output), ``undecided`` ``{model: why}`` for the models without a decision here."""
    names = list(probs)
    deciding = [n for n in names if n not in undecided]
    P = np.stack([np.asarray(probs[n], dtype=np.float64) for n in names])
    D = np.stack([np.asarray(positive[n], dtype=bool) for n in deciding]) if deciding \
        else np.zeros((0, P.shape[1]), bool)
    rows = gallery_rows(P, D, k, known=~np.isnan(np.asarray(y, dtype=np.float64)))
    s, splits = spread(P), split_cases(D)
    W = wrong(y, D)
    per_case = W.sum(axis=0)
    return OutputCases(
        output=output, models=names, deciding=deciding,
        undecided={n: undecided[n] for n in names if n in undecided}, gallery=rows,
        spread={c: float(s[c]) for c in rows}, split=[c for c in rows if splits[c]],
        n_known=int((~np.isnan(np.asarray(y, dtype=np.float64))).sum()),
        errors={n: int(W[i].sum()) for i, n in enumerate(deciding)},
        shared={m: int((per_case == m).sum()) for m in range(1, len(deciding) + 1)},
        subsets=error_subsets(W, deciding), alone_right=alone_right(y, W, deciding),
        pairs=pairwise(y, D, deciding, groups, n_boot, seed) if len(deciding) > 1 else [])
