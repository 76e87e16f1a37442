"""Prognosis cohort (early window, already-intubated/ICU exclusion, one row per patient) and CV."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.clinical import prognosis as P
from training.errors import DataError


def _meta(rows: list[dict]) -> pd.DataFrame:
    base = {"offset": np.nan, "survival": "NA", "went_icu": "NA", "intubated": "NA",
            "needed_supplemental_O2": "NA", "intubation_present": "NA", "in_icu": "NA",
            "finding": "COVID-19"}
    return pd.DataFrame([{**base, **r} for r in rows])


META = _meta([
    {"patient": "a", "offset": 12, "survival": "N"},                  # 0 late only → out
    {"patient": "b", "offset": 3, "survival": "Y"},                   # 1
    {"patient": "b", "offset": 1, "survival": "Y"},                   # 2 earliest of b → kept
    {"patient": "c", "offset": 0, "survival": "N"},                   # 3 offset 0 is not > 0
    {"patient": "c", "offset": 8, "survival": "N"},                   # 4 offset 8 is not < 8
    {"patient": "d", "offset": 2, "survival": "N", "in_icu": "Y"},    # 5 already in ICU → out
    {"patient": "d", "offset": 5, "survival": "N"},                   # 6 (patient excluded)
    {"patient": "e", "offset": 4, "survival": "N", "intubation_present": "Y"},  # 7 intubated → out
    {"patient": "f", "offset": 6},                                    # 8
    {"patient": "f", "offset": 20, "survival": "N"},                  # 9 label from a later row
    {"patient": "g", "offset": 2, "survival": "NA"},                  # 10 unknown outcome → out
])


def test_cohort_applies_the_prospective_protocol():
    c, counts = P.cohort(META, "survival")
    assert c["patient"].tolist() == ["b", "f"]
    assert c["row"].tolist() == [2, 8]  # b's earliest early image; f's only early one
    assert c["y"].tolist() == [0, 1]  # positive class of "survival" = death
    assert counts["patients_already_intubated_or_icu"] == 2
    assert counts["patients_unknown_outcome"] == 1
    assert counts["n"] == 2 and counts["positives"] == 1
    assert not c["patient"].duplicated().any()


@pytest.mark.parametrize("task", list(P.TASKS))
def test_every_task_uses_yes_as_positive_except_survival(task):
    meta = _meta([{"patient": "x", "offset": 2, P.TASKS[task][0]: "Y"},
                  {"patient": "z", "offset": 2, P.TASKS[task][0]: "N"}])
    c, _ = P.cohort(meta, task)
    expected = [0, 1] if task == "survival" else [1, 0]
    assert c["y"].tolist() == expected


def test_covid_only_and_errors():
    meta = META.assign(finding=["Streptococcus"] * 2 + ["COVID-19"] * 9)
    c, _ = P.cohort(meta, "survival", covid_only=True)
    assert "b" in c["patient"].tolist()  # b has one COVID row: kept
    with pytest.raises(DataError, match="unknown prognosis task"):
        P.cohort(META, "death")
    with pytest.raises(DataError, match="lacks column"):
        P.cohort(META.drop(columns="in_icu"), "survival")


def test_cv_predict_scores_every_patient_once_out_of_fold():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 15)
    x = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, 1.0, len(y)))))
    groups = np.array([f"p{i}" for i in range(len(y))])
    seen_train: list[set] = []

    def fit_predict(tr, te):
        assert not set(tr) & set(te)
        seen_train.append(set(tr))
        return x[te]

    p = P.cv_predict(fit_predict, y, groups, folds=5, repeats=2)
    np.testing.assert_allclose(p, x)  # each patient's own out-of-fold score, averaged
    assert len(seen_train) == 10
    s = P.score(y, p, groups, n_boot=200)
    assert s["n"] == 30 and s["positives"] == 15 and s["roc_auc"]["value"] > 0.8
    assert s["roc_auc"]["low"] <= s["roc_auc"]["value"] <= s["roc_auc"]["high"]
    prev = P.cv_predict(P.prevalence_predict(y), y, groups)
    base = P.baseline_score(y, prev, groups, n_boot=200)
    assert base["roc_auc"]["value"] == 0.5 and base["roc_auc"]["low"] == 0.5
    assert base["brier"]["value"] == pytest.approx(0.25, abs=0.02)


def test_cv_predict_refuses_a_single_positive():
    with pytest.raises(DataError, match="too few patients"):
        P.cv_predict(lambda tr, te: np.zeros(len(te)), np.array([0, 0, 0, 1]), np.arange(4))
