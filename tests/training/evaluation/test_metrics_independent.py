"""The evaluation's numbers against an independent computation on a fixed fixture.

Every expected value below was counted by hand from the literal arrays (confusion counts,
then the textbook formulas; ROC-AUC as the share of positive/negative pairs ranked right,
ties one half), so a change in ``training.evaluation.metrics`` or the bootstrap that moves
a number fails here even if it moves both of the package's own implementations together.
"""
import numpy as np
import pytest

from training.evaluation.bootstrap import ScalarMetric, bootstrap_ci
from training.evaluation.metrics import batched_metrics, compute_metrics

NAN = float("nan")

# Multilabel: two sigmoid outputs, one unknown label (row 7 of A), a score equal to its
# threshold (row 9 of A, row 9 of B: positive, the rule is p >= t) and a tied score pair
# across classes (rows 2 and 6 of A: 0.4 each).
NAMES = ["A", "B"]
Y = np.array([[1, 0], [1, 1], [1, 0], [0, 0], [0, 1], [0, 0], [0, 0], [NAN, 1], [1, 0], [0, 0]])
P = np.array([[0.90, 0.20], [0.60, 0.35], [0.40, 0.10], [0.70, 0.31], [0.20, 0.25],
              [0.10, 0.05], [0.40, 0.60], [0.95, 0.80], [0.55, 0.29], [0.50, 0.30]])
THRESHOLDS = {"A": 0.5, "B": 0.3}

#: Hand counts. A (row 7 ignored): TP rows 0,1,8; FN row 2; FP rows 3,9; TN rows 4,5,6.
#: B: TP rows 1,7; FN row 4; FP rows 3,6,9; TN rows 0,2,5,8.
COUNTS = {"A": dict(tp=3, fn=1, fp=2, tn=3), "B": dict(tp=2, fn=1, fp=3, tn=4)}
#: A: positives 0.9, 0.6, 0.4, 0.55 against negatives 0.7, 0.2, 0.1, 0.4, 0.5:
#: 5 + 4 + (2 + 1/2 for the tie) + 4 = 15.5 of 20 pairs. B: 6 + 3 + 7 = 16 of 3 x 7.
AUC = {"A": 15.5 / 20, "B": 16 / 21}


def by_hand(tp: int, fn: int, fp: int, tn: int) -> dict[str, float]:
    """The textbook definitions, nothing shared with the package."""
    sens, spec = tp / (tp + fn), tn / (tn + fp)
    return {"recall": sens, "specificity": spec, "precision": tp / (tp + fp), "npv": tn / (tn + fn),
            "f1": 2 * tp / (2 * tp + fp + fn), "balanced_accuracy": (sens + spec) / 2,
            "accuracy": (tp + tn) / (tp + fn + fp + tn)}


def test_hand_formulas_spelled_out():
    """The fixture's expectations as plain fractions (guards the helper above, too)."""
    a = by_hand(**COUNTS["A"])
    assert (a["recall"], a["specificity"], a["precision"], a["npv"]) == (3 / 4, 3 / 5, 3 / 5, 3 / 4)
    assert a["f1"] == pytest.approx(2 / 3) and a["balanced_accuracy"] == pytest.approx(0.675)
    b = by_hand(**COUNTS["B"])
    assert (b["recall"], b["specificity"], b["precision"], b["npv"]) == (2 / 3, 4 / 7, 2 / 5, 4 / 5)
    assert b["f1"] == pytest.approx(0.5)


def _check(got: dict, want: dict) -> None:
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_multilabel_metrics_match_hand_counts():
    m = compute_metrics(Y, P, "multilabel", NAMES, THRESHOLDS)
    for out in NAMES:
        per = m["per_output"][out]
        assert {k: per[k] for k in ("tp", "fn", "fp", "tn")} == COUNTS[out]
        assert per["n"] == sum(COUNTS[out].values())  # the NaN label is not counted
        _check(per, {**by_hand(**COUNTS[out]), "roc_auc": AUC[out]})
    for name in ("recall", "specificity", "precision", "npv", "f1", "balanced_accuracy"):
        want = np.mean([by_hand(**COUNTS[o])[name] for o in NAMES])
        assert m["macro"][name] == pytest.approx(want, abs=1e-12), name
    pooled = {k: COUNTS["A"][k] + COUNTS["B"][k] for k in ("tp", "fn", "fp", "tn")}
    _check(m["micro"], by_hand(**pooled))


