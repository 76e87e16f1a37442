import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             confusion_matrix, f1_score, precision_score, recall_score,
                             roc_auc_score)

from training.evaluation import metrics as M


def _data(n=300, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(float)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    return y, (np.round(p, 2) if ties else p)


def test_binary_hand_computed():
    y = [1, 1, 1, 0, 0, 0, 0]
    p = [0.9, 0.6, 0.2, 0.7, 0.3, 0.1, 0.05]
    m = M.binary_metrics(y, p, 0.5)  # tp=2 fn=1 fp=1 tn=3
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 3)
    assert m["confusion_matrix"] == [[3, 1], [1, 2]]
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 4) and m["npv"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert m["roc_auc"] == pytest.approx(9 / 12)  # 4 + 3 + 2 of 12 positive-negative pairs ordered
    assert (m["n"], m["n_pos"], m["n_neg"]) == (7, 3, 4)


def test_binary_equals_sklearn_and_ignores_nan():
    y, p = _data()
    y_nan = y.copy()
    y_nan[::7] = np.nan
    m = M.binary_metrics(y_nan, p, 0.4)
    k = ~np.isnan(y_nan)
    yk, pk, dk = y[k], p[k], (p[k] >= 0.4).astype(int)
    assert m["n"] == k.sum()
    assert m["precision"] == pytest.approx(precision_score(yk, dk))
    assert m["recall"] == pytest.approx(recall_score(yk, dk))
    assert m["f1"] == pytest.approx(f1_score(yk, dk))
    assert m["accuracy"] == pytest.approx(accuracy_score(yk, dk))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yk, dk))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(yk, pk))
    assert m["pr_auc"] == pytest.approx(average_precision_score(yk, pk))
    tn, fp, fn, tp = confusion_matrix(yk, dk).ravel()
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["npv"] == pytest.approx(tn / (tn + fn))


@pytest.mark.parametrize("y", [[1, 1, 1], [0, 0, 0], [np.nan, np.nan], []])
def test_undefined_is_nan_not_a_crash(y):
    p = np.linspace(0.1, 0.9, len(y))
    m = M.binary_metrics(y, p)
    assert np.isnan(m["roc_auc"]) and np.isnan(m["balanced_accuracy"])
    if not len(y) or np.isnan(y).all() or np.nansum(y) == 0:
        assert np.isnan(m["pr_auc"]) and np.isnan(m["recall"])


def test_multilabel_macro_and_micro():
    y1, p1 = _data(seed=1)
    y2, p2 = _data(seed=2)
    y2[:50] = np.nan
    Y, P = np.stack([y1, y2], 1), np.stack([p1, p2], 1)
    m = M.multilabel_metrics(Y, P, {"a": 0.5, "b": 0.3}, ["a", "b"])
    assert m["per_output"]["b"]["n"] == len(y2) - 50
    assert m["per_output"]["b"]["threshold"] == 0.3
    assert m["macro"]["roc_auc"] == pytest.approx(
        (roc_auc_score(y1, p1) + roc_auc_score(y2[50:], p2[50:])) / 2)
    yy = np.r_[y1, y2[50:]]
    dd = np.r_[p1 >= 0.5, p2[50:] >= 0.3]
    assert m["micro"]["f1"] == pytest.approx(f1_score(yy, dd))
    assert m["micro"]["roc_auc"] == pytest.approx(roc_auc_score(yy, np.r_[p1, p2[50:]]))


def test_multiclass_equals_sklearn():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 3, 200)
    P = rng.dirichlet([1, 1, 1], 200) + np.eye(3)[true] * 0.4
    P /= P.sum(1, keepdims=True)
    Y = np.eye(3)[true]
    Y[:10] = np.nan  # unlabelled rows are ignored
    m = M.multiclass_metrics(Y, P, ["n", "b", "v"])
    t, p, pred = true[10:], P[10:], P[10:].argmax(1)
    assert m["n"] == 190
    assert m["accuracy"] == pytest.approx(accuracy_score(t, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(t, pred))
    assert m["confusion_matrix"] == confusion_matrix(t, pred).tolist()
    assert m["macro"]["roc_auc"] == pytest.approx(roc_auc_score(t, p, multi_class="ovr"))
    assert m["macro"]["f1"] == pytest.approx(f1_score(t, pred, average="macro"))
    assert m["micro"]["precision"] == pytest.approx(accuracy_score(t, pred))
    assert m["per_output"]["b"]["recall"] == pytest.approx(recall_score(t == 1, pred == 1))


@pytest.mark.parametrize("name", M.METRIC_NAMES)
def test_batched_equals_sklearn_on_resamples(name):
    y, p = _data(200, seed=4)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, len(y), size=(6, len(y)))
    w = np.stack([np.bincount(i, minlength=len(y)) for i in idx]).astype(float)
    pred = (p >= 0.5).astype(int)
    got = M.batched_binary(y, p, pred, w)[name]
    want = [M.binary_metrics(y[i], p[i], 0.5)[name] for i in idx]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_negative_class_view():
    y, p = _data(seed=6)
    m = M.binary_metrics(y, p, 0.5)
    neg = M.negative_class(m)
    direct = M.binary_metrics(1 - y, 1 - p, None, pred=(p < 0.5).astype(int))
    for k in ("precision", "recall", "specificity", "npv", "f1", "roc_auc"):
        assert neg[k] == pytest.approx(direct[k])


def test_two_class_softmax_uses_the_positive_class_threshold():
    from training.evaluation.decision import single_label_classes
    from training.evaluation.metrics import multiclass_metrics

    names = ["Normal", "Pneumonia"]
    P = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    Y = np.array([[1, 0], [0, 1], [0, 1]], dtype=float)
    assert single_label_classes(P, None, names).tolist() == [0, 0, 1]          # argmax
    assert single_label_classes(P, {"Pneumonia": 0.35}, names).tolist() == [0, 1, 1]
    m = multiclass_metrics(Y, P, names, {"Pneumonia": 0.35})
    assert m["accuracy"] == 1.0 and m["per_output"]["Pneumonia"]["recall"] == 1.0
    # three classes: always the argmax, whatever thresholds are given
    P3 = np.array([[0.5, 0.3, 0.2]])
    assert single_label_classes(P3, {"b": 0.1, "c": 0.1}, ["a", "b", "c"]).tolist() == [0]
