"""The one decision rule: per-output thresholds (multilabel), one class (softmax), missing ones."""
from __future__ import annotations

import numpy as np
import pytest

from training.evaluation import metrics as M
from training.evaluation.decision import decide, decision_thresholds

MULTI = ["No Finding", "Pneumonia", "COVID-19"]
PAIR = ["Normal", "Pneumonia"]


def test_multilabel_each_output_against_its_own_threshold_inclusive():
    P = np.array([[0.35, 0.79, 0.30], [0.29, 0.80, 0.9]])
    got = decide(P, "multilabel", {"No Finding": 0.3, "Pneumonia": 0.8, "COVID-19": 0.3}, MULTI,
                 missing=None)
    assert got.tolist() == [[True, False, True], [False, True, True]]


def test_two_class_softmax_uses_only_the_positive_class_threshold():
    P = np.array([[0.45, 0.55], [0.15, 0.85], [0.75, 0.25]])
    # "Normal" 0.6 is not used: 0.45 < 0.6 still gives "Normal" when Pneumonia is under 0.8
    got = decide(P, "single", {"Normal": 0.6, "Pneumonia": 0.8}, PAIR, missing=None)
    assert got.tolist() == [[True, False], [False, True], [True, False]]
    assert (got.sum(axis=1) == 1).all()
    low = decide(P, "single", {"Normal": 0.9, "Pneumonia": 0.2}, PAIR, missing=None)
    assert low.tolist() == [[False, True], [False, True], [False, True]]   # 0.25 >= 0.2


def test_softmax_of_more_classes_is_the_argmax_whatever_the_thresholds():
    names = ["a", "b", "c"]
    P = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    got = decide(P, "single", {"a": 0.9, "b": 0.1, "c": 0.1}, names, missing=None)
    assert got.tolist() == [[True, False, False], [False, False, True]]
    assert decision_thresholds("single", {"a": 0.9, "b": 0.1, "c": 0.1}, names,
                               missing=None) == [None, None, None]


@pytest.mark.parametrize("kind, names, P", [
    ("multilabel", MULTI, [[0.9, 0.9, 0.9]]),
    ("single", PAIR, [[0.1, 0.9]]),
    ("single", ["a", "b", "c"], [[0.1, 0.2, 0.7]]),
])
def test_no_thresholds_and_missing_none_is_no_decision(kind, names, P):
    assert not decide(np.array(P), kind, None, names, missing=None).any()
    assert decision_thresholds(kind, None, names, missing=None) == [None] * len(names)


def test_missing_number_stands_in_for_absent_thresholds():
    P = np.array([[0.55, 0.45, 0.5]])
    got = decide(P, "multilabel", {"No Finding": 0.6}, MULTI, missing=0.5)
    assert got.tolist() == [[False, False, True]]                        # 0.6, then 0.5, 0.5
    assert decide(np.array([[0.49, 0.51]]), "single", None, PAIR, missing=0.5).tolist() == [[False, True]]
    assert decision_thresholds("multilabel", {"No Finding": 0.6}, MULTI, missing=0.5) == [0.6, 0.5, 0.5]


def test_rows_without_probabilities_have_no_positive():
    P = np.array([[np.nan, np.nan], [0.2, 0.8]])
    assert decide(P, "single", {"Normal": 0.5, "Pneumonia": 0.5}, PAIR, missing=0.5).tolist() == \
        [[False, False], [False, True]]
    assert decide(np.array([[np.nan, 0.9, 0.9]]), "multilabel", None, MULTI, missing=0.5).sum() == 0


def test_empty_input_and_unknown_kind():
    assert decide(np.zeros((0, 2)), "single", {"Pneumonia": 0.3}, PAIR, missing=None).shape == (0, 2)
    with pytest.raises(ValueError, match="kind"):
        decide(np.zeros((1, 2)), "softmax", None, PAIR, missing=0.5)


@pytest.mark.parametrize("kind, thresholds", [
    ("single", {"Normal": 0.6, "Pneumonia": 0.8}),
    ("single", {"Normal": 0.1, "Pneumonia": 0.3}),
    ("multilabel", {"Normal": 0.3, "Pneumonia": 0.8}),
])
def test_served_thresholds_read_the_decision(kind, thresholds):
    """"probability >= threshold" equals the decision for every output (the API's contract)."""
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0, 1, 500)
    P = np.stack([1 - p1, p1], axis=1) if kind == "single" else rng.uniform(0, 1, (500, 2))
    shown = decision_thresholds(kind, thresholds, PAIR, missing=None)
    got = decide(P, kind, thresholds, PAIR, missing=None)
    np.testing.assert_array_equal(got, P >= np.array(shown)[None, :])
    if kind == "single":
        assert shown == pytest.approx([1 - thresholds["Pneumonia"], thresholds["Pneumonia"]])


def test_metrics_predictions_use_the_same_rule():
    rng = np.random.default_rng(1)
    p1 = rng.uniform(0, 1, 200)
    P = np.stack([1 - p1, p1], axis=1)
    t = {"Normal": 0.7, "Pneumonia": 0.35}
    np.testing.assert_array_equal(M.predictions(P, "single", t, PAIR),
                                  decide(P, "single", t, PAIR, missing=0.5).astype(int))
    Y = np.eye(2)[(p1 > 0.5).astype(int)]
    m = M.multiclass_metrics(Y, P, PAIR, t)
    want = (p1 >= 0.35).astype(int)
    assert m["confusion_matrix"][1][1] == int(((want == 1) & (Y[:, 1] == 1)).sum())
    P3 = rng.uniform(0, 1, (50, 3))
    np.testing.assert_array_equal(M.predictions(P3, "multilabel", [0.3, 0.8, 0.5], MULTI),
                                  decide(P3, "multilabel", dict(zip(MULTI, [0.3, 0.8, 0.5])), MULTI,
                                         missing=None).astype(int))