def test_bootstrap_point_estimates_match_hand_counts():
    """The bootstrap's point value and its vectorised metrics on the unresampled data."""
    ones = np.ones((1, len(Y)))
    batched = batched_metrics(Y, P, "multilabel", NAMES, THRESHOLDS, ones)
    for j, out in enumerate(NAMES):
        want = {**by_hand(**COUNTS[out]), "roc_auc": AUC[out]}
        _check({k: v[0] for k, v in batched["per_output"][out].items()}, want)
        for name in ("roc_auc", "recall", "specificity", "f1"):
            ci = bootstrap_ci(ScalarMetric(name, THRESHOLDS[out]), Y[:, j], P[:, j], n_boot=20)
            assert ci.value == pytest.approx(want[name], abs=1e-12), (out, name)


# Two-class softmax: the positive class ("Pneumonia") decides by its own threshold, 0.3 (so
# rows 1, 3 and 7 are positive though their argmax is "Normal"); "Normal"'s threshold (0.9)
# is not used; row 6's label is unknown.
CLASSES = ["Normal", "Pneumonia"]
P1 = np.array([0.80, 0.35, 0.20, 0.45, 0.10, 0.25, 0.60, 0.30])
Y1 = np.array([1, 1, 1, 0, 0, 0, NAN, 0])
SOFTMAX_THRESHOLDS = {"Normal": 0.9, "Pneumonia": 0.3}
#: Pneumonia: TP rows 0,1; FN row 2; FP rows 3,7; TN rows 4,5. AUC: 4 + 3 + 1 of 3 x 4 pairs.
PNEUMONIA = dict(tp=2, fn=1, fp=2, tn=2)


def _softmax_fixture() -> tuple[np.ndarray, np.ndarray]:
    Y2 = np.stack([1 - Y1, Y1], axis=1)  # the unknown row is NaN in both columns
    return Y2, np.stack([1 - P1, P1], axis=1)


def test_two_class_softmax_matches_hand_counts():
    Y2, P2 = _softmax_fixture()
    m = compute_metrics(Y2, P2, "single", CLASSES, SOFTMAX_THRESHOLDS)
    pos = m["per_output"]["Pneumonia"]
    assert {k: pos[k] for k in ("tp", "fn", "fp", "tn")} == PNEUMONIA
    _check(pos, {**by_hand(**PNEUMONIA), "roc_auc": 8 / 12})
    neg = m["per_output"]["Normal"]  # the same table seen from the other class
    _check(neg, {"recall": 2 / 4, "specificity": 2 / 3, "precision": 2 / 3, "roc_auc": 8 / 12})
    assert m["n"] == 7 and m["confusion_matrix"] == [[2, 2], [1, 2]]  # rows: true Normal, Pneumonia
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["balanced_accuracy"] == pytest.approx((2 / 4 + 2 / 3) / 2)
    batched = batched_metrics(Y2, P2, "single", CLASSES, SOFTMAX_THRESHOLDS, np.ones((1, len(P1))))
    assert batched["accuracy"][0] == pytest.approx(4 / 7)
    assert batched["balanced_accuracy"][0] == pytest.approx((2 / 4 + 2 / 3) / 2)
    _check({k: v[0] for k, v in batched["per_output"]["Pneumonia"].items()},
           {**by_hand(**PNEUMONIA), "roc_auc": 8 / 12})


def test_two_class_softmax_without_thresholds_is_argmax():
    """No thresholds: argmax, i.e. Pneumonia only where it is above 0.5 (rows 0 and 6)."""
    Y2, P2 = _softmax_fixture()
    m = compute_metrics(Y2, P2, "single", CLASSES, None)
    pos = m["per_output"]["Pneumonia"]
    assert {k: pos[k] for k in ("tp", "fn", "fp", "tn")} == dict(tp=1, fn=2, fp=0, tn=4)
