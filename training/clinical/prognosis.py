"""Prognosis from an early chest X-ray (ieee8023 meta), with the authors' prospective protocol.

Protocol (Cohen et al., arXiv 2006.11988): use only images taken early, ``0 < offset < 8``
days; leave out patients who were already intubated or in the ICU at the time of such an
image (``intubation_present == Y`` or ``in_icu == Y``); one label and one image per patient
(the earliest eligible image); patients whose outcome is not Y/N are excluded (unknown,
never a negative). Positive classes: ``survival`` → **death** (survival == N is 1);
``went_icu``, ``intubated``, ``needed_supplemental_O2`` → Y is 1.

Numbers are small, so models are scored by repeated patient-grouped stratified CV
(``StratifiedGroupKFold``): out-of-fold probabilities averaged over repeats, every patient
scored once, then AUC and Brier score with 95 % CIs by patient bootstrap.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedGroupKFold

from training.errors import DataError
from training.evaluation.bootstrap import bootstrap_ci

#: task → (meta column, value that is the positive class, description of class 1)
TASKS: dict[str, tuple[str, str, str]] = {
    "survival": ("survival", "N", "death (survival == N)"),
    "went_icu": ("went_icu", "Y", "went to the ICU"),
    "intubated": ("intubated", "Y", "was intubated"),
    "needed_supplemental_O2": ("needed_supplemental_O2", "Y", "needed supplemental O2"),
}
WINDOW = (0.0, 8.0)  # days, both bounds exclusive
ALREADY = ("intubation_present", "in_icu")

FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _task(name: str) -> tuple[str, str, str]:
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown prognosis task {name!r}",
                        hint=f"choose one of: {', '.join(TASKS)}") from None


def cohort(meta: pd.DataFrame, task: str, window: tuple[float, float] = WINDOW,
           covid_only: bool = False) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per eligible patient: ``row`` (index into ``meta``), ``patient``, ``offset``, ``y``.

    Also returns counts of each exclusion step (for the report). The label is the patient's
    outcome over all its rows (any positive value wins; a patient with both values is
    counted in ``conflicting``).
    """
    column, positive, _ = _task(task)
    needed = ["patient", "offset", column, *ALREADY]
    absent = [c for c in needed if c not in meta.columns]
    if absent:
        raise DataError(f"metadata lacks column(s) {absent} for prognosis task {task!r}",
                        hint="load the ieee8023 collection (its metadata.csv has these columns)")
    m = meta.reset_index(drop=True).assign(row=lambda d: np.arange(len(d)))
    counts: dict[str, int] = {"images": len(m), "patients": int(m["patient"].nunique())}
    if covid_only:
        m = m[m["finding"].astype(str).str.contains("COVID-19", regex=False)]
        counts["covid_patients"] = int(m["patient"].nunique())
    labels = _patient_labels(m, column, positive, counts)
    offset = pd.to_numeric(m["offset"], errors="coerce")
    early = m[(offset > window[0]) & (offset < window[1])]
    counts["patients_with_early_image"] = int(early["patient"].nunique())
    already = (early[list(ALREADY)].astype(str) == "Y").any(axis=1)
    excluded = set(early.loc[already, "patient"])  # stricter: the whole patient goes
    counts["patients_already_intubated_or_icu"] = len(excluded)
    early = early[~early["patient"].isin(excluded)]
    first = early.sort_values(["offset", "row"], kind="mergesort").groupby("patient").head(1)
    first = first.assign(y=first["patient"].map(labels))
    counts["patients_unknown_outcome"] = int(first["y"].isna().sum())
    out = first.dropna(subset=["y"])[["row", "patient", "offset", "y"]]
    out = out.astype({"y": int}).sort_values("row").reset_index(drop=True)
    counts.update(n=len(out), positives=int(out["y"].sum()))
    return out, counts


def _patient_labels(m: pd.DataFrame, column: str, positive: str, counts: dict) -> pd.Series:
    """1/0 per patient (NaN when every row is unknown); any positive row wins."""
    value = m[column].astype(str).str.upper()
    known = value.isin(["Y", "N"])
    is_pos = (value == positive).where(known)
    per = is_pos.groupby(m["patient"]).agg(["max", "min"])
    counts["conflicting"] = int(((per["max"] == 1) & (per["min"] == 0)).sum())
    return per["max"].astype(float)


def cv_predict(fit_predict: FitPredict, y: np.ndarray, groups: np.ndarray, folds: int = 5,
               repeats: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold scores, averaged over ``repeats`` runs of StratifiedGroupKFold.

    ``fit_predict(train_idx, test_idx)`` fits on the training rows only and returns scores of
    the test rows. ``folds`` shrinks to the size of the smaller class when needed.
    """
    y = np.asarray(y).astype(int)
    k = min(folds, int(np.bincount(y, minlength=2).min()))
    if k < 2:
        raise DataError(f"too few patients per class for cross-validation ({np.bincount(y, minlength=2).tolist()})",
                        hint="a prognosis task needs at least 2 positive and 2 negative patients")
    total = np.zeros(len(y))
    for r in range(repeats):
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + r)
        for train, test in cv.split(np.zeros(len(y)), y, groups):
            total[test] += fit_predict(train, test)
    return total / repeats


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(brier_score_loss(y, p)) if len(np.unique(y)) == 2 else float("nan")


def score(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int = 1000,
          seed: int = 0) -> dict[str, Any]:
    """n, positives, ROC-AUC and Brier with patient-bootstrap 95 % CIs."""
    y = np.asarray(y, dtype=float)
    out: dict[str, Any] = {"n": int(len(y)), "positives": int(y.sum())}
    for name, fn in (("roc_auc", "roc_auc"), ("brier", brier)):
        ci = bootstrap_ci(fn, y, p, groups=groups, n_boot=n_boot, seed=seed)
        out[name] = ci.to_json()
    return out


def prevalence_predict(y: np.ndarray) -> FitPredict:
    """The baseline: every test patient gets its training fold's prevalence."""
    return lambda train, test: np.full(len(test), float(np.mean(y[train])))


def baseline_score(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    """:func:`score` of the prevalence baseline: Brier of its out-of-fold prevalences ``p``;
    AUC of one constant (0.5 by definition).

    Pooled out-of-fold prevalences rank patients by an artifact (a fold holding more
    positives trains on fewer, so its patients get *lower* scores): their AUC is well below
    0.5 with small n. A prevalence model has no ranking, so its AUC is taken as 0.5.
    """
    out = score(y, p, groups, n_boot, seed)
    out["roc_auc"] = score(y, np.full(len(y), float(np.mean(y))), groups, n_boot, seed)["roc_auc"]
    return out
